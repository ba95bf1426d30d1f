//! Module mode: async fetch with Response, Promise.all/race, ctx helpers, journaled clock/random.

use sequential_fetch_vm::{CallKind, Options, Step};
use serde_json::json;

use crate::harness::{Order, both, both_with, value, world};

#[test]
fn response_object_has_whatwg_shape() {
    let code = r#"
export default async function (input, ctx) {
  const r = await fetch(`https://api.example.com/users/${input.id}`);
  const t = await fetch("https://api.example.com/text");
  const bad = await fetch("https://api.example.com/status/404");
  return {
    status: r.status, ok: r.ok, statusText: r.statusText, type: r.headers.get("Content-Type"),
    name: (await r.json()).name, text: await t.text(), badOk: bad.ok, badStatus: bad.status,
    badBody: await bad.json(),
  };
}"#;
    let run = both(code, json!({"id": "1"}));
    assert_eq!(
        value(&run),
        json!({"status": 200, "ok": true, "statusText": "OK", "type": "application/json",
               "name": "Alice", "text": "hello", "badOk": false, "badStatus": 404,
               "badBody": {"error": "nope"}})
    );
}

#[test]
fn promise_all_reports_every_call_at_once() {
    let code = r#"
export default async function (input) {
  const urls = input.ids.map((id) => `https://api.example.com/users/${id}`);
  const users = await Promise.all(urls.map((u) => fetch(u).then((r) => r.json())));
  return users.map((u) => u.name);
}"#;
    let run = both(code, json!({"ids": ["1", "2", "3"]}));
    let Step::Pending(first) = &run.steps[0] else {
        panic!("expected pending")
    };
    assert_eq!(
        first.iter().map(|c| c.seq).collect::<Vec<_>>(),
        vec![0, 1, 2]
    );
    assert!(first.iter().all(|c| c.kind == CallKind::Fetch));
    assert_eq!(value(&run), json!(["Alice", "Bob", "Bob"]));
}

#[test]
fn completion_order_is_replayed_exactly() {
    // Answering the last call first changes which continuation runs first; replay must follow.
    let code = r#"
export default async function () {
  const order = [];
  const one = async (n) => { const r = await fetch(`https://x.test/${n}`); order.push(n);
                            const r2 = await fetch(`https://x.test/${n}/after/${order.length}`); return (await r2.json()).url; };
  const out = await Promise.all([one("a"), one("b"), one("c")]);
  return { order, out };
}"#;
    let run = both_with(
        code,
        &json!(null),
        &Options::default(),
        Order::Lifo,
        &mut world,
    );
    assert_eq!(value(&run)["order"], json!(["c", "b", "a"]));
    let fifo = both(code, json!(null));
    assert_eq!(value(&fifo)["order"], json!(["a", "b", "c"]));
}

#[test]
fn promise_race_reports_all_and_takes_the_first_answered() {
    let code = r#"
export default async function () {
  const winner = await Promise.race([
    fetch("https://x.test/slow").then(() => "slow"),
    ctx.sleep("5s").then(() => "timer"),
  ]);
  return winner;
}"#;
    let fifo = both(code, json!(null));
    assert_eq!(value(&fifo), json!("slow"));
    let lifo = both_with(
        code,
        &json!(null),
        &Options::default(),
        Order::Lifo,
        &mut world,
    );
    assert_eq!(value(&lifo), json!("timer"));
    let Step::Pending(first) = &fifo.steps[0] else {
        panic!()
    };
    assert_eq!(first[1].kind, CallKind::Sleep);
    assert_eq!(first[1].request, json!({"ms": 5000}));
}

#[test]
fn ctx_helpers_are_host_calls() {
    let code = r#"
export default async function (input, ctx) {
  await ctx.sleep("2d");
  const ev = await ctx.waitForEvent("approved", { timeout: "7d" });
  await ctx.emit("done", { ok: true });
  const tool = await ctx.callTool("mail.send", { to: "a@b.c" });
  const alias = await __callHostTool__("mail", "send", { to: "x" });
  const child = await ctx.runTask("child-task", { n: 1 });
  return { ev: ev.seq, tool: tool.seq, alias: alias.echo, child: child.echo };
}"#;
    let run = both(code, json!(null));
    let kinds: Vec<_> = run.journal.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            CallKind::Sleep,
            CallKind::WaitForEvent,
            CallKind::Emit,
            CallKind::Tool,
            CallKind::Tool,
            CallKind::Child
        ]
    );
    assert_eq!(run.journal[0].request, json!({"ms": 172_800_000}));
    assert_eq!(
        run.journal[1].request,
        json!({"name": "approved", "timeoutMs": 604_800_000})
    );
    let v = value(&run);
    assert_eq!(
        v["alias"],
        json!({"name": "mail.send", "service": "mail", "method": "send", "args": {"to": "x"}})
    );
    assert_eq!(v["child"], json!({"task": "child-task", "input": {"n": 1}}));
}

