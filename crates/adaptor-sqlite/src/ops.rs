//! The storage operations as plain functions on a connection; semantics come from `rules`.

use rusqlite::types::{ToSqlOutput, Value as SqlValue, ValueRef};
use rusqlite::{Connection, OptionalExtension, Row, params, params_from_iter};
use sequential_adaptor::rules;
use sequential_adaptor::{
    Claim, ClaimRequest, Created, DeleteMode, Error, Fence, JournalRecord, NewRun, NewTaskVersion,
    Order, Page, PutVersion, Result, Run, RunFilter, RunId, RunPage, RunStatus, Signal, TaskName,
    TaskSummary, TaskVersion, UnixMillis, VersionSel, now_millis,
};
use serde_json::Value;

use crate::schema::codec;

/// Turns driver errors into [`Error::Backend`] naming the database and the operation.
pub(crate) struct Ctx<'a> {
    pub(crate) conn: &'a Connection,
    pub(crate) db: &'a str,
}

impl Ctx<'_> {
    fn err(&self, doing: &str) -> impl Fn(rusqlite::Error) -> Error + '_ {
        let doing = doing.to_string();
        move |e| crate::schema::db_err(self.db, &doing, e)
    }
}

fn json_text(v: &Value) -> String {
    v.to_string()
}

fn parse_json(db: &str, what: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text)
        .map_err(|e| Error::backend(format!("SQLite {db}: decoding {what}"), e))
}

/// A stored value (journal record data, run body, signal payload): the binary form
/// ([`codec`]), or JSON text written by an earlier version.
fn stored_value(db: &str, what: &str, v: ValueRef<'_>) -> Result<Value> {
    codec::decode_stored(v).map_err(|e| Error::backend(format!("SQLite {db}: decoding {what}"), e))
}

fn run_not_found(id: RunId) -> Error {
    Error::not_found(format!("run {id}"))
}

// ---------------------------------------------------------------- task versions

fn version_from_row(db: &str, row: &Row<'_>) -> Result<TaskVersion> {
    let get = |e: rusqlite::Error| crate::schema::db_err(db, "reading a task version", e);
    let task: String = row.get(0).map_err(get)?;
    let graph: Option<String> = row.get(4).map_err(get)?;
    let config: String = row.get(5).map_err(get)?;
    Ok(TaskVersion {
        task: TaskName::new(task)?,
        version: row.get(1).map_err(get)?,
        hash: row.get(2).map_err(get)?,
        code: row.get(3).map_err(get)?,
        graph: graph
            .map(|g| parse_json(db, "a task graph", &g))
            .transpose()?,
        config: parse_json(db, "a task config", &config)?,
        created_at: row.get(6).map_err(get)?,
    })
}

const VERSION_COLS: &str = "task, version, hash, code, graph, config, created_at";

pub(crate) fn put_task_version(c: &Ctx<'_>, new: NewTaskVersion) -> Result<PutVersion> {
    let hash = new.content_hash();
    let existing = c
        .conn
        .prepare_cached(&format!(
            "SELECT {VERSION_COLS} FROM task_versions WHERE task = ?1 AND hash = ?2"
        ))
        .map_err(c.err("finding a task version"))?
        .query_row(params![new.task.as_str(), hash], |row| {
            Ok(version_from_row(c.db, row))
        })
        .optional()
        .map_err(c.err("finding a task version"))?;
    if let Some(v) = existing {
        return Ok(PutVersion {
            version: v?,
            created: false,
        });
    }
    let next: u32 = c
        .conn
        .prepare_cached("SELECT coalesce(max(version), 0) + 1 FROM task_versions WHERE task = ?1")
        .map_err(c.err("numbering a task version"))?
        .query_row([new.task.as_str()], |r| r.get(0))
        .map_err(c.err("numbering a task version"))?;
    let version = TaskVersion {
        task: new.task,
        version: next,
        hash,
        code: new.code,
        graph: new.graph,
        config: new.config,
        created_at: now_millis(),
    };
    c.conn
        .prepare_cached(&format!(
            "INSERT INTO task_versions ({VERSION_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
        ))
        .map_err(c.err("storing a task version"))?
        .execute(params![
            version.task.as_str(),
            version.version,
            version.hash,
            version.code,
            version.graph.as_ref().map(json_text),
            json_text(&version.config),
            version.created_at,
        ])
        .map_err(c.err("storing a task version"))?;
    Ok(PutVersion {
        version,
        created: true,
    })
}

