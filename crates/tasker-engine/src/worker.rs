//! The worker loop: keeps `concurrency` runs in flight, and stops without stranding runs.

use std::collections::HashMap;
use std::time::Duration;

use sequential_adaptor::{ClaimRequest, RunId, RunStatus, now_millis};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::Engine;
use crate::error::{Error, Result};
use crate::failures::{self, Driven};

/// Schedules this process as `sequential-ecosystem worker` does by default (`--scheduling
/// batch`), for a process that keeps many runs in flight: the calling thread and every thread it
/// starts afterwards (a Tokio runtime's included) under Linux's SCHED_BATCH
/// ([`sequential_support::process::batch_scheduling`]), and the thread that frees finished runs'
/// JavaScript contexts in the cores' idle time ([`sequential_fetch_vm::clean_up_in_idle_time`]).
/// Call it before the threads are started. Errors when SCHED_BATCH is refused (the janitor's
/// policy is set all the same); elsewhere than Linux it does nothing.
pub fn worker_scheduling() -> std::io::Result<()> {
    sequential_fetch_vm::clean_up_in_idle_time();
    sequential_support::process::batch_scheduling()
}

/// How far a stop request has gone. Ordered: each level includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Level {
    /// Claim and drive.
    Run,
    /// Claim nothing more; runs in hand finish the step they are in, then are released.
    Drain,
    /// Release the runs in hand now (results that came back are journaled first).
    Now,
}

/// Asks a worker ([`Engine::work_until`]) to stop. Clones share one request.
///
/// [`stop`](Self::stop) is the first Ctrl-C: the worker claims nothing more, lets the steps in
/// flight finish within [`EngineConfig::stop_grace`](crate::EngineConfig::stop_grace), then
/// releases the leases of the runs still in hand. [`stop_now`](Self::stop_now) is the second:
/// the runs in hand are released at once. Either way another worker can claim those runs
/// immediately, not after their leases expire.
#[derive(Clone, Debug)]
pub struct StopHandle {
    tx: std::sync::Arc<watch::Sender<Level>>,
}

impl Default for StopHandle {
    fn default() -> Self {
        StopHandle {
            tx: std::sync::Arc::new(watch::Sender::new(Level::Run)),
        }
    }
}

impl StopHandle {
    /// A handle that has not asked for anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Stop claiming; the runs in hand finish their current step (within the grace period),
    /// then are released.
    pub fn stop(&self) {
        self.raise(Level::Drain);
    }

    /// Release the runs in hand now. Calls in flight are abandoned (the next worker performs
    /// them again, with the same idempotency key); results that already came back are
    /// journaled first.
    pub fn stop_now(&self) {
        self.raise(Level::Now);
    }

    /// Whether a stop was asked for.
    pub fn is_stopping(&self) -> bool {
        *self.tx.borrow() > Level::Run
    }

    fn raise(&self, to: Level) {
        self.tx.send_if_modified(|l| {
            let raised = to > *l;
            if raised {
                *l = to;
            }
            raised
        });
    }

    fn level(&self) -> Level {
        *self.tx.borrow()
    }

    fn watch(&self) -> StopWatch {
        StopWatch(Some(self.tx.subscribe()))
    }
}

/// A driver's view of a stop request.
#[derive(Clone, Debug)]
pub(crate) struct StopWatch(Option<watch::Receiver<Level>>);

impl StopWatch {
    /// A request that never comes (`run_until_settled`).
    pub(crate) fn never() -> Self {
        StopWatch(None)
    }

    pub(crate) fn level(&self) -> Level {
        self.0.as_ref().map_or(Level::Run, |rx| *rx.borrow())
    }

    /// Resolves once the runs in hand are to be released now; never for [`StopWatch::never`].
    pub(crate) async fn now(&mut self) {
        if let Some(rx) = &mut self.0
            && rx.wait_for(|l| *l == Level::Now).await.is_ok()
        {
            return;
        }
        std::future::pending::<()>().await
    }
}

/// What a worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WorkReport {
    /// Runs claimed.
    pub claimed: usize,
    /// Runs handed back unsettled when the worker stopped (their leases released, so another
    /// worker continues them at once).
    pub released: usize,
}

/// Whether the loop returns when nothing is left to do, or runs until stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Until {
    Idle,
    Stopped,
}

/// [`EngineConfig::claim_gather`] on PostgreSQL unless set: about one append batch's round trip.
const POSTGRES_CLAIM_GATHER: Duration = Duration::from_millis(3);

/// How long drivers get to hand back their runs after a stop-now before the worker aborts them
/// and releases their leases itself.
const RELEASE_WINDOW: Duration = Duration::from_secs(1);

