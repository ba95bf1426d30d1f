//! A machine definition: `initial`, `context` and `states.<name>.on.<EVENT> = {target, guard?,
//! action?}`, built in Rust (closures) or read from JSON (guards as `when` predicates, actions
//! as `assign` templates).

use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::diag::Sink;
use crate::error::{Error, Result};
use crate::json::{Node, Ptr};
use crate::predicate::Predicate;
use crate::template::Template;

type GuardFn = dyn Fn(&Value, &Value) -> bool + Send + Sync;
type ActionFn = dyn Fn(&mut Value, &Value) -> std::result::Result<(), String> + Send + Sync;

#[derive(Clone)]
enum Guard {
    Rust(Arc<GuardFn>),
    When(Predicate),
}

#[derive(Clone)]
enum Assign {
    Value(Template),
    /// `{"$add": [a, b, …]}`: the sum of numbers.
    Add(Vec<Template>),
}

#[derive(Clone)]
enum Act {
    Rust(Arc<ActionFn>),
    Assign(Vec<(String, Assign)>),
}

/// One `on.<EVENT>` entry: where it goes, when it may, and what it does to the context.
#[derive(Clone)]
pub struct Transition {
    target: String,
    guard: Option<Guard>,
    action: Option<Act>,
}

impl fmt::Debug for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transition")
            .field("target", &self.target)
            .field("guard", &self.guard.is_some())
            .field("action", &self.action.is_some())
            .finish()
    }
}

impl Transition {
    /// A transition to `target`.
    pub fn to(target: impl Into<String>) -> Transition {
        Transition {
            target: target.into(),
            guard: None,
            action: None,
        }
    }

    /// Only when `guard(context, payload)` holds.
    pub fn guard(mut self, guard: impl Fn(&Value, &Value) -> bool + Send + Sync + 'static) -> Self {
        self.guard = Some(Guard::Rust(Arc::new(guard)));
        self
    }

    /// Runs `action(context, payload)`, which changes the context (an `Err` rejects the event
    /// and leaves the context as it was).
    pub fn action(
        mut self,
        action: impl Fn(&mut Value, &Value) -> std::result::Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.action = Some(Act::Rust(Arc::new(action)));
        self
    }

    /// The target state.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Whether the guard admits `payload` in `context` (no guard: always).
    pub(crate) fn admits(
        &self,
        context: &Value,
        payload: &Value,
        scope: impl Fn() -> Value,
    ) -> bool {
        match &self.guard {
            None => true,
            Some(Guard::Rust(f)) => f(context, payload),
            Some(Guard::When(p)) => p.eval(&scope()),
        }
    }

    /// Applies the action to a copy of `context`.
    pub(crate) fn apply(
        &self,
        context: &Value,
        payload: &Value,
        scope: impl Fn() -> Value,
    ) -> std::result::Result<Value, String> {
        let mut next = context.clone();
        match &self.action {
            None => {}
            Some(Act::Rust(f)) => f(&mut next, payload)?,
            Some(Act::Assign(list)) => {
                let scope = scope();
                let Value::Object(m) = &mut next else {
                    return Err(format!("assign needs an object context, found {context}"));
                };
                for (k, a) in list {
                    let v = match a {
                        Assign::Value(t) => t.render(&scope).map_err(|e| e.to_string())?,
                        Assign::Add(ts) => {
                            let mut int: Option<i64> = Some(0);
                            let mut float = 0.0;
                            for t in ts {
                                let v = t.render(&scope).map_err(|e| e.to_string())?;
                                let Some(n) = v.as_f64() else {
                                    return Err(format!("$add of {k}: {v} is not a number"));
                                };
                                float += n;
                                int = int.zip(v.as_i64()).and_then(|(a, b)| a.checked_add(b));
                            }
                            match int {
                                Some(i) => Value::from(i),
                                None => Value::from(float),
                            }
                        }
                    };
                    m.insert(k.clone(), v);
                }
            }
        }
        Ok(next)
    }
}

/// A machine definition (see the module docs). Build one with [`Definition::new`] and
/// [`Definition::on`], or read one with [`Definition::from_json`].
#[derive(Clone, Debug)]
pub struct Definition {
    pub(crate) initial: String,
    pub(crate) context: Value,
    /// States in definition order, each with its transitions in definition order.
    pub(crate) states: Vec<(String, Vec<(String, Transition)>)>,
}

impl Definition {
    /// A definition starting in `initial` with this `context`.
    pub fn new(initial: impl Into<String>, context: Value) -> Definition {
        Definition {
            initial: initial.into(),
            context,
            states: Vec::new(),
        }
    }

