//! The graph records of a run's journal (GRAPHS.md §3.0): their kinds, their data, and the
//! error shape they carry. The engine stores each as a journal record of the same kind, with
//! the other fields (`path` included) as its data.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// An error as records carry it and catch targets receive it: `{name, message, cause?}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorValue {
    /// `TypeError`, `OrderRejected`, `flow.Timeout`, …
    pub name: String,
    /// The message (may be empty).
    #[serde(default)]
    pub message: String,
    /// What led to it (a child's error, a branch's error, a fail state's `cause`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<Value>,
}

impl ErrorValue {
    /// An error with a name and a message.
    pub fn new(name: impl Into<String>, message: impl Into<String>) -> ErrorValue {
        ErrorValue {
            name: name.into(),
            message: message.into(),
            cause: None,
        }
    }

    /// This error with `cause` set.
    pub fn with_cause(mut self, cause: Value) -> ErrorValue {
        self.cause = Some(cause);
        self
    }

    /// The error as JSON (the input of a catch target, `ctx.error`, `$.error`).
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

impl fmt::Display for ErrorValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.message.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}: {}", self.name, self.message)
        }
    }
}

/// One graph record: the state path it concerns (none for run-level records) and its data.
///
/// As JSON: `{"path": "charge", "kind": "state.entered", "attempt": 1, "input": {…}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The state path (`charge`, `enrich#1/checksum`, `fetchAll[2]/fetchOne`); `None` for
    /// `run.*` records other than `run.failed`, and for `event.received`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The kind and its fields.
    #[serde(flatten)]
    pub data: RecordData,
}

