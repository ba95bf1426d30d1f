//! The storage operations in SQL; every decision comes from `sequential_adaptor::rules`.
//!
//! Hot paths are one statement (one round trip, one commit): `append` (fence checked under the
//! run's row lock in the same statement; the appends of many runs offered together share one
//! statement, see `batch`), `update_run`, `settle_run`, `create_run`, `claim` and `claim_run`
//! (the claim written in SQL, then recomputed by `rules::claim_run` from the row as the
//! statement found it: a disagreement is an error, never a silent claim), `renew` and `release`
//! while the token holds, `read_journal`. The rarer operations (signals, deletes, a fenced
//! renew or release to explain) lock their rows, apply the rules in Rust and write back, in
//! one transaction.

use std::collections::HashMap;
use std::sync::Arc;

use sequential_adaptor::rules;
use sequential_adaptor::{
    Claim, ClaimRequest, Created, DeleteMode, Error, Fence, JournalRecord, Lease, NewRun, NewRunOf,
    NewTaskVersion, Order, Page, PutVersion, Run, RunFilter, RunId, RunPage, Signal, Takeover,
    TaskName, TaskSummary, TaskVersion, UnixMillis, VersionSel, now_millis,
};
use serde_json::Value;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};
use uuid::Uuid;

use crate::batch::{
    Create, CreateKind, CreateOffer, Creates, Offer, Outcome, Records, SettleOffer, Settled, Write,
    Writes,
};
use crate::codec::{
    Doing, Fail, R, counted, json_text, pack, record_cols, record_from_row, run_cols, run_from_row,
    signal_from_row, storable, terminal_statuses, unsigned, uuid, version_from_row,
};
use crate::conns::Conns;
use crate::errors::is_unique_violation;

/// How many times an optimistic statement is retried when it lost a race.
const RACES: usize = 8;

fn run_not_found(id: RunId) -> Fail {
    Fail::Store(Error::not_found(format!("run {id}")))
}

fn lost_race(what: &str) -> Fail {
    Fail::Store(Error::conflict(format!(
        "{what}: the stored state kept changing concurrently; try again"
    )))
}

/// A stand-in run carrying only what `rules::check_fence` and `rules::check_lease` read.
fn probe(id: RunId, fence: u64, token: Option<u64>) -> Run {
    let mut run = rules::new_run(
        NewRun::new(TaskName::new("probe").expect("valid name"), 0, Value::Null),
        0,
    );
    run.id = id;
    run.fence = fence;
    run.lease = token.map(|token| Lease {
        owner: String::new(),
        token,
        expires_at: 0,
    });
    run
}

fn check_run_text(run: &Run) -> R<()> {
    if let Some(k) = &run.idempotency_key {
        storable("idempotency key", k)?;
    }
    if let Some(w) = &run.waiting_for {
        storable("waiting_for", w)?;
    }
    if let Some(l) = &run.lease {
        storable("lease owner", &l.owner)?;
    }
    Ok(())
}

/// Runs `$body` in a transaction on a pooled connection named `$tx`: commits when it returns
/// `Ok`, rolls back at once when it fails, so its row locks are not held until the connection
/// is next used (a dropped sqlx transaction only queues its rollback).
macro_rules! transaction {
    ($db:expr, $doing:expr, |$tx:ident| $body:block) => {{
        // a connection of its own: dropped mid-way, it goes back to the pool, which sends the
        // queued ROLLBACK at once (see `conns`)
        let mut conn = $db.pool.take().await?;
        let mut $tx = sqlx::Connection::begin(&mut *conn)
            .await
            .map(counted)
            .doing($doing)?;
        let result: R<_> = async { $body }.await;
        match result {
            Ok(v) => {
                $tx.commit().await.map(counted).doing($doing)?;
                Ok(v)
            }
            Err(e) => {
                let _ = $tx.rollback().await.map(counted);
                Err(e)
            }
        }
    }};
}

/// The operations, on a pool.
#[derive(Debug, Clone)]
pub(crate) struct Db {
    /// The pool, and the free list its connections are reused from without a ping.
    pub(crate) pool: Arc<Conns>,
    /// Group commit of the appends and settles of many runs.
    pub(crate) writes: Arc<Writes>,
    /// Group commit of new runs (`create_run_of`).
    pub(crate) creates: Arc<Creates>,
}

impl Db {
    pub(crate) fn new(pool: PgPool) -> Self {
        let pool = Conns::new(pool);
        Db {
            writes: Arc::new(Writes::new(pool.clone())),
            creates: Arc::new(Creates::new(pool.clone())),
            pool,
        }
    }
}

// ---------------------------------------------------------------- task versions

