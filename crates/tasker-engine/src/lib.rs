#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod abort;
mod budget;
mod driver;
mod error;
mod failures;
pub mod graph;
pub mod journal;
pub mod machine;
mod memory;
mod tools;
mod worker;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sequential_adaptor::{
    Claim, ClaimRequest, Fence, JournalRecord, NewRun, NewRunOf, Run, RunId, RunStatus,
    StorageAdapter, Takeover, TaskName, VersionSel, now_millis,
};
use sequential_fetch_vm::Session;
use sequential_http_wrapper::Fetcher;
use serde_json::{Value, json};

pub use budget::RunTimeout;
pub use error::{Error, Result};
pub use journal::RecordKind;
/// The graph core the engine drives graph tasks with (parse, check, step, fold).
pub use sequential_flow_graph as flow_graph;
pub use tools::{Tool, ToolCall, ToolRegistry};
pub use worker::{StopHandle, WorkReport, worker_scheduling};

/// How an engine behaves.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The lease owner written into claims (host, pid, worker).
    pub worker_id: String,
    /// Lease length; renewed while a run is driven.
    pub lease: Duration,
    /// HTTP client limits and the default retry policy: the default fetcher is a
    /// [`sequential_http_wrapper::Client`] with these (see [`Engine::with_fetcher`]); the retry
    /// policy is also what a task's `retry` settings start from.
    pub http: sequential_http_wrapper::ClientConfig,
    /// VM options (mode, limits).
    pub vm: sequential_fetch_vm::Options,
    /// Runs driven at once by [`Engine::work`].
    pub concurrency: usize,
    /// Live sessions kept in memory between steps of waiting runs (a hot resume needs no
    /// replay); the least recently used are dropped beyond this.
    pub max_hot_sessions: usize,
    /// A run whose calls (fetches, tools) are out longer than this (plus a millisecond per
    /// entry of its journal, so that replaying it stays a small fraction of the wait) parks its
    /// JavaScript session as data: the session's thread and runtime are freed, and the session is rebuilt
    /// by replaying the journal when the results are in (a cold resume, ~1 ms for a hundred
    /// recorded calls). So a thousand runs waiting on slow calls hold their journals, not a
    /// thousand JavaScript runtimes. `None` keeps every session live until its run settles.
    pub park_after: Option<Duration>,
    /// Drives of one run that may fail (a storage error, an engine task that panicked) before
    /// the run is failed with the last cause; each retry waits [`drive_retry_delay`]
    /// doubling (at most a minute). An error that retrying cannot cure (a malformed `retry`
    /// in the task's config, a journal that cannot be decoded) fails the run at once.
    ///
    /// [`drive_retry_delay`]: EngineConfig::drive_retry_delay
    pub max_drive_attempts: u32,
    /// The wait before a run whose drive failed is driven again (doubled per failure).
    pub drive_retry_delay: Duration,
    /// How long a stopping worker lets the steps in flight finish before it releases the runs
    /// in hand ([`StopHandle::stop`]).
    pub stop_grace: Duration,
    /// How long each run may be active — driven, not waiting in storage for a timer, an event
    /// or a child run — before it fails with a `TimeoutError` naming [`RunTimeout::setting`].
    /// `None`: no bound.
    pub run_timeout: Option<RunTimeout>,
    /// While fewer than a quarter of the worker's slots are free, the worker waits up to this
    /// long for more of its runs to settle before it claims, so that one claim fills several
    /// slots. `None`: the store's choice — 3 ms on PostgreSQL, where every claim is a statement
    /// and a commit of its own (in a steady stream of ten-step runs it halves the claims and
    /// raised throughput 7–10%), none elsewhere (SQLite's claims join the writer's group
    /// commit). A worker with no run in hand claims at once.
    pub claim_gather: Option<Duration>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            worker_id: format!(
                "{}:{}",
                sequential_support::process::hostname(),
                std::process::id()
            ),
            lease: Duration::from_secs(15),
            http: sequential_http_wrapper::ClientConfig::default(),
            vm: sequential_fetch_vm::Options::default(),
            concurrency: 16,
            max_hot_sessions: 64,
            park_after: Some(Duration::from_millis(200)),
            max_drive_attempts: 5,
            drive_retry_delay: Duration::from_secs(1),
            stop_grace: Duration::from_secs(10),
            run_timeout: None,
            claim_gather: None,
        }
    }
}

