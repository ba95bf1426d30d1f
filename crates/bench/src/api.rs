//! `sequential-bench api`: the host API of the real `sequential-ecosystem serve` (SQLite, fsync
//! on, its embedded worker) on loopback, driven by a small keep-alive HTTP/1.1 client of our
//! own (raw tokio sockets: one request written, one response read, no per-request allocation
//! beyond the read buffer) so the load generator costs little of the machine it shares.
//!
//! Measures, each bounded in time: the server's idle RSS before any request (and again after
//! the load); start-and-wait of a one-fetch task (`POST /api/v1/tasks/:name/runs?wait=30s`, one
//! connection, one run at a time); `GET /api/v1/runs/:id` with 64 keep-alive connections
//! (requests per second, with the CPU of the load generator and of the server beside it); and
//! how long a journal record takes to reach an SSE client of `GET /api/v1/runs/:id/events`.
//!
//! The server binary is `$SEQUENTIAL_BIN` (`cargo xtask bench api` builds it with the `bench`
//! profile and sets it). `API_BENCH_SECS` (default 10) is the length of the req/s window;
//! `API_BENCH_ONLY=get` measures only the two `GET /api/v1/runs/:id` rates and prints them to
//! stderr (no section), for profiling the server while it serves them.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::engine::{cpu_seconds_of, echo, own_cpu_seconds, verdict};
use crate::{machine_line, percentile};

/// Keep-alive connections of the req/s measurement.
const CONNECTIONS: usize = 64;

const ONE_FETCH: &str = "export default async function (input) {\n  const r = await fetch(`${input.url}/step?i=1`);\n  return (await r.json()).i;\n}\n";

const NOOP: &str = "export default async function (input) {\n  return input.i;\n}\n";
/// How many runs the runs-list measurement stores before it reads the first page.
const LIST_RUNS: usize = 10_000;
const TICKER: &str = "export default async function (input, ctx) {\n  for (let n = 0; n < input.n; n++) {\n    const m = await ctx.waitForEvent('tick');\n    await ctx.emit('tock', m);\n  }\n  return input.n;\n}\n";

// ---------------------------------------------------------------------------------------------
// the server

struct Serve {
    child: Child,
    addr: String,
}

