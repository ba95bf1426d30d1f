//! Appends of many runs offered together share one statement (group commit), and each is still
//! decided on its own: a stale fence or a conflicting record rejects only that append.

use std::sync::Arc;

use sequential_adaptor::{
    ClaimRequest, Error, Fence, JournalRecord, NewRun, NewTaskVersion, RunId, StorageAdapter,
    Takeover, TaskName, now_millis,
};
use sequential_adaptor_postgres::PostgresStore;
use serde_json::json;

use crate::support;

fn rec(run: RunId, seq: u64, tag: &str) -> JournalRecord {
    JournalRecord {
        run,
        seq,
        kind: "log".into(),
        at: 0,
        data: json!({ "seq": seq, "tag": tag }),
    }
}

const RUNS: usize = 64;
/// Its append carries a token that a takeover made stale.
const STALE: usize = 17;
/// Its append offers a record different from the one stored at that seq.
const CONFLICTING: usize = 40;
/// Its append repeats a record already stored (an idempotent retry).
const RETRY: usize = 51;

// a current-thread runtime, so the order is certain: every spawned append queues its offer on
// its first poll, and the batcher task, woken by the first offer, runs after all of them
#[tokio::test]
async fn one_stale_or_conflicting_append_fails_alone_in_a_shared_statement() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let store = Arc::new(PostgresStore::open(&url).await.unwrap());
    let task = TaskName::new("group").unwrap();
    let version = store
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
    let mut runs = Vec::new();
    for i in 0..RUNS {
        let run = store
            .create_run(NewRun::new(task.clone(), version, json!(i)))
            .await
            .unwrap()
            .into_run();
        runs.push(run.id);
    }
    let req = ClaimRequest {
        worker: "test".into(),
        now: now_millis(),
        lease_ms: 60_000,
        limit: RUNS,
    };
    let claims = store.claim(&req).await.unwrap();
    assert_eq!(claims.len(), RUNS);
    let mut tokens = std::collections::HashMap::new();
    for c in &claims {
        tokens.insert(c.run.id, c.token);
    }
    // a takeover of STALE: the token its append carries is now stale
    let taken = store
        .claim_run(runs[STALE], &req, Takeover::Steal)
        .await
        .unwrap()
        .expect("stolen");
    assert!(taken.token > tokens[&runs[STALE]]);
    // CONFLICTING and RETRY already hold a record 0
    for i in [CONFLICTING, RETRY] {
        let run = runs[i];
        store
            .append(run, &[rec(run, 0, "stored")], Fence::Token(tokens[&run]))
            .await
            .unwrap();
    }

    let before = store.append_stats();
    let appends: Vec<_> = runs
        .iter()
        .map(|&run| {
            let store = store.clone();
            let token = tokens[&run];
            let tag = if run == runs[RETRY] { "stored" } else { "new" };
            tokio::spawn(async move {
                store
                    .append(
                        run,
                        &[rec(run, 0, tag), rec(run, 1, tag)],
                        Fence::Token(token),
                    )
                    .await
            })
        })
        .collect();
    let mut results = Vec::new();
    for a in appends {
        results.push(a.await.unwrap());
    }
    let after = store.append_stats();
    assert_eq!(
        (
            after.statements - before.statements,
            after.appends - before.appends
        ),
        (1, RUNS as u64),
        "the {RUNS} appends offered together should share one statement"
    );

    for (i, result) in results.iter().enumerate() {
        match i {
            STALE => assert!(
                matches!(result, Err(Error::Fenced { .. })),
                "run {i}: {result:?}"
            ),
            CONFLICTING => {
                assert!(
                    matches!(result, Err(Error::Conflict { .. })),
                    "run {i}: {result:?}"
                )
            }
            _ => assert!(result.is_ok(), "run {i}: {result:?}"),
        }
    }

    // what is durable, read through a store of its own (a fresh pool)
    let reader = PostgresStore::open(&url).await.unwrap();
    for (i, &run) in runs.iter().enumerate() {
        let journal = reader.read_journal(run, None, 10).await.unwrap();
        let want = match i {
            STALE => vec![],
            CONFLICTING => vec![rec(run, 0, "stored")],
            RETRY => vec![rec(run, 0, "stored"), rec(run, 1, "stored")],
            _ => vec![rec(run, 0, "new"), rec(run, 1, "new")],
        };
        assert_eq!(journal, want, "run {i}");
    }
    reader.close().await;
    store.close().await;
}

/// Two appends to the same run offered together go out in order, in separate statements.
#[tokio::test]
async fn appends_to_one_run_offered_together_keep_their_order() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let store = Arc::new(PostgresStore::open(&url).await.unwrap());
    let task = TaskName::new("order").unwrap();
    let version = store
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
    let run = store
        .create_run(NewRun::new(task, version, json!(0)))
        .await
        .unwrap()
        .into_run()
        .id;
    let tasks: Vec<_> = (0..8u64)
        .map(|seq| {
            let store = store.clone();
            tokio::spawn(async move { store.append(run, &[rec(run, seq, "x")], Fence::None).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let journal = store.read_journal(run, None, 20).await.unwrap();
    let want: Vec<_> = (0..8).map(|s| rec(run, s, "x")).collect();
    assert_eq!(journal, want);
    store.close().await;
}
