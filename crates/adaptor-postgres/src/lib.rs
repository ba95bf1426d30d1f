//! PostgreSQL storage for sequential-ecosystem (see the README below).
//!
//! Invariant: every decision (what is claimable, how a claim, an append, an update or a signal
//! changes a run) comes from [`sequential_adaptor::rules`]; this crate only stores, locks and
//! notifies. A returned write is committed.
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod batch;
mod codec;
mod conns;
mod errors;
mod listen;
mod ops;
mod schema;
mod url;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use sequential_adaptor::{
    AdapterFactory, Claim, ClaimRequest, Created, DeleteMode, Error, Fence, JournalRecord, NewRun,
    NewRunOf, NewTaskVersion, Page, PutVersion, Result, Run, RunFilter, RunId, RunPage, Signal,
    StorageAdapter, Takeover, TaskName, TaskSummary, TaskVersion, UnixMillis, VersionSel,
};
use serde_json::Value;
use sqlx::Connection;
use sqlx::postgres::{PgConnection, PgPoolOptions};

pub use batch::AppendStats;
pub use listen::EndWatch;
pub use schema::{MigrationReport, SCHEMA_VERSION};
pub use url::{DEFAULT_POOL_SIZE, DEFAULT_SCHEMA};

use codec::Fail;
use ops::Db;
use url::Location;

/// Statements (and transaction commands) that this process's stores sent to PostgreSQL and got
/// an answer to — every store of the process together. The engine bench divides it by the steps
/// a worker drove to show the round trips per durable step.
pub fn round_trips() -> u64 {
    codec::round_trips()
}

/// The statements a run's life sends (start, claim, leases, appends, settles, reads) and the
/// run lists, by name, as their SQL text with `$n` parameters.
///
/// Every one of them must reach `runs` and `journal` through an index whatever plan the server
/// picks: a prepared statement may run on a generic plan made while the tables were small or
/// never analysed (autovacuum off, or not yet run), and a plan that scans `runs` costs as much
/// as the run history is long. The integration test `plans` holds them to that, with the
/// planner settings of [`planner_settings`].
#[doc(hidden)]
pub fn hot_statements() -> Vec<(&'static str, &'static str)> {
    let mut all = ops::HOT.to_vec();
    all.push(("WRITE_MANY", batch::write_many()));
    all
}

/// The planner settings every connection of a store is opened with (`SET name = value`).
#[doc(hidden)]
pub fn planner_settings() -> &'static [(&'static str, &'static str)] {
    url::PLANNER_SETTINGS
}

/// How many times an operation that may safely be repeated is tried when the connection (not
/// the statement) failed, e.g. while the server restarts.
const CONNECTION_TRIES: u32 = 4;

/// A [`StorageAdapter`] on a PostgreSQL database. Cheap to clone; clones share the pool.
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    loc: Location,
    db: Db,
    changes: Arc<listen::Changes>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.listener.lock().ok().and_then(|mut l| l.take()) {
            task.abort();
        }
    }
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("db", &self.inner.loc.shown)
            .field("pool_size", &self.inner.loc.pool_size)
            .finish_non_exhaustive()
    }
}

/// What [`PostgresStore::import_run`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Imported {
    /// The run was not stored: it is now.
    Created,
    /// A lower revision was stored: it was replaced.
    Updated,
    /// The same or a higher revision was stored: nothing was written.
    Unchanged,
}

/// Whether opening a store may migrate the schema.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Schema {
    /// Apply missing migrations (writing commands, workers).
    #[default]
    Migrate,
    /// Create nothing; an unmigrated or older schema is an error (read-only commands).
    Existing,
}

async fn connect(loc: &Location) -> Result<PgConnection> {
    PgConnection::connect_with(&loc.options)
        .await
        .map_err(|e| errors::connect_err(loc, e))
}

impl PostgresStore {
    /// Connects to `url`, applying missing schema migrations (under an advisory lock, so
    /// concurrent openers apply each once). A schema written by a newer version is
    /// `Unsupported` and left untouched.
    pub async fn open(url: &str) -> Result<PostgresStore> {
        Self::open_as(url, Schema::Migrate).await
    }

    /// Connects to `url` without creating anything: a database where the schema was never
    /// migrated is `NotFound`, one migrated by an older version `Unsupported`, both saying to
    /// run `sequential-ecosystem migrate`. For read-only commands.
    pub async fn open_existing(url: &str) -> Result<PostgresStore> {
        Self::open_as(url, Schema::Existing).await
    }

