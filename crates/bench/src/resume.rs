//! The engine benchmark's resume and memory cases, on SQLite:
//!
//! - Resume of a run waiting for an event after ten fetches: *hot* (the engine that parked it
//!   still holds its live session) and *cold* (another engine, as after a restart or on another
//!   worker: the session is rebuilt by replaying the journal). The cold case asserts that it
//!   really replayed: the resuming engine made no hot resume.
//! - The RSS of an idle `engine-worker` process, and of one holding 1,000 live runs paused at a
//!   fetch (a loopback server that accepts the requests and never answers), in module mode
//!   (`await fetch`) and in script mode (a blocking `fetch`).
//! - The RSS of one holding 10,000 runs waiting for an event (each has stored its wait and left
//!   the worker; the design card's target, ≤ 60 MiB).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sequential_adaptor::{
    NewTaskVersion, Page, RunFilter, RunStatus, StorageAdapter, TaskName, now_millis,
};
use sequential_tasker_engine::{Engine, EngineConfig, StartOptions};
use serde_json::json;
use tokio::io::AsyncReadExt;

use crate::percentile;

const WAITING: &str = "export default async function (input, ctx) {\n  let last;\n  for (let i = 0; i < 10; i++) { last = await (await fetch(`${input.url}/step?i=${i}`)).json(); }\n  const go = await ctx.waitForEvent('go');\n  return { last: last.i, go };\n}";

const PAUSED_MODULE: &str = "export default async function (input) {\n  const r = await fetch(`${input.url}/hang`);\n  return r.status;\n}";

const PAUSED_SCRIPT: &str = "const r = fetch(`${input.url}/hang`);\nr.status";

const WAITING_FOR_EVENT: &str =
    "export default async function (input, ctx) {\n  return await ctx.waitForEvent('go');\n}";

/// Runs waiting for an event in the memory case.
const WAITERS: usize = 10_000;

/// Live runs held for the memory case.
const PAUSED: usize = 1000;

/// How long after the last paused run reached its fetch the RSS is read.
const SETTLE: Duration = Duration::from_secs(3);

/// What the resume and memory cases measured.
pub(crate) struct Report {
    pub(crate) runs: usize,
    pub(crate) hot: Vec<Duration>,
    pub(crate) cold: Vec<Duration>,
    pub(crate) idle_rss: u64,
    /// RSS with [`PAUSED`] runs paused at a fetch: module mode, script mode.
    pub(crate) paused: [u64; 2],
    /// RSS with [`WAITERS`] runs waiting for an event.
    pub(crate) waiting: u64,
}

impl Report {
    /// Markdown: the table and the targets it answers.
    pub(crate) fn section(&self) -> String {
        let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
        let mut md = format!(
            "Resume and memory (SQLite): a module task that makes ten fetches, then waits for an event; the event is sent and the run resumed {} times each way, one at a time. *Hot*: the engine that parked the run still holds its live session. *Cold*: another engine resumes it (as after a restart, or on another worker): the session is rebuilt by replaying the ten recorded fetches from the journal (checked: that engine made no hot resume). Memory: RSS of an `engine-worker` process (concurrency {PAUSED}) when idle, and holding {PAUSED} live runs paused at a fetch to a loopback server that never answers, read {} s after the last of them reached its fetch (a run whose calls are out longer than the engine's `park_after`, 200 ms, holds its journal instead of a JavaScript session; its session is rebuilt by replay when the fetch returns); and, with the engine's default concurrency ({}, as `sequential-ecosystem worker` runs), holding {WAITERS} runs waiting for an event, read {} s after the last of them was stored as waiting (such a run is in storage, not in the worker, which keeps only the live sessions of the {} most recently parked, for hot resumes).\n\n",
            self.runs,
            SETTLE.as_secs(),
            EngineConfig::default().concurrency,
            SETTLE.as_secs(),
            EngineConfig::default().max_hot_sessions
        );
        md.push_str("| measure | p50 | p99 |\n|---|---:|---:|\n");
        for (what, d) in [
            (
                "hot resume of a waiting run (event sent → run ended)",
                &self.hot,
            ),
            (
                "cold resume of a waiting run (event sent → ten fetches replayed → run ended)",
                &self.cold,
            ),
        ] {
            md.push_str(&format!(
                "| {what} | {:.2} ms | {:.2} ms |\n",
                percentile(d, 0.5),
                percentile(d, 0.99)
            ));
        }
        md.push_str("\n| memory | RSS | target | verdict |\n|---|---:|---|---|\n");
        let [module, script] = self.paused;
        md.push_str(&format!(
            "| idle worker | {:.1} MiB | ≤ 12 MiB | {} |\n",
            mib(self.idle_rss),
            crate::engine::verdict(mib(self.idle_rss) <= 12.0)
        ));
        md.push_str(&format!(
            "| {PAUSED} live runs paused at a fetch, module mode | {:.1} MiB ({:.0} KiB per run over idle) | ≤ 100 MiB | {} |\n",
            mib(module),
            module.saturating_sub(self.idle_rss) as f64 / 1024.0 / PAUSED as f64,
            crate::engine::verdict(mib(module) <= 100.0)
        ));
        md.push_str(&format!(
            "| {PAUSED} live runs paused at a fetch, script mode | {:.1} MiB ({:.0} KiB per run over idle) | measured and reported | — |\n",
            mib(script),
            script.saturating_sub(self.idle_rss) as f64 / 1024.0 / PAUSED as f64,
        ));
        md.push_str(&format!(
            "| {WAITERS} runs waiting for an event (default concurrency) | {:.1} MiB | ≤ 60 MiB (design card, §9) | {} |\n",
            mib(self.waiting),
            crate::engine::verdict(mib(self.waiting) <= 60.0)
        ));
        md
    }
}

