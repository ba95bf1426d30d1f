//! SQLite: one table `flow_tasks` (WAL, `synchronous=FULL`: a returned save is on disk), the
//! expiry index an SQL index on `due_at`.

use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};

use crate::backend::TaskStore;
use crate::error::{Error, Result};
use crate::folder::blocking;
use crate::task::{Record, Task};

/// The schema version (`PRAGMA user_version`) this build writes.
pub const SQLITE_SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS flow_tasks (
    id TEXT PRIMARY KEY,
    record TEXT NOT NULL,
    is_task INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    due_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS flow_tasks_due ON flow_tasks (due_at);
CREATE INDEX IF NOT EXISTS flow_tasks_live ON flow_tasks (is_task, expires_at);
";

/// The SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteTaskStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    conn: Mutex<Connection>,
    url: String,
}

impl SqliteTaskStore {
    /// Opens (creating) the database file at `path`.
    pub fn open(path: &Path) -> Result<SqliteTaskStore> {
        let url = format!("sqlite:{}", path.display());
        let unreachable = |e: &dyn std::fmt::Display| Error::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        };
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            sequential_support::fs::ensure_dir(dir).map_err(|e| unreachable(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| unreachable(&e))?;
        let setup = || -> rusqlite::Result<i64> {
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
            if version <= SQLITE_SCHEMA_VERSION {
                conn.execute_batch(SCHEMA)?;
                conn.pragma_update(None, "user_version", SQLITE_SCHEMA_VERSION)?;
            }
            Ok(version)
        };
        let version = setup().map_err(|e| unreachable(&e))?;
        if version > SQLITE_SCHEMA_VERSION {
            return Err(Error::InvalidUrl {
                url,
                expected: format!(
                    "a task store of schema version {SQLITE_SCHEMA_VERSION} or older (this file \
                     has {version}: written by a newer build)"
                ),
            });
        }
        Ok(SqliteTaskStore {
            inner: Arc::new(Inner {
                conn: Mutex::new(conn),
                url,
            }),
        })
    }
}

impl Inner {
    fn with<T>(
        &self,
        doing: String,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(|e| Error::backend(&self.url, doing, e))
    }
}

#[async_trait]
impl TaskStore for SqliteTaskStore {
    fn url(&self) -> &str {
        &self.inner.url
    }

    async fn put(&self, record: &Record) -> Result<()> {
        let inner = self.inner.clone();
        let (id, text, due) = (record.id().to_string(), record.encode(), record.due_at());
        let (is_task, updated, expires) = match record {
            Record::Task(t) => (1, t.updated_at, t.expires_at),
            Record::Gone(g) => (0, g.at, g.at),
        };
        blocking(&self.inner.url, move || {
            inner.with(format!("saving task {id:?}"), |c| {
                c.prepare_cached(
                    "INSERT INTO flow_tasks (id, record, is_task, updated_at, expires_at, due_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT (id) DO UPDATE SET record = ?2, is_task = ?3, updated_at = ?4,
                       expires_at = ?5, due_at = ?6",
                )?
                .execute(params![id, text, is_task, updated, expires, due])
                .map(drop)
            })
        })
        .await
    }

    async fn get(&self, id: &str) -> Result<Option<Record>> {
        let inner = self.inner.clone();
        let key = id.to_string();
        let text = blocking(&self.inner.url, move || {
            inner.with(format!("loading task {key:?}"), |c| {
                c.prepare_cached("SELECT record FROM flow_tasks WHERE id = ?1")?
                    .query_row([&key], |r| r.get::<_, String>(0))
                    .optional()
            })
        })
        .await?;
        text.map(|t| Record::decode(&t, id, &self.inner.url))
            .transpose()
    }

    async fn remove(&self, id: &str) -> Result<bool> {
        let inner = self.inner.clone();
        let id = id.to_string();
        blocking(&self.inner.url, move || {
            inner.with(format!("removing task {id:?}"), |c| {
                c.prepare_cached("DELETE FROM flow_tasks WHERE id = ?1")?
                    .execute([&id])
                    .map(|n| n > 0)
            })
        })
        .await
    }

    async fn list(&self, now: i64, limit: usize) -> Result<Vec<Task>> {
        let inner = self.inner.clone();
        let url = self.inner.url.clone();
        let rows = blocking(&self.inner.url, move || {
            inner.with("listing tasks".into(), |c| {
                c.prepare_cached(
                    "SELECT id, record FROM flow_tasks WHERE is_task = 1 AND expires_at > ?1
                     ORDER BY updated_at DESC, id LIMIT ?2",
                )?
                .query_map(params![now, limit as i64], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })?
                .collect::<rusqlite::Result<Vec<_>>>()
            })
        })
        .await?;
        rows.into_iter()
            .filter_map(|(id, text)| match Record::decode(&text, &id, &url) {
                Ok(Record::Task(t)) => Some(Ok(t)),
                Ok(Record::Gone(_)) => None,
                Err(e) => Some(Err(e)),
            })
            .collect()
    }

    async fn due(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let inner = self.inner.clone();
        blocking(&self.inner.url, move || {
            inner.with("reading the expiry index".into(), |c| {
                c.prepare_cached(
                    "SELECT id FROM flow_tasks WHERE due_at <= ?1 ORDER BY due_at LIMIT ?2",
                )?
                .query_map(params![now, limit as i64], |r| r.get::<_, String>(0))?
                .collect()
            })
        })
        .await
    }
}
