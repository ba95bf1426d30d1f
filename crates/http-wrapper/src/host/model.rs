//! The host API's wire types: what the server answers (HOST-API.md §4.3) and what a caller
//! passes in.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `GET /api/v1/version`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Version {
    /// `sequential-ecosystem`.
    pub service: String,
    /// The server's package version.
    pub version: String,
    /// `v1`.
    #[serde(rename = "apiVersion")]
    pub api_version: String,
    /// A build label (`dev` when unset).
    #[serde(default)]
    pub build: Option<String>,
}

/// `GET /api/v1/health`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Health {
    /// The server can reach its storage.
    pub ok: bool,
    /// Its storage.
    pub storage: StorageHealth,
    /// Whether the server drives runs itself (an embedded worker); `false` under `--no-worker`.
    #[serde(default)]
    pub worker: bool,
    /// Seconds since the server started.
    #[serde(default)]
    pub uptime_s: u64,
}

/// The storage part of [`Health`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StorageHealth {
    /// The backend's URL scheme: `folder`, `sqlite`, `postgres`, `memory`.
    pub adapter: String,
    /// Whether it answered.
    pub ok: bool,
    /// Why not, when it did not.
    #[serde(default)]
    pub error: Option<String>,
}

/// A task's latest version as `GET /api/v1/tasks` lists it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskSummary {
    /// The task name.
    pub name: String,
    /// The latest version (1, 2, …).
    pub version: u32,
    /// The version's content hash.
    pub hash: String,
    /// `implicit` (code only) or `graph`.
    #[serde(default)]
    pub kind: String,
    /// `config.json`'s `description`.
    #[serde(default)]
    pub description: Option<Value>,
    /// `config.json`'s `inputs`, as declared.
    #[serde(default)]
    pub inputs: Value,
    /// When this version was stored (RFC 3339).
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// One task version, `GET /api/v1/tasks/:name`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Task {
    /// The task name.
    pub name: String,
    /// This version.
    pub version: u32,
    /// Its content hash.
    pub hash: String,
    /// `implicit` or `graph`.
    #[serde(default)]
    pub kind: String,
    /// `config.json`'s `description`.
    #[serde(default)]
    pub description: Option<Value>,
    /// `config.json`'s `inputs`.
    #[serde(default)]
    pub inputs: Value,
    /// Runs of the task that have not ended.
    #[serde(default)]
    pub active_runs: Option<usize>,
    /// `code.js`.
    pub code: String,
    /// `graph.json`, for a graph task.
    #[serde(default)]
    pub graph: Option<Value>,
    /// `config.json`.
    #[serde(default)]
    pub config: Value,
    /// Every stored version, oldest first.
    #[serde(default)]
    pub versions: Vec<TaskVersionInfo>,
}

/// One entry of [`Task::versions`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct TaskVersionInfo {
    /// 1, 2, …
    pub version: u32,
    /// Its content hash.
    pub hash: String,
    /// When it was stored (RFC 3339).
    #[serde(default)]
    pub created_at: Option<String>,
}

/// What an upload stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Uploaded {
    /// The task name.
    pub name: String,
    /// The version the content is stored as (an existing one when the content was identical).
    pub version: u32,
    /// Its content hash.
    pub hash: String,
    /// Whether a new version was written.
    #[serde(default)]
    pub created: bool,
}

/// A run's life-cycle state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RunStatus {
    /// Created, not yet claimed.
    Queued,
    /// Being driven.
    Running,
    /// Waiting for a timer, an event or a child run.
    Waiting,
    /// A call spent its retries; `retry` continues it.
    Paused,
    /// Asked to stop; ends `cancelled`.
    Stopping,
    /// Ended with an output.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Stopped or killed.
    Cancelled,
}