async fn task(store: &Arc<dyn StorageAdapter>, name: &str, code: &str) -> Result<TaskName> {
    let task = TaskName::new(name)?;
    store
        .put_task_version(NewTaskVersion {
            task: task.clone(),
            code: code.into(),
            graph: None,
            config: json!({}),
        })
        .await?;
    Ok(task)
}

/// Hot and cold resumes, `n` of each after a few warm-up ones.
async fn resumes(dir: &Path, url: &str, n: usize) -> Result<(Vec<Duration>, Vec<Duration>)> {
    let store: Arc<dyn StorageAdapter> = Arc::new(sequential_adaptor_sqlite::SqliteStore::open(
        dir.join("resume.db"),
    )?);
    let task = task(&store, "waits", WAITING).await?;
    let parker = Engine::new(store.clone(), EngineConfig::default())?;
    let resumer = Engine::new(store.clone(), EngineConfig::default())?;
    let (mut hot, mut cold) = (Vec::new(), Vec::new());
    for i in 0..n + 10 {
        for cold_resume in [false, true] {
            let run = parker
                .start(&task, json!({ "url": url }), StartOptions::default())
                .await?;
            let waiting = parker.run_until_settled(run.id, None).await?;
            if waiting.status != RunStatus::Waiting {
                bail!(
                    "the resume case's run ended {}: {:?}",
                    waiting.status,
                    waiting.error
                );
            }
            let engine = if cold_resume { &resumer } else { &parker };
            let t = Instant::now();
            store.send_signal(run.id, "go", json!(i)).await?;
            let done = engine
                .run_until_settled(run.id, Some(now_millis() + 60_000))
                .await?;
            let took = t.elapsed();
            if done.status != RunStatus::Succeeded {
                bail!("the resumed run ended {}: {:?}", done.status, done.error);
            }
            if i >= 10 {
                if cold_resume { &mut cold } else { &mut hot }.push(took);
            }
        }
    }
    if resumer.hot_resumes() != 0 {
        bail!("the cold resumes were not cold: the resuming engine made hot resumes");
    }
    if parker.hot_resumes() == 0 {
        bail!("the hot resumes were not hot: the parking engine made no hot resume");
    }
    hot.sort();
    cold.sort();
    Ok((hot, cold))
}

/// RSS of process `pid` in bytes (`VmRSS` of `/proc/PID/status`).
pub(crate) fn rss_of(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no VmRSS line")?;
    Ok(kib * 1024)
}

