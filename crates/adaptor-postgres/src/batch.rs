//! Group commit of appends: the appends that callers offer while a statement is on its way share
//! the next one — one round trip, one commit, one WAL flush for all of them.
//!
//! A batcher task takes what is queued (one append per run; a second append to a run waits for
//! the next batch), locks the runs' rows in id order, and inserts each run's records only when
//! that run's fence holds and its journal ends where the records begin. The statement is one
//! transaction, but every run is decided on its own: one stale or conflicting append inserts
//! nothing and is answered on its own, and the others commit. A caller hears back only after the
//! commit. An append the batch did not write ([`Outcome::NotInserted`]) or a batch that failed as
//! a whole ([`Outcome::Failed`], e.g. a concurrent writer of the same seqs) is finished by the
//! caller on the one-run path, which compares overlaps and names the error.
//!
//! Settles (`settle_run`) batch the same way, in the same batches: each run's compare-and-swap
//! and lease token are checked on its own row, and a settle the batch did not write is
//! explained (or retried) by the caller from the stored run. A batch holding both appends and
//! settles is one statement ([`write_many`]): in a steady stream of runs, the ends of some ride
//! with the steps of others instead of costing a statement and a commit of their own. New runs
//! (`create_run_of`) batch the same way too, in a batcher of their own.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sequential_adaptor::{Run, RunId};
use sqlx::Row;
use sqlx::postgres::PgConnection;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::codec::{counted, json_text, run_id, uuid};
use crate::conns::Conns;

/// The most appends one statement carries.
const MAX_BATCH: usize = 256;

/// One run's append, checked (one run, consecutive seqs, non-empty) and encoded.
pub(crate) struct Offer {
    pub(crate) run: RunId,
    pub(crate) first: u64,
    pub(crate) ats: Vec<i64>,
    /// Each record's kind and data, packed (`codec::pack`).
    pub(crate) packed: Vec<Vec<u8>>,
    /// `None` for [`sequential_adaptor::Fence::None`].
    pub(crate) fence: Option<i64>,
}

/// What the shared statement did with one offer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Every record is committed.
    Written,
    /// Nothing of it was written: the run does not exist.
    NoRun,
    /// Nothing of it was written: the fence did not hold, or the journal does not end at the
    /// first record (a retry, a gap, a race); `fence` is the run's current fence.
    NotInserted { fence: i64 },
    /// The statement failed as a whole (nothing of the batch was written, or — after a lost
    /// connection — it is unknown): the caller takes the one-run path.
    Failed,
}

/// A kind of write that batches: its offers, what each is answered, and the one statement that
/// writes a batch of them (offers of distinct runs).
pub(crate) trait Kind: Send + Sync + 'static {
    type Offer: Send + 'static;
    type Answer: Send + Copy + std::fmt::Debug + 'static;
    /// The run an offer writes (a batch holds one offer per run).
    fn run(offer: &Self::Offer) -> RunId;
    /// Which of the kind's two counts an offer adds to (see [`Batcher::stats`]).
    fn lane(_offer: &Self::Offer) -> usize {
        0
    }
    /// The answer when the batch statement failed as a whole.
    fn failed() -> Self::Answer;
    /// Writes the batch in one statement; one answer per offer, in order.
    fn write(
        conn: &mut PgConnection,
        batch: &[Self::Offer],
    ) -> impl std::future::Future<Output = Vec<Self::Answer>> + Send;
}

struct Job<K: Kind> {
    offer: K::Offer,
    reply: oneshot::Sender<K::Answer>,
}

/// Counts for measurements: `writes / statements` is how many writes shared one commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Statements the batcher sent (each one round trip and one commit).
    pub statements: u64,
    /// Appends (or settles, in [`crate::PostgresStore::settle_stats`]) they carried.
    pub appends: u64,
}

/// Per lane (appends and settles share a batcher): the statements that carried offers of the
/// lane, and those offers.
#[derive(Default)]
struct Counters {
    statements: [AtomicU64; 2],
    offers: [AtomicU64; 2],
    /// All statements, whatever they carried.
    all: AtomicU64,
}

