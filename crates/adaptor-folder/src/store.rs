//! The blocking implementation: every operation of the folder store as plain file I/O.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use sequential_adaptor::{
    Claim, ClaimRequest, Created, DeleteMode, Error, Fence, JournalRecord, NewRun, NewTaskVersion,
    Order, Page, PutVersion, Result, Run, RunFilter, RunId, RunPage, Signal, Takeover, TaskName,
    TaskSummary, TaskVersion, UnixMillis, VersionSel, hex, now_millis, rules,
};

use crate::fsutil::{
    clean_debris, commit, ensure_dir, io_err, lock_exclusive, lock_shared, parent, prepare,
    read_opt, remove_opt, sync_dir, write_durable,
};
use crate::ndjson::{LineIndex, lines};
use sequential_support::fs::LockFile;

mod schedule;

use schedule::{Marker, due};

/// The on-disk format this build writes and the newest it reads.
pub(crate) const FORMAT_VERSION: u32 = 1;

/// How many journal line indexes to keep before dropping idle ones.
const JOURNAL_CACHE_MAX: usize = 4096;

/// The hidden directory (inside the root) holding the adapter's own bookkeeping.
pub(crate) const META_DIR: &str = ".sequential";

#[derive(Serialize, Deserialize)]
struct FormatFile {
    version: u32,
}

/// `.sequential/keys/<sha256(key)>.json`: which run an idempotency key started.
#[derive(Serialize, Deserialize)]
struct KeyEntry {
    key: String,
    task: TaskName,
    run: RunId,
}

/// Just enough of a journal line to check it belongs at its position.
#[derive(Deserialize)]
struct LineProbe {
    run: RunId,
    seq: u64,
    /// Lines still to come in this line's batch (see `ndjson`); absent = 0.
    #[serde(default)]
    more: u64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn to_json_file<T: Serialize>(v: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(v).expect("model types serialize");
    bytes.push(b'\n');
    bytes
}

fn parse_file<T: for<'de> Deserialize<'de>>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::backend(format!("parsing {}", path.display()), e))
}

fn not_found_run(id: RunId) -> Error {
    Error::not_found(format!("run {id}"))
}

/// The folder store's state shared by all its async handles.
#[derive(Debug)]
pub(crate) struct Inner {
    root: PathBuf,
    meta: PathBuf,
    /// run → task, learnt from reads and writes (a run never changes task).
    run_tasks: Mutex<HashMap<RunId, TaskName>>,
    /// Per-run journal line index, so appends and reads never rescan the journal.
    journals: Mutex<HashMap<RunId, Arc<Mutex<LineIndex>>>>,
    /// Wakes `wait_for_change` in this process.
    pub(crate) changed: tokio::sync::Notify,
}

/// An exclusive or shared lock on a run (its journal file), plus the open journal.
struct RunLock {
    lock: LockFile,
    path: PathBuf,
}

impl RunLock {
    /// The open journal file.
    fn file(&self) -> &File {
        self.lock.file()
    }
}

impl Inner {
    /// Opens (creating if needed) the store at `root`. A newer format is refused before anything
    /// is written.
    pub(crate) fn open(root: &Path) -> Result<Inner> {
        if root.exists() && !root.is_dir() {
            return Err(Error::invalid(
                format!("folder store path {}", root.display()),
                "a directory (or a path where one can be created)",
            ));
        }
        let meta = root.join(META_DIR);
        let fmt_path = meta.join("format.json");
        Self::check_format(&fmt_path)?;
        let fresh = !fmt_path.exists();
        for sub in ["due", "keys", "locks"] {
            ensure_dir(&meta.join(sub))?;
        }
        let inner = Inner {
            root: root.to_path_buf(),
            meta,
            run_tasks: Mutex::default(),
            journals: Mutex::default(),
            changed: tokio::sync::Notify::new(),
        };
        inner.clean_all_debris()?;
        if fresh {
            // runs stored without our bookkeeping (a copied folder): schedule them, then mark
            // the folder as ours (last, so a crash in between redoes the rebuild)
            inner.rebuild_markers()?;
            write_durable(
                &fmt_path,
                &to_json_file(&FormatFile {
                    version: FORMAT_VERSION,
                }),
            )?;
        }
        Ok(inner)
    }

