//! Logs for [`Machine`](sequential_flow_graph::Machine) where I/O is allowed: [`FileLog`], an
//! NDJSON file with one record per line, appended under an exclusive lock and fsynced before
//! an append returns, read under a shared lock; several processes may open the same file (one
//! writes at a time, the others follow with `Machine::sync`).
//!
//! ```
//! use sequential_tasker_engine::flow_graph::{Definition, Machine};
//! use sequential_tasker_engine::machine::FileLog;
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("cube.ndjson");
//! let def = Definition::from_json(r#"{"initial": "idle", "context": {"counter": 0},
//!   "states": {"idle": {"on": {"START": {"target": "running",
//!       "action": {"assign": {"counter": "$.payload"}}}}},
//!     "running": {"on": {"STOP": "idle"}}}}"#)?;
//! let mut m = Machine::open(def.clone(), FileLog::open(&path)?)?;
//! m.action("START", json!(5))?;
//! // another process (here: another machine) opening the file reaches the same state
//! let again = Machine::open(def, FileLog::open(&path)?)?;
//! assert_eq!((again.state(), again.context()), ("running", &json!({"counter": 5})));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sequential_flow_graph::machine::LogEntry;
use sequential_flow_graph::{Error, MachineLog, Result};
use sequential_support::fs::LockFile;

/// A machine log in an NDJSON file (see the module docs). A torn last line (a writer killed
/// mid-write) is skipped when read and cut off before the next append.
#[derive(Debug, Clone)]
pub struct FileLog {
    path: PathBuf,
}

impl FileLog {
    /// Opens the log at `path`, creating an empty one (and its directory) when missing.
    pub fn open(path: impl AsRef<Path>) -> Result<FileLog> {
        let path = path.as_ref().to_path_buf();
        let dir = sequential_support::fs::parent(&path).to_path_buf();
        sequential_support::fs::ensure_dir(&dir)
            .map_err(|e| io("creating the log's directory", &dir, e))?;
        let created = !path.exists();
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("opening machine log", &path, e))?;
        if created {
            sequential_support::fs::sync_dir(&dir)
                .map_err(|e| io("syncing the log's directory", &dir, e))?;
        }
        Ok(FileLog { path })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self, exclusive: bool) -> Result<LockFile> {
        LockFile::existing(&self.path, exclusive)
            .map_err(|e| io("locking machine log", &self.path, e))?
            .ok_or_else(|| Error::Log {
                context: format!("machine log {}", self.path.display()),
                source: "the file was removed".into(),
            })
    }
}

/// The entries of a log file's text, and the length of its whole lines (a torn last line
/// without its newline is not counted).
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<LogEntry>, usize)> {
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for (n, line) in bytes[..whole].split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let entry: LogEntry = serde_json::from_slice(line).map_err(|e| Error::Log {
            context: format!("machine log {} line {}", path.display(), n + 1),
            source: Box::new(e),
        })?;
        out.push(entry);
    }
    Ok((out, whole))
}

fn read_all(path: &Path, mut file: &File) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| io("reading machine log", path, e))?;
    Ok(bytes)
}

fn io(what: &str, path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Log {
        context: format!("{what} {}", path.display()),
        source: Box::new(e),
    }
}

impl MachineLog for FileLog {
    fn append(&self, entry: &LogEntry) -> Result<()> {
        let lock = self.lock(true)?;
        let mut file = lock.file();
        let bytes = read_all(&self.path, file)?;
        let (entries, whole) = parse(&self.path, &bytes)?;
        let next = entries.last().map_or(1, |e| e.seq + 1);
        if entry.seq != next {
            return Err(Error::Conflict {
                what: format!(
                    "append of seq {} to {}, whose next seq is {next} (another writer appended first; sync and retry)",
                    entry.seq,
                    self.path.display()
                ),
            });
        }
        let mut line =
            serde_json::to_vec(entry).map_err(|e| io("encoding a record for", &self.path, e))?;
        line.push(b'\n');
        (|| {
            if whole < bytes.len() {
                file.set_len(whole as u64)?; // a torn last line is cut off
            }
            file.seek(SeekFrom::Start(whole as u64))?;
            file.write_all(&line)?;
            file.sync_data()
        })()
        .map_err(|e| io("appending to machine log", &self.path, e))
    }

    fn read_after(&self, after: u64) -> Result<Vec<LogEntry>> {
        let lock = self.lock(false)?;
        let bytes = read_all(&self.path, lock.file())?;
        let (entries, _) = parse(&self.path, &bytes)?;
        Ok(entries.into_iter().filter(|e| e.seq > after).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(seq: u64) -> LogEntry {
        LogEntry {
            seq,
            event: "E".into(),
            payload: json!(seq),
            state: "s".into(),
            context_hash: "h".into(),
        }
    }

    #[test]
    fn appends_are_dense_and_a_torn_tail_is_skipped_then_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m/log.ndjson");
        let log = FileLog::open(&path).unwrap();
        log.append(&entry(1)).unwrap();
        let err = log.append(&entry(3)).unwrap_err().to_string();
        assert!(err.contains("next seq is 2"), "{err}");
        // a writer killed mid-line
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq\": 2, \"ev")
            .unwrap();
        assert_eq!(log.read_after(0).unwrap(), [entry(1)]);
        log.append(&entry(2)).unwrap();
        assert_eq!(log.read_after(0).unwrap(), [entry(1), entry(2)]);
        assert_eq!(log.read_after(1).unwrap(), [entry(2)]);
        assert_eq!(log.last_seq().unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
    }
}
