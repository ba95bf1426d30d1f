//! Durations in `ctx.sleep` and `ctx.waitForEvent` timeouts: the one grammar of
//! `sequential-support`, journaled as milliseconds.

use sequential_fetch_vm::{CallKind, CallResult, Error, JournalEntry, Options, Session, Step};
use serde_json::{Value, json};

use crate::harness::{both, value};

/// The request `ctx.sleep(arg)` journals, in script and in module mode.
fn slept(arg: &str) -> Vec<Value> {
    let script = both(&format!("ctx.sleep({arg}); 1"), json!(null));
    let module = both(
        &format!("export default async function (i, ctx) {{ await ctx.sleep({arg}); return 1; }}"),
        json!(null),
    );
    [script, module]
        .iter()
        .map(|run| {
            assert_eq!(value(run), json!(1), "{arg}");
            assert_eq!(run.journal.len(), 1, "{arg}");
            assert_eq!(run.journal[0].kind, CallKind::Sleep, "{arg}");
            run.journal[0].request.clone()
        })
        .collect()
}

#[test]
fn ctx_sleep_reads_weeks_long_units_and_combinations() {
    for (arg, ms) in [
        (r#""1w""#, 604_800_000u64),
        (r#""1 week""#, 604_800_000),
        (r#""1h 30m""#, 5_400_000),
        (r#""1.5s""#, 1_500),
        (r#""250ms""#, 250),
        (r#""250""#, 250),
        ("250", 250),
        ("1.4", 1),
    ] {
        assert_eq!(slept(arg), vec![json!({ "ms": ms }); 2], "ctx.sleep({arg})");
    }
}

#[test]
fn wait_for_event_timeouts_read_the_same_grammar() {
    let run = both(
        "export default async function (i, ctx) { return await ctx.waitForEvent('go', { timeout: '1h 30m' }); }",
        json!(null),
    );
    assert_eq!(
        run.journal[0].request,
        json!({ "name": "go", "timeoutMs": 5_400_000 })
    );
}

#[test]
fn a_bad_duration_is_a_type_error_naming_the_caller_the_forms_and_the_value() {
    for (code, what, shown) in [
        ("ctx.sleep('soon')", "ctx.sleep", "soon"),
        ("ctx.sleep('3 months')", "ctx.sleep", "3 months"),
        ("ctx.sleep(-5)", "ctx.sleep", "-5"),
        ("ctx.sleep(null)", "ctx.sleep", "null"),
        (
            "ctx.waitForEvent('go', { timeout: {} })",
            "ctx.waitForEvent timeout",
            "{}",
        ),
    ] {
        let run = both(code, json!(null));
        let Step::Failed(Error::Js(e)) = &run.end else {
            panic!("{code}: {:?}", run.end)
        };
        assert_eq!(e.name, "TypeError", "{code}");
        assert!(
            e.message
                .starts_with(&format!("{what}: expected milliseconds"))
                && e.message.contains("1h 30m")
                && e.message.ends_with(&format!(", got {shown}")),
            "{code}: {}",
            e.message
        );
        assert!(run.journal.is_empty(), "{code}: nothing was journaled");
    }
    // and it can be caught like any TypeError
    let run = both(
        "let m; try { ctx.sleep('soon') } catch (e) { m = e instanceof TypeError } m",
        json!(null),
    );
    assert_eq!(value(&run), json!(true));
}

#[test]
fn a_journal_written_before_the_grammar_changed_replays_unchanged() {
    // what earlier versions journaled for ctx.sleep("2h") and ctx.sleep(90000)
    let journal = vec![
        JournalEntry {
            seq: 0,
            kind: CallKind::Sleep,
            request: json!({ "ms": 7_200_000 }),
            result: CallResult::Ok(Value::Null),
        },
        JournalEntry {
            seq: 1,
            kind: CallKind::Sleep,
            request: json!({ "ms": 90_000 }),
            result: CallResult::Ok(Value::Null),
        },
    ];
    let code = "ctx.sleep('2h'); ctx.sleep('1m 30s'); 'done'";
    let (_s, step) = Session::start(code, &json!(null), journal, &Options::default()).unwrap();
    assert_eq!(step, Step::Completed(json!("done")));
}
