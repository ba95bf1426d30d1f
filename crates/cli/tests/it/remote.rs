//! The typed host API client (`sequential_http_wrapper::HostClient`) against the real server,
//! and `--remote URL`: each run command against a server prints what the same command prints
//! locally (ids and times aside).

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sequential_http_wrapper::HostClient;
use sequential_http_wrapper::host::{Record, RunFilter, RunOutput, RunStatus, StartOptions};
use serde_json::{Value, json};

use crate::serve::Server;
use crate::util::{Outcome, Sandbox};

const HELLO: &str = "export default async function (input) {\n  const r = await fetch('data:application/json,{\"greeting\":\"hello\"}');\n  return { greeting: (await r.json()).greeting, name: input.name ?? null };\n}\n";

const APPROVAL: &str = "export default async function (input, ctx) {\n  await ctx.emit('asked', { item: input.item });\n  const ok = await ctx.waitForEvent('approved', { timeout: '1d' });\n  await ctx.emit('decided', { ok: ok !== null });\n  return { item: input.item, by: ok && ok.by };\n}\n";

/// A loopback TCP proxy in front of a server: `cut` drops every open connection (a network
/// blip), `point_to` sends new connections to another server (one restarted on a new port).
struct Proxy {
    url: String,
    upstream: Arc<Mutex<String>>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(upstream_url: &str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let upstream = Arc::new(Mutex::new(addr_of(upstream_url)));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (up, conns) = (upstream.clone(), open.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let target = up.lock().unwrap().clone();
                let Ok(server) = TcpStream::connect(&target) else {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                };
                {
                    let mut conns = conns.lock().unwrap();
                    conns.push(client.try_clone().unwrap());
                    conns.push(server.try_clone().unwrap());
                }
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy {
            url,
            upstream,
            open,
        }
    }

    /// Drops every connection open now.
    fn cut(&self) {
        for s in self.open.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    fn point_to(&self, url: &str) {
        *self.upstream.lock().unwrap() = addr_of(url);
    }
}

fn addr_of(url: &str) -> String {
    url.trim_start_matches("http://").to_string()
}

/// Copies `from` into `to` on a thread until either side closes.
fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    });
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A tar.gz of one task folder `name/` with `files`.
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

/// Reads `n` records of `stream`.
async fn take(stream: &mut sequential_http_wrapper::EventStream, n: usize) -> Vec<Record> {
    let mut got = Vec::new();
    while got.len() < n {
        match stream.next().await {
            Some(r) => got.push(r.expect("a record")),
            None => break,
        }
    }
    got
}