pub(crate) fn get_task_version(
    c: &Ctx<'_>,
    task: &TaskName,
    sel: VersionSel,
) -> Result<TaskVersion> {
    let found = match sel {
        VersionSel::Latest => c
            .conn
            .prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM task_versions WHERE task = ?1 ORDER BY version DESC LIMIT 1"
            ))
            .map_err(c.err("reading a task version"))?
            .query_row([task.as_str()], |row| Ok(version_from_row(c.db, row)))
            .optional(),
        VersionSel::Exact(n) => c
            .conn
            .prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM task_versions WHERE task = ?1 AND version = ?2"
            ))
            .map_err(c.err("reading a task version"))?
            .query_row(params![task.as_str(), n], |row| Ok(version_from_row(c.db, row)))
            .optional(),
    }
    .map_err(c.err("reading a task version"))?;
    match (found, sel) {
        (Some(v), _) => v,
        (None, VersionSel::Latest) => Err(Error::not_found(format!(
            "task `{task}` (no stored version)"
        ))),
        (None, VersionSel::Exact(n)) => Err(Error::not_found(format!("task `{task}` version {n}"))),
    }
}

pub(crate) fn list_tasks(c: &Ctx<'_>) -> Result<Vec<TaskSummary>> {
    let mut stmt = c
        .conn
        .prepare_cached(
            "SELECT t.task, t.version, t.hash, t.created_at FROM task_versions t \
             WHERE t.version = (SELECT max(version) FROM task_versions WHERE task = t.task) \
             ORDER BY t.task",
        )
        .map_err(c.err("listing tasks"))?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(c.err("listing tasks"))?;
    let mut out = Vec::new();
    for row in rows {
        let (name, latest_version, latest_hash, updated_at) =
            row.map_err(c.err("listing tasks"))?;
        out.push(TaskSummary {
            name: TaskName::new(name)?,
            latest_version,
            latest_hash,
            updated_at,
        });
    }
    Ok(out)
}

pub(crate) fn delete_task(c: &Ctx<'_>, task: &TaskName, mode: DeleteMode) -> Result<()> {
    let versions: i64 = c
        .conn
        .query_row(
            "SELECT count(*) FROM task_versions WHERE task = ?1",
            [task.as_str()],
            |r| r.get(0),
        )
        .map_err(c.err("deleting a task"))?;
    let runs: i64 = c
        .conn
        .query_row(
            "SELECT count(*) FROM runs WHERE task = ?1",
            [task.as_str()],
            |r| r.get(0),
        )
        .map_err(c.err("deleting a task"))?;
    if versions == 0 && runs == 0 {
        return Err(Error::not_found(format!("task `{task}`")));
    }
    if mode == DeleteMode::IfIdle {
        let active: i64 = c
            .conn
            .query_row(
                "SELECT count(*) FROM runs WHERE task = ?1 \
                 AND status NOT IN ('succeeded', 'failed', 'cancelled')",
                [task.as_str()],
                |r| r.get(0),
            )
            .map_err(c.err("deleting a task"))?;
        if active > 0 {
            return Err(Error::conflict(format!(
                "task `{task}` has {active} active run(s); finish or cancel them, or delete with force"
            )));
        }
    }
    c.conn
        .execute("DELETE FROM runs WHERE task = ?1", [task.as_str()])
        .map_err(c.err("deleting a task's runs"))?;
    c.conn
        .execute("DELETE FROM task_versions WHERE task = ?1", [task.as_str()])
        .map_err(c.err("deleting a task's versions"))?;
    Ok(())
}

