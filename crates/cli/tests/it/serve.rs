//! `serve`: the host API against the real binary on 127.0.0.1:0, with folder storage in a temp
//! dir — tasks, idempotent starts, long-polls, event streams that resume, events, control,
//! the error shape, tokens and the checked upload.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::time::Duration;

use serde_json::{Value, json};

use crate::util::Sandbox;

/// A running `serve` process; killed when dropped.
pub struct Server {
    child: Child,
    pub url: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Server {
    pub fn start(sb: &Sandbox, envs: &[(&str, &str)], extra: &[&str]) -> Server {
        Server::start_on(sb, "127.0.0.1:0", envs, extra)
    }

    /// [`Server::start`] on `bind` (a restarted server on its predecessor's port).
    pub fn start_on(sb: &Sandbox, bind: &str, envs: &[(&str, &str)], extra: &[&str]) -> Server {
        let mut args = vec!["serve", "--bind", bind];
        args.extend_from_slice(extra);
        let mut cmd = sb.cmd(&args);
        for (k, v) in envs {
            cmd = cmd.env(k, *v);
        }
        let mut child = cmd.spawn();
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "serve did not say where it listens: {line:?}; stderr: {}",
                    stderr.lock().unwrap()
                )
            })
            .to_string();
        Server {
            child,
            url,
            rt: tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .unwrap(),
            stderr,
        }
    }

    /// A request; returns the status and the body (JSON when it parses, else a string).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let mut req = self.http.request(method.parse().unwrap(), &url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            if let Some(b) = body {
                req = req.body(b);
            }
            let resp = req
                .send()
                .await
                .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
            (status, value)
        })
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, &[], None)
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(
            "POST",
            path,
            &[("content-type", "application/json")],
            Some(body.to_string().into_bytes()),
        )
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub const HELLO: &str = "export default async function (input) {\n  const r = await fetch('data:application/json,{\"greeting\":\"hello\"}');\n  return { greeting: (await r.json()).greeting, name: input.name ?? null };\n}\n";

pub const APPROVAL: &str = "export default async function (input, ctx) {\n  await ctx.emit('asked', { item: input.item });\n  const ok = await ctx.waitForEvent('approved', { timeout: '1d' });\n  await ctx.emit('decided', { ok: ok !== null });\n  return { item: input.item, by: ok && ok.by };\n}\n";

pub fn upload(s: &Server, name: &str, code: &str) {
    let (status, body) = s.post("/api/v1/tasks", json!({ "name": name, "code": code }));
    assert_eq!(status, 201, "{body}");
}

#[test]
fn host_endpoints_answer_with_their_documented_shapes() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    let (st, v) = s.get("/api/v1/version");
    assert_eq!(st, 200);
    assert_eq!(v["service"], "sequential-ecosystem");
    assert_eq!(v["apiVersion"], "v1");
    let (st, h) = s.get("/api/v1/health");
    assert_eq!(st, 200, "{h}");
    assert_eq!(h["ok"], true);
    assert_eq!(h["storage"]["adapter"], "folder");
    let (st, l) = s.get("/api/v1/load-check");
    assert_eq!(st, 200);
    assert!(l["runs"]["queued"].is_number(), "{l}");
    let (st, c) = s.get("/api/v1/config");
    assert_eq!(st, 200);
    assert_eq!(c["auth"], false);
    let (st, e) = s.get("/api/v1/nope");
    assert_eq!(st, 404);
    assert_eq!(e["code"], "ROUTE_NOT_FOUND", "{e}");
    assert!(e["error"].as_str().unwrap().contains("/api/v1"), "{e}");
}

