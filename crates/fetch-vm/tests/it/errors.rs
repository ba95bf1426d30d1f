//! Errors and limits: JS exceptions, syntax errors, bad input, resource limits, non-determinism.

use sequential_fetch_vm::{CallResult, Error, Limits, Mode, Options, Session, Step};
use serde_json::{Value, json};

use crate::harness::{Order, both, both_with, world};

fn failure(code: &str) -> Error {
    failure_with(code, &Options::default())
}

fn failure_with(code: &str, options: &Options) -> Error {
    match both_with(code, &json!(null), options, Order::Fifo, &mut world).end {
        Step::Failed(e) => e,
        other => panic!("expected a failure, got {other:?}"),
    }
}

fn js(e: &Error) -> &sequential_fetch_vm::JsError {
    match e {
        Error::Js(js) => js,
        other => panic!("expected a JS error, got {other:?}"),
    }
}

fn limits(f: impl FnOnce(&mut Limits)) -> Options {
    let mut options = Options::default();
    f(&mut options.limits);
    options
}

#[test]
fn syntax_errors_report_line_and_column() {
    let e = failure("const a = 1;\nconst b = fetch(\"https://x.test\");\nconst = 3;\n");
    let js = js(&e);
    assert_eq!(js.name, "SyntaxError", "{js:?}");
    assert_eq!(js.line, Some(3), "{js:?}");
    assert!(js.column.is_some(), "{js:?}");
    let e = failure("export default async function () {\n  return (1 +;\n}");
    let js = self::js(&e);
    assert_eq!(js.name, "SyntaxError");
    assert_eq!(js.line, Some(2), "{js:?}");
}

#[test]
fn thrown_errors_have_name_message_and_stack() {
    let e = failure(
        "const u = fetch('https://x.test/users/1');\nfunction check(u) { throw new RangeError(`bad user ${u.name}`) }\ncheck(u)",
    );
    let thrown = js(&e);
    assert_eq!(
        (thrown.name.as_str(), thrown.message.as_str()),
        ("RangeError", "bad user Alice")
    );
    assert!(
        thrown.stack.as_deref().unwrap_or("").contains("check"),
        "{thrown:?}"
    );
    let info = e.to_info();
    assert_eq!(info.name, "RangeError");
    let e = failure(
        "export default async function () { await fetch('https://x.test/1'); throw { code: 7 } }",
    );
    assert_eq!(js(&e).message, "{\"code\":7}");
    let e = failure("throw 'plain'");
    assert_eq!(js(&e).message, "plain");
}

/// A script's bytecode is kept once compiled (the next runs of the same text load it): a run
/// from the kept bytecode throws with the same name, message and stack (file, line, column) as
/// the run that compiled it; a script that does not compile is refused the same way every time.
#[test]
fn a_script_run_again_from_its_kept_bytecode_fails_exactly_as_when_compiled() {
    // text of its own, so no other test of this process compiled it first
    let code = "const u = fetch('https://x.test/users/1');\n\nfunction kept(u) {\n  throw new TypeError(`kept ${u.name}`);\n}\nkept(u) // a_script_run_again";
    let first = failure(code);
    let stack = js(&first).stack.as_deref().unwrap_or("");
    assert!(stack.contains("at kept (task.js:4:"), "{first:?}");
    for _ in 0..2 {
        let again = failure(code);
        assert_eq!(js(&again), js(&first));
    }
    let broken = "const ok = 1;\nconst = 2; // a_script_run_again";
    let first = failure(broken);
    assert_eq!(
        (js(&first).name.as_str(), js(&first).line),
        ("SyntaxError", Some(2))
    );
    assert_eq!(js(&failure(broken)), js(&first));
}

#[test]
fn uncaught_fetch_error_fails_the_run_identically_on_replay() {
    let e = failure("fetch('https://x.test/users/1');\nfetch('https://x.test/status/500')");
    let js = js(&e);
    assert_eq!(js.name, "FetchError");
    assert!(js.message.contains("HTTP 500"), "{js:?}");
}

