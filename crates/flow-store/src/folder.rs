//! A folder: one JSON file per task, and an expiry index of empty marker files.
//!
//! ```text
//! <root>/format.json                      {"format": "sequential-flow-store/folder", "version": 1}
//! <root>/tasks/<id>.json                  the record (temp + fsync + rename + directory fsync)
//! <root>/expiry/<minute>/<due>-<id>       an empty marker per record, bucketed by minute
//! ```
//! A purge reads only the buckets that are due (one directory per minute that has
//! expirations), never every task. Ids outside `[A-Za-z0-9._-]` (or starting with `.`) are
//! stored hex-encoded behind a `~`. A marker is not fsynced: losing one after a crash only
//! leaves an expired (and still invisible) task unpurged.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use sequential_support::fs;

use crate::backend::TaskStore;
use crate::error::{Error, Result};
use crate::task::{Record, Task};

const FORMAT: &str = "sequential-flow-store/folder";
const BUCKET_MS: i64 = 60_000;

/// The folder backend.
#[derive(Debug, Clone)]
pub struct FolderTaskStore {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    root: PathBuf,
    url: String,
}

impl FolderTaskStore {
    /// Opens (creating) the store in `root`.
    pub fn open(root: &Path) -> Result<FolderTaskStore> {
        let url = root.display().to_string();
        let unreachable = |e: fs::FsError| Error::Unreachable {
            url: url.clone(),
            detail: e.to_string(),
        };
        for dir in [root.to_path_buf(), root.join("tasks"), root.join("expiry")] {
            fs::ensure_dir(&dir).map_err(unreachable)?;
        }
        let format = root.join("format.json");
        match fs::read_opt(&format).map_err(unreachable)? {
            Some(bytes) => {
                let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
                if v["format"] != FORMAT || v["version"].as_u64().unwrap_or(u64::MAX) > 1 {
                    return Err(Error::InvalidUrl {
                        url,
                        expected: format!(
                            "a folder of {FORMAT} version 1 (its format.json says otherwise)"
                        ),
                    });
                }
            }
            None => {
                let body = serde_json::json!({"format": FORMAT, "version": 1}).to_string();
                fs::write_atomic(&format, body.as_bytes()).map_err(unreachable)?;
            }
        }
        Ok(FolderTaskStore {
            inner: Arc::new(Inner {
                root: root.to_path_buf(),
                url,
            }),
        })
    }
}

fn file_name(id: &str) -> String {
    let plain = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if plain {
        id.to_string()
    } else {
        let hex: String = id.bytes().map(|b| format!("{b:02x}")).collect();
        format!("~{hex}")
    }
}

fn id_of(file_name: &str) -> Option<String> {
    match file_name.strip_prefix('~') {
        Some(hex) => {
            let bytes: Option<Vec<u8>> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
                .collect();
            String::from_utf8(bytes?).ok()
        }
        None => Some(file_name.to_string()),
    }
}

impl Inner {
    fn record_path(&self, id: &str) -> PathBuf {
        self.root
            .join("tasks")
            .join(format!("{}.json", file_name(id)))
    }

    fn marker_path(&self, id: &str, due: i64) -> PathBuf {
        self.root
            .join("expiry")
            .join(due.div_euclid(BUCKET_MS).to_string())
            .join(format!("{due}-{}", file_name(id)))
    }

    fn err(&self, doing: String, e: impl std::fmt::Display) -> Error {
        Error::backend(&self.url, doing, e)
    }

