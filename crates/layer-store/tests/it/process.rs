//! Several processes on one store: a second `Store` in a child process, two concurrent runs of
//! the same key, and `kill -9` of a running `run` at random moments.
//!
//! Children are this test binary re-invoked on `process::child_entry` with `SLS_CHILD` set.

use crate::util::{Fixture, quiet};
use sequential_layer_store::{CheckoutOptions, Store};
use sequential_test_support::{child, seed::Seeded};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const ACTION: &str = "SLS_CHILD";

fn store_child(action: &str, dir: &Path, work: &Path, arg: &str, out: &Path) -> Command {
    let mut c = child::relaunch(
        child::test_path(module_path!(), "child_entry"),
        ACTION,
        action,
    );
    c.env("SLS_DIR", dir)
        .env("SLS_WORK", work)
        .env("SLS_ARG", arg)
        .env("SLS_OUT", out)
        .stdout(Stdio::null());
    c
}

fn wait_ok(mut c: Child, what: &str) {
    let st = c.wait().expect("wait");
    assert!(st.success(), "child {what} failed: {st:?}");
}

/// The body of every child process; a no-op in the normal test run.
#[test]
fn child_entry() {
    let Some(action) = child::role(ACTION) else {
        return;
    };
    let var = |k: &str| std::env::var(k).expect(k);
    if action == "from-env" {
        let s = Store::from_env().expect("from_env");
        std::fs::write(
            var("SLS_OUT"),
            format!("{}\n{}", s.dir().display(), s.work().display()),
        )
        .unwrap();
        return;
    }
    let store = Store::open(var("SLS_DIR"), var("SLS_WORK")).expect("child open");
    let out = var("SLS_OUT");
    match action.as_str() {
        "report" => {
            let v = serde_json::json!({
                "head": store.head().unwrap().map(|h| h.hex()),
                "history": store.history().unwrap(),
                "status": store.status().unwrap(),
            });
            std::fs::write(out, v.to_string()).unwrap();
        }
        "run" => {
            let r = store.run(&var("SLS_ARG"), &quiet()).unwrap();
            std::fs::write(out, serde_json::to_string(&r).unwrap()).unwrap();
        }
        "run-inherit" => {
            let opts = sequential_layer_store::RunOptions::default();
            let r = store.run(&var("SLS_ARG"), &opts).unwrap();
            assert!(r.stdout.is_none());
        }
        "run-after-go" => {
            // Wait for the parent's go (a line on stdin), so both children start together.
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line).unwrap();
            let r = store.run(&var("SLS_ARG"), &quiet()).unwrap();
            std::fs::write(out, serde_json::to_string(&r).unwrap()).unwrap();
        }
        "run-forever" => {
            let mut stderr = std::io::stderr();
            for i in 0.. {
                let cmd = format!(
                    "n=0; while [ $n -lt 300 ]; do echo {i}-$n > f$n; n=$((n+1)); done; mkdir -p d{i} && rm -rf d{}",
                    i.max(1) - 1
                );
                store.run(&cmd, &quiet()).unwrap();
                writeln!(stderr, "step {i}").unwrap();
            }
        }
        other => panic!("unknown child action {other}"),
    }
}

#[test]
fn a_second_store_in_another_process_sees_the_same_head_and_history() {
    let f = Fixture::new();
    f.run("echo 1 > a");
    f.run("mkdir d && echo 2 > d/b");
    let out = f.tmp.path().join("report.json");
    wait_ok(
        store_child("report", &f.dir(), &f.work(), "", &out)
            .spawn()
            .unwrap(),
        "report",
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(
        v["head"].as_str(),
        Some(f.store.head().unwrap().unwrap().hex().as_str())
    );
    assert_eq!(
        v["history"],
        serde_json::to_value(f.store.history().unwrap()).unwrap()
    );
    assert_eq!(v["status"]["clean"], true);
    // And the other way round: the child runs, this (already open) Store sees it.
    let out2 = f.tmp.path().join("run.json");
    wait_ok(
        store_child("run", &f.dir(), &f.work(), "echo 3 > c", &out2)
            .spawn()
            .unwrap(),
        "run",
    );
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out2).unwrap()).unwrap();
    assert_eq!(
        f.store.head().unwrap().unwrap().hex(),
        r["hash"].as_str().unwrap()
    );
    assert_eq!(f.store.cat("HEAD", "c").unwrap(), b"3\n");
    assert!(f.store.status().unwrap().clean);
    assert_eq!(f.store.history().unwrap().len(), 3);
}

