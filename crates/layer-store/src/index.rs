//! The stat-cache index of a work dir and the scanner that turns the work dir into a tree,
//! re-hashing only files whose stat data changed (git's racy-entry rule with ctime) and not
//! reading directories whose own stat data is unchanged (git's untracked cache idea).

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::id::{Digest, StateId};
use crate::objects::{ObjectStore, PackWriter, STREAM_THRESHOLD};
use crate::tree::{Entry, Kind, WH_PREFIX, join};
use sequential_support::fs::{ensure_dir, temp_path};
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const INDEX_MAGIC: &[u8; 8] = b"SLSINDX2";

/// The stat data the index compares.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Stat {
    /// `st_mode` (type and permissions).
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime: i64,
    /// Status-change time, ns since the epoch (catches chmod and `touch -d`).
    pub ctime: i64,
    /// Inode.
    pub ino: u64,
    /// Device.
    pub dev: u64,
    /// Link count (not compared; used to find hard links).
    pub nlink: u64,
}

impl Stat {
    /// From `lstat` metadata.
    pub fn from(md: &Metadata) -> Stat {
        Stat {
            mode: md.mode(),
            size: md.size(),
            mtime: md.mtime() * 1_000_000_000 + md.mtime_nsec(),
            ctime: md.ctime() * 1_000_000_000 + md.ctime_nsec(),
            ino: md.ino(),
            dev: md.dev(),
            nlink: md.nlink(),
        }
    }

    /// Same file, same stat data (link count aside).
    pub fn same(&self, o: &Stat) -> bool {
        self.mode == o.mode
            && self.size == o.size
            && self.mtime == o.mtime
            && self.ctime == o.ctime
            && self.ino == o.ino
            && self.dev == o.dev
    }

    /// Racily clean: changed in the same timestamp tick as (or after) the index was taken.
    pub fn racy(&self, index_time: i64) -> bool {
        self.mtime.max(self.ctime) >= index_time
    }
}

/// One path of the work dir with its stat data.
#[derive(Clone, Debug)]
pub struct IndexEntry {
    /// The tree entry (what the path holds).
    pub entry: Entry,
    /// Its stat data when the entry was computed.
    pub stat: Stat,
}

impl AsRef<Entry> for IndexEntry {
    fn as_ref(&self) -> &Entry {
        &self.entry
    }
}

/// The stat cache of a work dir: sorted entries (the root is the entry with an empty path)
/// and the filesystem time the scan began (the racy threshold).
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Filesystem timestamp taken just before the stat data was collected.
    pub time: i64,
    /// The state whose tree the entries describe exactly, when known (`Some(None)` = the empty
    /// root): lets `status` skip loading that state's manifest.
    pub base: Option<Option<StateId>>,
    /// Entries in tree order, root first.
    pub entries: Vec<IndexEntry>,
}

impl Index {
    /// Loads `path`; a missing, truncated or corrupt index is an empty one (it is only a cache).
    pub fn load(path: &Path) -> Index {
        match fs::read(path) {
            Ok(buf) => Index::decode(&buf).unwrap_or_else(|| {
                tracing::warn!(path = %path.display(), "ignoring a corrupt index");
                Index::default()
            }),
            Err(_) => Index::default(),
        }
    }

    fn decode(buf: &[u8]) -> Option<Index> {
        if buf.len() < 8 + 8 + 8 + 32 {
            return None;
        }
        let (body, sum) = buf.split_at(buf.len() - 32);
        // Checksum on a second thread while this one decodes.
        let (ok, decoded) = std::thread::scope(|s| {
            let check = s.spawn(|| Digest::of(body).0 == sum);
            let decoded = Index::decode_body(body);
            (check.join().unwrap_or(false), decoded)
        });
        if ok { decoded } else { None }
    }

    fn decode_body(body: &[u8]) -> Option<Index> {
        let mut r = crate::tree::Reader::new(body);
        if r.take(8)? != INDEX_MAGIC {
            return None;
        }
        let time = r.i64()?;
        let flag = r.take(1)?[0];
        let d = r.digest()?;
        let base = match flag {
            0 => None,
            1 => Some(None),
            2 => Some(Some(StateId(d))),
            _ => return None,
        };
        let n = r.u64()? as usize;
        let mut entries = Vec::with_capacity(n.min(1 << 24));
        for _ in 0..n {
            let entry = r.entry()?;
            let stat = Stat {
                mode: r.u32()?,
                size: r.u64()?,
                mtime: r.i64()?,
                ctime: r.i64()?,
                ino: r.u64()?,
                dev: r.u64()?,
                nlink: r.u64()?,
            };
            entries.push(IndexEntry { entry, stat });
        }
        r.done().then_some(Index {
            time,
            base,
            entries,
        })
    }

