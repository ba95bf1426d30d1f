//! Issue 5's bad-input list, as the CLI sees it: each case exits with the documented code and
//! a clear message.

use crate::runs::{run_of, task};
use crate::util::Sandbox;

#[test]
fn unknown_task_exits_2() {
    let sb = Sandbox::new();
    sb.run(&["run", "nope"])
        .usage_error()
        .stderr_has("task \"nope\" not found");
    sb.run(&["run", "../x"])
        .usage_error()
        .stderr_has("invalid task name");
    assert!(
        sb.ls(".").is_empty(),
        "nothing is created: {:?}",
        sb.ls(".")
    );
}

#[test]
fn input_that_is_not_json_exits_2_with_the_position() {
    let sb = task("t", "input", None);
    sb.run(&["run", "t", "--input", "{\"a\": 1,\n \"b\": }"])
        .usage_error()
        .stderr_has("--input is not valid JSON")
        .stderr_has("line 2, column 7");
    sb.run(&["run", "t", "--input", "{a: 1}"])
        .usage_error()
        .stderr_has("line 1, column 2");
    sb.write("in.json", "[1, 2,");
    sb.run(&["run", "t", "--input", "@in.json"])
        .usage_error()
        .stderr_has("@in.json")
        .stderr_has("line 1, column 6");
    sb.run(&["run", "t", "--input", "@missing.json"])
        .usage_error()
        .stderr_has("cannot read missing.json");
    assert!(!sb.exists("tasks/t/runs"), "no run was created");
}

