//! `wait_for_change` through LISTEN/NOTIFY: one background task per store holds a listening
//! connection and wakes waiters when the tables' triggers notify; while it is not listening
//! (starting, or reconnecting after the server went away) waiters poll instead.
//!
//! Two channels: [`CHANNEL`] (a run may have become claimable sooner: every waiter of
//! `wait_for_change` wakes) and [`ENDED`] (one run ended: only the [`EndWatch`]es of that run
//! wake, so a thousand callers each waiting for their own run cost one wake-up per end, not a
//! thousand).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sequential_adaptor::RunId;
use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;

use crate::schema::{CHANNEL, ENDED};
use crate::url::Location;

/// How often a waiter looks again when notifications may be missed.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// The end watchers of each run: (watcher number, its wake-up).
type EndWatchers = HashMap<RunId, Vec<(u64, Arc<Notify>)>>;

/// What the listening task shares with waiters.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    notify: Notify,
    /// `true` while the task is listening (so a waiter may wait for the whole timeout).
    listening: AtomicBool,
    ends: Mutex<EndWatchers>,
    next_watch: AtomicU64,
}

impl Changes {
    /// Waits for a notification, for at most `timeout` (at most [`POLL`] while not listening).
    pub(crate) async fn wait(&self, timeout: Duration) {
        let notified = self.notify.notified();
        let _ = tokio::time::timeout(self.limit(timeout), notified).await;
    }

    fn limit(&self, timeout: Duration) -> Duration {
        if self.listening.load(Ordering::Acquire) {
            timeout
        } else {
            timeout.min(POLL)
        }
    }

    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    fn wake(&self) {
        self.notify.notify_waiters();
    }

    /// Wakes the end watchers of `run` (each keeps the wake-up until it next waits).
    fn ended(&self, run: RunId) {
        if let Ok(ends) = self.ends.lock()
            && let Some(watchers) = ends.get(&run)
        {
            for (_, n) in watchers {
                n.notify_one();
            }
        }
    }

    fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
        // whatever was notified while we were not listening is lost: let waiters look now
        self.wake();
        if let Ok(ends) = self.ends.lock() {
            for (_, n) in ends.values().flatten() {
                n.notify_one();
            }
        }
    }

    /// Registers an end watcher of `run`.
    pub(crate) fn watch_end(self: &Arc<Self>, run: RunId) -> EndWatch {
        let number = self.next_watch.fetch_add(1, Ordering::Relaxed);
        let notify = Arc::new(Notify::new());
        if let Ok(mut ends) = self.ends.lock() {
            ends.entry(run).or_default().push((number, notify.clone()));
        }
        EndWatch {
            changes: self.clone(),
            run,
            number,
            notify,
        }
    }
}

/// Interest in one run's end, from [`crate::PostgresStore::watch_end`]: a notification that the
/// run ended (its status became succeeded, failed or cancelled, in any process) from the moment
/// the watch was made on is kept until [`EndWatch::wait`] takes it. A hint, not a guarantee:
/// read the run after waking.
#[derive(Debug)]
pub struct EndWatch {
    changes: Arc<Changes>,
    run: RunId,
    number: u64,
    notify: Arc<Notify>,
}

impl EndWatch {
    /// Waits until the run may have ended or `timeout` passes (at most 200 ms while the store
    /// is not listening, e.g. before its LISTEN connection is up or while it reconnects).
    pub async fn wait(&self, timeout: Duration) {
        let limit = self.changes.limit(timeout);
        let _ = tokio::time::timeout(limit, self.notify.notified()).await;
    }
}

impl Drop for EndWatch {
    fn drop(&mut self) {
        if let Ok(mut ends) = self.changes.ends.lock()
            && let Some(watchers) = ends.get_mut(&self.run)
        {
            watchers.retain(|(n, _)| *n != self.number);
            if watchers.is_empty() {
                ends.remove(&self.run);
            }
        }
    }
}

/// Starts the listening task for `loc` on the current Tokio runtime.
pub(crate) fn spawn(loc: Location, changes: Arc<Changes>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        // one connection of its own, so the store's pool keeps all of its connections
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(loc.options.clone());
        loop {
            match listen(&pool, &loc, &changes).await {
                Ok(()) => {}
                Err(e) => {
                    tracing::debug!(db = %loc.shown, error = %e, "LISTEN connection lost; polling until it is back");
                }
            }
            changes.set_listening(false);
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

async fn listen(pool: &sqlx::PgPool, loc: &Location, changes: &Changes) -> Result<(), sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen_all([CHANNEL, ENDED]).await?;
    changes.set_listening(true);
    loop {
        match listener.try_recv().await? {
            Some(n) if n.channel() == CHANNEL => {
                if n.payload() == loc.schema {
                    changes.wake();
                }
            }
            // "SCHEMA RUN-ID"
            Some(n) => {
                if let Some((schema, id)) = n.payload().split_once(' ')
                    && schema == loc.schema
                    && let Ok(id) = id.parse::<uuid::Uuid>()
                {
                    changes.ended(RunId::from_bytes(*id.as_bytes()));
                }
            }
            // the connection was lost and re-established (and LISTEN issued again)
            None => changes.set_listening(true),
        }
    }
}
