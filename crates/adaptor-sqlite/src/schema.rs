//! Opening a database: identity and version checks, connection settings, schema migrations,
//! and how stored values are encoded ([`codec`]).

pub(crate) mod codec;

use std::path::Path;
use std::time::Duration;

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

const MIGRATIONS: &[Migration] = &[Migration {
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
}];

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

/// Settings every connection gets.
pub(crate) fn configure(conn: &Connection, shown: &str) -> Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(|e| db_err(shown, "setting busy_timeout", e))?;
    conn.execute_batch(
        "PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL; PRAGMA temp_store = MEMORY;",
    )
    .map_err(|e| db_err(shown, "setting pragmas", e))?;
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
