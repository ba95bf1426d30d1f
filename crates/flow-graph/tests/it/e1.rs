//! E1 of GRAPHS.md §3.1: the linear graph, its exact journal, and the crash restart.

use sequential_flow_graph::{Action, Fact, RunStatus};
use serde_json::{Value, json};

use crate::harness::{Reply, Sim, assert_trace};

fn e1() -> Value {
    json!({
        "version": 1,
        "id": "order-linear",
        "initial": "fetchOrder",
        "states": {
            "fetchOrder": { "onDone": "charge" },
            "charge": { "onDone": "notify" },
            "notify": { "onDone": "done" },
            "done": { "type": "final" }
        }
    })
}

fn sim() -> Sim {
    Sim::new(&e1())
        .handler("fetchOrder", |i, _| {
            Reply::Ok(json!({"id": i["orderId"], "amount": 42}))
        })
        .handler("charge", |i, _| {
            let mut o = i.clone();
            o["charged"] = json!(true);
            Reply::Ok(o)
        })
        .handler("notify", |i, _| Reply::Ok(json!({"notified": i["id"]})))
}

const E1: [&str; 12] = [
    r#"run.started - input={"orderId":7}"#,
    r#"state.entered fetchOrder attempt=1 input={"orderId":7}"#,
    r#"state.succeeded fetchOrder output={"id":7,"amount":42}"#,
    r#"transition fetchOrder to=charge via=done"#,
    r#"state.entered charge attempt=1 input={"id":7,"amount":42}"#,
    r#"state.succeeded charge output={"id":7,"amount":42,"charged":true}"#,
    r#"transition charge to=notify via=done"#,
    r#"state.entered notify attempt=1 input={"id":7,"amount":42,"charged":true}"#,
    r#"state.succeeded notify output={"notified":7}"#,
    r#"transition notify to=done via=done"#,
    r#"state.entered done input={"notified":7}"#,
    r#"run.succeeded - output={"notified":7}"#,
];

#[test]
fn e1_produces_exactly_the_records_shown() {
    let mut s = sim();
    s.start(json!({"orderId": 7}));
    s.run();
    assert_eq!(s.status(), RunStatus::Succeeded);
    assert_eq!(s.output(), json!({"notified": 7}));
    assert_trace(&s.records, &E1);
    // records 3–5 are one commit (S6): {1,2}, {3,4,5}, {6,7,8}, {9..12}
    let sizes: Vec<usize> = s.commits.iter().map(Vec::len).collect();
    assert_eq!(sizes, [2, 3, 3, 4]);
    assert_eq!(
        s.calls.values().copied().collect::<Vec<_>>(),
        [1, 1, 1],
        "each handler once"
    );
}

#[test]
fn e1_handler_calls_carry_input_and_ctx() {
    let mut s = sim();
    let st = s.start(json!({"orderId": 7}));
    let [Action::RunHandler(call)] = st.actions.as_slice() else {
        panic!("{:?}", st.actions)
    };
    assert_eq!(call.handler, "fetchOrder");
    assert_eq!(call.input, json!({"orderId": 7}));
    assert_eq!(
        call.ctx,
        json!({"run": {"id": "run-1", "input": {"orderId": 7}}, "state": "fetchOrder", "attempt": 1, "results": {}, "vars": {}})
    );
    s.run_one();
    let call = s.queue.front().unwrap();
    assert_eq!(
        call.ctx["results"],
        json!({"fetchOrder": {"id": 7, "amount": 42}})
    );
}

#[test]
fn e1_crash_after_charge_entered_restarts_charge_only() {
    let mut s = sim();
    s.start(json!({"orderId": 7}));
    s.run_one(); // fetchOrder → records 1..5 committed, charge handler queued
    assert_eq!(s.records.len(), 5);
    // kill -9: the in-flight charge call is lost; a new driver recovers
    s.queue.clear();
    let st = s.fact(Fact::Recovered {
        previous_owner: "host:1".into(),
    });
    assert!(
        matches!(st.actions.as_slice(), [Action::RunHandler(c)] if c.handler == "charge" && c.input == json!({"id":7,"amount":42}))
    );
    s.run();
    assert_eq!(s.output(), json!({"notified": 7}));
    let mut expected: Vec<&str> = E1[..5].to_vec();
    expected.push("run.recovered - previous_owner=host:1");
    expected.push(r#"state.entered charge attempt=1 restart=1 input={"id":7,"amount":42}"#);
    expected.extend(&E1[5..]);
    assert_trace(&s.records, &expected);
    assert_eq!(s.calls["fetchOrder"], 1);
    assert_eq!(s.calls["charge"], 1);
}

#[test]
fn a_result_of_a_superseded_activation_is_ignored() {
    let mut s = sim();
    s.start(json!({"orderId": 7}));
    let st = s.fact(Fact::HandlerSucceeded {
        path: "fetchOrder".into(),
        activation: 99,
        output: json!({}),
        outcome: None,
    });
    assert!(st.records.is_empty());
    assert!(st.ignored.unwrap().contains("activation 1"));
}
