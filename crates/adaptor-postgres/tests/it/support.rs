//! The server under test, the skip rule, and a fresh schema per test.

use std::time::Duration;

use sqlx::{Connection, PgConnection};

/// The default server: the CI machine's PostgreSQL (trust auth).
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// The server's URL when one answers; otherwise prints one skip line and gives `None` — or
/// panics when `REQUIRE_POSTGRES=1`.
pub async fn server() -> Option<String> {
    let url = std::env::var("DATABASE_URL_TEST")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_URL.to_string());
    let attempt = tokio::time::timeout(Duration::from_secs(5), PgConnection::connect(&url)).await;
    let why = match attempt {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            return Some(url);
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer within 5 s".to_string(),
    };
    if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
        panic!("REQUIRE_POSTGRES=1 but no PostgreSQL server answers at {url}: {why}");
    }
    println!(
        "skipped: no PostgreSQL server at {url} ({why}); set DATABASE_URL_TEST to test against one"
    );
    None
}

/// A fresh schema name: `it_` and a UUID v7 in hex, unique across parallel test processes.
pub fn schema_name() -> String {
    format!("it_{}", uuid::Uuid::now_v7().simple())
}

/// `base` with `schema=NAME` and a small pool added.
pub fn with_schema(base: &str, schema: &str) -> String {
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}schema={schema}&pool_size=5")
}

/// Drops its schema (and everything in it) when dropped.
#[derive(Debug)]
pub struct SchemaGuard {
    pub base: String,
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (base, schema) = (self.base.clone(), self.schema.clone());
        // Drop may run inside a runtime, where blocking on another one is not allowed
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let mut conn = PgConnection::connect(&base).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "DROP SCHEMA IF EXISTS {schema} CASCADE"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test schema {}: {e}", self.schema);
        }
    }
}

/// A URL naming a fresh schema on `base`, and the guard that drops it.
pub fn fresh_schema(base: &str) -> (String, SchemaGuard) {
    let schema = schema_name();
    (
        with_schema(base, &schema),
        SchemaGuard {
            base: base.to_string(),
            schema,
        },
    )
}

/// A plain connection to `base`, for looking at tables directly.
pub async fn connect(base: &str) -> PgConnection {
    PgConnection::connect(base)
        .await
        .expect("connecting to the test server")
}

/// Stores a version of task `name` (code `1`) and returns the task and the version number.
pub async fn task_version(
    store: &dyn sequential_adaptor::StorageAdapter,
    name: &str,
) -> (sequential_adaptor::TaskName, u32) {
    let task = sequential_adaptor::TaskName::new(name).unwrap();
    let stored = store
        .put_task_version(sequential_adaptor::NewTaskVersion {
            task: task.clone(),
            code: "1".into(),
            graph: None,
            config: serde_json::json!({}),
        })
        .await
        .unwrap();
    (task, stored.version.version)
}
