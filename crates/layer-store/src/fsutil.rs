//! Crash-safe file writes (temp + fsync + rename + directory fsync) and small path helpers.

use crate::error::{IoContext, Result};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// A unique temp name in `dir` for `name`.
pub fn temp_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!(".tmp-{}-{}", name, uuid::Uuid::now_v7().simple()))
}

/// Writes `bytes` to a temp file next to `path` and fsyncs it; the caller renames it.
pub fn write_temp(path: &Path, bytes: &[u8], sync: bool) -> Result<PathBuf> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = temp_path(dir, &name);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .at(&tmp)?;
    f.write_all(bytes).at(&tmp)?;
    if sync {
        f.sync_all().at(&tmp)?;
    }
    Ok(tmp)
}

/// Atomically replaces `path` with `bytes`: temp + fsync + rename + fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = write_temp(path, bytes, true)?;
    fs::rename(&tmp, path).at(path)?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// fsyncs a directory so that renames in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|f| f.sync_all()).at(dir)
}

/// Reads a file, `None` when it does not exist.
pub fn read_opt(path: &Path) -> Result<Option<Vec<u8>>> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).at(path),
    }
}

/// A work-relative byte path as a filesystem path below `root`.
pub fn abs(root: &Path, rel: &[u8]) -> PathBuf {
    if rel.is_empty() {
        root.to_path_buf()
    } else {
        root.join(std::ffi::OsStr::from_bytes(rel))
    }
}

/// Lossy display of a relative byte path.
pub fn show(rel: &[u8]) -> String {
    String::from_utf8_lossy(rel).into_owned()
}

/// Removes stale temp files (`.tmp-*`) left by a killed writer in `dir`.
pub fn remove_temps(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_name().as_bytes().starts_with(b".tmp-") && fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
    }
    n
}
