//! HOST-API.md §4.7 with graph tasks over HTTP (E1 of GRAPHS.md §3.1 uploaded as a tar.gz,
//! an event sent before its wait state), and the endpoints added with them: the graph drawn,
//! a run's named events as a stream, the host log and audit trail, and what `DELETE /runs/:id`
//! and `_redrive` refuse.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{APPROVAL, HELLO, Server, upload};
use crate::serve_events::ndjson;
use crate::util::Sandbox;

const E1: &str = r#"{
  "version": 1,
  "id": "order-linear",
  "initial": "fetchOrder",
  "states": {
    "fetchOrder": { "onDone": "charge" },
    "charge": { "onDone": "notify" },
    "notify": { "onDone": "done" },
    "done": { "type": "final" }
  }
}"#;

const E1_CODE: &str = "export async function fetchOrder(input) { return { id: input.orderId, amount: 42 }; }\nexport async function charge(order) { return { ...order, charged: true }; }\nexport async function notify(order) { return { notified: order.id }; }\n";

fn tar_gz(name: &str, files: &[(&str, &str)]) -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (file, body) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("{name}/{file}"), body.as_bytes())
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn send_tar(s: &Server, method: &str, path: &str, gz: Vec<u8>) -> (u16, Value) {
    s.call(
        method,
        path,
        &[("content-type", "application/octet-stream")],
        Some(gz),
    )
}

fn kinds(records: &[Value]) -> Vec<String> {
    records
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_string())
        .collect()
}

/// §4.7 points 1–4 with E1: upload (201, 409, PUT → v2, an invalid graph → 422 with its
/// pointer), idempotent starts, the stream of exactly E1's records (NDJSON and SSE), and a
/// stream cut after record 5 resumed — also across `kill -9` of the server.
#[test]
fn e1_over_http_uploads_starts_once_streams_exactly_and_resumes_across_kill_9() {
    let sb = Sandbox::new();
    let mut s = Server::start(&sb, &[], &[]);
    let e1 = || tar_gz("order-linear", &[("graph.json", E1), ("code.js", E1_CODE)]);
    let (st, v) = send_tar(&s, "POST", "/api/v1/tasks", e1());
    assert_eq!(
        (st, v["name"].as_str(), v["version"].as_u64()),
        (201, Some("order-linear"), Some(1)),
        "{v}"
    );
    let (st, v) = send_tar(&s, "POST", "/api/v1/tasks", e1());
    assert_eq!((st, v["code"].as_str()), (409, Some("TASK_EXISTS")), "{v}");
    let changed = E1_CODE.replace("amount: 42", "amount: 43");
    let (st, v) = send_tar(
        &s,
        "PUT",
        "/api/v1/tasks/order-linear",
        tar_gz("order-linear", &[("graph.json", E1), ("code.js", &changed)]),
    );
    assert_eq!((st, v["version"].as_u64()), (200, Some(2)), "{v}");
    // an invalid graph: 422 naming the JSON pointer of the first error, nothing stored
    let broken = E1.replace("\"onDone\": \"charge\"", "\"onDone\": \"nowhere\"");
    let (st, e) = send_tar(
        &s,
        "POST",
        "/api/v1/tasks",
        tar_gz(
            "order-broken",
            &[("graph.json", &broken), ("code.js", E1_CODE)],
        ),
    );
    assert_eq!((st, e["code"].as_str()), (422, Some("INVALID")), "{e}");
    assert_eq!(
        e["details"]["errors"][0]["pointer"], "/states/fetchOrder/onDone",
        "{e}"
    );
    assert!(
        e["error"]
            .as_str()
            .unwrap()
            .contains("/states/fetchOrder/onDone"),
        "{e}"
    );
    assert_eq!(
        s.get("/api/v1/tasks/order-broken").0,
        404,
        "nothing was stored"
    );
    // point 2: one run per key; the same key with another input is 409
    let start = |input: Value| {
        s.call(
            "POST",
            "/api/v1/tasks/order-linear/runs",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "k1"),
            ],
            Some(json!({ "input": input }).to_string().into_bytes()),
        )
    };
    let (st1, first) = start(json!({ "orderId": 7 }));
    let (st2, again) = start(json!({ "orderId": 7 }));
    assert_eq!((st1, st2), (202, 200), "{first}\n{again}");
    assert_eq!(first["id"], again["id"]);
    let (st, e) = start(json!({ "orderId": 8 }));
    assert_eq!(
        (st, e["code"].as_str()),
        (409, Some("IDEMPOTENCY_KEY_REUSED")),
        "{e}"
    );
    let id = first["id"].as_str().unwrap().to_string();
    let (_, run) = s.get(&format!("/api/v1/runs/{id}?wait=30s"));
    assert_eq!(run["status"], "succeeded", "{run}\n{}", s.stderr());
    assert_eq!(run["output"], json!({ "notified": 7 }));
    // point 3: exactly E1's records, closing after run.succeeded
    let (st, all) = s.get(&format!("/api/v1/runs/{id}/events"));
    assert_eq!(st, 200);
    let all = ndjson(&all);
    assert_eq!(
        kinds(&all),
        [
            "run.started",
            "state.entered",
            "state.succeeded",
            "transition",
            "state.entered",
            "state.succeeded",
            "transition",
            "state.entered",
            "state.succeeded",
            "transition",
            "state.entered",
            "run.succeeded"
        ],
        "{all:?}"
    );
    let vias: Vec<&str> = all
        .iter()
        .filter_map(|r| r["data"]["via"].as_str())
        .collect();
    assert_eq!(vias, ["done", "done", "done"]);
    let (_, sse) = s.call(
        "GET",
        &format!("/api/v1/runs/{id}/events"),
        &[("accept", "text/event-stream")],
        None,
    );
    let ids: Vec<u64> = sse
        .as_str()
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    let seqs: Vec<u64> = all.iter().map(|r| r["seq"].as_u64().unwrap()).collect();
    assert_eq!(ids, seqs);
    // point 4: cut after record 5, resumed with Last-Event-ID and with ?after=
    let seen = s.first_lines(&format!("/api/v1/runs/{id}/events"), 5);
    let last = seen[4]["seq"].as_u64().unwrap().to_string();
    let (_, rest) = s.call(
        "GET",
        &format!("/api/v1/runs/{id}/events"),
        &[("last-event-id", &last)],
        None,
    );
    let mut joined = seen.clone();
    joined.extend(ndjson(&rest));
    assert_eq!(joined, all, "Last-Event-ID: a gap or a duplicate");
    // … and across kill -9 of the host between the two connections
    s.kill9();
    let s = Server::start(&sb, &[], &[]);
    let (_, rest) = s.get(&format!("/api/v1/runs/{id}/events?after={last}"));
    let mut joined = seen.clone();
    joined.extend(ndjson(&rest));
    assert_eq!(joined, all, "?after= after a restart: a gap or a duplicate");
}

