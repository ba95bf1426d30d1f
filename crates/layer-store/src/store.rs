//! `Store`: the struct, opening a store directory and the writer lock. The operations live in
//! the submodules, one `impl Store` block each.

mod checkout;
mod refs;
mod run;
mod status;
mod tags;
mod views;

pub use checkout::{CheckoutOptions, ResetMode};
pub(crate) use refs::{parse_digest, parse_opt_state};
pub use run::{Output, RunOptions};

use crate::error::{Error, IoContext, Result};
use crate::objects::ObjectStore;
use crate::progress::Progress;
use sequential_support::fs::{LockFile, ensure_dir, read_opt, write_atomic};
use std::fs;
use std::path::{Path, PathBuf};

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
                ensure_dir(&dir)?;
                for sub in ["objects", "states", "keys", "refs/tags", "index"] {
                    ensure_dir(&dir.join(sub))?;
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

    /// Waits for the writer lock (`<dir>/lock`, held until dropped): one writer per store;
    /// readers take no lock.
    fn lock(&self) -> Result<LockFile> {
        Ok(LockFile::exclusive(&self.dir.join("lock"))?)
    }

    /// The writer lock if nobody holds it (`None` too when it cannot be taken at all, e.g. in
    /// a read-only store).
    fn try_lock(&self) -> Option<LockFile> {
        LockFile::try_exclusive(&self.dir.join("lock"))
            .ok()
            .flatten()
    }

    pub(crate) fn objects(&self) -> &ObjectStore {
        &self.objects
    }

    pub(crate) fn writer_lock(&self) -> Result<LockFile> {
        self.lock()
    }
}
