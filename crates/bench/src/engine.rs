//! `sequential-bench engine [--peers DIR] [--storage BACKEND]…`: runs of N sequential `fetch()` steps against a
//! loopback echo server (the peers' Node `echo-server.mjs` in its own process when Node and the
//! script are found, else an in-process fallback).
//!
//! - Latency: start → result, one run at a time, in this process.
//! - Throughput: a steady stream. The engine is a worker in a process of its own
//!   (`sequential-bench engine-worker`, concurrency 64, its threads under SCHED_BATCH as
//!   `sequential-ecosystem worker` runs them); 64 load clients in this process keep 64
//!   runs in flight at all times (each starts a run, waits for its end, starts the next). After
//!   a warm-up, runs that end inside a fixed window are counted, and the CPU each process used
//!   in the window (engine, echo server, load clients) is divided by them.
//! - Ceiling: this machine's CPU per second (cores × 1,000 ms) ÷ the CPU all three processes
//!   spend per run.
//! - Storage (`--storage sqlite|folder|postgres`, repeatable; default sqlite and folder):
//!   PostgreSQL is measured in a fresh schema on `BENCH_DATABASE_URL` (default
//!   `postgres://postgres@127.0.0.1:5432/test`) with two worker processes, and adds the server's
//!   CPU per run, the workers' statements per run (the adaptor's counter) and the tables' size
//!   after `VACUUM`.
//! - Peers (`--peers DIR`): `DIR/restate/run.sh`, and `DIR/dbos-ts/run.sh` when PostgreSQL
//!   answers, with `STEP_URL` on the same echo server and `RUNS=1`; their rows are written beside
//!   ours. Without `--peers` the table says they were not run: no figure is typed in.
//!
//! Knobs (environment): `BENCH_WINDOW_SECS` (10), `BENCH_WARMUP_SECS` (3), `BENCH_LATENCY_RUNS`
//! (200).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sequential_adaptor::{
    NewTaskVersion, Page, RunFilter, RunId, RunStatus, StorageAdapter, TaskName, now_millis,
};
use sequential_tasker_engine::{Engine, EngineConfig, StartOptions, StopHandle};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::postgres::{PgSchema, postgres_cpu_seconds, postgres_section};
use crate::{machine_line, percentile};

const CODE: &str = "let last;\nfor (let i = 0; i < input.steps; i++) { last = fetch(`${input.url}/step?i=${i}`); }\n({ steps: input.steps, last: last.i })";

/// Runs kept in flight by the load clients, and the worker's concurrency.
pub(crate) const IN_FLIGHT: usize = 64;

/// Where the targets below come from.
const TARGETS_SOURCE: &str = "issue 10 of this repository's tracker (“Engine 2: correct under concurrency, and half the CPU per step”, its Speed table: SQLite with fsync on, this 2-core machine)";

fn env_secs(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(default)
}

// ---------------------------------------------------------------------------------------------
// the echo server

struct Server {
    url: String,
    /// The Node process, when the server runs in its own process.
    child: Option<std::process::Child>,
}

impl Server {
    fn describe(&self) -> &'static str {
        if self.child.is_some() {
            "the Node `echo-server.mjs` of the peers' folder, in its own process"
        } else {
            "the in-process fallback (Node or `echo-server.mjs` not found); its CPU is included in the load clients' column"
        }
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(std::process::Child::id)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn server(peers: Option<&Path>) -> Result<Server> {
    let script = peers.map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/peers"),
        Path::to_path_buf,
    );
    let script = script.join("common/echo-server.mjs");
    if script.is_file() {
        let port = free_port()?;
        if let Ok(mut child) = std::process::Command::new("node")
            .arg(&script)
            .arg(port.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            // wait for "echo server on …"
            let out = child.stdout.take().context("node stdout")?;
            let mut line = String::new();
            let n = std::io::BufReader::new(out)
                .read_line(&mut line)
                .unwrap_or(0);
            if n > 0 {
                return Ok(Server {
                    url: format!("http://127.0.0.1:{port}"),
                    child: Some(child),
                });
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(echo(sock));
        }
    });
    Ok(Server {
        url: format!("http://{addr}"),
        child: None,
    })
}