impl Serve {
    fn start(bin: &Path, dir: &Path) -> Result<Serve> {
        use std::io::BufRead;
        let db = dir.join("bench.db");
        let mut child = Command::new(bin)
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("DATABASE_URL", format!("sqlite:{}", db.display()))
            .env_remove("SEQUENTIAL_API_TOKEN")
            .env_remove("SEQUENTIAL_REMOTE")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {} serve", bin.display()))?;
        let out = child.stdout.take().context("serve's stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(out).read_line(&mut line)?;
        let Some(url) = line.trim().strip_prefix("listening on ") else {
            let _ = child.kill();
            bail!("serve did not say where it listens: {line:?}");
        };
        let addr = url
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        Ok(Serve { child, addr })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of `pid`, in MiB (from `/proc/PID/status`).
fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc status")?;
    Ok(kib / 1024.0)
}

// ---------------------------------------------------------------------------------------------
// a minimal keep-alive HTTP/1.1 client

struct Conn {
    sock: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn> {
        let sock = TcpStream::connect(addr).await?;
        sock.set_nodelay(true)?;
        Ok(Conn {
            sock,
            buf: Vec::with_capacity(16 * 1024),
        })
    }

    fn request(method: &str, path: &str, body: Option<&Value>) -> Vec<u8> {
        let mut req = format!("{method} {path} HTTP/1.1\r\nhost: bench\r\n");
        let body = body.map(Value::to_string);
        if let Some(b) = &body {
            req.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(&b);
        }
        req.into_bytes()
    }

    /// Writes `req` and reads one response: its status and body.
    async fn call(&mut self, req: &[u8]) -> Result<(u16, &[u8])> {
        self.sock.write_all(req).await?;
        self.buf.clear();
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).context("response head")?;
        let status: u16 = head
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .context("response status")?;
        let length = head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        });
        let Some(length) = length else {
            bail!("a response without content-length: {head}");
        };
        while self.buf.len() < head_end + length {
            self.fill().await?;
        }
        Ok((status, &self.buf[head_end..head_end + length]))
    }

    async fn json(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value)> {
        let req = Conn::request(method, path, body);
        let (status, body) = self.call(&req).await?;
        let v = serde_json::from_slice(body).unwrap_or(Value::Null);
        Ok((status, v))
    }

    async fn fill(&mut self) -> Result<usize> {
        let mut chunk = [0u8; 8192];
        let n = self.sock.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

// ---------------------------------------------------------------------------------------------
// the measurements

/// Start-and-wait of the one-fetch task, one at a time: latencies of the successful runs.
async fn start_and_wait(addr: &str, echo_url: &str) -> Result<Vec<Duration>> {
    let mut c = Conn::open(addr).await?;
    let req = Conn::request(
        "POST",
        "/api/v1/tasks/one-fetch/runs?wait=30s",
        Some(&json!({ "input": { "url": echo_url } })),
    );
    let mut lat = Vec::new();
    let until = Instant::now() + Duration::from_secs(15);
    for i in 0..1020 {
        let t = Instant::now();
        let (status, body) = c.call(&req).await?;
        let took = t.elapsed();
        if status != 200 {
            bail!(
                "start-and-wait answered {status}: {}",
                String::from_utf8_lossy(body)
            );
        }
        if i >= 20 {
            lat.push(took); // the first 20 warm up
        }
        if Instant::now() > until {
            break;
        }
    }
    lat.sort();
    Ok(lat)
}

struct Rate {
    per_sec: f64,
    errors: u64,
    client_cpu: f64,
    server_cpu: f64,
    secs: f64,
}

/// `GET /api/v1/runs/:id` on [`CONNECTIONS`] keep-alive connections for `secs` (after a
/// second of warm-up).
async fn get_rate(addr: &str, path: &str, server_pid: u32, secs: u64) -> Result<Rate> {
    let ok = Arc::new(AtomicU64::new(0));
    let bad = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let req = Arc::new(Conn::request("GET", path, None));
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let mut c = Conn::open(addr).await?;
        let (ok, bad, stop, req) = (ok.clone(), bad.clone(), stop.clone(), req.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.call(&req).await {
                    Ok((200, _)) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(_) => bad.fetch_add(1, Ordering::Relaxed),
                    Err(e) => return Err(e),
                };
            }
            Ok(())
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (n0, e0) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    let (c0, s0, t0) = (
        own_cpu_seconds(),
        cpu_seconds_of(server_pid)?,
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (n1, e1) = (ok.load(Ordering::Relaxed), bad.load(Ordering::Relaxed));
    let (c1, s1, wall) = (
        own_cpu_seconds(),
        cpu_seconds_of(server_pid)?,
        t0.elapsed().as_secs_f64(),
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    Ok(Rate {
        per_sec: (n1 - n0) as f64 / wall,
        errors: e1 - e0,
        client_cpu: (c1 - c0) / wall,
        server_cpu: (s1 - s0) / wall,
        secs: wall,
    })
}

struct Delivery {
    /// From the record's `at` (the server's clock when it made the record, just before its
    /// durable append) to the SSE client having it.
    append_to_client: Vec<f64>,
    /// From the client sending `POST _event` to the SSE client having the record it caused.
    event_to_client: Vec<Duration>,
}

/// An SSE client on a run of the ticker task; each `POST _event` makes the run emit one
/// record, which the client waits for before sending the next.
async fn sse_delivery(addr: &str, events: usize) -> Result<Delivery> {
    let mut ctl = Conn::open(addr).await?;
    let (st, run) = ctl
        .json(
            "POST",
            "/api/v1/tasks/ticker/runs",
            Some(&json!({ "input": { "n": events + 10 } })),
        )
        .await?;
    if st != 202 && st != 200 {
        bail!("starting the ticker answered {st}: {run}");
    }
    let id = run["id"].as_str().context("the run has an id")?.to_string();
    let mut sse = TcpStream::connect(addr).await?;
    sse.set_nodelay(true)?;
    sse.write_all(
        format!("GET /api/v1/runs/{id}/events HTTP/1.1\r\nhost: bench\r\naccept: text/event-stream\r\n\r\n")
            .as_bytes(),
    )
    .await?;
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut out = Delivery {
        append_to_client: Vec::new(),
        event_to_client: Vec::new(),
    };
    let until = Instant::now() + Duration::from_secs(30);
    for n in 0..events {
        if Instant::now() > until {
            break;
        }
        let body = json!({ "eventName": "tick", "message": { "n": n } });
        let sent = Instant::now();
        let (st, answer) = ctl
            .json("POST", &format!("/api/v1/runs/{id}/_event"), Some(&body))
            .await?;
        if st != 202 {
            bail!("_event answered {st}: {answer}");
        }
        'wait: loop {
            while let Some(end) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=end).collect();
                let Some(data) = line.strip_prefix(b"data: ") else {
                    continue;
                };
                let Ok(rec) = serde_json::from_slice::<Value>(data) else {
                    continue;
                };
                if rec["kind"] == "call.completed"
                    && rec["data"]["kind"] == "emit"
                    && rec["data"]["request"]["data"]["n"] == n
                {
                    let now = wall_ms();
                    out.event_to_client.push(sent.elapsed());
                    if let Some(at) = rec["at"].as_f64() {
                        out.append_to_client.push(now - at);
                    }
                    break 'wait;
                }
            }
            let got = tokio::time::timeout(Duration::from_secs(10), sse.read(&mut chunk))
                .await
                .context("no SSE record within 10 s")??;
            if got == 0 {
                bail!("the SSE stream closed");
            }
            buf.extend_from_slice(&chunk[..got]);
        }
    }
    out.event_to_client.sort();
    out.append_to_client.sort_by(f64::total_cmp);
    Ok(out)
}

