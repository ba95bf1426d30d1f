//! The `StorageAdapter` trait: the only way the rest of the workspace talks to storage.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::Result;
use crate::model::{
    Claim, ClaimRequest, Created, DeleteMode, Fence, JournalRecord, NewRun, NewRunOf,
    NewTaskVersion, Page, PutVersion, Run, RunFilter, RunId, RunPage, Signal, Takeover, TaskName,
    TaskSummary, TaskVersion, UnixMillis, VersionSel,
};

/// Durable storage of task versions, runs, journals and signals.
///
/// Object-safe and `Send + Sync`: the engine holds an `Arc<dyn StorageAdapter>`. The contract
/// has two parts:
///
/// 1. **What the engine needs to drive runs** — the required methods: task versions, runs,
///    the journal, claims and leases, signals. An embedder who brings their own storage
///    implements these (read [`crate::MemoryStore`] first: it is the whole contract in one
///    file, with nothing underneath).
/// 2. **What tools need to administer a store** — [`list_tasks`](Self::list_tasks),
///    [`delete_task`](Self::delete_task), [`list_runs`](Self::list_runs),
///    [`prune`](Self::prune), [`delete_run`](Self::delete_run): provided methods that answer [`Unsupported`](crate::Error::Unsupported) until a
///    backend overrides them; plus hints with sensible defaults
///    ([`wait_for_change`](Self::wait_for_change), [`health`](Self::health)).
///
/// Each method says what it must keep and names the conformance case that checks it
/// (`sequential_adaptor::conformance::<case>`, run on a backend by
/// `conformance_tests!`). The suite is the precise contract; the text summarises it.
/// Cases of part 2 are skipped, with one line, on a backend that answers `Unsupported`.
///
/// Every write is durable when it returns, and every multi-record write is all-or-nothing: a
/// call that fails (or a process that dies mid-call) leaves none of its records behind.
#[async_trait]
pub trait StorageAdapter: Send + Sync + std::fmt::Debug {
    /// The backend's scheme (`memory`, `folder`, `sqlite`, `postgres`), for messages.
    fn scheme(&self) -> &'static str;

    // ---- part 1: what the engine needs to drive runs ------------------------------------

    /// Stores a task version. Identical content (same [`NewTaskVersion::content_hash`]) returns
    /// the existing version with `created: false`; new content gets the next number (1, 2, 3 …).
    /// Checked by `versions_are_deduplicated_by_hash_and_numbered`.
    async fn put_task_version(&self, new: NewTaskVersion) -> Result<PutVersion>;

    /// Reads a version; `NotFound` names the task and version.
    /// Checked by `latest_and_pinned_version_lookup`.
    async fn get_task_version(&self, task: &TaskName, sel: VersionSel) -> Result<TaskVersion>;

    /// Creates a queued run (the version must exist, else `NotFound`). With an idempotency key
    /// already used: same task and input → [`Created::Existing`]; other input → `Conflict`.
    /// Use [`crate::rules::new_run`] and [`crate::rules::existing_for_key`].
    /// Checked by `create_run_with_idempotency_key`, `create_run_needs_an_existing_version`.
    async fn create_run(&self, new: NewRun) -> Result<Created>;

    /// Creates a queued run of the version `new.version` picks, as
    /// [`get_task_version`](Self::get_task_version) then [`create_run`](Self::create_run) do
    /// (the default makes those two calls): an unknown task or version is `NotFound`, a used
    /// idempotency key answers as `create_run` does. Backends that can (PostgreSQL) pick the
    /// version and store the run in one statement. How a caller that does not drive the run
    /// (a client, the host API) starts one.
    /// Checked by `create_run_of_pins_the_version_it_picks`.
    async fn create_run_of(&self, new: NewRunOf) -> Result<Created> {
        let version = self.get_task_version(&new.task, new.version).await?;
        self.create_run(new.pinned(version.version)).await
    }

    /// Creates a run (as [`StorageAdapter::create_run`]) and, when it is new, claims it (as
    /// [`StorageAdapter::claim_run`] with `req`): how a caller that drives the run itself
    /// starts it. Backends that can (SQLite) do both in one durable write; the default makes
    /// the two calls. A run that already existed (same idempotency key) comes back unclaimed.
    /// Checked by `create_run_claimed_leases_only_a_new_run`.
    async fn create_run_claimed(
        &self,
        new: NewRun,
        req: &ClaimRequest,
    ) -> Result<(Created, Option<Claim>)> {
        create_then_claim(self, new, req).await
    }

    /// Reads a run exactly as last written; an unknown id is `NotFound`.
    /// Checked by `create_run_with_idempotency_key`, `create_run_needs_an_existing_version`,
    /// `journal_is_durable_across_reopen`.
    async fn get_run(&self, id: RunId) -> Result<Run>;

