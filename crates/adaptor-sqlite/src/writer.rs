//! The writer: one connection, group commit, one answer per request after the commit.
//!
//! Requests queue for the writer thread, which runs as many as are waiting in one transaction.
//! A request made while no other is in progress is run at once on the calling thread instead,
//! in a transaction of its own: it would have had that transaction alone anyway, and the two
//! hand-overs between threads (there and back) cost more than its statements. (Only then: under
//! load, the writer thread's wake-up is the window in which requests gather for one commit.)

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use rusqlite::Connection;
use sequential_adaptor::{Error, Result};
use tokio::sync::{Notify, oneshot};

/// The most requests one transaction carries.
const MAX_BATCH: usize = 1024;

/// One queued request, type-erased.
trait Job: Send {
    /// Runs the request inside its own savepoint of the batch transaction.
    fn run(&mut self, conn: &Connection);
    /// Answers the caller once the batch is committed (or failed to commit).
    fn finish(self: Box<Self>, commit: Result<(), &str>);
    /// `true` when the request may have changed something.
    fn writes(&self) -> bool;
}

struct TypedJob<T, F> {
    work: Option<F>,
    result: Option<Result<T>>,
    reply: oneshot::Sender<Result<T>>,
    writes: bool,
    db: Arc<str>,
}

impl<T, F> Job for TypedJob<T, F>
where
    T: Send + 'static,
    F: FnOnce(&Connection) -> Result<T> + Send + 'static,
{
    fn run(&mut self, conn: &Connection) {
        if let Some(work) = self.work.take() {
            self.result = Some(in_savepoint(conn, &self.db, work));
        }
    }

    fn finish(self: Box<Self>, commit: Result<(), &str>) {
        let answer = match (commit, self.result) {
            (Ok(()), Some(r)) => r,
            // The request's own error wins: nothing of it was going to be written anyway.
            (Err(_), Some(Err(e))) => Err(e),
            (Err(why), _) => Err(Error::backend(
                format!("SQLite {}: committing", self.db),
                why.to_string(),
            )),
            (Ok(()), None) => Err(Error::backend(
                format!("SQLite {}", self.db),
                "the request was not run",
            )),
        };
        let _ = self.reply.send(answer);
    }

    fn writes(&self) -> bool {
        self.writes
    }
}

/// Runs one cached statement (savepoint and transaction control: parsed once per connection).
fn exec(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// Runs `work` in a savepoint: on error (or panic) only its own changes are rolled back.
fn in_savepoint<T>(
    conn: &Connection,
    db: &str,
    work: impl FnOnce(&Connection) -> Result<T>,
) -> Result<T> {
    exec(conn, "SAVEPOINT job")
        .map_err(|e| Error::backend(format!("SQLite {db}: opening a savepoint"), e))?;
    let result = match catch_unwind(AssertUnwindSafe(|| work(conn))) {
        Ok(r) => r,
        Err(_) => Err(Error::backend(
            format!("SQLite {db}"),
            "a storage request panicked; its changes were rolled back",
        )),
    };
    let undo = || exec(conn, "ROLLBACK TO job").and_then(|()| exec(conn, "RELEASE job"));
    let end = if result.is_ok() {
        exec(conn, "RELEASE job")
    } else {
        undo()
    };
    match end {
        Ok(()) => result,
        Err(e) => {
            let _ = undo();
            result.and(Err(Error::backend(
                format!("SQLite {db}: closing a savepoint"),
                e,
            )))
        }
    }
}

/// Counters of the writer thread, for measurements: `requests / transactions` is how many
/// requests shared one commit (one fsync) on average.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Transactions run (each ends in one commit).
    pub transactions: u64,
    /// Requests run in them.
    pub requests: u64,
    /// Requests handed to the writer thread (run or still queued); the others were run on
    /// the calling thread (see the module's documentation).
    pub submitted: u64,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    requests: AtomicU64,
    submitted: AtomicU64,
}

/// What the writer thread and the callers share.
struct Shared {
    /// The write connection: held by whoever runs a transaction.
    conn: Mutex<Connection>,
    /// Requests in progress (made and not yet answered).
    active: AtomicUsize,
    /// Notified after each commit that wrote something.
    changed: Arc<Notify>,
    counters: Counters,
    db: Arc<str>,
}

/// The handle to the writer thread. Dropping it lets the thread finish the queue and exit.
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
}

