//! `status`: the work dir scanned against the stat-cache index and compared with head.

use super::Store;
use crate::error::Result;
use crate::fsutil::show;
use crate::id::{Digest, StateId};
use crate::index::{self, Index, Sink};
use crate::model::StatusReport;
use crate::tree::{self, Entry};
use std::path::PathBuf;

impl Store {
    /// One stat-cache index per work dir: `index/<first 16 hex of sha256(work dir path)>`.
    pub(super) fn index_path(&self) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let h = Digest::of(self.work.as_os_str().as_bytes()).hex();
        self.dir.join("index").join(&h[..16])
    }

    /// Loads the index and the tree of `head` (`None` when the index describes head exactly:
    /// its entries are then the tree, and no manifest needs reading).
    pub(super) fn base_and_index(
        &self,
        head: Option<StateId>,
    ) -> Result<(Option<Vec<Entry>>, Index)> {
        let idx = Index::load(&self.index_path());
        let base = if idx.base == Some(head) {
            None
        } else {
            Some(self.manifest(head)?)
        };
        Ok((base, idx))
    }

    /// Scans the work dir against `idx` (lean) and compares it with the tree of `head` (`base`,
    /// or the index's own entries when `base` is `None`). The new index is `None` when the work
    /// dir is exactly the index's tree.
    pub(super) fn prescan(
        &self,
        idx: &Index,
        head: Option<StateId>,
        base: Option<&[Entry]>,
        sink: Option<Sink<'_>>,
    ) -> Result<(Option<Index>, StatusReport)> {
        let time = index::fs_now(&self.dir)?;
        let scan = index::scan_with(&self.work, idx, sink, index::ScanMode::Lean)?;
        if scan.unchanged {
            let status = match base {
                None => StatusReport {
                    clean: true,
                    ..StatusReport::default()
                },
                Some(b) => status_of(b, idx.entries.get(1..).unwrap_or(&[])),
            };
            return Ok((None, status));
        }
        let r = self.rescan_from(scan, time, idx, head, base);
        Ok((Some(r.index), r.status))
    }

    fn rescan_from(
        &self,
        scan: index::ScanResult,
        time: i64,
        idx: &Index,
        head: Option<StateId>,
        base: Option<&[Entry]>,
    ) -> Rescan {
        let status = match base {
            Some(b) => status_of(b, &scan.entries[1..]),
            None => status_of(idx.entries.get(1..).unwrap_or(&[]), &scan.entries[1..]),
        };
        Rescan {
            index: Index {
                time,
                base: status.clean.then_some(head),
                entries: scan.entries,
            },
            status,
        }
    }

    /// Uncommitted changes of the work dir vs head. Lock-free; refreshes the index when the
    /// writer lock happens to be free.
    pub fn status(&self) -> Result<StatusReport> {
        let head = self.head()?;
        let (base, idx) = self.base_and_index(head)?;
        let (fresh, status) = self.prescan(&idx, head, base.as_deref(), None)?;
        if let Some(f) = fresh
            && let Some(_lock) = self.try_lock()
        {
            let _ = f.save(&self.index_path());
        }
        Ok(status)
    }
}

/// A scan of the work dir compared with head.
struct Rescan {
    /// The fresh index.
    index: Index,
    /// Differences from head.
    status: StatusReport,
}

fn status_of<A: AsRef<Entry>, B: AsRef<Entry>>(base: &[A], cur: &[B]) -> StatusReport {
    let d = tree::diff(base, cur);
    StatusReport {
        clean: d.is_empty(),
        added: d.added.iter().map(|e| show(&e.path)).collect(),
        modified: d.modified.iter().map(|(_, e)| show(&e.path)).collect(),
        deleted: d.deleted.iter().map(|e| show(&e.path)).collect(),
    }
}