impl RunStatus {
    /// `succeeded`, `failed` or `cancelled`: the run will not change again.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// The wire name (`queued`, `running`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Waiting => "waiting",
            RunStatus::Paused => "paused",
            RunStatus::Stopping => "stopping",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The Run object (HOST-API.md §4.3).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Run {
    /// The run id (a UUID v7).
    pub id: String,
    /// The task version the run is pinned to.
    pub task: RunTask,
    /// Its state.
    pub status: RunStatus,
    /// Where it is: for a plain task the call it waits on (`fetch#3`).
    #[serde(default)]
    pub state: Option<String>,
    /// How many times it was claimed.
    #[serde(default)]
    pub attempt: u32,
    /// What a waiting (or paused) run waits for.
    #[serde(default)]
    pub waiting: Option<Waiting>,
    /// Its input.
    #[serde(default)]
    pub input: Value,
    /// The output, once succeeded.
    #[serde(default)]
    pub output: Option<Value>,
    /// `{name, message, stack?}` once failed; `{seq, error}` while paused.
    #[serde(default)]
    pub error: Option<Value>,
    /// The key it was started with.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// The parent run, for a child run.
    #[serde(default)]
    pub parent: Option<RunParent>,
    /// RFC 3339 (milliseconds).
    pub created_at: String,
    /// When it started (its `run.started` record).
    #[serde(default)]
    pub started_at: Option<String>,
    /// Its last change.
    #[serde(default)]
    pub updated_at: Option<String>,
    /// When it ended.
    #[serde(default)]
    pub ended_at: Option<String>,
    /// Its journal's extent.
    #[serde(default)]
    pub journal: JournalInfo,
}

/// [`Run::task`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunTask {
    /// The task name.
    pub name: String,
    /// The pinned version.
    pub version: u32,
    /// The version's content hash (`None` when the version was deleted).
    #[serde(default)]
    pub hash: Option<String>,
}

/// [`Run::waiting`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Waiting {
    /// `event` (also `child:<run>` names), `timer`, or `retry` (paused).
    pub kind: String,
    /// The event name, for `event`.
    #[serde(default)]
    pub name: Option<String>,
    /// When the wait ends by itself (RFC 3339).
    #[serde(default)]
    pub until: Option<String>,
}

/// [`Run::parent`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct RunParent {
    /// The parent run id.
    pub run: String,
    /// The seq of the parent's `child` call.
    pub seq: u64,
}

/// [`Run::journal`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct JournalInfo {
    /// The last record's seq (`None`: no record yet).
    #[serde(default)]
    pub last_seq: Option<u64>,
}

/// One journal record, as `journal` and the event stream carry it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Record {
    /// The run id.
    pub run: String,
    /// 0, 1, 2 … (dense).
    pub seq: u64,
    /// `run.started`, `call.requested`, `call.completed`, `run.succeeded`, …
    pub kind: String,
    /// When it was written (Unix milliseconds).
    pub at: i64,
    /// The payload.
    #[serde(default)]
    pub data: Value,
}

impl Record {
    /// `run.succeeded`, `run.failed` or `run.cancelled`: nothing follows it.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self.kind.as_str(),
            "run.succeeded" | "run.failed" | "run.cancelled"
        )
    }
}

/// What `send_event` answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct EventAccepted {
    /// Always `true` (a refusal is an error).
    pub accepted: bool,
    /// The event's number in the run's inbox.
    pub seq: u64,
    /// Whether a wait of the run took it at once (else it waits in the inbox).
    pub consumed: bool,
}

/// A page of a list.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Page<T> {
    /// This page's items.
    pub items: Vec<T>,
    /// Pass as the next request's cursor; `None` on the last page.
    #[serde(default)]
    pub next_cursor: Option<String>,
}

/// What `output` answers.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum RunOutput {
    /// The run succeeded with this output.
    Ready(Value),
    /// The run has not ended yet.
    Pending(Box<Run>),
}

/// Which runs [`crate::HostClient::list_runs`] lists, and which page.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFilter {
    /// Only this task's runs.
    pub task: Option<String>,
    /// Only runs in one of these states (empty: all).
    pub statuses: Vec<RunStatus>,
    /// Only the run started with this key.
    pub idempotency_key: Option<String>,
    /// At most this many (the server's default is 50, its cap 1000).
    pub limit: Option<usize>,
    /// The page after this cursor (a previous page's `next_cursor`).
    pub cursor: Option<String>,
    /// Oldest first instead of newest first.
    pub oldest_first: bool,
}

impl RunFilter {
    /// The runs of `task`, newest first.
    pub fn task(task: impl Into<String>) -> Self {
        RunFilter {
            task: Some(task.into()),
            ..RunFilter::default()
        }
    }
}

/// How `start` starts a run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct StartOptions {
    /// Same key and input → the existing run; same key, other input → a 409 error.
    pub idempotency_key: Option<String>,
    /// Pin this version instead of the latest.
    pub version: Option<u32>,
    /// Answer once the run ended, or after this long with the run as it is then.
    pub wait: Option<Duration>,
}