    /// Encodes with a trailing sha256 checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.entries.len() * 150);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&self.time.to_le_bytes());
        let (flag, d) = match self.base {
            None => (0u8, Digest::ZERO),
            Some(None) => (1, Digest::ZERO),
            Some(Some(s)) => (2, s.0),
        };
        out.push(flag);
        out.extend_from_slice(&d.0);
        out.extend_from_slice(&(self.entries.len() as u64).to_le_bytes());
        for e in &self.entries {
            crate::tree::encode_entry(&mut out, &e.entry);
            let s = &e.stat;
            out.extend_from_slice(&s.mode.to_le_bytes());
            out.extend_from_slice(&s.size.to_le_bytes());
            out.extend_from_slice(&s.mtime.to_le_bytes());
            out.extend_from_slice(&s.ctime.to_le_bytes());
            out.extend_from_slice(&s.ino.to_le_bytes());
            out.extend_from_slice(&s.dev.to_le_bytes());
            out.extend_from_slice(&s.nlink.to_le_bytes());
        }
        let sum = Digest::of(&out);
        out.extend_from_slice(&sum.0);
        out
    }

    /// Writes the index atomically (temp + rename). Not fsynced: it is a cache, and a torn or
    /// stale index only costs re-hashing.
    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(parent) = path.parent() {
            ensure_dir(parent)?;
        }
        fsutil::replace_unsynced(path, &self.encode())
    }

    /// The tree (manifest) this index describes: entries without the root.
    pub fn manifest(&self) -> Vec<Entry> {
        self.entries
            .iter()
            .filter(|e| !e.entry.path.is_empty())
            .map(|e| e.entry.clone())
            .collect()
    }
}

/// The filesystem's current timestamp (as it would stamp a file now), for the racy rule.
pub fn fs_now(dir: &Path) -> Result<i64> {
    let tmp = temp_path(&dir.join("clock"));
    let f = File::create(&tmp).at(&tmp)?;
    let md = f.metadata().at(&tmp)?;
    drop(f);
    let _ = fs::remove_file(&tmp);
    Ok(md.mtime() * 1_000_000_000 + md.mtime_nsec())
}

/// Where a capturing scan stores the contents it reads.
#[derive(Clone, Copy)]
pub struct Sink<'a> {
    /// Existing objects (for dedupe).
    pub objects: &'a ObjectStore,
    /// The pack receiving new objects.
    pub pack: &'a PackWriter,
    /// Where to report files captured.
    pub progress: Option<&'a dyn crate::progress::Progress>,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// The work dir's tree with stat data, root first, tree order.
    pub entries: Vec<IndexEntry>,
    /// Nothing differs from the index (then, in [`ScanMode::Lean`], `entries` is empty).
    pub unchanged: bool,
}

const WALK_THREADS: usize = 4;

/// Whether a scan that found nothing changed may skip building the new entries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScanMode {
    /// Always return the full tree.
    Full,
    /// When nothing changed (every index entry seen with the same stat data, nothing new),
    /// return no entries and `unchanged = true`: the index itself is the tree.
    Lean,
}

/// Scans `work` against `index`; with a sink, new contents are stored as they are hashed.
///
/// Two threads walk the tree from a shared queue of directories, `fstatat`-ing names relative
/// to an open directory fd. A directory whose stat data matches the index (and is not racy) is
/// not read: its names come from the index. Files whose stat data matches are not read either.
pub fn scan(work: &Path, index: &Index, sink: Option<Sink<'_>>) -> Result<ScanResult> {
    scan_with(work, index, sink, ScanMode::Full)
}