/// The kinds of graph record and their fields (GRAPHS.md §3.0). Fields beyond §3.0 are
/// marked "addition": they make the journal self-describing, so a fold needs no template
/// evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
#[non_exhaustive]
pub enum RecordData {
    /// The run began.
    #[serde(rename = "run.started")]
    RunStarted {
        /// The run input.
        input: Value,
        /// Hash of the graph the run is pinned to (S13).
        graph_hash: String,
        /// Hash of the code the run is pinned to (S13).
        code_hash: String,
    },
    /// A state was entered (its handler may start only after this is committed, S7).
    #[serde(rename = "state.entered")]
    StateEntered {
        /// 1-based try of this state (retries count up).
        attempt: u32,
        /// How many times a crash made it start again (S7); absent the first time.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restart: Option<u32>,
        /// The state's input (after its `input` template).
        input: Value,
    },
    /// A state succeeded (it is never run again, S7).
    #[serde(rename = "state.succeeded")]
    StateSucceeded {
        /// Its output.
        output: Value,
        /// Addition: the variables its `assign` set, when it has one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vars: Option<Map<String, Value>>,
    },
    /// A state failed.
    #[serde(rename = "state.failed")]
    StateFailed {
        /// The try that failed.
        attempt: u32,
        /// The error.
        error: ErrorValue,
    },
    /// A retrier will run the state again at `fire_at` (S4).
    #[serde(rename = "retry.scheduled")]
    RetryScheduled {
        /// The attempt that will run.
        attempt: u32,
        /// Index of the retrier in the state's `retry`.
        retrier: usize,
        /// The backoff (after jitter).
        delay_ms: u64,
        /// Absolute deadline, Unix milliseconds.
        fire_at: i64,
    },
    /// A timer was armed (`wait`, `after`, `timeout`; retries use `retry.scheduled`).
    #[serde(rename = "timer.scheduled")]
    TimerScheduled {
        /// `wait`, `after` or `timeout`.
        timer: String,
        /// Absolute deadline, Unix milliseconds.
        fire_at: i64,
    },
    /// A timer fired.
    #[serde(rename = "timer.fired")]
    TimerFired {
        /// Addition: which timer (`wait`, `after`, `timeout`, `retry`).
        timer: String,
    },
    /// A timer was cancelled because its state was exited.
    #[serde(rename = "timer.cancelled")]
    TimerCancelled {
        /// Addition: which timer.
        timer: String,
    },
    /// The state at `path` was left for `to`.
    #[serde(rename = "transition")]
    Transition {
        /// The state left (its name).
        from: String,
        /// The state entered next (its name, same sub-graph).
        to: String,
        /// Why: `done | error | success | fail | choice[i] | default | catch[i] |
        /// event:<name> | after:<dur> | outcome:<name>`.
        via: String,
    },
    /// An external event arrived (it waits in the inbox until a state consumes it).
    #[serde(rename = "event.received")]
    EventReceived {
        /// The event's name.
        name: String,
        /// Its message.
        message: Value,
    },
    /// The oldest inbox event of this name was consumed by the wait state at `path` (or
    /// discarded when the run ended).
    #[serde(rename = "event.consumed")]
    EventConsumed {
        /// Addition: the event's name.
        name: String,
        /// Addition: `true` when the run ended with it unconsumed (no path then).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        discarded: bool,
    },
    /// Map item `index` started.
    #[serde(rename = "item.started")]
    ItemStarted {
        /// The item's index.
        index: usize,
        /// Addition: the item (its `$.item`).
        item: Value,
    },
    /// Map item `index` reached a final state.
    #[serde(rename = "item.succeeded")]
    ItemSucceeded {
        /// The item's index.
        index: usize,
        /// Addition: its output.
        output: Value,
    },
    /// Map item `index` failed.
    #[serde(rename = "item.failed")]
    ItemFailed {
        /// The item's index.
        index: usize,
        /// Addition: its error.
        error: ErrorValue,
    },
    /// Map item `index` was cancelled (the map failed or the run was cancelled).
    #[serde(rename = "item.cancelled")]
    ItemCancelled {
        /// The item's index.
        index: usize,
    },
    /// Parallel branch `branch` started.
    #[serde(rename = "branch.started")]
    BranchStarted {
        /// The branch's index.
        branch: usize,
    },
    /// Parallel branch `branch` reached a final state.
    #[serde(rename = "branch.succeeded")]
    BranchSucceeded {
        /// The branch's index.
        branch: usize,
        /// Addition: its output.
        output: Value,
    },
    /// Parallel branch `branch` failed.
    #[serde(rename = "branch.failed")]
    BranchFailed {
        /// The branch's index.
        branch: usize,
        /// Addition: its error.
        error: ErrorValue,
    },
    /// Parallel branch `branch` was cancelled (another branch failed, or the run was
    /// cancelled).
    #[serde(rename = "branch.cancelled")]
    BranchCancelled {
        /// The branch's index.
        branch: usize,
    },
    /// A new driver took over after the previous one stopped mid-run.
    #[serde(rename = "run.recovered")]
    RunRecovered {
        /// Who drove the run before.
        previous_owner: String,
    },
    /// The run ended with an output.
    #[serde(rename = "run.succeeded")]
    RunSucceeded {
        /// The run output.
        output: Value,
        /// Addition: the error a catch or onError led to the final state with (legacy
        /// `errorHandler` final states).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        handled_error: Option<ErrorValue>,
    },
    /// The run ended with an error (`path`: the state where it happened).
    #[serde(rename = "run.failed")]
    RunFailed {
        /// The error.
        error: ErrorValue,
    },
    /// The run was cancelled.
    #[serde(rename = "run.cancelled")]
    RunCancelled {},
    /// Addition (S15, redrive in place): a failed run carries on; `path` is the top-level
    /// state it enters again (with attempt 1, in the same commit). The `run.failed` before it
    /// stays in the history.
    #[serde(rename = "run.redriven")]
    RunRedriven {},
}

