//! `worker` (claim and drive runs until Ctrl-C/SIGTERM) and `prune` (delete old finished runs).

use std::time::Duration;

use anyhow::Result;
use sequential_adaptor::now_millis;
use serde::Serialize;

use super::Ctx;
use crate::error::user;
use crate::output::Render;
use crate::runs::{self, engine_error};
use crate::time::rfc3339;

/// Resolves at the next SIGINT (Ctrl-C) or SIGTERM.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                "Ctrl-C"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

pub async fn worker(ctx: &Ctx, concurrency: usize) -> Result<()> {
    if concurrency == 0 {
        return Err(user(
            "--concurrency 0: expected at least 1",
            "for example --concurrency 16 (runs driven at once)",
        ));
    }
    let storage = ctx.storage(None).await?;
    let engine = runs::engine(ctx, &storage, Some(concurrency))?;
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(None::<&'static str>);
    // Listen before announcing, so a signal sent right after the announcement is never lost.
    let listener = tokio::spawn(async move {
        let first = stop_signal().await;
        eprintln!(
            "worker: {first}, stopping once the runs in hand settle (signal again to stop now)"
        );
        let _ = stop_tx.send(Some(first));
        let second = stop_signal().await;
        eprintln!(
            "worker: {second} again, stopping now (runs in hand continue elsewhere once their lease expires)"
        );
        std::process::exit(130);
    });
    eprintln!(
        "worker {} on {} (concurrency {concurrency}); Ctrl-C or SIGTERM stops it",
        engine.config().worker_id,
        storage.choice.url
    );
    let mut claimed = 0usize;
    loop {
        if let Some(why) = *stop_rx.borrow() {
            eprintln!("worker: stopped ({why}) after {claimed} claims");
            break;
        }
        // Not raced against the stop signal: the runs in hand reach their next settled state
        // (ended, waiting or paused) before the worker stops.
        let n = engine.work_once().await.map_err(engine_error)?;
        claimed += n;
        if n == 0 {
            tokio::select! {
                _ = storage.adapter.wait_for_change(Duration::from_millis(200)) => {}
                _ = stop_rx.changed() => {}
            }
        }
    }
    listener.abort();
    Ok(())
}

#[derive(Serialize)]
struct Pruned {
    storage: String,
    /// Runs that ended before this instant were deleted (RFC 3339).
    ended_before: String,
    pruned: u64,
}

impl Render for Pruned {
    fn text(&self) -> String {
        let s = if self.pruned == 1 { "" } else { "s" };
        format!(
            "pruned {} finished run{s} that ended before {} from {}\n",
            self.pruned, self.ended_before, self.storage
        )
    }
}

pub async fn prune(ctx: &Ctx, older_than: &str) -> Result<()> {
    let age = runs::duration("--older-than", older_than)?;
    let cutoff = now_millis() - age.as_millis() as i64;
    let (choice, storage) = ctx.existing_storage().await?;
    let pruned = match storage {
        Some(s) => s.adapter.prune(cutoff).await?,
        None => 0,
    };
    ctx.out.print(&Pruned {
        storage: choice.url,
        ended_before: rfc3339(cutoff),
        pruned,
    })
}
