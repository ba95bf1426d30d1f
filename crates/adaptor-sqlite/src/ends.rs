//! [`EndWatch`]: wakes a caller when its own run ends, in this process or another, without
//! each caller reading its run in a loop.
//!
//! One task per store serves every watch: while any watch is open it looks at the database's
//! data version every millisecond, and when that moved (or a watch was added) it asks one
//! query which of the watched runs have ended, then wakes their watchers alone.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sequential_adaptor::RunId;
use tokio::sync::Notify;

use crate::{Inner, SqliteStore, ops};

/// How often the watcher looks at the data version while watches are open.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// How many run ids one query asks about.
const IDS_PER_QUERY: usize = 500;

/// The watchers of each watched run: a watch's number (to remove it alone) and its wake.
type Watches = HashMap<RunId, Vec<(u64, Arc<Notify>)>>;

/// The watches of one store (shared by its clones and the watcher task).
#[derive(Default)]
pub(crate) struct Ends {
    watches: Mutex<Watches>,
    next: AtomicU64,
    /// A watch was added since the watcher last asked: ask even if nothing was committed (the
    /// run may have ended before its watch was made).
    fresh: AtomicBool,
    /// Wakes the watcher from its idle wait when the first watch is added.
    added: Notify,
    /// The watcher task (started again if the runtime it ran on went away).
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Ends {
    fn ids(&self) -> Vec<RunId> {
        self.watches
            .lock()
            .map(|w| w.keys().copied().collect())
            .unwrap_or_default()
    }

    fn wake(&self, ended: &[RunId]) {
        if let Ok(watches) = self.watches.lock() {
            for id in ended {
                for (_, notify) in watches.get(id).into_iter().flatten() {
                    notify.notify_one();
                }
            }
        }
    }
}

impl SqliteStore {
    /// Watches run `id` for its end (its status becoming succeeded, failed or cancelled, by
    /// this process or another): [`EndWatch::wait`] returns once that is seen, within about a
    /// millisecond. Unlike [`sequential_adaptor::StorageAdapter::wait_for_change`], which wakes
    /// every waiter on every commit, an end wakes only the watchers of its own run — for
    /// callers each waiting for their own run. A run that ended before the watch was made is
    /// seen too. Call inside a Tokio runtime (the first watch starts the store's watcher task,
    /// which stops when the store is dropped).
    pub fn watch_end(&self, id: RunId) -> EndWatch {
        let ends = self.inner.ends.clone();
        let number = ends.next.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        if let Ok(mut watches) = ends.watches.lock() {
            watches
                .entry(id)
                .or_default()
                .push((number, notify.clone()));
        }
        ends.fresh.store(true, Ordering::Release);
        ends.added.notify_one();
        if let Ok(mut task) = ends.task.lock()
            && task.as_ref().is_none_or(|t| t.is_finished())
        {
            *task = Some(tokio::spawn(watch(
                Arc::downgrade(&self.inner),
                ends.clone(),
            )));
        }
        EndWatch {
            ends,
            run: id,
            number,
            notify,
        }
    }
}

/// The watcher task: runs until the store is dropped.
async fn watch(store: Weak<Inner>, ends: Arc<Ends>) {
    let mut seen: Option<u64> = None;
    loop {
        let idle = ends.watches.lock().map(|w| w.is_empty()).unwrap_or(true);
        if idle {
            // wake at a new watch, or now and then to notice the store is gone
            let _ = tokio::time::timeout(Duration::from_millis(200), ends.added.notified()).await;
        } else {
            tokio::time::sleep(LOOK_EVERY).await;
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        let store = SqliteStore { inner };
        // what was committed since the last look (None: an in-memory database, which has no
        // stamp: ask every time)
        let version = store.stamp().and_then(|s| s.now().ok());
        let fresh = ends.fresh.swap(false, Ordering::AcqRel);
        if !fresh && version.is_some() && version == seen {
            continue;
        }
        let ids = ends.ids();
        if ids.is_empty() {
            continue;
        }
        let mut ended = Vec::new();
        let mut failed = false;
        for chunk in ids.chunks(IDS_PER_QUERY) {
            let chunk = chunk.to_vec();
            match store.read_point(move |c| ops::ended_among(c, &chunk)).await {
                Ok(found) => ended.extend(found),
                Err(_) => failed = true,
            }
        }
        ends.wake(&ended);
        if failed {
            // ask again at the next look
            ends.fresh.store(true, Ordering::Release);
        } else {
            seen = version;
        }
    }
}

/// Interest in one run's end, from [`SqliteStore::watch_end`]. An end seen from the moment the
/// watch was made is kept until [`EndWatch::wait`] takes it. A hint, not a guarantee: read the
/// run after waking.
pub struct EndWatch {
    ends: Arc<Ends>,
    run: RunId,
    number: u64,
    notify: Arc<Notify>,
}

impl std::fmt::Debug for EndWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndWatch")
            .field("run", &self.run)
            .finish_non_exhaustive()
    }
}

impl EndWatch {
    /// Waits until the run may have ended or `timeout` passes.
    pub async fn wait(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.notify.notified()).await;
    }
}

impl Drop for EndWatch {
    fn drop(&mut self) {
        if let Ok(mut watches) = self.ends.watches.lock()
            && let Some(list) = watches.get_mut(&self.run)
        {
            list.retain(|(n, _)| *n != self.number);
            if list.is_empty() {
                watches.remove(&self.run);
            }
        }
    }
}
