//! Every state type through the stepping function: pass, choice, wait (time and events),
//! parallel, map, final, fail, child tasks; data flow, assign/vars, templates, outcomes, the
//! eventless cap, cancellation.

use std::collections::BTreeSet;

use sequential_flow_graph::{
    Action, CheckOptions, Error, Fact, Graph, RunStatus, Snapshot, fold, step,
};
use serde_json::{Value, json};

use crate::harness::{Reply, Sim, T0, assert_trace, kinds};

fn graph(initial: &str, states: Value) -> Value {
    json!({"version": 1, "initial": initial, "states": states})
}

#[test]
fn pass_result_assign_and_vars_reach_the_next_handler() {
    let g = graph(
        "p",
        json!({
            "p": {"type": "pass", "result": {"n": 2}, "assign": {"count": "$.output.n", "who": "$.run.input.user"}, "onDone": "t"},
            "t": {"onDone": "done", "input": {"n": "$.prev.n", "c": "$.vars.count", "lit": "$$.x"}},
            "done": {"type": "final", "output": {"t": "$.prev", "vars": "$.vars"}}
        }),
    );
    let mut seen = Value::Null;
    let mut s = Sim::new(&g).handler("t", |i, ctx| {
        Reply::Ok(json!({"in": i, "vars": ctx["vars"]}))
    });
    s.start(json!({"user": "ann"}));
    s.run();
    assert_eq!(s.status(), RunStatus::Succeeded);
    seen = s.output().get("t").cloned().unwrap_or(seen);
    assert_eq!(
        seen,
        json!({"in": {"n": 2, "c": 2, "lit": "$.x"}, "vars": {"count": 2, "who": "ann"}})
    );
    assert_eq!(s.output()["vars"], json!({"count": 2, "who": "ann"}));
    assert_eq!(s.snapshot.vars().get("count"), Some(&json!(2)));
    assert_trace(
        &s.records[..4],
        &[
            "run.started -",
            "state.entered p",
            r#"state.succeeded p output={"n":2} vars={"count":2,"who":"ann"}"#,
            "transition p to=t via=done",
        ],
    );
}

#[test]
fn a_selector_that_resolves_to_nothing_is_flow_input_template_naming_selector_and_state() {
    let g = graph(
        "t",
        json!({
            "t": {"input": {"id": "$.prev.missing"}, "onDone": "done", "catch": [{"errors": ["flow.InputTemplate"], "target": "h"}]},
            "h": {"onDone": "done"},
            "done": {"type": "final"}
        }),
    );
    let mut s = Sim::new(&g).handler("h", |i, ctx| {
        Reply::Ok(json!({"got": i, "ctx_error": ctx["error"]}))
    });
    s.start(json!({}));
    s.run();
    let out = s.output();
    let msg = out["got"]["message"].as_str().unwrap();
    assert_eq!(out["got"]["name"], "flow.InputTemplate");
    assert!(
        msg.contains("$.prev.missing") && msg.contains("state t"),
        "{msg}"
    );
    assert_eq!(out["ctx_error"], out["got"]);
    assert_trace(
        &s.records[..5],
        &[
            "run.started -",
            "state.entered t input={}",
            "state.failed t attempt=1 error.name=flow.InputTemplate",
            "transition t to=h via=catch[0]",
            "state.entered h",
        ],
    );
}

#[test]
fn handler_outcomes_follow_on_and_an_unknown_outcome_is_no_transition() {
    let g = graph(
        "review",
        json!({
            "review": {"on": {"approved": "ok", "rejected": "no"}, "catch": [{"errors": ["flow.NoTransition"], "target": "no"}]},
            "ok": {"type": "final"},
            "no": {"type": "final"}
        }),
    );
    let mut s = Sim::new(&g).handler("review", |i, _| {
        Reply::Outcome(
            if i["v"] == 1 { "approved" } else { "maybe" },
            json!({"v": i["v"]}),
        )
    });
    s.start(json!({"v": 1}));
    s.run();
    assert_trace(
        &s.records[2..4],
        &[
            "state.succeeded review",
            "transition review to=ok via=outcome:approved",
        ],
    );
    let mut s = Sim::new(&g).handler("review", |_, _| Reply::Outcome("maybe", json!(1)));
    s.start(json!({"v": 2}));
    s.run();
    let e = &s.records[2].to_parts().1["error"];
    assert_eq!(e["name"], "flow.NoTransition");
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("approved, rejected"),
        "{e}"
    );
    assert_eq!(s.output()["name"], "flow.NoTransition");
}

