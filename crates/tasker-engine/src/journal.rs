//! The engine's journal records: every kind it writes ([`RecordKind`]), the shape of each
//! record's data (written here, read here), and a typed view of a stored record ([`Record`]) for
//! whoever renders journals.
//!
//! The stored kind strings (`run.started`, `call.completed`, …) and data fields never change:
//! journals written by earlier versions stay readable.
//!
//! ```
//! use sequential_adaptor::{JournalRecord, RunId, TaskName};
//! use sequential_tasker_engine::journal::{CallKind, Record, RecordKind};
//! use serde_json::json;
//!
//! let stored = JournalRecord {
//!     run: RunId::new(),
//!     seq: 3,
//!     kind: "timer.armed".into(),
//!     at: 0,
//!     data: json!({ "seq": 2, "wakeAt": 1_700_000_000_000i64 }),
//! };
//! let rec = Record::new(&stored);
//! assert_eq!(rec.kind(), Some(RecordKind::TimerArmed));
//! assert_eq!((rec.call_seq(), rec.wake_at()), (Some(2), Some(1_700_000_000_000)));
//! assert_eq!("call.completed".parse::<RecordKind>()?, RecordKind::CallCompleted);
//! assert_eq!(CallKind::parse("fetch"), Some(CallKind::Fetch));
//! # Ok::<(), sequential_tasker_engine::Error>(())
//! ```

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;

use sequential_adaptor::{JournalRecord, RunId, TaskName};
use serde_json::{Value, json};

use crate::error::Error;

/// What a journal record's call was (`fetch`, `sleep`, `tool`, …), as fetch-vm names it.
pub use sequential_fetch_vm::CallKind;

/// Every kind of record the engine writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RecordKind {
    /// `run.started`, the first record of a run: `{task, version, hash, input}`.
    RunStarted,
    /// `call.requested`: a call about to be performed (a fetch or a tool): `{seq, kind, request}`.
    CallRequested,
    /// `call.completed`: a fetch-vm journal entry `{seq, kind, request?, result}`, plus
    /// `signal` (the seq of the signal a `waitForEvent` consumed). `request` is left out when a
    /// `call.requested` record holds it.
    CallCompleted,
    /// `log`: a console line, as a fetch-vm journal entry (`request: {level, message}`).
    Log,
    /// `timer.armed`: a durable timer of call `seq`: `{seq, wakeAt}`.
    TimerArmed,
    /// `child.started`: a child run was started for call `seq`: `{seq, run}`.
    ChildStarted,
    /// `run.paused`: a call whose retries are spent paused the run: `{seq, error}`.
    RunPaused,
    /// `run.succeeded`: `{output}`.
    RunSucceeded,
    /// `run.failed`: `{error}`.
    RunFailed,
    /// `run.cancelled`: `{error}`, cancelled or killed.
    RunCancelled,
}

impl RecordKind {
    /// Every kind, in the order a run typically writes them.
    pub const ALL: [RecordKind; 10] = [
        RecordKind::RunStarted,
        RecordKind::CallRequested,
        RecordKind::CallCompleted,
        RecordKind::Log,
        RecordKind::TimerArmed,
        RecordKind::ChildStarted,
        RecordKind::RunPaused,
        RecordKind::RunSucceeded,
        RecordKind::RunFailed,
        RecordKind::RunCancelled,
    ];

    /// The string stored in [`JournalRecord::kind`].
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordKind::RunStarted => "run.started",
            RecordKind::CallRequested => "call.requested",
            RecordKind::CallCompleted => "call.completed",
            RecordKind::Log => "log",
            RecordKind::TimerArmed => "timer.armed",
            RecordKind::ChildStarted => "child.started",
            RecordKind::RunPaused => "run.paused",
            RecordKind::RunSucceeded => "run.succeeded",
            RecordKind::RunFailed => "run.failed",
            RecordKind::RunCancelled => "run.cancelled",
        }
    }

    /// `true` for the records that settle a run (succeeded, failed, cancelled, paused): a rerun
    /// copies a journal without them.
    pub const fn settles_run(self) -> bool {
        matches!(
            self,
            RecordKind::RunSucceeded
                | RecordKind::RunFailed
                | RecordKind::RunCancelled
                | RecordKind::RunPaused
        )
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordKind {
    type Err = Error;

    /// Parses a stored kind; anything else is an `Invalid` error listing the kinds.
    fn from_str(s: &str) -> Result<Self, Error> {
        RecordKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| Error::Invalid {
                input: format!("journal record kind {s:?}"),
                expected: format!(
                    "one of {}",
                    RecordKind::ALL.map(RecordKind::as_str).join(", ")
                ),
            })
    }
}