/// Answers `GET /step?i=N` with `{"i":N,"ok":true}` on one keep-alive connection.
pub(crate) async fn echo(mut sock: tokio::net::TcpStream) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let Ok(n) = sock.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            buf.drain(..end + 4);
            let i: String = head
                .split_once("i=")
                .map(|(_, r)| r.chars().take_while(char::is_ascii_digit).collect())
                .unwrap_or_default();
            let body = format!(
                "{{\"i\":{},\"ok\":true}}",
                if i.is_empty() { "0" } else { &i }
            );
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            if sock.write_all(resp.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// CPU and disk

/// User + system CPU of this process (every thread), in seconds.
pub(crate) fn own_cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

/// User + system CPU of process `pid` so far, in seconds (from `/proc/PID/stat`).
pub(crate) fn cpu_seconds_of(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the command name
    let ticks: u64 = fields
        .get(11..13)
        .context("a short /proc stat line")?
        .iter()
        .map(|f| f.parse::<u64>().unwrap_or(0))
        .sum();
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Ok(ticks as f64 / hz)
}

fn dir_size(p: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(p) else {
        return 0;
    };
    if meta.is_dir() {
        std::fs::read_dir(p)
            .map(|d| d.filter_map(|e| e.ok()).map(|e| dir_size(&e.path())).sum())
            .unwrap_or(0)
    } else {
        meta.len()
    }
}

// ---------------------------------------------------------------------------------------------
// storage

/// Where a backend's store lives: a path under the run's temp dir, or a PostgreSQL schema.
struct Location {
    /// The path, or the URL, as `engine-worker` takes it.
    at: String,
    /// For PostgreSQL: the store, to measure its tables, and the schema to drop.
    postgres: Option<(sequential_adaptor_postgres::PostgresStore, PgSchema)>,
    /// For SQLite and PostgreSQL: the store's end watcher (the folder store's clients poll).
    ends: Option<Ends>,
}

/// A store that wakes a caller at its own run's end (see `client`).
#[derive(Clone)]
enum Ends {
    Sqlite(sequential_adaptor_sqlite::SqliteStore),
    Postgres(sequential_adaptor_postgres::PostgresStore),
}

enum EndWatch {
    Sqlite(sequential_adaptor_sqlite::EndWatch),
    Postgres(sequential_adaptor_postgres::EndWatch),
}

impl Ends {
    fn watch(&self, run: RunId) -> EndWatch {
        match self {
            Ends::Sqlite(s) => EndWatch::Sqlite(s.watch_end(run)),
            Ends::Postgres(p) => EndWatch::Postgres(p.watch_end(run)),
        }
    }
}

impl EndWatch {
    async fn wait(&self, timeout: Duration) {
        match self {
            EndWatch::Sqlite(w) => w.wait(timeout).await,
            EndWatch::Postgres(w) => w.wait(timeout).await,
        }
    }
}

async fn open_at(backend: &str, at: &str) -> Result<Arc<dyn StorageAdapter>> {
    Ok(match backend {
        "sqlite" => Arc::new(sequential_adaptor_sqlite::SqliteStore::open(at)?),
        "postgres" => Arc::new(sequential_adaptor_postgres::PostgresStore::open(at).await?),
        _ => Arc::new(sequential_adaptor_folder::FolderStore::open(at)?),
    })
}

async fn open(backend: &str, dir: &Path) -> Result<(Arc<dyn StorageAdapter>, Location)> {
    if backend == "postgres" {
        let schema = PgSchema::new();
        let url = schema.url();
        let pg = sequential_adaptor_postgres::PostgresStore::open(&url)
            .await
            .with_context(|| {
                format!("opening PostgreSQL at {} (BENCH_DATABASE_URL)", schema.base)
            })?;
        return Ok((
            Arc::new(pg.clone()),
            Location {
                at: url,
                ends: Some(Ends::Postgres(pg.clone())),
                postgres: Some((pg, schema)),
            },
        ));
    }
    if backend == "sqlite" {
        let path = dir.join("engine.db");
        let at = path.to_str().context("a UTF-8 temp path")?.to_string();
        let store = sequential_adaptor_sqlite::SqliteStore::open(&at)?;
        return Ok((
            Arc::new(store.clone()),
            Location {
                at,
                postgres: None,
                ends: Some(Ends::Sqlite(store)),
            },
        ));
    }
    let at = dir
        .join("tasks")
        .to_str()
        .context("a UTF-8 temp path")?
        .to_string();
    Ok((
        open_at(backend, &at).await?,
        Location {
            at,
            postgres: None,
            ends: None,
        },
    ))
}

/// A store for `backend` (under `dir`, or in a fresh schema) holding the benchmark task.
async fn prepare(
    backend: &str,
    dir: &Path,
    task: &TaskName,
) -> Result<(Arc<dyn StorageAdapter>, Location)> {
    let (store, location) = open(backend, dir).await?;
    store
        .put_task_version(NewTaskVersion {
            task: task.clone(),
            code: CODE.into(),
            graph: None,
            config: json!({}),
        })
        .await?;
    Ok((store, location))
}

// ---------------------------------------------------------------------------------------------
// latency

async fn latency(
    engine: &Engine,
    task: &TaskName,
    url: &str,
    steps: u32,
    n: usize,
) -> Result<Vec<Duration>> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + 20 {
        let t = Instant::now();
        let run = engine
            .start(
                task,
                json!({"url": url, "steps": steps}),
                // as `sequential-ecosystem run` starts a run it drives: stored already claimed
                StartOptions {
                    claim: true,
                    ..StartOptions::default()
                },
            )
            .await?;
        let run = engine.run_until_settled(run.id, None).await?;
        if run.status != RunStatus::Succeeded {
            bail!("run ended {}: {:?}", run.status, run.error);
        }
        if i >= 20 {
            lat.push(t.elapsed());
        }
    }
    lat.sort();
    Ok(lat)
}

// ---------------------------------------------------------------------------------------------
// throughput: the worker process and the load clients

