//! `checkout`, `rebuild` and `reset`: making the work dir equal to a state.

use super::Store;
use super::refs::parse_digest;
use crate::error::{Error, IoContext, Result};
use crate::fsutil::show;
use crate::id::StateId;
use crate::index::{self, Index};
use crate::materialize::apply_to_work;
use crate::model::{CheckoutOutcome, ResetOutcome};
use crate::tree;
use sequential_support::fs::sync_dir;
use std::fs;
use std::path::Path;

/// Options of `checkout` and `restore`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckoutOptions {
    /// Discard uncommitted changes (and untracked files) instead of refusing.
    pub force: bool,
}

/// What `reset` clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetMode {
    /// Forget every state, tag, checkpoint and cache key; keep the work dir as it is.
    Soft,
    /// The same, and empty the work dir.
    Hard,
}

impl Store {
    /// Makes the work dir equal to the state `r` and moves head there, writing only the paths
    /// that differ. Refuses with [`Error::Dirty`] (listing the changes) when the work dir has
    /// uncommitted changes, unless `opts.force`.
    pub fn checkout(&self, r: &str, opts: CheckoutOptions) -> Result<CheckoutOutcome> {
        let _lock = self.lock()?;
        let target_id = self.resolve_opt(r)?;
        self.checkout_locked(target_id, opts)
    }

    pub(super) fn checkout_locked(
        &self,
        target_id: Option<StateId>,
        opts: CheckoutOptions,
    ) -> Result<CheckoutOutcome> {
        let head = self.head()?;
        let (base, idx) = self.base_and_index(head)?;
        let (fresh, st) = self.prescan(&idx, head, base.as_deref(), None)?;
        if !opts.force && !st.clean {
            let mut changes = Vec::new();
            changes.extend(st.added.iter().map(|p| format!("A {p}")));
            changes.extend(st.modified.iter().map(|p| format!("M {p}")));
            changes.extend(st.deleted.iter().map(|p| format!("D {p}")));
            return Err(Error::Dirty {
                work: self.work.clone(),
                changes,
            });
        }
        let current = fresh.as_ref().unwrap_or(&idx);
        let target = match (target_id == head, base) {
            (true, Some(b)) => b,
            (true, None) => idx.manifest(),
            (false, _) => self.manifest(target_id)?,
        };
        let (mut idx, stats) = apply_to_work(
            &self.work,
            &self.dir,
            &self.objects,
            current,
            &target,
            self.progress.as_deref(),
        )?;
        self.set_head(target_id)?;
        idx.base = Some(target_id);
        idx.save(&self.index_path())?;
        Ok(CheckoutOutcome {
            hash: target_id.map(|s| s.hex()),
            short: target_id.map(|s| s.short()),
            written: stats.written,
            removed: stats.removed,
        })
    }

    /// Rematerializes the work dir from the layers of head (recreating it when missing): the
    /// tree is computed by applying each layer in order, then every path is written once.
    pub fn rebuild(&self) -> Result<CheckoutOutcome> {
        let _lock = self.lock()?;
        let head = self.head()?;
        let mut chain = Vec::new();
        let mut s = head;
        while let Some(id) = s {
            chain.push(id);
            s = self.parent_of(id)?;
        }
        let mut tree_now = tree::Applier::default();
        for id in chain.iter().rev() {
            let rec = self.state(*id)?;
            let layer = parse_digest(&rec.layer, &self.state_path(*id))?;
            let changes = self.layer_entries(&layer, *id)?;
            tree_now.apply(&changes).map_err(|p| Error::Corrupt {
                id: layer.hex(),
                location: self.objects.dir().to_path_buf(),
                reason: format!("layer does not apply at {}", show(&p)),
            })?;
        }
        let tree_now = tree_now.into_tree();
        if self.work.exists() {
            clear_dir(&self.work)?;
        } else {
            fs::create_dir_all(&self.work).at(&self.work)?;
        }
        let empty = index::scan(&self.work, &Index::default(), None)?;
        let (mut idx, stats) = apply_to_work(
            &self.work,
            &self.dir,
            &self.objects,
            &Index {
                time: i64::MIN,
                base: None,
                entries: empty.entries,
            },
            &tree_now,
            self.progress.as_deref(),
        )?;
        idx.base = Some(head);
        idx.save(&self.index_path())?;
        Ok(CheckoutOutcome {
            hash: head.map(|s| s.hex()),
            short: head.map(|s| s.short()),
            written: stats.written,
            removed: 0,
        })
    }

    /// Forgets all states, tags, checkpoints, cache keys and objects; with
    /// [`ResetMode::Hard`] also empties the work dir.
    pub fn reset(&self, mode: ResetMode) -> Result<ResetOutcome> {
        let _lock = self.lock()?;
        let states = self.state_ids()?.len();
        self.set_head(None)?;
        for sub in ["refs/tags", "keys", "states", "objects"] {
            let p = self.dir.join(sub);
            clear_dir(&p)?;
        }
        sync_dir(&self.dir)?;
        let _ = fs::remove_file(self.index_path());
        self.objects.reload()?;
        if mode == ResetMode::Hard {
            clear_dir(&self.work)?;
        }
        Ok(ResetOutcome {
            states_removed: states,
            work_cleared: mode == ResetMode::Hard,
        })
    }
}

/// Removes everything inside `dir` (not `dir` itself).
fn clear_dir(dir: &Path) -> Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).at(dir),
    };
    for e in rd {
        let e = e.at(dir)?;
        let p = e.path();
        if e.file_type().at(&p)?.is_dir() {
            fs::remove_dir_all(&p).at(&p)?;
        } else {
            fs::remove_file(&p).at(&p)?;
        }
    }
    Ok(())
}
