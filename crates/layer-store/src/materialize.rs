//! Makes a work dir equal to a target tree by applying only the differences, and builds the
//! fresh index afterwards (so the next status re-hashes nothing but racily-clean entries).

use crate::error::{IoContext, Result};
use crate::fsutil;
use crate::index::{Index, IndexEntry, Stat, fs_now};
use crate::objects::{ObjectStore, STREAM_THRESHOLD};
use crate::tree::{Entry, Kind, diff, tree_cmp};
use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// What a checkout did.
#[derive(Debug, Default, Clone, Copy)]
pub struct ApplyStats {
    /// Paths created or rewritten (files, links, directories) or re-moded.
    pub written: usize,
    /// Paths removed.
    pub removed: usize,
}

/// Makes `work` (currently described by the index `current`, root first) equal to `target`.
/// `clock_dir` is where the racy-rule timestamp is taken (the store dir).
pub fn apply_to_work(
    work: &Path,
    clock_dir: &Path,
    objects: &ObjectStore,
    current_index: &Index,
    target: &[Entry],
    progress: Option<&dyn crate::progress::Progress>,
) -> Result<(Index, ApplyStats)> {
    let current = current_index.entries.as_slice();
    let cur = match current.first() {
        Some(root) if root.entry.path.is_empty() => &current[1..],
        _ => current,
    };
    let d = diff(cur, target);
    let mut stats = ApplyStats::default();

    // 1. Removals, deepest first.
    let mut removals: Vec<&Entry> = d.deleted.clone();
    let mut chmod_only: Vec<&Entry> = Vec::new();
    let mut writes: Vec<&Entry> = d.added.clone();
    for (a, b) in &d.modified {
        let same_kind = a.kind == b.kind;
        if same_kind && (a.kind == Kind::Dir || (a.kind == Kind::File && a.content == b.content)) {
            chmod_only.push(b);
        } else {
            removals.push(a);
            writes.push(b);
        }
    }
    // Deepest first: a directory is emptied before it is removed.
    removals.sort_by(|a, b| tree_cmp(&b.path, &a.path));
    for e in &removals {
        let abs = fsutil::abs(work, &e.path);
        let r = match fs::symlink_metadata(&abs) {
            Ok(md) if md.is_dir() => fs::remove_dir_all(&abs),
            Ok(_) => fs::remove_file(&abs),
            Err(e) => Err(e),
        };
        match r {
            Ok(()) => stats.removed += 1,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).at(&abs),
        }
    }

    // 2. Creations in tree order (parents first); hard links after every file exists.
    writes.sort_by(|a, b| tree_cmp(&a.path, &b.path));
    let mut links: Vec<&Entry> = Vec::new();
    let mut dir_modes: Vec<&Entry> = Vec::new();
    let mut files: Vec<&Entry> = Vec::new();
    for e in &writes {
        let abs = fsutil::abs(work, &e.path);
        match e.kind {
            Kind::Dir => {
                match fs::create_dir(&abs) {
                    Ok(()) => {}
                    Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists && abs.is_dir() => {
                    }
                    Err(err) => return Err(err).at(&abs),
                }
                dir_modes.push(e);
            }
            Kind::File => files.push(e),
            Kind::Symlink => {
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&e.target), &abs)
                    .at(&abs)?;
            }
            Kind::Hardlink => links.push(e),
            Kind::Whiteout | Kind::Opaque => {}
        }
        stats.written += 1;
    }
    write_files(work, objects, &files, progress)?;
    for e in links {
        let abs = fsutil::abs(work, &e.path);
        let src = fsutil::abs(work, &e.target);
        fs::hard_link(&src, &abs).at(&abs)?;
    }
    for e in chmod_only {
        let abs = fsutil::abs(work, &e.path);
        if e.kind == Kind::Dir {
            dir_modes.push(e);
        } else {
            fs::set_permissions(&abs, fs::Permissions::from_mode(e.mode)).at(&abs)?;
        }
        stats.written += 1;
    }
    dir_modes.sort_by(|a, b| tree_cmp(&b.path, &a.path));
    for e in dir_modes {
        let abs = fsutil::abs(work, &e.path);
        fs::set_permissions(&abs, fs::Permissions::from_mode(e.mode)).at(&abs)?;
    }

    // 3. Fresh index: stat data is re-read for the paths written and the directories whose
    //    contents changed (their mtime moved); everything else keeps the stat data just scanned.
    let mut touched: HashSet<&[u8]> = HashSet::new();
    for e in writes.iter().chain(removals.iter()) {
        touched.insert(&e.path);
        let mut p = e.path.as_slice();
        while !p.is_empty() {
            p = crate::tree::parent_of(p);
            touched.insert(p);
        }
    }
    for (_, b) in &d.modified {
        touched.insert(&b.path);
    }
    let lstat = |rel: &[u8]| -> Result<Stat> {
        let abs = fsutil::abs(work, rel);
        Ok(Stat::from(&fs::symlink_metadata(&abs).at(&abs)?))
    };
    let mut entries = Vec::with_capacity(target.len() + 1);
    let root_stat = lstat(b"")?;
    entries.push(IndexEntry {
        entry: Entry {
            path: Vec::new(),
            kind: Kind::Dir,
            mode: root_stat.mode & 0o7777,
            size: 0,
            content: crate::id::Digest::ZERO,
            target: Vec::new(),
        },
        stat: root_stat,
    });
    // `current` and `target` are both in tree order: merge-join them.
    let mut i = current
        .iter()
        .position(|e| !e.entry.path.is_empty())
        .unwrap_or(current.len());
    for e in target {
        while i < current.len()
            && tree_cmp(&current[i].entry.path, &e.path) == std::cmp::Ordering::Less
        {
            i += 1;
        }
        let known = current
            .get(i)
            .filter(|c| c.entry.path == e.path && c.entry.kind == e.kind);
        let stat = match known {
            Some(c)
                if !touched.contains(e.path.as_slice())
                    && (c.entry.kind == Kind::Dir || c.stat.nlink < 2) =>
            {
                // Git's smudge: an entry that was racy when it was hashed stays suspect under
                // the newer timestamp of this index, so it must never match again.
                let mut st = c.stat;
                if st.racy(current_index.time) {
                    st.size = u64::MAX;
                }
                st
            }
            _ => lstat(&e.path)?,
        };
        entries.push(IndexEntry {
            entry: e.clone(),
            stat,
        });
    }
    let time = fs_now(clock_dir)?;
    Ok((
        Index {
            time,
            base: None,
            entries,
        },
        stats,
    ))
}

