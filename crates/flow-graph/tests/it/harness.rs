//! A simulated engine: performs the actions of each step (handlers are closures, timers a
//! fake clock), keeps the journal of graph records, and after every step asserts that folding
//! the journal gives the step's snapshot byte for byte (S10).

use std::collections::{BTreeMap, VecDeque};

use sequential_flow_graph::{
    Action, Env, ErrorValue, Fact, Graph, HandlerCall, Record, RunStatus, Snapshot, Step, fold,
    step,
};
use serde_json::Value;

/// What a simulated handler does.
#[derive(Debug, Clone)]
pub enum Reply {
    Ok(Value),
    Outcome(&'static str, Value),
    Err(&'static str, &'static str),
}

pub type Handler = Box<dyn FnMut(&Value, &Value) -> Reply>;

pub const T0: i64 = 1_800_000_000_000;

pub struct Sim {
    pub graph: Graph,
    pub records: Vec<Record>,
    /// The records of each step (one atomic batch each).
    pub commits: Vec<Vec<Record>>,
    pub snapshot: Snapshot,
    pub env: Env,
    handlers: BTreeMap<String, Handler>,
    children: BTreeMap<String, Handler>,
    pub queue: VecDeque<HandlerCall>,
    pub child_queue: VecDeque<(String, u64, String, Value)>,
    pub timers: Vec<(String, String, i64)>,
    pub waits: Vec<(String, Vec<String>)>,
    pub calls: BTreeMap<String, u32>,
    pub aborted: Vec<String>,
    /// Most handlers in flight at once (for maxConcurrency).
    pub max_in_flight: usize,
    pub events: VecDeque<(String, Value)>,
    /// Run the newest queued handler first (results then arrive out of order).
    pub lifo: bool,
}

impl Sim {
    pub fn new(graph_json: &Value) -> Sim {
        let parsed = Graph::parse(&graph_json.to_string())
            .unwrap_or_else(|e| panic!("graph does not parse: {e}"));
        Sim::with_graph(parsed.graph)
    }

    pub fn with_graph(graph: Graph) -> Sim {
        Sim {
            graph,
            records: Vec::new(),
            commits: Vec::new(),
            snapshot: Snapshot::new(),
            env: Env {
                now: T0,
                run_id: "run-1".into(),
                draw: 0.5,
            },
            handlers: BTreeMap::new(),
            children: BTreeMap::new(),
            queue: VecDeque::new(),
            child_queue: VecDeque::new(),
            timers: Vec::new(),
            waits: Vec::new(),
            calls: BTreeMap::new(),
            aborted: Vec::new(),
            max_in_flight: 0,
            events: VecDeque::new(),
            lifo: false,
        }
    }

    pub fn handler(mut self, name: &str, f: impl FnMut(&Value, &Value) -> Reply + 'static) -> Sim {
        self.handlers.insert(name.to_string(), Box::new(f));
        self
    }

    pub fn child(mut self, task: &str, f: impl FnMut(&Value, &Value) -> Reply + 'static) -> Sim {
        self.children.insert(task.to_string(), Box::new(f));
        self
    }

    /// Applies one fact, checks S10, and performs the actions' bookkeeping.
    pub fn fact(&mut self, fact: Fact) -> Step {
        let st = step(&self.graph, &self.records, fact.clone(), &self.env)
            .unwrap_or_else(|e| panic!("step {fact:?}: {e}"));
        // the incremental form gives the same step
        let again = self.snapshot.step(&self.graph, fact, &self.env).unwrap();
        assert_eq!(again, st, "Snapshot::step and step() differ");
        self.records.extend(st.records.iter().cloned());
        if !st.records.is_empty() {
            self.commits.push(st.records.clone());
        }
        let folded = fold(&self.graph, &self.records).unwrap();
        assert_eq!(
            String::from_utf8(folded.to_bytes()).unwrap(),
            String::from_utf8(st.snapshot.to_bytes()).unwrap(),
            "fold(journal) != snapshot"
        );
        // the stored form round-trips
        for r in &st.records {
            let (kind, data) = r.to_parts();
            assert_eq!(
                Record::from_parts(kind.as_str(), &data).unwrap().as_ref(),
                Some(r)
            );
        }
        self.snapshot = st.snapshot.clone();
        for a in &st.actions {
            match a {
                Action::RunHandler(call) => self.queue.push_back(call.clone()),
                Action::StartChild {
                    path,
                    activation,
                    task,
                    input,
                } => self.child_queue.push_back((
                    path.clone(),
                    *activation,
                    task.clone(),
                    input.clone(),
                )),
                Action::Abort { path, .. } => {
                    self.aborted.push(path.clone());
                    self.queue.retain(|c| c.path != *path);
                    self.child_queue.retain(|c| c.0 != *path);
                }
                Action::ArmTimer {
                    path,
                    timer,
                    fire_at,
                } => {
                    self.timers.retain(|t| !(t.0 == *path && t.1 == *timer));
                    self.timers.push((path.clone(), timer.clone(), *fire_at));
                }
                Action::CancelTimer { path, timer } => {
                    self.timers.retain(|t| !(t.0 == *path && t.1 == *timer))
                }
                Action::WaitForEvent { path, events } => {
                    self.waits.push((path.clone(), events.clone()))
                }
                Action::Succeed { .. } | Action::Fail { .. } | Action::Cancelled => {}
                _ => {}
            }
        }
        self.max_in_flight = self.max_in_flight.max(self.queue.len());
        st
    }

