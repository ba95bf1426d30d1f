//! The typed graph: what a valid graph.json (format version 1, or the legacy form) means.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::predicate::Predicate;
use crate::template::{Selector, Template};

/// A validated graph.json, ready to step. Build it with [`Graph::parse`].
#[derive(Debug, Clone)]
pub struct Graph {
    pub(crate) id: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) legacy: bool,
    pub(crate) main: SubGraph,
    pub(crate) defaults: Defaults,
    pub(crate) limits: Limits,
    pub(crate) output: Option<Template>,
    pub(crate) exports: Option<BTreeSet<String>>,
}

impl Graph {
    /// The graph's `id`, when it has one (the task name otherwise).
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// The graph's `description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// `true` for a graph without `version` (the original sequential-flow form).
    pub fn is_legacy(&self) -> bool {
        self.legacy
    }

    /// The top-level states.
    pub fn main(&self) -> &SubGraph {
        &self.main
    }

    /// `limits.maxEventlessSteps` (default 1000).
    pub fn max_eventless_steps(&self) -> u32 {
        self.limits.max_eventless_steps
    }

    /// `limits.maxTransitions` (default: unbounded).
    pub fn max_transitions(&self) -> Option<u64> {
        self.limits.max_transitions
    }

    /// The exports of code.js this graph was checked against, if they were given.
    pub fn exports(&self) -> Option<&BTreeSet<String>> {
        self.exports.as_ref()
    }

    /// The sub-graph at a region path: `""` is the main graph, `"fan#1/"` branch 1 of the
    /// parallel state `fan`, `"each[3]/"` the iterator of the map state `each`.
    pub(crate) fn region(&self, prefix: &str) -> Option<&SubGraph> {
        let mut g = &self.main;
        for seg in crate::path::segments(prefix) {
            let seg = seg.ok()?;
            let st = g.state(seg.name)?;
            g = match (&st.kind, seg.sub?) {
                (Kind::Parallel(p), crate::path::Sub::Branch(b)) => p.branches.get(b)?,
                (Kind::Map(m), crate::path::Sub::Item(_)) => &m.iterator,
                _ => return None,
            };
        }
        Some(g)
    }

    /// The state at a state path (`charge`, `fan#1/checksum`, `each[3]/fetchOne`), as records,
    /// actions and snapshots name it.
    pub fn state_at(&self, path: &str) -> Option<&State> {
        let (prefix, name) = crate::path::split_last(path);
        self.region(prefix)?.state(name)
    }
}

/// `{initial, states}`: the main graph, a parallel branch or a map iterator.
#[derive(Debug, Clone)]
pub struct SubGraph {
    pub(crate) initial: String,
    pub(crate) states: Vec<State>,
    pub(crate) pointer: String,
    /// State name → position in `states`.
    pub(crate) index: BTreeMap<String, usize>,
}

impl SubGraph {
    /// The initial state's name.
    pub fn initial(&self) -> &str {
        &self.initial
    }

    /// The states in document order.
    pub fn states(&self) -> &[State] {
        &self.states
    }

    /// The state named `name`.
    pub fn state(&self, name: &str) -> Option<&State> {
        self.index.get(name).map(|&i| &self.states[i])
    }

    /// The JSON pointer of this sub-graph (`""` for the main graph).
    pub fn pointer(&self) -> &str {
        &self.pointer
    }
}

/// A transition out of a state, as `graph show` draws it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The `via` a `transition` record would carry: `done`, `error`, `success`, `fail`,
    /// `choice[i]`, `default`, `catch[i]`, `event:<name>`, `after:<dur>`, `outcome:<name>`.
    pub via: String,
    /// The target state's name (in the same sub-graph).
    pub target: String,
    /// The JSON pointer of the target name.
    pub pointer: String,
}

/// One state of a (sub-)graph.
#[derive(Debug, Clone)]
pub struct State {
    pub(crate) name: String,
    pub(crate) description: Option<String>,
    pub(crate) input: Option<Template>,
    pub(crate) assign: Vec<(String, Template)>,
    pub(crate) kind: Kind,
    pub(crate) edges: Vec<Edge>,
    pub(crate) pointer: String,
}

