//! The stat-cache index of a work dir and the scanner that turns the work dir into a tree,
//! re-hashing only files whose stat data changed (git's racy-entry rule with ctime) and not
//! reading directories whose own stat data is unchanged (git's untracked cache idea).

use crate::error::{Error, IoContext, Result};
use crate::fsutil;
use crate::id::Digest;
use crate::objects::{ObjectStore, PackWriter, STREAM_THRESHOLD};
use crate::tree::{Entry, Kind, WH_PREFIX, join, tree_cmp};
use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

const INDEX_MAGIC: &[u8; 8] = b"SLSINDX1";

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

/// The stat cache of a work dir: sorted entries (the root is the entry with an empty path)
/// and the filesystem time the scan began (the racy threshold).
#[derive(Clone, Debug, Default)]
pub struct Index {
    /// Filesystem timestamp taken just before the stat data was collected.
    pub time: i64,
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
        if Digest::of(body).0 != sum {
            return None;
        }
        let mut r = crate::tree::Reader::new(body);
        if r.take(8)? != INDEX_MAGIC {
            return None;
        }
        let time = r.i64()?;
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
        r.done().then_some(Index { time, entries })
    }

    /// Encodes with a trailing sha256 checksum.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + self.entries.len() * 150);
        out.extend_from_slice(INDEX_MAGIC);
        out.extend_from_slice(&self.time.to_le_bytes());
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
        let tmp = fsutil::write_temp(path, &self.encode(), false)?;
        fs::rename(&tmp, path).at(path)
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
    let tmp = fsutil::temp_path(dir, "clock");
    let f = File::create(&tmp).at(&tmp)?;
    let md = f.metadata().at(&tmp)?;
    drop(f);
    let _ = fs::remove_file(&tmp);
    Ok(md.mtime() * 1_000_000_000 + md.mtime_nsec())
}

/// Where a capturing scan stores the contents it reads.
#[derive(Clone, Copy, Debug)]
pub struct Sink<'a> {
    /// Existing objects (for dedupe).
    pub objects: &'a ObjectStore,
    /// The pack receiving new objects.
    pub pack: &'a PackWriter,
}

/// What a scan found.
#[derive(Debug, Default)]
pub struct ScanResult {
    /// The work dir's tree with stat data, root first, tree order.
    pub entries: Vec<IndexEntry>,
    /// Files read and hashed.
    pub hashed: usize,
    /// Directories read (the others were known unchanged).
    pub readdirs: usize,
}

/// Scans `work` against `index`; with a sink, new contents are stored as they are hashed.
pub fn scan(work: &Path, index: &Index, sink: Option<Sink<'_>>) -> Result<ScanResult> {
    let root_md = match fs::symlink_metadata(work) {
        Ok(md) if md.is_dir() => md,
        Ok(_) | Err(_) => {
            return Err(Error::WorkDirMissing {
                path: work.to_path_buf(),
            });
        }
    };
    let by_path: HashMap<&[u8], usize> = index
        .entries
        .iter()
        .enumerate()
        .map(|(i, e)| (e.entry.path.as_slice(), i))
        .collect();
    let mut children: HashMap<&[u8], Vec<&[u8]>> = HashMap::new();
    for e in &index.entries {
        if !e.entry.path.is_empty() {
            children
                .entry(crate::tree::parent_of(&e.entry.path))
                .or_default()
                .push(e.entry.name());
        }
    }
    let cached = |path: &[u8], st: &Stat| -> Option<&IndexEntry> {
        let e = &index.entries[*by_path.get(path)?];
        (e.stat.same(st) && !e.stat.racy(index.time)).then_some(e)
    };

    let mut out: Vec<IndexEntry> = Vec::new();
    let mut to_hash: Vec<usize> = Vec::new();
    let mut readdirs = 0usize;
    let root_stat = Stat::from(&root_md);
    out.push(IndexEntry {
        entry: dir_entry(Vec::new(), &root_stat),
        stat: root_stat,
    });
    let mut stack: Vec<(Vec<u8>, Stat)> = vec![(Vec::new(), root_stat)];
    while let Some((dir, dstat)) = stack.pop() {
        let dir_abs = fsutil::abs(work, &dir);
        let known = cached(&dir, &dstat).filter(|e| e.entry.kind == Kind::Dir);
        let names: Vec<Vec<u8>> = match known {
            Some(_) => children
                .get(dir.as_slice())
                .map(|v| v.iter().map(|n| n.to_vec()).collect())
                .unwrap_or_default(),
            None => {
                readdirs += 1;
                let mut v = Vec::new();
                for de in fs::read_dir(&dir_abs).at(&dir_abs)? {
                    v.push(de.at(&dir_abs)?.file_name().as_bytes().to_vec());
                }
                v
            }
        };
        for name in names {
            if name.starts_with(WH_PREFIX) {
                return Err(Error::Uncapturable {
                    path: dir_abs.join(std::ffi::OsStr::from_bytes(&name)),
                    reason: "names starting with `.wh.` are reserved for OCI whiteouts".into(),
                });
            }
            let path = join(&dir, &name);
            let abs = dir_abs.join(std::ffi::OsStr::from_bytes(&name));
            let md = match fs::symlink_metadata(&abs) {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).at(&abs),
            };
            let st = Stat::from(&md);
            let ft = md.file_type();
            if ft.is_dir() {
                out.push(IndexEntry {
                    entry: dir_entry(path.clone(), &st),
                    stat: st,
                });
                stack.push((path, st));
            } else if ft.is_file() {
                let hit = cached(&path, &st)
                    .filter(|e| matches!(e.entry.kind, Kind::File | Kind::Hardlink));
                let mut entry = Entry {
                    path,
                    kind: Kind::File,
                    mode: st.mode & 0o7777,
                    size: st.size,
                    content: Digest::ZERO,
                    target: Vec::new(),
                };
                let need = match hit {
                    Some(e) => {
                        entry.content = e.entry.content;
                        sink.is_some_and(|s| {
                            !s.objects.contains(&entry.content) && !s.pack.has(&entry.content)
                        })
                    }
                    None => true,
                };
                if need {
                    to_hash.push(out.len());
                }
                out.push(IndexEntry { entry, stat: st });
            } else if ft.is_symlink() {
                let target = match cached(&path, &st).filter(|e| e.entry.kind == Kind::Symlink) {
                    Some(e) => e.entry.target.clone(),
                    None => fs::read_link(&abs)
                        .at(&abs)?
                        .as_os_str()
                        .as_bytes()
                        .to_vec(),
                };
                out.push(IndexEntry {
                    entry: Entry {
                        path,
                        kind: Kind::Symlink,
                        mode: 0o777,
                        size: target.len() as u64,
                        content: Digest::ZERO,
                        target,
                    },
                    stat: st,
                });
            } else {
                tracing::warn!(path = %abs.display(), "skipping a special file (fifo, socket or device)");
            }
        }
    }
    let hashed = to_hash.len();
    hash_files(work, &mut out, &to_hash, sink)?;
    out.sort_by(|a, b| tree_cmp(&a.entry.path, &b.entry.path));
    group_hardlinks(&mut out);
    Ok(ScanResult {
        entries: out,
        hashed,
        readdirs,
    })
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
                            Ok((id, size)) => local.push((i, id, size)),
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
            Some(s) => s.pack.add_stream(&mut f, &|id| s.objects.contains(id)),
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
