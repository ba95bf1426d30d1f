//! `sequential-bench engine`: runs of N sequential `fetch()` steps against a loopback HTTP
//! server (the peers' `echo-server.mjs` under Node when available, else an in-process one).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use sequential_adaptor::{NewTaskVersion, RunStatus, StorageAdapter, TaskName};
use sequential_tasker_engine::{Engine, EngineConfig, StartOptions};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::{machine_line, percentile};

const CODE: &str = "let last;\nfor (let i = 0; i < input.steps; i++) { last = fetch(`${input.url}/step?i=${i}`); }\n({ steps: input.steps, last: last.i })";

struct Server {
    url: String,
    kind: &'static str,
    child: Option<std::process::Child>,
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

async fn server() -> Result<Server> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/bench/peers/common/echo-server.mjs");
    if script.is_file() {
        let port = free_port()?;
        if let Ok(mut child) = std::process::Command::new("node")
            .arg(&script)
            .arg(port.to_string())
            .stdout(std::process::Stdio::piped())
            .spawn()
        {
            // wait for "echo server on …"
            let mut out = child.stdout.take().context("node stdout")?;
            let mut buf = [0u8; 64];
            let n = std::io::Read::read(&mut out, &mut buf).unwrap_or(0);
            if n > 0 {
                return Ok(Server {
                    url: format!("http://127.0.0.1:{port}"),
                    kind: "Node echo-server.mjs (separate process)",
                    child: Some(child),
                });
            }
            let _ = child.kill();
        }
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
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
                        let i = head
                            .split_once("i=")
                            .map(|(_, r)| {
                                r.chars()
                                    .take_while(char::is_ascii_digit)
                                    .collect::<String>()
                            })
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
            });
        }
    });
    Ok(Server {
        url: format!("http://{addr}"),
        kind: "in-process (Node not found)",
        child: None,
    })
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
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

struct Row {
    backend: &'static str,
    p50_1: f64,
    p99_1: f64,
    p50_10: f64,
    p99_10: f64,
    throughput: f64,
    cpu_ms: f64,
    bytes_per_run: f64,
}

fn open(backend: &str, dir: &Path) -> Result<(Arc<dyn StorageAdapter>, PathBuf)> {
    Ok(match backend {
        "sqlite" => {
            let p = dir.join("engine.db");
            (
                Arc::new(sequential_adaptor_sqlite::SqliteStore::open(&p)?),
                dir.to_path_buf(),
            )
        }
        _ => {
            let p = dir.join("tasks");
            (
                Arc::new(sequential_adaptor_folder::FolderStore::open(&p)?),
                p,
            )
        }
    })
}

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
                StartOptions::default(),
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

/// A fresh store under `dir` holding the benchmark task, and an engine driving 64 runs at once
/// with no live-session cache (every resume is a replay, the conservative case).
async fn setup(
    backend: &str,
    dir: &Path,
    task: &TaskName,
) -> Result<(Arc<dyn StorageAdapter>, PathBuf, Engine)> {
    let (store, data_path) = open(backend, dir)?;
    store
        .put_task_version(NewTaskVersion {
            task: task.clone(),
            code: CODE.into(),
            graph: None,
            config: json!({}),
        })
        .await?;
    let config = EngineConfig {
        concurrency: 64,
        max_hot_sessions: 0,
        ..EngineConfig::default()
    };
    let engine = Engine::new(store.clone(), config)?;
    Ok((store, data_path, engine))
}