/// `sequential-bench engine-worker BACKEND PATH|URL CONCURRENCY`: a worker over that store,
/// CONCURRENCY runs at a time, until its stdin closes. Prints `ready` once it runs and, for
/// PostgreSQL, `round-trips N` (the adaptor's statement counter) when it stops.
pub async fn worker(args: &[String]) -> Result<()> {
    let [backend, at, concurrency] = args else {
        bail!("usage: sequential-bench engine-worker sqlite|folder|postgres PATH|URL CONCURRENCY");
    };
    let store = open_at(backend, at).await?;
    let engine = Engine::new(
        store,
        EngineConfig {
            concurrency: concurrency.parse().context("CONCURRENCY")?,
            ..EngineConfig::default()
        },
    )?;
    let stop = StopHandle::new();
    let asks = stop.clone();
    tokio::task::spawn_blocking(move || {
        let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
        asks.stop();
    });
    println!("ready");
    engine.work_until(&stop).await?;
    if backend == "postgres" {
        println!("round-trips {}", sequential_adaptor_postgres::round_trips());
    }
    Ok(())
}

/// What the steady stream measured.
pub(crate) struct Throughput {
    pub(crate) runs_per_s: f64,
    /// CPU per run in ms: engine process(es), echo server (`None`: in this process), load
    /// clients, and the PostgreSQL server's processes (`None`: no PostgreSQL).
    pub(crate) engine_ms: f64,
    pub(crate) server_ms: Option<f64>,
    pub(crate) clients_ms: f64,
    pub(crate) database_ms: Option<f64>,
    pub(crate) bytes_per_run: f64,
    /// PostgreSQL: the workers' round trips per run (the adaptor's statement counter).
    pub(crate) trips_per_run: Option<f64>,
    /// Where the machine's CPU time went in the window, all processes together (`None`: no
    /// `/proc/stat`).
    pub(crate) machine: Option<MachineCpu>,
}

/// Shares of the machine's CPU time in a window, from `/proc/stat` (all cores).
#[derive(Clone, Copy, Debug)]
pub(crate) struct MachineCpu {
    /// Idle, with nothing to run.
    pub(crate) idle: f64,
    /// Idle while a process waits for the disk (an fsync, say).
    pub(crate) iowait: f64,
    /// Taken by the hypervisor for other guests (`steal`): time this machine's processes
    /// could not have used.
    pub(crate) steal: f64,
}