impl PartialEq<RecordKind> for str {
    fn eq(&self, other: &RecordKind) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<RecordKind> for String {
    fn eq(&self, other: &RecordKind) -> bool {
        self == other.as_str()
    }
}

/// How a completed call ended.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CallOutcome<'a> {
    /// It returned this value.
    Ok(&'a Value),
    /// It threw (the task saw this error).
    Threw(ErrorView<'a>),
}

/// An error as a record stores it (`{name, message, stack?}`); missing fields read as empty.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorView<'a> {
    /// `TypeError`, `FetchError`, `Cancelled`, … (`Error` when none is stored).
    pub name: &'a str,
    /// The message (empty when none is stored).
    pub message: &'a str,
    /// The JavaScript stack, when there is one.
    pub stack: Option<&'a str>,
}

impl<'a> ErrorView<'a> {
    fn of(v: &'a Value) -> Self {
        ErrorView {
            name: v["name"].as_str().unwrap_or("Error"),
            message: v["message"].as_str().unwrap_or(""),
            stack: v["stack"].as_str(),
        }
    }
}

/// What a call asked for, by kind (from [`Record::call_request`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum CallRequest<'a> {
    /// `fetch(url, {method})`.
    Fetch {
        /// `GET` unless the code said otherwise.
        method: &'a str,
        /// The URL (a non-string URL as its JSON text).
        url: Cow<'a, str>,
    },
    /// `ctx.callTool(name, …)` / `__callHostTool__(service, method, …)`.
    Tool {
        /// The tool's name (`weather`, `mail.send`).
        name: Option<&'a str>,
    },
    /// `ctx.runTask(task, …)`.
    Child {
        /// The child's task.
        task: Option<&'a str>,
    },
    /// `ctx.sleep(…)`, in milliseconds.
    Sleep {
        /// How long.
        ms: Option<i64>,
    },
    /// `ctx.waitForEvent(name, {timeout})`.
    WaitForEvent {
        /// The event's name.
        name: Option<&'a str>,
        /// The timeout in milliseconds, when one was given.
        timeout_ms: Option<i64>,
    },
    /// Any other call (`emit`, `now`, `random`, `log`): the request as stored.
    Other(&'a Value),
}

/// What a `run.started` record says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Started<'a> {
    /// The task's name.
    pub task: Option<&'a str>,
    /// The pinned version.
    pub version: Option<u64>,
    /// The code's hash.
    pub hash: Option<&'a str>,
    /// The run's input.
    pub input: &'a Value,
}

/// A typed view of one stored journal record. Every accessor answers `None` for a record of
/// another kind, or one that lacks the field.
#[derive(Debug, Clone, Copy)]
pub struct Record<'a> {
    rec: &'a JournalRecord,
    kind: Option<RecordKind>,
}

impl<'a> Record<'a> {
    /// The view of `rec`.
    pub fn new(rec: &'a JournalRecord) -> Self {
        Record {
            rec,
            kind: rec.kind.parse().ok(),
        }
    }