#[test]
fn the_typed_client_uploads_starts_idempotently_pages_controls_and_streams() {
    let sb = Sandbox::new();
    let server = Server::start(&sb, &[], &[]);
    let rt = runtime();
    let host = HostClient::new(&server.url).unwrap();
    rt.block_on(async {
        assert_eq!(
            host.version().await.unwrap().service,
            "sequential-ecosystem"
        );
        let health = host.health().await.unwrap();
        assert!(health.ok && health.worker, "{health:?}");

        // upload: JSON (PUT: identical content is the same version) and a tar.gz (POST)
        let up = host.upload("approval", APPROVAL, None, None).await.unwrap();
        assert_eq!(
            (up.name.as_str(), up.version, up.created),
            ("approval", 1, true)
        );
        let again = host.upload("approval", APPROVAL, None, None).await.unwrap();
        assert_eq!((again.version, again.created), (1, false));
        let pkg = tar_gz(
            "hello",
            &[
                ("code.js", HELLO),
                (
                    "config.json",
                    r#"{"name": "hello", "description": "Greets"}"#,
                ),
            ],
        );
        let hello = host.upload_tar_gz(pkg.clone()).await.unwrap();
        assert_eq!((hello.name.as_str(), hello.version), ("hello", 1));
        let e = host.upload_tar_gz(pkg).await.unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (Some(409), Some("TASK_EXISTS")),
            "{e}"
        );
        let names: Vec<String> = host
            .list_tasks()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name)
            .collect();
        assert_eq!(names, ["approval", "hello"]);
        let task = host.task("hello").get().await.unwrap();
        assert_eq!((task.code.as_str(), task.versions.len()), (HELLO, 1));

        // start: waiting for the end; the same key twice is one run, another input a 409
        let done = host
            .task("hello")
            .start(
                json!({ "name": "Ada" }),
                StartOptions {
                    wait: Some(Duration::from_secs(30)),
                    ..StartOptions::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
        assert_eq!(
            done.output,
            Some(json!({ "greeting": "hello", "name": "Ada" }))
        );
        match host.run(&done.id).output().await.unwrap() {
            RunOutput::Ready(v) => assert_eq!(v["name"], "Ada"),
            other => panic!("{other:?}"),
        }
        let approval = host.task("approval");
        let keyed = |item: &str| {
            approval.start(
                json!({ "item": item }),
                StartOptions {
                    idempotency_key: Some("k1".into()),
                    ..StartOptions::default()
                },
            )
        };
        let first = keyed("laptop").await.unwrap();
        let second = keyed("laptop").await.unwrap();
        assert_eq!(first.id, second.id, "same key, same input: the same run");
        let e = keyed("desk").await.unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (Some(409), Some("IDEMPOTENCY_KEY_REUSED")),
            "{e}"
        );
        let run = host.run(&first.id);
        assert!(matches!(run.output().await.unwrap(), RunOutput::Pending(_)));

        // paging: three runs of approval, one per page
        let more = host
            .task("approval")
            .start(json!({ "item": "chair" }), StartOptions::default())
            .await
            .unwrap();
        let other = host
            .task("approval")
            .start(json!({ "item": "lamp" }), StartOptions::default())
            .await
            .unwrap();
        let mut filter = RunFilter {
            limit: Some(1),
            ..RunFilter::task("approval")
        };
        let mut seen = Vec::new();
        loop {
            let page = host.list_runs(&filter).await.unwrap();
            assert!(page.items.len() <= 1);
            seen.extend(page.items.into_iter().map(|r| r.id));
            match page.next_cursor {
                Some(c) => filter.cursor = Some(c),
                None => break,
            }
        }
        seen.sort();
        let mut want = vec![first.id.clone(), more.id.clone(), other.id.clone()];
        want.sort();
        assert_eq!(seen, want);
        assert_eq!(host.task("approval").runs().await.unwrap().items.len(), 3);

        // control: stop, kill, retry (refused: not paused), fork
        let stopped = host
            .run(&more.id)
            .stop(Duration::from_millis(200))
            .await
            .unwrap();
        assert!(
            matches!(stopped.status, RunStatus::Stopping | RunStatus::Cancelled),
            "{stopped:?}"
        );
        let stopped = host
            .run(&more.id)
            .get_wait(Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(stopped.status, RunStatus::Cancelled);
        let killed = host.run(&other.id).kill().await.unwrap();
        assert_eq!(killed.status, RunStatus::Cancelled);
        let e = host.run(&other.id).kill().await.unwrap_err();
        assert_eq!(e.code(), Some("RUN_FINISHED"), "{e}");
        let e = host.run(&other.id).retry().await.unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (Some(409), Some("RUN_NOT_PAUSED")),
            "{e}"
        );
        // delete: refused while active, then the ended run is gone
        let e = host.run(&first.id).delete().await.unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (Some(409), Some("RUN_ACTIVE")),
            "{e}"
        );
        host.run(&other.id).delete().await.unwrap();
        let e = host.run(&other.id).get().await.unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (Some(404), Some("RUN_NOT_FOUND")),
            "{e}"
        );
        let forked = host.run(&done.id).fork(0).await.unwrap();
        assert_ne!(forked.id, done.id);
        let forked = host
            .run(&forked.id)
            .get_wait(Duration::from_secs(20))
            .await
            .unwrap();
        assert_eq!(forked.output, done.output);
        let e = host
            .run("0190c3e2-7a4b-7c00-8000-000000000000")
            .get()
            .await
            .unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (Some(404), Some("RUN_NOT_FOUND")),
            "{e}"
        );

        // events: the whole stream equals the journal
        let accepted = run
            .send_event("approved", json!({ "by": "ann" }))
            .await
            .unwrap();
        assert!(accepted.accepted);
        let mut stream = run.events(None);
        let mut all = Vec::new();
        while let Some(r) = stream.next().await {
            all.push(r.unwrap());
        }
        assert_eq!(all, run.journal().await.unwrap());
        assert_eq!(all.last().unwrap().kind, "run.succeeded");
        // …and a stream opened after a seq carries exactly the rest
        let mut rest = run.events(Some(2));
        assert_eq!(take(&mut rest, usize::MAX).await, all[3..].to_vec());
    });
}