#[test]
fn missing_declared_input_exits_2_naming_it() {
    let config = r#"{"inputs": [
        {"name": "orderId", "type": "number"},
        {"name": "note", "type": "string", "default": "none"},
        {"name": "tag", "required": false}
    ]}"#;
    let sb = task(
        "order",
        "({ id: input.orderId, note: input.note, tag: input.tag })",
        Some(config),
    );
    sb.run(&["run", "order"])
        .usage_error()
        .stderr_has("missing the declared input \"orderId\" (number)")
        .stderr_has("tasks/order/config.json");
    sb.run(&["run", "order", "--input", r#"{"orderId": "seven"}"#])
        .usage_error()
        .stderr_has("input \"orderId\" of task order must be of type number");
    assert!(!sb.exists("tasks/order/runs"), "no run was created");
    // defaults fill in, optional inputs may be absent
    sb.run(&["run", "order", "--input", r#"{"orderId": 7}"#])
        .ok()
        .stdout_has("\"note\": \"none\"")
        .stdout_lacks("\"tag\"");
}

#[test]
fn a_task_that_throws_exits_1_with_the_js_stack() {
    let code = "export default async function (input) {\n  return check(input);\n}\nfunction check(input) {\n  throw new TypeError(`order ${input.id} has no lines`);\n}\n";
    let sb = task("boom", code, None);
    sb.run(&["run", "boom", "--input", r#"{"id": 7}"#])
        .code(1)
        .check("nothing on stdout", |o| o.stdout.is_empty())
        .stderr_has("error: run ")
        .stderr_has("of task boom failed: TypeError: order 7 has no lines")
        .stderr_has("at check")
        .stderr_has(":5:")
        .stderr_has("hint: ");
    let o = sb.run(&["run", "boom", "--json"]).code(1);
    let doc = o.json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"]["name"], "TypeError");
    assert!(
        doc["error"]["stack"].as_str().unwrap().contains("at check"),
        "{doc}"
    );
}

#[test]
fn a_task_that_loops_forever_ends_with_timeout() {
    let sb = task("spin", "let n = 0; while (true) { n++; }", None);
    let doc = sb
        .cmd(&["run", "spin", "--json"])
        .env("TASK_CPU_SLICE_MS", "50")
        .run()
        .code(1)
        .json();
    assert_eq!(doc["status"], "failed");
    assert_eq!(doc["error"]["name"], "Timeout", "{doc}");
    assert!(
        doc["error"]["message"].as_str().unwrap().contains("50 ms"),
        "{doc}"
    );
    sb.cmd(&["run", "spin"])
        .env("TASK_CPU_SLICE_MS", "0")
        .run()
        .usage_error()
        .stderr_has("invalid TASK_CPU_SLICE_MS \"0\"");
    // the store is fine afterwards
    sb.write("tasks/ok/code.js", "1 + 1");
    sb.run(&["run", "ok"]).ok().stdout_has("2");
}

#[test]
fn signal_to_an_unknown_or_finished_run_exits_2() {
    let sb = task("t", "({ done: true })", None);
    let unknown = "0190c3e2-7a4b-7c00-8000-000000000000";
    sb.run(&["signal", unknown, "go"])
        .usage_error()
        .stderr_has(&format!("run {unknown} not found"));
    let id = run_of(&sb.run(&["run", "t", "--json"]).ok().json());
    sb.run(&["signal", &id, "go"])
        .usage_error()
        .stderr_has("cannot deliver event \"go\"")
        .stderr_has("already succeeded");
    sb.run(&["signal", "nope", "go"])
        .usage_error()
        .stderr_has("invalid run id \"nope\"");
    sb.run(&["signal", &id, "go", "{bad"])
        .usage_error()
        .stderr_has("the payload is not valid JSON");
}

#[test]
fn resume_of_a_succeeded_run_exits_2() {
    let sb = task("t", "({ done: true })", None);
    let id = run_of(&sb.run(&["run", "t", "--json"]).ok().json());
    sb.run(&["resume", &id])
        .usage_error()
        .stderr_has("already succeeded")
        .stderr_has("rerun");
    sb.run(&["resume", "0190c3e2-7a4b-7c00-8000-000000000000"])
        .usage_error()
        .stderr_has("not found");
}

#[test]
fn fetch_to_an_unreachable_host_retries_then_pauses_with_exit_3() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    let sb = task("down", "fetch('http://127.0.0.1:9/orders')", None);
    let o = sb
        .cmd(&["run", "down", "--json"])
        .env("TASK_MAX_RETRIES", "1")
        .run()
        .code(3);
    let doc = o.json();
    assert_eq!(doc["status"], "paused", "{doc}");
    let msg = doc["error"]["error"]["message"].as_str().unwrap();
    assert!(msg.contains("2 attempt"), "one retry: {msg}");
    assert!(o.stderr.contains("--retry"), "{}", o.stderr);
    let id = run_of(&doc);
    sb.run(&["resume", &id])
        .usage_error()
        .stderr_has("is paused")
        .stderr_has(&format!("resume {id} --retry"));
    sb.cmd(&["resume", &id, "--retry"])
        .env("TASK_MAX_RETRIES", "0")
        .run()
        .code(3)
        .stderr_has("paused");
    sb.cmd(&["run", "down"])
        .env("TASK_MAX_RETRIES", "lots")
        .run()
        .usage_error()
        .stderr_has("TASK_MAX_RETRIES");
}

#[test]
fn bad_durations_and_flags_exit_2() {
    let sb = task("t", "1", None);
    sb.run(&["run", "t", "--wait", "forever"])
        .usage_error()
        .stderr_has("invalid duration \"forever\" for --wait")
        .stderr_has("250ms, 2s, 5m, 1h, 7d, 1w");
    sb.run(&["prune", "--older-than=-1d"]).usage_error();
    sb.run(&["run", "t", "--detach", "--dry-run"]).code(2);
    sb.run(&["worker", "--concurrency", "0"])
        .usage_error()
        .stderr_has("--concurrency 0");
}

#[test]
fn a_graph_task_that_fails_graph_check_is_refused_before_a_run_is_created() {
    let sb = crate::util::Sandbox::new();
    sb.run(&["create-task", "g", "--with-graph"]).ok();
    sb.write("tasks/g/code.js", "export async function compose() {}");
    sb.run(&["run", "g"])
        .usage_error()
        .stderr_has("tasks/g/graph.json has")
        .stderr_has("/states/fetchGreeting");
    assert!(!sb.exists("tasks/g/runs"), "no run was created");
}

#[test]
fn an_invalid_retry_is_refused_with_exit_2_before_anything_is_stored() {
    let bad = r#"{"retry": {"attempts": 0}}"#;
    let sb = task("poison", "1 + 1", Some(bad));
    crate::runs::add_task(&sb, "fine", "2 + 2", None);
    for args in [
        &["run", "poison"][..],
        &["run", "poison", "--dry-run"][..],
        &["sync-tasks"][..],
    ] {
        sb.run(args)
            .usage_error()
            .stderr_has("invalid retry.attempts = 0 in tasks/poison/config.json")
            .stderr_has("a whole number from 1 to 100")
            .stderr_has("hint: for example \"retry\"");
    }
    assert!(
        !sb.exists("tasks/poison/versions") && !sb.exists("tasks/fine/versions"),
        "no version stored: {:?}",
        sb.ls("tasks/poison")
    );
    assert!(!sb.exists("tasks/poison/runs"), "no run created");
    sb.write(
        "tasks/poison/config.json",
        r#"{"retry": {"attempts": 2, "initialDelay": "a while"}}"#,
    );
    sb.run(&["run", "poison"])
        .usage_error()
        .stderr_has("invalid retry.initialDelay = \"a while\"");
    sb.write("tasks/poison/config.json", r#"{"retry": {"attempts": 2}}"#);
    sb.run(&["run", "poison"]).ok().stdout_has("2");
}

#[test]
fn an_invalid_max_drive_attempts_in_the_settings_exits_2_naming_it() {
    let sb = task("t", "1", None);
    sb.write(
        ".sequentialrc.json",
        r#"{"version": 1, "engine": {"maxDriveAttempts": 0}}"#,
    );
    sb.run(&["run", "t"])
        .usage_error()
        .stderr_has("invalid engine.maxDriveAttempts 0 in .sequentialrc.json")
        .stderr_has("from 1 to 100");
    sb.write(
        ".sequentialrc.json",
        r#"{"version": 1, "engine": {"maxDriveAttempts": 3}}"#,
    );
    sb.run(&["run", "t"]).ok().stdout_has("1");
}
