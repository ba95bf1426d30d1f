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

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use sequential_adaptor::RunId;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::codec::{counted, uuid};

/// The most appends one statement carries.
const MAX_BATCH: usize = 256;

/// One run's append, checked (one run, consecutive seqs, non-empty) and encoded.
pub(crate) struct Offer {
    pub(crate) run: RunId,
    pub(crate) first: u64,
    pub(crate) kinds: Vec<String>,
    pub(crate) ats: Vec<i64>,
    pub(crate) data: Vec<String>,
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

struct Job {
    offer: Offer,
    reply: oneshot::Sender<Outcome>,
}

/// Counts for measurements: `appends / statements` is how many appends shared one commit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AppendStats {
    /// Statements the batcher sent (each one round trip and one commit).
    pub statements: u64,
    /// Appends they carried.
    pub appends: u64,
}

#[derive(Default)]
struct Counters {
    statements: AtomicU64,
    appends: AtomicU64,
}

/// The handle to the batcher task (started on first use, on the caller's runtime, and again if
/// that runtime went away). Dropping it lets the task finish its queue and end.
pub(crate) struct Appends {
    pool: PgPool,
    sender: Mutex<Option<mpsc::UnboundedSender<Job>>>,
    counters: std::sync::Arc<Counters>,
}

impl Appends {
    pub(crate) fn new(pool: PgPool) -> Self {
        Appends {
            pool,
            sender: Mutex::new(None),
            counters: std::sync::Arc::default(),
        }
    }

    pub(crate) fn stats(&self) -> AppendStats {
        AppendStats {
            statements: self.counters.statements.load(Ordering::Relaxed),
            appends: self.counters.appends.load(Ordering::Relaxed),
        }
    }

    /// Queues `offer` for the next statement and waits for its outcome (after the commit).
    /// The offer is queued before the first `.await`.
    pub(crate) async fn offer(&self, offer: Offer) -> Outcome {
        let (reply, answer) = oneshot::channel();
        let Some(sender) = self.sender() else {
            return Outcome::Failed;
        };
        if sender.send(Job { offer, reply }).is_err() {
            return Outcome::Failed;
        }
        // the task ended before answering (its runtime shut down): finish on the one-run path
        answer.await.unwrap_or(Outcome::Failed)
    }

    fn sender(&self) -> Option<mpsc::UnboundedSender<Job>> {
        let mut slot = self.sender.lock().ok()?;
        if let Some(s) = slot.as_ref()
            && !s.is_closed()
        {
            return Some(s.clone());
        }
        let runtime = tokio::runtime::Handle::try_current().ok()?;
        let (sender, receiver) = mpsc::unbounded_channel();
        runtime.spawn(batcher(self.pool.clone(), receiver, self.counters.clone()));
        *slot = Some(sender.clone());
        Some(sender)
    }
}

async fn batcher(
    pool: PgPool,
    mut receiver: mpsc::UnboundedReceiver<Job>,
    counters: std::sync::Arc<Counters>,
) {
    // appends to a run already in the batch, kept in order for the next one
    let mut later: VecDeque<Job> = VecDeque::new();
    loop {
        let mut batch: Vec<Job> = Vec::new();
        let mut runs: HashSet<RunId> = HashSet::new();
        let mut next_later = VecDeque::new();
        for job in later.drain(..) {
            if batch.len() < MAX_BATCH && runs.insert(job.offer.run) {
                batch.push(job);
            } else {
                next_later.push_back(job);
            }
        }
        later = next_later;
        if batch.is_empty() {
            match receiver.recv().await {
                Some(job) => {
                    runs.insert(job.offer.run);
                    batch.push(job);
                }
                None => return,
            }
        }
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) if runs.insert(job.offer.run) => batch.push(job),
                Ok(job) => later.push_back(job),
                Err(_) => break,
            }
        }
        let outcomes = write(&pool, &batch).await;
        counters.statements.fetch_add(1, Ordering::Relaxed);
        counters
            .appends
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        for job in batch {
            let outcome = match &outcomes {
                Some(found) => match found.get(&job.offer.run) {
                    None => Outcome::NoRun,
                    Some(&(_, inserted)) if inserted as usize == job.offer.kinds.len() => {
                        Outcome::Written
                    }
                    Some(&(fence, _)) => Outcome::NotInserted { fence },
                },
                None => Outcome::Failed,
            };
            let _ = job.reply.send(outcome);
        }
    }
}

