//! A bound on a run's active execution time ([`EngineConfig::run_timeout`]).
//!
//! Active time is the time the run was being driven: the gaps between its journal records,
//! except the gaps it spent waiting in storage (for a timer, an event or a child run, or paused
//! until `resume --retry`), plus the time of the drive in progress. It is derived from the
//! journal's timestamps, so it adds up across processes and workers without a stored counter.
//! A drive that would cross the bound is stopped and the run fails with a `TimeoutError` that
//! names the setting.
//!
//! [`EngineConfig::run_timeout`]: crate::EngineConfig::run_timeout

use std::time::Duration;

use sequential_adaptor::{JournalRecord, RunId};
use serde_json::{Value, json};

use crate::Engine;
use crate::error::Result;

/// How long a run may be active, and the setting that said so (for the error message).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunTimeout {
    /// The bound.
    pub limit: Duration,
    /// Where it was set, e.g. `TASK_TIMEOUT`; the timeout error names it.
    pub setting: String,
}

/// Milliseconds of active time in a run's stored journal (see the module docs).
pub(crate) fn active_ms(records: &[JournalRecord]) -> i64 {
    records
        .windows(2)
        .filter(|pair| !waited_between(&pair[0], &pair[1]))
        .map(|pair| (pair[1].at - pair[0].at).max(0))
        .sum()
}

/// Whether the run waited in storage between `prev` and `next`: `prev` paused it, or `next`
/// completes a call that suspends the run (a timer, an event, a child run).
fn waited_between(prev: &JournalRecord, next: &JournalRecord) -> bool {
    if prev.kind == "run.paused" {
        return true;
    }
    if next.kind != "call.completed" {
        return false;
    }
    match next.data["kind"].as_str() {
        Some("sleep" | "waitForEvent" | "child") => true,
        Some("tool") => next.data["request"]["name"] == "task",
        _ => false,
    }
}

/// The active time already spent by run `id`, read from its journal.
pub(crate) async fn spent(engine: &Engine, id: RunId) -> Result<Duration> {
    let records = engine.read_all(id).await?;
    Ok(Duration::from_millis(active_ms(&records) as u64))
}

/// The error a run fails with when it used up `timeout`.
pub(crate) fn exceeded(timeout: &RunTimeout, spent: Duration) -> Value {
    let limit = timeout.limit.as_millis();
    json!({
        "name": "TimeoutError",
        "message": format!(
            "the run was active for {} ms, more than {} = {limit} ms allows \
             (time waiting for timers, events and child runs does not count)",
            spent.as_millis().max(limit),
            timeout.setting,
        ),
        "setting": timeout.setting,
        "limitMs": limit as u64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, at: i64, kind: &str, data: Value) -> JournalRecord {
        JournalRecord {
            run: RunId::from_bytes([0; 16]),
            seq,
            kind: kind.into(),
            at,
            data,
        }
    }

    #[test]
    fn waits_for_timers_events_and_pauses_do_not_count() {
        let records = [
            rec(0, 1_000, "run.started", json!({})),
            rec(1, 1_040, "call.completed", json!({"kind": "fetch"})),
            rec(2, 1_050, "timer.armed", json!({"seq": 2})),
            // a minute asleep
            rec(3, 61_050, "call.completed", json!({"kind": "sleep"})),
            rec(4, 61_070, "run.paused", json!({})),
            // paused for an hour, then resumed
            rec(5, 3_661_070, "call.requested", json!({"kind": "fetch"})),
            rec(
                6,
                3_661_100,
                "call.completed",
                json!({"kind": "waitForEvent"}),
            ),
            rec(7, 3_661_105, "run.succeeded", json!({})),
        ];
        // 40 + 10 + 20 + 5
        assert_eq!(active_ms(&records), 75);
        assert_eq!(active_ms(&records[..1]), 0);
    }
}
