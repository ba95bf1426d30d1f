//! `run`, `resume`, `signal`, `cancel`, `kill`, `rerun`, `show`, `history`, `prune` with the
//! real binary on folder and SQLite storage.

use serde_json::{Value, json};

use crate::util::Sandbox;

/// A sandbox with one task `name` whose code.js is `code` (and optional config.json).
pub fn task(name: &str, code: &str, config: Option<&str>) -> Sandbox {
    let sb = Sandbox::new();
    add_task(&sb, name, code, config);
    sb
}

pub fn add_task(sb: &Sandbox, name: &str, code: &str, config: Option<&str>) {
    sb.write(&format!("tasks/{name}/code.js"), code);
    if let Some(c) = config {
        sb.write(&format!("tasks/{name}/config.json"), c);
    }
}

/// The `run` field of a `--json` document.
pub fn run_of(doc: &Value) -> String {
    doc["run"].as_str().expect("a run id").to_string()
}

const HELLO: &str = "export default async function (input, ctx) {\n  const r = await fetch('data:application/json,{\"greeting\":\"hello\"}');\n  const { greeting } = await r.json();\n  return { greeting, name: input.name ?? null };\n}\n";

#[test]
fn run_prints_the_output_and_stores_the_version_once() {
    let sb = task("hello", HELLO, None);
    sb.run(&["run", "hello", "--input", r#"{"name": "Ann"}"#])
        .ok()
        .check("stdout is the output", |o| {
            serde_json::from_str::<Value>(&o.stdout).ok()
                == Some(json!({"greeting": "hello", "name": "Ann"}))
        })
        .check("nothing on stderr", |o| o.stderr.is_empty());
    sb.run(&["run", "hello"])
        .ok()
        .stdout_has("\"name\": null")
        .stderr_lacks("run.started");
    // identical content reuses v1
    sb.run(&["sync-tasks"])
        .ok()
        .stdout_has("hello  unchanged v1");
    sb.write("tasks/hello/code.js", &HELLO.replace("hello\"}", "hi\"}"));
    let doc = sb.run(&["run", "hello", "--json"]).ok().json();
    assert_eq!(doc["version"], 2, "{doc}");
    assert_eq!(doc["output"]["greeting"], "hi");
}

#[test]
fn run_json_is_one_document_with_status_output_and_journal_when_verbose() {
    let sb = task("hello", HELLO, None);
    let o = sb.run(&["run", "hello", "--json", "--verbose"]).ok();
    let doc = o.json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(doc["task"], "hello");
    assert_eq!(doc["output"]["greeting"], "hello");
    assert_eq!(doc["error"], Value::Null);
    assert_eq!(doc["storage"], "folder:tasks");
    let kinds: Vec<&str> = doc["journal"]
        .as_array()
        .expect("--verbose adds the journal")
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "run.started",
            "call.requested",
            "call.completed",
            "run.succeeded"
        ]
    );
    assert!(
        sb.exists(&format!("tasks/hello/runs/{}.json", run_of(&doc))),
        "the default folder storage keeps the run beside the task"
    );
}

#[test]
fn verbose_prints_the_journal_on_stderr_and_keeps_stdout_for_the_output() {
    let sb = task("hello", HELLO, None);
    let o = sb.run(&["run", "hello", "--verbose"]).ok();
    let out: Value = serde_json::from_str(&o.stdout).expect("stdout is only the output");
    assert_eq!(out["greeting"], "hello");
    for needle in [
        "#0",
        "run.started",
        "call.requested  fetch GET data:application/json,{\"greeting\":\"hello\"}",
        "call.completed",
        "run.succeeded",
    ] {
        assert!(o.stderr.contains(needle), "{needle:?} in\n{}", o.stderr);
    }
}