/// The first line of `/proc/stat`: jiffies per state since boot, all cores (`None` elsewhere
/// than Linux).
fn machine_jiffies() -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    Some(
        line.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

impl MachineCpu {
    /// The shares between two readings of [`machine_jiffies`] (user, nice, system, idle,
    /// iowait, irq, softirq, steal, …; guest time is counted in user already).
    fn between(start: &[u64], end: &[u64]) -> Option<MachineCpu> {
        let delta: Vec<f64> = (0..8)
            .map(|i| end.get(i)?.checked_sub(*start.get(i)?).map(|d| d as f64))
            .collect::<Option<_>>()?;
        let total: f64 = delta.iter().sum();
        (total > 0.0).then(|| MachineCpu {
            idle: delta[3] / total,
            iowait: delta[4] / total,
            steal: delta[7] / total,
        })
    }
}

impl Throughput {
    fn cpu_ms(&self) -> f64 {
        self.engine_ms
            + self.server_ms.unwrap_or(0.0)
            + self.clients_ms
            + self.database_ms.unwrap_or(0.0)
    }

    /// This machine's CPU per second divided by the CPU a run costs, in runs per second.
    fn ceiling(&self) -> f64 {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        cores * 1000.0 / self.cpu_ms()
    }
}

/// One load client: starts a run, waits for its end (asking every `poll`, or — on SQLite and
/// PostgreSQL, `ends` — woken by the store's watch of the run's end and then reading it once),
/// starts the next, until `stop`.
#[allow(clippy::too_many_arguments)]
async fn client(
    store: Arc<dyn StorageAdapter>,
    engine: Engine,
    task: TaskName,
    url: String,
    poll: Duration,
    ends: Option<Ends>,
    stop: Arc<AtomicBool>,
    failed: Arc<AtomicUsize>,
) -> Result<()> {
    // sleep three quarters of the time a run took last (from its start returning to its end
    // being seen: the start's own commit is not part of it) before asking, then ask every
    // `poll`
    let mut expect = Duration::from_millis(20);
    while !stop.load(Ordering::Relaxed) {
        let run = engine
            .start(
                &task,
                json!({"url": url, "steps": 10}),
                StartOptions::default(),
            )
            .await?;
        if let Some(ends) = &ends {
            // the run's end wakes this client alone (a run cannot end before the watch is
            // made — it has ten fetches to do — and a missed wake costs a second)
            let watch = ends.watch(run.id);
            loop {
                watch.wait(Duration::from_secs(1)).await;
                let status = store.get_run(run.id).await?.status;
                if status.is_terminal() {
                    if status != RunStatus::Succeeded {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    break;
                }
            }
            continue;
        }
        let t = Instant::now();
        tokio::time::sleep(expect.mul_f64(0.75)).await;
        loop {
            let status = store.get_run(run.id).await?.status;
            if status.is_terminal() {
                if status != RunStatus::Succeeded {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                break;
            }
            tokio::time::sleep(poll).await;
        }
        expect = (expect * 7 + t.elapsed()) / 8;
    }
    Ok(())
}

/// Every run in the store, oldest first.
async fn all_runs(store: &dyn StorageAdapter) -> Result<Vec<sequential_adaptor::Run>> {
    let mut out = Vec::new();
    let mut after: Option<RunId> = None;
    loop {
        let mut page = Page::first(1000);
        page.after = after;
        let got = store.list_runs(&RunFilter::default(), page).await?;
        let n = got.runs.len();
        after = got.runs.last().map(|r| r.id);
        out.extend(got.runs);
        if n < 1000 {
            return Ok(out);
        }
    }
}

/// CPU seconds used so far, by process group, at a moment (milliseconds since the epoch).
struct Snapshot {
    at: i64,
    engines: f64,
    server: Option<f64>,
    own: f64,
    database: Option<f64>,
    machine: Option<Vec<u64>>,
}

/// Engine worker processes for `backend`: PostgreSQL is shared by two (its point is many
/// workers on one database), the file backends by one.
pub(crate) fn workers_for(backend: &str) -> usize {
    if backend == "postgres" { 2 } else { 1 }
}

async fn steady(backend: &'static str, server: &Server) -> Result<Throughput> {
    let warmup = Duration::from_secs(env_secs("BENCH_WARMUP_SECS", 3));
    let window = Duration::from_secs(env_secs("BENCH_WINDOW_SECS", 10).max(1));
    let task = TaskName::new("steps")?;
    let dir = tempfile::tempdir()?;
    let (store, mut location) = prepare(backend, dir.path(), &task).await?;
    // the clients only start runs; the engine processes drive them
    let starter = Engine::new(store.clone(), EngineConfig::default())?;
    let exe = std::env::current_exe().context("the benchmark's own path")?;
    let n_workers = workers_for(backend);
    let mut workers = Vec::new();
    for _ in 0..n_workers {
        let mut worker = std::process::Command::new(&exe)
            .arg("engine-worker")
            .arg(backend)
            .arg(&location.at)
            .arg((IN_FLIGHT / n_workers).to_string())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .context("starting the engine worker process")?;
        let mut out = std::io::BufReader::new(worker.stdout.take().context("worker stdout")?);
        let mut ready = String::new();
        out.read_line(&mut ready)?;
        if ready.trim() != "ready" {
            bail!("the engine worker did not start: {ready:?}");
        }
        workers.push((worker, out));
    }
    eprintln!(
        "{backend}: steady stream, {IN_FLIGHT} in flight, {n_workers} worker process(es): {}s warm-up, {}s window",
        warmup.as_secs(),
        window.as_secs()
    );
    // the folder store is asked every millisecond; SQLite's and PostgreSQL's clients are
    // woken by their store's watch of their run's end instead (see `client`)
    let poll = Duration::from_millis(1);
    let stop = Arc::new(AtomicBool::new(false));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..IN_FLIGHT {
        clients.push(tokio::spawn(client(
            store.clone(),
            starter.clone(),
            task.clone(),
            server.url.clone(),
            poll,
            location.ends.clone(),
            stop.clone(),
            failed.clone(),
        )));
    }
    tokio::time::sleep(warmup).await;
    let database = backend == "postgres";
    let snapshot = || -> Result<Snapshot> {
        let mut engines = 0.0;
        for (w, _) in &workers {
            engines += cpu_seconds_of(w.id())?;
        }
        Ok(Snapshot {
            at: now_millis(),
            engines,
            server: server.pid().map(cpu_seconds_of).transpose()?,
            own: own_cpu_seconds(),
            database: database.then(postgres_cpu_seconds),
            machine: machine_jiffies(),
        })
    };
    let start = snapshot()?;
    tokio::time::sleep(window).await;
    let end = snapshot()?;
    let (t0, t1) = (start.at, end.at);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await??;
    }
    let mut trips = 0u64;
    for (mut worker, out) in workers {
        drop(worker.stdin.take()); // the worker stops (no run is left in hand)
        for line in out.lines() {
            if let Some(n) = line?.strip_prefix("round-trips ") {
                trips += n.trim().parse::<u64>().unwrap_or(0);
            }
        }
        let status = worker.wait()?;
        if !status.success() {
            bail!("the engine worker exited with {status}");
        }
    }
    if failed.load(Ordering::Relaxed) > 0 {
        bail!(
            "{backend}: {} runs did not succeed",
            failed.load(Ordering::Relaxed)
        );
    }
    let runs = all_runs(store.as_ref()).await?;
    let in_window = runs
        .iter()
        .filter(|r| r.ended_at.is_some_and(|e| (t0..t1).contains(&e)))
        .count();
    if in_window == 0 {
        bail!("{backend}: no run ended inside the window");
    }
    let total = runs.len();
    drop(starter);
    drop(store);
    location.ends = None; // the SQLite store's last clone: it folds its log on closing
    let bytes = match &location.postgres {
        Some((pg, _)) => pg.vacuum_and_measure().await? as f64,
        None => {
            // SQLite folds its write-ahead log into the database when its last connection
            // closes (on the writer thread, after the store is dropped): measure once that
            // has happened
            let wal = Path::new(&location.at).with_extension("db-wal");
            let deadline = Instant::now() + Duration::from_secs(10);
            while wal.exists() && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            dir_size(dir.path()) as f64
        }
    };
    let seconds = (t1 - t0) as f64 / 1000.0;
    let per_run = |cpu: f64| cpu * 1000.0 / in_window as f64;
    Ok(Throughput {
        runs_per_s: in_window as f64 / seconds,
        engine_ms: per_run(end.engines - start.engines),
        server_ms: start.server.zip(end.server).map(|(a, b)| per_run(b - a)),
        clients_ms: per_run(end.own - start.own),
        database_ms: start
            .database
            .zip(end.database)
            .map(|(a, b)| per_run(b - a)),
        bytes_per_run: bytes / total as f64,
        trips_per_run: database.then(|| trips as f64 / total as f64),
        machine: start
            .machine
            .zip(end.machine)
            .and_then(|(a, b)| MachineCpu::between(&a, &b)),
    })
}

// ---------------------------------------------------------------------------------------------
// one backend

pub(crate) struct Row {
    backend: &'static str,
    pub(crate) p50_1: f64,
    p99_1: f64,
    p50_10: f64,
    p99_10: f64,
    pub(crate) tp: Throughput,
}

async fn measure(backend: &'static str, server: &Server) -> Result<Row> {
    let n = env_secs("BENCH_LATENCY_RUNS", 200).max(1) as usize;
    let task = TaskName::new("steps")?;
    let dir = tempfile::tempdir()?;
    let (store, _location) = prepare(backend, dir.path(), &task).await?;
    let engine = Engine::new(store, EngineConfig::default())?;
    eprintln!("{backend}: latency, {n} runs after 20 warm-up, one at a time");
    let l1 = latency(&engine, &task, &server.url, 1, n).await?;
    let l10 = latency(&engine, &task, &server.url, 10, n).await?;
    drop(engine);
    let tp = steady(backend, server).await?;
    Ok(Row {
        backend,
        p50_1: percentile(&l1, 0.5),
        p99_1: percentile(&l1, 0.99),
        p50_10: percentile(&l10, 0.5),
        p99_10: percentile(&l10, 0.99),
        tp,
    })
}

// ---------------------------------------------------------------------------------------------
// peers

/// The database `dbos-ts/run.sh` creates on its PostgreSQL server (dropped afterwards when
/// that is the benchmark's own server).
const DBOS_DATABASE: &str = "dbos_ts_bench";

/// One peer's figures, read from the JSON lines its `run.sh` leaves in `$WORK/results.jsonl`.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct PeerRow {
    pub(crate) peer: String,
    pub(crate) p50_1: Option<f64>,
    pub(crate) p50_10: Option<f64>,
    pub(crate) per_s_64: Option<f64>,
    /// CPU ms per workflow, per process, at 64 concurrent.
    pub(crate) cpu: Vec<(String, f64)>,
}

impl PeerRow {
    /// Its CPU per workflow as "process N ms, …".
    pub(crate) fn cpu_text(&self) -> String {
        self.cpu
            .iter()
            .map(|(n, v)| format!("{n} {v:.2} ms"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

fn peer_row(name: &str, results: &str) -> PeerRow {
    let mut row = PeerRow {
        peer: name.to_string(),
        ..PeerRow::default()
    };
    for line in results.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        match (v["mode"].as_str(), v["steps"].as_u64()) {
            (Some("latency"), Some(1)) => row.p50_1 = v["p50_ms"].as_f64(),
            (Some("latency"), Some(10)) => row.p50_10 = v["p50_ms"].as_f64(),
            (Some("throughput"), Some(10)) if v["concurrency"] == 64 => {
                row.per_s_64 = v["workflows_per_s"].as_f64();
                let done = v["completed"].as_f64().unwrap_or(0.0).max(1.0);
                if let Some(procs) = v["procs"].as_object() {
                    row.cpu = procs
                        .iter()
                        .filter_map(|(n, p)| {
                            Some((n.clone(), p["cpu_s"].as_f64()? * 1000.0 / done))
                        })
                        .collect();
                }
            }
            _ => {}
        }
    }
    row
}

/// Whether the PostgreSQL server at `url` (the DBOS peer's `PGURL`) answers.
fn postgres_reachable(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let hostport = rest.split(['/', '?']).next().unwrap_or_default();
    let Some(addr) = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .ok()
        .and_then(|mut a| a.next())
    else {
        return false;
    };
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
}

/// Runs the peers under `dir` beside `backends` against `server`; their rows, and a note per
/// peer not run. With PostgreSQL among `backends`, DBOS-TS runs on the same server (its
/// `PGURL` and postmaster, for its CPU); else on `PGURL` (default: the peers' `pg.sh` server).
fn run_peers(
    dir: &Path,
    server: &Server,
    backends: &[&str],
) -> Result<(Vec<PeerRow>, Vec<String>)> {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    let window = env_secs("BENCH_WINDOW_SECS", 10).max(1);
    let same_postgres = backends.contains(&"postgres");
    let pg_url = if same_postgres {
        crate::postgres::server_url()
    } else {
        std::env::var("PGURL").unwrap_or_else(|_| "postgresql://postgres@127.0.0.1:5499".into())
    };
    for &peer in peers_for(backends) {
        let work = format!("/tmp/peers/{peer}");
        let mut cmd = std::process::Command::new("bash");
        if peer == "dbos-ts" {
            if !postgres_reachable(&pg_url) {
                notes.push(format!(
                    "{peer}: not run (no PostgreSQL answers at PGURL; start one with `{}/common/pg.sh start`)",
                    dir.display()
                ));
                continue;
            }
            cmd.env("PGURL", &pg_url);
            if same_postgres && let Some(pid) = crate::postgres::postmaster_pid() {
                cmd.env("PG_PID", pid.to_string());
            }
        }
        let script = dir.join(peer).join("run.sh");
        eprintln!(
            "peers: $ RUNS=1 CONCS=64 TP_SECONDS={window} STEP_URL=… bash {}",
            script.display()
        );
        let status = cmd
            .arg(&script)
            .env("RUNS", "1")
            .env("CONCS", IN_FLIGHT.to_string())
            .env("TP_SECONDS", window.to_string())
            .env("WORK", &work)
            .env("STEP_URL", format!("{}/step?i=", server.url))
            .stdout(std::process::Stdio::null())
            .status()
            .with_context(|| format!("starting {}", script.display()))?;
        if !status.success() {
            notes.push(format!(
                "{peer}: `{}` failed with {status}",
                script.display()
            ));
            continue;
        }
        let results = std::fs::read_to_string(Path::new(&work).join("results.jsonl"))
            .with_context(|| format!("reading {work}/results.jsonl"))?;
        if peer == "dbos-ts" && same_postgres {
            crate::postgres::drop_database(DBOS_DATABASE);
        }
        rows.push(peer_row(peer, &results));
    }
    Ok((rows, notes))
}

// ---------------------------------------------------------------------------------------------
// the report

/// The benchmark's arguments: `--peers DIR`, and `--storage sqlite|folder|postgres` (repeatable;
/// default: sqlite and folder).
#[derive(Debug, PartialEq)]
struct Args {
    peers: Option<PathBuf>,
    backends: Vec<&'static str>,
}

fn parse_args(args: &[String]) -> Result<Args> {
    let usage = "usage: sequential-bench engine [--peers DIR] [--storage sqlite|folder|postgres]…";
    let mut out = Args {
        peers: None,
        backends: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it
            .next()
            .with_context(|| format!("{flag} needs a value; {usage}"))?;
        match flag.as_str() {
            "--peers" => out.peers = Some(PathBuf::from(value)),
            "--storage" => {
                let backend = ["sqlite", "folder", "postgres"]
                    .into_iter()
                    .find(|b| b == value)
                    .with_context(|| {
                        format!("--storage {value:?}: expected sqlite, folder or postgres")
                    })?;
                out.backends.push(backend);
            }
            other => bail!("unexpected argument {other:?}; {usage}"),
        }
    }
    if out.backends.is_empty() {
        out.backends = vec!["sqlite", "folder"];
    }
    if let Some(dir) = &out.peers {
        for peer in peers_for(&out.backends) {
            if !dir.join(peer).join("run.sh").is_file() {
                bail!(
                    "--peers {}: no {peer}/run.sh there; expected the peers folder (../shared/bench/peers in this workspace)",
                    dir.display()
                );
            }
        }
    }
    Ok(out)
}

/// The peers `--peers` runs beside `backends`: with PostgreSQL alone, DBOS-TS (on the same
/// server); else Restate and DBOS-TS.
fn peers_for(backends: &[&str]) -> &'static [&'static str] {
    if backends == ["postgres"] {
        &["dbos-ts"]
    } else {
        &["restate", "dbos-ts"]
    }
}

pub(crate) fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "missed" }
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "—".into(), |v| format!("{v:.2} ms"))
}

