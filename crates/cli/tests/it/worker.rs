//! `worker`: real worker processes drive queued runs and stop cleanly on SIGTERM.

use std::collections::HashSet;
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::runs::{add_task, task};
use crate::util::Sandbox;

const STEPS: &str = "let n = 0;\nfor (let i = 0; i < 3; i++) { n += fetch(`data:application/json,{\"i\":${i}}`).i; }\n({ n, who: input.who })";

fn sigterm(child: &Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Polls `history` until `n` runs of `task` succeeded (or 60 s pass).
fn wait_for_succeeded(sb: &Sandbox, env: &[(&str, &str)], task: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut cmd = sb.cmd(&["history", task, "--limit", "1000", "--json"]);
        for (k, v) in env {
            cmd = cmd.env(k, *v);
        }
        let runs = cmd.run().ok().json()["runs"].as_array().unwrap().clone();
        let done = runs.iter().filter(|r| r["status"] == "succeeded").count();
        if done >= n {
            return runs;
        }
        assert!(
            Instant::now() < deadline,
            "{done} of {n} runs succeeded: {runs:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn stop(child: Child) -> std::process::Output {
    sigterm(&child);
    child.wait_with_output().unwrap()
}

#[test]
fn a_worker_drives_queued_runs_and_stops_on_sigterm() {
    let sb = task("steps", STEPS, None);
    let worker = sb.cmd(&["worker", "--concurrency", "2"]).spawn();
    for i in 0..3 {
        sb.run(&[
            "run",
            "steps",
            "--detach",
            "--input",
            &format!(r#"{{"who": {i}}}"#),
        ])
        .ok();
    }
    let runs = wait_for_succeeded(&sb, &[], "steps", 3);
    // `show --follow` keeps following through a sleep while the worker drives the run
    add_task(
        &sb,
        "nap",
        "export default async function (input, ctx) { await ctx.sleep('200ms'); return 'rested'; }",
        None,
    );
    let id = sb.run(&["run", "nap", "--detach"]).ok().stdout;
    sb.run(&["show", id.trim(), "--follow"])
        .ok()
        .stdout_has("timer.armed")
        .stdout_has("run.succeeded")
        .stdout_has("status:      succeeded");
    let out = stop(worker);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("stopped (SIGTERM)"), "{stderr}");
    assert!(out.stdout.is_empty(), "a worker prints nothing on stdout");
    for r in runs {
        assert!(r["summary"].as_str().unwrap().contains("\"n\":3"), "{r}");
    }
}

#[test]
fn two_workers_share_one_sqlite_store_and_run_each_run_once() {
    let sb = Sandbox::new();
    add_task(&sb, "steps", STEPS, None);
    let env = [("DATABASE_URL", "sqlite:./shared.db")];
    let spawn = || {
        sb.cmd(&["worker", "--concurrency", "4"])
            .env(env[0].0, env[0].1)
            .spawn()
    };
    sb.cmd(&["sync-tasks"]).env(env[0].0, env[0].1).run().ok();
    let (a, b) = (spawn(), spawn());
    let mut ids = HashSet::new();
    for i in 0..20 {
        let o = sb
            .cmd(&[
                "run",
                "steps",
                "--detach",
                "--input",
                &format!(r#"{{"who": {i}}}"#),
            ])
            .env(env[0].0, env[0].1)
            .run()
            .ok();
        ids.insert(o.stdout.trim().to_string());
    }
    let runs = wait_for_succeeded(&sb, &env, "steps", 20);
    assert_eq!(runs.len(), 20);
    for (out, name) in [(stop(a), "a"), (stop(b), "b")] {
        assert_eq!(
            out.status.code(),
            Some(0),
            "worker {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for id in &ids {
        let doc = sb
            .cmd(&["show", id, "--journal", "--json"])
            .env(env[0].0, env[0].1)
            .run()
            .ok()
            .json();
        let kinds: Vec<&str> = doc["journal"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds.iter().filter(|k| **k == "run.started").count(),
            1,
            "{id}: {kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == "call.requested").count(),
            3,
            "{id}: {kinds:?}"
        );
        assert_eq!(
            kinds.iter().filter(|k| **k == "run.succeeded").count(),
            1,
            "{id}: {kinds:?}"
        );
    }
}

/// The lines a child writes on stderr, read on a thread as they come.
fn stderr_lines(child: &mut Child) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits (at most 30 s) for a line containing `needle`; returns every line read so far.
fn wait_for_line(lines: &std::sync::mpsc::Receiver<String>, seen: &mut Vec<String>, needle: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !seen.iter().any(|l| l.contains(needle)) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("no line with {needle:?} on stderr: {seen:#?}"),
        }
    }
}

#[test]
fn two_sigterms_mid_fetch_release_the_run_and_a_second_worker_finishes_it_at_once() {
    let server = sequential_test_support::http::CountingServer::start();
    let code = format!("fetch('{}/hang-once/1').i", server.url());
    let sb = task("hangs", &code, None);
    // the default lease is 15 s: a second worker that had to wait it out would take that long
    let mut first = sb.cmd(&["worker", "--concurrency", "2"]).spawn();
    let lines = stderr_lines(&mut first);
    let mut seen = Vec::new();
    let id = sb.run(&["run", "hangs", "--detach"]).ok().stdout;
    let id = id.trim();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.count("/hang-once/1") == 0 {
        assert!(Instant::now() < deadline, "the worker never fetched");
        std::thread::sleep(Duration::from_millis(5));
    }
    let stopped_at = Instant::now();
    sigterm(&first);
    // the second signal once the first is taken (two at once may arrive as one)
    wait_for_line(&lines, &mut seen, "claiming no more runs");
    sigterm(&first);
    let status = loop {
        if let Some(status) = first.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped_at.elapsed() < Duration::from_secs(2),
            "the worker did not exit within 2 s of the SIGTERMs: {seen:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    wait_for_line(&lines, &mut seen, "stopped (SIGTERM)");
    assert_eq!(status.code(), Some(0), "{seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("1 run released")),
        "{seen:#?}"
    );
    let second = sb.cmd(&["worker"]).spawn();
    let runs = wait_for_succeeded(&sb, &[], "hangs", 1);
    assert!(
        stopped_at.elapsed() < Duration::from_secs(10),
        "the second worker finished the run {:?} after the stop, not long before the 15 s lease",
        stopped_at.elapsed()
    );
    assert!(
        runs[0]["summary"].as_str().unwrap().contains('1'),
        "{runs:?}"
    );
    let out = stop(second);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keys: Vec<_> = server.hits().into_iter().map(|h| h.key).collect();
    assert_eq!(keys.len(), 2, "the fetch in flight is repeated once");
    assert_eq!(keys[0], keys[1], "with the same idempotency key");
    assert!(keys[0].as_deref().unwrap_or("").starts_with(id), "{keys:?}");
}

/// A worker's threads — its main thread and the async runtime's (which run the code) — run
/// under SCHED_BATCH by default, and the janitor that frees what a run's code left under
/// SCHED_IDLE; with `--scheduling normal` all of them under the default policy.
#[cfg(target_os = "linux")]
#[test]
fn a_worker_runs_its_threads_under_sched_batch_unless_asked_for_the_default_policy() {
    let sb = task("steps", STEPS, None);
    for (args, want, janitor, runs) in [
        (&["worker"][..], 3, 5, 1),
        (&["worker", "--scheduling", "normal"][..], 0, 0, 2),
    ] {
        let worker = sb.cmd(args).spawn();
        sb.run(&["run", "steps", "--detach"]).ok();
        wait_for_succeeded(&sb, &[], "steps", runs);
        let seen = sequential_test_support::child::thread_policies(worker.id());
        let out = stop(worker);
        assert_eq!(out.status.code(), Some(0));
        let is_janitor = |name: &str| name.starts_with("fetch-vm-jan");
        assert!(
            seen.iter()
                .any(|(name, p)| is_janitor(name) && *p == janitor),
            "{args:?}: a run's code ran, its engine went to the janitor, which runs under policy {janitor}: {seen:?}"
        );
        // (jemalloc's page purger starts with the process, before `main`, and keeps the default)
        let mut worker_threads = seen
            .iter()
            .filter(|(name, _)| name != "jemalloc_bg_thd" && !is_janitor(name));
        assert!(
            worker_threads.all(|(_, p)| *p == want),
            "{args:?}: {seen:?}"
        );
    }
    sb.run(&["worker", "--scheduling", "fast"])
        .code(2)
        .stderr_has("batch")
        .stderr_has("normal");
}