/// The handle to a batcher task (started on first use, on the caller's runtime, and again if
/// that runtime went away). Dropping it lets the task finish its queue and end.
pub(crate) struct Batcher<K: Kind> {
    pool: Arc<Conns>,
    sender: Mutex<Option<mpsc::UnboundedSender<Job<K>>>>,
    counters: std::sync::Arc<Counters>,
}

/// Group commit of appends and settles: one statement carries both.
pub(crate) type Writes = Batcher<WriteKind>;
/// Group commit of new runs.
pub(crate) type Creates = Batcher<CreateKind>;

impl<K: Kind> Batcher<K> {
    pub(crate) fn new(pool: Arc<Conns>) -> Self {
        Batcher {
            pool,
            sender: Mutex::new(None),
            counters: std::sync::Arc::default(),
        }
    }

    /// Every statement the batcher sent, and every offer they carried.
    pub(crate) fn total(&self) -> AppendStats {
        AppendStats {
            statements: self.counters.all.load(Ordering::Relaxed),
            appends: (0..2)
                .map(|l| self.counters.offers[l].load(Ordering::Relaxed))
                .sum(),
        }
    }

    /// The statements that carried offers of `lane` (0 for a kind with one), and those offers.
    pub(crate) fn stats(&self, lane: usize) -> AppendStats {
        AppendStats {
            statements: self.counters.statements[lane].load(Ordering::Relaxed),
            appends: self.counters.offers[lane].load(Ordering::Relaxed),
        }
    }

    /// Queues `offer` for the next statement and waits for its answer (after the commit).
    /// The offer is queued before the first `.await`.
    pub(crate) async fn offer(&self, offer: K::Offer) -> K::Answer {
        let (reply, answer) = oneshot::channel();
        let Some(sender) = self.sender() else {
            return K::failed();
        };
        if sender.send(Job { offer, reply }).is_err() {
            return K::failed();
        }
        // the task ended before answering (its runtime shut down): finish on the one-run path
        answer.await.unwrap_or_else(|_| K::failed())
    }

    fn sender(&self) -> Option<mpsc::UnboundedSender<Job<K>>> {
        let mut slot = self.sender.lock().ok()?;
        if let Some(s) = slot.as_ref()
            && !s.is_closed()
        {
            return Some(s.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (sender, receiver) = mpsc::unbounded_channel();
        runtime.spawn(batcher::<K>(
            self.pool.clone(),
            receiver,
            self.counters.clone(),
        ));
        *slot = Some(sender.clone());
        Some(sender)
    }
}

impl<K: Kind> std::fmt::Debug for Batcher<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("stats", &[self.stats(0), self.stats(1)])
            .finish_non_exhaustive()
    }
}

async fn batcher<K: Kind>(
    pool: Arc<Conns>,
    mut receiver: mpsc::UnboundedReceiver<Job<K>>,
    counters: std::sync::Arc<Counters>,
) {
    // offers for a run already in the batch, kept in order for the next one
    let mut later: VecDeque<Job<K>> = VecDeque::new();
    loop {
        let mut batch: Vec<Job<K>> = Vec::new();
        let mut runs: HashSet<RunId> = HashSet::new();
        let mut next_later = VecDeque::new();
        for job in later.drain(..) {
            if batch.len() < MAX_BATCH && runs.insert(K::run(&job.offer)) {
                batch.push(job);
            } else {
                next_later.push_back(job);
            }
        }
        later = next_later;
        if batch.is_empty() {
            match receiver.recv().await {
                Some(job) => {
                    runs.insert(K::run(&job.offer));
                    batch.push(job);
                }
                None => return,
            }
        }
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) if runs.insert(K::run(&job.offer)) => batch.push(job),
                Ok(job) => later.push_back(job),
                Err(_) => break,
            }
        }
        let (offers, replies): (Vec<K::Offer>, Vec<_>) =
            batch.into_iter().map(|j| (j.offer, j.reply)).unzip();
        let answers = match pool.get().await {
            Ok(mut conn) => K::write(&mut conn, &offers).await,
            Err(_) => vec![K::failed(); offers.len()],
        };
        counters.all.fetch_add(1, Ordering::Relaxed);
        let mut lanes = [0u64; 2];
        for offer in &offers {
            lanes[K::lane(offer).min(1)] += 1;
        }
        for (lane, n) in lanes.into_iter().enumerate() {
            if n > 0 {
                counters.statements[lane].fetch_add(1, Ordering::Relaxed);
                counters.offers[lane].fetch_add(n, Ordering::Relaxed);
            }
        }
        for (i, reply) in replies.into_iter().enumerate() {
            let _ = reply.send(answers.get(i).copied().unwrap_or_else(K::failed));
        }
    }
}

