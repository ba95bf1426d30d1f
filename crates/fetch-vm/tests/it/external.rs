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
    assert_eq!(out["errorInfo"]["name"], "CodeMismatch");
    let msg = out["errorInfo"]["message"].as_str().unwrap();
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
        assert_eq!(out["errorInfo"]["name"], "Invalid", "{out}");
        assert!(
            out["errorInfo"]["message"]
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
    assert_eq!(out["errorInfo"]["name"], "UnsupportedVersion", "{out}");
    assert!(
        out["errorInfo"]["message"]
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
    assert_eq!(out["errorInfo"]["name"], "NotPending", "{out}");
    assert!(
        out["errorInfo"]["message"]
            .as_str()
            .unwrap()
            .contains("[0]"),
        "{out}"
    );
}

#[test]
fn malformed_request_documents_are_errors() {
    let out: Value = serde_json::from_str(&execute_json("not json")).unwrap();
    assert_eq!(out["status"], "error");
    assert_eq!(out["errorInfo"]["name"], "Invalid");
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

/// The sequential-flow README's "Multiple Sequential Fetches" example, verbatim.
const README_MULTI: &str = r#"
    const user = fetch('api/user/1');
    const posts = fetch('api/posts?userId=' + user.id);
    { user: user.name, postCount: posts.length }
  "#;

#[test]
fn readme_multiple_sequential_fetches_with_relative_urls() {
    let r1 = call(
        execute_json,
        json!({"id": "task-1", "name": "two fetches", "code": README_MULTI}),
    );
    assert_eq!(r1["status"], "paused", "{r1}");
    assert_eq!(r1["id"], "task-1");
    assert_eq!(r1["name"], "two fetches");
    assert_eq!(
        r1["fetchRequest"]["url"], "api/user/1",
        "passed through as written"
    );
    let r2 = call(
        resume_json,
        json!({"taskId": r1["id"], "vmState": r1["vmState"], "originalCode": r1["code"],
               "fetchResponse": {"data": {"id": 42, "name": "Alice"}}}),
    );
    assert_eq!(r2["status"], "paused", "{r2}");
    assert_eq!(r2["name"], "two fetches", "the name travels in vmState");
    assert_eq!(r2["fetchRequest"]["url"], "api/posts?userId=42");
    let r3 = call(
        resume_json,
        json!({"taskId": r2["id"], "vmState": r2["vmState"], "originalCode": r2["code"],
               "fetchResponse": {"data": {"length": 5}}}),
    );
    assert_eq!(r3["status"], "completed", "{r3}");
    assert_eq!(r3["result"], json!({"user": "Alice", "postCount": 5}));
    assert_eq!(r3["id"], "task-1");
}

#[test]
fn base_url_resolves_relative_fetch_urls_and_resume_may_replace_it() {
    let r1 = call(
        execute_json,
        json!({"code": README_MULTI, "options": {"baseUrl": "https://api.example.com/v1/"}}),
    );
    assert_eq!(
        r1["fetchRequest"]["url"],
        "https://api.example.com/v1/api/user/1"
    );
    assert_eq!(
        r1["pending"][0]["request"]["url"],
        "https://api.example.com/v1/api/user/1"
    );
    let r2 = call(
        resume_json,
        json!({"vmState": r1["vmState"], "originalCode": README_MULTI,
               "fetchResponse": {"data": {"id": 7, "name": "Bo"}}}),
    );
    assert_eq!(
        r2["fetchRequest"]["url"], "https://api.example.com/v1/api/posts?userId=7",
        "the baseUrl is kept in vmState"
    );
    let other = call(
        resume_json,
        json!({"vmState": r1["vmState"], "originalCode": README_MULTI,
               "options": {"baseUrl": "http://localhost:8080"},
               "fetchResponse": {"data": {"id": 7, "name": "Bo"}}}),
    );
    assert_eq!(
        other["fetchRequest"]["url"],
        "http://localhost:8080/api/posts?userId=7"
    );
}

#[test]
fn relative_urls_resolve_as_new_url_does() {
    use sequential_fetch_vm::external::resolve_url;
    let base = "https://h.test/a/b?q=1#f";
    for (url, want) in [
        ("c", "https://h.test/a/c"),
        ("./c/d", "https://h.test/a/c/d"),
        ("../c", "https://h.test/c"),
        ("../../../c", "https://h.test/c"),
        ("/c?x=1", "https://h.test/c?x=1"),
        ("?x=2", "https://h.test/a/b?x=2"),
        ("#g", "https://h.test/a/b?q=1#g"),
        ("//other.test/p", "https://other.test/p"),
        ("http://abs.test/x", "http://abs.test/x"),
    ] {
        assert_eq!(resolve_url(url, base).as_deref(), Some(want), "{url}");
    }
    assert_eq!(
        resolve_url("api/x", "https://h.test").as_deref(),
        Some("https://h.test/api/x")
    );
    assert_eq!(resolve_url("api/x", "not a url"), None);
}

const CLOCK: &str = r#"
    const before = [Date.now(), Math.random(), new Date().toISOString(), performance.now(),
                    crypto.randomUUID()];
    console.log("before", before);
    const user = fetch('api/user/1');
    const after = [Date.now(), Math.random(), crypto.getRandomValues(new Uint8Array(4)).join(",")];
    console.info("after");
    const posts = fetch('api/posts?userId=' + user.id);
    ({ before, after, user: user.name, posts: posts.length, late: Date.now() >= before[0] })
  "#;

#[test]
fn clock_randomness_and_console_never_pause_and_replay_identically() {
    let r1 = call(execute_json, json!({"code": CLOCK}));
    assert_eq!(r1["status"], "paused", "{r1}");
    let pending = r1["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "only the fetch: {r1}");
    assert_eq!(pending[0]["kind"], "fetch");
    assert_eq!(r1["fetchRequest"]["url"], "api/user/1");
    let resume = |state: &Value, data: Value| {
        call(
            resume_json,
            json!({"vmState": state, "originalCode": CLOCK, "fetchResponse": {"data": data}}),
        )
    };
    let a = resume(&r1["vmState"], json!({"id": 1, "name": "Alice"}));
    let b = resume(&r1["vmState"], json!({"id": 1, "name": "Alice"}));
    assert_eq!(a["status"], "paused", "{a}");
    assert_eq!(a["fetchRequest"]["url"], "api/posts?userId=1");
    assert_eq!(a["pending"].as_array().unwrap().len(), 1, "{a}");
    assert_eq!(a["fetchRequest"], b["fetchRequest"]);
    // what r1's vmState recorded replays identically; what ran after its fetch was drawn anew
    let b_done = resume(&b["vmState"], json!([1, 2]));
    let done1 = resume(&a["vmState"], json!([1, 2]));
    std::thread::sleep(std::time::Duration::from_millis(5));
    let done2 = resume(&a["vmState"], json!([1, 2]));
    assert_eq!(done1["status"], "completed", "{done1}");
    assert_eq!(
        done1["result"], done2["result"],
        "two resumes of one vmState give identical results"
    );
    assert_eq!(done1["result"]["before"], b_done["result"]["before"]);
    let result = &done1["result"];
    assert!(result["before"][0].as_f64().unwrap() > 1.6e12, "{result}");
    let r = result["before"][1].as_f64().unwrap();
    assert!((0.0..1.0).contains(&r), "{result}");
    assert_eq!(result["late"], true);
    assert_eq!(result["posts"], 2);
    // a fresh execute draws fresh randomness
    let again = call(execute_json, json!({"code": CLOCK}));
    let again = resume(&again["vmState"], json!({"id": 1, "name": "Alice"}));
    let again = resume(&again["vmState"], json!([1, 2]));
    assert_ne!(again["result"]["before"][4], result["before"][4]);
}

#[test]
fn module_mode_answers_the_clock_but_keeps_outside_calls_pending() {
    let code = r#"export default async function () {
  const t = await ctx.now();
  const r = Math.random();
  await ctx.sleep(10);
  return [typeof t, typeof r];
}"#;
    let first = call(execute_json, json!({"code": code}));
    assert_eq!(first["status"], "paused", "{first}");
    assert!(first.get("fetchRequest").is_none());
    let pending = first["pending"].as_array().unwrap();
    assert_eq!(pending.len(), 1, "{first}");
    assert_eq!(pending[0]["kind"], "sleep");
    let done = call(
        resume_json,
        json!({"vmState": first["vmState"], "originalCode": code,
               "responses": [{"id": pending[0]["id"], "result": null}]}),
    );
    assert_eq!(done["result"], json!(["number", "number"]), "{done}");
}

#[test]
fn missing_id_is_a_uuid_v7_kept_across_resumes() {
    let r1 = call(execute_json, json!({"code": README_MULTI}));
    let id = r1["id"].as_str().expect("an id is generated").to_owned();
    let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
    assert_eq!(parsed.get_version_num(), 7);
    let r2 = call(
        resume_json,
        json!({"vmState": r1["vmState"], "originalCode": README_MULTI,
               "fetchResponse": {"data": {"id": 1, "name": "A"}}}),
    );
    assert_eq!(
        r2["id"],
        id.as_str(),
        "taskId defaults to the id in vmState"
    );
    let other = call(execute_json, json!({"code": "1"}));
    assert_ne!(other["id"], id.as_str());
    assert_eq!(other["status"], "completed");
}

#[test]
fn error_is_the_message_with_error_info_beside_it() {
    let out = call(
        execute_json,
        json!({"id": "e", "name": "boom", "code": "throw new TypeError('nope')"}),
    );
    assert_eq!(out["status"], "error");
    assert_eq!(out["id"], "e");
    assert_eq!(out["name"], "boom");
    assert_eq!(out["error"], "nope");
    assert_eq!(out["errorInfo"]["name"], "TypeError");
    assert_eq!(out["errorInfo"]["message"], "nope");
    assert!(
        out["errorInfo"]["stack"].is_string(),
        "a stack beside the message: {out}"
    );
    let status: sequential_fetch_vm::external::Status =
        serde_json::from_value(json!("running")).unwrap();
    assert_eq!(status, sequential_fetch_vm::external::Status::Running);
}