/// The console's first page: [`LIST_RUNS`] runs stored (started on 8 connections, then driven
/// to their end by the embedded worker), then the first page of `GET /api/v1/runs`, unfiltered
/// and filtered by status and by task, read 50 times each on one connection: latencies in ms.
async fn list_first_page(addr: &str) -> Result<Vec<(String, Vec<Duration>)>> {
    let per = LIST_RUNS / 8;
    let mut starters = Vec::new();
    for c in 0..8 {
        let addr = addr.to_string();
        starters.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            for i in 0..per {
                let body = json!({ "input": { "i": c * per + i } });
                let (st, v) = conn
                    .json("POST", "/api/v1/tasks/noop/runs", Some(&body))
                    .await?;
                if st != 201 && st != 202 && st != 200 {
                    bail!("starting a noop run answered {st}: {v}");
                }
            }
            anyhow::Ok(())
        }));
    }
    for s in starters {
        s.await??;
    }
    let mut c = Conn::open(addr).await?;
    let until = Instant::now() + Duration::from_secs(300);
    loop {
        let (_, v) = c
            .json("GET", "/api/v1/runs?task=noop&status=queued&limit=1", None)
            .await?;
        if v["items"].as_array().is_some_and(Vec::is_empty) || Instant::now() > until {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut out = Vec::new();
    for path in [
        "/api/v1/runs?limit=50",
        "/api/v1/runs?limit=50&status=succeeded",
        "/api/v1/runs?limit=50&task=noop",
    ] {
        let req = Conn::request("GET", path, None);
        let mut lat = Vec::new();
        for _ in 0..50 {
            let t = Instant::now();
            let (st, body) = c.call(&req).await?;
            if st != 200 {
                bail!("{path} answered {st}: {}", String::from_utf8_lossy(body));
            }
            lat.push(t.elapsed());
        }
        lat.sort();
        out.push((path.to_string(), lat));
    }
    Ok(out)
}

fn median_f(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[(v.len() - 1) / 2]
}

pub async fn run(_args: &[String]) -> Result<()> {
    let bin: PathBuf = std::env::var_os("SEQUENTIAL_BIN")
        .map(|p| std::path::absolute(PathBuf::from(p)))
        .transpose()?
        .context("SEQUENTIAL_BIN is not set: the sequential-ecosystem binary to serve (`cargo xtask bench api` builds it and sets it)")?;
    let secs = std::env::var("API_BENCH_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10u64);
    let dir = tempfile::tempdir()?;
    // the fetch target of the one-fetch task
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(echo(sock));
        }
    });

    eprintln!("api: starting {} serve on SQLite", bin.display());
    let server = Serve::start(&bin, dir.path())?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle_rss = rss_mib(server.pid())?;
    eprintln!("api: idle RSS {idle_rss:.1} MiB");

    let mut c = Conn::open(&server.addr).await?;
    for (name, code) in [("one-fetch", ONE_FETCH), ("ticker", TICKER), ("noop", NOOP)] {
        let (st, body) = c
            .json(
                "POST",
                "/api/v1/tasks",
                Some(&json!({ "name": name, "code": code })),
            )
            .await?;
        if st != 201 {
            bail!("uploading {name} answered {st}: {body}");
        }
    }

    eprintln!("api: start-and-wait of a one-fetch task");
    let lat = start_and_wait(&server.addr, &echo_url).await?;
    let (st, runs) = c
        .json("GET", "/api/v1/runs?task=one-fetch&limit=1", None)
        .await?;
    let id = runs["items"][0]["id"]
        .as_str()
        .with_context(|| format!("a run to read ({st}): {runs}"))?
        .to_string();

    eprintln!("api: GET /api/v1/runs/:id on {CONNECTIONS} connections for {secs} s");
    let rate = get_rate(
        &server.addr,
        &format!("/api/v1/runs/{id}"),
        server.pid(),
        secs,
    )
    .await?;

    // an active run: its journal is read on every GET (only an ended run's summary is kept)
    let (st, waiting) = c
        .json(
            "POST",
            "/api/v1/tasks/ticker/runs",
            Some(&json!({ "input": { "n": 1 } })),
        )
        .await?;
    let waiting_id = waiting["id"]
        .as_str()
        .with_context(|| format!("a waiting run ({st}): {waiting}"))?
        .to_string();
    let (_, w) = c
        .json(
            "GET",
            &format!("/api/v1/runs/{waiting_id}?wait=10s&until=waiting"),
            None,
        )
        .await?;
    let journal_len = w["journal"]["last_seq"].as_u64().map_or(0, |s| s + 1);
    eprintln!("api: GET of a waiting run ({journal_len} records) for {secs} s");
    let active = get_rate(
        &server.addr,
        &format!("/api/v1/runs/{waiting_id}"),
        server.pid(),
        secs,
    )
    .await?;
    // `?wait=0s` takes the long-poll path, which always reads the run and its journal: what
    // every plain GET costs when something was committed since the last one
    eprintln!("api: GET ?wait=0s of the waiting run for {secs} s");
    let uncached = get_rate(
        &server.addr,
        &format!("/api/v1/runs/{waiting_id}?wait=0s"),
        server.pid(),
        secs,
    )
    .await?;

    if std::env::var("API_BENCH_ONLY").as_deref() == Ok("get") {
        // a quick look at the two GET rates alone (for profiling), no section written
        for (what, r) in [
            ("ended", &rate),
            ("active", &active),
            ("active, ?wait=0s", &uncached),
        ] {
            eprintln!(
                "api: GET of the {what} run: {:.0} req/s ({} errors); load generator {:.0}%, server {:.0}%",
                r.per_sec,
                r.errors,
                r.client_cpu * 100.0,
                r.server_cpu * 100.0
            );
        }
        return Ok(());
    }
    eprintln!("api: journal record → SSE client");
    let sse = sse_delivery(&server.addr, 300).await?;
    eprintln!("api: the first page of the runs list with {LIST_RUNS} runs stored");
    let pages = list_first_page(&server.addr).await?;
    drop(c);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_rss = rss_mib(server.pid())?;

    let p50 = percentile(&lat, 0.5);
    let deliver = median_f(&sse.append_to_client);
    let event_p50 = percentile(&sse.event_to_client, 0.5);
    let mut md = String::from("## Host API (`cargo xtask bench api`)\n\n");
    md.push_str(&format!("{}\n\n", machine_line()));
    md.push_str(&format!(
        "The real `sequential-ecosystem serve` (`bench` profile: release optimizations, no LTO) on \
         `127.0.0.1:0` with SQLite (`DATABASE_URL=sqlite:…`, fsync on) and its embedded worker; \
         the load generator is `sequential-bench`'s own keep-alive HTTP/1.1 client (raw tokio \
         sockets) on the same 2 cores. Command: `cargo xtask bench api` (`API_BENCH_SECS={secs}`).\n\n"
    ));
    md.push_str("| measure | measured | target | verdict |\n|---|---:|---|---|\n");
    md.push_str(&format!(
        "| `GET /api/v1/runs/:id` of a succeeded run, {CONNECTIONS} keep-alive connections, {:.1} s | {:.0} req/s ({} errors); load generator {:.0}% of a core, server {:.0}% | ≥ 20,000 req/s | {} |\n",
        rate.secs,
        rate.per_sec,
        rate.errors,
        rate.client_cpu * 100.0,
        rate.server_cpu * 100.0,
        verdict(rate.per_sec >= 20_000.0 && rate.errors == 0)
    ));
    md.push_str(&format!(
        "| the same, of a run waiting for an event ({} journal records), {:.1} s | {:.0} req/s ({} errors); load generator {:.0}% of a core, server {:.0}% | ≥ 20,000 req/s | {} |\n",
        journal_len,
        active.secs,
        active.per_sec,
        active.errors,
        active.client_cpu * 100.0,
        active.server_cpu * 100.0,
        verdict(active.per_sec >= 20_000.0 && active.errors == 0)
    ));
    md.push_str(&format!(
        "| the same with `?wait=0s` (the long-poll path: reads the run and its journal on every GET, as a plain GET does after any commit), {:.1} s | {:.0} req/s ({} errors); load generator {:.0}% of a core, server {:.0}% | (reference) | |\n",
        uncached.secs,
        uncached.per_sec,
        uncached.errors,
        uncached.client_cpu * 100.0,
        uncached.server_cpu * 100.0,
    ));
    md.push_str(&format!(
        "| start-and-wait of a 1-fetch task (`POST …/runs?wait=30s`, one connection, {} runs) | p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms | p50 ≤ 3 ms | {} |\n",
        lat.len(),
        p50,
        percentile(&lat, 0.9),
        percentile(&lat, 0.99),
        verdict(p50 <= 3.0)
    ));
    md.push_str(&format!(
        "| idle server RSS (2 s after start, before any request) | {idle_rss:.1} MiB | ≤ 30 MiB (Restate: 256 MiB idle here) | {} |\n",
        verdict(idle_rss <= 30.0)
    ));
    md.push_str(&format!(
        "| journal record → SSE client (`GET /runs/:id/events`, {} records) | p50 {deliver:.2} ms, p90 {:.2} ms | p50 ≤ 2 ms | {} |\n",
        sse.append_to_client.len(),
        sse.append_to_client
            .get(sse.append_to_client.len() * 9 / 10)
            .copied()
            .unwrap_or(f64::NAN),
        verdict(deliver <= 2.0)
    ));
    for (path, lat) in &pages {
        let p50 = percentile(lat, 0.5);
        md.push_str(&format!(
            "| console runs list, first page with {LIST_RUNS} runs stored: `GET {path}` (request to last byte, one keep-alive connection, 50 reads) | p50 {p50:.2} ms, p90 {:.2} ms | ≤ 150 ms | {} |\n",
            percentile(lat, 0.9),
            verdict(p50 <= 150.0)
        ));
    }
    md.push_str(
        "\nA plain `GET /runs/:id` on SQLite first reads the database's `PRAGMA data_version` (on \
         a connection of its own; it moves on any commit, by this server or another process): \
         when nothing was committed since the Run object was last rendered, those bytes are the \
         answer; otherwise the run and the journal after the last record the server has seen are \
         read (an ended run's journal summary is kept per revision) and the object rendered \
         anew — the `?wait=0s` row measures that path.\n",
    );
    md.push_str(&format!(
        "\nRecord → SSE client is the client's clock when the `data:` line arrives minus the \
         record's `at` (the server's clock, same host, in whole milliseconds, taken just before \
         the record's durable append): so it includes the append's commit and reads up to 1 ms \
         high. End to end — `POST /runs/:id/_event` sent → the record of the `ctx.emit` it caused \
         on the SSE client (event stored, run woken and driven, record appended, stream woken) — \
         p50 {event_p50:.2} ms, p90 {:.2} ms. Server RSS after the load: {after_rss:.1} MiB.\n",
        percentile(&sse.event_to_client, 0.9),
    ));
    print!("{md}");
    Ok(())
}