const GATED: &str = r#"{
  "version": 1,
  "initial": "gate",
  "states": {
    "gate": { "type": "wait", "on": { "go": "approval" } },
    "approval": { "type": "wait", "on": { "approved": "done" } },
    "done": { "type": "final" }
  }
}"#;

/// §4.7 point 5: an event sent before the run reaches the wait state that takes it is kept
/// (202, consumed: false) and later taken (`via=event:approved`).
#[test]
fn an_event_sent_before_its_wait_state_is_kept_and_taken_there() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    let (st, v) = s.post(
        "/api/v1/tasks",
        json!({ "name": "gated", "code": "export const unused = 1;\n", "graph": serde_json::from_str::<Value>(GATED).unwrap() }),
    );
    assert_eq!(st, 201, "{v}");
    let (_, run) = s.post("/api/v1/tasks/gated/runs", json!({ "input": {} }));
    let id = run["id"].as_str().unwrap().to_string();
    let (st, sent) = s.post(
        &format!("/api/v1/runs/{id}/_event"),
        json!({ "eventName": "approved", "message": { "by": "ann" } }),
    );
    assert_eq!(st, 202, "{sent}");
    assert_eq!(
        (sent["accepted"].as_bool(), sent["consumed"].as_bool()),
        (Some(true), Some(false)),
        "{sent}"
    );
    // The run parks at `gate`; when the early event arrived while it was on its way there, it
    // is woken once more (`waiting.until` set) to take the event into its journal, and parks
    // again. Only then is it sure to be waiting when `go` is sent.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, waiting) = s.get(&format!("/api/v1/runs/{id}?wait=30s&until=waiting"));
        assert_eq!(waiting["waiting"]["name"], "go", "{waiting}");
        let (_, journal) = s.get(&format!("/api/v1/runs/{id}/journal"));
        let imported = journal["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["kind"] == "event.received" && r["data"]["name"] == "approved");
        if imported && waiting["waiting"]["until"].is_null() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the early event never reached the journal of the parked run: {waiting}\n{journal}"
        );
    }
    let (st, sent) = s.post(
        &format!("/api/v1/runs/{id}/_event"),
        json!({ "eventName": "go" }),
    );
    assert_eq!(
        (st, sent["consumed"].as_bool()),
        (202, Some(true)),
        "{sent}"
    );
    let (_, run) = s.get(&format!("/api/v1/runs/{id}?wait=30s"));
    assert_eq!(run["status"], "succeeded", "{run}\n{}", s.stderr());
    let (_, journal) = s.get(&format!("/api/v1/runs/{id}/journal"));
    let vias: Vec<(String, String)> = journal["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "transition")
        .map(|r| {
            (
                r["data"]["from"].as_str().unwrap().to_string(),
                r["data"]["via"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        vias,
        [
            ("gate".to_string(), "event:go".to_string()),
            ("approval".to_string(), "event:approved".to_string())
        ],
        "{journal}"
    );
    // the graph, drawn: JSON, Mermaid and dot; with ?run= the states it visited
    let (st, g) = s.get("/api/v1/tasks/gated/graph");
    assert_eq!((st, g["initial"].as_str()), (200, Some("gate")), "{g}");
    let (st, m) = s.get("/api/v1/tasks/gated/graph?format=mermaid");
    assert!(
        st == 200 && m.as_str().unwrap().starts_with("stateDiagram-v2"),
        "{m}"
    );
    let (st, d) = s.get("/api/v1/tasks/gated/graph?format=dot");
    assert!(
        st == 200 && d.as_str().unwrap().starts_with("digraph"),
        "{d}"
    );
    let (st, marked) = s.get(&format!("/api/v1/tasks/gated/graph?run={id}"));
    assert_eq!(st, 200, "{marked}");
    assert_eq!(
        marked["run"]["visited"],
        json!(["approval", "done", "gate"]),
        "{marked}"
    );
    let (st, e) = s.get("/api/v1/tasks/gated/graph?format=svg");
    assert_eq!((st, e["code"].as_str()), (400, Some("BAD_REQUEST")), "{e}");
    upload(&s, "hello", HELLO);
    let (st, e) = s.get("/api/v1/tasks/hello/graph");
    assert_eq!(
        (st, e["code"].as_str()),
        (404, Some("GRAPH_NOT_FOUND")),
        "{e}"
    );
    let (st, e) = s.get("/api/v1/tasks/nope/graph");
    assert_eq!(
        (st, e["code"].as_str()),
        (404, Some("TASK_NOT_FOUND")),
        "{e}"
    );
}

#[test]
fn named_events_log_audit_and_what_delete_and_redrive_refuse() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    upload(&s, "approval", APPROVAL);
    upload(&s, "hello", HELLO);
    let (_, run) = s.post(
        "/api/v1/tasks/approval/runs",
        json!({ "input": { "item": "lamp" } }),
    );
    let id = run["id"].as_str().unwrap().to_string();
    let (_, waiting) = s.get(&format!("/api/v1/runs/{id}?wait=30s&until=waiting"));
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    // an active run cannot be deleted; a run that has not failed cannot be redriven
    let (st, e) = s.call("DELETE", &format!("/api/v1/runs/{id}"), &[], None);
    assert_eq!((st, e["code"].as_str()), (409, Some("RUN_ACTIVE")), "{e}");
    let (st, e) = s.post(&format!("/api/v1/runs/{id}/_redrive"), json!({}));
    assert_eq!(
        (st, e["code"].as_str()),
        (409, Some("RUN_NOT_FAILED")),
        "{e}"
    );
    assert!(e["error"].as_str().unwrap().contains(&id), "{e}");
    // the named stream follows the run: `asked` now, `decided` once the event arrived
    let s2 = &s;
    let url = format!("/api/v1/runs/{id}/events/decided");
    let (st, sent) = s2.post(
        &format!("/api/v1/runs/{id}/_event"),
        json!({ "eventName": "approved", "message": { "by": "ann" } }),
    );
    assert_eq!(st, 202, "{sent}");
    let (st, decided) = s.get(&url);
    assert_eq!(st, 200);
    let decided = ndjson(&decided);
    assert_eq!(decided.len(), 1, "{decided:?}");
    assert_eq!(
        (decided[0]["eventName"].as_str(), &decided[0]["message"]),
        (Some("decided"), &json!({ "ok": true }))
    );
    let (_, asked) = s.get(&format!("/api/v1/runs/{id}/events/asked?follow=false"));
    assert_eq!(ndjson(&asked)[0]["data"], json!({ "item": "lamp" }));
    let (_, sth) = s.get(&format!("/api/v1/instance/{id}/events/asked?follow=false"));
    assert_eq!(ndjson(&sth).len(), 1);
    // an ended run is deleted with its journal and events: 200 {id}, then 404
    let (_, ended) = s.get(&format!("/api/v1/runs/{id}?wait=30s&until=terminal"));
    assert_eq!(ended["status"], "succeeded", "{ended}");
    let (st, e) = s.call("DELETE", &format!("/api/v1/runs/{id}"), &[], None);
    assert_eq!((st, &e), (200, &json!({ "id": id })), "{e}");
    let (st, e) = s.get(&format!("/api/v1/runs/{id}"));
    assert_eq!(
        (st, e["code"].as_str()),
        (404, Some("RUN_NOT_FOUND")),
        "{e}"
    );
    let (st, e) = s.get(&format!("/api/v1/runs/{id}/events/asked?follow=false"));
    assert_eq!(st, 404, "{e}");
    let (st, e) = s.call("DELETE", &format!("/api/v1/runs/{id}"), &[], None);
    assert_eq!(
        (st, e["code"].as_str()),
        (404, Some("RUN_NOT_FOUND")),
        "{e}"
    );
    // the host log: the start line and the requests, as NDJSON and as text
    let (st, log) = s.get("/api/v1/log?follow=false");
    assert_eq!(st, 200);
    let log = ndjson(&log);
    assert_eq!(log[0]["kind"], "host", "{log:?}");
    assert!(
        log[0]["msg"]
            .as_str()
            .unwrap()
            .starts_with("listening on http://127.0.0.1:"),
        "{log:?}"
    );
    assert!(
        log.iter().any(|l| l["kind"] == "request"
            && l["path"] == format!("/api/v1/runs/{id}/_redrive")
            && l["status"] == 409),
        "{log:?}"
    );
    let (_, text) = s.call(
        "GET",
        "/api/v1/log?follow=false",
        &[("accept", "text/plain")],
        None,
    );
    assert!(
        text.as_str()
            .unwrap()
            .lines()
            .any(|l| l.contains("info  listening on")),
        "{text}"
    );
    let after = log.last().unwrap()["seq"].as_u64().unwrap();
    let (_, newer) = s.get(&format!("/api/v1/log?follow=false&after={after}"));
    assert!(
        ndjson(&newer)
            .iter()
            .all(|l| l["seq"].as_u64().unwrap() > after),
        "{newer}"
    );
    // the audit trail: requests only (no lifecycle records without following)
    let (st, audit) = s.get("/api/v1/audit?follow=false");
    assert_eq!(st, 200);
    let audit = ndjson(&audit);
    assert!(audit.iter().all(|l| l["kind"] == "request"), "{audit:?}");
    assert!(
        audit
            .iter()
            .any(|l| l["path"] == "/api/v1/log" && l["method"] == "GET"),
        "{audit:?}"
    );
    let (st, e) = s.get("/api/v1/log?format=xml");
    assert_eq!((st, e["code"].as_str()), (400, Some("BAD_REQUEST")), "{e}");
}

/// Issue 13's bad input, each answered in the documented `{error, code, details?}` shape with
/// nothing changed: malformed JSON (naming the position), unknown ids (named), content type,
/// size, token, verbs that do not fit the run's state, uploads that leave their folder, odd
/// path parameters, query strings that do not parse and methods a path does not take.
#[test]
fn bad_input_of_every_kind_gets_the_documented_error_shape() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    upload(&s, "hello", HELLO);
    let shape = |(st, e): (u16, Value), want: u16, code: &str| -> String {
        assert_eq!(st, want, "{e}");
        assert_eq!(e["code"].as_str(), Some(code), "{e}");
        let msg = e["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error message: {e}"));
        assert!(msg.len() > 10, "{e}");
        msg.to_string()
    };
    // malformed JSON names line and column
    let (st, e) = s.call(
        "POST",
        "/api/v1/tasks/hello/runs",
        &[("content-type", "application/json")],
        Some(b"{\n  \"input\": {\"a\": 1,}\n}".to_vec()),
    );
    let msg = shape((st, e.clone()), 400, "BAD_REQUEST");
    assert!(msg.contains("line 2"), "{msg}");
    assert_eq!(e["details"]["line"], 2, "{e}");
    // unknown ids are named
    let ghost = "0190c3e2-7a4b-7c00-8000-000000000000";
    for path in [
        format!("/api/v1/runs/{ghost}"),
        format!("/api/v1/runs/{ghost}/events"),
        format!("/api/v1/runs/{ghost}/events/x"),
        format!("/api/v1/runs/{ghost}/once/x?timeout=1ms"),
    ] {
        let msg = shape(s.get(&path), 404, "RUN_NOT_FOUND");
        assert!(msg.contains(ghost), "{path}: {msg}");
    }
    for (method, path) in [
        ("DELETE", format!("/api/v1/runs/{ghost}")),
        ("POST", format!("/api/v1/runs/{ghost}/_redrive")),
    ] {
        shape(s.call(method, &path, &[], None), 404, "RUN_NOT_FOUND");
    }
    let msg = shape(
        s.post("/api/v1/tasks/ghost/runs", json!({})),
        404,
        "TASK_NOT_FOUND",
    );
    assert!(msg.contains("ghost"), "{msg}");
    shape(s.get("/api/v1/tasks/ghost/graph"), 404, "TASK_NOT_FOUND");
    // content type and size
    shape(
        s.call(
            "POST",
            &format!("/api/v1/runs/{ghost}/_event"),
            &[("content-type", "text/plain")],
            Some(b"hi".to_vec()),
        ),
        415,
        "UNSUPPORTED_MEDIA_TYPE",
    );
    let big = format!(
        "{{\"eventName\": \"x\", \"message\": \"{}\"}}",
        "x".repeat((1 << 20) + 10)
    );
    shape(
        s.call(
            "POST",
            &format!("/api/v1/runs/{ghost}/_event"),
            &[
                ("content-type", "application/json"),
                ("connection", "close"),
            ],
            Some(big.into_bytes()),
        ),
        413,
        "BODY_TOO_LARGE",
    );
    // verbs that do not fit the run's state
    let (_, done) = s.post("/api/v1/tasks/hello/runs?wait=30s", json!({ "input": {} }));
    let id = done["id"].as_str().unwrap().to_string();
    assert_eq!(done["status"], "succeeded", "{done}");
    shape(
        s.post(
            &format!("/api/v1/runs/{id}/_event"),
            json!({ "eventName": "x" }),
        ),
        409,
        "RUN_FINISHED",
    );
    shape(
        s.post(&format!("/api/v1/runs/{id}/_redrive"), json!({})),
        409,
        "RUN_NOT_FAILED",
    );
    shape(
        s.post(&format!("/api/v1/runs/{id}/_retry"), json!({})),
        409,
        "RUN_NOT_PAUSED",
    );
    shape(
        s.post(&format!("/api/v1/runs/{id}/_kill"), json!({})),
        409,
        "RUN_FINISHED",
    );
    let (_, journal) = s.get(&format!("/api/v1/runs/{id}/journal"));
    let (_, after) = s.get(&format!("/api/v1/runs/{id}"));
    assert_eq!(after["status"], "succeeded", "nothing changed: {after}");
    // uploads with a symlink or a hard link leaving the folder: 422, nothing stored
    for (kind, name) in [
        (tar::EntryType::Symlink, "sneaky"),
        (tar::EntryType::Link, "linked"),
    ] {
        let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        let mut h = tar::Header::new_gnu();
        h.set_size(HELLO.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("{name}/code.js"), HELLO.as_bytes())
            .unwrap();
        let mut l = tar::Header::new_gnu();
        l.set_entry_type(kind);
        l.set_size(0);
        l.set_mode(0o644);
        tar.append_link(&mut l, format!("{name}/config.json"), "../../../etc/passwd")
            .unwrap();
        let gz = tar.into_inner().unwrap().finish().unwrap();
        let msg = shape(
            s.call(
                "POST",
                "/api/v1/tasks",
                &[("content-type", "application/octet-stream")],
                Some(gz),
            ),
            422,
            "INVALID",
        );
        assert!(msg.contains("link"), "{msg}");
        assert_eq!(
            s.get(&format!("/api/v1/tasks/{name}")).0,
            404,
            "nothing was stored"
        );
    }
    // odd path parameters: refused or not found, never a crash, always the shape
    let long = "a".repeat(5000);
    for (path, want) in [
        ("/api/v1/runs/%00".to_string(), 400),
        // the client resolves `..` (also spelled %2E%2E) itself: GET /api/v1/
        ("/api/v1/runs/..".to_string(), 404),
        ("/api/v1/runs/%20%20".to_string(), 400),
        (format!("/api/v1/runs/{long}"), 400),
        ("/api/v1/runs/%C3%BC".to_string(), 400),
        ("/api/v1/tasks/a%2Fb".to_string(), 400),
        ("/api/v1/tasks/%00".to_string(), 400),
        ("/api/v1/tasks/x%20y/graph".to_string(), 400),
        (format!("/api/v1/tasks/{long}"), 400),
        (format!("/api/v1/runs/{id}/event/%00%2F..%2F"), 404),
        (format!("/api/v1/runs/{id}/once/%E2%9C%93?timeout=1ms"), 204),
        (format!("/api/v1/runs/{id}/events/%2F..?follow=false"), 200),
    ] {
        let (st, e) = s.get(&path);
        assert_eq!(st, want, "{path}: {e}");
        if st >= 400 {
            assert!(
                e["error"].is_string() && e["code"].is_string(),
                "{path}: {e}"
            );
        }
    }
    // query strings that do not parse, and a method a path does not take
    for path in [
        format!("/api/v1/runs/{id}/events?after=abc"),
        format!("/api/v1/runs/{id}/journal?limit=-1"),
        "/api/v1/events?follow=perhaps".to_string(),
        "/api/v1/log?after=x".to_string(),
    ] {
        let msg = shape(s.get(&path), 400, "BAD_REQUEST");
        assert!(msg.contains("GET /api/v1/"), "{path}: {msg}");
    }
    let (st, e) = s.call("PATCH", "/api/v1/runs", &[], None);
    let msg = shape((st, e), 405, "METHOD_NOT_ALLOWED");
    assert!(msg.contains("PATCH") && msg.contains("GET"), "{msg}");
    // nothing above changed the run
    let (_, journal_after) = s.get(&format!("/api/v1/runs/{id}/journal"));
    assert_eq!(journal, journal_after);
    // without the token the host stream is refused too, and the token never appears
    drop(s);
    let s = Server::start(
        &sb,
        &[("SEQUENTIAL_API_TOKEN", "t0ken-t0ken-t0ken-123")],
        &[],
    );
    for path in [
        "/api/v1/events",
        "/api/v1/log",
        "/api/v1/audit",
        "/api/v1/tasks/hello/graph",
    ] {
        let (st, e) = s.get(path);
        let msg = shape((st, e.clone()), 401, "UNAUTHORIZED");
        assert!(
            !e.to_string().contains("t0ken") && !msg.contains("t0ken"),
            "{e}"
        );
    }
}