#[test]
fn tasks_are_created_once_versioned_by_put_and_runs_start_idempotently() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    upload(&s, "hello", HELLO);
    let (st, e) = s.post("/api/v1/tasks", json!({ "name": "hello", "code": HELLO }));
    assert_eq!((st, e["code"].as_str()), (409, Some("TASK_EXISTS")), "{e}");
    let (st, v) = s.call(
        "PUT",
        "/api/v1/tasks/hello",
        &[("content-type", "application/json")],
        Some(
            json!({ "code": HELLO.replace("hello\"}", "hi\"}") })
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!((st, v["version"].as_u64()), (200, Some(2)), "{v}");
    let (st, list) = s.get("/api/v1/tasks");
    assert_eq!(st, 200);
    assert_eq!(list["items"][0]["name"], "hello");
    assert_eq!(list["items"][0]["version"], 2);

    let start = |input: Value| {
        s.call(
            "POST",
            "/api/v1/tasks/hello/runs?wait=20s",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "k1"),
            ],
            Some(json!({ "input": input }).to_string().into_bytes()),
        )
    };
    let (st, run) = start(json!({ "name": "Ada" }));
    assert_eq!(st, 200, "{run}\n{}", s.stderr());
    assert_eq!(run["status"], "succeeded", "{run}");
    assert_eq!(run["output"], json!({ "greeting": "hi", "name": "Ada" }));
    assert_eq!(run["task"]["version"], 2);
    assert_eq!(run["task"]["hash"].as_str().map(str::len), Some(64));
    let (st, again) = start(json!({ "name": "Ada" }));
    assert_eq!(
        (st, &again["id"]),
        (200, &run["id"]),
        "same key, same input: the same run"
    );
    let (st, other) = start(json!({ "name": "Bob" }));
    assert_eq!(
        (st, other["code"].as_str()),
        (409, Some("IDEMPOTENCY_KEY_REUSED")),
        "{other}"
    );

    let id = run["id"].as_str().unwrap();
    let (st, out) = s.get(&format!("/api/v1/runs/{id}/output"));
    assert_eq!((st, out), (200, json!({ "greeting": "hi", "name": "Ada" })));
    let (st, runs) = s.get("/api/v1/runs?task=hello&status=succeeded");
    assert_eq!(st, 200);
    assert_eq!(runs["items"].as_array().unwrap().len(), 1, "{runs}");
    let (_, by_key) = s.get("/api/v1/runs?idempotency_key=k1");
    assert_eq!(by_key["items"][0]["id"], run["id"]);
    let (st, j) = s.get(&format!("/api/v1/runs/{id}/journal"));
    assert_eq!(st, 200);
    assert_eq!(j["items"][0]["kind"], "run.started");
    assert_eq!(
        j["last_seq"],
        j["items"].as_array().unwrap().last().unwrap()["seq"]
    );
}

#[test]
fn event_streams_resume_from_any_seq_without_gap_or_duplicate() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    upload(&s, "hello", HELLO);
    let (_, run) = s.post("/api/v1/tasks/hello/runs?wait=20s", json!({ "input": {} }));
    assert_eq!(run["status"], "succeeded", "{run}");
    let id = run["id"].as_str().unwrap();
    let (st, all) = s.get(&format!("/api/v1/runs/{id}/events"));
    assert_eq!(st, 200);
    let lines: Vec<Value> = all
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 3, "{lines:?}");
    assert_eq!(lines.last().unwrap()["kind"], "run.succeeded");
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (0..seqs.len() as u64).collect::<Vec<_>>());
    // resume after seq 1: NDJSON with ?after=, SSE with Last-Event-ID
    let (_, rest) = s.get(&format!("/api/v1/runs/{id}/events?after=1"));
    let rest: Vec<Value> = rest
        .as_str()
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rest, lines[2..].to_vec());
    let (st, sse) = s.call(
        "GET",
        &format!("/api/v1/runs/{id}/events"),
        &[("accept", "text/event-stream"), ("last-event-id", "1")],
        None,
    );
    assert_eq!(st, 200);
    let sse = sse.as_str().unwrap();
    let ids: Vec<u64> = sse
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(ids, seqs[2..].to_vec(), "{sse}");
    assert!(sse.starts_with("retry: 2000"), "{sse}");
    assert!(sse.trim_end().ends_with("event: end\ndata: {}"), "{sse}");
}