/// Appends and settles (see the module's text): a batch of only one of them is its kind's
/// statement ([`APPEND_MANY`], [`SETTLE_MANY`]); a batch of both is [`write_many`], one
/// statement and one commit for all of them.
pub(crate) struct WriteKind;

/// An offer to [`Writes`].
pub(crate) enum Write {
    Append(Offer),
    Settle(Box<SettleOffer>),
}

/// What the shared statement did with a [`Write`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrote {
    Append(Outcome),
    Settle(Settled),
}

impl Kind for WriteKind {
    type Offer = Write;
    type Answer = Wrote;

    fn run(offer: &Write) -> RunId {
        match offer {
            Write::Append(o) => o.run,
            Write::Settle(o) => o.prepared.id,
        }
    }

    /// Appends count in lane 0, settles in lane 1.
    fn lane(offer: &Write) -> usize {
        match offer {
            Write::Append(_) => 0,
            Write::Settle(_) => 1,
        }
    }

    fn failed() -> Wrote {
        // each caller turns this into its own kind's failure (see `Wrote::append`)
        Wrote::Append(Outcome::Failed)
    }

    async fn write(conn: &mut PgConnection, batch: &[Write]) -> Vec<Wrote> {
        let appends: Vec<&Offer> = batch
            .iter()
            .filter_map(|w| match w {
                Write::Append(o) => Some(o),
                Write::Settle(_) => None,
            })
            .collect();
        let settles: Vec<&SettleOffer> = batch
            .iter()
            .filter_map(|w| match w {
                Write::Settle(o) => Some(&**o),
                Write::Append(_) => None,
            })
            .collect();
        let sql: &'static str = match (appends.is_empty(), settles.is_empty()) {
            (false, true) => APPEND_MANY,
            (true, false) => SETTLE_MANY,
            _ => write_many(),
        };
        let mut query = sqlx::query(sql);
        if !appends.is_empty() {
            query = bind_appends(query, &appends);
        }
        if !settles.is_empty() {
            query = bind_settles(query, &settles);
        }
        let rows = query.fetch_all(&mut *conn).await.map(counted);
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                // a concurrent append of the same seqs, a lost connection, a timeout: each offer
                // is finished on its own
                tracing::debug!(error = %e, appends = appends.len(), settles = settles.len(), "batched write failed; finishing each on its own");
                return vec![Self::failed(); batch.len()];
            }
        };
        // appends: per run, (fence, records inserted); settles: per run written, its fence
        let mut appended: HashMap<RunId, (i64, i64)> = HashMap::new();
        let mut settled: HashMap<RunId, i64> = HashMap::new();
        for row in rows {
            let is_settle = match sql {
                APPEND_MANY => false,
                SETTLE_MANY => true,
                _ => match row.try_get::<bool, _>("settle") {
                    Ok(b) => b,
                    Err(_) => return vec![Self::failed(); batch.len()],
                },
            };
            let (Ok(id), Ok(fence)) =
                (row.try_get::<Uuid, _>("id"), row.try_get::<i64, _>("fence"))
            else {
                // committed, but unreadable: the one-run paths find what was written
                return vec![Self::failed(); batch.len()];
            };
            if is_settle {
                settled.insert(run_id(id), fence);
            } else {
                let Ok(inserted) = row.try_get::<i64, _>("inserted") else {
                    return vec![Self::failed(); batch.len()];
                };
                appended.insert(run_id(id), (fence, inserted));
            }
        }
        batch
            .iter()
            .map(|w| match w {
                Write::Append(o) => Wrote::Append(match appended.get(&o.run) {
                    None => Outcome::NoRun,
                    Some(&(_, inserted)) if inserted as usize == o.ats.len() => Outcome::Written,
                    Some(&(fence, _)) => Outcome::NotInserted { fence },
                }),
                Write::Settle(o) => Wrote::Settle(match settled.get(&o.prepared.id) {
                    Some(&fence) => Settled::Written { fence },
                    None => Settled::NotWritten,
                }),
            })
            .collect()
    }
}

