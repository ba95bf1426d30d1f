//! Graph tasks driven by the engine (GRAPHS.md): the traces of E1 and E2, events through the
//! inbox, timers, retries and catches, maps, child runs, cancel and kill, version pinning,
//! reruns. Every run's kept snapshot is checked against the fold of its journal (S10).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sequential_adaptor::{
    JournalRecord, NewTaskVersion, Run, RunId, RunStatus, StorageAdapter, TaskName, now_millis,
};
use sequential_tasker_engine::flow_graph::{self, Graph, Record};
use sequential_tasker_engine::{Engine, EngineConfig, StartOptions};
use sequential_test_support::http::CountingServer;
use serde_json::{Value, json};

use crate::{Fixture, fixture};

// ------------------------------------------------------------------------------ helpers

/// Stores a graph task: `code` (code.js) and `graph` (graph.json).
pub(crate) async fn put_graph(
    store: &dyn StorageAdapter,
    name: &str,
    code: &str,
    graph: Value,
) -> TaskName {
    let t = TaskName::new(name).unwrap();
    store
        .put_task_version(NewTaskVersion {
            task: t.clone(),
            code: code.into(),
            graph: Some(graph),
            config: json!({}),
        })
        .await
        .unwrap();
    t
}

/// The graph records of a stored journal.
pub(crate) fn graph_records(journal: &[JournalRecord]) -> Vec<Record> {
    journal
        .iter()
        .filter_map(|r| Record::from_parts(&r.kind, &r.data).unwrap())
        .collect()
}

pub(crate) async fn journal(store: &dyn StorageAdapter, id: RunId) -> Vec<JournalRecord> {
    store.read_journal(id, None, 100_000).await.unwrap()
}

/// S10: the graph of `task` folded over the run's journal equals the snapshot the engine
/// keeps for it, byte for byte.
pub(crate) async fn assert_fold_matches(engine: &Engine, id: RunId) {
    let store = engine.store();
    let run = store.get_run(id).await.unwrap();
    let v = store
        .get_task_version(
            &run.task,
            sequential_adaptor::VersionSel::Exact(run.version),
        )
        .await
        .unwrap();
    let graph = Graph::parse(&v.graph.unwrap().to_string()).unwrap().graph;
    let records = graph_records(&journal(store.as_ref(), id).await);
    let folded = flow_graph::fold(&graph, &records).unwrap();
    let kept = engine
        .graph_snapshot(id)
        .expect("the engine keeps the snapshot of a graph run it drove");
    assert_eq!(
        String::from_utf8(folded.to_bytes()).unwrap(),
        String::from_utf8(kept.to_bytes()).unwrap(),
        "S10: fold(journal) != the kept snapshot"
    );
}

/// Compares graph records with a compact trace, GRAPHS.md §3 style: `kind path field=json …`
/// (`-` for no path). Kinds and paths in order; fields only where listed.
#[track_caller]
pub(crate) fn assert_trace(records: &[Record], expected: &[&str]) {
    let shown = show(records);
    assert_eq!(
        records.len(),
        expected.len(),
        "trace length differs\nactual:\n{shown}\nexpected:\n{}",
        expected.join("\n")
    );
    for (i, (r, line)) in records.iter().zip(expected).enumerate() {
        let mut parts = line.split_whitespace();
        let kind = parts.next().unwrap();
        let path = parts.next().unwrap_or("-");
        let (k, data) = r.to_parts();
        let ok_path = match path {
            "-" => r.path.is_none(),
            p => r.path.as_deref() == Some(p),
        };
        assert!(
            k.as_str() == kind && ok_path,
            "record {}: expected `{line}`\nactual:\n{shown}",
            i + 1
        );
        for field in parts {
            let (name, raw) = field.split_once('=').expect("field=value");
            let want: Value =
                serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
            let got = name
                .split('.')
                .fold(&data, |v, k| v.get(k).unwrap_or(&Value::Null));
            assert_eq!(
                got,
                &want,
                "record {} (`{line}`): field {name}\nactual:\n{shown}",
                i + 1
            );
        }
    }
}

