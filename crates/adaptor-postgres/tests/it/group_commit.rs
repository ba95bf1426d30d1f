//! Appends of many runs offered together share one statement (group commit), and each is still
//! decided on its own: a stale fence or a conflicting record rejects only that append.

use std::sync::Arc;

use sequential_adaptor::{
    ClaimRequest, Error, Fence, JournalRecord, NewRun, RunId, StorageAdapter, Takeover, now_millis,
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

/// RUNS new runs of task `task`, all claimed by one worker, in run-id order.
async fn claimed_runs(store: &PostgresStore, task: &str) -> Vec<sequential_adaptor::Claim> {
    let (task, version) = support::task_version(store, task).await;
    for i in 0..RUNS {
        store
            .create_run(NewRun::new(task.clone(), version, json!(i)))
            .await
            .unwrap();
    }
    let mut claims = store.claim(&claim_all()).await.unwrap();
    assert_eq!(claims.len(), RUNS);
    claims.sort_by_key(|c| c.run.id);
    claims
}

/// A claim of up to RUNS runs by worker `test`, now.
fn claim_all() -> ClaimRequest {
    ClaimRequest {
        worker: "test".into(),
        now: now_millis(),
        lease_ms: 60_000,
        limit: RUNS,
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
    let (task, version) = support::task_version(&*store, "group").await;
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
    let (task, version) = support::task_version(&*store, "order").await;
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

/// Settles of many runs share one statement too; a stale revision and a stale token are refused
/// alone, and the others are stored with their leases dropped.
#[tokio::test]
async fn settles_share_a_statement_and_fail_alone() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let store = Arc::new(PostgresStore::open(&url).await.unwrap());
    let claims = claimed_runs(&store, "settle").await;
    let req = claim_all();
    // CONFLICTING's stored revision moves on; STALE is taken over
    let moved = store.update_run(&claims[CONFLICTING].run).await.unwrap();
    assert!(moved.revision > claims[CONFLICTING].run.revision);
    store
        .claim_run(claims[STALE].run.id, &req, Takeover::Steal)
        .await
        .unwrap()
        .expect("stolen");

    let before = store.settle_stats();
    let settles: Vec<_> = claims
        .iter()
        .map(|c| {
            let store = store.clone();
            let mut run = c.run.clone();
            let token = c.token;
            run.status = sequential_adaptor::RunStatus::Succeeded;
            run.output = Some(json!({ "done": run.input }));
            run.ended_at = Some(now_millis());
            tokio::spawn(async move { store.settle_run(&run, token).await })
        })
        .collect();
    let mut results = Vec::new();
    for s in settles {
        results.push(s.await.unwrap());
    }
    let after = store.settle_stats();
    assert_eq!(
        (
            after.statements - before.statements,
            after.appends - before.appends
        ),
        (1, RUNS as u64),
        "the {RUNS} settles offered together should share one statement"
    );
    let reader = PostgresStore::open(&url).await.unwrap();
    for (i, result) in results.iter().enumerate() {
        let stored = reader.get_run(claims[i].run.id).await.unwrap();
        match i {
            STALE | CONFLICTING => {
                assert!(
                    matches!(result, Err(Error::Fenced { .. } | Error::Conflict { .. })),
                    "run {i}: {result:?}"
                );
                assert_eq!(
                    stored.status,
                    sequential_adaptor::RunStatus::Running,
                    "run {i}"
                );
                assert!(stored.lease.is_some(), "run {i}");
            }
            _ => {
                let settled = result.as_ref().unwrap_or_else(|e| panic!("run {i}: {e}"));
                assert_eq!(&stored, settled, "run {i}");
                assert_eq!(stored.status, sequential_adaptor::RunStatus::Succeeded);
                assert!(stored.lease.is_none(), "run {i}");
            }
        }
    }
    reader.close().await;
    store.close().await;
}

// `append_and_settle` offered by many runs together: the records and the ends of all the
// healthy ones go out in one statement (no separate append statement); a stale token writes
// nothing of its run, and a retry whose first record is already stored takes the two-step path
// and still ends with the whole journal and the run settled.
#[tokio::test]
async fn appends_with_settles_share_one_statement_and_fail_alone() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let store = Arc::new(PostgresStore::open(&url).await.unwrap());
    let claims = claimed_runs(&store, "append-settle").await;
    let req = claim_all();
    let finished = |i: usize| {
        let mut run = claims[i].run.clone();
        run.status = sequential_adaptor::RunStatus::Succeeded;
        run.output = Some(json!({ "done": i }));
        run.ended_at = Some(now_millis());
        run
    };
    let records = |i: usize| {
        let id = claims[i].run.id;
        vec![rec(id, 0, "call"), rec(id, 1, "end")]
    };

    // every run healthy: one statement, no append statement
    let healthy: Vec<usize> = (0..RUNS).filter(|&i| i % 2 == 0).collect();
    let (settles, appends) = (store.settle_stats(), store.append_stats());
    let tasks: Vec<_> = healthy
        .iter()
        .map(|&i| {
            let (store, run, recs, token) =
                (store.clone(), finished(i), records(i), claims[i].token);
            tokio::spawn(async move { store.append_and_settle(&run, &recs, token).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        (
            store.settle_stats().statements - settles.statements,
            store.settle_stats().appends - settles.appends,
            store.append_stats().statements - appends.statements,
        ),
        (1, healthy.len() as u64, 0),
        "the records and ends of {} runs offered together should share one statement",
        healthy.len()
    );

    // the other half: one stale token, one retry whose first record is stored
    let (stale, retry) = (1, 3);
    store
        .claim_run(claims[stale].run.id, &req, Takeover::Steal)
        .await
        .unwrap()
        .expect("stolen");
    store
        .append(
            claims[retry].run.id,
            &records(retry)[..1],
            Fence::Token(claims[retry].token),
        )
        .await
        .unwrap();
    let rest: Vec<usize> = (0..RUNS).filter(|&i| i % 2 == 1).collect();
    let tasks: Vec<_> = rest
        .iter()
        .map(|&i| {
            let (store, run, recs, token) =
                (store.clone(), finished(i), records(i), claims[i].token);
            tokio::spawn(async move { store.append_and_settle(&run, &recs, token).await })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let reader = PostgresStore::open(&url).await.unwrap();
    for (i, result) in rest.iter().zip(&results) {
        let (i, id) = (*i, claims[*i].run.id);
        let stored = reader.get_run(id).await.unwrap();
        let journal = reader.read_journal(id, None, 10).await.unwrap();
        if i == stale {
            assert!(matches!(result, Err(Error::Fenced { .. })), "{result:?}");
            assert!(journal.is_empty(), "run {i}: {journal:?}");
            assert_eq!(stored.status, sequential_adaptor::RunStatus::Running);
        } else {
            let settled = result.as_ref().unwrap_or_else(|e| panic!("run {i}: {e}"));
            assert_eq!(&stored, settled, "run {i}");
            assert_eq!(stored.status, sequential_adaptor::RunStatus::Succeeded);
            assert!(stored.lease.is_none(), "run {i}");
            assert_eq!(journal, records(i), "run {i}");
        }
    }
    for &i in &healthy {
        let id = claims[i].run.id;
        assert_eq!(
            reader.read_journal(id, None, 10).await.unwrap(),
            records(i),
            "run {i}"
        );
        assert_eq!(
            reader.get_run(id).await.unwrap().status,
            sequential_adaptor::RunStatus::Succeeded
        );
    }
    reader.close().await;
    store.close().await;
}

// a current-thread runtime, as above: every spawned start queues its run before the batcher
// task runs, so all of them share its first statement
#[tokio::test]
async fn runs_started_together_share_one_insert_and_each_is_decided_on_its_own() {
    use sequential_adaptor::{Created, NewRunOf, TaskName, VersionSel};

    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let store = Arc::new(PostgresStore::open(&url).await.unwrap());
    let (task, first) = support::task_version(&*store, "starts").await;
    let second = store
        .put_task_version(sequential_adaptor::NewTaskVersion {
            task: task.clone(),
            code: "2".into(),
            graph: None,
            config: json!({}),
        })
        .await
        .unwrap()
        .version
        .version;
    assert!(second > first);
    // a key taken before the batch
    let mut keyed = NewRunOf::latest(task.clone(), json!("keyed"));
    keyed.idempotency_key = Some("taken".into());
    let taken = store.create_run_of(keyed.clone()).await.unwrap().into_run();

    const MISSING_TASK: usize = 5;
    const MISSING_VERSION: usize = 9;
    const PINNED: usize = 12;
    const TAKEN_KEY: usize = 20;
    // two new runs with one new key: one is created, the other finds it
    const SAME_KEY: [usize; 2] = [30, 31];
    let before = store.create_stats();
    let starts: Vec<_> = (0..RUNS)
        .map(|i| {
            let mut new = NewRunOf::latest(task.clone(), json!(i));
            match i {
                MISSING_TASK => new.task = TaskName::new("nobody").unwrap(),
                MISSING_VERSION => new.version = VersionSel::Exact(99),
                PINNED => new.version = VersionSel::Exact(first),
                TAKEN_KEY => new = keyed.clone(),
                i if SAME_KEY.contains(&i) => {
                    new.input = json!("same");
                    new.idempotency_key = Some("fresh".into());
                }
                _ => {}
            }
            let store = store.clone();
            tokio::spawn(async move { store.create_run_of(new).await })
        })
        .collect();
    let mut results = Vec::new();
    for s in starts {
        results.push(s.await.unwrap());
    }
    let after = store.create_stats();
    assert_eq!(
        (
            after.statements - before.statements,
            after.appends - before.appends
        ),
        (1, RUNS as u64),
        "the {RUNS} starts offered together should share one statement"
    );

    let mut same_key = Vec::new();
    for (i, result) in results.into_iter().enumerate() {
        match i {
            MISSING_TASK | MISSING_VERSION => assert!(
                matches!(result, Err(Error::NotFound { .. })),
                "start {i}: {result:?}"
            ),
            TAKEN_KEY => match result {
                Ok(Created::Existing(run)) => assert_eq!(run.id, taken.id),
                other => panic!("start {i}: {other:?}"),
            },
            i if SAME_KEY.contains(&i) => same_key.push(result.unwrap()),
            _ => {
                let Ok(Created::Created(run)) = result else {
                    panic!("start {i}: {result:?}")
                };
                let want = if i == PINNED { first } else { second };
                assert_eq!(run.version, want, "start {i} pinned the wrong version");
                // what is durable, as the caller was told
                assert_eq!(store.get_run(run.id).await.unwrap(), run, "start {i}");
            }
        }
    }
    let created: Vec<_> = same_key
        .iter()
        .filter(|c| matches!(c, Created::Created(_)))
        .collect();
    assert_eq!(created.len(), 1, "one new key, one new run: {same_key:?}");
    assert_eq!(same_key[0].run().id, same_key[1].run().id);
}

// a current-thread runtime, as above: appends of some runs and settles of others, offered
// together, go out in one statement (one commit), and a stale one of each still fails alone
#[tokio::test]
async fn appends_and_settles_offered_together_share_one_statement() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let store = Arc::new(PostgresStore::open(&url).await.unwrap());
    let claims = claimed_runs(&store, "writes").await;
    let req = claim_all();
    // one run of each half is taken over: its append, and its settle, carry a stale token
    let (stale_append, stale_settle) = (7, RUNS / 2 + 7);
    for i in [stale_append, stale_settle] {
        store
            .claim_run(claims[i].run.id, &req, Takeover::Steal)
            .await
            .unwrap()
            .expect("stolen");
    }
    let (appends, settles, writes) = (
        store.append_stats(),
        store.settle_stats(),
        store.write_stats(),
    );
    let tasks: Vec<_> = claims
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let (store, mut run, token) = (store.clone(), c.run.clone(), c.token);
            tokio::spawn(async move {
                if i < RUNS / 2 {
                    let recs = [rec(run.id, 0, "step")];
                    store.append(run.id, &recs, Fence::Token(token)).await
                } else {
                    run.status = sequential_adaptor::RunStatus::Succeeded;
                    run.output = Some(json!(i));
                    run.ended_at = Some(now_millis());
                    store.settle_run(&run, token).await.map(drop)
                }
            })
        })
        .collect();
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let half = (RUNS / 2) as u64;
    assert_eq!(
        (
            store.append_stats().statements - appends.statements,
            store.append_stats().appends - appends.appends,
            store.settle_stats().statements - settles.statements,
            store.settle_stats().appends - settles.appends,
            store.write_stats().statements - writes.statements,
        ),
        (1, half, 1, half, 1),
        "the appends and settles offered together should share one statement"
    );
    let reader = PostgresStore::open(&url).await.unwrap();
    for (i, result) in results.iter().enumerate() {
        let id = claims[i].run.id;
        let stored = reader.get_run(id).await.unwrap();
        let journal = reader.read_journal(id, None, 10).await.unwrap();
        if i == stale_append || i == stale_settle {
            assert!(
                matches!(result, Err(Error::Fenced { .. })),
                "run {i}: {result:?}"
            );
            assert_eq!(
                stored.status,
                sequential_adaptor::RunStatus::Running,
                "run {i}"
            );
            assert!(journal.is_empty(), "run {i}: {journal:?}");
        } else if i < RUNS / 2 {
            assert!(result.is_ok(), "run {i}: {result:?}");
            assert_eq!(journal.len(), 1, "run {i}");
            assert_eq!(
                stored.status,
                sequential_adaptor::RunStatus::Running,
                "run {i}"
            );
        } else {
            assert!(result.is_ok(), "run {i}: {result:?}");
            assert_eq!(
                stored.status,
                sequential_adaptor::RunStatus::Succeeded,
                "run {i}"
            );
            assert!(stored.lease.is_none(), "run {i}");
        }
    }
    reader.close().await;
    store.close().await;
}
