//! Storage semantics shared by every backend, as plain functions, so that backends differ only
//! in how they store things, never in what a claim, an append or a create means.

use crate::error::{Error, Result};
use crate::model::{
    Claim, ClaimRequest, Created, Fence, JournalRecord, Lease, NewRun, Run, RunId, RunStatus,
    UnixMillis, canonical_json,
};

/// `true` when [`crate::StorageAdapter::claim`] may hand out `run` at `now`.
pub fn is_claimable(run: &Run, now: UnixMillis) -> bool {
    match run.status {
        RunStatus::Queued => true,
        RunStatus::Waiting => run.wake_at.is_some_and(|w| w <= now),
        RunStatus::Running | RunStatus::Stopping => {
            run.lease.as_ref().is_none_or(|l| l.expires_at <= now)
        }
        RunStatus::Paused | RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled => {
            false
        }
    }
}

/// `true` when [`crate::StorageAdapter::claim_run`] may claim `run` with `takeover`.
pub fn is_claimable_with(run: &Run, now: UnixMillis, takeover: crate::Takeover) -> bool {
    is_claimable(run, now)
        || (takeover == crate::Takeover::Steal
            && matches!(run.status, RunStatus::Running | RunStatus::Stopping))
}

/// The run after a claim by `req.worker` at `req.now`: new lease, bumped token, attempt and
/// revision. The caller stores it only if the run was claimable and unchanged.
pub fn claim_run(mut run: Run, req: &ClaimRequest) -> Claim {
    let token = run.fence + 1;
    run.fence = token;
    run.lease = Some(Lease {
        owner: req.worker.clone(),
        token,
        expires_at: req.now.saturating_add(req.lease_ms as i64),
    });
    if run.status != RunStatus::Stopping {
        run.status = RunStatus::Running;
    }
    run.wake_at = None;
    run.attempt += 1;
    run.revision += 1;
    run.updated_at = req.now;
    Claim {
        run,
        token,
        journal_len: None,
        version_hash: None,
    }
}

/// Checks a write's fence against the run's current token.
pub fn check_fence(run: &Run, fence: Fence) -> Result<()> {
    match fence {
        Fence::None => Ok(()),
        Fence::Token(t) if t == run.fence && run.fence > 0 => Ok(()),
        Fence::Token(t) => Err(Error::Fenced {
            run: run.id,
            token: t,
            current: run.fence,
        }),
    }
}

/// Checks a lease operation's token: it must be current and the run must hold a lease.
pub fn check_lease(run: &Run, token: u64) -> Result<()> {
    match &run.lease {
        Some(l) if l.token == token => Ok(()),
        _ => Err(Error::Fenced {
            run: run.id,
            token,
            current: run.fence,
        }),
    }
}

/// Validates an append of `records` to a journal holding `stored` records (seqs `0..stored`).
/// `existing(seq)` reads a stored record. Returns the index in `records` of the first record to
/// write (records before it are identical to stored ones).
pub fn plan_append(
    run: RunId,
    stored: u64,
    records: &[JournalRecord],
    mut existing: impl FnMut(u64) -> Result<Option<JournalRecord>>,
) -> Result<usize> {
    let Some(first) = records.first() else {
        return Ok(0);
    };
    for (i, r) in records.iter().enumerate() {
        if r.run != run {
            return Err(Error::invalid(
                format!("journal record for run {} in an append to run {run}", r.run),
                "records of the run being appended to",
            ));
        }
        if r.seq != first.seq + i as u64 {
            return Err(Error::invalid(
                format!(
                    "journal seq {} after seq {}",
                    r.seq,
                    first.seq + i as u64 - 1
                ),
                "consecutive seqs within one append",
            ));
        }
    }
    if first.seq > stored {
        return Err(Error::invalid(
            format!("journal seq {} for run {run}", first.seq),
            format!("seq {stored} (the next seq; seqs are dense from 0)"),
        ));
    }
    let mut first_new = records.len();
    for (i, r) in records.iter().enumerate() {
        if r.seq >= stored {
            first_new = i;
            break;
        }
        match existing(r.seq)? {
            Some(old) if same_record(&old, r) => {}
            Some(old) => {
                return Err(Error::conflict(format!(
                    "run {run} already has a different record at seq {}: stored {} {}, offered {} {}",
                    r.seq,
                    old.kind,
                    canonical_json(&old.data),
                    r.kind,
                    canonical_json(&r.data)
                )));
            }
            None => {
                return Err(Error::backend(
                    format!("reading journal of run {run}"),
                    format!("seq {} missing below the journal length {stored}", r.seq),
                ));
            }
        }
    }
    Ok(first_new)
}

/// `true` when two records are the same record (an idempotent retry).
pub fn same_record(a: &JournalRecord, b: &JournalRecord) -> bool {
    a.run == b.run && a.seq == b.seq && a.kind == b.kind && a.at == b.at && a.data == b.data
}

/// A fresh queued run for `new`.
pub fn new_run(new: NewRun, now: UnixMillis) -> Run {
    Run {
        id: RunId::new(),
        task: new.task,
        version: new.version,
        status: RunStatus::Queued,
        input: new.input,
        output: None,
        error: None,
        parent: new.parent,
        idempotency_key: new.idempotency_key,
        wake_at: None,
        waiting_for: None,
        lease: None,
        fence: 0,
        attempt: 0,
        revision: 1,
        created_at: now,
        updated_at: now,
        ended_at: None,
        expires_at: None,
    }
}