// ---------------------------------------------------------------- runs

/// A run's stored body (column `col` of `row`).
fn run_from_row(db: &str, row: &Row<'_>, col: usize) -> Result<Run> {
    let body = row
        .get_ref(col)
        .map_err(|e| crate::schema::db_err(db, "reading a run", e))?;
    if let ValueRef::Text(text) = body {
        // written by an earlier version
        return serde_json::from_slice(text)
            .map_err(|e| Error::backend(format!("SQLite {db}: decoding a run"), e));
    }
    serde_json::from_value(stored_value(db, "a run", body)?)
        .map_err(|e| Error::backend(format!("SQLite {db}: decoding a run"), e))
}

fn encode_run(db: &str, run: &Run) -> Result<Vec<u8>> {
    let v = serde_json::to_value(run)
        .map_err(|e| Error::backend(format!("SQLite {db}: encoding run {}", run.id), e))?;
    Ok(codec::encode(&v))
}

pub(crate) fn load_run(c: &Ctx<'_>, id: RunId) -> Result<Run> {
    c.conn
        .prepare_cached("SELECT body FROM runs WHERE id = ?1")
        .map_err(c.err("reading a run"))?
        .query_row([id.as_bytes()], |r| Ok(run_from_row(c.db, r, 0)))
        .optional()
        .map_err(c.err("reading a run"))?
        .unwrap_or_else(|| Err(run_not_found(id)))
}