#[test]
fn events_reach_a_waiting_run_and_emitted_events_are_read_race_free() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    upload(&s, "approval", APPROVAL);
    let (st, run) = s.post(
        "/api/v1/tasks/approval/runs",
        json!({ "input": { "item": "laptop" } }),
    );
    assert_eq!(st, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    // the first emit, read with once (it may already have happened: the journal keeps it)
    let (st, asked) = s.get(&format!("/api/v1/runs/{id}/once/asked?timeout=20s"));
    assert_eq!(st, 200, "{asked}");
    assert_eq!(asked["data"], json!({ "item": "laptop" }));
    let (_, waiting) = s.get(&format!(
        "/api/v1/runs/{id}?wait=20s&until=change&after={}",
        asked["seq"]
    ));
    let waiting = if waiting["status"] == "waiting" {
        waiting
    } else {
        s.get(&format!("/api/v1/runs/{id}?wait=5s&until=change")).1
    };
    assert_eq!(waiting["status"], "waiting", "{waiting}");
    assert_eq!(waiting["waiting"]["kind"], "event");
    assert_eq!(waiting["waiting"]["name"], "approved");
    let (st, sent) = s.post(
        &format!("/api/v1/runs/{id}/_event"),
        json!({ "eventName": "approved", "message": { "by": "ann" } }),
    );
    assert_eq!(st, 202, "{sent}");
    assert_eq!(sent["accepted"], true);
    assert_eq!(sent["consumed"], true);
    // `once` after the first emit finds the second, emitted between our calls or not
    let (st, decided) = s.get(&format!(
        "/api/v1/runs/{id}/once/decided?after={}&timeout=20s",
        asked["seq"]
    ));
    assert_eq!(st, 200, "{decided}");
    assert_eq!(decided["data"], json!({ "ok": true }));
    let (st, out) = s.get(&format!("/api/v1/runs/{id}/output?wait=20s"));
    assert_eq!((st, out), (200, json!({ "item": "laptop", "by": "ann" })));
    let (st, last) = s.get(&format!("/api/v1/runs/{id}/event/asked"));
    assert_eq!((st, &last["data"]), (200, &json!({ "item": "laptop" })));
    // a finished run takes no events
    let (st, e) = s.post(
        &format!("/api/v1/runs/{id}/_event"),
        json!({ "eventName": "approved" }),
    );
    assert_eq!((st, e["code"].as_str()), (409, Some("RUN_FINISHED")), "{e}");
}

#[test]
fn control_verbs_stop_kill_retry_and_fork() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    upload(&s, "approval", APPROVAL);
    let (_, run) = s.post(
        "/api/v1/tasks/approval/runs",
        json!({ "input": { "item": "a" } }),
    );
    let id = run["id"].as_str().unwrap().to_string();
    let (st, stopped) = s.post(
        &format!("/api/v1/runs/{id}/_stop"),
        json!({ "timeout": 500 }),
    );
    assert_eq!(st, 202, "{stopped}");
    let (_, done) = s.get(&format!("/api/v1/runs/{id}?wait=20s"));
    assert_eq!(done["status"], "cancelled", "{done}");
    let (st, e) = s.post(&format!("/api/v1/runs/{id}/_kill"), json!({}));
    assert_eq!((st, e["code"].as_str()), (409, Some("RUN_FINISHED")), "{e}");
    let (st, e) = s.post(&format!("/api/v1/runs/{id}/_retry"), json!({}));
    assert_eq!(
        (st, e["code"].as_str()),
        (409, Some("RUN_NOT_PAUSED")),
        "{e}"
    );
    let (st, forked) = s.post(
        &format!("/api/v1/runs/{id}/_fork"),
        json!({ "from_seq": 1 }),
    );
    assert_eq!(st, 201, "{forked}");
    assert_ne!(forked["id"], run["id"]);
    let fid = forked["id"].as_str().unwrap().to_string();
    let (st, killed) = s.post(&format!("/api/v1/runs/{fid}/_kill"), json!({}));
    assert_eq!(
        (st, killed["status"].as_str()),
        (202, Some("cancelled")),
        "{killed}"
    );
    let (st, e) = s.post(
        &format!("/api/v1/runs/{fid}/_fork"),
        json!({ "from_seq": 999 }),
    );
    assert_eq!(st, 422, "{e}");
}