/// How long a kill waits for the driver of this process that holds the run to end it (the
/// driver may be in a step of JavaScript, bounded by the CPU slice) before cancelling it in
/// storage regardless.
const ABORT_WAIT: Duration = Duration::from_secs(5);

/// How [`Engine::start`] starts a run.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Same key and input → the existing run.
    pub idempotency_key: Option<String>,
    /// Pin this version instead of the latest.
    pub version: Option<u32>,
    /// Store the new run already claimed by this engine (one durable write where the backend
    /// can: SQLite), so that the [`Engine::run_until_settled`] that follows drives it without
    /// a claim of its own. For a caller that drives the run right away: a claimed run that
    /// nobody drives is taken by another worker only once its lease has run out.
    pub claim: bool,
}

/// Starts and drives runs over one storage backend.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Arc<dyn StorageAdapter>,
    fetcher: Arc<dyn Fetcher>,
    config: Arc<EngineConfig>,
    tools: Arc<ToolRegistry>,
    hot: Arc<Mutex<HotSessions>>,
    hot_resumes: Arc<std::sync::atomic::AtomicU64>,
    parks: Arc<std::sync::atomic::AtomicU64>,
    snapshots: Arc<Mutex<Snapshots>>,
    /// The runs this engine's drivers hold (how a kill fires their `ctx.signal`).
    live: Arc<abort::Live>,
    /// Runs claimed as they were started (`StartOptions::claim`), until driven.
    claimed: Arc<Mutex<HashMap<RunId, Claim>>>,
    /// Task versions read for claims that named their version's hash
    /// ([`Claim::version_hash`]), so the next run of that version is started without reading
    /// it again.
    versions: Arc<Mutex<KeptVersions>>,
}

/// Task versions by content hash, each checked against the claimed run's task and version
/// before it is used (one content may be two tasks' versions).
#[derive(Debug, Default)]
struct KeptVersions {
    by_hash: HashMap<String, Arc<sequential_adaptor::TaskVersion>>,
    /// The code and graph bytes of the versions kept.
    bytes: usize,
}

/// The most task versions an engine keeps, and the most bytes of code and graph they may hold;
/// beyond either it starts over (a version larger than the byte limit is not kept).
const MAX_KEPT_VERSIONS: usize = 64;
const MAX_KEPT_BYTES: usize = 16 << 20;

impl KeptVersions {
    fn get(&self, run: &Run, hash: &str) -> Option<Arc<sequential_adaptor::TaskVersion>> {
        self.by_hash
            .get(hash)
            .filter(|v| v.task == run.task && v.version == run.version)
            .cloned()
    }

    fn keep(&mut self, version: Arc<sequential_adaptor::TaskVersion>) {
        let size = version.code.len() + version.graph.as_ref().map_or(0, |g| g.to_string().len());
        if size > MAX_KEPT_BYTES {
            return;
        }
        if self.by_hash.len() >= MAX_KEPT_VERSIONS || self.bytes + size > MAX_KEPT_BYTES {
            self.by_hash.clear();
            self.bytes = 0;
        }
        if self.by_hash.insert(version.hash.clone(), version).is_none() {
            self.bytes += size;
        }
    }
}

/// The graph snapshot of each graph run this engine drove lately, least recently used first.
#[derive(Debug, Default)]
struct Snapshots {
    order: VecDeque<RunId>,
    kept: HashMap<RunId, flow_graph::Snapshot>,
}

/// Live sessions of waiting runs, least recently used first.
#[derive(Debug, Default)]
struct HotSessions {
    order: VecDeque<RunId>,
    sessions: HashMap<RunId, Session>,
}