fn insert_run(c: &Ctx<'_>, run: &Run) -> Result<()> {
    c.conn
        .prepare_cached(
            "INSERT INTO runs (id, task, version, status, wake_at, lease_expires, fence, revision, \
             idempotency_key, created_at, updated_at, ended_at, body) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        )
        .map_err(c.err("storing a run"))?
        .execute(params![
            run.id.as_bytes(),
            run.task.as_str(),
            run.version,
            run.status.as_str(),
            run.wake_at,
            run.lease.as_ref().map(|l| l.expires_at),
            run.fence as i64,
            run.revision as i64,
            run.idempotency_key,
            run.created_at,
            run.updated_at,
            run.ended_at,
            encode_run(c.db, run)?,
        ])
        .map_err(c.err("storing a run"))?;
    Ok(())
}

/// Overwrites a stored run (columns and body).
fn write_run(c: &Ctx<'_>, run: &Run) -> Result<()> {
    let n = c
        .conn
        .prepare_cached(
            "UPDATE runs SET version = ?2, status = ?3, wake_at = ?4, lease_expires = ?5, fence = ?6, \
             revision = ?7, updated_at = ?8, ended_at = ?9, body = ?10 WHERE id = ?1",
        )
        .map_err(c.err("writing a run"))?
        .execute(params![
            run.id.as_bytes(),
            run.version,
            run.status.as_str(),
            run.wake_at,
            run.lease.as_ref().map(|l| l.expires_at),
            run.fence as i64,
            run.revision as i64,
            run.updated_at,
            run.ended_at,
            encode_run(c.db, run)?,
        ])
        .map_err(c.err("writing a run"))?;
    if n == 0 {
        return Err(run_not_found(run.id));
    }
    Ok(())
}

/// Which of `ids` have ended (their `ended_at` is set).
pub(crate) fn ended_among(c: &Ctx<'_>, ids: &[RunId]) -> Result<Vec<RunId>> {
    let marks = vec!["?"; ids.len()].join(", ");
    let sql = format!("SELECT id FROM runs WHERE id IN ({marks}) AND ended_at IS NOT NULL");
    let mut stmt = c
        .conn
        .prepare_cached(&sql)
        .map_err(c.err("reading run ends"))?;
    let rows = stmt
        .query_map(params_from_iter(ids.iter().map(|id| id.as_bytes())), |r| {
            r.get::<_, [u8; 16]>(0).map(RunId::from_bytes)
        })
        .map_err(c.err("reading run ends"))?;
    rows.collect::<rusqlite::Result<Vec<_>>>()
        .map_err(c.err("reading run ends"))
}

pub(crate) fn create_run(c: &Ctx<'_>, new: NewRun) -> Result<Created> {
    if let Some(key) = &new.idempotency_key {
        let existing = c
            .conn
            .prepare_cached("SELECT body FROM runs WHERE idempotency_key = ?1")
            .map_err(c.err("finding an idempotency key"))?
            .query_row([key], |r| Ok(run_from_row(c.db, r, 0)))
            .optional()
            .map_err(c.err("finding an idempotency key"))?;
        if let Some(run) = existing {
            return rules::existing_for_key(run?, &new);
        }
    }
    let exists: bool = c
        .conn
        .prepare_cached("SELECT 1 FROM task_versions WHERE task = ?1 AND version = ?2")
        .map_err(c.err("checking a task version"))?
        .exists(params![new.task.as_str(), new.version])
        .map_err(c.err("checking a task version"))?;
    if !exists {
        return Err(Error::not_found(format!(
            "task `{}` version {}",
            new.task, new.version
        )));
    }
    let run = rules::new_run(new, now_millis());
    insert_run(c, &run)?;
    Ok(Created::Created(run))
}

pub(crate) fn update_run(c: &Ctx<'_>, new: &Run) -> Result<Run> {
    let stored = load_run(c, new.id)?;
    let run = rules::prepare_update(&stored, new, now_millis())?;
    write_run(c, &run)?;
    Ok(run)
}

pub(crate) fn settle_run(c: &Ctx<'_>, new: &Run, token: u64) -> Result<Run> {
    let stored = load_run(c, new.id)?;
    let run = rules::prepare_settle(&stored, new, token, now_millis())?;
    write_run(c, &run)?;
    Ok(run)
}

pub(crate) fn list_runs(c: &Ctx<'_>, filter: &RunFilter, page: Page) -> Result<RunPage> {
    let mut sql = String::from("SELECT body FROM runs WHERE 1 = 1");
    let mut args: Vec<SqlValue> = Vec::new();
    if let Some(task) = &filter.task {
        args.push(SqlValue::Text(task.as_str().to_string()));
        sql.push_str(&format!(" AND task = ?{}", args.len()));
    }
    if !filter.statuses.is_empty() {
        let mut marks = Vec::new();
        for st in &filter.statuses {
            args.push(SqlValue::Text(st.as_str().to_string()));
            marks.push(format!("?{}", args.len()));
        }
        sql.push_str(&format!(" AND status IN ({})", marks.join(", ")));
    }
    let (cmp, dir) = match page.order {
        Order::OldestFirst => (">", "ASC"),
        Order::NewestFirst => ("<", "DESC"),
    };
    if let Some(after) = page.after {
        args.push(SqlValue::Blob(after.as_bytes().to_vec()));
        sql.push_str(&format!(" AND id {cmp} ?{}", args.len()));
    }
    let limit = page.limit.min(i64::MAX as usize - 1);
    args.push(SqlValue::Integer(limit as i64 + 1));
    sql.push_str(&format!(" ORDER BY id {dir} LIMIT ?{}", args.len()));
    let mut stmt = c.conn.prepare_cached(&sql).map_err(c.err("listing runs"))?;
    let rows = stmt
        .query_map(params_from_iter(args), |r| Ok(run_from_row(c.db, r, 0)))
        .map_err(c.err("listing runs"))?;
    let mut runs = Vec::new();
    let mut more = false;
    for row in rows {
        if runs.len() == limit {
            more = true;
            break;
        }
        runs.push(row.map_err(c.err("listing runs"))??);
    }
    let next = if more {
        runs.last().map(|r| r.id)
    } else {
        None
    };
    Ok(RunPage { runs, next })
}

// ---------------------------------------------------------------- journal

/// The run's current fencing token; `NotFound` for an unknown run.
fn run_fence(c: &Ctx<'_>, id: RunId) -> Result<u64> {
    c.conn
        .prepare_cached("SELECT fence FROM runs WHERE id = ?1")
        .map_err(c.err("reading a run's fence"))?
        .query_row([id.as_bytes()], |r| r.get::<_, i64>(0))
        .optional()
        .map_err(c.err("reading a run's fence"))?
        .map(|f| f as u64)
        .ok_or_else(|| run_not_found(id))
}

/// The run's fencing token and journal length in one query; `NotFound` for an unknown run.
fn fence_and_len(c: &Ctx<'_>, id: RunId) -> Result<(u64, u64)> {
    c.conn
        .prepare_cached(
            "SELECT fence, (SELECT coalesce(max(seq) + 1, 0) FROM journal WHERE run = ?1) \
             FROM runs WHERE id = ?1",
        )
        .map_err(c.err("reading a run's fence and journal length"))?
        .query_row([id.as_bytes()], |r| {
            Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64))
        })
        .optional()
        .map_err(c.err("reading a run's fence and journal length"))?
        .ok_or_else(|| run_not_found(id))
}