#[test]
fn fetch_rejects_non_string_urls_and_other_schemes() {
    for code in ["fetch(42)", "fetch({ url: 'https://x' })", "fetch(null)"] {
        let e = failure(code);
        assert_eq!(js(&e).name, "TypeError", "{code}: {e:?}");
        assert!(js(&e).message.contains("must be a string"), "{e}");
    }
    for code in ["fetch('file:///etc/passwd')", "fetch('ftp://x.test/a')"] {
        let e = failure(code);
        assert_eq!(js(&e).name, "TypeError", "{code}");
        assert!(
            js(&e)
                .message
                .contains("only http:, https:, data: and relative"),
            "{e}"
        );
    }
    let run = both(
        "let m; try { fetch('file:///x') } catch (e) { m = e.name } m",
        json!(null),
    );
    assert_eq!(run.end, Step::Completed(json!("TypeError")));
    assert!(run.journal.is_empty());
}

#[test]
fn results_that_are_not_json_are_refused() {
    for (code, needle) in [
        ("(() => 1)", "function"),
        ("({ a: 1, f() {} })", "key \"f\" is a function"),
        ("const o = {}; o.self = o; o", "cycle"),
        ("({ n: 10n })", "BigInt"),
        (
            "export default async function () { return Symbol('s') }",
            "symbol",
        ),
    ] {
        let e = failure(code);
        assert!(matches!(e, Error::NotSerializable { .. }), "{code}: {e:?}");
        assert!(e.to_string().contains(needle), "{code}: {e}");
    }
}

#[test]
fn code_that_never_finishes_times_out_and_frees_its_engine() {
    let options = limits(|l| l.cpu_slice_ms = 50);
    for code in [
        "while (true) {}",
        "fetch('https://x.test/1'); for (;;) { try { while (true) {} } catch (e) {} }",
        "export default async function () { await fetch('https://x.test/1'); while (true) {} }",
    ] {
        let e = failure_with(code, &options);
        assert_eq!(e, Error::Timeout { limit_ms: 50 }, "{code}");
        assert!(e.to_string().contains("50 ms"));
    }
    // The worker can run again afterwards.
    let run = both("1 + 1", json!(null));
    assert_eq!(run.end, Step::Completed(json!(2)));
}

#[test]
fn memory_limit_is_an_error_naming_the_limit() {
    let e = failure("const s = 'x'.repeat(100 * 1024 * 1024); s.length");
    assert_eq!(
        e,
        Error::MemoryLimit {
            limit_bytes: 64 << 20
        }
    );
    assert!(e.to_string().contains(&(64u64 << 20).to_string()));
    let options = limits(|l| l.memory_bytes = 8 << 20);
    let e = failure_with(
        "const a = []; while (true) a.push({ i: a.length, s: 'y'.repeat(100) });",
        &options,
    );
    assert_eq!(
        e,
        Error::MemoryLimit {
            limit_bytes: 8 << 20
        }
    );
}

#[test]
fn deep_recursion_is_an_error_not_a_crash() {
    let e = failure("function f(n) { return f(n + 1) + 1 } f(0)");
    assert_eq!(
        e,
        Error::StackLimit {
            limit_bytes: 1 << 20
        }
    );
    let caught = both(
        "function f(n) { return f(n + 1) + 1 } let r; try { f(0) } catch (e) { r = 'caught' } r",
        json!(null),
    );
    assert_eq!(caught.end, Step::Completed(json!("caught")));
}

#[test]
fn result_request_and_journal_limits() {
    let e = failure_with("'x'.repeat(2000)", &limits(|l| l.max_result_bytes = 1000));
    assert_eq!(
        e,
        Error::ResultTooLarge {
            size: 2002,
            limit: 1000
        }
    );
    let e = failure_with(
        "fetch('https://x.test/', { body: 'y'.repeat(5000) })",
        &limits(|l| l.max_request_bytes = 4096),
    );
    assert!(
        matches!(
            e,
            Error::RequestTooLarge {
                seq: 0,
                limit: 4096,
                ..
            }
        ),
        "{e:?}"
    );
    let e = failure_with(
        "let r; try { for (let i = 0; i < 10; i++) fetch(`https://x.test/${i}`) } catch (e) { r = 'swallowed' } r",
        &limits(|l| l.max_journal_entries = 5),
    );
    assert_eq!(e, Error::JournalTooLong { limit: 5 });
}

#[test]
fn a_100_mb_string_input_is_refused_by_the_memory_limit() {
    let big = "z".repeat(100 << 20);
    let (_s, step) = Session::start(
        "input.length",
        &Value::String(big),
        vec![],
        &Options::default(),
    )
    .unwrap();
    assert_eq!(
        step,
        Step::Failed(Error::MemoryLimit {
            limit_bytes: 64 << 20
        })
    );
}

