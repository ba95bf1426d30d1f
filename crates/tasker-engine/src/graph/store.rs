//! How a graph run's journal is written and read: the one writer every append of the run goes
//! through (graph commits and the handlers' `call.*` records), and the load that splits a stored
//! journal into graph records, each handler's VM journal, child runs and imported signals.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sequential_adaptor::{Fence, JournalRecord, RunId, StorageAdapter, now_millis};
use sequential_fetch_vm::{Journal, JournalEntry};
use sequential_flow_graph::Record as GraphRecord;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::journal::{Record, RecordKind};

/// A handler activation: its state path and activation number.
pub(crate) type Key = (String, u64);

/// Appends to one run's journal with the driver's fencing token. Appends are serialized, so the
/// handlers running at once and the graph commits get dense seqs; each append is one
/// all-or-nothing write of the storage.
#[derive(Debug)]
pub(crate) struct Writer {
    store: Arc<dyn StorageAdapter>,
    run: RunId,
    token: u64,
    next: tokio::sync::Mutex<u64>,
}

impl Writer {
    pub(crate) fn new(store: Arc<dyn StorageAdapter>, run: RunId, token: u64, next: u64) -> Self {
        Writer {
            store,
            run,
            token,
            next: tokio::sync::Mutex::new(next),
        }
    }

    /// Appends `(kind, data)` records in one write; all carry the same `at`.
    pub(crate) async fn append(&self, records: Vec<(String, Value)>) -> Result<()> {
        if records.is_empty() {
            return Ok(());
        }
        let mut next = self.next.lock().await;
        let batch = self.batch(*next, records);
        self.store
            .append(self.run, &batch, Fence::Token(self.token))
            .await?;
        *next += batch.len() as u64;
        Ok(())
    }

    /// The last records of the run, given their seqs (all the same `at`) for the caller to
    /// write with the run's settle ([`StorageAdapter::append_and_settle`]); nothing may be
    /// appended after them.
    pub(crate) async fn stamp(&self, records: Vec<(String, Value)>) -> Vec<JournalRecord> {
        let mut next = self.next.lock().await;
        let batch = self.batch(*next, records);
        *next += batch.len() as u64;
        batch
    }

    fn batch(&self, next: u64, records: Vec<(String, Value)>) -> Vec<JournalRecord> {
        let at = now_millis();
        records
            .into_iter()
            .enumerate()
            .map(|(i, (kind, data))| JournalRecord {
                run: self.run,
                seq: next + i as u64,
                kind,
                at,
                data,
            })
            .collect()
    }
}

/// Engine fields stored beside a graph record's own (flow-graph reads past them).
#[derive(Debug, Default, Clone)]
pub(crate) struct Extra {
    /// `run.started`: the task, version and content hash (as implicit runs record them).
    pub(crate) started: Option<(String, u32, String)>,
    /// `event.received`: the inbox signal it was made from (each signal becomes one event).
    pub(crate) signal: Option<u64>,
    /// `state.entered`: who entered it (the previous owner named by `run.recovered`).
    pub(crate) by: Option<String>,
}

/// The stored form of one atomic commit of graph records: each record's kind and data, the
/// first one carrying `batch: n` (how many records the commit holds: a rerun never cuts one).
pub(crate) fn stored(records: &[GraphRecord], extra: &Extra) -> Vec<(String, Value)> {
    let n = records.len();
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (kind, mut data) = r.to_parts();
            if let Value::Object(m) = &mut data {
                if i == 0 {
                    m.insert("batch".into(), n.into());
                }
                match r.data {
                    sequential_flow_graph::RecordData::RunStarted { .. } => {
                        if let Some((task, version, hash)) = &extra.started {
                            m.insert("task".into(), task.clone().into());
                            m.insert("version".into(), (*version).into());
                            m.insert("hash".into(), hash.clone().into());
                        }
                    }
                    sequential_flow_graph::RecordData::EventReceived { .. } => {
                        if let Some(s) = extra.signal {
                            m.insert("signal".into(), s.into());
                        }
                    }
                    sequential_flow_graph::RecordData::StateEntered { .. } => {
                        if let Some(by) = &extra.by {
                            m.insert("by".into(), by.clone().into());
                        }
                    }
                    _ => {}
                }
            }
            (kind.as_str().to_string(), data)
        })
        .collect()
}