#[test]
fn bad_input_gets_the_documented_error_shape_and_changes_nothing() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    upload(&s, "hello", HELLO);
    let shape = |(st, e): (u16, Value), want: u16| {
        assert_eq!(st, want, "{e}");
        assert!(e["error"].is_string() && e["code"].is_string(), "{e}");
        e
    };
    let e = shape(
        s.call(
            "POST",
            "/api/v1/tasks/hello/runs",
            &[("content-type", "application/json")],
            Some(b"{\"input\": ".to_vec()),
        ),
        400,
    );
    assert!(e["error"].as_str().unwrap().contains("line 1"), "{e}");
    shape(
        s.call(
            "POST",
            "/api/v1/tasks/hello/runs",
            &[("content-type", "text/plain")],
            Some(b"{}".to_vec()),
        ),
        415,
    );
    let big = format!("{{\"input\": \"{}\"}}", "x".repeat((1 << 20) + 1024));
    shape(
        s.call(
            "POST",
            "/api/v1/tasks/hello/runs",
            &[
                ("content-type", "application/json"),
                ("connection", "close"),
            ],
            Some(big.into_bytes()),
        ),
        413,
    );
    let e = shape(
        s.get("/api/v1/runs/0190c3e2-7a4b-7c00-8000-000000000000"),
        404,
    );
    assert_eq!(e["code"], "RUN_NOT_FOUND");
    shape(s.get("/api/v1/runs/not-a-uuid"), 400);
    let e = shape(s.post("/api/v1/tasks/ghost/runs", json!({})), 404);
    assert_eq!(e["code"], "TASK_NOT_FOUND");
    shape(s.get("/api/v1/tasks/..%2Fetc"), 400);
    // a tar.gz whose entry climbs out of the folder is refused and nothing is stored
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut header = tar::Header::new_gnu();
    let code = b"1 + 1";
    header.set_size(code.len() as u64);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    // `append_data` refuses `..`, so write the name into the header by hand
    header.as_gnu_mut().unwrap().name[..13].copy_from_slice(b"../../code.js");
    header.set_cksum();
    tar.append(&header, &code[..]).unwrap();
    let gz = tar.into_inner().unwrap().finish().unwrap();
    let e = shape(
        s.call(
            "POST",
            "/api/v1/tasks?name=evil",
            &[("content-type", "application/octet-stream")],
            Some(gz),
        ),
        422,
    );
    assert!(e["error"].as_str().unwrap().contains(".."), "{e}");
    assert_eq!(s.get("/api/v1/tasks/evil").0, 404, "nothing was stored");
}

#[test]
fn a_tar_gz_of_a_task_folder_uploads_like_sth_send_sequence() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (path, body) in [
        ("hello/code.js", HELLO.as_bytes()),
        (
            "hello/config.json",
            br#"{"name": "hello", "description": "Greets"}"#.as_slice(),
        ),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, path, body).unwrap();
    }
    let gz = tar.into_inner().unwrap().finish().unwrap();
    let (st, v) = s.call(
        "POST",
        "/api/v1/tasks",
        &[("content-type", "application/octet-stream")],
        Some(gz),
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["version"].as_u64()),
        (Some("hello"), Some(1))
    );
    let (_, t) = s.get("/api/v1/tasks/hello");
    assert_eq!(t["description"], "Greets");
    assert_eq!(t["code"], HELLO);
}