#[test]
fn clock_and_randomness_are_journaled() {
    let code = r#"
export default async function () {
  const a = Date.now();
  const d = new Date();
  const r = Math.random();
  const id = crypto.randomUUID();
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  const explicit = new Date(0).toISOString();
  return { a, d: d.getTime(), r: r >= 0 && r < 1, id, bytes: Array.from(bytes), explicit };
}"#;
    let run = both(code, json!(null));
    let v = value(&run);
    assert_eq!(v["a"], json!(1_700_000_000_000u64));
    assert_eq!(v["d"], json!(1_700_000_001_000u64));
    assert_eq!(v["r"], json!(true));
    assert_eq!(v["id"], json!("03040506-0708-490a-8b0c-0d0e0f101112"));
    assert_eq!(v["bytes"], json!([4, 5, 6, 7]));
    assert_eq!(v["explicit"], json!("1970-01-01T00:00:00.000Z"));
    let kinds: Vec<_> = run.journal.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            CallKind::Now,
            CallKind::Now,
            CallKind::Random,
            CallKind::Random,
            CallKind::Random
        ]
    );
}

#[test]
fn console_is_journaled_once() {
    let code = r#"
export default async function () {
  console.log("start", { a: 1 });
  const r = await fetch("https://x.test/1");
  console.warn("got", r.status);
  const r2 = await fetch("https://x.test/2");
  console.error(new TypeError("boom"));
  return r2.status;
}"#;
    let run = both(code, json!(null));
    let logs: Vec<_> = run
        .journal
        .iter()
        .filter(|e| e.kind == CallKind::Log)
        .map(|e| e.request.clone())
        .collect();
    assert_eq!(
        logs,
        vec![
            json!({"level": "log", "message": "start {\"a\":1}"}),
            json!({"level": "warn", "message": "got 200"}),
            json!({"level": "error", "message": "TypeError: boom"}),
        ]
    );
    assert_eq!(run.journal.len(), 5);
}

#[test]
fn set_timeout_is_a_durable_sleep() {
    let code = r#"
export default async function () {
  let retries = 0;
  while (true) {
    const r = await fetch(`https://x.test/status/${retries < 2 ? 503 : 200}`);
    if (r.ok) break;
    retries++;
    await new Promise((res) => setTimeout(res, 1000 * retries));
  }
  return retries;
}"#;
    let run = both(code, json!(null));
    assert_eq!(value(&run), json!(2));
    let sleeps: Vec<_> = run
        .journal
        .iter()
        .filter(|e| e.kind == CallKind::Sleep)
        .map(|e| e.request["ms"].clone())
        .collect();
    assert_eq!(sleeps, vec![json!(1000), json!(2000)]);
}

#[test]
fn entry_may_be_named_after_the_task() {
    let code =
        "export async function myEmails(input) { return input * 2 }\nexport const helper = 1;";
    let mut options = Options::default();
    options.task_name = Some("my-emails".into());
    let run = both_with(code, &json!(21), &options, Order::Fifo, &mut world);
    assert_eq!(value(&run), json!(42));
    let snake = "export function my_emails(input) { return input + 1 }\nexport function other() {}";
    let run = both_with(snake, &json!(1), &options, Order::Fifo, &mut world);
    assert_eq!(value(&run), json!(2));
}

