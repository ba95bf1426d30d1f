//! The repository's `tasks/` examples, run offline through the binary in a copy of `tasks/`.

use serde_json::json;

use crate::runs::run_of;
use crate::util::Sandbox;

#[test]
fn order_flow_places_the_order_with_four_dependent_fetches() {
    let sb = Sandbox::new().with_examples();
    // the README's main command
    let o = sb.run(&["run", "order-flow", "--verbose"]).ok();
    let out: serde_json::Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(
        out,
        json!({"orderId": "ord-7-2", "customer": "Alice", "total": 26.55, "receiptSent": true})
    );
    assert_eq!(
        o.stderr.matches("call.completed").count(),
        4,
        "{}",
        o.stderr
    );
    assert!(
        o.stderr
            .contains("fetch POST data:application/json,{\"orderId\""),
        "{}",
        o.stderr
    );
    assert!(
        o.stderr
            .contains("console.log: order ord-7-2 placed for Alice: 26.55"),
        "{}",
        o.stderr
    );
    let doc = sb
        .run(&[
            "run",
            "order-flow",
            "--json",
            "--input",
            r#"{"customerId": 3, "items": [{"sku": "a", "qty": 1, "price": 10}]}"#,
        ])
        .ok()
        .json();
    assert_eq!(
        doc["output"],
        json!({"orderId": "ord-3-1", "customer": "Alice", "total": 9, "receiptSent": true})
    );
}

#[test]
fn fan_out_fetches_every_warehouse_with_promise_all() {
    let sb = Sandbox::new().with_examples();
    let doc = sb
        .run(&["run", "fan-out", "--json", "--verbose"])
        .ok()
        .json();
    assert_eq!(
        doc["output"],
        json!({"sku": "book", "total": 60, "byWarehouse": {"berlin": 10, "lisbon": 20, "oslo": 30}})
    );
    let journal = doc["journal"].as_array().unwrap();
    let requested: Vec<u64> = journal
        .iter()
        .filter(|r| r["kind"] == "call.requested")
        .map(|r| r["seq"].as_u64().unwrap())
        .collect();
    // all three fetches were requested together, before any completed
    assert_eq!(requested, [1, 2, 3], "{doc}");
}

#[test]
fn approval_waits_for_the_event_then_resumes_to_the_decision() {
    let sb = Sandbox::new().with_examples();
    let o = sb.run(&["run", "approval", "--json"]).code(3);
    let doc = o.json();
    assert_eq!(doc["status"], "waiting");
    assert_eq!(doc["waiting_for"], "approved");
    assert!(
        doc["wake_at"].is_string(),
        "the 1d timeout is a timer: {doc}"
    );
    assert!(
        o.stderr.contains("waits for event \"approved\""),
        "{}",
        o.stderr
    );
    let id = run_of(&doc);
    sb.run(&["resume", &id])
        .code(3)
        .stderr_has("waits for event \"approved\"");
    sb.run(&["signal", &id, "approved", r#"{"by": "ann"}"#])
        .ok();
    sb.run(&["resume", &id])
        .ok()
        .stdout_has("\"approved\": true")
        .stdout_has("\"by\": \"ann\"")
        .stdout_has("\"ticket\": \"APR-1200\"");
}

#[test]
fn every_example_passes_a_dry_run_and_syncs() {
    let sb = Sandbox::new().with_examples();
    for t in ["order-flow", "approval", "fan-out", "order-graph"] {
        sb.run(&["run", t, "--dry-run"])
            .ok()
            .stdout_has(&format!("would run task {t} v1"));
    }
    sb.run(&["sync-tasks"]).ok().stdout_has("synced 4 tasks");
}

/// A journal without what legitimately differs between two runs: times, run ids, timer
/// deadlines.
fn comparable(journal: &serde_json::Value) -> Vec<serde_json::Value> {
    journal
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let mut data = r["data"].clone();
            if let Some(o) = data.as_object_mut() {
                o.remove("wakeAt");
            }
            json!({"seq": r["seq"], "kind": r["kind"], "data": data})
        })
        .collect()
}

#[test]
fn cold_replay_from_every_seq_gives_the_same_journal_as_the_hot_run() {
    let sb = Sandbox::new().with_examples();
    for t in ["order-flow", "fan-out"] {
        let hot = sb.run(&["run", t, "--json", "--verbose"]).ok().json();
        let id = run_of(&hot);
        let expected = comparable(&hot["journal"]);
        for n in 0..expected.len() {
            // a new process replays the copied prefix cold and performs the rest
            let cold = sb
                .run(&[
                    "rerun",
                    &id,
                    "--from-seq",
                    &n.to_string(),
                    "--json",
                    "--verbose",
                ])
                .ok()
                .json();
            assert_eq!(cold["output"], hot["output"], "{t} from seq {n}");
            assert_eq!(comparable(&cold["journal"]), expected, "{t} from seq {n}");
        }
    }
    // approval: the rerun waits again for its own event
    let first = sb.run(&["run", "approval", "--json"]).code(3).json();
    let id = run_of(&first);
    sb.run(&["signal", &id, "approved", r#"{"by": "ann"}"#])
        .ok();
    let hot = sb.run(&["resume", &id, "--json", "--verbose"]).ok().json();
    let expected = comparable(&hot["journal"]);
    for n in [0, 3, 5] {
        let cold = sb
            .run(&["rerun", &id, "--from-seq", &n.to_string(), "--json"])
            .code(3)
            .json();
        let rid = run_of(&cold);
        sb.run(&["signal", &rid, "approved", r#"{"by": "ann"}"#])
            .ok();
        let done = sb.run(&["resume", &rid, "--json", "--verbose"]).ok().json();
        assert_eq!(done["output"], hot["output"], "approval from seq {n}");
        assert_eq!(
            comparable(&done["journal"]),
            expected,
            "approval from seq {n}"
        );
    }
}