#[test]
fn a_token_is_required_when_set_and_a_public_bind_needs_one() {
    let sb = Sandbox::new();
    let s = Server::start(
        &sb,
        &[("SEQUENTIAL_API_TOKEN", "s3cret-token-0123456789")],
        &[],
    );
    let (st, e) = s.get("/api/v1/version");
    assert_eq!((st, e["code"].as_str()), (401, Some("UNAUTHORIZED")), "{e}");
    assert!(
        !e.to_string().contains("s3cret"),
        "the token never appears in answers"
    );
    let (st, _) = s.call(
        "GET",
        "/api/v1/version",
        &[("authorization", "Bearer wrong")],
        None,
    );
    assert_eq!(st, 401);
    let (st, _) = s.call(
        "GET",
        "/api/v1/version",
        &[("authorization", "Bearer s3cret-token-0123456789")],
        None,
    );
    assert_eq!(st, 200);
    sb.run(&["serve", "--bind", "0.0.0.0:0"])
        .usage_error()
        .stderr_has("without a token")
        .stderr_has("SEQUENTIAL_API_TOKEN");
}

/// `@scramjet/api-client`, installed from npm into `target/`, drives the server under Node.
/// Without Node or npm (or without the registry) this skips with one line, unless
/// `REQUIRE_NODE=1`, where that is a failure.
#[test]
fn scramjet_api_client_drives_the_server_unchanged() {
    let required = std::env::var("REQUIRE_NODE").is_ok_and(|v| v == "1");
    let skip = |why: String| {
        assert!(!required, "REQUIRE_NODE=1 but {why}");
        println!("skipped: {why} (set REQUIRE_NODE=1 to make this a failure)");
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/node-sth");
    std::fs::create_dir_all(&dir).unwrap();
    if !dir.join("node_modules/@scramjet/api-client").is_dir() {
        let npm = std::process::Command::new("npm")
            .args([
                "install",
                "--silent",
                "--no-audit",
                "--no-fund",
                "@scramjet/api-client@0.26",
            ])
            .current_dir(&dir)
            .output();
        match npm {
            Ok(o) if o.status.success() => {}
            Ok(o) => {
                return skip(format!(
                    "npm could not install @scramjet/api-client: {}",
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
            Err(e) => return skip(format!("npm is not available ({e})")),
        }
    }
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    // the package STH's sendSequence takes: a tar.gz of the task folder
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    let mut h = tar::Header::new_gnu();
    h.set_size(APPROVAL.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    tar.append_data(&mut h, "approval/code.js", APPROVAL.as_bytes())
        .unwrap();
    let gz = tar.into_inner().unwrap().finish().unwrap();
    let pkg = sb.path().join("approval.tar.gz");
    std::fs::write(&pkg, gz).unwrap();
    let script = r#"
const { HostClient } = require("@scramjet/api-client");
const fs = require("fs");
const say = (k, v) => console.log(JSON.stringify({ [k]: v }));
(async () => {
  const host = new HostClient(process.env.API);
  const seq = await host.sendSequence(fs.createReadStream(process.env.PKG));
  say("sequence", seq.id);
  say("sequences", (await host.listSequences()).map((s) => s.id));
  const inst = await seq.start({ appConfig: {}, args: [{ item: "laptop" }] });
  say("instances", await seq.listInstances());
  say("hostInstances", (await host.listInstances()).map((i) => i.id));
  say("info", await inst.getInfo());
  say("asked", await inst.getNextEvent("asked"));
  say("sent", await inst.sendEvent("approved", { by: "ann" }));
  say("decided", await inst.getNextEvent("decided"));
  const out = await inst.getStream("output");
  let text = "";
  for await (const chunk of out) text += chunk;
  say("output", JSON.parse(text));
  const second = await seq.start({ appConfig: {}, args: [{ item: "desk" }] });
  say("stopped", await second.stop(500, false));
  const third = await seq.start({ appConfig: {}, args: [{ item: "chair" }] });
  say("killed", await third.kill());
  for (const i of [second, third]) {
    for (let n = 0; n < 200 && (await i.getInfo()).status !== "completed"; n++) await new Promise((r) => setTimeout(r, 50));
    say("ended", (await i.getInfo()).status);
  }
  say("deleted", await host.deleteSequence(seq.id));
})().catch((e) => { console.error(e && (e.body ? JSON.stringify(e.body) : e.stack || e)); process.exit(1); });
"#;
    let out = std::process::Command::new("node")
        .args(["-e", script])
        .current_dir(&dir)
        .env("API", format!("{}/api/v1", s.url))
        .env("PKG", &pkg)
        .output();
    let out = match out {
        Ok(o) => o,
        Err(e) => return skip(format!("node is not available ({e})")),
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "node failed: {}\nstdout:\n{stdout}\nserver stderr:\n{}",
        String::from_utf8_lossy(&out.stderr),
        s.stderr()
    );
    let said: std::collections::HashMap<String, Value> = stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Map<String, Value>>(l).ok())
        .flat_map(|m| m.into_iter())
        .fold(std::collections::HashMap::new(), |mut acc, (k, v)| {
            acc.entry(k).or_insert(v);
            acc
        });
    assert_eq!(said["sequence"], "approval");
    assert_eq!(said["sequences"], json!(["approval"]));
    let id = said["info"]["id"].as_str().unwrap().to_string();
    assert!(
        said["instances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == &json!(id)),
        "{said:?}"
    );
    assert!(
        said["hostInstances"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i == &json!(id))
    );
    assert_eq!(said["info"]["sequence"], "approval");
    assert_eq!(said["asked"]["data"], json!({ "item": "laptop" }));
    assert_eq!(said["sent"]["accepted"], true);
    assert_eq!(said["decided"]["data"], json!({ "ok": true }));
    assert_eq!(said["output"], json!({ "item": "laptop", "by": "ann" }));
    assert_eq!(said["ended"], "completed");
    assert_eq!(said["deleted"], json!({ "id": "approval" }));
    // deleting the sequence deleted the task and its finished runs
    assert_eq!(s.get("/api/v1/tasks/approval").0, 404);
    assert_eq!(s.get(&format!("/api/v1/runs/{id}")).0, 404);
}

impl Server {
    /// `kill -9`.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// The first `n` lines of a run's NDJSON event stream (then the connection is dropped).
    pub fn first_lines(&self, path: &str, n: usize) -> Vec<Value> {
        let url = format!("{}{path}", self.url);
        self.rt.block_on(async {
            let mut resp = self.http.get(&url).send().await.unwrap();
            let mut buf = Vec::new();
            let mut lines = Vec::new();
            while lines.len() < n {
                let Some(chunk) = resp.chunk().await.unwrap() else {
                    break;
                };
                buf.extend_from_slice(&chunk);
                while let Some(at) = buf.iter().position(|&b| b == b'\n') {
                    let line: Vec<u8> = buf.drain(..=at).collect();
                    lines.push(serde_json::from_slice(&line).unwrap());
                }
            }
            lines.truncate(n);
            lines
        })
    }
}

pub fn ndjson(v: &Value) -> Vec<Value> {
    v.as_str()
        .unwrap_or_else(|| panic!("not a stream: {v}"))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn kill_9_of_the_server_with_fifty_runs_in_flight_loses_nothing_and_streams_resume_exactly() {
    let counting = sequential_test_support::http::CountingServer::start();
    let code = format!(
        "let sum = 0;\nfor (let i = 1; i <= 5; i++) {{ sum += fetch(`{}/slow/150/${{i}}`).i; }}\n({{ sum }})",
        counting.url()
    );
    let sb = Sandbox::new();
    let mut s = Server::start(&sb, &[], &["--concurrency", "64"]);
    upload(&s, "five", &code);
    let ids: Vec<String> = (0..50)
        .map(|i| {
            let (st, run) = s.post("/api/v1/tasks/five/runs", json!({ "input": { "n": i } }));
            assert_eq!(st, 202, "{run}");
            run["id"].as_str().unwrap().to_string()
        })
        .collect();
    // five consumers read part of their run's stream before the crash
    let partial: Vec<(String, Vec<Value>)> = ids[..5]
        .iter()
        .map(|id| {
            (
                id.clone(),
                s.first_lines(&format!("/api/v1/runs/{id}/events"), 2),
            )
        })
        .collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while counting.hits().len() < 60 {
        assert!(
            std::time::Instant::now() < deadline,
            "the runs made no progress"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    s.kill9();
    let s = Server::start(&sb, &[], &["--concurrency", "64"]);
    for id in &ids {
        let (_, run) = s.get(&format!("/api/v1/runs/{id}?wait=60s"));
        assert_eq!(run["status"], "succeeded", "{run}\n{}", s.stderr());
        assert_eq!(run["output"], json!({ "sum": 15 }));
    }
    // resuming after the last record seen gives exactly the rest of the uninterrupted stream
    for (id, seen) in &partial {
        let last = seen.last().unwrap()["seq"].as_u64().unwrap();
        let (_, rest) = s.call(
            "GET",
            &format!("/api/v1/runs/{id}/events"),
            &[("last-event-id", &last.to_string())],
            None,
        );
        let mut joined = seen.clone();
        joined.extend(ndjson(&rest));
        let (_, whole) = s.get(&format!("/api/v1/runs/{id}/events"));
        assert_eq!(joined, ndjson(&whole), "run {id}: a gap or a duplicate");
    }
    // a call completed before the crash was never made again; one in flight at most twice
    let mut per_key = std::collections::HashMap::<String, usize>::new();
    for h in counting.hits() {
        *per_key
            .entry(h.key.expect("an Idempotency-Key"))
            .or_default() += 1;
    }
    assert_eq!(per_key.len(), 250, "every step of every run, once each");
    assert!(
        per_key.values().all(|&n| n <= 2),
        "a call repeated more than once: {per_key:?}"
    );
}

#[test]
fn two_hundred_stream_clients_on_one_run_all_receive_every_record() {
    let counting = sequential_test_support::http::CountingServer::start();
    let code = format!(
        "let sum = 0;\nfor (let i = 1; i <= 5; i++) {{ sum += fetch(`{}/slow/100/${{i}}`).i; }}\n({{ sum }})",
        counting.url()
    );
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    upload(&s, "five", &code);
    let (_, run) = s.post("/api/v1/tasks/five/runs", json!({ "input": {} }));
    let url = format!(
        "{}/api/v1/runs/{}/events",
        s.url,
        run["id"].as_str().unwrap()
    );
    let bodies: Vec<String> = s.rt.block_on(async {
        let clients = (0..200).map(|i| {
            let http = s.http.clone();
            let url = url.clone();
            async move {
                let req = http.get(&url);
                let req = if i % 2 == 0 {
                    req.header("accept", "text/event-stream")
                } else {
                    req
                };
                req.send().await.unwrap().text().await.unwrap()
            }
        });
        let mut out = Vec::new();
        for c in clients.collect::<Vec<_>>() {
            out.push(tokio::spawn(c));
        }
        let mut bodies = Vec::new();
        for h in out {
            bodies.push(h.await.unwrap());
        }
        bodies
    });
    let (_, whole) = s.get(&format!(
        "/api/v1/runs/{}/events",
        run["id"].as_str().unwrap()
    ));
    let seqs: Vec<u64> = ndjson(&whole)
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.last(), Some(&(seqs.len() as u64 - 1)));
    for (i, b) in bodies.iter().enumerate() {
        let got: Vec<u64> = if i % 2 == 0 {
            b.lines()
                .filter_map(|l| l.strip_prefix("id: "))
                .map(|v| v.parse().unwrap())
                .collect()
        } else {
            b.lines()
                .map(|l| serde_json::from_str::<Value>(l).unwrap())
                .filter(|r| r["seq"].is_u64())
                .map(|r| r["seq"].as_u64().unwrap())
                .collect()
        };
        assert_eq!(got, seqs, "client {i} missed or repeated a record");
    }
}

#[test]
fn a_graph_that_fails_its_check_is_refused_at_upload_naming_the_json_pointer() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    let graph = json!({
        "version": 1,
        "initial": "lookup",
        "states": {
            "lookup": { "onDone": "nowhere" },
            "done": { "type": "final" }
        }
    });
    let code = "export async function lookup(input) { return input; }\n";
    let (st, e) = s.post(
        "/api/v1/tasks",
        json!({ "name": "broken", "code": code, "graph": graph }),
    );
    assert_eq!((st, e["code"].as_str()), (422, Some("INVALID")), "{e}");
    let pointers: Vec<&str> = e["details"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|x| x["pointer"].as_str())
        .collect();
    assert!(
        pointers.iter().any(|p| p.starts_with("/states/lookup")),
        "{e}"
    );
    assert_eq!(s.get("/api/v1/tasks/broken").0, 404, "nothing was stored");
    // the same graph, fixed, is stored and runs over HTTP like any other task
    let fixed = json!({
        "version": 1,
        "initial": "lookup",
        "states": { "lookup": { "onDone": "done" }, "done": { "type": "final" } }
    });
    let (st, v) = s.post(
        "/api/v1/tasks",
        json!({ "name": "broken", "code": code, "graph": fixed }),
    );
    assert_eq!(st, 201, "{v}");
    let (_, run) = s.post(
        "/api/v1/tasks/broken/runs?wait=30s",
        json!({ "input": { "n": 1 } }),
    );
    assert_eq!(run["status"], "succeeded", "{run}\n{}", s.stderr());
}

/// A plain `GET /runs/:id` on SQLite may answer the Run object it rendered before, but only
/// while nothing was committed since: here another process (the CLI's `kill`, on the same
/// database file, never talking to the server) ends a waiting run between two GETs that the
/// server could otherwise answer from memory, and the second GET must show the ended run.
#[test]
fn a_get_never_answers_a_run_that_another_process_changed_since() {
    let sb = Sandbox::new();
    let db = ("DATABASE_URL", "sqlite:./serve.db");
    let s = Server::start(&sb, &[db], &[]);
    upload(&s, "approval", APPROVAL);
    let (st, run) = s.post(
        "/api/v1/tasks/approval/runs",
        json!({ "input": { "item": "desk" } }),
    );
    assert_eq!(st, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let (st, waiting) = s.get(&format!("/api/v1/runs/{id}?wait=20s&until=waiting"));
    assert_eq!(
        (st, waiting["status"].as_str()),
        (200, Some("waiting")),
        "{waiting}"
    );
    // the same answer while nothing changes (the later ones may come from memory)
    for _ in 0..3 {
        let (st, again) = s.get(&format!("/api/v1/runs/{id}"));
        assert_eq!((st, &again), (200, &waiting));
    }
    let killed = sb
        .cmd(&["kill", &id, "--json"])
        .env(db.0, db.1)
        .run()
        .ok()
        .json();
    assert_eq!(killed["status"], "cancelled", "{killed}");
    let (st, now) = s.get(&format!("/api/v1/runs/{id}"));
    assert_eq!(
        (st, now["status"].as_str()),
        (200, Some("cancelled")),
        "a stale Run object after another process ended the run: {now}"
    );
    assert!(
        now["journal"]["last_seq"].as_u64() > waiting["journal"]["last_seq"].as_u64(),
        "the journal the other process appended to is not in the answer: {now}"
    );
    assert!(now["ended_at"].is_string(), "{now}");
    let (_, still) = s.get(&format!("/api/v1/runs/{id}"));
    assert_eq!(still, now);
}

/// Each request is in the host log and the audit trail once, with the path as asked.
#[test]
fn each_request_is_logged_once_with_its_full_path() {
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    for _ in 0..3 {
        assert_eq!(s.get("/api/v1/version").0, 200);
    }
    let (st, audit) = s.get("/api/v1/audit?follow=false");
    assert_eq!(st, 200);
    let version: Vec<Value> = ndjson(&audit)
        .into_iter()
        .filter(|l| l["path"].as_str().is_some_and(|p| p.ends_with("/version")))
        .collect();
    assert_eq!(version.len(), 3, "{version:?}");
    assert!(
        version.iter().all(|l| l["path"] == "/api/v1/version"),
        "{version:?}"
    );
}