impl Writer {
    /// Starts the writer thread over `conn`; `changed` is notified after each commit that
    /// wrote something.
    pub(crate) fn spawn(conn: Connection, db: Arc<str>, changed: Arc<Notify>) -> Result<Self> {
        let (sender, receiver) = mpsc::channel::<Box<dyn Job>>();
        let shared = Arc::new(Shared {
            conn: Mutex::new(conn),
            active: AtomicUsize::new(0),
            changed,
            counters: Counters::default(),
            db: db.clone(),
        });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(&for_thread, receiver))
            .map_err(|e| Error::backend(format!("SQLite {db}: starting the writer thread"), e))?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
            shared,
        })
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> WriterStats {
        let c = &self.shared.counters;
        WriterStats {
            transactions: c.transactions.load(Ordering::Relaxed),
            requests: c.requests.load(Ordering::Relaxed),
            submitted: c.submitted.load(Ordering::Relaxed),
        }
    }

    /// Runs `work` in the next batch transaction and answers after that transaction commits
    /// (at once, in a transaction of its own, when no other request is in progress: see
    /// [`Writer::run_now`]). `writes` says whether it may change data (for change
    /// notifications).
    pub(crate) async fn call<T, F>(&self, writes: bool, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let _active = Active::enter(&self.shared.active);
        let work = match self.run_now(writes, work) {
            Ok(answer) => return answer,
            Err(work) => work,
        };
        let db = &self.shared.db;
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply,
            writes,
            db: db.clone(),
        });
        let gone = || Error::backend(format!("SQLite {db}"), "the writer thread has stopped");
        self.sender
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        self.shared
            .counters
            .submitted
            .fetch_add(1, Ordering::Relaxed);
        answer.await.map_err(|_| gone())?
    }

    /// Runs `work` on this thread in a transaction of its own when no other request is in
    /// progress and the connection is free; gives `work` back otherwise, or when another
    /// process holds the database's write lock (the writer thread waits for that).
    fn run_now<T, F>(&self, writes: bool, work: F) -> std::result::Result<Result<T>, F>
    where
        F: FnOnce(&Connection) -> Result<T>,
    {
        let shared = &*self.shared;
        if shared.active.load(Ordering::SeqCst) != 1 {
            return Err(work);
        }
        // busy, or poisoned by a panic elsewhere: the writer thread takes it (and recovers it)
        let Ok(conn) = shared.conn.try_lock() else {
            return Err(work);
        };
        // No waiting on this thread: without the busy handler, a lock held by another process
        // fails the BEGIN at once.
        if conn.busy_handler(None).is_err() {
            return Err(work);
        }
        let began = exec(&conn, "BEGIN IMMEDIATE");
        let restored = crate::schema::keep_waiting_for_locks(&conn);
        match (began, restored) {
            (Ok(()), Ok(())) => {}
            (Ok(()), Err(_)) => {
                let _ = exec(&conn, "ROLLBACK");
                return Err(work);
            }
            (Err(_), _) => return Err(work),
        }
        let db = &shared.db;
        let result = match catch_unwind(AssertUnwindSafe(|| work(&conn))) {
            Ok(r) => r,
            Err(_) => Err(Error::backend(
                format!("SQLite {db}"),
                "a storage request panicked; its changes were rolled back",
            )),
        };
        shared.counters.transactions.fetch_add(1, Ordering::Relaxed);
        shared.counters.requests.fetch_add(1, Ordering::Relaxed);
        if result.is_err() {
            let _ = exec(&conn, "ROLLBACK");
            return Ok(result);
        }
        if let Err(e) = exec(&conn, "COMMIT") {
            let _ = exec(&conn, "ROLLBACK");
            tracing::warn!(db = &**db, error = %e, "SQLite commit failed");
            return Ok(Err(Error::backend(format!("SQLite {db}: committing"), e)));
        }
        drop(conn);
        if writes {
            shared.changed.notify_waiters();
        }
        Ok(result)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.sender.take();
        if let Some(t) = self.thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

/// Counts a request in progress for as long as it lives.
struct Active<'a>(&'a AtomicUsize);

impl<'a> Active<'a> {
    fn enter(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Active(count)
    }
}

impl Drop for Active<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn writer_loop(shared: &Shared, receiver: mpsc::Receiver<Box<dyn Job>>) {
    let Shared {
        conn,
        changed,
        counters,
        db,
        ..
    } = shared;
    let db = &**db;
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let conn = conn.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = exec(&conn, "BEGIN IMMEDIATE") {
            let why = format!("starting the write transaction: {e}");
            tracing::warn!(db, error = %e, "SQLite write transaction could not start");
            for job in batch {
                job.finish(Err(&why));
            }
            continue;
        }
        for job in &mut batch {
            job.run(&conn);
        }
        counters.transactions.fetch_add(1, Ordering::Relaxed);
        counters
            .requests
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        let commit = exec(&conn, "COMMIT").map_err(|e| {
            let _ = exec(&conn, "ROLLBACK");
            tracing::warn!(db, error = %e, "SQLite commit failed");
            e.to_string()
        });
        drop(conn);
        let wrote = commit.is_ok() && batch.iter().any(|j| j.writes());
        for job in batch {
            job.finish(commit.as_ref().map(|_| ()).map_err(String::as_str));
        }
        if wrote {
            changed.notify_waiters();
        }
    }
}
