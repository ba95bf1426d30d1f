//! Opening a database: identity and version checks, connection settings, schema migrations,
//! and how stored values are encoded ([`codec`]).

pub(crate) mod codec;

use std::path::Path;
use std::time::Duration;

use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use sequential_adaptor::{Error, Result, now_millis};

/// `PRAGMA application_id` of a sequential-ecosystem database ("SEQE").
pub(crate) const APPLICATION_ID: i32 = 0x5345_5145;

/// How long a connection waits for another process's lock before giving up.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// One schema step. Steps are applied in order, each in the migration transaction, and
/// recorded in `schema_migrations`; `PRAGMA user_version` holds the last one applied.
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "task versions, runs, journal, signals",
        sql: r#"
CREATE TABLE schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  INTEGER NOT NULL
);
CREATE TABLE task_versions (
    task       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    code       TEXT NOT NULL,
    graph      TEXT,
    config     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (task, version),
    UNIQUE (task, hash)
);
CREATE TABLE runs (
    id              BLOB PRIMARY KEY,
    task            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    status          TEXT NOT NULL,
    wake_at         INTEGER,
    lease_expires   INTEGER,
    fence           INTEGER NOT NULL,
    revision        INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    body            TEXT NOT NULL
);
CREATE INDEX runs_by_task ON runs (task, id);
CREATE INDEX runs_by_status ON runs (status, id);
CREATE INDEX runs_by_wake ON runs (status, wake_at);
CREATE INDEX runs_by_lease ON runs (status, lease_expires);
CREATE TABLE journal (
    run  BLOB NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq  INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at   INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run, seq)
);
CREATE TABLE signals (
    run     BLOB NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    name    TEXT NOT NULL,
    payload TEXT NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (run, seq)
);
"#,
    },
    Migration {
        version: 2,
        description: "journal without rowid, record kinds as integers, timer and lease indexes of the runs they serve",
        sql: MIGRATION_2,
    },
];

/// Migration 2, for storage per run (a finished 10-step run: 5.2 KiB → about 2.3 KiB, with the
/// binary values of [`codec`]):
/// - the journal is keyed by `(run, seq)` itself (`WITHOUT ROWID`): no separate index holding
///   every record's 16-byte run id a second time;
/// - `kind` holds the integer of a kind in [`codec::KINDS`] (any other kind as text), and
///   `kind` and `data` have no type affinity, so a value is stored exactly as written (an
///   integer, JSON text, a binary value);
/// - the timer and lease indexes hold only the runs that wait or run (`INDEXED BY` in the
///   claim queries), not one entry per finished run.
///
/// Records keep their data as written (JSON text before version 2 stays JSON text).
const MIGRATION_2: &str = r#"
CREATE TABLE journal_v2 (
    run  BLOB NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq  INTEGER NOT NULL,
    kind NOT NULL,
    at   INTEGER NOT NULL,
    data NOT NULL,
    PRIMARY KEY (run, seq)
) WITHOUT ROWID;
INSERT INTO journal_v2 (run, seq, kind, at, data)
SELECT run, seq,
       CASE kind
           WHEN 'run.started' THEN 1
           WHEN 'call.requested' THEN 2
           WHEN 'call.completed' THEN 3
           WHEN 'log' THEN 4
           WHEN 'timer.armed' THEN 5
           WHEN 'child.started' THEN 6
           WHEN 'run.paused' THEN 7
           WHEN 'run.succeeded' THEN 8
           WHEN 'run.failed' THEN 9
           WHEN 'run.cancelled' THEN 10
           ELSE kind
       END,
       at, data
FROM journal;
DROP TABLE journal;
ALTER TABLE journal_v2 RENAME TO journal;
DROP INDEX runs_by_wake;
DROP INDEX runs_by_lease;
CREATE INDEX runs_by_wake ON runs (wake_at, id) WHERE status = 'waiting';
CREATE INDEX runs_by_lease ON runs (lease_expires, id) WHERE status IN ('running', 'stopping');
"#;

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// Maps a driver error to [`Error`], naming `path` and what was being done.
pub(crate) fn db_err(path: &str, doing: &str, e: rusqlite::Error) -> Error {
    if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) {
        return not_a_database(path, &e.to_string());
    }
    Error::backend(format!("SQLite {path}: {doing}"), e)
}

fn not_a_database(path: &str, why: &str) -> Error {
    Error::invalid(
        format!("SQLite file {path:?} ({why})"),
        "a SQLite database written by sequential-ecosystem, an empty file, or a path that does not exist yet",
    )
}

