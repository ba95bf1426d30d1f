//! `wait_for_change` wakes on another store's new run, signal and due-timer change through
//! LISTEN/NOTIFY, not only by polling.

use std::time::{Duration, Instant};

use sequential_adaptor::{NewRun, NewTaskVersion, RunStatus, StorageAdapter, TaskName};
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
    let task = TaskName::new("t").unwrap();
    let v = writer
        .put_task_version(NewTaskVersion {
            task: task.clone(),
            code: "1".into(),
            graph: None,
            config: json!({}),
        })
        .await
        .unwrap()
        .version
        .version;
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