    fn read(&self, id: &str) -> Result<Option<Record>> {
        let path = self.record_path(id);
        match fs::read_opt(&path).map_err(|e| self.err(format!("reading task {id:?}"), e))? {
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                Record::decode(&text, id, &self.url).map(Some)
            }
            None => Ok(None),
        }
    }

    fn put(&self, record: &Record) -> Result<()> {
        let id = record.id();
        let old = self.read(id).ok().flatten();
        let marker = self.marker_path(id, record.due_at());
        let index = || -> std::io::Result<()> {
            if let Some(dir) = marker.parent() {
                fs::ensure_dir(dir).map_err(std::io::Error::other)?;
            }
            std::fs::File::create(&marker).map(drop)
        };
        // a purge may remove an emptied bucket between the two steps: once more then
        index()
            .or_else(|_| index())
            .map_err(|e| self.err(format!("indexing task {id:?}"), e))?;
        fs::write_atomic(&self.record_path(id), record.encode().as_bytes())
            .map_err(|e| self.err(format!("saving task {id:?}"), e))?;
        if let Some(old) = old
            && old.due_at() != record.due_at()
        {
            let _ = fs::remove_opt(&self.marker_path(id, old.due_at()));
        }
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<bool> {
        let old = self.read(id).ok().flatten();
        let path = self.record_path(id);
        let existed = path.exists();
        fs::remove_opt(&path).map_err(|e| self.err(format!("removing task {id:?}"), e))?;
        if let Some(old) = old {
            let _ = fs::remove_opt(&self.marker_path(id, old.due_at()));
        }
        Ok(existed)
    }

    fn list(&self, now: i64, limit: usize) -> Result<Vec<Task>> {
        let dir = self.root.join("tasks");
        let entries = std::fs::read_dir(&dir).map_err(|e| self.err("listing tasks".into(), e))?;
        let mut tasks = Vec::new();
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(stem) = name.strip_suffix(".json") else {
                continue;
            };
            if stem.starts_with('.') {
                continue;
            }
            let Some(id) = id_of(stem) else { continue };
            if let Ok(Some(Record::Task(t))) = self.read(&id)
                && !t.is_expired(now)
            {
                tasks.push(t);
            }
        }
        tasks.sort_by(|a, b| b.updated_at.cmp(&a.updated_at).then(a.id.cmp(&b.id)));
        tasks.truncate(limit);
        Ok(tasks)
    }

    fn due(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let expiry = self.root.join("expiry");
        let entries = std::fs::read_dir(&expiry)
            .map_err(|e| self.err("reading the expiry index".into(), e))?;
        let mut buckets: Vec<i64> = entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .filter(|b: &i64| *b <= now.div_euclid(BUCKET_MS))
            .collect();
        buckets.sort_unstable();
        let mut due: Vec<(i64, String, PathBuf)> = Vec::new();
        let mut emptied = Vec::new();
        for bucket in buckets {
            let dir = expiry.join(bucket.to_string());
            let Ok(markers) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut any_left = false;
            for m in markers.flatten() {
                let name = m.file_name().to_string_lossy().into_owned();
                let parsed = name
                    .split_once('-')
                    .and_then(|(d, f)| Some((d.parse::<i64>().ok()?, id_of(f)?)));
                match parsed {
                    Some((d, id)) if d <= now => due.push((d, id, m.path())),
                    Some(_) => any_left = true,
                    None => {}
                }
            }
            if !any_left {
                emptied.push(dir);
            }
            if due.len() >= limit {
                break;
            }
        }
        due.sort();
        due.truncate(limit);
        for (_, _, path) in &due {
            let _ = fs::remove_opt(path);
        }
        for dir in emptied {
            // an emptied bucket goes (remove_dir fails on a non-empty one)
            let _ = std::fs::remove_dir(dir);
        }
        Ok(due.into_iter().map(|(_, id, _)| id).collect())
    }
}

#[async_trait]
impl TaskStore for FolderTaskStore {
    fn url(&self) -> &str {
        &self.inner.url
    }

    async fn put(&self, record: &Record) -> Result<()> {
        let inner = self.inner.clone();
        let record = record.clone();
        blocking(&self.inner.url, move || inner.put(&record)).await
    }

    async fn get(&self, id: &str) -> Result<Option<Record>> {
        self.inner.read(id)
    }

    async fn remove(&self, id: &str) -> Result<bool> {
        let inner = self.inner.clone();
        let id = id.to_string();
        blocking(&self.inner.url, move || inner.remove(&id)).await
    }

    async fn list(&self, now: i64, limit: usize) -> Result<Vec<Task>> {
        let inner = self.inner.clone();
        blocking(&self.inner.url, move || inner.list(now, limit)).await
    }

    async fn due(&self, now: i64, limit: usize) -> Result<Vec<String>> {
        let inner = self.inner.clone();
        blocking(&self.inner.url, move || inner.due(now, limit)).await
    }
}

/// Runs blocking file or database work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    url: &str,
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::backend(url, "a blocking task", e))?
}