impl Db {
    pub(crate) async fn put_task_version(&self, new: &NewTaskVersion) -> R<PutVersion> {
        let hash = new.content_hash();
        let code = json_text(&Value::String(new.code.clone()));
        let graph = new.graph.as_ref().map(json_text);
        let config = json_text(&new.config);
        for _ in 0..RACES {
            let found = sqlx::query(
                "SELECT task, version, hash, code::text AS code, graph::text AS graph, \
                 config::text AS config, created_at FROM task_versions WHERE task = $1 AND hash = $2",
            )
            .bind(new.task.as_str())
            .bind(&hash)
            .fetch_optional(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing("finding a task version")?;
            if let Some(row) = found {
                return Ok(PutVersion {
                    version: version_from_row(&row)?,
                    created: false,
                });
            }
            let created_at = now_millis();
            // numbered under the unique constraints: a concurrent put of the same task makes
            // this insert nothing, and the loop looks again
            let inserted = sqlx::query(
                "INSERT INTO task_versions (task, version, hash, code, graph, config, created_at) \
                 SELECT $1, coalesce(max(version), 0) + 1, $2, $3::json, $4::json, $5::json, $6 \
                 FROM task_versions WHERE task = $1 \
                 ON CONFLICT DO NOTHING RETURNING version",
            )
            .bind(new.task.as_str())
            .bind(&hash)
            .bind(&code)
            .bind(&graph)
            .bind(&config)
            .bind(created_at)
            .fetch_optional(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing("storing a task version")?;
            if let Some(row) = inserted {
                let version: i64 = row.try_get(0).doing("storing a task version")?;
                return Ok(PutVersion {
                    version: TaskVersion {
                        task: new.task.clone(),
                        version: version as u32,
                        hash,
                        code: new.code.clone(),
                        graph: new.graph.clone(),
                        config: new.config.clone(),
                        created_at,
                    },
                    created: true,
                });
            }
        }
        Err(lost_race(&format!(
            "storing a version of task `{}`",
            new.task
        )))
    }

    pub(crate) async fn get_task_version(
        &self,
        task: &TaskName,
        sel: VersionSel,
    ) -> R<TaskVersion> {
        let row = match sel {
            VersionSel::Latest => sqlx::query(
                "SELECT task, version, hash, code::text AS code, graph::text AS graph, \
                 config::text AS config, created_at FROM task_versions WHERE task = $1 \
                 ORDER BY version DESC LIMIT 1",
            )
            .bind(task.as_str())
            .fetch_optional(&mut *self.pool.get().await?)
            .await
            .map(counted),
            VersionSel::Exact(n) => sqlx::query(
                "SELECT task, version, hash, code::text AS code, graph::text AS graph, \
                 config::text AS config, created_at FROM task_versions \
                 WHERE task = $1 AND version = $2",
            )
            .bind(task.as_str())
            .bind(i64::from(n))
            .fetch_optional(&mut *self.pool.get().await?)
            .await
            .map(counted),
        }
        .doing("reading a task version")?;
        match (row, sel) {
            (Some(row), _) => version_from_row(&row),
            (None, VersionSel::Latest) => Err(Fail::Store(Error::not_found(format!(
                "task `{task}` (no stored version)"
            )))),
            (None, VersionSel::Exact(n)) => Err(Fail::Store(Error::not_found(format!(
                "task `{task}` version {n}"
            )))),
        }
    }

    pub(crate) async fn list_tasks(&self) -> R<Vec<TaskSummary>> {
        let rows = sqlx::query(
            "SELECT DISTINCT ON (task) task, version, hash, created_at FROM task_versions \
             ORDER BY task, version DESC",
        )
        .fetch_all(&mut *self.pool.get().await?)
        .await
        .map(counted)
        .doing("listing tasks")?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(TaskSummary {
                name: TaskName::new(row.try_get::<String, _>(0).doing("listing tasks")?)?,
                latest_version: row.try_get::<i64, _>(1).doing("listing tasks")? as u32,
                latest_hash: row.try_get(2).doing("listing tasks")?,
                updated_at: row.try_get(3).doing("listing tasks")?,
            });
        }
        // the database's collation may not sort like Rust strings do
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    pub(crate) async fn delete_task(&self, task: &TaskName, mode: DeleteMode) -> R<()> {
        transaction!(self, "deleting a task", |tx| {
            let row = sqlx::query(
                "SELECT (SELECT count(*) FROM task_versions WHERE task = $1), \
                    (SELECT count(*) FROM runs WHERE task = $1), \
                    (SELECT count(*) FROM runs WHERE task = $1 AND status <> ALL($2))",
            )
            .bind(task.as_str())
            .bind(terminal_statuses())
            .fetch_one(&mut *tx)
            .await
            .map(counted)
            .doing("deleting a task")?;
            let (versions, runs, active): (i64, i64, i64) = (
                row.try_get(0).doing("deleting a task")?,
                row.try_get(1).doing("deleting a task")?,
                row.try_get(2).doing("deleting a task")?,
            );
            if versions == 0 && runs == 0 {
                return Err(Fail::Store(Error::not_found(format!("task `{task}`"))));
            }
            if mode == DeleteMode::IfIdle && active > 0 {
                return Err(Fail::Store(Error::conflict(format!(
                    "task `{task}` has {active} active run(s); finish or cancel them, or delete with force"
                ))));
            }
            sqlx::query(
                "WITH gone AS (DELETE FROM runs WHERE task = $1 RETURNING id), \
                  j AS (DELETE FROM journal WHERE run IN (SELECT id FROM gone)), \
                  s AS (DELETE FROM signals WHERE run IN (SELECT id FROM gone)) \
             DELETE FROM task_versions WHERE task = $1",
            )
            .bind(task.as_str())
            .execute(&mut *tx)
            .await
            .map(counted)
            .doing("deleting a task")?;
            Ok(())
        })
    }
}

// ---------------------------------------------------------------- runs

/// Inserts a run as it is (every column); nothing when its idempotency key is taken or, with
/// `need_version`, when its task version does not exist. `true` when inserted.
const INSERT_RUN: &str = "INSERT INTO runs (id, task, version, status, input, output, error, \
     parent_run, parent_seq, idempotency_key, wake_at, waiting_for, lease_owner, lease_token, \
     lease_expires, fence, attempt, revision, created_at, updated_at, ended_at, expires_at) \
     SELECT $1, $2, $3, $4, $5::json, $6::json, $7::json, $8, $9, $10, $11, $12, $13, $14, $15, \
            $16, $17, $18, $19, $20, $21, $22 \
     WHERE NOT $23 OR EXISTS (SELECT 1 FROM task_versions WHERE task = $2 AND version = $3) \
     ON CONFLICT DO NOTHING RETURNING id";

/// [`INSERT_RUN`] of the version `$3` picks (NULL: the latest; else that one): the version is
/// read and the run stored in one statement, which returns the version pinned. No row: the task
/// or version is missing, or the idempotency key (or id) is taken.
const INSERT_RUN_OF: &str = "INSERT INTO runs (id, task, version, status, input, output, error, \
     parent_run, parent_seq, idempotency_key, wake_at, waiting_for, lease_owner, lease_token, \
     lease_expires, fence, attempt, revision, created_at, updated_at, ended_at, expires_at) \
     SELECT $1, $2, v.version, $4, $5::json, $6::json, $7::json, $8, $9, $10, $11, $12, $13, \
            $14, $15, $16, $17, $18, $19, $20, $21, $22 \
     FROM (SELECT version FROM task_versions WHERE task = $2 \
           AND ($3::bigint IS NULL OR version = $3) ORDER BY version DESC LIMIT 1) AS v \
     ON CONFLICT DO NOTHING RETURNING version";

/// The columns `update_run` and `settle_run` write: everything but the identity, the lease and
/// the fence (the input only when it changed, so a large unchanged input is not rewritten).
macro_rules! update_set {
    () => {
        "version = $5, status = $6, \
         input = CASE WHEN input::text = $7 THEN input ELSE $7::json END, \
         output = $8::json, error = $9::json, parent_run = $10, parent_seq = $11, \
         idempotency_key = $12, wake_at = $13, waiting_for = $14, attempt = $15, revision = $16, \
         updated_at = $17, ended_at = $18, expires_at = $19"
    };
}

const UPDATE_RUN: &str = concat!(
    "UPDATE runs SET ",
    update_set!(),
    " WHERE id = $1 AND revision = $2 AND task = $3 AND created_at = $4 \
     RETURNING lease_owner, lease_token, lease_expires, fence"
);

const SETTLE_RUN: &str = concat!(
    "UPDATE runs SET ",
    update_set!(),
    ", lease_owner = NULL, lease_token = NULL, lease_expires = NULL \
     WHERE id = $1 AND revision = $2 AND task = $3 AND created_at = $4 AND lease_token = $20 \
     RETURNING lease_owner, lease_token, lease_expires, fence"
);

/// Writes what a claim, renew, release or signal changes, for several runs in one statement.
const WRITE_LEASES: &str = "UPDATE runs AS r SET status = u.status, wake_at = u.wake_at, \
     lease_owner = u.owner, lease_token = u.token, lease_expires = u.expires, fence = u.fence, \
     attempt = u.attempt, revision = u.revision, updated_at = u.updated_at \
     FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], $6::bigint[], \
                 $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[]) \
          AS u(id, status, wake_at, owner, token, expires, fence, attempt, revision, updated_at) \
     WHERE r.id = u.id";

/// What a claim writes (`rules::claim_run` in SQL; `r` the run, `$1` now, `$3` the worker,
/// `$4` the lease end). The stored row is compared with the rules' answer after the statement.
macro_rules! claim_set {
    () => {
        "status = CASE WHEN r.status = 'stopping' THEN 'stopping' ELSE 'running' END, \
         wake_at = NULL, lease_owner = $3, lease_token = r.fence + 1, lease_expires = $4, \
         fence = r.fence + 1, attempt = r.attempt + 1, revision = r.revision + 1, updated_at = $1"
    };
}

/// What a claim returns beside the run, for the driver (`Claim::journal_len`,
/// `Claim::version_hash`): the journal's length when the run was `queued` (no lease holder
/// could be appending to it), and its task version's hash. Two lookups by key, and two fewer
/// statements for a worker starting a run.
macro_rules! claim_hints {
    () => {
        "CASE WHEN c.status = 'queued' \
         THEN (SELECT coalesce(max(seq) + 1, 0) FROM journal WHERE run = c.id) END AS journal_len, \
         (SELECT hash FROM task_versions t WHERE t.task = c.task AND t.version = c.version) \
         AS version_hash"
    };
}

/// A claim in one autocommit statement: the candidates (the oldest queued runs, and the runs
/// due by time — timers, expired leases — each list from its own index in `ready_at` order)
/// locked with `SKIP LOCKED` so claimers never wait on each other, the first `$2` of them in
/// `runnable_since` order leased, and each returned as it was before the claim (`c.*`, for
/// `rules::claim_run` to recompute the claim) beside the token and lease end stored.
/// `$1` now, `$2` limit, `$3` worker, `$4` lease end (both from `rules::claim_run`).
const CLAIM: &str = concat!(
    "WITH q AS (SELECT ",
    run_cols!(),
    ", ready_at AS since FROM runs WHERE status = 'queued' \
     ORDER BY ready_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), \
     d AS (SELECT ",
    run_cols!(),
    ", ready_at AS since FROM runs WHERE status IN ('waiting', 'running', 'stopping') \
     AND ready_at <= $1 ORDER BY ready_at, id LIMIT $2 FOR UPDATE SKIP LOCKED), \
     c AS (SELECT * FROM q UNION ALL SELECT * FROM d ORDER BY since, id LIMIT $2) \
     UPDATE runs AS r SET ",
    claim_set!(),
    " FROM c WHERE r.id = c.id \
     RETURNING c.*, r.lease_token AS claimed_token, r.lease_expires AS claimed_expires, ",
    claim_hints!(),
);

/// `claim_run` in one statement: the run locked, claimed when it is claimable at `$1` (or
/// held, with `$5` = steal), and returned as it was, with the token stored (NULL: not claimed).
const CLAIM_ONE: &str = concat!(
    "WITH c AS (SELECT ",
    run_cols!(),
    " FROM runs WHERE id = $2 FOR UPDATE), \
     u AS (UPDATE runs AS r SET ",
    claim_set!(),
    " FROM c WHERE r.id = c.id AND (c.status = 'queued' \
        OR (c.status = 'waiting' AND c.wake_at <= $1) \
        OR (c.status IN ('running', 'stopping') AND (c.lease_expires IS NULL OR c.lease_expires <= $1)) \
        OR ($5 AND c.status IN ('running', 'stopping'))) \
     RETURNING r.lease_token, r.lease_expires) \
     SELECT c.*, u.lease_token AS claimed_token, u.lease_expires AS claimed_expires, ",
    claim_hints!(),
    " FROM c LEFT JOIN u ON true"
);

/// `renew` (`$3` the new lease end) or `release` (`$3` NULL) of the lease held with token
/// `$2`: what `rules::renew` and `rules::release` change, written only when the token holds.
const CHANGE_LEASE: &str = concat!(
    "UPDATE runs SET lease_expires = $3, \
     lease_owner = CASE WHEN $3::bigint IS NULL THEN NULL ELSE lease_owner END, \
     lease_token = CASE WHEN $3::bigint IS NULL THEN NULL ELSE lease_token END \
     WHERE id = $1 AND lease_token = $2 RETURNING ",
    run_cols!()
);

const SELECT_RUN: &str = concat!("SELECT ", run_cols!(), " FROM runs WHERE id = $1");
const LOCK_RUN: &str = concat!(
    "SELECT ",
    run_cols!(),
    " FROM runs WHERE id = $1 FOR NO KEY UPDATE"
);
const RUN_BY_KEY: &str = concat!(
    "SELECT ",
    run_cols!(),
    " FROM runs WHERE idempotency_key = $1"
);

/// Overwrites every column of a stored run with `run` (for copying a newer state of a run).
const OVERWRITE_RUN: &str = "UPDATE runs SET task = $2, version = $3, status = $4, \
     input = CASE WHEN input::text = $5 THEN input ELSE $5::json END, output = $6::json, \
     error = $7::json, parent_run = $8, parent_seq = $9, idempotency_key = $10, wake_at = $11, \
     waiting_for = $12, lease_owner = $13, lease_token = $14, lease_expires = $15, fence = $16, \
     attempt = $17, revision = $18, created_at = $19, updated_at = $20, ended_at = $21, \
     expires_at = $22 WHERE id = $1";

/// Binds every column of `run` as `$1`…`$22` in [`INSERT_RUN`]'s order.
fn bind_run<'q>(
    sql: &'static str,
    run: &'q Run,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    bind_run_as(sql, run, Some(i64::from(run.version)))
}

/// [`bind_run`] with `$3` (the version) given: [`INSERT_RUN_OF`] binds the version it asks for,
/// or NULL for the latest.
fn bind_run_as<'q>(
    sql: &'static str,
    run: &'q Run,
    version: Option<i64>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql)
        .bind(uuid(run.id))
        .bind(run.task.as_str())
        .bind(version)
        .bind(run.status.as_str())
        .bind(json_text(&run.input))
        .bind(run.output.as_ref().map(json_text))
        .bind(run.error.as_ref().map(json_text))
        .bind(run.parent.map(|p| uuid(p.run)))
        .bind(run.parent.map(|p| p.seq as i64))
        .bind(run.idempotency_key.as_deref())
        .bind(run.wake_at)
        .bind(run.waiting_for.as_deref())
        .bind(run.lease.as_ref().map(|l| l.owner.as_str()))
        .bind(run.lease.as_ref().map(|l| l.token as i64))
        .bind(run.lease.as_ref().map(|l| l.expires_at))
        .bind(run.fence as i64)
        .bind(i64::from(run.attempt))
        .bind(run.revision as i64)
        .bind(run.created_at)
        .bind(run.updated_at)
        .bind(run.ended_at)
        .bind(run.expires_at)
}