    pub fn start(&mut self, input: Value) -> Step {
        self.fact(Fact::RunStarted {
            input,
            graph_hash: "g1".into(),
            code_hash: "c1".into(),
        })
    }

    /// Runs one queued handler (the oldest); `false` when none is queued.
    pub fn run_one(&mut self) -> bool {
        let next = if self.lifo {
            self.queue.pop_back()
        } else {
            self.queue.pop_front()
        };
        let Some(call) = next else {
            return false;
        };
        *self.calls.entry(call.handler.clone()).or_default() += 1;
        let h = self
            .handlers
            .get_mut(&call.handler)
            .unwrap_or_else(|| panic!("no handler {}", call.handler));
        let reply = h(&call.input, &call.ctx);
        let (path, activation) = (call.path.clone(), call.activation);
        self.fact(match reply {
            Reply::Ok(output) => Fact::HandlerSucceeded {
                path,
                activation,
                output,
                outcome: None,
            },
            Reply::Outcome(o, output) => Fact::HandlerSucceeded {
                path,
                activation,
                output,
                outcome: Some(o.to_string()),
            },
            Reply::Err(name, message) => Fact::HandlerFailed {
                path,
                activation,
                error: ErrorValue::new(name, message),
            },
        });
        true
    }

    fn run_child(&mut self) -> bool {
        let Some((path, activation, task, input)) = self.child_queue.pop_front() else {
            return false;
        };
        *self.calls.entry(format!("child:{task}")).or_default() += 1;
        let h = self
            .children
            .get_mut(&task)
            .unwrap_or_else(|| panic!("no child task {task}"));
        let result = match h(&input, &Value::Null) {
            Reply::Ok(v) | Reply::Outcome(_, v) => Ok(v),
            Reply::Err(n, m) => Err(ErrorValue::new(n, m)),
        };
        self.fact(Fact::ChildFinished {
            path,
            activation,
            result,
        });
        true
    }

    /// Fires the earliest timer, moving the clock to its deadline.
    pub fn fire_next_timer(&mut self) -> bool {
        let Some(i) = (0..self.timers.len()).min_by_key(|&i| (self.timers[i].2, i)) else {
            return false;
        };
        let (path, timer, at) = self.timers.remove(i);
        self.env.now = self.env.now.max(at);
        self.fact(Fact::TimerFired { path, timer });
        true
    }

    pub fn send(&mut self, name: &str, message: Value) -> Step {
        self.fact(Fact::EventReceived {
            name: name.into(),
            message,
        })
    }

    /// Handlers, then children, then queued events, then timers, until the run ends or
    /// nothing is left to do.
    pub fn run(&mut self) -> &mut Sim {
        while self.snapshot.status == RunStatus::Running {
            if self.run_one() || self.run_child() {
                continue;
            }
            if let Some((n, m)) = self.events.pop_front() {
                self.send(&n, m);
                continue;
            }
            if !self.fire_next_timer() {
                break;
            }
        }
        self
    }

    pub fn status(&self) -> RunStatus {
        self.snapshot.status
    }

    pub fn output(&self) -> Value {
        self.snapshot.output.clone().unwrap_or(Value::Null)
    }
}

/// Compares records with a trace in the compact form of GRAPHS.md §3:
/// `kind path field=json …` (`-` for no path; a field value that is not JSON is a string).
/// Kinds and paths are compared in order; fields only where listed.
#[track_caller]
pub fn assert_trace(records: &[Record], expected: &[&str]) {
    let shown = show(records);
    assert_eq!(
        records.len(),
        expected.len(),
        "trace length differs\nactual:\n{shown}\nexpected:\n{}",
        expected.join("\n")
    );
    for (i, (r, line)) in records.iter().zip(expected).enumerate() {
        let mut parts = line.split_whitespace();
        let kind = parts.next().unwrap();
        let path = parts.next().unwrap_or("-");
        let (k, data) = r.to_parts();
        let ok_kind = k.as_str() == kind;
        let ok_path = match path {
            "-" => r.path.is_none(),
            p => r.path.as_deref() == Some(p),
        };
        assert!(
            ok_kind && ok_path,
            "record {i}: expected `{line}`\nactual:\n{shown}"
        );
        for field in parts {
            let (name, raw) = field.split_once('=').expect("field=value");
            let want: Value =
                serde_json::from_str(raw).unwrap_or_else(|_| Value::String(raw.to_string()));
            let got = name
                .split('.')
                .fold(&data, |v, k| v.get(k).unwrap_or(&Value::Null));
            assert_eq!(
                got, &want,
                "record {i} (`{line}`): field {name}\nactual:\n{shown}"
            );
        }
    }
}

pub fn show(records: &[Record]) -> String {
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let (k, mut d) = r.to_parts();
            if let Value::Object(m) = &mut d {
                m.remove("path");
            }
            format!(
                "{:>3} {:<16} {:<20} {}",
                i + 1,
                k.as_str(),
                r.path.as_deref().unwrap_or("-"),
                d
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `kind path` of each record.
pub fn kinds(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| format!("{} {}", r.kind(), r.path.as_deref().unwrap_or("-")))
        .collect()
}