    /// Writes `run` if the stored revision is still `run.revision` (compare-and-swap); returns
    /// it with the revision bumped and `updated_at` set ([`crate::rules::prepare_update`]). Stale
    /// revision → `Conflict`. The lease and fencing token are not changed by this call.
    /// Checked by `update_run_is_compare_and_swap`.
    async fn update_run(&self, run: &Run) -> Result<Run>;

    /// [`StorageAdapter::update_run`] and [`StorageAdapter::release`] in one durable write:
    /// stores `run` if its revision is current (stale → `Conflict`) and drops the lease held
    /// with `token` (stale → `Fenced`), or does neither ([`crate::rules::prepare_settle`]). How a
    /// worker settles the run it drove. Checked by `settle_run_updates_and_releases_in_one_step`.
    async fn settle_run(&self, run: &Run, token: u64) -> Result<Run>;

    /// Appends `records` with [`Fence::Token`]`(token)` (as [`StorageAdapter::append`]), then
    /// settles `run` (as [`StorageAdapter::settle_run`]): how a worker writes a run's last
    /// records and its end together. Backends that can (SQLite, PostgreSQL) do both in one
    /// durable write, one commit instead of two; the default makes the two calls. When the
    /// settle fails (`Conflict`, `Fenced`) the records may have been appended; appending them
    /// again is an idempotent retry. Checked by `append_and_settle_writes_records_then_run`.
    async fn append_and_settle(
        &self,
        run: &Run,
        records: &[JournalRecord],
        token: u64,
    ) -> Result<Run> {
        if !records.is_empty() {
            self.append(run.id, records, Fence::Token(token)).await?;
        }
        self.settle_run(run, token).await
    }

    /// Appends records to a run's journal ([`crate::rules::plan_append`]): the first record's seq must
    /// be at most the next seq (a gap → `Invalid`); records at stored seqs are compared —
    /// identical → skipped (an idempotent retry), different → `Conflict`; a record of another
    /// run → `Invalid`; an unknown run → `NotFound`. With [`Fence::Token`], a token other than
    /// the run's current one → `Fenced`. Returns after the records are durable.
    ///
    /// **All-or-nothing:** a call that fails writes none of its records, and a crash during the
    /// call leaves either all of them or none.
    /// Checked by `append_is_idempotent_on_run_and_seq`, `append_rejects_gaps_and_foreign_records`,
    /// `multi_record_append_is_all_or_nothing`, `claim_bumps_fencing_token_and_stale_appends_are_fenced`,
    /// `journal_is_durable_across_reopen`, and, on durable backends, the SIGKILL crash case
    /// `acknowledged_appends_survive_sigkill`.
    async fn append(&self, run: RunId, records: &[JournalRecord], fence: Fence) -> Result<()>;

