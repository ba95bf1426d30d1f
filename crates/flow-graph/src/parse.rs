//! graph.json text → [`Graph`]: format version 1 and the legacy form (one warning per legacy
//! key), with every structural error at its JSON pointer.

use std::collections::BTreeSet;

use sequential_support::duration;
use serde_json::Value;

use crate::diag::{Diagnostic, Report, Severity, Sink};
use crate::error::{Error, Result};
use crate::graph::*;
use crate::json::{Node, Ptr};
use crate::template::{SELECTOR_FORMS, Selector, Template};

mod states;

/// What validation may check beyond the document itself.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The exports of the task's code.js. When given, a task state whose handler is not
    /// exported is an error, and a final state runs a handler when one is exported under its
    /// name (S1). When `None`, exports are not checked and final states run a handler only when
    /// they name one.
    pub exports: Option<BTreeSet<String>>,
}

/// A graph that passed validation, and the warnings it drew.
#[derive(Debug, Clone)]
pub struct Parsed {
    /// The graph.
    pub graph: Graph,
    /// Legacy keys (each with its canonical rewrite), eventless cycles, suggestions.
    pub warnings: Vec<Diagnostic>,
}

impl Graph {
    /// Parses and validates graph.json text (exports unchecked).
    pub fn parse(text: &str) -> Result<Parsed> {
        Graph::parse_with(text, &CheckOptions::default())
    }

    /// Parses and validates graph.json text; an invalid graph is [`Error::Graph`] listing every
    /// error at its JSON pointer.
    pub fn parse_with(text: &str, options: &CheckOptions) -> Result<Parsed> {
        let (graph, report) = read(text, options);
        match graph {
            Some(graph) if report.is_ok() => Ok(Parsed {
                graph,
                warnings: report.warnings().cloned().collect(),
            }),
            _ => Err(Error::Graph {
                errors: report.errors().cloned().collect(),
            }),
        }
    }
}

/// Static validation (S16) of graph.json text, as `graph check` reports it: every error and
/// warning, each at its JSON pointer. Never fails; a graph is runnable when
/// [`Report::is_ok`].
pub fn check(text: &str, options: &CheckOptions) -> Report {
    read(text, options).1
}

fn read(text: &str, options: &CheckOptions) -> (Option<Graph>, Report) {
    let mut sink = Sink::default();
    let graph = match Node::parse(text) {
        Ok(node) => Reader { sink: &mut sink }.graph(&node, options),
        Err(e) => {
            sink.error(
                &Ptr::root(),
                format!("graph.json is not JSON: {e}"),
                "a JSON object with \"initial\" and \"states\" (GRAPHS.md §2)",
            );
            None
        }
    };
    let graph = match graph {
        Some(g) if !sink.has_errors() => {
            crate::check::rules(&g, &mut sink);
            Some(g)
        }
        _ => None,
    };
    let mut diagnostics = sink.items;
    // errors first, each group in the order found (document order)
    diagnostics.sort_by_key(|d| d.severity == Severity::Warning);
    (graph, Report { diagnostics })
}

const COMMON: &[&str] = &["type", "description", "input", "assign", "meta"];
const TRANSITION_KEYS: &[&str] = &[
    "onDone",
    "onError",
    "on",
    "onSuccess",
    "onFail",
    "catch",
    "retry",
    "choices",
    "default",
    "after",
];
const TYPES: &str = "one of task, pass, choice, wait, parallel, map, final, fail";

fn allowed(kind: &str) -> &'static [&'static str] {
    match kind {
        "task" => &[
            "handler",
            "task",
            "timeout",
            "retry",
            "catch",
            "onDone",
            "onError",
            "on",
            "onSuccess",
            "onFail",
            "handlerType",
            "taskName",
            "taskInput",
            "code",
        ],
        "pass" => &["result", "onDone"],
        "choice" => &["choices", "default"],
        "wait" => &["for", "until", "untilPath", "onDone", "on", "after"],
        "parallel" => &["branches", "retry", "catch", "onDone", "onError"],
        "map" => &[
            "items",
            "itemInput",
            "maxConcurrency",
            "toleratedFailures",
            "toleratedFailurePercent",
            "iterator",
            "retry",
            "catch",
            "onDone",
            "onError",
        ],
        "final" => &["output", "handler"],
        "fail" => &["error", "cause"],
        _ => &[],
    }
}

