//! `vm execute | resume`: the seed's external-mode example across separate processes.

use serde_json::{Value, json};

use crate::util::Sandbox;

const SEED: &str = r#"const user = fetch(`https://api.example.com/users/${input.userId}`);
const posts = fetch(`https://api.example.com/posts?userId=${user.id}`);
{ user: user.name, postCount: posts.length }
"#;

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
    let o = sb.cmd(&["vm", "resume"]).stdin("not json").run().code(1);
    assert_eq!(parse(&o.stdout)["status"], "error");
    sb.run(&["vm", "execute", "--code", "missing.js"])
        .usage_error()
        .stderr_has("cannot read missing.js");
}
