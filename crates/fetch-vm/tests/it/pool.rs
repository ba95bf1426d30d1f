//! Session engines (a stack and a runtime each) are reused; reuse never leaks state between
//! sessions, and a live session holds no thread of its own.

use crate::harness::alone;
use sequential_fetch_vm::{CallResult, Error, Limits, Options, Session, Step};
use serde_json::{Value, json};

#[test]
fn sequential_sessions_reuse_engines_without_leaking_state() {
    let options = Options::default();
    for i in 0..200 {
        let code =
            format!("const before = typeof globalThis.leak; globalThis.leak = {i}; [before, leak]");
        let (s, step) = Session::start(&code, &Value::Null, vec![], &options).unwrap();
        assert_eq!(step, Step::Completed(json!(["undefined", i])));
        if i % 2 == 0 {
            s.close();
        }
    }
}

#[test]
fn a_runtime_that_hit_a_limit_is_not_reused_wrongly() {
    let mut small = Options::default();
    small.limits = Limits::default();
    small.limits.memory_bytes = 4 << 20;
    for _ in 0..5 {
        let (s, step) =
            Session::start("'x'.repeat(8 << 20).length", &Value::Null, vec![], &small).unwrap();
        assert_eq!(
            step,
            Step::Failed(Error::MemoryLimit {
                limit_bytes: 4 << 20
            })
        );
        s.close();
        let (s, step) = Session::start(
            "'x'.repeat(8 << 20).length",
            &Value::Null,
            vec![],
            &Options::default(),
        )
        .unwrap();
        assert_eq!(step, Step::Completed(json!(8 << 20)));
        s.close();
    }
}

#[test]
fn concurrent_sessions_interleave() {
    let options = Options::default();
    let mut live: Vec<_> = (0..20)
        .map(|i| {
            let code = format!("fetch('https://x.test/{i}').n + {i}");
            Session::start(&code, &Value::Null, vec![], &options).unwrap()
        })
        .collect();
    for (i, (s, step)) in live.iter_mut().enumerate().rev() {
        let Step::Pending(calls) = step else { panic!() };
        let out = s
            .complete(
                calls[0].seq,
                CallResult::fetch_response(200, "OK", json!({}), json!({"n": 1})),
            )
            .unwrap();
        assert_eq!(out, Step::Completed(json!(1 + i)));
    }
}

#[test]
fn sessions_are_send_and_report_new_entries_once() {
    fn assert_send<T: Send>() {}
    assert_send::<Session>();
    let code = "console.log('a'); const r = fetch('https://x.test/1'); console.log('b'); r.n";
    let options = Options::default();
    let (mut s, step) = Session::start(code, &Value::Null, vec![], &options).unwrap();
    let Step::Pending(calls) = step else { panic!() };
    let first = s.take_new_entries();
    assert_eq!(first.len(), 1, "the first log");
    assert!(s.take_new_entries().is_empty());
    let reply = CallResult::fetch_response(200, "OK", json!({}), json!({"n": 3}));
    assert_eq!(
        s.complete(calls[0].seq, reply).unwrap(),
        Step::Completed(json!(3))
    );
    let second = s.take_new_entries();
    assert_eq!(second.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 2]);
    // A cold start replays them: nothing is new.
    let journal = s.journal().clone();
    let (mut cold, step) = Session::start(code, &Value::Null, journal.clone(), &options).unwrap();
    assert_eq!(step, Step::Completed(json!(3)));
    assert!(cold.take_new_entries().is_empty());
    assert_eq!(cold.journal(), &journal);
}

#[test]
fn failing_scripts_do_not_poison_reused_runtimes() {
    let options = Options::default();
    for code in [
        "const a = 1\n({ a, b: a + 1 })",
        "new Function('const a = 1\\n({ a, b: a + 1 })'); const a = 1\n({ a, b: a + 1 })",
        "new Function('return 1'); const z = 1(z)",
        "new Function('return 1'); throw new Error('x')",
    ] {
        let (s, step) = Session::start(code, &Value::Null, vec![], &options).unwrap();
        assert!(matches!(step, Step::Failed(_)), "{step:?}");
        s.close();
        let (s, step) =
            Session::start("typeof a + typeof z", &Value::Null, vec![], &options).unwrap();
        assert_eq!(step, Step::Completed(json!("undefinedundefined")));
        s.close();
    }
}

/// Threads of this process.
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

fn live_sessions_hold_no_threads() {
    const LIVE: usize = 32;
    let options = Options::default();
    let before = threads();
    // script-mode `fetch` blocks the code: each of these waits inside a synchronous call
    let mut live: Vec<_> = (0..LIVE)
        .map(|i| {
            let code = format!(
                "let n = 0; for (let k = 0; k < 3; k++) n += fetch('https://x.test/{i}/' + k).n; n"
            );
            Session::start(&code, &Value::Null, vec![], &options).unwrap()
        })
        .collect();
    let during = threads();
    println!("\nTHREADS before {before} with {LIVE} live sessions {during}");
    // each step of each session runs on this thread, interleaved with the others
    for k in 0..3 {
        for (i, (s, step)) in live.iter_mut().enumerate() {
            let Step::Pending(calls) = step else {
                panic!("session {i} step {k}: {step:?}")
            };
            let reply = CallResult::fetch_response(200, "OK", json!({}), json!({"n": i + k}));
            *step = s.complete(calls[0].seq, reply).unwrap();
        }
    }
    for (i, (_, step)) in live.iter().enumerate() {
        assert_eq!(*step, Step::Completed(json!(3 * i + 3)), "session {i}");
    }
    // at most the janitor thread (made when a first session ends) is new
    assert!(
        during <= before + 1,
        "{LIVE} live sessions took {} threads",
        during - before
    );
}

