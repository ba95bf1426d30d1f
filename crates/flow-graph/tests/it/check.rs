//! Static validation (S16): one test per rule, each checking the JSON pointer in the message.

use std::collections::BTreeSet;

use sequential_flow_graph::{CheckOptions, Diagnostic, Graph, Severity, check};
use serde_json::{Value, json};

fn options(exports: Option<&[&str]>) -> CheckOptions {
    CheckOptions {
        exports: exports.map(|e| e.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()),
    }
}

fn report(graph: &Value, exports: Option<&[&str]>) -> Vec<Diagnostic> {
    check(&graph.to_string(), &options(exports)).diagnostics
}

/// Asserts an error at `pointer` whose message contains each of `words`, and that the
/// rendered message names the pointer and what is expected.
#[track_caller]
fn assert_error(graph: Value, exports: Option<&[&str]>, pointer: &str, words: &[&str]) {
    let all = report(&graph, exports);
    let found = all
        .iter()
        .find(|d| d.severity == Severity::Error && d.pointer == pointer);
    let Some(d) = found else {
        panic!("no error at {pointer}; found:\n{all:#?}");
    };
    let text = d.to_string();
    assert!(text.contains(&format!("at {pointer}:")), "{text}");
    assert!(text.contains("; expected "), "{text}");
    for w in words {
        assert!(text.contains(w), "{w:?} not in {text}");
    }
    // the same error through Graph::parse
    let e = Graph::parse_with(&graph.to_string(), &options(exports))
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(e.contains(&format!("at {pointer}:")), "{e}");
}

fn linear(extra: Value) -> Value {
    let mut g = json!({
        "version": 1,
        "initial": "a",
        "states": {
            "a": { "onDone": "done" },
            "done": { "type": "final" }
        }
    });
    for (k, v) in extra.as_object().unwrap() {
        g["states"][k] = v.clone();
    }
    g
}

#[test]
fn a_valid_graph_has_no_diagnostics() {
    assert_eq!(report(&linear(json!({})), Some(&["a"])), vec![]);
}

#[test]
fn rule_unknown_target() {
    assert_error(
        linear(json!({"a": {"onDone": "nowhere"}})),
        None,
        "/states/a/onDone",
        &["unknown target `nowhere`", "a state of this graph: a, done"],
    );
    assert_error(
        linear(json!({"a": {"onDone": "done", "catch": [{"errors": ["*"], "target": "gone"}]}})),
        None,
        "/states/a/catch/0/target",
        &["unknown target `gone`"],
    );
}

#[test]
fn rule_unreachable_state() {
    assert_error(
        linear(json!({"orphan": {"onDone": "done"}})),
        None,
        "/states/orphan",
        &["unreachable from initial `a`"],
    );
}

#[test]
fn rule_no_reachable_final_or_fail() {
    let g = json!({
        "version": 1,
        "initial": "a",
        "states": { "a": { "onDone": "b" }, "b": { "onDone": "a" } }
    });
    assert_error(
        g,
        None,
        "/states",
        &["no final or fail state is reachable", "type final or fail"],
    );
}

#[test]
fn rule_task_without_handler_export() {
    assert_error(
        linear(json!({})),
        Some(&["other"]),
        "/states/a",
        &["export `a`", "export async function a(input, ctx)", "other"],
    );
    assert_error(
        linear(json!({"a": {"handler": "doA", "onDone": "done"}})),
        Some(&["a"]),
        "/states/a/handler",
        &["export `doA`"],
    );
}

#[test]
fn rule_final_or_fail_with_transitions() {
    assert_error(
        linear(json!({"done": {"type": "final", "onDone": "a"}})),
        None,
        "/states/done/onDone",
        &["final state `done` has a transition (`onDone`)"],
    );
    assert_error(
        linear(
            json!({"a": {"onDone": "done", "onError": "oops"}, "oops": {"type": "fail", "error": "E", "catch": []}}),
        ),
        None,
        "/states/oops/catch",
        &["fail state `oops` has a transition"],
    );
}

