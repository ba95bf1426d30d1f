//! `GET /api/v1/events`, the host-wide stream: every run's records with `run.created`, live,
//! and resumable from any record's cursor with no gap and no duplicate — also after `kill -9`
//! of the server.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::serve::{APPROVAL, HELLO, Server, upload};
use crate::util::Sandbox;

/// Reads a stream's NDJSON lines on another thread until `done` says so (or 60 s pass);
/// returns once the stream's response has begun.
fn tail(
    url: String,
    done: impl Fn(&[Value]) -> bool + Send + 'static,
) -> std::thread::JoinHandle<Vec<Value>> {
    let (began, answered) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut resp = reqwest::get(&url).await.unwrap();
            assert_eq!(resp.status(), 200, "{url}");
            let _ = began.send(());
            let mut buf = Vec::new();
            let mut lines: Vec<Value> = Vec::new();
            while !done(&lines) && Instant::now() < deadline {
                let chunk = tokio::time::timeout(Duration::from_secs(1), resp.chunk()).await;
                let Ok(chunk) = chunk else { continue };
                let Some(chunk) = chunk.unwrap() else { break };
                buf.extend_from_slice(&chunk);
                while let Some(at) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=at).collect();
                    let v: Value = serde_json::from_slice(&line).unwrap();
                    if v["kind"] != "ping" && v["kind"] != "stream.start" {
                        lines.push(v);
                    }
                }
            }
            lines
        })
    });
    let _ = answered.recv_timeout(Duration::from_secs(60));
    reader
}

/// A stream's lines (a body of one line parses as that one record).
pub fn ndjson(v: &Value) -> Vec<Value> {
    match v {
        Value::String(s) => s
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect(),
        Value::Object(_) => vec![v.clone()],
        other => panic!("not a stream: {other}"),
    }
}

/// The records of each run, in order, keyed by run id (cursors left out).
fn per_run(lines: &[Value]) -> HashMap<String, Vec<Value>> {
    let mut out: HashMap<String, Vec<Value>> = HashMap::new();
    for l in lines {
        let mut l = l.clone();
        l.as_object_mut().unwrap().remove("cursor");
        out.entry(l["run"].as_str().unwrap().to_string())
            .or_default()
            .push(l);
    }
    out
}

fn ended(lines: &[Value], run: &str) -> bool {
    lines.iter().any(|l| {
        l["run"] == run
            && matches!(
                l["kind"].as_str(),
                Some("run.succeeded" | "run.failed" | "run.cancelled")
            )
    })
}

