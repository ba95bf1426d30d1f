//! The `StorageAdapter` trait: the only way the rest of the workspace talks to storage.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::Result;
use crate::model::{
    Claim, ClaimRequest, Created, DeleteMode, Fence, JournalRecord, NewRun, NewTaskVersion, Page,
    PutVersion, Run, RunFilter, RunId, RunPage, Signal, Takeover, TaskName, TaskSummary,
    TaskVersion, UnixMillis, VersionSel,
};

/// Durable storage of task versions, runs, journals and signals.
///
/// Object-safe and `Send + Sync`: the engine holds an `Arc<dyn StorageAdapter>`. Every backend
/// passes the conformance suite (`feature = "conformance"`), which is the precise contract;
/// the docs below summarise it.
#[async_trait]
pub trait StorageAdapter: Send + Sync + std::fmt::Debug {
    /// The backend's scheme (`folder`, `sqlite`, `postgres`), for messages.
    fn scheme(&self) -> &'static str;

    /// Stores a task version. Identical content (same [`NewTaskVersion::content_hash`]) returns
    /// the existing version with `created: false`; new content gets the next number (1, 2, 3 …).
    async fn put_task_version(&self, new: NewTaskVersion) -> Result<PutVersion>;

    /// Reads a version; `NotFound` names the task and version.
    async fn get_task_version(&self, task: &TaskName, sel: VersionSel) -> Result<TaskVersion>;

    /// Every task with at least one stored version, sorted by name.
    async fn list_tasks(&self) -> Result<Vec<TaskSummary>>;

    /// Deletes a task's versions and runs. With [`DeleteMode::IfIdle`], a task with active
    /// (non-terminal) runs is a `Conflict`. A task that does not exist is `NotFound`.
    async fn delete_task(&self, task: &TaskName, mode: DeleteMode) -> Result<()>;

    /// Creates a queued run (the version must exist). With an idempotency key already used:
    /// same input → [`Created::Existing`]; other input → `Conflict`.
    async fn create_run(&self, new: NewRun) -> Result<Created>;

    /// Reads a run.
    async fn get_run(&self, id: RunId) -> Result<Run>;

    /// Lists runs by id (creation time), with keyset paging.
    async fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<RunPage>;

    /// Writes `run` if the stored revision is still `run.revision` (compare-and-swap); returns
    /// it with the revision bumped and `updated_at` set. Stale revision → `Conflict`.
    /// The lease and fencing token are not changed by this call (see `claim`, `renew`, `release`).
    async fn update_run(&self, run: &Run) -> Result<Run>;

    /// [`StorageAdapter::update_run`] and [`StorageAdapter::release`] in one durable write: stores
    /// `run` if its revision is current (stale → `Conflict`) and drops the lease held with
    /// `token` (stale → `Fenced`). How a worker settles the run it drove.
    async fn settle_run(&self, run: &Run, token: u64) -> Result<Run>;

    /// Appends records to a run's journal. The first record's seq must be the next seq
    /// (a gap → `Invalid`). Records at seqs already stored are compared: identical → skipped
    /// (idempotent retry), different → `Conflict`. With [`Fence::Token`], a token other than the
    /// run's current one → `Fenced`. Returns after the records are durable.
    async fn append(&self, run: RunId, records: &[JournalRecord], fence: Fence) -> Result<()>;

    /// Reads up to `limit` records with seq > `after_seq` (all from 0 when `None`), in order.
    async fn read_journal(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<JournalRecord>>;

    /// Claims up to `limit` runnable runs: `queued`; `waiting` with `wake_at <= now`; `running`
    /// or `stopping` with an expired lease. Never anything else. Each claim sets status
    /// `running` (a `stopping` run stays `stopping`), a new lease, bumps the fencing token and
    /// `attempt`. Claims are exclusive across processes.
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claim>>;

    /// Claims run `id` alone: when it is claimable at `req.now` (as in [`StorageAdapter::claim`]),
    /// or — with [`Takeover::Steal`] — also when it is `running`/`stopping` under a lease that has
    /// not expired (the caller knows the lease owner is dead). `None` when it is not claimable;
    /// an unknown run is `NotFound`. `req.limit` is ignored.
    async fn claim_run(
        &self,
        id: RunId,
        req: &ClaimRequest,
        takeover: Takeover,
    ) -> Result<Option<Claim>>;

    /// Extends the lease held with `token` to `now + lease_ms`; `Fenced` when the token is stale.
    async fn renew(&self, run: RunId, token: u64, now: UnixMillis, lease_ms: u64) -> Result<Run>;

    /// Drops the lease held with `token` (the status is left as the holder last wrote it);
    /// `Fenced` when the token is stale.
    async fn release(&self, run: RunId, token: u64) -> Result<Run>;

    /// Appends a signal to the run's inbox (durable before returning) and returns its seq.
    /// A `waiting` run becomes runnable at once (`wake_at` = now). An unknown run is
    /// `NotFound`; a run in a terminal state is `Conflict`.
    async fn send_signal(&self, run: RunId, name: &str, payload: Value) -> Result<u64>;

    /// The run's signals with seq > `after_seq` (all when `None`), in order.
    async fn read_signals(&self, run: RunId, after_seq: Option<u64>) -> Result<Vec<Signal>>;

    /// Deletes runs in a terminal state that ended before `older_than`, with their journals
    /// and signals; returns how many runs were removed.
    async fn prune(&self, older_than: UnixMillis) -> Result<u64>;

    /// Waits until something may have changed (a hint, not a guarantee) or `timeout` passes.
    /// The default polls: it just sleeps for `min(timeout, 200 ms)`.
    async fn wait_for_change(&self, timeout: Duration) {
        tokio::time::sleep(timeout.min(Duration::from_millis(200))).await;
    }

    /// Checks that the backend is reachable and its format is understood.
    async fn health(&self) -> Result<()> {
        self.list_tasks().await.map(|_| ())
    }
}