/// [`scan`] with a [`ScanMode`].
pub fn scan_with(
    work: &Path,
    index: &Index,
    sink: Option<Sink<'_>>,
    mode: ScanMode,
) -> Result<ScanResult> {
    let root_md = match fs::symlink_metadata(work) {
        Ok(md) if md.is_dir() => md,
        Ok(_) | Err(_) => {
            return Err(Error::WorkDirMissing {
                path: work.to_path_buf(),
            });
        }
    };
    let ix = &index.entries;
    let ends = subtree_ends(ix);
    let root_stat = Stat::from(&root_md);
    let root_pos = ix.first().filter(|e| e.entry.path.is_empty()).map(|_| 0);
    let walker = Walker {
        work,
        index,
        ends: &ends,
        sink,
        queue: Mutex::new((
            vec![Job {
                id: 0,
                parent: None,
                rel: Vec::new(),
                stat: root_stat,
                pos: root_pos,
            }],
            0,
        )),
        cv: std::sync::Condvar::new(),
        next_id: AtomicUsize::new(1),
        error: Mutex::new(None),
    };
    let outs: Mutex<Vec<DirOut>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        // More threads than cores: the walk is mostly kernel time and some of it waits on
        // locks, so 4 threads finish sooner than 2 on this 2-core machine.
        for _ in 0..WALK_THREADS {
            s.spawn(|| {
                let local = walker.work_loop();
                outs.lock().expect("outs lock").extend(local);
            });
        }
    });
    if let Some(e) = walker.error.into_inner().expect("error lock") {
        return Err(e);
    }
    let outs = outs.into_inner().expect("outs lock");
    let root_same = root_pos.is_some_and(|p| ix[p].stat.same(&root_stat));
    let (same, new) = outs
        .iter()
        .flat_map(|o| &o.children)
        .fold((0usize, 0usize), |(s, n), c| match c {
            Child::Same { .. } => (s + 1, n),
            Child::New { .. } => (s, n + 1),
        });
    let unchanged = root_same && new == 0 && same + 1 == ix.len();
    if unchanged && mode == ScanMode::Lean {
        return Ok(ScanResult {
            entries: Vec::new(),
            unchanged,
        });
    }
    // Assemble in tree order: each directory's children sorted by name, subtrees inline.
    let mut by_id: Vec<Option<DirOut>> = Vec::new();
    by_id.resize_with(walker.next_id.load(Ordering::Relaxed), || None);
    for o in outs {
        let id = o.id;
        by_id[id] = Some(o);
    }
    let mut out: Vec<IndexEntry> = Vec::with_capacity(ix.len().max(16));
    let mut to_hash: Vec<usize> = Vec::new();
    out.push(IndexEntry {
        entry: dir_entry(Vec::new(), &root_stat),
        stat: root_stat,
    });
    emit(0, &mut by_id, ix, &mut out, &mut to_hash);
    hash_files(work, &mut out, &to_hash, sink)?;
    group_hardlinks(&mut out);
    Ok(ScanResult {
        entries: out,
        unchanged,
    })
}

fn emit(
    id: usize,
    by_id: &mut [Option<DirOut>],
    ix: &[IndexEntry],
    out: &mut Vec<IndexEntry>,
    to_hash: &mut Vec<usize>,
) {
    let Some(d) = by_id.get_mut(id).and_then(Option::take) else {
        return;
    };
    for c in d.children {
        let dir = match c {
            Child::Same { pos, dir } => {
                out.push(ix[pos].clone());
                dir
            }
            Child::New { entry, dir, hash } => {
                if hash {
                    to_hash.push(out.len());
                }
                out.push(entry);
                dir
            }
        };
        if let Some(child) = dir {
            emit(child, by_id, ix, out, to_hash);
        }
    }
}

/// For each index position, one past the end of its subtree (tree order makes it contiguous).
fn subtree_ends(ix: &[IndexEntry]) -> Vec<usize> {
    let mut ends: Vec<usize> = (1..=ix.len()).collect();
    let mut stack: Vec<usize> = Vec::new();
    for (i, e) in ix.iter().enumerate() {
        while let Some(&top) = stack.last() {
            if crate::tree::is_under(&e.entry.path, &ix[top].entry.path) {
                break;
            }
            ends[top] = i;
            stack.pop();
        }
        if e.entry.kind == Kind::Dir {
            stack.push(i);
        }
    }
    for top in stack {
        ends[top] = ix.len();
    }
    ends
}

struct Job {
    id: usize,
    rel: Vec<u8>,
    /// The parent directory, open.
    parent: Option<std::sync::Arc<std::os::fd::OwnedFd>>,
    stat: Stat,
    /// Position of this directory in the index, when the index has it as a directory.
    pos: Option<usize>,
}

enum Child {
    /// Unchanged: the index entry at `pos` (for a directory, `dir` is its job id).
    Same { pos: usize, dir: Option<usize> },
    /// New or changed.
    New {
        entry: IndexEntry,
        dir: Option<usize>,
        hash: bool,
    },
}