/// Refuses a path that exists but is not a regular file (a directory, a socket).
pub(crate) fn check_path(path: &Path, shown: &str) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => Err(Error::invalid(
            format!("SQLite path {shown:?} (not a regular file)"),
            "a SQLite database file or a path that does not exist yet",
        )),
        _ => Ok(()),
    }
}

fn read_identity(conn: &Connection) -> rusqlite::Result<(i32, i64, i64)> {
    let app_id: i32 = conn.query_row("PRAGMA application_id", [], |r| r.get(0))?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let tables: i64 = conn.query_row(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%'",
        [],
        |r| r.get(0),
    )?;
    Ok((app_id, version, tables))
}

fn check_identity(shown: &str, app_id: i32, version: i64, tables: i64) -> Result<()> {
    if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
        return Err(not_a_database(
            shown,
            &format!(
                "a SQLite database of another application: application_id {app_id:#x}, {tables} tables"
            ),
        ));
    }
    if version > SCHEMA_VERSION {
        return Err(Error::unsupported(format!(
            "SQLite database {shown:?} has schema version {version}, written by a newer \
             sequential-ecosystem; this build understands schema versions up to {SCHEMA_VERSION}. \
             Upgrade sequential-ecosystem to open it (the file was not changed)"
        )));
    }
    Ok(())
}

/// SQLite's busy handler: whether to try again, after a pause, for the write lock another
/// process holds (`attempt` counts the tries so far, from 0), until [`BUSY_TIMEOUT`].
///
/// SQLite's own handler (`busy_timeout`) sleeps 1, 2, 5, 10… ms between tries, while a
/// writer of this crate holds the lock for one transaction, a fraction of a millisecond: with
/// a `serve` or a load client starting runs beside a worker, each collision stalled the
/// writer, and every run whose records it carried, for a millisecond or more (the engine's
/// steady stream ran at 80% of the machine's ceiling; with these pauses, 90%).
fn wait_for_lock(attempt: i32) -> bool {
    let (pause, waited) = busy_pause(attempt.max(0) as u64);
    if waited >= BUSY_TIMEOUT {
        return false;
    }
    std::thread::sleep(pause);
    true
}

/// The first pause between tries for a lock, in microseconds: about one transaction.
const FIRST_PAUSE_US: u64 = 100;
/// The longest pause between tries.
const LONGEST_PAUSE_US: u64 = 2_000;

/// The pause before try `attempt + 1` (100 µs twice, 200 µs twice, … doubling up to 2 ms),
/// and the time the tries before it spent pausing.
fn busy_pause(attempt: u64) -> (Duration, Duration) {
    let pause = |i: u64| (FIRST_PAUSE_US << (i / 2).min(16)).min(LONGEST_PAUSE_US);
    let growing = (0..).find(|&i| pause(i) == LONGEST_PAUSE_US).unwrap_or(0);
    let waited: u64 = (0..attempt.min(growing)).map(pause).sum::<u64>()
        + attempt.saturating_sub(growing) * LONGEST_PAUSE_US;
    (
        Duration::from_micros(pause(attempt)),
        Duration::from_micros(waited),
    )
}

/// Installs the busy handler ([`wait_for_lock`]) that every connection waits with.
pub(crate) fn keep_waiting_for_locks(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_handler(Some(wait_for_lock))
}

/// Settings every connection gets.
pub(crate) fn configure(conn: &Connection, shown: &str) -> Result<()> {
    keep_waiting_for_locks(conn).map_err(|e| db_err(shown, "setting the busy handler", e))?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY;",
    )
    .map_err(|e| db_err(shown, "setting pragmas", e))?;
    // Plans that never depend on bound values: without this, a statement with `LIMIT ?N` (the
    // journal read, the claim queries, the runs list) is marked to be compiled again whenever
    // ?N is bound, so the statement cache saved nothing — every execution parsed and planned
    // the SQL anew (16% of the server's CPU under `GET /runs/:id` of an active run).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .map_err(|e| db_err(shown, "setting the query planner stability guarantee", e))?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

