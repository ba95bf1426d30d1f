//! The state types that have more than a target or two: task (with its legacy keys),
//! retry/catch lists, choice, wait and map.

use serde_json::Value;

use sequential_support::time;

use crate::graph::*;
use crate::json::{Node, Ptr};
use crate::predicate::Predicate;
use crate::reserved;
use crate::template::Template;

use super::{Members, Reader, get, json_node, short};

impl Reader<'_> {
    pub(super) fn task(
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

    pub(super) fn recovery(&mut self, m: Members<'_>, at: &Ptr, edges: &mut Vec<Edge>) -> Recovery {
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

    pub(super) fn retriers(&mut self, node: &Node, at: &Ptr) -> Option<Vec<Retrier>> {
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
    pub(super) fn error_names(
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

    pub(super) fn choice(
        &mut self,
        m: Members<'_>,
        at: &Ptr,
        edges: &mut Vec<Edge>,
    ) -> Option<Choice> {
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

    pub(super) fn wait(&mut self, m: Members<'_>, at: &Ptr, edges: &mut Vec<Edge>) -> Option<Wait> {
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

    pub(super) fn map(
        &mut self,
        m: Members<'_>,
        at: &Ptr,
        edges: &mut Vec<Edge>,
    ) -> Option<MapState> {
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
