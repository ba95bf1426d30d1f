//! The machine log: its records (`{seq, event, payload, state, context_hash}`), the trait a
//! log implements, an in-memory log, and the context hash.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

/// One accepted event, as a log stores it. The context is not stored: replay re-runs the
/// actions and checks `context_hash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    /// 1, 2, 3 … (dense).
    pub seq: u64,
    /// The event's name.
    pub event: String,
    /// Its payload (`null` when none was given).
    pub payload: Value,
    /// The state after the transition.
    pub state: String,
    /// [`context_hash`] of the context after the transition.
    pub context_hash: String,
}

/// Where a [`Machine`](super::Machine) keeps its records. Object-safe; implementations live
/// where I/O is allowed (a fsynced NDJSON file, a `StorageAdapter`), and [`MemoryLog`] here.
pub trait MachineLog: Send + Sync + fmt::Debug {
    /// Appends `entry`. Its seq must be one more than the last entry's (1 for an empty log);
    /// otherwise [`Error::Conflict`] (another writer appended first) and nothing is written.
    fn append(&self, entry: &LogEntry) -> Result<()>;

    /// The entries with seq greater than `after`, in order.
    fn read_after(&self, after: u64) -> Result<Vec<LogEntry>>;

    /// The last seq (0 for an empty log).
    fn last_seq(&self) -> Result<u64> {
        Ok(self.read_after(0)?.last().map_or(0, |e| e.seq))
    }
}

/// A log in memory. Clones share the same entries, so two machines opened on clones see each
/// other's appends (as two processes on one file would).
#[derive(Debug, Clone, Default)]
pub struct MemoryLog {
    entries: Arc<Mutex<Vec<LogEntry>>>,
}

impl MemoryLog {
    /// An empty log.
    pub fn new() -> MemoryLog {
        MemoryLog::default()
    }

    /// A copy of every entry.
    pub fn entries(&self) -> Vec<LogEntry> {
        self.lock().clone()
    }

    fn lock(&self) -> MutexGuard<'_, Vec<LogEntry>> {
        // a poisoned lock only means a panic elsewhere while holding it; the Vec is intact
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MachineLog for MemoryLog {
    fn append(&self, entry: &LogEntry) -> Result<()> {
        let mut v = self.lock();
        let next = v.last().map_or(1, |e| e.seq + 1);
        if entry.seq != next {
            return Err(Error::Conflict {
                what: format!(
                    "append of seq {} to a log whose next seq is {next} (another writer appended first; sync and retry)",
                    entry.seq
                ),
            });
        }
        v.push(entry.clone());
        Ok(())
    }

    fn read_after(&self, after: u64) -> Result<Vec<LogEntry>> {
        let v = self.lock();
        let start = v.partition_point(|e| e.seq <= after);
        Ok(v[start..].to_vec())
    }

    fn last_seq(&self) -> Result<u64> {
        Ok(self.lock().last().map_or(0, |e| e.seq))
    }
}

/// The hash a log records for a context: 64-bit FNV-1a over its canonical JSON (object keys
/// sorted, no whitespace), written `fnv1a64:<16 hex digits>`. It detects a definition that no
/// longer reproduces a log; it is not a cryptographic digest.
pub fn context_hash(context: &Value) -> String {
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    canonical(context, &mut h);
    format!("fnv1a64:{:016x}", h.0)
}

struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn canonical(v: &Value, h: &mut Fnv) {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            h.write(b"{");
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    h.write(b",");
                }
                h.write(Value::String(k.clone()).to_string().as_bytes());
                h.write(b":");
                canonical(&m[k], h);
            }
            h.write(b"}");
        }
        Value::Array(a) => {
            h.write(b"[");
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    h.write(b",");
                }
                canonical(x, h);
            }
            h.write(b"]");
        }
        other => h.write(other.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn hash_ignores_key_order_and_sees_values() {
        let a = context_hash(&json!({"a": 1, "b": [true, null]}));
        let mut m = serde_json::Map::new();
        m.insert("b".into(), json!([true, null]));
        m.insert("a".into(), json!(1));
        assert_eq!(a, context_hash(&Value::Object(m)));
        assert_ne!(a, context_hash(&json!({"a": 2, "b": [true, null]})));
        assert!(a.starts_with("fnv1a64:") && a.len() == 24, "{a}");
    }

    #[test]
    fn memory_log_appends_densely() {
        let log = MemoryLog::new();
        let e = |seq| LogEntry {
            seq,
            event: "E".into(),
            payload: Value::Null,
            state: "s".into(),
            context_hash: String::new(),
        };
        log.append(&e(1)).unwrap();
        assert!(matches!(log.append(&e(1)), Err(Error::Conflict { .. })));
        log.append(&e(2)).unwrap();
        assert_eq!(log.read_after(1).unwrap(), [e(2)]);
        assert_eq!(log.last_seq().unwrap(), 2);
    }
}
