//! The graph snapshot of a run (current states, vars, armed timers, inbox) and the fold that
//! builds it from the graph records: `fold(journal)` is the snapshot, byte for byte (S10).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::path::{self, Sub};
use crate::record::{ErrorValue, Record, RecordData};

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// No `run.started` yet.
    NotStarted,
    /// Started and not ended.
    Running,
    /// Ended with `run.succeeded`.
    Succeeded,
    /// Ended with `run.failed`.
    Failed,
    /// Ended with `run.cancelled`.
    Cancelled,
}

impl RunStatus {
    /// `running`, `succeeded`, …
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::NotStarted => "not_started",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }
}

/// Where a region (the main graph, a branch, a map item) stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegionStatus {
    /// Its states are being run.
    Running,
    /// It reached a final state.
    Succeeded,
    /// It failed.
    Failed,
    /// It was cancelled.
    Cancelled,
}

/// Where the active state of a region stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Entered: its handler, child, timer, event or fan-out is under way.
    Running,
    /// `state.succeeded` was written (a transition follows in the same commit).
    Succeeded,
    /// `state.failed` was written (a retry, a transition or the region's end follows).
    Failed,
    /// A retry is scheduled; the state is entered again when its timer fires.
    RetryWait,
}

/// The state a region is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Active {
    /// The state's name.
    pub name: String,
    /// Its path (`fan#1/checksum`).
    pub path: String,
    /// Counts every (non-restart) `state.entered` of the run: tells a stale handler result or
    /// timer from a current one.
    pub activation: u64,
    /// 1-based try.
    pub attempt: u32,
    /// Restarts after crashes (S7).
    pub restart: u32,
    /// The state's input.
    pub input: Value,
    /// Where it stands.
    pub phase: Phase,
    /// Retries used, per retrier (reset when the state is exited).
    pub retries: Vec<u32>,
    /// Armed timers by name (`wait`, `after`, `timeout`, `retry`) → absolute deadline.
    pub timers: BTreeMap<String, i64>,
    /// The error a catch or onError entered this state with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorValue>,
    /// The event (`{name, message}`) that led here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<Value>,
    /// The event this (wait) state consumed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumed: Option<Value>,
    /// Its output, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Its error, once it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<ErrorValue>,
    /// The branches or items of a parallel or map state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fanout: Option<Fanout>,
}

/// The regions below a parallel or map state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Fanout {
    /// One region per branch, in branch order.
    Parallel {
        /// The branches.
        branches: Vec<Region>,
    },
    /// The items started so far.
    Map {
        /// How many items were started.
        started: usize,
        /// Items that failed.
        failed: usize,
        /// Regions of the items still running, by index.
        running: BTreeMap<usize, Region>,
        /// Outputs of finished items by index (a tolerated failure is `{"$error": …}`).
        outputs: BTreeMap<usize, Value>,
    },
}

/// The error a catch target receives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Carry {
    Error(ErrorValue),
    Event(Value),
}

/// The main graph, a parallel branch or a map item: its active state, results and vars.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Region {
    /// Path prefix of its states (`""`, `fan#1/`, `each[3]/`).
    pub prefix: String,
    /// Where it stands.
    pub status: RegionStatus,
    /// The state it is in (none between a transition and the next `state.entered`, and once
    /// it ended).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Active>,
    /// Outputs of its completed states by name.
    pub results: BTreeMap<String, Value>,
    /// Variables set by `assign` in this region.
    pub vars: BTreeMap<String, Value>,
    /// The parallel branch index, for a branch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<usize>,
    /// The map item index, for an item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// The map item, for an item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub item: Option<Value>,
    /// Its output, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// Its error, once it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorValue>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    carry: Option<Carry>,
}

impl Region {
    /// The error or event the next state of this region is entered with (set by a transition
    /// via a catch, `onError` or an event).
    pub(crate) fn carried(&self) -> (Option<&ErrorValue>, Option<&Value>) {
        match &self.carry {
            Some(Carry::Error(e)) => (Some(e), None),
            Some(Carry::Event(v)) => (None, Some(v)),
            None => (None, None),
        }
    }