fn record_from_row(db: &str, run: RunId, row: &Row<'_>) -> Result<JournalRecord> {
    let get = |e: rusqlite::Error| crate::schema::db_err(db, "reading a journal record", e);
    let kind = match row.get_ref(1).map_err(get)? {
        ValueRef::Integer(code) => codec::kind_name(code)
            .ok_or_else(|| {
                Error::backend(
                    format!("SQLite {db}: decoding a journal record"),
                    std::io::Error::other(format!("unknown record kind code {code}")),
                )
            })?
            .to_string(),
        _ => row.get(1).map_err(get)?,
    };
    Ok(JournalRecord {
        run,
        seq: row.get::<_, i64>(0).map_err(get)? as u64,
        kind,
        at: row.get(2).map_err(get)?,
        data: stored_value(db, "a journal record", row.get_ref(3).map_err(get)?)?,
    })
}

fn record_at(c: &Ctx<'_>, run: RunId, seq: u64) -> Result<Option<JournalRecord>> {
    c.conn
        .prepare_cached("SELECT seq, kind, at, data FROM journal WHERE run = ?1 AND seq = ?2")
        .map_err(c.err("reading a journal record"))?
        .query_row(params![run.as_bytes(), seq as i64], |row| {
            Ok(record_from_row(c.db, run, row))
        })
        .optional()
        .map_err(c.err("reading a journal record"))?
        .transpose()
}

thread_local! {
    /// A stand-in run carrying only what `rules::check_fence` looks at, made once per thread
    /// (making one draws a run id from the OS generator and allocates its fields).
    static FENCE_PROBE: std::cell::RefCell<Run> = std::cell::RefCell::new(rules::new_run(
        NewRun::new(TaskName::new("fence").expect("valid name"), 0, Value::Null),
        0,
    ));
}

/// `rules::check_fence` for run `id` whose current fencing token is `current`.
fn check_fence(id: RunId, current: u64, fence: Fence) -> Result<()> {
    FENCE_PROBE.with_borrow_mut(|probe| {
        probe.id = id;
        probe.fence = current;
        rules::check_fence(probe, fence)
    })
}

/// Records to append, made on the caller's thread: their data encoded once into one buffer, so
/// that the records themselves need not be copied to cross to the writer thread.
pub(crate) struct AppendBatch {
    /// The records without their data (`null`), for `rules::plan_append`'s checks.
    records: Vec<JournalRecord>,
    /// Every record's encoded data, one after another; `ends[i]` is where record `i`'s ends.
    data: Vec<u8>,
    ends: Vec<usize>,
}

