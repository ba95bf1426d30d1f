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
