#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod ends;
mod ops;
mod schema;
mod stamp;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use sequential_adaptor::{
    AdapterFactory, Claim, ClaimRequest, Created, DeleteMode, Error, Fence, JournalRecord, NewRun,
    NewTaskVersion, Page, PutVersion, Result, Run, RunFilter, RunId, RunPage, Signal,
    StorageAdapter, TaskName, TaskSummary, TaskVersion, UnixMillis, VersionSel, strip_scheme,
};
use serde_json::Value;
use tokio::sync::Notify;

pub use ends::EndWatch;
pub use schema::SCHEMA_VERSION;
pub use stamp::ChangeStamp;
pub use writer::WriterStats;

use ops::Ctx;
use writer::Writer;

/// How many idle read connections a store keeps.
const IDLE_READERS: usize = 8;

/// How many journal records a read takes on the calling thread before handing the rest of the
/// read to the blocking pool.
const INLINE_RECORDS: usize = 64;

/// A [`StorageAdapter`] on a SQLite database. Cheap to clone; clones share the database, the
/// writer thread and the read pool. The writer thread stops when the last clone is dropped.
///
/// Reads of a file database run on Tokio's blocking pool, so use the store inside a Tokio
/// runtime.
#[derive(Clone)]
pub struct SqliteStore {
    inner: Arc<Inner>,
}

struct Inner {
    /// The path as shown in messages (`:memory:` for an in-memory database).
    db: Arc<str>,
    /// `None` for an in-memory database: then reads go through the writer too.
    path: Option<PathBuf>,
    readers: Mutex<Vec<Connection>>,
    changed: Arc<Notify>,
    /// Sees commits by other processes (see [`SqliteStore::wait_for_change`]); opened on
    /// first use, file databases only.
    stamp: std::sync::OnceLock<Option<ChangeStamp>>,
    /// The open [`EndWatch`]es.
    ends: Arc<ends::Ends>,
    writer: Writer,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("db", &self.inner.db)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, applying schema migrations.
    ///
    /// A file that is not a SQLite database (or a SQLite database of another application) is
    /// `Invalid`; a database written by a newer schema version is `Unsupported`. In both cases
    /// the file is left untouched.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        schema::check_path(path, &shown)?;
        let conn = schema::open_writer(Some(path), &shown)?;
        // read connections open lazily: pin the file now, whatever the working directory becomes
        let absolute = std::fs::canonicalize(path)
            .map_err(|e| Error::backend(format!("SQLite {shown}: resolving the path"), e))?;
        Self::start(conn, shown.into(), Some(absolute))
    }

    /// A fresh in-memory database, shared by every clone of the returned store; gone when the
    /// last clone is dropped. For tests and embedding.
    pub fn memory() -> Result<SqliteStore> {
        let conn = schema::open_writer(None, ":memory:")?;
        Self::start(conn, ":memory:".into(), None)
    }

    fn start(conn: Connection, db: Arc<str>, path: Option<PathBuf>) -> Result<SqliteStore> {
        let changed = Arc::new(Notify::new());
        let writer = Writer::spawn(conn, db.clone(), changed.clone())?;
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                db,
                path,
                readers: Mutex::new(Vec::new()),
                changed,
                stamp: std::sync::OnceLock::new(),
                ends: Arc::default(),
                writer,
            }),
        })
    }

    /// The database file (absolute); `None` for an in-memory database.
    pub fn path(&self) -> Option<&Path> {
        self.inner.path.as_deref()
    }

    /// The data-version stamp of a file database (opened on first use); `None` in memory.
    fn stamp(&self) -> Option<&ChangeStamp> {
        self.inner.path.as_ref().and_then(|path| {
            self.inner
                .stamp
                .get_or_init(|| ChangeStamp::open(path).ok())
                .as_ref()
        })
    }

    /// How many transactions the writer thread ran and how many requests they carried.
    pub fn writer_stats(&self) -> WriterStats {
        self.inner.writer.stats()
    }

    /// Runs a write request through the writer thread (group commit).
    async fn write<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Ctx<'_>) -> Result<T> + Send + 'static,
    {
        let db = self.inner.db.clone();
        self.inner
            .writer
            .call(true, move |conn| work(&Ctx { conn, db: &db }))
            .await
    }

    /// Runs a read on a pooled read connection in one read transaction (or through the writer
    /// for an in-memory database).
    async fn read<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Ctx<'_>) -> Result<T> + Send + 'static,
    {
        let Some(path) = self.inner.path.clone() else {
            let db = self.inner.db.clone();
            return self
                .inner
                .writer
                .call(false, move |conn| work(&Ctx { conn, db: &db }))
                .await;
        };
        let inner = self.inner.clone();
        let task = tokio::task::spawn_blocking(move || read_now(&inner, &path, work));
        task.await
            .map_err(|e| Error::backend(format!("SQLite {}: read task", self.inner.db), e))?
    }

    /// A read whose cost is bounded and small (one row by primary key), done on the calling
    /// thread: handing it to the blocking pool and back costs more than the read itself.
    async fn read_point<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Ctx<'_>) -> Result<T> + Send + 'static,
    {
        match &self.inner.path {
            Some(path) => read_now(&self.inner, path, work),
            None => self.read(work).await,
        }
    }
}

