//! The bad-input list of issue 6.

use crate::util::{Fixture, snapshot};
use sequential_layer_store::{CheckoutOptions, Error, Store};
use std::fs;

#[test]
fn a_work_dir_inside_the_store_dir_or_the_reverse_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    for work in [
        store.clone(),
        store.join("objects"),
        store.join("a/b"),
        store.join(".hidden"),
    ] {
        match Store::open(&store, &work) {
            Err(Error::Invalid {
                what: "work dir", ..
            }) => {}
            other => panic!("work {} accepted: {other:?}", work.display()),
        }
    }
    let work = tmp.path().join("w");
    match Store::open(work.join("inner/store"), &work) {
        Err(Error::Invalid {
            what: "work dir", ..
        }) => {}
        other => panic!("store inside work accepted: {other:?}"),
    }
    // The default layout `<dir>/work` is fine.
    Store::open(&store, store.join("work")).unwrap();
}

#[test]
fn a_store_of_a_newer_format_is_a_clear_error_and_untouched() {
    let f = Fixture::new();
    f.run("echo 1 > a");
    let _ = &f.store;
    fs::write(f.dir().join("FORMAT"), "sequential-layer-store format 99\n").unwrap();
    let before = snapshot(&f.dir());
    match Store::open(f.dir(), f.work()) {
        Err(
            e @ Error::UnsupportedFormat {
                found: 99,
                supported: 1,
                ..
            },
        ) => {
            assert!(e.to_string().contains("newer"), "{e}");
        }
        other => panic!("expected UnsupportedFormat, got {other:?}"),
    }
    assert_eq!(snapshot(&f.dir()), before);
    // A non-empty directory that is not a store is refused too.
    let other = f.tmp.path().join("other");
    fs::create_dir(&other).unwrap();
    fs::write(other.join("file"), "x").unwrap();
    assert!(matches!(
        Store::open(&other, f.tmp.path().join("w2")),
        Err(Error::NotAStore { .. })
    ));
}

#[test]
fn a_corrupted_object_is_detected_named_and_reported_by_verify() {
    let f = Fixture::new();
    f.sh("head -c 65536 /dev/urandom > blob");
    let r = f.run("true");
    let content = fs::read(f.work().join("blob")).unwrap();
    let id = sequential_layer_store::Digest::of(&content).hex();
    assert!(f.store.verify().unwrap().ok);
    // Flip one byte inside the file's record (the first object of the pack).
    let objects = f.dir().join("objects");
    let pack = fs::read_dir(&objects)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "pack"))
        .unwrap();
    let mut bytes = fs::read(&pack).unwrap();
    bytes[8 + 49 + 1000] ^= 0xff;
    fs::write(&pack, bytes).unwrap();
    let store = f.reopen();
    let err = store.cat(&r.hash, "blob").unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(
        err.to_string().contains(&id),
        "error must name the object: {err}"
    );
    let v = store.verify().unwrap();
    assert!(!v.ok);
    assert!(v.errors.iter().any(|e| e.contains(&id)), "{v:?}");
    // Rebuild refuses to write corrupt content.
    fs::remove_dir_all(f.work()).unwrap();
    assert!(matches!(store.rebuild(), Err(Error::Corrupt { .. })));
}

#[test]
fn a_missing_work_dir_is_created_on_open_and_reported_later() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("not/yet");
    let store = Store::open(tmp.path().join("s"), &work).unwrap();
    assert!(work.is_dir());
    store.run("echo 1 > a", &crate::util::quiet()).unwrap();
    fs::remove_dir_all(tmp.path().join("not")).unwrap();
    for r in [
        store.status().map(|_| ()),
        store.run("true", &crate::util::quiet()).map(|_| ()),
    ] {
        match r {
            Err(e @ Error::WorkDirMissing { .. }) => assert!(e.to_string().contains("rebuild")),
            other => panic!("expected WorkDirMissing, got {other:?}"),
        }
    }
    store.rebuild().unwrap();
    assert_eq!(fs::read_to_string(work.join("a")).unwrap(), "1\n");
}

