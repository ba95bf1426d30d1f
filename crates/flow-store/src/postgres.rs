//! PostgreSQL: the table `tasks` in a schema of its own (`sequential_flow` unless the URL says
//! `?schema=NAME`), created on the first write; the record is `jsonb`, the expiry index a
//! b-tree on `due_at`.

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};
use sqlx::{AssertSqlSafe, Connection};
use tokio::sync::OnceCell;

use crate::backend::TaskStore;
use crate::error::{Error, Result};
use crate::open::redact;
use crate::task::{Record, Task};

/// SQL text naming our schema: a validated SQL name (see `valid_schema`), never user data.
macro_rules! sql {
    ($($t:tt)*) => {
        AssertSqlSafe(format!($($t)*))
    };
}

/// The schema a store URL without `?schema=` uses.
pub const DEFAULT_PG_SCHEMA: &str = "sequential_flow";

/// The PostgreSQL backend.
#[derive(Debug)]
pub struct PostgresTaskStore {
    pool: PgPool,
    schema: String,
    url: String,
    created: OnceCell<()>,
}

fn valid_schema(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Splits our `schema` parameter off `url`.
fn split_schema(url: &str) -> Result<(String, String)> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), DEFAULT_PG_SCHEMA.to_string()));
    };
    let mut schema = DEFAULT_PG_SCHEMA.to_string();
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("schema", v)) => schema = v.to_string(),
            _ => rest.push(pair),
        }
    }
    if !valid_schema(&schema) {
        return Err(Error::InvalidUrl {
            url: redact(url),
            expected: format!("?schema= a lowercase SQL name (letters, digits, _; not {schema:?})"),
        });
    }
    let base = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((base, schema))
}

impl PostgresTaskStore {
    /// Connects to `url` (refusing at once when the server cannot be reached); the schema
    /// and table are created on the first write.
    pub async fn open(url: &str) -> Result<PostgresTaskStore> {
        let (conn_url, schema) = split_schema(url)?;
        let shown = redact(url);
        let unreachable = |detail: String| Error::Unreachable {
            url: shown.clone(),
            detail,
        };
        // one direct connection first: the pool would only say that it timed out
        let probe = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            sqlx::PgConnection::connect(&conn_url),
        )
        .await
        .map_err(|_| unreachable("no answer within 5 s".into()))?
        .map_err(|e| unreachable(e.to_string()))?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .connect(&conn_url)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(PostgresTaskStore {
            pool,
            schema,
            url: shown,
            created: OnceCell::new(),
        })
    }

    /// The schema the table lives in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    fn err(&self, doing: String, e: sqlx::Error) -> Error {
        Error::backend(&self.url, doing, e)
    }

    async fn ensure(&self) -> Result<()> {
        self.created
            .get_or_try_init(|| async {
                let s = &self.schema;
                let ddl = [
                    format!("CREATE SCHEMA IF NOT EXISTS {s}"),
                    format!(
                        "CREATE TABLE IF NOT EXISTS {s}.tasks (
                            id TEXT PRIMARY KEY,
                            record JSONB NOT NULL,
                            is_task BOOLEAN NOT NULL,
                            updated_at BIGINT NOT NULL,
                            expires_at BIGINT NOT NULL,
                            due_at BIGINT NOT NULL)"
                    ),
                    format!("CREATE INDEX IF NOT EXISTS tasks_due ON {s}.tasks (due_at)"),
                    format!(
                        "CREATE INDEX IF NOT EXISTS tasks_live ON {s}.tasks (is_task, expires_at)"
                    ),
                ];
                let mut tx = self
                    .pool
                    .begin()
                    .await
                    .map_err(|e| self.err("creating the tasks table".into(), e))?;
                // concurrent first writers: one creates, the others wait on the lock
                sqlx::query("SELECT pg_advisory_xact_lock(hashtext($1))")
                    .bind(format!("sequential-flow-store:{s}"))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err("creating the tasks table".into(), e))?;
                for stmt in ddl {
                    sqlx::query(AssertSqlSafe(stmt))
                        .execute(&mut *tx)
                        .await
                        .map_err(|e| self.err("creating the tasks table".into(), e))?;
                }
                tx.commit()
                    .await
                    .map_err(|e| self.err("creating the tasks table".into(), e))
            })
            .await
            .map(drop)
    }
}