    /// Applies missing schema migrations at `url` and says what was done.
    pub async fn migrate(url: &str) -> Result<MigrationReport> {
        let loc = Location::parse(url)?;
        let mut conn = connect(&loc).await?;
        let report = schema::migrate(&mut conn, &loc).await;
        let _ = conn.close().await;
        report
    }

    /// Applies the schema migrations at `url` up to `version` only — for tests that build a
    /// schema as an older release left it, then upgrade it.
    #[doc(hidden)]
    pub async fn migrate_to(url: &str, version: i64) -> Result<MigrationReport> {
        let loc = Location::parse(url)?;
        let mut conn = connect(&loc).await?;
        let report = schema::migrate_to(&mut conn, &loc, version).await;
        let _ = conn.close().await;
        report
    }

    async fn open_as(url: &str, mode: Schema) -> Result<PostgresStore> {
        let loc = Location::parse(url)?;
        let mut conn = connect(&loc).await?;
        let checked = match mode {
            Schema::Migrate => schema::migrate(&mut conn, &loc).await.map(|_| ()),
            Schema::Existing => match schema::current_version(&mut conn, &loc).await {
                Ok(v) if v == SCHEMA_VERSION => Ok(()),
                Ok(v) => schema::check_not_newer(&loc, v).and(Err(schema::not_migrated(&loc, v))),
                Err(e) => Err(e),
            },
        };
        let _ = conn.close().await;
        checked?;
        let pool = PgPoolOptions::new()
            .max_connections(loc.pool_size)
            .min_connections(0)
            .acquire_timeout(loc.acquire_timeout)
            // a ping per checkout would double the round trips of every step; a dead
            // connection is noticed by its first statement, which is then retried when safe
            .test_before_acquire(false)
            .connect_lazy_with(loc.options.clone());
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                db: Db::new(pool),
                loc,
                changes: Arc::new(listen::Changes::default()),
                listener: Mutex::new(None),
            }),
        })
    }

    /// How many batch statements this store's appends went out in, and how many appends they
    /// carried (`appends / statements` of them shared one commit on average).
    pub fn append_stats(&self) -> AppendStats {
        self.inner.db.writes.stats(0)
    }

    /// The same for `settle_run`: batch statements, and the settles they carried (as `appends`).
    pub fn settle_stats(&self) -> AppendStats {
        self.inner.db.writes.stats(1)
    }

    /// Appends and settles share their statements: how many went out for both, and how many
    /// appends and settles they carried together.
    pub fn write_stats(&self) -> AppendStats {
        self.inner.db.writes.total()
    }

    /// The same for `create_run_of` (how a worker, the host API or the engine starts runs):
    /// batch statements, and the new runs they carried (as `appends`).
    pub fn create_stats(&self) -> AppendStats {
        self.inner.db.creates.stats(0)
    }

    /// The schema holding the tables.
    pub fn schema(&self) -> &str {
        &self.inner.loc.schema
    }

    /// The store for messages: database, server and schema, never the password.
    pub fn describe(&self) -> &str {
        &self.inner.loc.shown
    }

    /// How many connections this store's pool holds open now (those in use included), at most
    /// the URL's `pool_size`; the listening connection is not one of them.
    pub fn open_connections(&self) -> u32 {
        self.inner.db.pool.pool.size()
    }

    /// `true` while [`StorageAdapter::wait_for_change`] listens for notifications (it polls
    /// before its first call has connected, and while reconnecting).
    pub fn is_listening(&self) -> bool {
        self.inner.changes.is_listening()
    }

    /// Watches run `id` for its end (its status becoming succeeded, failed or cancelled, in
    /// any process): [`EndWatch::wait`] wakes when that is notified, from now on. Unlike
    /// [`StorageAdapter::wait_for_change`], which wakes every waiter on every change, an end
    /// wakes only the watchers of its own run — for callers each waiting for their own run.
    pub fn watch_end(&self, id: RunId) -> EndWatch {
        self.start_listening();
        self.inner.changes.watch_end(id)
    }

    /// Starts the listening task unless it runs.
    fn start_listening(&self) {
        if let Ok(mut listener) = self.inner.listener.lock()
            && listener.is_none()
        {
            *listener = Some(listen::spawn(
                self.inner.loc.clone(),
                self.inner.changes.clone(),
            ));
        }
    }

    /// Closes the pool's connections (the store is unusable afterwards).
    pub async fn close(&self) {
        if let Some(task) = self.inner.listener.lock().ok().and_then(|mut l| l.take()) {
            task.abort();
        }
        self.inner.db.pool.release_idle();
        self.inner.db.pool.pool.close().await;
    }

    /// After a connection failed: closes the pool's idle connections, which are likely dead
    /// too (the server restarted), so a retry gets a fresh one instead of the next dead one.
    fn forget_idle_connections(&self) {
        self.inner.db.pool.forget_idle();
    }

    fn error(&self, f: Fail) -> Error {
        match f {
            Fail::Store(e) => e,
            Fail::Sql(doing, e) => errors::op_err(&self.inner.loc, doing, e),
        }
    }
}