impl Wrote {
    /// The answer to an append (a failed batch answers every offer [`WriteKind::failed`]).
    pub(crate) fn append(self) -> Outcome {
        match self {
            Wrote::Append(o) => o,
            Wrote::Settle(_) => Outcome::Failed,
        }
    }

    /// The answer to a settle.
    pub(crate) fn settle(self) -> Settled {
        match self {
            Wrote::Settle(s) => s,
            Wrote::Append(_) => Settled::Failed,
        }
    }
}

type Query<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

/// The appends' common table expressions: the runs locked in id order (so two batchers never
/// deadlock), each offer's fence and journal length checked against its own run, and the
/// records of the offers that pass inserted (`ins`). `$1`…`$7`.
macro_rules! append_ctes {
    () => {
        "WITH a AS ( \
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS a(run, first, fence)), \
         r AS ( \
             SELECT id, fence, (SELECT coalesce(max(seq) + 1, 0) FROM journal WHERE run = runs.id) AS len \
             FROM runs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE), \
         ok AS ( \
             SELECT a.run FROM a JOIN r ON r.id = a.run \
             WHERE r.len = a.first AND (a.fence IS NULL OR (r.fence = a.fence AND r.fence > 0))), \
         ins AS ( \
             INSERT INTO journal (run, seq, at, packed) \
             SELECT s.run, s.seq, s.at, s.packed \
             FROM unnest($4::uuid[], $5::bigint[], $6::bigint[], $7::bytea[]) \
                  AS s(run, seq, at, packed) \
             WHERE s.run IN (SELECT run FROM ok) \
             RETURNING run)"
    };
}

/// One row per existing run of the appends: its fence and how many records went in.
macro_rules! append_rows {
    () => {
        "SELECT r.id, r.fence, (SELECT count(*) FROM ins WHERE ins.run = r.id) AS inserted FROM r"
    };
}

/// The batch append (see [`append_ctes`]).
pub(crate) const APPEND_MANY: &str = concat!(append_ctes!(), " ", append_rows!());

/// Binds a batch of appends as `$1`…`$7` of [`APPEND_MANY`] and [`write_many`].
fn bind_appends<'q>(query: Query<'q>, batch: &[&'q Offer]) -> Query<'q> {
    let ids: Vec<Uuid> = batch.iter().map(|o| uuid(o.run)).collect();
    let firsts: Vec<i64> = batch.iter().map(|o| o.first as i64).collect();
    let fences: Vec<Option<i64>> = batch.iter().map(|o| o.fence).collect();
    let total: usize = batch.iter().map(|o| o.ats.len()).sum();
    let (mut runs, mut seqs, mut ats, mut packed) = (
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
    );
    for o in batch {
        for i in 0..o.ats.len() {
            runs.push(uuid(o.run));
            seqs.push((o.first + i as u64) as i64);
            ats.push(o.ats[i]);
            packed.push(o.packed[i].as_slice());
        }
    }
    query
        .bind(ids)
        .bind(firsts)
        .bind(fences)
        .bind(runs)
        .bind(seqs)
        .bind(ats)
        .bind(packed)
}

/// One run's settle: the run as it will be stored (`rules::prepare_settle`), the revision it
/// must find, the lease token it drops, and (`append_and_settle`) the last records, appended
/// in the same statement.
pub(crate) struct SettleOffer {
    pub(crate) prepared: Run,
    pub(crate) expected: u64,
    pub(crate) token: u64,
    pub(crate) records: Option<Records>,
}

/// Records to append with a settle: checked (consecutive seqs from `first`) and packed.
pub(crate) struct Records {
    pub(crate) first: u64,
    pub(crate) ats: Vec<i64>,
    pub(crate) packed: Vec<Vec<u8>>,
}

/// What the shared statement did with one settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settled {
    /// Stored and the lease dropped; `fence` is the run's fence.
    Written { fence: i64 },
    /// Nothing written (neither the run nor its records): the revision, the identity or the
    /// token did not match, or the journal does not end where the records begin.
    NotWritten,
    /// The statement failed as a whole: the caller takes the one-run path.
    Failed,
}