#[test]
fn wait_for_arms_an_absolute_deadline_and_fires_then() {
    let g = graph(
        "w",
        json!({
            "w": {"type": "wait", "for": "2s", "onDone": "done"},
            "done": {"type": "final"}
        }),
    );
    let mut s = Sim::new(&g);
    let st = s.start(json!({"x": 1}));
    assert_eq!(
        st.actions,
        [Action::ArmTimer {
            path: "w".into(),
            timer: "wait".into(),
            fire_at: T0 + 2000
        }]
    );
    assert_eq!(s.snapshot.armed_timers()[0].fire_at, T0 + 2000);
    // a restart later does not reset the deadline
    s.env.now = T0 + 1500;
    let st = s.fact(Fact::Recovered {
        previous_owner: "a".into(),
    });
    assert_eq!(
        st.actions,
        [Action::ArmTimer {
            path: "w".into(),
            timer: "wait".into(),
            fire_at: T0 + 2000
        }]
    );
    // early fire is ignored
    let st = s.fact(Fact::TimerFired {
        path: "w".into(),
        timer: "wait".into(),
    });
    assert!(st.ignored.unwrap().contains("not yet"));
    s.run();
    assert_eq!(s.env.now, T0 + 2000);
    assert_eq!(s.output(), json!({"x": 1}));
    assert_trace(
        &s.records,
        &[
            "run.started -",
            "state.entered w",
            &format!("timer.scheduled w timer=wait fire_at={}", T0 + 2000),
            "run.recovered -",
            "timer.fired w timer=wait",
            "state.succeeded w",
            "transition w to=done via=done",
            "state.entered done",
            "run.succeeded -",
        ],
    );
}

#[test]
fn wait_until_and_until_path() {
    let g = graph(
        "a",
        json!({
            "a": {"type": "wait", "until": "2030-01-01T00:00:00Z", "onDone": "b"},
            "b": {"type": "wait", "untilPath": "$.run.input.at", "onDone": "done"},
            "done": {"type": "final"}
        }),
    );
    let mut s = Sim::new(&g);
    let st = s.start(json!({"at": T0 + 5}));
    assert!(
        matches!(&st.actions[0], Action::ArmTimer { fire_at, .. } if *fire_at == 1_893_456_000_000)
    );
    s.run();
    assert_eq!(s.status(), RunStatus::Succeeded);
    let fire_ats: Vec<Value> = s
        .records
        .iter()
        .filter(|r| r.kind().as_str() == "timer.scheduled")
        .map(|r| r.to_parts().1["fire_at"].clone())
        .collect();
    assert_eq!(fire_ats, [json!(1_893_456_000_000i64), json!(T0 + 5)]);
}

fn event_graph() -> Value {
    graph(
        "ask",
        json!({
            "ask": {"onDone": "wait"},
            "wait": {"type": "wait", "on": {"approved": "yes", "rejected": "no"}, "after": {"1h": "late"}},
            "yes": {"type": "final"},
            "no": {"type": "final"},
            "late": {"type": "final", "output": {"late": true}}
        }),
    )
}

