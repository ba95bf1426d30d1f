//! `wait_for_change` through LISTEN/NOTIFY: one background task per store holds a listening
//! connection and wakes waiters when the tables' triggers notify; while it is not listening
//! (starting, or reconnecting after the server went away) waiters poll instead.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use tokio::sync::Notify;

use crate::schema::CHANNEL;
use crate::url::Location;

/// How often a waiter looks again when notifications may be missed.
pub(crate) const POLL: Duration = Duration::from_millis(200);

/// What the listening task shares with waiters.
#[derive(Debug, Default)]
pub(crate) struct Changes {
    notify: Notify,
    /// `true` while the task is listening (so a waiter may wait for the whole timeout).
    listening: AtomicBool,
}

impl Changes {
    /// Waits for a notification, for at most `timeout` (at most [`POLL`] while not listening).
    pub(crate) async fn wait(&self, timeout: Duration) {
        let notified = self.notify.notified();
        let limit = if self.listening.load(Ordering::Acquire) {
            timeout
        } else {
            timeout.min(POLL)
        };
        let _ = tokio::time::timeout(limit, notified).await;
    }

    pub(crate) fn is_listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    fn wake(&self) {
        self.notify.notify_waiters();
    }

    fn set_listening(&self, on: bool) {
        self.listening.store(on, Ordering::Release);
        // whatever was notified while we were not listening is lost: let waiters look now
        self.wake();
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
    listener.listen(CHANNEL).await?;
    changes.set_listening(true);
    loop {
        match listener.try_recv().await? {
            Some(n) if n.payload() == loc.schema => changes.wake(),
            Some(_) => {}
            // the connection was lost and re-established (and LISTEN issued again)
            None => changes.set_listening(true),
        }
    }
}