/// Every operation of the OpenAPI document outside the STH aliases has a curl example in
/// docs/host-api.md (which `host_api_docs` runs), with its method.
#[test]
fn every_route_has_a_curl_example_in_the_host_api_doc() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    let (_, doc) = s.get("/api/v1/openapi.json");
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/host-api.md"),
    )
    .unwrap();
    // (method, path) of every `curl … "$API/…"` line of the doc's sh blocks
    let mut examples: Vec<(String, Vec<String>)> = Vec::new();
    for line in text
        .lines()
        .filter(|l| l.contains("curl ") && l.contains("$API/"))
    {
        let method = line
            .split_whitespace()
            .skip_while(|w| *w != "-X")
            .nth(1)
            .unwrap_or("GET")
            .to_string();
        let at = line.find("$API/").unwrap() + 4;
        let path: String = line[at..]
            .chars()
            .take_while(|c| !matches!(c, '"' | '?' | ' ' | '\''))
            .collect();
        examples.push((method, path.split('/').map(str::to_string).collect()));
    }
    let mut missing = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let template: Vec<&str> = path.strip_prefix("/api/v1").unwrap().split('/').collect();
        for (method, op) in ops.as_object().unwrap() {
            if op["tags"][0] == "sth" {
                continue;
            }
            let method = method.to_ascii_uppercase();
            let found = examples.iter().any(|(m, segs)| {
                *m == method
                    && segs.len() == template.len()
                    && template
                        .iter()
                        .zip(segs)
                        .all(|(t, s)| t.starts_with('{') || t == s)
            });
            if !found {
                missing.push(format!("{method} {path}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "no curl example in docs/host-api.md for: {missing:#?}"
    );
}

/// `_redrive` of a failed graph run: 202 with the same run queued again; it re-enters the state
/// that failed (attempt 1) and not the one before it, and succeeds once the dependency is
/// there. A failed implicit run is 409 `NOT_A_GRAPH_RUN`, naming `_fork`.
#[test]
fn redrive_continues_a_failed_graph_run_under_its_id_and_refuses_an_implicit_one() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    let code = format!(
        "export async function fetchOrder(i) {{ return {{ id: i.orderId }}; }}\nexport async function charge(o, ctx) {{\n  const r = await fetch('{}/api/v1/tasks/gate');\n  if (!r.ok) throw new Error(`gate answered ${{r.status}}`);\n  return {{ ...o, attempt: ctx.attempt }};\n}}\n",
        s.url
    );
    let graph = json!({"version": 1, "initial": "fetchOrder", "states": {
        "fetchOrder": {"onDone": "charge"}, "charge": {"onDone": "done"}, "done": {"type": "final"}}});
    let (st, v) = s.post(
        "/api/v1/tasks",
        json!({"name": "gated", "code": code, "graph": graph}),
    );
    assert_eq!(st, 201, "{v}");
    let (_, run) = s.post(
        "/api/v1/tasks/gated/runs?wait=30s",
        json!({"input": {"orderId": 8}}),
    );
    let id = run["id"].as_str().unwrap().to_string();
    assert_eq!(run["status"], "failed", "{run}");
    upload(&s, "gate", HELLO);
    let (st, again) = s.post(&format!("/api/v1/runs/{id}/_redrive"), json!({}));
    assert_eq!(st, 202, "{again}");
    assert_eq!(again["id"], id.as_str());
    assert!(
        again["status"] == "queued" || again["status"] == "running",
        "{again}"
    );
    let (_, done) = s.get(&format!("/api/v1/runs/{id}?wait=30s&until=terminal"));
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["output"], json!({"id": 8, "attempt": 1}), "{done}");
    let (_, journal) = s.get(&format!("/api/v1/runs/{id}/journal"));
    let entered: Vec<&str> = journal["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "state.entered")
        .map(|r| r["data"]["path"].as_str().unwrap())
        .collect();
    assert_eq!(
        entered,
        ["fetchOrder", "charge", "charge", "done"],
        "{journal}"
    );
    // its event stream read from the start goes on past the first run.failed to the end
    let (st, events) = s.get(&format!("/api/v1/runs/{id}/events"));
    assert_eq!(st, 200);
    let run_kinds: Vec<String> = ndjson(&events)
        .iter()
        .filter_map(|r| r["kind"].as_str())
        .filter(|k| k.starts_with("run."))
        .map(str::to_string)
        .collect();
    assert_eq!(
        run_kinds,
        ["run.started", "run.failed", "run.redriven", "run.succeeded"],
        "{events}"
    );
    // an implicit run that failed
    upload(
        &s,
        "boom",
        "export default async function () { throw new Error('boom'); }\n",
    );
    let (_, failed) = s.post("/api/v1/tasks/boom/runs?wait=30s", json!({"input": {}}));
    assert_eq!(failed["status"], "failed", "{failed}");
    let fid = failed["id"].as_str().unwrap();
    let (st, e) = s.post(&format!("/api/v1/runs/{fid}/_redrive"), json!({}));
    assert_eq!(
        (st, e["code"].as_str()),
        (409, Some("NOT_A_GRAPH_RUN")),
        "{e}"
    );
    assert!(e["error"].as_str().unwrap().contains("_fork"), "{e}");
}