/// Waits for two events, one after the other.
const TWO_EVENTS: &str = "export default async function (input, ctx) {\n  const a = await ctx.waitForEvent('first', { timeout: '1d' });\n  const b = await ctx.waitForEvent('second', { timeout: '1d' });\n  return { a, b };\n}\n";

#[test]
fn an_event_stream_resumes_by_itself_across_a_dropped_connection_and_a_server_restart() {
    let sb = Sandbox::new();
    let server = Server::start(&sb, &[], &[]);
    let proxy = Proxy::start(&server.url);
    let rt = runtime();
    let host = HostClient::new(&proxy.url).unwrap();
    // (events go to the server directly: a request on a cut connection fails, and only the
    // stream promises to recover)
    let direct = HostClient::new(&server.url).unwrap();
    let (id, mut stream, mut got) = rt.block_on(async {
        host.upload("two", TWO_EVENTS, None, None).await.unwrap();
        let started = host
            .task("two")
            .start(json!({}), StartOptions::default())
            .await
            .unwrap();
        let mut stream = host.run(&started.id).events(None);
        // run.started, and timer.armed of the first wait: nothing more until the event
        let mut got = take(&mut stream, 2).await;
        assert_eq!(got[1].kind, "timer.armed", "{got:?}");

        // a network blip: every connection through the proxy is cut, then the run moves on;
        // the records it writes reach the stream only through a new connection
        proxy.cut();
        direct
            .run(&started.id)
            .send_event("first", json!(1))
            .await
            .unwrap();
        got.extend(take(&mut stream, 2).await);
        assert_eq!(got[3].kind, "timer.armed", "the second wait: {got:?}");
        assert!(stream.reconnects() >= 1, "{stream:?}");
        (started.id, stream, got)
    });
    let before_restart = stream.reconnects();

    // kill -9 of the server, a new one on the same storage (on another port)
    drop(server);
    let server = Server::start(&sb, &[], &[]);
    proxy.point_to(&server.url);
    let direct = HostClient::new(&server.url).unwrap();
    rt.block_on(async {
        let run = direct.run(&id);
        run.send_event("second", json!(2)).await.unwrap();
        while let Some(r) = stream.next().await {
            got.push(r.expect("the stream resumes on the new server"));
        }
        assert!(stream.reconnects() > before_restart, "{stream:?}");
        let journal = run.journal().await.unwrap();
        assert_eq!(
            got.iter().map(|r| r.seq).collect::<Vec<_>>(),
            (0..journal.len() as u64).collect::<Vec<_>>(),
            "no gap, no duplicate"
        );
        assert_eq!(got, journal);
        assert_eq!(got.last().unwrap().kind, "run.succeeded");
        let done = run.get().await.unwrap();
        assert_eq!(done.output, Some(json!({ "a": 1, "b": 2 })));
    });
}

