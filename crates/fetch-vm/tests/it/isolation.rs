//! Sessions on a reused session engine see nothing of the sessions that ran there before: each
//! session observes the globals, built-ins and pending work it could inherit, then pollutes
//! all of them, and the next session on the same engine must observe a clean world again.

use crate::harness::alone;
use sequential_fetch_vm::{CallKind, CallResult, Journal, Mode, Options, Session, Step};
use serde_json::{Value, json};

/// What a session can see of its predecessors (one JSON object, logged through the journal).
const OBSERVE: &str = r#"({
  leaked: typeof globalThis.leaked,
  leakedVar: typeof globalThis.leakedVar,
  arrayFoo: typeof [].foo,
  polluted: typeof ({}).polluted,
  json: JSON.stringify({ a: [1] }),
  stackTraceLimit: Error.stackTraceLimit,
  prepareStackTrace: typeof Error.prepareStackTrace,
  thenIsNative: String(Promise.prototype.then).includes("[native code]"),
  arrayFrozen: Object.isFrozen(Array.prototype),
  fromTimer: typeof globalThis.fromTimer,
  fromJob: typeof globalThis.fromJob,
  ctxOk: typeof ctx === "object" && ctx !== null && typeof ctx.sleep === "function",
  random: Math.random(),
})"#;

/// Everything a session could leave behind: globals (a property, a `var` of global code; a script
/// also declares a global `let`, which a second script in the same context could not declare),
/// modified built-ins, engine-internal settings, a pending timer, a pending promise and a
/// queued promise job, and its own `Math.random`.
const POLLUTE: &str = r#"
  globalThis.leaked = 3;
  Array.prototype.foo = 4;
  Object.prototype.polluted = 5;
  (0, eval)("var leakedVar = 1;");
  setTimeout(() => { globalThis.fromTimer = 7; }, 0);
  new Promise(() => {});
  Promise.resolve().then(() => { globalThis.fromJob = 8; });
  JSON.stringify = () => "hijacked";
  Math.random = () => 0.5;
  Error.stackTraceLimit = 0;
  Error.prepareStackTrace = () => "hijacked";
  const then = Promise.prototype.then;
  Promise.prototype.then = function (...args) { globalThis.hijackedThen = true; return then.apply(this, args); };
  Object.freeze(Array.prototype);
  globalThis.ctx = null;
"#;

/// The session's code: observe, pollute, observe again (the control: the probe sees pollution),
/// then end normally or by throwing (with a promise job still queued).
fn code(mode: Mode, throws: bool) -> String {
    let end = if throws {
        "Promise.resolve().then(() => { globalThis.fromJob = 9; });\n  throw new Error(\"polluted, then threw\");"
    } else {
        ""
    };
    let body = format!("console.log({OBSERVE});\n{POLLUTE}\n  console.log({OBSERVE});\n  {end}\n");
    match mode {
        Mode::Module => {
            format!("export default async function () {{\n{body}  return 'done';\n}}\n")
        }
        _ => format!("let scriptLet = 10;\n{body}\n'done'\n"),
    }
}

/// Runs `code` to its end, answering `random` calls with fixed bytes (everything else stays
/// pending); returns the end and the journal.
fn drive(code: &str, options: &Options, journal: Journal) -> (Step, Journal) {
    let (mut s, mut step) = Session::start(code, &Value::Null, journal, options).expect("start");
    while let Step::Pending(calls) = &step {
        let Some(call) = calls.iter().find(|c| c.kind == CallKind::Random) else {
            break;
        };
        let bytes = call.request["bytes"].as_u64().unwrap() as usize;
        let hex: String = (0..bytes).map(|i| format!("{:02x}", 17 * i + 1)).collect();
        step = s.complete(call.seq, CallResult::Ok(json!(hex))).unwrap();
    }
    let journal = s.journal().clone();
    s.close();
    (step, journal)
}

