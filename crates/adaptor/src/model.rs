//! The domain model: task names and versions, runs, journal records, signals and leases.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::error::Error;

/// Milliseconds since the Unix epoch. Every stored time is one of these.
pub type UnixMillis = i64;

/// The current wall-clock time in [`UnixMillis`].
pub fn now_millis() -> UnixMillis {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The longest task name allowed.
pub const TASK_NAME_MAX: usize = 64;

/// A validated task name: 1–64 characters of ASCII letters, digits, `-` and `_`, starting with
/// a letter or digit. Safe to use as a directory name and in URLs.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskName(String);

impl TaskName {
    /// The rule, as shown in error messages.
    pub const RULE: &'static str =
        "1-64 characters of ASCII letters, digits, '-' and '_', starting with a letter or digit";

    /// Validates `name`.
    pub fn new(name: impl Into<String>) -> Result<Self, Error> {
        let name = name.into();
        let first_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric());
        let rest_ok = name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !first_ok || !rest_ok || name.len() > TASK_NAME_MAX {
            return Err(Error::invalid(format!("task name {name:?}"), Self::RULE));
        }
        Ok(TaskName(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TaskName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TaskName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        TaskName::new(s)
    }
}

impl TryFrom<String> for TaskName {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        TaskName::new(s)
    }
}

impl From<TaskName> for String {
    fn from(n: TaskName) -> String {
        n.0
    }
}

/// A run's id: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RunId(uuid::Uuid);

impl RunId {
    /// A fresh id (UUID v7, monotonic within this process).
    #[allow(clippy::new_without_default)]
    pub fn new() -> Self {
        RunId(uuid::Uuid::now_v7())
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> uuid::Uuid {
        self.0
    }

    /// The 16 bytes of the UUID, big-endian (sorts like the id).
    pub fn as_bytes(&self) -> &[u8; 16] {
        self.0.as_bytes()
    }

    /// Rebuilds an id from its bytes.
    pub fn from_bytes(bytes: [u8; 16]) -> Self {
        RunId(uuid::Uuid::from_bytes(bytes))
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for RunId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        uuid::Uuid::parse_str(s).map(RunId).map_err(|_| {
            Error::invalid(
                format!("run id {s:?}"),
                "a UUID such as 0190c3e2-7a4b-7c00-8000-000000000000",
            )
        })
    }
}

/// Which version of a task to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionSel {
    /// The highest version number.
    Latest,
    /// Exactly this version.
    Exact(u32),
}

/// What a task version is made of, before it is stored.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTaskVersion {
    /// The task.
    pub task: TaskName,
    /// `code.js`.
    pub code: String,
    /// `graph.json`, when the task has one.
    pub graph: Option<Value>,
    /// `config.json`.
    pub config: Value,
}

impl NewTaskVersion {
    /// The content hash: lowercase hex SHA-256 of code, graph and config (canonical JSON).
    /// Identical content always hashes the same, on every backend.
    pub fn content_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"sequential-task-v1\0code\0");
        h.update(self.code.as_bytes());
        h.update(b"\0graph\0");
        if let Some(g) = &self.graph {
            h.update(canonical_json(g).as_bytes());
        }
        h.update(b"\0config\0");
        h.update(canonical_json(&self.config).as_bytes());
        hex(&h.finalize())
    }
}

/// A stored, immutable version of a task. Versions are numbered 1, 2, 3 … per task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskVersion {
    /// The task.
    pub task: TaskName,
    /// 1, 2, 3 …
    pub version: u32,
    /// [`NewTaskVersion::content_hash`].
    pub hash: String,
    /// `code.js`.
    pub code: String,
    /// `graph.json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graph: Option<Value>,
    /// `config.json`.
    pub config: Value,
    /// When it was stored.
    pub created_at: UnixMillis,
}

