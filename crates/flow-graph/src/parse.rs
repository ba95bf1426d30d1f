//! graph.json text → [`Graph`]: format version 1 and the legacy form (one warning per legacy
//! key), with every structural error at its JSON pointer.

use std::collections::BTreeSet;

use sequential_support::{duration, time};
use serde_json::Value;

use crate::diag::{Diagnostic, Report, Severity, Sink};
use crate::error::{Error, Result};
use crate::graph::*;
use crate::json::{Node, Ptr};
use crate::predicate::Predicate;
use crate::reserved;
use crate::template::{SELECTOR_FORMS, Selector, Template};

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

type Members<'n> = &'n [(String, Node)];

fn get<'n>(m: Members<'n>, key: &str) -> Option<&'n Node> {
    m.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

struct Reader<'s> {
    sink: &'s mut Sink,
}

impl Reader<'_> {
    fn graph(&mut self, node: &Node, options: &CheckOptions) -> Option<Graph> {
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
    fn object<'n>(
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
        for (i, (k, _)) in m.iter().enumerate() {
            if m[..i].iter().any(|(x, _)| x == k) {
                self.sink.error(
                    &at.key(k),
                    format!("duplicate key `{k}` in {what}"),
                    "each key once per object",
                );
            }
        }
        Some(m)
    }

    fn known_keys(&mut self, m: Members<'_>, at: &Ptr, allowed: &[&str], what: &str) {
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

    fn string(&mut self, node: &Node, at: &Ptr) -> Option<String> {
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

    fn target(&mut self, node: &Node, at: &Ptr) -> Option<String> {
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

    fn uint(&mut self, node: &Node, at: &Ptr, what: &str) -> Option<u64> {
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

    fn duration(&mut self, node: &Node, at: &Ptr) -> Option<u64> {
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

    fn template(&mut self, node: &Node, at: &Ptr) -> Option<Template> {
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

    fn selector(&mut self, node: &Node, at: &Ptr) -> Option<Selector> {
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

    fn defaults(&mut self, node: &Node, at: &Ptr) -> Defaults {
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

    fn limits(&mut self, node: &Node, at: &Ptr) -> Limits {
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
    fn subgraph(&mut self, node: &Node, at: &Ptr, what: &str) -> Option<SubGraph> {
        let m = self.object(node, at, what, "{\"initial\": <state>, \"states\": {...}}")?;
        self.known_keys(m, at, &["initial", "states"], what);
        self.subgraph_members(m, at)
    }

    fn subgraph_members(&mut self, m: Members<'_>, at: &Ptr) -> Option<SubGraph> {
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
        for (i, (name, node)) in members.iter().enumerate() {
            let sat = states_at.key(name);
            if members[..i].iter().any(|(x, _)| x == name) {
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
        if !members.iter().any(|(k, _)| *k == initial) {
            let names: Vec<_> = members.iter().map(|(k, _)| k.as_str()).collect();
            self.sink.error(
                &at.key("initial"),
                format!("initial state `{initial}` is not in states"),
                format!("one of {}", names.join(", ")),
            );
        }
        Some(SubGraph {
            initial,
            states,
            pointer: at.as_str().to_string(),
        })
    }

    fn state(&mut self, name: &str, node: &Node, at: &Ptr) -> Option<State> {
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

    fn required_target(
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

    fn optional_target(
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

    fn task(
        &mut self,
        name: &str,
        m: Members<'_>,
        at: &Ptr,
        edges: &mut Vec<Edge>,
        has_input: bool,
    ) -> Option<(Task, Option<Template>)> {
        let mut legacy_input = None;
        let handler = get(m, "handler").and_then(|n| self.string(n, &at.key("handler")));
        let mut child = get(m, "task").and_then(|n| self.string(n, &at.key("task")));
        let code = get(m, "code").and_then(|n| self.string(n, &at.key("code")));
        let legacy_child = ["handlerType", "taskName", "taskInput"]
            .iter()
            .any(|k| get(m, k).is_some());
        if legacy_child {
            if child.is_some() || has_input {
                self.sink.error(
                    at,
                    "legacy and canonical keys mixed: handlerType/taskName/taskInput with task/input",
                    "one form: \"task\" + \"input\" (canonical), or handlerType + taskName + taskInput (legacy)",
                );
                return None;
            }
            if let Some(n) = get(m, "handlerType") {
                match n.as_str() {
                    Some("task" | "background-task") => {}
                    _ => self.sink.error(
                        &at.key("handlerType"),
                        format!("handlerType is {}", short(n)),
                        "\"task\" or \"background-task\"",
                    ),
                }
            }
            let task_name = match get(m, "taskName") {
                Some(n) => self.string(n, &at.key("taskName")),
                None => {
                    self.sink.error(
                        at,
                        "handlerType without taskName",
                        "\"taskName\": \"<task>\"",
                    );
                    None
                }
            };
            let task_input = match get(m, "taskInput") {
                None => None,
                Some(Node::String(s)) => match serde_json::from_str::<Value>(s) {
                    Ok(v) => Some(v),
                    Err(e) => {
                        self.sink.error(
                            &at.key("taskInput"),
                            format!("taskInput is not JSON ({e})"),
                            "a string holding JSON, such as \"{\\\"id\\\": 1}\"",
                        );
                        None
                    }
                },
                Some(n) => Some(n.to_value()),
            };
            let canonical = match &task_input {
                Some(v) => format!(
                    "\"task\": {:?}, \"input\": {v}",
                    task_name.as_deref().unwrap_or("<task>")
                ),
                None => format!("\"task\": {:?}", task_name.as_deref().unwrap_or("<task>")),
            };
            self.sink
                .warn(at, "legacy keys handlerType/taskName/taskInput", canonical);
            child = task_name;
            if let Some(v) = task_input {
                // the parsed taskInput becomes the state's input template
                legacy_input = Some(self.template(&json_node(&v), &at.key("taskInput"))?);
            }
        }
        if code.is_some() {
            self.sink.warn(
                &at.key("code"),
                "legacy key code (an inline handler body)",
                format!("an export of code.js: export async function {name}(input, ctx) {{ … }}"),
            );
        }
        let run = match (handler, child, code) {
            (Some(_), Some(_), _) => {
                self.sink.error(
                    at,
                    "a task state runs an export (`handler`) or a child task (`task`), found both",
                    "one of handler, task",
                );
                return None;
            }
            (Some(_), _, Some(_)) | (_, Some(_), Some(_)) => {
                self.sink.error(
                    at,
                    "inline `code` next to `handler` or `task`",
                    "one of handler, task, code",
                );
                return None;
            }
            (_, Some(t), _) => Run::Child(t),
            (_, _, Some(c)) => Run::Inline(c),
            (Some(h), None, None) => Run::Handler(h),
            (None, None, None) => Run::Handler(name.to_string()),
        };
        let timeout_ms = get(m, "timeout").and_then(|n| self.duration(n, &at.key("timeout")));
        let mut next = Next::default();
        // outcome selection order (S3): outcomes, legacy onSuccess/onFail, onDone
        if let Some(n) = get(m, "on") {
            let oat = at.key("on");
            if let Some(o) = self.object(n, &oat, "on", "{\"<outcome>\": \"<state>\"}") {
                for (k, v) in o {
                    if let Some(t) = self.target(v, &oat.key(k)) {
                        edges.push(Edge {
                            via: format!("outcome:{k}"),
                            target: t.clone(),
                            pointer: oat.key(k).as_str().to_string(),
                        });
                        next.on.push((k.clone(), t));
                    }
                }
            }
        }
        let legacy_outcome = get(m, "onSuccess").is_some() || get(m, "onFail").is_some();
        if legacy_outcome {
            if get(m, "onDone").is_some() || get(m, "on").is_some() {
                self.sink.error(
                    at,
                    "legacy and canonical keys mixed: onSuccess/onFail with onDone or on",
                    "either onDone (canonical) or onSuccess + onFail (legacy), not both",
                );
                return None;
            }
            next.on_success = self.optional_target(m, "onSuccess", at, "success", edges);
            next.on_fail = self.optional_target(m, "onFail", at, "fail", edges);
            self.sink.warn(
                at,
                "legacy keys onSuccess/onFail (a truthy output.success selects onSuccess)",
                format!(
                    "\"on\": {{\"success\": {:?}, \"fail\": {:?}}} with the handler returning ctx.outcome(\"success\" | \"fail\", value)",
                    next.on_success.as_deref().unwrap_or("<state>"),
                    next.on_fail.as_deref().unwrap_or("<state>")
                ),
            );
        }
        next.on_done = self.optional_target(m, "onDone", at, "done", edges);
        if next.on_done.is_none() && next.on.is_empty() && !legacy_outcome {
            self.sink.error(
                at,
                format!("task state `{name}` has no transition"),
                "\"onDone\": \"<next state>\" (or \"on\" for handler outcomes)",
            );
        }
        let recovery = self.recovery(m, at, edges);
        Some((
            Task {
                run,
                timeout_ms,
                recovery,
                next,
            },
            legacy_input,
        ))
    }

    fn recovery(&mut self, m: Members<'_>, at: &Ptr, edges: &mut Vec<Edge>) -> Recovery {
        let mut r = Recovery {
            retry: get(m, "retry").and_then(|n| self.retriers(n, &at.key("retry"))),
            ..Recovery::default()
        };
        let has_on_error = get(m, "onError").is_some();
        if let Some(n) = get(m, "catch") {
            let cat = at.key("catch");
            match n.as_array() {
                Some(list) => {
                    for (i, c) in list.iter().enumerate() {
                        let iat = cat.index(i);
                        let Some(cm) = self.object(
                            c,
                            &iat,
                            "a catcher",
                            "{\"errors\": [...], \"target\": <state>}",
                        ) else {
                            continue;
                        };
                        self.known_keys(cm, &iat, &["errors", "target"], "a catcher");
                        let last = i + 1 == list.len() && !has_on_error;
                        let errors = self.error_names(cm, &iat, last, "catcher", has_on_error);
                        let target =
                            self.required_target(cm, "target", &iat, &format!("catch[{i}]"), edges);
                        if let (Some(errors), Some(target)) = (errors, target) {
                            r.catch.push(Catcher { errors, target });
                        }
                    }
                }
                None => self.sink.error(
                    &cat,
                    format!("catch is {}", n.type_name()),
                    "an array of {\"errors\": [...], \"target\": <state>}",
                ),
            }
        }
        r.on_error = self.optional_target(m, "onError", at, "error", edges);
        r
    }

    fn retriers(&mut self, node: &Node, at: &Ptr) -> Option<Vec<Retrier>> {
        let Some(list) = node.as_array() else {
            self.sink.error(
                at,
                format!("retry is {}", node.type_name()),
                "an array of retriers {\"errors\": [...], \"maxAttempts\"?, \"interval\"?, \"backoffRate\"?, \"maxDelay\"?, \"jitter\"?}",
            );
            return None;
        };
        let mut out = Vec::new();
        for (i, r) in list.iter().enumerate() {
            let iat = at.index(i);
            let Some(m) = self.object(r, &iat, "a retrier", "{\"errors\": [...], …}") else {
                continue;
            };
            self.known_keys(
                m,
                &iat,
                &[
                    "errors",
                    "maxAttempts",
                    "interval",
                    "backoffRate",
                    "maxDelay",
                    "jitter",
                ],
                "a retrier",
            );
            let errors = self.error_names(m, &iat, i + 1 == list.len(), "retrier", false);
            let max_attempts = match get(m, "maxAttempts") {
                Some(n) => self
                    .uint(n, &iat.key("maxAttempts"), "maxAttempts")
                    .map(|v| v.min(u32::MAX as u64) as u32),
                None => Some(3),
            };
            let interval_ms = match get(m, "interval") {
                Some(n) => self.duration(n, &iat.key("interval")),
                None => Some(1000),
            };
            let backoff_rate = match get(m, "backoffRate") {
                None => Some(2.0),
                Some(Node::Number(n)) if n.as_f64().is_some_and(|f| f >= 1.0) => n.as_f64(),
                Some(n) => {
                    self.sink.error(
                        &iat.key("backoffRate"),
                        format!("backoffRate is {}", short(n)),
                        "a number, 1.0 or more (default 2.0)",
                    );
                    None
                }
            };
            let max_delay_ms =
                get(m, "maxDelay").and_then(|n| self.duration(n, &iat.key("maxDelay")));
            let full_jitter = match get(m, "jitter").map(|n| (n, n.as_str())) {
                None | Some((_, Some("none"))) => Some(false),
                Some((_, Some("full"))) => Some(true),
                Some((n, _)) => {
                    self.sink.error(
                        &iat.key("jitter"),
                        format!("jitter is {}", short(n)),
                        "\"none\" or \"full\"",
                    );
                    None
                }
            };
            if let (
                Some(errors),
                Some(max_attempts),
                Some(interval_ms),
                Some(backoff_rate),
                Some(full_jitter),
            ) = (errors, max_attempts, interval_ms, backoff_rate, full_jitter)
            {
                out.push(Retrier {
                    errors,
                    max_attempts,
                    interval_ms,
                    backoff_rate,
                    max_delay_ms,
                    full_jitter,
                });
            }
        }
        Some(out)
    }

    /// `errors` of a retrier or catcher: names, `"*"` alone and only in the last one.
    fn error_names(
        &mut self,
        m: Members<'_>,
        at: &Ptr,
        last: bool,
        what: &str,
        before_on_error: bool,
    ) -> Option<Vec<String>> {
        let eat = at.key("errors");
        let Some(list) = get(m, "errors")
            .and_then(Node::as_array)
            .filter(|l| !l.is_empty())
        else {
            self.sink.error(
                &eat,
                format!("a {what} needs a non-empty `errors` list"),
                "\"errors\": [\"<ErrorName>\", …] or [\"*\"]",
            );
            return None;
        };
        let mut names = Vec::new();
        let mut ok = true;
        for (i, n) in list.iter().enumerate() {
            match n.as_str() {
                Some("*") => {
                    if list.len() > 1 {
                        self.sink.error(
                            &eat,
                            format!(
                                "`*` is not alone in the {what}'s errors ({} names)",
                                list.len()
                            ),
                            "[\"*\"] alone, in the last retrier or catcher",
                        );
                        ok = false;
                    } else if !last {
                        let why = if before_on_error {
                            "`*` catcher before onError (onError is a last catcher of every error)"
                                .to_string()
                        } else {
                            format!("`*` in a {what} that is not the last one")
                        };
                        self.sink
                            .error(&eat, why, "[\"*\"] only in the last retrier or catcher");
                        ok = false;
                    }
                    names.push("*".to_string());
                }
                Some(s) if reserved::is_terminal(s) => {
                    self.sink.error(
                        &eat.index(i),
                        format!("{s} is terminal: it is never retried or caught"),
                        format!(
                            "a catchable name (yours, or one of {})",
                            reserved::CATCHABLE.join(", ")
                        ),
                    );
                    ok = false;
                }
                Some(s) if s.starts_with("flow.") && !reserved::CATCHABLE.contains(&s) => {
                    self.sink.error(
                        &eat.index(i),
                        format!("unknown reserved error {s:?}"),
                        format!(
                            "one of {} (or a name not starting with flow.)",
                            reserved::CATCHABLE.join(", ")
                        ),
                    );
                    ok = false;
                }
                Some(s) if !s.is_empty() => names.push(s.to_string()),
                _ => {
                    self.sink.error(
                        &eat.index(i),
                        format!("error name is {}", short(n)),
                        "a non-empty error name, or \"*\"",
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(names)
    }

    fn choice(&mut self, m: Members<'_>, at: &Ptr, edges: &mut Vec<Edge>) -> Option<Choice> {
        let cat = at.key("choices");
        let mut choices = Vec::new();
        match get(m, "choices").and_then(Node::as_array) {
            Some(list) if !list.is_empty() => {
                for (i, c) in list.iter().enumerate() {
                    let iat = cat.index(i);
                    let Some(cm) = self.object(
                        c,
                        &iat,
                        "a choice",
                        "{\"when\": <predicate>, \"target\": <state>}",
                    ) else {
                        continue;
                    };
                    self.known_keys(cm, &iat, &["when", "target"], "a choice");
                    let when = match get(cm, "when") {
                        Some(w) => match Predicate::parse_at(&w.to_value(), &iat.key("when")) {
                            Ok(p) => Some(p),
                            Err((p, msg, expected)) => {
                                self.sink.error(&p, msg, expected);
                                None
                            }
                        },
                        None => {
                            self.sink.error(
                                &iat,
                                "a choice needs `when`",
                                "\"when\": {\"path\": \"$.prev.x\", \"eq\": 1}",
                            );
                            None
                        }
                    };
                    let target =
                        self.required_target(cm, "target", &iat, &format!("choice[{i}]"), edges);
                    if let (Some(w), Some(t)) = (when, target) {
                        choices.push((w, t));
                    }
                }
            }
            _ => {
                self.sink.error(
                    &cat,
                    "a choice state needs a non-empty `choices` list",
                    "\"choices\": [{\"when\": <predicate>, \"target\": <state>}, …]",
                );
                return None;
            }
        }
        let default = self.optional_target(m, "default", at, "default", edges);
        Some(Choice { choices, default })
    }

    fn wait(&mut self, m: Members<'_>, at: &Ptr, edges: &mut Vec<Edge>) -> Option<Wait> {
        let time_keys: Vec<&str> = ["for", "until", "untilPath"]
            .into_iter()
            .filter(|k| get(m, k).is_some())
            .collect();
        let event = get(m, "on").is_some() || get(m, "after").is_some();
        const FORMS: &str = "a time wait (exactly one of for, until, untilPath, with onDone) or an event wait (on, optionally after)";
        if time_keys.len() > 1 || (!time_keys.is_empty() && event) {
            let mut found = time_keys.clone();
            if event {
                found.push("on/after");
            }
            self.sink.error(
                at,
                format!("a wait state with {}", found.join(" and ")),
                FORMS,
            );
            return None;
        }
        if let Some(&k) = time_keys.first() {
            let kat = at.key(k);
            let n = get(m, k).expect("present");
            let time = match k {
                "for" => WaitTime::For(self.duration(n, &kat)?),
                "until" => match n.as_str().and_then(time::parse_rfc3339) {
                    Some(t) => WaitTime::Until(t),
                    None => {
                        self.sink.error(
                            &kat,
                            format!("until is {}, not an RFC 3339 time", short(n)),
                            "an RFC 3339 time such as \"2026-11-24T02:54:09Z\"",
                        );
                        return None;
                    }
                },
                _ => WaitTime::UntilPath(self.selector(n, &kat)?),
            };
            let on_done = self.required_target(m, "onDone", at, "done", edges)?;
            return Some(Wait::Time { time, on_done });
        }
        if !event {
            self.sink.error(
                at,
                "a wait state without for, until, untilPath or on",
                FORMS,
            );
            return None;
        }
        if get(m, "onDone").is_some() {
            self.sink.error(
                &at.key("onDone"),
                "onDone on an event wait",
                "targets in `on` ({\"<event>\": \"<state>\"}) and `after`",
            );
            return None;
        }
        let oat = at.key("on");
        let mut on = Vec::new();
        match get(m, "on") {
            Some(n) => {
                let o = self.object(n, &oat, "on", "{\"<event>\": \"<state>\"}")?;
                if o.is_empty() {
                    self.sink.error(
                        &oat,
                        "an event wait with no events",
                        "{\"<event>\": \"<state>\"}",
                    );
                }
                for (k, v) in o {
                    if let Some(t) = self.target(v, &oat.key(k)) {
                        edges.push(Edge {
                            via: format!("event:{k}"),
                            target: t.clone(),
                            pointer: oat.key(k).as_str().to_string(),
                        });
                        on.push((k.clone(), t));
                    }
                }
            }
            None => {
                self.sink.error(
                    at,
                    "`after` without `on`",
                    "\"on\": {\"<event>\": \"<state>\"} next to after",
                );
                return None;
            }
        }
        let mut after = None;
        if let Some(n) = get(m, "after") {
            let aat = at.key("after");
            let o = self.object(n, &aat, "after", "{\"<duration>\": \"<state>\"}")?;
            match o {
                [(d, t)] => {
                    let dat = aat.key(d);
                    let ms = self.duration(&Node::String(d.clone()), &dat)?;
                    let t = self.target(t, &dat)?;
                    edges.push(Edge {
                        via: format!("after:{d}"),
                        target: t.clone(),
                        pointer: dat.as_str().to_string(),
                    });
                    after = Some((d.clone(), ms, t));
                }
                _ => {
                    self.sink.error(
                        &aat,
                        format!("after has {} entries", o.len()),
                        "exactly one {\"<duration>\": \"<state>\"}",
                    );
                    return None;
                }
            }
        }
        Some(Wait::Event { on, after })
    }

    fn map(&mut self, m: Members<'_>, at: &Ptr, edges: &mut Vec<Edge>) -> Option<MapState> {
        let items = match get(m, "items") {
            Some(n) => self.selector(n, &at.key("items")),
            None => {
                self.sink.error(
                    at,
                    "a map state needs `items`",
                    "\"items\": \"$.prev.list\" (a selector of an array)",
                );
                None
            }
        };
        let item_input = get(m, "itemInput").and_then(|n| self.template(n, &at.key("itemInput")));
        let max_concurrency = match get(m, "maxConcurrency") {
            Some(n) => self.uint(n, &at.key("maxConcurrency"), "maxConcurrency")? as usize,
            None => 0,
        };
        let tolerance = match (
            get(m, "toleratedFailures"),
            get(m, "toleratedFailurePercent"),
        ) {
            (Some(_), Some(_)) => {
                self.sink.error(
                    at,
                    "both toleratedFailures and toleratedFailurePercent",
                    "one of toleratedFailures (a count) or toleratedFailurePercent (0–100)",
                );
                return None;
            }
            (Some(n), None) => {
                Tolerance::Count(self.uint(n, &at.key("toleratedFailures"), "toleratedFailures")?)
            }
            (None, Some(n)) => match n {
                Node::Number(x) if x.as_f64().is_some_and(|f| (0.0..=100.0).contains(&f)) => {
                    Tolerance::Percent(x.as_f64().unwrap_or(0.0))
                }
                _ => {
                    self.sink.error(
                        &at.key("toleratedFailurePercent"),
                        format!("toleratedFailurePercent is {}", short(n)),
                        "a number from 0 to 100",
                    );
                    return None;
                }
            },
            (None, None) => Tolerance::None,
        };
        let iterator = match get(m, "iterator") {
            Some(n) => self.subgraph(n, &at.key("iterator"), "an iterator"),
            None => {
                self.sink.error(
                    at,
                    "a map state needs an `iterator`",
                    "\"iterator\": {\"initial\": …, \"states\": {…}}",
                );
                None
            }
        };
        let recovery = self.recovery(m, at, edges);
        let on_done = self.required_target(m, "onDone", at, "done", edges);
        Some(MapState {
            items: items?,
            item_input,
            max_concurrency,
            tolerance,
            iterator: iterator?,
            recovery,
            on_done: on_done?,
        })
    }
}

fn json_node(v: &Value) -> Node {
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
fn short(n: &Node) -> String {
    let s = n.to_value().to_string();
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}