#[test]
fn two_concurrent_runs_of_the_same_key_execute_once() {
    let f = Fixture::new();
    f.run("echo base > base");
    let counter = f.tmp.path().join("counter");
    let instr = format!("echo ran >> '{}' && echo product > out", counter.display());
    let outs = [f.tmp.path().join("c1.json"), f.tmp.path().join("c2.json")];
    let mut kids: Vec<Child> = outs
        .iter()
        .map(|o| {
            store_child("run-after-go", &f.dir(), &f.work(), &instr, o)
                .stdin(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for k in &mut kids {
        k.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    for k in kids {
        wait_ok(k, "concurrent run");
    }
    let results: Vec<serde_json::Value> = outs
        .iter()
        .map(|o| serde_json::from_slice(&std::fs::read(o).unwrap()).unwrap())
        .collect();
    let cached: Vec<bool> = results
        .iter()
        .map(|r| r["cached"].as_bool().unwrap())
        .collect();
    assert_eq!(
        cached.iter().filter(|c| !**c).count(),
        1,
        "exactly one executes: {results:?}"
    );
    assert_eq!(results[0]["hash"], results[1]["hash"]);
    assert_eq!(std::fs::read_to_string(&counter).unwrap(), "ran\n");
    assert_eq!(f.store.history().unwrap().len(), 2);
    assert!(f.store.status().unwrap().clean);
}

#[test]
fn kill_9_during_run_30_times_leaves_a_store_that_verifies_and_works() {
    let f = Fixture::new();
    f.run("echo start > s");
    // Reproducible "random" kill moments: the seed is printed, SLS_SEED=<seed> replays it.
    let mut rng = Seeded::from_env("SLS_SEED");
    let out = f.tmp.path().join("unused");
    for round in 0..30 {
        let mut c = store_child("run-forever", &f.dir(), &f.work(), "", &out)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Let it complete a random number (0–2) of runs, then kill it at a random moment
        // within the next one. The delay is fault injection, not synchronisation: the test
        // asserts the same thing whatever the moment.
        let steps = rng.below(3);
        let mut lines = BufReader::new(c.stderr.take().unwrap()).lines();
        for _ in 0..steps {
            match lines.next() {
                Some(Ok(l)) if l.starts_with("step") => {}
                Some(Ok(_)) => continue,
                other => panic!("child ended early: {other:?}"),
            }
        }
        std::thread::sleep(std::time::Duration::from_micros(rng.below(60_000)));
        c.kill().unwrap();
        c.wait().unwrap();
        let store = Store::open(f.dir(), f.work()).unwrap();
        let v = store.verify().unwrap();
        assert!(v.ok, "round {round} (seed {}): {v:?}", rng.seed());
        // Still works: status, a run, a checkout back, gc.
        store.status().unwrap();
        let r = store
            .run(&format!("echo {round} > round"), &quiet())
            .unwrap();
        store
            .checkout("HEAD~1", CheckoutOptions { force: true })
            .unwrap();
        store.checkout(&r.hash, CheckoutOptions::default()).unwrap();
        assert!(store.status().unwrap().clean, "round {round}");
        if round % 10 == 9 {
            store.gc().unwrap();
            assert!(store.verify().unwrap().ok);
        }
    }
}

#[test]
fn from_env_reads_the_machine_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().canonicalize().unwrap();
    let out = root.join("out");
    let run = |work: Option<&Path>| {
        let mut c = store_child("from-env", Path::new(""), Path::new(""), "", &out);
        c.env("SEQUENTIAL_MACHINE_DIR", root.join("m"))
            .env_remove("SEQUENTIAL_MACHINE_WORK");
        if let Some(w) = work {
            c.env("SEQUENTIAL_MACHINE_WORK", w);
        }
        wait_ok(c.spawn().unwrap(), "from-env");
        std::fs::read_to_string(&out).unwrap()
    };
    let m = root.join("m");
    assert_eq!(
        run(None),
        format!("{}\n{}", m.display(), m.join("work").display())
    );
    let w = root.join("elsewhere");
    assert_eq!(run(Some(&w)), format!("{}\n{}", m.display(), w.display()));
}

#[test]
fn inherited_output_reaches_the_callers_stdout() {
    let f = Fixture::new();
    let out = f.tmp.path().join("unused");
    let got = store_child(
        "run-inherit",
        &f.dir(),
        &f.work(),
        "echo visible-line; echo to-stderr >&2",
        &out,
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .output()
    .unwrap();
    assert!(got.status.success(), "{got:?}");
    assert!(
        String::from_utf8_lossy(&got.stdout).contains("visible-line"),
        "{got:?}"
    );
    assert!(
        String::from_utf8_lossy(&got.stderr).contains("to-stderr"),
        "{got:?}"
    );
}