    /// Adds a state with no transitions (a state only reached, such as a final one).
    pub fn state(mut self, name: impl Into<String>) -> Definition {
        let name = name.into();
        if !self.states.iter().any(|(s, _)| *s == name) {
            self.states.push((name, Vec::new()));
        }
        self
    }

    /// Adds `states.<state>.on.<event>` (the state is created when new).
    pub fn on(
        mut self,
        state: impl Into<String>,
        event: impl Into<String>,
        transition: Transition,
    ) -> Definition {
        let state = state.into();
        self = self.state(state.clone());
        let on = &mut self
            .states
            .iter_mut()
            .find(|(s, _)| *s == state)
            .expect("added above")
            .1;
        let event = event.into();
        on.retain(|(e, _)| *e != event);
        on.push((event, transition));
        self
    }

    /// The initial state.
    pub fn initial(&self) -> &str {
        &self.initial
    }

    /// The initial context.
    pub fn context(&self) -> &Value {
        &self.context
    }

    /// The events `state` accepts, in definition order.
    pub fn events(&self, state: &str) -> Vec<&str> {
        self.transitions(state)
            .map(|on| on.iter().map(|(e, _)| e.as_str()).collect())
            .unwrap_or_default()
    }

    pub(crate) fn transitions(&self, state: &str) -> Option<&[(String, Transition)]> {
        self.states
            .iter()
            .find(|(s, _)| s == state)
            .map(|(_, on)| on.as_slice())
    }

    /// Checks that `initial` and every target name a state; errors at JSON pointers.
    pub fn validate(&self) -> Result<()> {
        let mut sink = Sink::default();
        let names: Vec<&str> = self.states.iter().map(|(s, _)| s.as_str()).collect();
        let list = if names.is_empty() {
            "(no states)".to_string()
        } else {
            names.join(", ")
        };
        if !names.contains(&self.initial.as_str()) {
            sink.error(
                &Ptr::root().key("initial"),
                format!("initial state `{}` is not in states", self.initial),
                format!("one of {list}"),
            );
        }
        for (s, on) in &self.states {
            for (e, t) in on {
                if !names.contains(&t.target.as_str()) {
                    sink.error(
                        &Ptr::root()
                            .key("states")
                            .key(s)
                            .key("on")
                            .key(e)
                            .key("target"),
                        format!("unknown target `{}` of {s}.on.{e}", t.target),
                        format!("one of {list}"),
                    );
                }
            }
        }
        if sink.has_errors() {
            return Err(Error::Graph { errors: sink.items });
        }
        Ok(())
    }

    /// Reads a JSON definition:
    ///
    /// ```json
    /// {"initial": "idle", "context": {"counter": 0},
    ///  "states": {"idle": {"on": {"START": {"target": "running",
    ///      "guard": {"path": "$.payload", "type": "number"},
    ///      "action": {"assign": {"counter": "$.payload", "running": true}}}}}}}
    /// ```
    ///
    /// `"EVENT": "target"` is short for `{"target": …}`. Guards are `when` predicates and
    /// `assign` values templates, both over `{context, payload, event, state}`; an assign value
    /// `{"$add": [a, b, …]}` is the sum of its numbers.
    pub fn from_json(text: &str) -> Result<Definition> {
        let mut sink = Sink::default();
        let def = match Node::parse(text) {
            Ok(n) => read(&n, &mut sink),
            Err(e) => {
                sink.error(
                    &Ptr::root(),
                    format!("the definition is not JSON: {e}"),
                    "{\"initial\": …, \"context\": {…}, \"states\": {…}}",
                );
                None
            }
        };
        match def {
            Some(d) if !sink.has_errors() => {
                d.validate()?;
                Ok(d)
            }
            _ => Err(Error::Graph { errors: sink.items }),
        }
    }
}

