//! `gc` (reachability from head, tags and cache keys; repacking) and `verify`.

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::id::{Digest, LayerId, StateId};
use crate::model::{GcReport, VerifyReport};
use crate::objects::{PackWriter, STREAM_THRESHOLD};
use crate::store::{Store, parse_digest, parse_opt_state};
use crate::tree::{self, Kind};
use sequential_support::fs::sync_dir;
use std::collections::{HashMap, HashSet};
use std::fs;

impl Store {
    fn roots(&self) -> Result<Vec<StateId>> {
        let mut roots: Vec<StateId> = self.head()?.into_iter().collect();
        for t in self.tags()? {
            roots.push(StateId(parse_digest(&t.hash, self.dir())?));
        }
        for (_, s) in self.key_records()? {
            roots.extend(s);
        }
        Ok(roots)
    }

    /// Removes states and objects unreachable from head, tags, checkpoints and cache keys, and
    /// repacks the live small objects into one pack. Takes the writer lock; readers stay safe
    /// because objects are immutable and packs are only removed after their replacement exists.
    pub fn gc(&self) -> Result<GcReport> {
        let _lock = self.writer_lock()?;
        let objects = self.objects();
        objects.reload()?;
        let mut report = GcReport::default();
        // Reachable states.
        let mut live_states: HashSet<StateId> = HashSet::new();
        let mut stack = self.roots()?;
        while let Some(s) = stack.pop() {
            if !live_states.insert(s) {
                continue;
            }
            if let Some(p) = parse_opt_state(&self.state(s)?.parent, self.dir())? {
                stack.push(p);
            }
        }
        // Live objects.
        let mut live: HashSet<Digest> = HashSet::new();
        for s in &live_states {
            let rec = self.state(*s)?;
            live.insert(parse_digest(&rec.layer, self.dir())?);
            live.insert(parse_digest(&rec.manifest, self.dir())?);
            for e in self.manifest(Some(*s))? {
                if matches!(e.kind, Kind::File | Kind::Hardlink) {
                    live.insert(e.content);
                }
            }
        }
        // Chunks of live big files are live.
        let all = objects.all();
        for (id, loc, _) in &all {
            if loc.codec == crate::objects::CODEC_CHUNKED && live.contains(id) {
                let list = objects.read_stored(*loc)?;
                let chunks = crate::chunk::decode_list(&list).ok_or_else(|| Error::Corrupt {
                    id: id.hex(),
                    location: objects.dir().to_path_buf(),
                    reason: "bad chunk list".into(),
                })?;
                live.extend(chunks.into_iter().map(|(c, _)| c));
            }
        }
        // Repack.
        let names = objects.pack_names();
        report.packs_before = names.len();
        let mut per_pack: HashMap<String, Vec<(Digest, crate::objects::Loc)>> = HashMap::new();
        for (id, loc, pack) in &all {
            per_pack.entry(pack.clone()).or_default().push((*id, *loc));
        }
        let dir = objects.dir().to_path_buf();
        let pack_size = |n: &str| {
            fs::metadata(dir.join(format!("{n}.pack")))
                .map(|m| m.len())
                .unwrap_or(0)
        };
        report.bytes_before = names.iter().map(|n| pack_size(n)).sum();
        let keep = |objs: &[(Digest, crate::objects::Loc)]| {
            objs.len() == 1 && objs[0].1.stored > STREAM_THRESHOLD && live.contains(&objs[0].0)
        };
        let rewrite: Vec<&String> = names
            .iter()
            .filter(|n| !keep(per_pack.get(*n).map(|v| v.as_slice()).unwrap_or(&[])))
            .collect();
        let needs_work = rewrite.len() > 1
            || rewrite.iter().any(|n| {
                per_pack
                    .get(*n)
                    .is_some_and(|v| v.iter().any(|(id, _)| !live.contains(id)))
            });
        let mut seen = HashSet::new();
        if needs_work {
            let writer = PackWriter::new(&dir)?;
            for n in &rewrite {
                for (id, loc) in per_pack.get(*n).map(|v| v.as_slice()).unwrap_or(&[]) {
                    if !live.contains(id) || !seen.insert(*id) {
                        continue;
                    }
                    let stored = objects.read_stored(*loc)?;
                    writer.add_stored(*id, loc.codec, loc.raw, &stored)?;
                }
            }
            writer.finish()?;
            for n in &rewrite {
                let idx = dir.join(format!("{n}.idx"));
                fs::remove_file(&idx).at(&idx)?;
                let pack = dir.join(format!("{n}.pack"));
                let _ = fs::remove_file(&pack);
            }
            sync_dir(&dir)?;
        }
        // Leftovers of killed writers (safe: we hold the writer lock).
        fsutil::remove_temps(&dir);
        for d in ["states", "keys", "refs/tags", ""] {
            fsutil::remove_temps(&self.dir().join(d));
        }
        if let Ok(rd) = fs::read_dir(&dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if let Some(stem) = name.strip_suffix(".pack")
                    && !dir.join(format!("{stem}.idx")).exists()
                {
                    let _ = fs::remove_file(e.path());
                }
            }
        }
        // Unreachable states.
        for s in self.all_state_ids()? {
            if !live_states.contains(&s) {
                let p = self.dir().join("states").join(s.hex());
                fs::remove_file(&p).at(&p)?;
                report.states_removed += 1;
            }
        }
        sync_dir(&self.dir().join("states"))?;
        objects.reload()?;
        let after = objects.all();
        report.objects_kept = after.len();
        let before_ids: HashSet<Digest> = all.iter().map(|(id, _, _)| *id).collect();
        report.objects_removed = before_ids.len().saturating_sub(after.len());
        let names_after = objects.pack_names();
        report.packs_after = names_after.len();
        report.bytes_after = names_after.iter().map(|n| pack_size(n)).sum();
        Ok(report)
    }

    /// Checks the whole store without modifying it: every pack index checksum, every object
    /// against its sha256, every state (`id = H(parent ‖ layer)`, its manifest equals its
    /// parent's manifest with its layer applied, every content object present) and every ref.
    pub fn verify(&self) -> Result<VerifyReport> {
        let objects = self.objects();
        objects.reload()?;
        let mut r = VerifyReport::default();
        let dir = objects.dir().to_path_buf();
        // Pack indexes (reload skips nothing silently: re-read each to report its errors).
        for e in fs::read_dir(&dir).at(&dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if fsutil::is_temp(&name) {
                r.warnings
                    .push(format!("leftover temp file {}", e.path().display()));
            } else if let Some(stem) = name.strip_suffix(".idx") {
                if let Err(err) = crate::objects::read_idx(&e.path()) {
                    r.errors.push(err.to_string());
                }
                if !dir.join(format!("{stem}.pack")).exists() {
                    r.errors.push(format!(
                        "pack index {} has no pack file",
                        e.path().display()
                    ));
                }
            } else if let Some(stem) = name.strip_suffix(".pack")
                && !dir.join(format!("{stem}.idx")).exists()
            {
                r.warnings.push(format!(
                    "pack without index (unfinished write) {}",
                    e.path().display()
                ));
            }
        }
        // Every object.
        let mut bad: HashSet<Digest> = HashSet::new();
        for (id, _, _) in objects.all() {
            r.objects += 1;
            if let Err(e) = objects.write_to(&id, "verify", &mut std::io::sink()) {
                r.errors.push(e.to_string());
                bad.insert(id);
            }
        }
        // Every state.
        let mut manifests: HashMap<StateId, Vec<tree::Entry>> = HashMap::new();
        let ids = self.all_state_ids()?;
        let mut pending: Vec<StateId> = ids.clone();
        // Process parents before children.
        let mut order = Vec::new();
        let mut done: HashSet<StateId> = HashSet::new();
        while let Some(s) = pending.pop() {
            if done.contains(&s) {
                continue;
            }
            match self
                .state(s)
                .and_then(|rec| parse_opt_state(&rec.parent, self.dir()))
            {
                Ok(Some(p)) if !done.contains(&p) && ids.contains(&p) => {
                    pending.push(s);
                    pending.push(p);
                    continue;
                }
                _ => {}
            }
            done.insert(s);
            order.push(s);
        }
        // States reachable from a ref must be whole; unreachable ones are garbage that a killed
        // reset or gc may have left half-deleted (gc removes them), so they only warn.
        let mut reachable: HashSet<StateId> = HashSet::new();
        let mut stack = self.roots().unwrap_or_default();
        while let Some(s) = stack.pop() {
            if reachable.insert(s)
                && let Ok(Some(p)) = self
                    .state(s)
                    .and_then(|rec| parse_opt_state(&rec.parent, self.dir()))
            {
                stack.push(p);
            }
        }
        for s in order {
            r.states += 1;
            if let Err(e) = self.verify_state(s, &mut manifests, &bad) {
                if reachable.contains(&s) {
                    r.errors.push(format!("state {}: {e}", s.hex()));
                } else {
                    r.warnings.push(format!(
                        "unreachable state {} (gc removes it): {e}",
                        s.hex()
                    ));
                }
            }
        }
        for s in &reachable {
            if !ids.contains(s) {
                r.errors
                    .push(format!("state {} is referenced but missing", s.hex()));
            }
        }
        // Refs.
        let check_ref = |what: String, s: Option<StateId>, r: &mut VerifyReport| {
            if let Some(s) = s
                && !ids.contains(&s)
            {
                r.errors
                    .push(format!("{what} points to missing state {}", s.hex()));
            }
        };
        match self.head() {
            Ok(h) => check_ref("HEAD".into(), h, &mut r),
            Err(e) => r.errors.push(e.to_string()),
        }
        for t in self.tags()? {
            check_ref(
                format!("tag {}", t.name),
                Digest::parse(&t.hash).map(StateId),
                &mut r,
            );
        }
        for (p, s) in self.key_records()? {
            match s {
                Some(s) => check_ref(format!("cache key {}", p.display()), Some(s), &mut r),
                None => r
                    .errors
                    .push(format!("unreadable cache key record {}", p.display())),
            }
        }
        for d in ["states", "keys", "refs/tags", ""] {
            if let Ok(rd) = fs::read_dir(self.dir().join(d)) {
                for e in rd.flatten() {
                    if fsutil::is_temp(&e.file_name().to_string_lossy()) {
                        r.warnings
                            .push(format!("leftover temp file {}", e.path().display()));
                    }
                }
            }
        }
        r.ok = r.errors.is_empty();
        Ok(r)
    }

    fn verify_state(
        &self,
        s: StateId,
        manifests: &mut HashMap<StateId, Vec<tree::Entry>>,
        bad: &HashSet<Digest>,
    ) -> Result<()> {
        let rec = self.state(s)?;
        let loc = self.dir().join("states").join(s.hex());
        if rec.id != s.hex() {
            return Err(Error::Corrupt {
                id: s.hex(),
                location: loc,
                reason: format!("record names id {}", rec.id),
            });
        }
        let parent = parse_opt_state(&rec.parent, &loc)?;
        let layer = LayerId(parse_digest(&rec.layer, &loc)?);
        if StateId::chain(parent, layer) != s {
            return Err(Error::Corrupt {
                id: s.hex(),
                location: loc,
                reason: "state id is not sha256(parent ‖ layer)".into(),
            });
        }
        let base = match parent {
            None => Vec::new(),
            Some(p) => match manifests.get(&p) {
                Some(m) => m.clone(),
                None => self.manifest(Some(p))?,
            },
        };
        let layer_bytes = self
            .objects()
            .read(&layer.0, &format!("state {}", s.hex()))?;
        let changes = tree::decode_changeset(&layer_bytes).ok_or_else(|| Error::Corrupt {
            id: layer.hex(),
            location: loc.clone(),
            reason: "layer is not a changeset".into(),
        })?;
        let applied = tree::apply(&base, &changes).map_err(|p| Error::Corrupt {
            id: layer.hex(),
            location: loc.clone(),
            reason: format!("layer does not apply to its parent at {}", fsutil::show(&p)),
        })?;
        let stored = self.manifest(Some(s))?;
        if applied != stored {
            return Err(Error::Corrupt {
                id: rec.manifest.clone(),
                location: loc,
                reason: "manifest differs from parent + layer".into(),
            });
        }
        for e in &stored {
            if matches!(e.kind, Kind::File | Kind::Hardlink)
                && (!self.objects().contains(&e.content) || bad.contains(&e.content))
            {
                return Err(Error::MissingObject {
                    id: e.content.hex(),
                    needed_by: format!("{} in state {}", fsutil::show(&e.path), s.hex()),
                });
            }
        }
        manifests.insert(s, stored);
        Ok(())
    }
}
