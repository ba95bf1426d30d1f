//! `memory:` — records in process memory (the default; gone with the process).

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;

use crate::backend::TaskStore;
use crate::error::Result;
use crate::task::{Record, Task};

/// The in-memory backend: a map and a sorted expiry index.
#[derive(Debug, Default)]
pub struct MemoryTaskStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    records: HashMap<String, Record>,
    index: BTreeSet<(i64, String)>,
}

impl MemoryTaskStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    fn take(&mut self, id: &str) -> Option<Record> {
        let old = self.records.remove(id)?;
        self.index.remove(&(old.due_at(), id.to_string()));
        Some(old)
    }
}

#[async_trait]
impl TaskStore for MemoryTaskStore {
    fn url(&self) -> &str {
        "memory:"
    }

    async fn put(&self, record: &Record) -> Result<()> {
        let mut inner = self.lock();
        let id = record.id().to_string();
        inner.take(&id);
        inner.index.insert((record.due_at(), id.clone()));
        inner.records.insert(id, record.clone());
        Ok(())
    }

    async fn get(&self, id: &str) -> Result<Option<Record>> {
        Ok(self.lock().records.get(id).cloned())
    }

    async fn remove(&self, id: &str) -> Result<bool> {
        Ok(self.lock().take(id).is_some())
    }

    async fn list(&self, now: i64, limit: usize) -> Result<Vec<Task>> {
        let inner = self.lock();
        let mut tasks: Vec<Task> = inner
            .records
            .values()
            .filter_map(|r| match r {
                Record::Task(t) if !t.is_expired(now) => Some(t.clone()),
                _ => None,
            })
            .collect();
        tasks.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        tasks.truncate(limit);
        Ok(tasks)
    }

    async fn due(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let inner = self.lock();
        Ok(inner
            .index
            .iter()
            .take_while(|(due, _)| *due <= now)
            .take(limit)
            .map(|(_, id)| id.clone())
            .collect())
    }
}