/// The result of [`crate::StorageAdapter::put_task_version`].
#[derive(Clone, Debug, PartialEq)]
pub struct PutVersion {
    /// The stored version (new, or the existing one with the same hash).
    pub version: TaskVersion,
    /// `false` when identical content was already stored.
    pub created: bool,
}

/// One line of [`crate::StorageAdapter::list_tasks`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TaskSummary {
    /// The task.
    pub name: TaskName,
    /// Its highest version number.
    pub latest_version: u32,
    /// The hash of that version.
    pub latest_hash: String,
    /// When that version was stored.
    pub updated_at: UnixMillis,
}

/// Whether [`crate::StorageAdapter::delete_task`] may delete a task that has active runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeleteMode {
    /// Refuse with `Conflict` when the task has active runs.
    IfIdle,
    /// Delete the task, its versions and all its runs.
    Force,
}

/// The life-cycle state of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for a worker.
    Queued,
    /// Claimed by a worker.
    Running,
    /// Waiting for a timer (`wake_at`) or an event.
    Waiting,
    /// Waiting for an outside caller (external mode, retries spent).
    Paused,
    /// Cancellation requested; the worker is winding down.
    Stopping,
    /// Ended with a result.
    Succeeded,
    /// Ended with an error.
    Failed,
    /// Ended by cancellation.
    Cancelled,
}

impl RunStatus {
    /// Every status, in life-cycle order.
    pub const ALL: [RunStatus; 8] = [
        RunStatus::Queued,
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Paused,
        RunStatus::Stopping,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ];

    /// `true` for succeeded, failed and cancelled.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }

    /// The lowercase name used in storage and on the command line.
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

impl FromStr for RunStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        RunStatus::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    format!("run status {s:?}"),
                    "one of queued, running, waiting, paused, stopping, succeeded, failed, cancelled",
                )
            })
    }
}

/// The run and journal seq that started a child run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    /// The parent run.
    pub run: RunId,
    /// The seq of the parent's `child` call.
    pub seq: u64,
}

/// A worker's lease on a run. `token` is the fencing token: every claim bumps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Who holds it (host, pid, worker id).
    pub owner: String,
    /// The fencing token of this claim.
    pub token: u64,
    /// When it runs out unless renewed.
    pub expires_at: UnixMillis,
}

/// A run of a task version.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// UUID v7.
    pub id: RunId,
    /// The task.
    pub task: TaskName,
    /// The pinned task version.
    pub version: u32,
    /// Life-cycle state.
    pub status: RunStatus,
    /// The run's input.
    pub input: Value,
    /// The result, once succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The error, once failed (or the last error of a paused call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Value>,
    /// The parent, for a child run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<ParentRef>,
    /// The idempotency key it was started with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// When a waiting run becomes runnable again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wake_at: Option<UnixMillis>,
    /// What a waiting run waits for (an event name), for display and signal wake-ups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting_for: Option<String>,
    /// The current lease, while claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease: Option<Lease>,
    /// The highest fencing token ever issued for this run (0 = never claimed).
    pub fence: u64,
    /// How many times it was claimed.
    pub attempt: u32,
    /// Bumped by every write; [`crate::StorageAdapter::update_run`] compares it.
    pub revision: u64,
    /// Creation time.
    pub created_at: UnixMillis,
    /// Last write.
    pub updated_at: UnixMillis,
    /// When it reached a terminal status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<UnixMillis>,
    /// When it may be pruned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<UnixMillis>,
}

/// What [`crate::StorageAdapter::create_run_of`] needs: a [`NewRun`] whose version is chosen
/// when the run is stored (the latest at that moment, or a pinned one).
#[derive(Clone, Debug, PartialEq)]
pub struct NewRunOf {
    /// The task.
    pub task: TaskName,
    /// Which of its versions to pin.
    pub version: VersionSel,
    /// The input.
    pub input: Value,
    /// As [`NewRun::idempotency_key`].
    pub idempotency_key: Option<String>,
}

