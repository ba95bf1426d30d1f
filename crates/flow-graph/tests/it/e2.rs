//! E2 of GRAPHS.md §3.2: the conditional branch (four inputs), without `default`, a type
//! mismatch, and the legacy form with its warning.

use sequential_flow_graph::{Graph, RunStatus};
use serde_json::{Value, json};

use crate::harness::{Reply, Sim, assert_trace};

fn e2() -> Value {
    json!({
        "version": 1,
        "id": "triage",
        "initial": "score",
        "states": {
            "score": { "onDone": "route" },
            "route": {
                "type": "choice",
                "choices": [
                    { "when": { "path": "$.prev.score", "gte": 80 }, "target": "fastTrack" },
                    { "when": { "all": [ { "path": "$.prev.score", "gte": 50 }, { "path": "$.run.input.vip", "eq": true } ] }, "target": "fastTrack" },
                    { "when": { "path": "$.prev.score", "gte": 50 }, "target": "review" }
                ],
                "default": "reject"
            },
            "fastTrack": { "onDone": "done" },
            "review": { "onDone": "done" },
            "reject": { "onDone": "done" },
            "done": { "type": "final" }
        }
    })
}

fn sim(graph: &Value) -> Sim {
    let mut s = Sim::new(graph).handler("score", |i, _| Reply::Ok(json!({"score": i["score"]})));
    for name in ["fastTrack", "review", "reject"] {
        s = s.handler(name, move |_, _| Reply::Ok(json!({"path": name})));
    }
    s
}

fn run(graph: &Value, input: Value) -> Sim {
    let mut s = sim(graph);
    s.start(input);
    s.run();
    s
}

#[test]
fn e2_each_input_takes_its_branch() {
    for (input, via, branch) in [
        (json!({"score": 91}), "choice[0]", "fastTrack"),
        (json!({"score": 60, "vip": true}), "choice[1]", "fastTrack"),
        (json!({"score": 60}), "choice[2]", "review"),
        (json!({"score": 10}), "default", "reject"),
    ] {
        let s = run(&e2(), input.clone());
        assert_eq!(s.status(), RunStatus::Succeeded);
        assert_eq!(s.output(), json!({"path": branch}));
        let score = json!({"score": input["score"]}).to_string();
        let lines = [
            format!("run.started - input={input}"),
            format!("state.entered score attempt=1 input={input}"),
            format!("state.succeeded score output={score}"),
            "transition score to=route via=done".to_string(),
            format!("state.entered route input={score}"),
            format!("transition route to={branch} via={via}"),
            // (2) the branch receives the choice's input: choice passes it through
            format!("state.entered {branch} attempt=1 input={score}"),
            format!("state.succeeded {branch} output={{\"path\":\"{branch}\"}}"),
            format!("transition {branch} to=done via=done"),
            format!("state.entered done input={{\"path\":\"{branch}\"}}"),
            format!("run.succeeded - output={{\"path\":\"{branch}\"}}"),
        ];
        let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
        assert_trace(&s.records, &lines);
        // (1) from state.succeeded score to state.entered <branch>: one commit
        assert_eq!(s.commits[1].len(), 5, "{input}");
        assert_eq!(s.commits[1][0].kind().as_str(), "state.succeeded");
        assert_eq!(s.commits[1][4].path.as_deref(), Some(branch));
    }
}

#[test]
fn e2_without_default_fails_with_no_choice_matched_at_route() {
    let mut g = e2();
    g["states"]["route"]
        .as_object_mut()
        .unwrap()
        .remove("default");
    g["states"].as_object_mut().unwrap().remove("reject");
    let s = run(&g, json!({"score": 10}));
    assert_eq!(s.status(), RunStatus::Failed);
    let last = s.records.last().unwrap();
    assert_eq!(last.kind().as_str(), "run.failed");
    assert_eq!(last.path.as_deref(), Some("route"));
    assert_eq!(
        s.snapshot.error.as_ref().unwrap().name,
        "flow.NoChoiceMatched"
    );
    assert_trace(
        &s.records[4..],
        &[
            "state.entered route",
            "state.failed route attempt=1 error.name=flow.NoChoiceMatched",
            "run.failed route error.name=flow.NoChoiceMatched",
        ],
    );
}

#[test]
fn e2_a_type_mismatch_is_false_and_takes_the_default() {
    let mut s = sim(&e2());
    s.start(json!({"score": "high"}));
    s.run();
    assert_eq!(s.output(), json!({"path": "reject"}));
    assert!(
        s.records
            .iter()
            .any(|r| r.to_parts().1["via"] == json!("default"))
    );
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
fn e2_legacy_routes_on_output_success() {
    let parsed = Graph::parse(&e2_legacy().to_string()).unwrap();
    assert_eq!(parsed.warnings.len(), 1, "{:?}", parsed.warnings);
    assert!(parsed.warnings[0].to_string().contains("onSuccess/onFail"));
    for (ok, via, target) in [(true, "success", "processA"), (false, "fail", "processB")] {
        let mut s = Sim::with_graph(parsed.graph.clone())
            .handler("checkStatus", |i, _| Reply::Ok(json!({"success": i["ok"]})))
            .handler("processA", |i, _| {
                Reply::Ok(json!({"path": "A", "result": i}))
            })
            .handler("processB", |i, _| {
                Reply::Ok(json!({"path": "B", "result": i}))
            });
        s.start(json!({"ok": ok}));
        s.run();
        assert_eq!(s.status(), RunStatus::Succeeded);
        let success = json!({"success": ok}).to_string();
        assert_trace(
            &s.records[..5],
            &[
                &format!("run.started - input={}", json!({"ok": ok})),
                "state.entered checkStatus attempt=1",
                &format!("state.succeeded checkStatus output={success}"),
                &format!("transition checkStatus to={target} via={via}"),
                // processA receives {"success":true}
                &format!("state.entered {target} attempt=1 input={success}"),
            ],
        );
    }
}
