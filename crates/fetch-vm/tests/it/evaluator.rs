//! `Evaluator`: a module's default export called as a pure function of JSON.

use std::sync::Arc;

use sequential_fetch_vm::{Error, Evaluator, Limits};
use serde_json::{Value, json};

fn load(code: &str) -> Evaluator {
    Evaluator::new(code, &Limits::default()).unwrap()
}

#[test]
fn the_default_export_computes_from_its_input_sync_or_async() {
    let e = load("export default (x) => ({ doubled: x.n * 2, tags: [...x.tags, 'new'] });");
    assert_eq!(
        e.call(&json!({"n": 21, "tags": ["a"]})).unwrap(),
        json!({"doubled": 42, "tags": ["a", "new"]})
    );
    let e = load(
        "const later = (v) => Promise.resolve().then(() => v);
         export default async function (x) { const a = await later(x.a); return a + (await later(1)); }",
    );
    assert_eq!(e.call(&json!({"a": 1})).unwrap(), json!(2));
    // `undefined` is null; `new Date(ms)` and Date.UTC read no clock; console is ignored
    let e = load(
        "export default (x) => { console.log('ignored', x); if (x === 0) return undefined; return [new Date(x).toISOString(), Date.UTC(2020, 0, 1)]; }",
    );
    assert_eq!(e.call(&json!(0)).unwrap(), Value::Null);
    assert_eq!(
        e.call(&json!(86_400_000)).unwrap(),
        json!(["1970-01-02T00:00:00.000Z", 1_577_836_800_000u64])
    );
}

#[test]
fn module_state_persists_between_calls_of_one_evaluator_only() {
    const COUNTER: &str = "let calls = 0; export default () => { globalThis.seen = (globalThis.seen || 0) + 1; return [++calls, globalThis.seen]; };";
    let a = load(COUNTER);
    assert_eq!(a.call(&Value::Null).unwrap(), json!([1, 1]));
    assert_eq!(a.call(&Value::Null).unwrap(), json!([2, 2]));
    let b = load(COUNTER);
    assert_eq!(b.call(&Value::Null).unwrap(), json!([1, 1]), "a new realm");
    assert_eq!(a.call(&Value::Null).unwrap(), json!([3, 3]));
}

#[test]
fn every_host_call_is_refused_with_an_error_naming_it_even_when_caught() {
    let cases = [
        ("fetch('https://example.com/')", "fetch", "fetch()"),
        ("Date.now()", "now", "Date.now()"),
        ("new Date()", "now", "new Date()"),
        ("Date()", "now", "Date()"),
        ("performance.now()", "now", "performance.now()"),
        ("Math.random()", "random", "Math.random()"),
        ("crypto.randomUUID()", "random", "crypto.randomUUID()"),
        (
            "crypto.getRandomValues(new Uint8Array(4))",
            "random",
            "crypto.getRandomValues()",
        ),
        ("setTimeout(() => {}, 10)", "sleep", "setTimeout()"),
        ("ctx.sleep(10)", "sleep", "ctx.sleep()"),
    ];
    for (expr, kind, call) in cases {
        let e = load(&format!("export default () => {expr};"));
        let err = e.call(&Value::Null).unwrap_err();
        assert_eq!(
            err,
            Error::HostCall {
                kind: kind.into(),
                call: call.into()
            },
            "{expr}"
        );
        assert!(
            err.to_string()
                .contains(&format!("{call} is a host call ({kind})")),
            "{err}"
        );
        // what JavaScript sees names the call too; catching it does not make the call pass
        let e = load(&format!(
            "export default () => {{ try {{ {expr}; return 'passed'; }} catch (e) {{ return e.name + ': ' + e.message; }} }};"
        ));
        assert_eq!(
            e.call(&Value::Null).unwrap_err(),
            Error::HostCall {
                kind: kind.into(),
                call: call.into()
            }
        );
    }
    // refused during the module's evaluation too
    let err = Evaluator::new(
        "const t = Date.now(); export default () => t;",
        &Limits::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, Error::HostCall { kind, .. } if kind == "now"),
        "{err}"
    );
    // GC-timing-dependent built-ins are gone
    let e = load("export default () => [typeof WeakRef, typeof FinalizationRegistry];");
    assert_eq!(
        e.call(&Value::Null).unwrap(),
        json!(["undefined", "undefined"])
    );
}