fn read(n: &Node, sink: &mut Sink) -> Option<Definition> {
    let root = Ptr::root();
    let Some(m) = n.as_object() else {
        sink.error(
            &root,
            format!("the definition is {}", n.type_name()),
            "an object with initial, context and states",
        );
        return None;
    };
    let mut def = Definition::new(String::new(), Value::Object(Map::new()));
    for (k, v) in m {
        let at = root.key(k);
        match k.as_str() {
            "initial" => match v.as_str() {
                Some(s) => def.initial = s.to_string(),
                None => sink.error(&at, format!("initial is {}", v.type_name()), "a state name"),
            },
            "context" => def.context = v.to_value(),
            "states" => {
                let Some(states) = v.as_object() else {
                    sink.error(
                        &at,
                        format!("states is {}", v.type_name()),
                        "an object of state → {\"on\": {…}}",
                    );
                    continue;
                };
                let mut seen = std::collections::BTreeSet::new();
                for (name, sv) in states {
                    let sat = at.key(name);
                    if !seen.insert(name.as_str()) {
                        sink.error(
                            &sat,
                            format!("duplicate state name `{name}`"),
                            "each state once",
                        );
                        continue;
                    }
                    def = def.state(name.clone());
                    let Some(sm) = sv.as_object() else {
                        sink.error(
                            &sat,
                            format!("state `{name}` is {}", sv.type_name()),
                            "{\"on\": {\"<EVENT>\": …}}",
                        );
                        continue;
                    };
                    for (sk, ov) in sm {
                        if sk != "on" {
                            sink.error(
                                &sat.key(sk),
                                format!("unknown key `{sk}` in state `{name}`"),
                                "on",
                            );
                            continue;
                        }
                        let Some(events) = ov.as_object() else {
                            sink.error(
                                &sat.key("on"),
                                format!("on is {}", ov.type_name()),
                                "{\"<EVENT>\": {\"target\": …}}",
                            );
                            continue;
                        };
                        for (event, tv) in events {
                            if let Some(t) = transition(tv, &sat.key("on").key(event), sink) {
                                def = def.on(name.clone(), event.clone(), t);
                            }
                        }
                    }
                }
            }
            other => sink.error(
                &at,
                format!("unknown key `{other}`"),
                "one of initial, context, states",
            ),
        }
    }
    if def.initial.is_empty() && !m.iter().any(|(k, _)| k == "initial") {
        sink.error(&root, "no `initial` state", "\"initial\": \"<state>\"");
    }
    Some(def)
}

fn transition(v: &Node, at: &Ptr, sink: &mut Sink) -> Option<Transition> {
    if let Some(target) = v.as_str() {
        return Some(Transition::to(target));
    }
    let Some(m) = v.as_object() else {
        sink.error(
            at,
            format!("a transition is {}", v.type_name()),
            "\"<target>\" or {\"target\", \"guard\"?, \"action\"?}",
        );
        return None;
    };
    let mut t = Transition::to(String::new());
    let mut ok = true;
    for (k, x) in m {
        let kat = at.key(k);
        match k.as_str() {
            "target" => match x.as_str() {
                Some(s) => t.target = s.to_string(),
                None => {
                    sink.error(&kat, format!("target is {}", x.type_name()), "a state name");
                    ok = false;
                }
            },
            "guard" => match Predicate::parse_at(&x.to_value(), &kat) {
                Ok(p) => t.guard = Some(Guard::When(p)),
                Err((p, msg, expected)) => {
                    sink.error(&p, msg, expected);
                    ok = false;
                }
            },
            "action" => match action(x, &kat, sink) {
                Some(a) => t.action = Some(a),
                None => ok = false,
            },
            other => {
                sink.error(
                    &kat,
                    format!("unknown key `{other}` in a transition"),
                    "one of target, guard, action",
                );
                ok = false;
            }
        }
    }
    if t.target.is_empty() {
        sink.error(
            at,
            "a transition without `target`",
            "\"target\": \"<state>\"",
        );
        ok = false;
    }
    ok.then_some(t)
}

fn action(v: &Node, at: &Ptr, sink: &mut Sink) -> Option<Act> {
    let expected = "{\"assign\": {\"<context key>\": <template> | {\"$add\": [<template>, …]}}}";
    let Some(assign) = v
        .as_object()
        .filter(|m| m.len() == 1)
        .and_then(|_| v.get("assign"))
    else {
        sink.error(at, "an action that is not {\"assign\": {…}}", expected);
        return None;
    };
    let aat = at.key("assign");
    let Some(m) = assign.as_object() else {
        sink.error(&aat, format!("assign is {}", assign.type_name()), expected);
        return None;
    };
    let mut list = Vec::new();
    for (k, x) in m {
        let kat = aat.key(k);
        let value = x.to_value();
        let parsed = match &value {
            Value::Object(o) if o.len() == 1 && o.contains_key("$add") => match &o["$add"] {
                Value::Array(items) => items
                    .iter()
                    .enumerate()
                    .map(|(i, t)| Template::parse_at(t, &kat.key("$add").index(i)))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map(Assign::Add),
                other => Err((kat.key("$add"), format!("$add holds {other}, not an array"))),
            },
            _ => Template::parse_at(&value, &kat).map(Assign::Value),
        };
        match parsed {
            Ok(a) => list.push((k.clone(), a)),
            Err((p, why)) => {
                sink.error(
                    &p,
                    why,
                    "a template (`$.payload`, `$.context.x`) or {\"$add\": [...]}",
                );
                return None;
            }
        }
    }
    Some(Act::Assign(list))
}