    /// The stored record.
    pub fn raw(&self) -> &'a JournalRecord {
        self.rec
    }

    /// The kind; `None` for a kind this engine does not write.
    pub fn kind(&self) -> Option<RecordKind> {
        self.kind
    }

    /// The kind as stored.
    pub fn kind_str(&self) -> &'a str {
        &self.rec.kind
    }

    /// The record's position in the journal (0, 1, 2 …).
    pub fn seq(&self) -> u64 {
        self.rec.seq
    }

    /// The seq of the call the record is about (`call.*`, `log`, `timer.armed`,
    /// `child.started`, `run.paused`).
    pub fn call_seq(&self) -> Option<u64> {
        use RecordKind::*;
        match self.kind? {
            CallRequested | CallCompleted | Log | TimerArmed | ChildStarted | RunPaused => {
                self.rec.data.get("seq")?.as_u64()
            }
            _ => None,
        }
    }

    /// What kind of call a `call.requested`, `call.completed` or `log` record is about.
    pub fn call_kind(&self) -> Option<CallKind> {
        use RecordKind::*;
        match self.kind? {
            CallRequested | CallCompleted | Log => CallKind::parse(self.rec.data["kind"].as_str()?),
            _ => None,
        }
    }

    /// The call's request, as the code made it (`call.requested`, `log`, and `call.completed`
    /// unless its `call.requested` record holds it).
    pub fn request(&self) -> Option<&'a Value> {
        use RecordKind::*;
        match self.kind? {
            CallRequested | CallCompleted | Log => self.rec.data.get("request"),
            _ => None,
        }
    }

    /// What the call asked for, by kind (`call.requested`, `call.completed` and `log` records
    /// that hold the request).
    pub fn call_request(&self) -> Option<CallRequest<'a>> {
        let req = self.request()?;
        Some(match self.call_kind() {
            Some(CallKind::Fetch) => CallRequest::Fetch {
                method: req["options"]["method"].as_str().unwrap_or("GET"),
                url: req["url"]
                    .as_str()
                    .map_or_else(|| Cow::Owned(req["url"].to_string()), Cow::Borrowed),
            },
            Some(CallKind::Tool) => CallRequest::Tool {
                name: req["name"].as_str(),
            },
            Some(CallKind::Child) => CallRequest::Child {
                task: req["task"].as_str(),
            },
            Some(CallKind::Sleep) => CallRequest::Sleep {
                ms: req["ms"].as_i64(),
            },
            Some(CallKind::WaitForEvent) => CallRequest::WaitForEvent {
                name: req["name"].as_str(),
                timeout_ms: req["timeoutMs"].as_i64(),
            },
            _ => CallRequest::Other(req),
        })
    }

    /// How a `call.completed` call ended.
    pub fn outcome(&self) -> Option<CallOutcome<'a>> {
        if self.kind? != RecordKind::CallCompleted {
            return None;
        }
        let result = self.rec.data.get("result")?;
        if let Some(ok) = result.get("ok") {
            return Some(CallOutcome::Ok(ok));
        }
        result
            .get("error")
            .map(|e| CallOutcome::Threw(ErrorView::of(e)))
    }

    /// The seq of the signal a completed `waitForEvent` consumed.
    pub fn signal(&self) -> Option<u64> {
        match self.kind? {
            RecordKind::CallCompleted | RecordKind::Log => self.rec.data.get("signal")?.as_u64(),
            _ => None,
        }
    }

    /// When a `timer.armed` timer fires (Unix ms).
    pub fn wake_at(&self) -> Option<i64> {
        (self.kind? == RecordKind::TimerArmed)
            .then(|| self.rec.data["wakeAt"].as_i64())
            .flatten()
    }

    /// The run a `child.started` record started.
    pub fn child_run(&self) -> Option<RunId> {
        (self.kind? == RecordKind::ChildStarted)
            .then(|| self.rec.data["run"].as_str()?.parse().ok())
            .flatten()
    }

    /// What a `run.started` record says.
    pub fn started(&self) -> Option<Started<'a>> {
        (self.kind? == RecordKind::RunStarted).then(|| {
            let d = &self.rec.data;
            Started {
                task: d["task"].as_str(),
                version: d["version"].as_u64(),
                hash: d["hash"].as_str(),
                input: &d["input"],
            }
        })
    }

    /// A `run.succeeded` run's output.
    pub fn output(&self) -> Option<&'a Value> {
        (self.kind? == RecordKind::RunSucceeded).then(|| &self.rec.data["output"])
    }

    /// The error of a `run.failed`, `run.cancelled` or `run.paused` record (for a paused run,
    /// the error of call [`Record::call_seq`]).
    pub fn error(&self) -> Option<ErrorView<'a>> {
        use RecordKind::*;
        match self.kind? {
            RunFailed | RunCancelled | RunPaused => Some(ErrorView::of(&self.rec.data["error"])),
            _ => None,
        }
    }

    /// A `log` record's level (`log`, `warn`, …) and message.
    pub fn log_line(&self) -> Option<(&'a str, Cow<'a, str>)> {
        let req = self
            .request()
            .filter(|_| self.kind == Some(RecordKind::Log))?;
        let level = req["level"].as_str().unwrap_or("log");
        let message = req["message"]
            .as_str()
            .map_or_else(|| Cow::Owned(req.to_string()), Cow::Borrowed);
        Some((level, message))
    }
}

// ------------------------------------------------------------- the data the engine writes

/// `run.started`.
pub(crate) fn run_started(task: &TaskName, version: u32, hash: &str, input: &Value) -> Value {
    json!({ "task": task, "version": version, "hash": hash, "input": input })
}

/// `call.requested`.
pub(crate) fn call_requested(seq: u64, kind: CallKind, request: &Value) -> Value {
    json!({ "seq": seq, "kind": kind, "request": request })
}

/// `timer.armed`.
pub(crate) fn timer_armed(seq: u64, wake_at: i64) -> Value {
    json!({ "seq": seq, "wakeAt": wake_at })
}

/// `child.started`.
pub(crate) fn child_started(seq: u64, run: RunId) -> Value {
    json!({ "seq": seq, "run": run })
}

