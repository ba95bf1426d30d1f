//! ASL retry and catch (S4, S5): absolute backoff deadlines, maxDelay, full jitter from the
//! caller's draw, counters per retrier reset on exit, defaults.retry, terminal errors.

use sequential_flow_graph::{Action, Fact, RunStatus};
use serde_json::{Value, json};

use crate::harness::{Reply, Sim, T0, assert_trace};

fn flaky(retry: Value) -> Value {
    json!({
        "version": 1,
        "initial": "charge",
        "states": {
            "charge": {"onDone": "done", "retry": retry,
                       "catch": [{"errors": ["Declined"], "target": "declined"}, {"errors": ["*"], "target": "other"}]},
            "done": {"type": "final"},
            "declined": {"type": "final"},
            "other": {"type": "final"}
        }
    })
}

#[test]
fn backoff_deadlines_are_absolute_and_survive_a_restart() {
    let g =
        flaky(json!([{"errors": ["Busy"], "maxAttempts": 2, "interval": "1s", "backoffRate": 3}]));
    let mut s = Sim::new(&g).handler("charge", |_, _| Reply::Err("Busy", "try later"));
    s.start(json!({}));
    s.run_one();
    let scheduled = format!(
        "retry.scheduled charge attempt=2 retrier=0 delay_ms=1000 fire_at={}",
        T0 + 1000
    );
    assert_trace(
        s.commits.last().unwrap(),
        &["state.failed charge attempt=1 error.name=Busy", &scheduled],
    );
    // kill -9 half-way through the backoff: the deadline is the stored one
    s.env.now = T0 + 400;
    let st = s.fact(Fact::Recovered {
        previous_owner: "x".into(),
    });
    assert_eq!(
        st.actions,
        [Action::ArmTimer {
            path: "charge".into(),
            timer: "retry".into(),
            fire_at: T0 + 1000
        }]
    );
    s.fire_next_timer();
    assert_eq!(s.env.now, T0 + 1000);
    assert_eq!(s.queue.front().unwrap().ctx["attempt"], 2);
    s.run_one();
    // second retry: 1s × 3
    let last = s.commits.last().unwrap();
    assert_eq!(last[1].to_parts().1["delay_ms"], 3000);
    assert_eq!(last[1].to_parts().1["fire_at"], T0 + 4000);
    s.run();
    // retries spent: the catch-all catcher
    assert_eq!(s.status(), RunStatus::Succeeded);
    assert_eq!(s.calls["charge"], 3);
    assert_eq!(s.output()["name"], "Busy");
    assert!(
        s.records
            .iter()
            .any(|r| r.to_parts().1["via"] == json!("catch[1]"))
    );
}

#[test]
fn max_delay_caps_and_full_jitter_uses_the_callers_draw() {
    let g = flaky(
        json!([{"errors": ["*"], "maxAttempts": 5, "interval": 1000, "backoffRate": 10, "maxDelay": "5s", "jitter": "full"}]),
    );
    let mut s = Sim::new(&g).handler("charge", |_, _| Reply::Err("Busy", ""));
    s.env.draw = 0.25;
    s.start(json!({}));
    let mut delays = Vec::new();
    for _ in 0..3 {
        s.run_one();
        delays.push(s.commits.last().unwrap()[1].to_parts().1["delay_ms"].clone());
        s.fire_next_timer();
    }
    // 1000×0.25, min(10000, 5000)×0.25, min(100000, 5000)×0.25
    assert_eq!(delays, [json!(250), json!(1250), json!(1250)]);
}

#[test]
fn only_the_first_matching_retrier_counts_and_counters_reset_on_exit() {
    let g = json!({
        "version": 1,
        "initial": "t",
        "states": {
            "t": {"onDone": "again", "retry": [
                {"errors": ["A"], "maxAttempts": 1, "interval": 10},
                {"errors": ["A", "B"], "maxAttempts": 5, "interval": 10}
            ]},
            "again": {"type": "choice", "choices": [{"when": {"path": "$.prev.n", "gte": 2}, "target": "done"}], "default": "t"},
            "done": {"type": "final"}
        }
    });
    let mut n = 0;
    let script = ["A", "A", "ok", "B", "B", "ok"];
    let mut s = Sim::new(&g).handler("t", move |_, _| {
        let r = script[n];
        n += 1;
        match r {
            "ok" => Reply::Ok(json!({"n": n / 3 + 1})),
            e => Reply::Err(if e == "A" { "A" } else { "B" }, ""),
        }
    });
    s.start(json!({}));
    s.run();
    // first loop: A retried once (retrier 0), then A again: retrier 0 is spent and is the
    // first match, so the state fails for good
    assert_eq!(s.status(), RunStatus::Failed);
    assert_eq!(s.snapshot.error.as_ref().unwrap().name, "A");
    let g2 = {
        let mut g = g.clone();
        g["states"]["t"]["retry"] = json!([{"errors": ["B"], "maxAttempts": 1, "interval": 10}]);
        g
    };
    let mut n = 0;
    let mut s = Sim::new(&g2).handler("t", move |_, _| {
        n += 1;
        if n % 2 == 1 {
            Reply::Err("B", "")
        } else {
            Reply::Ok(json!({"n": n / 2}))
        }
    });
    s.start(json!({}));
    s.run();
    // each visit of t may retry once again: the counter reset when t was left
    assert_eq!(s.status(), RunStatus::Succeeded);
    assert_eq!(s.calls["t"], 4);
}

#[test]
fn max_attempts_zero_and_defaults_retry() {
    let g = flaky(json!([{"errors": ["*"], "maxAttempts": 0}]));
    let mut s = Sim::new(&g).handler("charge", |_, _| Reply::Err("Declined", ""));
    s.start(json!({}));
    s.run();
    assert_eq!(s.calls["charge"], 1);
    assert_eq!(s.records[3].to_parts().1["via"], "catch[0]");
    let g = json!({
        "version": 1, "initial": "a",
        "defaults": {"retry": [{"errors": ["*"], "maxAttempts": 2, "interval": "10ms"}], "timeout": "1m"},
        "states": {"a": {"onDone": "done"}, "done": {"type": "final"}}
    });
    let mut s = Sim::new(&g).handler("a", |_, _| Reply::Err("E", ""));
    let st = s.start(json!({}));
    assert!(
        st.actions
            .iter()
            .any(|a| matches!(a, Action::ArmTimer { timer, .. } if timer == "timeout"))
    );
    s.run();
    assert_eq!(s.calls["a"], 3);
    assert_eq!(s.status(), RunStatus::Failed);
}

#[test]
fn terminal_errors_are_never_retried_or_caught() {
    let g = flaky(json!([{"errors": ["*"], "maxAttempts": 3}]));
    let mut s = Sim::new(&g).handler("charge", |_, _| Reply::Err("flow.Cancelled", "stop"));
    s.start(json!({}));
    s.run();
    assert_eq!(s.status(), RunStatus::Failed);
    assert_eq!(s.calls["charge"], 1);
    assert_eq!(s.snapshot.error.as_ref().unwrap().name, "flow.Cancelled");
}