/// What `create_run` answers when `existing` already holds `new`'s idempotency key.
pub fn existing_for_key(existing: Run, new: &NewRun) -> Result<Created> {
    if existing.task == new.task && existing.input == new.input {
        Ok(Created::Existing(existing))
    } else {
        Err(Error::conflict(format!(
            "idempotency key {:?} was used by run {} of task `{}` with other input",
            new.idempotency_key.as_deref().unwrap_or_default(),
            existing.id,
            existing.task
        )))
    }
}

/// The run after a signal arrives at `now`: a waiting run becomes runnable; a terminal run is
/// a `Conflict`.
pub fn signal_target(mut run: Run, name: &str, now: UnixMillis) -> Result<Run> {
    if run.status.is_terminal() {
        return Err(Error::conflict(format!(
            "run {} is {}; signal {name:?} cannot be delivered to a finished run",
            run.id, run.status
        )));
    }
    if run.status == RunStatus::Waiting {
        run.wake_at = Some(run.wake_at.map_or(now, |w| w.min(now)));
        run.revision += 1;
        run.updated_at = now;
    }
    Ok(run)
}

/// Whether `delete_run` may remove `run`: only a run in a terminal state (an active run →
/// `Conflict`: cancel it first), and not a child whose parent is still active — the parent
/// reads its child's outcome when it resumes (`parent` is the stored parent run, `None` when
/// the run has no parent or the parent is gone). Deleting a parent leaves its children; their
/// [`crate::Run::parent`] then names a run that no longer exists, as after `prune`.
pub fn check_deletable(run: &Run, parent: Option<&Run>) -> Result<()> {
    if !run.status.is_terminal() {
        return Err(Error::conflict(format!(
            "run {} is {}; only a finished run (succeeded, failed or cancelled) can be deleted: \
             cancel it first",
            run.id, run.status
        )));
    }
    if let Some(p) = parent.filter(|p| !p.status.is_terminal()) {
        return Err(Error::conflict(format!(
            "run {} is a child of run {}, which is {}; delete it after its parent ends",
            run.id, p.id, p.status
        )));
    }
    Ok(())
}

/// `true` when `prune(older_than)` removes `run`.
pub fn is_prunable(run: &Run, older_than: UnixMillis) -> bool {
    run.status.is_terminal() && run.ended_at.unwrap_or(run.updated_at) < older_than
}

/// The run `update_run` stores: `new` with the stored lease and fence kept, the revision bumped,
/// `updated_at` = `now`, and `ended_at` set when it reaches a terminal status. A stale revision
/// is a `Conflict`.
pub fn prepare_update(stored: &Run, new: &Run, now: UnixMillis) -> Result<Run> {
    if stored.revision != new.revision {
        return Err(Error::conflict(format!(
            "run {} was changed concurrently: expected revision {}, stored revision is {}",
            new.id, new.revision, stored.revision
        )));
    }
    if stored.task != new.task || stored.created_at != new.created_at {
        return Err(Error::invalid(
            format!(
                "update of run {} that changes its task or creation time",
                new.id
            ),
            "an update that keeps the run's identity",
        ));
    }
    let mut run = new.clone();
    run.lease = stored.lease.clone();
    run.fence = stored.fence;
    run.revision = stored.revision + 1;
    run.updated_at = now;
    if run.status.is_terminal() && run.ended_at.is_none() {
        run.ended_at = Some(now);
    }
    Ok(run)
}

/// The run `settle_run` stores: [`prepare_update`], then the lease held with `token` dropped.
pub fn prepare_settle(stored: &Run, new: &Run, token: u64, now: UnixMillis) -> Result<Run> {
    check_lease(stored, token)?;
    let mut run = prepare_update(stored, new, now)?;
    run.lease = None;
    Ok(run)
}

/// When a claimable run became runnable: its creation (queued), its `wake_at` (a due timer),
/// or its lease's expiry (a dead holder). [`crate::StorageAdapter::claim`] hands out runs in this
/// order, then by id, so overdue timers fire in deadline order.
pub fn runnable_since(run: &Run) -> UnixMillis {
    match run.status {
        RunStatus::Waiting => run.wake_at.unwrap_or(run.created_at),
        RunStatus::Running | RunStatus::Stopping => {
            run.lease.as_ref().map_or(run.created_at, |l| l.expires_at)
        }
        _ => run.created_at,
    }
}

/// The run after `renew(token, now, lease_ms)`: the lease held with `token` runs until
/// `now + lease_ms`. Neither the revision nor `updated_at` changes, so the holder's copy of the
/// run stays current for its next `update_run`. A stale token is `Fenced`.
pub fn renew(mut run: Run, token: u64, now: UnixMillis, lease_ms: u64) -> Result<Run> {
    check_lease(&run, token)?;
    if let Some(lease) = run.lease.as_mut() {
        lease.expires_at = now.saturating_add(lease_ms.min(i64::MAX as u64) as i64);
    }
    Ok(run)
}

/// The run after `release(token)`: the lease held with `token` is gone, nothing else changes.
/// A stale token is `Fenced`.
pub fn release(mut run: Run, token: u64) -> Result<Run> {
    check_lease(&run, token)?;
    run.lease = None;
    Ok(run)
}
