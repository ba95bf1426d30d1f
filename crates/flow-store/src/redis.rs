//! Redis: TTL by key expiry. Keys under a prefix (`sequential-flow:` unless the URL says
//! `?prefix=NAME`): `<prefix>task:<id>` (expires at the task's `expiresAt`), `<prefix>gone:<id>`
//! (the tombstone, written beside the task so it is there once Redis drops the task), and the
//! sorted set `<prefix>index` of live tasks by `expiresAt` (for `list` and the purge).

use async_trait::async_trait;
use redis::AsyncCommands;
use redis::aio::MultiplexedConnection;

use crate::backend::TaskStore;
use crate::error::{Error, Result};
use crate::open::redact;
use crate::task::{Gone, GoneReason, Record, Task};

/// The key prefix a URL without `?prefix=` uses.
pub const DEFAULT_REDIS_PREFIX: &str = "sequential-flow:";

/// The Redis backend.
#[derive(Debug, Clone)]
pub struct RedisTaskStore {
    conn: MultiplexedConnection,
    prefix: String,
    url: String,
}

impl RedisTaskStore {
    /// Connects to `url` (refusing at once when the server cannot be reached).
    pub async fn open(url: &str) -> Result<RedisTaskStore> {
        let shown = redact(url);
        let (base, prefix) = match url.split_once('?') {
            Some((base, query)) => {
                let mut prefix = DEFAULT_REDIS_PREFIX.to_string();
                let mut rest = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    match pair.split_once('=') {
                        Some(("prefix", v)) => prefix = v.to_string(),
                        _ => rest.push(pair),
                    }
                }
                let base = if rest.is_empty() {
                    base.to_string()
                } else {
                    format!("{base}?{}", rest.join("&"))
                };
                (base, prefix)
            }
            None => (url.to_string(), DEFAULT_REDIS_PREFIX.to_string()),
        };
        let unreachable = |detail: String| Error::Unreachable {
            url: shown.clone(),
            detail,
        };
        let client = redis::Client::open(base.as_str()).map_err(|e| Error::InvalidUrl {
            url: shown.clone(),
            expected: format!("redis://[:PASSWORD@]HOST[:PORT][/DB][?prefix=NAME] ({e})"),
        })?;
        let connect = client.get_multiplexed_async_connection();
        let mut conn = tokio::time::timeout(std::time::Duration::from_secs(5), connect)
            .await
            .map_err(|_| unreachable("no answer within 5 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(RedisTaskStore {
            conn,
            prefix,
            url: shown,
        })
    }

    fn task_key(&self, id: &str) -> String {
        format!("{}task:{id}", self.prefix)
    }

    fn gone_key(&self, id: &str) -> String {
        format!("{}gone:{id}", self.prefix)
    }

    fn index_key(&self) -> String {
        format!("{}index", self.prefix)
    }

    fn err(&self, doing: String, e: redis::RedisError) -> Error {
        Error::backend(&self.url, doing, e)
    }
}

fn pxat(at: i64) -> redis::SetOptions {
    redis::SetOptions::default().with_expiration(redis::SetExpiry::PXAT(at.max(1) as u64))
}

#[async_trait]
impl TaskStore for RedisTaskStore {
    fn url(&self) -> &str {
        &self.url
    }

    async fn put(&self, record: &Record) -> Result<()> {
        let id = record.id();
        let mut pipe = redis::pipe();
        pipe.atomic();
        match record {
            Record::Task(t) => {
                let tombstone = Record::Gone(Gone::new(id, GoneReason::Expired, t.expires_at));
                pipe.set_options(self.task_key(id), record.encode(), pxat(t.expires_at))
                    .set_options(
                        self.gone_key(id),
                        tombstone.encode(),
                        pxat(tombstone.due_at()),
                    )
                    .zadd(self.index_key(), id, t.expires_at);
            }
            Record::Gone(g) => {
                pipe.del(self.task_key(id))
                    .set_options(self.gone_key(id), record.encode(), pxat(g.forget_at))
                    .zrem(self.index_key(), id);
            }
        }
        let mut conn = self.conn.clone();
        pipe.query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.err(format!("saving task {id:?}"), e))
    }

    async fn get(&self, id: &str) -> Result<Option<Record>> {
        let mut conn = self.conn.clone();
        let (task, gone): (Option<String>, Option<String>) = redis::pipe()
            .get(self.task_key(id))
            .get(self.gone_key(id))
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(format!("loading task {id:?}"), e))?;
        match (task, gone) {
            (Some(t), _) => Record::decode(&t, id, &self.url).map(Some),
            (None, Some(g)) => Record::decode(&g, id, &self.url).map(Some),
            (None, None) => Ok(None),
        }
    }

    async fn remove(&self, id: &str) -> Result<bool> {
        let mut conn = self.conn.clone();
        let (n, _): (u64, u64) = redis::pipe()
            .atomic()
            .del(&[self.task_key(id), self.gone_key(id)])
            .zrem(self.index_key(), id)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err(format!("removing task {id:?}"), e))?;
        Ok(n > 0)
    }

    async fn list(&self, now: i64, limit: usize) -> Result<Vec<Task>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .zrangebyscore(self.index_key(), format!("({now}"), "+inf")
            .await
            .map_err(|e| self.err("listing tasks".into(), e))?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.task_key(id)).collect();
        let texts: Vec<Option<String>> = redis::cmd("MGET")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.err("listing tasks".into(), e))?;
        let mut tasks = Vec::new();
        for (id, text) in ids.iter().zip(texts) {
            if let Some(text) = text
                && let Record::Task(t) = Record::decode(&text, id, &self.url)?
                && !t.is_expired(now)
            {
                tasks.push(t);
            }
        }
        tasks.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        tasks.truncate(limit);
        Ok(tasks)
    }

    async fn due(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let mut conn = self.conn.clone();
        let ids: Vec<String> = conn
            .zrangebyscore_limit(self.index_key(), "-inf", now, 0, limit as isize)
            .await
            .map_err(|e| self.err("reading the expiry index".into(), e))?;
        if !ids.is_empty() {
            // Redis drops the keys itself; the index entries go here
            let _: u64 = conn
                .zrem(self.index_key(), &ids)
                .await
                .map_err(|e| self.err("trimming the expiry index".into(), e))?;
        }
        Ok(ids)
    }
}