impl Engine {
    /// An engine over `store`, fetching with a [`sequential_http_wrapper::Client`] built from
    /// `config.http`.
    pub fn new(store: Arc<dyn StorageAdapter>, config: EngineConfig) -> Result<Self> {
        let client = sequential_http_wrapper::Client::new(config.http.clone())?;
        Ok(Engine {
            store,
            fetcher: Arc::new(client),
            config: Arc::new(config),
            tools: Arc::new(ToolRegistry::new()),
            hot: Arc::default(),
            hot_resumes: Arc::default(),
            parks: Arc::default(),
            snapshots: Arc::default(),
            live: Arc::default(),
            claimed: Arc::default(),
            versions: Arc::default(),
        })
    }

    /// The engine with `tools` as its tool registry.
    pub fn with_tools(mut self, tools: ToolRegistry) -> Self {
        self.tools = Arc::new(tools);
        self
    }

    /// The engine with `fetcher` performing every fetch of its tasks and of its `http` and
    /// declarative tools (tools get it as [`ToolCall::fetcher`]). Wrap the default client to
    /// add headers or record requests (its timeouts and retries still apply), or replace it
    /// with a test double. Each request carries `Idempotency-Key: {run}:{seq}` and the task's
    /// retry policy; a [`FetchError::RetriesExhausted`](sequential_http_wrapper::FetchError)
    /// pauses the run, any other error is thrown into the task.
    pub fn with_fetcher(mut self, fetcher: Arc<dyn Fetcher>) -> Self {
        self.fetcher = fetcher;
        self
    }

    /// What performs the engine's fetches.
    pub fn fetcher(&self) -> &Arc<dyn Fetcher> {
        &self.fetcher
    }

    /// The configuration.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// How many live sessions are kept.
    pub fn hot_sessions(&self) -> usize {
        self.hot.lock().map_or(0, |h| h.sessions.len())
    }

