//! `sequential-bench flow`: the flow task store (`sequential-flow-store`) per backend — save and
//! load of one paused task with 10,000 others stored, a resume through the store (VM included),
//! and what expiry costs: the expiry-index read with 10,000 live tasks (none due) next to an
//! empty store, and the purge of 10,000 expired tasks per task.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use sequential_flow_store::{
    ExecuteRequest, FetchResponse, FlowStore, Record, ResumeInput, SaveOptions, Task, TaskStore,
};
use serde_json::Value;

use crate::{machine_line, percentile};

const STORED: usize = 10_000;
const SAMPLES: usize = 300;

struct Row {
    backend: String,
    save_p50: f64,
    save_p99: f64,
    load_p50: f64,
    resume_p50: f64,
    due_empty: f64,
    due_full: f64,
    purge_per_task: f64,
}

pub async fn run() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let pg = std::env::var("DATABASE_URL_TEST")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("flow_bench_{}", std::process::id());
    let prefix = format!("flow-bench-{}:", std::process::id());
    let urls = [
        ("memory".to_string(), "memory:".to_string()),
        (
            "folder".to_string(),
            dir.path().join("flow").display().to_string(),
        ),
        (
            "sqlite".to_string(),
            dir.path().join("flow.db").display().to_string(),
        ),
        ("postgres".to_string(), format!("{pg}?schema={schema}")),
        (
            "redis".to_string(),
            format!("redis://127.0.0.1:6379?prefix={prefix}"),
        ),
    ];
    let mut rows = Vec::new();
    for (name, url) in urls {
        eprintln!("flow store: {name}");
        match sequential_flow_store::open_backend(&url).await {
            Ok(backend) => rows.push(measure(&name, backend).await?),
            Err(e) => eprintln!("skipped {name}: {e}"),
        }
    }
    cleanup(&pg, &schema, &prefix).await;

    println!("## Flow task store (`cargo xtask bench flow`)\n");
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{} Load average at the end: {} (other processes' load shows in the p99s).\n",
        machine_line(),
        load.split_whitespace().next().unwrap_or("unknown")
    );
    println!(
        "One paused task (~1 KB with its vmState) saved and loaded through `FlowStore` while \
         {STORED} others are stored; {SAMPLES} samples each. *resume* is a whole \
         `resume({{taskId, fetchResponse}})`: load, checksum, VM replay of a one-fetch journal, \
         save. *due* is the expiry-index read every save may make (at most once a second): with \
         an empty store and with {STORED} live tasks none of which is due — equal costs mean no \
         scan. *purge* settles {STORED} expired tasks (each becomes a tombstone) and is given per \
         task. Redis also expires keys by itself.\n"
    );
    println!(
        "| backend | save p50 | save p99 | load p50 | resume p50 | due, empty | due, {STORED} stored | purge per task |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms | {:.3} ms |",
            r.backend,
            r.save_p50,
            r.save_p99,
            r.load_p50,
            r.resume_p50,
            r.due_empty,
            r.due_full,
            r.purge_per_task
        );
    }
    println!();
    Ok(())
}

fn median_ms(mut v: Vec<Duration>) -> f64 {
    v.sort();
    percentile(&v, 0.5)
}