/// The batch statement: the runs locked in id order (so two batchers never deadlock), each
/// offer's fence and journal length checked against its own run, and the records of the offers
/// that pass inserted. One row per existing run: its fence and how many records went in.
const APPEND_MANY: &str = "WITH a AS ( \
         SELECT * FROM unnest($1::uuid[], $2::bigint[], $3::bigint[]) AS a(run, first, fence)), \
     r AS ( \
         SELECT id, fence, (SELECT coalesce(max(seq) + 1, 0) FROM journal WHERE run = runs.id) AS len \
         FROM runs WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE), \
     ok AS ( \
         SELECT a.run FROM a JOIN r ON r.id = a.run \
         WHERE r.len = a.first AND (a.fence IS NULL OR (r.fence = a.fence AND r.fence > 0))), \
     ins AS ( \
         INSERT INTO journal (run, seq, kind, at, data) \
         SELECT s.run, s.seq, s.kind, s.at, s.data::json \
         FROM unnest($4::uuid[], $5::bigint[], $6::text[], $7::bigint[], $8::text[]) \
              AS s(run, seq, kind, at, data) \
         WHERE s.run IN (SELECT run FROM ok) \
         RETURNING run) \
     SELECT r.id, r.fence, (SELECT count(*) FROM ins WHERE ins.run = r.id) AS inserted FROM r";

/// Runs the batch statement; per run: (fence, records inserted). `None` when it failed.
async fn write(pool: &PgPool, batch: &[Job]) -> Option<HashMap<RunId, (i64, i64)>> {
    let ids: Vec<Uuid> = batch.iter().map(|j| uuid(j.offer.run)).collect();
    let firsts: Vec<i64> = batch.iter().map(|j| j.offer.first as i64).collect();
    let fences: Vec<Option<i64>> = batch.iter().map(|j| j.offer.fence).collect();
    let total: usize = batch.iter().map(|j| j.offer.kinds.len()).sum();
    let (mut runs, mut seqs, mut kinds, mut ats, mut data) = (
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
        Vec::with_capacity(total),
    );
    for job in batch {
        let o = &job.offer;
        for i in 0..o.kinds.len() {
            runs.push(uuid(o.run));
            seqs.push((o.first + i as u64) as i64);
            kinds.push(o.kinds[i].as_str());
            ats.push(o.ats[i]);
            data.push(o.data[i].as_str());
        }
    }
    let rows = sqlx::query(APPEND_MANY)
        .bind(ids)
        .bind(firsts)
        .bind(fences)
        .bind(runs)
        .bind(seqs)
        .bind(kinds)
        .bind(ats)
        .bind(data)
        .fetch_all(pool)
        .await
        .map(counted);
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            // a concurrent append of the same seqs, a lost connection, a timeout: each offer is
            // finished on its own
            tracing::debug!(error = %e, appends = batch.len(), "batched append failed; finishing each on its own");
            return None;
        }
    };
    let mut out = HashMap::with_capacity(rows.len());
    for row in rows {
        let id: Uuid = row.try_get(0).ok()?;
        let fence: i64 = row.try_get(1).ok()?;
        let inserted: i64 = row.try_get(2).ok()?;
        out.insert(RunId::from_bytes(*id.as_bytes()), (fence, inserted));
    }
    Some(out)
}

impl std::fmt::Debug for Appends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Appends")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}