/// `path` and `activation` fields that tie a `call.*`, `log`, `timer.armed` or
/// `child.started` record to one handler activation.
pub(crate) fn key_fields(key: &Key) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("path".into(), key.0.clone().into());
    m.insert("activation".into(), key.1.into());
    m
}

fn key_of(data: &Value) -> Option<Key> {
    Some((
        data.get("path")?.as_str()?.to_string(),
        data.get("activation")?.as_u64()?,
    ))
}

/// What one handler activation has journaled so far.
#[derive(Debug, Default, Clone)]
pub(crate) struct HandlerJournal {
    /// Its completed calls and console lines, in order (the VM replays them).
    pub(crate) entries: Journal,
    /// Calls whose `call.requested` record is stored.
    pub(crate) requested: HashSet<u64>,
    /// Its `ctx.sleep` deadlines by call seq.
    pub(crate) timers: HashMap<u64, i64>,
}

/// A graph run's journal, split.
#[derive(Debug, Default)]
pub(crate) struct Loaded {
    /// The graph records, in order.
    pub(crate) records: Vec<GraphRecord>,
    /// The next seq.
    pub(crate) next_seq: u64,
    /// Each handler activation's VM journal.
    pub(crate) handlers: HashMap<Key, HandlerJournal>,
    /// Child runs by the activation of the state that started them.
    pub(crate) children: HashMap<Key, RunId>,
    /// Inbox signals already made into `event.received` records.
    pub(crate) signals: HashSet<u64>,
    /// Who entered the latest state (`by` of the last `state.entered`).
    pub(crate) last_owner: Option<String>,
}