/// The kind of a [`Record`], as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RecordKind {
    /// `run.started`
    RunStarted,
    /// `state.entered`
    StateEntered,
    /// `state.succeeded`
    StateSucceeded,
    /// `state.failed`
    StateFailed,
    /// `retry.scheduled`
    RetryScheduled,
    /// `timer.scheduled`
    TimerScheduled,
    /// `timer.fired`
    TimerFired,
    /// `timer.cancelled`
    TimerCancelled,
    /// `transition`
    Transition,
    /// `event.received`
    EventReceived,
    /// `event.consumed`
    EventConsumed,
    /// `item.started`
    ItemStarted,
    /// `item.succeeded`
    ItemSucceeded,
    /// `item.failed`
    ItemFailed,
    /// `item.cancelled`
    ItemCancelled,
    /// `branch.started`
    BranchStarted,
    /// `branch.succeeded`
    BranchSucceeded,
    /// `branch.failed`
    BranchFailed,
    /// `branch.cancelled`
    BranchCancelled,
    /// `run.recovered`
    RunRecovered,
    /// `run.succeeded`
    RunSucceeded,
    /// `run.failed`
    RunFailed,
    /// `run.cancelled`
    RunCancelled,
    /// `run.redriven`
    RunRedriven,
}

impl RecordKind {
    /// Every kind, in the order of §3.0.
    pub const ALL: [RecordKind; 24] = [
        RecordKind::RunStarted,
        RecordKind::StateEntered,
        RecordKind::StateSucceeded,
        RecordKind::StateFailed,
        RecordKind::RetryScheduled,
        RecordKind::TimerScheduled,
        RecordKind::TimerFired,
        RecordKind::TimerCancelled,
        RecordKind::Transition,
        RecordKind::EventReceived,
        RecordKind::EventConsumed,
        RecordKind::ItemStarted,
        RecordKind::ItemSucceeded,
        RecordKind::ItemFailed,
        RecordKind::ItemCancelled,
        RecordKind::BranchStarted,
        RecordKind::BranchSucceeded,
        RecordKind::BranchFailed,
        RecordKind::BranchCancelled,
        RecordKind::RunRecovered,
        RecordKind::RunSucceeded,
        RecordKind::RunFailed,
        RecordKind::RunCancelled,
        RecordKind::RunRedriven,
    ];

    /// The stored string (`state.entered`).
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordKind::RunStarted => "run.started",
            RecordKind::StateEntered => "state.entered",
            RecordKind::StateSucceeded => "state.succeeded",
            RecordKind::StateFailed => "state.failed",
            RecordKind::RetryScheduled => "retry.scheduled",
            RecordKind::TimerScheduled => "timer.scheduled",
            RecordKind::TimerFired => "timer.fired",
            RecordKind::TimerCancelled => "timer.cancelled",
            RecordKind::Transition => "transition",
            RecordKind::EventReceived => "event.received",
            RecordKind::EventConsumed => "event.consumed",
            RecordKind::ItemStarted => "item.started",
            RecordKind::ItemSucceeded => "item.succeeded",
            RecordKind::ItemFailed => "item.failed",
            RecordKind::ItemCancelled => "item.cancelled",
            RecordKind::BranchStarted => "branch.started",
            RecordKind::BranchSucceeded => "branch.succeeded",
            RecordKind::BranchFailed => "branch.failed",
            RecordKind::BranchCancelled => "branch.cancelled",
            RecordKind::RunRecovered => "run.recovered",
            RecordKind::RunSucceeded => "run.succeeded",
            RecordKind::RunFailed => "run.failed",
            RecordKind::RunCancelled => "run.cancelled",
            RecordKind::RunRedriven => "run.redriven",
        }
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for RecordKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<RecordKind> {
        RecordKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                Error::invalid(
                    format!("graph record kind {s:?}"),
                    format!(
                        "one of {}",
                        RecordKind::ALL.map(RecordKind::as_str).join(", ")
                    ),
                )
            })
    }
}

