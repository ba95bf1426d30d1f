//! A rough measurement of append speed: one appender (latency) and 64 concurrent appenders
//! (group-commit throughput), fsync on. `cargo run --release -p sequential-adaptor-sqlite --example append_speed [DIR]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use sequential_adaptor::{
    ClaimRequest, Fence, JournalRecord, NewRun, NewTaskVersion, RunId, RunStatus, StorageAdapter,
    TaskName, now_millis,
};
use sequential_adaptor_sqlite::SqliteStore;
use serde_json::json;

fn rec(run: RunId, seq: u64) -> JournalRecord {
    JournalRecord {
        run,
        seq,
        kind: "call.completed".into(),
        at: now_millis(),
        data: json!({"status": 200, "body": {"id": seq, "name": "example", "items": [1, 2, 3]}}),
    }
}

async fn new_run(store: &SqliteStore, task: &TaskName, version: u32) -> RunId {
    store
        .create_run(NewRun::new(task.clone(), version, json!({})))
        .await
        .unwrap()
        .into_run()
        .id
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = std::env::args()
        .nth(1)
        .map_or(tmp.path().to_path_buf(), Into::into);
    let store = SqliteStore::open(dir.join("bench.db")).unwrap();
    let task = TaskName::new("bench").unwrap();
    let v = NewTaskVersion {
        task: task.clone(),
        code: "1".into(),
        graph: None,
        config: json!({}),
    };
    let version = store.put_task_version(v).await.unwrap().version.version;

    // one appender: latency of a single durable append
    let run = new_run(&store, &task, version).await;
    let n = 3000;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for seq in 0..n as u64 {
        let t = Instant::now();
        store
            .append(run, &[rec(run, seq)], Fence::None)
            .await
            .unwrap();
        lat.push(t.elapsed());
    }
    let total = start.elapsed();
    lat.sort();
    println!(
        "1 appender:   {n} appends in {total:.2?} = {:.0} records/s; p50 {:.3?}, p99 {:.3?}",
        n as f64 / total.as_secs_f64(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );

    // 64 concurrent appenders, one run each
    let writers = 64;
    let per = 500u64;
    let store = Arc::new(store);
    let mut runs = Vec::new();
    for _ in 0..writers {
        runs.push(new_run(&store, &task, version).await);
    }
    let stats = store.writer_stats();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for run in runs {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            for seq in 0..per {
                store
                    .append(run, &[rec(run, seq)], Fence::None)
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let total = start.elapsed();
    let records = writers as u64 * per;
    let after = store.writer_stats();
    println!(
        "{writers} appenders: {records} appends in {total:.2?} = {:.0} records/s, {:.1} appends per commit",
        records as f64 / total.as_secs_f64(),
        (after.requests - stats.requests) as f64 / (after.transactions - stats.transactions) as f64
    );

    // claim latency: one run claimed at a time
    for _ in 0..500 {
        new_run(&store, &task, version).await;
    }
    let mut lat = Vec::new();
    loop {
        let req = ClaimRequest {
            worker: "bench".into(),
            now: now_millis(),
            lease_ms: 60_000,
            limit: 1,
        };
        let t = Instant::now();
        let got = store.claim(&req).await.unwrap();
        lat.push(t.elapsed());
        if got.is_empty() {
            break;
        }
    }
    lat.sort();
    println!(
        "claim (limit 1): {} claims, p50 {:.3?}, p99 {:.3?}",
        lat.len(),
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );

    // reading a 100-record journal (what a cold resume of a 100-step run reads)
    let run = new_run(&store, &task, version).await;
    let recs: Vec<_> = (0..100).map(|seq| rec(run, seq)).collect();
    store.append(run, &recs, Fence::None).await.unwrap();
    let mut lat = Vec::new();
    for _ in 0..500 {
        let t = Instant::now();
        let got = store.read_journal(run, None, 1000).await.unwrap();
        lat.push(t.elapsed());
        assert_eq!(got.len(), 100);
    }
    lat.sort();
    println!(
        "read_journal (100 records): p50 {:.3?}, p99 {:.3?}",
        pct(&lat, 0.5),
        pct(&lat, 0.99)
    );

    // storage per finished 10-step run (small payloads), in a fresh file
    drop(store);
    let path = dir.join("size.db");
    let store = SqliteStore::open(&path).unwrap();
    let v = NewTaskVersion {
        task: task.clone(),
        code: "1".into(),
        graph: None,
        config: json!({}),
    };
    let version = store.put_task_version(v).await.unwrap().version.version;
    let runs = 1000;
    for _ in 0..runs {
        let run = store
            .create_run(NewRun::new(task.clone(), version, json!({"userId": 42})))
            .await
            .unwrap()
            .into_run();
        let at = now_millis();
        let mut recs = vec![JournalRecord {
            run: run.id,
            seq: 0,
            kind: "run.started".into(),
            at,
            data: json!({}),
        }];
        for step in 0..10u64 {
            let url = format!("http://127.0.0.1:8080/step/{step}");
            let (kind, data) = ("call.requested", json!({"fetch": {"url": url}}));
            recs.push(JournalRecord {
                run: run.id,
                seq: 1 + 2 * step,
                kind: kind.into(),
                at,
                data,
            });
            let (kind, data) = (
                "call.completed",
                json!({"status": 200, "body": {"ok": true, "step": step}}),
            );
            recs.push(JournalRecord {
                run: run.id,
                seq: 2 + 2 * step,
                kind: kind.into(),
                at,
                data,
            });
        }
        recs.push(JournalRecord {
            run: run.id,
            seq: 21,
            kind: "run.succeeded".into(),
            at,
            data: json!({"ok": true}),
        });
        store.append(run.id, &recs, Fence::None).await.unwrap();
        let mut done = run.clone();
        done.status = RunStatus::Succeeded;
        done.output = Some(json!({"ok": true}));
        store.update_run(&done).await.unwrap();
    }
    drop(store);
    let size = std::fs::metadata(&path).unwrap().len();
    println!(
        "storage: {:.0} bytes per finished 10-step run (22 journal records), file {size} bytes for {runs} runs",
        size as f64 / runs as f64
    );
}
