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

pub(crate) fn unsigned<T: TryFrom<i64>>(col: &str, v: i64) -> R<T> {
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

/// The columns of a journal record, for [`record_from_row`].
macro_rules! record_cols {
    () => {
        "seq, kind, at, data::text AS data, packed"
    };
}
pub(crate) use record_cols;

/// `SELECT seq, kind, at, data::text AS data, packed` (`record_cols!`): a packed record, or
/// one written before packing.
pub(crate) fn record_from_row(run: RunId, row: &PgRow) -> R<JournalRecord> {
    let (kind, data) = match get::<Option<Vec<u8>>>(row, "packed")? {
        Some(packed) => unpack(&packed)?,
        None => (
            get(row, "kind")?,
            decode_json("a journal record", &get::<String>(row, "data")?)?,
        ),
    };
    Ok(JournalRecord {
        run,
        seq: get::<i64>(row, "seq")? as u64,
        kind,
        at: get(row, "at")?,
        data,
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

// ---------------------------------------------------------------- packed journal records

/// How a journal record's kind and data are stored since schema version 2: one `bytea`, its
/// first byte the format. Format 1: a zstd frame (its 4 magic bytes left off) of
/// `kind NUL data-as-JSON-text`, compressed with [`DICTIONARY_V1`] as a raw-content
/// dictionary. Records written before version 2 keep their `kind` and `data` columns.
const PACKED_V1: u8 = 1;

/// Text that journal records share (the engine's record kinds and the shapes of its records),
/// which a record's compression refers back to instead of repeating. Frozen: records written
/// with it are read with it; a different dictionary is a new format byte.
const DICTIONARY_V1: &[u8] = br#"log child.started timer.armed run.paused run.cancelled run.failed
{"error":{"message":"","name":"Error","stack":""}}{"level":"info","message":""}
{"seq":0,"wakeAt":0}{"childRun":"","seq":0}"status":404,"statusText":"Not Found""content-length":"
"text/plain; charset=utf-8""application/x-www-form-urlencoded""method":"POST","body":"
run.started{"hash":"","input":{"steps":10,"url":"http://127.0.0.1:"},"task":"","version":1}
run.succeeded{"output":{"last":9,"steps":10}}
call.requested{"kind":"fetch","request":{"options":{},"url":"https://localhost:8080/step?i=1"},"seq":1}
call.completed{"kind":"fetch","result":{"ok":{"data":{"i":0,"ok":true},"headers":{"content-type":"application/json","date":"Sat, 05 Dec 2026 22:09:07 GMT"},"status":200,"statusText":"OK"}},"seq":0}
"#;

const ZSTD_MAGIC: [u8; 4] = 0xFD2F_B528_u32.to_le_bytes();

/// zstd level 3 (zstd's default). On a fetch step's two records level 6 saved 2 of 78 bytes
/// and took 60% longer: packing was 5.7% of a PostgreSQL worker's CPU in the engine bench at
/// level 6, 3.8% at level 3, and the stored size per run did not move.
const LEVEL: i32 = 3;

fn dictionaries() -> &'static (
    zstd::dict::EncoderDictionary<'static>,
    zstd::dict::DecoderDictionary<'static>,
) {
    static DICTS: std::sync::OnceLock<(
        zstd::dict::EncoderDictionary<'static>,
        zstd::dict::DecoderDictionary<'static>,
    )> = std::sync::OnceLock::new();
    DICTS.get_or_init(|| {
        (
            zstd::dict::EncoderDictionary::copy(DICTIONARY_V1, LEVEL),
            zstd::dict::DecoderDictionary::copy(DICTIONARY_V1),
        )
    })
}

thread_local! {
    // one context per thread: making one costs more than compressing a record
    static COMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { std::cell::RefCell::new(None) };
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

fn packing_err(doing: &str, e: impl std::fmt::Display) -> Fail {
    Fail::Store(Error::backend(
        format!("{doing} a journal record"),
        e.to_string(),
    ))
}

/// A record's kind (no NUL: see [`storable`]) and data, packed (format 1).
pub(crate) fn pack(kind: &str, data: &Value) -> R<Vec<u8>> {
    let mut plain = Vec::with_capacity(kind.len() + 64);
    plain.extend_from_slice(kind.as_bytes());
    plain.push(0);
    serde_json::to_writer(&mut plain, data).map_err(|e| packing_err("encoding", e))?;
    let frame = COMPRESSOR.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = Some(zstd::bulk::Compressor::with_prepared_dictionary(
                &dictionaries().0,
            )?);
        }
        c.as_mut().expect("made above").compress(&plain)
    });
    let frame = frame.map_err(|e| packing_err("compressing", e))?;
    let body = frame
        .strip_prefix(&ZSTD_MAGIC[..])
        .ok_or_else(|| packing_err("compressing", "a zstd frame without its magic number"))?;
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(PACKED_V1);
    out.extend_from_slice(body);
    Ok(out)
}

/// The kind and data of a packed record.
pub(crate) fn unpack(packed: &[u8]) -> R<(String, Value)> {
    let Some((&PACKED_V1, body)) = packed.split_first() else {
        return Err(packing_err(
            "reading",
            format!(
                "unknown format {:?} (written by a newer sequential-ecosystem?)",
                packed.first()
            ),
        ));
    };
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&ZSTD_MAGIC);
    frame.extend_from_slice(body);
    let size = zstd::zstd_safe::get_frame_content_size(&frame)
        .ok()
        .flatten()
        .ok_or_else(|| packing_err("reading", "a zstd frame without its size"))?;
    let plain = DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        if d.is_none() {
            *d = Some(zstd::bulk::Decompressor::with_prepared_dictionary(
                &dictionaries().1,
            )?);
        }
        d.as_mut()
            .expect("made above")
            .decompress(&frame, size as usize)
    });
    let plain = plain.map_err(|e| packing_err("decompressing", e))?;
    let nul = plain
        .iter()
        .position(|&b| b == 0)
        .ok_or_else(|| packing_err("reading", "no end to the record kind"))?;
    let kind = std::str::from_utf8(&plain[..nul])
        .map_err(|e| packing_err("reading", e))?
        .to_string();
    let data = serde_json::from_slice(&plain[nul + 1..]).map_err(|e| packing_err("reading", e))?;
    Ok((kind, data))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn packed_records_read_back_as_written() {
        let cases = [
            (
                "call.completed",
                json!({"kind":"fetch","result":{"ok":{"data":{"i":3,"ok":true},"headers":{"content-type":"application/json","date":"Sun, 06 Dec 2026 10:00:00 GMT"},"status":200,"statusText":"OK"}},"seq":3}),
            ),
            (
                "call.requested",
                json!({"kind":"fetch","request":{"options":{},"url":"http://127.0.0.1:41234/step?i=7"},"seq":7}),
            ),
            (
                "x\u{1F600}",
                json!({"nul":"a\u{0000}b","big":12345678901234567890u64,"f":1.5,"neg":-3}),
            ),
            ("", json!(null)),
            ("k", json!("x".repeat(100_000))),
        ];
        for (kind, data) in cases {
            let packed = pack(kind, &data).unwrap();
            assert_eq!(packed[0], PACKED_V1);
            assert_eq!(unpack(&packed).unwrap(), (kind.to_string(), data));
        }
        assert!(unpack(&[9, 1, 2]).is_err());
        assert!(unpack(&[]).is_err());
    }

    #[test]
    fn an_engine_step_packs_small() {
        let done = json!({"kind":"fetch","result":{"ok":{"data":{"i":3,"ok":true},"headers":{"content-type":"application/json","date":"Sun, 06 Dec 2026 10:00:00 GMT"},"status":200,"statusText":"OK"}},"seq":3});
        let asked = json!({"kind":"fetch","request":{"options":{},"url":"http://127.0.0.1:41234/step?i=7"},"seq":7});
        let (a, b) = (
            pack("call.completed", &done).unwrap().len(),
            pack("call.requested", &asked).unwrap().len(),
        );
        // measured: 183 → 38 and 89 → 32 bytes
        assert!(
            a < 80 && b < 60,
            "call.completed {} → {a} bytes, call.requested {} → {b}",
            done.to_string().len(),
            asked.to_string().len()
        );
    }
}
