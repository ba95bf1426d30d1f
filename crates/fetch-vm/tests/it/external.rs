//! External mode: execute/resume JSON contract, vmState validation.

use sequential_fetch_vm::{execute_json, resume_json};
use sequential_test_support::child;
use serde_json::{Value, json};

const SEED: &str = r#"
const user = fetch(`https://api.example.com/users/${input.userId}`);
const posts = fetch(`https://api.example.com/posts?userId=${user.id}`, { method: "GET", headers: { Accept: "application/json" } });
{ user: user.name, postCount: posts.length }
"#;

fn call(f: fn(&str) -> String, req: Value) -> Value {
    serde_json::from_str(&f(&req.to_string())).expect("response is JSON")
}

fn paused_seed() -> Value {
    call(
        execute_json,
        json!({"id": "task-1", "code": SEED, "input": {"userId": 1}}),
    )
}

#[test]
fn seed_example_through_execute_and_two_resumes() {
    let first = paused_seed();
    assert_eq!(first["status"], "paused");
    assert_eq!(first["id"], "task-1");
    assert_eq!(first["code"], SEED);
    assert_eq!(
        first["fetchRequest"],
        json!({"id": "call-0", "url": "https://api.example.com/users/1", "options": {}})
    );
    let second = call(
        resume_json,
        json!({"taskId": "task-1", "vmState": first["vmState"], "originalCode": SEED,
               "fetchResponse": {"data": {"id": 1, "name": "Alice"}, "status": 200, "statusText": "OK"}}),
    );
    assert_eq!(second["status"], "paused", "{second}");
    assert_eq!(
        second["fetchRequest"],
        json!({"id": "call-1", "url": "https://api.example.com/posts?userId=1",
               "options": {"method": "GET", "headers": {"Accept": "application/json"}}})
    );
    let third = call(
        resume_json,
        json!({"taskId": "task-1", "vmState": second["vmState"], "originalCode": SEED,
               "fetchResponse": {"data": [{}, {}, {}, {}, {}], "status": 200, "statusText": "OK",
                                 "headers": {"content-type": "application/json"}}}),
    );
    assert_eq!(third["status"], "completed", "{third}");
    assert_eq!(third["result"], json!({"user": "Alice", "postCount": 5}));
    assert!(third.get("vmState").is_none());
}

#[test]
fn non_2xx_in_external_mode_is_a_catchable_fetch_error() {
    let code = "let out; try { fetch('https://x.test/a') } catch (e) { out = [e.name, e.status, e.statusText, e.data] } out";
    let first = call(execute_json, json!({"code": code}));
    let done = call(
        resume_json,
        json!({"vmState": first["vmState"], "originalCode": code,
               "fetchResponse": {"data": "{\"error\":\"gone\"}", "status": 410, "statusText": "Gone",
                                 "headers": {"Content-Type": "application/json"}}}),
    );
    assert_eq!(
        done["result"],
        json!(["FetchError", 410, "Gone", {"error": "gone"}])
    );
}

#[test]
fn several_pending_calls_are_listed_and_answered_by_id() {
    let code = r#"export default async function () {
  const [a, b] = await Promise.all([fetch("https://x.test/a"), ctx.callTool("calc", { x: 1 })]);
  return [await a.text(), b];
}"#;
    let first = call(execute_json, json!({"code": code}));
    assert_eq!(first["status"], "paused");
    let ids: Vec<_> = first["pending"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].clone())
        .collect();
    assert_eq!(ids, vec![json!("call-0"), json!("call-1")]);
    assert_eq!(first["pending"][1]["kind"], "tool");
    let done = call(
        resume_json,
        json!({"vmState": first["vmState"], "originalCode": code,
               "fetchResponse": {"data": "body", "status": 200},
               "responses": [{"id": "call-1", "result": 42}]}),
    );
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["result"], json!(["body", 42]));
}

#[test]
fn resume_with_other_code_names_both_hashes() {
    let first = paused_seed();
    let other = format!("{SEED}\n// edited");
    let out = call(
        resume_json,
        json!({"vmState": first["vmState"], "originalCode": other, "fetchResponse": {"data": {}}}),
    );
    assert_eq!(out["status"], "error");
    assert_eq!(out["error"]["name"], "CodeMismatch");
    let msg = out["error"]["message"].as_str().unwrap();
    assert!(msg.contains(&sequential_fetch_vm::code_hash(SEED)), "{msg}");
    assert!(
        msg.contains(&sequential_fetch_vm::code_hash(&other)),
        "{msg}"
    );
}

