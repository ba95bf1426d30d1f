//! `vm execute | resume | get | delete | list`: the seed's external-mode examples across
//! separate processes, through the task store (default `.sequential-flow.db`), and the bad
//! input users meet.

use serde_json::{Value, json};

use crate::util::Sandbox;

const SEED: &str = r#"const user = fetch(`https://api.example.com/users/${input.userId}`);
const posts = fetch(`https://api.example.com/posts?userId=${user.id}`);
{ user: user.name, postCount: posts.length }
"#;

/// The README's "Multiple Sequential Fetches", relative URLs as written.
const MULTI: &str = "const user = fetch('api/user/1');
const posts = fetch('api/posts?userId=' + user.id);
({ user: user.name, postCount: posts.length })
";

fn parse(stdout: &str) -> Value {
    assert_eq!(
        stdout.lines().count(),
        1,
        "one JSON object on one line: {stdout}"
    );
    serde_json::from_str(stdout).unwrap()
}

#[test]
fn seed_example_pauses_twice_and_completes_in_three_processes() {
    let sb = Sandbox::new();
    sb.write("task.js", SEED);
    let o = sb
        .run(&[
            "vm",
            "execute",
            "--code",
            "task.js",
            "--input",
            r#"{"userId": 1}"#,
            "--id",
            "t1",
        ])
        .ok();
    let first = parse(&o.stdout);
    assert_eq!(first["status"], "paused");
    assert_eq!(first["id"], "t1");
    assert_eq!(
        first["fetchRequest"]["url"],
        "https://api.example.com/users/1"
    );
    assert!(
        sb.exists(".sequential-flow.db"),
        "the default store is SQLite in the working directory"
    );
    let req = json!({"taskId": "t1", "vmState": first["vmState"], "originalCode": SEED,
        "fetchResponse": {"data": {"id": 1, "name": "Alice"}, "status": 200, "statusText": "OK"}});
    let second = parse(
        &sb.cmd(&["vm", "resume"])
            .stdin(req.to_string())
            .run()
            .ok()
            .stdout,
    );
    assert_eq!(second["status"], "paused");
    assert_eq!(
        second["fetchRequest"]["url"],
        "https://api.example.com/posts?userId=1"
    );
    let req = json!({"taskId": "t1", "vmState": second["vmState"], "originalCode": SEED,
        "fetchResponse": {"data": [1, 2, 3, 4, 5], "status": 200, "statusText": "OK"}});
    let third = parse(
        &sb.cmd(&["vm", "resume"])
            .stdin(req.to_string())
            .run()
            .ok()
            .stdout,
    );
    assert_eq!(third["status"], "completed", "{third}");
    assert_eq!(third["result"], json!({"user": "Alice", "postCount": 5}));
}