#[async_trait]
impl StorageAdapter for SqliteStore {
    fn scheme(&self) -> &'static str {
        "sqlite"
    }

    async fn put_task_version(&self, new: NewTaskVersion) -> Result<PutVersion> {
        self.write(move |c| ops::put_task_version(c, new)).await
    }

    async fn get_task_version(&self, task: &TaskName, sel: VersionSel) -> Result<TaskVersion> {
        let task = task.clone();
        // one row by key (or the last of one task's rows by index)
        self.read_point(move |c| ops::get_task_version(c, &task, sel))
            .await
    }

    async fn list_tasks(&self) -> Result<Vec<TaskSummary>> {
        self.read(ops::list_tasks).await
    }

    async fn delete_task(&self, task: &TaskName, mode: DeleteMode) -> Result<()> {
        let task = task.clone();
        self.write(move |c| ops::delete_task(c, &task, mode)).await
    }

    async fn create_run(&self, new: NewRun) -> Result<Created> {
        self.write(move |c| ops::create_run(c, new)).await
    }

    async fn create_run_claimed(
        &self,
        new: NewRun,
        req: &ClaimRequest,
    ) -> Result<(Created, Option<Claim>)> {
        let req = req.clone();
        // one savepoint of one group commit: the run is stored already leased
        self.write(move |c| {
            let created = ops::create_run(c, new)?;
            let claim = match &created {
                Created::Created(run) => {
                    ops::claim_one(c, run.id, &req, sequential_adaptor::Takeover::IfClaimable)?
                }
                Created::Existing(_) => None,
            };
            Ok((created, claim))
        })
        .await
    }

    async fn get_run(&self, id: RunId) -> Result<Run> {
        self.read_point(move |c| ops::load_run(c, id)).await
    }

    async fn list_runs(&self, filter: &RunFilter, page: Page) -> Result<RunPage> {
        let filter = filter.clone();
        self.read(move |c| ops::list_runs(c, &filter, page)).await
    }

    async fn update_run(&self, run: &Run) -> Result<Run> {
        let run = run.clone();
        self.write(move |c| ops::update_run(c, &run)).await
    }

    async fn settle_run(&self, run: &Run, token: u64) -> Result<Run> {
        let run = run.clone();
        self.write(move |c| ops::settle_run(c, &run, token)).await
    }

    /// The records and the settle in one request to the writer: one savepoint of one group
    /// commit, so one hop and at most one commit instead of two in a row. A failing settle
    /// rolls the records back with it.
    async fn append_and_settle(
        &self,
        run: &Run,
        records: &[JournalRecord],
        token: u64,
    ) -> Result<Run> {
        let batch = (!records.is_empty()).then(|| ops::AppendBatch::new(records));
        let run = run.clone();
        self.write(move |c| {
            if let Some(batch) = &batch {
                ops::append(c, run.id, batch, Fence::Token(token))?;
            }
            ops::settle_run(c, &run, token)
        })
        .await
    }

    async fn append(&self, run: RunId, records: &[JournalRecord], fence: Fence) -> Result<()> {
        let batch = ops::AppendBatch::new(records);
        self.write(move |c| ops::append(c, run, &batch, fence))
            .await
    }

    async fn read_journal(
        &self,
        run: RunId,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<JournalRecord>> {
        // The first records are read on the calling thread (a fresh or short journal is all
        // there is: the blocking pool's hop would cost more than the read); a longer journal
        // continues on the blocking pool. The journal only grows, so the two reads give a
        // prefix of it as one read would.
        let inline = limit.min(INLINE_RECORDS);
        let mut first = self
            .read_point(move |c| ops::read_journal(c, run, after_seq, inline))
            .await?;
        if first.len() < inline || limit <= inline {
            return Ok(first);
        }
        let after = first.last().map(|r| r.seq);
        let rest = limit - first.len();
        match self
            .read(move |c| ops::read_journal(c, run, after, rest))
            .await
        {
            Ok(more) => first.extend(more),
            // deleted in between: what was read is what there was
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        Ok(first)
    }

    async fn claim(&self, req: &ClaimRequest) -> Result<Vec<Claim>> {
        let req = req.clone();
        self.write(move |c| ops::claim(c, &req)).await
    }

    async fn claim_run(
        &self,
        id: RunId,
        req: &ClaimRequest,
        takeover: sequential_adaptor::Takeover,
    ) -> Result<Option<Claim>> {
        let req = req.clone();
        self.write(move |c| ops::claim_one(c, id, &req, takeover))
            .await
    }

    async fn renew(&self, run: RunId, token: u64, now: UnixMillis, lease_ms: u64) -> Result<Run> {
        self.write(move |c| ops::renew(c, run, token, now, lease_ms))
            .await
    }

    async fn release(&self, run: RunId, token: u64) -> Result<Run> {
        self.write(move |c| ops::release(c, run, token)).await
    }

    async fn send_signal(&self, run: RunId, name: &str, payload: Value) -> Result<u64> {
        let name = name.to_string();
        self.write(move |c| ops::send_signal(c, run, &name, &payload))
            .await
    }

    async fn read_signals(&self, run: RunId, after_seq: Option<u64>) -> Result<Vec<Signal>> {
        self.read(move |c| ops::read_signals(c, run, after_seq))
            .await
    }

    async fn delete_run(&self, id: RunId) -> Result<()> {
        self.write(move |c| ops::delete_run(c, id)).await
    }

    async fn prune(&self, older_than: UnixMillis) -> Result<u64> {
        self.write(move |c| ops::prune(c, older_than)).await
    }

    /// Returns at a commit of this process's writer (at once), or of another process (seen
    /// by polling `PRAGMA data_version`, first after 1 ms, then at doubling intervals up to
    /// 25 ms), or after `timeout` (at most 200 ms).
    async fn wait_for_change(&self, timeout: Duration) {
        let limit = timeout.min(Duration::from_millis(200));
        let notified = self.inner.changed.notified();
        let Some(stamp) = self.stamp() else {
            let _ = tokio::time::timeout(limit, notified).await;
            return;
        };
        tokio::pin!(notified);
        let before = stamp.now().ok();
        let deadline = tokio::time::Instant::now() + limit;
        let mut every = Duration::from_millis(1);
        loop {
            let nap = every.min(deadline - tokio::time::Instant::now());
            if tokio::time::timeout(nap, &mut notified).await.is_ok() {
                return;
            }
            if tokio::time::Instant::now() >= deadline || stamp.now().ok() != before {
                return;
            }
            every = (every * 2).min(Duration::from_millis(25));
        }
    }

    async fn health(&self) -> Result<()> {
        let version = self
            .read(|c| {
                schema::recorded_version(c.conn)
                    .map_err(|e| schema::db_err(c.db, "reading the schema version", e))
            })
            .await?;
        match version {
            Some(SCHEMA_VERSION) => Ok(()),
            other => Err(Error::unsupported(format!(
                "SQLite database {:?} has schema version {other:?}; this build needs {SCHEMA_VERSION}",
                self.inner.db
            ))),
        }
    }
}

/// Opens [`SqliteStore`]s for `sqlite:PATH`, `sqlite://PATH` (`sqlite:///abs/path` for an
/// absolute path) and `sqlite::memory:`. Register it as
/// `registry.register("sqlite", SqliteFactory::FORM, SqliteFactory)`.
#[derive(Clone, Copy, Debug, Default)]
pub struct SqliteFactory;

impl SqliteFactory {
    /// The URL forms, for error messages.
    pub const FORM: &'static str = "sqlite:PATH, sqlite::memory:";

    /// Opens the store a `sqlite:` URL names (synchronously; see [`AdapterFactory::open`]).
    pub fn open_url(url: &str) -> Result<SqliteStore> {
        let is_sqlite = sequential_adaptor::scheme_of(url).as_deref() == Some("sqlite");
        let rest = strip_scheme(url);
        if !is_sqlite || rest.is_empty() {
            return Err(Error::invalid(
                format!("SQLite URL {url:?}"),
                "sqlite:PATH (e.g. sqlite:./sequential.db), sqlite:///absolute/path.db or sqlite::memory:",
            ));
        }
        if rest == ":memory:" {
            SqliteStore::memory()
        } else {
            SqliteStore::open(rest)
        }
    }
}

#[async_trait]
impl AdapterFactory for SqliteFactory {
    async fn open(&self, url: &str) -> Result<Arc<dyn StorageAdapter>> {
        let url = url.to_string();
        let store = tokio::task::spawn_blocking(move || SqliteFactory::open_url(&url))
            .await
            .map_err(|e| Error::backend("opening a SQLite database", e))??;
        Ok(Arc::new(store))
    }
}

/// Runs `work` in a read transaction on a pooled reader connection (opened when none is idle).
fn read_now<T>(inner: &Inner, path: &Path, work: impl FnOnce(&Ctx<'_>) -> Result<T>) -> Result<T> {
    let db = &*inner.db;
    let pooled = inner.readers.lock().map(|mut r| r.pop()).unwrap_or(None);
    let mut conn = match pooled {
        Some(c) => c,
        None => schema::open_reader(path, db)?,
    };
    let result = (|| {
        let tx = conn
            .transaction()
            .map_err(|e| schema::db_err(db, "starting a read", e))?;
        let out = work(&Ctx { conn: &tx, db })?;
        tx.commit()
            .map_err(|e| schema::db_err(db, "ending a read", e))?;
        Ok(out)
    })();
    if let Ok(mut idle) = inner.readers.lock()
        && idle.len() < IDLE_READERS
        && conn.is_autocommit()
    {
        idle.push(conn);
    }
    result
}