/// Whether `e` says the schema or table does not exist yet (nothing was ever written).
fn is_missing_table(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "42P01" || c == "3F000")
}

#[async_trait]
impl TaskStore for PostgresTaskStore {
    fn url(&self) -> &str {
        &self.url
    }

    async fn put(&self, record: &Record) -> Result<()> {
        self.ensure().await?;
        let (is_task, updated, expires) = match record {
            Record::Task(t) => (true, t.updated_at, t.expires_at),
            Record::Gone(g) => (false, g.at, g.at),
        };
        let s = &self.schema;
        sqlx::query(sql!(
            "INSERT INTO {s}.tasks (id, record, is_task, updated_at, expires_at, due_at)
             VALUES ($1, $2::jsonb, $3, $4, $5, $6)
             ON CONFLICT (id) DO UPDATE SET record = EXCLUDED.record, is_task = EXCLUDED.is_task,
               updated_at = EXCLUDED.updated_at, expires_at = EXCLUDED.expires_at,
               due_at = EXCLUDED.due_at"
        ))
        .bind(record.id())
        .bind(record.encode())
        .bind(is_task)
        .bind(updated)
        .bind(expires)
        .bind(record.due_at())
        .execute(&self.pool)
        .await
        .map_err(|e| self.err(format!("saving task {:?}", record.id()), e))?;
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Record>> {
        let s = &self.schema;
        let row: Option<(String,)> =
            match sqlx::query_as(sql!("SELECT record::text FROM {s}.tasks WHERE id = $1"))
                .bind(id)
                .fetch_optional(&self.pool)
                .await
            {
                Ok(r) => r,
                Err(e) if is_missing_table(&e) => None,
                Err(e) => return Err(self.err(format!("loading task {id:?}"), e)),
            };
        row.map(|(t,)| Record::decode(&t, id, &self.url))
            .transpose()
    }

    async fn remove(&self, id: &str) -> Result<bool> {
        let s = &self.schema;
        match sqlx::query(sql!("DELETE FROM {s}.tasks WHERE id = $1"))
            .bind(id)
            .execute(&self.pool)
            .await
        {
            Ok(r) => Ok(r.rows_affected() > 0),
            Err(e) if is_missing_table(&e) => Ok(false),
            Err(e) => Err(self.err(format!("removing task {id:?}"), e)),
        }
    }

    async fn list(&self, now: i64, limit: usize) -> Result<Vec<Task>> {
        let s = &self.schema;
        let rows: Vec<(String, String)> = match sqlx::query_as(sql!(
            "SELECT id, record::text FROM {s}.tasks WHERE is_task AND expires_at > $1
             ORDER BY updated_at DESC, id LIMIT $2"
        ))
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        {
            Ok(r) => r,
            Err(e) if is_missing_table(&e) => Vec::new(),
            Err(e) => return Err(self.err("listing tasks".into(), e)),
        };
        rows.into_iter()
            .filter_map(|(id, text)| match Record::decode(&text, &id, &self.url) {
                Ok(Record::Task(t)) => Some(Ok(t)),
                Ok(Record::Gone(_)) => None,
                Err(e) => Some(Err(e)),
            })
            .collect()
    }

    async fn due(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let s = &self.schema;
        let rows: Vec<(String,)> = match sqlx::query_as(sql!(
            "SELECT id FROM {s}.tasks WHERE due_at <= $1 ORDER BY due_at LIMIT $2"
        ))
        .bind(now)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        {
            Ok(r) => r,
            Err(e) if is_missing_table(&e) => Vec::new(),
            Err(e) => return Err(self.err("reading the expiry index".into(), e)),
        };
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }
}
