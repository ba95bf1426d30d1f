//! The error enum of the layer store.

use std::io;
use std::path::{Path, PathBuf};

/// Everything that can go wrong in a [`crate::Store`] operation.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call failed on `path`.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The store was written by a newer format than this build understands; it was not touched.
    #[error(
        "{}: store format {found} is newer than the formats this build supports (up to {supported}); upgrade sequential-layer-store. The store was not modified",
        path.display()
    )]
    UnsupportedFormat {
        /// The store directory.
        path: PathBuf,
        /// The format number found on disk.
        found: u32,
        /// The newest format this build can read.
        supported: u32,
    },
    /// The directory exists but is not a layer store (or is damaged beyond use).
    #[error("{} is not a layer store: {reason}", path.display())]
    NotAStore {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An argument was rejected.
    #[error("invalid {what} {input:?}: expected {expected}")]
    Invalid {
        /// What kind of input (tag name, work dir, ref, path…).
        what: &'static str,
        /// The offending input.
        input: String,
        /// What would have been valid.
        expected: String,
    },
    /// A ref resolves to nothing.
    #[error(
        "unknown ref {input:?}; valid refs are HEAD, HEAD~n, a tag, a full state id or a unique prefix of at least 7 hex chars{}",
        list_suffix(candidates, "known tags")
    )]
    UnknownRef {
        /// The ref as given.
        input: String,
        /// Known tags (to help the user).
        candidates: Vec<String>,
    },
    /// A hash prefix matches several states.
    #[error("ambiguous ref {input:?}: matches {}", candidates.join(", "))]
    AmbiguousRef {
        /// The ref as given.
        input: String,
        /// The matching state ids.
        candidates: Vec<String>,
    },
    /// Stored data does not match its hash (or cannot be decoded).
    #[error("corrupt object {id} in {}: {reason}", location.display())]
    Corrupt {
        /// The object or record id.
        id: String,
        /// The file holding it.
        location: PathBuf,
        /// What was wrong.
        reason: String,
    },
    /// A stored object that should exist is missing.
    #[error("missing object {id} (needed by {needed_by})")]
    MissingObject {
        /// The object id.
        id: String,
        /// Who refers to it.
        needed_by: String,
    },
    /// The work dir has changes not captured in head; the operation would lose them.
    #[error("the work dir {} has uncommitted changes; use force to discard them: {}", work.display(), summarize(changes))]
    Dirty {
        /// The work dir.
        work: PathBuf,
        /// Changed paths, each prefixed with `A `, `M ` or `D `.
        changes: Vec<String>,
    },
    /// The command exited unsuccessfully; no layer was created.
    #[error("command {instruction:?} failed with exit code {code}; no layer was created")]
    CommandFailed {
        /// The instruction.
        instruction: String,
        /// Its exit code (128 + signal number when killed by a signal).
        code: i32,
        /// The end of its standard output (at most [`OUTPUT_TAIL`] bytes), when captured.
        ///
        /// [`OUTPUT_TAIL`]: crate::OUTPUT_TAIL
        stdout_tail: Option<String>,
        /// The end of its standard error (at most [`OUTPUT_TAIL`] bytes), when captured.
        ///
        /// [`OUTPUT_TAIL`]: crate::OUTPUT_TAIL
        stderr_tail: Option<String>,
    },
    /// The work dir vanished.
    #[error("work dir {} does not exist; `rebuild` recreates it from the layers", path.display())]
    WorkDirMissing {
        /// The work dir.
        path: PathBuf,
    },
    /// The work dir holds something the store cannot capture.
    #[error("cannot capture {}: {reason}", path.display())]
    Uncapturable {
        /// The offending path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Error {
    /// The exit code a CLI should end with: the command's own code for
    /// [`Error::CommandFailed`], 2 for invalid input (bad ref, tag name, work dir, refused
    /// checkout), 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::CommandFailed { code, .. } => *code,
            Error::Invalid { .. }
            | Error::UnknownRef { .. }
            | Error::AmbiguousRef { .. }
            | Error::Dirty { .. }
            | Error::UnsupportedFormat { .. }
            | Error::NotAStore { .. }
            | Error::WorkDirMissing { .. } => 2,
            _ => 1,
        }
    }
}

fn list_suffix(items: &[String], what: &str) -> String {
    if items.is_empty() {
        String::new()
    } else {
        format!("; {what}: {}", items.join(", "))
    }
}

fn summarize(changes: &[String]) -> String {
    const MAX: usize = 20;
    let mut s = changes
        .iter()
        .take(MAX)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if changes.len() > MAX {
        s.push_str(&format!(" … and {} more", changes.len() - MAX));
    }
    s
}

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A failed durable-file operation keeps its path (the message stays `I/O error on <path>: …`).
impl From<sequential_support::fs::FsError> for Error {
    fn from(e: sequential_support::fs::FsError) -> Self {
        Error::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// Attaches a path to an `io::Error`.
pub(crate) trait IoContext<T> {
    fn at(self, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, path: &Path) -> Result<T> {
        self.map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}
