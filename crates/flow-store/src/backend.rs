//! `TaskStore`: what a backend implements. The rules (expiry, tombstones, purging) live in
//! [`crate::FlowStore`], once, on top of it.

use async_trait::async_trait;

use crate::error::Result;
use crate::task::{Record, Task};

/// A place that keeps [`Record`]s by task id, with an expiry index.
///
/// Backends store and return records as they are told; [`crate::FlowStore`] decides what an
/// expired task or a tombstone means. Every method is checked by the conformance suite
/// ([`crate::task_store_tests!`]).
#[async_trait]
pub trait TaskStore: Send + Sync + std::fmt::Debug {
    /// The store's URL as opened, credentials removed (for messages).
    fn url(&self) -> &str;

    /// Writes `record` under its id, replacing what is there, and files it in the expiry index
    /// at [`Record::due_at`]. Returns once the write is as durable as the backend gets.
    async fn put(&self, record: &Record) -> Result<()>;

    /// The record stored under `id`, whatever its times.
    async fn get(&self, id: &str) -> Result<Option<Record>>;

    /// Removes `id` and its index entry entirely; `true` when something was there.
    async fn remove(&self, id: &str) -> Result<bool>;

    /// Tasks (not tombstones) with `expires_at > now`, most recently updated first, at most
    /// `limit`.
    async fn list(&self, now: i64, limit: usize) -> Result<Vec<Task>>;

    /// Ids whose index entry is due (`due_at <= now`), earliest first, at most `limit`, read
    /// from the expiry index (never a scan of every record). A backend may drop the entries it
    /// returns; the caller then settles each id whole (re-putting it re-files it).
    async fn due(&self, now: i64, limit: usize) -> Result<Vec<String>>;
}