/// Reads and splits the journal of a graph run.
pub(crate) async fn load(store: &dyn StorageAdapter, run: RunId) -> Result<Loaded> {
    let mut out = Loaded::default();
    let mut requests: HashMap<(Key, u64), Value> = HashMap::new();
    let mut after = None;
    loop {
        let page = store.read_journal(run, after, 1000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        out.next_seq = last.seq + 1;
        for stored in &page {
            let bad = |reason: String| Error::Journal {
                run: stored.run,
                seq: stored.seq,
                reason,
            };
            if let Some(r) = GraphRecord::from_parts(&stored.kind, &stored.data)
                .map_err(|e| bad(e.to_string()))?
            {
                if let Some(s) = stored.data.get("signal").and_then(Value::as_u64) {
                    out.signals.insert(s);
                }
                if let Some(by) = stored.data.get("by").and_then(Value::as_str) {
                    out.last_owner = Some(by.to_string());
                }
                out.records.push(r);
                continue;
            }
            let rec = Record::new(stored);
            let Some(key) = key_of(&stored.data) else {
                continue; // an engine record of the whole run (run.paused …)
            };
            match rec.kind() {
                Some(RecordKind::CallRequested) => {
                    if let Some(s) = rec.call_seq() {
                        let h = out.handlers.entry(key.clone()).or_default();
                        h.requested.insert(s);
                        requests.insert((key, s), rec.request().cloned().unwrap_or(Value::Null));
                    }
                }
                Some(RecordKind::CallCompleted | RecordKind::Log) => {
                    let mut data = stored.data.clone();
                    if rec.request().is_none()
                        && let Some(obj) = data.as_object_mut()
                    {
                        let seq = rec.call_seq().unwrap_or(u64::MAX);
                        let request = requests.remove(&(key.clone(), seq)).ok_or_else(|| {
                            bad(format!(
                                "call {seq} of {} (activation {}) has no request and no call.requested record",
                                key.0, key.1
                            ))
                        })?;
                        obj.insert("request".into(), request);
                    }
                    let entry: JournalEntry =
                        serde_json::from_value(data).map_err(|e| bad(e.to_string()))?;
                    out.handlers.entry(key).or_default().entries.push(entry);
                }
                Some(RecordKind::TimerArmed) => {
                    if let (Some(s), Some(w)) = (rec.call_seq(), rec.wake_at()) {
                        out.handlers.entry(key).or_default().timers.insert(s, w);
                    }
                }
                Some(RecordKind::ChildStarted) => {
                    if let Some(child) = rec.child_run() {
                        out.children.insert(key, child);
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

/// Where a rerun may cut the journal of a graph run: `from_seq` itself, unless that falls
/// inside one commit of graph records, or after the commit that ended the run (and before any
/// redrive of it), then that commit's first seq (a partial transition is never copied, S6).
pub(crate) fn cut(records: &[JournalRecord], from_seq: u64) -> u64 {
    let mut cut = from_seq;
    let mut i = 0;
    while i < records.len() {
        let r = &records[i];
        let Some(n) = r.data.get("batch").and_then(Value::as_u64) else {
            i += 1;
            continue;
        };
        let (start, end) = (r.seq, r.seq + n);
        let ends_run = records[i..].iter().take(n as usize).any(|r| {
            matches!(
                r.kind.as_str(),
                "run.succeeded" | "run.failed" | "run.cancelled"
            )
        });
        // a redrive after it (before the cut) carried the run on: the copy keeps both
        let redriven = ends_run
            && records
                .iter()
                .any(|r| r.kind == "run.redriven" && r.seq >= end && r.seq < cut);
        if start < cut && (cut < end || (ends_run && !redriven)) {
            cut = start;
        }
        i += n.max(1) as usize;
    }
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use sequential_flow_graph::RecordData;
    use serde_json::json;

    #[test]
    fn engine_fields_ride_along_and_flow_graph_reads_past_them() {
        let recs = [
            GraphRecord::new(
                None,
                RecordData::RunStarted {
                    input: json!({"a": 1}),
                    graph_hash: "g".into(),
                    code_hash: "c".into(),
                },
            ),
            GraphRecord::new(
                Some("x"),
                RecordData::StateEntered {
                    attempt: 1,
                    restart: None,
                    input: json!({"a": 1}),
                },
            ),
        ];
        let extra = Extra {
            started: Some(("t".into(), 3, "h".into())),
            signal: None,
            by: Some("host:1".into()),
        };
        let out = stored(&recs, &extra);
        assert_eq!(out[0].1["batch"], 2);
        assert_eq!(out[0].1["task"], "t");
        assert_eq!(out[1].1["by"], "host:1");
        assert!(out[1].1.get("batch").is_none());
        for ((kind, data), r) in out.iter().zip(&recs) {
            assert_eq!(
                GraphRecord::from_parts(kind, data).unwrap().as_ref(),
                Some(r)
            );
        }
    }

    #[test]
    fn a_rerun_never_cuts_a_commit() {
        let rec = |seq: u64, batch: Option<u64>| JournalRecord {
            run: RunId::new(),
            seq,
            kind: "state.entered".into(),
            at: 0,
            data: batch.map_or(json!({}), |n| json!({"batch": n})),
        };
        // commits {0,1}, then call records 2..4, then commit {5,6,7}
        let j: Vec<_> = (0..8)
            .map(|s| {
                rec(
                    s,
                    match s {
                        0 => Some(2),
                        5 => Some(3),
                        _ => None,
                    },
                )
            })
            .collect();
        assert_eq!(cut(&j, 1), 0);
        assert_eq!(cut(&j, 2), 2);
        assert_eq!(cut(&j, 4), 4);
        assert_eq!(cut(&j, 6), 5);
        assert_eq!(cut(&j, 7), 5);
        assert_eq!(cut(&j, 8), 8);
        let mut ended = j.clone();
        ended[7].kind = "run.succeeded".into();
        assert_eq!(cut(&ended, 8), 5);
        assert_eq!(cut(&ended, 5), 5);
    }
}
