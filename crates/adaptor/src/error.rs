//! The one error type every storage backend returns.

use crate::model::RunId;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in a storage operation. Each variant is something a caller can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The thing named does not exist (a task, a task version, a run).
    #[error("{what} not found")]
    NotFound {
        /// What was looked up, e.g. "run 0190c3…" or "task `order` version 4".
        what: String,
    },
    /// The operation contradicts what is stored: a stale revision, a different record at an
    /// existing journal seq, an idempotency key reused with other input, active runs in the way.
    #[error("conflict: {what}")]
    Conflict {
        /// A sentence saying what conflicts with what.
        what: String,
    },
    /// The caller's lease on the run was taken over by another claim.
    #[error("run {run} is fenced: token {token} is stale, the run's current token is {current}")]
    Fenced {
        /// The run.
        run: RunId,
        /// The token the caller presented.
        token: u64,
        /// The run's current fencing token.
        current: u64,
    },
    /// Bad input: names the input and what would have been valid.
    #[error("invalid {input}: expected {expected}")]
    Invalid {
        /// The offending input, quoted as given.
        input: String,
        /// What would have been valid.
        expected: String,
    },
    /// The backend cannot do this (a newer on-disk format, a feature it lacks).
    #[error("unsupported: {what}")]
    Unsupported {
        /// What is unsupported and why.
        what: String,
    },
    /// The backend itself failed (I/O, database driver).
    #[error("{context}: {source}")]
    Backend {
        /// What the backend was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Shorthand for [`Error::NotFound`].
    pub fn not_found(what: impl Into<String>) -> Self {
        Error::NotFound { what: what.into() }
    }

    /// Shorthand for [`Error::Conflict`].
    pub fn conflict(what: impl Into<String>) -> Self {
        Error::Conflict { what: what.into() }
    }

    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(input: impl Into<String>, expected: impl Into<String>) -> Self {
        Error::Invalid {
            input: input.into(),
            expected: expected.into(),
        }
    }

    /// Shorthand for [`Error::Unsupported`].
    pub fn unsupported(what: impl Into<String>) -> Self {
        Error::Unsupported { what: what.into() }
    }

    /// Wraps a backend failure with what was being done.
    pub fn backend(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Error::Backend {
            context: context.into(),
            source: source.into(),
        }
    }
}