/// Binds a whole run to [`INSERT_RUN`].
fn bind_insert(
    run: &Run,
    need_version: bool,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    bind_run(INSERT_RUN, run).bind(need_version)
}

/// Binds `prepared` (the run as it will be stored) and the guard values to [`UPDATE_RUN`] or
/// [`SETTLE_RUN`].
fn bind_update<'q>(
    sql: &'static str,
    prepared: &'q Run,
    expected_revision: u64,
    token: Option<u64>,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let q = sqlx::query(sql)
        .bind(uuid(prepared.id))
        .bind(expected_revision as i64)
        .bind(prepared.task.as_str())
        .bind(prepared.created_at)
        .bind(i64::from(prepared.version))
        .bind(prepared.status.as_str())
        .bind(json_text(&prepared.input))
        .bind(prepared.output.as_ref().map(json_text))
        .bind(prepared.error.as_ref().map(json_text))
        .bind(prepared.parent.map(|p| uuid(p.run)))
        .bind(prepared.parent.map(|p| p.seq as i64))
        .bind(prepared.idempotency_key.as_deref())
        .bind(prepared.wake_at)
        .bind(prepared.waiting_for.as_deref())
        .bind(i64::from(prepared.attempt))
        .bind(prepared.revision as i64)
        .bind(prepared.updated_at)
        .bind(prepared.ended_at)
        .bind(prepared.expires_at);
    match token {
        Some(t) => q.bind(t as i64),
        None => q,
    }
}

