//! Errors of the engine.

/// What can go wrong while starting or driving runs.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Storage failed or refused (not found, conflict, fenced …).
    #[error(transparent)]
    Storage(#[from] sequential_adaptor::Error),
    /// The JavaScript VM could not be started.
    #[error("JavaScript VM: {0}")]
    Vm(#[from] sequential_fetch_vm::Error),
    /// The HTTP client could not be built.
    #[error("HTTP client: {0}")]
    Http(#[from] sequential_http_wrapper::FetchError),
    /// A task's configuration is malformed.
    #[error("task configuration: {0}")]
    Config(#[from] sequential_http_wrapper::ConfigError),
    /// A stored journal record could not be understood.
    #[error("run {run}: journal record {seq} is malformed: {reason}")]
    Journal {
        /// The run.
        run: sequential_adaptor::RunId,
        /// The record's seq.
        seq: u64,
        /// What is wrong.
        reason: String,
    },
    /// Bad input: names it and what would be valid.
    #[error("invalid {input}: expected {expected}")]
    Invalid {
        /// The input.
        input: String,
        /// What would be valid.
        expected: String,
    },
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
