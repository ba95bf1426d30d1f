//! Embedded, versioned migrations: applied in one transaction under an advisory lock, so ten
//! processes opening a fresh database at once apply each step exactly once; a schema written by
//! a newer version is refused before anything is changed.

use sequential_adaptor::{Error, Result, now_millis};
use sqlx::{AssertSqlSafe, Connection, PgConnection, Row};

use crate::errors::op_err;
use crate::url::Location;

/// The channel the tables' triggers notify (payload: the schema name) when a run may have become
/// claimable sooner: a new run, a signal, a timer armed or brought forward, a lease dropped.
pub(crate) const CHANNEL: &str = "sequential_changes";

/// The channel a run's end is notified on (payload: the schema name, a space, the run id), for
/// [`crate::PostgresStore::watch_end`].
pub(crate) const ENDED: &str = "sequential_ended";

/// One schema step, applied in order in the migration transaction and recorded in
/// `sequential_migrations`.
struct Migration {
    version: i64,
    description: &'static str,
    sql: &'static str,
}

/// The steps. Never edit a released step: add the next one.
///
/// `runs.ready_at` is [`sequential_adaptor::rules::runnable_since`] as a generated column (NULL
/// when the run can never become claimable by time alone): claims scan it in order, then check
/// each candidate with the rules. JSON is stored as `json` (kept verbatim; `jsonb` refuses
/// `\u0000` and reorders numbers); the code as a JSON string, because `text` cannot hold NUL.
///
/// Version 2: a journal record's kind and data are written packed into `packed`
/// (`codec::pack`: zstd against a dictionary of the engine's record shapes — a fetch step's two
/// records take about 90 bytes instead of about 300, and `bytea` needs no JSON parse on the
/// server); records written before keep `kind` and `data` and read as before. A run's end is
/// notified on its own channel, naming the run, for `PostgresStore::watch_end`. The idempotency
/// key's unique index holds only runs that have one (it held a NULL entry for every run, and
/// took a new one on each non-HOT update of a run).
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        description: "task versions, runs, journal, signals, change notifications",
        sql: r#"