#[test]
fn an_event_is_consumed_by_the_waiting_state_in_one_commit_and_becomes_the_next_input() {
    let mut s = Sim::new(&event_graph()).handler("ask", |_, _| Reply::Ok(json!({})));
    s.start(json!({}));
    s.run_one();
    assert_eq!(s.status(), RunStatus::Running);
    assert_eq!(
        s.waits,
        [(
            "wait".to_string(),
            vec!["approved".to_string(), "rejected".to_string()]
        )]
    );
    assert_eq!(s.snapshot.current_states(), ["wait"]);
    assert_eq!(s.snapshot.armed_timers()[0].timer, "after");
    let st = s.send("approved", json!({"by": "ann"}));
    assert_eq!(s.output(), json!({"by": "ann"}));
    assert!(st.actions.contains(&Action::CancelTimer {
        path: "wait".into(),
        timer: "after".into()
    }));
    assert_trace(
        &st.records,
        &[
            r#"event.received - name=approved message={"by":"ann"}"#,
            "event.consumed wait name=approved",
            r#"state.succeeded wait output={"by":"ann"}"#,
            "timer.cancelled wait timer=after",
            "transition wait to=yes via=event:approved",
            r#"state.entered yes input={"by":"ann"}"#,
            r#"run.succeeded - output={"by":"ann"}"#,
        ],
    );
}

#[test]
fn after_fires_when_no_event_comes() {
    let mut s = Sim::new(&event_graph()).handler("ask", |_, _| Reply::Ok(json!({})));
    s.start(json!({}));
    s.run_one();
    s.run();
    assert_eq!(s.output(), json!({"late": true}));
    assert_eq!(s.env.now, T0 + 3_600_000);
    assert!(kinds(&s.records).contains(&"timer.fired wait".to_string()));
    let t = s
        .records
        .iter()
        .find(|r| r.kind().as_str() == "transition" && r.path.as_deref() == Some("wait"))
        .unwrap();
    assert_eq!(t.to_parts().1["via"], "after:1h");
}

#[test]
fn an_event_that_arrived_early_waits_in_the_inbox_and_the_rest_are_discarded_at_the_end() {
    let mut s = Sim::new(&event_graph()).handler("ask", |_, _| Reply::Ok(json!({})));
    s.start(json!({}));
    // both arrive while `ask` runs: they wait in the inbox (FIFO)
    s.send("other", json!(0));
    s.send("rejected", json!({"why": "no"}));
    assert_eq!(s.snapshot.inbox.len(), 2);
    s.run_one();
    assert_eq!(s.output(), json!({"why": "no"}));
    let last = &s.commits.last().unwrap();
    assert_trace(
        last,
        &[
            "state.succeeded ask",
            "transition ask to=wait via=done",
            "state.entered wait",
            "event.consumed wait name=rejected",
            "state.succeeded wait",
            "transition wait to=no via=event:rejected",
            "state.entered no",
            "event.consumed - name=other discarded=true",
            "run.succeeded -",
        ],
    );
    // an event for a finished run is an error
    let e = step(
        &s.graph,
        &s.records,
        Fact::EventReceived {
            name: "approved".into(),
            message: json!(1),
        },
        &s.env,
    )
    .unwrap_err();
    assert!(matches!(e, Error::RunEnded { .. }));
    assert!(
        e.to_string().contains("\"approved\"") && e.to_string().contains("succeeded"),
        "{e}"
    );
}

fn fan() -> Value {
    graph(
        "fan",
        json!({
            "fan": {"type": "parallel", "onDone": "done",
                "catch": [{"errors": ["flow.BranchFailed"], "target": "caught"}],
                "branches": [
                    {"initial": "slow", "states": {"slow": {"onDone": "end"}, "end": {"type": "final"}}},
                    {"initial": "quick", "states": {"quick": {"onDone": "end"}, "end": {"type": "final"}}}
                ]},
            "done": {"type": "final"},
            "caught": {"type": "final"}
        }),
    )
}

