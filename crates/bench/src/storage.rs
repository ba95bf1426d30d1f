//! `sequential-bench storage`: append throughput and latency, and claim latency, for the folder
//! and SQLite backends with fsync on.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Result, bail};
use sequential_adaptor::{
    ClaimRequest, Fence, JournalRecord, NewRun, NewTaskVersion, RunId, StorageAdapter, TaskName,
    now_millis,
};
use serde_json::json;

use crate::{machine_line, percentile};

struct Row {
    backend: &'static str,
    single_per_s: f64,
    single_p50_ms: f64,
    single_p99_ms: f64,
    concurrent_per_s: f64,
    claim_p50_ms: f64,
}

pub async fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut rows = Vec::new();
    let folder: Arc<dyn StorageAdapter> = Arc::new(sequential_adaptor_folder::FolderStore::open(
        dir.path().join("tasks"),
    )?);
    rows.push(measure("folder", folder).await?);
    let sqlite: Arc<dyn StorageAdapter> = Arc::new(sequential_adaptor_sqlite::SqliteStore::open(
        dir.path().join("bench.db"),
    )?);
    rows.push(measure("sqlite", sqlite).await?);

    println!("## Storage (`cargo xtask bench storage`)\n");
    println!("{}\n", machine_line());
    println!(
        "Each append is one journal record (~100 bytes) and returns only once it is durable (fsync on). \
         *1 run*: one writer appending one record at a time. *64 runs*: 64 writers, each appending \
         to its own run, one record at a time (group commit shares fsyncs). *claim*: one `claim` of \
         one run out of 1,000 queued runs.\n"
    );
    println!(
        "| backend | 1 run: appends/s | 1 run: p50 | 1 run: p99 | 64 runs: records/s | claim p50 | targets |"
    );
    println!("|---|---:|---:|---:|---:|---:|---|");
    for r in rows {
        let target = match r.backend {
            "sqlite" => "≥ 20,000 rec/s at 64 writers; append p50 ≤ 0.5 ms",
            _ => "≥ 5,000 rec/s at 64 writers",
        };
        println!(
            "| {} | {:.0} | {:.3} ms | {:.3} ms | {:.0} | {:.3} ms | {} |",
            r.backend,
            r.single_per_s,
            r.single_p50_ms,
            r.single_p99_ms,
            r.concurrent_per_s,
            r.claim_p50_ms,
            target
        );
    }
    Ok(())
}

fn record(run: RunId, seq: u64) -> JournalRecord {
    JournalRecord {
        run,
        seq,
        kind: "call.completed".into(),
        at: now_millis(),
        data: json!({"kind": "fetch", "status": 200, "body": {"i": seq, "ok": true}}),
    }
}

async fn new_run(store: &dyn StorageAdapter, version: u32) -> Result<RunId> {
    let run = store
        .create_run(NewRun::new(TaskName::new("bench")?, version, json!({})))
        .await?
        .into_run();
    Ok(run.id)
}

async fn measure(backend: &'static str, store: Arc<dyn StorageAdapter>) -> Result<Row> {
    eprintln!("{backend}: preparing");
    let version = store
        .put_task_version(NewTaskVersion {
            task: TaskName::new("bench")?,
            code: "1".into(),
            graph: None,
            config: json!({}),
        })
        .await?
        .version
        .version;

    // one run, one writer
    let run = new_run(&*store, version).await?;
    let n = 2_000u64;
    let mut lat = Vec::with_capacity(n as usize);
    let t0 = Instant::now();
    for seq in 0..n {
        let t = Instant::now();
        store.append(run, &[record(run, seq)], Fence::None).await?;
        lat.push(t.elapsed());
    }
    let single_per_s = n as f64 / t0.elapsed().as_secs_f64();
    lat.sort();
    eprintln!("{backend}: 1 run {single_per_s:.0}/s");

    // 64 runs, 64 writers
    let per_writer = 200u64;
    let mut runs = Vec::new();
    for _ in 0..64 {
        runs.push(new_run(&*store, version).await?);
    }
    let t0 = Instant::now();
    let mut handles = Vec::new();
    for run in runs {
        let s = store.clone();
        handles.push(tokio::spawn(async move {
            for seq in 0..per_writer {
                s.append(run, &[record(run, seq)], Fence::None).await?;
            }
            anyhow::Ok(())
        }));
    }
    for h in handles {
        h.await??;
    }
    let concurrent_per_s = (64 * per_writer) as f64 / t0.elapsed().as_secs_f64();
    eprintln!("{backend}: 64 runs {concurrent_per_s:.0}/s");

    // claim latency over 1,000 queued runs
    let mut creators = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        creators.push(tokio::spawn(async move {
            for _ in 0..125 {
                new_run(&*s, version).await?;
            }
            anyhow::Ok(())
        }));
    }
    for c in creators {
        c.await??;
    }
    let mut claims = Vec::new();
    for _ in 0..200 {
        let req = ClaimRequest {
            worker: "bench".into(),
            now: now_millis(),
            lease_ms: 600_000,
            limit: 1,
        };
        let t = Instant::now();
        let got = store.claim(&req).await?;
        claims.push(t.elapsed());
        if got.is_empty() {
            bail!("{backend}: claim found nothing to claim");
        }
    }
    claims.sort();
    Ok(Row {
        backend,
        single_per_s,
        single_p50_ms: percentile(&lat, 0.5),
        single_p99_ms: percentile(&lat, 0.99),
        concurrent_per_s,
        claim_p50_ms: percentile(&claims, 0.5),
    })
}