/// Runs `$op` (an expression giving a fresh future each time); when `$repeat` and the
/// connection failed, tries again on a fresh connection, [`CONNECTION_TRIES`] times in all.
macro_rules! attempt {
    ($self:ident, $repeat:expr, $op:expr) => {{
        let mut tries = 1;
        loop {
            match $op.await {
                Ok(v) => break Ok(v),
                Err(Fail::Sql(doing, e))
                    if $repeat && tries < CONNECTION_TRIES && errors::is_connection_error(&e) =>
                {
                    tracing::warn!(db = %$self.inner.loc.shown, doing, error = %e, try_ = tries, "connection failed; trying again");
                    $self.forget_idle_connections();
                    tokio::time::sleep(Duration::from_millis(100 << tries)).await;
                    tries += 1;
                }
                Err(f) => break Err($self.error(f)),
            }
        }
    }};
}

/// Operations that may be repeated after a lost connection without changing their outcome.
const REPEAT: bool = true;
/// Operations whose repetition could be observed (a second signal, a second delete).
const ONCE: bool = false;

impl PostgresStore {
    /// `update_run` (no token) or `settle_run` (with the token). When the connection fails, the
    /// write may or may not have committed: the run is read again, and a stored run at the
    /// next revision carrying this write's fields is its result; one still at this revision is
    /// written again; anything else is the connection error.
    async fn write_run(&self, run: &Run, token: Option<u64>) -> Result<Run> {
        let mut tries = 1;
        loop {
            let written = match token {
                None => self.inner.db.update_run(run).await,
                Some(t) => self.inner.db.settle_run(run, t).await,
            };
            match written {
                Ok(v) => return Ok(v),
                Err(Fail::Sql(doing, e))
                    if tries < CONNECTION_TRIES && errors::is_connection_error(&e) =>
                {
                    tracing::warn!(db = %self.inner.loc.shown, doing, error = %e, "connection failed; checking whether the write committed");
                    self.forget_idle_connections();
                    tokio::time::sleep(Duration::from_millis(100 << tries)).await;
                    tries += 1;
                    let stored = attempt!(self, REPEAT, self.inner.db.get_run(run.id))?;
                    let ours = stored.revision == run.revision + 1
                        && stored.status == run.status
                        && stored.output == run.output
                        && stored.error == run.error
                        && stored.wake_at == run.wake_at
                        && stored.waiting_for == run.waiting_for
                        && (token.is_none() || stored.lease.is_none());
                    if ours {
                        return Ok(stored);
                    }
                    if stored.revision != run.revision {
                        return Err(self.error(Fail::Sql(doing, e)));
                    }
                }
                Err(f) => return Err(self.error(f)),
            }
        }
    }
}

/// Beyond the trait: copying runs in from another store as they are (`sync-tasks --runs`),
/// and measuring the tables.
impl PostgresStore {
    /// `VACUUM`s the store's tables and returns their size on disk in bytes
    /// (`pg_total_relation_size`: heap, indexes and TOAST), for benchmarks and capacity planning.
    pub async fn vacuum_and_measure(&self) -> Result<u64> {
        let schema = self.inner.loc.schema.clone();
        attempt!(self, REPEAT, self.inner.db.vacuum_and_measure(&schema))
    }

    /// Copies `run` in as it is — same id, revision, lease and times (for `sync-tasks --runs`):
    /// stored when new, overwritten when the stored copy has a lower revision, else left alone.
    /// Its task version must be stored already, under the number `run.version` names. A run of
    /// another task with the same id, or another run with the same idempotency key, is
    /// `Conflict`.
    pub async fn import_run(&self, run: &Run) -> Result<Imported> {
        attempt!(self, REPEAT, self.inner.db.import_run(run))
    }