impl NewRunOf {
    /// A run of the latest version of `task` with `input`, no key.
    pub fn latest(task: TaskName, input: Value) -> Self {
        NewRunOf {
            task,
            version: VersionSel::Latest,
            input,
            idempotency_key: None,
        }
    }

    /// The [`NewRun`] of version `version` (the one `self.version` picked).
    pub fn pinned(self, version: u32) -> NewRun {
        NewRun {
            task: self.task,
            version,
            input: self.input,
            idempotency_key: self.idempotency_key,
            parent: None,
        }
    }
}

/// What [`crate::StorageAdapter::create_run`] needs.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRun {
    /// The task.
    pub task: TaskName,
    /// The version to pin; it must exist.
    pub version: u32,
    /// The input.
    pub input: Value,
    /// Same key and same input → the existing run; same key, other input → `Conflict`.
    pub idempotency_key: Option<String>,
    /// The parent, for a child run.
    pub parent: Option<ParentRef>,
}

impl NewRun {
    /// A run of `task` version `version` with `input`, no key, no parent.
    pub fn new(task: TaskName, version: u32, input: Value) -> Self {
        NewRun {
            task,
            version,
            input,
            idempotency_key: None,
            parent: None,
        }
    }
}

/// The result of [`crate::StorageAdapter::create_run`].
#[derive(Clone, Debug, PartialEq)]
pub enum Created {
    /// A new run, queued.
    Created(Run),
    /// The run already started with this idempotency key and input.
    Existing(Run),
}

impl Created {
    /// The run, new or existing.
    pub fn run(&self) -> &Run {
        match self {
            Created::Created(r) | Created::Existing(r) => r,
        }
    }

    /// The run, new or existing.
    pub fn into_run(self) -> Run {
        match self {
            Created::Created(r) | Created::Existing(r) => r,
        }
    }
}

/// Which runs [`crate::StorageAdapter::list_runs`] returns.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RunFilter {
    /// Only this task's runs.
    pub task: Option<TaskName>,
    /// Only runs in one of these states (empty = any).
    pub statuses: Vec<RunStatus>,
}

/// Listing order (runs sort by id, which is creation time).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Order {
    /// Oldest first.
    #[default]
    OldestFirst,
    /// Newest first.
    NewestFirst,
}

/// A page request: keyset paging on the run id, so pages never skip or repeat a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Page {
    /// Start after this run id (exclusive), in `order`.
    pub after: Option<RunId>,
    /// At most this many runs.
    pub limit: usize,
    /// The order.
    pub order: Order,
}

impl Page {
    /// The first `limit` runs, oldest first.
    pub fn first(limit: usize) -> Self {
        Page {
            after: None,
            limit,
            order: Order::OldestFirst,
        }
    }
}

/// One page of runs.
#[derive(Clone, Debug, PartialEq)]
pub struct RunPage {
    /// The runs.
    pub runs: Vec<Run>,
    /// Pass as `Page::after` for the next page; `None` when this was the last page.
    pub next: Option<RunId>,
}

/// One journal record. `(run, seq)` is unique; seqs are dense from 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JournalRecord {
    /// The run.
    pub run: RunId,
    /// 0, 1, 2 …
    pub seq: u64,
    /// `run.started`, `call.requested`, `call.completed`, `timer.armed`, `log`, …
    pub kind: String,
    /// When it happened.
    pub at: UnixMillis,
    /// The payload.
    pub data: Value,
}

/// A fencing token presented with a write: the write fails with `Fenced` unless it is the
/// run's current token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fence {
    /// Unfenced write (an admin or an external-mode caller that holds no lease).
    None,
    /// Write as the holder of this token.
    Token(u64),
}

/// Whether [`crate::StorageAdapter::claim_run`] may take a run from a live lease.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Takeover {
    /// Only a claimable run (queued, due, or with an expired lease).
    IfClaimable,
    /// Also a `running` or `stopping` run whose lease has not expired: the caller knows its
    /// owner is gone (e.g. the owning process on this host no longer exists).
    Steal,
}

