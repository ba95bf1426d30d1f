//! Graph tasks through the binary: `graph check`, `graph show`, and `run`, `show --journal`,
//! `signal`, `resume`, `cancel`, `rerun` and `worker` on graph tasks; the `create-task
//! --with-graph` scaffold and the `tasks/order-graph` example, offline.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::runs::run_of;
use crate::util::Sandbox;

/// A graph that prepares, waits for `approved` (or times out after a day), then ships.
const APPROVAL_GRAPH: &str = r#"{
  "version": 1,
  "initial": "prepare",
  "states": {
    "prepare": { "onDone": "approval" },
    "approval": { "type": "wait", "on": { "approved": "ship" }, "after": { "1d": "expire" } },
    "ship": { "onDone": "done" },
    "expire": { "onDone": "done" },
    "done": { "type": "final" }
  }
}"#;

const APPROVAL_CODE: &str = r#"
export async function prepare(input) {
  const r = await fetch('data:application/json,{"ticket":"T-1"}');
  return { ...(await r.json()), item: input.item ?? "laptop" };
}
export async function ship(message, ctx) { return { shipped: true, by: message.by, ticket: ctx.results.prepare.ticket }; }
export async function expire() { return { shipped: false }; }
"#;

fn approval(sb: &Sandbox, name: &str) {
    sb.write(&format!("tasks/{name}/graph.json"), APPROVAL_GRAPH);
    sb.write(&format!("tasks/{name}/code.js"), APPROVAL_CODE);
}

/// The kinds of a `--json` run document's journal, graph records only, as `kind path`.
fn graph_kinds(doc: &Value) -> Vec<String> {
    doc["journal"]
        .as_array()
        .expect("a journal (--verbose --json)")
        .iter()
        .filter(|r| {
            let k = r["kind"].as_str().unwrap();
            !k.starts_with("call.") && k != "log" && k != "child.started" && k != "timer.armed"
        })
        .map(|r| {
            format!(
                "{} {}",
                r["kind"].as_str().unwrap(),
                r["data"]["path"].as_str().unwrap_or("-")
            )
        })
        .collect()
}

#[test]
fn create_task_with_graph_passes_check_runs_offline_and_has_an_error_path() {
    let sb = Sandbox::new();
    sb.run(&["create-task", "greet", "--with-graph", "--inputs", "name"])
        .ok()
        .stdout_has("graph check greet");
    sb.run(&["graph", "check", "greet"])
        .ok()
        .stdout_has("tasks/greet/graph.json: ok");
    let doc = sb.run(&["graph", "check", "greet", "--json"]).ok().json();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["errors"], json!([]));
    assert_eq!(doc["warnings"], json!([]));
    let doc = sb
        .run(&[
            "run",
            "greet",
            "--json",
            "--verbose",
            "--input",
            r#"{"name": "Ada"}"#,
        ])
        .ok()
        .json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(
        doc["output"],
        json!({"message": "hello from greet", "name": "Ada"})
    );
    assert_eq!(
        graph_kinds(&doc),
        [
            "run.started -",
            "state.entered fetchGreeting",
            "state.succeeded fetchGreeting",
            "transition fetchGreeting",
            "state.entered compose",
            "state.succeeded compose",
            "transition compose",
            "state.entered done",
            "run.succeeded -",
        ]
    );
    // the error path: a failing fetchGreeting is retried, then handled
    let code = sb.read("tasks/greet/code.js").replace(
        "const response = await fetch(",
        "throw new TypeError('greeting service down'); const response = await fetch(",
    );
    sb.write("tasks/greet/code.js", &code);
    let graph = sb
        .read("tasks/greet/graph.json")
        .replace("\"interval\": \"1s\"", "\"interval\": \"10ms\"");
    sb.write("tasks/greet/graph.json", &graph);
    let doc = sb
        .run(&[
            "run",
            "greet",
            "--json",
            "--verbose",
            "--wait",
            "30s",
            "--input",
            r#"{"name": "Bo"}"#,
        ])
        .ok()
        .json();
    assert_eq!(
        doc["output"],
        json!({"handled": true, "error": {"name": "TypeError", "message": "greeting service down"}})
    );
    let kinds = graph_kinds(&doc);
    assert_eq!(
        kinds
            .iter()
            .filter(|k| *k == "retry.scheduled fetchGreeting")
            .count(),
        2,
        "{kinds:?}"
    );
    assert!(
        kinds.contains(&"state.entered handleError".to_string()),
        "{kinds:?}"
    );
}

