//! The host API on PostgreSQL: a run through the API (start, events in and out, the host-wide
//! stream), and streams — one run's and the host-wide one — resumed on a server restarted
//! after `kill -9`, with no gap and no duplicate. Each test works in a schema of its own,
//! dropped afterwards; without a server each prints one skip line, unless `REQUIRE_POSTGRES=1`.

use std::collections::HashSet;

use serde_json::{Value, json};

use crate::postgres::Schema;
use crate::serve::{APPROVAL, HELLO, Server, upload};
use crate::serve_events::ndjson;
use crate::util::Sandbox;

fn server(sb: &Sandbox, url: &str) -> Server {
    sb.cmd(&["migrate"]).env("DATABASE_URL", url).run().ok();
    Server::start(sb, &[("DATABASE_URL", url)], &[])
}

#[test]
fn a_run_through_the_api_on_postgresql() {
    let Some(db) = Schema::fresh() else { return };
    let sb = Sandbox::new();
    let s = server(&sb, &db.url());
    let (_, health) = s.get("/api/v1/health");
    assert_eq!(health["storage"]["adapter"], "postgres", "{health}");
    upload(&s, "hello", HELLO);
    upload(&s, "approval", APPROVAL);
    let (st, run) = s.call(
        "POST",
        "/api/v1/tasks/hello/runs?wait=30s",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", "pg-1"),
        ],
        Some(br#"{"input": {"name": "Ann"}}"#.to_vec()),
    );
    assert_eq!(st, 200, "{run}");
    assert_eq!(run["status"], "succeeded", "{run}\n{}", s.stderr());
    assert_eq!(run["output"], json!({ "greeting": "hello", "name": "Ann" }));
    let (st, again) = s.call(
        "POST",
        "/api/v1/tasks/hello/runs",
        &[
            ("content-type", "application/json"),
            ("idempotency-key", "pg-1"),
        ],
        Some(br#"{"input": {"name": "Ann"}}"#.to_vec()),
    );
    assert_eq!((st, &again["id"]), (200, &run["id"]), "{again}");
    // events in and out
    let (_, waiting) = s.post(
        "/api/v1/tasks/approval/runs",
        json!({ "input": { "item": "pg" } }),
    );
    let id = waiting["id"].as_str().unwrap().to_string();
    let (_, w) = s.get(&format!("/api/v1/runs/{id}?wait=30s&until=waiting"));
    assert_eq!(w["waiting"]["name"], "approved", "{w}");
    let (st, sent) = s.post(
        &format!("/api/v1/runs/{id}/_event"),
        json!({ "eventName": "approved", "message": { "by": "ann" } }),
    );
    assert_eq!(
        (st, sent["consumed"].as_bool()),
        (202, Some(true)),
        "{sent}"
    );
    let (st, out) = s.get(&format!("/api/v1/runs/{id}/output?wait=30s"));
    assert_eq!((st, out), (200, json!({ "item": "pg", "by": "ann" })));
    let (_, decided) = s.get(&format!("/api/v1/runs/{id}/events/decided?follow=false"));
    assert_eq!(ndjson(&decided)[0]["message"], json!({ "ok": true }));
    // the host-wide stream: both runs, each from run.created to its end
    let (_, all) = s.get("/api/v1/events?after=0&follow=false&kinds=run.*");
    let all = ndjson(&all);
    for r in [run["id"].as_str().unwrap(), id.as_str()] {
        let kinds: Vec<&str> = all
            .iter()
            .filter(|x| x["run"] == r)
            .map(|x| x["kind"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            ["run.created", "run.started", "run.succeeded"],
            "{all:?}"
        );
    }
    let (_, runs) = s.get("/api/v1/runs?limit=1");
    assert!(runs["next_cursor"].is_string(), "paged: {runs}");
}

#[test]
fn streams_resume_on_postgresql_across_kill_9_without_gap_or_duplicate() {
    let Some(db) = Schema::fresh() else { return };
    let sb = Sandbox::new();
    let url = db.url();
    let mut s = server(&sb, &url);
    upload(&s, "approval", APPROVAL);
    let (_, run) = s.post(
        "/api/v1/tasks/approval/runs",
        json!({ "input": { "item": "x" } }),
    );
    let id = run["id"].as_str().unwrap().to_string();
    let (_, w) = s.get(&format!("/api/v1/runs/{id}?wait=30s&until=waiting"));
    assert_eq!(w["status"], "waiting", "{w}");
    // one run's stream and the host-wide one, read up to here
    let (_, seen) = s.get(&format!("/api/v1/runs/{id}/events?follow=false"));
    let seen = ndjson(&seen);
    let (_, host_seen) = s.get("/api/v1/events?after=0&follow=false");
    let host_seen = ndjson(&host_seen);
    assert!(
        seen.len() >= 3 && host_seen.len() == seen.len() + 1,
        "{seen:?}\n{host_seen:?}"
    );
    s.kill9();
    let s = Server::start(&sb, &[("DATABASE_URL", &url)], &[]);
    let (st, sent) = s.post(
        &format!("/api/v1/runs/{id}/_event"),
        json!({ "eventName": "approved", "message": { "by": "bo" } }),
    );
    assert_eq!(st, 202, "{sent}");
    let (_, done) = s.get(&format!("/api/v1/runs/{id}?wait=30s"));
    assert_eq!(done["status"], "succeeded", "{done}\n{}", s.stderr());
    let (_, whole) = s.get(&format!("/api/v1/runs/{id}/events"));
    let whole = ndjson(&whole);
    // Last-Event-ID and ?after= give exactly the rest
    let last = seen.last().unwrap()["seq"].as_u64().unwrap().to_string();
    let (_, rest) = s.call(
        "GET",
        &format!("/api/v1/runs/{id}/events"),
        &[("last-event-id", &last)],
        None,
    );
    let mut joined = seen.clone();
    joined.extend(ndjson(&rest));
    assert_eq!(joined, whole, "a gap or a duplicate");
    // the host-wide stream resumed from its last cursor gives the same records
    let cursor = host_seen.last().unwrap()["cursor"].as_str().unwrap();
    let (_, host_rest) = s.get(&format!("/api/v1/events?follow=false&after={cursor}"));
    let host_rest = ndjson(&host_rest);
    let strip = |v: &Value| {
        let mut v = v.clone();
        v.as_object_mut().unwrap().remove("cursor");
        v
    };
    let mut host_joined: Vec<Value> = host_seen.iter().chain(&host_rest).map(strip).collect();
    assert_eq!(host_joined.remove(0)["kind"], "run.created");
    assert_eq!(host_joined, whole, "the host stream: a gap or a duplicate");
    let unique: HashSet<String> = host_joined.iter().map(|r| r["seq"].to_string()).collect();
    assert_eq!(unique.len(), host_joined.len());
}

/// Claims on PostgreSQL name the task version's hash, and the server's worker keeps a version
/// it read for the next run of it: a task deleted and uploaded again, whose version 1 now holds
/// other code, still runs its new code on the same server.
#[test]
fn a_task_deleted_and_uploaded_again_runs_its_new_code_on_the_same_server() {
    let Some(db) = Schema::fresh() else { return };
    let sb = Sandbox::new();
    let s = server(&sb, &db.url());
    let code = |word: &str| {
        format!(
            "export default async function () {{\n  await fetch('data:text/plain,x');\n  return '{word}';\n}}\n"
        )
    };
    let start = |s: &Server| {
        let (st, run) = s.post("/api/v1/tasks/said/runs?wait=30s", json!({ "input": {} }));
        assert_eq!(st, 200, "{run}\n{}", s.stderr());
        assert_eq!(run["status"], "succeeded", "{run}\n{}", s.stderr());
        run
    };
    upload(&s, "said", &code("first"));
    for _ in 0..2 {
        let run = start(&s);
        assert_eq!(
            (&run["output"], &run["task"]["version"]),
            (&json!("first"), &json!(1))
        );
    }
    let (st, gone) = s.call("DELETE", "/api/v1/tasks/said", &[], None);
    assert!(st < 300, "{st} {gone}");
    upload(&s, "said", &code("second"));
    let run = start(&s);
    assert_eq!(
        (&run["output"], &run["task"]["version"]),
        (&json!("second"), &json!(1)),
        "{run}"
    );
}