#[test]
fn parallel_output_is_in_branch_order() {
    let mut s = Sim::new(&fan())
        .handler("slow", |i, _| Reply::Ok(json!({"slow": i["n"]})))
        .handler("quick", |i, ctx| {
            Reply::Ok(json!({"quick": i["n"], "branch": ctx["branch"]}))
        });
    s.lifo = true; // branch 1 finishes first
    let st = s.start(json!({"n": 1}));
    assert_eq!(st.actions.len(), 2);
    s.run();
    assert_eq!(s.output(), json!([{"slow": 1}, {"quick": 1, "branch": 1}]));
    assert_trace(
        &s.records[..6],
        &[
            "run.started -",
            "state.entered fan attempt=1",
            "branch.started fan branch=0",
            "branch.started fan branch=1",
            r#"state.entered fan#0/slow input={"n":1}"#,
            r#"state.entered fan#1/quick input={"n":1}"#,
        ],
    );
    assert!(kinds(&s.records).contains(&"branch.succeeded fan".to_string()));
}

#[test]
fn a_failed_branch_cancels_the_others_and_is_caught_as_branch_failed_keeping_its_name() {
    let mut s = Sim::new(&fan())
        .handler("slow", |_, _| Reply::Ok(json!(1)))
        .handler("quick", |_, _| Reply::Err("Boom", "quick_broke"));
    s.lifo = true;
    s.start(json!({}));
    let st = {
        s.run_one();
        s.commits.last().unwrap().clone()
    };
    assert_eq!(s.aborted, ["fan#0/slow"]);
    assert_trace(
        &st,
        &[
            "state.failed fan#1/quick attempt=1 error.name=Boom",
            "branch.failed fan branch=1 error.name=Boom",
            "branch.cancelled fan branch=0",
            "state.failed fan attempt=1 error.name=Boom",
            "transition fan to=caught via=catch[0]",
            "state.entered caught input.name=Boom",
            "run.succeeded - output.name=Boom output.message=quick_broke",
        ],
    );
    assert_eq!(s.snapshot.handled_error.as_ref().unwrap().name, "Boom");
    assert!(s.queue.is_empty());
}

fn map_graph(extra: Value) -> Value {
    let mut m = json!({"type": "map", "items": "$.prev.list", "onDone": "done",
        "iterator": {"initial": "work", "states": {"work": {"onDone": "end"}, "end": {"type": "final"}}}});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    graph("each", json!({"each": m, "done": {"type": "final"}}))
}

#[test]
fn map_keeps_item_order_and_never_exceeds_max_concurrency() {
    let g = map_graph(json!({"maxConcurrency": 4, "itemInput": {"n": "$.item", "i": "$.index"}}));
    let mut s = Sim::new(&g).handler("work", |i, ctx| {
        assert_eq!(ctx["index"], i["i"]);
        Reply::Ok(json!(i["n"].as_i64().unwrap() * 10))
    });
    s.lifo = true;
    let list: Vec<i64> = (0..100).collect();
    let st = s.start(json!({"list": list}));
    assert_eq!(st.actions.len(), 4);
    s.run();
    assert_eq!(s.max_in_flight, 4);
    let want: Vec<i64> = (0..100).map(|n| n * 10).collect();
    assert_eq!(s.output(), json!(want));
    assert_eq!(s.calls["work"], 100);
    assert!(kinds(&s.records).contains(&"state.entered each[99]/work".to_string()));
}

#[test]
fn map_tolerated_failures_and_exceeding_them() {
    let g = map_graph(json!({"toleratedFailures": 1}));
    let mut s = Sim::new(&g).handler("work", |i, _| {
        if i == &json!("bad") {
            Reply::Err("Bad", "bad item")
        } else {
            Reply::Ok(i.clone())
        }
    });
    s.start(json!({"list": ["a", "bad", "c"]}));
    s.run();
    assert_eq!(
        s.output(),
        json!(["a", {"$error": {"name": "Bad", "message": "bad item"}}, "c"])
    );
    let mut s = Sim::new(&g).handler("work", |i, _| {
        if i == &json!("bad") {
            Reply::Err("Bad", "bad item")
        } else {
            Reply::Ok(i.clone())
        }
    });
    s.start(json!({"list": ["bad", "bad", "c"]}));
    s.run();
    assert_eq!(s.status(), RunStatus::Failed);
    let e = s.snapshot.error.clone().unwrap();
    assert_eq!(e.name, "flow.ToleratedFailureExceeded");
    assert!(e.message.contains("2 of 3"), "{e}");
    assert!(kinds(&s.records).contains(&"item.cancelled each".to_string()));
}