    fn new(prefix: String) -> Region {
        Region {
            prefix,
            status: RegionStatus::Running,
            current: None,
            results: BTreeMap::new(),
            vars: BTreeMap::new(),
            branch: None,
            index: None,
            item: None,
            output: None,
            error: None,
            carry: None,
        }
    }
}

/// An event waiting in the run's inbox (S11).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InboxEvent {
    /// Its name.
    pub name: String,
    /// Its message.
    pub message: Value,
}

/// A timer armed in a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArmedTimer {
    /// The state path.
    pub path: String,
    /// `wait`, `after`, `timeout` or `retry`.
    pub timer: String,
    /// The activation of the state that armed it.
    pub activation: u64,
    /// Absolute deadline, Unix milliseconds.
    pub fire_at: i64,
}

/// The graph snapshot of a run: a pure fold of its graph records ([`fold`]). Serialized, it is
/// the same bytes however it was reached (S10).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Format version of this snapshot (1).
    pub version: u32,
    /// Where the run stands.
    pub status: RunStatus,
    /// The run input.
    pub input: Value,
    /// The graph hash of `run.started`.
    pub graph_hash: String,
    /// The code hash of `run.started`.
    pub code_hash: String,
    /// The main graph's region (branches and items nest inside).
    pub root: Region,
    /// Events received and not consumed yet, oldest first.
    pub inbox: Vec<InboxEvent>,
    /// The run output, once it succeeded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    /// The run error, once it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorValue>,
    /// The error a catch led to the final state with (legacy `errorHandler`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handled_error: Option<ErrorValue>,
    /// Transitions so far (`limits.maxTransitions`).
    pub transitions: u64,
    /// Activations so far (see [`Active::activation`]).
    pub activations: u64,
    /// Recoveries after crashes.
    pub recoveries: u32,
    /// Graph records folded.
    pub records: u64,
}

impl Default for Snapshot {
    fn default() -> Self {
        Snapshot::new()
    }
}

/// Folds graph records into a snapshot (S10). The records must be the graph records of one
/// run in journal order; a record that does not follow from the ones before is
/// [`Error::Journal`].
pub fn fold(graph: &Graph, records: &[Record]) -> Result<Snapshot> {
    let mut s = Snapshot::new();
    for r in records {
        s.apply(graph, r)?;
    }
    Ok(s)
}

impl Snapshot {
    /// The snapshot of a run with no records.
    pub fn new() -> Snapshot {
        Snapshot {
            version: 1,
            status: RunStatus::NotStarted,
            input: Value::Null,
            graph_hash: String::new(),
            code_hash: String::new(),
            root: Region::new(String::new()),
            inbox: Vec::new(),
            output: None,
            error: None,
            handled_error: None,
            transitions: 0,
            activations: 0,
            recoveries: 0,
            records: 0,
        }
    }

    /// The snapshot as canonical JSON bytes (what a run stores, and what S10 compares).
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Paths of every state that is in progress (entered and not left), outermost first.
    pub fn current_states(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.each_active(&mut |a| out.push(a.path.clone()));
        out
    }

    /// Every armed timer, in tree order.
    pub fn armed_timers(&self) -> Vec<ArmedTimer> {
        let mut out = Vec::new();
        self.each_active(&mut |a| {
            for (t, at) in &a.timers {
                out.push(ArmedTimer {
                    path: a.path.clone(),
                    timer: t.clone(),
                    activation: a.activation,
                    fire_at: *at,
                });
            }
        });
        out
    }

    /// The variables visible at the top level.
    pub fn vars(&self) -> &BTreeMap<String, Value> {
        &self.root.vars
    }

    /// Calls `f` for every active state, parents before their branches and items.
    pub fn each_active(&self, f: &mut dyn FnMut(&Active)) {
        fn walk(r: &Region, f: &mut dyn FnMut(&Active)) {
            let Some(a) = &r.current else { return };
            f(a);
            match &a.fanout {
                Some(Fanout::Parallel { branches }) => {
                    for b in branches {
                        walk(b, f);
                    }
                }
                Some(Fanout::Map { running, .. }) => {
                    for r in running.values() {
                        walk(r, f);
                    }
                }
                None => {}
            }
        }
        walk(&self.root, f);
    }