/// The extra field of a `call.completed` record whose `waitForEvent` consumed signal `signal`.
pub(crate) fn consumed_signal(signal: u64) -> Value {
    json!({ "signal": signal })
}

/// `run.paused`: also the paused run's `error`.
pub(crate) fn run_paused(seq: u64, error: &Value) -> Value {
    json!({ "seq": seq, "error": error })
}

/// `run.succeeded`.
pub(crate) fn run_succeeded(output: &Value) -> Value {
    json!({ "output": output })
}

/// `run.failed` and `run.cancelled`.
pub(crate) fn run_ended_with(error: &Value) -> Value {
    json!({ "error": error })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(kind: &str, data: Value) -> JournalRecord {
        JournalRecord {
            run: RunId::new(),
            seq: 9,
            kind: kind.into(),
            at: 0,
            data,
        }
    }

    #[test]
    fn every_kind_round_trips_through_its_stored_string() {
        let stored: Vec<&str> = RecordKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(
            stored,
            [
                "run.started",
                "call.requested",
                "call.completed",
                "log",
                "timer.armed",
                "child.started",
                "run.paused",
                "run.succeeded",
                "run.failed",
                "run.cancelled"
            ]
        );
        for k in RecordKind::ALL {
            assert_eq!(k.as_str().parse::<RecordKind>().unwrap(), k);
            assert_eq!(k.to_string(), k.as_str());
        }
        let err = "call.done".parse::<RecordKind>().unwrap_err().to_string();
        assert!(
            err.contains("\"call.done\"") && err.contains("run.started"),
            "{err}"
        );
        assert!(*"run.failed" == RecordKind::RunFailed);
    }

    #[test]
    fn views_read_what_the_engine_writes() {
        let child = RunId::new();
        let r = rec("child.started", child_started(4, child));
        let v = Record::new(&r);
        assert_eq!((v.call_seq(), v.child_run()), (Some(4), Some(child)));
        assert_eq!(v.wake_at(), None, "not a timer");

        let r = rec(
            "call.requested",
            call_requested(2, CallKind::Fetch, &json!({"url": "https://x/"})),
        );
        let v = Record::new(&r);
        assert_eq!(v.call_kind(), Some(CallKind::Fetch));
        assert_eq!(v.request().unwrap()["url"], "https://x/");
        assert_eq!(
            v.call_request(),
            Some(CallRequest::Fetch {
                method: "GET",
                url: "https://x/".into()
            })
        );
        let r = rec(
            "call.completed",
            json!({"seq": 1, "kind": "waitForEvent", "request": {"name": "go", "timeoutMs": 5}, "result": {"ok": 1}}),
        );
        assert_eq!(
            Record::new(&r).call_request(),
            Some(CallRequest::WaitForEvent {
                name: Some("go"),
                timeout_ms: Some(5)
            })
        );

        let r = rec(
            "call.completed",
            json!({"seq": 2, "kind": "waitForEvent", "result": {"ok": null}, "signal": 7}),
        );
        let v = Record::new(&r);
        assert_eq!(v.outcome(), Some(CallOutcome::Ok(&Value::Null)));
        assert_eq!((v.signal(), v.request()), (Some(7), None));

        let r = rec(
            "call.completed",
            json!({"seq": 3, "kind": "tool", "result": {"error": {"name": "ToolNotFound", "message": "no"}}}),
        );
        let Some(CallOutcome::Threw(e)) = Record::new(&r).outcome() else {
            panic!()
        };
        assert_eq!((e.name, e.message, e.stack), ("ToolNotFound", "no", None));

        let r = rec(
            "run.paused",
            run_paused(5, &json!({"name": "FetchError", "message": "503"})),
        );
        let v = Record::new(&r);
        assert_eq!((v.call_seq(), v.error().unwrap().message), (Some(5), "503"));

        let r = rec(
            "log",
            json!({"seq": 1, "kind": "log", "request": {"level": "warn", "message": "hi"}, "result": {"ok": null}}),
        );
        let (level, msg) = Record::new(&r).log_line().unwrap();
        assert_eq!((level, msg.as_ref()), ("warn", "hi"));

        let r = rec(
            "run.started",
            run_started(&TaskName::new("t").unwrap(), 3, "abc", &json!({"x": 1})),
        );
        let s = Record::new(&r).started().unwrap();
        assert_eq!(
            (s.task, s.version, s.hash, s.input),
            (Some("t"), Some(3), Some("abc"), &json!({"x": 1}))
        );

        let r = rec("run.extra", json!({"seq": 1}));
        let v = Record::new(&r);
        assert_eq!(
            (v.kind(), v.kind_str(), v.call_seq()),
            (None, "run.extra", None)
        );
    }
}