impl AppendBatch {
    pub(crate) fn new(records: &[JournalRecord]) -> Self {
        let mut batch = AppendBatch {
            records: Vec::with_capacity(records.len()),
            data: Vec::with_capacity(records.len() * 128),
            ends: Vec::with_capacity(records.len()),
        };
        for r in records {
            batch.records.push(JournalRecord {
                run: r.run,
                seq: r.seq,
                kind: r.kind.clone(),
                at: r.at,
                data: Value::Null,
            });
            codec::encode_onto(&mut batch.data, &r.data);
            batch.ends.push(batch.data.len());
        }
        batch
    }

    fn data(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.data[start..self.ends[i]]
    }

    /// The records with their data, decoded from what will be written.
    fn full(&self) -> std::result::Result<Vec<JournalRecord>, codec::DecodeError> {
        let mut out = self.records.clone();
        for (i, r) in out.iter_mut().enumerate() {
            r.data = codec::decode(self.data(i))?;
        }
        Ok(out)
    }
}

pub(crate) fn append(c: &Ctx<'_>, run: RunId, batch: &AppendBatch, fence: Fence) -> Result<()> {
    let (current, stored) = fence_and_len(c, run)?;
    check_fence(run, current, fence)?;
    let records = &batch.records;
    let first_new = if records.first().is_some_and(|r| r.seq < stored) {
        // some records may be stored already: they are compared with their data
        let full = batch.full().map_err(|e| {
            Error::backend(format!("SQLite {}: re-reading an encoded record", c.db), e)
        })?;
        rules::plan_append(run, stored, &full, |seq| record_at(c, run, seq))?
    } else {
        // nothing to compare: the checks look at runs and seqs only
        rules::plan_append(run, stored, records, |seq| record_at(c, run, seq))?
    };
    if first_new == records.len() {
        return Ok(());
    }
    let mut stmt = c
        .conn
        .prepare_cached(
            "INSERT INTO journal (run, seq, kind, at, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(c.err("appending to a journal"))?;
    for (i, r) in records.iter().enumerate().skip(first_new) {
        // a known kind as its integer (migration 2), any other as text
        let kind = match codec::kind_code(&r.kind) {
            Some(code) => ToSqlOutput::Owned(SqlValue::Integer(code)),
            None => ToSqlOutput::Borrowed(ValueRef::Text(r.kind.as_bytes())),
        };
        stmt.execute(params![
            run.as_bytes(),
            r.seq as i64,
            kind,
            r.at,
            batch.data(i)
        ])
        .map_err(c.err("appending to a journal"))?;
    }
    Ok(())
}

pub(crate) fn read_journal(
    c: &Ctx<'_>,
    run: RunId,
    after_seq: Option<u64>,
    limit: usize,
) -> Result<Vec<JournalRecord>> {
    run_fence(c, run)?;
    let after = after_seq.map_or(-1, |s| s.min(i64::MAX as u64 - 1) as i64);
    let limit = limit.min(i64::MAX as usize) as i64;
    let mut stmt = c
        .conn
        .prepare_cached(
            "SELECT seq, kind, at, data FROM journal WHERE run = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
        )
        .map_err(c.err("reading a journal"))?;
    let rows = stmt
        .query_map(params![run.as_bytes(), after, limit], |row| {
            Ok(record_from_row(c.db, run, row))
        })
        .map_err(c.err("reading a journal"))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(row.map_err(c.err("reading a journal"))??);
    }
    Ok(out)
}

// ---------------------------------------------------------------- claims and leases

/// The queries that find claim candidates, one per kind of runnable run, each served by an index
/// and ordered by id; their first `limit` ids together are the oldest runnable runs.
/// Runnable runs with the time they became runnable (queued runs: their creation time, which
/// is the UUID v7 timestamp), so that claims go in deadline order.
const CANDIDATES: [&str; 3] = [
    "SELECT id, NULL FROM runs WHERE status = 'queued' ORDER BY id LIMIT ?2",
    "SELECT id, wake_at FROM runs INDEXED BY runs_by_wake WHERE status = 'waiting' \
     AND wake_at <= ?1 ORDER BY wake_at, id LIMIT ?2",
    "SELECT id, lease_expires FROM runs INDEXED BY runs_by_lease \
     WHERE status IN ('running', 'stopping') \
     AND (lease_expires IS NULL OR lease_expires <= ?1) ORDER BY lease_expires, id LIMIT ?2",
];

