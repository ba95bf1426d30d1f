//! `Store`: opening, refs, run/exec/batch, status, checkout and the read-only views.

use crate::error::{Error, IoContext, Result};
use crate::fsutil::{self, read_opt, show, write_atomic};
use crate::id::{CacheKey, Digest, LayerId, StateId};
use crate::index::{self, Index, Sink};
use crate::materialize::apply_to_work;
use crate::model::*;
use crate::objects::{ObjectStore, PackWriter};
use crate::progress::Progress;
use crate::tree::{self, Entry, Kind};
use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The on-disk format this build writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_FILE: &str = "FORMAT";
const FORMAT_PREFIX: &str = "sequential-layer-store format ";
/// Names inside the store directory that belong to the store.
const RESERVED: &[&str] = &[
    FORMAT_FILE,
    "lock",
    "objects",
    "states",
    "keys",
    "refs",
    "index",
    "HEAD",
];

/// How the command's standard streams are wired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Inherit the caller's stdin/stdout/stderr (the CLI).
    #[default]
    Inherit,
    /// Capture stdout and stderr into the outcome; stdin is empty.
    Capture,
    /// Discard both; stdin is empty.
    Null,
}

/// Options of `run`, `exec` and `batch`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Extra environment variables for the command; they are part of the cache key.
    pub env: Vec<(String, String)>,
    /// Capture a layer even when the command fails (its exit code is still reported as an error).
    pub capture_failed: bool,
    /// Where the command's output goes.
    pub output: Output,
}

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

/// A layer store bound to one work dir.
pub struct Store {
    dir: PathBuf,
    work: PathBuf,
    objects: ObjectStore,
    progress: Option<std::sync::Arc<dyn Progress>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.dir)
            .field("work", &self.work)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

/// Holds the writer lock (`<dir>/lock`, `flock`) until dropped.
#[derive(Debug)]
struct WriterLock {
    _file: File,
}

fn canonical_or_joined(p: &Path) -> Result<PathBuf> {
    match p.canonicalize() {
        Ok(c) => Ok(c),
        Err(_) => {
            let abs = if p.is_absolute() {
                p.to_path_buf()
            } else {
                std::env::current_dir().at(p)?.join(p)
            };
            match (abs.parent(), abs.file_name()) {
                (Some(parent), Some(name)) => Ok(canonical_or_joined(parent)?.join(name)),
                _ => Ok(abs),
            }
        }
    }
}

