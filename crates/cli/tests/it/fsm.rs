//! `fsm`: the seed coremachine's Quick Start (START 1, INCREMENT, STOP) with the definitions of
//! docs/fsm.md on a file and on `store:NAME`, a second process following each change, fork
//! leaving the original unchanged, and the bad input (a rejected event, a bad `initial`).

use std::io::{BufRead, BufReader};
use std::process::ChildStdout;

use serde_json::{Value, json};

use crate::util::Sandbox;

/// The code blocks of docs/fsm.md tagged `lang`, in order.
fn doc_blocks(lang: &str) -> Vec<String> {
    let doc = include_str!("../../../../docs/fsm.md");
    let mut out = Vec::new();
    let mut cur: Option<String> = None;
    for line in doc.lines() {
        match (&mut cur, line.trim_end()) {
            (None, l) if l == format!("```{lang}") => cur = Some(String::new()),
            (Some(_), "```") => out.push(cur.take().unwrap()),
            (Some(s), l) => {
                s.push_str(l);
                s.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// The sandbox with docs/fsm.md's definitions as cube.js and cube.json.
fn sandbox() -> Sandbox {
    let sb = Sandbox::new();
    let js = doc_blocks("js");
    assert!(js[0].contains("createMachine"), "{js:?}");
    sb.write("cube.js", &js[0]);
    let json = doc_blocks("json");
    sb.write("cube.json", &json[0]);
    sb
}

fn fsm(sb: &Sandbox, args: &[&str]) -> Value {
    let mut all = vec!["fsm"];
    all.extend_from_slice(args);
    all.push("--json");
    sb.cmd(&all)
        .env("DATABASE_URL", "sqlite:./fsm.db")
        .run()
        .ok()
        .json()
}

fn state_of(doc: &Value) -> (String, Value) {
    (
        doc["state"].as_str().unwrap().to_string(),
        doc["context"].clone(),
    )
}

fn s(state: &str, context: Value) -> (String, Value) {
    (state.to_string(), context)
}

/// The Quick Start on `log`: the states and contexts of the seed's README.
fn quick_start(sb: &Sandbox, log: &str, definition: &str) {
    let init = fsm(sb, &["init", log, "--definition", definition]);
    assert_eq!(
        state_of(&init),
        s("idle", json!({"running": false, "counter": 0}))
    );
    let start = fsm(sb, &["send", log, "START", "1"]);
    assert_eq!(
        state_of(&start),
        s("running", json!({"running": true, "counter": 1}))
    );
    let inc = fsm(sb, &["send", log, "INCREMENT"]);
    assert_eq!(
        state_of(&inc),
        s("running", json!({"running": true, "counter": 2}))
    );
    let stop = fsm(sb, &["send", log, "STOP"]);
    assert_eq!(
        state_of(&stop),
        s("idle", json!({"running": false, "counter": 2}))
    );
    assert_eq!(stop["seq"], 3);
    // another process replays the log to the same state
    let state = fsm(sb, &["state", log]);
    assert_eq!(
        state_of(&state),
        s("idle", json!({"running": false, "counter": 2}))
    );
    let actions = fsm(sb, &["actions", log]);
    assert_eq!(actions, json!({"state": "idle", "accepted": ["START"]}));
    let history = fsm(sb, &["history", log]);
    let events: Vec<(&str, &Value, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["event"].as_str().unwrap(),
                &c["payload"],
                c["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("START", &json!(1), "running"),
            ("INCREMENT", &Value::Null, "running"),
            ("STOP", &Value::Null, "idle")
        ]
    );
    let at1 = fsm(sb, &["history", log, "--at", "1"]);
    assert_eq!(
        state_of(&at1),
        s("running", json!({"running": true, "counter": 1}))
    );
}

#[test]
fn the_quick_start_gives_the_seeds_states_with_the_js_and_json_definitions_on_a_file_and_in_storage()
 {
    let sb = sandbox();
    quick_start(&sb, "cube.ndjson", "cube.js");
    quick_start(&sb, "cube-json.ndjson", "cube.json");
    quick_start(&sb, "store:cube", "cube.js");
    quick_start(&sb, "store:cube-json", "cube.json");
    // the file holds one record per event, with its payload
    let text = sb.read("cube.ndjson");
    let first: Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            &first["seq"],
            &first["event"],
            &first["payload"],
            &first["state"]
        ),
        (&json!(1), &json!("START"), &json!(1), &json!("running"))
    );
    assert!(first["context_hash"].is_string(), "{first}");
    // the JS STOP takes a final count
    let b = fsm(&sb, &["fork", "cube.ndjson", "--at", "2", "cube-b.ndjson"]);
    assert_eq!(b["seq"], 2);
    let stop = fsm(&sb, &["send", "cube-b.ndjson", "STOP", "10"]);
    assert_eq!(
        state_of(&stop),
        s("idle", json!({"running": false, "counter": 10}))
    );
}

/// Reads one NDJSON line from a follower.
fn next_line(out: &mut BufReader<ChildStdout>) -> Value {
    let mut line = String::new();
    let n = out.read_line(&mut line).expect("reading the follower");
    assert!(n > 0, "the follower ended early");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
}

fn followed_by_another_process(sb: &Sandbox, log: &str) {
    fsm(sb, &["init", log, "--definition", "cube.js"]);
    let mut follower = sb
        .cmd(&[
            "fsm",
            "follow",
            log,
            "--after",
            "0",
            "--count",
            "3",
            "--timeout",
            "60s",
        ])
        .env("DATABASE_URL", "sqlite:./fsm.db")
        .spawn();
    let mut out = BufReader::new(follower.stdout.take().unwrap());
    let sends: [(&str, Option<&str>, Value); 3] = [
        ("START", Some("1"), json!({"running": true, "counter": 1})),
        ("INCREMENT", None, json!({"running": true, "counter": 2})),
        ("STOP", None, json!({"running": false, "counter": 2})),
    ];
    for (i, (event, payload, context)) in sends.into_iter().enumerate() {
        let mut args = vec!["send", log, event];
        args.extend(payload);
        fsm(sb, &args);
        // from the second event on, the follower was running before the event was sent
        let line = next_line(&mut out);
        assert_eq!(line["seq"], i as u64 + 1, "{line}");
        assert_eq!(line["event"], event, "{line}");
        assert_eq!(line["context"], context, "{line}");
        assert_eq!(
            line["payload"],
            payload.map_or(Value::Null, |p| serde_json::from_str(p).unwrap())
        );
    }
    let status = follower.wait().unwrap();
    assert!(status.success(), "follower: {status}");
}

#[test]
fn fsm_follow_in_a_second_process_sees_each_change_the_first_makes() {
    let sb = sandbox();
    followed_by_another_process(&sb, "cube.ndjson");
    followed_by_another_process(&sb, "store:cube");
}

#[test]
fn follow_times_out_with_exit_1_when_the_count_is_not_reached() {
    let sb = sandbox();
    fsm(&sb, &["init", "cube.ndjson", "--definition", "cube.json"]);
    sb.cmd(&[
        "fsm",
        "follow",
        "cube.ndjson",
        "--count",
        "1",
        "--timeout",
        "200ms",
    ])
    .run()
    .code(1)
    .stderr_has("0 of 1 changes");
}

#[test]
fn fork_at_2_leaves_the_original_log_unchanged() {
    let sb = sandbox();
    for (log, new) in [
        ("cube.ndjson", "fork.ndjson"),
        ("store:cube", "store:cube-fork"),
    ] {
        fsm(&sb, &["init", log, "--definition", "cube.js"]);
        fsm(&sb, &["send", log, "START", "1"]);
        fsm(&sb, &["send", log, "INCREMENT"]);
        fsm(&sb, &["send", log, "STOP"]);
        let before = fsm(&sb, &["history", log]);
        let bytes = log.ends_with(".ndjson").then(|| sb.read(log));
        let forked = fsm(&sb, &["fork", log, "--at", "2", new]);
        assert_eq!(
            (forked["seq"].clone(), state_of(&forked)),
            (
                json!(2),
                s("running", json!({"running": true, "counter": 2}))
            )
        );
        // the fork goes its own way; the original does not move
        fsm(&sb, &["send", new, "INCREMENT"]);
        assert_eq!(fsm(&sb, &["history", new]).as_array().unwrap().len(), 3);
        assert_eq!(fsm(&sb, &["history", log]), before);
        if let Some(bytes) = bytes {
            assert_eq!(sb.read(log), bytes);
        }
        // a fork never overwrites a log
        sb.cmd(&["fsm", "fork", log, "--at", "1", new])
            .env("DATABASE_URL", "sqlite:./fsm.db")
            .run()
            .code(2);
        sb.cmd(&["fsm", "fork", log, "--at", "9", "other.ndjson"])
            .env("DATABASE_URL", "sqlite:./fsm.db")
            .run()
            .code(2)
            .stderr_has("from 0 to 3");
        assert!(!sb.exists("other.ndjson"));
    }
}

#[test]
fn an_event_the_state_does_not_accept_exits_2_listing_the_accepted_ones_and_appends_nothing() {
    let sb = sandbox();
    for log in ["cube.ndjson", "store:cube"] {
        fsm(&sb, &["init", log, "--definition", "cube.js"]);
        fsm(&sb, &["send", log, "START", "1"]);
        let out = sb
            .cmd(&["fsm", "send", log, "START", "5", "--json"])
            .env("DATABASE_URL", "sqlite:./fsm.db")
            .run()
            .code(2);
        let doc = out.json();
        assert_eq!(doc["accepted"], json!(["INCREMENT", "STOP"]), "{doc}");
        assert!(doc["error"].as_str().unwrap().contains("START"), "{doc}");
        sb.cmd(&["fsm", "send", log, "PAUSE"])
            .env("DATABASE_URL", "sqlite:./fsm.db")
            .run()
            .code(2)
            .stderr_has("PAUSE")
            .stderr_has("accepts: INCREMENT, STOP");
        let state = fsm(&sb, &["state", log]);
        assert_eq!(state["seq"], 1, "nothing appended: {state}");
        assert_eq!(
            state_of(&state),
            s("running", json!({"running": true, "counter": 1}))
        );
    }
}

#[test]
fn a_definition_whose_initial_names_no_state_is_refused_and_creates_nothing() {
    let sb = sandbox();
    let js = sb
        .read("cube.js")
        .replace("initial: \"idle\"", "initial: \"sleeping\"");
    sb.write("bad.js", &js);
    let json = sb
        .read("cube.json")
        .replace("\"initial\": \"idle\"", "\"initial\": \"sleeping\"");
    sb.write("bad.json", &json);
    for (log, def) in [
        ("bad.ndjson", "bad.js"),
        ("bad.ndjson", "bad.json"),
        ("store:bad", "bad.json"),
    ] {
        sb.cmd(&["fsm", "init", log, "--definition", def])
            .env("DATABASE_URL", "sqlite:./fsm.db")
            .run()
            .code(2)
            .stderr_has("/initial")
            .stderr_has("initial state `sleeping` is not in states")
            .stderr_has("one of idle, running");
    }
    assert!(!sb.exists("bad.ndjson"));
    assert!(!sb.exists("bad.ndjson.definition.json"));
    sb.cmd(&["fsm", "state", "store:bad"])
        .env("DATABASE_URL", "sqlite:./fsm.db")
        .run()
        .code(2)
        .stderr_has("fsm init store:bad");
    // neither a definition of another kind nor a log that was never made
    sb.write("cube.txt", "{}");
    sb.cmd(&["fsm", "init", "x.ndjson", "--definition", "cube.txt"])
        .run()
        .code(2)
        .stderr_has(".json or .js");
    sb.cmd(&["fsm", "state", "missing.ndjson"])
        .run()
        .code(2)
        .stderr_has("fsm init missing.ndjson");
}
