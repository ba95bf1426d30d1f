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
