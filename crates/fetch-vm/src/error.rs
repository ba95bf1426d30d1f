//! The crate's one error type: why a run failed, or why a call into the API was refused.

use serde_json::Value;

use crate::ErrorInfo;

/// An exception thrown by JavaScript and not caught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsError {
    /// `error.name` (`TypeError`, `SyntaxError`, `FetchError`, … or `Error` for thrown non-errors).
    pub name: String,
    /// `error.message` (or the thrown value as a string).
    pub message: String,
    /// `error.stack`, when there is one.
    pub stack: Option<String>,
    /// Line of a syntax error (1-based), when known.
    pub line: Option<u32>,
    /// Column of a syntax error (1-based), when known.
    pub column: Option<u32>,
}

impl std::fmt::Display for JsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.name, self.message)?;
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, " (line {line}, column {column})")?;
        }
        Ok(())
    }
}

/// Why a run failed ([`Step::Failed`](crate::Step::Failed)) or an API call was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The code threw and did not catch it (syntax errors included, with line and column).
    #[error("uncaught {0}")]
    Js(JsError),
    /// Replay found a call that differs from the journal: the code or its inputs changed.
    #[error(
        "non-determinism at seq {seq}: the journal recorded {recorded} but the code now made {now}"
    )]
    NonDeterminism {
        /// The call's sequence number.
        seq: u64,
        /// What the journal holds at that seq (`{kind, request}`), or `null`.
        recorded: Value,
        /// What the code asked for this time (`{kind, request}`), or `null`.
        now: Value,
    },
    /// JavaScript ran longer than the CPU slice limit without making a host call.
    #[error(
        "timeout: JavaScript ran longer than the CPU slice limit of {limit_ms} ms without a host call"
    )]
    Timeout {
        /// The limit, in milliseconds.
        limit_ms: u64,
    },
    /// The session's heap limit was reached.
    #[error("memory limit of {limit_bytes} bytes exceeded")]
    MemoryLimit {
        /// The limit, in bytes.
        limit_bytes: usize,
    },
    /// Recursion went deeper than the stack limit allows.
    #[error("stack limit of {limit_bytes} bytes exceeded (recursion too deep)")]
    StackLimit {
        /// The limit, in bytes.
        limit_bytes: usize,
    },
    /// The code awaits a promise that nothing can settle: no host call is pending.
    #[error("the code is waiting for a promise that no pending host call can settle")]
    Stalled,
    /// The result's JSON is larger than allowed.
    #[error("result of {size} bytes exceeds the limit of {limit} bytes")]
    ResultTooLarge {
        /// Size of the result's JSON.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// A host call's request JSON is larger than allowed.
    #[error("request of {kind} call {seq} is {size} bytes, over the limit of {limit} bytes")]
    RequestTooLarge {
        /// The call's sequence number.
        seq: u64,
        /// The call's kind.
        kind: String,
        /// Size of the request's JSON.
        size: usize,
        /// The limit, in bytes.
        limit: usize,
    },
    /// The run made more host calls than allowed.
    #[error("journal limit of {limit} entries reached")]
    JournalTooLong {
        /// The limit, in entries.
        limit: u64,
    },
    /// The result cannot be represented as JSON (a function, a cycle, a BigInt …).
    #[error("result is not JSON-serializable: {message}")]
    NotSerializable {
        /// What was found, and where.
        message: String,
    },
    /// `complete` named a call that is not waiting for a result.
    #[error("call {seq} is not pending; pending calls: {pending:?}")]
    NotPending {
        /// The seq that was given.
        seq: u64,
        /// The seqs that are pending.
        pending: Vec<u64>,
    },
    /// The session already completed or failed; it accepts no more results.
    #[error("the session has ended; start a new one to replay")]
    Ended,
    /// An input to the API is malformed (a vmState, a request document …).
    #[error("invalid {input}: {expected}")]
    Invalid {
        /// Which input.
        input: String,
        /// What was wrong and what would have been valid.
        expected: String,
    },
    /// The vmState was written for different code.
    #[error("vmState was recorded for code {recorded} but the code given hashes to {given}")]
    CodeMismatch {
        /// Hash recorded in the vmState.
        recorded: String,
        /// Hash of the code given now.
        given: String,
    },
    /// The vmState format is newer than this build understands.
    #[error("vmState format version {found} is newer than the supported version {supported}")]
    UnsupportedVersion {
        /// Version found.
        found: u64,
        /// Newest version this build reads.
        supported: u64,
    },
    /// A pure evaluation ([`Evaluator`](crate::Evaluator)) tried a host call: `fetch`, the clock,
    /// randomness or a timer. It fails even when the code caught the error it got.
    #[error("{call} is a host call ({kind}), which a pure function may not make")]
    HostCall {
        /// The kind of call (`fetch`, `now`, `random`, `sleep` …, as in [`CallKind`](crate::CallKind)).
        kind: String,
        /// How the code made it (`Date.now()`, `fetch()` …).
        call: String,
    },
    /// The JavaScript engine itself failed (could not create a runtime, a thread …).
    #[error("engine failure: {0}")]
    Engine(String),
}

impl Error {
    /// The `{name, message, stack}` shape used by the external-mode JSON contract.
    pub fn to_info(&self) -> ErrorInfo {
        match self {
            Error::Js(js) => {
                let mut info = ErrorInfo::new(js.name.clone(), js.message.clone());
                info.stack = js.stack.clone();
                if let (Some(line), Some(column)) = (js.line, js.column) {
                    info.details = Some(serde_json::json!({ "line": line, "column": column }));
                }
                info
            }
            other => ErrorInfo::new(other.name(), other.to_string()),
        }
    }

    /// A short stable name of the variant (`Timeout`, `NonDeterminism`, …; a JS error's own name).
    pub fn name(&self) -> String {
        match self {
            Error::Js(js) => js.name.clone(),
            Error::NonDeterminism { .. } => "NonDeterminism".into(),
            Error::Timeout { .. } => "Timeout".into(),
            Error::MemoryLimit { .. } => "MemoryLimit".into(),
            Error::StackLimit { .. } => "StackLimit".into(),
            Error::Stalled => "Stalled".into(),
            Error::ResultTooLarge { .. } => "ResultTooLarge".into(),
            Error::RequestTooLarge { .. } => "RequestTooLarge".into(),
            Error::JournalTooLong { .. } => "JournalTooLong".into(),
            Error::NotSerializable { .. } => "NotSerializable".into(),
            Error::NotPending { .. } => "NotPending".into(),
            Error::Ended => "Ended".into(),
            Error::Invalid { .. } => "Invalid".into(),
            Error::CodeMismatch { .. } => "CodeMismatch".into(),
            Error::UnsupportedVersion { .. } => "UnsupportedVersion".into(),
            Error::HostCall { .. } => "HostCall".into(),
            Error::Engine(_) => "EngineError".into(),
        }
    }
}