#[test]
fn graph_check_names_json_pointers_exits_2_on_errors_and_0_on_warnings() {
    let sb = Sandbox::new();
    sb.write(
        "tasks/bad/graph.json",
        r#"{
  "version": 1,
  "initial": "charge",
  "states": {
    "charge": {
      "retry": [{ "errors": ["*"] }, { "errors": ["Busy"] }],
      "onDone": "done"
    },
    "done": { "type": "final", "onDone": "charge" }
  }
}"#,
    );
    sb.write("tasks/bad/code.js", "export async function charge() {}");
    sb.run(&["graph", "check", "bad"])
        .code(2)
        .stdout_has("error   /states/charge/retry/0/errors")
        .stdout_has("error   /states/done/onDone")
        .stdout_has("expected:")
        .stderr_has("has 2 errors")
        .stderr_has("hint:");
    let doc = sb.run(&["graph", "check", "bad", "--json"]).code(2).json();
    assert_eq!(doc["ok"], false);
    let pointers: Vec<&str> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    assert_eq!(
        pointers,
        ["/states/charge/retry/0/errors", "/states/done/onDone"]
    );

    // a handler code.js does not export
    sb.write(
        "tasks/nohandler/graph.json",
        r#"{"version": 1, "initial": "a", "states": {"a": {"onDone": "b"}, "b": {"type": "final"}}}"#,
    );
    sb.write(
        "tasks/nohandler/code.js",
        "export async function other() {}",
    );
    sb.run(&["graph", "check", "nohandler"])
        .code(2)
        .stdout_has("/states/a");

    // E2-legacy: one warning with the canonical rewrite, exit 0
    sb.write(
        "tasks/legacy/graph.json",
        r#"{
  "initial": "checkStatus",
  "states": {
    "checkStatus": { "onSuccess": "processA", "onFail": "processB" },
    "processA": { "onDone": "complete" },
    "processB": { "onDone": "complete" },
    "complete": { "type": "final" }
  }
}"#,
    );
    sb.write(
        "tasks/legacy/code.js",
        "export async function checkStatus(i) { return { success: i.ok }; }\nexport async function processA(i) { return i; }\nexport async function processB(i) { return i; }\n",
    );
    let doc = sb.run(&["graph", "check", "legacy", "--json"]).ok().json();
    assert_eq!(doc["ok"], true);
    assert_eq!(doc["warnings"].as_array().unwrap().len(), 1, "{doc}");
    assert_eq!(doc["warnings"][0]["pointer"], "/states/checkStatus");
    sb.run(&["graph", "check", "legacy"])
        .ok()
        .stdout_has("ok, 1 warning");
    // and it runs, routing on output.success
    let doc = sb
        .run(&["run", "legacy", "--json", "--input", r#"{"ok": false}"#])
        .ok()
        .json();
    assert_eq!(doc["output"], json!({"success": false}));

    // an implicit task has no graph to check
    sb.write("tasks/plain/code.js", "1 + 1");
    sb.run(&["graph", "check", "plain"])
        .usage_error()
        .stderr_has("task plain has no graph.json");
}

#[test]
fn run_refuses_a_graph_that_fails_check_before_a_run_is_created() {
    let sb = Sandbox::new();
    sb.write(
        "tasks/g/graph.json",
        r#"{"version": 1, "initial": "a", "states": {"a": {"onDone": "nowhere"}, "done": {"type": "final"}}}"#,
    );
    sb.write("tasks/g/code.js", "export async function a() {}");
    sb.run(&["run", "g"])
        .usage_error()
        .stderr_has("tasks/g/graph.json has 1 error")
        .stderr_has("/states/a/onDone")
        .stderr_has("graph check g");
    assert!(!sb.exists("tasks/g/runs"), "no run was created");
}

#[test]
fn graph_show_draws_mermaid_dot_and_json_and_marks_a_runs_states() {
    let sb = Sandbox::new();
    approval(&sb, "approve");
    let mermaid = sb.run(&["graph", "show", "approve"]).ok().stdout;
    assert!(mermaid.starts_with("stateDiagram-v2\n"), "{mermaid}");
    for line in [
        "[*] --> prepare",
        "prepare --> approval : done",
        "approval --> ship : event:approved",
        "approval --> expire : after:1d",
        "done --> [*]",
    ] {
        assert!(mermaid.contains(line), "{line:?} in:\n{mermaid}");
    }
    assert!(!mermaid.contains("classDef"), "no run, no marks");
    let dot = sb
        .run(&["graph", "show", "approve", "--format", "dot"])
        .ok()
        .stdout;
    assert!(dot.starts_with("digraph \"approve\" {"), "{dot}");
    assert!(
        dot.contains("\"approval\" -> \"ship\" [label=\"event:approved\"];"),
        "{dot}"
    );

    // a run waiting in `approval`
    let doc = sb.run(&["run", "approve", "--json"]).code(3).json();
    let id = run_of(&doc);
    assert_eq!(doc["waiting_for"], "approved");
    let json = sb
        .run(&["graph", "show", "approve", "--run", &id, "--format", "json"])
        .ok()
        .json();
    assert_eq!(json["run"]["current"], json!(["approval"]));
    assert_eq!(json["run"]["visited"], json!(["approval", "prepare"]));
    let states = json["states"].as_array().unwrap();
    let approval = states.iter().find(|s| s["name"] == "approval").unwrap();
    assert_eq!(
        (approval["current"].clone(), approval["type"].clone()),
        (json!(true), json!("wait"))
    );
    let marked = sb
        .run(&["graph", "show", "approve", "--run", &id])
        .ok()
        .stdout;
    assert!(marked.contains("class prepare visited"), "{marked}");
    assert!(marked.contains("class approval current"), "{marked}");
    let dot = sb
        .run(&["graph", "show", "approve", "--run", &id, "--format", "dot"])
        .ok()
        .stdout;
    assert!(dot.contains("fillcolor=\"#fff3cd\""), "{dot}");
    // a run of another task is refused
    sb.write("tasks/other/graph.json", APPROVAL_GRAPH);
    sb.write("tasks/other/code.js", APPROVAL_CODE);
    sb.run(&["graph", "show", "other", "--run", &id])
        .usage_error()
        .stderr_has("is a run of task approve");
}

#[test]
fn run_signal_resume_show_cancel_and_rerun_work_for_graph_tasks() {
    let sb = Sandbox::new();
    approval(&sb, "approve");
    let doc = sb.run(&["run", "approve", "--json"]).code(3).json();
    let id = run_of(&doc);
    assert_eq!(doc["status"], "waiting");
    sb.run(&["signal", &id, "approved", r#"{"by": "ann"}"#])
        .ok();
    let doc = sb.run(&["resume", &id, "--json"]).ok().json();
    assert_eq!(doc["status"], "succeeded");
    assert_eq!(
        doc["output"],
        json!({"shipped": true, "by": "ann", "ticket": "T-1"})
    );
    sb.run(&["show", &id, "--journal"])
        .ok()
        .stdout_has("state.entered")
        .stdout_has("event.received")
        .stdout_has("call.completed")
        .stdout_has("run.succeeded");
    // an event for a finished run is refused
    sb.run(&["signal", &id, "approved"]).code(2);

    // cancel a waiting run: the wait's timer is cancelled with it
    let doc = sb.run(&["run", "approve", "--json"]).code(3).json();
    let waiting = run_of(&doc);
    sb.run(&["cancel", &waiting]).ok();
    let doc = sb
        .run(&["show", &waiting, "--journal", "--json"])
        .ok()
        .json();
    assert_eq!(doc["status"], "cancelled");
    let kinds: Vec<&str> = doc["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.ends_with(&["timer.cancelled", "run.cancelled"]),
        "{kinds:?}"
    );

    // rerun the finished run from the start of its wait: it waits again
    let journal = sb.run(&["show", &id, "--journal", "--json"]).ok().json()["journal"]
        .as_array()
        .unwrap()
        .clone();
    let wait_entered = journal
        .iter()
        .find(|r| r["kind"] == "transition" && r["data"]["path"] == "prepare")
        .unwrap()["seq"]
        .as_u64()
        .unwrap();
    let doc = sb
        .run(&[
            "rerun",
            &id,
            "--from-seq",
            &(wait_entered + 2).to_string(),
            "--json",
        ])
        .code(3)
        .json();
    let again = run_of(&doc);
    assert_eq!(doc["status"], "waiting", "{doc}");
    sb.run(&["signal", &again, "approved", r#"{"by": "bob"}"#])
        .ok();
    let doc = sb.run(&["resume", &again, "--json"]).ok().json();
    assert_eq!(doc["output"]["by"], "bob");
}

#[test]
fn a_worker_drives_graph_runs_through_their_waits() {
    let sb = Sandbox::new();
    approval(&sb, "approve");
    sb.run(&["sync-tasks"]).ok();
    let worker = sb.cmd(&["worker", "--concurrency", "2"]).spawn();
    let mut ids = Vec::new();
    for i in 0..2 {
        let doc = sb
            .run(&[
                "run",
                "approve",
                "--detach",
                "--json",
                "--input",
                &format!(r#"{{"item": "i{i}"}}"#),
            ])
            .ok()
            .json();
        ids.push(run_of(&doc));
    }
    for id in &ids {
        wait_for_status(&sb, id, "waiting");
        sb.run(&["signal", id, "approved", r#"{"by": "worker-test"}"#])
            .ok();
    }
    for id in &ids {
        let doc = wait_for_status(&sb, id, "succeeded");
        assert_eq!(doc["output"]["by"], "worker-test");
    }
    let status = std::process::Command::new("kill")
        .args(["-TERM", &worker.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = worker.wait_with_output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn wait_for_status(sb: &Sandbox, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let doc = sb.run(&["show", id, "--json"]).ok().json();
        if doc["status"] == status {
            return doc;
        }
        assert!(
            Instant::now() < deadline,
            "run {id} never became {status}: {doc}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_order_graph_example_runs_offline_waits_for_big_orders_and_rejects_missing_stock() {
    let sb = Sandbox::new().with_examples();
    sb.run(&["graph", "check", "order-graph"]).ok();
    let doc = sb
        .run(&["run", "order-graph", "--json", "--verbose"])
        .ok()
        .json();
    assert_eq!(
        doc["output"],
        json!({"orderId": "ord-7-2", "customer": "Alice", "total": 29.5, "receiptSent": true})
    );
    let kinds = graph_kinds(&doc);
    for k in [
        "item.started price",
        "state.entered price[1]/priceLine",
        "branch.started checks",
        "state.entered checks#1/fraud",
        "transition route",
        "state.entered receipt",
    ] {
        assert!(kinds.iter().any(|x| x == k), "{k} in {kinds:?}");
    }
    // a big order waits for a person
    let doc = sb
        .run(&[
            "run",
            "order-graph",
            "--json",
            "--input",
            r#"{"customerId": 3, "items": [{"sku": "tv", "qty": 1, "price": 499}]}"#,
        ])
        .code(3)
        .json();
    let id = run_of(&doc);
    assert_eq!(doc["waiting_for"], "approved");
    sb.run(&["graph", "show", "order-graph", "--run", &id])
        .ok()
        .stdout_has("class approval current");
    sb.run(&["signal", &id, "approved", r#"{"by": "ann"}"#])
        .ok();
    let doc = sb.run(&["resume", &id, "--json"]).ok().json();
    assert_eq!(doc["output"]["total"], 499);
    // missing stock: the parallel state's catch leads to the fail state
    sb.run(&[
        "run",
        "order-graph",
        "--input",
        r#"{"customerId": 3, "items": [{"sku": "unobtainium", "qty": 1, "price": 5}]}"#,
    ])
    .code(1)
    .stderr_has("OrderRejected: caused by OutOfStock: not in stock: unobtainium");
}

#[test]
fn show_journal_prints_graph_records_as_sentences() {
    let sb = Sandbox::new();
    approval(&sb, "approve");
    let id = run_of(&sb.run(&["run", "approve", "--json"]).code(3).json());
    sb.run(&["signal", &id, "approved", r#"{"by": "ann"}"#])
        .ok();
    sb.run(&["resume", &id]).ok();
    let out = sb.run(&["show", &id, "--journal"]).ok().stdout;
    for line in [
        "state.entered   prepare attempt 1 input {}",
        r#"state.succeeded prepare → {"item":"laptop","ticket":"T-1"}"#,
        "transition      prepare → approval (done)",
        "timer.scheduled approval timer ",
        r#"event.received  event "approved" {"by":"ann"}"#,
        r#"event.consumed  approval took event "approved""#,
        "timer.cancelled approval timer ",
        "transition      approval → ship (event:approved)",
    ] {
        assert!(out.contains(line), "{line:?} missing from:\n{out}");
    }
    // no graph record is printed as raw JSON
    for l in out
        .lines()
        .filter(|l| l.contains("state.") || l.contains("transition"))
    {
        assert!(!l.contains("\"path\""), "{l}");
    }
}

#[test]
fn a_fetch_that_spends_its_retries_in_a_graph_handler_pauses_the_run_and_resume_retry_continues() {
    let server = sequential_test_support::http::CountingServer::start();
    let sb = Sandbox::new();
    sb.write(
        "tasks/flaky/graph.json",
        r#"{"version": 1, "initial": "first", "states": {
            "first": {"onDone": "call"},
            "call": {"onDone": "done", "catch": [{"errors": ["*"], "target": "caught"}]},
            "caught": {"type": "fail", "error": "Caught"},
            "done": {"type": "final"}}}"#,
    );
    sb.write(
        "tasks/flaky/code.js",
        &format!(
            r#"export async function first() {{ return {{ n: 1 }}; }}
export async function call(input) {{
  const r = await fetch("{}/down");
  return {{ ...input, status: r.status, body: await r.json() }};
}}
"#,
            server.url()
        ),
    );
    let o = sb
        .cmd(&["run", "flaky", "--json"])
        .env("TASK_MAX_RETRIES", "1")
        .run()
        .code(3);
    let doc = o.json();
    assert_eq!(doc["status"], "paused", "{doc}");
    assert_eq!(server.count("/down"), 2, "one try and one retry");
    let id = run_of(&doc);
    let journal = sb
        .run(&["show", &id, "--journal"])
        .ok()
        .stdout_has("run.paused")
        .stdout;
    assert!(
        !journal.contains("state.failed"),
        "the catch did not take it:\n{journal}"
    );
    // like an implicit task's: resume alone says to add --retry
    sb.run(&["resume", &id]).code(2).stderr_has("--retry");
    server.set_down(false);
    let doc = sb
        .cmd(&["resume", &id, "--retry", "--json"])
        .env("TASK_MAX_RETRIES", "1")
        .run()
        .ok()
        .json();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(
        doc["output"],
        json!({"n": 1, "status": 200, "body": {"ok": true}})
    );
    assert_eq!(server.count("/down"), 3);
    // the first state ran once: its success is in the journal, never repeated
    let doc = sb.run(&["show", &id, "--journal", "--json"]).ok().json();
    let entered_first = doc["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "state.succeeded" && r["data"]["path"] == "first")
        .count();
    assert_eq!(entered_first, 1);
}

#[test]
fn rerun_redrive_reenters_the_failed_state_and_from_state_forks_at_a_states_entry() {
    let server = sequential_test_support::http::CountingServer::start();
    let sb = Sandbox::new();
    sb.write(
        "tasks/pay/graph.json",
        r#"{"version": 1, "initial": "first", "states": {
            "first": {"onDone": "charge"},
            "charge": {"retry": [{"errors": ["Declined"], "maxAttempts": 1, "interval": "10ms"}], "onDone": "done"},
            "done": {"type": "final"}}}"#,
    );
    sb.write(
        "tasks/pay/code.js",
        &format!(
            r#"class Declined extends Error {{}}
export async function first() {{ const r = await fetch("{url}/step/1"); return await r.json(); }}
export async function charge(input, ctx) {{
  const r = await fetch("{url}/status/422");
  throw new Declined(`attempt ${{ctx.attempt}}: ${{r.status}}`);
}}
"#,
            url = server.url()
        ),
    );
    let doc = sb.run(&["run", "pay", "--json"]).code(1).json();
    let id = run_of(&doc);
    assert_eq!(doc["error"]["name"], "Declined", "{doc}");
    assert_eq!(
        (server.count("/step/1"), server.count("/status/422")),
        (1, 2)
    );
    let before = sb.run(&["show", &id, "--journal", "--json"]).ok().json()["journal"].clone();

    // redrive: the copy keeps `first` and re-enters `charge` with fresh retries
    let doc = sb
        .run(&[
            "rerun",
            &id,
            "--redrive",
            "--wait",
            "30s",
            "--json",
            "--verbose",
        ])
        .code(1)
        .json();
    assert_ne!(run_of(&doc), id);
    assert_eq!(
        (server.count("/step/1"), server.count("/status/422")),
        (1, 4),
        "first is not run again; charge gets one try and one retry again"
    );
    let kinds = graph_kinds(&doc);
    let entered_charge: Vec<&String> = kinds
        .iter()
        .filter(|k| *k == "state.entered charge")
        .collect();
    assert_eq!(entered_charge.len(), 2, "{kinds:?}");
    let attempts: Vec<u64> = doc["journal"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "state.entered" && r["data"]["path"] == "charge")
        .map(|r| r["data"]["attempt"].as_u64().unwrap())
        .collect();
    assert_eq!(attempts, [1, 2], "fresh retry counters");
    // the failed run is left as it was
    assert_eq!(
        sb.run(&["show", &id, "--journal", "--json"]).ok().json()["journal"],
        before
    );

    // --from-state: the copy ends before the entry of `first`, which runs again
    let doc = sb
        .run(&["rerun", &id, "--from-state", "first", "--detach", "--json"])
        .ok()
        .json();
    assert_eq!(doc["from_seq"], 0, "{doc}");
    let doc = sb
        .run(&["rerun", &id, "--from-state", "charge", "--detach", "--json"])
        .ok()
        .json();
    assert!(doc["from_seq"].as_u64().unwrap() > 0, "{doc}");

    // what cannot be redriven or forked says what can
    sb.run(&["rerun", &id, "--from-state", "nope"])
        .code(2)
        .stderr_has("never entered it")
        .stderr_has("first, charge");
    approval(&sb, "approve");
    let waiting = run_of(&sb.run(&["run", "approve", "--json"]).code(3).json());
    sb.run(&["rerun", &waiting, "--redrive"])
        .code(2)
        .stderr_has("a failed run");
    sb.run(&["rerun", &id]).code(2).stderr_has("--from-seq");
}