    /// The region whose states have path prefix `prefix`.
    pub(crate) fn region(&self, prefix: &str) -> Option<&Region> {
        let mut r = &self.root;
        for seg in path::segments(prefix) {
            let seg = seg.ok()?;
            let a = r.current.as_ref().filter(|a| a.name == seg.name)?;
            r = match (a.fanout.as_ref()?, seg.sub?) {
                (Fanout::Parallel { branches }, Sub::Branch(b)) => branches.get(b)?,
                (Fanout::Map { running, .. }, Sub::Item(i)) => running.get(&i)?,
                _ => return None,
            };
        }
        Some(r)
    }

    fn region_mut(&mut self, prefix: &str) -> Option<&mut Region> {
        let mut r = &mut self.root;
        for seg in path::segments(prefix) {
            let seg = seg.ok()?;
            let a = r.current.as_mut().filter(|a| a.name == seg.name)?;
            r = match (a.fanout.as_mut()?, seg.sub?) {
                (Fanout::Parallel { branches }, Sub::Branch(b)) => branches.get_mut(b)?,
                (Fanout::Map { running, .. }, Sub::Item(i)) => running.get_mut(&i)?,
                _ => return None,
            };
        }
        Some(r)
    }

    /// The active state at `path`.
    pub fn active(&self, path: &str) -> Option<&Active> {
        let (prefix, name) = path::split_last(path);
        self.region(prefix)?
            .current
            .as_ref()
            .filter(|a| a.name == name)
    }

    fn active_mut(&mut self, path: &str) -> Option<&mut Active> {
        let (prefix, name) = path::split_last(path);
        self.region_mut(prefix)?
            .current
            .as_mut()
            .filter(|a| a.name == name)
    }

