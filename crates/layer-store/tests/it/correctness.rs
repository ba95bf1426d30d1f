//! The correctness list of issue 6 (single process).

use crate::util::{Fixture, quiet};
use sequential_layer_store::{CheckoutOptions, Error, ResetMode};
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn first_run_creates_a_64_hex_id_and_a_12_char_short() {
    let f = Fixture::new();
    let r = f.run("echo hello > a");
    assert_eq!(r.hash.len(), 64);
    assert!(
        r.hash
            .bytes()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    assert_eq!(r.short, r.hash[..12]);
    assert!(!r.cached);
    assert_eq!(r.parent, None);
    assert_eq!(r.instruction, "echo hello > a");
    assert_eq!(f.store.head().unwrap().unwrap().hex(), r.hash);
    let json = serde_json::to_value(&r).unwrap();
    for k in ["hash", "short", "cached", "instruction", "parent"] {
        assert!(json.get(k).is_some(), "missing {k} in {json}");
    }
}

#[test]
fn a_different_instruction_is_not_cached() {
    let f = Fixture::new();
    let a = f.run("echo x > a");
    f.store
        .checkout("HEAD~1", CheckoutOptions::default())
        .unwrap();
    let b = f.run("echo x > a ");
    assert!(!b.cached);
    // Same change, same state id, but it ran.
    assert_eq!(a.hash, b.hash);
    let env = sequential_layer_store::RunOptions {
        env: vec![("V".into(), "1".into())],
        ..quiet()
    };
    f.store
        .checkout("HEAD~1", CheckoutOptions::default())
        .unwrap();
    assert!(
        !f.store.run("echo x > a", &env).unwrap().cached,
        "a different environment is a different key"
    );
    f.store
        .checkout("HEAD~1", CheckoutOptions::default())
        .unwrap();
    assert!(f.store.run("echo x > a", &quiet()).unwrap().cached);
}

#[test]
fn three_runs_make_three_layers_with_the_right_parent_chain() {
    let f = Fixture::new();
    let r1 = f.run("echo 1 > one");
    let r2 = f.run("echo 2 > two");
    let r3 = f.run("echo 3 > three");
    let h = f.store.history().unwrap();
    assert_eq!(h.len(), 3);
    assert_eq!(
        h.iter().map(|e| e.hash.as_str()).collect::<Vec<_>>(),
        vec![&r3.hash, &r2.hash, &r1.hash]
    );
    assert_eq!(h[0].parent.as_deref(), Some(r2.hash.as_str()));
    assert_eq!(h[0].parent_short.as_deref(), Some(&r2.hash[..12]));
    assert_eq!(h[1].parent.as_deref(), Some(r1.hash.as_str()));
    assert_eq!(h[2].parent, None);
    assert_eq!(h[1].instruction, "echo 2 > two");
    assert!(
        h[0].time.ends_with('Z') && h[0].time.len() == 24,
        "{}",
        h[0].time
    );
    let json = serde_json::to_value(&h[0]).unwrap();
    assert!(json.get("parentShort").is_some());
    let i = f.store.inspect("HEAD~1").unwrap();
    assert_eq!(i.hash, r2.hash);
    assert_eq!((i.files, i.size), (1, 2));
    assert!(i.compressed_size > 0);
    assert_eq!(f.store.resolve("HEAD~2").unwrap().hex(), r1.hash);
}

#[test]
fn checkout_older_then_newer() {
    let f = Fixture::new();
    let r1 = f.run("echo v1 > f");
    let r2 = f.run("echo v2 > f && echo n > new");
    f.store
        .checkout(&r1.short, CheckoutOptions::default())
        .unwrap();
    assert_eq!(fs::read_to_string(f.work().join("f")).unwrap(), "v1\n");
    assert!(!f.work().join("new").exists());
    let out = f
        .store
        .checkout(&r2.hash[..7], CheckoutOptions::default())
        .unwrap();
    assert_eq!(out.hash.as_deref(), Some(r2.hash.as_str()));
    assert_eq!(fs::read_to_string(f.work().join("f")).unwrap(), "v2\n");
    assert_eq!(fs::read_to_string(f.work().join("new")).unwrap(), "n\n");
    assert_eq!(out.written, 2, "only the differences are written");
}

#[test]
fn rebuild_after_the_work_dir_is_deleted() {
    let f = Fixture::new();
    f.run("mkdir -p a/b && echo 1 > a/b/c && ln -s a/b/c l && chmod 711 a");
    f.run("echo 2 > a/b/d && rm l");
    let want = f.snap();
    fs::remove_dir_all(f.work()).unwrap();
    assert!(matches!(
        f.store.status(),
        Err(Error::WorkDirMissing { .. })
    ));
    let out = f.store.rebuild().unwrap();
    assert_eq!(out.written, 4);
    assert_eq!(f.snap(), want);
    f.assert_clean("after rebuild");
}

#[test]
fn reset_forgets_history_and_hard_reset_empties_the_work_dir() {
    let f = Fixture::new();
    f.run("echo 1 > a");
    f.store.tag("t1", None).unwrap();
    f.run("echo 2 > b");
    let out = f.store.reset(ResetMode::Soft).unwrap();
    assert_eq!(out.states_removed, 2);
    assert_eq!(f.store.head().unwrap(), None);
    assert!(f.store.history().unwrap().is_empty());
    assert!(f.store.tags().unwrap().is_empty());
    assert!(f.work().join("a").exists());
    let st = f.store.status().unwrap();
    assert_eq!(st.added, vec!["a", "b"]);
    // Not a cache hit any more: the key is forgotten.
    assert!(!f.run("echo 1 > a").cached);
    f.store.reset(ResetMode::Hard).unwrap();
    assert!(fs::read_dir(f.work()).unwrap().next().is_none());
    assert!(f.store.verify().unwrap().ok);
    f.run("echo again > a");
}

#[test]
fn batch_runs_in_order_and_stops_at_the_first_failure() {
    let f = Fixture::new();
    let b = f
        .store
        .batch(
            &["echo 1 > a", "echo 2 > b", "exit 4", "echo 3 > c"],
            &quiet(),
        )
        .unwrap();
    assert_eq!(b.results.len(), 2);
    let failed = b.failed.unwrap();
    assert_eq!((failed.index, failed.code), (2, 4));
    assert!(!f.work().join("c").exists());
    assert_eq!(f.store.history().unwrap().len(), 2);
    assert_eq!(
        b.results[1].parent.as_deref(),
        Some(b.results[0].hash.as_str())
    );
}

#[test]
fn nested_directories_binary_files_and_executable_bits() {
    let f = Fixture::new();
    let deep = "a/b/c/d/e/f/g/h/i/j";
    let bin: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    fs::create_dir_all(f.work().join(deep)).unwrap();
    fs::write(f.work().join(deep).join("bin"), &bin).unwrap();
    f.sh("printf '#!/bin/sh\\necho hi\\n' > tool && chmod 755 tool && chmod 4750 a/b");
    let r = f.run("true");
    let want = f.snap();
    assert_eq!(f.store.cat(&r.hash, &format!("{deep}/bin")).unwrap(), bin);
    f.store
        .checkout("HEAD", CheckoutOptions { force: true })
        .unwrap();
    fs::remove_dir_all(f.work()).unwrap();
    f.store.rebuild().unwrap();
    assert_eq!(f.snap(), want);
    let m = fs::metadata(f.work().join("tool")).unwrap();
    assert_eq!(m.permissions().mode() & 0o7777, 0o755);
    assert_eq!(
        fs::metadata(f.work().join("a/b")).unwrap().mode() & 0o7777,
        0o4750
    );
    let ls = f.store.ls("HEAD", deep).unwrap();
    assert_eq!(ls.len(), 1);
    assert_eq!(
        (ls[0].name.as_str(), ls[0].kind.as_str(), ls[0].size),
        ("bin", "file", 70_000)
    );
}

#[test]
fn symlinks_and_retargets() {
    let f = Fixture::new();
    let r1 = f.run("echo t > target && ln -s target rel && ln -s /nonexistent/abs dangling && mkdir d && ln -s ../target d/up");
    let r2 = f.run("ln -sfn d rel && rm dangling && ln -s elsewhere dangling");
    assert_eq!(
        f.store.diff(&r1.hash, Some(&r2.hash)).unwrap().modified,
        vec!["dangling", "rel"]
    );
    f.store
        .checkout(&r1.hash, CheckoutOptions::default())
        .unwrap();
    assert_eq!(
        fs::read_link(f.work().join("rel")).unwrap().to_str(),
        Some("target")
    );
    assert_eq!(
        fs::read_link(f.work().join("dangling")).unwrap().to_str(),
        Some("/nonexistent/abs")
    );
    f.store
        .checkout(&r2.hash, CheckoutOptions::default())
        .unwrap();
    assert_eq!(
        fs::read_link(f.work().join("rel")).unwrap().to_str(),
        Some("d")
    );
    let ls = f.store.ls("HEAD", "").unwrap();
    let rel = ls.iter().find(|e| e.name == "rel").unwrap();
    assert_eq!(
        (rel.kind.as_str(), rel.target.as_deref()),
        ("symlink", Some("d"))
    );
    f.assert_clean("after symlink checkout");
}

#[test]
fn empty_directories_are_recorded() {
    let f = Fixture::new();
    let r1 = f.run("mkdir -p empty a/deep/empty2 && chmod 700 empty");
    let r2 = f.run("rmdir a/deep/empty2");
    f.store
        .checkout(&r1.hash, CheckoutOptions::default())
        .unwrap();
    assert!(f.work().join("a/deep/empty2").is_dir());
    assert_eq!(
        fs::metadata(f.work().join("empty")).unwrap().mode() & 0o777,
        0o700
    );
    f.store
        .checkout(&r2.hash, CheckoutOptions::default())
        .unwrap();
    assert!(!f.work().join("a/deep/empty2").exists());
    assert!(f.work().join("a/deep").is_dir());
}

#[test]
fn a_file_replaced_by_a_directory_and_back() {
    let f = Fixture::new();
    let r1 = f.run("echo file > x");
    let t1 = f.snap();
    let r2 = f.run("rm x && mkdir -p x/y && echo inner > x/y/z");
    let t2 = f.snap();
    let r3 = f.run("rm -r x && echo file-again > x");
    let t3 = f.snap();
    for (h, t) in [
        (&r1.hash, &t1),
        (&r2.hash, &t2),
        (&r3.hash, &t3),
        (&r1.hash, &t1),
        (&r3.hash, &t3),
        (&r2.hash, &t2),
    ] {
        f.store.checkout(h, CheckoutOptions::default()).unwrap();
        assert_eq!(&f.snap(), t);
        f.assert_clean("after type-change checkout");
    }
    fs::remove_dir_all(f.work()).unwrap();
    f.store.rebuild().unwrap();
    assert_eq!(f.snap(), t2);
}

#[test]
fn hardlinks_are_recorded_and_recreated() {
    let f = Fixture::new();
    f.run("echo shared > a && mkdir d && ln a d/b && ln a c");
    let want = f.snap();
    assert!(want["a"].contains("link-group"), "{want:?}");
    let ls = f.store.ls("HEAD", "").unwrap();
    let c = ls.iter().find(|e| e.name == "c").unwrap();
    assert_eq!(
        (c.kind.as_str(), c.target.as_deref()),
        ("hardlink", Some("a"))
    );
    fs::remove_dir_all(f.work()).unwrap();
    f.store.rebuild().unwrap();
    assert_eq!(f.snap(), want);
    let ino = |p: &str| fs::metadata(f.work().join(p)).unwrap().ino();
    assert_eq!(ino("a"), ino("d/b"));
    assert_eq!(ino("a"), ino("c"));
    f.assert_clean("after rebuilding hard links");
    // Breaking the link is a change.
    f.run("cp c c.tmp && rm c && mv c.tmp c");
    assert_eq!(f.store.diff("HEAD~1", None).unwrap().modified, vec!["c"]);
}

#[test]
fn names_with_spaces_newlines_and_non_ascii() {
    let f = Fixture::new();
    let names = [
        "with space",
        "new\nline",
        "ünïcødé ✓",
        "tab\there",
        "-dash",
        "quote'\"",
    ];
    for n in names {
        fs::write(f.work().join(n), n.as_bytes()).unwrap();
    }
    fs::create_dir(f.work().join("dir with\nnewline")).unwrap();
    fs::write(f.work().join("dir with\nnewline/日本"), "x").unwrap();
    let r = f.run("true");
    let want = f.snap();
    for n in names {
        assert_eq!(f.store.cat(&r.hash, n).unwrap(), n.as_bytes());
    }
    fs::remove_dir_all(f.work()).unwrap();
    f.store.rebuild().unwrap();
    assert_eq!(f.snap(), want);
    f.assert_clean("after rebuild with odd names");
}

#[test]
fn a_10_mib_file_and_a_streamed_20_mib_file() {
    let f = Fixture::new();
    f.sh("head -c 10485760 /dev/urandom > ten && head -c 20971520 /dev/urandom > twenty && yes abc | head -c 20000000 > text");
    let r = f.run("true");
    let want = f.snap();
    assert_eq!(
        f.store.cat(&r.hash, "ten").unwrap(),
        fs::read(f.work().join("ten")).unwrap()
    );
    fs::remove_dir_all(f.work()).unwrap();
    f.store.rebuild().unwrap();
    assert_eq!(f.snap(), want);
    // Appending 4 KiB to the big file stores it again, and both states stay readable.
    let r2 = f.run("head -c 4096 /dev/urandom >> twenty");
    f.store
        .checkout(&r.hash, CheckoutOptions::default())
        .unwrap();
    assert_eq!(f.snap(), want);
    f.store
        .checkout(&r2.hash, CheckoutOptions::default())
        .unwrap();
    assert_eq!(
        fs::metadata(f.work().join("twenty")).unwrap().len(),
        20971520 + 4096
    );
    assert!(f.store.verify().unwrap().ok);
    // Big files are chunked by content: 4 KiB overwritten in the middle of the (incompressible)
    // 20 MiB file stores a chunk or two, not the file.
    let r3 = f
        .run("head -c 4096 /dev/urandom | dd of=twenty bs=4096 seek=2500 conv=notrunc status=none");
    let cost = f.store.inspect(&r3.hash).unwrap().compressed_size;
    assert!(cost < 9 << 20, "a 4 KiB edit cost {cost} bytes");
    let want = f.snap();
    f.store.gc().unwrap();
    assert!(f.store.verify().unwrap().ok);
    for h in [&r.hash, &r2.hash] {
        f.store.checkout(h, CheckoutOptions::default()).unwrap();
    }
    f.store
        .checkout(&r3.hash, CheckoutOptions::default())
        .unwrap();
    assert_eq!(f.snap(), want);
}

#[test]
fn ten_thousand_files() {
    let f = Fixture::new();
    for d in 0..100 {
        let dir = f.work().join(format!("d{d:03}"));
        fs::create_dir(&dir).unwrap();
        for i in 0..100 {
            fs::write(dir.join(format!("f{i:03}")), format!("{d}/{i}\n")).unwrap();
        }
    }
    let r = f.run("true");
    assert_eq!(f.store.inspect(&r.hash).unwrap().files, 10_100);
    f.assert_clean("after capturing 10,000 files");
    let r2 = f.run("rm -r d050 && echo changed > d001/f001");
    let d = f.store.diff(&r.hash, Some(&r2.hash)).unwrap();
    assert_eq!((d.deleted.len(), d.modified.len()), (101, 1));
    f.store
        .checkout(&r.hash, CheckoutOptions::default())
        .unwrap();
    assert_eq!(fs::read_dir(f.work().join("d050")).unwrap().count(), 100);
    fs::remove_dir_all(f.work()).unwrap();
    f.store.rebuild().unwrap();
    f.assert_clean("after rebuilding 10,000 files");
}

#[test]
fn unknown_and_ambiguous_refs_list_candidates() {
    let f = Fixture::new();
    let r = f.run("echo 1 > a");
    f.store.tag("release", None).unwrap();
    match f.store.resolve("nope") {
        Err(Error::UnknownRef { candidates, .. }) => assert_eq!(candidates, vec!["release"]),
        other => panic!("expected UnknownRef, got {other:?}"),
    }
    assert!(matches!(
        f.store.resolve("0000000"),
        Err(Error::UnknownRef { .. })
    ));
    assert!(matches!(
        f.store.resolve("HEAD~5"),
        Err(Error::UnknownRef { .. })
    ));
    assert_eq!(f.store.resolve("release").unwrap().hex(), r.hash);
    assert_eq!(
        f.store.resolve(&r.hash.to_uppercase()).unwrap().hex(),
        r.hash
    );
    // Two states sharing a 7-char prefix cannot be made on purpose; fake a second record name.
    let states = f.dir().join("states");
    let mut twin = r.hash.clone();
    twin.replace_range(
        60..,
        if &r.hash[60..] == "0000" {
            "1111"
        } else {
            "0000"
        },
    );
    fs::copy(states.join(&r.hash), states.join(&twin)).unwrap();
    match f.store.resolve(&r.hash[..10]) {
        Err(Error::AmbiguousRef { candidates, .. }) => {
            assert_eq!(candidates.len(), 2);
            assert!(candidates.contains(&r.hash) && candidates.contains(&twin));
        }
        other => panic!("expected AmbiguousRef, got {other:?}"),
    }
    let msg = f.store.resolve(&r.hash[..10]).unwrap_err().to_string();
    assert!(msg.contains(&twin), "{msg}");
}

#[test]
fn exec_creates_no_layer() {
    let f = Fixture::new();
    f.run("echo 1 > a");
    let head = f.store.head().unwrap();
    let out = f
        .store
        .exec(
            "echo out; echo 2 > b; exit 3",
            &sequential_layer_store::RunOptions {
                output: sequential_layer_store::Output::Capture,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(out.code, 3);
    assert_eq!(out.stdout.as_deref(), Some("out\n"));
    assert_eq!(f.store.head().unwrap(), head);
    assert_eq!(f.store.history().unwrap().len(), 1);
    assert_eq!(f.store.status().unwrap().added, vec!["b"]);
}

#[test]
fn a_failing_command_creates_no_layer_and_passes_its_exit_code() {
    let f = Fixture::new();
    f.run("echo 1 > a");
    let head = f.store.head().unwrap();
    match f.store.run("echo partial > p; exit 7", &quiet()) {
        Err(Error::CommandFailed {
            code, instruction, ..
        }) => {
            assert_eq!(code, 7);
            assert_eq!(instruction, "echo partial > p; exit 7");
        }
        other => panic!("expected CommandFailed, got {other:?}"),
    }
    assert_eq!(f.store.head().unwrap(), head);
    assert_eq!(f.store.history().unwrap().len(), 1);
    // With capture_failed the layer is made and the code still reported.
    let opts = sequential_layer_store::RunOptions {
        capture_failed: true,
        ..quiet()
    };
    assert!(matches!(
        f.store.run("echo more > q; exit 2", &opts),
        Err(Error::CommandFailed { code: 2, .. })
    ));
    assert_eq!(f.store.history().unwrap().len(), 2);
    assert!(f.store.status().unwrap().clean);
}

#[test]
fn uncommitted_changes_are_captured_by_the_next_run_and_not_cached() {
    let f = Fixture::new();
    f.run("echo 1 > a");
    f.run("echo 2 > b");
    f.store
        .checkout("HEAD~1", CheckoutOptions::default())
        .unwrap();
    f.sh("echo dirty > d");
    let r = f.run("echo 2 > b");
    assert!(
        !r.cached,
        "a dirty work dir must not take the cached result"
    );
    assert!(f.store.cat("HEAD", "d").is_ok());
    f.assert_clean("after capturing");
}

#[test]
fn tags_checkpoints_gc_ls_cat_and_verify() {
    let f = Fixture::new();
    let r1 = f.run("echo 1 > a && head -c 50000 /dev/urandom > big1");
    f.store.checkpoint("first").unwrap();
    let r2 = f.run("rm big1 && echo 2 > b");
    f.store.tag("second", None).unwrap();
    assert_eq!(f.store.checkpoints().unwrap()[0].name, "first");
    assert_eq!(
        f.store
            .tags()
            .unwrap()
            .iter()
            .map(|t| t.name.as_str())
            .collect::<Vec<_>>(),
        vec!["checkpoint/first", "second"]
    );
    f.store
        .restore("first", CheckoutOptions::default())
        .unwrap();
    assert_eq!(f.store.head().unwrap().unwrap().hex(), r1.hash);
    f.store.untag("second").unwrap();
    assert!(f.store.untag("second").is_err());
    // r2 is still reachable through its cache key.
    let g = f.store.gc().unwrap();
    assert_eq!(g.states_removed, 0);
    assert_eq!(f.store.cat(&r2.hash, "b").unwrap(), b"2\n");
    // After a reset + new history, the old objects go away.
    f.store.reset(ResetMode::Hard).unwrap();
    let r3 = f.run("echo 3 > c");
    let g = f.store.gc().unwrap();
    assert_eq!(g.packs_after, 1);
    assert_eq!(f.store.cat(&r3.hash, "c").unwrap(), b"3\n");
    let v = f.store.verify().unwrap();
    assert!(v.ok, "{v:?}");
    assert!(f.store.cat("HEAD", "nope").is_err());
    assert!(f.store.ls("HEAD", "c").is_err());
}

#[derive(Default)]
struct Seen(std::sync::Mutex<Vec<(sequential_layer_store::Phase, u64, u64)>>);

impl sequential_layer_store::Progress for Seen {
    fn update(&self, phase: sequential_layer_store::Phase, done: u64, total: u64, _bytes: u64) {
        self.0.lock().unwrap().push((phase, done, total));
    }
}

#[test]
fn progress_is_reported_for_captures_and_checkouts() {
    use sequential_layer_store::Phase;
    let tmp = tempfile::tempdir().unwrap();
    let seen = std::sync::Arc::new(Seen::default());
    let store = sequential_layer_store::Store::open(tmp.path().join("s"), tmp.path().join("w"))
        .unwrap()
        .with_progress(seen.clone());
    let r = store
        .run(
            "i=0; while [ $i -lt 300 ]; do echo $i > f$i; i=$((i+1)); done",
            &quiet(),
        )
        .unwrap();
    let last = *seen.0.lock().unwrap().last().unwrap();
    assert_eq!(last, (Phase::Capturing, 300, 300));
    store
        .checkout("HEAD~1", CheckoutOptions::default())
        .unwrap();
    seen.0.lock().unwrap().clear();
    store.checkout(&r.hash, CheckoutOptions::default()).unwrap();
    let updates = seen.0.lock().unwrap().clone();
    assert_eq!(
        updates.last(),
        Some(&(Phase::Writing, 300, 300)),
        "{updates:?}"
    );
    assert!(updates.len() >= 2, "reported along the way: {updates:?}");
}

#[test]
fn a_store_can_be_shared_between_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<sequential_layer_store::Store>();
    // Lock-free readers beside a writer in the same process.
    let f = Fixture::new();
    f.run("echo 0 > n");
    std::thread::scope(|s| {
        let reader = s.spawn(|| {
            for _ in 0..20 {
                f.store.history().unwrap();
                f.store.cat("HEAD", "n").unwrap();
            }
        });
        for i in 1..5 {
            f.run(&format!("echo {i} > n"));
        }
        reader.join().unwrap();
    });
    assert_eq!(f.store.cat("HEAD", "n").unwrap(), b"4\n");
}
