//! User-facing failures: what went wrong, a hint, and the exit code; printed to stderr.

use std::fmt;

/// Exit code: a run failed (or was cancelled).
pub const EXIT_RUN_FAILED: u8 = 1;
/// Exit code: usage or configuration error; every failure of the task-management commands.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: a run is waiting or paused.
pub const EXIT_WAITING: u8 = 3;

/// A failure the user can act on: a sentence naming the input and what would be valid, an
/// optional hint line, and the exit code.
#[derive(Debug)]
pub struct UserError {
    what: String,
    hint: Option<String>,
    code: u8,
}

impl UserError {
    /// A usage/configuration error (exit 2).
    pub fn new(what: impl Into<String>) -> Self {
        UserError {
            what: what.into(),
            hint: None,
            code: EXIT_USAGE,
        }
    }

    /// A failure with another exit code (1: the run failed).
    pub fn with_code(mut self, code: u8) -> Self {
        self.code = code;
        self
    }

    /// Adds the hint line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for UserError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for UserError {}

/// Shorthand: `Err(UserError)` as an `anyhow::Error`.
pub fn user(what: impl Into<String>, hint: impl Into<String>) -> anyhow::Error {
    UserError::new(what).hint(hint).into()
}

/// An outcome already told to the user (e.g. "the run is waiting, here is how to continue"):
/// nothing more is printed, the process exits with this code.
#[derive(Debug)]
pub struct Reported(pub u8);

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for Reported {}

/// Prints `error: …` (with its causes) and `hint: …` to stderr; returns the exit code.
pub fn report(err: &anyhow::Error) -> u8 {
    if let Some(Reported(code)) = err.downcast_ref::<Reported>() {
        return *code;
    }
    let mut hint = None;
    let mut code = EXIT_USAGE;
    for cause in err.chain() {
        if let Some(u) = cause.downcast_ref::<UserError>() {
            code = u.code;
            if hint.is_none() {
                hint = u.hint.clone();
            }
        }
        if hint.is_none()
            && let Some(e) = cause.downcast_ref::<sequential_adaptor::Error>()
        {
            hint = adaptor_hint(e);
        }
    }
    eprintln!("error: {err:#}");
    eprintln!(
        "hint: {}",
        hint.as_deref()
            .unwrap_or("run again with DEBUG=1 (or RUST_LOG=debug) for details")
    );
    code
}

/// A generic next step for storage errors that reached the user without a specific hint.
fn adaptor_hint(e: &sequential_adaptor::Error) -> Option<String> {
    use sequential_adaptor::Error as E;
    Some(match e {
        E::NotFound { .. } => "`sequential-ecosystem list` shows the tasks that exist".into(),
        E::Conflict { .. } => "re-read the current state and try again".into(),
        E::Unsupported { .. } => {
            "the storage was written by a newer sequential-ecosystem; upgrade this binary".into()
        }
        E::Backend { .. } => {
            "check that the storage location exists and is readable (DEBUG=1 shows more)".into()
        }
        _ => return None,
    })
}
