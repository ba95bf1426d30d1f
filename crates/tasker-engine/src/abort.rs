//! The runs this process is driving, and how a kill or a stop reaches them.
//!
//! [`Engine::kill`](crate::Engine::kill) (and a stop whose timeout expired) hands the abort to
//! the driver that holds the run here: it aborts the calls in flight, answers the code's
//! `ctx.signal` with the reason (so the abort is a journaled fact a replay meets at the same
//! point), journals what the code did about it and ends the run `cancelled` itself. A run driven
//! by another process is cancelled in storage as before; its signal does not fire.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sequential_adaptor::RunId;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

/// What a driver is told about its run.
#[derive(Debug)]
pub(crate) enum Notice {
    /// A graceful stop: end the run `cancelled` at the next step boundary.
    Stop,
    /// Abort now: fire `ctx.signal` with `reason` (`{name, message}`), end the run `cancelled`,
    /// then answer `done`.
    Abort {
        reason: Value,
        done: oneshot::Sender<()>,
    },
}

/// The runs this engine's drivers hold, by id.
#[derive(Debug, Default)]
pub(crate) struct Live {
    runs: Mutex<HashMap<RunId, (u64, mpsc::UnboundedSender<Notice>)>>,
    next: AtomicU64,
}

/// A driver's registration; dropping it unregisters (a notice still queued is dropped, and a
/// kill waiting for it goes on without the driver).
#[derive(Debug)]
pub(crate) struct Registration {
    live: Arc<Live>,
    id: RunId,
    token: u64,
    pub(crate) notices: mpsc::UnboundedReceiver<Notice>,
}

impl Live {
    pub(crate) fn register(self: &Arc<Self>, id: RunId) -> Registration {
        let (tx, rx) = mpsc::unbounded_channel();
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        self.runs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, (token, tx));
        Registration {
            live: self.clone(),
            id,
            token,
            notices: rx,
        }
    }

    /// Hands `notice` to the driver of `id`; gives it back when no driver here holds the run.
    pub(crate) fn send(&self, id: RunId, notice: Notice) -> std::result::Result<(), Notice> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        match runs.get(&id) {
            Some((_, tx)) => tx.send(notice).map_err(|e| e.0),
            None => Err(notice),
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut runs = self.live.runs.lock().unwrap_or_else(|p| p.into_inner());
        if runs.get(&self.id).is_some_and(|(t, _)| *t == self.token) {
            runs.remove(&self.id);
        }
    }
}
