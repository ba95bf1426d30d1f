//! Rough appends/s of the folder store: one run, then 64 runs appending concurrently.
use std::sync::Arc;
use std::time::Instant;

use sequential_adaptor::{Fence, JournalRecord, NewRun, NewTaskVersion, StorageAdapter, TaskName};
use sequential_adaptor_folder::FolderStore;
use serde_json::json;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), sequential_adaptor::Error> {
    let dir = std::env::args()
        .nth(1)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("append-rate"));
    let _ = std::fs::remove_dir_all(&dir);
    let store = Arc::new(FolderStore::open(&dir)?);
    let task = TaskName::new("bench")?;
    let v = store
        .put_task_version(NewTaskVersion {
            task: task.clone(),
            code: "1".into(),
            graph: None,
            config: json!({}),
        })
        .await?
        .version
        .version;
    let rec = |run, seq| JournalRecord {
        run,
        seq,
        kind: "call.completed".into(),
        at: 0,
        data: json!({"status": 200, "body": {"id": seq, "name": "x"}}),
    };
    for (runs, per_run, fenced) in [
        (1usize, 2000u64, false),
        (1, 2000, true),
        (64, 200, false),
        (64, 200, true),
    ] {
        let req = sequential_adaptor::ClaimRequest {
            worker: "drain".into(),
            now: sequential_adaptor::now_millis(),
            lease_ms: 600_000,
            limit: 1000,
        };
        while !store.claim(&req).await?.is_empty() {}
        let mut ids = Vec::new();
        for _ in 0..runs {
            let id = store
                .create_run(NewRun::new(task.clone(), v, json!({})))
                .await?
                .into_run()
                .id;
            if fenced {
                let c = store
                    .claim(&sequential_adaptor::ClaimRequest {
                        worker: "b".into(),
                        now: sequential_adaptor::now_millis(),
                        lease_ms: 600_000,
                        limit: 1,
                    })
                    .await?;
                ids.push((c[0].run.id, Fence::Token(c[0].token)));
            } else {
                ids.push((id, Fence::None));
            }
        }
        let t = Instant::now();
        let mut tasks = Vec::new();
        for (id, fence) in ids {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                for seq in 0..per_run {
                    let t = Instant::now();
                    s.append(id, &[rec(id, seq)], fence).await.unwrap();
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let el = t.elapsed();
        lat.sort();
        println!(
            "{runs:>3} run(s){}: {} appends in {:.2?} = {:.0} appends/s, p50 {:.2?} p99 {:.2?}",
            if fenced { " fenced" } else { "" },
            lat.len(),
            el,
            lat.len() as f64 / el.as_secs_f64(),
            lat[lat.len() / 2],
            lat[lat.len() * 99 / 100]
        );
    }
    let req = sequential_adaptor::ClaimRequest {
        worker: "drain".into(),
        now: sequential_adaptor::now_millis(),
        lease_ms: 600_000,
        limit: 1000,
    };
    while !store.claim(&req).await?.is_empty() {}
    let t = Instant::now();
    for _ in 0..500 {
        store
            .create_run(NewRun::new(task.clone(), v, json!({})))
            .await?;
    }
    println!("create_run: {:.2?} each", t.elapsed() / 500);
    let mut lat = Vec::new();
    loop {
        let req = sequential_adaptor::ClaimRequest {
            worker: "w".into(),
            now: sequential_adaptor::now_millis(),
            lease_ms: 600_000,
            limit: 1,
        };
        let t = Instant::now();
        if store.claim(&req).await?.is_empty() {
            break;
        }
        lat.push(t.elapsed());
    }
    lat.sort();
    println!(
        "claim (limit 1, 500 queued): p50 {:.2?} p99 {:.2?}",
        lat[lat.len() / 2],
        lat[lat.len() * 99 / 100]
    );
    Ok(())
}