#[test]
fn rule_star_alone_and_last() {
    assert_error(
        linear(json!({"a": {"onDone": "done", "retry": [{"errors": ["*", "Boom"]}]}})),
        None,
        "/states/a/retry/0/errors",
        &["`*` is not alone"],
    );
    assert_error(
        linear(
            json!({"a": {"onDone": "done", "retry": [{"errors": ["A"]}, {"errors": ["*"]}, {"errors": ["B"]}]}}),
        ),
        None,
        "/states/a/retry/1/errors",
        &["not the last one", "only in the last"],
    );
    assert_error(
        linear(
            json!({"a": {"onDone": "done", "onError": "done", "catch": [{"errors": ["*"], "target": "done"}]}}),
        ),
        None,
        "/states/a/catch/0/errors",
        &["before onError"],
    );
}

#[test]
fn rule_legacy_and_canonical_keys_mixed() {
    // E2-legacy with "onDone": "processA" added to checkStatus (GRAPHS.md §3.2)
    let mut g = e2_legacy();
    g["states"]["checkStatus"]["onDone"] = json!("processA");
    assert_error(
        g,
        None,
        "/states/checkStatus",
        &["legacy and canonical keys mixed", "onSuccess"],
    );
    assert_error(
        linear(json!({"a": {"task": "child", "taskName": "child", "onDone": "done"}})),
        None,
        "/states/a",
        &["legacy and canonical keys mixed", "taskName"],
    );
}

fn fan(b0: Value, b1: Value) -> Value {
    json!({
        "version": 1,
        "initial": "fan",
        "states": {
            "fan": { "type": "parallel", "branches": [b0, b1], "onDone": "done" },
            "done": { "type": "final" }
        }
    })
}

fn branch(first: &str) -> Value {
    json!({ "initial": first, "states": { first: { "onDone": "end" }, "end": { "type": "final" } } })
}

#[test]
fn rule_duplicate_handler_names_across_subgraphs() {
    assert_error(
        fan(branch("fetch"), branch("fetch")),
        None,
        "/states/fan/branches/1/states/fetch",
        &[
            "handler name `fetch`",
            "/states/fan/branches/0/states/fetch",
            "\"handler\"",
        ],
    );
    // sharing one export on purpose is fine
    let mut g = fan(branch("fetch"), branch("fetch"));
    g["states"]["fan"]["branches"][0]["states"]["fetch"]["handler"] = json!("get");
    g["states"]["fan"]["branches"][1]["states"]["fetch"]["handler"] = json!("get");
    assert!(check(&g.to_string(), &CheckOptions::default()).is_ok());
}

#[test]
fn rule_choice_only_cycle_is_a_warning() {
    let g = linear(json!({
        "a": {"onDone": "c1"},
        "c1": {"type": "choice", "choices": [{"when": {"path": "$.prev.x", "eq": 1}, "target": "done"}], "default": "c2"},
        "c2": {"type": "choice", "choices": [{"when": {"path": "$.prev.y", "eq": 1}, "target": "done"}], "default": "c1"}
    }));
    let all = report(&g, None);
    assert!(
        all.iter().all(|d| d.severity == Severity::Warning),
        "{all:#?}"
    );
    let w = all
        .iter()
        .find(|d| d.pointer == "/states/c1")
        .expect("warning at /states/c1");
    let text = w.to_string();
    assert!(text.starts_with("warning at /states/c1:"), "{text}");
    assert!(
        text.contains("c1, c2") && text.contains("flow.LoopLimit"),
        "{text}"
    );
    assert!(Graph::parse(&g.to_string()).is_ok());
}

#[test]
fn unknown_state_type() {
    assert_error(
        linear(json!({"a": {"type": "sometimes", "onDone": "done"}})),
        None,
        "/states/a/type",
        &[
            "unknown state type \"sometimes\"",
            "task, pass, choice, wait, parallel, map, final, fail",
        ],
    );
}

