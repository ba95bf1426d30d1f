//! Redrive in place (S15): a failed run continues under its own journal — `run.redriven` and
//! the failed main-graph state entered again with attempt 1 and fresh retry counters, in one
//! commit; fold(journal) stays the snapshot (the harness checks S10 after every step).

use std::cell::Cell;
use std::rc::Rc;

use sequential_flow_graph::{Action, Fact, RunStatus, fold, redrive_point};
use serde_json::json;

use crate::harness::{Reply, Sim, assert_trace, kinds};

#[test]
fn a_failed_state_is_entered_again_with_fresh_retries_and_earlier_states_keep_their_results() {
    let g = json!({"version": 1, "initial": "a", "states": {
        "a": {"onDone": "b"},
        "b": {"onDone": "done", "retry": [{"errors": ["Busy"], "maxAttempts": 1, "interval": "1s"}]},
        "done": {"type": "final"}
    }});
    let up = Rc::new(Cell::new(false));
    let up2 = up.clone();
    let mut s = Sim::new(&g)
        .handler("a", |i, _| Reply::Ok(json!({"n": i["n"]})))
        .handler("b", move |i, ctx| {
            if up2.get() {
                Reply::Ok(json!({"n": i["n"], "attempt": ctx["attempt"]}))
            } else {
                Reply::Err("Busy", "not yet")
            }
        });
    // a fact other than a start before the run failed is refused
    s.start(json!({"n": 3}));
    let refused = s.snapshot.step(
        &s.graph,
        Fact::Redrive {
            state: "a".into(),
            input: json!({}),
        },
        &s.env,
    );
    assert!(refused.is_err(), "a running run is not redriven");
    s.run();
    assert_eq!(s.status(), RunStatus::Failed);
    assert_eq!(s.calls["b"], 2, "one try and one retry");
    let (state, input) = redrive_point(&s.records).expect("it failed in b");
    assert_eq!((state.as_str(), &input), ("b", &json!({"n": 3})));

    // redriven while still busy: the retry is spent again, then it fails again
    let st = s.fact(Fact::Redrive { state, input });
    assert_trace(
        &st.records,
        &[
            "run.redriven b",
            r#"state.entered b attempt=1 input={"n":3}"#,
        ],
    );
    assert!(
        matches!(&st.actions[..], [Action::RunHandler(c)] if c.path == "b" && c.ctx["attempt"] == 1)
    );
    assert_eq!(s.snapshot.active("b").unwrap().retries, Vec::<u32>::new());
    s.run();
    assert_eq!(s.status(), RunStatus::Failed);
    assert_eq!(s.calls["b"], 4, "fresh retry counters");

    up.set(true);
    let (state, input) = redrive_point(&s.records).unwrap();
    s.fact(Fact::Redrive { state, input });
    s.run();
    assert_eq!(s.status(), RunStatus::Succeeded);
    assert_eq!(s.output(), json!({"n": 3, "attempt": 1}));
    assert_eq!(s.calls["a"], 1, "a is not run again");
    assert_eq!(
        kinds(&s.records)
            .iter()
            .filter(|k| k.starts_with("run."))
            .collect::<Vec<_>>(),
        [
            "run.started -",
            "run.failed b",
            "run.redriven b",
            "run.failed b",
            "run.redriven b",
            "run.succeeded -"
        ]
    );
    // a succeeded run is not redriven, and a journal that redrives a run that did not fail
    // does not fold
    assert!(
        s.snapshot
            .step(
                &s.graph,
                Fact::Redrive {
                    state: "b".into(),
                    input: json!({})
                },
                &s.env
            )
            .is_err()
    );
    let mut bad = s.records.clone();
    let redriven = bad
        .iter()
        .find(|r| r.kind().as_str() == "run.redriven")
        .unwrap()
        .clone();
    bad.push(redriven);
    assert!(fold(&s.graph, &bad).is_err());
}

#[test]
fn a_failure_inside_a_branch_redrives_the_parallel_state_holding_it() {
    let g = json!({"version": 1, "initial": "fan", "states": {
        "fan": {"type": "parallel", "onDone": "done", "branches": [
            {"initial": "left", "states": {"left": {"onDone": "end"}, "end": {"type": "final"}}},
            {"initial": "right", "states": {"right": {"onDone": "end"}, "end": {"type": "final"}}}
        ]},
        "done": {"type": "final"}
    }});
    let up = Rc::new(Cell::new(false));
    let up2 = up.clone();
    let mut s = Sim::new(&g)
        .handler("left", |_, _| Reply::Ok(json!("l")))
        .handler("right", move |_, _| {
            if up2.get() {
                Reply::Ok(json!("r"))
            } else {
                Reply::Err("Boom", "right failed")
            }
        });
    s.start(json!({"n": 1}));
    s.run();
    assert_eq!(s.status(), RunStatus::Failed);
    let (state, input) = redrive_point(&s.records).unwrap();
    assert_eq!((state.as_str(), &input), ("fan", &json!({"n": 1})));
    up.set(true);
    let st = s.fact(Fact::Redrive { state, input });
    assert_trace(
        &st.records,
        &[
            "run.redriven fan",
            "state.entered fan attempt=1",
            "branch.started fan branch=0",
            "branch.started fan branch=1",
            "state.entered fan#0/left",
            "state.entered fan#1/right",
        ],
    );
    s.run();
    assert_eq!(s.status(), RunStatus::Succeeded);
    assert_eq!(s.output(), json!(["l", "r"]));
}
