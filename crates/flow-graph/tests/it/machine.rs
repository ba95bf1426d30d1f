//! `Machine`: the seed coremachine's Quick Start (START 1, INCREMENT, STOP) with a Rust and a
//! JSON definition, rejected events, the cursor, fork, subscribe, and a second machine on the
//! same log.

use sequential_flow_graph::machine::{Change, LogEntry, Transition, context_hash};
use sequential_flow_graph::{Definition, Error, Machine, MachineLog, MemoryLog};
use serde_json::{Value, json};

/// The Quick Start of the coremachine README, with Rust closures as actions.
fn quick_start() -> Definition {
    Definition::new("idle", json!({"running": false, "counter": 0}))
        .on(
            "idle",
            "START",
            Transition::to("running").action(|ctx, counter| {
                ctx["running"] = json!(true);
                ctx["counter"] = counter.clone();
                Ok(())
            }),
        )
        .on(
            "running",
            "INCREMENT",
            Transition::to("running").action(|ctx, _| {
                let n = ctx["counter"].as_i64().ok_or("counter is not a number")?;
                ctx["counter"] = json!(n + 1);
                Ok(())
            }),
        )
        .on(
            "running",
            "STOP",
            Transition::to("idle").action(|ctx, final_count| {
                ctx["running"] = json!(false);
                if !final_count.is_null() {
                    ctx["counter"] = final_count.clone();
                }
                Ok(())
            }),
        )
}

/// The same machine as JSON (actions as assign templates).
const QUICK_START_JSON: &str = r#"{
  "initial": "idle",
  "context": {"running": false, "counter": 0},
  "states": {
    "idle": {"on": {"START": {"target": "running",
      "action": {"assign": {"running": true, "counter": "$.payload"}}}}},
    "running": {"on": {
      "INCREMENT": {"target": "running", "action": {"assign": {"counter": {"$add": ["$.context.counter", 1]}}}},
      "STOP": {"target": "idle", "guard": {"path": "$.payload", "type": "null"}, "action": {"assign": {"running": false}}}
    }}
  }
}"#;

fn seed_steps<L: MachineLog>(m: &mut Machine<L>) {
    assert!(m.is_empty());
    assert_eq!(
        (m.state(), m.context()),
        ("idle", &json!({"running": false, "counter": 0}))
    );
    let s = m.action("START", json!(1)).unwrap();
    assert_eq!(
        (s.state.as_str(), &s.context),
        ("running", &json!({"running": true, "counter": 1}))
    );
    let s = m.action("INCREMENT", Value::Null).unwrap();
    assert_eq!(
        (s.state.as_str(), &s.context),
        ("running", &json!({"running": true, "counter": 2}))
    );
    let s = m.action("STOP", Value::Null).unwrap();
    assert_eq!(
        (s.state.as_str(), &s.context),
        ("idle", &json!({"running": false, "counter": 2}))
    );
    assert!(!m.is_empty());
    assert_eq!(m.seq(), 3);
}

#[test]
fn quick_start_with_a_rust_definition() {
    let log = MemoryLog::new();
    let mut m = Machine::open(quick_start(), log.clone()).unwrap();
    seed_steps(&mut m);
    let entries = log.entries();
    assert_eq!(
        entries[0],
        LogEntry {
            seq: 1,
            event: "START".into(),
            payload: json!(1),
            state: "running".into(),
            context_hash: context_hash(&json!({"running": true, "counter": 1})),
        }
    );
    assert_eq!(
        serde_json::to_value(&entries[1])
            .unwrap()
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        ["context_hash", "event", "payload", "seq", "state"]
    );
    // STOP with a final count (the seed's `finalCount`)
    m.action("START", json!(7)).unwrap();
    m.action("STOP", json!(40)).unwrap();
    assert_eq!(m.context(), &json!({"running": false, "counter": 40}));
}

