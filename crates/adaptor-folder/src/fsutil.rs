//! The durable file primitives of `sequential-support`, with their errors as storage errors.

use std::io;
use std::path::{Path, PathBuf};

use sequential_adaptor::{Error, Result};
use sequential_support::fs::{self, FsError, LockFile};

pub(crate) use sequential_support::fs::{clean_debris, parent};

/// Wraps an I/O error with what was being done to which path.
pub(crate) fn io_err(what: &str, path: &Path, e: io::Error) -> Error {
    Error::backend(format!("{what} {}", path.display()), e)
}

fn err(e: FsError) -> Error {
    Error::backend(format!("{} {}", e.what, e.path.display()), e.source)
}

/// Writes `bytes` to a temp file beside `target` and fsyncs it; [`commit`] renames it.
pub(crate) fn prepare(target: &Path, bytes: &[u8]) -> Result<PathBuf> {
    fs::prepare(target, bytes).map_err(err)
}

/// Renames a prepared temp file onto `target` (the directory still needs a [`sync_dir`]).
pub(crate) fn commit(tmp: &Path, target: &Path) -> Result<()> {
    fs::commit(tmp, target).map_err(err)
}

/// Fsyncs a directory, making renames, creations and removals in it durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    fs::sync_dir(dir).map_err(err)
}

/// Temp file + fsync + rename + directory fsync.
pub(crate) fn write_durable(target: &Path, bytes: &[u8]) -> Result<()> {
    fs::write_atomic(target, bytes).map_err(err)
}

/// Creates `dir` and any missing parents, fsyncing each parent that gained an entry.
pub(crate) fn ensure_dir(dir: &Path) -> Result<()> {
    fs::ensure_dir(dir).map_err(err)
}

/// Reads a whole file; `Ok(None)` when it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    fs::read_opt(path).map_err(err)
}

/// Removes a file; a missing file is fine.
pub(crate) fn remove_opt(path: &Path) -> Result<()> {
    fs::remove_opt(path).map_err(err)
}

/// An exclusive advisory lock on `path` (created if missing), held until dropped.
pub(crate) fn lock_exclusive(path: &Path) -> Result<LockFile> {
    LockFile::exclusive(path).map_err(err)
}

/// A shared advisory lock on `path` (created if missing), held until dropped.
pub(crate) fn lock_shared(path: &Path) -> Result<LockFile> {
    LockFile::shared(path).map_err(err)
}