CREATE TABLE sequential_migrations (
    version     bigint PRIMARY KEY,
    description text NOT NULL,
    applied_at  bigint NOT NULL,
    applied_by  text NOT NULL
);
CREATE TABLE task_versions (
    task       text NOT NULL,
    version    bigint NOT NULL,
    hash       text NOT NULL,
    code       json NOT NULL,
    graph      json,
    config     json NOT NULL,
    created_at bigint NOT NULL,
    PRIMARY KEY (task, version),
    UNIQUE (task, hash)
);
CREATE TABLE runs (
    id              uuid PRIMARY KEY,
    task            text NOT NULL,
    version         bigint NOT NULL,
    status          text NOT NULL CHECK (status IN ('queued', 'running', 'waiting', 'paused',
                        'stopping', 'succeeded', 'failed', 'cancelled')),
    input           json NOT NULL,
    output          json,
    error           json,
    parent_run      uuid,
    parent_seq      bigint,
    idempotency_key text UNIQUE,
    wake_at         bigint,
    waiting_for     text,
    lease_owner     text,
    lease_token     bigint,
    lease_expires   bigint,
    fence           bigint NOT NULL,
    attempt         bigint NOT NULL,
    revision        bigint NOT NULL,
    created_at      bigint NOT NULL,
    updated_at      bigint NOT NULL,
    ended_at        bigint,
    expires_at      bigint,
    ready_at        bigint GENERATED ALWAYS AS (CASE status
                        WHEN 'queued' THEN created_at
                        WHEN 'waiting' THEN wake_at
                        WHEN 'running' THEN coalesce(lease_expires, created_at)
                        WHEN 'stopping' THEN coalesce(lease_expires, created_at)
                    END) STORED,
    CHECK ((lease_owner IS NULL) = (lease_token IS NULL)
       AND (lease_token IS NULL) = (lease_expires IS NULL))
);
CREATE INDEX runs_queued ON runs (ready_at, id) WHERE status = 'queued';
CREATE INDEX runs_due ON runs (ready_at, id) WHERE status IN ('waiting', 'running', 'stopping');
CREATE INDEX runs_by_task ON runs (task, id);
CREATE TABLE journal (
    run  uuid NOT NULL,
    seq  bigint NOT NULL,
    kind text NOT NULL,
    at   bigint NOT NULL,
    data json NOT NULL,
    PRIMARY KEY (run, seq)
);
CREATE TABLE signals (
    run     uuid NOT NULL,
    seq     bigint NOT NULL,
    name    text NOT NULL,
    payload json NOT NULL,
    at      bigint NOT NULL,
    PRIMARY KEY (run, seq)
);
CREATE FUNCTION notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('sequential_changes', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$;
CREATE TRIGGER runs_inserted AFTER INSERT ON runs
    FOR EACH ROW EXECUTE FUNCTION notify_change();
CREATE TRIGGER runs_runnable_sooner AFTER UPDATE ON runs FOR EACH ROW
    WHEN (NEW.ready_at IS NOT NULL AND (OLD.ready_at IS NULL OR NEW.ready_at < OLD.ready_at))
    EXECUTE FUNCTION notify_change();
CREATE TRIGGER signals_inserted AFTER INSERT ON signals
    FOR EACH ROW EXECUTE FUNCTION notify_change();
"#,
    },
    Migration {
        version: 2,
        description: "journal records packed; run ends notified; idempotency keys indexed only where set",
        sql: r#"
ALTER TABLE journal ALTER COLUMN kind DROP NOT NULL, ALTER COLUMN data DROP NOT NULL,
    ADD COLUMN packed bytea;
-- one trigger for both notifications of an update: every UPDATE statement on runs prepares
-- each trigger's WHEN clause anew
CREATE FUNCTION notify_run_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.ready_at IS NOT NULL AND (OLD.ready_at IS NULL OR NEW.ready_at < OLD.ready_at) THEN
        PERFORM pg_notify('sequential_changes', TG_TABLE_SCHEMA);
    END IF;
    IF NEW.status IN ('succeeded', 'failed', 'cancelled')
       AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled') THEN
        PERFORM pg_notify('sequential_ended', TG_TABLE_SCHEMA || ' ' || NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;
DROP TRIGGER runs_runnable_sooner ON runs;
CREATE TRIGGER runs_updated AFTER UPDATE ON runs FOR EACH ROW
    WHEN ((NEW.ready_at IS NOT NULL AND (OLD.ready_at IS NULL OR NEW.ready_at < OLD.ready_at))
          OR (NEW.status IN ('succeeded', 'failed', 'cancelled')
              AND OLD.status NOT IN ('succeeded', 'failed', 'cancelled')))
    EXECUTE FUNCTION notify_run_update();
ALTER TABLE runs DROP CONSTRAINT runs_idempotency_key_key;
CREATE UNIQUE INDEX runs_by_key ON runs (idempotency_key) WHERE idempotency_key IS NOT NULL;
"#,
    },
];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i64 = MIGRATIONS[MIGRATIONS.len() - 1].version;

/// What [`crate::PostgresStore::migrate`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationReport {
    /// The schema version found (0: none of our tables).
    pub from: i64,
    /// The schema version now ([`SCHEMA_VERSION`]).
    pub to: i64,
    /// The steps this call applied, `(version, description)`; empty when another process had
    /// applied them or the schema was current.
    pub applied: Vec<(i64, String)>,
}

