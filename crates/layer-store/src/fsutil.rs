//! Byte-path helpers and the store's temp-file rules; durable writes are `sequential_support::fs`.

use crate::error::Result;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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

/// Whether `name` is a temp file of a write: `sequential_support::fs::temp_path`'s
/// `.<name>.<pid>.<n>.tmp`, or the `.tmp-*` of earlier builds.
pub fn is_temp(name: &str) -> bool {
    name.starts_with(".tmp-") || sequential_support::fs::temp_owner(name).is_some()
}

/// Replaces `path` with `bytes` through a temp file and a rename, without fsync (for caches,
/// where a torn or stale file only costs recomputation).
pub fn replace_unsynced(path: &Path, bytes: &[u8]) -> Result<()> {
    Ok(sequential_support::fs::replace_unsynced(path, bytes)?)
}

/// Removes the temp files (see [`is_temp`]) in `dir`: with the writer lock held they are what a
/// killed writer left (or a reader's short-lived clock probe, which does not mind).
pub fn remove_temps(dir: &Path) -> usize {
    let mut n = 0;
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            if is_temp(&e.file_name().to_string_lossy()) && fs::remove_file(e.path()).is_ok() {
                n += 1;
            }
        }
    }
    n
}