impl Engine {
    /// The worker loop behind [`Engine::work_once`], [`Engine::work`] and
    /// [`Engine::work_until`]: keeps up to `concurrency` runs in flight and claims the next one
    /// as soon as a run settles (ends, waits, pauses) or is released.
    pub(crate) async fn pump(&self, stop: &StopHandle, until: Until) -> Result<WorkReport> {
        let limit = self.config.concurrency.max(1);
        let gather = self.config.claim_gather.unwrap_or_else(|| {
            if self.store.scheme() == "postgres" {
                POSTGRES_CLAIM_GATHER
            } else {
                Duration::ZERO
            }
        });
        // keep a warm session engine per run in flight (up to 64; runs waiting on slow calls
        // park their sessions, see `EngineConfig::park_after`) instead of making one per run
        sequential_fetch_vm::keep_idle_sessions(limit.min(64));
        // what the drivers see: the caller's request, raised to `Now` when the grace runs out
        let drivers = StopHandle::new();
        let mut outside = stop.tx.subscribe();
        let mut report = WorkReport::default();
        let mut set = tokio::task::JoinSet::new();
        let mut in_hand: HashMap<tokio::task::Id, (RunId, u64)> = HashMap::new();
        let mut grace_ends: Option<Instant> = None;
        let mut abort_at: Option<Instant> = None;
        let mut claim_error: Option<Error> = None;
        loop {
            let asked = stop.level();
            if asked > drivers.level() {
                drivers.raise(asked);
            }
            if drivers.level() == Level::Drain && grace_ends.is_none() {
                grace_ends = Some(Instant::now() + self.config.stop_grace);
            }
            if drivers.level() == Level::Now && abort_at.is_none() {
                abort_at = Some(Instant::now() + RELEASE_WINDOW);
            }
            let mut idle = false;
            // while few slots are free, let more of the runs in hand settle before claiming, so
            // one claim fills several slots (see `EngineConfig::claim_gather`)
            let wanted = (limit / 4).max(1);
            if !gather.is_zero()
                && drivers.level() == Level::Run
                && !set.is_empty()
                && limit - set.len() < wanted
            {
                let deadline = tokio::time::Instant::now() + gather;
                while limit - set.len() < wanted {
                    tokio::select! {
                        done = set.join_next_with_id() => {
                            let Some(done) = done else { break };
                            self.settled(done, &mut in_hand, &mut report, &mut set);
                        }
                        _ = tokio::time::sleep_until(deadline) => break,
                        _ = outside.changed() => break,
                    }
                }
            }
            if drivers.level() == Level::Run && set.len() < limit {
                let req = ClaimRequest {
                    worker: self.config.worker_id.clone(),
                    now: now_millis(),
                    lease_ms: self.config.lease.as_millis() as u64,
                    limit: limit - set.len(),
                };
                match self.store.claim(&req).await {
                    Ok(claims) => {
                        idle = claims.is_empty();
                        report.claimed += claims.len();
                        for claim in claims {
                            let (id, token) = (claim.run.id, claim.token);
                            let engine = self.clone();
                            let mut watch = drivers.watch();
                            let handle = set.spawn(async move {
                                failures::drive_claim(&engine, claim, &mut watch).await
                            });
                            in_hand.insert(handle.id(), (id, token));
                        }
                    }
                    Err(e) => {
                        // the store fails: hand back what we hold, then report it
                        tracing::warn!(error = %e, "claiming runs failed; the worker stops");
                        claim_error = Some(e.into());
                        drivers.raise(Level::Now);
                        continue;
                    }
                }
            }
            if set.is_empty() {
                if drivers.level() > Level::Run {
                    break;
                }
                if until == Until::Idle && idle {
                    break;
                }
            }
            let full = set.len() >= limit;
            tokio::select! {
                done = set.join_next_with_id(), if !set.is_empty() => {
                    let Some(done) = done else { continue };
                    self.settled(done, &mut in_hand, &mut report, &mut set);
                    // book every other driver that finished meanwhile (while the claim was on
                    // its way, say) before claiming again: one claim fills all the free slots,
                    // instead of one claim's round trip per finished run while runs queue
                    while let Some(done) = set.try_join_next_with_id() {
                        self.settled(done, &mut in_hand, &mut report, &mut set);
                    }
                }
                // something may have become runnable (free slots only)
                _ = self.store.wait_for_change(Duration::from_millis(200)),
                    if drivers.level() == Level::Run && !full => {}
                _ = outside.changed() => {}
                _ = sleep_until(grace_ends), if drivers.level() == Level::Drain => {
                    tracing::info!(runs = set.len(), "the stop grace period is over; releasing the runs in hand");
                    drivers.raise(Level::Now);
                }
                _ = sleep_until(abort_at), if abort_at.is_some() => {
                    set.abort_all();
                    while let Some(done) = set.join_next_with_id().await {
                        self.settled(done, &mut in_hand, &mut report, &mut set);
                    }
                    for (_, (id, token)) in in_hand.drain() {
                        if self.store.release(id, token).await.is_ok() {
                            report.released += 1;
                        }
                    }
                }
            }
        }
        match claim_error {
            Some(e) => Err(e),
            None => Ok(report),
        }
    }

    /// Books a finished driver task. A driver that panicked is a failed drive of its run.
    fn settled(
        &self,
        done: std::result::Result<(tokio::task::Id, Result<Driven>), tokio::task::JoinError>,
        in_hand: &mut HashMap<tokio::task::Id, (RunId, u64)>,
        report: &mut WorkReport,
        set: &mut tokio::task::JoinSet<Result<Driven>>,
    ) {
        match done {
            Ok((task, outcome)) => {
                let held = in_hand.remove(&task);
                match outcome {
                    Ok(Driven::Run(run))
                        if run.lease.is_none()
                            && matches!(run.status, RunStatus::Running | RunStatus::Stopping) =>
                    {
                        report.released += 1;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let run = held.map(|(id, _)| id.to_string()).unwrap_or_default();
                        tracing::warn!(%run, error = %e, "driving the run failed and the failure could not be recorded; it is claimable again once its lease expires");
                    }
                }
            }
            Err(join) => {
                let task = join.id();
                let Some((id, token)) = in_hand.remove(&task) else {
                    return;
                };
                if join.is_cancelled() {
                    // aborted at a stop: the caller releases the lease
                    in_hand.insert(task, (id, token));
                    return;
                }
                // the driver panicked: count it as a failed drive of the run
                let cause = Error::Internal {
                    doing: format!("driving run {id}"),
                    cause: join.to_string(),
                };
                let engine = self.clone();
                let handle = set
                    .spawn(async move { failures::after_failure(&engine, id, token, cause).await });
                in_hand.insert(handle.id(), (id, token));
            }
        }
    }
}

/// Sleeps until `at` (forever when `None`).
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