/// Puts the stored lease and fence (from `RETURNING lease_owner, lease_token, lease_expires,
/// fence`) into `run`.
fn with_stored_lease(mut run: Run, row: &PgRow) -> R<Run> {
    let doing = "reading a written run";
    run.lease = match (
        row.try_get::<Option<String>, _>(0).doing(doing)?,
        row.try_get::<Option<i64>, _>(1).doing(doing)?,
        row.try_get::<Option<i64>, _>(2).doing(doing)?,
    ) {
        (Some(owner), Some(token), Some(expires_at)) => Some(Lease {
            owner,
            token: token as u64,
            expires_at,
        }),
        _ => None,
    };
    run.fence = row.try_get::<i64, _>(3).doing(doing)? as u64;
    Ok(run)
}

/// Writes the lease-related columns of `runs` (all changed by the rules of a claim, renew,
/// release or signal) in one statement.
async fn write_leases(conn: &mut PgConnection, runs: &[&Run]) -> R<()> {
    if runs.is_empty() {
        return Ok(());
    }
    for r in runs {
        check_run_text(r)?;
    }
    let col = |f: &dyn Fn(&Run) -> Option<i64>| runs.iter().map(|r| f(r)).collect::<Vec<_>>();
    sqlx::query(WRITE_LEASES)
        .bind(runs.iter().map(|r| uuid(r.id)).collect::<Vec<Uuid>>())
        .bind(
            runs.iter()
                .map(|r| r.status.as_str())
                .collect::<Vec<&str>>(),
        )
        .bind(col(&|r| r.wake_at))
        .bind(
            runs.iter()
                .map(|r| r.lease.as_ref().map(|l| l.owner.as_str()))
                .collect::<Vec<Option<&str>>>(),
        )
        .bind(col(&|r| r.lease.as_ref().map(|l| l.token as i64)))
        .bind(col(&|r| r.lease.as_ref().map(|l| l.expires_at)))
        .bind(col(&|r| Some(r.fence as i64)))
        .bind(col(&|r| Some(i64::from(r.attempt))))
        .bind(col(&|r| Some(r.revision as i64)))
        .bind(col(&|r| Some(r.updated_at)))
        .execute(&mut *conn)
        .await
        .map(counted)
        .doing("writing a run's lease")?;
    Ok(())
}

/// The lease `rules::claim_run` gives for `req` (the same for every run it claims).
fn lease_of(req: &ClaimRequest) -> Lease {
    let claim = rules::claim_run(probe(RunId::from_bytes([0; 16]), 0, None), req);
    claim.run.lease.expect("a claim leases the run")
}

fn disagreement(id: RunId, what: &str) -> Fail {
    Fail::Store(Error::backend(
        format!("claiming run {id}"),
        format!("the stored claim and the rules disagree: {what}"),
    ))
}

/// The claim of `before` (the run as the claim statement found it) by the rules, checked
/// against what the statement stored (`claimed_token`, `claimed_expires`). `checked`: the
/// caller already checked that `before` was claimable.
fn checked_claim(before: Run, req: &ClaimRequest, row: &PgRow, checked: bool) -> R<Claim> {
    let id = before.id;
    if !checked && !rules::is_claimable(&before, req.now) {
        return Err(disagreement(
            id,
            "claimed, though the rules say it is not claimable",
        ));
    }
    let mut claim = rules::claim_run(before, req);
    let token: Option<i64> = row.try_get("claimed_token").doing("claiming runs")?;
    let expires: Option<i64> = row.try_get("claimed_expires").doing("claiming runs")?;
    let lease = claim.run.lease.as_ref().map(|l| l.expires_at);
    if token != Some(claim.token as i64) || expires != lease {
        return Err(disagreement(id, "another token or lease end was stored"));
    }
    let journal_len: Option<i64> = row.try_get("journal_len").doing("claiming runs")?;
    claim.journal_len = journal_len.map(|n| n as u64);
    claim.version_hash = row.try_get("version_hash").doing("claiming runs")?;
    Ok(claim)
}

async fn lock_run(conn: &mut PgConnection, id: RunId) -> R<Run> {
    let row = sqlx::query(LOCK_RUN)
        .bind(uuid(id))
        .fetch_optional(&mut *conn)
        .await
        .map(counted)
        .doing("locking a run")?;
    run_from_row(&row.ok_or_else(|| run_not_found(id))?)
}

