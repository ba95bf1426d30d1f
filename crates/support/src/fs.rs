//! Durable file primitives: crash-safe whole-file writes, directory fsync, advisory lock files,
//! and clean-up of temp files that dead processes left behind.
//!
//! A whole-file write goes to `.<name>.<pid>.<n>.tmp` beside the target, is fsynced, renamed
//! over the target, and the directory is fsynced: readers see the old content or the new, never
//! a mix, and after a crash the target is whole. The temp name carries the writer's pid, so
//! [`clean_debris`] can remove what a killed writer left without touching a live one's.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A failed file operation: what was being done, to which path, and why.
#[derive(Debug, thiserror::Error)]
#[error("{what} {}: {source}", path.display())]
pub struct FsError {
    /// What was being done (`writing`, `locking`, …).
    pub what: &'static str,
    /// The path it was done to.
    pub path: PathBuf,
    /// The operating system's error.
    #[source]
    pub source: io::Error,
}

impl FsError {
    fn new(what: &'static str, path: &Path, source: io::Error) -> Self {
        FsError {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// The kind of the underlying I/O error.
    pub fn kind(&self) -> ErrorKind {
        self.source.kind()
    }
}

/// The result of this module's operations.
pub type Result<T> = std::result::Result<T, FsError>;

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temp file a write of `target` goes through: `.<name>.<pid>.<n>.tmp` in the same
/// directory, so the rename is atomic and debris is recognisable.
pub fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// The pid that wrote a temp file named `file_name`, when it is one of [`temp_path`]'s names.
pub fn temp_owner(file_name: &str) -> Option<i32> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = stem.rsplitn(3, '.');
    let _counter: u64 = parts.next()?.parse().ok()?;
    let pid: i32 = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

/// Writes `bytes` to a fresh temp file beside `target` and fsyncs it; returns the temp path for
/// [`commit`]. Nothing is left behind on failure.
pub fn prepare(target: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = temp_path(target);
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match res {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(FsError::new("writing", target, e))
        }
    }
}

/// Renames a [`prepare`]d temp file onto `target` (atomic; the directory still needs
/// [`sync_dir`] for the rename to be durable).
pub fn commit(tmp: &Path, target: &Path) -> Result<()> {
    fs::rename(tmp, target).map_err(|e| {
        let _ = fs::remove_file(tmp);
        FsError::new("renaming into place", target, e)
    })
}

/// Fsyncs a directory, making renames, creations and removals in it durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::new("syncing directory", dir, e))
}

/// Publishes a temp file that was written through `file` (streamed, rather than given as
/// bytes) as `target`: fsync, close, rename. The directory fsync is left to the caller, so one
/// fsync can cover several files published into the same directory.
pub fn publish(file: File, tmp: &Path, target: &Path) -> Result<()> {
    if let Err(e) = file.sync_all() {
        let _ = fs::remove_file(tmp);
        return Err(FsError::new("syncing", tmp, e));
    }
    drop(file);
    commit(tmp, target)
}

/// Replaces `target` with `bytes` through a temp file and a rename, without any fsync: readers
/// never see a mix of old and new, but a power loss may lose the change. For caches that can be
/// rebuilt (a stat index), where an fsync per write would cost more than the cache saves.
pub fn replace_unsynced(target: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = temp_path(target);
    let written = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes));
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(FsError::new("writing", target, e));
    }
    commit(&tmp, target)
}

/// Replaces `target` with `bytes` crash-safely: temp + fsync + rename + directory fsync.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = prepare(target, bytes)?;
    commit(&tmp, target)?;
    sync_dir(parent(target))
}

/// Creates `target` with `bytes`, failing with `AlreadyExists` if it exists; fsynced.
pub fn write_new(target: &Path, bytes: &[u8]) -> Result<()> {
    (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(target)?;
        f.write_all(bytes)?;
        f.sync_all()
    })()
    .map_err(|e| FsError::new("writing", target, e))
}

/// The directory holding `path` (`.` for a bare name).
pub fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an entry.
pub fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(p) = dir.parent()
        && !p.as_os_str().is_empty()
    {
        ensure_dir(p)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => sync_dir(parent(dir)),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(FsError::new("creating directory", dir, e)),
    }
}

/// Reads a whole file; `Ok(None)` when it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(FsError::new("reading", path, e)),
    }
}

/// Removes a file; a missing file is fine.
pub fn remove_opt(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(FsError::new("removing", path, e)),
    }
}

