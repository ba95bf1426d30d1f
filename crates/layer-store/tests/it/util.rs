//! Fixtures: a temp store, shell helpers and an exact snapshot of a directory tree.

use sequential_layer_store::{Digest, Output, RunOptions, RunOutcome, Store};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub store: Store,
}

impl Fixture {
    pub fn new() -> Fixture {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(tmp.path().join("store"), tmp.path().join("work")).expect("open");
        Fixture { tmp, store }
    }

    pub fn dir(&self) -> PathBuf {
        self.tmp.path().join("store")
    }

    pub fn work(&self) -> PathBuf {
        self.tmp.path().join("work")
    }

    pub fn reopen(&self) -> Store {
        Store::open(self.dir(), self.work()).expect("reopen")
    }

    /// `run` that must succeed.
    pub fn run(&self, cmd: &str) -> RunOutcome {
        self.store
            .run(cmd, &quiet())
            .unwrap_or_else(|e| panic!("run {cmd:?} failed: {e}"))
    }

    /// Runs a shell command in the work dir outside the store (an "uncommitted edit").
    pub fn sh(&self, cmd: &str) {
        sh(&self.work(), cmd)
    }

    pub fn snap(&self) -> BTreeMap<String, String> {
        snapshot(&self.work())
    }

    pub fn assert_clean(&self, when: &str) {
        let st = self.store.status().expect("status");
        assert!(st.clean, "status not clean {when}: {st:?}");
    }
}

pub fn quiet() -> RunOptions {
    RunOptions {
        output: Output::Null,
        ..RunOptions::default()
    }
}

pub fn sh(dir: &Path, cmd: &str) {
    let out = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .current_dir(dir)
        .output()
        .expect("spawn sh");
    assert!(
        out.status.success(),
        "sh -c {cmd:?} in {} failed: {:?}\nstdout: {}\nstderr: {}",
        dir.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every path below `root` with kind, permission bits, content hash, link target and
/// hard-link group: two trees with equal snapshots are equal for the store.
pub fn snapshot(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut groups: HashMap<(u64, u64), usize> = HashMap::new();
    walk(root, root, &mut out, &mut groups);
    out
}

fn walk(
    root: &Path,
    dir: &Path,
    out: &mut BTreeMap<String, String>,
    groups: &mut HashMap<(u64, u64), usize>,
) {
    let mut names: Vec<_> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    names.sort();
    for n in names {
        let p = dir.join(&n);
        let rel = String::from_utf8_lossy(
            p.strip_prefix(root)
                .expect("under root")
                .as_os_str()
                .as_bytes(),
        )
        .into_owned();
        let md = fs::symlink_metadata(&p).expect("lstat");
        let mode = md.mode() & 0o7777;
        let desc = if md.is_dir() {
            walk(root, &p, out, groups);
            format!("dir {mode:o}")
        } else if md.file_type().is_symlink() {
            format!(
                "symlink -> {}",
                String::from_utf8_lossy(
                    fs::read_link(&p).expect("readlink").as_os_str().as_bytes()
                )
            )
        } else {
            let content = Digest::of(&fs::read(&p).expect("read")).short();
            let link = if md.nlink() > 1 {
                let next = groups.len();
                format!(
                    " link-group {}",
                    groups.entry((md.dev(), md.ino())).or_insert(next)
                )
            } else {
                String::new()
            };
            format!("file {mode:o} {content}{link}")
        };
        out.insert(rel, desc);
    }
}
