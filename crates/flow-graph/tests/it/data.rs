//! Data-driven cases: each `tests/data/*.json` holds a graph, declarative handlers and runs
//! with their expected trace (the compact form of GRAPHS.md §3), status and output.
//!
//! A handler is `{"return": <template>}`, `{"outcome": <name>, "value": <template>}`,
//! `{"throw": {"name", "message"}}`, or `{"sequence": [<handler>, …]}` (the n-th call uses the
//! n-th entry, the last one repeats); templates see `{input, ctx}`. A run may override
//! handlers with its own `handlers`. Events of a run are sent
//! in order whenever no handler is left to run, before any timer fires.

use std::collections::BTreeMap;
use std::path::Path;

use sequential_flow_graph::{CheckOptions, Graph, Template, check};
use serde_json::{Value, json};

use crate::harness::{Reply, Sim, assert_trace, show};

fn reply(spec: &Value, calls: usize, input: &Value, ctx: &Value) -> Reply {
    if let Some(seq) = spec.get("sequence").and_then(Value::as_array) {
        return reply(&seq[calls.min(seq.len() - 1)], calls, input, ctx);
    }
    let scope = json!({"input": input, "ctx": ctx});
    let render = |v: &Value| Template::parse(v).unwrap().render(&scope).unwrap();
    if let Some(v) = spec.get("return") {
        Reply::Ok(render(v))
    } else if let Some(o) = spec.get("outcome") {
        let name: &'static str = Box::leak(o.as_str().unwrap().to_string().into_boxed_str());
        Reply::Outcome(name, render(&spec["value"]))
    } else if let Some(e) = spec.get("throw") {
        let leak = |v: &Value| -> &'static str {
            Box::leak(v.as_str().unwrap_or("").to_string().into_boxed_str())
        };
        Reply::Err(leak(&e["name"]), leak(&e["message"]))
    } else {
        panic!("handler spec {spec}: expected return, outcome, throw or sequence")
    }
}

fn run_case(file: &Path) {
    let case: Value = serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap();
    let name = file.file_name().unwrap().to_string_lossy().to_string();
    let graph_text = case["graph"].to_string();
    let report = check(&graph_text, &CheckOptions::default());
    assert!(report.is_ok(), "{name}: {report:#?}");
    let warnings: Vec<String> = report.warnings().map(|d| d.pointer.clone()).collect();
    let want: Vec<String> = case
        .get("warnings")
        .map(|w| serde_json::from_value(w.clone()).unwrap())
        .unwrap_or_default();
    assert_eq!(warnings, want, "{name}: warnings");
    let graph = Graph::parse(&graph_text).unwrap().graph;
    let empty = json!({});
    let handlers = case
        .get("handlers")
        .unwrap_or(&empty)
        .as_object()
        .unwrap()
        .clone();
    let children = case
        .get("children")
        .unwrap_or(&empty)
        .as_object()
        .unwrap()
        .clone();
    for (i, run) in case["runs"].as_array().unwrap().iter().enumerate() {
        let mut sim = Sim::with_graph(graph.clone());
        let mut handlers = handlers.clone();
        if let Some(own) = run.get("handlers").and_then(Value::as_object) {
            handlers.extend(own.clone());
        }
        for (h, spec) in &handlers {
            let spec = spec.clone();
            let mut calls = 0;
            sim = sim.handler(h, move |input, ctx| {
                calls += 1;
                reply(&spec, calls - 1, input, ctx)
            });
        }
        for (t, spec) in &children {
            let spec = spec.clone();
            sim = sim.child(t, move |input, ctx| reply(&spec, 0, input, ctx));
        }
        for e in run
            .get("events")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            sim.events.push_back((
                e["name"].as_str().unwrap().to_string(),
                e.get("message").cloned().unwrap_or(Value::Null),
            ));
        }
        sim.start(run["input"].clone());
        sim.run();
        let at = format!("{name} run {i}");
        let Some(trace) = run.get("trace").and_then(Value::as_array) else {
            panic!(
                "{at}: no expected trace; after checking it, add:\n\"trace\": {}\n{}",
                serde_json::to_string_pretty(&compact(&sim.records)).unwrap(),
                show(&sim.records)
            );
        };
        let lines: Vec<&str> = trace.iter().map(|l| l.as_str().unwrap()).collect();
        assert_trace(&sim.records, &lines);
        assert_eq!(
            sim.status().as_str(),
            run["status"].as_str().unwrap_or("succeeded"),
            "{at}: status"
        );
        if let Some(out) = run.get("output") {
            assert_eq!(&sim.output(), out, "{at}: output");
        }
        if let Some(err) = run.get("error") {
            assert_eq!(
                &serde_json::to_value(sim.snapshot.error.as_ref().unwrap()).unwrap(),
                err,
                "{at}: error"
            );
        }
        if let Some(calls) = run.get("calls") {
            let want: BTreeMap<String, u32> = serde_json::from_value(calls.clone()).unwrap();
            assert_eq!(sim.calls, want, "{at}: calls");
        }
    }
}

/// The records in the compact trace form, every field listed (for writing a new case).
fn compact(records: &[sequential_flow_graph::Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            let (kind, data) = r.to_parts();
            let mut line = format!("{kind} {}", r.path.as_deref().unwrap_or("-"));
            for (k, v) in data.as_object().unwrap() {
                let v = v.to_string();
                if k != "path" && !v.contains(char::is_whitespace) {
                    line.push_str(&format!(" {k}={v}"));
                }
            }
            line
        })
        .collect()
}

#[test]
fn every_case_under_tests_data() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "cases in {}", dir.display());
    for f in files {
        run_case(&f);
    }
}
