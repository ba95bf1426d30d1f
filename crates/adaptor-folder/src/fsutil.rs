//! Durable file primitives: atomic whole-file writes, directory fsync, advisory locks, debris.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sequential_adaptor::{Error, Result};

/// Wraps an I/O error with what was being done to which path.
pub(crate) fn io_err(what: &str, path: &Path, e: io::Error) -> Error {
    Error::backend(format!("{what} {}", path.display()), e)
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The temp file a write of `target` goes through: `.<name>.<pid>.<n>.tmp` in the same
/// directory, so the rename is atomic and debris is recognisable (and never parsed as data).
pub(crate) fn tmp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    target.with_file_name(format!(".{name}.{}.{n}.tmp", std::process::id()))
}

/// The pid a temp file of ours was written by, when `file_name` is one.
pub(crate) fn tmp_owner(file_name: &str) -> Option<i32> {
    let stem = file_name.strip_prefix('.')?.strip_suffix(".tmp")?;
    let mut parts = stem.rsplitn(3, '.');
    let _counter: u64 = parts.next()?.parse().ok()?;
    let pid: i32 = parts.next()?.parse().ok()?;
    parts.next()?;
    Some(pid)
}

/// `true` when no process with `pid` exists (so its temp files are debris).
pub(crate) fn pid_is_dead(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == -1 && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

/// Writes `bytes` to a temp file beside `target` and fsyncs it; returns the temp path.
/// [`commit`] renames it into place.
pub(crate) fn prepare(target: &Path, bytes: &[u8]) -> Result<PathBuf> {
    let tmp = tmp_path(target);
    let res = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    })();
    match res {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(io_err("writing", target, e))
        }
    }
}

/// Renames a prepared temp file onto `target` (atomic; the directory still needs a fsync).
pub(crate) fn commit(tmp: &Path, target: &Path) -> Result<()> {
    fs::rename(tmp, target).map_err(|e| {
        let _ = fs::remove_file(tmp);
        io_err("renaming into place", target, e)
    })
}

/// Fsyncs a directory, making renames, creations and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing directory", dir, e))
}

/// Temp file + fsync + rename + directory fsync.
pub(crate) fn write_durable(target: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = prepare(target, bytes)?;
    commit(&tmp, target)?;
    sync_dir(parent(target))
}

/// The directory holding `path`.
pub(crate) fn parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an entry.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
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
        Err(e) => Err(io_err("creating directory", dir, e)),
    }
}

/// Reads a whole file; `Ok(None)` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err("reading", path, e)),
    }
}

/// Removes a file; a missing file is fine.
pub(crate) fn remove_opt(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("removing", path, e)),
    }
}

/// An exclusive advisory lock on `path` (created if missing), held until the file is dropped.
/// Every call opens its own descriptor, so two holders in one process exclude each other too.
pub(crate) fn lock_exclusive(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_err("opening lock file", path, e))?;
    f.lock().map_err(|e| io_err("locking", path, e))?;
    Ok(f)
}

/// A shared advisory lock on `path` (created if missing).
pub(crate) fn lock_shared(path: &Path) -> Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| io_err("opening lock file", path, e))?;
    f.lock_shared().map_err(|e| io_err("locking", path, e))?;
    Ok(f)
}

/// Removes temp files left by dead processes under `dir` (not recursive); returns how many.
pub(crate) fn clean_debris(dir: &Path) -> usize {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(pid) = tmp_owner(name)
            && pid_is_dead(pid)
            && fs::remove_file(e.path()).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tmp_names_are_recognised() {
        let t = tmp_path(Path::new("/x/runs/abc.json"));
        let name = t.file_name().unwrap().to_str().unwrap();
        assert!(name.ends_with(".tmp") && name.starts_with(".abc.json."));
        assert_eq!(tmp_owner(name), Some(std::process::id() as i32));
        assert_eq!(tmp_owner("abc.json"), None);
        assert_eq!(tmp_owner(".x.tmp"), None);
        assert!(!pid_is_dead(std::process::id() as i32));
        assert!(pid_is_dead(999_999_999));
    }

    #[test]
    fn parent_of_a_bare_relative_name_is_the_current_dir() {
        assert_eq!(parent(Path::new("tasks")), Path::new("."));
        assert_eq!(parent(Path::new("a/tasks")), Path::new("a"));
        assert_eq!(parent(Path::new("/")), Path::new("."));
    }
}