/// The settles' common table expressions: each run updated (`upd`) when its revision,
/// identity and lease token match and, for an offer with records (`$21` its first seq, NULL
/// for none), its journal ends where they begin (the token holds, so the fence is the token);
/// the records of the runs updated inserted (`sins`). `t.id = ANY($1)` bounds the rows of
/// `runs` read to the batch's, whatever join the planner picks: without it, a generic plan made
/// while `runs` was small read every run of the task, in `runs_by_task` order, for a merge join
/// (`tests/it/plans.rs`). `$1`…`$25` ([`write_many`] numbers them after the appends').
macro_rules! settle_ctes {
    () => {
        "u AS ( \
             SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::text[], $4::bigint[], $5::bigint[], \
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::uuid[], $11::bigint[], \
                     $12::text[], $13::bigint[], $14::text[], $15::bigint[], $16::bigint[], \
                     $17::bigint[], $18::bigint[], $19::bigint[], $20::bigint[], $21::bigint[]) \
              AS u(id, expected, task, created_at, version, status, input, output, error, parent_run, \
                   parent_seq, idempotency_key, wake_at, waiting_for, attempt, revision, updated_at, \
                   ended_at, expires_at, token, first)), \
         upd AS ( \
             UPDATE runs AS t SET version = u.version, status = u.status, \
             input = CASE WHEN t.input::text = u.input THEN t.input ELSE u.input::json END, \
             output = u.output::json, error = u.error::json, parent_run = u.parent_run, \
             parent_seq = u.parent_seq, idempotency_key = u.idempotency_key, wake_at = u.wake_at, \
             waiting_for = u.waiting_for, attempt = u.attempt, revision = u.revision, \
             updated_at = u.updated_at, ended_at = u.ended_at, expires_at = u.expires_at, \
             lease_owner = NULL, lease_token = NULL, lease_expires = NULL \
             FROM u \
             WHERE t.id = ANY($1) AND t.id = u.id AND t.revision = u.expected AND t.task = u.task \
               AND t.created_at = u.created_at AND t.lease_token = u.token \
               AND (u.first IS NULL \
                    OR u.first = (SELECT coalesce(max(seq) + 1, 0) FROM journal WHERE run = t.id)) \
             RETURNING t.id, t.fence), \
         sins AS ( \
             INSERT INTO journal (run, seq, at, packed) \
             SELECT s.run, s.seq, s.at, s.packed \
             FROM unnest($22::uuid[], $23::bigint[], $24::bigint[], $25::bytea[]) \
                  AS s(run, seq, at, packed) \
             WHERE s.run IN (SELECT id FROM upd))"
    };
}

/// The batch settle (`settle_run`, and `append_and_settle` with its records; see
/// [`settle_ctes`]): the records and the end in one statement, one commit. One row per run
/// updated: its id and fence; the rows not written are explained by the caller from the stored
/// run.
pub(crate) const SETTLE_MANY: &str = concat!("WITH ", settle_ctes!(), " SELECT id, fence FROM upd");

/// Appends and settles in one statement: [`APPEND_MANY`]'s parameters, then
/// [`SETTLE_MANY`]'s (`$8`…`$32`); a row per run of either, `settle` telling which.
pub(crate) fn write_many() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "{}, {} SELECT false AS settle, r.id, r.fence, \
             (SELECT count(*) FROM ins WHERE ins.run = r.id) AS inserted FROM r \
             UNION ALL SELECT true, upd.id, upd.fence, NULL FROM upd",
            append_ctes!(),
            shift_params(settle_ctes!(), 7)
        )
    })
}

