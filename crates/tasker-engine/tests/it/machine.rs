//! The Machine on a file log: the seed's coremachine Quick Start (START 1, INCREMENT, STOP), a
//! second process that follows every change the first one makes, and a fork that leaves the
//! original log unchanged.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use sequential_tasker_engine::flow_graph::{Definition, Machine, MachineLog};
use sequential_tasker_engine::machine::FileLog;
use sequential_test_support::child;
use serde_json::{Value, json};

/// The Quick Start of the coremachine README, as a JSON definition.
const CUBE: &str = r#"{
  "initial": "idle",
  "context": {"running": false, "counter": 0},
  "states": {
    "idle": {"on": {"START": {"target": "running", "action": {"assign": {"running": true, "counter": "$.payload"}}}}},
    "running": {"on": {
      "INCREMENT": {"target": "running", "action": {"assign": {"counter": {"$add": ["$.context.counter", 1]}}}},
      "STOP": {"target": "idle", "action": {"assign": {"running": false}}}
    }}
  }
}"#;

fn def() -> Definition {
    Definition::from_json(CUBE).unwrap()
}

/// Runs in the child: opens the log at `MACHINE_CHILD`, says `ready`, then prints every change
/// another process makes as one NDJSON line, until it has seen `MACHINE_CHILD_COUNT` of them.
#[test]
fn machine_follower() {
    let Some(path) = child::role("MACHINE_CHILD") else {
        return;
    };
    let want: usize = std::env::var("MACHINE_CHILD_COUNT")
        .unwrap()
        .parse()
        .unwrap();
    let mut m = Machine::open(def(), FileLog::open(&path).unwrap()).unwrap();
    println!("ready at {}", m.seq());
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen < want && Instant::now() < deadline {
        for change in m.sync().unwrap() {
            println!("{}", serde_json::to_string(&change).unwrap());
            seen += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn the_quick_start_on_a_file_log_is_followed_by_another_process_and_forks_without_truncating() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cube.ndjson");
    let log = FileLog::open(&path).unwrap();
    let mut cube = Machine::open(def(), log.clone()).unwrap();
    assert!(cube.is_empty());

    let mut follower = child::relaunch(
        child::test_path(module_path!(), "machine_follower"),
        "MACHINE_CHILD",
        path.to_str().unwrap(),
    )
    .env("MACHINE_CHILD_COUNT", "3")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.ends_with("ready at 0")), // libtest may print the test's name first
        "the follower never opened the log"
    );

    let s = cube.action("START", json!(1)).unwrap();
    assert_eq!(
        (s.state.as_str(), &s.context),
        ("running", &json!({"running": true, "counter": 1}))
    );
    let s = cube.action("INCREMENT", Value::Null).unwrap();
    assert_eq!(s.context["counter"], 2);
    assert_eq!(cube.available_actions(), ["INCREMENT", "STOP"]);
    // START is not accepted while running: an error listing the accepted events, nothing appended
    let err = cube.action("START", json!(5)).unwrap_err().to_string();
    assert!(err.ends_with("accepted: INCREMENT, STOP"), "{err}");
    assert_eq!(log.last_seq().unwrap(), 2);
    let s = cube.action("STOP", Value::Null).unwrap();
    assert_eq!(
        (s.state.as_str(), &s.context),
        ("idle", &json!({"running": false, "counter": 2}))
    );

    // the other process saw each change, in order, with its context
    let seen: Vec<Value> = lines
        .map_while(Result::ok)
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(&l).unwrap())
        .collect();
    assert!(follower.wait().unwrap().success());
    let events: Vec<(&str, &str, i64)> = seen
        .iter()
        .map(|c| {
            (
                c["event"].as_str().unwrap(),
                c["state"].as_str().unwrap(),
                c["context"]["counter"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            ("START", "running", 1),
            ("INCREMENT", "running", 2),
            ("STOP", "idle", 2)
        ]
    );

    // reopening reaches the same state; a fork at 2 is a new file, the original is unchanged
    let before = std::fs::read(&path).unwrap();
    let again = Machine::open(def(), FileLog::open(&path).unwrap()).unwrap();
    assert_eq!((again.state(), again.seq()), ("idle", 3));
    let fork = again
        .fork(2, FileLog::open(dir.path().join("fork.ndjson")).unwrap())
        .unwrap();
    assert_eq!(
        (fork.state(), fork.context()["counter"].as_i64()),
        ("running", Some(2))
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "the original log is unchanged"
    );
    assert_eq!(again.cursor().at(1).unwrap().context["counter"], 1);
}

/// The Quick Start's definition as its README writes it.
const CUBE_JS: &str = r#"import { createMachine } from "coremachine";

// Define your state machine
const definition = createMachine({
  initial: "idle",
  context: {
    running: false,
    counter: 0,
  },
  states: {
    idle: {
      on: {
        START: {
          target: "running",
          action: (ctx, counter) => {
            ctx.running = true;
            ctx.counter = counter;
          },
        },
      },
    },
    running: {
      on: {
        INCREMENT: {
          target: "running",
          action: (ctx) => {
            ctx.counter++;
          },
        },
        STOP: {
          target: "idle",
          action: (ctx, finalCount) => {
            ctx.running = false;
            if (finalCount !== undefined) {
              ctx.counter = finalCount;
            }
          },
        },
      },
    },
  },
});
"#;

#[test]
fn a_javascript_definition_gives_the_quick_starts_states_and_contexts() {
    use sequential_tasker_engine::machine::js_definition;
    let dir = tempfile::tempdir().unwrap();
    let js = js_definition(CUBE_JS).unwrap();
    let log = FileLog::open(dir.path().join("js.ndjson")).unwrap();
    let mut cube = Machine::open(js.clone(), log.clone()).unwrap();
    let s = cube.action("START", json!(1)).unwrap();
    assert_eq!(
        (s.state.as_str(), &s.context),
        ("running", &json!({"running": true, "counter": 1}))
    );
    cube.action("INCREMENT", Value::Null).unwrap();
    assert_eq!(cube.context()["counter"], 2);
    assert_eq!(cube.available_actions(), ["INCREMENT", "STOP"]);
    let err = cube.action("START", json!(5)).unwrap_err().to_string();
    assert!(err.ends_with("accepted: INCREMENT, STOP"), "{err}");
    // STOP without a payload: the action sees `undefined` and keeps the counter
    let s = cube.action("STOP", Value::Null).unwrap();
    assert_eq!(
        (s.state.as_str(), &s.context),
        ("idle", &json!({"running": false, "counter": 2}))
    );
    // replaying the log with the JavaScript definition gives the same machine
    let again = Machine::open(js, log).unwrap();
    assert_eq!(
        (again.state(), again.context()),
        (cube.state(), cube.context())
    );
    // the same machine as JSON reproduces the log the JavaScript one wrote
    let json_again = Machine::open(def(), FileLog::open(dir.path().join("js.ndjson")).unwrap());
    assert!(json_again.is_ok(), "{json_again:?}");

    // guards run in the VM too; a host call in an action rejects the event, appending nothing
    let def = js_definition(
        r#"export default createMachine({
  initial: "a",
  context: { n: 0 },
  states: {
    a: { on: { GO: { target: "b", guard: (ctx, p) => p > 2 }, STAMP: { target: "a", action: (ctx) => { ctx.at = Date.now(); } } } },
    b: { on: { BACK: "a" } },
  },
});"#,
    )
    .unwrap();
    let log = FileLog::open(dir.path().join("guard.ndjson")).unwrap();
    let mut m = Machine::open(def, log.clone()).unwrap();
    assert!(m.action("GO", json!(1)).is_err(), "the guard rejects 1");
    let err = m.action("STAMP", Value::Null).unwrap_err().to_string();
    assert!(err.contains("host call (now)"), "{err}");
    assert_eq!(log.last_seq().unwrap(), 0, "nothing was appended");
    m.action("GO", json!(3)).unwrap();
    m.action("BACK", Value::Null).unwrap();
    assert_eq!(m.state(), "a");

    // bad definitions name what is wrong
    let err =
        js_definition("import x from \"other\";\ncreateMachine({initial: 'a', states: {a: {}}});")
            .unwrap_err()
            .to_string();
    assert!(err.contains("no imports but"), "{err}");
    let err = js_definition("const x = 1;").unwrap_err().to_string();
    assert!(err.contains("defines no machine"), "{err}");
    let def = js_definition("createMachine({ initial: 'nowhere', states: { a: {} } });").unwrap();
    let err = Machine::open(def, sequential_tasker_engine::flow_graph::MemoryLog::new())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("nowhere"),
        "an initial that names no state: {err}"
    );
}

