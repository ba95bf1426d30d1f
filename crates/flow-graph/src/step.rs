//! The stepping function: from (graph, the graph records so far, one new fact) to the records
//! to append as one atomic batch (S6) and the next actions for the engine. Pure: the caller
//! passes `now` (and a random draw for full jitter); the crate reads no clock.

use std::collections::BTreeMap;

mod flow;
mod outcome;
mod regions;

use flow::{Stepper, runs_code, visible};

use serde_json::{Map, Value, json};

use crate::error::Result;
use crate::graph::{Graph, Kind, Run, Wait};
use crate::path::{self};
use crate::record::{ErrorValue, Record};
use crate::snapshot::{Active, Phase, RunStatus, Snapshot, fold};

/// What the caller knows that the crate may not find out by itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Env {
    /// The current time, Unix milliseconds: timers are armed at `now + duration`.
    pub now: i64,
    /// The run's id (`$.run.id`, `ctx.run.id`).
    pub run_id: String,
    /// A uniform draw in [0, 1) from the engine's generator, used only by a retrier with
    /// `jitter: "full"` (the resulting delay is journaled, so replay never draws again).
    pub draw: f64,
}

/// Something that happened to a run, for [`step`] to turn into records and actions.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Fact {
    /// The run starts with this input (the engine computes the pinned hashes, S13).
    RunStarted {
        /// The run input.
        input: Value,
        /// Hash of graph.json.
        graph_hash: String,
        /// Hash of code.js.
        code_hash: String,
    },
    /// A handler returned.
    HandlerSucceeded {
        /// The state path of its [`HandlerCall`].
        path: String,
        /// The activation of its [`HandlerCall`].
        activation: u64,
        /// The returned value.
        output: Value,
        /// The outcome name when the handler returned `ctx.outcome(name, value)` (then `output`
        /// is `value`).
        outcome: Option<String>,
    },
    /// A handler threw.
    HandlerFailed {
        /// The state path of its [`HandlerCall`].
        path: String,
        /// The activation of its [`HandlerCall`].
        activation: u64,
        /// `{name, message}` of what it threw.
        error: ErrorValue,
    },
    /// A child run started by [`Action::StartChild`] ended.
    ChildFinished {
        /// The state path.
        path: String,
        /// The activation of the `StartChild` action.
        activation: u64,
        /// Its output, or its error.
        result: std::result::Result<Value, ErrorValue>,
    },
    /// A timer armed by [`Action::ArmTimer`] is due.
    TimerFired {
        /// The state path.
        path: String,
        /// `wait`, `after`, `timeout` or `retry`.
        timer: String,
    },
    /// An external event arrived (S11).
    EventReceived {
        /// The event's name.
        name: String,
        /// Its message.
        message: Value,
    },
    /// This driver took over a run whose previous driver stopped mid-run: handlers that were
    /// running start again (`restart=n`, S7), timers are re-armed, waits resume.
    Recovered {
        /// Who drove the run before.
        previous_owner: String,
    },
    /// Cancel the run now: handlers are aborted, timers cancelled (S14).
    Cancel,
    /// Redrive a failed run in place (S15): `run.redriven` and the `state.entered` (attempt 1,
    /// fresh retry counters) of the main-graph state `state` with `input`, in one commit. The
    /// states that succeeded before keep their results and are not run again. See
    /// [`redrive_point`] for where a failed journal is redriven from.
    Redrive {
        /// The main-graph state to enter again.
        state: String,
        /// Its input (as its last `state.entered` recorded it).
        input: Value,
    },
}

/// Where a failed run is redriven from: the main-graph state whose failure ended it (for a
/// failure inside a parallel branch or map item, the parallel or map state holding it) and the
/// input it was last entered with. `None` when the run did not fail in a state.
pub fn redrive_point(records: &[Record]) -> Option<(String, Value)> {
    use crate::record::RecordData;
    let failed = records
        .iter()
        .rev()
        .find_map(|r| match (&r.data, &r.path) {
            (RecordData::RunFailed { .. }, Some(p)) => Some(p.clone()),
            (RecordData::RunFailed { .. }, None) => {
                records.iter().rev().find_map(|r| match r.data {
                    RecordData::StateFailed { .. } => r.path.clone(),
                    _ => None,
                })
            }
            _ => None,
        })?;
    let top = path::segments(&failed).next()?.ok()?.name.to_string();
    let input = records.iter().rev().find_map(|r| match &r.data {
        RecordData::StateEntered { input, .. } if r.path.as_deref() == Some(top.as_str()) => {
            Some(input.clone())
        }
        _ => None,
    })?;
    Some((top, input))
}

