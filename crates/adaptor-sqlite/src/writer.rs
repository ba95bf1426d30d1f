//! The writer thread: one connection, group commit, one answer per request after the commit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
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
    /// Requests handed to the writer thread (run or still queued).
    pub submitted: u64,
}

#[derive(Default)]
struct Counters {
    transactions: AtomicU64,
    requests: AtomicU64,
    submitted: AtomicU64,
}

/// The handle to the writer thread. Dropping it lets the thread finish the queue and exit.
pub(crate) struct Writer {
    sender: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    db: Arc<str>,
    counters: Arc<Counters>,
}

impl Writer {
    /// Starts the writer thread owning `conn`; `changed` is notified after each commit that
    /// wrote something.
    pub(crate) fn spawn(conn: Connection, db: Arc<str>, changed: Arc<Notify>) -> Result<Self> {
        let (sender, receiver) = mpsc::channel::<Box<dyn Job>>();
        let name = db.clone();
        let counters = Arc::new(Counters::default());
        let counted = counters.clone();
        let thread = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || writer_loop(conn, receiver, &name, &changed, &counted))
            .map_err(|e| Error::backend(format!("SQLite {db}: starting the writer thread"), e))?;
        Ok(Writer {
            sender: Some(sender),
            thread: Some(thread),
            db,
            counters,
        })
    }

    /// The counters so far.
    pub(crate) fn stats(&self) -> WriterStats {
        WriterStats {
            transactions: self.counters.transactions.load(Ordering::Relaxed),
            requests: self.counters.requests.load(Ordering::Relaxed),
            submitted: self.counters.submitted.load(Ordering::Relaxed),
        }
    }

    /// Runs `work` in the next batch transaction and answers after that transaction commits.
    /// `writes` says whether it may change data (for change notifications).
    pub(crate) async fn call<T, F>(&self, writes: bool, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job = Box::new(TypedJob {
            work: Some(work),
            result: None,
            reply,
            writes,
            db: self.db.clone(),
        });
        let gone = || {
            Error::backend(
                format!("SQLite {}", self.db),
                "the writer thread has stopped",
            )
        };
        self.sender
            .as_ref()
            .ok_or_else(gone)?
            .send(job)
            .map_err(|_| gone())?;
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        answer.await.map_err(|_| gone())?
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

fn writer_loop(
    conn: Connection,
    receiver: mpsc::Receiver<Box<dyn Job>>,
    db: &str,
    changed: &Notify,
    counters: &Counters,
) {
    while let Ok(first) = receiver.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match receiver.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
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
        let wrote = commit.is_ok() && batch.iter().any(|j| j.writes());
        for job in batch {
            job.finish(commit.as_ref().map(|_| ()).map_err(String::as_str));
        }
        if wrote {
            changed.notify_waiters();
        }
    }
}