#[test]
fn duplicate_state_names_in_a_branch() {
    let text = r#"{"version": 1, "initial": "fan", "states": {
        "fan": {"type": "parallel", "onDone": "done", "branches": [
            {"initial": "x", "states": {"x": {"onDone": "end"}, "x": {"onDone": "end"}, "end": {"type": "final"}}}
        ]},
        "done": {"type": "final"}}}"#;
    let r = check(text, &CheckOptions::default());
    let d = r.errors().next().expect("an error");
    assert_eq!(d.pointer, "/states/fan/branches/0/states/x");
    assert!(d.to_string().contains("duplicate state name `x`"), "{d}");
}

fn e2_legacy() -> Value {
    json!({
        "initial": "checkStatus",
        "states": {
            "checkStatus": { "onSuccess": "processA", "onFail": "processB" },
            "processA": { "onDone": "complete" },
            "processB": { "onDone": "complete" },
            "complete": { "type": "final" }
        }
    })
}

#[test]
fn legacy_e2_gives_one_warning_with_the_canonical_rewrite() {
    let r = check(&e2_legacy().to_string(), &CheckOptions::default());
    assert!(r.is_ok(), "{r:#?}");
    let w: Vec<_> = r.warnings().collect();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(w[0].pointer, "/states/checkStatus");
    assert!(
        w[0].expected
            .contains("\"on\": {\"success\": \"processA\", \"fail\": \"processB\"}"),
        "{}",
        w[0]
    );
    let parsed = Graph::parse(&e2_legacy().to_string()).unwrap();
    assert!(parsed.graph.is_legacy());
    assert_eq!(parsed.warnings.len(), 1);
}

#[test]
fn each_legacy_key_warns_once() {
    let g = json!({
        "initial": "a",
        "states": {
            "a": { "type": "normal", "handlerType": "task", "taskName": "child", "taskInput": "{\"id\": 1}", "onDone": "b" },
            "b": { "code": "return 1", "onDone": "done", "onError": "errorHandler" },
            "errorHandler": { "type": "final" },
            "done": { "type": "final" }
        }
    });
    let r = check(&g.to_string(), &CheckOptions::default());
    assert!(r.is_ok(), "{r:#?}");
    let w: Vec<_> = r.warnings().map(|d| d.pointer.as_str()).collect();
    assert_eq!(
        w,
        [
            "/states/a/type",
            "/states/a",
            "/states/b/code",
            "/states/errorHandler"
        ]
    );
    let child = r.warnings().nth(1).unwrap();
    assert!(
        child
            .expected
            .contains("\"task\": \"child\", \"input\": {\"id\":1}"),
        "{child}"
    );
    let fin = r.warnings().nth(3).unwrap();
    assert!(fin.expected.contains("\"type\": \"fail\""), "{fin}");
}

