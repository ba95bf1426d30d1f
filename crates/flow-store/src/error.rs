//! The one error type of the task store.

use sequential_support::time::rfc3339_millis;

/// What went wrong, naming the task id or the store URL involved.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A store URL this build cannot open, or one with a bad part.
    #[error("invalid task store URL {url:?}: expected {expected}")]
    InvalidUrl {
        /// The URL as given (credentials removed).
        url: String,
        /// The forms that are valid.
        expected: String,
    },
    /// The store could not be reached or opened (server down, folder not writable, …).
    #[error("cannot reach the task store {url}: {detail}")]
    Unreachable {
        /// The store's URL (credentials removed).
        url: String,
        /// Why.
        detail: String,
    },
    /// No task with this id is stored (never saved, or forgotten long after it expired).
    #[error("no task {id:?} in the task store {store}")]
    NotFound {
        /// The task id.
        id: String,
        /// The store's URL.
        store: String,
    },
    /// The task's TTL ran out: it is no longer visible.
    #[error("task {id:?} expired at {} (its TTL ran out) in the task store {store}", rfc3339_millis(*expired_at))]
    Expired {
        /// The task id.
        id: String,
        /// When it expired, Unix milliseconds.
        expired_at: i64,
        /// The store's URL.
        store: String,
    },
    /// The task was deleted.
    #[error("task {id:?} was deleted at {} from the task store {store}", rfc3339_millis(*deleted_at))]
    Deleted {
        /// The task id.
        id: String,
        /// When it was deleted, Unix milliseconds.
        deleted_at: i64,
        /// The store's URL.
        store: String,
    },
    /// A resume of a task that is not paused (it completed or failed: nothing to resume).
    #[error("task {id:?} is {status}, not paused: there is nothing to resume")]
    NotPaused {
        /// The task id.
        id: String,
        /// Its status (`completed`, `error`).
        status: String,
    },
    /// A request the store refused before running or storing anything: a missing field, an
    /// edited or foreign vmState, code that does not match it, a response to no pending call.
    #[error("invalid {input}: expected {expected}")]
    Invalid {
        /// The offending input.
        input: String,
        /// What would have been valid.
        expected: String,
    },
    /// A stored record that cannot be read (written by a newer version, or damaged).
    #[error("the task store {store} holds an unreadable record for {id:?}: {detail}")]
    Corrupt {
        /// The task id.
        id: String,
        /// The store's URL.
        store: String,
        /// What is wrong with it.
        detail: String,
    },
    /// The backend failed an operation.
    #[error("task store {store}: {doing}: {detail}")]
    Backend {
        /// The store's URL.
        store: String,
        /// What was being done (`saving task "t1"`, …).
        doing: String,
        /// The backend's message.
        detail: String,
    },
}

impl Error {
    /// An [`Error::Invalid`].
    pub fn invalid(input: impl Into<String>, expected: impl Into<String>) -> Self {
        Error::Invalid {
            input: input.into(),
            expected: expected.into(),
        }
    }

    /// An [`Error::Backend`].
    pub fn backend(
        store: impl Into<String>,
        doing: impl Into<String>,
        detail: impl std::fmt::Display,
    ) -> Self {
        Error::Backend {
            store: store.into(),
            doing: doing.into(),
            detail: detail.to_string(),
        }
    }

    /// Whether the error is about the request (bad input, unknown, expired or deleted task)
    /// rather than the store: a CLI exits 2 for these.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::InvalidUrl { .. }
                | Error::NotFound { .. }
                | Error::Expired { .. }
                | Error::Deleted { .. }
                | Error::NotPaused { .. }
                | Error::Invalid { .. }
        )
    }
}

/// The result of task store operations.
pub type Result<T> = std::result::Result<T, Error>;