#[test]
fn truncated_edited_or_garbage_vm_state_is_refused() {
    let first = paused_seed();
    let state = first["vmState"].as_str().unwrap().to_owned();
    let truncated = state[..state.len() / 2].to_owned();
    let edited = state.replace("userId", "userID");
    assert_ne!(edited, state);
    for bad in [truncated, edited, "garbage".to_owned(), "{}".to_owned()] {
        let out = call(
            resume_json,
            json!({"vmState": bad, "originalCode": SEED, "fetchResponse": {"data": {}}}),
        );
        assert_eq!(out["status"], "error", "{bad}");
        assert_eq!(out["error"]["name"], "Invalid", "{out}");
        assert!(
            out["error"]["message"]
                .as_str()
                .unwrap()
                .contains("vmState"),
            "{out}"
        );
    }
}

#[test]
fn vm_state_from_a_newer_version_is_refused() {
    let first = paused_seed();
    let mut state: Value = serde_json::from_str(first["vmState"].as_str().unwrap()).unwrap();
    state["version"] = json!(2);
    let out = call(
        resume_json,
        json!({"vmState": state.to_string(), "originalCode": SEED, "fetchResponse": {"data": {}}}),
    );
    assert_eq!(out["error"]["name"], "UnsupportedVersion", "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("version 2")
    );
}

#[test]
fn answering_a_call_that_is_not_pending_names_the_pending_ids() {
    let first = paused_seed();
    let out = call(
        resume_json,
        json!({"vmState": first["vmState"], "originalCode": SEED, "fetchResponse": {"id": "call-7", "data": {}}}),
    );
    assert_eq!(out["error"]["name"], "NotPending", "{out}");
    assert!(
        out["error"]["message"].as_str().unwrap().contains("[0]"),
        "{out}"
    );
}

#[test]
fn malformed_request_documents_are_errors() {
    let out: Value = serde_json::from_str(&execute_json("not json")).unwrap();
    assert_eq!(out["status"], "error");
    assert_eq!(out["error"]["name"], "Invalid");
    let out: Value = serde_json::from_str(&resume_json("{\"vmState\": 3}")).unwrap();
    assert_eq!(out["status"], "error");
}

/// Runs one external-mode call in a fresh process (this test binary, re-executed): nothing of
/// the previous call survives but the JSON it returned.
fn in_child_process(op: &str, req: &Value) -> Value {
    let test = child::test_path(module_path!(), "child_process_entry");
    let out = child::relaunch(test, "FETCH_VM_CHILD_OP", op)
        .env("FETCH_VM_CHILD_REQ", req.to_string())
        .output()
        .expect("spawn the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split_once("FETCH-VM-RESPONSE ").map(|(_, json)| json))
        .unwrap_or_else(|| {
            panic!(
                "no response from the child test process: status {}, stdout {stdout}, stderr {}",
                out.status,
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).expect("response JSON")
}

/// The child side of [`in_child_process`]; run normally it checks the same entry points inline.
#[test]
fn child_process_entry() {
    match (
        child::role("FETCH_VM_CHILD_OP"),
        child::role("FETCH_VM_CHILD_REQ"),
    ) {
        (Some(op), Some(req)) => {
            let out = if op == "execute" {
                execute_json(&req)
            } else {
                resume_json(&req)
            };
            println!("\nFETCH-VM-RESPONSE {out}");
        }
        _ => {
            let out = call(execute_json, json!({"code": "1 + 1"}));
            assert_eq!(out["result"], json!(2));
        }
    }
}

#[test]
fn seed_example_in_separate_processes() {
    let first = in_child_process(
        "execute",
        &json!({"id": "p", "code": SEED, "input": {"userId": 1}}),
    );
    assert_eq!(first["status"], "paused", "{first}");
    let second = in_child_process(
        "resume",
        &json!({"taskId": "p", "vmState": first["vmState"], "originalCode": SEED,
                "fetchResponse": {"data": {"id": 1, "name": "Alice"}, "status": 200, "statusText": "OK"}}),
    );
    assert_eq!(second["status"], "paused", "{second}");
    let third = in_child_process(
        "resume",
        &json!({"taskId": "p", "vmState": second["vmState"], "originalCode": SEED,
                "fetchResponse": {"data": [1, 2, 3, 4, 5], "status": 200, "statusText": "OK"}}),
    );
    assert_eq!(third["status"], "completed", "{third}");
    assert_eq!(third["result"], json!({"user": "Alice", "postCount": 5}));
}

#[test]
fn typed_api_round_trip() {
    use sequential_fetch_vm::Limits;
    use sequential_fetch_vm::external::{
        ExecuteRequest, FetchResponse, ResumeRequest, Status, execute, resume,
    };
    let code = "fetch('https://x.test/n').n * 2";
    let out = execute(
        &ExecuteRequest::new(Some("t".into()), code, json!(null)),
        &Limits::default(),
    );
    assert_eq!(out.status, Status::Paused);
    let state = out.vm_state.expect("vmState");
    let req = ResumeRequest::new(
        Some("t".into()),
        state,
        code,
        Some(FetchResponse::new(200, "OK", json!({"n": 21}))),
    );
    let done = resume(&req, &Limits::default());
    assert_eq!(done.status, Status::Completed);
    assert_eq!(done.result, Some(json!(42)));
}