#[test]
fn detach_only_queues_and_resume_drives_it() {
    let sb = task("hello", HELLO, None);
    let o = sb.run(&["run", "hello", "--detach"]).ok();
    let id = o.stdout.trim().to_string();
    assert_eq!(id.len(), 36, "only the id: {:?}", o.stdout);
    let doc = sb.run(&["show", &id, "--json"]).ok().json();
    assert_eq!(doc["status"], "queued");
    assert_eq!(
        doc["next"],
        format!("sequential-ecosystem resume {id}"),
        "{doc}"
    );
    sb.run(&["resume", &id]).ok().stdout_has("\"greeting\"");
    sb.run(&["show", "hello", &id])
        .ok()
        .stdout_has("status:      succeeded");
}

#[test]
fn dry_run_checks_and_creates_nothing() {
    let sb = task(
        "hello",
        HELLO,
        Some(r#"{"inputs": [{"name": "name", "type": "string"}]}"#),
    );
    sb.run(&["run", "hello", "--dry-run", "--input", r#"{"name": "Ann"}"#])
        .ok()
        .stdout_has("would run task hello v1")
        .stdout_has("nothing was stored or started");
    assert_eq!(
        sb.ls("tasks/hello"),
        ["code.js", "config.json"],
        "no version, no run"
    );
    sb.run(&["run", "hello", "--dry-run"])
        .usage_error()
        .stderr_has("\"name\"");
    // once stored, the dry run names the stored version
    sb.run(&["run", "hello", "--input", r#"{"name": "Ann"}"#])
        .ok();
    let doc = sb
        .run(&[
            "run",
            "hello",
            "--dry-run",
            "--json",
            "--input",
            r#"{"name": "B"}"#,
        ])
        .ok()
        .json();
    assert_eq!(doc["version"], 1);
    assert_eq!(doc["new_version"], false);
}

#[test]
fn idempotency_key_returns_the_same_run() {
    let sb = task("hello", HELLO, None);
    let a = sb
        .run(&["run", "hello", "--idempotency-key", "k1", "--json"])
        .ok()
        .json();
    let b = sb
        .run(&["run", "hello", "--idempotency-key", "k1", "--json"])
        .ok()
        .json();
    assert_eq!(run_of(&a), run_of(&b));
    sb.run(&[
        "run",
        "hello",
        "--idempotency-key",
        "k1",
        "--input",
        r#"{"name": "other"}"#,
    ])
    .usage_error()
    .stderr_has("idempotency key \"k1\"");
    let h = sb.run(&["history", "hello", "--json"]).ok().json();
    assert_eq!(h["runs"].as_array().unwrap().len(), 1, "{h}");
}

#[test]
fn save_writes_the_run_with_its_journal() {
    let sb = task("hello", HELLO, None);
    let o = sb.run(&["run", "hello", "--save=out.json"]).ok();
    assert!(o.stderr.contains("saved run"), "{}", o.stderr);
    let saved: Value = serde_json::from_str(&sb.read("out.json")).unwrap();
    assert_eq!(saved["status"], "succeeded");
    assert_eq!(saved["output"]["greeting"], "hello");
    assert_eq!(saved["journal"].as_array().unwrap().len(), 4);
    let o = sb.run(&["run", "hello", "--save", "--json"]).ok();
    let id = run_of(&o.json());
    assert!(sb.exists(&format!("hello-{id}.json")), "{:?}", sb.ls("."));
}

const NAP: &str = "export default async function (input, ctx) {\n  await ctx.sleep('300ms');\n  return 'rested';\n}\n";

#[test]
fn a_sleeping_run_exits_3_and_wait_drives_it_through_the_timer() {
    let sb = task("nap", NAP, None);
    let o = sb.run(&["run", "nap", "--json", "--wait", "0"]).code(3);
    let doc = o.json();
    assert_eq!(doc["status"], "waiting");
    assert!(doc["wake_at"].is_string(), "{doc}");
    assert!(o.stderr.contains("sleeps until"), "{}", o.stderr);
    let id = run_of(&doc);
    sb.run(&["resume", &id, "--wait", "10s"])
        .ok()
        .stdout_has("\"rested\"");
    sb.run(&["run", "nap", "--wait", "10s"])
        .ok()
        .stdout_has("\"rested\"");
}

#[test]
fn rerun_from_seq_copies_the_prefix_and_drives_the_new_run() {
    let sb = task("hello", HELLO, None);
    let first = sb.run(&["run", "hello", "--json"]).ok().json();
    let id = run_of(&first);
    let o = sb
        .run(&["rerun", &id, "--from-seq", "3", "--json", "--verbose"])
        .ok();
    let doc = o.json();
    assert_ne!(run_of(&doc), id);
    assert_eq!(doc["output"], first["output"]);
    let kinds: Vec<&str> = doc["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    // the copied fetch is replayed, not requested again
    assert_eq!(
        kinds,
        [
            "run.started",
            "call.requested",
            "call.completed",
            "run.succeeded"
        ]
    );
    sb.run(&["rerun", &id, "--from-seq", "99"])
        .usage_error()
        .stderr_has("--from-seq 99");
}

const WAITER: &str =
    "export default async function (input, ctx) {\n  return await ctx.waitForEvent('go');\n}\n";

#[test]
fn cancel_and_kill_end_active_runs_and_refuse_finished_ones() {
    let sb = task("waiter", WAITER, None);
    let a = run_of(&sb.run(&["run", "waiter", "--json"]).code(3).json());
    let b = run_of(&sb.run(&["run", "waiter", "--json"]).code(3).json());
    sb.run(&["cancel", &a, "--grace", "1s"])
        .ok()
        .stdout_has("cancelled run")
        .stdout_has("(it was waiting)");
    let doc = sb.run(&["kill", &b, "--json"]).ok().json();
    assert_eq!(doc["status"], "cancelled");
    assert_eq!(doc["was"], "waiting");
    sb.run(&["kill", &b])
        .usage_error()
        .stderr_has("was cancelled");
    sb.run(&["resume", &a])
        .usage_error()
        .stderr_has("was cancelled");
    sb.run(&["signal", &a, "go"])
        .usage_error()
        .stderr_has("was cancelled");
    sb.run(&["cancel", &a, "--grace", "soon"])
        .usage_error()
        .stderr_has("invalid duration \"soon\" for --grace");
}

#[test]
fn signal_before_the_wait_is_kept_and_resume_delivers_it() {
    let sb = task("waiter", WAITER, None);
    let id = sb.run(&["run", "waiter", "--detach"]).ok().stdout;
    let id = id.trim();
    sb.run(&["signal", id, "go", r#"{"n": 1}"#])
        .ok()
        .stdout_has("delivered event \"go\"");
    let doc = sb.run(&["resume", id, "--json"]).ok().json();
    assert_eq!(doc["output"], json!({"n": 1}));
}

#[test]
fn show_and_history_print_runs_newest_first() {
    let sb = task("hello", HELLO, None);
    let ids: Vec<String> = (0..3)
        .map(|i| {
            run_of(
                &sb.run(&[
                    "run",
                    "hello",
                    "--json",
                    "--input",
                    &format!(r#"{{"name": "n{i}"}}"#),
                ])
                .ok()
                .json(),
            )
        })
        .collect();
    let h = sb.run(&["history", "hello", "--json"]).ok().json();
    let listed: Vec<String> = h["runs"].as_array().unwrap().iter().map(run_of).collect();
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(listed, newest_first);
    let h = sb
        .run(&["history", "hello", "--limit", "2", "--json"])
        .ok()
        .json();
    assert_eq!(h["runs"].as_array().unwrap().len(), 2);
    assert_eq!(h["more"], true);
    sb.run(&["history", "hello"])
        .ok()
        .stdout_has("RUN")
        .stdout_has("succeeded")
        .stdout_has(&ids[0]);
    let doc = sb
        .run(&["show", &ids[1], "--journal", "--json"])
        .ok()
        .json();
    assert_eq!(doc["input"], json!({"name": "n1"}));
    assert_eq!(doc["journal"][0]["kind"], "run.started");
    sb.run(&["show", &ids[1], "--journal"])
        .ok()
        .stdout_has("journal (4 records):")
        .stdout_has("run.succeeded");
    sb.run(&["show", &ids[1], "--follow"])
        .ok()
        .stdout_has("run.succeeded")
        .stdout_has("status:      succeeded");
    sb.run(&["show", "other", &ids[1]])
        .usage_error()
        .stderr_has("belongs to task hello, not other");
    sb.run(&["show", "not-a-uuid"])
        .usage_error()
        .stderr_has("invalid run id \"not-a-uuid\"");
    sb.run(&["history", "nope"])
        .usage_error()
        .stderr_has("task \"nope\" not found");
}

#[test]
fn prune_deletes_finished_runs_older_than_the_cut_off() {
    let sb = task("hello", HELLO, None);
    let done = run_of(&sb.run(&["run", "hello", "--json"]).ok().json());
    let waiting = run_of(&sb.run(&["run", "hello", "--detach", "--json"]).ok().json());
    sb.run(&["prune"]).ok().stdout_has("pruned 0 finished runs");
    let doc = sb
        .run(&["prune", "--older-than", "0ms", "--json"])
        .ok()
        .json();
    assert_eq!(doc["pruned"], 1, "{doc}");
    sb.run(&["show", &done])
        .usage_error()
        .stderr_has("not found");
    sb.run(&["show", &waiting]).ok().stdout_has("queued");
}

#[test]
fn runs_work_on_sqlite_storage_too() {
    let sb = task("waiter", WAITER, None);
    let db = [("DATABASE_URL", "sqlite:./runs.db")];
    let cmd = |args: &[&str]| {
        let mut c = sb.cmd(args);
        for (k, v) in db {
            c = c.env(k, v);
        }
        c.run()
    };
    let doc = cmd(&["run", "waiter", "--json"]).code(3).json();
    assert_eq!(doc["storage"], "sqlite:./runs.db");
    let id = run_of(&doc);
    cmd(&["signal", &id, "go", "\"yes\""]).ok();
    cmd(&["resume", &id]).ok().stdout_has("\"yes\"");
    assert!(sb.exists("runs.db"));
    assert!(!sb.exists("tasks/waiter/runs"), "runs are in SQLite");
}

#[test]
fn run_with_wait_keeps_waiting_for_an_event_sent_by_another_process() {
    let sb = task("waiter", WAITER, None);
    let child = sb
        .cmd(&["run", "waiter", "--wait", "60s", "--json"])
        .spawn();
    // poll until the run waits for its event
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let id = loop {
        let h = sb.run(&["history", "waiter", "--json"]).ok().json();
        if h["runs"][0]["status"] == "waiting" {
            break run_of(&h["runs"][0]);
        }
        assert!(std::time::Instant::now() < deadline, "never waited: {h}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    sb.run(&["signal", &id, "go", "42"]).ok();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["output"], 42);
    assert_eq!(run_of(&doc), id);
}

#[test]
fn a_stored_task_without_a_folder_runs_its_latest_version() {
    let sb = task("hello", HELLO, None);
    sb.run(&["sync-tasks"]).ok();
    std::fs::remove_dir_all(sb.join("tasks/hello")).unwrap();
    // with folder storage the versions lived in the task folder: the task is gone
    sb.run(&["run", "hello"])
        .usage_error()
        .stderr_has("not found");
    let sb = task("hello", HELLO, None);
    let env = ("DATABASE_URL", "sqlite:./s.db");
    sb.cmd(&["sync-tasks"]).env(env.0, env.1).run().ok();
    std::fs::remove_dir_all(sb.join("tasks/hello")).unwrap();
    sb.cmd(&["run", "hello", "--json"])
        .env(env.0, env.1)
        .run()
        .ok()
        .check("v1 from storage", |o| o.json()["version"] == 1)
        .stdout_has("\"greeting\": \"hello\"");
}