/// Opens the writer connection: WAL, `synchronous=FULL`, migrations applied.
pub(crate) fn open_writer(path: Option<&Path>, shown: &str) -> Result<Connection> {
    let conn = match path {
        Some(p) => Connection::open_with_flags(
            p,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        ),
        None => Connection::open_in_memory(),
    }
    .map_err(|e| db_err(shown, "opening", e))?;
    configure(&conn, shown)?;
    // Read-only checks first: a foreign file or a newer schema is refused before anything is
    // written (not even the WAL switch, which rewrites the header).
    let (app_id, version, tables) =
        read_identity(&conn).map_err(|e| db_err(shown, "reading the schema version", e))?;
    check_identity(shown, app_id, version, tables)?;
    if path.is_some() {
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(|e| db_err(shown, "switching to WAL", e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::unsupported(format!(
                "SQLite database {shown:?} refused WAL mode (journal_mode is {mode})"
            )));
        }
    }
    migrate(&conn, shown)?;
    Ok(conn)
}

/// Applies the missing migrations in one `BEGIN IMMEDIATE` transaction, so two processes
/// opening a fresh file at once do not both migrate.
fn migrate(conn: &Connection, shown: &str) -> Result<()> {
    let doing = "migrating the schema";
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| db_err(shown, doing, e))?;
    let result = (|| {
        let (app_id, version, tables) = read_identity(conn).map_err(|e| db_err(shown, doing, e))?;
        check_identity(shown, app_id, version, tables)?;
        for m in MIGRATIONS.iter().filter(|m| m.version > version) {
            conn.execute_batch(m.sql)
                .map_err(|e| db_err(shown, &format!("applying migration {}", m.version), e))?;
            conn.execute(
                "INSERT INTO schema_migrations (version, description, applied_at) VALUES (?1, ?2, ?3)",
                rusqlite::params![m.version, m.description, now_millis()],
            )
            .map_err(|e| db_err(shown, doing, e))?;
            tracing::info!(db = shown, version = m.version, "applied SQLite migration");
        }
        if version < SCHEMA_VERSION {
            conn.execute_batch(&format!(
                "PRAGMA user_version = {SCHEMA_VERSION}; PRAGMA application_id = {APPLICATION_ID};"
            ))
            .map_err(|e| db_err(shown, doing, e))?;
        }
        Ok(())
    })();
    match result {
        Ok(()) => conn
            .execute_batch("COMMIT")
            .map_err(|e| db_err(shown, "committing the migration", e)),
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Opens a read connection on a file database (WAL lets it read while the writer writes).
pub(crate) fn open_reader(path: &Path, shown: &str) -> Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db_err(shown, "opening a read connection", e))?;
    configure(&conn, shown)?;
    conn.execute_batch("PRAGMA query_only = ON")
        .map_err(|e| db_err(shown, "setting query_only", e))?;
    Ok(conn)
}

/// The highest schema version recorded in `schema_migrations` (for `health`).
pub(crate) fn recorded_version(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.query_row("SELECT max(version) FROM schema_migrations", [], |r| {
        r.get(0)
    })
    .optional()
    .map(Option::flatten)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_2_writes_the_codes_of_codec_kinds() {
        for (i, kind) in codec::KINDS.iter().enumerate() {
            let when = format!("WHEN '{kind}' THEN {}", i + 1);
            assert!(MIGRATION_2.contains(&when), "{when}");
            assert_eq!(codec::kind_code(kind), Some(i as i64 + 1));
            assert_eq!(codec::kind_name(i as i64 + 1), Some(*kind));
        }
        assert_eq!(MIGRATION_2.matches("WHEN '").count(), codec::KINDS.len());
        assert_eq!(
            (codec::kind_code("run.other"), codec::kind_name(0)),
            (None, None)
        );
        assert_eq!(codec::kind_name(11), None);
    }

    #[test]
    fn busy_pauses_start_near_one_transaction_and_end_at_the_timeout() {
        let us = Duration::from_micros;
        let pauses: Vec<Duration> = (0..8).map(|a| busy_pause(a).0).collect();
        assert_eq!(
            pauses,
            [100, 100, 200, 200, 400, 400, 800, 800].map(us).to_vec()
        );
        // each pause is added to the wait of the next try
        for a in 0..200 {
            let (pause, waited) = busy_pause(a);
            assert_eq!(busy_pause(a + 1).1, waited + pause, "attempt {a}");
            assert!(pause <= us(LONGEST_PAUSE_US));
        }
        // the handler gives up once BUSY_TIMEOUT has been spent pausing, not before
        let last = (0..).find(|&a| busy_pause(a).1 >= BUSY_TIMEOUT).unwrap();
        assert!(busy_pause(last - 1).1 < BUSY_TIMEOUT);
        assert!(busy_pause(last).1 < BUSY_TIMEOUT + us(LONGEST_PAUSE_US));
        assert!(!wait_for_lock(last as i32));
    }
}