async fn measure(backend: &'static str, url: &str) -> Result<Row> {
    let task = TaskName::new("steps")?;
    let dir = tempfile::tempdir()?;
    let (store, _, engine) = setup(backend, dir.path(), &task).await?;
    eprintln!("{backend}: latency");
    let l1 = latency(&engine, &task, url, 1, 200).await?;
    let l10 = latency(&engine, &task, url, 10, 200).await?;

    // throughput and storage on a fresh store: create R queued runs, then drive them 64 at a time
    drop(engine);
    drop(store);
    let dir2 = tempfile::tempdir()?;
    let (store, data_path2, engine) = setup(backend, dir2.path(), &task).await?;
    let runs = 1_000;
    eprintln!("{backend}: throughput over {runs} ten-step runs");
    let t0 = Instant::now();
    let cpu0 = cpu_seconds();
    let mut creators = Vec::new();
    for _ in 0..8 {
        let e = engine.clone();
        let t = task.clone();
        let u = url.to_string();
        creators.push(tokio::spawn(async move {
            for _ in 0..runs / 8 {
                e.start(&t, json!({"url": u, "steps": 10}), StartOptions::default())
                    .await?;
            }
            anyhow::Ok(())
        }));
    }
    for c in creators {
        c.await??;
    }
    let mut done = 0;
    loop {
        let n = engine.work_once().await?;
        if n == 0 {
            break;
        }
        done += n;
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    if done != runs {
        bail!("{backend}: drove {done} runs, expected {runs}");
    }
    drop(engine);
    drop(store);
    // SQLite folds its write-ahead log into the database when its last connection closes
    // (on the writer thread, after the store is dropped): measure once that has happened
    let wal = data_path2.join("engine.db-wal");
    let deadline = Instant::now() + Duration::from_secs(10);
    while wal.exists() && Instant::now() < deadline {
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
    let bytes = dir_size(&data_path2) as f64 / runs as f64;
    Ok(Row {
        backend,
        p50_1: percentile(&l1, 0.5),
        p99_1: percentile(&l1, 0.99),
        p50_10: percentile(&l10, 0.5),
        p99_10: percentile(&l10, 0.99),
        throughput: runs as f64 / elapsed,
        cpu_ms: cpu * 1000.0 / runs as f64,
        bytes_per_run: bytes,
    })
}

pub async fn run() -> Result<()> {
    let server = server().await?;
    let mut rows = Vec::new();
    for backend in ["sqlite", "folder"] {
        rows.push(measure(backend, &server.url).await?);
    }
    println!("## Engine (`cargo xtask bench engine`)\n");
    println!("{}\n", machine_line());
    println!(
        "Workload: a script-mode task of N sequential `fetch()` calls to a loopback HTTP server \
         ({}) answering `{{\"i\":N,\"ok\":true}}`. Latency: start → result, one run at a time, \
         200 runs after 20 warm-up. Throughput: 1,000 ten-step runs created by 8 concurrent \
         clients and driven 64 at a time by one engine in one process, creation included. CPU: \
         user + system time of the benchmark process (the engine, storage and HTTP client; the \
         server runs in its own process) per ten-step run. Storage: bytes on disk per ten-step run.\n",
        server.kind
    );
    println!(
        "| backend | 1-step p50 | 1-step p99 | 10-step p50 | 10-step p99 | 10-step runs/s (64 concurrent) | CPU per 10-step run | storage per 10-step run |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.2} ms | {:.2} ms | {:.2} ms | {:.2} ms | {:.0} | {:.2} ms | {:.1} KiB |",
            r.backend,
            r.p50_1,
            r.p99_1,
            r.p50_10,
            r.p99_10,
            r.throughput,
            r.cpu_ms,
            r.bytes_per_run / 1024.0
        );
    }
    println!(
        "\nTargets (the design map, ../shared/design/ARCHITECTURE.md §9): 1-step p50 ≤ 2 ms, 10-step p50 ≤ 8 ms (folder and SQLite); \
         ≥ 2,500 ten-step runs/s at 64 concurrent on SQLite; engine CPU ≤ 1 ms per ten-step run; \
         ≤ 4 KiB of storage per ten-step run. Peers measured on this machine: Restate 10-step p50 \
         17.7 ms and 241 ten-step workflows/s at 64 concurrent; DBOS-TS + PostgreSQL 1-step p50 5.3 ms."
    );
    Ok(())
}
