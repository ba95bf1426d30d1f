//! `watch_end`: an end wakes the watchers of that run alone, whichever store (as another
//! process would) ended it; a run that ended before its watch was made is seen at once.

use std::time::Duration;

use sequential_adaptor::{ClaimRequest, NewRun, RunStatus, StorageAdapter, now_millis};
use sequential_adaptor_sqlite::SqliteStore;
use serde_json::json;

use crate::a_task;

const LONG: Duration = Duration::from_secs(30);

/// Whether `watch` wakes within `within`.
async fn wakes(watch: &sequential_adaptor_sqlite::EndWatch, within: Duration) -> bool {
    tokio::time::timeout(within, watch.wait(LONG)).await.is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_wakes_the_watchers_of_that_run_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ends.db");
    let writer = SqliteStore::open(&path).unwrap();
    // the watching store shares nothing with the writing one but the file
    let watcher = SqliteStore::open(&path).unwrap();
    let (task, v) = a_task(&writer, "t").await;
    let start = || writer.create_run(NewRun::new(task.clone(), v, json!(1)));
    let a = start().await.unwrap().into_run();
    let b = start().await.unwrap().into_run();
    let (watch_a, watch_b) = (watcher.watch_end(a.id), watcher.watch_end(b.id));
    let claims = writer
        .claim(&ClaimRequest {
            worker: "w".into(),
            now: now_millis(),
            lease_ms: 60_000,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(claims.len(), 2);
    assert!(
        !wakes(&watch_a, Duration::from_millis(300)).await,
        "a claim woke the end watcher"
    );

    let claim_a = claims.iter().find(|c| c.run.id == a.id).unwrap();
    let mut done = claim_a.run.clone();
    done.status = RunStatus::Succeeded;
    done.output = Some(json!("ok"));
    done.ended_at = Some(done.updated_at);
    writer.settle_run(&done, claim_a.token).await.unwrap();
    assert!(
        wakes(&watch_a, LONG).await,
        "a's end did not wake a's watcher"
    );
    assert!(
        !wakes(&watch_b, Duration::from_millis(300)).await,
        "a's end woke b's watcher"
    );

    let mut cancelled = writer.get_run(b.id).await.unwrap();
    cancelled.status = RunStatus::Cancelled;
    cancelled.ended_at = Some(cancelled.updated_at);
    writer.update_run(&cancelled).await.unwrap();
    assert!(
        wakes(&watch_b, LONG).await,
        "b's end did not wake b's watcher"
    );

    // a run that has ended already: its new watch wakes without another commit
    let late = watcher.watch_end(a.id);
    assert!(
        wakes(&late, LONG).await,
        "a watch made after the end was not woken"
    );
}

#[tokio::test]
async fn an_in_memory_store_sees_its_own_ends() {
    let store = SqliteStore::memory().unwrap();
    let (task, v) = a_task(&store, "t").await;
    let run = store
        .create_run(NewRun::new(task, v, json!(1)))
        .await
        .unwrap()
        .into_run();
    let watch = store.watch_end(run.id);
    assert!(
        !wakes(&watch, Duration::from_millis(200)).await,
        "a run that has not ended woke its watcher"
    );
    let mut cancelled = store.get_run(run.id).await.unwrap();
    cancelled.status = RunStatus::Cancelled;
    cancelled.ended_at = Some(cancelled.updated_at);
    store.update_run(&cancelled).await.unwrap();
    assert!(
        wakes(&watch, LONG).await,
        "the end did not wake the watcher"
    );
}