#[test]
fn the_host_stream_carries_every_run_live_and_resumes_from_any_cursor_exactly() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    upload(&s, "hello", HELLO);
    let mut ids = Vec::new();
    for i in 0..3 {
        let (_, run) = s.post(
            "/api/v1/tasks/hello/runs?wait=20s",
            json!({ "input": { "name": i } }),
        );
        assert_eq!(run["status"], "succeeded", "{run}");
        ids.push(run["id"].as_str().unwrap().to_string());
    }
    // ?after=0: every stored run, each announced by run.created, then its journal in order
    let (st, all) = s.get("/api/v1/events?after=0&follow=false");
    assert_eq!(st, 200, "{all}");
    let all = ndjson(&all);
    let runs = per_run(&all);
    assert_eq!(runs.len(), 3, "{all:?}");
    for id in &ids {
        let recs = &runs[id];
        assert_eq!(recs[0]["kind"], "run.created", "{recs:?}");
        assert_eq!(recs[0]["data"]["task"], "hello");
        let (_, journal) = s.get(&format!("/api/v1/runs/{id}/journal"));
        assert_eq!(
            recs[1..].to_vec(),
            journal["items"].as_array().unwrap().clone(),
            "run {id}"
        );
        assert_eq!(recs.last().unwrap()["kind"], "run.succeeded");
    }
    // resuming after any record yields exactly the records after it
    for k in 0..all.len() {
        let cursor = all[k]["cursor"].as_str().unwrap();
        let (st, rest) = s.get(&format!("/api/v1/events?follow=false&after={cursor}"));
        assert_eq!(st, 200, "{rest}");
        assert_eq!(
            ndjson(&rest),
            all[k + 1..].to_vec(),
            "resumed after record {k}"
        );
    }
    // SSE: id: is the cursor; Last-Event-ID resumes
    let (st, sse) = s.call(
        "GET",
        "/api/v1/events?follow=false",
        &[
            ("accept", "text/event-stream"),
            ("last-event-id", all[1]["cursor"].as_str().unwrap()),
        ],
        None,
    );
    assert_eq!(st, 200);
    let sse = sse.as_str().unwrap();
    assert!(sse.starts_with("retry: 2000"), "{sse}");
    let ids_sent: Vec<&str> = sse.lines().filter_map(|l| l.strip_prefix("id: ")).collect();
    let want: Vec<&str> = all[2..]
        .iter()
        .map(|l| l["cursor"].as_str().unwrap())
        .collect();
    assert_eq!(ids_sent, want);
    // filters: ?kinds=run.* and ?task=
    let (_, lifecycle) = s.get("/api/v1/events?after=0&follow=false&kinds=run.*");
    let kinds: HashSet<String> = ndjson(&lifecycle)
        .iter()
        .map(|l| l["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        kinds,
        ["run.created", "run.started", "run.succeeded"]
            .map(String::from)
            .into()
    );
    upload(&s, "approval", APPROVAL);
    let (_, other) = s.get("/api/v1/events?after=0&follow=false&task=approval");
    assert_eq!(ndjson(&other), Vec::<Value>::new());
    // live: a consumer that starts now sees a new run from its creation to its end
    let url = format!("{}/api/v1/events?kinds=run.*", s.url);
    let live = tail(url, |l| l.iter().any(|r| r["kind"] == "run.succeeded"));
    let (_, run) = s.post("/api/v1/tasks/hello/runs?wait=20s", json!({ "input": {} }));
    let live = live.join().unwrap();
    let kinds: Vec<&str> = live.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        ["run.created", "run.started", "run.succeeded"],
        "{live:?}"
    );
    assert!(live.iter().all(|l| l["run"] == run["id"]), "{live:?}");
    // bad cursors are refused with the error shape
    let (st, e) = s.get("/api/v1/events?after=garbage");
    assert_eq!((st, e["code"].as_str()), (400, Some("BAD_REQUEST")), "{e}");
    assert!(e["error"].as_str().unwrap().contains("garbage"), "{e}");
}

#[test]
fn a_host_stream_cut_by_kill_9_resumes_on_the_restarted_server_without_gap_or_duplicate() {
    host_stream_across_kill_9(&[]);
}

#[test]
fn a_host_stream_cut_by_kill_9_resumes_on_sqlite_too() {
    host_stream_across_kill_9(&[("DATABASE_URL", "sqlite:./serve.db")]);
}

