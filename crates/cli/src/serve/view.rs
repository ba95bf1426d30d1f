//! The Run object of HOST-API.md §4.3, and the STH view of it for the Scramjet compatibility
//! layer.

use sequential_adaptor::{JournalRecord, Run, RunStatus};
use sequential_support::time::rfc3339_millis;
use sequential_tasker_engine::journal::{CallRequest, Record, RecordKind};
use serde_json::{Value, json};

/// What of the journal a Run view shows: the last seq and the pause point. Built record by
/// record ([`JournalSummary::apply`]), so a server can keep one per run and read only the
/// records appended since.
#[derive(Debug, Default, Clone)]
pub struct JournalSummary {
    pub last_seq: Option<u64>,
    /// The kind and call seq of the last call requested and not yet completed.
    open: Option<(u64, String)>,
    /// When the run started (its `run.started` record).
    pub started_at: Option<i64>,
    /// The last record applied ends the run (`run.succeeded`/`failed`/`cancelled`).
    pub ended: bool,
}

impl JournalSummary {
    /// Takes in records that follow the ones already applied.
    pub fn apply(&mut self, records: &[JournalRecord]) {
        for r in records {
            let rec = Record::new(r);
            match rec.kind() {
                Some(RecordKind::RunStarted) => self.started_at = self.started_at.or(Some(r.at)),
                Some(RecordKind::CallRequested) => {
                    if let (Some(seq), Some(kind)) = (rec.call_seq(), rec.call_kind()) {
                        self.open = Some((seq, kind.as_str().to_string()));
                    }
                }
                Some(RecordKind::CallCompleted)
                    if rec.call_seq() == self.open.as_ref().map(|o| o.0) =>
                {
                    self.open = None;
                }
                _ => {}
            }
            self.last_seq = Some(r.seq);
            self.ended = ends_stream(r);
        }
    }

    /// `fetch#3`: the call the run is paused in, if any.
    pub fn state(&self) -> Option<String> {
        self.open
            .as_ref()
            .map(|(seq, kind)| format!("{kind}#{seq}"))
    }
}

/// The Run object.
pub fn run_json(run: &Run, hash: Option<&str>, journal: &JournalSummary) -> Value {
    let id = run.id.to_string();
    let waiting = match run.status {
        RunStatus::Waiting => match (&run.waiting_for, run.wake_at) {
            (Some(event), until) => json!({
                "kind": "event",
                "name": event,
                "until": until.map(rfc3339_millis),
            }),
            (None, Some(until)) => json!({ "kind": "timer", "until": rfc3339_millis(until) }),
            (None, None) => Value::Null,
        },
        RunStatus::Paused => json!({ "kind": "retry", "until": null }),
        _ => Value::Null,
    };
    json!({
        "id": id,
        "task": { "name": run.task, "version": run.version, "hash": hash },
        "status": run.status,
        "state": journal.state(),
        "attempt": run.attempt,
        "waiting": waiting,
        "input": run.input,
        "output": run.output,
        "error": run.error,
        "idempotency_key": run.idempotency_key,
        "parent": run.parent.map(|p| json!({ "run": p.run.to_string(), "seq": p.seq })),
        "created_at": rfc3339_millis(run.created_at),
        "started_at": journal.started_at.map(rfc3339_millis),
        "updated_at": rfc3339_millis(run.updated_at),
        "ended_at": run.ended_at.map(rfc3339_millis),
        "journal": { "last_seq": journal.last_seq },
        "links": {
            "self": format!("/api/v1/runs/{id}"),
            "events": format!("/api/v1/runs/{id}/events"),
            "journal": format!("/api/v1/runs/{id}/journal"),
        },
    })
}

/// `true` for the records that end a run's event stream.
pub fn ends_stream(r: &JournalRecord) -> bool {
    matches!(
        Record::new(r).kind(),
        Some(RecordKind::RunSucceeded | RecordKind::RunFailed | RecordKind::RunCancelled)
    )
}

/// The `(seq, name, data)` of a `ctx.emit(name, data)` record.
pub fn emitted(r: &JournalRecord) -> Option<(u64, String, Value)> {
    let rec = Record::new(r);
    if rec.kind() != Some(RecordKind::CallCompleted) {
        return None;
    }
    match rec.call_request()? {
        CallRequest::Other(req) if rec.call_kind()?.as_str() == "emit" => Some((
            r.seq,
            req.get("name")?.as_str()?.to_string(),
            req.get("data").cloned().unwrap_or(Value::Null),
        )),
        _ => None,
    }
}