struct DirOut {
    id: usize,
    children: Vec<Child>,
}

struct Walker<'a> {
    work: &'a Path,
    index: &'a Index,
    ends: &'a [usize],
    sink: Option<Sink<'a>>,
    /// Pending directories and the number being processed.
    queue: Mutex<(Vec<Job>, usize)>,
    cv: std::sync::Condvar,
    next_id: AtomicUsize,
    error: Mutex<Option<Error>>,
}

impl Walker<'_> {
    fn work_loop(&self) -> Vec<DirOut> {
        let mut local = Vec::new();
        loop {
            let job = {
                let mut q = self.queue.lock().expect("queue lock");
                loop {
                    if let Some(j) = q.0.pop() {
                        q.1 += 1;
                        break Some(j);
                    }
                    if q.1 == 0 {
                        break None;
                    }
                    q = self.cv.wait(q).expect("queue lock");
                }
            };
            let Some(job) = job else {
                self.cv.notify_all();
                return local;
            };
            let failed = self.error.lock().expect("error lock").is_some();
            let mut subdirs = Vec::new();
            if !failed {
                match self.visit(&job, &mut subdirs) {
                    Ok(o) => local.push(o),
                    Err(e) => {
                        self.error.lock().expect("error lock").get_or_insert(e);
                        subdirs.clear();
                    }
                }
            }
            let mut q = self.queue.lock().expect("queue lock");
            q.0.extend(subdirs);
            q.1 -= 1;
            drop(q);
            self.cv.notify_all();
        }
    }

    fn children(&self, pos: usize) -> impl Iterator<Item = usize> + '_ {
        let end = self.ends[pos];
        let mut j = pos + 1;
        std::iter::from_fn(move || {
            if j >= end {
                return None;
            }
            let cur = j;
            j = self.ends[cur];
            Some(cur)
        })
    }

    fn cached(&self, pos: Option<usize>, st: &Stat) -> Option<&IndexEntry> {
        let e = &self.index.entries[pos?];
        (e.stat.same(st) && !e.stat.racy(self.index.time)).then_some(e)
    }

    fn visit(&self, job: &Job, subdirs: &mut Vec<Job>) -> Result<DirOut> {
        use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
        let ix = &self.index.entries;
        // Only built when needed (reading a changed directory, errors): most are not.
        let dir_abs = || fsutil::abs(self.work, &job.rel);
        // Open relative to the parent's fd (one path component to resolve), O_PATH: we only
        // need it for fstatat.
        let (base_fd, cpath) = match &job.parent {
            Some(p) => (
                p.as_raw_fd(),
                std::ffi::CString::new(crate::tree::name_of(&job.rel).to_vec()),
            ),
            None => (
                libc::AT_FDCWD,
                std::ffi::CString::new(dir_abs().as_os_str().as_bytes().to_vec()),
            ),
        };
        let cpath = cpath.map_err(|_| Error::Invalid {
            what: "path",
            input: dir_abs().display().to_string(),
            expected: "no NUL byte".into(),
        })?;
        // SAFETY: valid dir fd and NUL-terminated path; the fd is owned right away.
        let fd = unsafe {
            libc::openat(
                base_fd,
                cpath.as_ptr(),
                libc::O_PATH | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).at(&dir_abs());
        }
        // SAFETY: `fd` is a fresh descriptor we own.
        let dfd = std::sync::Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        let cached_dir = self.cached(job.pos, &job.stat).is_some();
        let names: Vec<(std::borrow::Cow<'_, [u8]>, Option<usize>)> = match cached_dir {
            true => self
                .children(job.pos.expect("cached"))
                .map(|j| (std::borrow::Cow::Borrowed(ix[j].entry.name()), Some(j)))
                .collect(),
            false => {
                let known: HashMap<&[u8], usize> = match job.pos {
                    Some(p) => self.children(p).map(|j| (ix[j].entry.name(), j)).collect(),
                    None => HashMap::new(),
                };
                let mut v = Vec::new();
                let dir_abs = dir_abs();
                for de in fs::read_dir(&dir_abs).at(&dir_abs)? {
                    let name = de.at(&dir_abs)?.file_name().as_bytes().to_vec();
                    let pos = known.get(name.as_slice()).copied();
                    v.push((std::borrow::Cow::Owned(name), pos));
                }
                v
            }
        };
        let mut children = Vec::with_capacity(names.len());
        let mut cname = Vec::with_capacity(256);
        for (name, pos) in names {
            if name.starts_with(WH_PREFIX) {
                return Err(Error::Uncapturable {
                    path: dir_abs().join(std::ffi::OsStr::from_bytes(&name)),
                    reason: "names starting with `.wh.` are reserved for OCI whiteouts".into(),
                });
            }
            cname.clear();
            cname.extend_from_slice(&name);
            cname.push(0);
            // SAFETY: an all-zero `stat` is a valid value to be overwritten.
            let mut sb: libc::stat = unsafe { std::mem::zeroed() };
            // SAFETY: valid dir fd, NUL-terminated name, writable stat buffer.
            let rc = unsafe {
                libc::fstatat(
                    dfd.as_raw_fd(),
                    cname.as_ptr().cast(),
                    &mut sb,
                    libc::AT_SYMLINK_NOFOLLOW,
                )
            };
            if rc != 0 {
                let e = std::io::Error::last_os_error();
                if e.kind() == std::io::ErrorKind::NotFound {
                    continue;
                }
                return Err(e).at(&dir_abs().join(std::ffi::OsStr::from_bytes(&name)));
            }
            let st = Stat {
                mode: sb.st_mode,
                size: sb.st_size as u64,
                mtime: sb.st_mtime * 1_000_000_000 + sb.st_mtime_nsec,
                ctime: sb.st_ctime * 1_000_000_000 + sb.st_ctime_nsec,
                ino: sb.st_ino,
                dev: sb.st_dev,
                nlink: sb.st_nlink as u64,
            };
            let path = || join(&job.rel, &name);
            match sb.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    let cached_child_dir = self
                        .cached(pos, &st)
                        .is_some_and(|e| e.entry.kind == Kind::Dir);
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let rel = path();
                    match pos.filter(|_| cached_child_dir) {
                        Some(p) => children.push(Child::Same {
                            pos: p,
                            dir: Some(id),
                        }),
                        None => children.push(Child::New {
                            entry: IndexEntry {
                                entry: dir_entry(rel.clone(), &st),
                                stat: st,
                            },
                            dir: Some(id),
                            hash: false,
                        }),
                    }
                    subdirs.push(Job {
                        id,
                        parent: Some(dfd.clone()),
                        rel,
                        stat: st,
                        pos: pos.filter(|&p| ix[p].entry.kind == Kind::Dir),
                    });
                }
                libc::S_IFREG => {
                    let hit = self
                        .cached(pos, &st)
                        .filter(|e| matches!(e.entry.kind, Kind::File | Kind::Hardlink));
                    let (content, hash) = match hit {
                        Some(e) => (
                            e.entry.content,
                            self.sink.is_some_and(|s| {
                                !s.objects.contains(&e.entry.content)
                                    && !s.pack.has(&e.entry.content)
                            }),
                        ),
                        None => (Digest::ZERO, true),
                    };
                    match pos {
                        Some(p) if hit.is_some() && !hash && st.nlink < 2 => {
                            children.push(Child::Same { pos: p, dir: None })
                        }
                        _ => children.push(Child::New {
                            entry: IndexEntry {
                                entry: Entry {
                                    path: path(),
                                    kind: Kind::File,
                                    mode: st.mode & 0o7777,
                                    size: st.size,
                                    content,
                                    target: Vec::new(),
                                },
                                stat: st,
                            },
                            dir: None,
                            hash,
                        }),
                    }
                }
                libc::S_IFLNK => {
                    if let Some(p) = pos
                        && self
                            .cached(pos, &st)
                            .is_some_and(|e| e.entry.kind == Kind::Symlink)
                    {
                        children.push(Child::Same { pos: p, dir: None });
                        continue;
                    }
                    let abs = dir_abs().join(std::ffi::OsStr::from_bytes(&name));
                    let target = fs::read_link(&abs)
                        .at(&abs)?
                        .as_os_str()
                        .as_bytes()
                        .to_vec();
                    children.push(Child::New {
                        entry: IndexEntry {
                            entry: Entry {
                                path: path(),
                                kind: Kind::Symlink,
                                mode: 0o777,
                                size: target.len() as u64,
                                content: Digest::ZERO,
                                target,
                            },
                            stat: st,
                        },
                        dir: None,
                        hash: false,
                    });
                }
                _ => {
                    tracing::warn!(path = %dir_abs().join(std::ffi::OsStr::from_bytes(&name)).display(), "skipping a special file (fifo, socket or device)");
                }
            }
        }
        if !cached_dir {
            // Index order is already name order.
            let ix = &self.index.entries;
            let name = |c: &Child| -> Vec<u8> {
                match c {
                    Child::Same { pos, .. } => ix[*pos].entry.name().to_vec(),
                    Child::New { entry, .. } => entry.entry.name().to_vec(),
                }
            };
            children.sort_by_cached_key(name);
        }
        Ok(DirOut {
            id: job.id,
            children,
        })
    }
}