pub(super) type Members<'n> = &'n [(String, Node)];

pub(super) fn get<'n>(m: Members<'n>, key: &str) -> Option<&'n Node> {
    m.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

pub(super) struct Reader<'s> {
    pub(super) sink: &'s mut Sink,
}

impl Reader<'_> {
    pub(super) fn graph(&mut self, node: &Node, options: &CheckOptions) -> Option<Graph> {
        let at = Ptr::root();
        let m = self.object(
            node,
            &at,
            "graph.json",
            "an object with \"initial\" and \"states\"",
        )?;
        self.known_keys(
            m,
            &at,
            &[
                "version",
                "id",
                "description",
                "initial",
                "states",
                "defaults",
                "limits",
                "output",
            ],
            "the top level",
        );
        let legacy = match get(m, "version") {
            None => true,
            Some(Node::Number(n)) if n.as_u64() == Some(1) => false,
            Some(v) => {
                self.sink.error(
                    &at.key("version"),
                    format!("unsupported format version {}", v.to_value()),
                    "1 (or no version for the legacy form)",
                );
                false
            }
        };
        let id = get(m, "id").and_then(|n| self.string(n, &at.key("id")));
        let description =
            get(m, "description").and_then(|n| self.string(n, &at.key("description")));
        let defaults = match get(m, "defaults") {
            None => Defaults::default(),
            Some(n) => self.defaults(n, &at.key("defaults")),
        };
        let limits = match get(m, "limits") {
            None => Limits::default(),
            Some(n) => self.limits(n, &at.key("limits")),
        };
        let output = get(m, "output").and_then(|n| self.template(n, &at.key("output")));
        let main = self.subgraph_members(m, &at)?;
        Some(Graph {
            id,
            description,
            legacy,
            main,
            defaults,
            limits,
            output,
            exports: options.exports.clone(),
        })
    }

    /// An object's members; duplicate keys are errors.
    pub(super) fn object<'n>(
        &mut self,
        node: &'n Node,
        at: &Ptr,
        what: &str,
        expected: &str,
    ) -> Option<Members<'n>> {
        let Some(m) = node.as_object() else {
            self.sink.error(
                at,
                format!("{what} is {}", node.type_name()),
                expected.to_string(),
            );
            return None;
        };
        let mut seen = BTreeSet::new();
        for (k, _) in m {
            if !seen.insert(k.as_str()) {
                self.sink.error(
                    &at.key(k),
                    format!("duplicate key `{k}` in {what}"),
                    "each key once per object",
                );
            }
        }
        Some(m)
    }

    pub(super) fn known_keys(&mut self, m: Members<'_>, at: &Ptr, allowed: &[&str], what: &str) {
        for (k, _) in m {
            if !allowed.contains(&k.as_str()) {
                self.sink.error(
                    &at.key(k),
                    format!("unknown key `{k}` in {what}"),
                    format!("one of {}", allowed.join(", ")),
                );
            }
        }
    }

    pub(super) fn string(&mut self, node: &Node, at: &Ptr) -> Option<String> {
        match node.as_str() {
            Some(s) => Some(s.to_string()),
            None => {
                self.sink.error(
                    at,
                    format!("expected a string, found {}", node.type_name()),
                    "a string",
                );
                None
            }
        }
    }

    pub(super) fn target(&mut self, node: &Node, at: &Ptr) -> Option<String> {
        match node.as_str() {
            Some(s) if !s.is_empty() => Some(s.to_string()),
            _ => {
                self.sink.error(
                    at,
                    format!("target is {}", short(node)),
                    "the name of a state in the same graph",
                );
                None
            }
        }
    }

    pub(super) fn uint(&mut self, node: &Node, at: &Ptr, what: &str) -> Option<u64> {
        match node {
            Node::Number(n) if n.as_u64().is_some() => n.as_u64(),
            _ => {
                self.sink.error(
                    at,
                    format!("{what} is {}", short(node)),
                    "a whole number, 0 or more",
                );
                None
            }
        }
    }

    pub(super) fn duration(&mut self, node: &Node, at: &Ptr) -> Option<u64> {
        let r = match node {
            Node::Number(n) => n.as_u64().ok_or(()),
            Node::String(s) => duration::parse_millis(s).map_err(|_| ()),
            _ => Err(()),
        };
        match r {
            Ok(ms) => Some(ms),
            Err(()) => {
                self.sink.error(
                    at,
                    format!("invalid duration {}", short(node)),
                    duration::FORMS,
                );
                None
            }
        }
    }

    pub(super) fn template(&mut self, node: &Node, at: &Ptr) -> Option<Template> {
        match Template::parse_at(&node.to_value(), at) {
            Ok(t) => Some(t),
            Err((p, why)) => {
                self.sink.error(
                    &p,
                    why,
                    format!("{SELECTOR_FORMS}, or `$$…` for a literal `$`"),
                );
                None
            }
        }
    }

    pub(super) fn selector(&mut self, node: &Node, at: &Ptr) -> Option<Selector> {
        match node.as_str().map(Selector::parse) {
            Some(Ok(s)) => Some(s),
            Some(Err(e)) => {
                self.sink.error(at, e.to_string(), SELECTOR_FORMS);
                None
            }
            None => {
                self.sink.error(
                    at,
                    format!("selector is {}", node.type_name()),
                    SELECTOR_FORMS,
                );
                None
            }
        }
    }

    pub(super) fn defaults(&mut self, node: &Node, at: &Ptr) -> Defaults {
        let mut d = Defaults::default();
        let Some(m) = self.object(
            node,
            at,
            "defaults",
            "{\"retry\"?: [...], \"timeout\"?: <duration>}",
        ) else {
            return d;
        };
        self.known_keys(m, at, &["retry", "timeout"], "defaults");
        if let Some(n) = get(m, "retry") {
            d.retry = self.retriers(n, &at.key("retry"));
        }
        if let Some(n) = get(m, "timeout") {
            d.timeout_ms = self.duration(n, &at.key("timeout"));
        }
        d
    }

    pub(super) fn limits(&mut self, node: &Node, at: &Ptr) -> Limits {
        let mut l = Limits::default();
        let Some(m) = self.object(
            node,
            at,
            "limits",
            "{\"maxEventlessSteps\"?: <n>, \"maxTransitions\"?: <n> | null}",
        ) else {
            return l;
        };
        self.known_keys(m, at, &["maxEventlessSteps", "maxTransitions"], "limits");
        if let Some(n) = get(m, "maxEventlessSteps") {
            match self.uint(n, &at.key("maxEventlessSteps"), "maxEventlessSteps") {
                Some(0) => self.sink.error(
                    &at.key("maxEventlessSteps"),
                    "maxEventlessSteps is 0",
                    "a whole number, 1 or more (default 1000)",
                ),
                Some(v) => l.max_eventless_steps = v.min(u32::MAX as u64) as u32,
                None => {}
            }
        }
        match get(m, "maxTransitions") {
            None | Some(Node::Null) => {}
            Some(n) => {
                l.max_transitions = self.uint(n, &at.key("maxTransitions"), "maxTransitions")
            }
        }
        l
    }

    /// `{initial, states}` of a parallel branch or map iterator.
    pub(super) fn subgraph(&mut self, node: &Node, at: &Ptr, what: &str) -> Option<SubGraph> {
        let m = self.object(node, at, what, "{\"initial\": <state>, \"states\": {...}}")?;
        self.known_keys(m, at, &["initial", "states"], what);
        self.subgraph_members(m, at)
    }

    pub(super) fn subgraph_members(&mut self, m: Members<'_>, at: &Ptr) -> Option<SubGraph> {
        let initial = match get(m, "initial") {
            Some(n) => self.string(n, &at.key("initial")),
            None => {
                self.sink.error(
                    at,
                    "no `initial` state",
                    "\"initial\": \"<name of the first state>\"",
                );
                None
            }
        };
        let states_at = at.key("states");
        let Some(states_node) = get(m, "states") else {
            self.sink
                .error(at, "no `states`", "\"states\": {\"<name>\": {...}, ...}");
            return None;
        };
        let Some(members) = states_node.as_object() else {
            self.sink.error(
                &states_at,
                format!("states is {}", states_node.type_name()),
                "an object of state name → state",
            );
            return None;
        };
        if members.is_empty() {
            self.sink
                .error(&states_at, "no states", "at least one state");
        }
        let mut states = Vec::new();
        let mut seen = BTreeSet::new();
        for (name, node) in members {
            let sat = states_at.key(name);
            if !seen.insert(name.as_str()) {
                self.sink.error(
                    &sat,
                    format!("duplicate state name `{name}`"),
                    "each state name once in a states object",
                );
                continue;
            }
            if let Some(s) = self.state(name, node, &sat) {
                states.push(s);
            }
        }
        let initial = initial?;
        if !seen.contains(initial.as_str()) {
            let names: Vec<_> = members.iter().map(|(k, _)| k.as_str()).collect();
            self.sink.error(
                &at.key("initial"),
                format!("initial state `{initial}` is not in states"),
                format!("one of {}", names.join(", ")),
            );
        }
        let index = states
            .iter()
            .enumerate()
            .map(|(i, s)| (s.name.clone(), i))
            .collect();
        Some(SubGraph {
            initial,
            states,
            index,
            pointer: at.as_str().to_string(),
        })
    }

    pub(super) fn state(&mut self, name: &str, node: &Node, at: &Ptr) -> Option<State> {
        let name_ok = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !name_ok {
            self.sink.error(
                at,
                format!("invalid state name {name:?}"),
                "a name matching [A-Za-z_][A-Za-z0-9_-]*",
            );
        }
        let m = self.object(node, at, &format!("state `{name}`"), "an object (a state)")?;
        let kind = match get(m, "type") {
            None => "task".to_string(),
            Some(Node::String(t)) if t == "normal" => {
                self.sink.warn(
                    &at.key("type"),
                    "legacy type \"normal\"",
                    "\"type\": \"task\" (or no type: task is the default)",
                );
                "task".to_string()
            }
            Some(Node::String(t)) if allowed(t).is_empty() => {
                self.sink
                    .error(&at.key("type"), format!("unknown state type {t:?}"), TYPES);
                return None;
            }
            Some(Node::String(t)) => t.clone(),
            Some(other) => {
                self.sink
                    .error(&at.key("type"), format!("type is {}", short(other)), TYPES);
                return None;
            }
        };
        let errors_before = self.sink.items.len();
        for (k, _) in m {
            if COMMON.contains(&k.as_str()) || allowed(&kind).contains(&k.as_str()) {
                continue;
            }
            if (kind == "final" || kind == "fail") && TRANSITION_KEYS.contains(&k.as_str()) {
                self.sink.error(
                    &at.key(k),
                    format!("{kind} state `{name}` has a transition (`{k}`)"),
                    "no onDone, onError, on, onSuccess, onFail, catch or retry on final and fail states: they end the graph",
                );
            } else {
                let mut keys: Vec<&str> = COMMON.to_vec();
                keys.extend(allowed(&kind));
                self.sink.error(
                    &at.key(k),
                    format!("unknown key `{k}` in {kind} state `{name}`"),
                    format!("one of {}", keys.join(", ")),
                );
            }
        }
        let description =
            get(m, "description").and_then(|n| self.string(n, &at.key("description")));
        let mut input = get(m, "input").and_then(|n| self.template(n, &at.key("input")));
        let mut assign = Vec::new();
        if let Some(n) = get(m, "assign") {
            let aat = at.key("assign");
            if matches!(kind.as_str(), "choice" | "final" | "fail") {
                self.sink.error(
                    &aat,
                    format!("assign on a {kind} state, which never succeeds"),
                    "assign on task, pass, wait, parallel or map states (evaluated after success)",
                );
            } else if let Some(vars) = self.object(n, &aat, "assign", "{\"<var>\": <template>}") {
                for (k, v) in vars {
                    if let Some(t) = self.template(v, &aat.key(k)) {
                        assign.push((k.clone(), t));
                    }
                }
            }
        }
        let mut edges = Vec::new();
        let kind = match kind.as_str() {
            "task" => {
                let (task, legacy_input) = self.task(name, m, at, &mut edges, input.is_some())?;
                if legacy_input.is_some() {
                    input = legacy_input;
                }
                Kind::Task(task)
            }
            "pass" => Kind::Pass(Pass {
                result: get(m, "result").map(Node::to_value),
                on_done: self.required_target(m, "onDone", at, "done", &mut edges)?,
            }),
            "choice" => Kind::Choice(self.choice(m, at, &mut edges)?),
            "wait" => Kind::Wait(self.wait(m, at, &mut edges)?),
            "parallel" => {
                let bat = at.key("branches");
                let mut branches = Vec::new();
                match get(m, "branches").and_then(Node::as_array) {
                    Some(bs) if !bs.is_empty() => {
                        for (i, b) in bs.iter().enumerate() {
                            if let Some(g) = self.subgraph(b, &bat.index(i), "a branch") {
                                branches.push(g);
                            }
                        }
                    }
                    _ => self.sink.error(
                        &bat,
                        "a parallel state needs `branches`",
                        "\"branches\": [{\"initial\": …, \"states\": {…}}, …] (at least one)",
                    ),
                }
                let recovery = self.recovery(m, at, &mut edges);
                Kind::Parallel(Parallel {
                    branches,
                    recovery,
                    on_done: self.required_target(m, "onDone", at, "done", &mut edges)?,
                })
            }
            "map" => Kind::Map(self.map(m, at, &mut edges)?),
            "final" => Kind::Final(Final {
                output: get(m, "output").and_then(|n| self.template(n, &at.key("output"))),
                handler: get(m, "handler").and_then(|n| self.string(n, &at.key("handler"))),
            }),
            "fail" => {
                let eat = at.key("error");
                let error = match get(m, "error").and_then(Node::as_str) {
                    Some(e) if e.starts_with("flow.") => {
                        self.sink.error(
                            &eat,
                            format!("error name {e:?} starts with `flow.`, which is reserved"),
                            "a name of your own, such as \"OrderRejected\"",
                        );
                        None
                    }
                    Some(e) if !e.is_empty() => Some(e.to_string()),
                    _ => {
                        self.sink.error(
                            &eat,
                            "a fail state needs an `error` name",
                            "\"error\": \"<ErrorName>\"",
                        );
                        None
                    }
                };
                Kind::Fail(Fail {
                    error: error?,
                    cause: get(m, "cause").and_then(|n| self.template(n, &at.key("cause"))),
                })
            }
            _ => unreachable!("kind checked above"),
        };
        if self.sink.items[errors_before..]
            .iter()
            .any(|d| d.severity == Severity::Error)
        {
            return None;
        }
        Some(State {
            name: name.to_string(),
            description,
            input,
            assign,
            kind,
            edges,
            pointer: at.as_str().to_string(),
        })
    }

    pub(super) fn required_target(
        &mut self,
        m: Members<'_>,
        key: &str,
        at: &Ptr,
        via: &str,
        edges: &mut Vec<Edge>,
    ) -> Option<String> {
        match get(m, key) {
            Some(n) => {
                let t = self.target(n, &at.key(key))?;
                edges.push(Edge {
                    via: via.to_string(),
                    target: t.clone(),
                    pointer: at.key(key).as_str().to_string(),
                });
                Some(t)
            }
            None => {
                self.sink.error(
                    at,
                    format!("no `{key}`"),
                    format!("\"{key}\": \"<next state>\""),
                );
                None
            }
        }
    }

    pub(super) fn optional_target(
        &mut self,
        m: Members<'_>,
        key: &str,
        at: &Ptr,
        via: &str,
        edges: &mut Vec<Edge>,
    ) -> Option<String> {
        let t = self.target(get(m, key)?, &at.key(key))?;
        edges.push(Edge {
            via: via.to_string(),
            target: t.clone(),
            pointer: at.key(key).as_str().to_string(),
        });
        Some(t)
    }
}

pub(super) fn json_node(v: &Value) -> Node {
    match v {
        Value::Null => Node::Null,
        Value::Bool(b) => Node::Bool(*b),
        Value::Number(n) => Node::Number(n.clone()),
        Value::String(s) => Node::String(s.clone()),
        Value::Array(a) => Node::Array(a.iter().map(json_node).collect()),
        Value::Object(o) => {
            Node::Object(o.iter().map(|(k, v)| (k.clone(), json_node(v))).collect())
        }
    }
}

/// A value for a message: short JSON, cut at 60 characters.
pub(super) fn short(n: &Node) -> String {
    let s = n.to_value().to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}