/// A handler to run: `export async function <handler>(input, ctx)`.
#[derive(Debug, Clone, PartialEq)]
pub struct HandlerCall {
    /// The state path; hand it back in the fact.
    pub path: String,
    /// The activation; hand it back in the fact.
    pub activation: u64,
    /// The export of code.js to call (or the state's name for inline code).
    pub handler: String,
    /// Legacy inline code (`code`), to compile instead of looking up an export.
    pub code: Option<String>,
    /// Its `input`.
    pub input: Value,
    /// Its `ctx` as JSON: `{run: {id, input}, state, attempt, results, vars}` plus `error`,
    /// `event`, `item`, `index`, `branch` where they apply. The engine adds `run.task`,
    /// `signal` and `outcome()`.
    pub ctx: Value,
}

/// What the engine should do next, in this order.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// Abort the handler or child run in flight at `path` (timed out, or its branch, item or
    /// run was cancelled); a result it still delivers is ignored.
    Abort {
        /// The state path.
        path: String,
        /// The activation that is aborted.
        activation: u64,
    },
    /// Forget a timer (its state was exited).
    CancelTimer {
        /// The state path.
        path: String,
        /// Which timer.
        timer: String,
    },
    /// Run a handler (after the records of this step are committed, S7).
    RunHandler(HandlerCall),
    /// Start a child run of another task (idempotently: key it by run, path and activation).
    StartChild {
        /// The state path.
        path: String,
        /// The activation; hand it back in [`Fact::ChildFinished`].
        activation: u64,
        /// The task to run.
        task: String,
        /// Its input.
        input: Value,
    },
    /// Deliver [`Fact::TimerFired`] at `fire_at` (at once when overdue, S8).
    ArmTimer {
        /// The state path.
        path: String,
        /// `wait`, `after`, `timeout` or `retry`.
        timer: String,
        /// Absolute deadline, Unix milliseconds.
        fire_at: i64,
    },
    /// The state at `path` waits for one of these events.
    WaitForEvent {
        /// The state path.
        path: String,
        /// The event names it accepts.
        events: Vec<String>,
    },
    /// The run succeeded with this output.
    Succeed {
        /// The run output.
        output: Value,
    },
    /// The run failed with this error.
    Fail {
        /// The error.
        error: ErrorValue,
    },
    /// The run was cancelled.
    Cancelled,
}

/// The result of one step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Records to append, as one atomic batch, before performing any action.
    pub records: Vec<Record>,
    /// What to do once they are committed.
    pub actions: Vec<Action>,
    /// The snapshot after the records (equal to folding the whole journal).
    pub snapshot: Snapshot,
    /// Why the fact changed nothing, when it was stale (a result of an aborted handler, a
    /// timer of a state already exited).
    pub ignored: Option<String>,
}

/// One step: folds `records` and applies `fact` (see [`Snapshot::step`]).
pub fn step(graph: &Graph, records: &[Record], fact: Fact, env: &Env) -> Result<Step> {
    fold(graph, records)?.step(graph, fact, env)
}

impl Snapshot {
    /// One step from this snapshot: the records `fact` leads to, in one batch, and the
    /// actions to take once they are committed. Only an event for an ended run, a second
    /// start, or a fact before the start is an error; stale facts are [`Step::ignored`].
    pub fn step(&self, graph: &Graph, fact: Fact, env: &Env) -> Result<Step> {
        let resume_all = matches!(fact, Fact::Recovered { .. });
        let settled = match &fact {
            Fact::HandlerSucceeded {
                path, activation, ..
            }
            | Fact::HandlerFailed {
                path, activation, ..
            }
            | Fact::ChildFinished {
                path, activation, ..
            } => Some((path.clone(), *activation)),
            _ => None,
        };
        let fired = match &fact {
            Fact::TimerFired { path, timer } => self
                .active(path)
                .map(|a| (path.clone(), timer.clone(), a.activation)),
            _ => None,
        };
        let mut s = Stepper {
            g: graph,
            env,
            snap: self.clone(),
            out: Vec::new(),
            work: Vec::new(),
            counts: BTreeMap::new(),
        };
        if let Some(reason) = s.fact(fact)? {
            return Ok(Step {
                records: Vec::new(),
                actions: Vec::new(),
                snapshot: self.clone(),
                ignored: Some(reason),
            });
        }
        s.run()?;
        let actions = derive_actions(graph, env, self, &s.snap, resume_all, settled, fired);
        Ok(Step {
            records: s.out,
            actions,
            snapshot: s.snap,
            ignored: None,
        })
    }
}

impl Snapshot {
    /// What to do to carry on from this snapshot when no new fact has arrived (a run resumed
    /// after it waited): start the handlers and child runs in flight, arm every armed timer at
    /// its `fire_at`, wait for the events of every event wait. Writes nothing: a driver that
    /// took over from a crashed one steps [`Fact::Recovered`] instead, which restarts the
    /// handlers with `restart=n` (S7).
    pub fn pending_actions(&self, graph: &Graph, env: &Env) -> Vec<Action> {
        derive_actions(graph, env, self, self, true, None, None)
    }
}

/// What a snapshot has in flight, for comparing before and after a step.
#[derive(Default)]
struct InFlight {
    /// (path, activation, restart)
    code: Vec<(String, u64, u32)>,
    /// (path, timer, activation, fire_at)
    timers: Vec<(String, String, u64, i64)>,
    /// (path, activation, events)
    waits: Vec<(String, u64, Vec<String>)>,
}

