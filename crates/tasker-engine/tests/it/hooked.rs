//! [`Hooked`]: a real store with a test's [`Hooks`] around some of its calls (appends that fail
//! or hang, drives counted), every other call passed through unchanged.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sequential_adaptor::{
    Claim, ClaimRequest, Created, DeleteMode, Fence, JournalRecord, NewRun, NewRunOf,
    NewTaskVersion, Page, PutVersion, Run, RunFilter, RunId, RunPage, Signal, StorageAdapter,
    Takeover, TaskName, TaskSummary, TaskVersion, UnixMillis, VersionSel,
};
use serde_json::Value;

/// What a test does around a store's calls; each defaults to nothing.
#[async_trait]
pub trait Hooks: std::fmt::Debug + Send + Sync + 'static {
    /// The scheme the wrapped store answers (the inner store's when `None`).
    fn scheme(&self) -> Option<&'static str> {
        None
    }
    /// Called before `get_task_version`.
    fn on_get_task_version(&self, _sel: &VersionSel) {}
    /// Called before `claim` (a worker's claim of the runs for its free slots).
    async fn before_claim(&self, _req: &ClaimRequest) {}
    /// Called after `settle_run` stored a run's end (or its wait).
    fn on_settled(&self, _run: RunId) {}
    /// Called for each run a `claim` or `claim_run` claimed (a drive begins with a claim).
    fn on_claimed(&self, _run: RunId) {}
    /// Called before `read_journal`.
    fn on_read_journal(&self, _run: RunId) {}
    /// Called before an append; an error fails the append without touching the store.
    fn before_append(&self) -> sequential_adaptor::Result<()> {
        Ok(())
    }
    /// Called after an append succeeded, before it returns.
    async fn after_append(&self) {}
}

/// `inner` with `hooks` around its calls.
#[derive(Debug)]
pub struct Hooked<H> {
    pub inner: Arc<dyn StorageAdapter>,
    pub hooks: H,
}

#[async_trait]
impl<H: Hooks> StorageAdapter for Hooked<H> {
    fn scheme(&self) -> &'static str {
        self.hooks.scheme().unwrap_or_else(|| self.inner.scheme())
    }
    async fn put_task_version(
        &self,
        new: NewTaskVersion,
    ) -> sequential_adaptor::Result<PutVersion> {
        self.inner.put_task_version(new).await
    }
    async fn get_task_version(
        &self,
        task: &TaskName,
        sel: VersionSel,
    ) -> sequential_adaptor::Result<TaskVersion> {
        self.hooks.on_get_task_version(&sel);
        self.inner.get_task_version(task, sel).await
    }
    async fn create_run(&self, new: NewRun) -> sequential_adaptor::Result<Created> {
        self.inner.create_run(new).await
    }
    async fn create_run_of(&self, new: NewRunOf) -> sequential_adaptor::Result<Created> {
        self.inner.create_run_of(new).await
    }
    async fn get_run(&self, id: RunId) -> sequential_adaptor::Result<Run> {
        self.inner.get_run(id).await
    }
    async fn update_run(&self, run: &Run) -> sequential_adaptor::Result<Run> {
        self.inner.update_run(run).await
    }
    async fn settle_run(&self, run: &Run, token: u64) -> sequential_adaptor::Result<Run> {
        let settled = self.inner.settle_run(run, token).await?;
        self.hooks.on_settled(run.id);
        Ok(settled)
    }
    async fn append(
        &self,
        run: RunId,
        records: &[JournalRecord],
        fence: Fence,
    ) -> sequential_adaptor::Result<()> {
        self.hooks.before_append()?;
        self.inner.append(run, records, fence).await?;
        self.hooks.after_append().await;
        Ok(())
    }
    async fn read_journal(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> sequential_adaptor::Result<Vec<JournalRecord>> {
        self.hooks.on_read_journal(run);
        self.inner.read_journal(run, after_seq, limit).await
    }
    async fn claim(&self, req: &ClaimRequest) -> sequential_adaptor::Result<Vec<Claim>> {
        self.hooks.before_claim(req).await;
        let claims = self.inner.claim(req).await?;
        for c in &claims {
            self.hooks.on_claimed(c.run.id);
        }
        Ok(claims)
    }
    async fn claim_run(
        &self,
        id: RunId,
        req: &ClaimRequest,
        takeover: Takeover,
    ) -> sequential_adaptor::Result<Option<Claim>> {
        let claim = self.inner.claim_run(id, req, takeover).await?;
        if let Some(c) = &claim {
            self.hooks.on_claimed(c.run.id);
        }
        Ok(claim)
    }
    async fn renew(
        &self,
        run: RunId,
        token: u64,
        now: UnixMillis,
        lease_ms: u64,
    ) -> sequential_adaptor::Result<Run> {
        self.inner.renew(run, token, now, lease_ms).await
    }
    async fn release(&self, run: RunId, token: u64) -> sequential_adaptor::Result<Run> {
        self.inner.release(run, token).await
    }
    async fn send_signal(
        &self,
        run: RunId,
        name: &str,
        payload: Value,
    ) -> sequential_adaptor::Result<u64> {
        self.inner.send_signal(run, name, payload).await
    }
    async fn read_signals(
        &self,
        run: RunId,
        after_seq: Option<u64>,
    ) -> sequential_adaptor::Result<Vec<Signal>> {
        self.inner.read_signals(run, after_seq).await
    }
    async fn list_tasks(&self) -> sequential_adaptor::Result<Vec<TaskSummary>> {
        self.inner.list_tasks().await
    }
    async fn delete_task(
        &self,
        task: &TaskName,
        mode: DeleteMode,
    ) -> sequential_adaptor::Result<()> {
        self.inner.delete_task(task, mode).await
    }
    async fn list_runs(
        &self,
        filter: &RunFilter,
        page: Page,
    ) -> sequential_adaptor::Result<RunPage> {
        self.inner.list_runs(filter, page).await
    }
    async fn prune(&self, older_than: UnixMillis) -> sequential_adaptor::Result<u64> {
        self.inner.prune(older_than).await
    }
    async fn delete_run(&self, id: RunId) -> sequential_adaptor::Result<()> {
        self.inner.delete_run(id).await
    }
    async fn wait_for_change(&self, timeout: Duration) {
        self.inner.wait_for_change(timeout).await
    }
    async fn health(&self) -> sequential_adaptor::Result<()> {
        self.inner.health().await
    }
}