    /// Applies one record (the fold's step).
    pub fn apply(&mut self, graph: &Graph, record: &Record) -> Result<()> {
        let index = self.records as usize;
        let kind = record.kind().as_str();
        let bad = |problem: String| Error::Journal {
            index,
            kind: kind.to_string(),
            problem,
        };
        let path = record.path.as_deref();
        let need_path = || path.ok_or_else(|| bad("it has no path".into()));
        if self.status != RunStatus::Running
            && !matches!(
                record.data,
                RecordData::RunStarted { .. } | RecordData::RunRedriven {}
            )
        {
            return Err(bad(format!("the run is {}", self.status.as_str())));
        }
        macro_rules! active {
            () => {{
                let p = need_path()?;
                self.active_mut(p)
                    .ok_or_else(|| bad(format!("no active state at {p}")))?
            }};
        }
        match &record.data {
            RecordData::RunStarted {
                input,
                graph_hash,
                code_hash,
            } => {
                if self.status != RunStatus::NotStarted {
                    return Err(bad("the run has started already".into()));
                }
                self.status = RunStatus::Running;
                self.input = input.clone();
                self.graph_hash = graph_hash.clone();
                self.code_hash = code_hash.clone();
            }
            RecordData::StateEntered {
                attempt,
                restart,
                input,
            } => {
                let p = need_path()?;
                let (prefix, name) = path::split_last(p);
                if graph.state_at(p).is_none() {
                    return Err(bad(format!("the graph has no state at {p}")));
                }
                let next_activation = self.activations + 1;
                let region = self
                    .region_mut(prefix)
                    .ok_or_else(|| bad(format!("no running region for {p}")))?;
                match (&mut region.current, restart) {
                    (Some(a), Some(r)) if a.name == name => {
                        a.restart = *r;
                    }
                    (Some(a), None) if a.name == name && a.phase == Phase::RetryWait => {
                        a.attempt = *attempt;
                        a.input = input.clone();
                        a.activation = next_activation;
                        a.phase = Phase::Running;
                        a.restart = 0;
                        a.output = None;
                        a.failure = None;
                        a.fanout = None;
                        self.activations = next_activation;
                    }
                    (None, None) if region.status == RegionStatus::Running => {
                        let (error, event) = match region.carry.take() {
                            Some(Carry::Error(e)) => (Some(e), None),
                            Some(Carry::Event(v)) => (None, Some(v)),
                            None => (None, None),
                        };
                        region.current = Some(Active {
                            name: name.to_string(),
                            path: p.to_string(),
                            activation: next_activation,
                            attempt: *attempt,
                            restart: 0,
                            input: input.clone(),
                            phase: Phase::Running,
                            retries: Vec::new(),
                            timers: BTreeMap::new(),
                            error,
                            event,
                            consumed: None,
                            output: None,
                            failure: None,
                            fanout: None,
                        });
                        self.activations = next_activation;
                    }
                    (cur, _) => {
                        return Err(bad(format!(
                            "region {prefix:?} is in {:?}",
                            cur.as_ref().map(|a| a.name.as_str())
                        )));
                    }
                }
            }
            RecordData::StateSucceeded { output, vars } => {
                let p = need_path()?;
                let (prefix, name) = path::split_last(p);
                let region = self
                    .region_mut(prefix)
                    .ok_or_else(|| bad(format!("no region for {p}")))?;
                let a = region
                    .current
                    .as_mut()
                    .filter(|a| a.name == name && a.phase == Phase::Running)
                    .ok_or_else(|| bad(format!("no running state at {p}")))?;
                a.phase = Phase::Succeeded;
                a.output = Some(output.clone());
                region.results.insert(name.to_string(), output.clone());
                if let Some(vars) = vars {
                    for (k, v) in vars {
                        region.vars.insert(k.clone(), v.clone());
                    }
                }
            }
            RecordData::StateFailed { error, .. } => {
                let a = active!();
                a.phase = Phase::Failed;
                a.failure = Some(error.clone());
            }
            RecordData::RetryScheduled {
                retrier, fire_at, ..
            } => {
                let a = active!();
                if a.retries.len() <= *retrier {
                    a.retries.resize(retrier + 1, 0);
                }
                a.retries[*retrier] += 1;
                a.timers.insert("retry".into(), *fire_at);
                a.phase = Phase::RetryWait;
            }
            RecordData::TimerScheduled { timer, fire_at } => {
                active!().timers.insert(timer.clone(), *fire_at);
            }
            RecordData::TimerFired { timer } | RecordData::TimerCancelled { timer } => {
                let a = active!();
                if a.timers.remove(timer).is_none() {
                    return Err(bad(format!("timer {timer:?} is not armed at {}", a.path)));
                }
            }
            RecordData::Transition { from, .. } => {
                let p = need_path()?;
                let (prefix, name) = path::split_last(p);
                if from != name {
                    return Err(bad(format!("from {from:?} at path {p}")));
                }
                let region = self
                    .region_mut(prefix)
                    .ok_or_else(|| bad(format!("no region for {p}")))?;
                let a = region
                    .current
                    .take()
                    .filter(|a| a.name == name)
                    .ok_or_else(|| bad(format!("no active state at {p}")))?;
                region.carry = match (a.phase, a.failure, a.consumed) {
                    (Phase::Failed, Some(e), _) => Some(Carry::Error(e)),
                    (_, _, Some(ev)) => Some(Carry::Event(ev)),
                    _ => None,
                };
                self.transitions += 1;
            }
            RecordData::EventReceived { name, message } => self.inbox.push(InboxEvent {
                name: name.clone(),
                message: message.clone(),
            }),
            RecordData::EventConsumed { name, discarded } => {
                let i = self
                    .inbox
                    .iter()
                    .position(|e| e.name == *name)
                    .ok_or_else(|| bad(format!("no event {name:?} in the inbox")))?;
                let ev = self.inbox.remove(i);
                if !discarded {
                    active!().consumed =
                        Some(serde_json::json!({"name": ev.name, "message": ev.message}));
                }
            }
            RecordData::BranchStarted { branch } => {
                let a = active!();
                let prefix = path::branch(&a.path, *branch);
                let f = a.fanout.get_or_insert(Fanout::Parallel {
                    branches: Vec::new(),
                });
                match f {
                    Fanout::Parallel { branches } if branches.len() == *branch => {
                        let mut r = Region::new(prefix);
                        r.branch = Some(*branch);
                        branches.push(r);
                    }
                    _ => return Err(bad(format!("branch {branch} out of order"))),
                }
            }
            RecordData::BranchSucceeded { branch, .. }
            | RecordData::BranchFailed { branch, .. }
            | RecordData::BranchCancelled { branch } => {
                let a = active!();
                let Some(Fanout::Parallel { branches }) = &mut a.fanout else {
                    return Err(bad("not a parallel state".into()));
                };
                let r = branches
                    .get_mut(*branch)
                    .filter(|r| r.status == RegionStatus::Running)
                    .ok_or_else(|| bad(format!("branch {branch} is not running")))?;
                r.current = None;
                r.carry = None;
                match &record.data {
                    RecordData::BranchSucceeded { output, .. } => {
                        r.status = RegionStatus::Succeeded;
                        r.output = Some(output.clone());
                    }
                    RecordData::BranchFailed { error, .. } => {
                        r.status = RegionStatus::Failed;
                        r.error = Some(error.clone());
                    }
                    _ => r.status = RegionStatus::Cancelled,
                }
            }
            RecordData::ItemStarted { index, item } => {
                let a = active!();
                let prefix = path::item(&a.path, *index);
                let f = a.fanout.get_or_insert(Fanout::Map {
                    started: 0,
                    failed: 0,
                    running: BTreeMap::new(),
                    outputs: BTreeMap::new(),
                });
                match f {
                    Fanout::Map {
                        started, running, ..
                    } if *started == *index => {
                        let mut r = Region::new(prefix);
                        r.index = Some(*index);
                        r.item = Some(item.clone());
                        running.insert(*index, r);
                        *started += 1;
                    }
                    _ => return Err(bad(format!("item {index} out of order"))),
                }
            }
            RecordData::ItemSucceeded { index, .. }
            | RecordData::ItemFailed { index, .. }
            | RecordData::ItemCancelled { index } => {
                let a = active!();
                let Some(Fanout::Map {
                    running,
                    outputs,
                    failed,
                    ..
                }) = &mut a.fanout
                else {
                    return Err(bad("not a map state".into()));
                };
                if running.remove(index).is_none() {
                    return Err(bad(format!("item {index} is not running")));
                }
                match &record.data {
                    RecordData::ItemSucceeded { output, .. } => {
                        outputs.insert(*index, output.clone());
                    }
                    RecordData::ItemFailed { error, .. } => {
                        *failed += 1;
                        outputs.insert(
                            *index,
                            serde_json::json!({"$error": {"name": error.name, "message": error.message}}),
                        );
                    }
                    _ => {}
                }
            }
            RecordData::RunRecovered { .. } => self.recoveries += 1,
            RecordData::RunSucceeded {
                output,
                handled_error,
            } => {
                self.status = RunStatus::Succeeded;
                self.output = Some(output.clone());
                self.handled_error = handled_error.clone();
                self.end_root(RegionStatus::Succeeded);
            }
            RecordData::RunFailed { error } => {
                self.status = RunStatus::Failed;
                self.error = Some(error.clone());
                self.end_root(RegionStatus::Failed);
            }
            RecordData::RunCancelled {} => {
                self.status = RunStatus::Cancelled;
                self.end_root(RegionStatus::Cancelled);
            }
            RecordData::RunRedriven {} => {
                let p = need_path()?;
                if self.status != RunStatus::Failed {
                    return Err(bad(format!(
                        "the run is {}, not failed",
                        self.status.as_str()
                    )));
                }
                if p.contains('/') || graph.state_at(p).is_none() {
                    return Err(bad(format!("{p} is not a state of the main graph")));
                }
                // the failure is history: the main graph runs again from the state at `path`
                // (its `state.entered`, attempt 1, follows in the same commit)
                self.status = RunStatus::Running;
                self.error = None;
                self.root.status = RegionStatus::Running;
                self.root.current = None;
                self.root.carry = None;
            }
        }
        self.records += 1;
        Ok(())
    }

    fn end_root(&mut self, status: RegionStatus) {
        self.root.current = None;
        self.root.carry = None;
        self.root.status = status;
    }
}