/// A claimed run with its fencing token.
#[derive(Clone, Debug, PartialEq)]
pub struct Claim {
    /// The run, now `running` with the new lease.
    pub run: Run,
    /// The fencing token to present with appends.
    pub token: u64,
    /// The length of the run's journal (its next seq), when the adapter read it with the
    /// claim at no extra cost; `None` when it did not. An adapter sets it only for a run
    /// claimed from `queued` (a new run, or a paused run sent back by a retry), whose journal
    /// no lease holder could be writing: a driver that is told `Some(0)` need not read it.
    pub journal_len: Option<u64>,
    /// The content hash of the run's task version ([`TaskVersion::hash`]), when the adapter
    /// read it with the claim; `None` when it did not. A driver that kept that version from an
    /// earlier run need not read it again: the hash names its content.
    pub version_hash: Option<String>,
}

/// What [`crate::StorageAdapter::claim`] needs.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimRequest {
    /// Who claims (host, pid, worker id).
    pub worker: String,
    /// The caller's clock: runs waiting until `now` or with leases expired by `now` are runnable.
    pub now: UnixMillis,
    /// Lease length in milliseconds.
    pub lease_ms: u64,
    /// At most this many runs.
    pub limit: usize,
}

/// A signal (event) sent to a run; `seq` orders a run's signals from 0.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Signal {
    /// The run.
    pub run: RunId,
    /// Event name.
    pub name: String,
    /// Payload.
    pub payload: Value,
    /// 0, 1, 2 … per run.
    pub seq: u64,
    /// When it was received.
    pub at: UnixMillis,
}

/// Serializes JSON with object keys sorted, no whitespace: equal values give equal text.
pub fn canonical_json(v: &Value) -> String {
    let mut out = String::new();
    write_canonical(v, &mut out);
    out
}

fn write_canonical(v: &Value, out: &mut String) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, k) in keys.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String((*k).clone()).to_string());
                out.push(':');
                write_canonical(&map[*k], out);
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn task_names_follow_the_rule() {
        for ok in ["a", "order-flow", "my_task2", &"x".repeat(64)] {
            assert!(TaskName::new(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "../x",
            "a b",
            "-lead",
            ".hidden",
            "a/b",
            "é",
            &"x".repeat(65),
        ] {
            let err = TaskName::new(bad).unwrap_err().to_string();
            assert!(err.contains("1-64 characters"), "{bad:?}: {err}");
        }
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_depth() {
        let a = json!({"b": 1, "a": {"y": [1, {"d": 2, "c": 3}], "x": null}});
        assert_eq!(
            canonical_json(&a),
            r#"{"a":{"x":null,"y":[1,{"c":3,"d":2}]},"b":1}"#
        );
    }

    #[test]
    fn content_hash_covers_code_graph_and_config() {
        let base = NewTaskVersion {
            task: TaskName::new("t").unwrap(),
            code: "1".into(),
            graph: None,
            config: json!({"a": 1, "b": 2}),
        };
        let mut reordered = base.clone();
        reordered.config = json!({"b": 2, "a": 1});
        assert_eq!(base.content_hash(), reordered.content_hash());
        let mut code = base.clone();
        code.code = "2".into();
        let mut graph = base.clone();
        graph.graph = Some(json!({}));
        let hashes = [
            base.content_hash(),
            code.content_hash(),
            graph.content_hash(),
        ];
        assert_eq!(
            hashes
                .iter()
                .collect::<std::collections::HashSet<_>>()
                .len(),
            3
        );
    }

    #[test]
    fn run_ids_round_trip_and_sort_by_time() {
        let a = RunId::new();
        let b = RunId::new();
        assert!(a < b);
        assert_eq!(a.to_string().parse::<RunId>().unwrap(), a);
        assert!("not-a-uuid".parse::<RunId>().is_err());
        assert_eq!("failed".parse::<RunStatus>().unwrap(), RunStatus::Failed);
        assert!("done".parse::<RunStatus>().is_err());
    }
}
