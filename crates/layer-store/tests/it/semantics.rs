//! The five "semantics the original got wrong" of LAYER-STORE.md.

use crate::util::{Fixture, quiet};
use sequential_layer_store::{CheckoutOptions, Store};

#[test]
fn deletion_is_a_whiteout_and_stays_deleted_after_checkout_rebuild_and_cache_hit() {
    let f = Fixture::new();
    let s1 = f.run("mkdir -p d/sub && echo a > d/sub/f && echo b > g && echo keep > k");
    let del = "rm -r d && rm g";
    let s2 = f.run(del);
    assert!(!f.work().join("d").exists() && !f.work().join("g").exists());
    // The layer records whiteouts, visible without extraction.
    assert_eq!(
        f.store.diff(&s1.hash, Some(&s2.hash)).unwrap().deleted,
        vec!["d", "d/sub", "d/sub/f", "g"]
    );

    f.store
        .checkout(&s1.hash, CheckoutOptions::default())
        .unwrap();
    assert!(f.work().join("d/sub/f").exists() && f.work().join("g").exists());
    f.store
        .checkout(&s2.hash, CheckoutOptions::default())
        .unwrap();
    assert!(!f.work().join("d").exists() && !f.work().join("g").exists());
    assert!(f.work().join("k").exists());

    std::fs::remove_dir_all(f.work()).unwrap();
    f.store.rebuild().unwrap();
    assert!(!f.work().join("d").exists() && !f.work().join("g").exists());
    assert!(f.work().join("k").exists());

    f.store
        .checkout(&s1.hash, CheckoutOptions::default())
        .unwrap();
    let hit = f.run(del);
    assert!(hit.cached);
    assert_eq!(hit.hash, s2.hash);
    assert!(!f.work().join("d").exists() && !f.work().join("g").exists());
    f.assert_clean("after the cache hit");
}

#[test]
fn cache_hit_advances_head_and_makes_the_work_dir_equal() {
    let f = Fixture::new();
    let s1 = f.run("echo one > a && mkdir e");
    let s2 = f.run("echo two >> a && rmdir e && ln -s a link && chmod 700 a");
    let want = f.snap();
    f.store
        .checkout(&s1.hash, CheckoutOptions::default())
        .unwrap();
    assert_ne!(f.snap(), want);
    let hit = f.run("echo two >> a && rmdir e && ln -s a link && chmod 700 a");
    assert!(hit.cached, "same instruction from the same state must hit");
    assert_eq!(hit.hash, s2.hash);
    assert_eq!(hit.parent.as_deref(), Some(s1.hash.as_str()));
    assert_eq!(f.store.head().unwrap().unwrap().hex(), s2.hash);
    assert_eq!(f.snap(), want);
    f.assert_clean("after a cache hit");
    // history follows head
    assert_eq!(f.store.history().unwrap()[0].hash, s2.hash);
}

#[test]
fn checkout_to_any_state_older_newer_or_another_branch_gives_exactly_that_tree() {
    let f = Fixture::new();
    let s1 = f.run("mkdir -p src && echo 1 > src/a && echo x > top");
    let t1 = f.snap();
    let s2 = f.run("echo 2 > src/a && rm top && mkdir -p empty/inner && ln -s src/a cur");
    let t2 = f.snap();
    f.store
        .checkout(&s1.hash, CheckoutOptions::default())
        .unwrap();
    let s3 = f.run("rm -r src && echo file > src && chmod 755 src");
    let t3 = f.snap();
    for (hash, tree) in [
        (&s2.hash, &t2),
        (&s1.hash, &t1),
        (&s3.hash, &t3),
        (&s2.hash, &t2),
        (&s3.hash, &t3),
    ] {
        f.store.checkout(hash, CheckoutOptions::default()).unwrap();
        assert_eq!(&f.snap(), tree, "checkout {hash}");
        f.assert_clean("after checkout");
    }
    // The empty root is a state too.
    f.store
        .checkout("HEAD~2", CheckoutOptions::default())
        .unwrap();
    assert!(f.snap().is_empty());
    assert_eq!(f.store.head().unwrap(), None);
}

#[test]
fn the_same_change_gives_the_same_layer_id_in_another_store_any_day() {
    // Same commands, different timestamps and creation order: same ids.
    let a = Fixture::new();
    let b = Fixture::new();
    let setup =
        "mkdir -p p/q && echo hi > p/q/f && chmod 640 p/q/f && ln -s q/f p/l && mkdir empty";
    let ra = a.run(setup);
    let rb = b.run(setup);
    assert_eq!(ra.hash, rb.hash);
    let change_a = "touch -d 2001-01-01 p/q/f && echo new > z && rm p/l && mkdir y && echo 1 > y/1";
    let change_b = "mkdir y && echo 1 > y/1 && echo new > z && rm p/l && touch -d 2020-05-05 p/q/f";
    // Different instructions (so different cache keys), same change.
    let la = a.run(change_a);
    let lb = b.run(change_b);
    let ia = a.store.inspect(&la.hash).unwrap();
    let ib = b.store.inspect(&lb.hash).unwrap();
    assert_eq!(ia.layer, ib.layer, "same change, same layer id");
    assert_eq!(la.hash, lb.hash, "same parent and layer, same state id");
    // A different store dir and work dir path change nothing.
    let c_tmp = tempfile::tempdir().unwrap();
    let c = Store::open(c_tmp.path().join("elsewhere"), c_tmp.path().join("w")).unwrap();
    assert_eq!(c.run(setup, &quiet()).unwrap().hash, ra.hash);
}

#[test]
fn status_is_clean_after_run_and_checkout_and_exact_after_edits() {
    let f = Fixture::new();
    let s1 = f.run("echo a > file && echo b > exe && ln -s file link && mkdir dir && echo c > dir/x && echo same > racy");
    f.assert_clean("right after run");
    f.run("echo more > more");
    f.store
        .checkout(&s1.hash, CheckoutOptions::default())
        .unwrap();
    f.assert_clean("right after checkout");

    // An edit within the same mtime tick as the capture: same size, done immediately.
    std::fs::write(f.work().join("racy"), "SAME\n").unwrap();
    // An edit that restores the old mtime (ctime still moves).
    f.sh("cp -p exe exe.orig && echo B > exe && touch -r exe.orig exe && rm exe.orig");
    f.sh("chmod 755 file");
    f.sh("ln -sf dir link");
    f.sh("rm dir/x && rmdir dir && echo now-a-file > dir");
    f.sh("mkdir empty");
    f.sh("echo 1 > 'with space' && echo 2 > \"$(printf 'new\\nline')\" && echo 3 > 'ünïcødé'");
    let st = f.store.status().unwrap();
    assert!(!st.clean);
    let mut added = st.added.clone();
    added.sort();
    assert_eq!(added, vec!["empty", "new\nline", "with space", "ünïcødé"]);
    let mut modified = st.modified.clone();
    modified.sort();
    assert_eq!(modified, vec!["dir", "exe", "file", "link", "racy"]);
    assert_eq!(st.deleted, vec!["dir/x"]);
    // And a second status (index refreshed) says the same.
    assert_eq!(f.store.status().unwrap(), st);
}
