//! Driving a run in this process while reporting it: a spinner with the step count (only when
//! stderr is a terminal) and, with `--verbose`, each journal record on stderr as it is written.

use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sequential_adaptor::{JournalRecord, Run, RunId, RunStatus, now_millis};
use sequential_tasker_engine::Engine;

use crate::runs::{self, engine_error};

/// How the drive is reported.
#[derive(Debug, Clone, Copy)]
pub struct Watch {
    /// Print each new journal record on stderr.
    pub verbose: bool,
    /// Draw a spinner on stderr.
    pub spinner: bool,
    /// Offsets in printed records are relative to this instant (the run's creation).
    pub start: i64,
}

/// Drives run `id` until it settles (see [`settle`]) while a watcher reports the journal
/// records written after `after`; returns the settled run.
pub async fn drive(
    engine: &Engine,
    id: RunId,
    wait_until: Option<i64>,
    after: Option<u64>,
    watch: Watch,
) -> Result<Run> {
    drive_with(engine, id, wait_until, true, after, watch).await
}

/// [`drive`], through timers due before `wait_until` and, when `events`, also waiting for
/// events and child runs driven elsewhere until then.
pub async fn drive_with(
    engine: &Engine,
    id: RunId,
    wait_until: Option<i64>,
    events: bool,
    after: Option<u64>,
    watch: Watch,
) -> Result<Run> {
    if !watch.verbose && !watch.spinner {
        return settle(engine, id, wait_until, events).await;
    }
    let bar = if watch.spinner {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(100));
        bar.set_message(format!("run {id}: starting"));
        bar
    } else {
        ProgressBar::hidden()
    };
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let store = engine.store().clone();
    let watcher_bar = bar.clone();
    let watcher = tokio::spawn(async move {
        let mut after = after;
        loop {
            let finished = *done_rx.borrow_and_update();
            let recs: Vec<JournalRecord> = runs::journal_after(&store, id, after)
                .await
                .unwrap_or_default();
            if let Some(last) = recs.last() {
                after = Some(last.seq);
                let steps = last.seq + 1;
                let kind = last.kind.clone();
                if watch.verbose {
                    watcher_bar.suspend(|| runs::eprint_records(&recs, watch.start));
                }
                watcher_bar
                    .set_message(format!("run {id}: {steps} journal records (last: {kind})"));
            }
            if finished {
                break;
            }
            tokio::select! {
                _ = done_rx.changed() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
        watcher_bar.finish_and_clear();
    });
    let result = settle(engine, id, wait_until, events).await;
    let _ = done_tx.send(true);
    let _ = watcher.await;
    bar.finish_and_clear();
    result
}

/// `run_until_settled`, and until `wait_until` also through waits the engine does not sleep
/// for: an event (a `signal` from another process makes the run due) or a child run that
/// another process drives. Polls the run while it waits.
async fn settle(engine: &Engine, id: RunId, wait_until: Option<i64>, events: bool) -> Result<Run> {
    loop {
        let run = engine
            .run_until_settled(id, wait_until)
            .await
            .map_err(engine_error)?;
        let left = wait_until.map_or(0, |limit| limit - now_millis());
        if run.status != RunStatus::Waiting || left <= 0 || !events {
            return Ok(run);
        }
        let pause = Duration::from_millis(left.clamp(1, 200) as u64);
        engine.store().wait_for_change(pause).await;
    }
}
