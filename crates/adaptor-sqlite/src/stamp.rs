//! [`ChangeStamp`]: a cheap check that nothing was committed to a database file since a
//! previous look, by this process or any other.

use std::path::Path;
use std::sync::Mutex;

use rusqlite::Connection;
use sequential_adaptor::Result;

use crate::schema;

/// `PRAGMA data_version` on a read connection of its own.
///
/// [`ChangeStamp::now`] returns a number that differs from the one the previous call returned
/// whenever any other connection — this process's writer or pooled readers, or another process
/// — committed to the database in between (SQLite documents this for `data_version`; the
/// connection here never writes). So a value derived from reads that *started after* a call
/// returned `n` is still the stored state for as long as later calls return `n`: a server can
/// answer from what it computed instead of reading again, and cannot serve a stale answer.
///
/// Each call is one statement in its own read transaction (no transaction is held between
/// calls, so checkpoints are never held back).
pub struct ChangeStamp {
    conn: Mutex<Connection>,
    db: String,
}

impl std::fmt::Debug for ChangeStamp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChangeStamp")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl ChangeStamp {
    /// Opens a read connection to the database file at `path` for the stamp.
    pub fn open(path: impl AsRef<Path>) -> Result<ChangeStamp> {
        let path = path.as_ref();
        let db = path.display().to_string();
        let conn = schema::open_reader(path, &db)?;
        Ok(ChangeStamp {
            conn: Mutex::new(conn),
            db,
        })
    }

    /// The database's data version as this stamp's connection sees it now (see the type).
    pub fn now(&self) -> Result<u64> {
        // a panic elsewhere cannot leave the connection half-used: one statement per lock
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.prepare_cached("PRAGMA data_version")
            .and_then(|mut s| s.query_row([], |r| r.get::<_, i64>(0)))
            .map(|v| v as u64)
            .map_err(|e| schema::db_err(&self.db, "reading the data version", e))
    }
}
