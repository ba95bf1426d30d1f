//! Migrations: applied once under concurrent opens; a newer schema refused untouched; a
//! read-only open of an unmigrated database creates nothing and asks for `migrate`.

use sequential_adaptor::{Error, StorageAdapter};
use sequential_adaptor_postgres::{PostgresStore, SCHEMA_VERSION};
use sqlx::Row;

use crate::support;

async fn migrations_rows(base: &str, schema: &str) -> Vec<(i64, String)> {
    let mut conn = support::connect(base).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT version, applied_by FROM {schema}.sequential_migrations ORDER BY version"
    )))
    .fetch_all(&mut conn)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect()
}

async fn schema_exists(base: &str, schema: &str) -> bool {
    let mut conn = support::connect(base).await;
    sqlx::query("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(&mut conn)
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_opens_apply_each_migration_once() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, guard) = support::fresh_schema(&base);
    let opens: Vec<_> = (0..10)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::open(&url).await })
        })
        .collect();
    for open in opens {
        let store = open.await.unwrap().expect("every concurrent open succeeds");
        store.health().await.unwrap();
    }
    let rows = migrations_rows(&base, &guard.schema).await;
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (1..=SCHEMA_VERSION).collect::<Vec<_>>(),
        "each step recorded once: {rows:?}"
    );
    // and an explicit migrate afterwards has nothing to do
    let report = PostgresStore::migrate(&url).await.unwrap();
    assert_eq!((report.from, report.to), (SCHEMA_VERSION, SCHEMA_VERSION));
    assert!(report.applied.is_empty(), "{report:?}");
}

#[tokio::test]
async fn migrate_reports_the_steps_it_applied() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let report = PostgresStore::migrate(&url).await.unwrap();
    assert_eq!((report.from, report.to), (0, SCHEMA_VERSION));
    assert_eq!(report.applied.len() as i64, SCHEMA_VERSION);
    PostgresStore::open_existing(&url)
        .await
        .unwrap()
        .health()
        .await
        .unwrap();
}

#[tokio::test]
async fn a_read_only_open_of_an_unmigrated_database_creates_nothing() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, guard) = support::fresh_schema(&base);
    let err = PostgresStore::open_existing(&url).await.unwrap_err();
    assert!(matches!(err, Error::NotFound { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("sequential-ecosystem migrate") && text.contains(&guard.schema),
        "{text}"
    );
    assert!(
        !schema_exists(&base, &guard.schema).await,
        "a read-only open created the schema"
    );
}

#[tokio::test]
async fn a_schema_written_by_a_newer_version_is_refused_untouched() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, guard) = support::fresh_schema(&base);
    PostgresStore::migrate(&url).await.unwrap();
    let newer = SCHEMA_VERSION + 1;
    let mut conn = support::connect(&base).await;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {}.sequential_migrations VALUES ($1, 'from the future', 0, 'a newer build')",
        guard.schema
    )))
    .bind(newer)
    .execute(&mut conn)
    .await
    .unwrap();
    let before = migrations_rows(&base, &guard.schema).await;
    for err in [
        PostgresStore::open(&url).await.unwrap_err(),
        PostgresStore::open_existing(&url).await.unwrap_err(),
        PostgresStore::migrate(&url).await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("schema version {newer}")) && text.contains("newer"),
            "{text}"
        );
    }
    assert_eq!(migrations_rows(&base, &guard.schema).await, before);
}

