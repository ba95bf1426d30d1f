//! `worker` (claim and drive runs until Ctrl-C/SIGTERM) and `prune` (delete old finished runs).

use anyhow::Result;
use sequential_adaptor::now_millis;
use serde::Serialize;

use sequential_tasker_engine::StopHandle;

use super::Ctx;
use crate::error::user;
use crate::output::Render;
use crate::runs::{self, engine_error};
use crate::signals::StopSignals;
use crate::time::rfc3339;

pub async fn worker(ctx: &Ctx, concurrency: usize, grace: &str) -> Result<()> {
    if concurrency == 0 {
        return Err(user(
            "--concurrency 0: expected at least 1",
            "for example --concurrency 16 (runs driven at once)",
        ));
    }
    let grace = runs::duration("--grace", grace)?;
    let storage = ctx.storage(None).await?;
    let mut config = runs::engine_config(ctx)?;
    config.concurrency = concurrency;
    config.stop_grace = grace;
    let engine = runs::engine_with(&storage, config)?;
    let stop = StopHandle::new();
    // Listen before announcing, so a signal sent right after the announcement is never lost.
    let asks = stop.clone();
    let signal = std::sync::Arc::new(std::sync::OnceLock::<&'static str>::new());
    let seen = signal.clone();
    let grace_text = runs::human_ms(grace.as_millis() as i64);
    let mut signals = StopSignals::listen();
    let listener = tokio::spawn(async move {
        let first = signals.next().await;
        eprintln!(
            "worker: {first}, claiming no more runs; the steps in flight finish (within {grace_text}), then the runs in hand are released (signal again to release them now)"
        );
        let _ = seen.set(first);
        asks.stop();
        let second = signals.next().await;
        eprintln!("worker: {second} again, releasing the runs in hand now");
        asks.stop_now();
        let third = signals.next().await;
        eprintln!(
            "worker: {third} a third time, exiting at once (runs in hand continue elsewhere once their leases expire)"
        );
        std::process::exit(130);
    });
    eprintln!(
        "worker {} on {} (concurrency {concurrency}); Ctrl-C or SIGTERM stops it",
        engine.config().worker_id,
        storage.choice.url
    );
    let report = engine.work_until(&stop).await.map_err(engine_error);
    listener.abort();
    let report = report?;
    let why = signal.get().copied().unwrap_or("its store failed");
    let released = match report.released {
        0 => String::new(),
        1 => "; 1 run released for another worker".into(),
        n => format!("; {n} runs released for another worker"),
    };
    eprintln!(
        "worker: stopped ({why}) after {} claims{released}",
        report.claimed
    );
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