#[test]
fn web_apis_exist() {
    let code = r#"
export default async function () {
  const u = new URL("https://api.example.com:8080/a/b?x=1&y=two#h");
  u.searchParams.append("z", "3 4");
  const h = new Headers({ "X-A": "1" }); h.append("x-a", "2");
  const bytes = new TextEncoder().encode("héllo");
  return {
    host: u.host, path: u.pathname, x: u.searchParams.get("x"), href: u.href,
    h: h.get("x-a"), len: bytes.length, back: new TextDecoder().decode(bytes),
    b64: btoa("hi!"), un: atob("aGkh"), clone: structuredClone({ a: [1, { b: 2 }] }),
    qs: new URLSearchParams({ a: "1", b: "x y" }).toString(),
  };
}"#;
    let run = both(code, json!(null));
    assert_eq!(
        value(&run),
        json!({"host": "api.example.com:8080", "path": "/a/b", "x": "1",
               "href": "https://api.example.com:8080/a/b?x=1&y=two&z=3+4#h", "h": "1, 2", "len": 6,
               "back": "héllo", "b64": "aGkh", "un": "hi!", "clone": {"a": [1, {"b": 2}]},
               "qs": "a=1&b=x+y"})
    );
}

/// The web classes are built from what the prelude captured before any task code ran: code
/// that replaces the globals they use before their first use does not break them.
#[test]
fn web_apis_work_after_the_globals_they_use_are_replaced() {
    let code = r#"
export default async function () {
  globalThis.Map = function () { throw new Error("hijacked Map"); };
  globalThis.Date = null;
  const h = new Headers([["A", "1"]]); h.set("b", "2");
  const c = structuredClone({ m: new (Object.getPrototypeOf(new Headers()._m).constructor)([[1, 2]]) });
  return { a: h.get("a"), keys: [...h.keys()], size: c.m.size, ok: new AbortController().signal.aborted };
}"#;
    let run = both(code, json!(null));
    assert_eq!(
        value(&run),
        json!({"a": "1", "keys": ["a", "b"], "size": 1, "ok": false})
    );
}

#[test]
fn no_unjournaled_clock_or_gc_observation() {
    let run = both(
        "[performance.now(), typeof WeakRef, typeof FinalizationRegistry, typeof Date.now()]",
        json!(null),
    );
    assert_eq!(
        value(&run),
        json!([1_700_000_000_000u64, "undefined", "undefined", "number"])
    );
    assert_eq!(run.journal[0].kind, CallKind::Now);
}

#[test]
fn async_results_answered_while_a_sync_call_waits_replay_exactly() {
    // While Date.now() blocks, the fetch is pending too; answering the fetch first applies it
    // during the blocked call. Replay must apply it at the same point.
    let code = r#"
export default async function () {
  const order = [];
  const p = fetch("https://x.test/a").then(() => order.push("fetch"));
  const t = Date.now();
  order.push("now");
  await p;
  const r = Math.random();
  order.push("random");
  return { order, t, r: r < 1 };
}"#;
    for order in [Order::Fifo, Order::Lifo] {
        let run = both_with(code, &json!(null), &Options::default(), order, &mut world);
        let Step::Pending(first) = &run.steps[0] else {
            panic!()
        };
        assert_eq!(
            first.iter().map(|c| c.kind).collect::<Vec<_>>(),
            vec![CallKind::Fetch, CallKind::Now]
        );
        assert_eq!(
            value(&run)["order"],
            json!(["now", "fetch", "random"]),
            "{order:?}"
        );
        let applied: Vec<_> = run.journal.iter().map(|e| e.seq).collect();
        let want = if order == Order::Fifo {
            vec![0, 1, 2]
        } else {
            vec![1, 0, 2]
        };
        assert_eq!(applied, want, "{order:?}");
    }
}

#[test]
fn a_module_run_again_starts_from_fresh_state_with_the_same_stack() {
    // the second and later runs load the module's cached bytecode: module bindings, globals and
    // the source text (toString) must be as fresh and whole as on the first, parsed run
    let code = r#"let calls = 0;
globalThis.seen = (globalThis.seen ?? 0) + 1;
function where() { return new Error("here").stack; }
export default async function (input) {
  calls += 1;
  const r = await fetch(`https://api.example.com/users/${input.id}`);
  return { calls, seen: globalThis.seen, name: (await r.json()).name, stack: where(), text: where.toString() };
}"#;
    for _ in 0..3 {
        let v = value(&both(code, json!({"id": "1"})));
        assert_eq!((&v["calls"], &v["seen"]), (&json!(1), &json!(1)), "{v}");
        assert_eq!(v["name"], "Alice");
        let stack = v["stack"].as_str().unwrap_or_default();
        assert!(stack.contains("task.js:3"), "{stack}");
        assert_eq!(
            v["text"],
            r#"function where() { return new Error("here").stack; }"#
        );
    }
}