/// `sql` with every parameter `$n` renamed `$(n + by)`.
fn shift_params(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Binds where each run sits among others — its parent, idempotency key, timer and what it
/// waits for — as five consecutive parameters (of [`SETTLE_MANY`] and [`CREATE_MANY`]).
fn bind_links<'q>(query: Query<'q>, runs: &[&'q Run]) -> Query<'q> {
    query
        .bind(
            runs.iter()
                .map(|r| r.parent.map(|p| uuid(p.run)))
                .collect::<Vec<_>>(),
        )
        .bind(
            runs.iter()
                .map(|r| r.parent.map(|p| p.seq as i64))
                .collect::<Vec<_>>(),
        )
        .bind(
            runs.iter()
                .map(|r| r.idempotency_key.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(runs.iter().map(|r| r.wake_at).collect::<Vec<_>>())
        .bind(
            runs.iter()
                .map(|r| r.waiting_for.as_deref())
                .collect::<Vec<_>>(),
        )
}

/// Binds a batch of settles as `$1`…`$25` of [`SETTLE_MANY`] (`$8`… of [`write_many`]).
fn bind_settles<'q>(query: Query<'q>, batch: &[&'q SettleOffer]) -> Query<'q> {
    let runs: Vec<&'q Run> = batch.iter().map(|o| &o.prepared).collect();
    let (mut rec_runs, mut rec_seqs, mut rec_ats, mut rec_packed) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::<&[u8]>::new());
    for o in batch {
        if let Some(r) = &o.records {
            for (i, (at, packed)) in r.ats.iter().zip(&r.packed).enumerate() {
                rec_runs.push(uuid(o.prepared.id));
                rec_seqs.push((r.first + i as u64) as i64);
                rec_ats.push(*at);
                rec_packed.push(packed.as_slice());
            }
        }
    }
    let query = query
        .bind(runs.iter().map(|r| uuid(r.id)).collect::<Vec<_>>())
        .bind(batch.iter().map(|o| o.expected as i64).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.task.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.created_at).collect::<Vec<_>>())
        .bind(
            runs.iter()
                .map(|r| i64::from(r.version))
                .collect::<Vec<_>>(),
        )
        .bind(runs.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| json_text(&r.input)).collect::<Vec<_>>())
        .bind(
            runs.iter()
                .map(|r| r.output.as_ref().map(json_text))
                .collect::<Vec<_>>(),
        )
        .bind(
            runs.iter()
                .map(|r| r.error.as_ref().map(json_text))
                .collect::<Vec<_>>(),
        );
    bind_links(query, &runs)
        .bind(
            runs.iter()
                .map(|r| i64::from(r.attempt))
                .collect::<Vec<_>>(),
        )
        .bind(runs.iter().map(|r| r.revision as i64).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.updated_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.ended_at).collect::<Vec<_>>())
        .bind(runs.iter().map(|r| r.expires_at).collect::<Vec<_>>())
        .bind(batch.iter().map(|o| o.token as i64).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|o| o.records.as_ref().map(|r| r.first as i64))
                .collect::<Vec<_>>(),
        )
        .bind(rec_runs)
        .bind(rec_seqs)
        .bind(rec_ats)
        .bind(rec_packed)
}

/// One new run to store (`create_run_of`): the run as created (queued, no lease, no end), and
/// the version it pins (`None`: the latest stored as the statement runs).
pub(crate) struct CreateOffer {
    pub(crate) run: Run,
    pub(crate) version: Option<i64>,
}

/// What the shared statement did with one new run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Create {
    /// Stored, pinned to `version`.
    Inserted { version: i64 },
    /// Not stored: the task or the version is missing, or the idempotency key (or the id) is
    /// taken. The caller goes the usual way, which names what happened.
    NotInserted,
    /// The statement failed as a whole (nothing of the batch was written, or — after a lost
    /// connection — it is unknown): the caller stores the same run (the same id, so it can
    /// only be stored once) on the one-run path.
    Failed,
}

/// Creates (`create_run_of`): many runs of any tasks inserted in one statement and one commit
/// (one notification of new runs for all of them), each with the version it asks for.
pub(crate) struct CreateKind;