#[test]
fn the_client_sends_the_token_and_a_wrong_one_is_a_401() {
    let sb = Sandbox::new();
    let token = "s3cret-token-0123456789";
    let server = Server::start(&sb, &[("SEQUENTIAL_API_TOKEN", token)], &[]);
    let rt = runtime();
    rt.block_on(async {
        let e = HostClient::new(&server.url)
            .unwrap()
            .version()
            .await
            .unwrap_err();
        assert_eq!(
            (e.status(), e.code()),
            (Some(401), Some("UNAUTHORIZED")),
            "{e}"
        );
        let v = HostClient::new(&server.url)
            .unwrap()
            .with_token(token)
            .version()
            .await
            .unwrap();
        assert_eq!(v.api_version, "v1");
    });
    // the CLI reads the token from SEQUENTIAL_API_TOKEN
    let cli = Sandbox::new();
    cli.cmd(&["--remote", &server.url, "list"])
        .run()
        .usage_error()
        .stderr_has("SEQUENTIAL_API_TOKEN");
    cli.cmd(&["--remote", &server.url, "list", "--json"])
        .env("SEQUENTIAL_API_TOKEN", token)
        .run()
        .ok();
}

/// Ids (UUIDs) and times replaced by placeholders, the storage location by `<storage>`.
fn normalize(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match k.as_str() {
                        "storage" => json!("<storage>"),
                        "at_ms" | "duration_ms" | "wakeAt" if !v.is_null() => json!("<ms>"),
                        _ => normalize(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(normalize).collect()),
        Value::String(s) => Value::String(normalize_text(s)),
        other => other.clone(),
    }
}

