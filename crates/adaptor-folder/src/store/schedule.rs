//! The due-marker scheduler: which runs `claim` finds, and in what order.
//!
//! Every run that can become claimable by itself has an empty marker file
//! `.sequential/due/<due>.<task>.<run>`, where `due` is when it becomes claimable ([`due`]). The
//! markers are a superset of the runnable runs, so `claim` lists one directory, takes the
//! earliest due markers first (deadline order), and checks each run under its lock; a marker
//! that no longer matches its run is fixed on the way.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::path::PathBuf;

use sequential_adaptor::{
    Claim, ClaimRequest, Error, Result, Run, RunId, RunStatus, TaskName, UnixMillis, rules,
};

use super::{Inner, RunLock, list_names, lock, to_json_file};
use crate::fsutil::{commit, io_err, lock_exclusive, parent, prepare, remove_opt, sync_dir};

/// When a run becomes claimable if nothing changes it (`None`: never by itself). Exactly
/// `rules::is_claimable(run, now) == due(run).is_some_and(|d| d <= now)`.
pub(super) fn due(run: &Run) -> Option<UnixMillis> {
    match run.status {
        RunStatus::Queued => Some(UnixMillis::MIN),
        RunStatus::Waiting => run.wake_at,
        RunStatus::Running | RunStatus::Stopping => {
            Some(run.lease.as_ref().map_or(UnixMillis::MIN, |l| l.expires_at))
        }
        RunStatus::Paused | RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled => None,
    }
}

/// A schedule marker: an empty file `.sequential/due/<due>.<task>.<run>`. The set of markers is
/// a superset of the runnable runs: a run claimable at `now` has a marker with `due <= now`.
#[derive(Clone, Debug)]
pub(super) struct Marker {
    pub(super) due: UnixMillis,
    pub(super) task: TaskName,
    pub(super) run: RunId,
}

impl Marker {
    pub(super) fn file_name(&self) -> String {
        format!("{}.{}.{}", self.due, self.task, self.run)
    }

    pub(super) fn parse(name: &str) -> Option<Marker> {
        let mut parts = name.splitn(3, '.');
        let due = parts.next()?.parse().ok()?;
        let task = TaskName::new(parts.next()?).ok()?;
        let run = parts.next()?.parse().ok()?;
        Some(Marker { due, task, run })
    }
}

impl Inner {
    /// Every schedule marker, grouped by run.
    pub(super) fn markers_by_run(&self) -> Result<BTreeMap<RunId, Vec<Marker>>> {
        let mut out: BTreeMap<RunId, Vec<Marker>> = BTreeMap::new();
        for name in list_names(&self.due_dir())? {
            if let Some(m) = Marker::parse(&name) {
                out.entry(m.run).or_default().push(m);
            }
        }
        Ok(out)
    }

    /// After reading `run` under its lock: drop markers that no longer match it, make sure the
    /// right one exists (durably, before the wrong ones go).
    pub(super) fn fix_markers(&self, run: Option<&Run>, known: &[Marker]) -> Result<()> {
        let want = run.and_then(due);
        if let (Some(r), Some(d)) = (run, want) {
            let m = Marker {
                due: d,
                task: r.task.clone(),
                run: r.id,
            };
            let p = self.marker_path(&m);
            if !p.exists() {
                File::create(&p).map_err(|e| io_err("creating", &p, e))?;
                sync_dir(&self.due_dir())?;
            }
        }
        for m in known {
            if Some(m.due) != want {
                remove_opt(&self.marker_path(m))?;
            }
        }
        Ok(())
    }

    /// Moves a run's known markers to `due(run)` when that is not earlier than any of them (a
    /// claim): no fsync is needed, since losing the move leaves an earlier marker.
    pub(super) fn move_markers_later(&self, run: &Run, known: &[Marker]) -> Result<()> {
        let Some(want) = due(run) else {
            for m in known {
                remove_opt(&self.marker_path(m))?;
            }
            return Ok(());
        };
        let target = self.marker_path(&Marker {
            due: want,
            task: run.task.clone(),
            run: run.id,
        });
        let mut placed = false;
        for m in known {
            if m.due == want || (!placed && fs::rename(self.marker_path(m), &target).is_ok()) {
                placed = true;
            } else {
                remove_opt(&self.marker_path(m))?;
            }
        }
        if !placed {
            File::create(&target).map_err(|e| io_err("creating", &target, e))?;
        }
        Ok(())
    }

    pub(crate) fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claim>> {
        if req.limit == 0 {
            return Ok(Vec::new());
        }
        let _claim_lock = lock_exclusive(&self.lock_path("claim"))?;
        let markers = self.markers_by_run()?;
        let mut candidates: Vec<(UnixMillis, RunId, &[Marker])> = markers
            .iter()
            .filter_map(|(id, ms)| {
                let d = ms.iter().map(|m| m.due).min()?;
                (d <= req.now).then_some((d, *id, ms.as_slice()))
            })
            .collect();
        candidates.sort_by_key(|&(d, id, _)| (d, id));

        struct Held<'a> {
            _lock: RunLock,
            claim: Claim,
            tmp: PathBuf,
            target: PathBuf,
            known: &'a [Marker],
        }
        let mut held: Vec<Held<'_>> = Vec::new();
        let result = (|| {
            for &(_, id, known) in &candidates {
                if held.len() == req.limit {
                    break;
                }
                let task = &known[0].task;
                let rl = match self.lock_run(task, id, true) {
                    Ok(l) => l,
                    Err(Error::NotFound { .. }) => {
                        self.fix_markers(None, known)?;
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let Some(run) = self.read_run_opt(task, id)? else {
                    self.fix_markers(None, known)?;
                    continue;
                };
                if !rules::is_claimable(&run, req.now) {
                    self.fix_markers(Some(&run), known)?;
                    continue;
                }
                let claim = rules::claim_run(run, req);
                let target = self.run_path(task, id);
                let tmp = prepare(&target, &to_json_file(&claim.run))?;
                held.push(Held {
                    _lock: rl,
                    claim,
                    tmp,
                    target,
                    known,
                });
            }
            Ok(())
        })();
        if let Err(e) = result {
            for h in &held {
                let _ = fs::remove_file(&h.tmp);
            }
            return Err(e);
        }
        let mut dirs = HashSet::new();
        for (i, h) in held.iter().enumerate() {
            if let Err(e) = commit(&h.tmp, &h.target) {
                for later in &held[i + 1..] {
                    let _ = fs::remove_file(&later.tmp);
                }
                return Err(e);
            }
            dirs.insert(parent(&h.target).to_path_buf());
        }
        for d in &dirs {
            sync_dir(d)?;
        }
        let mut out = Vec::with_capacity(held.len());
        for h in held {
            // the lease expiry is later than the marker that made the run a candidate
            self.move_markers_later(&h.claim.run, h.known)?;
            lock(&self.run_tasks).insert(h.claim.run.id, h.claim.run.task.clone());
            out.push(h.claim);
        }
        if !out.is_empty() {
            self.changed.notify_waiters();
        }
        Ok(out)
    }
}