impl Db {
    pub(crate) async fn create_run(&self, new: &NewRun) -> R<Created> {
        if let Some(key) = &new.idempotency_key {
            storable("idempotency key", key)?;
        }
        for _ in 0..RACES {
            let run = rules::new_run(new.clone(), now_millis());
            let inserted = bind_insert(&run, true)
                .fetch_optional(&mut *self.pool.get().await?)
                .await
                .map(counted)
                .doing("storing a run")?;
            if inserted.is_some() {
                return Ok(Created::Created(run));
            }
            let version_exists = sqlx::query(
                "SELECT EXISTS (SELECT 1 FROM task_versions WHERE task = $1 AND version = $2)",
            )
            .bind(new.task.as_str())
            .bind(i64::from(new.version))
            .fetch_one(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .and_then(|r| r.try_get::<bool, _>(0))
            .doing("checking a task version")?;
            if !version_exists {
                return Err(Fail::Store(Error::not_found(format!(
                    "task `{}` version {}",
                    new.task, new.version
                ))));
            }
            if let Some(key) = &new.idempotency_key {
                let existing = sqlx::query(RUN_BY_KEY)
                    .bind(key)
                    .fetch_optional(&mut *self.pool.get().await?)
                    .await
                    .map(counted)
                    .doing("finding an idempotency key")?;
                if let Some(row) = existing {
                    return Ok(rules::existing_for_key(run_from_row(&row)?, new)?);
                }
            }
            // the key's run was deleted in between (or an id collided): try again
        }
        Err(lost_race(&format!("starting a run of task `{}`", new.task)))
    }

    /// A new queued run of the version `new.version` picks, in one statement. `None` when it
    /// was not inserted (a missing task or version, a key or id taken): the caller then goes
    /// the usual way, which names what happened.
    pub(crate) async fn create_run_of(&self, new: &NewRunOf) -> R<Option<Created>> {
        if let Some(key) = &new.idempotency_key {
            storable("idempotency key", key)?;
        }
        let exact = match new.version {
            VersionSel::Latest => None,
            VersionSel::Exact(n) => Some(n),
        };
        // the version is a placeholder until the statement answers which one it pinned
        let mut run = rules::new_run(new.clone().pinned(exact.unwrap_or(0)), now_millis());
        let version = exact.map(i64::from);
        let mut batch_failed = false;
        if CreateKind::takes(&run) {
            // shared with the runs other callers start meanwhile: one statement, one commit
            let offer = CreateOffer {
                run: run.clone(),
                version,
            };
            match self.creates.offer(offer).await {
                Create::Inserted { version } => {
                    run.version = unsigned("version", version)?;
                    return Ok(Some(Created::Created(run)));
                }
                Create::NotInserted => return Ok(None),
                Create::Failed => batch_failed = true,
            }
        }
        // the same run (the same id): if the failed batch did store it after all, this insert
        // finds its id taken, and the run is found by id below
        let row = bind_run_as(INSERT_RUN_OF, &run, version)
            .fetch_optional(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing("storing a run")?;
        let pinned = match row {
            Some(row) => row.try_get(0).doing("storing a run")?,
            None if batch_failed => {
                let stored = sqlx::query("SELECT version FROM runs WHERE id = $1")
                    .bind(uuid(run.id))
                    .fetch_optional(&mut *self.pool.get().await?)
                    .await
                    .map(counted)
                    .doing("storing a run")?;
                match stored {
                    Some(row) => row.try_get(0).doing("storing a run")?,
                    None => return Ok(None),
                }
            }
            None => return Ok(None),
        };
        run.version = unsigned("version", pinned)?;
        Ok(Some(Created::Created(run)))
    }

    /// A new run inserted already claimed by `req` (one statement, one commit). `None` when it
    /// was not inserted (its idempotency key is taken, the version is missing, the id collided):
    /// the caller then creates and claims the usual way, which names what happened.
    pub(crate) async fn create_run_claimed(
        &self,
        new: &NewRun,
        req: &ClaimRequest,
    ) -> R<Option<(Created, Claim)>> {
        if let Some(key) = &new.idempotency_key {
            storable("idempotency key", key)?;
        }
        storable("worker", &req.worker)?;
        let run = rules::new_run(new.clone(), now_millis());
        // a queued run is claimable: the claim is the rules' claim of the run as created
        let claim = rules::claim_run(run.clone(), req);
        let inserted = bind_insert(&claim.run, true)
            .fetch_optional(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing("storing a claimed run")?;
        Ok(inserted.map(|_| (Created::Created(run), claim)))
    }

    /// Stores `run` as it is (same id, revision, lease): inserted when new, overwritten when
    /// the stored copy has a lower revision, else left alone.
    pub(crate) async fn import_run(&self, run: &Run) -> R<crate::Imported> {
        check_run_text(run)?;
        let doing = "copying a run";
        transaction!(self, doing, |tx| {
            if bind_insert(run, false)
                .fetch_optional(&mut *tx)
                .await
                .map(counted)
                .doing(doing)?
                .is_some()
            {
                return Ok(crate::Imported::Created);
            }
            let stored = sqlx::query(LOCK_RUN)
                .bind(uuid(run.id))
                .fetch_optional(&mut *tx)
                .await
                .map(counted)
                .doing(doing)?;
            let Some(stored) = stored else {
                return Err(Fail::Store(Error::conflict(format!(
                    "run {} has idempotency key {:?}, which another run of the target already has",
                    run.id,
                    run.idempotency_key.as_deref().unwrap_or_default()
                ))));
            };
            let stored = run_from_row(&stored)?;
            if stored.task != run.task {
                return Err(Fail::Store(Error::conflict(format!(
                    "run {} is a run of task `{}` in the target but of task `{}` in the source",
                    run.id, stored.task, run.task
                ))));
            }
            if stored.revision >= run.revision {
                return Ok(crate::Imported::Unchanged);
            }
            bind_run(OVERWRITE_RUN, run)
                .execute(&mut *tx)
                .await
                .map(counted)
                .doing(doing)?;
            Ok(crate::Imported::Updated)
        })
    }

    /// Stores signals as they are (same seq and time); those already stored are skipped.
    /// Returns how many were new.
    pub(crate) async fn import_signals(&self, run: RunId, signals: &[Signal]) -> R<u64> {
        for s in signals {
            storable("signal name", &s.name)?;
        }
        let done = sqlx::query(
            "INSERT INTO signals (run, seq, name, payload, at) \
             SELECT $1, s.seq, s.name, s.payload::json, s.at \
             FROM unnest($2::bigint[], $3::text[], $4::text[], $5::bigint[]) AS s(seq, name, payload, at) \
             WHERE EXISTS (SELECT 1 FROM runs WHERE id = $1) \
             ON CONFLICT DO NOTHING",
        )
        .bind(uuid(run))
        .bind(signals.iter().map(|s| s.seq as i64).collect::<Vec<_>>())
        .bind(signals.iter().map(|s| s.name.as_str()).collect::<Vec<_>>())
        .bind(signals.iter().map(|s| json_text(&s.payload)).collect::<Vec<_>>())
        .bind(signals.iter().map(|s| s.at).collect::<Vec<_>>())
        .execute(&mut *self.pool.get().await?)
        .await
            .map(counted)
        .doing("copying signals")?;
        if done.rows_affected() == 0 && !signals.is_empty() {
            self.require_run(run).await?;
        }
        Ok(done.rows_affected())
    }

    /// `VACUUM`s the tables, then sums `pg_total_relation_size` (table, indexes, TOAST) over
    /// the tables of `schema`.
    pub(crate) async fn vacuum_and_measure(&self, schema: &str) -> R<u64> {
        sqlx::raw_sql("VACUUM task_versions, runs, journal, signals")
            .execute(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing("vacuuming")?;
        let bytes: i64 = sqlx::query(
            "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
        )
        .bind(schema)
        .fetch_one(&mut *self.pool.get().await?)
        .await
        .map(counted)
        .and_then(|r| r.try_get(0))
        .doing("measuring the tables")?;
        Ok(bytes as u64)
    }

    /// How many records the run's journal holds (its next seq).
    pub(crate) async fn journal_len(&self, run: RunId) -> R<u64> {
        let n: i64 = sqlx::query("SELECT coalesce(max(seq) + 1, 0) FROM journal WHERE run = $1")
            .bind(uuid(run))
            .fetch_one(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .and_then(|r| r.try_get(0))
            .doing("reading a journal's length")?;
        if n == 0 {
            self.require_run(run).await?;
        }
        Ok(n as u64)
    }

    pub(crate) async fn get_run(&self, id: RunId) -> R<Run> {
        let row = sqlx::query(SELECT_RUN)
            .bind(uuid(id))
            .fetch_optional(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing("reading a run")?;
        run_from_row(&row.ok_or_else(|| run_not_found(id))?)
    }

    pub(crate) async fn update_run(&self, new: &Run) -> R<Run> {
        check_run_text(new)?;
        for _ in 0..RACES {
            let now = now_millis();
            // the guard makes the stored revision, task and creation time equal to `new`'s,
            // and the lease and fence come back from the row
            let prepared = rules::prepare_update(new, new, now)?;
            let row = bind_update(UPDATE_RUN, &prepared, new.revision, None)
                .fetch_optional(&mut *self.pool.get().await?)
                .await
                .map(counted)
                .doing("updating a run")?;
            if let Some(row) = row {
                return with_stored_lease(prepared, &row);
            }
            // the guard failed: let the rules say why
            let stored = self.get_run(new.id).await?;
            rules::prepare_update(&stored, new, now)?;
        }
        Err(lost_race(&format!("updating run {}", new.id)))
    }

    pub(crate) async fn settle_run(&self, new: &Run, token: u64) -> R<Run> {
        check_run_text(new)?;
        for attempt in 0..RACES {
            let now = now_millis();
            let mut assumed = new.clone();
            assumed.lease = probe(new.id, new.fence, Some(token)).lease;
            let mut prepared = rules::prepare_settle(&assumed, new, token, now)?;
            if attempt == 0 {
                // shared with the settles of other runs offered meanwhile
                let offer = SettleOffer {
                    prepared: prepared.clone(),
                    expected: new.revision,
                    token,
                    records: None,
                };
                match self
                    .writes
                    .offer(Write::Settle(Box::new(offer)))
                    .await
                    .settle()
                {
                    Settled::Written { fence } => {
                        prepared.lease = None;
                        prepared.fence = fence as u64;
                        return Ok(prepared);
                    }
                    Settled::NotWritten => {
                        let stored = self.get_run(new.id).await?;
                        rules::prepare_settle(&stored, new, token, now)?;
                        continue;
                    }
                    Settled::Failed => {}
                }
            }
            let row = bind_update(SETTLE_RUN, &prepared, new.revision, Some(token))
                .fetch_optional(&mut *self.pool.get().await?)
                .await
                .map(counted)
                .doing("settling a run")?;
            if let Some(row) = row {
                return with_stored_lease(prepared, &row);
            }
            let stored = self.get_run(new.id).await?;
            rules::prepare_settle(&stored, new, token, now)?;
        }
        Err(lost_race(&format!("settling run {}", new.id)))
    }

    /// `records` appended under `token` and `new` settled, in one statement (shared with the
    /// settles of other runs offered meanwhile): one commit. When that statement did not write
    /// them (a stale token or revision, a retry whose records are partly stored, a failed
    /// batch), the two steps are taken one after the other — [`Db::append`], then
    /// [`Db::settle_run`] — which write what may be written and name the error.
    pub(crate) async fn append_and_settle(
        &self,
        new: &Run,
        records: &[JournalRecord],
        token: u64,
    ) -> R<Run> {
        let Some(first) = records.first() else {
            return self.settle_run(new, token).await;
        };
        check_run_text(new)?;
        for r in records {
            storable("journal record kind", &r.kind)?;
        }
        let well_formed = rules::plan_append(new.id, first.seq, records, |_| Ok(None)).is_ok();
        if well_formed {
            let now = now_millis();
            let mut assumed = new.clone();
            assumed.lease = probe(new.id, new.fence, Some(token)).lease;
            let mut prepared = rules::prepare_settle(&assumed, new, token, now)?;
            let (ats, packed) = packed_records(records)?;
            let offer = SettleOffer {
                prepared: prepared.clone(),
                expected: new.revision,
                token,
                records: Some(Records {
                    first: first.seq,
                    ats,
                    packed,
                }),
            };
            if let Settled::Written { fence } = self
                .writes
                .offer(Write::Settle(Box::new(offer)))
                .await
                .settle()
            {
                prepared.lease = None;
                prepared.fence = fence as u64;
                return Ok(prepared);
            }
        }
        self.append(new.id, records, Fence::Token(token)).await?;
        self.settle_run(new, token).await
    }

    pub(crate) async fn list_runs(&self, filter: &RunFilter, page: Page) -> R<RunPage> {
        let sql = match (page.order, filter.task.is_some()) {
            (Order::OldestFirst, true) => LIST_TASK_OLDEST,
            (Order::OldestFirst, false) => LIST_OLDEST,
            (Order::NewestFirst, true) => LIST_TASK_NEWEST,
            (Order::NewestFirst, false) => LIST_NEWEST,
        };
        let limit = page.limit.min(i64::MAX as usize - 1);
        let rows = sqlx::query(sql)
            .bind(filter.task.as_ref().map(|t| t.as_str()))
            .bind(
                filter
                    .statuses
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>(),
            )
            .bind(page.after.map(uuid))
            .bind(limit as i64 + 1)
            .fetch_all(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing("listing runs")?;
        let more = rows.len() > limit;
        let mut runs = Vec::with_capacity(rows.len().min(limit));
        for row in rows.iter().take(limit) {
            runs.push(run_from_row(row)?);
        }
        let next = if more {
            runs.last().map(|r| r.id)
        } else {
            None
        };
        Ok(RunPage { runs, next })
    }
}

// ---------------------------------------------------------------- journal

/// The common append: the run's row locked (so a concurrent claim that bumps the fence waits
/// for it, or it sees the new fence), the fence and the journal length checked, and the records
/// inserted — all in one statement, so all or nothing. Inserts nothing unless the first record
/// is exactly the next seq and the fence holds; the caller then takes [`Db::append_checked`].
const APPEND_FAST: &str = "WITH r AS ( \
         SELECT fence, (SELECT coalesce(max(seq) + 1, 0) FROM journal WHERE run = $1) AS len \
         FROM runs WHERE id = $1 FOR NO KEY UPDATE), \
     ins AS ( \
         INSERT INTO journal (run, seq, at, packed) \
         SELECT $1, $2 + s.o - 1, s.at, s.packed \
         FROM r, unnest($3::bigint[], $4::bytea[]) WITH ORDINALITY AS s(at, packed, o) \
         WHERE r.len = $2 AND ($5::bigint IS NULL OR (r.fence = $5 AND r.fence > 0)) \
         RETURNING 1) \
     SELECT r.fence, r.len, (SELECT count(*) FROM ins) AS inserted FROM r";

const INSERT_RECORDS: &str = "INSERT INTO journal (run, seq, at, packed) \
     SELECT $1, $2 + s.o - 1, s.at, s.packed \
     FROM unnest($3::bigint[], $4::bytea[]) WITH ORDINALITY AS s(at, packed, o)";

/// The records' times and packed kinds and data, in order.
fn packed_records(records: &[JournalRecord]) -> R<(Vec<i64>, Vec<Vec<u8>>)> {
    let mut ats = Vec::with_capacity(records.len());
    let mut packed = Vec::with_capacity(records.len());
    for r in records {
        ats.push(r.at);
        packed.push(pack(&r.kind, &r.data)?);
    }
    Ok((ats, packed))
}

/// The stored records a retried append overlaps.
const OVERLAP: &str = concat!(
    "SELECT ",
    record_cols!(),
    " FROM journal WHERE run = $1 AND seq >= $2 AND seq < $3 ORDER BY seq"
);

/// A page of a journal: one row of NULLs when the run exists and has no such records, none
/// when it does not.
const READ_JOURNAL: &str = concat!(
    "SELECT j.* FROM runs LEFT JOIN LATERAL (SELECT ",
    record_cols!(),
    " FROM journal WHERE run = $1 AND seq > $2 ORDER BY seq LIMIT $3) j ON true \
     WHERE runs.id = $1"
);

/// `list_runs`, one statement per order and whether a task is named: connections plan
/// generically (`url::PLANNER_SETTINGS`), so no condition may hide behind `$n IS NULL OR …`.
/// The task is matched through `runs_by_task`, and the cursor `$3` is an index bound (NULL: the
/// first page; run ids are UUID v7, never the nil or the max UUID). `$1` the task, `$2` the
/// statuses (empty: all), `$4` the limit.
macro_rules! list_runs {
    (@task named) => { "task = $1" };
    (@task any) => { "$1::text IS NULL" };
    (@page oldest) => {
        "id > coalesce($3::uuid, '00000000-0000-0000-0000-000000000000') ORDER BY id"
    };
    (@page newest) => {
        "id < coalesce($3::uuid, 'ffffffff-ffff-ffff-ffff-ffffffffffff') ORDER BY id DESC"
    };
    ($task:ident, $page:ident) => {
        concat!(
            "SELECT ",
            run_cols!(),
            " FROM runs WHERE ",
            list_runs!(@task $task),
            " AND (cardinality($2::text[]) = 0 OR status = ANY($2)) AND ",
            list_runs!(@page $page),
            " LIMIT $4"
        )
    };
}
const LIST_TASK_OLDEST: &str = list_runs!(named, oldest);
const LIST_OLDEST: &str = list_runs!(any, oldest);
const LIST_TASK_NEWEST: &str = list_runs!(named, newest);
const LIST_NEWEST: &str = list_runs!(any, newest);

/// The statements a run's life sends, and the run lists, by name: see
/// [`crate::hot_statements`].
pub(crate) const HOT: &[(&str, &str)] = &[
    ("INSERT_RUN", INSERT_RUN),
    ("INSERT_RUN_OF", INSERT_RUN_OF),
    ("RUN_BY_KEY", RUN_BY_KEY),
    ("SELECT_RUN", SELECT_RUN),
    ("LOCK_RUN", LOCK_RUN),
    ("CLAIM", CLAIM),
    ("CLAIM_ONE", CLAIM_ONE),
    ("WRITE_LEASES", WRITE_LEASES),
    ("CHANGE_LEASE", CHANGE_LEASE),
    ("UPDATE_RUN", UPDATE_RUN),
    ("SETTLE_RUN", SETTLE_RUN),
    ("APPEND_FAST", APPEND_FAST),
    ("INSERT_RECORDS", INSERT_RECORDS),
    ("OVERLAP", OVERLAP),
    ("READ_JOURNAL", READ_JOURNAL),
    ("APPEND_MANY", crate::batch::APPEND_MANY),
    ("SETTLE_MANY", crate::batch::SETTLE_MANY),
    ("CREATE_MANY", crate::batch::CREATE_MANY),
    ("LIST_TASK_OLDEST", LIST_TASK_OLDEST),
    ("LIST_OLDEST", LIST_OLDEST),
    ("LIST_TASK_NEWEST", LIST_TASK_NEWEST),
    ("LIST_NEWEST", LIST_NEWEST),
];

fn fence_param(fence: Fence) -> Option<i64> {
    match fence {
        Fence::None => None,
        Fence::Token(t) => Some(t as i64),
    }
}

impl Db {
    pub(crate) async fn append(
        &self,
        run: RunId,
        records: &[JournalRecord],
        fence: Fence,
    ) -> R<()> {
        for r in records {
            storable("journal record kind", &r.kind)?;
        }
        // well-formed (one run, consecutive seqs) and non-empty: try the one-statement path
        let well_formed = records
            .first()
            .is_some_and(|first| rules::plan_append(run, first.seq, records, |_| Ok(None)).is_ok());
        if well_formed {
            // shared with the appends of other runs offered meanwhile: one statement, one commit
            let (ats, packed) = packed_records(records)?;
            let offer = Offer {
                run,
                first: records[0].seq,
                ats,
                packed,
                fence: fence_param(fence),
            };
            match self.writes.offer(Write::Append(offer)).await.append() {
                Outcome::Written => return Ok(()),
                Outcome::NoRun => return Err(run_not_found(run)),
                Outcome::NotInserted { fence: current } => {
                    rules::check_fence(&probe(run, current as u64, None), fence)?;
                }
                Outcome::Failed => return self.append_one(run, records, fence).await,
            }
        }
        self.append_checked(run, records, fence).await
    }

    /// The one-run path (when a batch failed as a whole): [`APPEND_FAST`], else
    /// [`Db::append_checked`].
    async fn append_one(&self, run: RunId, records: &[JournalRecord], fence: Fence) -> R<()> {
        let first = records[0].seq;
        let (ats, packed) = packed_records(records)?;
        let result = sqlx::query(APPEND_FAST)
            .bind(uuid(run))
            .bind(first as i64)
            .bind(ats)
            .bind(packed)
            .bind(fence_param(fence))
            .fetch_optional(&mut *self.pool.get().await?)
            .await
            .map(counted);
        match result {
            Ok(None) => return Err(run_not_found(run)),
            Ok(Some(row)) => {
                let inserted: i64 = row.try_get("inserted").doing("appending")?;
                if inserted as usize == records.len() {
                    return Ok(());
                }
                let current: i64 = row.try_get("fence").doing("appending")?;
                rules::check_fence(&probe(run, current as u64, None), fence)?;
            }
            // a concurrent append of the same seqs won: compare with what it wrote
            Err(e) if is_unique_violation(&e) => {}
            Err(e) => return Err(Fail::Sql("appending to a journal", e)),
        }
        self.append_checked(run, records, fence).await
    }

    /// Appends through the rules, in a transaction: the run locked, the fence checked, the
    /// offered records compared with the stored ones they overlap, the rest inserted.
    async fn append_checked(&self, run: RunId, records: &[JournalRecord], fence: Fence) -> R<()> {
        let doing = "appending to a journal";
        transaction!(self, doing, |tx| {
            let current: i64 =
                sqlx::query("SELECT fence FROM runs WHERE id = $1 FOR NO KEY UPDATE")
                    .bind(uuid(run))
                    .fetch_optional(&mut *tx)
                    .await
                    .map(counted)
                    .doing(doing)?
                    .ok_or_else(|| run_not_found(run))?
                    .try_get(0)
                    .doing(doing)?;
            rules::check_fence(&probe(run, current as u64, None), fence)?;
            let stored: i64 =
                sqlx::query("SELECT coalesce(max(seq) + 1, 0) FROM journal WHERE run = $1")
                    .bind(uuid(run))
                    .fetch_one(&mut *tx)
                    .await
                    .map(counted)
                    .and_then(|r| r.try_get(0))
                    .doing(doing)?;
            let overlap: HashMap<u64, JournalRecord> = match records.first() {
                Some(first) if (first.seq as i64) < stored => {
                    let rows = sqlx::query(OVERLAP)
                        .bind(uuid(run))
                        .bind(first.seq as i64)
                        .bind((first.seq + records.len() as u64) as i64)
                        .fetch_all(&mut *tx)
                        .await
                        .map(counted)
                        .doing(doing)?;
                    let mut map = HashMap::new();
                    for row in &rows {
                        let r = record_from_row(run, row)?;
                        map.insert(r.seq, r);
                    }
                    map
                }
                _ => HashMap::new(),
            };
            let first_new = rules::plan_append(run, stored as u64, records, |seq| {
                Ok(overlap.get(&seq).cloned())
            })?;
            let new = &records[first_new..];
            if let Some(first) = new.first() {
                let (ats, packed) = packed_records(new)?;
                sqlx::query(INSERT_RECORDS)
                    .bind(uuid(run))
                    .bind(first.seq as i64)
                    .bind(ats)
                    .bind(packed)
                    .execute(&mut *tx)
                    .await
                    .map(counted)
                    .doing(doing)?;
            }
            Ok(())
        })
    }

    pub(crate) async fn read_journal(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> R<Vec<JournalRecord>> {
        let after = after_seq.map_or(-1, |s| s.min(i64::MAX as u64 - 1) as i64);
        // one row of NULLs when the run exists and has no such records; none when it does not
        let rows = sqlx::query(READ_JOURNAL)
            .bind(uuid(run))
            .bind(after)
            .bind(limit.min(i64::MAX as usize) as i64)
            .fetch_all(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing("reading a journal")?;
        match rows.first() {
            None => return Err(run_not_found(run)),
            Some(row)
                if row
                    .try_get::<Option<i64>, _>(0)
                    .doing("reading a journal")?
                    .is_none() =>
            {
                return Ok(Vec::new());
            }
            Some(_) => {}
        }
        rows.iter().map(|row| record_from_row(run, row)).collect()
    }

    async fn require_run(&self, run: RunId) -> R<()> {
        let exists: bool = sqlx::query("SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)")
            .bind(uuid(run))
            .fetch_one(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .and_then(|r| r.try_get(0))
            .doing("reading a run")?;
        if exists {
            Ok(())
        } else {
            Err(run_not_found(run))
        }
    }
}

// ---------------------------------------------------------------- claims and leases

impl Db {
    pub(crate) async fn claim(&self, req: &ClaimRequest) -> R<Vec<Claim>> {
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        let doing = "claiming runs";
        storable("worker", &req.worker)?;
        // the lease every claim of this request writes, as the rules make it
        let lease = lease_of(req);
        let rows = sqlx::query(CLAIM)
            .bind(req.now)
            .bind(req.limit.min(100_000) as i64)
            .bind(&lease.owner)
            .bind(lease.expires_at)
            .fetch_all(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing(doing)?;
        let mut claims = Vec::with_capacity(rows.len());
        for row in &rows {
            let before = run_from_row(row)?;
            claims.push(checked_claim(before, req, row, false)?);
        }
        claims.sort_by_key(|c| (rules::runnable_since(&c.run), c.run.id));
        Ok(claims)
    }

    pub(crate) async fn claim_run(
        &self,
        id: RunId,
        req: &ClaimRequest,
        takeover: Takeover,
    ) -> R<Option<Claim>> {
        let doing = "claiming a run";
        storable("worker", &req.worker)?;
        let lease = lease_of(req);
        let row = sqlx::query(CLAIM_ONE)
            .bind(req.now)
            .bind(uuid(id))
            .bind(&lease.owner)
            .bind(lease.expires_at)
            .bind(takeover == Takeover::Steal)
            .fetch_optional(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing(doing)?
            .ok_or_else(|| run_not_found(id))?;
        let before = run_from_row(&row)?;
        let claimed = row
            .try_get::<Option<i64>, _>("claimed_token")
            .doing(doing)?
            .is_some();
        if !claimed {
            if rules::is_claimable_with(&before, req.now, takeover) {
                return Err(disagreement(
                    id,
                    "not claimed, though the rules say it is claimable",
                ));
            }
            return Ok(None);
        }
        if !rules::is_claimable_with(&before, req.now, takeover) {
            return Err(disagreement(
                id,
                "claimed, though the rules say it is not claimable",
            ));
        }
        checked_claim(before, req, &row, true).map(Some)
    }

    /// Locks run `id`, applies `change` (a rule), writes the lease columns back, commits.
    async fn change_lease(&self, id: RunId, change: impl FnOnce(Run) -> R<Run>) -> R<Run> {
        let doing = "changing a run's lease";
        transaction!(self, doing, |tx| {
            let run = change(lock_run(&mut tx, id).await?)?;
            write_leases(&mut tx, &[&run]).await?;
            Ok(run)
        })
    }

    /// A lease change in one statement when the token holds (`$1` id, `$2` token, `$3` the new
    /// lease end or NULL to drop the lease); `None` when nothing was written, for the locked
    /// path to explain.
    async fn change_lease_fast(
        &self,
        id: RunId,
        token: u64,
        expires: Option<i64>,
    ) -> R<Option<Run>> {
        let row = sqlx::query(CHANGE_LEASE)
            .bind(uuid(id))
            .bind(token as i64)
            .bind(expires)
            .fetch_optional(&mut *self.pool.get().await?)
            .await
            .map(counted)
            .doing("changing a run's lease")?;
        row.map(|row| run_from_row(&row)).transpose()
    }

    pub(crate) async fn renew(
        &self,
        id: RunId,
        token: u64,
        now: UnixMillis,
        lease_ms: u64,
    ) -> R<Run> {
        // the lease end as the rules make it; the statement writes it only under `token`
        let held = rules::renew(probe(id, token, Some(token)), token, now, lease_ms)?;
        let expires = held.lease.map(|l| l.expires_at);
        if let Some(run) = self.change_lease_fast(id, token, expires).await? {
            return Ok(run);
        }
        self.change_lease(id, |run| Ok(rules::renew(run, token, now, lease_ms)?))
            .await
    }

    pub(crate) async fn release(&self, id: RunId, token: u64) -> R<Run> {
        if let Some(run) = self.change_lease_fast(id, token, None).await? {
            return Ok(run);
        }
        self.change_lease(id, |run| Ok(rules::release(run, token)?))
            .await
    }
}

// ---------------------------------------------------------------- signals and pruning

impl Db {
    pub(crate) async fn send_signal(&self, id: RunId, name: &str, payload: &Value) -> R<u64> {
        storable("signal name", name)?;
        let doing = "sending a signal";
        transaction!(self, doing, |tx| {
            let stored = lock_run(&mut tx, id).await?;
            let revision = stored.revision;
            let now = now_millis();
            let run = rules::signal_target(stored, name, now)?;
            if run.revision != revision {
                write_leases(&mut tx, &[&run]).await?;
            }
            let seq: i64 = sqlx::query(
                "INSERT INTO signals (run, seq, name, payload, at) \
             SELECT $1, coalesce(max(seq) + 1, 0), $2, $3::json, $4 FROM signals WHERE run = $1 \
             RETURNING seq",
            )
            .bind(uuid(id))
            .bind(name)
            .bind(json_text(payload))
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map(counted)
            .and_then(|r| r.try_get(0))
            .doing(doing)?;
            Ok(seq as u64)
        })
    }

    pub(crate) async fn read_signals(&self, run: RunId, after_seq: Option<u64>) -> R<Vec<Signal>> {
        let after = after_seq.map_or(-1, |s| s.min(i64::MAX as u64 - 1) as i64);
        let rows = sqlx::query(
            "SELECT seq, name, payload::text AS payload, at FROM signals \
             WHERE run = $1 AND seq > $2 ORDER BY seq",
        )
        .bind(uuid(run))
        .bind(after)
        .fetch_all(&mut *self.pool.get().await?)
        .await
        .map(counted)
        .doing("reading signals")?;
        if rows.is_empty() {
            self.require_run(run).await?;
        }
        rows.iter().map(|row| signal_from_row(run, row)).collect()
    }

    /// Deletes one finished run ([`rules::check_deletable`]) with its journal and signals (its
    /// idempotency key is a column of the row), in one transaction holding the run's row lock.
    pub(crate) async fn delete_run(&self, id: RunId) -> R<()> {
        let doing = "deleting a run";
        transaction!(self, doing, |tx| {
            let run = lock_run(&mut tx, id).await?;
            let parent = match run.parent {
                Some(p) => sqlx::query(SELECT_RUN)
                    .bind(uuid(p.run))
                    .fetch_optional(&mut *tx)
                    .await
                    .map(counted)
                    .doing(doing)?
                    .map(|row| run_from_row(&row))
                    .transpose()?,
                None => None,
            };
            rules::check_deletable(&run, parent.as_ref())?;
            sqlx::query(
                "WITH gone AS (DELETE FROM runs WHERE id = $1 RETURNING id), \
                  j AS (DELETE FROM journal WHERE run IN (SELECT id FROM gone)) \
             DELETE FROM signals WHERE run IN (SELECT id FROM gone)",
            )
            .bind(uuid(id))
            .execute(&mut *tx)
            .await
            .map(counted)
            .doing(doing)?;
            Ok(())
        })
    }

    /// Removes finished runs that ended before `older_than` ([`rules::is_prunable`] in SQL),
    /// with their journals and signals, in one statement.
    pub(crate) async fn prune(&self, older_than: UnixMillis) -> R<u64> {
        let n: i64 = sqlx::query(
            "WITH gone AS (DELETE FROM runs WHERE status = ANY($2) \
                           AND coalesce(ended_at, updated_at) < $1 RETURNING id), \
                  j AS (DELETE FROM journal WHERE run IN (SELECT id FROM gone)), \
                  s AS (DELETE FROM signals WHERE run IN (SELECT id FROM gone)) \
             SELECT count(*) FROM gone",
        )
        .bind(older_than)
        .bind(terminal_statuses())
        .fetch_one(&mut *self.pool.get().await?)
        .await
        .map(counted)
        .and_then(|r| r.try_get(0))
        .doing("pruning runs")?;
        Ok(n as u64)
    }
}