#[test]
fn an_infinite_loop_is_interrupted_and_the_next_call_starts_from_a_fresh_realm() {
    let mut limits = Limits::default();
    limits.cpu_slice_ms = 50;
    let e = Evaluator::new(
        "let calls = 0; export default async (x) => { calls++; if (x.spin) { while (true) {} } if (x.spinLater) { await null; for (;;) {} } return calls; };",
        &limits,
    )
    .unwrap();
    assert_eq!(e.call(&json!({})).unwrap(), json!(1));
    assert_eq!(e.call(&json!({})).unwrap(), json!(2));
    let err = e.call(&json!({"spin": true})).unwrap_err();
    assert_eq!(err, Error::Timeout { limit_ms: 50 });
    assert_eq!(
        e.call(&json!({})).unwrap(),
        json!(1),
        "module state was reset"
    );
    let err = e.call(&json!({"spinLater": true})).unwrap_err();
    assert_eq!(err, Error::Timeout { limit_ms: 50 }, "in a promise job too");
    assert_eq!(e.call(&json!({})).unwrap(), json!(1));
    // a module whose top level never ends fails to load
    let err = Evaluator::new("for (;;) {} export default () => 1;", &limits).unwrap_err();
    assert_eq!(err, Error::Timeout { limit_ms: 50 });
}

#[test]
fn memory_and_stack_limits_end_the_call_not_the_evaluator() {
    let mut limits = Limits::default();
    limits.memory_bytes = 8 << 20;
    let e = Evaluator::new(
        "const f = (n) => f(n + 1) + 1; export default (x) => { if (x === 'deep') return f(0); if (x === 'big') { const a = []; for (;;) a.push('x'.repeat(1000) + a.length); } return 'ok'; };",
        &limits,
    )
    .unwrap();
    assert!(matches!(
        e.call(&json!("deep")).unwrap_err(),
        Error::StackLimit { .. }
    ));
    assert!(matches!(
        e.call(&json!("big")).unwrap_err(),
        Error::MemoryLimit { .. }
    ));
    assert_eq!(e.call(&json!("x")).unwrap(), json!("ok"));
}

#[test]
fn thrown_errors_rejections_and_bad_results_are_reported() {
    let e = load(
        "export default async (x) => { if (x === 'throw') throw new RangeError('too far: ' + x); if (x === 'reject') return Promise.reject(new Error('no')); if (x === 'fn') return { f() {} }; if (x === 'never') return new Promise(() => {}); if (x === 'cycle') { const o = {}; o.o = o; return o; } throw 'a string'; };",
    );
    match e.call(&json!("throw")).unwrap_err() {
        Error::Js(js) => {
            assert_eq!(
                (js.name.as_str(), js.message.as_str()),
                ("RangeError", "too far: throw")
            );
        }
        other => panic!("{other:?}"),
    }
    let err = e.call(&json!("reject")).unwrap_err();
    assert!(
        matches!(&err, Error::Js(js) if js.message == "no"),
        "{err:?}"
    );
    let err = e.call(&json!("other")).unwrap_err();
    assert!(
        matches!(&err, Error::Js(js) if js.message == "a string"),
        "{err:?}"
    );
    let err = e.call(&json!("fn")).unwrap_err();
    assert!(err.to_string().contains("key \"f\" is a function"), "{err}");
    let err = e.call(&json!("cycle")).unwrap_err();
    assert!(err.to_string().contains("cycle"), "{err}");
    assert_eq!(e.call(&json!("never")).unwrap_err(), Error::Stalled);
}

#[test]
fn a_module_that_does_not_load_is_an_error_of_new() {
    let err = Evaluator::new("export default (x) => x +;", &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Js(js) if js.name == "SyntaxError" && js.line == Some(1)),
        "{err:?}"
    );
    let err = Evaluator::new("throw new Error('at the top');", &Limits::default()).unwrap_err();
    assert!(
        matches!(&err, Error::Js(js) if js.message == "at the top"),
        "{err:?}"
    );
    let err = Evaluator::new("export default 42;", &Limits::default()).unwrap_err();
    assert!(
        err.to_string()
            .contains("a default export that is a function"),
        "{err}"
    );
    let err = Evaluator::new(
        "import x from 'other'; export default () => x;",
        &Limits::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("other"), "{err}");
}

#[test]
fn one_evaluator_is_shared_by_threads_whose_calls_take_turns() {
    let e = Arc::new(load(
        "let n = 0; export default (x) => { n++; return x * 2; };",
    ));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let e = e.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    assert_eq!(
                        e.call(&json!(t * 100 + i)).unwrap(),
                        json!((t * 100 + i) * 2)
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let counted = Evaluator::new("export default () => 1;", &Limits::default()).unwrap();
    drop(counted); // ends its thread (joined by drop)
}