impl RecordData {
    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        match self {
            RecordData::RunStarted { .. } => RecordKind::RunStarted,
            RecordData::StateEntered { .. } => RecordKind::StateEntered,
            RecordData::StateSucceeded { .. } => RecordKind::StateSucceeded,
            RecordData::StateFailed { .. } => RecordKind::StateFailed,
            RecordData::RetryScheduled { .. } => RecordKind::RetryScheduled,
            RecordData::TimerScheduled { .. } => RecordKind::TimerScheduled,
            RecordData::TimerFired { .. } => RecordKind::TimerFired,
            RecordData::TimerCancelled { .. } => RecordKind::TimerCancelled,
            RecordData::Transition { .. } => RecordKind::Transition,
            RecordData::EventReceived { .. } => RecordKind::EventReceived,
            RecordData::EventConsumed { .. } => RecordKind::EventConsumed,
            RecordData::ItemStarted { .. } => RecordKind::ItemStarted,
            RecordData::ItemSucceeded { .. } => RecordKind::ItemSucceeded,
            RecordData::ItemFailed { .. } => RecordKind::ItemFailed,
            RecordData::ItemCancelled { .. } => RecordKind::ItemCancelled,
            RecordData::BranchStarted { .. } => RecordKind::BranchStarted,
            RecordData::BranchSucceeded { .. } => RecordKind::BranchSucceeded,
            RecordData::BranchFailed { .. } => RecordKind::BranchFailed,
            RecordData::BranchCancelled { .. } => RecordKind::BranchCancelled,
            RecordData::RunRecovered { .. } => RecordKind::RunRecovered,
            RecordData::RunSucceeded { .. } => RecordKind::RunSucceeded,
            RecordData::RunFailed { .. } => RecordKind::RunFailed,
            RecordData::RunCancelled { .. } => RecordKind::RunCancelled,
            RecordData::RunRedriven { .. } => RecordKind::RunRedriven,
        }
    }
}

impl Record {
    /// A record at `path` (or none).
    pub fn new(path: Option<&str>, data: RecordData) -> Record {
        Record {
            path: path.map(str::to_string),
            data,
        }
    }

    /// The record's kind.
    pub fn kind(&self) -> RecordKind {
        self.data.kind()
    }

    /// The record as a journal stores it: its kind, and its data (every field but `kind`,
    /// `path` included).
    pub fn to_parts(&self) -> (RecordKind, Value) {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        if let Value::Object(m) = &mut v {
            m.remove("kind");
        }
        (self.kind(), v)
    }

    /// A stored journal record back as a graph record; `Ok(None)` when `kind` is not a graph
    /// kind (the `call.*` records of handlers, for instance).
    pub fn from_parts(kind: &str, data: &Value) -> Result<Option<Record>> {
        if kind.parse::<RecordKind>().is_err() {
            return Ok(None);
        }
        let mut v = data.clone();
        match &mut v {
            Value::Object(m) => {
                m.insert("kind".into(), Value::String(kind.into()));
            }
            _ => {
                return Err(Error::invalid(
                    format!("data of a {kind} record: {data}"),
                    "a JSON object with the record's fields",
                ));
            }
        }
        serde_json::from_value(v).map(Some).map_err(|e| {
            Error::invalid(
                format!("{kind} record {data} ({e})"),
                "the fields of GRAPHS.md §3.0 for that kind",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_round_trip_through_parts() {
        let r = Record::new(
            Some("charge"),
            RecordData::StateEntered {
                attempt: 1,
                restart: None,
                input: json!({"id": 7}),
            },
        );
        let (kind, data) = r.to_parts();
        assert_eq!(kind.as_str(), "state.entered");
        assert_eq!(
            data,
            json!({"path": "charge", "attempt": 1, "input": {"id": 7}})
        );
        assert_eq!(Record::from_parts("state.entered", &data).unwrap(), Some(r));
        assert_eq!(Record::from_parts("call.completed", &data).unwrap(), None);
        assert!(Record::from_parts("state.entered", &json!({"path": "x"})).is_err());
        let c = Record::new(None, RecordData::RunCancelled {});
        let (k, d) = c.to_parts();
        assert_eq!(Record::from_parts(k.as_str(), &d).unwrap(), Some(c));
    }
}