/// A loopback server that reads each request and never answers; counts the requests.
async fn hanging_server() -> Result<(String, Arc<AtomicUsize>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let seen = Arc::new(AtomicUsize::new(0));
    let count = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let count = count.clone();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                let mut counted = false;
                while let Ok(n) = sock.read(&mut chunk).await {
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if !counted && buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        counted = true;
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    Ok((url, seen))
}

/// What the runs of a memory case are held by.
#[derive(Clone, Copy)]
enum Held {
    /// A fetch to a loopback server that never answers (live runs).
    Fetch,
    /// An event that never comes (runs stored as waiting).
    Event,
}

/// Starts a worker (`concurrency` runs at a time) on a fresh store, reads its idle RSS, then
/// starts `runs` runs of `code` and reads its RSS once all of them are held as `held` says.
/// Returns (idle, held).
async fn held_rss(
    dir: &Path,
    name: &str,
    code: &str,
    (runs, concurrency): (usize, usize),
    held: Held,
) -> Result<(u64, u64)> {
    let path = dir.join(format!("{name}.db"));
    let store: Arc<dyn StorageAdapter> =
        Arc::new(sequential_adaptor_sqlite::SqliteStore::open(&path)?);
    let task = task(&store, name, code).await?;
    let (url, seen) = hanging_server().await?;
    let exe = std::env::current_exe().context("the benchmark's own path")?;
    let mut worker = std::process::Command::new(&exe)
        .arg("engine-worker")
        .arg("sqlite")
        .arg(&path)
        .arg(concurrency.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the engine worker process")?;
    let result = async {
        let mut out = std::io::BufReader::new(worker.stdout.take().context("worker stdout")?);
        let mut ready = String::new();
        std::io::BufRead::read_line(&mut out, &mut ready)?;
        if ready.trim() != "ready" {
            bail!("the engine worker did not start: {ready:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let idle = rss_of(worker.id())?;
        let starter = Engine::new(store.clone(), EngineConfig::default())?;
        // a few starters at once, as clients would: one at a time, 10,000 starts take a while
        let mut starts = tokio::task::JoinSet::new();
        for part in 0..8 {
            let (starter, task, url) = (starter.clone(), task.clone(), url.clone());
            starts.spawn(async move {
                for _ in (part..runs).step_by(8) {
                    starter
                        .start(&task, json!({ "url": url }), StartOptions::default())
                        .await?;
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = starts.join_next().await {
            done??;
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let reached = match held {
                Held::Fetch => seen.load(Ordering::Relaxed),
                Held::Event => {
                    let filter = RunFilter {
                        task: Some(task.clone()),
                        statuses: vec![RunStatus::Waiting],
                    };
                    store
                        .list_runs(&filter, Page::first(runs))
                        .await?
                        .runs
                        .len()
                }
            };
            if reached >= runs {
                break;
            }
            if Instant::now() > deadline {
                bail!("{name}: only {reached} of {runs} runs were held in 120 s");
            }
            tokio::time::sleep(Duration::from_millis(match held {
                Held::Fetch => 50,
                Held::Event => 500,
            }))
            .await;
        }
        // held runs stay held: read the RSS once the worker has settled into holding them
        tokio::time::sleep(SETTLE).await;
        Ok((idle, rss_of(worker.id())?))
    }
    .await;
    // the runs wait forever: the worker is killed, not asked to drain
    let _ = worker.kill();
    let _ = worker.wait();
    result
}

/// Runs the resume and memory cases against the echo server at `url`.
pub(crate) async fn measure(url: &str, n: usize) -> Result<Report> {
    let dir = tempfile::tempdir()?;
    eprintln!("resume: {n} hot and {n} cold resumes of a waiting ten-fetch run");
    let (hot, cold) = resumes(dir.path(), url, n).await?;
    eprintln!("memory: an idle worker, then {PAUSED} runs paused at a fetch (module, script)");
    let (idle, module) = held_rss(
        dir.path(),
        "paused-module",
        PAUSED_MODULE,
        (PAUSED, PAUSED),
        Held::Fetch,
    )
    .await?;
    let (_, script) = held_rss(
        dir.path(),
        "paused-script",
        PAUSED_SCRIPT,
        (PAUSED, PAUSED),
        Held::Fetch,
    )
    .await?;
    eprintln!("memory: {WAITERS} runs waiting for an event");
    let (_, waiting) = held_rss(
        dir.path(),
        "waiting-event",
        WAITING_FOR_EVENT,
        (WAITERS, EngineConfig::default().concurrency),
        Held::Event,
    )
    .await?;
    Ok(Report {
        runs: n,
        hot,
        cold,
        idle_rss: idle,
        paused: [module, script],
        waiting,
    })
}
