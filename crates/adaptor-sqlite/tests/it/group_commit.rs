//! Requests that share one group-commit transaction succeed or fail on their own.

use std::sync::Arc;

use sequential_adaptor::{
    Error, Fence, JournalRecord, NewRun, NewTaskVersion, RunId, StorageAdapter, TaskName,
};
use sequential_adaptor_sqlite::SqliteStore;
use serde_json::json;

fn rec(run: RunId, seq: u64) -> JournalRecord {
    JournalRecord {
        run,
        seq,
        kind: "log".into(),
        at: 0,
        data: json!({"seq": seq}),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_request_does_not_fail_its_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path().join("batch.db")).unwrap());
    let task = TaskName::new("batch").unwrap();
    let v = NewTaskVersion {
        task: task.clone(),
        code: "1".into(),
        graph: None,
        config: json!({}),
    };
    let version = store.put_task_version(v).await.unwrap().version.version;
    let mut runs = Vec::new();
    for i in 0..64 {
        runs.push(
            store
                .create_run(NewRun::new(task.clone(), version, json!(i)))
                .await
                .unwrap()
                .into_run()
                .id,
        );
    }
    let before = store.writer_stats();
    // all at once: even runs get a valid first record, odd runs a gap (seq 3 on an empty journal)
    let tasks: Vec<_> = runs
        .iter()
        .enumerate()
        .map(|(i, &run)| {
            let store = store.clone();
            tokio::spawn(async move {
                let seq = if i % 2 == 0 { 0 } else { 3 };
                store.append(run, &[rec(run, seq)], Fence::None).await
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        let result = t.await.unwrap();
        if i % 2 == 0 {
            result.unwrap();
        } else {
            assert!(
                matches!(result, Err(Error::Invalid { .. })),
                "run {i}: {result:?}"
            );
        }
    }
    let after = store.writer_stats();
    assert_eq!(after.requests - before.requests, 64);
    println!(
        "64 concurrent appends took {} transactions",
        after.transactions - before.transactions
    );
    let reopened = SqliteStore::open(dir.path().join("batch.db")).unwrap();
    for (i, &run) in runs.iter().enumerate() {
        let journal = reopened.read_journal(run, None, 10).await.unwrap();
        let want = if i % 2 == 0 {
            vec![rec(run, 0)]
        } else {
            vec![]
        };
        assert_eq!(journal, want, "run {i}");
    }
}
