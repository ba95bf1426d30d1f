//! The changeset algebra (OCI whiteouts, opaque dirs, ordering) and edge cases of capture.

use crate::util::{Fixture, quiet};
use sequential_layer_store::tree::{self, Entry, Kind};
use sequential_layer_store::{Digest, Error, Store};

fn e(path: &str, kind: Kind, content: u8) -> Entry {
    Entry {
        path: path.as_bytes().to_vec(),
        kind,
        mode: if kind == Kind::Dir { 0o755 } else { 0o644 },
        size: match kind {
            Kind::File => content as u64,
            Kind::Symlink => 1,
            _ => 0,
        },
        content: if kind == Kind::File {
            Digest([content; 32])
        } else {
            Digest::ZERO
        },
        target: if kind == Kind::Symlink {
            b"t".to_vec()
        } else {
            Vec::new()
        },
    }
}

fn sorted(mut v: Vec<Entry>) -> Vec<Entry> {
    v.sort_by(|a, b| tree::tree_cmp(&a.path, &b.path));
    v
}

#[test]
fn whiteouts_come_before_siblings_and_an_emptied_dir_becomes_opaque() {
    let base = sorted(vec![
        e("a", Kind::Dir, 0),
        e("a/x", Kind::File, 1),
        e("a/y", Kind::File, 2),
        e("b", Kind::Dir, 0),
        e("b/keep", Kind::File, 3),
        e("b/zap", Kind::File, 4),
        e("gone", Kind::Dir, 0),
        e("gone/deep", Kind::File, 5),
    ]);
    let new = sorted(vec![
        e("a", Kind::Dir, 0),
        e("a/new", Kind::File, 6),
        e("b", Kind::Dir, 0),
        e("b/keep", Kind::File, 3),
        e("b/add", Kind::File, 7),
    ]);
    let cs = tree::changeset(&base, &new);
    let names: Vec<String> = cs
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).into_owned())
        .collect();
    assert_eq!(names, expected_order());
    assert_eq!(tree::apply(&base, &cs).unwrap(), new);
}

fn expected_order() -> Vec<String> {
    // Root level: the whiteout of `gone` comes before the siblings `a` and `b`.
    [".wh.gone", "a/.wh..wh..opq", "a/new", "b/.wh.zap", "b/add"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Deterministic pseudo-random trees: apply(changeset(a, b)) == b, and the encoding is stable.
#[test]
fn changeset_then_apply_round_trips_on_generated_trees() {
    let mut rng = sequential_test_support::seed::Seeded::new(0x9e37_79b9_7f4a_7c15);
    let mut rnd = |n: u64| rng.below(n);
    for _ in 0..200 {
        let mut trees = Vec::new();
        for _ in 0..2 {
            let mut v: Vec<Entry> = Vec::new();
            let mut dirs = vec![String::new()];
            for i in 0..rnd(25) {
                let parent = dirs[rnd(dirs.len() as u64) as usize].clone();
                let name = format!("{}{}", ["n", "m", "o"][rnd(3) as usize], rnd(4));
                let path = if parent.is_empty() {
                    name
                } else {
                    format!("{parent}/{name}")
                };
                if v.iter().any(|x| x.path == path.as_bytes()) {
                    continue;
                }
                let kind = [Kind::Dir, Kind::File, Kind::Symlink][rnd(3) as usize];
                if kind == Kind::Dir {
                    dirs.push(path.clone());
                }
                v.push(e(&path, kind, (i % 3) as u8 + 1));
            }
            trees.push(sorted(v));
        }
        let cs = tree::changeset(&trees[0], &trees[1]);
        let applied = tree::apply(&trees[0], &cs)
            .unwrap_or_else(|p| panic!("does not apply at {p:?}: {cs:?}"));
        assert_eq!(applied, trees[1], "base {:?}\nchangeset {:?}", trees[0], cs);
        assert_eq!(
            tree::encode_changeset(&cs),
            tree::encode_changeset(&tree::changeset(&trees[0], &trees[1]))
        );
        assert!(tree::changeset(&trees[1], &trees[1]).is_empty());
        // The borrowed diff (used by `Store::diff`) agrees with the owned one.
        let (ea, eb) = (
            tree::encode_manifest(&trees[0]),
            tree::encode_manifest(&trees[1]),
        );
        let (ra, rb) = (
            tree::manifest_refs(&ea).unwrap(),
            tree::manifest_refs(&eb).unwrap(),
        );
        let (added, modified, deleted) = tree::diff_refs(&ra, &rb);
        let d = tree::diff(&trees[0], &trees[1]);
        assert_eq!(
            added,
            d.added
                .iter()
                .map(|e| e.path.as_slice())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            modified,
            d.modified
                .iter()
                .map(|(_, e)| e.path.as_slice())
                .collect::<Vec<_>>()
        );
        assert_eq!(
            deleted,
            d.deleted
                .iter()
                .map(|e| e.path.as_slice())
                .collect::<Vec<_>>()
        );
    }
}

#[test]
fn names_reserved_for_whiteouts_are_refused_and_special_files_skipped() {
    let f = Fixture::new();
    f.run("echo 1 > a");
    let head = f.store.head().unwrap();
    match f.store.run("touch .wh.sneaky", &quiet()) {
        Err(Error::Uncapturable { path, .. }) => assert!(path.ends_with(".wh.sneaky")),
        other => panic!("expected Uncapturable, got {other:?}"),
    }
    assert_eq!(f.store.head().unwrap(), head);
    f.sh("rm .wh.sneaky && mkfifo pipe");
    let r = f.run("echo 2 > b");
    assert!(
        f.store
            .ls(&r.hash, "")
            .unwrap()
            .iter()
            .all(|e| e.name != "pipe")
    );
    assert!(f.store.status().unwrap().clean);
}

#[test]
fn a_reader_keeps_working_while_another_store_runs_gc() {
    let f = Fixture::new();
    let r1 = f.run("echo 1 > a");
    for i in 0..5 {
        f.run(&format!("echo {i} > f{i}"));
    }
    let reader = Store::open(f.dir(), f.tmp.path().join("other-work")).unwrap();
    assert_eq!(reader.cat(&r1.hash, "a").unwrap(), b"1\n");
    let g = f.store.gc().unwrap();
    assert!(g.packs_before > 1 && g.packs_after == 1, "{g:?}");
    // The reader's pack list is stale; it reloads and reads on.
    assert_eq!(reader.cat(&r1.hash, "a").unwrap(), b"1\n");
    assert_eq!(reader.cat("HEAD", "f4").unwrap(), b"4\n");
    assert!(reader.verify().unwrap().ok);
}
