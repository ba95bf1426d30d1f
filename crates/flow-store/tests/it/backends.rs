//! Every backend runs the one conformance suite.

use std::sync::Arc;
use std::time::Duration;

use sequential_flow_store::conformance::Harness;
use sequential_flow_store::{
    FolderTaskStore, MemoryTaskStore, PostgresTaskStore, RedisTaskStore, SqliteTaskStore, TaskStore,
};

pub const PG_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";
pub const REDIS_DEFAULT: &str = "redis://127.0.0.1:6379";

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// The PostgreSQL server's URL, or a skip line (a panic under `REQUIRE_POSTGRES=1`).
pub async fn pg_server() -> Option<String> {
    let url = env_or("DATABASE_URL_TEST", PG_DEFAULT);
    match PostgresTaskStore::open(&url).await {
        Ok(_) => Some(url),
        Err(e) => skip("REQUIRE_POSTGRES", &format!("no PostgreSQL server: {e}")),
    }
}

/// The Redis server's URL, or a skip line (a panic under `REQUIRE_REDIS=1`).
pub async fn redis_server() -> Option<String> {
    let url = env_or("REDIS_URL_TEST", REDIS_DEFAULT);
    match RedisTaskStore::open(&url).await {
        Ok(_) => Some(url),
        Err(e) => skip("REQUIRE_REDIS", &format!("no Redis server: {e}")),
    }
}

fn skip<T>(var: &str, why: &str) -> Option<T> {
    if std::env::var(var).is_ok_and(|v| v == "1") {
        panic!("{var}=1 but {why}");
    }
    println!("skipped: {why}");
    None
}

mod memory {
    use super::*;

    async fn make() -> Option<Harness> {
        Some(Harness {
            backend: Arc::new(MemoryTaskStore::new()),
            reopen: None,
            guard: Box::new(()),
        })
    }

    sequential_flow_store::task_store_tests!(make);
}

mod folder {
    use super::*;

    async fn make() -> Option<Harness> {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("flow");
        let backend: Arc<dyn TaskStore> = Arc::new(FolderTaskStore::open(&root).unwrap());
        Some(Harness {
            backend,
            reopen: Some(Box::new(move || {
                let root = root.clone();
                Box::pin(async move {
                    Arc::new(FolderTaskStore::open(&root).unwrap()) as Arc<dyn TaskStore>
                })
            })),
            guard: Box::new(dir),
        })
    }

    sequential_flow_store::task_store_tests!(make);
}

mod sqlite {
    use super::*;

    async fn make() -> Option<Harness> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow.db");
        let backend: Arc<dyn TaskStore> = Arc::new(SqliteTaskStore::open(&path).unwrap());
        Some(Harness {
            backend,
            reopen: Some(Box::new(move || {
                let path = path.clone();
                Box::pin(async move {
                    Arc::new(SqliteTaskStore::open(&path).unwrap()) as Arc<dyn TaskStore>
                })
            })),
            guard: Box::new(dir),
        })
    }

    sequential_flow_store::task_store_tests!(make);
}

mod postgres {
    use super::*;

    /// Drops its schema when dropped.
    struct SchemaGuard {
        base: String,
        schema: String,
    }

    impl Drop for SchemaGuard {
        fn drop(&mut self) {
            let (base, schema) = (self.base.clone(), self.schema.clone());
            // Drop may run inside a runtime: use a thread with its own
            let _ = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    use sqlx::Connection;
                    let mut conn = sqlx::PgConnection::connect(&base).await?;
                    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await?;
                    conn.close().await
                })
            })
            .join();
        }
    }

    async fn make() -> Option<Harness> {
        let base = pg_server().await?;
        let schema = format!("flow_it_{}", uuid::Uuid::now_v7().simple());
        let url = format!("{base}?schema={schema}");
        let backend: Arc<dyn TaskStore> = Arc::new(PostgresTaskStore::open(&url).await.unwrap());
        Some(Harness {
            backend,
            reopen: Some(Box::new(move || {
                let url = url.clone();
                Box::pin(async move {
                    Arc::new(PostgresTaskStore::open(&url).await.unwrap()) as Arc<dyn TaskStore>
                })
            })),
            guard: Box::new(SchemaGuard { base, schema }),
        })
    }

    sequential_flow_store::task_store_tests!(make);
}

mod redis {
    use super::*;

    /// Deletes its key prefix when dropped.
    struct PrefixGuard {
        url: String,
        prefix: String,
    }

    impl Drop for PrefixGuard {
        fn drop(&mut self) {
            let Ok(client) = ::redis::Client::open(self.url.as_str()) else {
                return;
            };
            let Ok(mut conn) = client.get_connection_with_timeout(Duration::from_secs(2)) else {
                return;
            };
            let keys: Vec<String> = ::redis::cmd("KEYS")
                .arg(format!("{}*", self.prefix))
                .query(&mut conn)
                .unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = ::redis::cmd("DEL").arg(&keys).query(&mut conn);
            }
        }
    }

    async fn make() -> Option<Harness> {
        let base = redis_server().await?;
        let prefix = format!("flow-it-{}:", uuid::Uuid::now_v7().simple());
        let url = format!("{base}?prefix={prefix}");
        let backend: Arc<dyn TaskStore> = Arc::new(RedisTaskStore::open(&url).await.unwrap());
        Some(Harness {
            backend,
            reopen: Some(Box::new(move || {
                let url = url.clone();
                Box::pin(async move {
                    Arc::new(RedisTaskStore::open(&url).await.unwrap()) as Arc<dyn TaskStore>
                })
            })),
            guard: Box::new(PrefixGuard { url: base, prefix }),
        })
    }

    sequential_flow_store::task_store_tests!(make);

    /// Redis drops an expired task itself (TTL by key expiry); the tombstone written beside it
    /// still says when it expired.
    #[test]
    fn redis_expires_keys_itself() {
        sequential_flow_store::conformance::run_case(async {
            let Some(h) = make().await else { return };
            let store = sequential_flow_store::FlowStore::new(h.backend.clone());
            let t = store
                .execute(
                    sequential_flow_store::ExecuteRequest::new(
                        Some("k".into()),
                        "fetch('https://x.test/')",
                        serde_json::Value::Null,
                    ),
                    &sequential_flow_store::SaveOptions::with_ttl(Duration::from_millis(300)),
                )
                .await
                .unwrap();
            // wait for Redis (not us) to expire the key: poll its state, bounded
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            loop {
                match h.backend.get("k").await.unwrap() {
                    Some(sequential_flow_store::Record::Gone(g)) => {
                        assert_eq!(g.at, t.expires_at);
                        break;
                    }
                    _ if std::time::Instant::now() > deadline => panic!("Redis kept the key"),
                    _ => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
            assert!(matches!(
                store.get("k").await,
                Err(sequential_flow_store::Error::Expired { .. })
            ));
        });
    }
}