/// The two observations a session logged.
fn observations(journal: &Journal) -> (Value, Value) {
    let logs: Vec<Value> = journal
        .iter()
        .filter(|e| e.kind == CallKind::Log)
        .map(|e| serde_json::from_str(e.request["message"].as_str().unwrap()).unwrap())
        .collect();
    assert_eq!(logs.len(), 2, "{journal:?}");
    (logs[0].clone(), logs[1].clone())
}

/// Session engines (a stack and a runtime each) this process has made.
fn engines() -> u64 {
    sequential_fetch_vm::session_engines_made()
}

fn rounds() {
    const SESSIONS: usize = 24;
    let mut clean: Option<Value> = None;
    for i in 0..SESSIONS {
        let mode = if i % 2 == 0 {
            Mode::Script
        } else {
            Mode::Module
        };
        let throws = i % 4 >= 2;
        let code = code(mode, throws);
        let options = Options::with_mode(mode);
        let (end, journal) = drive(&code, &options, vec![]);
        if throws {
            let Step::Failed(e) = &end else {
                panic!("session {i}: {end:?}")
            };
            assert!(e.to_string().contains("polluted, then threw"), "{e}");
        } else {
            assert_eq!(end, Step::Completed(json!("done")), "session {i}");
        }
        let (before, after) = observations(&journal);
        // what any session sees first is what the first session of this process saw
        let first = clean.get_or_insert_with(|| before.clone());
        assert_eq!(
            &before, first,
            "session {i} ({mode:?}) saw an earlier session"
        );
        // the control: the probe does see each pollution within the session that made it
        for (key, polluted) in [
            ("leaked", json!("number")),
            ("leakedVar", json!("number")),
            ("arrayFoo", json!("number")),
            ("polluted", json!("number")),
            ("json", json!("hijacked")),
            ("stackTraceLimit", json!(0)),
            ("prepareStackTrace", json!("function")),
            ("thenIsNative", json!(false)),
            ("arrayFrozen", json!(true)),
            ("ctxOk", json!(false)),
            ("random", json!(0.5)),
        ] {
            assert_eq!(after[key], polluted, "session {i}: {key} in {after}");
        }
        // replay determinism: a cold start from the journal reaches the same end, adding nothing
        let (replayed, again) = drive(&code, &options, journal.clone());
        assert_eq!(replayed, end, "session {i} replayed");
        assert_eq!(again, journal, "session {i} replayed");
    }
    let first = clean.unwrap();
    for (key, fresh) in [
        ("leaked", json!("undefined")),
        ("leakedVar", json!("undefined")),
        ("arrayFoo", json!("undefined")),
        ("polluted", json!("undefined")),
        ("json", json!("{\"a\":[1]}")),
        ("prepareStackTrace", json!("undefined")),
        ("thenIsNative", json!(true)),
        ("arrayFrozen", json!(false)),
        ("fromTimer", json!("undefined")),
        ("fromJob", json!("undefined")),
        ("ctxOk", json!(true)),
    ] {
        assert_eq!(first[key], fresh, "{key} in {first}");
    }
    assert!(
        first["random"].as_f64().is_some_and(|r| r != 0.5),
        "{first}"
    );
    // Every session after the first on an engine followed a polluting one there: fewer
    // engines than sessions means at least SESSIONS - engines such sessions (in practice all
    // but the first: one session at a time needs one engine).
    let engines = engines();
    println!("\nISOLATION sessions {SESSIONS} engines {engines}");
    assert!(
        engines < SESSIONS as u64,
        "{engines} session engines for {SESSIONS} sessions"
    );
}

/// Alone in a child process, so that the engines counted are only this test's.
#[test]
fn a_reused_session_engine_shows_nothing_of_earlier_sessions() {
    let test = "a_reused_session_engine_shows_nothing_of_earlier_sessions";
    if let Some(out) = alone(module_path!(), test, "FETCH_VM_ISOLATION_CHILD", rounds) {
        assert!(out.contains("ISOLATION sessions 24 engines"), "{out}");
    }
}