pub async fn run(args: &[String]) -> Result<()> {
    let Args { peers, backends } = parse_args(args)?;
    let server = server(peers.as_deref()).await?;
    let mut rows = Vec::new();
    for &backend in &backends {
        rows.push(measure(backend, &server).await?);
    }
    // the resume and memory cases run beside SQLite's row
    let resume = if rows.iter().any(|r| r.backend == "sqlite") {
        let n = env_secs("BENCH_LATENCY_RUNS", 200).clamp(1, 100) as usize;
        Some(crate::resume::measure(&server.url, n).await?)
    } else {
        None
    };
    let peer_results = match &peers {
        Some(dir) => Some(run_peers(dir, &server, &backends)?),
        None => None,
    };
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let invocation = match rows.as_slice() {
        [only] if only.backend == "postgres" => "cargo xtask bench engine --storage postgres",
        _ => "cargo xtask bench engine",
    };
    let mut md = format!("## Engine (`{invocation}`)\n\n");
    md.push_str(&format!("{}\n\n", machine_line()));
    md.push_str(&format!(
        "Workload: a script-mode task of N sequential `fetch()` calls to a loopback echo server \
         answering `{{\"i\":N,\"ok\":true}}`; the server that answered: {}. Latency: start → \
         result, one run at a time, {} runs after 20 warm-up. Throughput: a steady stream — the \
         engine is a worker in its own process (concurrency {IN_FLIGHT}; its threads under \
         SCHED_BATCH, as `sequential-ecosystem worker` runs them); {IN_FLIGHT} load \
         clients in the benchmark process keep {IN_FLIGHT} ten-step runs in flight at all times \
         (each starts a run, waits for its end — on SQLite woken by the store's end watch, \
         `SqliteStore::watch_end`, which looks at the database's data version once a millisecond \
         for all of them; the folder store's clients ask every millisecond — reads the run once \
         and starts the next); runs that end in a {} s window after a {} s warm-up are counted. CPU: user + system \
         time per ten-step run in that window, for each process. Ceiling: {cores} cores × 1,000 \
         ms of CPU per second ÷ the CPU of all three processes per run. Storage: bytes on disk \
         per finished ten-step run.\n\n",
        server.describe(),
        env_secs("BENCH_LATENCY_RUNS", 200).max(1),
        env_secs("BENCH_WINDOW_SECS", 10).max(1),
        env_secs("BENCH_WARMUP_SECS", 3),
    ));
    md.push_str(
        "| backend | 1-step p50 | 1-step p99 | 10-step p50 | 10-step p99 | 10-step runs/s (64 in flight) | ceiling runs/s | CPU per run: engine | CPU per run: echo server | CPU per run: load clients | storage per run |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &rows {
        md.push_str(&format!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {:.0} | {:.2} ms | {} | {:.2} ms | {:.1} KiB |\n",
            r.backend,
            r.p50_1,
            r.p99_1,
            r.p50_10,
            r.p99_10,
            r.tp.runs_per_s,
            r.tp.ceiling(),
            r.tp.engine_ms,
            r.tp
                .server_ms
                .map_or_else(|| "in the clients' figure".into(), |v| format!("{v:.2} ms")),
            r.tp.clients_ms,
            r.tp.bytes_per_run / 1024.0
        ));
    }
    md.push_str(
        "\nOn 2 cores the engine's own CPU per run is the figure to lower: the ceiling moves with it.\n",
    );
    for r in &rows {
        if let Some(m) = r.tp.machine {
            // what the measured processes used of the machine, the rest of its busy time going
            // to other processes (services on this host, the benchmark's own bookkeeping) and
            // the kernel's threads
            let ours = r.tp.runs_per_s / r.tp.ceiling();
            let others = (1.0 - m.idle - m.iowait - m.steal - ours).max(0.0);
            md.push_str(&format!(
                "In the {} window, of the machine's CPU time (`/proc/stat`, all cores): {:.1}% went to the measured processes, {:.1}% to other processes and the kernel's threads, {:.1}% was idle, {:.1}% idle waiting for the disk and {:.1}% taken by the hypervisor (steal).\n",
                r.backend,
                100.0 * ours,
                100.0 * others,
                100.0 * m.idle,
                100.0 * m.iowait,
                100.0 * m.steal
            ));
        }
    }
    md.push('\n');
    if let Some(pg) = rows.iter().find(|r| r.backend == "postgres") {
        let dbos = peer_results
            .as_ref()
            .and_then(|(rows, _)| rows.iter().find(|p| p.peer == "dbos-ts"));
        md.push_str(&postgres_section(pg, dbos));
    }
    if let Some(sqlite) = rows.iter().find(|r| r.backend == "sqlite") {
        let tp = &sqlite.tp;
        md.push_str(&format!(
            "Targets, from {TARGETS_SOURCE}; measured on SQLite:\n\n"
        ));
        md.push_str("| measure | target | measured | verdict |\n|---|---|---:|---|\n");
        let lines = [
            (
                "engine CPU per 10-step run (engine process only)",
                "≤ 1.2 ms".to_string(),
                format!("{:.2} ms", tp.engine_ms),
                verdict(tp.engine_ms <= 1.2),
            ),
            (
                "10-step runs/s, 64 in flight, steady stream",
                "≥ 1,000".to_string(),
                format!("{:.0}", tp.runs_per_s),
                verdict(tp.runs_per_s >= 1000.0),
            ),
            (
                "10-step runs/s against this machine's ceiling",
                format!("within 15% of {:.0}", tp.ceiling()),
                format!("{:.0}%", 100.0 * tp.runs_per_s / tp.ceiling()),
                verdict(tp.runs_per_s >= 0.85 * tp.ceiling()),
            ),
            (
                "1-step p50, one run at a time",
                "≤ 1.5 ms".to_string(),
                format!("{:.2} ms", sqlite.p50_1),
                verdict(sqlite.p50_1 <= 1.5),
            ),
            (
                "10-step p50, one run at a time",
                "≤ 5 ms".to_string(),
                format!("{:.2} ms", sqlite.p50_10),
                verdict(sqlite.p50_10 <= 5.0),
            ),
            (
                "storage per finished 10-step run",
                "≤ 4 KiB".to_string(),
                format!("{:.1} KiB", tp.bytes_per_run / 1024.0),
                verdict(tp.bytes_per_run <= 4096.0),
            ),
        ];
        for (what, target, got, v) in lines {
            md.push_str(&format!("| {what} | {target} | {got} | {v} |\n"));
        }
        if let Some(r) = &resume {
            let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
            md.push_str(&format!(
                "| 1,000 live runs paused at a fetch, module mode (worker RSS) | ≤ 100 MiB | {:.1} MiB | {} |\n",
                mib(r.paused[0]),
                verdict(mib(r.paused[0]) <= 100.0)
            ));
            md.push_str(&format!(
                "| idle worker RSS | ≤ 12 MiB | {:.1} MiB | {} |\n",
                mib(r.idle_rss),
                verdict(mib(r.idle_rss) <= 12.0)
            ));
        }
    }
    if let Some(r) = &resume {
        md.push('\n');
        md.push_str(&r.section());
    }
    md.push('\n');
    match peer_results {
        None => md.push_str(
            "Peers: not run in this invocation, so no peer figures are shown (`cargo xtask bench engine --peers DIR` runs them side by side, on the same echo server).\n",
        ),
        Some((peer_rows, notes)) => {
            md.push_str(
                "Peers, run in this invocation against the same echo server (`STEP_URL`), one run each (`RUNS=1`), 64 concurrent for the same window:\n\n",
            );
            md.push_str("| system | 1-step p50 | 10-step p50 | 10-step runs/s (64 concurrent) | CPU per 10-step run, per process |\n|---|---:|---:|---:|---|\n");
            for r in &rows {
                let server_cpu = r
                    .tp
                    .server_ms
                    .map_or(String::new(), |v| format!(", echo server {v:.2} ms"));
                md.push_str(&format!(
                    "| sequential-ecosystem ({}) | {:.2} ms | {:.2} ms | {:.0} | engine {:.2} ms{server_cpu}, load clients {:.2} ms |\n",
                    r.backend, r.p50_1, r.p50_10, r.tp.runs_per_s, r.tp.engine_ms, r.tp.clients_ms
                ));
            }
            for p in &peer_rows {
                let cpu = p.cpu_text();
                md.push_str(&format!(
                    "| {} | {} | {} | {} | {} |\n",
                    p.peer,
                    ms(p.p50_1),
                    ms(p.p50_10),
                    p.per_s_64.map_or_else(|| "—".into(), |v| format!("{v:.0}")),
                    if cpu.is_empty() { "—".into() } else { cpu }
                ));
            }
            for n in notes {
                md.push_str(&format!("\n- {n}"));
            }
            md.push('\n');
        }
    }
    print!("{md}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_shares_come_from_the_differences_of_two_proc_stat_readings() {
        // user nice system idle iowait irq softirq steal guest
        let start = [100, 0, 50, 1000, 10, 0, 5, 20, 7];
        let end = [700, 0, 250, 1100, 30, 0, 25, 70, 9];
        let m = MachineCpu::between(&start, &end).unwrap();
        // 600 + 200 + 100 + 20 + 20 + 50 = 990 jiffies in the window
        assert!((m.idle - 100.0 / 990.0).abs() < 1e-9, "{m:?}");
        assert!((m.iowait - 20.0 / 990.0).abs() < 1e-9, "{m:?}");
        assert!((m.steal - 50.0 / 990.0).abs() < 1e-9, "{m:?}");
        assert!(
            MachineCpu::between(&start, &start).is_none(),
            "an empty window"
        );
        assert!(
            MachineCpu::between(&end, &start).is_none(),
            "counters never go back"
        );
        assert!(
            MachineCpu::between(&start[..4], &end[..4]).is_none(),
            "a short line"
        );
        if cfg!(target_os = "linux") {
            let live = machine_jiffies().expect("/proc/stat on Linux");
            assert!(live.len() >= 8, "{live:?}");
        }
    }

    #[test]
    fn peer_rows_come_from_the_results_a_run_leaves() {
        let results = r#"{"peer":"restate","mode":"idle_mem","m":{}}
{"peer":"restate","mode":"latency","kind":"service","steps":1,"p50_ms":4.5}
{"peer":"restate","mode":"latency","kind":"service","steps":10,"p50_ms":17.7}
{"peer":"restate","mode":"throughput","steps":10,"concurrency":64,"completed":200,"workflows_per_s":241.0,"procs":{"server":{"cpu_s":1.0},"service":{"cpu_s":2.0},"wall_s":20}}
"#;
        let row = peer_row("restate", results);
        assert_eq!(row.p50_1, Some(4.5));
        assert_eq!(row.p50_10, Some(17.7));
        assert_eq!(row.per_s_64, Some(241.0));
        assert_eq!(
            row.cpu,
            vec![("server".to_string(), 5.0), ("service".to_string(), 10.0)]
        );
    }

    #[test]
    fn a_missing_peers_folder_is_a_clear_error() {
        let err = parse_args(&["--peers".into(), "/nonexistent/peers".into()]).unwrap_err();
        assert!(err.to_string().contains("no restate/run.sh"), "{err}");
        // beside PostgreSQL alone, the peer run is DBOS-TS's, on the same server
        let err = parse_args(&[
            "--storage".into(),
            "postgres".into(),
            "--peers".into(),
            "/nonexistent/peers".into(),
        ])
        .unwrap_err();
        assert!(err.to_string().contains("no dbos-ts/run.sh"), "{err}");
        let peers = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/bench/peers");
        if peers.join("dbos-ts/run.sh").is_file() {
            let args = ["--peers", peers.to_str().unwrap(), "--storage", "postgres"];
            let parsed = parse_args(&args.map(String::from)).unwrap();
            assert_eq!(parsed.backends, vec!["postgres"]);
            assert_eq!(peers_for(&parsed.backends), ["dbos-ts"]);
        }
        assert_eq!(
            parse_args(&[]).unwrap(),
            Args {
                peers: None,
                backends: vec!["sqlite", "folder"]
            }
        );
        assert_eq!(
            parse_args(&["--storage".into(), "postgres".into()])
                .unwrap()
                .backends,
            vec!["postgres"]
        );
        let err = parse_args(&["--storage".into(), "mysql".into()]).unwrap_err();
        assert!(
            err.to_string().contains("sqlite, folder or postgres"),
            "{err}"
        );
    }
}
