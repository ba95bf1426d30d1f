//! Rows to model types and back: JSON as text, ids as UUIDs, numbers as `bigint`.

use sequential_adaptor::{
    Error, JournalRecord, Lease, ParentRef, Run, RunId, RunStatus, Signal, TaskName, TaskVersion,
};
use serde_json::Value;
use sqlx::Row;
use sqlx::postgres::PgRow;
use uuid::Uuid;

/// Statements (and `BEGIN`/`COMMIT`s) this process's stores sent and got an answer to.
static ROUND_TRIPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Counts one round trip; returns what it is given (use as `.map(counted)` after an `.await`).
pub(crate) fn counted<T>(answer: T) -> T {
    ROUND_TRIPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    answer
}

/// The count behind [`crate::round_trips`].
pub(crate) fn round_trips() -> u64 {
    ROUND_TRIPS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Why an operation failed before it became an [`Error`]: a driver error (with what was being
/// done, so connection failures can be retried and everything can be named) or a contract error.
#[derive(Debug)]
pub(crate) enum Fail {
    Sql(&'static str, sqlx::Error),
    Store(Error),
}

impl From<Error> for Fail {
    fn from(e: Error) -> Self {
        Fail::Store(e)
    }
}

pub(crate) type R<T> = std::result::Result<T, Fail>;

/// Attaches what was being done to a driver error.
pub(crate) trait Doing<T> {
    fn doing(self, what: &'static str) -> R<T>;
}

impl<T> Doing<T> for std::result::Result<T, sqlx::Error> {
    fn doing(self, what: &'static str) -> R<T> {
        self.map_err(|e| Fail::Sql(what, e))
    }
}

/// The columns of a run, in the order [`run_from_row`] reads them by name.
macro_rules! run_cols {
    () => {
        "id, task, version, status, input::text AS input, output::text AS output, \
         error::text AS error, parent_run, parent_seq, idempotency_key, wake_at, waiting_for, \
         lease_owner, lease_token, lease_expires, fence, attempt, revision, created_at, \
         updated_at, ended_at, expires_at"
    };
}
pub(crate) use run_cols;

pub(crate) fn json_text(v: &Value) -> String {
    v.to_string()
}

fn decode_json(what: &str, text: &str) -> R<Value> {
    serde_json::from_str(text).map_err(|e| {
        Fail::Store(Error::backend(
            format!("decoding {what} from PostgreSQL"),
            e,
        ))
    })
}

fn get<'r, T>(row: &'r PgRow, col: &'static str) -> R<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(col).doing("reading a row")
}

fn unsigned<T: TryFrom<i64>>(col: &str, v: i64) -> R<T> {
    T::try_from(v).map_err(|_| {
        Fail::Store(Error::backend(
            format!("decoding column {col} from PostgreSQL"),
            format!("{v} is out of range"),
        ))
    })
}

pub(crate) fn run_id(u: Uuid) -> RunId {
    RunId::from_bytes(*u.as_bytes())
}

pub(crate) fn uuid(id: RunId) -> Uuid {
    id.as_uuid()
}

/// Refuses text PostgreSQL cannot store (it has no NUL character in `text`).
pub(crate) fn storable(what: &str, s: &str) -> R<()> {
    if s.contains('\0') {
        return Err(Fail::Store(Error::invalid(
            format!("{what} {s:?}"),
            "text without NUL characters (PostgreSQL text cannot hold them)",
        )));
    }
    Ok(())
}

pub(crate) fn run_from_row(row: &PgRow) -> R<Run> {
    let status: String = get(row, "status")?;
    let lease = match (
        get::<Option<String>>(row, "lease_owner")?,
        get::<Option<i64>>(row, "lease_token")?,
        get::<Option<i64>>(row, "lease_expires")?,
    ) {
        (Some(owner), Some(token), Some(expires_at)) => Some(Lease {
            owner,
            token: token as u64,
            expires_at,
        }),
        _ => None,
    };
    let parent = match (
        get::<Option<Uuid>>(row, "parent_run")?,
        get::<Option<i64>>(row, "parent_seq")?,
    ) {
        (Some(run), Some(seq)) => Some(ParentRef {
            run: run_id(run),
            seq: seq as u64,
        }),
        _ => None,
    };
    let opt_json = |col: &'static str| -> R<Option<Value>> {
        get::<Option<String>>(row, col)?
            .map(|t| decode_json(col, &t))
            .transpose()
    };
    Ok(Run {
        id: run_id(get(row, "id")?),
        task: TaskName::new(get::<String>(row, "task")?)?,
        version: unsigned("version", get(row, "version")?)?,
        status: status.parse::<RunStatus>()?,
        input: decode_json("a run's input", &get::<String>(row, "input")?)?,
        output: opt_json("output")?,
        error: opt_json("error")?,
        parent,
        idempotency_key: get(row, "idempotency_key")?,
        wake_at: get(row, "wake_at")?,
        waiting_for: get(row, "waiting_for")?,
        lease,
        fence: get::<i64>(row, "fence")? as u64,
        attempt: unsigned("attempt", get(row, "attempt")?)?,
        revision: get::<i64>(row, "revision")? as u64,
        created_at: get(row, "created_at")?,
        updated_at: get(row, "updated_at")?,
        ended_at: get(row, "ended_at")?,
        expires_at: get(row, "expires_at")?,
    })
}

/// `SELECT task, version, hash, code::text, graph::text, config::text, created_at`.
pub(crate) fn version_from_row(row: &PgRow) -> R<TaskVersion> {
    let code: String = get(row, "code")?;
    let code = match decode_json("a task's code", &code)? {
        Value::String(s) => s,
        other => {
            return Err(Fail::Store(Error::backend(
                "decoding a task's code from PostgreSQL",
                format!("expected a JSON string, found {other}"),
            )));
        }
    };
    Ok(TaskVersion {
        task: TaskName::new(get::<String>(row, "task")?)?,
        version: unsigned("version", get(row, "version")?)?,
        hash: get(row, "hash")?,
        code,
        graph: get::<Option<String>>(row, "graph")?
            .map(|g| decode_json("a task graph", &g))
            .transpose()?,
        config: decode_json("a task config", &get::<String>(row, "config")?)?,
        created_at: get(row, "created_at")?,
    })
}

/// `SELECT seq, kind, at, data::text`.
pub(crate) fn record_from_row(run: RunId, row: &PgRow) -> R<JournalRecord> {
    Ok(JournalRecord {
        run,
        seq: get::<i64>(row, "seq")? as u64,
        kind: get(row, "kind")?,
        at: get(row, "at")?,
        data: decode_json("a journal record", &get::<String>(row, "data")?)?,
    })
}

/// `SELECT seq, name, payload::text, at`.
pub(crate) fn signal_from_row(run: RunId, row: &PgRow) -> R<Signal> {
    Ok(Signal {
        run,
        name: get(row, "name")?,
        payload: decode_json("a signal payload", &get::<String>(row, "payload")?)?,
        seq: get::<i64>(row, "seq")? as u64,
        at: get(row, "at")?,
    })
}

/// The statuses `prune` and `delete_task` treat as finished, from the model.
pub(crate) fn terminal_statuses() -> Vec<&'static str> {
    RunStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect()
}