#[test]
fn map_without_tolerance_fails_with_the_item_error_and_empty_items_give_an_empty_array() {
    let g = map_graph(json!({}));
    let mut s = Sim::new(&g).handler("work", |_, _| Reply::Err("Nope", "x"));
    s.start(json!({"list": [1]}));
    s.run();
    assert_eq!(s.snapshot.error.as_ref().unwrap().name, "Nope");
    let mut s = Sim::new(&g);
    s.start(json!({"list": []}));
    assert_eq!(s.output(), json!([]));
    let mut s = Sim::new(&g);
    s.start(json!({"list": 5}));
    let e = s.snapshot.error.clone().unwrap();
    assert_eq!(e.name, "flow.InputTemplate");
    assert!(e.message.contains("not an array"), "{e}");
}

#[test]
fn fail_state_ends_the_run_with_its_error_and_the_cause_that_led_there() {
    let g = graph(
        "t",
        json!({
            "t": {"onDone": "done", "onError": "oops"},
            "oops": {"type": "fail", "error": "OrderRejected"},
            "done": {"type": "final"}
        }),
    );
    let mut s = Sim::new(&g).handler("t", |_, _| Reply::Err("CardDeclined", "no funds"));
    s.start(json!({}));
    s.run();
    assert_eq!(s.status(), RunStatus::Failed);
    let last = s.records.last().unwrap();
    assert_eq!(last.path.as_deref(), Some("oops"));
    assert_eq!(
        last.to_parts().1["error"],
        json!({"name": "OrderRejected", "message": "", "cause": {"name": "CardDeclined", "message": "no funds"}})
    );
}

#[test]
fn task_states_can_run_child_tasks() {
    let g = graph(
        "sub",
        json!({
            "sub": {"task": "billing", "input": {"id": "$.prev.id"}, "onDone": "done",
                    "catch": [{"errors": ["flow.ChildFailed"], "target": "failed"}]},
            "done": {"type": "final"},
            "failed": {"type": "final"}
        }),
    );
    let mut s = Sim::new(&g).child("billing", |i, _| Reply::Ok(json!({"billed": i["id"]})));
    let st = s.start(json!({"id": 3}));
    assert_eq!(
        st.actions,
        [Action::StartChild {
            path: "sub".into(),
            activation: 1,
            task: "billing".into(),
            input: json!({"id": 3})
        }]
    );
    s.run();
    assert_eq!(s.output(), json!({"billed": 3}));
    let mut s = Sim::new(&g).child("billing", |_, _| Reply::Err("Declined", "card"));
    s.start(json!({"id": 3}));
    s.run();
    assert_eq!(s.output()["name"], "flow.ChildFailed");
    assert_eq!(
        s.output()["cause"],
        json!({"name": "Declined", "message": "card"})
    );
}

#[test]
fn legacy_error_handler_final_runs_its_export_and_the_run_succeeds_with_handled_error() {
    let g = json!({
        "initial": "step1",
        "states": {
            "step1": {"onDone": "complete", "onError": "errorHandler"},
            "errorHandler": {"type": "final"},
            "complete": {"type": "final"}
        }
    });
    let exports: BTreeSet<String> = ["step1", "errorHandler"].map(String::from).into();
    let parsed = Graph::parse_with(
        &g.to_string(),
        &CheckOptions {
            exports: Some(exports),
        },
    )
    .unwrap();
    let mut s = Sim::with_graph(parsed.graph)
        .handler("step1", |_, _| Reply::Err("TypeError", "undefined_x"))
        .handler("errorHandler", |e, _| {
            Reply::Ok(json!({"error": e["message"]}))
        });
    s.start(json!({}));
    s.run();
    assert_eq!(s.status(), RunStatus::Succeeded);
    assert_eq!(s.output(), json!({"error": "undefined_x"}));
    assert_eq!(s.snapshot.handled_error.as_ref().unwrap().name, "TypeError");
    assert_trace(
        &s.records[2..],
        &[
            "state.failed step1 attempt=1 error.name=TypeError",
            "transition step1 to=errorHandler via=error",
            "state.entered errorHandler attempt=1 input.name=TypeError",
            r#"state.succeeded errorHandler output={"error":"undefined_x"}"#,
            "run.succeeded - handled_error.name=TypeError",
        ],
    );
}