/// The batch insert: each row pins the version its `version` asks for (NULL: the task's
/// latest) as the statement runs; a row whose version is missing, or whose key or id is taken,
/// is not inserted (and the others are). The columns a new run leaves NULL (output, error,
/// lease, end) are not written.
pub(crate) const CREATE_MANY: &str = "WITH u AS ( \
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::text[], $5::text[], \
                 $6::uuid[], $7::bigint[], $8::text[], $9::bigint[], $10::text[], $11::bigint[], \
                 $12::bigint[], $13::bigint[], $14::bigint[], $15::bigint[], $16::bigint[]) \
          AS u(id, task, version, status, input, parent_run, parent_seq, idempotency_key, \
               wake_at, waiting_for, fence, attempt, revision, created_at, updated_at, \
               expires_at)) \
     INSERT INTO runs (id, task, version, status, input, parent_run, parent_seq, \
         idempotency_key, wake_at, waiting_for, fence, attempt, revision, created_at, \
         updated_at, expires_at) \
     SELECT u.id, u.task, v.version, u.status, u.input::json, u.parent_run, u.parent_seq, \
            u.idempotency_key, u.wake_at, u.waiting_for, u.fence, u.attempt, u.revision, \
            u.created_at, u.updated_at, u.expires_at \
     FROM u CROSS JOIN LATERAL ( \
         SELECT t.version FROM task_versions t WHERE t.task = u.task \
         AND (u.version IS NULL OR t.version = u.version) ORDER BY t.version DESC LIMIT 1) AS v \
     ON CONFLICT DO NOTHING RETURNING id, version";

impl CreateKind {
    /// Whether `run` is a new run the batch statement stores whole (it writes no output,
    /// error, lease or end).
    pub(crate) fn takes(run: &Run) -> bool {
        run.output.is_none() && run.error.is_none() && run.lease.is_none() && run.ended_at.is_none()
    }
}

impl Kind for CreateKind {
    type Offer = CreateOffer;
    type Answer = Create;

    fn run(offer: &CreateOffer) -> RunId {
        offer.run.id
    }

    fn failed() -> Create {
        Create::Failed
    }

    async fn write(conn: &mut PgConnection, batch: &[CreateOffer]) -> Vec<Create> {
        let runs: Vec<&Run> = batch.iter().map(|o| &o.run).collect();
        let query = sqlx::query(CREATE_MANY)
            .bind(runs.iter().map(|r| uuid(r.id)).collect::<Vec<_>>())
            .bind(runs.iter().map(|r| r.task.as_str()).collect::<Vec<_>>())
            .bind(batch.iter().map(|o| o.version).collect::<Vec<_>>())
            .bind(runs.iter().map(|r| r.status.as_str()).collect::<Vec<_>>())
            .bind(runs.iter().map(|r| json_text(&r.input)).collect::<Vec<_>>());
        let rows = bind_links(query, &runs)
            .bind(runs.iter().map(|r| r.fence as i64).collect::<Vec<_>>())
            .bind(
                runs.iter()
                    .map(|r| i64::from(r.attempt))
                    .collect::<Vec<_>>(),
            )
            .bind(runs.iter().map(|r| r.revision as i64).collect::<Vec<_>>())
            .bind(runs.iter().map(|r| r.created_at).collect::<Vec<_>>())
            .bind(runs.iter().map(|r| r.updated_at).collect::<Vec<_>>())
            .bind(runs.iter().map(|r| r.expires_at).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await
            .map(counted);
        let rows = match rows {
            Ok(rows) => rows,
            Err(e) => {
                tracing::debug!(error = %e, creates = batch.len(), "batched create failed; storing each on its own");
                return vec![Create::Failed; batch.len()];
            }
        };
        let mut inserted = HashMap::with_capacity(rows.len());
        for row in rows {
            match (row.try_get::<Uuid, _>(0), row.try_get::<i64, _>(1)) {
                (Ok(id), Ok(version)) => {
                    inserted.insert(run_id(id), version);
                }
                // committed, but unreadable: the one-run path finds the run stored
                _ => return vec![Create::Failed; batch.len()],
            }
        }
        batch
            .iter()
            .map(|o| match inserted.get(&o.run.id) {
                Some(&version) => Create::Inserted { version },
                None => Create::NotInserted,
            })
            .collect()
    }
}