impl State {
    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its `description`.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }

    /// `task`, `pass`, `choice`, `wait`, `parallel`, `map`, `final` or `fail`.
    pub fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Task(_) => "task",
            Kind::Pass(_) => "pass",
            Kind::Choice(_) => "choice",
            Kind::Wait(_) => "wait",
            Kind::Parallel(_) => "parallel",
            Kind::Map(_) => "map",
            Kind::Final(_) => "final",
            Kind::Fail(_) => "fail",
        }
    }

    /// Its transitions, in the order outcome selection tries them.
    pub fn edges(&self) -> &[Edge] {
        &self.edges
    }

    /// The export of code.js a task state calls (`None` for a child-task or inline state and
    /// for the other types; a final state names one only with `handler`).
    pub fn handler(&self) -> Option<&str> {
        match &self.kind {
            Kind::Task(Task {
                run: Run::Handler(h),
                ..
            }) => Some(h),
            Kind::Final(f) => f.handler.as_deref(),
            _ => None,
        }
    }

    /// The task a `task:` state runs as a child run.
    pub fn child_task(&self) -> Option<&str> {
        match &self.kind {
            Kind::Task(Task {
                run: Run::Child(t), ..
            }) => Some(t),
            _ => None,
        }
    }

    /// The branches of a parallel state, or the iterator of a map state (one sub-graph).
    pub fn subgraphs(&self) -> &[SubGraph] {
        match &self.kind {
            Kind::Parallel(p) => &p.branches,
            Kind::Map(m) => std::slice::from_ref(&m.iterator),
            _ => &[],
        }
    }

    /// The JSON pointer of this state (`/states/charge`).
    pub fn pointer(&self) -> &str {
        &self.pointer
    }

    pub(crate) fn is_eventless(&self) -> bool {
        matches!(self.kind, Kind::Choice(_) | Kind::Pass(_))
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Task(Task),
    Pass(Pass),
    Choice(Choice),
    Wait(Wait),
    Parallel(Parallel),
    Map(MapState),
    Final(Final),
    Fail(Fail),
}

/// What a task state runs.
#[derive(Debug, Clone)]
pub(crate) enum Run {
    /// An export of code.js.
    Handler(String),
    /// Another task, as a durable child run.
    Child(String),
    /// Legacy `code`: an inline handler body (compiled by the VM under the state's name).
    Inline(String),
}

/// Retry, catch and `onError` of task, parallel and map states.
#[derive(Debug, Clone, Default)]
pub(crate) struct Recovery {
    /// `None`: not set (a task state then takes `defaults.retry`).
    pub(crate) retry: Option<Vec<Retrier>>,
    pub(crate) catch: Vec<Catcher>,
    pub(crate) on_error: Option<String>,
}

/// Where a state goes after success.
#[derive(Debug, Clone, Default)]
pub(crate) struct Next {
    pub(crate) on_done: Option<String>,
    /// Handler outcomes (`ctx.outcome(name, value)`), in document order.
    pub(crate) on: Vec<(String, String)>,
    /// Legacy `onSuccess` / `onFail`.
    pub(crate) on_success: Option<String>,
    pub(crate) on_fail: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Task {
    pub(crate) run: Run,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) recovery: Recovery,
    pub(crate) next: Next,
}

#[derive(Debug, Clone)]
pub(crate) struct Pass {
    pub(crate) result: Option<Value>,
    pub(crate) on_done: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Choice {
    pub(crate) choices: Vec<(Predicate, String)>,
    pub(crate) default: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) enum WaitTime {
    For(u64),
    Until(i64),
    UntilPath(Selector),
}

#[derive(Debug, Clone)]
pub(crate) enum Wait {
    Time {
        time: WaitTime,
        on_done: String,
    },
    Event {
        on: Vec<(String, String)>,
        /// (the duration as written, in ms, target)
        after: Option<(String, u64, String)>,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Parallel {
    pub(crate) branches: Vec<SubGraph>,
    pub(crate) recovery: Recovery,
    pub(crate) on_done: String,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Tolerance {
    /// Not configured: the first failed item fails the map with its own error.
    None,
    Count(u64),
    Percent(f64),
}

#[derive(Debug, Clone)]
pub(crate) struct MapState {
    pub(crate) items: Selector,
    pub(crate) item_input: Option<Template>,
    pub(crate) max_concurrency: usize,
    pub(crate) tolerance: Tolerance,
    pub(crate) iterator: SubGraph,
    pub(crate) recovery: Recovery,
    pub(crate) on_done: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Final {
    pub(crate) output: Option<Template>,
    /// An explicitly named handler (`"handler"`).
    pub(crate) handler: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct Fail {
    pub(crate) error: String,
    pub(crate) cause: Option<Template>,
}

/// An ASL retrier (S4).
#[derive(Debug, Clone)]
pub(crate) struct Retrier {
    pub(crate) errors: Vec<String>,
    pub(crate) max_attempts: u32,
    pub(crate) interval_ms: u64,
    pub(crate) backoff_rate: f64,
    pub(crate) max_delay_ms: Option<u64>,
    pub(crate) full_jitter: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Catcher {
    pub(crate) errors: Vec<String>,
    pub(crate) target: String,
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Defaults {
    pub(crate) retry: Option<Vec<Retrier>>,
    pub(crate) timeout_ms: Option<u64>,
}

#[derive(Debug, Clone)]
pub(crate) struct Limits {
    pub(crate) max_eventless_steps: u32,
    pub(crate) max_transitions: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_eventless_steps: 1000,
            max_transitions: None,
        }
    }
}