fn dir_entry(path: Vec<u8>, st: &Stat) -> Entry {
    Entry {
        path,
        kind: Kind::Dir,
        mode: st.mode & 0o7777,
        size: 0,
        content: Digest::ZERO,
        target: Vec::new(),
    }
}

/// Hashes (and with a sink, stores) the listed files on two threads.
fn hash_files(
    work: &Path,
    out: &mut [IndexEntry],
    list: &[usize],
    sink: Option<Sink<'_>>,
) -> Result<()> {
    if list.is_empty() {
        return Ok(());
    }
    let counter = crate::progress::Counter::new(
        sink.and_then(|s| s.progress),
        crate::progress::Phase::Capturing,
        list.len(),
    );
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Digest, u64)>> = Mutex::new(Vec::with_capacity(list.len()));
    let first_err: Mutex<Option<Error>> = Mutex::new(None);
    let threads = if list.len() > 8 { 2 } else { 1 };
    {
        let out_ro: &[IndexEntry] = out;
        std::thread::scope(|s| {
            for _ in 0..threads {
                s.spawn(|| {
                    let mut local = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= list.len() || first_err.lock().expect("err lock").is_some() {
                            break;
                        }
                        let i = list[k];
                        let abs = fsutil::abs(work, &out_ro[i].entry.path);
                        match hash_one(&abs, out_ro[i].stat.size, sink) {
                            Ok((id, size)) => {
                                counter.add(size);
                                local.push((i, id, size))
                            }
                            Err(e) => {
                                first_err.lock().expect("err lock").get_or_insert(e);
                                break;
                            }
                        }
                    }
                    results.lock().expect("results lock").extend(local);
                });
            }
        });
    }
    if let Some(e) = first_err.into_inner().expect("err lock") {
        return Err(e);
    }
    for (i, id, size) in results.into_inner().expect("results lock") {
        out[i].entry.content = id;
        out[i].entry.size = size;
    }
    Ok(())
}