#[test]
fn quick_start_with_a_json_definition() {
    let def = Definition::from_json(QUICK_START_JSON).unwrap();
    let log = MemoryLog::new();
    let mut m = Machine::open(def, log.clone()).unwrap();
    seed_steps(&mut m);
    // the Rust and JSON definitions write the same log
    let mut r = Machine::open(quick_start(), MemoryLog::new()).unwrap();
    seed_steps(&mut r);
    assert_eq!(r.log().entries(), log.entries());
}

#[test]
fn a_rejected_event_appends_nothing_and_lists_the_accepted_ones() {
    let log = MemoryLog::new();
    let mut m = Machine::open(quick_start(), log.clone()).unwrap();
    let e = m.action("STOP", Value::Null).unwrap_err();
    let Error::Rejected { accepted, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(accepted, &["START"]);
    assert_eq!(
        e.to_string(),
        "event \"STOP\" rejected in state \"idle\": state \"idle\" has no transition for it; accepted: START"
    );
    assert!(log.entries().is_empty());
    m.action("START", json!("x")).unwrap();
    // a failing action
    let e = m.action("INCREMENT", Value::Null).unwrap_err().to_string();
    assert!(
        e.contains("its action failed: counter is not a number")
            && e.contains("accepted: INCREMENT, STOP"),
        "{e}"
    );
    assert_eq!(log.entries().len(), 1);
    assert_eq!(m.available_actions(), ["INCREMENT", "STOP"]);
    // a failed guard (JSON definition: STOP only without payload)
    let mut j = Machine::open(
        Definition::from_json(QUICK_START_JSON).unwrap(),
        MemoryLog::new(),
    )
    .unwrap();
    j.action("START", json!(1)).unwrap();
    let e = j.action("STOP", json!(3)).unwrap_err().to_string();
    assert!(e.contains("guard does not hold"), "{e}");
    assert_eq!(j.seq(), 1);
    // a guard in Rust
    let def = Definition::new("a", json!({}))
        .on(
            "a",
            "GO",
            Transition::to("b").guard(|_, p| p.as_i64() > Some(0)),
        )
        .state("b");
    let mut g = Machine::open(def, MemoryLog::new()).unwrap();
    assert!(g.action("GO", json!(0)).is_err());
    assert_eq!(g.action("GO", json!(1)).unwrap().state, "b");
}

#[test]
fn the_cursor_reads_history_without_moving_the_machine() {
    let mut m = Machine::open(quick_start(), MemoryLog::new()).unwrap();
    seed_steps(&mut m);
    let mut c = m.cursor();
    assert_eq!(c.current().seq, 3);
    assert!(c.forward().is_none());
    assert_eq!(c.backward().unwrap().context["counter"], 2);
    assert_eq!(
        c.backward().unwrap().context,
        json!({"running": true, "counter": 1})
    );
    assert_eq!(c.backward().unwrap().state, "idle");
    assert!(c.backward().is_none());
    assert_eq!(c.at(2).unwrap().context["counter"], 2);
    assert_eq!(c.forward().unwrap().seq, 3);
    let e = c.at(9).unwrap_err().to_string();
    assert!(e.contains("seq 9") && e.contains("from 0 to 3"), "{e}");
    assert_eq!((m.seq(), m.state()), (3, "idle"));
}

#[test]
fn fork_at_2_copies_the_prefix_and_leaves_the_original_unchanged() {
    let log = MemoryLog::new();
    let mut m = Machine::open(quick_start(), log.clone()).unwrap();
    seed_steps(&mut m);
    let before = log.entries();
    let forked_log = MemoryLog::new();
    let mut f = m.fork(2, forked_log.clone()).unwrap();
    assert_eq!((f.seq(), f.state()), (2, "running"));
    assert_eq!(f.context(), &json!({"running": true, "counter": 2}));
    f.action("INCREMENT", Value::Null).unwrap();
    assert_eq!(f.context()["counter"], 3);
    assert_eq!(log.entries(), before, "the original log is unchanged");
    assert_eq!(forked_log.entries()[..2], before[..2]);
    assert!(matches!(m.fork(2, forked_log), Err(Error::Conflict { .. })));
    assert!(m.fork(4, MemoryLog::new()).is_err());
}

#[test]
fn a_second_machine_on_the_same_log_follows_and_subscribers_see_every_change() {
    let log = MemoryLog::new();
    let mut a = Machine::open(quick_start(), log.clone()).unwrap();
    let rx_a = a.subscribe();
    a.action("START", json!(1)).unwrap();
    let mut b = Machine::open(quick_start(), log.clone()).unwrap();
    assert_eq!((b.state(), b.context()), (a.state(), a.context()));
    let rx_b = b.subscribe();
    a.action("INCREMENT", Value::Null).unwrap();
    a.action("STOP", Value::Null).unwrap();
    let changes = b.sync().unwrap();
    assert_eq!(changes.len(), 2);
    assert_eq!(
        (b.state(), b.context()),
        ("idle", &json!({"running": false, "counter": 2}))
    );
    let seen: Vec<Change> = rx_b.try_iter().collect();
    assert_eq!(seen, changes);
    assert_eq!(
        serde_json::to_value(&seen[1]).unwrap(),
        json!({"seq": 3, "event": "STOP", "payload": null, "state": "idle", "context": {"running": false, "counter": 2}})
    );
    assert_eq!(
        rx_a.try_iter().map(|c| c.seq).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    // b is behind after a appends again: its append loses the race and appends nothing
    a.action("START", json!(5)).unwrap();
    let e = b.action("START", json!(9)).unwrap_err();
    assert!(matches!(e, Error::Conflict { .. }), "{e}");
    assert_eq!(log.entries().len(), 4);
    b.sync().unwrap();
    assert_eq!(b.context()["counter"], 5);
}

#[test]
fn a_log_the_definition_does_not_reproduce_is_diverged() {
    let log = MemoryLog::new();
    let mut m = Machine::open(quick_start(), log.clone()).unwrap();
    seed_steps(&mut m);
    let other = Definition::new("idle", json!({"running": false, "counter": 0}))
        .on(
            "idle",
            "START",
            Transition::to("running").action(|ctx, _| {
                ctx["counter"] = json!(100);
                Ok(())
            }),
        )
        .state("running");
    let e = Machine::open(other, log).unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, Error::Diverged { seq: 1, .. }), "{text}");
    assert!(
        text.contains("context hash fnv1a64:") && text.contains("recorded fnv1a64:"),
        "{text}"
    );
}

