//! The stored task, the tombstone an expired or deleted task leaves, and their one encoding.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use sequential_fetch_vm::ErrorInfo;
use sequential_fetch_vm::external::{ExternalResponse, FetchRequest, PendingCall, Status};

use crate::error::{Error, Result};

/// How long a tombstone (an expired or deleted task's id and when it went) is kept, so that a
/// late `resume` or `getTask` can say what happened: 7 days.
pub const TOMBSTONE_RETENTION_MS: i64 = 7 * 24 * 3_600_000;

/// The format name in every stored record.
pub const RECORD_FORMAT: &str = "sequential-flow-store/task";

/// The newest record version this build writes and reads.
pub const RECORD_VERSION: u64 = 1;

/// One task as the store keeps it and `getTask` returns it: the last `execute`/`resume`
/// response plus its timestamps (Unix milliseconds) and TTL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Task {
    /// The task id.
    pub id: String,
    /// The task's name, as `execute` was given it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `paused`, `completed` or `error` (`running` while a call works on it).
    pub status: Status,
    /// The task's code (what a `resume` without `originalCode` runs).
    pub code: String,
    /// The first pending fetch, when paused on one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fetch_request: Option<FetchRequest>,
    /// Every pending call, when paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<PendingCall>>,
    /// The state a `resume` continues from, when paused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_state: Option<String>,
    /// The result, when completed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// The error message, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `{name, message, stack}`, when failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_info: Option<ErrorInfo>,
    /// The TTL the last save used, in milliseconds.
    pub ttl: u64,
    /// When `execute` first saved it.
    pub created_at: i64,
    /// When it was last saved.
    pub updated_at: i64,
    /// When it expires: from then on it is invisible, and purged.
    pub expires_at: i64,
}

impl Task {
    /// The task a response becomes when saved at `now` with `ttl_ms`; `created_at` is kept
    /// from the previous save when there was one.
    pub fn from_response(
        id: String,
        code: String,
        response: ExternalResponse,
        created_at: Option<i64>,
        now: i64,
        ttl_ms: u64,
    ) -> Task {
        Task {
            id,
            name: response.name,
            status: response.status,
            code,
            fetch_request: response.fetch_request,
            pending: response.pending,
            vm_state: response.vm_state,
            result: response.result,
            error: response.error,
            error_info: response.error_info,
            ttl: ttl_ms,
            created_at: created_at.unwrap_or(now),
            updated_at: now,
            expires_at: now.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
        }
    }

    /// Whether the task is expired at `now`.
    pub fn is_expired(&self, now: i64) -> bool {
        self.expires_at <= now
    }

    /// The status as its lowercase word.
    pub fn status_word(&self) -> &'static str {
        match self.status {
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Completed => "completed",
            Status::Error => "error",
        }
    }
}

/// Why a task is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GoneReason {
    /// Its TTL ran out.
    Expired,
    /// `deleteTask` removed it.
    Deleted,
}

/// What is left of an expired or deleted task for [`TOMBSTONE_RETENTION_MS`]: its id and when
/// and why it went (no code, state or result).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Gone {
    /// The task id.
    pub id: String,
    /// Expired or deleted.
    pub reason: GoneReason,
    /// When it expired or was deleted.
    pub at: i64,
    /// When the tombstone itself is forgotten.
    pub forget_at: i64,
}

impl Gone {
    /// A tombstone for `id`, gone at `at` for `reason`.
    pub fn new(id: impl Into<String>, reason: GoneReason, at: i64) -> Gone {
        Gone {
            id: id.into(),
            reason,
            at,
            forget_at: at.saturating_add(TOMBSTONE_RETENTION_MS),
        }
    }
}

/// What a backend stores under one id: a task or its tombstone.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)] // short-lived values, matched by callers: no box
pub enum Record {
    /// A task (possibly past its `expires_at`, until purged).
    Task(Task),
    /// An expired or deleted task's tombstone.
    Gone(Gone),
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    format: String,
    version: u64,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(clippy::large_enum_variant)]
enum Body {
    Task(Task),
    Gone(Gone),
}

impl Record {
    /// The id it is stored under.
    pub fn id(&self) -> &str {
        match self {
            Record::Task(t) => &t.id,
            Record::Gone(g) => &g.id,
        }
    }

    /// When the purge must look at it (a task's `expires_at`, a tombstone's `forget_at`): the
    /// key of every backend's expiry index.
    pub fn due_at(&self) -> i64 {
        match self {
            Record::Task(t) => t.expires_at,
            Record::Gone(g) => g.forget_at,
        }
    }

    /// The record as stored: `{"format", "version", "task"|"gone": {...}}`.
    pub fn encode(&self) -> String {
        let body = match self {
            Record::Task(t) => Body::Task(t.clone()),
            Record::Gone(g) => Body::Gone(g.clone()),
        };
        serde_json::to_string(&Envelope {
            format: RECORD_FORMAT.into(),
            version: RECORD_VERSION,
            body,
        })
        .unwrap_or_default()
    }

    /// Reads a stored record of `id` in `store` (both for the error).
    pub fn decode(text: &str, id: &str, store: &str) -> Result<Record> {
        let corrupt = |detail: String| Error::Corrupt {
            id: id.into(),
            store: store.into(),
            detail,
        };
        let head: Envelope<serde::de::IgnoredAny> =
            serde_json::from_str(text).map_err(|e| corrupt(format!("not a task record ({e})")))?;
        if head.format != RECORD_FORMAT {
            return Err(corrupt(format!(
                "format {:?}, expected {RECORD_FORMAT:?}",
                head.format
            )));
        }
        if head.version > RECORD_VERSION {
            return Err(corrupt(format!(
                "record version {} is newer than this build reads ({RECORD_VERSION}); upgrade",
                head.version
            )));
        }
        let env: Envelope<Body> =
            serde_json::from_str(text).map_err(|e| corrupt(format!("damaged record ({e})")))?;
        Ok(match env.body {
            Body::Task(t) => Record::Task(t),
            Body::Gone(g) => Record::Gone(g),
        })
    }
}
