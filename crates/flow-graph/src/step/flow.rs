//! The stepper: facts in, records out (each applied to the snapshot as it is written), and
//! how a state is entered and set up.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::graph::{Graph, Kind, Run, Wait, WaitTime};
use crate::path::{self, Sub};
use crate::record::{ErrorValue, Record, RecordData};
use crate::reserved;
use crate::snapshot::{Active, Phase, RegionStatus, RunStatus, Snapshot};
use crate::template::Selector;

use super::{Env, Fact};

/// A state to enter, queued while a step runs.
pub(super) struct Work {
    pub(super) prefix: String,
    pub(super) name: String,
    pub(super) input: Value,
}

pub(super) struct Stepper<'a> {
    pub(super) g: &'a Graph,
    pub(super) env: &'a Env,
    pub(super) snap: Snapshot,
    pub(super) out: Vec<Record>,
    /// Depth first: the last pushed is entered next.
    pub(super) work: Vec<Work>,
    /// States entered per region in this step (S9).
    pub(super) counts: BTreeMap<String, u32>,
}

pub(super) type Flow = Result<()>;

pub(super) fn input_template(sel: &Selector, path: &str) -> ErrorValue {
    ErrorValue::new(
        reserved::INPUT_TEMPLATE,
        format!("selector {sel} resolved to nothing in state {path}"),
    )
}

pub(super) fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
        Some(Value::String(s)) => !s.is_empty(),
        Some(_) => true,
    }
}

/// The parent state path and the sub-region of a region prefix (`a#1/` → (`a`, branch 1)).
pub(super) fn parent_of(prefix: &str) -> Option<(String, Sub)> {
    let trimmed = prefix.strip_suffix('/')?;
    let (pp, last) = path::split_last(trimmed);
    let seg = path::segments(last).next()?.ok()?;
    Some((format!("{pp}{}", seg.name), seg.sub?))
}

/// Results and vars visible in a region (outer ones first, inner ones win), and the nearest
/// item, index and branch.
pub(super) struct Visible {
    pub(super) results: Map<String, Value>,
    pub(super) vars: Map<String, Value>,
    pub(super) item: Option<Value>,
    pub(super) index: Option<usize>,
    pub(super) branch: Option<usize>,
}

pub(super) fn visible(snap: &Snapshot, prefix: &str) -> Visible {
    let mut v = Visible {
        results: Map::new(),
        vars: Map::new(),
        item: None,
        index: None,
        branch: None,
    };
    let mut acc = String::new();
    let mut chain = vec![String::new()];
    for seg in prefix.split('/').filter(|s| !s.is_empty()) {
        acc.push_str(seg);
        acc.push('/');
        chain.push(acc.clone());
    }
    for p in chain {
        let Some(r) = snap.region(&p) else { break };
        v.results
            .extend(r.results.iter().map(|(k, x)| (k.clone(), x.clone())));
        v.vars
            .extend(r.vars.iter().map(|(k, x)| (k.clone(), x.clone())));
        if r.item.is_some() {
            v.item = r.item.clone();
            v.index = r.index;
        }
        if r.branch.is_some() {
            v.branch = r.branch;
        }
    }
    v
}

pub(super) fn runs_code(g: &Graph, path: &str) -> bool {
    match g.state_at(path).map(|s| (&s.kind, s)) {
        Some((Kind::Task(_), _)) => true,
        Some((Kind::Final(f), s)) => {
            f.handler.is_some() || g.exports.as_ref().is_some_and(|e| e.contains(&s.name))
        }
        _ => false,
    }
}