#[test]
fn bad_input_names_the_pointer_and_what_is_valid() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"version": 2, "initial": "a", "states": {"a": {"type": "final"}}}),
            "/version",
            "1 (or no version",
        ),
        (
            json!({"version": 1, "states": {"a": {"type": "final"}}}),
            "/",
            "\"initial\"",
        ),
        (
            json!({"version": 1, "initial": "zz", "states": {"a": {"type": "final"}}}),
            "/initial",
            "one of a",
        ),
        (
            linear(json!({"a": {"onDone": "done", "timeout": "soon"}})),
            "/states/a/timeout",
            "250ms",
        ),
        (
            linear(json!({"a": {"onDone": "done", "onDon": "x"}})),
            "/states/a/onDon",
            "one of type",
        ),
        (
            linear(json!({"a": {"onDone": "done", "input": {"x": "$.prev["}}})),
            "/states/a/input/x",
            "$.a.b",
        ),
        (
            linear(json!({"a": {"onDone": "done", "retry": [{"errors": ["flow.Cancelled"]}]}})),
            "/states/a/retry/0/errors/0",
            "catchable",
        ),
        (
            linear(json!({"a": {"onDone": "done", "retry": [{"errors": ["flow.Oops"]}]}})),
            "/states/a/retry/0/errors/0",
            "flow.Timeout",
        ),
        (
            linear(
                json!({"a": {"onDone": "done", "retry": [{"errors": ["E"], "backoffRate": 0.5}]}}),
            ),
            "/states/a/retry/0/backoffRate",
            "1.0 or more",
        ),
        (
            linear(
                json!({"a": {"onDone": "w"}, "w": {"type": "wait", "for": "1s", "on": {"go": "done"}}}),
            ),
            "/states/w",
            "exactly one of",
        ),
        (
            linear(
                json!({"a": {"onDone": "w"}, "w": {"type": "wait", "until": "tomorrow", "onDone": "done"}}),
            ),
            "/states/w/until",
            "RFC 3339",
        ),
        (
            linear(
                json!({"a": {"onDone": "w"}, "w": {"type": "wait", "on": {"go": "done"}, "after": {"later": "done"}}}),
            ),
            "/states/w/after/later",
            "250ms",
        ),
        (
            linear(
                json!({"a": {"onDone": "c"}, "c": {"type": "choice", "choices": [{"when": {"path": "$.prev.x", "gte": 1, "lt": 2}, "target": "done"}]}}),
            ),
            "/states/c/choices/0/when",
            "exactly one of",
        ),
        (
            linear(
                json!({"a": {"onDone": "c"}, "c": {"type": "choice", "choices": [{"when": {"all": [{"path": "$.x", "in": 1}]}, "target": "done"}]}}),
            ),
            "/states/c/choices/0/when/all/0/in",
            "an array",
        ),
        (
            linear(json!({"a": {"onDone": "f"}, "f": {"type": "fail", "error": "flow.Mine"}})),
            "/states/f/error",
            "a name of your own",
        ),
        (
            linear(
                json!({"a": {"onDone": "m"}, "m": {"type": "map", "items": "$.prev", "toleratedFailures": 1, "toleratedFailurePercent": 5, "iterator": {"initial": "x", "states": {"x": {"type": "final"}}}, "onDone": "done"}}),
            ),
            "/states/m",
            "one of toleratedFailures",
        ),
        (linear(json!({"a": {}})), "/states/a", "\"onDone\""),
        (
            linear(json!({"a": {"onDone": "done", "handler": "h", "task": "t"}})),
            "/states/a",
            "one of handler, task",
        ),
        (
            linear(json!({"a": {"onDone": "done"}, "bad name": {"type": "final"}})),
            "/states/bad name",
            "[A-Za-z_]",
        ),
        (
            linear(json!({"a": {"onDone": "done", "taskName": "t", "taskInput": "{nope"}})),
            "/states/a/taskInput",
            "JSON",
        ),
        (
            linear(
                json!({"a": {"onDone": "c"}, "c": {"type": "choice", "assign": {"x": 1}, "choices": [{"when": {"path": "$.x", "eq": 1}, "target": "done"}]}}),
            ),
            "/states/c/assign",
            "assign on task",
        ),
    ];
    for (g, pointer, expected) in cases {
        let all = report(&g, None);
        let d = all
            .iter()
            .find(|d| d.severity == Severity::Error && d.pointer == pointer)
            .unwrap_or_else(|| panic!("no error at {pointer} for {g}: {all:#?}"));
        let text = d.to_string();
        assert!(text.contains(expected), "{expected:?} not in {text}");
    }
}

#[test]
fn not_json_is_one_error_at_the_root() {
    let r = check("{\"initial\": ", &CheckOptions::default());
    let d = r.errors().next().unwrap();
    assert_eq!(d.pointer, "/");
    assert!(d.message.contains("not JSON"), "{d}");
}

#[test]
fn a_thousand_state_graph_validates() {
    let mut states = serde_json::Map::new();
    for i in 0..1000 {
        states.insert(format!("s{i}"), json!({"onDone": format!("s{}", i + 1)}));
    }
    states.insert("s1000".into(), json!({"type": "final"}));
    let g = json!({"version": 1, "initial": "s0", "states": states});
    let parsed = Graph::parse(&g.to_string()).unwrap();
    assert_eq!(parsed.graph.main().states().len(), 1001);
}
