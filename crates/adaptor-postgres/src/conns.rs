//! Connections without sqlx's ping on release.
//!
//! sqlx's pool tests every connection handed back to it with a `Sync` round trip before the
//! connection may be used again: one extra round trip — a wake-up of the server's backend and
//! of the client — per statement, as many as the statements themselves. Here the single
//! statements of a store take a connection from a free list of their own ([`Conns::get`]) and
//! put it back when done, without that ping: sqlx still waits for a connection's pending
//! answers before its next statement, so a statement whose caller went away mid-way leaves
//! nothing behind but an answer to skip (an autocommit statement holds no lock once it ended).
//! Transactions are different — one dropped mid-way queues its `ROLLBACK` and would hold its
//! locks until the connection's next use — so they take a connection out ([`Conns::take`]) and
//! hand it back to sqlx's pool, which pings it and so sends that `ROLLBACK` at once.
//!
//! The connections in the free list count against the pool's size, as checked out: [`Conns::take`]
//! reuses one of them before asking the pool, so the pool never waits for connections that sit
//! idle in the list.
//!
//! A caller that finds the free list empty while the pool may still grow asks the pool for a new
//! connection in a task of its own, and takes whichever comes first: that new connection or one
//! handed back to the free list. A connection being opened is never given up half-way — it
//! joins the free list when it is ready. (Giving it up, as a plain `select!` between the two
//! does, kept the pool at one connection under load: a connection came back every few
//! milliseconds, always before a new one was open, so every statement of a worker waited for
//! that one connection — 9 ms per batch of appends in the engine bench's stream.)

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};

use sqlx::Postgres;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnection, PgPool};

use crate::codec::{Doing, R};

/// A pool and the free list of its connections that statements hand back without a ping.
#[derive(Debug)]
pub(crate) struct Conns {
    pub(crate) pool: PgPool,
    free: Arc<Free>,
}

/// The free list, shared with the tasks that open connections for it.
#[derive(Debug, Default)]
struct Free {
    idle: Mutex<Vec<PoolConnection<Postgres>>>,
    /// Told when a connection comes back to the free list: a caller waiting for the pool (all
    /// its connections checked out, some of them idle here) looks again.
    returned: tokio::sync::Notify,
}

impl Free {
    fn pop(&self) -> Option<PoolConnection<Postgres>> {
        self.idle.lock().ok().and_then(|mut idle| idle.pop())
    }

    /// Puts `conn` in the list and tells one waiter.
    fn put(&self, conn: PoolConnection<Postgres>) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(conn),
            Err(_) => return release(conn),
        }
        self.returned.notify_one();
    }

    /// Empties the list, handing its connections to the caller.
    fn take_all(&self) -> Vec<PoolConnection<Postgres>> {
        self.idle
            .lock()
            .map(|mut idle| std::mem::take(&mut *idle))
            .unwrap_or_default()
    }
}

impl Drop for Free {
    fn drop(&mut self) {
        for conn in self.take_all() {
            release(conn);
        }
    }
}

/// A new connection being opened by the pool, in a task of its own.
type Opening = tokio::task::JoinHandle<Result<PoolConnection<Postgres>, sqlx::Error>>;

impl Conns {
    pub(crate) fn new(pool: PgPool) -> Arc<Self> {
        Arc::new(Conns {
            pool,
            free: Arc::default(),
        })
    }

    /// A connection for one statement (or a few, none in a transaction): the most recently
    /// used idle one, else a new checkout from the pool. Put back in the free list on drop.
    pub(crate) async fn get(self: &Arc<Self>) -> R<Conn> {
        let conn = self.take().await?;
        Ok(Conn {
            conn: Some(conn),
            home: self.clone(),
        })
    }

    /// A connection of one's own (for a transaction): an idle one of the free list, else a
    /// checkout from the pool. Dropping it hands it back to the pool (which pings it).
    pub(crate) async fn take(&self) -> R<PoolConnection<Postgres>> {
        self.take_sqlx().await.doing("connecting to the database")
    }

    /// [`Conns::take`] with sqlx's error.
    pub(crate) async fn take_sqlx(&self) -> Result<PoolConnection<Postgres>, sqlx::Error> {
        let mut opening: Option<Opening> = None;
        loop {
            if let Some(conn) = self.free.pop() {
                if let Some(task) = opening {
                    // the new connection joins the free list once it is open
                    let (free, pool) = (self.free.clone(), self.pool.clone());
                    tokio::spawn(async move {
                        match task.await {
                            // a closing pool waits for every connection checked out
                            Ok(Ok(conn)) if pool.is_closed() => release(conn),
                            Ok(Ok(conn)) => free.put(conn),
                            _ => {}
                        }
                    });
                }
                return Ok(conn);
            }
            let max = self.pool.options().get_max_connections();
            if opening.is_none() && self.pool.size() < max {
                let pool = self.pool.clone();
                opening = Some(tokio::spawn(async move { pool.acquire().await }));
            }
            // the pool does not see connections coming back to the free list: wait for either
            match opening.as_mut() {
                Some(task) => tokio::select! {
                    biased;
                    () = self.free.returned.notified() => {}
                    done = task => {
                        return done.unwrap_or_else(|e| Err(sqlx::Error::Io(std::io::Error::other(e))));
                    }
                },
                // every connection is out: only one handed back can come (to the free list, or
                // to the pool after a transaction), and no connect is cut short here
                None => tokio::select! {
                    biased;
                    () = self.free.returned.notified() => {}
                    conn = self.pool.acquire() => return conn,
                },
            }
        }
    }

    /// Closes the idle connections of the free list (after a connection failed, they are
    /// likely dead too), and those idle in the pool.
    pub(crate) fn forget_idle(&self) {
        let idle = self.take_idle();
        for conn in idle {
            let mut conn = conn;
            conn.close_on_drop();
            release(conn);
        }
        for _ in 0..self.pool.num_idle() {
            match self.pool.try_acquire() {
                Some(mut conn) => conn.close_on_drop(),
                None => break,
            }
        }
    }

    /// Empties the free list, handing its connections to the caller.
    fn take_idle(&self) -> Vec<PoolConnection<Postgres>> {
        self.free.take_all()
    }

    /// Hands the free list back to the pool (before closing it: the pool waits for every
    /// connection checked out).
    pub(crate) fn release_idle(&self) {
        let idle = self.take_idle();
        for conn in idle {
            release(conn);
        }
    }
}

impl Drop for Conns {
    fn drop(&mut self) {
        self.release_idle();
    }
}

/// Hands `conn` back to its pool; outside a runtime (where the pool cannot run its return),
/// detaches and closes it instead.
fn release(conn: PoolConnection<Postgres>) {
    if tokio::runtime::Handle::try_current().is_ok() {
        drop(conn);
    } else {
        drop(conn.detach());
    }
}

/// A connection from [`Conns::get`], back in the free list when dropped.
pub(crate) struct Conn {
    conn: Option<PoolConnection<Postgres>>,
    home: Arc<Conns>,
}

impl Deref for Conn {
    type Target = PgConnection;

    fn deref(&self) -> &PgConnection {
        self.conn.as_deref().expect("a connection until dropped")
    }
}

impl DerefMut for Conn {
    fn deref_mut(&mut self) -> &mut PgConnection {
        self.conn
            .as_deref_mut()
            .expect("a connection until dropped")
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.home.pool.is_closed() {
                // closing waits for every connection checked out
                return release(conn);
            }
            self.home.free.put(conn);
        }
    }
}