impl Store {
    /// Opens the store at `dir` (created when missing or empty) for the work dir `work`
    /// (created when missing).
    ///
    /// Errors: a store of a newer format ([`Error::UnsupportedFormat`], nothing is touched); a
    /// non-empty directory that is not a store; a work dir equal to the store dir, containing it,
    /// or inside it other than as a direct child with a non-reserved name (the default
    /// `<dir>/work` is fine).
    pub fn open(dir: impl AsRef<Path>, work: impl AsRef<Path>) -> Result<Store> {
        let dir = canonical_or_joined(dir.as_ref())?;
        let work = canonical_or_joined(work.as_ref())?;
        let invalid = |expected: &str| Error::Invalid {
            what: "work dir",
            input: work.display().to_string(),
            expected: expected.to_string(),
        };
        if work == dir {
            return Err(invalid("a directory other than the store dir"));
        }
        if dir.starts_with(&work) {
            return Err(invalid(&format!(
                "a directory that does not contain the store dir {}",
                dir.display()
            )));
        }
        if work.starts_with(&dir) {
            let rel = work.strip_prefix(&dir).expect("prefix");
            let direct = rel.components().count() == 1;
            let name = rel.to_string_lossy();
            if !direct || RESERVED.contains(&name.as_ref()) || name.starts_with('.') {
                return Err(invalid(&format!(
                    "a directory outside the store dir {}, or a direct child of it not named {}",
                    dir.display(),
                    RESERVED.join(", ")
                )));
            }
        }
        let format_path = dir.join(FORMAT_FILE);
        match read_opt(&format_path)? {
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let n: u32 = text
                    .trim()
                    .strip_prefix(FORMAT_PREFIX)
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| Error::NotAStore {
                        path: dir.clone(),
                        reason: format!(
                            "{} does not name a format: {:?}",
                            format_path.display(),
                            text.trim()
                        ),
                    })?;
                if n > FORMAT_VERSION {
                    return Err(Error::UnsupportedFormat {
                        path: dir.clone(),
                        found: n,
                        supported: FORMAT_VERSION,
                    });
                }
            }
            None => {
                if dir.exists() {
                    let work_name = work
                        .strip_prefix(&dir)
                        .ok()
                        .map(|r| r.as_os_str().to_owned());
                    let foreign: Vec<String> = fs::read_dir(&dir)
                        .at(&dir)?
                        .filter_map(|e| e.ok())
                        .map(|e| e.file_name())
                        .filter(|n| Some(n) != work_name.as_ref() && n != "lock")
                        .map(|n| n.to_string_lossy().into_owned())
                        .collect();
                    if !foreign.is_empty() {
                        return Err(Error::NotAStore {
                            path: dir.clone(),
                            reason: format!(
                                "it is not empty and has no {FORMAT_FILE} file (found {})",
                                foreign.join(", ")
                            ),
                        });
                    }
                }
                fs::create_dir_all(&dir).at(&dir)?;
                for sub in ["objects", "states", "keys", "refs/tags", "index"] {
                    let p = dir.join(sub);
                    fs::create_dir_all(&p).at(&p)?;
                }
                write_atomic(
                    &format_path,
                    format!("{FORMAT_PREFIX}{FORMAT_VERSION}\n").as_bytes(),
                )?;
            }
        }
        if !work.exists() {
            fs::create_dir_all(&work).at(&work)?;
        }
        let objects = ObjectStore::open(dir.join("objects"))?;
        Ok(Store {
            dir,
            work,
            objects,
            progress: None,
        })
    }

    /// Opens the store named by the environment, as the CLI and the engine's `machine` tool do:
    /// `SEQUENTIAL_MACHINE_DIR` (default `.sequential-machine`) and `SEQUENTIAL_MACHINE_WORK`
    /// (default `<dir>/work`).
    pub fn from_env() -> Result<Store> {
        let dir = std::env::var_os("SEQUENTIAL_MACHINE_DIR")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".sequential-machine"));
        let work = std::env::var_os("SEQUENTIAL_MACHINE_WORK")
            .filter(|w| !w.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("work"));
        Store::open(dir, work)
    }

    /// Reports files captured and written to `progress` (for a progress bar).
    pub fn with_progress(mut self, progress: std::sync::Arc<dyn Progress>) -> Store {
        self.progress = Some(progress);
        self
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The work dir.
    pub fn work(&self) -> &Path {
        &self.work
    }

    fn lock(&self) -> Result<WriterLock> {
        let p = self.dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .at(&p)?;
        f.lock().at(&p)?;
        Ok(WriterLock { _file: f })
    }

    fn try_lock(&self) -> Option<WriterLock> {
        let p = self.dir.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .ok()?;
        f.try_lock().ok()?;
        Some(WriterLock { _file: f })
    }

    // ---- refs -------------------------------------------------------------------------------

    /// The current state id (`None` for an empty store or after `reset`).
    pub fn head(&self) -> Result<Option<StateId>> {
        let p = self.dir.join("HEAD");
        match read_opt(&p)? {
            None => Ok(None),
            Some(b) => {
                let t = String::from_utf8_lossy(&b);
                let t = t.trim();
                if t.is_empty() {
                    return Ok(None);
                }
                Digest::parse(t)
                    .map(|d| Some(StateId(d)))
                    .ok_or_else(|| Error::Corrupt {
                        id: "HEAD".into(),
                        location: p.clone(),
                        reason: format!("not a state id: {t:?}"),
                    })
            }
        }
    }

    fn set_head(&self, s: Option<StateId>) -> Result<()> {
        let text = s.map(|s| format!("{}\n", s.hex())).unwrap_or_default();
        write_atomic(&self.dir.join("HEAD"), text.as_bytes())
    }

    fn state_path(&self, s: StateId) -> PathBuf {
        self.dir.join("states").join(s.hex())
    }

    pub(crate) fn state(&self, s: StateId) -> Result<StateRecord> {
        let p = self.state_path(s);
        let b = read_opt(&p)?.ok_or_else(|| Error::MissingObject {
            id: s.hex(),
            needed_by: "a ref or a child state".into(),
        })?;
        serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
            id: s.hex(),
            location: p.clone(),
            reason: format!("bad state record: {e}"),
        })
    }

    fn state_ids(&self) -> Result<Vec<StateId>> {
        let d = self.dir.join("states");
        let mut v = Vec::new();
        for e in fs::read_dir(&d).at(&d)? {
            let e = e.at(&d)?;
            if let Some(id) = Digest::parse(&e.file_name().to_string_lossy()) {
                v.push(StateId(id));
            }
        }
        v.sort();
        Ok(v)
    }

    fn parent_of(&self, s: StateId) -> Result<Option<StateId>> {
        let r = self.state(s)?;
        parse_opt_state(&r.parent, &self.state_path(s))
    }

    fn tag_path(&self, name: &str) -> PathBuf {
        self.dir.join("refs/tags").join(name)
    }

    fn read_tag(&self, name: &str) -> Result<Option<StateId>> {
        if validate_tag(name).is_err() {
            return Ok(None);
        }
        let p = self.tag_path(name);
        match read_opt(&p)? {
            None => Ok(None),
            Some(b) => {
                let t = String::from_utf8_lossy(&b);
                Digest::parse(t.trim())
                    .map(|d| Some(StateId(d)))
                    .ok_or_else(|| Error::Corrupt {
                        id: format!("tag {name}"),
                        location: p.clone(),
                        reason: "not a state id".into(),
                    })
            }
        }
    }

    /// Resolves a ref (`HEAD`, `HEAD~n`, tag, full id, unique prefix of ≥ 7 hex chars);
    /// `Ok(None)` is the empty root (e.g. `HEAD` of an empty store).
    pub fn resolve_opt(&self, r: &str) -> Result<Option<StateId>> {
        if r == "HEAD" || r == "@" {
            return self.head();
        }
        if let Some(n) = r.strip_prefix("HEAD~") {
            let n: usize = n.parse().map_err(|_| Error::Invalid {
                what: "ref",
                input: r.into(),
                expected: "HEAD~<number>".into(),
            })?;
            let mut s = self.head()?;
            for _ in 0..n {
                match s {
                    Some(id) => s = self.parent_of(id)?,
                    None => {
                        return Err(Error::UnknownRef {
                            input: r.into(),
                            candidates: vec![format!("history has fewer than {n} states")],
                        });
                    }
                }
            }
            return Ok(s);
        }
        if let Some(s) = self.read_tag(r)? {
            return Ok(Some(s));
        }
        if r.len() >= 7 && r.len() <= 64 && r.bytes().all(|c| c.is_ascii_hexdigit()) {
            let lower = r.to_ascii_lowercase();
            let matches: Vec<StateId> = self
                .state_ids()?
                .into_iter()
                .filter(|s| s.hex().starts_with(&lower))
                .collect();
            match matches.len() {
                1 => return Ok(Some(matches[0])),
                0 => {}
                _ => {
                    return Err(Error::AmbiguousRef {
                        input: r.into(),
                        candidates: matches.iter().map(|s| s.hex()).collect(),
                    });
                }
            }
        }
        Err(Error::UnknownRef {
            input: r.into(),
            candidates: self.tags()?.into_iter().map(|t| t.name).collect(),
        })
    }

    /// Resolves a ref that must name a state (not the empty root).
    pub fn resolve(&self, r: &str) -> Result<StateId> {
        self.resolve_opt(r)?.ok_or_else(|| Error::UnknownRef {
            input: r.into(),
            candidates: vec!["(the store is empty: HEAD names no state)".into()],
        })
    }

    /// The full tree of a state (`None` = empty).
    pub fn manifest(&self, s: Option<StateId>) -> Result<Vec<Entry>> {
        let bytes = self.manifest_bytes(s)?;
        tree::decode_manifest(&bytes).ok_or_else(|| Error::Corrupt {
            id: s.map(|s| s.hex()).unwrap_or_default(),
            location: self.objects.dir().to_path_buf(),
            reason: "not a manifest".into(),
        })
    }

    /// The encoded manifest of a state, verified against its id.
    fn manifest_bytes(&self, s: Option<StateId>) -> Result<Vec<u8>> {
        let Some(s) = s else {
            return Ok(tree::encode_manifest(&[]));
        };
        let r = self.state(s)?;
        let id = parse_digest(&r.manifest, &self.state_path(s))?;
        self.objects.read(&id, &format!("state {}", s.hex()))
    }

    fn layer_entries(&self, layer: &Digest, s: StateId) -> Result<Vec<Entry>> {
        let bytes = self.objects.read(layer, &format!("state {}", s.hex()))?;
        tree::decode_changeset(&bytes).ok_or_else(|| Error::Corrupt {
            id: layer.hex(),
            location: self.objects.dir().to_path_buf(),
            reason: "not a changeset".into(),
        })
    }

    // ---- status -----------------------------------------------------------------------------

    /// One stat-cache index per work dir: `index/<first 16 hex of sha256(work dir path)>`.
    fn index_path(&self) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let h = Digest::of(self.work.as_os_str().as_bytes()).hex();
        self.dir.join("index").join(&h[..16])
    }

    /// Loads the index and the tree of `head` (`None` when the index describes head exactly:
    /// its entries are then the tree, and no manifest needs reading).
    fn base_and_index(&self, head: Option<StateId>) -> Result<(Option<Vec<Entry>>, Index)> {
        let idx = Index::load(&self.index_path());
        let base = if idx.base == Some(head) {
            None
        } else {
            Some(self.manifest(head)?)
        };
        Ok((base, idx))
    }

    /// Scans the work dir against `idx` and compares it with the tree of `head` (`base`, or
    /// the index's own entries when `base` is `None`).
    /// Scans the work dir against `idx` (lean) and compares it with the tree of `head` (`base`,
    /// or the index's own entries when `base` is `None`). The new index is `None` when the work
    /// dir is exactly the index's tree.
    fn prescan(
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

    // ---- run --------------------------------------------------------------------------------

    fn command(&self, instruction: &str, opts: &RunOptions) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(instruction).current_dir(&self.work);
        die_with_parent(&mut c);
        for (k, v) in &opts.env {
            c.env(k, v);
        }
        match opts.output {
            Output::Inherit => {}
            Output::Capture => {
                c.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
            Output::Null => {
                c.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
            }
        }
        c
    }

    fn execute(&self, instruction: &str, opts: &RunOptions) -> Result<ExecOutcome> {
        if !self.work.is_dir() {
            return Err(Error::WorkDirMissing {
                path: self.work.clone(),
            });
        }
        use std::os::unix::process::ExitStatusExt;
        let code_of = |st: std::process::ExitStatus| {
            st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
        };
        let mut cmd = self.command(instruction, opts);
        if opts.output != Output::Capture {
            // `status` keeps the wiring chosen in `command` (inherited or null streams).
            let st = cmd.status().at(Path::new("sh"))?;
            return Ok(ExecOutcome {
                code: code_of(st),
                stdout: None,
                stderr: None,
            });
        }
        let out = cmd.output().at(Path::new("sh"))?;
        Ok(ExecOutcome {
            code: code_of(out.status),
            stdout: Some(String::from_utf8_lossy(&out.stdout).into_owned()),
            stderr: Some(String::from_utf8_lossy(&out.stderr).into_owned()),
        })
    }

    /// Runs `instruction` with `sh -c` in the work dir without capturing anything.
    pub fn exec(&self, instruction: &str, opts: &RunOptions) -> Result<ExecOutcome> {
        self.execute(instruction, opts)
    }

    fn key_path(&self, k: CacheKey) -> PathBuf {
        self.dir.join("keys").join(k.hex())
    }

    fn read_key(&self, k: CacheKey) -> Result<Option<(LayerId, StateId)>> {
        let p = self.key_path(k);
        let Some(b) = read_opt(&p)? else {
            return Ok(None);
        };
        let r: KeyRecord = serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
            id: k.hex(),
            location: p.clone(),
            reason: format!("bad key record: {e}"),
        })?;
        let layer = parse_digest(&r.layer, &p)?;
        let state = parse_digest(&r.state, &p)?;
        if !self.state_path(StateId(state)).exists() {
            return Ok(None);
        }
        Ok(Some((LayerId(layer), StateId(state))))
    }

    /// Runs `instruction` with `sh -c` in the work dir and captures its changes as a layer on top
    /// of head, or — when the same instruction already ran on the same state with the same
    /// environment and the work dir is clean — moves head to the cached state and makes the work
    /// dir equal to it without running anything. A failing command creates no layer and returns
    /// [`Error::CommandFailed`] with its exit code. Uncommitted changes present before the run
    /// are captured into the layer too, and such a run is not recorded in the cache.
    pub fn run(&self, instruction: &str, opts: &RunOptions) -> Result<RunOutcome> {
        let seen = self.head()?;
        let _lock = self.lock()?;
        let head = self.head()?;
        if head != seen
            && let Some((_, state)) =
                self.read_key(CacheKey::compute(instruction, seen, &opts.env))?
            && Some(state) == head
        {
            // A concurrent twin ran the same instruction on the same state while we waited.
            return Ok(outcome(state, true, instruction, seen, None));
        }
        let key = CacheKey::compute(instruction, head, &opts.env);
        let (base, idx) = self.base_and_index(head)?;
        // Contents found before the command (uncommitted changes) go to the same pack.
        let pack = PackWriter::new(self.objects.dir())?;
        let sink = Sink {
            objects: &self.objects,
            pack: &pack,
            progress: self.progress.as_deref(),
        };
        let (fresh, before) = self.prescan(&idx, head, base.as_deref(), Some(sink))?;
        let dirty = !before.clean;
        let current = fresh.as_ref().unwrap_or(&idx);
        if !dirty && let Some((_, state)) = self.read_key(key)? {
            let target = self.manifest(Some(state))?;
            let (mut new_idx, _) = apply_to_work(
                &self.work,
                &self.dir,
                &self.objects,
                current,
                &target,
                self.progress.as_deref(),
            )?;
            self.set_head(Some(state))?;
            new_idx.base = Some(Some(state));
            new_idx.save(&self.index_path())?;
            tracing::debug!(state = %state, "cache hit");
            return Ok(outcome(state, true, instruction, head, None));
        }
        if let Some(f) = &fresh {
            f.save(&self.index_path())?;
        }
        let ran = self.execute(instruction, opts)?;
        if ran.code != 0 && !opts.capture_failed {
            return Err(Error::CommandFailed {
                instruction: instruction.into(),
                code: ran.code,
            });
        }
        let base = match base {
            Some(b) => b,
            None => idx.manifest(),
        };
        let key = (!dirty && ran.code == 0).then_some(key);
        let state = self.capture(head, &base, instruction, key, pack, current)?;
        if ran.code != 0 {
            return Err(Error::CommandFailed {
                instruction: instruction.into(),
                code: ran.code,
            });
        }
        Ok(outcome(state, false, instruction, head, Some(ran)))
    }

    /// Captures the work dir as a layer on `head` and moves head; records `key` when given.
    fn capture(
        &self,
        head: Option<StateId>,
        base: &[Entry],
        instruction: &str,
        key: Option<CacheKey>,
        pack: PackWriter,
        before: &Index,
    ) -> Result<StateId> {
        let time = index::fs_now(&self.dir)?;
        let scan = index::scan(
            &self.work,
            before,
            Some(Sink {
                objects: &self.objects,
                pack: &pack,
                progress: self.progress.as_deref(),
            }),
        )?;
        let tree_now: Vec<Entry> = scan.entries[1..].iter().map(|e| e.entry.clone()).collect();
        let changes = tree::changeset(base, &tree_now);
        let layer_bytes = tree::encode_changeset(&changes);
        let layer = LayerId(Digest::of(&layer_bytes));
        let manifest_bytes = tree::encode_manifest(&tree_now);
        let manifest = Digest::of(&manifest_bytes);
        pack.add(layer.0, &layer_bytes)?;
        // What this layer cost: every object stored by this run (contents, chunks, changeset).
        let compressed = pack.stored_bytes();
        pack.add(manifest, &manifest_bytes)?;
        pack.finish()?;
        self.objects.refresh()?;
        let state = StateId::chain(head, layer);
        if !self.state_path(state).exists() {
            let size = changes
                .iter()
                .filter(|e| e.kind == Kind::File)
                .map(|e| e.size)
                .sum();
            let rec = StateRecord {
                version: 1,
                id: state.hex(),
                parent: head.map(|h| h.hex()),
                layer: layer.hex(),
                manifest: manifest.hex(),
                instruction: instruction.into(),
                time_ms: now_ms(),
                size,
                files: changes.len() as u64,
                compressed_size: compressed,
            };
            write_atomic(
                &self.state_path(state),
                &serde_json::to_vec_pretty(&rec).expect("serializable"),
            )?;
        }
        if let Some(k) = key {
            let rec = KeyRecord {
                version: 1,
                layer: layer.hex(),
                state: state.hex(),
            };
            write_atomic(
                &self.key_path(k),
                &serde_json::to_vec(&rec).expect("serializable"),
            )?;
        }
        self.set_head(Some(state))?;
        Index {
            time,
            base: Some(Some(state)),
            entries: scan.entries,
        }
        .save(&self.index_path())?;
        Ok(state)
    }

    /// Runs each instruction in order; stops at the first failure (reported in `failed`).
    pub fn batch<S: AsRef<str>>(
        &self,
        instructions: &[S],
        opts: &RunOptions,
    ) -> Result<BatchOutcome> {
        let mut results = Vec::new();
        for (index, i) in instructions.iter().enumerate() {
            match self.run(i.as_ref(), opts) {
                Ok(r) => results.push(r),
                Err(Error::CommandFailed { instruction, code }) => {
                    return Ok(BatchOutcome {
                        results,
                        failed: Some(BatchFailure {
                            index,
                            instruction,
                            code,
                        }),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(BatchOutcome {
            results,
            failed: None,
        })
    }

    // ---- checkout ---------------------------------------------------------------------------

    /// Makes the work dir equal to the state `r` and moves head there, writing only the paths
    /// that differ. Refuses with [`Error::Dirty`] (listing the changes) when the work dir has
    /// uncommitted changes, unless `opts.force`.
    pub fn checkout(&self, r: &str, opts: CheckoutOptions) -> Result<CheckoutOutcome> {
        let _lock = self.lock()?;
        let target_id = self.resolve_opt(r)?;
        self.checkout_locked(target_id, opts)
    }

    fn checkout_locked(
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
        fsutil::sync_dir(&self.dir)?;
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

    // ---- tags -------------------------------------------------------------------------------

    /// Names the state `r` (default `HEAD`).
    pub fn tag(&self, name: &str, r: Option<&str>) -> Result<TagInfo> {
        validate_tag(name)?;
        let _lock = self.lock()?;
        let s = self.resolve(r.unwrap_or("HEAD"))?;
        let p = self.tag_path(name);
        if let Some(parent) = p.parent() {
            fs::create_dir_all(parent).at(parent)?;
        }
        write_atomic(&p, format!("{}\n", s.hex()).as_bytes())?;
        Ok(TagInfo {
            name: name.into(),
            hash: s.hex(),
            short: s.short(),
        })
    }

    /// All tags (checkpoints included, as `checkpoint/<name>`), sorted by name.
    pub fn tags(&self) -> Result<Vec<TagInfo>> {
        let root = self.dir.join("refs/tags");
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(d) = stack.pop() {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(&d),
            };
            for e in rd {
                let e = e.at(&d)?;
                let p = e.path();
                if e.file_name().to_string_lossy().starts_with('.') {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let name = p
                        .strip_prefix(&root)
                        .expect("under root")
                        .to_string_lossy()
                        .into_owned();
                    if let Some(s) = self.read_tag(&name)? {
                        out.push(TagInfo {
                            name,
                            hash: s.hex(),
                            short: s.short(),
                        });
                    }
                }
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Removes a tag; an unknown tag is an error.
    pub fn untag(&self, name: &str) -> Result<()> {
        validate_tag(name)?;
        let _lock = self.lock()?;
        let p = self.tag_path(name);
        match fs::remove_file(&p) {
            Ok(()) => fsutil::sync_dir(p.parent().expect("tags dir")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::UnknownRef {
                input: name.into(),
                candidates: self.tags()?.into_iter().map(|t| t.name).collect(),
            }),
            Err(e) => Err(e).at(&p),
        }
    }

    /// Tags head as the checkpoint `name` (the tag `checkpoint/<name>`).
    pub fn checkpoint(&self, name: &str) -> Result<TagInfo> {
        let mut t = self.tag(&format!("checkpoint/{name}"), None)?;
        t.name = name.into();
        Ok(t)
    }

    /// The checkpoints, by name.
    pub fn checkpoints(&self) -> Result<Vec<TagInfo>> {
        Ok(self
            .tags()?
            .into_iter()
            .filter_map(|mut t| {
                t.name = t.name.strip_prefix("checkpoint/")?.to_string();
                Some(t)
            })
            .collect())
    }

    /// Checks out the checkpoint `name`.
    pub fn restore(&self, name: &str, opts: CheckoutOptions) -> Result<CheckoutOutcome> {
        let tag = format!("checkpoint/{name}");
        validate_tag(&tag)?;
        let _lock = self.lock()?;
        let s = self.read_tag(&tag)?.ok_or_else(|| Error::UnknownRef {
            input: name.into(),
            candidates: self
                .checkpoints()
                .map(|v| v.into_iter().map(|t| t.name).collect())
                .unwrap_or_default(),
        })?;
        self.checkout_locked(Some(s), opts)
    }

    // ---- read-only views --------------------------------------------------------------------

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

    pub(crate) fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    pub(crate) fn writer_lock(&self) -> Result<impl Sized> {
        self.lock()
    }

    pub(crate) fn all_state_ids(&self) -> Result<Vec<StateId>> {
        self.state_ids()
    }

    pub(crate) fn key_records(&self) -> Result<Vec<(PathBuf, Option<StateId>)>> {
        let d = self.dir.join("keys");
        let mut v = Vec::new();
        for e in fs::read_dir(&d).at(&d)? {
            let e = e.at(&d)?;
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            let state = read_opt(&p)?
                .and_then(|b| serde_json::from_slice::<KeyRecord>(&b).ok())
                .and_then(|r| Digest::parse(&r.state))
                .map(StateId);
            v.push((p, state));
        }
        Ok(v)
    }
}

/// A command must not outlive the `run` that started it (and holds the writer lock): on Linux
/// it gets SIGKILL when the thread that spawned it dies, e.g. when the runner is `kill -9`ed.
fn die_with_parent(c: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() as u32 != parent {
                    libc::_exit(137);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = c;
}

fn outcome(
    state: StateId,
    cached: bool,
    instruction: &str,
    parent: Option<StateId>,
    ran: Option<ExecOutcome>,
) -> RunOutcome {
    let (stdout, stderr) = ran.map(|r| (r.stdout, r.stderr)).unwrap_or((None, None));
    RunOutcome {
        hash: state.hex(),
        short: state.short(),
        cached,
        instruction: instruction.into(),
        parent: parent.map(|p| p.hex()),
        stdout,
        stderr,
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

pub(crate) fn parse_digest(s: &str, location: &Path) -> Result<Digest> {
    Digest::parse(s).ok_or_else(|| Error::Corrupt {
        id: s.into(),
        location: location.to_path_buf(),
        reason: "not a sha256 id".into(),
    })
}

pub(crate) fn parse_opt_state(s: &Option<String>, location: &Path) -> Result<Option<StateId>> {
    s.as_deref()
        .map(|s| parse_digest(s, location).map(StateId))
        .transpose()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
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

/// Tag names: `[A-Za-z0-9._-]` segments separated by `/`, not `HEAD`, not looking like a hash.
pub(crate) fn validate_tag(name: &str) -> Result<()> {
    let bad = |expected: &str| Error::Invalid {
        what: "tag name",
        input: name.into(),
        expected: expected.into(),
    };
    if name.is_empty() || name.len() > 200 {
        return Err(bad("1 to 200 characters"));
    }
    if name == "HEAD" || name == "@" || name.starts_with("HEAD~") {
        return Err(bad("a name other than HEAD"));
    }
    for seg in name.split('/') {
        if seg.is_empty() || seg.starts_with('.') {
            return Err(bad(
                "`/`-separated segments that are not empty and do not start with `.`",
            ));
        }
        if !seg
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"._-".contains(&c))
        {
            return Err(bad("letters, digits, `.`, `_`, `-` and `/`"));
        }
    }
    if name.len() >= 7 && name.bytes().all(|c| c.is_ascii_hexdigit()) {
        return Err(bad(
            "a name that is not a hash prefix (7 or more hex chars would shadow state ids)",
        ));
    }
    Ok(())
}