#[test]
fn a_timeout_aborts_the_handler_and_is_flow_timeout() {
    let g = graph(
        "slow",
        json!({
            "slow": {"timeout": "5s", "onDone": "done", "catch": [{"errors": ["flow.Timeout"], "target": "late"}]},
            "done": {"type": "final"},
            "late": {"type": "final"}
        }),
    );
    let mut s = Sim::new(&g).handler("slow", |_, _| Reply::Ok(json!(1)));
    let st = s.start(json!({}));
    assert!(st.actions.iter().any(|a| matches!(a, Action::ArmTimer { timer, fire_at, .. } if timer == "timeout" && *fire_at == T0 + 5000)));
    s.queue.clear(); // the handler hangs
    s.fire_next_timer();
    assert_eq!(s.aborted, ["slow"]);
    assert_eq!(s.output()["name"], "flow.Timeout");
    assert!(s.output()["message"].as_str().unwrap().contains("5s"));
    // the hung handler's late result is ignored
    let st = s
        .snapshot
        .step(
            &s.graph,
            Fact::HandlerSucceeded {
                path: "slow".into(),
                activation: 1,
                output: json!(1),
                outcome: None,
            },
            &s.env,
        )
        .unwrap();
    assert!(st.ignored.is_some());
}

#[test]
fn an_eventless_cycle_ends_with_flow_loop_limit_and_so_does_max_transitions() {
    let mut g = graph(
        "a",
        json!({
            "a": {"type": "choice", "choices": [{"when": {"path": "$.prev.stop", "eq": true}, "target": "done"}], "default": "b"},
            "b": {"type": "pass", "onDone": "a"},
            "done": {"type": "final"}
        }),
    );
    g["limits"] = json!({"maxEventlessSteps": 50});
    let mut s = Sim::new(&g);
    s.start(json!({}));
    assert_eq!(s.status(), RunStatus::Failed);
    let e = s.snapshot.error.clone().unwrap();
    assert_eq!(e.name, "flow.LoopLimit");
    assert!(e.message.contains("maxEventlessSteps"), "{e}");
    assert_eq!(
        s.records
            .iter()
            .filter(|r| r.kind().as_str() == "state.entered")
            .count(),
        50
    );
    // a loop through a task is bounded only by limits.maxTransitions
    let g = graph(
        "t",
        json!({
            "t": {"onDone": "c"},
            "c": {"type": "choice", "choices": [{"when": {"path": "$.prev", "eq": "stop"}, "target": "done"}], "default": "t"},
            "done": {"type": "final"}
        }),
    );
    let mut g = g;
    g["limits"] = json!({"maxTransitions": 5});
    let mut s = Sim::new(&g).handler("t", |_, _| Reply::Ok(json!("again")));
    s.start(json!({}));
    s.run();
    assert_eq!(s.snapshot.error.as_ref().unwrap().name, "flow.LoopLimit");
    assert_eq!(s.snapshot.transitions, 5);
}