async fn measure(name: &str, backend: Arc<dyn TaskStore>) -> Result<Row> {
    let now = Arc::new(AtomicI64::new(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_millis() as i64,
    ));
    let clock = now.clone();
    let store =
        FlowStore::new(backend.clone()).with_clock(Arc::new(move || clock.load(Ordering::SeqCst)));
    let code = "const user = fetch('api/user/' + input.id); user.name";
    let template = store
        .execute(
            ExecuteRequest::new(Some("template".into()), code, serde_json::json!({"id": 7})),
            &SaveOptions::default(),
        )
        .await
        .context("execute")?;

    // an empty index first
    let mut due = Vec::new();
    for _ in 0..SAMPLES {
        let t = Instant::now();
        backend.due(now.load(Ordering::SeqCst), 64).await?;
        due.push(t.elapsed());
    }
    let due_empty = median_ms(due);

    // 10,000 stored tasks, expiring 1 h from now (none due)
    let fill = Instant::now();
    let base = now.load(Ordering::SeqCst);
    for i in 0..STORED {
        let mut t: Task = template.clone();
        t.id = format!("stored-{i:05}");
        t.updated_at = base;
        t.expires_at = base + 3_600_000 + i as i64;
        backend.put(&Record::Task(t)).await?;
    }
    eprintln!("  stored {STORED} tasks in {:.1?}", fill.elapsed());

    let mut due = Vec::new();
    for _ in 0..SAMPLES {
        let t = Instant::now();
        let ids = backend.due(now.load(Ordering::SeqCst), 64).await?;
        due.push(t.elapsed());
        assert!(ids.is_empty());
    }
    let due_full = median_ms(due);

    let mut saves = Vec::new();
    let mut loads = Vec::new();
    for i in 0..SAMPLES {
        let mut t = template.clone();
        t.id = format!("sample-{}", i % 16);
        let start = Instant::now();
        store.save(&t).await?;
        saves.push(start.elapsed());
        let start = Instant::now();
        let got = store.get(&t.id).await?;
        loads.push(start.elapsed());
        assert!(got.is_some());
    }
    saves.sort();
    let (save_p50, save_p99) = (percentile(&saves, 0.5), percentile(&saves, 0.99));
    let load_p50 = median_ms(loads);

    let mut resumes = Vec::new();
    for i in 0..SAMPLES / 3 {
        let id = format!("resume-{i}");
        store
            .execute(
                ExecuteRequest::new(Some(id.clone()), code, serde_json::json!({"id": i})),
                &SaveOptions::default(),
            )
            .await?;
        let input = ResumeInput::stored(
            id,
            FetchResponse::new(200, "OK", serde_json::json!({"name": "Alice"})),
        );
        let start = Instant::now();
        let done = store.resume(input, &SaveOptions::default()).await?;
        resumes.push(start.elapsed());
        assert_eq!(done.result, Some(Value::from("Alice")));
    }
    let resume_p50 = median_ms(resumes);

    // every stored task expires: purge them all through the index
    now.fetch_add(2 * 3_600_000 + STORED as i64 + 10, Ordering::SeqCst);
    let start = Instant::now();
    let settled = store.purge_expired().await?;
    let purge = start.elapsed();
    eprintln!("  purged {settled} in {purge:.1?}");
    Ok(Row {
        backend: name.to_string(),
        save_p50,
        save_p99,
        load_p50,
        resume_p50,
        due_empty,
        due_full,
        purge_per_task: purge.as_secs_f64() * 1000.0 / settled.max(1) as f64,
    })
}

async fn cleanup(pg: &str, schema: &str, prefix: &str) {
    use sqlx::Connection;
    if let Ok(mut conn) = sqlx::PgConnection::connect(pg).await {
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE"
        )))
        .execute(&mut conn)
        .await;
    }
    // Redis keys: the tombstones expire by themselves after 7 days; remove them now
    if let Ok(store) = sequential_flow_store::RedisTaskStore::open(&format!(
        "redis://127.0.0.1:6379?prefix={prefix}"
    ))
    .await
    {
        let now = i64::MAX / 4;
        if let Ok(ids) = store.due(now, usize::MAX / 4).await {
            for id in ids {
                let _ = store.remove(&id).await;
            }
        }
        // tombstones are not in the index: remove those of the ids we wrote
        let ids = (0..STORED)
            .map(|i| format!("stored-{i:05}"))
            .chain((0..16).map(|i| format!("sample-{i}")))
            .chain((0..SAMPLES).map(|i| format!("resume-{i}")))
            .chain(["template".to_string()]);
        for id in ids {
            let _ = store.remove(&id).await;
        }
    }
}