/// The schema version recorded in `loc.schema` (0 when our table does not exist), read without
/// creating or locking anything.
pub(crate) async fn current_version(conn: &mut PgConnection, loc: &Location) -> Result<i64> {
    let doing = "reading the schema version";
    // pg_class read with the statement's snapshot, not to_regclass: the syscache may still
    // hold "no such table" from before another process's migration committed
    let exists: bool = sqlx::query(
        "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relname = 'sequential_migrations')",
    )
    .bind(&loc.schema)
    .fetch_one(&mut *conn)
    .await
    .and_then(|r| r.try_get(0))
    .map_err(|e| op_err(loc, doing, e))?;
    if !exists {
        return Ok(0);
    }
    let sql = format!(
        "SELECT coalesce(max(version), 0) FROM {}.sequential_migrations",
        loc.schema
    );
    sqlx::query(AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await
        .and_then(|r| r.try_get(0))
        .map_err(|e| op_err(loc, doing, e))
}

/// Refuses a schema written by a newer version, untouched.
pub(crate) fn check_not_newer(loc: &Location, found: i64) -> Result<()> {
    if found > SCHEMA_VERSION {
        return Err(Error::unsupported(format!(
            "{} has schema version {found}, written by a newer sequential-ecosystem; this build \
             understands schema versions up to {SCHEMA_VERSION}. Upgrade sequential-ecosystem to \
             use it (nothing was changed)",
            loc.shown
        )));
    }
    Ok(())
}

/// The error of a store opened without migrating on a schema that is not current.
pub(crate) fn not_migrated(loc: &Location, found: i64) -> Error {
    if found == 0 {
        Error::not_found(format!(
            "sequential-ecosystem tables in {} (nothing was created; run \
             `sequential-ecosystem migrate` with this DATABASE_URL to create them)",
            loc.shown
        ))
    } else {
        Error::unsupported(format!(
            "{} has schema version {found}; this build needs {SCHEMA_VERSION}. Run \
             `sequential-ecosystem migrate` with this DATABASE_URL to upgrade it",
            loc.shown
        ))
    }
}

/// Applies the missing steps. Every caller takes a transaction-scoped advisory lock keyed by
/// the schema first, so concurrent callers apply each step once: the others wait, then find the
/// schema current.
pub(crate) async fn migrate(conn: &mut PgConnection, loc: &Location) -> Result<MigrationReport> {
    migrate_to(conn, loc, SCHEMA_VERSION).await
}

/// [`migrate`] up to `target` only (tests of upgrades build an older schema with it).
pub(crate) async fn migrate_to(
    conn: &mut PgConnection,
    loc: &Location,
    target: i64,
) -> Result<MigrationReport> {
    let found = current_version(conn, loc).await?;
    check_not_newer(loc, found)?;
    if found >= target {
        return Ok(MigrationReport {
            from: found,
            to: found,
            applied: Vec::new(),
        });
    }
    let doing = "migrating the schema";
    let err = |e| op_err(loc, doing, e);
    let mut tx = conn.begin().await.map_err(err)?;
    let result: Result<(i64, Vec<(i64, String)>)> = async {
    sqlx::query(
        "SELECT pg_advisory_xact_lock(hashtext('sequential-ecosystem migrations'), hashtext($1))",
    )
    .bind(&loc.schema)
    .execute(&mut *tx)
    .await
    .map_err(err)?;
    // under the lock: what another process may have done meanwhile
    let from = current_version(&mut tx, loc).await?;
    check_not_newer(loc, from)?;
    let mut applied = Vec::new();
    if from < target {
        // the schema name is validated (lowercase letters, digits, '_'), so it needs no quoting
        let setup = format!(
            "CREATE SCHEMA IF NOT EXISTS {0}; SET LOCAL search_path TO {0}",
            loc.schema
        );
        sqlx::raw_sql(AssertSqlSafe(setup))
            .execute(&mut *tx)
            .await
            .map_err(err)?;
        let by = format!(
            "{} pid {}",
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "sequential-ecosystem".into()),
            std::process::id()
        );
        for m in MIGRATIONS
            .iter()
            .filter(|m| m.version > from && m.version <= target)
        {
            sqlx::raw_sql(m.sql)
                .execute(&mut *tx)
                .await
                .map_err(|e| op_err(loc, &format!("applying migration {}", m.version), e))?;
            sqlx::query(
                "INSERT INTO sequential_migrations (version, description, applied_at, applied_by) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(m.version)
            .bind(m.description)
            .bind(now_millis())
            .bind(&by)
            .execute(&mut *tx)
            .await
            .map_err(err)?;
            tracing::info!(db = %loc.shown, version = m.version, "applied PostgreSQL migration");
            applied.push((m.version, m.description.to_string()));
        }
    }
        Ok((from, applied))
    }
    .await;
    let (from, applied) = match result {
        Ok(applied) => {
            tx.commit().await.map_err(err)?;
            applied
        }
        Err(e) => {
            let _ = tx.rollback().await;
            return Err(e);
        }
    };
    Ok(MigrationReport {
        from,
        to: target.max(from),
        applied,
    })
}
