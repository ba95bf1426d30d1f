//! When driving a run fails: an error that retrying cannot cure (a malformed task
//! configuration, an undecodable journal) fails the run at once with that cause; any other is
//! retried with backoff, up to [`EngineConfig::max_drive_attempts`](crate::EngineConfig) drives,
//! then fails the run. Never left claimed and re-claimed forever.

use std::time::Duration;

use sequential_adaptor::{Claim, Run, RunId, now_millis};
use serde_json::{Value, json};

use crate::Engine;
use crate::budget;
use crate::driver;
use crate::error::{Error, Result};
use crate::worker::StopWatch;

/// What became of a claimed run.
#[derive(Debug)]
pub(crate) enum Driven {
    /// It settled (ended, waits, paused, failed by its drive errors) or was released: its state.
    Run(Box<Run>),
    /// The drive failed; the run is driven again after a backoff (its lease is held until then).
    Retrying,
    /// Another worker holds the run now (our lease was lost or the run is gone).
    Lost,
}

/// The `name` of a run error that counts failed drives while the run is still active.
const DRIVE_ERROR: &str = "DriveError";

/// Drives a claimed run; a failed drive is settled as described in the module docs.
pub(crate) async fn drive_claim(
    engine: &Engine,
    claim: Claim,
    stop: &mut StopWatch,
) -> Result<Driven> {
    let (id, token) = (claim.run.id, claim.token);
    let driven = match &engine.config.run_timeout {
        None => driver::drive(engine, claim, stop).await,
        Some(timeout) => budgeted(engine, claim, stop, timeout).await,
    };
    match driven {
        Ok(run) => Ok(Driven::Run(Box::new(run))),
        Err(e) => after_failure(engine, id, token, e).await,
    }
}

/// Drives a claimed run for what is left of its active-time budget; a run that uses it up
/// fails with the budget's timeout error.
async fn budgeted(
    engine: &Engine,
    claim: Claim,
    stop: &mut StopWatch,
    timeout: &crate::RunTimeout,
) -> Result<Run> {
    let (run, token) = (claim.run.clone(), claim.token);
    let spent = budget::spent(engine, run.id).await?;
    let left = timeout.limit.saturating_sub(spent);
    if !left.is_zero() {
        match tokio::time::timeout(left, driver::drive(engine, claim, stop)).await {
            Ok(driven) => return driven,
            // the drive stopped where it was: what it had not journaled is lost with the run
            Err(_) => tracing::debug!(run = %run.id, "the run used up its active time"),
        }
    }
    let run = engine.store.get_run(run.id).await?;
    driver::fail(engine, run, token, budget::exceeded(timeout, spent + left)).await
}

/// Settles a failed drive of run `id` (held with `token`): fails the run when `cause` is
/// permanent or the drives are spent; otherwise counts the drive and keeps the lease until the
/// backoff is over. `Err` only when even that cannot be written (the lease then expires).
pub(crate) async fn after_failure(
    engine: &Engine,
    id: RunId,
    token: u64,
    cause: Error,
) -> Result<Driven> {
    if lost(&cause) {
        return Ok(Driven::Lost);
    }
    let store = &engine.store;
    let max = engine.config.max_drive_attempts.max(1);
    for _ in 0..3 {
        let mut run = match store.get_run(id).await {
            Ok(r) => r,
            Err(sequential_adaptor::Error::NotFound { .. }) => return Ok(Driven::Lost),
            Err(e) => {
                tracing::warn!(run = %id, error = %e, cause = %cause, "cannot read the run whose drive failed");
                return Err(cause);
            }
        };
        if run.lease.as_ref().map(|l| l.token) != Some(token) || run.status.is_terminal() {
            return Ok(Driven::Lost);
        }
        let attempts = drive_attempts(&run) + 1;
        if cause.is_permanent() || attempts >= max {
            let message = if cause.is_permanent() {
                format!(
                    "run {id} of task `{}` v{} cannot be driven: {cause}; driving it again cannot help \
                     (fix the task and start a new run)",
                    run.task, run.version
                )
            } else {
                format!(
                    "driving run {id} failed {attempts} time(s) (the limit, engine.maxDriveAttempts, is {max}); \
                     the last failure: {cause}"
                )
            };
            tracing::warn!(run = %id, attempts, cause = %cause, "the run fails: its drive cannot succeed");
            let error = json!({
                "name": cause.run_error_name(),
                "message": message,
                "driveAttempts": attempts,
            });
            return match driver::fail(engine, run, token, error).await {
                Ok(run) => Ok(Driven::Run(Box::new(run))),
                Err(e) if lost(&e) => Ok(Driven::Lost),
                Err(e) => {
                    tracing::warn!(run = %id, error = %e, cause = %cause, "cannot fail the run");
                    Err(cause)
                }
            };
        }
        let delay = backoff(engine.config.drive_retry_delay, attempts);
        let retry_at = now_millis() + delay.as_millis() as i64;
        tracing::warn!(run = %id, attempts, max, retry_in_ms = delay.as_millis() as u64, cause = %cause,
            "driving the run failed; it is driven again after a backoff");
        run.error = Some(json!({
            "name": DRIVE_ERROR,
            "message": format!("drive {attempts} of at most {max} failed: {cause}"),
            "driveAttempts": attempts,
            "retryAt": retry_at,
        }));
        match store.update_run(&run).await {
            Ok(_) => {}
            // a signal or a cancel changed the run meanwhile: count again on the fresh state
            Err(sequential_adaptor::Error::Conflict { .. }) => continue,
            Err(e) => {
                tracing::warn!(run = %id, error = %e, cause = %cause, "cannot record the failed drive");
                return Err(cause);
            }
        }
        // hold the lease until the backoff is over: then any worker may claim the run again
        return match store
            .renew(id, token, now_millis(), delay.as_millis().max(1) as u64)
            .await
        {
            Ok(_) => Ok(Driven::Retrying),
            Err(sequential_adaptor::Error::Fenced { .. }) => Ok(Driven::Lost),
            Err(_) => Ok(Driven::Retrying),
        };
    }
    Err(cause)
}

/// Failed drives counted so far (kept in the active run's error).
pub(crate) fn drive_attempts(run: &Run) -> u32 {
    run.error
        .as_ref()
        .filter(|e| is_drive_error(e))
        .and_then(|e| e["driveAttempts"].as_u64())
        .map_or(0, |n| n.min(u32::MAX as u64) as u32)
}

/// Whether a run's error only counts failed drives (the run is still active).
pub(crate) fn is_drive_error(error: &Value) -> bool {
    error["name"] == DRIVE_ERROR
}

/// The delay before drive `attempts + 1`: `initial` doubling per failed drive, at most a minute.
fn backoff(initial: Duration, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1).min(16));
    initial.saturating_mul(factor).min(Duration::from_secs(60))
}

/// The run is someone else's now: our token is stale.
fn lost(e: &Error) -> bool {
    matches!(e, Error::Storage(sequential_adaptor::Error::Fenced { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let s = Duration::from_secs(1);
        assert_eq!(backoff(s, 1), s);
        assert_eq!(backoff(s, 2), 2 * s);
        assert_eq!(backoff(s, 4), 8 * s);
        assert_eq!(backoff(s, 40), Duration::from_secs(60));
    }
}