fn host_stream_across_kill_9(envs: &[(&str, &str)]) {
    let sb = Sandbox::new();
    let mut s = Server::start(&sb, envs, &[]);
    if let Some((_, url)) = envs.iter().find(|(k, _)| *k == "DATABASE_URL") {
        let (_, health) = s.get("/api/v1/health");
        assert!(
            url.starts_with(health["storage"]["adapter"].as_str().unwrap()),
            "{health}"
        );
    }
    upload(&s, "approval", APPROVAL);
    upload(&s, "hello", HELLO);
    let (_, waiting) = s.post(
        "/api/v1/tasks/approval/runs",
        json!({ "input": { "item": "a" } }),
    );
    let waiting = waiting["id"].as_str().unwrap().to_string();
    let (_, done) = s.post("/api/v1/tasks/hello/runs?wait=20s", json!({ "input": {} }));
    let done = done["id"].as_str().unwrap().to_string();
    // a consumer reads until the waiting run emitted `asked`, then the server dies
    let w = waiting.clone();
    let d = done.clone();
    let seen = tail(format!("{}/api/v1/events?after=0", s.url), move |l| {
        ended(l, &d)
            && l.iter()
                .any(|r| r["run"] == w.as_str() && r["kind"] == "call.completed")
    })
    .join()
    .unwrap();
    assert!(ended(&seen, &done), "{seen:?}");
    s.kill9();
    let s = Server::start(&sb, envs, &[]);
    let (st, sent) = s.post(
        &format!("/api/v1/runs/{waiting}/_event"),
        json!({ "eventName": "approved", "message": { "by": "ann" } }),
    );
    assert_eq!(st, 202, "{sent}");
    let (_, run) = s.get(&format!("/api/v1/runs/{waiting}?wait=20s"));
    assert_eq!(run["status"], "succeeded", "{run}");
    // another run after the restart shows up too
    let (_, later) = s.post("/api/v1/tasks/hello/runs?wait=20s", json!({ "input": {} }));
    let later = later["id"].as_str().unwrap().to_string();
    let cursor = seen.last().unwrap()["cursor"].as_str().unwrap().to_string();
    let (w, l) = (waiting.clone(), later.clone());
    let rest = tail(
        format!("{}/api/v1/events?after={cursor}", s.url),
        move |r| ended(r, &w) && ended(r, &l),
    )
    .join()
    .unwrap();
    let mut joined = seen.clone();
    joined.extend(rest.iter().cloned());
    // no record twice
    let mut keys = HashSet::new();
    for r in &joined {
        assert!(
            keys.insert((
                r["run"].to_string(),
                r["seq"].to_string(),
                r["kind"].to_string()
            )),
            "a duplicate: {r}"
        );
    }
    // each run's records are its whole journal, after run.created
    let runs = per_run(&joined);
    assert_eq!(runs.len(), 3, "{joined:?}");
    for id in [&waiting, &done, &later] {
        let (_, journal) = s.get(&format!("/api/v1/runs/{id}/journal"));
        let recs = &runs[id.as_str()];
        assert_eq!(recs[0]["kind"], "run.created");
        assert_eq!(
            recs[1..].to_vec(),
            journal["items"].as_array().unwrap().clone(),
            "run {id}"
        );
    }
}

/// The typed client's host-wide stream sees a run from its creation, and it resumes by itself across `kill -9` of the server (restarted on the same port),
/// yielding every record once.
#[test]
fn the_typed_clients_host_stream_resumes_by_itself_across_kill_9() {
    use sequential_http_wrapper::HostClient;
    use sequential_http_wrapper::host::HostEvents;
    let sb = Sandbox::new();
    let mut s = Server::start(&sb, &[], &[]);
    upload(&s, "approval", APPROVAL);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let host = HostClient::new(&s.url).unwrap();
    // (the stream connects when first polled: from ?after=0 it cannot miss the run started
    // before that)
    let mut stream = host.events(HostEvents {
        after: Some("0".into()),
        kinds: vec!["run.*".into(), "call.*".into()],
        ..HostEvents::default()
    });
    let (id, mut got) = rt.block_on(async {
        let run = host
            .task("approval")
            .start(json!({ "item": "x" }), Default::default())
            .await
            .unwrap();
        let mut got = Vec::new();
        // run.created, run.started and the emit; then the run waits for its event
        while got.len() < 3 {
            got.push(stream.next().await.unwrap().unwrap());
        }
        (run.id, got)
    });
    assert_eq!(got[0].kind, "run.created", "{got:?}");
    assert_eq!(got[0].data["task"], "approval");
    assert!(got.iter().all(|r| r.run == id), "{got:?}");
    let port = s.url.rsplit(':').next().unwrap().to_string();
    s.kill9();
    let s = Server::start_on(&sb, &format!("127.0.0.1:{port}"), &[], &[]);
    let (st, _) = s.post(
        &format!("/api/v1/runs/{id}/_event"),
        json!({ "eventName": "approved", "message": { "by": "cy" } }),
    );
    assert_eq!(st, 202);
    rt.block_on(async {
        while !got.last().unwrap().kind.starts_with("run.succeeded") {
            got.push(stream.next().await.unwrap().expect("the stream resumes"));
        }
    });
    let (_, journal) = s.get(&format!("/api/v1/runs/{id}/journal"));
    let want: Vec<(u64, String)> = journal["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["kind"].as_str().unwrap().starts_with("run.")
                || r["kind"].as_str().unwrap().starts_with("call.")
        })
        .map(|r| {
            (
                r["seq"].as_u64().unwrap(),
                r["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let seen: Vec<(u64, String)> = got[1..]
        .iter()
        .map(|r| (r.seq.unwrap(), r.kind.clone()))
        .collect();
    assert_eq!(seen, want, "no gap, no duplicate");
}