#[test]
fn readme_multiple_fetches_resume_with_only_the_task_id() {
    let sb = Sandbox::new();
    sb.write("multi.js", MULTI);
    let first = parse(
        &sb.run(&[
            "vm", "execute", "--code", "multi.js", "--id", "task-1", "--name", "profile",
        ])
        .ok()
        .stdout,
    );
    assert_eq!(first["fetchRequest"]["url"], "api/user/1");
    assert_eq!(first["name"], "profile");
    assert_eq!(
        first["expiresAt"].as_i64().unwrap() - first["updatedAt"].as_i64().unwrap(),
        2 * 3_600_000,
        "default TTL 2 h"
    );
    let second = parse(
        &sb.run(&[
            "vm",
            "resume",
            "--task",
            "task-1",
            "--response",
            r#"{"data": {"id": 42, "name": "Alice"}}"#,
        ])
        .ok()
        .stdout,
    );
    assert_eq!(second["status"], "paused");
    assert_eq!(second["fetchRequest"]["url"], "api/posts?userId=42");
    sb.write("posts.json", r#"{"data": {"length": 5}}"#);
    let third = parse(
        &sb.run(&[
            "vm",
            "resume",
            "--task",
            "task-1",
            "--response",
            "@posts.json",
        ])
        .ok()
        .stdout,
    );
    assert_eq!(third["result"], json!({"user": "Alice", "postCount": 5}));
    assert_eq!(third["name"], "profile");

    let got = sb.run(&["vm", "get", "task-1", "--json"]).ok().json();
    assert_eq!(got["status"], "completed");
    assert_eq!(got["result"], third["result"]);
    sb.run(&["vm", "get", "task-1"])
        .ok()
        .stdout_has("task task-1 (profile): completed")
        .stdout_has("expires");
    let listed = sb.run(&["vm", "list", "--json"]).ok().json();
    assert_eq!(listed["tasks"][0]["id"], "task-1");
    sb.run(&["vm", "list"]).ok().stdout_has("task-1");

    sb.run(&["vm", "delete", "task-1"])
        .ok()
        .stdout_has("deleted task task-1");
    sb.run(&[
        "vm",
        "resume",
        "--task",
        "task-1",
        "--response",
        r#"{"data": 1}"#,
    ])
    .usage_error()
    .stderr_has("task \"task-1\" was deleted at");
    sb.run(&["vm", "delete", "task-1"])
        .usage_error()
        .stderr_has("was deleted");
    sb.run(&["vm", "list"]).ok().stdout_has("no stored tasks");
}

#[test]
fn base_url_name_generated_id_and_other_stores() {
    let sb = Sandbox::new();
    sb.write("multi.js", MULTI);
    let t = parse(
        &sb.run(&[
            "vm",
            "execute",
            "--code",
            "multi.js",
            "--base-url",
            "https://api.example.com/v1/",
            "--store",
            "flow-tasks",
        ])
        .ok()
        .stdout,
    );
    assert_eq!(
        t["fetchRequest"]["url"],
        "https://api.example.com/v1/api/user/1"
    );
    let id = t["id"].as_str().unwrap().to_string();
    assert_eq!(id.len(), 36, "a generated UUID: {id}");
    assert!(sb.exists("flow-tasks/format.json"), "a folder store");
    assert!(!sb.exists(".sequential-flow.db"));
    // the environment variable names the store too
    let got = sb
        .cmd(&["vm", "get", &id, "--json"])
        .env("SEQUENTIAL_FLOW_STORE", "flow-tasks")
        .run()
        .ok()
        .json();
    assert_eq!(got["status"], "paused");
    // memory: keeps nothing beyond the command
    sb.run(&[
        "vm", "execute", "--code", "multi.js", "--id", "m", "--store", "memory:",
    ])
    .ok();
    sb.run(&["vm", "get", "m", "--store", "memory:"])
        .usage_error()
        .stderr_has("no task \"m\"");
}

#[test]
fn an_expired_task_says_when_it_expired() {
    let sb = Sandbox::new();
    sb.write("multi.js", MULTI);
    let t = parse(
        &sb.run(&[
            "vm", "execute", "--code", "multi.js", "--id", "brief", "--ttl", "50ms",
        ])
        .ok()
        .stdout,
    );
    assert_eq!(t["ttl"], 50);
    // the TTL runs on the wall clock: ask until the store says it expired (bounded)
    let mut expired = None;
    for _ in 0..200 {
        let o = sb.run(&["vm", "get", "brief"]);
        if o.stderr.contains("expired at") {
            expired = Some(o);
            break;
        }
    }
    let o = expired.expect("the task expires after 50ms");
    o.usage_error().stderr_has("task \"brief\" expired at");
    sb.run(&[
        "vm",
        "resume",
        "--task",
        "brief",
        "--response",
        r#"{"data": 1}"#,
    ])
    .usage_error()
    .stderr_has("task \"brief\" expired at")
    .stderr_has("hint: start it again");
    sb.run(&["vm", "list"]).ok().stdout_has("no stored tasks");
}

#[test]
fn bad_input_is_refused_and_nothing_is_stored() {
    let sb = Sandbox::new();
    // read-only commands on a store that does not exist create nothing
    sb.run(&["vm", "list"]).ok().stdout_has("no stored tasks");
    sb.run(&["vm", "get", "nope"])
        .usage_error()
        .stderr_has("no task \"nope\"")
        .stderr_has("vm list");
    assert!(!sb.exists(".sequential-flow.db"), "read-only: no file");

    let code = "const t = Date.now(); const r = fetch('https://x.test/a'); ({ t, r })";
    sb.write("clock.js", code);
    let a = parse(
        &sb.run(&["vm", "execute", "--code", "clock.js", "--id", "a"])
            .ok()
            .stdout,
    );
    let b = parse(
        &sb.run(&["vm", "execute", "--code", "clock.js", "--id", "b"])
            .ok()
            .stdout,
    );
    // the recorded Date.now() edited: checksum error, the stored task unchanged
    let state = a["vmState"].as_str().unwrap();
    let mut doc: Value = serde_json::from_str(state).unwrap();
    let entry = doc["body"]["journal"]
        .as_array_mut()
        .unwrap()
        .iter_mut()
        .find(|e| e["kind"] == "now")
        .expect("a recorded clock value");
    let recorded = entry["result"]["ok"].as_i64().expect("{entry}");
    entry["result"]["ok"] = json!(recorded + 1);
    let req = json!({"taskId": "a", "vmState": doc.to_string(),
        "fetchResponse": {"data": 1}});
    sb.cmd(&["vm", "resume"])
        .stdin(req.to_string())
        .run()
        .usage_error()
        .stderr_has("checksum");
    let stored = sb.run(&["vm", "get", "a", "--json"]).ok().json();
    assert_eq!(stored["vmState"], a["vmState"], "nothing stored");
    assert_eq!(stored["updatedAt"], a["updatedAt"]);
    // task a with b's vmState
    let req = json!({"taskId": "a", "vmState": b["vmState"], "fetchResponse": {"data": 1}});
    sb.cmd(&["vm", "resume"])
        .stdin(req.to_string())
        .run()
        .usage_error()
        .stderr_has("taskId \"a\"")
        .stderr_has("\"b\"");
    // not JSON on stdin; a response without data; a bad TTL; an unreachable store
    sb.cmd(&["vm", "resume"])
        .stdin("not json")
        .run()
        .usage_error()
        .stderr_has("invalid resume request");
    sb.run(&["vm", "resume", "--task", "a", "--response", r#"{"id": 1}"#])
        .usage_error()
        .stderr_has("\"data\"");
    sb.run(&["vm", "execute", "--code", "clock.js", "--ttl", "soon"])
        .usage_error()
        .stderr_has("invalid duration \"soon\"");
    sb.run(&["vm", "list", "--store", "redis://127.0.0.1:1"])
        .usage_error()
        .stderr_has("cannot reach the task store redis://127.0.0.1:1");
    sb.run(&["vm", "list", "--store", "mysql://db/x"])
        .usage_error()
        .stderr_has("sqlite:");
    let stored = sb.run(&["vm", "get", "a", "--json"]).ok().json();
    assert_eq!(stored["vmState"], a["vmState"], "still nothing stored");
}

#[test]
fn code_from_stdin_and_errors_exit_1_with_json() {
    let sb = Sandbox::new();
    let done = parse(
        &sb.cmd(&["vm", "execute", "--code", "-"])
            .stdin("1 + 2")
            .run()
            .ok()
            .stdout,
    );
    assert_eq!(done["result"], 3);
    let o = sb
        .cmd(&["vm", "execute", "--code", "-"])
        .stdin("throw new Error('nope')")
        .run()
        .code(1);
    let failed = parse(&o.stdout);
    assert_eq!(
        failed["error"], "nope",
        "the README's shape: the message string"
    );
    assert_eq!(failed["errorInfo"]["name"], "Error");
    sb.run(&["vm", "execute", "--code", "missing.js"])
        .usage_error()
        .stderr_has("cannot read missing.js");
}
