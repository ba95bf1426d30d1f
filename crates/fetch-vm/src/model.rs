//! Plain data exchanged with the caller: host calls, journal entries, steps, options and limits.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// What a host call asks the caller to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum CallKind {
    /// An HTTP request: `{url, options}`; result `{status, statusText, headers, data}`.
    Fetch,
    /// A durable timer: `{ms}`; result `null` once the timer fired.
    Sleep,
    /// Wait for a named event: `{name, timeoutMs?}`; result the payload, or `null` on timeout.
    WaitForEvent,
    /// Publish an event: `{name, data}`; result `null`.
    Emit,
    /// Call a host tool: `{name, args, service?, method?}`; result whatever the tool returns.
    Tool,
    /// Run a child task: `{task, input}`; result the child's output.
    Child,
    /// Read the wall clock: `{}`; result milliseconds since the Unix epoch (a number).
    Now,
    /// Draw randomness: `{bytes}`; result that many random bytes as a lowercase hex string.
    Random,
    /// A console line: `{level, message}`. Journaled by the VM itself, never reported as pending.
    Log,
    /// `ctx.signal`, made the first time the code reads it: `{}`; answered only when the run is
    /// aborted (killed, or a stop's timeout expired), with the reason `{name, message}`, which
    /// fires the signal. Hosts without aborts leave it pending (or answer it with an error,
    /// which leaves the signal inert).
    Abort,
}

impl CallKind {
    /// The name used in JSON and in the JavaScript glue.
    pub fn as_str(self) -> &'static str {
        match self {
            CallKind::Fetch => "fetch",
            CallKind::Sleep => "sleep",
            CallKind::WaitForEvent => "waitForEvent",
            CallKind::Emit => "emit",
            CallKind::Tool => "tool",
            CallKind::Child => "child",
            CallKind::Now => "now",
            CallKind::Random => "random",
            CallKind::Log => "log",
            CallKind::Abort => "abort",
        }
    }

    /// Parses the name produced by [`CallKind::as_str`].
    pub fn parse(name: &str) -> Option<CallKind> {
        Some(match name {
            "fetch" => CallKind::Fetch,
            "sleep" => CallKind::Sleep,
            "waitForEvent" => CallKind::WaitForEvent,
            "emit" => CallKind::Emit,
            "tool" => CallKind::Tool,
            "child" => CallKind::Child,
            "now" => CallKind::Now,
            "random" => CallKind::Random,
            "log" => CallKind::Log,
            "abort" => CallKind::Abort,
            _ => return None,
        })
    }
}

impl std::fmt::Display for CallKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A call the JavaScript code made that the caller must perform and answer with
/// [`Session::complete`](crate::Session::complete).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostCall {
    /// Dense sequence number, in the order the code made its calls (0, 1, 2, …).
    pub seq: u64,
    /// What kind of call this is.
    pub kind: CallKind,
    /// The request, exactly as the code made it (see [`CallKind`] for each shape).
    pub request: Value,
}

/// An error a host call ended with (a fetch that failed after its retries, a tool that threw).
/// The code sees it as a rejected promise / thrown error with this name and message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// Error class name, e.g. `FetchError`, `TypeError`.
    pub name: String,
    /// Human-readable message.
    pub message: String,
    /// JavaScript stack, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Further fields copied onto the error object (e.g. `status`, `statusText`, `data`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<Value>,
}

impl ErrorInfo {
    /// An error with a name and message only.
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorInfo {
            name: name.into(),
            message: message.into(),
            stack: None,
            details: None,
        }
    }
}

/// The outcome of a host call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallResult {
    /// The call succeeded with this value.
    Ok(Value),
    /// The call failed; the code sees a thrown error / rejected promise.
    Error(ErrorInfo),
}

impl CallResult {
    /// A successful fetch response in the shape fetch-vm expects.
    pub fn fetch_response(status: u16, status_text: &str, headers: Value, data: Value) -> Self {
        // built by hand: `json!` would copy `headers` and `data` (it serializes what it is given)
        CallResult::Ok(Value::Object(serde_json::Map::from_iter([
            ("status".to_string(), Value::from(status)),
            ("statusText".to_string(), Value::from(status_text)),
            ("headers".to_string(), headers),
            ("data".to_string(), data),
        ])))
    }
}

/// One completed host call, in the order the VM applied it. Plain serde data: the engine maps it
/// to and from its storage records.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The call's sequence number.
    pub seq: u64,
    /// The call's kind.
    pub kind: CallKind,
    /// The request as the code made it.
    pub request: Value,
    /// What the call returned.
    pub result: CallResult,
}

/// A run's journal: completed calls in the order they were applied. Replaying it against the
/// same code and input reproduces the same execution.
pub type Journal = Vec<JournalEntry>;

/// What a session needs next.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// The code finished; its result as JSON.
    Completed(Value),
    /// The code failed (uncaught exception, limit, non-determinism …).
    Failed(Error),
    /// Every call still waiting for a result, ordered by `seq` (several when the code awaits
    /// `Promise.all`). A call stays listed until it is completed, so after a `complete` the list
    /// may repeat calls reported before; a cold replay reports exactly the same list.
    Pending(Vec<HostCall>),
}

/// How the code is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Mode {
    /// `module` when the code has a top-level `export`, else `script`.
    #[default]
    Auto,
    /// Statements run top to bottom; `fetch` returns the body synchronously; the last expression
    /// statement is the result.
    Script,
    /// An ES module whose entry is `export default async function (input, ctx)`.
    Module,
}

/// Resource limits of one session. Every limit error names the limit and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Heap limit of the session's JavaScript runtime, in bytes (default 64 MiB).
    pub memory_bytes: usize,
    /// Maximum time JavaScript may run between two host calls, in milliseconds (default 1000).
    pub cpu_slice_ms: u64,
    /// Maximum JavaScript stack, in bytes (default 1 MiB).
    pub stack_bytes: usize,
    /// Maximum size of the JSON result, in bytes (default 8 MiB).
    pub max_result_bytes: usize,
    /// Maximum size of one host call's JSON request, in bytes (default 8 MiB).
    pub max_request_bytes: usize,
    /// Maximum number of host calls (journal entries) per run (default 100,000).
    pub max_journal_entries: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: 64 << 20,
            cpu_slice_ms: 1000,
            stack_bytes: 1 << 20,
            max_result_bytes: 8 << 20,
            max_request_bytes: 8 << 20,
            max_journal_entries: 100_000,
        }
    }
}

/// Options of a session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Options {
    /// Script or module (default: detected).
    pub mode: Mode,
    /// The task's name; a module's entry may be the export named after it in camelCase or
    /// snake_case (`my-emails` → `myEmails` / `my_emails`).
    pub task_name: Option<String>,
    /// Resource limits.
    pub limits: Limits,
}

impl Options {
    /// Default options with the given mode.
    pub fn with_mode(mode: Mode) -> Self {
        Options {
            mode,
            ..Options::default()
        }
    }
}