fn in_flight(g: &Graph, s: &Snapshot) -> InFlight {
    let mut f = InFlight::default();
    s.each_active(&mut |a| {
        for (t, at) in &a.timers {
            f.timers
                .push((a.path.clone(), t.clone(), a.activation, *at));
        }
        if a.phase != Phase::Running {
            return;
        }
        if runs_code(g, &a.path) {
            f.code.push((a.path.clone(), a.activation, a.restart));
        }
        if let Some(Kind::Wait(Wait::Event { on, .. })) = g.state_at(&a.path).map(|s| &s.kind) {
            f.waits.push((
                a.path.clone(),
                a.activation,
                on.iter().map(|(e, _)| e.clone()).collect(),
            ));
        }
    });
    f
}

fn derive_actions(
    g: &Graph,
    env: &Env,
    old: &Snapshot,
    new: &Snapshot,
    resume_all: bool,
    settled: Option<(String, u64)>,
    fired: Option<(String, String, u64)>,
) -> Vec<Action> {
    let (before, after) = (in_flight(g, old), in_flight(g, new));
    let mut actions = Vec::new();
    for (p, act, _) in &before.code {
        let still = after.code.iter().any(|(q, b, _)| q == p && b == act);
        if !still && settled.as_ref() != Some(&(p.clone(), *act)) {
            actions.push(Action::Abort {
                path: p.clone(),
                activation: *act,
            });
        }
    }
    for t in &before.timers {
        let fired_now = fired.as_ref() == Some(&(t.0.clone(), t.1.clone(), t.2));
        if !after.timers.contains(t) && !fired_now {
            actions.push(Action::CancelTimer {
                path: t.0.clone(),
                timer: t.1.clone(),
            });
        }
    }
    for c in &after.code {
        if resume_all || !before.code.contains(c) {
            let (path, activation, _) = c;
            let Some(a) = new.active(path) else { continue };
            let Some(st) = g.state_at(path) else { continue };
            let action = match &st.kind {
                Kind::Task(crate::graph::Task {
                    run: Run::Child(task),
                    ..
                }) => Action::StartChild {
                    path: path.clone(),
                    activation: *activation,
                    task: task.clone(),
                    input: a.input.clone(),
                },
                kind => {
                    let (handler, code) = match kind {
                        Kind::Task(crate::graph::Task {
                            run: Run::Handler(h),
                            ..
                        }) => (h.clone(), None),
                        Kind::Task(crate::graph::Task {
                            run: Run::Inline(c),
                            ..
                        }) => (st.name.clone(), Some(c.clone())),
                        Kind::Final(f) => (f.handler.clone().unwrap_or(st.name.clone()), None),
                        _ => continue,
                    };
                    Action::RunHandler(HandlerCall {
                        path: path.clone(),
                        activation: *activation,
                        handler,
                        code,
                        input: a.input.clone(),
                        ctx: handler_ctx(new, env, a),
                    })
                }
            };
            actions.push(action);
        }
    }
    for t in &after.timers {
        if resume_all || !before.timers.contains(t) {
            actions.push(Action::ArmTimer {
                path: t.0.clone(),
                timer: t.1.clone(),
                fire_at: t.3,
            });
        }
    }
    for w in &after.waits {
        if resume_all || !before.waits.contains(w) {
            actions.push(Action::WaitForEvent {
                path: w.0.clone(),
                events: w.2.clone(),
            });
        }
    }
    if old.status != new.status {
        match new.status {
            RunStatus::Succeeded => actions.push(Action::Succeed {
                output: new.output.clone().unwrap_or(Value::Null),
            }),
            RunStatus::Failed => actions.push(Action::Fail {
                error: new
                    .error
                    .clone()
                    .unwrap_or_else(|| ErrorValue::new("Error", "")),
            }),
            RunStatus::Cancelled => actions.push(Action::Cancelled),
            _ => {}
        }
    }
    actions
}

/// `ctx` of a handler (S2).
fn handler_ctx(snap: &Snapshot, env: &Env, a: &Active) -> Value {
    let (prefix, _) = path::split_last(&a.path);
    let v = visible(snap, prefix);
    let mut m = Map::new();
    m.insert("run".into(), json!({"id": env.run_id, "input": snap.input}));
    m.insert("state".into(), a.path.clone().into());
    m.insert("attempt".into(), a.attempt.into());
    m.insert("results".into(), Value::Object(v.results));
    m.insert("vars".into(), Value::Object(v.vars));
    if let Some(e) = &a.error {
        m.insert("error".into(), e.to_json());
    }
    if let Some(e) = &a.event {
        m.insert("event".into(), e.clone());
    }
    if let Some(item) = v.item {
        m.insert("item".into(), item);
    }
    if let Some(i) = v.index {
        m.insert("index".into(), i.into());
    }
    if let Some(b) = v.branch {
        m.insert("branch".into(), b.into());
    }
    Value::Object(m)
}