pub(crate) fn claim(c: &Ctx<'_>, req: &ClaimRequest) -> Result<Vec<Claim>> {
    if req.limit == 0 {
        return Ok(Vec::new());
    }
    let limit = req.limit.min(i64::MAX as usize) as i64;
    let mut ids: Vec<(i64, [u8; 16])> = Vec::new();
    for sql in CANDIDATES {
        let mut stmt = c
            .conn
            .prepare_cached(sql)
            .map_err(c.err("finding runnable runs"))?;
        let rows = stmt
            .query_map(params![req.now, limit], |r| {
                Ok((r.get::<_, Option<i64>>(1)?, r.get::<_, [u8; 16]>(0)?))
            })
            .map_err(c.err("finding runnable runs"))?;
        for row in rows {
            let (due, id) = row.map_err(c.err("finding runnable runs"))?;
            // a UUID v7 starts with its creation time in milliseconds
            let created = id[..6].iter().fold(0i64, |t, b| (t << 8) | i64::from(*b));
            ids.push((due.unwrap_or(created), id));
        }
    }
    ids.sort_unstable();
    ids.truncate(req.limit);
    let mut out = Vec::with_capacity(ids.len());
    for (_, id) in ids {
        let run = load_run(c, RunId::from_bytes(id))?;
        if !rules::is_claimable(&run, req.now) {
            continue;
        }
        let first = run.status == RunStatus::Queued;
        let mut claim = rules::claim_run(run, req);
        write_run(c, &claim.run)?;
        tell_claim(c, &mut claim, first)?;
        out.push(claim);
    }
    Ok(out)
}

/// What a claim tells beside the run, read in its transaction: the journal's length for a run
/// claimed from `queued` (`first`), and the hash of its task version. Two lookups by key
/// here spare the driver two reads of its own.
fn tell_claim(c: &Ctx<'_>, claim: &mut Claim, first: bool) -> Result<()> {
    let doing = "reading what a claim tells";
    let (len, hash) = c
        .conn
        .prepare_cached(
            "SELECT CASE WHEN ?3 THEN (SELECT coalesce(max(seq) + 1, 0) FROM journal WHERE run = ?1) END, \
                    (SELECT hash FROM task_versions WHERE task = ?2 AND version = ?4)",
        )
        .map_err(c.err(doing))?
        .query_row(
            params![
                claim.run.id.as_bytes(),
                claim.run.task.as_str(),
                first,
                claim.run.version
            ],
            |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<String>>(1)?)),
        )
        .map_err(c.err(doing))?;
    claim.journal_len = len.map(|n| n as u64);
    claim.version_hash = hash;
    Ok(())
}

/// Claims run `id` alone when claimable (or, with `Takeover::Steal`, running under a live lease).
pub(crate) fn claim_one(
    c: &Ctx<'_>,
    id: RunId,
    req: &ClaimRequest,
    takeover: sequential_adaptor::Takeover,
) -> Result<Option<Claim>> {
    let run = load_run(c, id)?;
    if !rules::is_claimable_with(&run, req.now, takeover) {
        return Ok(None);
    }
    let first = run.status == RunStatus::Queued;
    let mut claim = rules::claim_run(run, req);
    write_run(c, &claim.run)?;
    tell_claim(c, &mut claim, first)?;
    Ok(Some(claim))
}

