//! Drives durable runs of JavaScript tasks: a run is claimed from storage with a lease, its
//! journal is replayed into a `fetch-vm` session, the session's host calls are performed
//! (fetches through `http-wrapper`, timers and events through storage), every completed call is
//! appended to the journal before the run moves on, and the run ends `succeeded`, `failed`,
//! `waiting` (a timer or an event) or `paused` (a call whose retries are spent).
//!
//! Invariant: sees storage only as `Arc<dyn StorageAdapter>`; backends appear only in its
//! dev-dependencies. Completed calls are never performed twice; a call in flight when a worker
//! dies is performed again after recovery with the same `Idempotency-Key: {run_id}:{seq}`.
//!
//! ```
//! use std::sync::Arc;
//! use sequential_adaptor::{NewTaskVersion, RunStatus, StorageAdapter, TaskName};
//! use sequential_adaptor_sqlite::SqliteStore;
//! use sequential_tasker_engine::{Engine, EngineConfig, StartOptions};
//! use serde_json::json;
//!
//! # tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap().block_on(async {
//! let store: Arc<dyn StorageAdapter> = Arc::new(SqliteStore::memory()?);
//! let task = TaskName::new("hello")?;
//! let code = "const t = Date.now(); ({ hi: input.name, clock: typeof t })";
//! store.put_task_version(NewTaskVersion { task: task.clone(), code: code.into(), graph: None, config: json!({}) }).await?;
//! let engine = Engine::new(store, EngineConfig::default())?;
//! let run = engine.start(&task, json!({ "name": "Alice" }), StartOptions::default()).await?;
//! let run = engine.run_until_settled(run.id, None).await?;
//! assert_eq!(run.status, RunStatus::Succeeded);
//! assert_eq!(run.output, Some(json!({ "hi": "Alice", "clock": "number" })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod driver;
mod error;

use std::sync::Arc;
use std::time::Duration;

use sequential_adaptor::{
    ClaimRequest, NewRun, Run, RunId, RunStatus, StorageAdapter, TaskName, VersionSel, now_millis,
};
use serde_json::Value;

pub use error::{Error, Result};

/// How an engine behaves.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// The lease owner written into claims (host, pid, worker).
    pub worker_id: String,
    /// Lease length; renewed while a run is driven.
    pub lease: Duration,
    /// HTTP client limits and the default retry policy.
    pub http: sequential_http_wrapper::ClientConfig,
    /// VM options (mode, limits).
    pub vm: sequential_fetch_vm::Options,
    /// Runs driven at once by [`Engine::work`].
    pub concurrency: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        EngineConfig {
            worker_id: format!("{host}:{}", std::process::id()),
            lease: Duration::from_secs(15),
            http: sequential_http_wrapper::ClientConfig::default(),
            vm: sequential_fetch_vm::Options::default(),
            concurrency: 16,
        }
    }
}

/// How [`Engine::start`] starts a run.
#[derive(Clone, Debug, Default)]
pub struct StartOptions {
    /// Same key and input → the existing run.
    pub idempotency_key: Option<String>,
    /// Pin this version instead of the latest.
    pub version: Option<u32>,
}

/// Starts and drives runs over one storage backend.
#[derive(Debug, Clone)]
pub struct Engine {
    store: Arc<dyn StorageAdapter>,
    http: sequential_http_wrapper::Client,
    config: Arc<EngineConfig>,
}

impl Engine {
    /// An engine over `store`.
    pub fn new(store: Arc<dyn StorageAdapter>, config: EngineConfig) -> Result<Self> {
        let http = sequential_http_wrapper::Client::new(config.http.clone())?;
        Ok(Engine {
            store,
            http,
            config: Arc::new(config),
        })
    }

    /// The storage.
    pub fn store(&self) -> &Arc<dyn StorageAdapter> {
        &self.store
    }

    /// Creates a queued run of `task` (latest version unless pinned).
    pub async fn start(&self, task: &TaskName, input: Value, opts: StartOptions) -> Result<Run> {
        let sel = opts.version.map_or(VersionSel::Latest, VersionSel::Exact);
        let version = self.store.get_task_version(task, sel).await?;
        let mut new = NewRun::new(task.clone(), version.version, input);
        new.idempotency_key = opts.idempotency_key;
        Ok(self.store.create_run(new).await?.into_run())
    }

    /// Claims and drives runs until run `id` is settled: finished, paused, or waiting beyond
    /// `wait_until` (a waiting run whose timer falls before `wait_until` is slept for and driven
    /// on). Runs claimed on the way are driven too (this process acts as a worker meanwhile).
    pub async fn run_until_settled(&self, id: RunId, wait_until: Option<i64>) -> Result<Run> {
        loop {
            let run = self.store.get_run(id).await?;
            let now = now_millis();
            match run.status {
                s if s.is_terminal() || s == RunStatus::Paused => return Ok(run),
                RunStatus::Waiting => match (run.wake_at, wait_until) {
                    (Some(w), _) if w <= now => {}
                    (Some(w), Some(limit)) if w <= limit => {
                        tokio::time::sleep(Duration::from_millis((w - now).max(0) as u64)).await;
                    }
                    _ => return Ok(run),
                },
                _ => {}
            }
            if self.work_once().await? == 0 {
                self.store.wait_for_change(Duration::from_millis(50)).await;
            }
        }
    }

    /// Claims up to `concurrency` runnable runs and drives each until it settles; returns how
    /// many were claimed.
    pub async fn work_once(&self) -> Result<usize> {
        let claims = self
            .store
            .claim(&ClaimRequest {
                worker: self.config.worker_id.clone(),
                now: now_millis(),
                lease_ms: self.config.lease.as_millis() as u64,
                limit: self.config.concurrency.max(1),
            })
            .await?;
        let n = claims.len();
        let mut set = tokio::task::JoinSet::new();
        for claim in claims {
            let engine = self.clone();
            set.spawn(async move {
                let id = claim.run.id;
                if let Err(e) = driver::drive(&engine, claim).await {
                    tracing::warn!(run = %id, error = %e, "driving the run failed; it stays claimable");
                }
            });
        }
        while set.join_next().await.is_some() {}
        Ok(n)
    }

    /// The worker loop: claims and drives runs until `stop` resolves.
    pub async fn work(&self, stop: impl std::future::Future<Output = ()>) -> Result<()> {
        tokio::pin!(stop);
        loop {
            let n = tokio::select! {
                _ = &mut stop => return Ok(()),
                n = self.work_once() => n?,
            };
            if n == 0 {
                tokio::select! {
                    _ = &mut stop => return Ok(()),
                    _ = self.store.wait_for_change(Duration::from_millis(200)) => {}
                }
            }
        }
    }
}
