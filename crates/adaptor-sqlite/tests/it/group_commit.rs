//! Requests that share one group-commit transaction succeed or fail on their own: a gap, or a
//! stale fencing token, rejects only its own request, and the rest of the batch is durable.

use std::collections::HashMap;
use std::sync::Arc;

use sequential_adaptor::{
    ClaimRequest, Error, Fence, JournalRecord, NewRun, RunId, StorageAdapter, Takeover, now_millis,
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
    let (task, version) = crate::a_task(&store, "batch").await;
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

/// 64 appends with fencing tokens share a transaction with others while the database is held
/// by another connection; the one whose token a takeover made stale is `Fenced`, alone, and all
/// the others are durable.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stale_append_is_fenced_alone_in_a_shared_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fenced.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    let (task, version) = crate::a_task(&store, "fenced").await;
    let mut runs = Vec::new();
    for i in 0..65 {
        runs.push(
            store
                .create_run(NewRun::new(task.clone(), version, json!(i)))
                .await
                .unwrap()
                .into_run()
                .id,
        );
    }
    let req = ClaimRequest {
        worker: "test".into(),
        now: now_millis(),
        lease_ms: 60_000,
        limit: 65,
    };
    let tokens: HashMap<RunId, u64> = store
        .claim(&req)
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.run.id, c.token))
        .collect();
    assert_eq!(tokens.len(), 65);
    // runs[0] is the blocker, runs[1] the stale one
    let stale = runs[1];
    store
        .claim_run(stale, &req, Takeover::Steal)
        .await
        .unwrap()
        .expect("stolen");

    // another connection holds the write lock: the writer thread waits at its BEGIN while the
    // requests queue up
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let before = store.writer_stats();
    let append = |run: RunId| {
        let store = store.clone();
        let token = tokens[&run];
        tokio::spawn(async move {
            store
                .append(run, &[rec(run, 0), rec(run, 1)], Fence::Token(token))
                .await
        })
    };
    let submitted_since = |n: u64| {
        let store = store.clone();
        async move {
            for _ in 0..6000 {
                if store.writer_stats().submitted - before.submitted >= n {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            }
            panic!("the requests never reached the writer thread");
        }
    };
    // the blocker first, alone; then the other 64, stale one first: it shares a transaction
    // with the blocker or with the rest, never stands alone
    let mut tasks = vec![append(runs[0])];
    submitted_since(1).await;
    tasks.extend(runs[1..].iter().map(|&run| append(run)));
    submitted_since(65).await;
    holder.execute_batch("COMMIT").unwrap();

    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let after = store.writer_stats();
    assert_eq!(after.requests - before.requests, 65);
    assert!(
        after.transactions - before.transactions <= 2,
        "65 queued requests should share at most 2 transactions, took {}",
        after.transactions - before.transactions
    );
    for (i, result) in results.iter().enumerate() {
        if i == 1 {
            assert!(
                matches!(result, Err(Error::Fenced { .. })),
                "run {i}: {result:?}"
            );
        } else {
            assert!(result.is_ok(), "run {i}: {result:?}");
        }
    }
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    for (i, &run) in runs.iter().enumerate() {
        let journal = reopened.read_journal(run, None, 10).await.unwrap();
        let want = if i == 1 {
            vec![]
        } else {
            vec![rec(run, 0), rec(run, 1)]
        };
        assert_eq!(journal, want, "run {i}");
    }
}

/// A request made while no other is in progress commits on the calling thread, in a
/// transaction of its own (no hand-over to the writer thread and back); one that fails there
/// leaves nothing behind, and the next request still commits.
#[tokio::test]
async fn a_request_alone_commits_on_the_calling_thread() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alone.db");
    let store = SqliteStore::open(&path).unwrap();
    let run = crate::a_run(&store, "alone").await;
    let before = store.writer_stats();
    store
        .append(run, &[rec(run, 0)], Fence::None)
        .await
        .unwrap();
    let gap = store.append(run, &[rec(run, 5)], Fence::None).await;
    assert!(matches!(gap, Err(Error::Invalid { .. })), "{gap:?}");
    store
        .append(run, &[rec(run, 1)], Fence::None)
        .await
        .unwrap();
    let after = store.writer_stats();
    assert_eq!(after.requests - before.requests, 3);
    assert_eq!(after.transactions - before.transactions, 3);
    assert_eq!(
        after.submitted, before.submitted,
        "no request should have gone to the writer thread"
    );
    drop(store);
    let reopened = SqliteStore::open(&path).unwrap();
    let journal = reopened.read_journal(run, None, 10).await.unwrap();
    assert_eq!(journal, vec![rec(run, 0), rec(run, 1)]);
}