    /// Creates the schedule marker of every stored run that can become runnable.
    fn rebuild_markers(&self) -> Result<()> {
        let mut created = 0;
        for t in self.task_names()? {
            for id in self.run_ids(&t)? {
                let Ok(Some(run)) = self.read_run_opt(&t, id) else {
                    continue;
                };
                if let Some(d) = due(&run) {
                    let p = self.marker_path(&Marker {
                        due: d,
                        task: t.clone(),
                        run: id,
                    });
                    File::create(&p).map_err(|e| io_err("creating", &p, e))?;
                    created += 1;
                }
            }
        }
        if created > 0 {
            sync_dir(&self.due_dir())?;
            tracing::info!(root = %self.root.display(), runs = created, "scheduled runs found without bookkeeping");
        }
        Ok(())
    }

    /// Refuses a format newer than this build's; a missing file is fine (a fresh store).
    pub(crate) fn check_format(fmt_path: &Path) -> Result<()> {
        let Some(bytes) = read_opt(fmt_path)? else {
            return Ok(());
        };
        let fmt: FormatFile = serde_json::from_slice(&bytes).map_err(|e| {
            Error::invalid(
                format!("folder store format file {} ({e})", fmt_path.display()),
                format!("a JSON object like {{\"version\": {FORMAT_VERSION}}}"),
            )
        })?;
        if fmt.version > FORMAT_VERSION {
            return Err(Error::unsupported(format!(
                "the folder store {} has format version {}, but this build reads format version \
                 {FORMAT_VERSION} and older; use a newer sequential-ecosystem (nothing was changed)",
                fmt_path.display(),
                fmt.version
            )));
        }
        if fmt.version == 0 {
            return Err(Error::invalid(
                format!("format version 0 in {}", fmt_path.display()),
                format!("a version from 1 to {FORMAT_VERSION}"),
            ));
        }
        Ok(())
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn format_path(&self) -> PathBuf {
        self.meta.join("format.json")
    }

    fn clean_all_debris(&self) -> Result<()> {
        let mut removed = 0;
        for sub in ["", "due", "keys", "locks"] {
            removed += clean_debris(&self.meta.join(sub));
        }
        removed += clean_debris(&self.root);
        for task in self.task_names()? {
            removed += clean_debris(&self.versions_dir(&task));
            removed += clean_debris(&self.runs_dir(&task));
        }
        if removed > 0 {
            tracing::info!(root = %self.root.display(), removed, "removed temp files left by dead processes");
        }
        Ok(())
    }

    // ---- paths ----

    fn task_dir(&self, t: &TaskName) -> PathBuf {
        self.root.join(t.as_str())
    }
    fn versions_dir(&self, t: &TaskName) -> PathBuf {
        self.task_dir(t).join("versions")
    }
    fn version_path(&self, t: &TaskName, n: u32) -> PathBuf {
        self.versions_dir(t).join(format!("{n}.json"))
    }
    fn runs_dir(&self, t: &TaskName) -> PathBuf {
        self.task_dir(t).join("runs")
    }
    fn run_path(&self, t: &TaskName, id: RunId) -> PathBuf {
        self.runs_dir(t).join(format!("{id}.json"))
    }
    fn journal_path(&self, t: &TaskName, id: RunId) -> PathBuf {
        self.runs_dir(t).join(format!("{id}.journal.ndjson"))
    }
    fn signals_path(&self, t: &TaskName, id: RunId) -> PathBuf {
        self.runs_dir(t).join(format!("{id}.signals.ndjson"))
    }
    fn due_dir(&self) -> PathBuf {
        self.meta.join("due")
    }
    fn marker_path(&self, m: &Marker) -> PathBuf {
        self.due_dir().join(m.file_name())
    }
    fn key_path(&self, key: &str) -> PathBuf {
        let h = Sha256::digest(key.as_bytes());
        self.meta.join("keys").join(format!("{}.json", hex(&h)))
    }
    fn lock_path(&self, name: &str) -> PathBuf {
        self.meta.join("locks").join(format!("{name}.lock"))
    }
    fn task_lock_path(&self, t: &TaskName) -> PathBuf {
        self.lock_path(&format!("task-{t}"))
    }

    // ---- listing ----

    /// Task directories (valid names, not hidden).
    fn task_names(&self) -> Result<Vec<TaskName>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("listing", &self.root, e)),
        };
        let mut out = Vec::new();
        for e in entries {
            let e = e.map_err(|e| io_err("listing", &self.root, e))?;
            let Some(name) = e.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') || !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            if let Ok(t) = TaskName::new(name) {
                out.push(t);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Version numbers stored for `t`, ascending.
    fn version_numbers(&self, t: &TaskName) -> Result<Vec<u32>> {
        let dir = self.versions_dir(t);
        let mut out: Vec<u32> = list_names(&dir)?
            .iter()
            .filter_map(|n| {
                let stem = n.strip_suffix(".json")?;
                let v: u32 = stem.parse().ok()?;
                (v > 0 && v.to_string() == stem).then_some(v)
            })
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// Run ids stored for `t` (files `<uuid>.json`).
    fn run_ids(&self, t: &TaskName) -> Result<Vec<RunId>> {
        let dir = self.runs_dir(t);
        Ok(list_names(&dir)?
            .iter()
            .filter_map(|n| {
                let stem = n.strip_suffix(".json")?;
                let id: RunId = stem.parse().ok()?;
                (id.to_string() == stem).then_some(id)
            })
            .collect())
    }

    // ---- task versions ----

    fn read_version(&self, t: &TaskName, n: u32) -> Result<Option<TaskVersion>> {
        let path = self.version_path(t, n);
        match read_opt(&path)? {
            Some(b) => parse_file(&path, &b).map(Some),
            None => Ok(None),
        }
    }

    pub(crate) fn put_task_version(&self, new: NewTaskVersion) -> Result<PutVersion> {
        let _lock = lock_exclusive(&self.task_lock_path(&new.task))?;
        let hash = new.content_hash();
        let numbers = self.version_numbers(&new.task)?;
        for &n in &numbers {
            if let Some(v) = self.read_version(&new.task, n)?
                && v.hash == hash
            {
                return Ok(PutVersion {
                    version: v,
                    created: false,
                });
            }
        }
        let version = TaskVersion {
            version: numbers.last().copied().unwrap_or(0) + 1,
            hash,
            task: new.task,
            code: new.code,
            graph: new.graph,
            config: new.config,
            created_at: now_millis(),
        };
        ensure_dir(&self.versions_dir(&version.task))?;
        write_durable(
            &self.version_path(&version.task, version.version),
            &to_json_file(&version),
        )?;
        self.changed.notify_waiters();
        Ok(PutVersion {
            version,
            created: true,
        })
    }

    pub(crate) fn get_task_version(&self, t: &TaskName, sel: VersionSel) -> Result<TaskVersion> {
        let n = match sel {
            VersionSel::Exact(n) => n,
            VersionSel::Latest => match self.version_numbers(t)?.last() {
                Some(&n) => n,
                None => return Err(Error::not_found(format!("task `{t}` (no stored version)"))),
            },
        };
        self.read_version(t, n)?
            .ok_or_else(|| Error::not_found(format!("task `{t}` version {n}")))
    }

    pub(crate) fn list_tasks(&self) -> Result<Vec<TaskSummary>> {
        let mut out = Vec::new();
        for t in self.task_names()? {
            let Some(&n) = self.version_numbers(&t)?.last() else {
                continue;
            };
            if let Some(v) = self.read_version(&t, n)? {
                out.push(TaskSummary {
                    name: t,
                    latest_version: v.version,
                    latest_hash: v.hash,
                    updated_at: v.created_at,
                });
            }
        }
        Ok(out)
    }

    pub(crate) fn delete_task(&self, t: &TaskName, mode: DeleteMode) -> Result<()> {
        let _lock = lock_exclusive(&self.task_lock_path(t))?;
        let versions = self.version_numbers(t)?;
        let runs = self.run_ids(t)?;
        if versions.is_empty() && runs.is_empty() {
            return Err(Error::not_found(format!("task `{t}`")));
        }
        if mode == DeleteMode::IfIdle {
            let mut active = Vec::new();
            for &id in &runs {
                if let Some(r) = self.read_run_opt(t, id)?
                    && !r.status.is_terminal()
                {
                    active.push(r);
                }
            }
            if let Some(first) = active.first() {
                return Err(Error::conflict(format!(
                    "task `{t}` has {} active run(s) (e.g. run {} is {}); finish or cancel them, \
                     or delete with force",
                    active.len(),
                    first.id,
                    first.status
                )));
            }
        }
        let markers = self.markers_by_run()?;
        for &id in &runs {
            if let Ok(lock) = self.lock_run(t, id, true) {
                let run = self.read_run_opt(t, id)?;
                self.delete_run_files(t, id, run.as_ref(), &lock, &markers)?;
            }
        }
        for dir in [self.runs_dir(t), self.versions_dir(t)] {
            match fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &dir, e)),
            }
        }
        let task_dir = self.task_dir(t);
        // The task directory goes only when nothing else (code.js, config.json …) is in it.
        if fs::remove_dir(&task_dir).is_ok() {
            sync_dir(&self.root)?;
        } else if task_dir.exists() {
            sync_dir(&task_dir)?;
        }
        self.changed.notify_waiters();
        Ok(())
    }

    // ---- runs ----

    /// The task a run belongs to: from the cache, else by looking in each task's `runs/`.
    fn task_of(&self, id: RunId) -> Result<TaskName> {
        if let Some(t) = lock(&self.run_tasks).get(&id) {
            return Ok(t.clone());
        }
        for t in self.task_names()? {
            if self.run_path(&t, id).exists() {
                lock(&self.run_tasks).insert(id, t.clone());
                return Ok(t);
            }
        }
        Err(not_found_run(id))
    }

    fn read_run_opt(&self, t: &TaskName, id: RunId) -> Result<Option<Run>> {
        let path = self.run_path(t, id);
        match read_opt(&path)? {
            Some(b) => parse_file(&path, &b).map(Some),
            None => Ok(None),
        }
    }

    fn read_run(&self, t: &TaskName, id: RunId) -> Result<Run> {
        self.read_run_opt(t, id)?.ok_or_else(|| not_found_run(id))
    }

    /// Locks a run (an advisory lock on its journal file, which lives and dies with the run).
    fn lock_run(&self, t: &TaskName, id: RunId, exclusive: bool) -> Result<RunLock> {
        let path = self.journal_path(t, id);
        let lock = LockFile::existing(&path, exclusive)
            .map_err(|e| io_err(e.what, &e.path, e.source))?
            .ok_or_else(|| not_found_run(id))?;
        let meta = lock
            .file()
            .metadata()
            .map_err(|e| io_err("inspecting", &path, e))?;
        if meta.nlink() == 0 {
            // deleted while we waited for the lock
            return Err(not_found_run(id));
        }
        Ok(RunLock { lock, path })
    }

    /// Writes `new` over `old` (under the run's lock), keeping the schedule markers a superset
    /// of the runnable runs even across a crash: a marker moving earlier is made durable before
    /// the run; one moving later (or going away) is changed after.
    fn store_run(&self, old: Option<&Run>, new: &Run) -> Result<()> {
        let od = old.and_then(due);
        let nd = due(new);
        let marker = |d| Marker {
            due: d,
            task: new.task.clone(),
            run: new.id,
        };
        let earlier = match (od, nd) {
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(o), Some(n)) => n < o,
        };
        let target = self.run_path(&new.task, new.id);
        let bytes = to_json_file(new);
        let tmp = if earlier {
            let p = self.marker_path(&marker(nd.expect("earlier implies a due time")));
            File::create(&p).map_err(|e| io_err("creating", &p, e))?;
            // the marker must be durable before the run is; its directory fsync and the temp
            // file's fsync run side by side (the disk merges them), both before the rename
            let due_dir = self.due_dir();
            std::thread::scope(|s| {
                let marker_synced = s.spawn(|| sync_dir(&due_dir));
                let tmp = prepare(&target, &bytes);
                let marker_synced = marker_synced.join().expect("directory fsync thread");
                match (tmp, marker_synced) {
                    (Ok(tmp), Err(e)) => {
                        let _ = fs::remove_file(&tmp);
                        Err(e)
                    }
                    (tmp, _) => tmp,
                }
            })?
        } else {
            prepare(&target, &bytes)?
        };
        commit(&tmp, &target)?;
        sync_dir(parent(&target))?;
        if od != nd
            && let Some(o) = od
        {
            let from = self.marker_path(&marker(o));
            match nd {
                Some(n) if !earlier => {
                    let to = self.marker_path(&marker(n));
                    if fs::rename(&from, &to).is_err() {
                        File::create(&to).map_err(|e| io_err("creating", &to, e))?;
                    }
                }
                _ => remove_opt(&from)?,
            }
        }
        Ok(())
    }

    pub(crate) fn create_run(&self, new: NewRun) -> Result<Created> {
        let _task_lock = lock_shared(&self.task_lock_path(&new.task))?;
        if !self.version_path(&new.task, new.version).exists() {
            return Err(Error::not_found(format!(
                "task `{}` version {}",
                new.task, new.version
            )));
        }
        let key_lock = match &new.idempotency_key {
            Some(_) => Some(lock_exclusive(&self.lock_path("keys"))?),
            None => None,
        };
        if let Some(key) = &new.idempotency_key {
            let path = self.key_path(key);
            if let Some(b) = read_opt(&path)? {
                let entry: KeyEntry = parse_file(&path, &b)?;
                if entry.key == *key
                    && let Some(existing) = self.read_run_opt(&entry.task, entry.run)?
                {
                    return rules::existing_for_key(existing, &new);
                }
                // a key whose run is gone (pruned, or a crash mid-create) is free again
            }
        }
        let run = rules::new_run(new, now_millis());
        ensure_dir(&self.runs_dir(&run.task))?;
        if let Some(key) = &run.idempotency_key {
            let entry = KeyEntry {
                key: key.clone(),
                task: run.task.clone(),
                run: run.id,
            };
            write_durable(&self.key_path(key), &to_json_file(&entry))?;
        }
        let jpath = self.journal_path(&run.task, run.id);
        let journal = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&jpath)
            .map_err(|e| io_err("creating", &jpath, e))?;
        journal.lock().map_err(|e| io_err("locking", &jpath, e))?;
        // the run file's directory fsync also makes the journal's creation durable
        self.store_run(None, &run)?;
        drop(journal);
        drop(key_lock);
        lock(&self.run_tasks).insert(run.id, run.task.clone());
        self.changed.notify_waiters();
        Ok(Created::Created(run))
    }

    pub(crate) fn get_run(&self, id: RunId) -> Result<Run> {
        let t = self.task_of(id)?;
        self.read_run(&t, id)
    }

    pub(crate) fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<RunPage> {
        let tasks = match &filter.task {
            Some(t) => vec![t.clone()],
            None => self.task_names()?,
        };
        let mut ids = Vec::new();
        for t in tasks {
            for id in self.run_ids(&t)? {
                ids.push((id, t.clone()));
            }
        }
        ids.sort();
        if page.order == Order::NewestFirst {
            ids.reverse();
        }
        let after_ok = |id: RunId| match (page.after, page.order) {
            (None, _) => true,
            (Some(a), Order::OldestFirst) => id > a,
            (Some(a), Order::NewestFirst) => id < a,
        };
        let mut runs = Vec::new();
        let mut more = false;
        for (id, t) in ids.into_iter().filter(|(id, _)| after_ok(*id)) {
            let run = match self.read_run_opt(&t, id) {
                Ok(Some(r)) => r,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(run = %id, task = %t, error = %e, "skipping unreadable run file");
                    continue;
                }
            };
            if !filter.statuses.is_empty() && !filter.statuses.contains(&run.status) {
                continue;
            }
            if runs.len() == page.limit {
                more = true;
                break;
            }
            lock(&self.run_tasks).insert(id, t);
            runs.push(run);
        }
        let next = if more {
            runs.last().map(|r| r.id)
        } else {
            None
        };
        Ok(RunPage { runs, next })
    }

    pub(crate) fn update_run(&self, run: &Run) -> Result<Run> {
        let t = self.task_of(run.id)?;
        let _lock = self.lock_run(&t, run.id, true)?;
        let stored = self.read_run(&t, run.id)?;
        let new = rules::prepare_update(&stored, run, now_millis())?;
        self.store_run(Some(&stored), &new)?;
        self.changed.notify_waiters();
        Ok(new)
    }

    /// Reads a run under its lock, applies `f`, stores the result if its revision moved.
    fn modify(&self, id: RunId, f: impl FnOnce(&Run) -> Result<Run>) -> Result<Run> {
        let t = self.task_of(id)?;
        let _lock = self.lock_run(&t, id, true)?;
        let stored = self.read_run(&t, id)?;
        let new = f(&stored)?;
        if new.revision != stored.revision {
            self.store_run(Some(&stored), &new)?;
            self.changed.notify_waiters();
        }
        Ok(new)
    }

    pub(crate) fn settle_run(&self, run: &Run, token: u64) -> Result<Run> {
        let now = now_millis();
        self.modify(run.id, |stored| {
            rules::prepare_settle(stored, run, token, now)
        })
    }

    /// Claims run `id` alone (under the store-wide claim lock, like `claim`).
    pub(crate) fn claim_one(
        &self,
        id: RunId,
        req: &ClaimRequest,
        takeover: Takeover,
    ) -> Result<Option<Claim>> {
        let _claim_lock = lock_exclusive(&self.lock_path("claim"))?;
        let mut claimed = None;
        self.modify(id, |run| {
            if !rules::is_claimable_with(run, req.now, takeover) {
                return Ok(run.clone());
            }
            let claim = rules::claim_run(run.clone(), req);
            let new = claim.run.clone();
            claimed = Some(claim);
            Ok(new)
        })?;
        Ok(claimed)
    }

    pub(crate) fn renew(
        &self,
        id: RunId,
        token: u64,
        now: UnixMillis,
        lease_ms: u64,
    ) -> Result<Run> {
        self.modify(id, |stored| {
            rules::check_lease(stored, token)?;
            let mut run = stored.clone();
            if let Some(l) = &mut run.lease {
                l.expires_at = now.saturating_add(lease_ms as i64);
            }
            run.revision += 1;
            run.updated_at = now;
            Ok(run)
        })
    }

    pub(crate) fn release(&self, id: RunId, token: u64) -> Result<Run> {
        self.modify(id, |stored| {
            rules::check_lease(stored, token)?;
            let mut run = stored.clone();
            run.lease = None;
            run.revision += 1;
            run.updated_at = now_millis();
            Ok(run)
        })
    }

    // ---- journal ----

    fn journal_index(&self, id: RunId) -> Arc<Mutex<LineIndex>> {
        let mut map = lock(&self.journals);
        if map.len() >= JOURNAL_CACHE_MAX && !map.contains_key(&id) {
            // forget the indexes nobody is using; they are rebuilt from the file when needed
            map.retain(|_, v| Arc::strong_count(v) > 1);
        }
        map.entry(id).or_default().clone()
    }

    pub(crate) fn append(&self, id: RunId, records: &[JournalRecord], fence: Fence) -> Result<()> {
        let t = self.task_of(id)?;
        let rl = self.lock_run(&t, id, true)?;
        if records.is_empty() {
            return Ok(());
        }
        if let Fence::Token(_) = fence {
            rules::check_fence(&self.read_run(&t, id)?, fence)?;
        }
        let index = self.journal_index(id);
        let mut idx = lock(&index);
        let tail = idx.refresh(rl.file(), &rl.path, |i, l| check_journal_line(id, i, l))?;
        let first_new = rules::plan_append(id, idx.len(), records, |seq| {
            let bytes = idx.read_lines(rl.file(), &rl.path, seq, seq + 1)?;
            match lines(&bytes).next() {
                Some(l) => parse_line::<JournalRecord>(&rl.path, l).map(Some),
                None => Ok(None),
            }
        })?;
        if first_new == records.len() {
            return Ok(());
        }
        let end = idx.end();
        if tail.torn || tail.size != end {
            tracing::warn!(journal = %rl.path.display(), dropped_bytes = tail.size - end, "dropping a torn journal tail left by a crash");
            rl.file()
                .set_len(end)
                .map_err(|e| io_err("truncating torn tail of", &rl.path, e))?;
        }
        let mut buf = Vec::new();
        let mut lens = Vec::with_capacity(records.len() - first_new);
        let new = &records[first_new..];
        for (i, r) in new.iter().enumerate() {
            let before = buf.len();
            serde_json::to_writer(&mut buf, r).expect("journal records serialize");
            let more = new.len() - 1 - i;
            if more > 0 {
                // a record is a JSON object: mark it as part of a batch before its `}`
                buf.pop();
                buf.extend_from_slice(format!(",\"more\":{more}}}").as_bytes());
            }
            buf.push(b'\n');
            lens.push((buf.len() - before) as u64);
        }
        let written = rl
            .file()
            .write_all_at(&buf, end)
            .and_then(|()| rl.file().sync_data());
        if let Err(e) = written {
            let _ = rl.file().set_len(end);
            return Err(io_err("appending to", &rl.path, e));
        }
        idx.push_lines(lens);
        drop(idx);
        drop(rl);
        self.changed.notify_waiters();
        Ok(())
    }

    pub(crate) fn read_journal(
        &self,
        id: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<JournalRecord>> {
        let t = self.task_of(id)?;
        let rl = self.lock_run(&t, id, false)?;
        let index = self.journal_index(id);
        let mut idx = lock(&index);
        idx.refresh(rl.file(), &rl.path, |i, l| check_journal_line(id, i, l))?;
        let from = after_seq.map_or(0, |s| s.saturating_add(1));
        let to = from.saturating_add(limit as u64);
        let bytes = idx.read_lines(rl.file(), &rl.path, from, to)?;
        drop(idx);
        drop(rl);
        lines(&bytes)
            .map(|l| parse_line(&self.journal_path(&t, id), l))
            .collect()
    }

    /// The number of records in a run's journal (cheap: from the cached line index).
    pub(crate) fn journal_len(&self, id: RunId) -> Result<u64> {
        let t = self.task_of(id)?;
        let rl = self.lock_run(&t, id, false)?;
        let index = self.journal_index(id);
        let mut idx = lock(&index);
        idx.refresh(rl.file(), &rl.path, |i, l| check_journal_line(id, i, l))?;
        Ok(idx.len())
    }

    // ---- signals ----

    pub(crate) fn send_signal(&self, id: RunId, name: &str, payload: Value) -> Result<u64> {
        let t = self.task_of(id)?;
        let _lock = self.lock_run(&t, id, true)?;
        let stored = self.read_run(&t, id)?;
        let now = now_millis();
        let woken = rules::signal_target(stored.clone(), name, now)?;
        if woken.revision != stored.revision {
            self.store_run(Some(&stored), &woken)?;
        }
        let path = self.signals_path(&t, id);
        let (file, created) = match OpenOptions::new().read(true).write(true).open(&path) {
            Ok(f) => (f, false),
            Err(e) if e.kind() == ErrorKind::NotFound => (
                OpenOptions::new()
                    .read(true)
                    .write(true)
                    .create_new(true)
                    .open(&path)
                    .map_err(|e| io_err("creating", &path, e))?,
                true,
            ),
            Err(e) => return Err(io_err("opening", &path, e)),
        };
        let mut idx = LineIndex::default();
        let tail = idx.refresh(&file, &path, |i, l| check_signal_line(id, i, l))?;
        if tail.torn {
            file.set_len(idx.end())
                .map_err(|e| io_err("truncating torn tail of", &path, e))?;
        }
        let seq = idx.len();
        let signal = Signal {
            run: id,
            name: name.to_string(),
            payload,
            seq,
            at: now,
        };
        let mut buf = serde_json::to_vec(&signal).expect("signals serialize");
        buf.push(b'\n');
        if let Err(e) = file
            .write_all_at(&buf, idx.end())
            .and_then(|()| file.sync_data())
        {
            let _ = file.set_len(idx.end());
            return Err(io_err("appending to", &path, e));
        }
        if created {
            sync_dir(&self.runs_dir(&t))?;
        }
        self.changed.notify_waiters();
        Ok(seq)
    }

    pub(crate) fn read_signals(&self, id: RunId, after_seq: Option<u64>) -> Result<Vec<Signal>> {
        let t = self.task_of(id)?;
        let _lock = self.lock_run(&t, id, false)?;
        if self.read_run_opt(&t, id)?.is_none() {
            return Err(not_found_run(id));
        }
        let path = self.signals_path(&t, id);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err("opening", &path, e)),
        };
        let mut idx = LineIndex::default();
        idx.refresh(&file, &path, |i, l| check_signal_line(id, i, l))?;
        let from = after_seq.map_or(0, |s| s.saturating_add(1));
        let bytes = idx.read_lines(&file, &path, from, idx.len())?;
        lines(&bytes).map(|l| parse_line(&path, l)).collect()
    }

    // ---- deletion ----

    /// Removes a run's files (the caller holds its lock): the run file first, so the run is gone
    /// at once, then signals, schedule markers, its idempotency key, and the journal last.
    fn delete_run_files(
        &self,
        t: &TaskName,
        id: RunId,
        run: Option<&Run>,
        rl: &RunLock,
        markers: &BTreeMap<RunId, Vec<Marker>>,
    ) -> Result<()> {
        remove_opt(&self.run_path(t, id))?;
        remove_opt(&self.signals_path(t, id))?;
        if let Some(d) = run.and_then(due) {
            remove_opt(&self.marker_path(&Marker {
                due: d,
                task: t.clone(),
                run: id,
            }))?;
        }
        for m in markers.get(&id).map(Vec::as_slice).unwrap_or_default() {
            remove_opt(&self.marker_path(m))?;
        }
        if let Some(key) = run.and_then(|r| r.idempotency_key.as_deref()) {
            let _keys = lock_exclusive(&self.lock_path("keys"))?;
            let path = self.key_path(key);
            if let Some(b) = read_opt(&path)?
                && parse_file::<KeyEntry>(&path, &b).is_ok_and(|e| e.run == id)
            {
                remove_opt(&path)?;
            }
        }
        remove_opt(&rl.path)?;
        lock(&self.journals).remove(&id);
        lock(&self.run_tasks).remove(&id);
        Ok(())
    }

    /// Deletes one finished run ([`rules::check_deletable`]) under its exclusive lock: the run
    /// file goes first, so no reader sees a half-deleted run (as in `prune`).
    pub(crate) fn delete_run(&self, id: RunId) -> Result<()> {
        let t = self.task_of(id)?;
        let markers = self.markers_by_run()?;
        let rl = self.lock_run(&t, id, true)?;
        let run = self.read_run(&t, id)?;
        let parent = match run.parent {
            Some(p) => match self.get_run(p.run) {
                Ok(parent) => Some(parent),
                Err(Error::NotFound { .. }) => None,
                Err(e) => return Err(e),
            },
            None => None,
        };
        rules::check_deletable(&run, parent.as_ref())?;
        self.delete_run_files(&t, id, Some(&run), &rl, &markers)?;
        sync_dir(&self.runs_dir(&t))?;
        self.changed.notify_waiters();
        Ok(())
    }

    pub(crate) fn prune(&self, older_than: UnixMillis) -> Result<u64> {
        let markers = self.markers_by_run()?;
        let mut removed = 0;
        for t in self.task_names()? {
            let mut touched = false;
            for id in self.run_ids(&t)? {
                match self.read_run_opt(&t, id) {
                    Ok(Some(r)) if rules::is_prunable(&r, older_than) => {}
                    _ => continue,
                }
                let Ok(rl) = self.lock_run(&t, id, true) else {
                    continue;
                };
                let Some(run) = self.read_run_opt(&t, id)? else {
                    continue;
                };
                if !rules::is_prunable(&run, older_than) {
                    continue;
                }
                self.delete_run_files(&t, id, Some(&run), &rl, &markers)?;
                removed += 1;
                touched = true;
            }
            if touched {
                sync_dir(&self.runs_dir(&t))?;
            }
        }
        if removed > 0 {
            self.changed.notify_waiters();
        }
        Ok(removed)
    }
}

/// File names in `dir` (empty when it does not exist). Temp files are never data.
fn list_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("listing", dir, e)),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(|e| io_err("listing", dir, e))?;
        if let Some(n) = e.file_name().to_str()
            && !n.ends_with(".tmp")
            && !n.starts_with('.')
        {
            out.push(n.to_owned());
        }
    }
    Ok(out)
}

fn parse_line<T: for<'de> Deserialize<'de>>(path: &Path, line: &[u8]) -> Result<T> {
    serde_json::from_slice(line)
        .map_err(|e| Error::backend(format!("parsing a line of {}", path.display()), e))
}

fn check_journal_line(run: RunId, i: u64, line: &[u8]) -> std::result::Result<u64, String> {
    let p: LineProbe = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    if p.run != run || p.seq != i {
        return Err(format!(
            "record of run {} seq {} at line {} of run {run}'s journal",
            p.run,
            p.seq,
            i + 1
        ));
    }
    Ok(p.more)
}

fn check_signal_line(run: RunId, i: u64, line: &[u8]) -> std::result::Result<u64, String> {
    check_journal_line(run, i, line)
}