/// Alone in a child process, so that the threads counted are only this test's.
#[test]
fn live_sessions_run_on_the_callers_thread_and_hold_no_thread_of_their_own() {
    let test = "live_sessions_run_on_the_callers_thread_and_hold_no_thread_of_their_own";
    let body = live_sessions_hold_no_threads;
    if let Some(out) = alone(module_path!(), test, "FETCH_VM_THREADS_CHILD", body) {
        assert!(out.contains("THREADS before"), "{out}");
    }
}

#[test]
fn a_session_started_on_one_thread_is_stepped_on_others() {
    let code = "let n = 0; for (let k = 0; k < 4; k++) n += fetch('https://x.test/' + k).n; n";
    let (mut s, mut step) =
        Session::start(code, &Value::Null, vec![], &Options::default()).unwrap();
    for k in 0..4 {
        let Step::Pending(calls) = step else {
            panic!("step {k}: {step:?}")
        };
        let seq = calls[0].seq;
        // each step on a thread of its own: the session's stack moves with it
        (s, step) = std::thread::spawn(move || {
            let reply = CallResult::fetch_response(200, "OK", json!({}), json!({"n": k + 1}));
            let step = s.complete(seq, reply).unwrap();
            (s, step)
        })
        .join()
        .unwrap();
    }
    assert_eq!(step, Step::Completed(json!(10)));
}

fn dropped_sessions_reuse_a_few_engines() {
    const SESSIONS: u64 = 2000;
    let options = Options::default();
    for i in 0..SESSIONS {
        let (s, step) =
            Session::start("({ a: [1, 2, 3] })", &Value::Null, vec![], &options).unwrap();
        assert_eq!(
            step,
            Step::Completed(json!({ "a": [1, 2, 3] })),
            "session {i}"
        );
        drop(s); // its context is freed by the janitor, or here when the janitor is behind
    }
    let made = sequential_fetch_vm::session_engines_made();
    println!("\nENGINES sessions {SESSIONS} engines {made}");
    // the idle pool's size (8 by default), and a few queued for the janitor at most
    assert!(
        made <= 16,
        "{made} engines for {SESSIONS} sessions dropped one after another"
    );
}

/// Alone in a child process, so that the engines counted are only this test's.
#[test]
fn sessions_dropped_faster_than_the_janitor_frees_them_reuse_a_few_engines() {
    let test = "sessions_dropped_faster_than_the_janitor_frees_them_reuse_a_few_engines";
    let body = dropped_sessions_reuse_a_few_engines;
    if let Some(out) = alone(module_path!(), test, "FETCH_VM_DROPPED_CHILD", body) {
        assert!(out.contains("ENGINES sessions 2000"), "{out}");
    }
}

/// The scheduling policy of this process's janitor thread (5 is SCHED_IDLE), once it exists.
#[cfg(target_os = "linux")]
fn janitor_policy() -> Option<u32> {
    sequential_test_support::child::thread_policies(std::process::id())
        .into_iter()
        .find_map(|(name, policy)| (name == "fetch-vm-janito").then_some(policy))
}

#[cfg(target_os = "linux")]
fn idle_time_janitor_reuses_a_few_engines() {
    sequential_fetch_vm::clean_up_in_idle_time();
    const SESSIONS: u64 = 2000;
    let options = Options::default();
    for i in 0..SESSIONS {
        let (s, step) = Session::start("[1, 2, 3].length", &Value::Null, vec![], &options).unwrap();
        assert_eq!(step, Step::Completed(json!(3)), "session {i}");
        drop(s);
    }
    let made = sequential_fetch_vm::session_engines_made();
    println!("\nENGINES sessions {SESSIONS} engines {made}");
    // the janitor, started by the first dropped session, took its policy before that returned
    assert_eq!(
        janitor_policy(),
        Some(5),
        "the janitor runs under SCHED_IDLE"
    );
    // a start never waits for the janitor then: it takes an engine the janitor has not begun
    // (finishing it itself) or, only when there is none, makes one
    assert!(
        made <= 16,
        "{made} engines for {SESSIONS} sessions dropped one after another"
    );
}

/// Alone in a child process: the janitor's policy is the process's.
#[cfg(target_os = "linux")]
#[test]
fn a_janitor_in_idle_time_runs_under_sched_idle_and_sessions_still_reuse_a_few_engines() {
    let test =
        "a_janitor_in_idle_time_runs_under_sched_idle_and_sessions_still_reuse_a_few_engines";
    let body = idle_time_janitor_reuses_a_few_engines;
    if let Some(out) = alone(module_path!(), test, "FETCH_VM_IDLE_JANITOR_CHILD", body) {
        assert!(out.contains("ENGINES sessions 2000"), "{out}");
    }
}
