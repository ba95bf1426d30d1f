//! Read-only views of any state: `history`, `diff`, `inspect`, `ls` and `cat`.

use super::Store;
use super::refs::parse_opt_state;
use crate::error::{Error, Result};
use crate::fsutil::show;
use crate::id::StateId;
use crate::model::{DiffReport, HistoryEntry, InspectReport, LsEntry, rfc3339};
use crate::tree::{self, Kind};

impl Store {
    /// Layers from head to the root.
    pub fn history(&self) -> Result<Vec<HistoryEntry>> {
        let mut out = Vec::new();
        let mut s = self.head()?;
        while let Some(id) = s {
            let r = self.state(id)?;
            let parent = parse_opt_state(&r.parent, &self.state_path(id))?;
            out.push(HistoryEntry {
                hash: id.hex(),
                short: id.short(),
                instruction: r.instruction,
                parent: parent.map(|p| p.hex()),
                parent_short: parent.map(|p| p.short()),
                time: rfc3339(r.time_ms),
            });
            s = parent;
        }
        Ok(out)
    }

    /// Paths that differ between the states `a` and `b` (default `HEAD`), from manifests only.
    pub fn diff(&self, a: &str, b: Option<&str>) -> Result<DiffReport> {
        let (sa, sb) = (self.resolve_opt(a)?, self.resolve_opt(b.unwrap_or("HEAD"))?);
        // Both manifests load (read, decompress, verify) at the same time; entries are compared
        // in place, without decoding them into owned trees.
        let (ba, bb) = std::thread::scope(|s| {
            let other = s.spawn(|| self.manifest_bytes(sb));
            let ba = self.manifest_bytes(sa);
            (ba, other.join().expect("manifest thread"))
        });
        let (ba, bb) = (ba?, bb?);
        let bad = |s: Option<StateId>| Error::Corrupt {
            id: s.map(|s| s.hex()).unwrap_or_default(),
            location: self.objects.dir().to_path_buf(),
            reason: "not a manifest".into(),
        };
        let ta = tree::manifest_refs(&ba).ok_or_else(|| bad(sa))?;
        let tb = tree::manifest_refs(&bb).ok_or_else(|| bad(sb))?;
        let (added, modified, deleted) = tree::diff_refs(&ta, &tb);
        let show_all = |v: Vec<&[u8]>| v.into_iter().map(show).collect();
        Ok(DiffReport {
            added: show_all(added),
            modified: show_all(modified),
            deleted: show_all(deleted),
        })
    }

    /// Details of a state and its layer.
    pub fn inspect(&self, r: &str) -> Result<InspectReport> {
        let s = self.resolve(r)?;
        let rec = self.state(s)?;
        Ok(InspectReport {
            hash: s.hex(),
            short: s.short(),
            instruction: rec.instruction,
            parent: rec.parent,
            time: rfc3339(rec.time_ms),
            size: rec.size,
            files: rec.files,
            compressed_size: rec.compressed_size,
            layer: rec.layer,
        })
    }

    /// The direct children of directory `path` (`""` or `/` = root) in state `r`.
    pub fn ls(&self, r: &str, path: &str) -> Result<Vec<LsEntry>> {
        let t = self.manifest(self.resolve_opt(r)?)?;
        let dir = path.trim_matches('/').as_bytes();
        if !dir.is_empty() && !t.iter().any(|e| e.path == dir && e.kind == Kind::Dir) {
            return Err(Error::Invalid {
                what: "path",
                input: path.into(),
                expected: format!("a directory of state {r}"),
            });
        }
        Ok(t.iter()
            .filter(|e| tree::parent_of(&e.path) == dir)
            .map(|e| LsEntry {
                name: show(e.name()),
                kind: e.kind.name().into(),
                mode: e.mode,
                size: e.size,
                target: (!e.target.is_empty()).then(|| show(&e.target)),
                content: matches!(e.kind, Kind::File | Kind::Hardlink).then(|| e.content.hex()),
            })
            .collect())
    }

    /// The content of file `path` in state `r`, read from the object store (verified).
    pub fn cat(&self, r: &str, path: &str) -> Result<Vec<u8>> {
        let t = self.manifest(self.resolve_opt(r)?)?;
        let p = path.trim_matches('/').as_bytes();
        match t.iter().find(|e| e.path == p) {
            Some(e) if matches!(e.kind, Kind::File | Kind::Hardlink) => {
                self.objects.read(&e.content, &format!("{path} in {r}"))
            }
            Some(e) => Err(Error::Invalid {
                what: "path",
                input: path.into(),
                expected: format!("a regular file (it is a {})", e.kind.name()),
            }),
            None => Err(Error::Invalid {
                what: "path",
                input: path.into(),
                expected: format!("a file of state {r}"),
            }),
        }
    }
}