    /// Copies signals in as they are (same seqs and times); those already stored are skipped.
    /// Returns how many were new. An unknown run is `NotFound`.
    pub async fn import_signals(&self, run: RunId, signals: &[Signal]) -> Result<u64> {
        attempt!(self, REPEAT, self.inner.db.import_signals(run, signals))
    }

    /// How many records run `run`'s journal holds (the next seq); an unknown run is `NotFound`.
    pub async fn journal_len(&self, run: RunId) -> Result<u64> {
        attempt!(self, REPEAT, self.inner.db.journal_len(run))
    }
}

#[async_trait]
impl StorageAdapter for PostgresStore {
    fn scheme(&self) -> &'static str {
        "postgres"
    }

    async fn put_task_version(&self, new: NewTaskVersion) -> Result<PutVersion> {
        attempt!(self, REPEAT, self.inner.db.put_task_version(&new))
    }

    async fn get_task_version(&self, task: &TaskName, sel: VersionSel) -> Result<TaskVersion> {
        attempt!(self, REPEAT, self.inner.db.get_task_version(task, sel))
    }

    async fn create_run(&self, new: NewRun) -> Result<Created> {
        // with a key, a repeat finds the run the lost attempt created
        let keyed = new.idempotency_key.is_some();
        attempt!(self, keyed, self.inner.db.create_run(&new))
    }

    /// One statement picks the version and stores the run; a missing task or version, or a key
    /// already used, goes the usual way (read the version, then `create_run`), which names what
    /// happened or finds the key's run.
    async fn create_run_of(&self, new: NewRunOf) -> Result<Created> {
        // with a key, a repeat finds the run the lost attempt created
        let keyed = new.idempotency_key.is_some();
        if let Some(created) = attempt!(self, keyed, self.inner.db.create_run_of(&new))? {
            return Ok(created);
        }
        let version = self.get_task_version(&new.task, new.version).await?;
        self.create_run(new.pinned(version.version)).await
    }

    /// One insert of the run already leased; a key already taken (or a missing version) goes
    /// the usual way, create then claim. Not repeated after a lost connection (a repeat could
    /// not tell its own insert from another's).
    async fn create_run_claimed(
        &self,
        new: NewRun,
        req: &ClaimRequest,
    ) -> Result<(Created, Option<Claim>)> {
        match attempt!(self, ONCE, self.inner.db.create_run_claimed(&new, req))? {
            Some((created, claim)) => Ok((created, Some(claim))),
            None => sequential_adaptor::create_then_claim(self, new, req).await,
        }
    }

    async fn get_run(&self, id: RunId) -> Result<Run> {
        attempt!(self, REPEAT, self.inner.db.get_run(id))
    }

    async fn update_run(&self, run: &Run) -> Result<Run> {
        self.write_run(run, None).await
    }

    async fn settle_run(&self, run: &Run, token: u64) -> Result<Run> {
        self.write_run(run, Some(token)).await
    }

    /// One statement and one commit for the records and the end (shared with the settles of
    /// other runs offered meanwhile); when it does not apply, the append and then the settle.
    async fn append_and_settle(
        &self,
        run: &Run,
        records: &[JournalRecord],
        token: u64,
    ) -> Result<Run> {
        if records.is_empty() {
            return self.write_run(run, Some(token)).await;
        }
        match self.inner.db.append_and_settle(run, records, token).await {
            Ok(v) => Ok(v),
            // whether anything committed is unknown: the append is idempotent, and the settle
            // checks whether the write it repeats is in
            Err(Fail::Sql(_, e)) if errors::is_connection_error(&e) => {
                self.forget_idle_connections();
                self.append(run.id, records, Fence::Token(token)).await?;
                self.write_run(run, Some(token)).await
            }
            Err(f) => Err(self.error(f)),
        }
    }

    async fn append(&self, run: RunId, records: &[JournalRecord], fence: Fence) -> Result<()> {
        // appends are idempotent on (run, seq): a repeat of a committed append is a no-op
        attempt!(self, REPEAT, self.inner.db.append(run, records, fence))
    }

    async fn read_journal(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<JournalRecord>> {
        attempt!(
            self,
            REPEAT,
            self.inner.db.read_journal(run, after_seq, limit)
        )
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claim>> {
        // a claim whose answer was lost leaves its runs leased until the lease expires: late,
        // never lost or doubled
        attempt!(self, REPEAT, self.inner.db.claim(req))
    }

    async fn claim_run(
        &self,
        id: RunId,
        req: &ClaimRequest,
        takeover: Takeover,
    ) -> Result<Option<Claim>> {
        attempt!(self, REPEAT, self.inner.db.claim_run(id, req, takeover))
    }

    async fn renew(&self, run: RunId, token: u64, now: UnixMillis, lease_ms: u64) -> Result<Run> {
        attempt!(self, REPEAT, self.inner.db.renew(run, token, now, lease_ms))
    }

    async fn release(&self, run: RunId, token: u64) -> Result<Run> {
        let mut tries = 1;
        loop {
            match self.inner.db.release(run, token).await {
                Ok(v) => return Ok(v),
                Err(Fail::Sql(doing, e))
                    if tries < CONNECTION_TRIES && errors::is_connection_error(&e) =>
                {
                    tries += 1;
                    self.forget_idle_connections();
                    // did the lost release commit? Then the lease is gone.
                    let stored = attempt!(self, REPEAT, self.inner.db.get_run(run))?;
                    match &stored.lease {
                        None => return Ok(stored),
                        Some(l) if l.token == token => continue,
                        Some(_) => return Err(self.error(Fail::Sql(doing, e))),
                    }
                }
                Err(f) => return Err(self.error(f)),
            }
        }
    }

    async fn send_signal(&self, run: RunId, name: &str, payload: Value) -> Result<u64> {
        attempt!(self, ONCE, self.inner.db.send_signal(run, name, &payload))
    }

    async fn read_signals(&self, run: RunId, after_seq: Option<u64>) -> Result<Vec<Signal>> {
        attempt!(self, REPEAT, self.inner.db.read_signals(run, after_seq))
    }

    // ---- part 2: administration ---------------------------------------------------------

    async fn list_tasks(&self) -> Result<Vec<TaskSummary>> {
        attempt!(self, REPEAT, self.inner.db.list_tasks())
    }

    async fn delete_task(&self, task: &TaskName, mode: DeleteMode) -> Result<()> {
        attempt!(self, ONCE, self.inner.db.delete_task(task, mode))
    }

    async fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<RunPage> {
        attempt!(self, REPEAT, self.inner.db.list_runs(filter, page))
    }

    async fn delete_run(&self, id: RunId) -> Result<()> {
        attempt!(self, ONCE, self.inner.db.delete_run(id))
    }

    async fn prune(&self, older_than: UnixMillis) -> Result<u64> {
        attempt!(self, REPEAT, self.inner.db.prune(older_than))
    }

    /// Waits for a notification from the tables' triggers (a new run, a signal, a timer armed
    /// or brought forward, a lease dropped — in any process) for up to `timeout`; polls every
    /// 200 ms while the listening connection is not established.
    async fn wait_for_change(&self, timeout: Duration) {
        self.start_listening();
        self.inner.changes.wait(timeout).await;
    }

    /// Checks that the server answers and the schema is the version this build writes.
    async fn health(&self) -> Result<()> {
        let loc = &self.inner.loc;
        let mut conn = self
            .inner
            .db
            .pool
            .take_sqlx()
            .await
            .map_err(|e| errors::connect_err(loc, e))?;
        match schema::current_version(&mut conn, loc).await? {
            SCHEMA_VERSION => Ok(()),
            v => schema::check_not_newer(loc, v).and(Err(schema::not_migrated(loc, v))),
        }
    }
}

/// Opens [`PostgresStore`]s for `postgres://` and `postgresql://` URLs. Register it for both
/// schemes: `registry.register("postgres", PostgresFactory::FORM, PostgresFactory::default())`.
/// The default migrates the schema on open ([`PostgresStore::open`]);
/// [`PostgresFactory::existing`] creates nothing ([`PostgresStore::open_existing`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct PostgresFactory {
    schema: Schema,
}

impl PostgresFactory {
    /// The URL form, for error messages.
    pub const FORM: &'static str = url::FORMS;

    /// A factory that opens only databases whose schema is current and creates nothing.
    pub fn existing() -> Self {
        PostgresFactory {
            schema: Schema::Existing,
        }
    }
}

#[async_trait]
impl AdapterFactory for PostgresFactory {
    async fn open(&self, url: &str) -> Result<Arc<dyn StorageAdapter>> {
        Ok(Arc::new(PostgresStore::open_as(url, self.schema).await?))
    }
}