#[test]
fn cancel_aborts_handlers_cancels_timers_and_ends_the_run() {
    let g = graph(
        "fan",
        json!({
            "fan": {"type": "parallel", "onDone": "done", "branches": [
                {"initial": "work", "states": {"work": {"timeout": "1m", "onDone": "end"}, "end": {"type": "final"}}},
                {"initial": "nap", "states": {"nap": {"type": "wait", "for": "1h", "onDone": "end"}, "end": {"type": "final"}}}
            ]},
            "done": {"type": "final"}
        }),
    );
    let mut s = Sim::new(&g);
    s.start(json!({}));
    let st = s.fact(Fact::Cancel);
    assert_eq!(s.status(), RunStatus::Cancelled);
    assert_eq!(
        st.actions,
        [
            Action::Abort {
                path: "fan#0/work".into(),
                activation: 2
            },
            Action::CancelTimer {
                path: "fan#0/work".into(),
                timer: "timeout".into()
            },
            Action::CancelTimer {
                path: "fan#1/nap".into(),
                timer: "wait".into()
            },
            Action::Cancelled,
        ]
    );
    assert_trace(
        &st.records,
        &[
            "timer.cancelled fan#0/work timer=timeout",
            "branch.cancelled fan branch=0",
            "timer.cancelled fan#1/nap timer=wait",
            "branch.cancelled fan branch=1",
            "run.cancelled -",
        ],
    );
    assert!(s.snapshot.armed_timers().is_empty());
}

#[test]
fn recovery_restarts_every_running_handler_and_rearms_timers() {
    let g = graph(
        "fan",
        json!({
            "fan": {"type": "parallel", "onDone": "done", "branches": [
                {"initial": "a", "states": {"a": {"onDone": "end"}, "end": {"type": "final"}}},
                {"initial": "b", "states": {"b": {"timeout": "10s", "onDone": "end"}, "end": {"type": "final"}}}
            ]},
            "done": {"type": "final"}
        }),
    );
    let mut s = Sim::new(&g)
        .handler("a", |_, _| Reply::Ok(json!("A")))
        .handler("b", |_, _| Reply::Ok(json!("B")));
    s.start(json!({}));
    s.queue.clear();
    let st = s.fact(Fact::Recovered {
        previous_owner: "old".into(),
    });
    assert_trace(
        &st.records,
        &[
            "run.recovered - previous_owner=old",
            "state.entered fan#0/a attempt=1 restart=1",
            "state.entered fan#1/b attempt=1 restart=1",
        ],
    );
    let handlers: Vec<&str> = st
        .actions
        .iter()
        .filter_map(|a| match a {
            Action::RunHandler(c) => Some(c.handler.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(handlers, ["a", "b"]);
    assert!(st.actions.contains(&Action::ArmTimer {
        path: "fan#1/b".into(),
        timer: "timeout".into(),
        fire_at: T0 + 10_000
    }));
    s.run();
    assert_eq!(s.output(), json!(["A", "B"]));
}

#[test]
fn graph_output_template_shapes_the_run_output() {
    let mut g = graph(
        "a",
        json!({"a": {"onDone": "done"}, "done": {"type": "final"}}),
    );
    g["output"] = json!({"result": "$.output", "input": "$.run.input", "a": "$.results.a"});
    let mut s = Sim::new(&g).handler("a", |_, _| Reply::Ok(json!(5)));
    s.start(json!({"q": 1}));
    s.run();
    assert_eq!(s.output(), json!({"result": 5, "input": {"q": 1}, "a": 5}));
}

#[test]
fn fold_rejects_a_journal_that_does_not_fit_the_graph() {
    let g = Graph::parse(
        &graph(
            "a",
            json!({"a": {"onDone": "done"}, "done": {"type": "final"}}),
        )
        .to_string(),
    )
    .unwrap()
    .graph;
    let mut s = Sim::with_graph(g.clone()).handler("a", |_, _| Reply::Ok(json!(1)));
    s.start(json!({}));
    let mut bad = s.records.clone();
    bad[1].path = Some("zzz".into());
    let e = fold(&g, &bad).unwrap_err().to_string();
    assert!(
        e.contains("journal record 1 (state.entered)") && e.contains("zzz"),
        "{e}"
    );
    assert_eq!(fold(&g, &[]).unwrap(), Snapshot::new());
}