#[test]
fn a_tag_name_that_is_a_hash_prefix_is_refused() {
    let f = Fixture::new();
    let r = f.run("echo 1 > a");
    for bad in [
        &r.hash[..7],
        "deadbeef",
        "HEAD",
        "",
        "a b",
        "../x",
        ".hidden",
        "HEAD~1",
    ] {
        assert!(
            matches!(
                f.store.tag(bad, None),
                Err(Error::Invalid {
                    what: "tag name",
                    ..
                })
            ),
            "tag {bad:?} accepted"
        );
    }
    f.store.tag("v1.0-rc_1", None).unwrap();
    f.store.tag("abc", None).unwrap();
    f.store.tag("team/feature", None).unwrap();
}

#[test]
fn checkout_with_uncommitted_changes_is_refused_unless_forced_and_lists_them() {
    let f = Fixture::new();
    let r1 = f.run("echo 1 > a && echo 2 > b");
    f.run("echo 3 > c");
    f.sh("echo edited > a && rm b && echo new > untracked");
    let err = f
        .store
        .checkout(&r1.hash, CheckoutOptions::default())
        .unwrap_err();
    match &err {
        Error::Dirty { changes, .. } => {
            assert_eq!(
                changes,
                &vec!["A untracked".to_string(), "M a".into(), "D b".into()]
            );
        }
        other => panic!("expected Dirty, got {other:?}"),
    }
    assert!(err.to_string().contains("untracked"));
    assert_eq!(
        fs::read_to_string(f.work().join("a")).unwrap(),
        "edited\n",
        "refused checkout touched nothing"
    );
    f.store
        .checkout(&r1.hash, CheckoutOptions { force: true })
        .unwrap();
    assert_eq!(fs::read_to_string(f.work().join("a")).unwrap(), "1\n");
    assert!(!f.work().join("untracked").exists() && !f.work().join("c").exists());
    f.assert_clean("after forced checkout");
}

#[test]
fn exit_codes_follow_the_command_and_the_cli_conventions() {
    let f = Fixture::new();
    let e = f.store.run("exit 42", &crate::util::quiet()).unwrap_err();
    assert_eq!(e.exit_code(), 42);
    assert_eq!(f.store.resolve("nope").unwrap_err().exit_code(), 2);
}

#[test]
fn a_half_deleted_unreachable_history_only_warns_and_gc_removes_it() {
    let f = Fixture::new();
    let r1 = f.run("echo 1 > a");
    f.run("echo 2 > b");
    // What a reset or gc killed half-way can leave: no ref reaches the states any more, and
    // one of them lost its record.
    f.store
        .checkout("HEAD~2", CheckoutOptions::default())
        .unwrap();
    for k in fs::read_dir(f.dir().join("keys")).unwrap() {
        fs::remove_file(k.unwrap().path()).unwrap();
    }
    fs::remove_file(f.dir().join("states").join(&r1.hash)).unwrap();
    let v = f.store.verify().unwrap();
    assert!(v.ok, "{v:?}");
    assert!(
        v.warnings.iter().any(|w| w.contains("unreachable")),
        "{v:?}"
    );
    assert_eq!(f.store.gc().unwrap().states_removed, 1);
    let v = f.store.verify().unwrap();
    assert!(v.ok && v.warnings.is_empty(), "{v:?}");
    // A reachable state with a missing parent is an error.
    let a = f.run("echo 1 > a");
    f.run("echo 2 > b");
    fs::remove_file(f.dir().join("states").join(&a.hash)).unwrap();
    assert!(!f.store.verify().unwrap().ok);
}

#[test]
fn temp_files_of_a_killed_writer_only_warn_and_gc_removes_them() {
    let f = Fixture::new();
    f.run("echo 1 > a");
    // Today's temp names (`.<name>.<pid>.<n>.tmp`) and those of earlier builds (`.tmp-*`).
    let leftovers = [
        f.dir().join("objects/.pack.999999999.0.tmp"),
        f.dir().join("states/.tmp-abc-0123"),
        f.dir().join(".HEAD.999999999.3.tmp"),
    ];
    for p in &leftovers {
        fs::write(p, b"partial").unwrap();
    }
    let v = f.store.verify().unwrap();
    assert!(v.ok, "{v:?}");
    assert_eq!(
        v.warnings
            .iter()
            .filter(|w| w.contains("leftover temp file"))
            .count(),
        3,
        "{v:?}"
    );
    f.store.gc().unwrap();
    assert!(leftovers.iter().all(|p| !p.exists()));
    let v = f.store.verify().unwrap();
    assert!(v.ok && v.warnings.is_empty(), "{v:?}");
}