pub(crate) fn renew(
    c: &Ctx<'_>,
    id: RunId,
    token: u64,
    now: UnixMillis,
    lease_ms: u64,
) -> Result<Run> {
    let run = rules::renew(load_run(c, id)?, token, now, lease_ms)?;
    write_run(c, &run)?;
    Ok(run)
}

pub(crate) fn release(c: &Ctx<'_>, id: RunId, token: u64) -> Result<Run> {
    let run = rules::release(load_run(c, id)?, token)?;
    write_run(c, &run)?;
    Ok(run)
}

// ---------------------------------------------------------------- signals and pruning

pub(crate) fn send_signal(c: &Ctx<'_>, id: RunId, name: &str, payload: &Value) -> Result<u64> {
    let stored = load_run(c, id)?;
    let revision = stored.revision;
    let run = rules::signal_target(stored, name, now_millis())?;
    let seq: i64 = c
        .conn
        .prepare_cached("SELECT coalesce(max(seq) + 1, 0) FROM signals WHERE run = ?1")
        .map_err(c.err("numbering a signal"))?
        .query_row([id.as_bytes()], |r| r.get(0))
        .map_err(c.err("numbering a signal"))?;
    c.conn
        .prepare_cached(
            "INSERT INTO signals (run, seq, name, payload, at) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(c.err("storing a signal"))?
        .execute(params![
            id.as_bytes(),
            seq,
            name,
            codec::encode(payload),
            now_millis()
        ])
        .map_err(c.err("storing a signal"))?;
    if run.revision != revision {
        write_run(c, &run)?;
    }
    Ok(seq as u64)
}

pub(crate) fn read_signals(c: &Ctx<'_>, id: RunId, after_seq: Option<u64>) -> Result<Vec<Signal>> {
    run_fence(c, id)?;
    let after = after_seq.map_or(-1, |s| s.min(i64::MAX as u64 - 1) as i64);
    let mut stmt = c
        .conn
        .prepare_cached(
            "SELECT seq, name, payload, at FROM signals WHERE run = ?1 AND seq > ?2 ORDER BY seq",
        )
        .map_err(c.err("reading signals"))?;
    let rows = stmt
        .query_map(params![id.as_bytes(), after], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                stored_value(c.db, "a signal payload", r.get_ref(2)?),
                r.get::<_, i64>(3)?,
            ))
        })
        .map_err(c.err("reading signals"))?;
    let mut out = Vec::new();
    for row in rows {
        let (seq, name, payload, at) = row.map_err(c.err("reading signals"))?;
        out.push(Signal {
            run: id,
            name,
            payload: payload?,
            seq: seq as u64,
            at,
        });
    }
    Ok(out)
}

/// Deletes one finished run ([`rules::check_deletable`]); its journal and signals go with it
/// (`ON DELETE CASCADE`) and so does its idempotency key (a column of the row), in the write's
/// transaction.
pub(crate) fn delete_run(c: &Ctx<'_>, id: RunId) -> Result<()> {
    let run = load_run(c, id)?;
    let parent = match run.parent {
        Some(p) => match load_run(c, p.run) {
            Ok(parent) => Some(parent),
            Err(Error::NotFound { .. }) => None,
            Err(e) => return Err(e),
        },
        None => None,
    };
    rules::check_deletable(&run, parent.as_ref())?;
    c.conn
        .execute("DELETE FROM runs WHERE id = ?1", [id.as_bytes()])
        .map_err(c.err("deleting a run"))?;
    Ok(())
}

/// Removes finished runs that ended before `older_than` (`rules::is_prunable`, in SQL).
pub(crate) fn prune(c: &Ctx<'_>, older_than: UnixMillis) -> Result<u64> {
    let terminal: Vec<&str> = RunStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect();
    let sql = format!(
        "DELETE FROM runs WHERE status IN ('{}') AND coalesce(ended_at, updated_at) < ?1",
        terminal.join("', '")
    );
    let n = c
        .conn
        .execute(&sql, [older_than])
        .map_err(c.err("pruning runs"))?;
    Ok(n as u64)
}
