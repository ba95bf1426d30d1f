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
    /// A graph.json is invalid, or a graph run's journal does not fit its graph.
    #[error("graph: {0}")]
    Graph(#[from] sequential_flow_graph::Error),
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
    /// The engine itself failed: a task of its own panicked or was lost, the operating system
    /// refused a resource. Not the caller's input; the cause says what happened.
    #[error("internal failure while {doing}: {cause}")]
    Internal {
        /// What the engine was doing.
        doing: String,
        /// What went wrong.
        cause: String,
    },
}

impl Error {
    /// `true` when driving the run again cannot help: its task configuration is malformed, its
    /// journal cannot be decoded, or its stored state cannot be read by this build. The engine
    /// fails such a run at once instead of retrying it.
    pub fn is_permanent(&self) -> bool {
        use sequential_fetch_vm::Error as Vm;
        match self {
            Error::Config(_) | Error::Journal { .. } | Error::Graph(_) => true,
            Error::Vm(e) => matches!(
                e,
                Vm::Invalid { .. } | Vm::CodeMismatch { .. } | Vm::UnsupportedVersion { .. }
            ),
            _ => false,
        }
    }

    /// The `name` a run's error carries when this error ended it.
    pub(crate) fn run_error_name(&self) -> &'static str {
        match self {
            Error::Config(_) => "ConfigError",
            Error::Journal { .. } => "JournalError",
            Error::Graph(_) => "GraphError",
            Error::Internal { .. } => "InternalError",
            Error::Storage(_) => "StorageError",
            Error::Vm(_) => "VmError",
            _ => "DriveError",
        }
    }
}

/// A `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