#[test]
fn replay_with_different_requests_is_non_determinism() {
    let original = "const a = fetch('https://x.test/users/1'); const b = fetch('https://x.test/users/2'); [a.name, b.name]";
    let run = both(original, json!(null));
    let journal = run.journal.clone();
    let changed = "const a = fetch('https://x.test/users/1'); const b = fetch('https://x.test/users/3'); [a.name, b.name]";
    let (_s, step) =
        Session::start(changed, &json!(null), journal.clone(), &Options::default()).unwrap();
    let Step::Failed(Error::NonDeterminism { seq, recorded, now }) = step else {
        panic!("{step:?}")
    };
    assert_eq!(seq, 1);
    assert_eq!(recorded["request"]["url"], "https://x.test/users/2");
    assert_eq!(now["request"]["url"], "https://x.test/users/3");
    // A replay that swallows the error still fails.
    let swallow = "let x; try { fetch('https://x.test/users/1'); fetch('https://x.test/other') } catch (e) { x = 1 } x";
    let (_s, step) =
        Session::start(swallow, &json!(null), journal.clone(), &Options::default()).unwrap();
    assert!(
        matches!(step, Step::Failed(Error::NonDeterminism { seq: 1, .. })),
        "{step:?}"
    );
    // Code that makes fewer calls than the journal recorded.
    let (_s, step) = Session::start(
        "fetch('https://x.test/users/1').name",
        &json!(null),
        journal,
        &Options::default(),
    )
    .unwrap();
    assert!(
        matches!(step, Step::Failed(Error::NonDeterminism { seq: 1, .. })),
        "{step:?}"
    );
}

#[test]
fn session_api_misuse_is_refused() {
    let (mut s, step) = Session::start(
        "fetch('https://x.test/a')",
        &json!(null),
        vec![],
        &Options::default(),
    )
    .unwrap();
    assert!(matches!(step, Step::Pending(ref c) if c.len() == 1));
    let err = s.complete(3, CallResult::Ok(Value::Null)).unwrap_err();
    assert_eq!(
        err,
        Error::NotPending {
            seq: 3,
            pending: vec![0]
        }
    );
    let done = s
        .complete(
            0,
            CallResult::fetch_response(200, "OK", json!({}), json!("x")),
        )
        .unwrap();
    assert_eq!(done, Step::Completed(json!("x")));
    assert_eq!(
        s.complete(0, CallResult::Ok(Value::Null)).unwrap_err(),
        Error::Ended
    );
    assert!(s.is_ended());
}

#[test]
fn dropping_a_session_ends_code_that_catches_everything() {
    let code = "while (true) { try { fetch('https://x.test/a') } catch (e) {} }";
    let (s, step) = Session::start(code, &json!(null), vec![], &Options::default()).unwrap();
    assert!(matches!(step, Step::Pending(_)));
    s.close(); // ends the code on this thread: returning at all is the assertion
}

#[test]
fn no_ambient_authority() {
    let code = "[typeof require, typeof process, typeof std, typeof os, typeof Deno, typeof XMLHttpRequest, typeof WebSocket]";
    let run = both(code, json!(null));
    assert_eq!(run.end, Step::Completed(json!(vec!["undefined"; 7])));
    let e = failure(
        "import * as std from 'std';\nexport default async function () { return std.getenv('HOME') }",
    );
    assert!(matches!(e, Error::Js(_)), "{e:?}");
    let mut options = Options::with_mode(Mode::Module);
    options.limits.cpu_slice_ms = 1000;
    let e = failure_with(
        "export default async function () { return await import('os') }",
        &options,
    );
    assert!(matches!(e, Error::Js(_)), "{e:?}");
}

#[test]
fn awaiting_a_promise_nothing_settles_is_stalled() {
    let e = failure("export default async function () { await new Promise(() => {}); return 1 }");
    assert_eq!(e, Error::Stalled);
}

#[test]
fn temporal_dead_zone_errors_are_plain_js_errors() {
    let e = failure("const a = b;\nconst b = 1;\na");
    assert_eq!(js(&e).name, "ReferenceError", "{e:?}");
}