/// Writes regular files (their directories exist) on two threads when there are many.
fn write_files(
    work: &Path,
    objects: &ObjectStore,
    files: &[&Entry],
    progress: Option<&dyn crate::progress::Progress>,
) -> Result<()> {
    let counter =
        crate::progress::Counter::new(progress, crate::progress::Phase::Writing, files.len());
    if files.len() < 64 {
        for e in files {
            write_file(objects, &fsutil::abs(work, &e.path), e)?;
            counter.add(e.size);
        }
        return Ok(());
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let first_err: std::sync::Mutex<Option<crate::Error>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= files.len() || first_err.lock().expect("err lock").is_some() {
                        return;
                    }
                    let e = files[i];
                    if let Err(err) = write_file(objects, &fsutil::abs(work, &e.path), e) {
                        first_err.lock().expect("err lock").get_or_insert(err);
                        return;
                    }
                    counter.add(e.size);
                }
            });
        }
    });
    match first_err.into_inner().expect("err lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn write_file(objects: &ObjectStore, abs: &Path, e: &Entry) -> Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(e.mode)
        .open(abs)
        .at(abs)?;
    let who = format!("file {}", abs.display());
    if e.size > STREAM_THRESHOLD {
        let mut w = std::io::BufWriter::with_capacity(1 << 20, &mut f);
        objects.write_to(&e.content, &who, &mut w)?;
        w.flush().at(abs)?;
    } else {
        let data = objects.read(&e.content, &who)?;
        f.write_all(&data).at(abs)?;
    }
    // The umask may have cleared bits; set them exactly.
    f.set_permissions(fs::Permissions::from_mode(e.mode))
        .at(abs)?;
    Ok(())
}
