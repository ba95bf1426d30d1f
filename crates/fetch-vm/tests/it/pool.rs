//! Session threads and runtimes are reused; reuse never leaks state between sessions.

use sequential_fetch_vm::{CallResult, Error, Limits, Options, Session, Step};
use serde_json::{Value, json};

#[test]
fn sequential_sessions_reuse_threads_without_leaking_state() {
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