/// A schema as version 1 left it, with runs, journals (JSON text records), signals and a keyed
/// run, is upgraded in place by opening it: everything reads as it was written, old and new
/// journal records follow each other in one run, and idempotency keys still hold.
#[tokio::test]
async fn a_version_1_schema_with_data_is_upgraded_in_place_and_reads_the_same() {
    use sequential_adaptor::{
        Created, Fence, JournalRecord, NewRun, Page, RunFilter, RunId, RunStatus, TaskName,
        VersionSel,
    };
    use serde_json::json;

    let Some(base) = support::server().await else {
        return;
    };
    let (url, guard) = support::fresh_schema(&base);
    let report = PostgresStore::migrate_to(&url, 1).await.unwrap();
    assert_eq!((report.from, report.to), (0, 1));
    let (done, queued) = (RunId::new(), RunId::new());
    let s = &guard.schema;
    // rows as version 1 wrote them (JSON as text, kept verbatim)
    let mut conn = support::connect(&base).await;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        r#"
INSERT INTO {s}.task_versions VALUES ('t', 1, 'h1', '"let x = 1;\u0000"', NULL, '{{"retry":3}}', 1000);
INSERT INTO {s}.runs (id, task, version, status, input, output, error, parent_run, parent_seq,
    idempotency_key, wake_at, waiting_for, lease_owner, lease_token, lease_expires, fence,
    attempt, revision, created_at, updated_at, ended_at, expires_at)
VALUES ('{done}', 't', 1, 'succeeded', '{{"a":1}}', '{{"ok":true}}', NULL, NULL, NULL, 'k1',
        NULL, NULL, NULL, NULL, NULL, 1, 1, 3, 1000, 2000, 2000, NULL),
       ('{queued}', 't', 1, 'queued', '[1,2]', NULL, NULL, NULL, NULL, NULL,
        NULL, NULL, NULL, NULL, NULL, 0, 0, 0, 1001, 1001, NULL, NULL);
INSERT INTO {s}.journal VALUES
    ('{done}', 0, 'run.started', 1100, '{{"input":{{"a":1}},"nul":"\u0000","big":12345678901234567890}}'),
    ('{done}', 1, 'call.completed', 1200, '{{"kind":"fetch","seq":0,"result":{{"ok":{{"status":200}}}}}}'),
    ('{done}', 2, 'run.succeeded', 1300, '{{"output":{{"ok":true}}}}');
INSERT INTO {s}.signals VALUES ('{queued}', 0, 'go', '{{"p":[1,"x"]}}', 1500);
"#
    )))
    .execute(&mut conn)
    .await
    .unwrap();

    let report = PostgresStore::migrate(&url).await.unwrap();
    assert_eq!((report.from, report.to), (1, SCHEMA_VERSION));
    assert_eq!(
        report.applied.iter().map(|a| a.0).collect::<Vec<_>>(),
        (2..=SCHEMA_VERSION).collect::<Vec<_>>()
    );
    let store = PostgresStore::open(&url).await.unwrap();
    let task = TaskName::new("t").unwrap();

    let v = store
        .get_task_version(&task, VersionSel::Exact(1))
        .await
        .unwrap();
    assert_eq!(
        (
            v.code.as_str(),
            v.config.clone(),
            v.graph.clone(),
            v.hash.as_str()
        ),
        ("let x = 1;\u{0}", json!({"retry": 3}), None, "h1")
    );
    let run = store.get_run(done).await.unwrap();
    assert_eq!(
        (
            run.status,
            run.input.clone(),
            run.output.clone(),
            run.idempotency_key.as_deref(),
            (run.fence, run.attempt, run.revision),
            (run.created_at, run.updated_at, run.ended_at),
        ),
        (
            RunStatus::Succeeded,
            json!({"a": 1}),
            Some(json!({"ok": true})),
            Some("k1"),
            (1, 1, 3),
            (1000, 2000, Some(2000)),
        )
    );
    let rec = |seq: u64, kind: &str, at: i64, data: serde_json::Value| JournalRecord {
        run: done,
        seq,
        kind: kind.into(),
        at,
        data,
    };
    let old = vec![
        rec(
            0,
            "run.started",
            1100,
            json!({"input": {"a": 1}, "nul": "\u{0}", "big": 12345678901234567890u64}),
        ),
        rec(
            1,
            "call.completed",
            1200,
            json!({"kind": "fetch", "seq": 0, "result": {"ok": {"status": 200}}}),
        ),
        rec(2, "run.succeeded", 1300, json!({"output": {"ok": true}})),
    ];
    assert_eq!(store.read_journal(done, None, 100).await.unwrap(), old);
    assert_eq!(
        store.read_journal(done, Some(0), 1).await.unwrap(),
        old[1..2].to_vec()
    );
    let signals = store.read_signals(queued, None).await.unwrap();
    assert_eq!(
        signals
            .iter()
            .map(|s| (s.seq, s.name.as_str(), s.payload.clone(), s.at))
            .collect::<Vec<_>>(),
        vec![(0, "go", json!({"p": [1, "x"]}), 1500)]
    );
    let listed = store
        .list_runs(&RunFilter::default(), Page::first(10))
        .await
        .unwrap();
    let mut ids: Vec<RunId> = listed.runs.iter().map(|r| r.id).collect();
    ids.sort();
    let mut want = vec![done, queued];
    want.sort();
    assert_eq!(ids, want);

    // records written now follow the old ones, and a retried append compares with both
    let new = vec![rec(3, "log", 1400, json!({"message": "after the upgrade"}))];
    store.append(done, &new, Fence::None).await.unwrap();
    store.append(done, &old[2..], Fence::None).await.unwrap();
    store.append(done, &new, Fence::None).await.unwrap();
    let mut all = old.clone();
    all.extend(new);
    assert_eq!(store.read_journal(done, None, 100).await.unwrap(), all);
    assert!(
        store
            .append(done, &[rec(2, "run.failed", 1, json!({}))], Fence::None)
            .await
            .is_err(),
        "an old record is compared as it was written"
    );

    // the idempotency key written before the upgrade still finds its run, and still refuses
    // other input
    let again = NewRun {
        idempotency_key: Some("k1".into()),
        ..NewRun::new(task.clone(), 1, json!({"a": 1}))
    };
    match store.create_run(again.clone()).await.unwrap() {
        Created::Existing(r) => assert_eq!(r.id, done),
        other => panic!("expected the existing run, got {other:?}"),
    }
    let other = NewRun {
        input: json!({"a": 2}),
        ..again
    };
    let err = store.create_run(other).await.unwrap_err();
    assert!(matches!(err, Error::Conflict { .. }), "{err:?}");
    // and the queued run is claimable as before
    let claims = store
        .claim(&sequential_adaptor::ClaimRequest {
            worker: "w".into(),
            now: 5000,
            lease_ms: 1000,
            limit: 10,
        })
        .await
        .unwrap();
    assert_eq!(
        claims
            .iter()
            .map(|c| (c.run.id, c.token))
            .collect::<Vec<_>>(),
        vec![(queued, 1)]
    );
}