/// Removes temp files (see [`temp_path`]) whose writer process is gone from `dir` (not
/// recursive); returns how many.
pub fn clean_debris(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(pid) = temp_owner(name)
            && crate::process::pid_is_dead(pid)
            && fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// An advisory lock on a lock file (created if missing), held until dropped.
///
/// Every lock opens its own descriptor, so two holders in one process exclude each other too.
/// The kernel drops the lock when the process dies: a lock is never orphaned by a crash.
#[derive(Debug)]
pub struct LockFile {
    file: File,
    path: PathBuf,
}

impl LockFile {
    fn open(path: &Path) -> Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| FsError::new("opening lock file", path, e))
    }

    /// Waits for an exclusive lock on `path`.
    pub fn exclusive(path: &Path) -> Result<Self> {
        let file = Self::open(path)?;
        file.lock().map_err(|e| FsError::new("locking", path, e))?;
        Ok(LockFile {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Waits for a shared lock on `path`.
    pub fn shared(path: &Path) -> Result<Self> {
        let file = Self::open(path)?;
        file.lock_shared()
            .map_err(|e| FsError::new("locking", path, e))?;
        Ok(LockFile {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Waits for a lock on a file that must already exist (a data file that doubles as its own
    /// lock, such as a journal), opened for reading, and for writing when `exclusive`.
    /// `Ok(None)` when the file does not exist.
    pub fn existing(path: &Path, exclusive: bool) -> Result<Option<Self>> {
        let file = match OpenOptions::new().read(true).write(exclusive).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(FsError::new("opening", path, e)),
        };
        let locked = if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        };
        locked.map_err(|e| FsError::new("locking", path, e))?;
        Ok(Some(LockFile {
            file,
            path: path.to_path_buf(),
        }))
    }

    /// An exclusive lock on `path` if nobody holds one; `Ok(None)` when it is held.
    pub fn try_exclusive(path: &Path) -> Result<Option<Self>> {
        let file = Self::open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(LockFile {
                file,
                path: path.to_path_buf(),
            })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(FsError::new("locking", path, e)),
        }
    }

    /// The lock file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open lock file (to write an owner's pid into it, say).
    pub fn file(&self) -> &File {
        &self.file
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_recognised() {
        let t = temp_path(Path::new("/x/runs/abc.json"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with(".tmp") && name.starts_with(".abc.json."));
        assert_eq!(temp_owner(name), Some(std::process::id() as i32));
        assert_eq!(temp_owner("abc.json"), None);
        assert_eq!(temp_owner(".x.tmp"), None);
    }

    #[test]
    fn parent_of_a_bare_relative_name_is_the_current_dir() {
        assert_eq!(parent(Path::new("tasks")), Path::new("."));
        assert_eq!(parent(Path::new("a/tasks")), Path::new("a"));
        assert_eq!(parent(Path::new("/")), Path::new("."));
    }

    #[test]
    fn atomic_write_replaces_whole_and_leaves_no_temp() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
        let e = write_new(&p, b"three").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::AlreadyExists);
        assert!(e.to_string().contains("f.json"), "{e}");
        let missing = write_atomic(&d.path().join("no/such/dir/f"), b"x").unwrap_err();
        assert!(missing.to_string().starts_with("writing "), "{missing}");
    }

    #[test]
    fn debris_of_dead_writers_is_removed_and_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let dead = d.path().join(".f.json.999999999.0.tmp");
        let live = temp_path(&d.path().join("f.json"));
        fs::write(&dead, b"x").unwrap();
        fs::write(&live, b"x").unwrap();
        assert_eq!(clean_debris(d.path()), 1);
        assert!(!dead.exists() && live.exists());
    }

    #[test]
    fn exclusive_locks_exclude_each_other_within_a_process() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join(".lock");
        let held = LockFile::exclusive(&p).unwrap();
        assert!(LockFile::try_exclusive(&p).unwrap().is_none());
        drop(held);
        assert!(LockFile::try_exclusive(&p).unwrap().is_some());
        let _a = LockFile::shared(&p).unwrap();
        let _b = LockFile::shared(&p).unwrap();
        assert!(LockFile::try_exclusive(&p).unwrap().is_none());
        assert!(
            LockFile::existing(&d.path().join("absent"), true)
                .unwrap()
                .is_none()
        );
        assert!(
            LockFile::existing(&p, false).unwrap().is_some(),
            "shared beside shared"
        );
    }

    #[test]
    fn published_and_unsynced_replacements_leave_whole_files() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("pack");
        let tmp = temp_path(&target);
        let mut f = File::create(&tmp).unwrap();
        f.write_all(b"streamed").unwrap();
        publish(f, &tmp, &target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"streamed");
        replace_unsynced(&target, b"again").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"again");
        assert_eq!(
            fs::read_dir(d.path()).unwrap().count(),
            1,
            "no temp file left"
        );
    }
}