    /// Reads up to `limit` records with seq > `after_seq` (all from 0 when `None`), in order;
    /// an unknown run is `NotFound`. Checked by `read_journal_pages_with_after_seq_and_limit`.
    async fn read_journal(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<JournalRecord>>;

    /// Claims up to `limit` runnable runs ([`crate::rules::is_claimable`]): `queued`; `waiting` with
    /// `wake_at <= now` (earliest deadline first); `running` or `stopping` with an expired
    /// lease. Never anything else. Each claim is [`crate::rules::claim_run`]: status `running` (a
    /// `stopping` run stays `stopping`), a new lease, the fencing token and `attempt` bumped.
    /// Claims are exclusive across every caller, in every process.
    /// Checked by `claim_picks_only_runnable_runs`, `overdue_timers_are_claimed_in_deadline_order`,
    /// `concurrent_claimers_claim_each_run_exactly_once`.
    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claim>>;

    /// Claims run `id` alone: when it is claimable at `req.now` (as in [`StorageAdapter::claim`]),
    /// or — with [`Takeover::Steal`] — also when it is `running`/`stopping` under a lease that has
    /// not expired (the caller knows the lease owner is dead). `None` when it is not claimable;
    /// an unknown run is `NotFound`. `req.limit` is ignored.
    /// Checked by `claim_run_takes_one_run_and_steals_only_when_asked`.
    async fn claim_run(
        &self,
        id: RunId,
        req: &ClaimRequest,
        takeover: Takeover,
    ) -> Result<Option<Claim>>;

    /// Extends the lease held with `token` to `now + lease_ms`; `Fenced` when the token is stale.
    /// Checked by `renew_and_release_need_the_current_token`.
    async fn renew(&self, run: RunId, token: u64, now: UnixMillis, lease_ms: u64) -> Result<Run>;

    /// Drops the lease held with `token` (the status is left as the holder last wrote it);
    /// `Fenced` when the token is stale. Checked by `renew_and_release_need_the_current_token`.
    async fn release(&self, run: RunId, token: u64) -> Result<Run>;

    /// Appends a signal to the run's inbox (durable before returning) and returns its seq
    /// (0, 1, 2 … per run). A `waiting` run becomes runnable at once ([`crate::rules::signal_target`]).
    /// An unknown run is `NotFound`; a run in a terminal state is `Conflict`.
    /// Checked by `signals_keep_order_and_are_durable`,
    /// `signal_wakes_waiting_run_and_refuses_finished_run`.
    async fn send_signal(&self, run: RunId, name: &str, payload: Value) -> Result<u64>;

    /// The run's signals with seq > `after_seq` (all when `None`), in order.
    /// Checked by `signals_keep_order_and_are_durable`.
    async fn read_signals(&self, run: RunId, after_seq: Option<u64>) -> Result<Vec<Signal>>;

    // ---- part 2: what tools need to administer a store (provided) -----------------------

    /// Every task with at least one stored version, sorted by name.
    /// Checked by `versions_are_deduplicated_by_hash_and_numbered`. Default: `Unsupported`.
    async fn list_tasks(&self) -> Result<Vec<TaskSummary>> {
        Err(unsupported(self.scheme(), "listing tasks"))
    }

    /// Deletes a task's versions and runs. With [`DeleteMode::IfIdle`], a task with active
    /// (non-terminal) runs is a `Conflict`. A task that does not exist is `NotFound`.
    /// Checked by `delete_task_with_active_runs_needs_force`. Default: `Unsupported`.
    async fn delete_task(&self, task: &TaskName, mode: DeleteMode) -> Result<()> {
        let _ = (task, mode);
        Err(unsupported(self.scheme(), "deleting tasks"))
    }

    /// Lists runs by id (creation time) with keyset paging: a page never skips or repeats a
    /// run, even while runs are added. Checked by `list_runs_filters_by_task_and_status`,
    /// `list_runs_pages_without_gaps_or_repeats_while_adding`. Default: `Unsupported`.
    async fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<RunPage> {
        let _ = (filter, page);
        Err(unsupported(self.scheme(), "listing runs"))
    }

    /// Deletes runs in a terminal state that ended before `older_than` ([`crate::rules::is_prunable`]),
    /// with their journals and signals; returns how many runs were removed.
    /// Checked by `prune_removes_only_old_finished_runs`. Default: `Unsupported`.
    async fn prune(&self, older_than: UnixMillis) -> Result<u64> {
        let _ = older_than;
        Err(unsupported(self.scheme(), "pruning runs"))
    }

    /// Deletes one run in a terminal state with its journal, its signals and its idempotency
    /// key (the key can start a new run afterwards), all or nothing. An active run is a
    /// `Conflict` ([`crate::rules::check_deletable`]: cancel it first), and so is a finished
    /// child whose parent is still active (the parent reads the child when it resumes). Deleting
    /// a parent leaves its children, whose `parent` then names a run that is gone (as after
    /// `prune`). An unknown run is `NotFound`.
    /// Checked by `delete_run_removes_an_ended_run_and_refuses_an_active_one`.
    /// Default: `Unsupported`.
    async fn delete_run(&self, id: RunId) -> Result<()> {
        let _ = id;
        Err(unsupported(self.scheme(), "deleting runs"))
    }

    /// Waits until something may have changed (a hint, not a guarantee) or `timeout` passes.
    /// The default polls: it just sleeps for `min(timeout, 200 ms)`.
    async fn wait_for_change(&self, timeout: Duration) {
        tokio::time::sleep(timeout.min(Duration::from_millis(200))).await;
    }

    /// Checks that the backend is reachable and its format is understood. The default reads
    /// a run that does not exist and expects `NotFound`.
    async fn health(&self) -> Result<()> {
        match self.get_run(RunId::from_bytes([0; 16])).await {
            Ok(_) | Err(crate::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn unsupported(scheme: &str, what: &str) -> crate::Error {
    crate::Error::unsupported(format!(
        "{what} on {scheme} storage (the backend does not implement this administrative operation)"
    ))
}

/// [`StorageAdapter::create_run_claimed`] as two calls: `create_run`, then — for a new run —
/// `claim_run`. The default, and the fallback of backends that do it in one write.
pub async fn create_then_claim<S: StorageAdapter + ?Sized>(
    store: &S,
    new: NewRun,
    req: &ClaimRequest,
) -> Result<(Created, Option<Claim>)> {
    let created = store.create_run(new).await?;
    let claim = match &created {
        Created::Created(run) => store.claim_run(run.id, req, Takeover::IfClaimable).await?,
        Created::Existing(_) => None,
    };
    Ok((created, claim))
}