impl Stepper<'_> {
    pub(super) fn emit(&mut self, path: Option<&str>, data: RecordData) -> Flow {
        let r = Record::new(path, data);
        self.snap.apply(self.g, &r)?;
        self.out.push(r);
        Ok(())
    }

    pub(super) fn active(&self, path: &str) -> Result<&Active> {
        self.snap.active(path).ok_or_else(|| Error::Journal {
            index: self.snap.records as usize,
            kind: "step".into(),
            problem: format!("no active state at {path}"),
        })
    }

    pub(super) fn scope(
        &self,
        prefix: &str,
        prev: &Value,
        carried: (Option<&ErrorValue>, Option<&Value>),
        output: Option<&Value>,
    ) -> Value {
        let v = visible(&self.snap, prefix);
        let mut m = Map::new();
        m.insert(
            "run".into(),
            json!({"id": self.env.run_id, "input": self.snap.input}),
        );
        m.insert("prev".into(), prev.clone());
        m.insert("results".into(), Value::Object(v.results));
        m.insert("vars".into(), Value::Object(v.vars));
        if let Some(e) = carried.0 {
            m.insert("error".into(), e.to_json());
        }
        if let Some(e) = carried.1 {
            m.insert("event".into(), e.clone());
        }
        if let Some(item) = v.item {
            m.insert("item".into(), item);
        }
        if let Some(i) = v.index {
            m.insert("index".into(), i.into());
        }
        if let Some(o) = output {
            m.insert("output".into(), o.clone());
        }
        Value::Object(m)
    }

    /// The scope of the active state at `path` (prev = its input).
    pub(super) fn state_scope(&self, path: &str, output: Option<&Value>) -> Result<Value> {
        let a = self.active(path)?;
        let (prefix, _) = path::split_last(path);
        Ok(self.scope(
            prefix,
            &a.input,
            (a.error.as_ref(), a.event.as_ref()),
            output,
        ))
    }

    /// Applies a fact; `Some(reason)` when it is stale and changes nothing.
    pub(super) fn fact(&mut self, fact: Fact) -> Result<Option<String>> {
        if let Fact::RunStarted {
            input,
            graph_hash,
            code_hash,
        } = fact
        {
            if self.snap.status != RunStatus::NotStarted {
                return Err(Error::invalid(
                    "fact RunStarted for a run that has started",
                    "RunStarted only as the first fact of a run",
                ));
            }
            self.emit(
                None,
                RecordData::RunStarted {
                    input: input.clone(),
                    graph_hash,
                    code_hash,
                },
            )?;
            self.work.push(Work {
                prefix: String::new(),
                name: self.g.main.initial.clone(),
                input,
            });
            return Ok(None);
        }
        if let Fact::Redrive { state, input } = fact {
            if self.snap.status != RunStatus::Failed {
                return Err(Error::invalid(
                    format!("redrive of a run that is {}", self.snap.status.as_str()),
                    "a failed run",
                ));
            }
            if state.contains('/') || self.g.state_at(&state).is_none() {
                return Err(Error::invalid(
                    format!("redrive from state {state:?}"),
                    "a state of the main graph",
                ));
            }
            self.emit(Some(&state), RecordData::RunRedriven {})?;
            self.emit(
                Some(&state),
                RecordData::StateEntered {
                    attempt: 1,
                    restart: None,
                    input,
                },
            )?;
            self.setup(&state)?;
            return Ok(None);
        }
        if self.snap.status != RunStatus::Running {
            let status = self.snap.status.as_str().to_string();
            return match fact {
                Fact::EventReceived { name, .. } => Err(Error::RunEnded {
                    fact: format!("event {name:?}"),
                    status,
                }),
                Fact::Recovered { .. } | Fact::Cancel => Err(Error::RunEnded {
                    fact: format!("{fact:?}"),
                    status,
                }),
                _ if self.snap.status == RunStatus::NotStarted => Err(Error::invalid(
                    format!("{fact:?} before the run started"),
                    "RunStarted first",
                )),
                _ => Ok(Some(format!("the run has {status}"))),
            };
        }
        match fact {
            Fact::RunStarted { .. } | Fact::Redrive { .. } => unreachable!("handled above"),
            Fact::HandlerSucceeded {
                path,
                activation,
                output,
                outcome,
            } => {
                if let Some(why) = self.stale(&path, activation) {
                    return Ok(Some(why));
                }
                match &self.g.state_at(&path).map(|s| &s.kind) {
                    Some(Kind::Task(t)) if !matches!(t.run, Run::Child(_)) => {
                        self.task_done(&path, output, outcome)?
                    }
                    Some(Kind::Final(_)) => {
                        self.emit(
                            Some(&path),
                            RecordData::StateSucceeded {
                                output: output.clone(),
                                vars: None,
                            },
                        )?;
                        self.cancel_timers(&path)?;
                        self.finish_final(&path, Some(output))?;
                    }
                    _ => return Ok(Some(format!("{path} does not run a handler"))),
                }
            }
            Fact::HandlerFailed {
                path,
                activation,
                error,
            } => {
                if let Some(why) = self.stale(&path, activation) {
                    return Ok(Some(why));
                }
                match &self.g.state_at(&path).map(|s| &s.kind) {
                    Some(Kind::Task(t)) if !matches!(t.run, Run::Child(_)) => {
                        self.fail_state(&path, error, false)?
                    }
                    Some(Kind::Final(_)) => self.fail_state(&path, error, false)?,
                    _ => return Ok(Some(format!("{path} does not run a handler"))),
                }
            }
            Fact::ChildFinished {
                path,
                activation,
                result,
            } => {
                if let Some(why) = self.stale(&path, activation) {
                    return Ok(Some(why));
                }
                let task = match &self.g.state_at(&path).map(|s| &s.kind) {
                    Some(Kind::Task(crate::graph::Task {
                        run: Run::Child(t), ..
                    })) => t.clone(),
                    _ => return Ok(Some(format!("{path} does not run a child task"))),
                };
                match result {
                    Ok(v) => self.task_done(&path, v, None)?,
                    Err(e) => {
                        let err = ErrorValue::new(
                            reserved::CHILD_FAILED,
                            format!("child task {task:?} failed: {e}"),
                        )
                        .with_cause(e.to_json());
                        self.fail_state(&path, err, false)?
                    }
                }
            }
            Fact::TimerFired { path, timer } => {
                let Some(a) = self.snap.active(&path) else {
                    return Ok(Some(format!("no state at {path} (it was exited)")));
                };
                let Some(&fire_at) = a.timers.get(&timer) else {
                    return Ok(Some(format!("timer {timer:?} of {path} is not armed")));
                };
                if fire_at > self.env.now {
                    return Ok(Some(format!(
                        "timer {timer:?} of {path} is due at {fire_at}, not yet at {}",
                        self.env.now
                    )));
                }
                self.emit(
                    Some(&path),
                    RecordData::TimerFired {
                        timer: timer.clone(),
                    },
                )?;
                self.timer(&path, &timer)?;
            }
            Fact::EventReceived { name, message } => {
                self.emit(
                    None,
                    RecordData::EventReceived {
                        name: name.clone(),
                        message,
                    },
                )?;
                let mut waiting = None;
                let g = self.g;
                self.snap.each_active(&mut |a| {
                    if waiting.is_none()
                        && a.phase == Phase::Running
                        && matches!(
                            g.state_at(&a.path).map(|s| &s.kind),
                            Some(Kind::Wait(Wait::Event { on, .. })) if on.iter().any(|(e, _)| *e == name)
                        )
                    {
                        waiting = Some(a.path.clone());
                    }
                });
                if let Some(p) = waiting {
                    self.consume(&p, &name)?;
                }
            }
            Fact::Recovered { previous_owner } => {
                self.emit(None, RecordData::RunRecovered { previous_owner })?;
                let mut restart = Vec::new();
                let g = self.g;
                self.snap.each_active(&mut |a| {
                    if a.phase == Phase::Running && runs_code(g, &a.path) {
                        restart.push((a.path.clone(), a.attempt, a.restart + 1, a.input.clone()));
                    }
                });
                for (p, attempt, r, input) in restart {
                    self.emit(
                        Some(&p),
                        RecordData::StateEntered {
                            attempt,
                            restart: Some(r),
                            input,
                        },
                    )?;
                }
            }
            Fact::Cancel => {
                self.cancel_region("")?;
                self.discard_inbox()?;
                self.emit(None, RecordData::RunCancelled {})?;
            }
        }
        Ok(None)
    }

    /// Why a handler or child result for (`path`, `activation`) is stale, if it is.
    pub(super) fn stale(&self, path: &str, activation: u64) -> Option<String> {
        match self.snap.active(path) {
            Some(a) if a.activation == activation && a.phase == Phase::Running => None,
            Some(a) => Some(format!(
                "{path} is at activation {} ({:?}), not {activation}",
                a.activation, a.phase
            )),
            None => Some(format!("no state at {path} (it was exited)")),
        }
    }

    pub(super) fn run(&mut self) -> Flow {
        while let Some(w) = self.work.pop() {
            if self.snap.status != RunStatus::Running {
                self.work.clear();
                break;
            }
            self.enter(w)?;
        }
        Ok(())
    }

    pub(super) fn enter(&mut self, w: Work) -> Flow {
        let Some(region) = self.snap.region(&w.prefix) else {
            return Ok(()); // its branch or item was cancelled meanwhile
        };
        if region.status != RegionStatus::Running || region.current.is_some() {
            return Ok(());
        }
        let path = format!("{}{}", w.prefix, w.name);
        let count = self.counts.entry(w.prefix.clone()).or_insert(0);
        *count += 1;
        if *count > self.g.limits.max_eventless_steps {
            let max = self.g.limits.max_eventless_steps;
            return self.terminate(
                &path,
                ErrorValue::new(
                    reserved::LOOP_LIMIT,
                    format!(
                        "more than {max} states entered without waiting for a handler, timer or event (limits.maxEventlessSteps), at {path}"
                    ),
                ),
            );
        }
        let st = self.g.state_at(&path).ok_or_else(|| {
            Error::invalid(
                format!("state path {path}"),
                "a state of the graph (the journal belongs to another graph?)",
            )
        })?;
        let mut failed = None;
        let input = match &st.input {
            None => w.input,
            Some(t) => {
                let carried = region.carried();
                let scope = self.scope(&w.prefix, &w.input, carried, None);
                match t.render_raw(&scope) {
                    Ok(v) => v,
                    Err(sel) => {
                        failed = Some(input_template(sel, &path));
                        w.input
                    }
                }
            }
        };
        self.emit(
            Some(&path),
            RecordData::StateEntered {
                attempt: 1,
                restart: None,
                input,
            },
        )?;
        match failed {
            Some(e) => self.fail_state(&path, e, false),
            None => self.setup(&path),
        }
    }

    /// What a state does right after its `state.entered`.
    pub(super) fn setup(&mut self, path: &str) -> Flow {
        let st = self.g.state_at(path).expect("entered states exist");
        let input = self.active(path)?.input.clone();
        let now = self.env.now;
        match &st.kind {
            Kind::Task(t) => {
                if let Some(ms) = t.timeout_ms.or(self.g.defaults.timeout_ms) {
                    self.emit(
                        Some(path),
                        RecordData::TimerScheduled {
                            timer: "timeout".into(),
                            fire_at: now.saturating_add(ms as i64),
                        },
                    )?;
                }
                Ok(())
            }
            Kind::Pass(p) => {
                let out = p.result.clone().unwrap_or(input);
                self.succeed_to(path, out, &p.on_done.clone(), "done")
            }
            Kind::Choice(c) => {
                let scope = self.state_scope(path, None)?;
                for (i, (when, target)) in c.choices.iter().enumerate() {
                    if when.eval(&scope) {
                        return self.transition(path, target, &format!("choice[{i}]"), input);
                    }
                }
                match &c.default {
                    Some(t) => self.transition(path, t, "default", input),
                    None => self.fail_state(
                        path,
                        ErrorValue::new(
                            reserved::NO_CHOICE_MATCHED,
                            format!("no choice of state {path} matched and it has no default"),
                        ),
                        false,
                    ),
                }
            }
            Kind::Wait(Wait::Time { time, .. }) => {
                let fire_at = match time {
                    WaitTime::For(ms) => now.saturating_add(*ms as i64),
                    WaitTime::Until(t) => *t,
                    WaitTime::UntilPath(sel) => {
                        let scope = self.state_scope(path, None)?;
                        match sel.resolve(&scope) {
                            Some(Value::String(s))
                                if sequential_support::time::parse_rfc3339(s).is_some() =>
                            {
                                sequential_support::time::parse_rfc3339(s).unwrap_or(now)
                            }
                            Some(Value::Number(n)) if n.as_i64().is_some() => {
                                n.as_i64().unwrap_or(now)
                            }
                            Some(v) => {
                                let e = ErrorValue::new(
                                    reserved::INPUT_TEMPLATE,
                                    format!(
                                        "untilPath {sel} of state {path} is {v}, not an RFC 3339 time or Unix milliseconds"
                                    ),
                                );
                                return self.fail_state(path, e, false);
                            }
                            None => return self.fail_state(path, input_template(sel, path), false),
                        }
                    }
                };
                self.emit(
                    Some(path),
                    RecordData::TimerScheduled {
                        timer: "wait".into(),
                        fire_at,
                    },
                )
            }
            Kind::Wait(Wait::Event { on, after }) => {
                let found = self
                    .snap
                    .inbox
                    .iter()
                    .find(|e| on.iter().any(|(n, _)| *n == e.name))
                    .map(|e| e.name.clone());
                match (found, after) {
                    (Some(name), _) => self.consume(path, &name),
                    (None, Some((_, ms, _))) => self.emit(
                        Some(path),
                        RecordData::TimerScheduled {
                            timer: "after".into(),
                            fire_at: now.saturating_add(*ms as i64),
                        },
                    ),
                    (None, None) => Ok(()),
                }
            }
            Kind::Parallel(p) => {
                let mut batch = Vec::new();
                for (b, branch) in p.branches.iter().enumerate() {
                    self.emit(Some(path), RecordData::BranchStarted { branch: b })?;
                    batch.push(Work {
                        prefix: path::branch(path, b),
                        name: branch.initial.clone(),
                        input: input.clone(),
                    });
                }
                self.work.extend(batch.into_iter().rev());
                Ok(())
            }
            Kind::Map(_) => self.map_progress(path, None),
            Kind::Final(_) => {
                if runs_code(self.g, path) {
                    Ok(())
                } else {
                    self.finish_final(path, None)
                }
            }
            Kind::Fail(f) => {
                let a = self.active(path)?;
                let cause = match &f.cause {
                    Some(t) => {
                        let scope = self.state_scope(path, None)?;
                        match t.render_raw(&scope) {
                            Ok(v) => Some(v),
                            Err(sel) => {
                                let (prefix, _) = path::split_last(path);
                                let e = input_template(sel, path);
                                return self.region_failed(prefix, path, e);
                            }
                        }
                    }
                    None => a.error.as_ref().map(ErrorValue::to_json),
                };
                let e = ErrorValue {
                    name: f.error.clone(),
                    message: String::new(),
                    cause,
                };
                let (prefix, _) = path::split_last(path);
                self.region_failed(prefix, path, e)
            }
        }
    }
}