/// `store:NAME`: the log as a run's journal in SQLite. Two stores opened on one database file
/// (as two processes would) share it: the second reaches the same state, follows new records,
/// and an append from a stale machine is a conflict that writes nothing.
#[test]
fn a_store_log_in_sqlite_is_shared_by_two_openers_and_a_stale_append_is_refused() {
    use sequential_adaptor::{RunStatus, StorageAdapter};
    use sequential_tasker_engine::machine::{Format, Source, StoreLog};
    use std::sync::Arc;

    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("m.db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let open_store = || -> Arc<dyn StorageAdapter> {
        Arc::new(sequential_adaptor_sqlite::SqliteStore::open(&db).unwrap())
    };
    let source = Source {
        format: Format::Json,
        text: CUBE.into(),
    };
    let a_store = open_store();
    let log = rt
        .block_on(StoreLog::create(a_store.clone(), "cube", &source))
        .unwrap();
    let again = rt.block_on(StoreLog::create(a_store.clone(), "cube", &source));
    assert!(again.unwrap_err().to_string().contains("already exists"));
    let mut a = Machine::open(def(), log.clone()).unwrap();
    a.action("START", json!(1)).unwrap();

    let (b_log, b_source) = rt.block_on(StoreLog::open(open_store(), "cube")).unwrap();
    assert_eq!(b_source, source);
    assert_eq!(b_log.run(), log.run());
    let mut b = Machine::open(b_source.definition().unwrap(), b_log).unwrap();
    assert_eq!(
        (b.seq(), b.state(), b.context()),
        (1, "running", &json!({"running": true, "counter": 1}))
    );
    // the run holding the log is parked where no worker claims it
    let run = rt.block_on(a_store.get_run(log.run())).unwrap();
    assert_eq!(run.status, RunStatus::Paused);

    a.action("INCREMENT", Value::Null).unwrap();
    let seen = b.sync().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        (seen[0].seq, seen[0].context.clone()),
        (2, json!({"running": true, "counter": 2}))
    );
    // a is now behind b: its STOP at seq 3 races b's and loses, appending nothing
    b.action("STOP", Value::Null).unwrap();
    let err = a.action("INCREMENT", Value::Null).unwrap_err();
    assert!(
        matches!(
            err,
            sequential_tasker_engine::flow_graph::Error::Conflict { .. }
        ),
        "{err}"
    );
    assert_eq!(log.last_seq().unwrap(), 3);
    assert_eq!(a.sync().unwrap().len(), 1);
    assert_eq!(a.state(), "idle");
    // a record of another kind in the journal (the holding run resumed by hand) is skipped
    let stray = sequential_adaptor::JournalRecord {
        run: log.run(),
        seq: 3,
        kind: "run.started".into(),
        at: 0,
        data: json!({}),
    };
    rt.block_on(a_store.append(log.run(), &[stray], sequential_adaptor::Fence::None))
        .unwrap();
    a.action("START", json!(7)).unwrap();
    assert_eq!(b.sync().unwrap()[0].seq, 4);
    assert_eq!(b.context(), &json!({"running": true, "counter": 7}));
    let again = Machine::open(
        def(),
        rt.block_on(StoreLog::open(open_store(), "cube")).unwrap().0,
    )
    .unwrap();
    assert_eq!((again.seq(), again.state()), (4, "running"));
    // a name that was never created says how to create it
    let missing = rt
        .block_on(StoreLog::open(open_store(), "nope"))
        .unwrap_err();
    assert!(
        missing.to_string().contains("fsm init store:nope"),
        "{missing}"
    );
}