pub(crate) fn show(records: &[Record]) -> String {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (k, mut d) = r.to_parts();
            if let Value::Object(m) = &mut d {
                m.remove("path");
            }
            format!(
                "{:>3} {:<16} {:<14} {}",
                i + 1,
                k.as_str(),
                r.path.as_deref().unwrap_or("-"),
                d
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The sizes of the graph commits of a journal, in order (from each commit's `batch`).
pub(crate) fn commits(journal: &[JournalRecord]) -> Vec<u64> {
    journal
        .iter()
        .filter_map(|r| r.data.get("batch").and_then(Value::as_u64))
        .collect()
}

async fn run_graph(f: &Fixture, t: &TaskName, input: Value) -> Run {
    let run = f
        .engine
        .start(t, input, StartOptions::default())
        .await
        .unwrap();
    let done = f
        .engine
        .run_until_settled(run.id, Some(now_millis() + 60_000))
        .await
        .unwrap();
    assert_fold_matches(&f.engine, run.id).await;
    done
}

// ------------------------------------------------------------------------------ E1

pub(crate) fn e1_graph() -> Value {
    json!({
        "version": 1,
        "id": "order-linear",
        "initial": "fetchOrder",
        "states": {
            "fetchOrder": { "onDone": "charge" },
            "charge": { "onDone": "notify" },
            "notify": { "onDone": "done" },
            "done": { "type": "final" }
        }
    })
}

/// E1's handlers; each POSTs its input to its URL first (`fetchOrder`, `charge`, `notify`).
pub(crate) fn e1_code(urls: [&str; 3]) -> String {
    let [a, b, c] = urls;
    format!(
        r#"const post = (url, body) => fetch(url, {{ method: "POST", body: JSON.stringify(body) }});
export async function fetchOrder(input) {{
  await post("{a}", input);
  return {{ id: input.orderId, amount: 42 }};
}}
export async function charge(order) {{
  await post("{b}", order);
  return {{ ...order, charged: true }};
}}
export async function notify(order) {{
  await post("{c}", order);
  return {{ notified: order.id }};
}}
"#
    )
}

/// E1's handlers against the counting server's `/step/1..3`.
pub(crate) fn e1_steps(server: &CountingServer) -> String {
    let u = server.url();
    e1_code([
        &format!("{u}/step/1"),
        &format!("{u}/step/2"),
        &format!("{u}/step/3"),
    ])
}

pub(crate) const E1_TRACE: [&str; 12] = [
    r#"run.started - input={"orderId":7}"#,
    r#"state.entered fetchOrder attempt=1 input={"orderId":7}"#,
    r#"state.succeeded fetchOrder output={"id":7,"amount":42}"#,
    r#"transition fetchOrder to=charge via=done"#,
    r#"state.entered charge attempt=1 input={"id":7,"amount":42}"#,
    r#"state.succeeded charge output={"id":7,"amount":42,"charged":true}"#,
    r#"transition charge to=notify via=done"#,
    r#"state.entered notify attempt=1 input={"id":7,"amount":42,"charged":true}"#,
    r#"state.succeeded notify output={"notified":7}"#,
    r#"transition notify to=done via=done"#,
    r#"state.entered done input={"notified":7}"#,
    r#"run.succeeded - output={"notified":7}"#,
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e1_produces_exactly_the_graph_records_of_graphs_md() {
    let server = CountingServer::start();
    for (backend, f) in crate::backends() {
        server.clear();
        let t = put_graph(
            f.store.as_ref(),
            "order-linear",
            &e1_steps(&server),
            e1_graph(),
        )
        .await;
        let run = run_graph(&f, &t, json!({"orderId": 7})).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{backend}: {run:?}");
        assert_eq!(run.output, Some(json!({"notified": 7})), "{backend}");
        let j = journal(f.store.as_ref(), run.id).await;
        assert_trace(&graph_records(&j), &E1_TRACE);
        // the commits of GRAPHS.md: {1,2} {3..5} {6..8} {9..12}
        assert_eq!(commits(&j), [2, 3, 3, 4], "{backend}");
        // run.started pins the hashes beside what the engine writes for every run
        let started = &j[0].data;
        assert!(
            started["graph_hash"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert!(
            started["code_hash"]
                .as_str()
                .unwrap()
                .starts_with("sha256:")
        );
        assert_eq!(started["task"], "order-linear");
        assert_eq!(started["version"], 1);
        // each handler's fetch is journaled between the graph records, with its state's path
        let calls: Vec<(String, String)> = j
            .iter()
            .filter(|r| r.kind.starts_with("call."))
            .map(|r| (r.kind.clone(), r.data["path"].as_str().unwrap().to_string()))
            .collect();
        let expected: Vec<(String, String)> = ["fetchOrder", "charge", "notify"]
            .iter()
            .flat_map(|p| {
                [
                    ("call.requested".to_string(), p.to_string()),
                    ("call.completed".to_string(), p.to_string()),
                ]
            })
            .collect();
        assert_eq!(calls, expected, "{backend}");
        let entered_charge = j
            .iter()
            .position(|r| r.kind == "state.entered" && r.data["path"] == "charge")
            .unwrap();
        let charge_call = j
            .iter()
            .position(|r| r.kind == "call.requested" && r.data["path"] == "charge")
            .unwrap();
        assert!(
            entered_charge < charge_call,
            "S7: the handler starts after its state.entered"
        );
        let hits = server.hits();
        assert_eq!(
            hits.iter().map(|h| h.path.as_str()).collect::<Vec<_>>(),
            ["/step/1", "/step/2", "/step/3"],
            "{backend}"
        );
        // the Idempotency-Key names the run, the state, its activation and the call
        let key = hits[1].key.clone().unwrap();
        assert_eq!(key, format!("{}:charge:2:0", run.id), "{backend}");
    }
}

// ------------------------------------------------------------------------------ E2

fn e2_graph(with_default: bool) -> Value {
    let mut g = json!({
        "version": 1,
        "id": "triage",
        "initial": "score",
        "states": {
            "score": { "onDone": "route" },
            "route": {
                "type": "choice",
                "choices": [
                    { "when": { "path": "$.prev.score", "gte": 80 }, "target": "fastTrack" },
                    { "when": { "all": [ { "path": "$.prev.score", "gte": 50 }, { "path": "$.run.input.vip", "eq": true } ] }, "target": "fastTrack" },
                    { "when": { "path": "$.prev.score", "gte": 50 }, "target": "review" }
                ],
                "default": "reject"
            },
            "fastTrack": { "onDone": "done" },
            "review": { "onDone": "done" },
            "reject": { "onDone": "done" },
            "done": { "type": "final" }
        }
    });
    if !with_default {
        g["states"]["route"]
            .as_object_mut()
            .unwrap()
            .remove("default");
        g["states"].as_object_mut().unwrap().remove("reject");
    }
    g
}

const E2_CODE: &str = r#"
export async function score(input) { return { score: input.score }; }
export async function fastTrack(input, ctx) { return { path: "fastTrack", got: input, state: ctx.state }; }
export async function review() { return { path: "review" }; }
export async function reject() { return { path: "reject" }; }
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2_routes_every_input_as_graphs_md_shows() {
    let f = fixture("memory");
    let t = put_graph(f.store.as_ref(), "triage", E2_CODE, e2_graph(true)).await;
    for (input, via, target) in [
        (json!({"score": 91}), "choice[0]", "fastTrack"),
        (json!({"score": 60, "vip": true}), "choice[1]", "fastTrack"),
        (json!({"score": 60}), "choice[2]", "review"),
        (json!({"score": 10}), "default", "reject"),
        (json!({"score": "high"}), "default", "reject"),
    ] {
        let run = run_graph(&f, &t, input.clone()).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{input}: {run:?}");
        assert_eq!(run.output.as_ref().unwrap()["path"], target, "{input}");
        let j = journal(f.store.as_ref(), run.id).await;
        let score = json!({"score": input["score"]});
        let trace = [
            format!("run.started - input={input}"),
            format!("state.entered score attempt=1 input={input}"),
            format!("state.succeeded score output={score}"),
            "transition score to=route via=done".to_string(),
            format!("state.entered route input={score}"),
            format!("transition route to={target} via={via}"),
            format!("state.entered {target} attempt=1 input={score}"),
            format!("state.succeeded {target}"),
            format!("transition {target} to=done via=done"),
            "state.entered done".to_string(),
            "run.succeeded -".to_string(),
        ];
        let trace: Vec<&str> = trace.iter().map(String::as_str).collect();
        assert_trace(&graph_records(&j), &trace);
        // from state.succeeded score to state.entered <branch>: one commit
        assert_eq!(commits(&j), [2, 5, 4], "{input}");
        if target == "fastTrack" {
            // choice passes its input through
            assert_eq!(run.output.as_ref().unwrap()["got"], score);
            assert_eq!(run.output.as_ref().unwrap()["state"], "fastTrack");
        }
    }
    // without default, a score of 10 matches nothing
    let t = put_graph(f.store.as_ref(), "triage-strict", E2_CODE, e2_graph(false)).await;
    let run = run_graph(&f, &t, json!({"score": 10})).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.error.as_ref().unwrap()["name"], "flow.NoChoiceMatched");
    let records = graph_records(&journal(f.store.as_ref(), run.id).await);
    let last = records.last().unwrap();
    assert_eq!(last.kind().as_str(), "run.failed");
    assert_eq!(last.path.as_deref(), Some("route"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2_legacy_routes_on_output_success() {
    let f = fixture("memory");
    let graph = json!({
        "initial": "checkStatus",
        "states": {
            "checkStatus": { "onSuccess": "processA", "onFail": "processB" },
            "processA": { "onDone": "complete" },
            "processB": { "onDone": "complete" },
            "complete": { "type": "final" }
        }
    });
    let code = r#"
export async function checkStatus(input) { return { success: input.ok }; }
export async function processA(input) { return { path: "A", result: input }; }
export async function processB(input) { return { path: "B", result: input }; }
"#;
    let report = sequential_tasker_engine::graph::check(code, &graph.to_string());
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.warnings().count(), 1, "{report:?}");
    let t = put_graph(f.store.as_ref(), "legacy", code, graph).await;
    for (ok, via, target) in [(true, "success", "processA"), (false, "fail", "processB")] {
        let run = run_graph(&f, &t, json!({"ok": ok})).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
        assert_eq!(
            run.output.as_ref().unwrap()["result"],
            json!({"success": ok})
        );
        let records = graph_records(&journal(f.store.as_ref(), run.id).await);
        let tr = records
            .iter()
            .find(|r| r.kind().as_str() == "transition")
            .unwrap()
            .to_parts()
            .1;
        assert_eq!(
            (tr["to"].as_str(), tr["via"].as_str()),
            (Some(target), Some(via))
        );
    }
}

// ------------------------------------------------------------------------------ data, errors

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_back_off_and_a_catch_takes_the_error_path() {
    let server = CountingServer::start();
    let f = fixture("memory");
    let graph = json!({
        "version": 1,
        "initial": "charge",
        "states": {
            "charge": {
                "retry": [{ "errors": ["FetchError", "Busy"], "maxAttempts": 2, "interval": "20ms" }],
                "catch": [{ "errors": ["*"], "target": "refund" }],
                "onDone": "done"
            },
            "refund": { "onDone": "failed" },
            "done": { "type": "final" },
            "failed": { "type": "fail", "error": "OrderFailed" }
        }
    });
    let code = format!(
        r#"
class Busy extends Error {{}}
export async function charge(input, ctx) {{
  const r = await fetch("{}/status/422");
  throw new Busy(`attempt ${{ctx.attempt}}: ${{r.status}}`);
}}
export async function refund(error, ctx) {{
  return {{ refunded: true, because: error.name, message: error.message, attempt: ctx.attempt }};
}}
"#,
        server.url()
    );
    let t = put_graph(f.store.as_ref(), "retry-catch", &code, graph).await;
    let run = run_graph(&f, &t, json!({})).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    assert_eq!(run.error.unwrap()["name"], "OrderFailed");
    let j = journal(f.store.as_ref(), run.id).await;
    let refund = graph_records(&j)
        .into_iter()
        .find(|r| r.kind().as_str() == "state.succeeded")
        .unwrap()
        .to_parts()
        .1;
    assert_eq!(
        refund["output"],
        json!({"refunded": true, "because": "Busy", "message": "attempt 3: 422", "attempt": 1}),
        "the catch target gets the error, named after the thrown class (S1)"
    );
    assert_eq!(server.count("/status/422"), 3, "one try and two retries");
    let records = graph_records(&journal(f.store.as_ref(), run.id).await);
    let kinds: Vec<String> = records
        .iter()
        .map(|r| format!("{} {}", r.kind(), r.path.as_deref().unwrap_or("-")))
        .collect();
    assert_eq!(
        kinds,
        [
            "run.started -",
            "state.entered charge",
            "state.failed charge",
            "retry.scheduled charge",
            "timer.fired charge",
            "state.entered charge",
            "state.failed charge",
            "retry.scheduled charge",
            "timer.fired charge",
            "state.entered charge",
            "state.failed charge",
            "transition charge",
            "state.entered refund",
            "state.succeeded refund",
            "transition refund",
            "state.entered failed",
            "run.failed failed",
        ],
        "{}",
        show(&records)
    );
    // the backoff is an absolute deadline, and the timer fired at it, not before
    let scheduled = j.iter().find(|r| r.kind == "retry.scheduled").unwrap();
    let fired = j.iter().find(|r| r.kind == "timer.fired").unwrap();
    assert_eq!(scheduled.data["delay_ms"], 20);
    assert!(fired.at >= scheduled.data["fire_at"].as_i64().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outcomes_assign_and_templates_flow_into_handlers() {
    let f = fixture("memory");
    let graph = json!({
        "version": 1,
        "initial": "decide",
        "states": {
            "decide": {
                "on": { "big": "big", "small": "small" },
                "assign": { "decided": "$.output" }
            },
            "big": { "input": { "n": "$.prev.n", "seen": "$.vars.decided", "who": "$.run.input.who" }, "onDone": "done" },
            "small": { "onDone": "done" },
            "done": { "type": "final", "output": { "result": "$.prev", "vars": "$.vars" } }
        }
    });
    let code = r#"
export async function decide(input, ctx) {
  return ctx.outcome(input.n > 10 ? "big" : "small", { n: input.n });
}
export async function big(input, ctx) { return { big: input, results: ctx.results, task: ctx.run.task }; }
export async function small(input) { return { small: input }; }
"#;
    let t = put_graph(f.store.as_ref(), "outcomes", code, graph).await;
    let run = run_graph(&f, &t, json!({"n": 20, "who": "ada"})).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let out = run.output.unwrap();
    assert_eq!(
        out["result"]["big"],
        json!({"n": 20, "seen": {"n": 20}, "who": "ada"})
    );
    assert_eq!(out["result"]["results"]["decide"], json!({"n": 20}));
    assert_eq!(out["result"]["task"], "outcomes");
    assert_eq!(out["vars"]["decided"], json!({"n": 20}));
    let records = graph_records(&journal(f.store.as_ref(), run.id).await);
    assert!(
        records
            .iter()
            .any(|r| r.to_parts().1["via"] == "outcome:big"),
        "{}",
        show(&records)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selector_that_resolves_to_nothing_is_flow_input_template() {
    let f = fixture("memory");
    let graph = json!({
        "version": 1,
        "initial": "a",
        "states": {
            "a": { "input": { "x": "$.run.input.missing" }, "onDone": "done" },
            "done": { "type": "final" }
        }
    });
    let t = put_graph(
        f.store.as_ref(),
        "template",
        "export async function a() { return 1; }",
        graph,
    )
    .await;
    let run = run_graph(&f, &t, json!({})).await;
    assert_eq!(run.status, RunStatus::Failed);
    let e = run.error.unwrap();
    assert_eq!(e["name"], "flow.InputTemplate");
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("$.run.input.missing") && msg.contains("state a"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_graph_fails_the_run_naming_the_json_pointer() {
    let f = fixture("memory");
    let graph = json!({
        "version": 1,
        "initial": "a",
        "states": { "a": { "onDone": "nowhere" }, "done": { "type": "final" } }
    });
    let t = put_graph(
        f.store.as_ref(),
        "broken",
        "export async function a() {}",
        graph,
    )
    .await;
    let run = run_graph_unchecked(&f, &t, json!({})).await;
    assert_eq!(run.status, RunStatus::Failed, "{run:?}");
    let e = run.error.unwrap();
    assert_eq!(e["name"], "GraphError");
    assert!(
        e["message"].as_str().unwrap().contains("/states/a/onDone"),
        "{e}"
    );
}

async fn run_graph_unchecked(f: &Fixture, t: &TaskName, input: Value) -> Run {
    let run = f
        .engine
        .start(t, input, StartOptions::default())
        .await
        .unwrap();
    f.engine.run_until_settled(run.id, None).await.unwrap()
}

// ------------------------------------------------------------------------------ events

const APPROVAL: &str = r#"
export async function prepare(input) { return { order: input.order }; }
export async function ship(input, ctx) { return { shipped: true, by: input.by, event: ctx.event }; }
export async function expire(input) { return { expired: true }; }
"#;

fn approval_graph() -> Value {
    json!({
        "version": 1,
        "initial": "prepare",
        "states": {
            "prepare": { "onDone": "approval" },
            "approval": { "type": "wait", "on": { "approved": "ship" }, "after": { "5s": "expire" } },
            "ship": { "onDone": "done" },
            "expire": { "onDone": "done" },
            "done": { "type": "final" }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_through_the_inbox_each_signal_once() {
    for (backend, f) in crate::backends() {
        let t = put_graph(f.store.as_ref(), "approval", APPROVAL, approval_graph()).await;
        let run = f
            .engine
            .start(&t, json!({"order": 1}), StartOptions::default())
            .await
            .unwrap();
        let waiting = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(waiting.status, RunStatus::Waiting, "{backend}: {waiting:?}");
        assert_eq!(
            waiting.waiting_for.as_deref(),
            Some("approved"),
            "{backend}"
        );
        let after = waiting.wake_at.expect("the `after` timeout is the wake-up");
        assert!(after > now_millis() + 3_000, "{backend}");
        // an event nobody waits for stays in the inbox; the awaited one is consumed
        f.store
            .send_signal(run.id, "noise", json!(1))
            .await
            .unwrap();
        f.store
            .send_signal(run.id, "approved", json!({"by": "ops"}))
            .await
            .unwrap();
        let done = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
        let out = done.output.unwrap();
        assert_eq!(
            out["by"], "ops",
            "{backend}: the event's message is the input"
        );
        assert_eq!(out["event"]["name"], "approved", "{backend}");
        assert_fold_matches(&f.engine, run.id).await;
        let j = journal(f.store.as_ref(), run.id).await;
        let received: Vec<_> = j
            .iter()
            .filter(|r| r.kind == "event.received")
            .map(|r| (r.data["name"].clone(), r.data["signal"].clone()))
            .collect();
        assert_eq!(
            received,
            [(json!("noise"), json!(0)), (json!("approved"), json!(1))],
            "{backend}: each signal became exactly one event"
        );
        let kinds: Vec<String> = graph_records(&j)
            .iter()
            .map(|r| format!("{} {}", r.kind(), r.path.as_deref().unwrap_or("-")))
            .collect();
        assert!(
            kinds.contains(&"timer.cancelled approval".to_string()),
            "{kinds:?}"
        );
        assert!(
            kinds.ends_with(&[
                "state.entered done".to_string(),
                "event.consumed -".to_string(),
                "run.succeeded -".to_string()
            ]),
            "{backend}: the unconsumed event is discarded when the run ends: {kinds:?}"
        );
        // an event for a finished run is refused
        let err = f
            .store
            .send_signal(run.id, "approved", json!(1))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("finished run"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_sent_before_the_wait_is_consumed_when_the_wait_is_entered() {
    let f = fixture("sqlite");
    let graph = json!({
        "version": 1,
        "initial": "pause",
        "states": {
            "pause": { "type": "wait", "for": "300ms", "onDone": "approval" },
            "approval": { "type": "wait", "on": { "approved": "ship" } },
            "ship": { "onDone": "done" },
            "done": { "type": "final" }
        }
    });
    let t = put_graph(f.store.as_ref(), "early", APPROVAL, graph).await;
    let run = f
        .engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let waiting = f.engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(waiting.status, RunStatus::Waiting);
    f.store
        .send_signal(run.id, "approved", json!({"by": "early"}))
        .await
        .unwrap();
    let done = f
        .engine
        .run_until_settled(run.id, Some(now_millis() + 10_000))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(done.output.unwrap()["by"], "early");
    assert_fold_matches(&f.engine, run.id).await;
}

// ------------------------------------------------------------------------------ map, parallel

/// A counting server route that measures how many requests are in flight at once.
pub(crate) struct Concurrency {
    now: AtomicUsize,
    pub(crate) max: AtomicUsize,
}

pub(crate) fn concurrency_server() -> (CountingServer, Arc<Concurrency>) {
    use axum::extract::{Path, State};
    let c = Arc::new(Concurrency {
        now: AtomicUsize::new(0),
        max: AtomicUsize::new(0),
    });
    let router = axum::Router::new()
        .route(
            "/conc/{i}",
            axum::routing::any(
                |State(c): State<Arc<Concurrency>>, Path(i): Path<u64>| async move {
                    let n = c.now.fetch_add(1, Ordering::SeqCst) + 1;
                    c.max.fetch_max(n, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    c.now.fetch_sub(1, Ordering::SeqCst);
                    axum::Json(json!({ "i": i }))
                },
            ),
        )
        .with_state(c.clone());
    (CountingServer::start_with(router), c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_map_of_100_items_keeps_4_in_flight_and_item_order() {
    let (server, c) = concurrency_server();
    let f = fixture("sqlite");
    let graph = json!({
        "version": 1,
        "initial": "each",
        "states": {
            "each": {
                "type": "map",
                "items": "$.run.input.items",
                "maxConcurrency": 4,
                "iterator": {
                    "initial": "fetchOne",
                    "states": {
                        "fetchOne": { "onDone": "end" },
                        "end": { "type": "final" }
                    }
                },
                "onDone": "done"
            },
            "done": { "type": "final" }
        }
    });
    let code = format!(
        r#"export async function fetchOne(item, ctx) {{
  const r = await fetch(`{}/conc/${{item}}`);
  const body = await r.json();
  return {{ item: body.i, index: ctx.index }};
}}"#,
        server.url()
    );
    let t = put_graph(f.store.as_ref(), "fanout", &code, graph).await;
    let items: Vec<u64> = (0..100).map(|i| 1000 + i).collect();
    let run = run_graph(&f, &t, json!({ "items": items })).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    let out = run.output.unwrap();
    let got: Vec<(u64, u64)> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|o| (o["item"].as_u64().unwrap(), o["index"].as_u64().unwrap()))
        .collect();
    let want: Vec<(u64, u64)> = items
        .iter()
        .enumerate()
        .map(|(i, x)| (*x, i as u64))
        .collect();
    assert_eq!(got, want, "the output keeps item order");
    assert_eq!(server.hits().len(), 100);
    let max = c.max.load(Ordering::SeqCst);
    assert!(
        max <= 4,
        "{max} handlers were in flight at once (maxConcurrency 4)"
    );
    assert!(max >= 2, "the items ran concurrently (max in flight {max})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_branches_run_at_once_and_join_in_branch_order() {
    let f = fixture("memory");
    let graph = json!({
        "version": 1,
        "initial": "enrich",
        "states": {
            "enrich": {
                "type": "parallel",
                "branches": [
                    { "initial": "slow", "states": { "slow": { "onDone": "a" }, "a": { "type": "final" } } },
                    { "initial": "fast", "states": { "fast": { "onDone": "b" }, "b": { "type": "final" } } }
                ],
                "onDone": "done"
            },
            "done": { "type": "final" }
        }
    });
    let code = r#"
export async function slow(input, ctx) { await ctx.sleep(50); return { slow: ctx.branch }; }
export async function fast(input, ctx) { return { fast: ctx.branch }; }
"#;
    let t = put_graph(f.store.as_ref(), "par", code, graph).await;
    let run = run_graph(&f, &t, json!({})).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.output.unwrap(), json!([{"slow": 0}, {"fast": 1}]));
    let j = journal(f.store.as_ref(), run.id).await;
    let order: Vec<String> = graph_records(&j)
        .iter()
        .filter(|r| r.kind().as_str() == "state.succeeded")
        .map(|r| r.path.clone().unwrap())
        .collect();
    assert_eq!(
        order[..2],
        ["enrich#1/fast", "enrich#0/slow"],
        "the fast branch ends first"
    );
    // the handler's sleep is a durable timer of its own activation
    assert!(
        j.iter()
            .any(|r| r.kind == "timer.armed" && r.data["path"] == "enrich#0/slow")
    );
}

// ------------------------------------------------------------------------------ children

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_state_runs_another_task_as_a_durable_child() {
    let f = fixture("sqlite");
    let t = TaskName::new("double").unwrap();
    f.store
        .put_task_version(NewTaskVersion {
            task: t.clone(),
            code: "export default async function (input) { return input.n * 2; }".into(),
            graph: None,
            config: json!({}),
        })
        .await
        .unwrap();
    let graph = json!({
        "version": 1,
        "initial": "twice",
        "states": {
            "twice": { "task": "double", "input": { "n": "$.run.input.n" }, "onDone": "missing" },
            "missing": { "task": "no-such-task", "catch": [{ "errors": ["flow.ChildFailed"], "target": "done" }], "onDone": "done" },
            "done": { "type": "final", "output": { "twice": "$.results.twice", "error": "$.prev.name" } }
        }
    });
    let parent = put_graph(f.store.as_ref(), "parent", "", graph).await;
    let run = run_graph(&f, &parent, json!({"n": 21})).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(
        run.output.unwrap(),
        json!({"twice": 42, "error": "flow.ChildFailed"})
    );
    let j = journal(f.store.as_ref(), run.id).await;
    let child: RunId = j.iter().find(|r| r.kind == "child.started").unwrap().data["run"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let c = f.store.get_run(child).await.unwrap();
    assert_eq!(
        (c.status, c.parent.unwrap().run),
        (RunStatus::Succeeded, run.id)
    );
}

// ------------------------------------------------------------------------------ cancel, kill

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_and_kill_end_a_graph_run_with_its_timers_cancelled() {
    for (backend, f) in crate::backends() {
        let t = put_graph(f.store.as_ref(), "approval", APPROVAL, approval_graph()).await;
        // a waiting run, cancelled: nobody holds it, so it ends at once
        let run = f
            .engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        f.engine.run_until_settled(run.id, None).await.unwrap();
        let cancelled = f
            .engine
            .cancel(run.id, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(cancelled.status, RunStatus::Cancelled, "{backend}");
        let records = graph_records(&journal(f.store.as_ref(), run.id).await);
        let tail: Vec<String> = records[records.len() - 2..]
            .iter()
            .map(|r| format!("{} {}", r.kind(), r.path.as_deref().unwrap_or("-")))
            .collect();
        assert_eq!(
            tail,
            ["timer.cancelled approval", "run.cancelled -"],
            "{backend}"
        );
        assert_fold_matches(&f.engine, run.id).await;
        assert!(
            f.engine.cancel(run.id, Duration::ZERO).await.is_err(),
            "already ended"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_lets_the_running_handler_finish_and_enters_no_new_state() {
    let f = fixture("sqlite");
    let graph = json!({
        "version": 1,
        "initial": "slow",
        "states": {
            "slow": { "onDone": "next" },
            "next": { "onDone": "done" },
            "done": { "type": "final" }
        }
    });
    let code = r#"
export async function slow(input, ctx) { await ctx.sleep(600); return 1; }
export async function next() { return 2; }
"#;
    let t = put_graph(f.store.as_ref(), "slow", code, graph).await;
    let run = f
        .engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let engine = f.engine.clone();
    let driving = tokio::spawn(async move { engine.run_until_settled(run.id, None).await });
    // once the handler is under way (its sleep is journaled), cancel with a long grace
    loop {
        let j = journal(f.store.as_ref(), run.id).await;
        if j.iter().any(|r| r.kind == "timer.armed") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let cancelled = f
        .engine
        .cancel(run.id, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(cancelled.status, RunStatus::Cancelled);
    let settled = driving.await.unwrap().unwrap();
    assert_eq!(settled.status, RunStatus::Cancelled);
    let j = journal(f.store.as_ref(), run.id).await;
    let graph_kinds: Vec<String> = graph_records(&j)
        .iter()
        .map(|r| format!("{} {}", r.kind(), r.path.as_deref().unwrap_or("-")))
        .collect();
    assert!(
        !graph_kinds.iter().any(|k| k.ends_with(" next")),
        "no new state after the cancel: {graph_kinds:?}"
    );
    assert_eq!(graph_kinds.last().unwrap(), "run.cancelled -");
    // the handler finished its sleep before the run ended (S14: it may finish)
    assert!(
        j.iter()
            .any(|r| r.kind == "call.completed" && r.data["kind"] == "sleep")
    );
}

// ------------------------------------------------------------------------------ pinning, rerun

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_changed_under_a_running_run_fails_it_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let store: Arc<dyn StorageAdapter> =
        Arc::new(sequential_adaptor_folder::FolderStore::open(&root).unwrap());
    let engine = Engine::new(store.clone(), EngineConfig::default()).unwrap();
    let t = put_graph(store.as_ref(), "approval", APPROVAL, approval_graph()).await;
    let run = engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let waiting = engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(waiting.status, RunStatus::Waiting);
    let pinned = journal(store.as_ref(), run.id).await[0].data["graph_hash"].clone();
    // someone edits the stored version in place
    let file = root.join("approval/versions/1.json");
    let text = std::fs::read_to_string(&file).unwrap();
    let edited = text.replace("\"5s\"", "\"9s\"");
    assert_ne!(text, edited, "the stored version holds the graph");
    std::fs::write(&file, edited).unwrap();
    store
        .send_signal(run.id, "approved", json!({}))
        .await
        .unwrap();
    let failed = engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(failed.status, RunStatus::Failed, "{failed:?}");
    let e = failed.error.unwrap();
    assert_eq!(e["name"], "GraphChanged");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains(pinned.as_str().unwrap()), "{msg}");
    assert!(msg.contains("approval"), "names the current state: {msg}");
    assert_ne!(e["cause"]["found"]["graph_hash"], pinned, "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rerun_never_copies_half_a_transition_and_replays_completed_calls() {
    let server = CountingServer::start();
    let f = fixture("memory");
    let t = put_graph(
        f.store.as_ref(),
        "order-linear",
        &e1_steps(&server),
        e1_graph(),
    )
    .await;
    let run = run_graph(&f, &t, json!({"orderId": 7})).await;
    let j = journal(f.store.as_ref(), run.id).await;
    // cut inside the commit that finishes charge: the copy stops before it
    let inside = j
        .iter()
        .find(|r| r.kind == "transition" && r.data["path"] == "charge")
        .unwrap()
        .seq;
    server.clear();
    let again = f.engine.rerun(run.id, inside).await.unwrap();
    let copied = journal(f.store.as_ref(), again.id).await;
    assert_eq!(
        copied.last().unwrap().kind,
        "call.completed",
        "the copy ends after charge's call, before its commit"
    );
    let done = f.engine.run_until_settled(again.id, None).await.unwrap();
    assert_eq!(done.output, Some(json!({"notified": 7})));
    assert_fold_matches(&f.engine, again.id).await;
    // charge's completed call was replayed, not performed again; notify ran
    let paths: Vec<String> = server.hits().into_iter().map(|h| h.path).collect();
    assert_eq!(paths, ["/step/3"]);
    let records = graph_records(&journal(f.store.as_ref(), again.id).await);
    assert!(records.iter().any(|r| r.kind().as_str() == "run.recovered"));
}

// ------------------------------------------------------------------------------ misc

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_default_export_and_inline_code_are_handlers_too() {
    let f = fixture("memory");
    let graph = json!({
        "initial": "first",
        "states": {
            "first": { "handler": "default", "onDone": "second" },
            "second": { "code": "return { inline: input.n + 1 };", "onDone": "done" },
            "done": { "type": "final" }
        }
    });
    let code = "export default async function (input) { return { n: input.n * 10 }; }";
    let t = put_graph(f.store.as_ref(), "mixed", code, graph).await;
    let run = run_graph(&f, &t, json!({"n": 4})).await;
    assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
    assert_eq!(run.output.unwrap(), json!({"inline": 41}));
}