    /// How many times a run continued in a live session instead of replaying its journal.
    pub fn hot_resumes(&self) -> u64 {
        self.hot_resumes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many times a session was parked as data while its calls were out (see
    /// [`EngineConfig::park_after`]).
    pub fn parked_sessions(&self) -> u64 {
        self.parks.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub(crate) fn count_park(&self) {
        self.parks
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        memory::release_after_park();
    }

    pub(crate) fn keep_hot(&self, run: RunId, session: Session) {
        let max = self.config.max_hot_sessions;
        if max == 0 {
            return;
        }
        let Ok(mut hot) = self.hot.lock() else { return };
        hot.order.retain(|r| *r != run);
        hot.order.push_back(run);
        hot.sessions.insert(run, session);
        while hot.sessions.len() > max {
            let Some(old) = hot.order.pop_front() else {
                break;
            };
            hot.sessions.remove(&old);
        }
    }

    /// The live session of `run` if its journal has exactly `journal_len` entries (otherwise
    /// another process moved the run on, and the session is stale).
    pub(crate) fn take_hot(&self, run: RunId, journal_len: usize) -> Option<Session> {
        let mut hot = self.hot.lock().ok()?;
        hot.order.retain(|r| *r != run);
        let session = hot.sessions.remove(&run)?;
        let fresh = session.journal_len() == journal_len && !session.is_ended();
        if fresh {
            self.hot_resumes
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        fresh.then_some(session)
    }

    /// The graph snapshot this engine holds for graph run `id` (current states, vars, armed
    /// timers, inbox), kept after every commit: equal, byte for byte, to the fold of the run's
    /// graph records (S10). `None` for a run it has not driven lately.
    pub fn graph_snapshot(&self, id: RunId) -> Option<flow_graph::Snapshot> {
        self.snapshots.lock().ok()?.kept.get(&id).cloned()
    }

    pub(crate) fn keep_snapshot(&self, run: RunId, snapshot: &flow_graph::Snapshot) {
        let max = self.config.max_hot_sessions.max(64);
        let Ok(mut s) = self.snapshots.lock() else {
            return;
        };
        s.order.retain(|r| *r != run);
        s.order.push_back(run);
        s.kept.insert(run, snapshot.clone());
        while s.kept.len() > max {
            let Some(old) = s.order.pop_front() else {
                break;
            };
            s.kept.remove(&old);
        }
    }

    /// The kept snapshot of `run` when it has folded exactly `records` graph records (a cold
    /// start folds the journal instead).
    pub(crate) fn cached_snapshot(&self, run: RunId, records: u64) -> Option<flow_graph::Snapshot> {
        let s = self.snapshots.lock().ok()?;
        s.kept.get(&run).filter(|x| x.records == records).cloned()
    }

    /// The task version `run` is pinned to, when this engine kept it and its hash is `hash`.
    pub(crate) fn kept_version(
        &self,
        run: &Run,
        hash: &str,
    ) -> Option<Arc<sequential_adaptor::TaskVersion>> {
        self.versions.lock().ok()?.get(run, hash)
    }

    /// Keeps `version` for the next claims that name its hash.
    pub(crate) fn keep_version(&self, version: Arc<sequential_adaptor::TaskVersion>) {
        if let Ok(mut versions) = self.versions.lock() {
            versions.keep(version);
        }
    }

    /// The storage.
    pub fn store(&self) -> &Arc<dyn StorageAdapter> {
        &self.store
    }

    /// Creates a queued run of `task` (latest version unless pinned).
    pub async fn start(&self, task: &TaskName, input: Value, opts: StartOptions) -> Result<Run> {
        let sel = opts.version.map_or(VersionSel::Latest, VersionSel::Exact);
        if !opts.claim {
            // the version is picked as the run is stored (one statement on PostgreSQL)
            let mut new = NewRunOf::latest(task.clone(), input);
            new.version = sel;
            new.idempotency_key = opts.idempotency_key;
            return Ok(self.store.create_run_of(new).await?.into_run());
        }
        let version = self.store.get_task_version(task, sel).await?;
        let mut new = NewRun::new(task.clone(), version.version, input);
        new.idempotency_key = opts.idempotency_key;
        let (created, claim) = self
            .store
            .create_run_claimed(new, &self.claim_request(now_millis()))
            .await?;
        Ok(match claim {
            Some(mut claim) => {
                if matches!(created, sequential_adaptor::Created::Created(_)) {
                    // a run just created holds no records, and its version was just read
                    claim.journal_len = Some(0);
                    claim.version_hash = Some(version.hash.clone());
                    self.keep_version(Arc::new(version));
                }
                let run = claim.run.clone();
                self.claimed
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(run.id, claim);
                run
            }
            None => created.into_run(),
        })
    }

    /// A claim of one run by this engine at `now`.
    fn claim_request(&self, now: i64) -> ClaimRequest {
        ClaimRequest {
            worker: self.config.worker_id.clone(),
            now,
            lease_ms: self.config.lease.as_millis() as u64,
            limit: 1,
        }
    }

    /// Drives run `id` (and the child runs it waits for) until it is settled: finished,
    /// paused, or waiting beyond `wait_until` (a timer due before `wait_until` is waited for and
    /// the run driven on). Only this run and its children are claimed. A run held by a live
    /// worker is left to it (this call waits); one held by a process of this host that no longer
    /// exists (`kill -9`) is taken over at once. A drive that fails is retried after a backoff
    /// or fails the run (see [`EngineConfig::max_drive_attempts`]); `Err` only when storage
    /// cannot even record that.
    pub async fn run_until_settled(&self, id: RunId, wait_until: Option<i64>) -> Result<Run> {
        // the state a drive just settled the run in; re-read only when we did not drive it
        let mut settled: Option<Run> = None;
        // a run this engine claimed as it started it (`StartOptions::claim`) is driven at once
        let mut first = self
            .claimed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&id);
        loop {
            if let Some(claim) = first.take() {
                let mut never = worker::StopWatch::never();
                match failures::drive_claim(self, claim, &mut never).await? {
                    failures::Driven::Run(run) => settled = Some(*run),
                    failures::Driven::Retrying | failures::Driven::Lost => {}
                }
                continue;
            }
            let run = match settled.take() {
                Some(run) => run,
                None => self.store.get_run(id).await?,
            };
            let now = now_millis();
            let mut takeover = Takeover::IfClaimable;
            match run.status {
                s if s.is_terminal() || s == RunStatus::Paused => return Ok(run),
                RunStatus::Waiting if run.wake_at.is_some_and(|w| w <= now) => {}
                RunStatus::Waiting => {
                    if let Some(child) = waiting_child(&run) {
                        let c = Box::pin(self.run_until_settled(child, wait_until)).await?;
                        if c.status.is_terminal() {
                            continue; // the child's end woke the parent
                        }
                    }
                    match (run.wake_at, wait_until) {
                        (Some(w), Some(limit)) if w <= limit => {
                            let left = Duration::from_millis((w - now).max(1) as u64);
                            self.store.wait_for_change(left).await;
                            continue;
                        }
                        _ => return Ok(self.store.get_run(id).await?),
                    }
                }
                RunStatus::Running | RunStatus::Stopping => {
                    let live = run.lease.as_ref().filter(|l| l.expires_at > now);
                    match live {
                        Some(l) if owner_is_gone(&l.owner) => takeover = Takeover::Steal,
                        Some(_) => {
                            self.store.wait_for_change(Duration::from_millis(100)).await;
                            continue;
                        }
                        None => {}
                    }
                }
                _ => {}
            }
            let req = self.claim_request(now);
            match self.store.claim_run(id, &req, takeover).await? {
                Some(claim) => {
                    let mut never = worker::StopWatch::never();
                    match failures::drive_claim(self, claim, &mut never).await? {
                        failures::Driven::Run(run) => settled = Some(*run),
                        // held until its backoff is over, or taken by another worker
                        failures::Driven::Retrying | failures::Driven::Lost => {}
                    }
                }
                None => self.store.wait_for_change(Duration::from_millis(50)).await,
            }
        }
    }

    /// Continues a `paused` run: the call whose retries were spent is performed again.
    /// Any other state is an `Invalid` error naming it.
    pub async fn retry(&self, id: RunId) -> Result<Run> {
        let mut run = self.store.get_run(id).await?;
        if run.status != RunStatus::Paused {
            return Err(Error::Invalid {
                input: format!("run {id} ({})", run.status),
                expected: "a paused run (only a paused run can be retried)".into(),
            });
        }
        run.status = RunStatus::Queued;
        run.error = None;
        Ok(self.store.update_run(&run).await?)
    }

    /// Cancels a run and its children. A run held by a live worker is asked to stop
    /// (`stopping`) and is killed if it has not stopped within `grace`; any other active run
    /// is cancelled at once. A finished run is an `Invalid` error.
    pub async fn cancel(&self, id: RunId, grace: Duration) -> Result<Run> {
        let deadline = std::time::Instant::now() + grace;
        let mut asked = false;
        loop {
            let mut run = self.store.get_run(id).await?;
            if asked && run.status == RunStatus::Cancelled {
                return Ok(run); // its worker wound it down
            }
            if run.status.is_terminal() {
                return Err(Error::Invalid {
                    input: format!("run {id}"),
                    expected: format!("an active run (it already {})", ended_word(run.status)),
                });
            }
            let held = run
                .lease
                .as_ref()
                .is_some_and(|l| l.expires_at > now_millis());
            if !held {
                return self.kill(id).await;
            }
            if std::time::Instant::now() >= deadline {
                let why = format!(
                    "the run did not stop within its {} ms stop timeout",
                    grace.as_millis()
                );
                return self.abort(id, &why).await;
            }
            if !asked {
                // a driver of this process ends the run at its next step boundary
                let _ = self.live.send(id, abort::Notice::Stop);
            }
            if run.status != RunStatus::Stopping {
                run.status = RunStatus::Stopping;
                match self.store.update_run(&run).await {
                    Ok(_) | Err(sequential_adaptor::Error::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            asked = true;
            self.store.wait_for_change(Duration::from_millis(100)).await;
        }
    }

    /// Ends a run as `cancelled` now, whoever holds it, and kills its children. A run driven by
    /// this engine is aborted by its driver: the calls in flight are abandoned and the code's
    /// `ctx.signal` fires (its reason journaled) before the run ends.
    pub async fn kill(&self, id: RunId) -> Result<Run> {
        self.abort(id, "the run was killed").await
    }

    /// [`Engine::kill`] with `why` as the message of the `AbortError` `ctx.signal` fires with.
    async fn abort(&self, id: RunId, why: &str) -> Result<Run> {
        let run = self.store.get_run(id).await?;
        if run.status.is_terminal() {
            return Err(Error::Invalid {
                input: format!("run {id}"),
                expected: format!("an active run (it already {})", ended_word(run.status)),
            });
        }
        let (done, answered) = tokio::sync::oneshot::channel();
        let reason = json!({ "name": "AbortError", "message": why });
        if self
            .live
            .send(id, abort::Notice::Abort { reason, done })
            .is_ok()
        {
            // the driver answers once the run has ended; it may be deep in a step of
            // JavaScript, so it gets a while, then the run is cancelled in storage regardless
            let _ = tokio::time::timeout(ABORT_WAIT, answered).await;
            let run = self.store.get_run(id).await?;
            if run.status == RunStatus::Cancelled {
                self.kill_children(id).await?;
                return Ok(run);
            }
        }
        self.kill_in_storage(id).await
    }

    /// Cancels run `id` in storage (whoever holds it) with a `run.cancelled` record.
    async fn kill_in_storage(&self, id: RunId) -> Result<Run> {
        let run = loop {
            let mut run = self.store.get_run(id).await?;
            if run.status.is_terminal() {
                return Err(Error::Invalid {
                    input: format!("run {id}"),
                    expected: format!("an active run (it already {})", ended_word(run.status)),
                });
            }
            run.status = RunStatus::Cancelled;
            run.error = Some(json!({ "name": "Cancelled", "message": "the run was cancelled" }));
            run.wake_at = None;
            match self.store.update_run(&run).await {
                Ok(r) => break r,
                Err(sequential_adaptor::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let version = self
            .store
            .get_task_version(&run.task, VersionSel::Exact(run.version))
            .await
            .ok();
        if let Some(v) = version.filter(|v| v.graph.is_some()) {
            // a graph run ends with the records of a cancel (timers, branches, items, inbox)
            if let Err(e) = graph::kill_records(self, &run, &v).await {
                tracing::warn!(run = %id, error = %e, "the killed graph run has no run.cancelled record");
            }
        } else {
            let records = self.read_all(id).await?;
            let next = records.last().map_or(0, |r| r.seq + 1);
            let rec = JournalRecord {
                run: id,
                seq: next,
                kind: RecordKind::RunCancelled.as_str().into(),
                at: now_millis(),
                data: journal::run_ended_with(run.error.as_ref().unwrap_or(&Value::Null)),
            };
            // a worker may append concurrently; the cancelled status is what counts
            let _ = self.store.append(id, &[rec], Fence::None).await;
        }
        self.kill_children(id).await?;
        if let Some(parent) = run.parent {
            let done = json!({ "run": id, "status": run.status });
            let _ = self
                .store
                .send_signal(parent.run, &driver::child_event(&id), done)
                .await;
        }
        Ok(run)
    }

    /// Kills the active children run `id` started.
    async fn kill_children(&self, id: RunId) -> Result<()> {
        let records = self.read_all(id).await?;
        for child in records.iter().map(journal::Record::new) {
            if let Some(c) = child.child_run() {
                match Box::pin(self.kill(c)).await {
                    Ok(_) | Err(Error::Invalid { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Starts a new run of the same task version and input whose journal is a copy of the
    /// first `from_seq` records of run `id` (run-ending records excluded): the new run replays
    /// up to there and performs everything after again.
    pub async fn rerun(&self, id: RunId, from_seq: u64) -> Result<Run> {
        let old = self.store.get_run(id).await?;
        let records = self.read_all(id).await?;
        let is_graph = self
            .store
            .get_task_version(&old.task, VersionSel::Exact(old.version))
            .await
            .is_ok_and(|v| v.graph.is_some());
        if from_seq > records.len() as u64 {
            return Err(Error::Invalid {
                input: format!("--from-seq {from_seq}"),
                expected: format!("a seq from 0 to {} (the journal's length)", records.len()),
            });
        }
        let new = self
            .store
            .create_run(NewRun::new(
                old.task.clone(),
                old.version,
                old.input.clone(),
            ))
            .await?
            .into_run();
        let settles = |r: &JournalRecord| {
            journal::Record::new(r)
                .kind()
                .is_some_and(RecordKind::settles_run)
        };
        // a graph run's journal is cut between commits, never inside a transition (S6)
        let from_seq = if is_graph {
            graph::rerun_cut(&records, from_seq)
        } else {
            from_seq
        };
        // a graph run's `run.failed` that a redrive carried on from stays (the fold needs it)
        let last_redrive = records
            .iter()
            .filter(|r| is_graph && r.seq < from_seq && r.kind == "run.redriven")
            .map(|r| r.seq)
            .max();
        let copy: Vec<JournalRecord> = records
            .into_iter()
            .filter(|r| {
                r.seq < from_seq
                    && (!settles(r)
                        || (r.kind == "run.failed" && last_redrive.is_some_and(|s| s > r.seq)))
            })
            .enumerate()
            .map(|(i, r)| JournalRecord {
                run: new.id,
                seq: i as u64,
                ..r
            })
            .collect();
        for chunk in copy.chunks(500) {
            self.store.append(new.id, chunk, Fence::None).await?;
        }
        Ok(new)
    }

    /// Runs held by a process of this host that no longer exists (a `kill -9`ed worker or
    /// server): [`Engine::run_until_settled`] takes each over at once, instead of a worker
    /// waiting for its lease to expire. Empty on storage that cannot list runs.
    pub async fn orphans(&self) -> Result<Vec<RunId>> {
        use sequential_adaptor::{Page, RunFilter};
        let filter = RunFilter {
            task: None,
            statuses: vec![RunStatus::Running, RunStatus::Stopping],
        };
        let mut page = Page::first(1000);
        let mut out = Vec::new();
        loop {
            let got = match self.store.list_runs(&filter, page).await {
                Ok(p) => p,
                Err(sequential_adaptor::Error::Unsupported { .. }) => return Ok(out),
                Err(e) => return Err(e.into()),
            };
            out.extend(
                got.runs
                    .iter()
                    .filter(|r| r.lease.as_ref().is_some_and(|l| owner_is_gone(&l.owner)))
                    .map(|r| r.id),
            );
            match got.next {
                Some(after) => page.after = Some(after),
                None => return Ok(out),
            }
        }
    }

    /// The whole journal of a run.
    pub async fn read_all(&self, id: RunId) -> Result<Vec<JournalRecord>> {
        const PAGE: usize = 1000;
        let mut all = Vec::new();
        loop {
            let after = all.last().map(|r: &JournalRecord| r.seq);
            let page = self.store.read_journal(id, after, PAGE).await?;
            let last = page.len() < PAGE;
            all.extend(page);
            // a short page is the end: no second read to find an empty one
            if last {
                return Ok(all);
            }
        }
    }

    /// Claims runnable runs and drives them, `concurrency` at a time, until nothing is in
    /// flight and nothing is claimable; returns how many were claimed. A slot that frees (a run
    /// ends, waits or pauses) is refilled at once: a slow run never holds up the others.
    pub async fn work_once(&self) -> Result<usize> {
        let report = self.pump(&StopHandle::new(), worker::Until::Idle).await?;
        Ok(report.claimed)
    }

    /// The worker loop: claims and drives runs, `concurrency` at a time, until `stop` resolves;
    /// then stops as [`StopHandle::stop`] does (no more claims; the steps in flight finish
    /// within [`EngineConfig::stop_grace`]; the runs still in hand are released).
    pub async fn work(&self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        let handle = StopHandle::new();
        let work = self.work_until(&handle);
        tokio::pin!(work, stop);
        tokio::select! {
            report = &mut work => return report.map(|_| ()),
            () = &mut stop => handle.stop(),
        }
        work.await.map(|_| ())
    }

    /// The worker loop until `stop` asks it to stop (see [`StopHandle`]): claims and drives runs,
    /// `concurrency` at a time, claiming the next as soon as one settles. Returns once no run
    /// is in hand: each settled, or released so another worker can claim it at once.
    pub async fn work_until(&self, stop: &StopHandle) -> Result<WorkReport> {
        self.pump(stop, worker::Until::Stopped).await
    }
}

/// The child run that `run` waits for, if any.
fn waiting_child(run: &Run) -> Option<RunId> {
    run.waiting_for
        .as_deref()
        .and_then(|w| w.strip_prefix("child:"))
        .and_then(|id| id.parse().ok())
}

/// `true` when a lease owner (`host:pid`, as [`EngineConfig::default`] writes it) is a process
/// of this host that no longer exists. Owners on other hosts are never judged gone.
fn owner_is_gone(owner: &str) -> bool {
    let Some((host, pid)) = owner.rsplit_once(':') else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    host == sequential_support::process::hostname()
        && pid != std::process::id()
        && i32::try_from(pid).is_ok_and(sequential_support::process::pid_is_dead)
}

fn ended_word(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        _ => "was cancelled",
    }
}

#[cfg(test)]
mod kept_versions {
    use super::*;

    fn version(task: &str, n: u32, code_len: usize) -> Arc<sequential_adaptor::TaskVersion> {
        Arc::new(sequential_adaptor::TaskVersion {
            task: TaskName::new(task).unwrap(),
            version: n,
            hash: format!("{task}-{n}-{code_len}"),
            code: "x".repeat(code_len),
            graph: None,
            config: json!({}),
            created_at: 0,
        })
    }

    fn run_of(v: &sequential_adaptor::TaskVersion) -> Run {
        sequential_adaptor::rules::new_run(NewRun::new(v.task.clone(), v.version, json!({})), 0)
    }

    #[test]
    fn a_kept_version_is_found_by_its_hash_for_its_own_task_and_number_only() {
        let mut kept = KeptVersions::default();
        let v = version("t", 1, 10);
        kept.keep(v.clone());
        let run = run_of(&v);
        assert!(kept.get(&run, &v.hash).is_some());
        assert!(kept.get(&run, "another-hash").is_none());
        let other = run_of(&version("u", 1, 10));
        assert!(
            kept.get(&other, &v.hash).is_none(),
            "same content, other task"
        );
    }

    #[test]
    fn the_kept_versions_stay_within_their_count_and_bytes() {
        let mut kept = KeptVersions::default();
        for n in 0..=MAX_KEPT_VERSIONS as u32 {
            kept.keep(version("t", n, 10));
            assert!(kept.by_hash.len() <= MAX_KEPT_VERSIONS);
        }
        assert_eq!(kept.by_hash.len(), 1, "started over at the limit");
        kept.keep(version("big", 1, MAX_KEPT_BYTES + 1));
        assert_eq!(
            kept.by_hash.len(),
            1,
            "a version above the byte limit is not kept"
        );
        for n in 0..4 {
            kept.keep(version("half", n, MAX_KEPT_BYTES / 3));
            assert!(kept.bytes <= MAX_KEPT_BYTES, "{} bytes", kept.bytes);
        }
    }
}
