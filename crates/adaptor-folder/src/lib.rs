#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod fsutil;
mod ndjson;
mod store;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use sequential_adaptor::{
    AdapterFactory, Claim, ClaimRequest, Created, DeleteMode, Error, Fence, JournalRecord, NewRun,
    NewTaskVersion, Page, PutVersion, Result, Run, RunFilter, RunId, RunPage, Signal,
    StorageAdapter, Takeover, TaskName, TaskSummary, TaskVersion, UnixMillis, VersionSel,
    strip_scheme,
};

use crate::store::Inner;

/// Runs and journals as files under a directory. Cheap to clone (shares one state).
#[derive(Clone)]
pub struct FolderStore {
    inner: Arc<Inner>,
    claim_gate: Arc<tokio::sync::Mutex<()>>,
}

impl std::fmt::Debug for FolderStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderStore")
            .field("root", &self.inner.root())
            .finish()
    }
}

impl FolderStore {
    /// The on-disk format version this build writes (and the newest it reads).
    pub const FORMAT_VERSION: u32 = store::FORMAT_VERSION;

    /// Opens the store rooted at `root` (the tasks directory), creating it if missing, and
    /// removes temp files left by dead processes. A folder written by a newer format version
    /// is `Unsupported` and left untouched. Does blocking file I/O.
    pub fn open(root: impl AsRef<Path>) -> Result<FolderStore> {
        Ok(FolderStore {
            inner: Arc::new(Inner::open(root.as_ref())?),
            claim_gate: Arc::default(),
        })
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        self.inner.root()
    }

    /// How many records a run's journal holds (cheap: served from a cached line index).
    pub async fn journal_len(&self, run: RunId) -> Result<u64> {
        self.blocking(move |s| s.journal_len(run)).await
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let inner = self.inner.clone();
        match tokio::task::spawn_blocking(move || f(&inner)).await {
            Ok(r) => r,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(Error::backend("running folder storage I/O", e)),
        }
    }
}

#[async_trait]
impl StorageAdapter for FolderStore {
    fn scheme(&self) -> &'static str {
        "folder"
    }

    async fn put_task_version(&self, new: NewTaskVersion) -> Result<PutVersion> {
        self.blocking(move |s| s.put_task_version(new)).await
    }

    async fn get_task_version(&self, task: &TaskName, sel: VersionSel) -> Result<TaskVersion> {
        let task = task.clone();
        self.blocking(move |s| s.get_task_version(&task, sel)).await
    }

    async fn list_tasks(&self) -> Result<Vec<TaskSummary>> {
        self.blocking(|s| s.list_tasks()).await
    }

    async fn delete_task(&self, task: &TaskName, mode: DeleteMode) -> Result<()> {
        let task = task.clone();
        self.blocking(move |s| s.delete_task(&task, mode)).await
    }

    async fn create_run(&self, new: NewRun) -> Result<Created> {
        self.blocking(move |s| s.create_run(new)).await
    }

    async fn get_run(&self, id: RunId) -> Result<Run> {
        self.blocking(move |s| s.get_run(id)).await
    }

    async fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<RunPage> {
        let filter = filter.clone();
        self.blocking(move |s| s.list_runs(&filter, page)).await
    }

    async fn update_run(&self, run: &Run) -> Result<Run> {
        let run = run.clone();
        self.blocking(move |s| s.update_run(&run)).await
    }

    async fn append(&self, run: RunId, records: &[JournalRecord], fence: Fence) -> Result<()> {
        let records = records.to_vec();
        self.blocking(move |s| s.append(run, &records, fence)).await
    }

    async fn read_journal(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<JournalRecord>> {
        self.blocking(move |s| s.read_journal(run, after_seq, limit))
            .await
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claim>> {
        // one claimer per process at a time holds the cross-process claim lock; the others wait
        // here instead of parking blocking threads on the lock file
        let _gate = self.claim_gate.lock().await;
        let req = req.clone();
        self.blocking(move |s| s.claim(&req)).await
    }

    async fn settle_run(&self, run: &Run, token: u64) -> Result<Run> {
        let run = run.clone();
        self.blocking(move |s| s.settle_run(&run, token)).await
    }

    async fn claim_run(
        &self,
        id: RunId,
        req: &ClaimRequest,
        takeover: Takeover,
    ) -> Result<Option<Claim>> {
        let _gate = self.claim_gate.lock().await;
        let req = req.clone();
        self.blocking(move |s| s.claim_one(id, &req, takeover))
            .await
    }

    async fn renew(&self, run: RunId, token: u64, now: UnixMillis, lease_ms: u64) -> Result<Run> {
        self.blocking(move |s| s.renew(run, token, now, lease_ms))
            .await
    }

    async fn release(&self, run: RunId, token: u64) -> Result<Run> {
        self.blocking(move |s| s.release(run, token)).await
    }

    async fn send_signal(&self, run: RunId, name: &str, payload: Value) -> Result<u64> {
        let name = name.to_string();
        self.blocking(move |s| s.send_signal(run, &name, payload))
            .await
    }

    async fn read_signals(&self, run: RunId, after_seq: Option<u64>) -> Result<Vec<Signal>> {
        self.blocking(move |s| s.read_signals(run, after_seq)).await
    }

    async fn delete_run(&self, id: RunId) -> Result<()> {
        self.blocking(move |s| s.delete_run(id)).await
    }

    async fn prune(&self, older_than: UnixMillis) -> Result<u64> {
        self.blocking(move |s| s.prune(older_than)).await
    }

    /// Wakes at once on a change made through this store (in this process); changes by other
    /// processes are seen by polling every 200 ms.
    async fn wait_for_change(&self, timeout: Duration) {
        let changed = self.inner.changed.notified();
        let _ = tokio::time::timeout(timeout.min(Duration::from_millis(200)), changed).await;
    }

    async fn health(&self) -> Result<()> {
        self.blocking(|s| {
            Inner::check_format(&s.format_path())?;
            if !s.format_path().exists() {
                return Err(Error::backend(
                    format!("checking folder store {}", s.root().display()),
                    format!("{} is missing", s.format_path().display()),
                ));
            }
            Ok(())
        })
        .await
    }
}

/// Opens `folder:PATH` and `folder://PATH` URLs for a [`sequential_adaptor::Registry`].
///
/// ```
/// let mut registry = sequential_adaptor::Registry::new();
/// registry.register("folder", "folder:PATH", sequential_adaptor_folder::FolderFactory);
/// assert_eq!(registry.schemes(), vec!["folder"]);
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct FolderFactory;

#[async_trait]
impl AdapterFactory for FolderFactory {
    async fn open(&self, url: &str) -> Result<Arc<dyn StorageAdapter>> {
        let path = strip_scheme(url).to_string();
        if path.is_empty() {
            return Err(Error::invalid(
                format!("storage URL {url:?}"),
                "folder:PATH or folder://PATH, e.g. folder:./tasks",
            ));
        }
        let store = match tokio::task::spawn_blocking(move || FolderStore::open(path)).await {
            Ok(r) => r?,
            Err(e) => return Err(Error::backend("opening folder storage", e)),
        };
        Ok(Arc::new(store))
    }
}
