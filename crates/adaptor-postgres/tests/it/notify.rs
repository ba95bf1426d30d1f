//! `wait_for_change` wakes on another store's new run, signal and due-timer change through
//! LISTEN/NOTIFY, not only by polling.

use std::time::{Duration, Instant};

use sequential_adaptor::{NewRun, RunStatus, StorageAdapter};
use sequential_adaptor_postgres::PostgresStore;
use serde_json::json;

use crate::support;

/// Makes `change` while `waiter` waits (up to a minute, so a lost wake-up fails rather than
/// hangs); `true` when the waiter was woken.
async fn woken(waiter: &PostgresStore, change: impl std::future::Future<Output = ()>) -> bool {
    // let the listener connect first: until then the store polls, which would hide a missing
    // notification
    let ready = Instant::now();
    while ready.elapsed() < Duration::from_secs(10) {
        waiter.wait_for_change(Duration::from_millis(50)).await;
        if waiter.is_listening() {
            break;
        }
    }
    assert!(waiter.is_listening(), "the LISTEN connection never came up");
    let wait = waiter.wait_for_change(Duration::from_secs(60));
    tokio::pin!(wait);
    // poll the wait once, so the waiter is registered before the change is made
    tokio::select! {
        biased;
        _ = &mut wait => return false,
        _ = std::future::ready(()) => {}
    }
    change.await;
    tokio::time::timeout(Duration::from_secs(30), wait)
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_stores_new_run_signal_and_timer_wake_a_waiter() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let waiter = PostgresStore::open(&url).await.unwrap();
    let writer = PostgresStore::open(&url).await.unwrap();
    let (task, v) = support::task_version(&writer, "t").await;
    let mut created = None;
    assert!(
        woken(&waiter, async {
            created = Some(
                writer
                    .create_run(NewRun::new(task.clone(), v, json!(1)))
                    .await
                    .unwrap()
                    .into_run(),
            );
        })
        .await,
        "a new run wakes the waiter"
    );
    let mut run = created.unwrap();
    run.status = RunStatus::Waiting;
    run.waiting_for = Some("go".into());
    let run = writer.update_run(&run).await.unwrap();
    assert!(
        woken(&waiter, async {
            writer.send_signal(run.id, "go", json!(true)).await.unwrap();
        })
        .await,
        "a signal wakes the waiter"
    );
    let mut sleeping = writer.get_run(run.id).await.unwrap();
    sleeping.wake_at = Some(sleeping.wake_at.unwrap() + 3_600_000);
    let sleeping = writer.update_run(&sleeping).await.unwrap();
    let mut sooner = sleeping.clone();
    sooner.wake_at = Some(sleeping.wake_at.unwrap() - 1_800_000);
    assert!(
        woken(&waiter, async {
            writer.update_run(&sooner).await.unwrap();
        })
        .await,
        "a timer brought forward wakes the waiter"
    );
}

/// `watch_end` wakes on its own run's end (in another store, settled by its worker or cancelled
/// by an update), not on another run's end nor on its own run's other changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_end_wakes_the_watchers_of_that_run_only() {
    use sequential_adaptor::ClaimRequest;

    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let watcher = PostgresStore::open(&url).await.unwrap();
    let writer = PostgresStore::open(&url).await.unwrap();
    let (task, v) = support::task_version(&writer, "t").await;
    let start = || writer.create_run(NewRun::new(task.clone(), v, json!(1)));
    let (a, b) = (
        start().await.unwrap().into_run(),
        start().await.unwrap().into_run(),
    );
    let (watch_a, watch_b) = (watcher.watch_end(a.id), watcher.watch_end(b.id));
    let ready = Instant::now();
    while !watcher.is_listening() && ready.elapsed() < Duration::from_secs(10) {
        watcher.wait_for_change(Duration::from_millis(50)).await;
    }
    assert!(
        watcher.is_listening(),
        "the LISTEN connection never came up"
    );
    // let the wake-ups of coming up (which may have ended something unseen) pass
    watch_a.wait(Duration::from_millis(50)).await;
    watch_b.wait(Duration::from_millis(50)).await;

    let claims = writer
        .claim(&ClaimRequest {
            worker: "w".into(),
            now: sequential_adaptor::now_millis(),
            lease_ms: 60_000,
            limit: 2,
        })
        .await
        .unwrap();
    assert_eq!(claims.len(), 2);
    let long = Duration::from_secs(30);
    // a claim is not an end
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watch_a.wait(long))
            .await
            .is_err(),
        "a claim woke the end watcher"
    );
    let claim_a = claims.iter().find(|c| c.run.id == a.id).unwrap();
    let mut done = claim_a.run.clone();
    done.status = RunStatus::Succeeded;
    done.output = Some(json!("ok"));
    done.ended_at = Some(done.updated_at);
    writer.settle_run(&done, claim_a.token).await.unwrap();
    tokio::time::timeout(long, watch_a.wait(long))
        .await
        .expect("a's end wakes a's watcher");
    assert!(
        tokio::time::timeout(Duration::from_millis(300), watch_b.wait(long))
            .await
            .is_err(),
        "a's end woke b's watcher"
    );
    let mut cancelled = writer.get_run(b.id).await.unwrap();
    cancelled.status = RunStatus::Cancelled;
    cancelled.ended_at = Some(cancelled.updated_at);
    writer.update_run(&cancelled).await.unwrap();
    tokio::time::timeout(long, watch_b.wait(long))
        .await
        .expect("b's end wakes b's watcher");
}
