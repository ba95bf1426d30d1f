//! `MemoryStore`: the reference backend, everything in one mutex-guarded struct.
//!
//! Read this first when you implement [`StorageAdapter`] for your own storage: each method is
//! the whole contract with nothing underneath — no files, no SQL — and the decisions every
//! backend shares come from [`crate::rules`]. It passes the whole conformance suite except the
//! SIGKILL crash case, which needs storage that outlives the process (a `memory:` store lives
//! exactly as long as its process).
//!
//! ```
//! use sequential_adaptor::{MemoryStore, NewRun, NewTaskVersion, StorageAdapter, TaskName};
//! use serde_json::json;
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build()?.block_on(async {
//! let store = MemoryStore::new();
//! let task = TaskName::new("hello")?;
//! let v = store
//!     .put_task_version(NewTaskVersion { task: task.clone(), code: "1".into(), graph: None, config: json!({}) })
//!     .await?;
//! let run = store.create_run(NewRun::new(task, v.version.version, json!({"name": "Ada"}))).await?;
//! assert_eq!(store.get_run(run.run().id).await?.input["name"], "Ada");
//! # Ok::<(), sequential_adaptor::Error>(())
//! # })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound::{Excluded, Unbounded};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::{
    Claim, ClaimRequest, Created, DeleteMode, Fence, JournalRecord, NewRun, NewTaskVersion, Order,
    Page, PutVersion, Run, RunFilter, RunId, RunPage, Signal, Takeover, TaskName, TaskSummary,
    TaskVersion, UnixMillis, VersionSel, now_millis,
};
use crate::{AdapterFactory, StorageAdapter, rules};

/// Storage in this process's memory (registry scheme `memory:`).
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct State {
    /// Every task's versions, index `n - 1` holding version `n`.
    versions: BTreeMap<TaskName, Vec<TaskVersion>>,
    /// Runs by id; ids are UUID v7, so this is creation order.
    runs: BTreeMap<RunId, Run>,
    journals: HashMap<RunId, Vec<JournalRecord>>,
    signals: HashMap<RunId, Vec<Signal>>,
    /// Idempotency key → the run started with it.
    keys: HashMap<String, RunId>,
}

impl State {
    fn run(&self, id: RunId) -> Result<&Run> {
        self.runs
            .get(&id)
            .ok_or_else(|| Error::not_found(format!("run {id}")))
    }

    fn run_mut(&mut self, id: RunId) -> Result<&mut Run> {
        self.runs
            .get_mut(&id)
            .ok_or_else(|| Error::not_found(format!("run {id}")))
    }

    /// Claims `id` (known claimable) for `req` and stores the claimed run.
    fn claim(&mut self, id: RunId, req: &ClaimRequest) -> Claim {
        let run = self.runs.get(&id).expect("a listed run").clone();
        let claim = rules::claim_run(run, req);
        self.runs.insert(id, claim.run.clone());
        claim
    }

    fn remove_run(&mut self, id: RunId) {
        if let Some(run) = self.runs.remove(&id)
            && let Some(key) = run.idempotency_key
        {
            self.keys.remove(&key);
        }
        self.journals.remove(&id);
        self.signals.remove(&id);
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Locks the state. A panic while it was held cannot leave it half-written (every method
    /// checks before it changes anything), so a poisoned lock is still safe to use.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a write and wakes [`StorageAdapter::wait_for_change`] waiters when it succeeds.
    fn write<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let out = f(&mut self.state());
        if out.is_ok() {
            self.changed.notify_waiters();
        }
        out
    }
}

#[async_trait]
impl StorageAdapter for MemoryStore {
    fn scheme(&self) -> &'static str {
        "memory"
    }

    async fn put_task_version(&self, new: NewTaskVersion) -> Result<PutVersion> {
        let hash = new.content_hash();
        self.write(|s| {
            let versions = s.versions.entry(new.task.clone()).or_default();
            if let Some(v) = versions.iter().find(|v| v.hash == hash) {
                return Ok(PutVersion {
                    version: v.clone(),
                    created: false,
                });
            }
            let version = TaskVersion {
                task: new.task,
                version: versions.len() as u32 + 1,
                hash,
                code: new.code,
                graph: new.graph,
                config: new.config,
                created_at: now_millis(),
            };
            versions.push(version.clone());
            Ok(PutVersion {
                version,
                created: true,
            })
        })
    }

    async fn get_task_version(&self, task: &TaskName, sel: VersionSel) -> Result<TaskVersion> {
        let s = self.state();
        let versions = s.versions.get(task).map(Vec::as_slice).unwrap_or_default();
        let found = match sel {
            VersionSel::Latest => versions.last(),
            VersionSel::Exact(n) => versions.get((n as usize).wrapping_sub(1)),
        };
        found.cloned().ok_or_else(|| match sel {
            VersionSel::Latest => Error::not_found(format!("task `{task}`")),
            VersionSel::Exact(n) => Error::not_found(format!("task `{task}` version {n}")),
        })
    }

    async fn create_run(&self, new: NewRun) -> Result<Created> {
        self.write(|s| {
            let known = s
                .versions
                .get(&new.task)
                .is_some_and(|v| (1..=v.len() as u32).contains(&new.version));
            if !known {
                return Err(Error::not_found(format!(
                    "task `{}` version {}",
                    new.task, new.version
                )));
            }
            if let Some(key) = &new.idempotency_key
                && let Some(id) = s.keys.get(key)
            {
                return rules::existing_for_key(s.run(*id)?.clone(), &new);
            }
            let run = rules::new_run(new, now_millis());
            if let Some(key) = &run.idempotency_key {
                s.keys.insert(key.clone(), run.id);
            }
            s.journals.insert(run.id, Vec::new());
            s.signals.insert(run.id, Vec::new());
            s.runs.insert(run.id, run.clone());
            Ok(Created::Created(run))
        })
    }

    async fn get_run(&self, id: RunId) -> Result<Run> {
        self.state().run(id).cloned()
    }

    async fn update_run(&self, run: &Run) -> Result<Run> {
        self.write(|s| {
            let stored = s.run_mut(run.id)?;
            *stored = rules::prepare_update(stored, run, now_millis())?;
            Ok(stored.clone())
        })
    }

    async fn settle_run(&self, run: &Run, token: u64) -> Result<Run> {
        self.write(|s| {
            let stored = s.run_mut(run.id)?;
            *stored = rules::prepare_settle(stored, run, token, now_millis())?;
            Ok(stored.clone())
        })
    }

    async fn append(&self, run: RunId, records: &[JournalRecord], fence: Fence) -> Result<()> {
        self.write(|s| {
            rules::check_fence(s.run(run)?, fence)?;
            let journal = s.journals.entry(run).or_default();
            // every check happens before the first record is pushed: all or nothing
            let first_new = rules::plan_append(run, journal.len() as u64, records, |seq| {
                Ok(journal.get(seq as usize).cloned())
            })?;
            journal.extend_from_slice(&records[first_new..]);
            Ok(())
        })
    }

    async fn read_journal(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<JournalRecord>> {
        let s = self.state();
        s.run(run)?;
        let from = after_seq.map_or(0, |a| a.saturating_add(1));
        let journal = s.journals.get(&run).map(Vec::as_slice).unwrap_or_default();
        Ok(journal
            .iter()
            .skip(from.min(journal.len() as u64) as usize)
            .take(limit)
            .cloned()
            .collect())
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claim>> {
        self.write(|s| {
            let mut due: Vec<(UnixMillis, RunId)> = s
                .runs
                .values()
                .filter(|r| rules::is_claimable(r, req.now))
                .map(|r| (rules::runnable_since(r), r.id))
                .collect();
            due.sort_unstable();
            Ok(due
                .into_iter()
                .take(req.limit)
                .map(|(_, id)| s.claim(id, req))
                .collect())
        })
    }

    async fn claim_run(
        &self,
        id: RunId,
        req: &ClaimRequest,
        takeover: Takeover,
    ) -> Result<Option<Claim>> {
        self.write(|s| {
            let claimable = rules::is_claimable_with(s.run(id)?, req.now, takeover);
            Ok(claimable.then(|| s.claim(id, req)))
        })
    }

    async fn renew(&self, run: RunId, token: u64, now: UnixMillis, lease_ms: u64) -> Result<Run> {
        self.write(|s| {
            let stored = s.run_mut(run)?;
            *stored = rules::renew(stored.clone(), token, now, lease_ms)?;
            Ok(stored.clone())
        })
    }

    async fn release(&self, run: RunId, token: u64) -> Result<Run> {
        self.write(|s| {
            let stored = s.run_mut(run)?;
            *stored = rules::release(stored.clone(), token)?;
            Ok(stored.clone())
        })
    }

    async fn send_signal(&self, run: RunId, name: &str, payload: Value) -> Result<u64> {
        self.write(|s| {
            let now = now_millis();
            let target = rules::signal_target(s.run(run)?.clone(), name, now)?;
            s.runs.insert(run, target);
            let inbox = s.signals.entry(run).or_default();
            let seq = inbox.len() as u64;
            inbox.push(Signal {
                run,
                name: name.to_string(),
                payload,
                seq,
                at: now,
            });
            Ok(seq)
        })
    }

    async fn read_signals(&self, run: RunId, after_seq: Option<u64>) -> Result<Vec<Signal>> {
        let s = self.state();
        s.run(run)?;
        let inbox = s.signals.get(&run).map(Vec::as_slice).unwrap_or_default();
        Ok(inbox
            .iter()
            .filter(|sig| after_seq.is_none_or(|a| sig.seq > a))
            .cloned()
            .collect())
    }

    // ---- part 2: administration ---------------------------------------------------------

    async fn list_tasks(&self) -> Result<Vec<TaskSummary>> {
        let s = self.state();
        Ok(s.versions
            .iter()
            .filter_map(|(name, versions)| {
                let latest = versions.last()?;
                Some(TaskSummary {
                    name: name.clone(),
                    latest_version: latest.version,
                    latest_hash: latest.hash.clone(),
                    updated_at: latest.created_at,
                })
            })
            .collect())
    }

    async fn delete_task(&self, task: &TaskName, mode: DeleteMode) -> Result<()> {
        self.write(|s| {
            let runs: Vec<RunId> = s
                .runs
                .values()
                .filter(|r| &r.task == task)
                .map(|r| r.id)
                .collect();
            if !s.versions.contains_key(task) && runs.is_empty() {
                return Err(Error::not_found(format!("task `{task}`")));
            }
            let active = runs
                .iter()
                .filter(|id| !s.runs[*id].status.is_terminal())
                .count();
            if mode == DeleteMode::IfIdle && active > 0 {
                return Err(Error::conflict(format!(
                    "task `{task}` has {active} active run(s); finish or cancel them, or delete with force"
                )));
            }
            for id in runs {
                s.remove_run(id);
            }
            s.versions.remove(task);
            Ok(())
        })
    }

    async fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<RunPage> {
        let s = self.state();
        let keep = |r: &&Run| {
            filter.task.as_ref().is_none_or(|t| &r.task == t)
                && (filter.statuses.is_empty() || filter.statuses.contains(&r.status))
        };
        let ordered: Box<dyn Iterator<Item = &Run>> = match (page.order, page.after) {
            (Order::OldestFirst, None) => Box::new(s.runs.values()),
            (Order::OldestFirst, Some(a)) => {
                Box::new(s.runs.range((Excluded(a), Unbounded)).map(|(_, r)| r))
            }
            (Order::NewestFirst, None) => Box::new(s.runs.values().rev()),
            (Order::NewestFirst, Some(a)) => Box::new(s.runs.range(..a).rev().map(|(_, r)| r)),
        };
        let mut runs: Vec<Run> = ordered
            .filter(keep)
            .take(page.limit.saturating_add(1))
            .cloned()
            .collect();
        // one more than asked tells whether there is a next page
        let more = runs.len() > page.limit;
        runs.truncate(page.limit);
        let next = if more {
            runs.last().map(|r| r.id)
        } else {
            None
        };
        Ok(RunPage { runs, next })
    }

    async fn prune(&self, older_than: UnixMillis) -> Result<u64> {
        self.write(|s| {
            let old: Vec<RunId> = s
                .runs
                .values()
                .filter(|r| rules::is_prunable(r, older_than))
                .map(|r| r.id)
                .collect();
            for id in &old {
                s.remove_run(*id);
            }
            Ok(old.len() as u64)
        })
    }

    async fn delete_run(&self, id: RunId) -> Result<()> {
        self.write(|s| {
            let run = s.run(id)?;
            let parent = run.parent.and_then(|p| s.runs.get(&p.run));
            rules::check_deletable(run, parent)?;
            s.remove_run(id);
            Ok(())
        })
    }

    async fn wait_for_change(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.changed.notified()).await;
    }
}

/// Opens `memory:` URLs for the [`crate::Registry`]: `memory:` and `memory:NAME` each name one
/// store per process, so every open of the same URL in a process sees the same runs.
#[derive(Debug, Default)]
pub struct MemoryFactory {
    stores: Mutex<HashMap<String, Arc<MemoryStore>>>,
}

#[async_trait]
impl AdapterFactory for MemoryFactory {
    async fn open(&self, url: &str) -> Result<Arc<dyn StorageAdapter>> {
        let name = crate::strip_scheme(url).to_string();
        let mut stores = self.stores.lock().unwrap_or_else(|e| e.into_inner());
        Ok(stores.entry(name).or_default().clone())
    }
}

#[cfg(test)]
mod conformance {
    use super::*;
    use crate::conformance::Harness;

    async fn make() -> Option<Harness> {
        Some(Harness {
            store: Arc::new(MemoryStore::new()),
            reopen: None,
            guard: Box::new(()),
        })
    }

    crate::conformance_tests!(make);

    #[test]
    fn the_factory_gives_one_store_per_url_and_process() {
        crate::conformance::run_case(async {
            let mut registry = crate::Registry::new();
            registry.register("memory", "memory:[NAME]", MemoryFactory::default());
            let a = registry.open("memory:").await.unwrap();
            let t = TaskName::new("t").unwrap();
            let new = NewTaskVersion {
                task: t.clone(),
                code: "1".into(),
                graph: None,
                config: Value::Null,
            };
            a.put_task_version(new).await.unwrap();
            let again = registry.open("memory:").await.unwrap();
            assert_eq!(
                again.list_tasks().await.unwrap().len(),
                1,
                "same URL, same store"
            );
            let other = registry.open("memory:other").await.unwrap();
            assert!(
                other.list_tasks().await.unwrap().is_empty(),
                "another name, another store"
            );
            assert_eq!(other.scheme(), "memory");
        });
    }
}