fn hash_one(abs: &Path, size_hint: u64, sink: Option<Sink<'_>>) -> Result<(Digest, u64)> {
    let mut f = File::open(abs).at(abs)?;
    if size_hint > STREAM_THRESHOLD {
        return match sink {
            Some(s) => crate::chunk::store_chunked(&mut f, abs, s),
            None => {
                use sha2::Digest as _;
                let mut h = sha2::Sha256::new();
                let n = std::io::copy(&mut f, &mut h).at(abs)?;
                Ok((Digest(h.finalize().into()), n))
            }
        };
    }
    let mut data = Vec::with_capacity(size_hint as usize);
    f.read_to_end(&mut data).at(abs)?;
    let id = Digest::of(&data);
    if let Some(s) = sink
        && !s.objects.contains(&id)
    {
        s.pack.add(id, &data)?;
    }
    Ok((id, data.len() as u64))
}

/// Files sharing an inode (link count > 1): the first in tree order stays a file, the others
/// become hard links to it.
fn group_hardlinks(entries: &mut [IndexEntry]) {
    let mut first: HashMap<(u64, u64), usize> = HashMap::new();
    for i in 0..entries.len() {
        let e = &entries[i];
        if e.entry.kind != Kind::File || e.stat.nlink < 2 {
            continue;
        }
        match first.get(&(e.stat.dev, e.stat.ino)) {
            None => {
                first.insert((e.stat.dev, e.stat.ino), i);
            }
            Some(&f) => {
                let (target, content, size, mode) = {
                    let t = &entries[f].entry;
                    (t.path.clone(), t.content, t.size, t.mode)
                };
                let e = &mut entries[i].entry;
                e.kind = Kind::Hardlink;
                e.target = target;
                e.content = content;
                e.size = size;
                e.mode = mode;
            }
        }
    }
}