#[test]
fn bad_definitions_name_the_pointer() {
    let e = Machine::open(
        Definition::new("nowhere", json!({})).state("a"),
        MemoryLog::new(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("at /initial: initial state `nowhere` is not in states; expected one of a"),
        "{e}"
    );
    for (text, pointer) in [
        (
            r#"{"initial": "a", "states": {"a": {"on": {"GO": "b"}}}}"#,
            "/states/a/on/GO/target",
        ),
        (
            r#"{"initial": "a", "states": {"a": {"on": {"GO": {"target": "a", "action": {"set": 1}}}}}}"#,
            "/states/a/on/GO/action",
        ),
        (
            r#"{"initial": "a", "states": {"a": {"on": {"GO": {"target": "a", "guard": {"path": "$.x", "is": 1}}}}}}"#,
            "/states/a/on/GO/guard/is",
        ),
        (
            r#"{"initial": "a", "states": {"a": {"enter": 1}}}"#,
            "/states/a/enter",
        ),
        (
            r#"{"initial": "a", "states": {"a": {}, "a": {}}}"#,
            "/states/a",
        ),
    ] {
        let e = Definition::from_json(text).unwrap_err().to_string();
        assert!(e.contains(&format!("at {pointer}:")), "{pointer}: {e}");
    }
}