/// Text with each UUID replaced by `<id>` and each RFC 3339 time by `<time>`.
fn normalize_text(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = String::new();
    let mut i = 0;
    let is_uuid = |w: &[u8]| {
        w.len() == 36
            && w.iter().enumerate().all(|(j, c)| match j {
                8 | 13 | 18 | 23 => *c == b'-',
                _ => c.is_ascii_hexdigit(),
            })
    };
    let time_len = |w: &[u8]| -> Option<usize> {
        // 2026-05-01T10:00:00Z or with .123Z
        let shape = b"dddd-dd-ddTdd:dd:dd";
        if w.len() < shape.len() + 1 {
            return None;
        }
        for (j, c) in shape.iter().enumerate() {
            let ok = match c {
                b'd' => w[j].is_ascii_digit(),
                other => w[j] == *other,
            };
            if !ok {
                return None;
            }
        }
        let mut end = shape.len();
        if w[end] == b'.' {
            end += 1;
            while end < w.len() && w[end].is_ascii_digit() {
                end += 1;
            }
        }
        (end < w.len() && w[end] == b'Z').then_some(end + 1)
    };
    while i < b.len() {
        if i + 36 <= b.len() && is_uuid(&b[i..i + 36]) {
            out.push_str("<id>");
            i += 36;
        } else if let Some(n) = time_len(&b[i..]) {
            out.push_str("<time>");
            i += n;
        } else {
            let c = s[i..].chars().next().unwrap();
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The same command here and there: the exit codes match, and the `--json` documents match
/// once normalized. Returns (local, remote).
#[track_caller]
fn same(local: Outcome, remote: Outcome) -> (Value, Value) {
    assert_eq!(
        local.code, remote.code,
        "exit codes differ\nlocal stdout:\n{}\nlocal stderr:\n{}\nremote stdout:\n{}\nremote stderr:\n{}",
        local.stdout, local.stderr, remote.stdout, remote.stderr
    );
    let (l, r) = (local.json(), remote.json());
    assert_eq!(
        normalize(&l),
        normalize(&r),
        "\n{} (local)\nand\n{} (remote)\nprint different documents",
        local.command,
        remote.command
    );
    (l, r)
}

/// Two sandboxes with the same task folders: `local` runs commands on its own storage,
/// `remote` sends them to a server (which keeps its storage in a third directory).
struct Twins {
    local: Sandbox,
    remote: Sandbox,
    url: String,
}

impl Twins {
    fn run(&self, local_args: &[&str], remote_args: &[&str]) -> (Value, Value) {
        let local = self.local.run(local_args);
        // the flag and the environment variable, alternately
        let remote = if remote_args.len().is_multiple_of(2) {
            let mut args = vec!["--remote", self.url.as_str()];
            args.extend_from_slice(remote_args);
            self.remote.run(&args)
        } else {
            self.remote
                .cmd(remote_args)
                .env("SEQUENTIAL_REMOTE", self.url.clone())
                .run()
        };
        same(local, remote)
    }

    /// The same arguments on both sides.
    fn both(&self, args: &[&str]) -> (Value, Value) {
        self.run(args, args)
    }
}

fn run_id(doc: &Value) -> String {
    doc["run"]
        .as_str()
        .unwrap_or_else(|| panic!("no run in {doc}"))
        .to_string()
}

#[test]
fn remote_commands_print_what_the_same_commands_print_locally() {
    let counting = sequential_test_support::http::CountingServer::start();
    let down = format!(
        "export default async function () {{\n  const r = await fetch('{}/down');\n  return await r.json();\n}}\n",
        counting.url()
    );
    let folders = |sb: &Sandbox| {
        sb.write("tasks/hello/code.js", HELLO);
        sb.write(
            "tasks/hello/config.json",
            r#"{"name": "hello", "description": "Greets", "inputs": [{"name": "name", "type": "string", "default": "you"}]}"#,
        );
        sb.write("tasks/approval/code.js", APPROVAL);
        sb.write("tasks/down/code.js", &down);
        sb.write(
            "tasks/down/config.json",
            r#"{"name": "down", "retry": {"attempts": 1}}"#,
        );
    };
    let server_dir = Sandbox::new();
    let server = Server::start(&server_dir, &[], &[]);
    let t = Twins {
        local: Sandbox::new(),
        remote: Sandbox::new(),
        url: server.url.clone(),
    };
    folders(&t.local);
    folders(&t.remote);

    // list before anything is stored, run (text, --json, --verbose, --dry-run), list after
    let (l, _) = t.both(&["list", "--json"]);
    assert_eq!(l["tasks"][0]["state"], "not-stored", "{l}");
    let local = t
        .local
        .run(&["run", "hello", "--input", r#"{"name": "Ada"}"#]);
    let remote = t.remote.run(&[
        "--remote",
        &t.url,
        "run",
        "hello",
        "--input",
        r#"{"name": "Ada"}"#,
    ]);
    assert_eq!((local.code, &local.stdout), (remote.code, &remote.stdout));
    let (l, r) = t.both(&["run", "hello", "--json"]);
    assert_eq!(
        l["output"],
        json!({ "greeting": "hello", "name": "you" }),
        "defaults filled in"
    );
    assert_ne!(run_id(&l), run_id(&r));
    let (l, _) = t.both(&["run", "hello", "--json", "--verbose"]);
    assert_eq!(l["journal"].as_array().unwrap().len(), 4, "{l}");
    let (l, _) = t.both(&["run", "hello", "--dry-run", "--json"]);
    assert_eq!(
        (l["version"].as_u64(), &l["new_version"]),
        (Some(1), &json!(false))
    );
    let (l, _) = t.both(&["list", "--json"]);
    assert_eq!(l["tasks"][2]["name"], "hello", "{l}");
    assert_eq!(l["tasks"][2]["state"], "in-sync", "{l}");
    t.both(&["history", "hello", "--json"]);
    let (l, _) = t.both(&["history", "hello", "--limit", "1", "--json"]);
    assert_eq!(l["more"], true);

    // a run that waits for an event: show, signal, resume
    let (l, r) = t.both(&[
        "run",
        "approval",
        "--input",
        r#"{"item": "laptop"}"#,
        "--json",
    ]);
    assert_eq!(l["status"], "waiting", "{l}");
    let (lid, rid) = (run_id(&l), run_id(&r));
    t.run(&["show", &lid, "--json"], &["show", &rid, "--json"]);
    let (l, _) = t.run(
        &["show", "approval", &lid, "--journal", "--json"],
        &["show", "approval", &rid, "--journal", "--json"],
    );
    assert_eq!(l["journal"][2]["kind"], "timer.armed", "{l}");
    let local_text = t.local.run(&["show", &lid]).ok();
    let remote_text = t.remote.run(&["--remote", &t.url, "show", &rid]).ok();
    let strip = |s: &str| {
        normalize_text(s)
            .lines()
            .filter(|l| !l.starts_with("storage:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&local_text.stdout), strip(&remote_text.stdout));
    let payload = r#"{"by": "ann"}"#;
    let local = t
        .local
        .run(&["signal", &lid, "approved", payload, "--json"])
        .ok();
    let remote = t
        .remote
        .run(&[
            "--remote", &t.url, "signal", &rid, "approved", payload, "--json",
        ])
        .ok();
    let (mut l, mut r) = (local.json(), remote.json());
    // the server continues the run at once: by the time it answers the run may have moved on
    assert_eq!(l["status"], "waiting");
    assert!(
        ["waiting", "running", "succeeded"].contains(&r["status"].as_str().unwrap()),
        "{r}"
    );
    l["status"] = Value::Null;
    r["status"] = Value::Null;
    assert_eq!(normalize(&l), normalize(&r));
    let (l, _) = t.run(&["resume", &lid, "--json"], &["resume", &rid, "--json"]);
    assert_eq!(l["output"], json!({ "item": "laptop", "by": "ann" }));
    t.run(
        &["show", &lid, "--follow", "--json"],
        &["show", &rid, "--follow", "--json"],
    );
    let (l, r) = t.run(
        &["rerun", &lid, "--from-seq", "0", "--json"],
        &["rerun", &rid, "--from-seq", "0", "--json"],
    );
    assert_eq!(l["status"], "waiting");

    // cancel, kill of an ended run, detach
    let (lid, rid) = (run_id(&l), run_id(&r));
    let (l, _) = t.run(&["cancel", &lid, "--json"], &["cancel", &rid, "--json"]);
    assert_eq!(
        (&l["status"], &l["was"]),
        (&json!("cancelled"), &json!("waiting"))
    );
    let local = t.local.run(&["kill", &lid]).usage_error();
    let remote = t
        .remote
        .run(&["--remote", &t.url, "kill", &rid])
        .usage_error();
    assert_eq!(
        normalize_text(&local.stderr),
        normalize_text(&remote.stderr),
        "the same refusal"
    );
    t.both(&["history", "approval", "--json"]);
    // the server drives a detached run at once; here it stays queued: only the start compares
    let (l, _) = t.both(&[
        "run",
        "approval",
        "--input",
        r#"{"item": "desk"}"#,
        "--detach",
        "--json",
    ]);
    assert_eq!(l["status"], "queued");

    // a call that spends its retries pauses the run; resume --retry continues it
    let (l, r) = t.both(&["run", "down", "--json"]);
    assert_eq!(l["status"], "paused", "{l}");
    let (lid, rid) = (run_id(&l), run_id(&r));
    let local = t.local.run(&["resume", &lid]).usage_error();
    let remote = t
        .remote
        .run(&["--remote", &t.url, "resume", &rid])
        .usage_error();
    assert_eq!(
        normalize_text(&local.stderr),
        normalize_text(&remote.stderr)
    );
    counting.set_down(false);
    let (l, _) = t.run(
        &["resume", &lid, "--retry", "--json"],
        &["resume", &rid, "--retry", "--json"],
    );
    assert_eq!(
        (&l["status"], &l["output"]),
        (&json!("succeeded"), &json!({ "ok": true }))
    );
    t.both(&["list", "--json"]);

    // what does not work remotely says so; a missing run is named
    t.remote
        .run(&["--remote", &t.url, "sync-tasks"])
        .usage_error()
        .stderr_has("`sync-tasks` does not work with --remote")
        .stderr_has("run, resume, signal, cancel, kill, rerun, show, history and list");
    let ghost = "0190c3e2-7a4b-7c00-8000-000000000000";
    t.remote
        .run(&["--remote", &t.url, "show", ghost])
        .usage_error()
        .stderr_has(&format!("run {ghost} not found in {}", t.url));
    t.remote
        .run(&["--remote", "http://127.0.0.1:9", "show", ghost])
        .usage_error()
        .stderr_has("cannot reach the host API at http://127.0.0.1:9");
    assert!(
        !t.remote.exists("tasks/.sequential"),
        "remote commands store nothing here"
    );
    drop(server);
}
