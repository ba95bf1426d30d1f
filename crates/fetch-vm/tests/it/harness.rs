//! Drives sessions hot (one live session) and cold (a fresh session per step) and compares them.

use sequential_fetch_vm::{CallKind, CallResult, HostCall, Journal, Options, Session, Step};
use serde_json::{Value, json};

/// A run driven to its end: every step seen, the final step, the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub steps: Vec<Step>,
    pub end: Step,
    pub journal: Journal,
}

/// Which pending call to answer next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Order {
    /// The lowest seq first.
    Fifo,
    /// The highest seq first.
    Lifo,
}

fn pick(calls: &[HostCall], order: Order) -> &HostCall {
    match order {
        Order::Fifo => &calls[0],
        Order::Lifo => &calls[calls.len() - 1],
    }
}

/// One live session; every result handed to it with `complete`.
pub fn hot(
    code: &str,
    input: &Value,
    options: &Options,
    order: Order,
    world: &mut dyn FnMut(&HostCall) -> CallResult,
) -> Run {
    let (mut session, mut step) = Session::start(code, input, vec![], options).expect("start");
    let mut steps = vec![step.clone()];
    let mut guard = 0;
    while let Step::Pending(calls) = &step {
        guard += 1;
        assert!(guard < 10_000, "runaway test");
        let call = pick(calls, order).clone();
        step = session.complete(call.seq, world(&call)).expect("complete");
        steps.push(step.clone());
    }
    Run {
        steps,
        end: step,
        journal: session.journal().clone(),
    }
}

/// A fresh session per step: replay the journal, answer one call, keep the journal, drop it.
pub fn cold(
    code: &str,
    input: &Value,
    options: &Options,
    order: Order,
    world: &mut dyn FnMut(&HostCall) -> CallResult,
) -> Run {
    let mut journal: Journal = vec![];
    let mut steps = vec![];
    let mut guard = 0;
    loop {
        guard += 1;
        assert!(guard < 10_000, "runaway test");
        let (mut session, step) =
            Session::start(code, input, journal.clone(), options).expect("start");
        if steps.is_empty() {
            steps.push(step.clone());
        } else {
            assert_eq!(
                Some(&step),
                steps.last(),
                "a cold replay must reproduce the last step"
            );
        }
        let Step::Pending(calls) = &step else {
            return Run {
                steps,
                end: step,
                journal: session.journal().clone(),
            };
        };
        let call = pick(calls, order).clone();
        let next = session.complete(call.seq, world(&call)).expect("complete");
        steps.push(next.clone());
        journal = session.journal().clone();
        if !matches!(next, Step::Pending(_)) {
            return Run {
                steps,
                end: next,
                journal,
            };
        }
    }
}

/// Runs hot and cold, asserts they agree byte for byte, returns the run.
pub fn both_with(
    code: &str,
    input: &Value,
    options: &Options,
    order: Order,
    world: &mut dyn FnMut(&HostCall) -> CallResult,
) -> Run {
    let h = hot(code, input, options, order, world);
    let c = cold(code, input, options, order, world);
    assert_eq!(h.steps, c.steps, "hot and cold steps differ");
    assert_eq!(h.end, c.end, "hot and cold results differ");
    assert_eq!(
        serde_json::to_string(&h.journal).unwrap(),
        serde_json::to_string(&c.journal).unwrap(),
        "hot and cold journals differ"
    );
    h
}

/// [`both_with`] with default options, FIFO order and the [`world`] host.
pub fn both(code: &str, input: Value) -> Run {
    both_with(code, &input, &Options::default(), Order::Fifo, &mut world)
}

/// The end value, or a panic showing the failure.
pub fn value(run: &Run) -> Value {
    match &run.end {
        Step::Completed(v) => v.clone(),
        other => panic!("expected completion, got {other:?}"),
    }
}

/// A deterministic fake world.
///
/// fetch: `…/echo` echoes the request; `…/status/N` answers status N; `…/users/ID` a user;
/// `…/posts?…` five posts; `…/text` a text body; `…/fail` a network error; anything else
/// `{url}`. now: 1700000000000 + 1000·seq. random: bytes `seq, seq+1, …`. Others: echo.
pub fn world(call: &HostCall) -> CallResult {
    match call.kind {
        CallKind::Fetch => {
            let url = call.request["url"].as_str().unwrap_or_default().to_owned();
            if url.ends_with("/fail") {
                return CallResult::Error(sequential_fetch_vm::ErrorInfo::new(
                    "FetchError",
                    "connection refused",
                ));
            }
            if let Some(pos) = url.find("/status/") {
                let status: u16 = url[pos + 8..].parse().unwrap_or(500);
                return CallResult::fetch_response(
                    status,
                    "Teapot",
                    json!({"content-type": "application/json"}),
                    json!("{\"error\":\"nope\"}"),
                );
            }
            if url.ends_with("/text") {
                return CallResult::fetch_response(
                    200,
                    "OK",
                    json!({"content-type": "text/plain"}),
                    json!("hello"),
                );
            }
            if let Some(pos) = url.find("/users/") {
                let id = &url[pos + 7..];
                return CallResult::fetch_response(
                    200,
                    "OK",
                    json!({"content-type": "application/json"}),
                    json!({"id": id, "name": if id == "1" { "Alice" } else { "Bob" }}),
                );
            }
            if url.contains("/posts") {
                return CallResult::fetch_response(200, "OK", json!({}), json!([1, 2, 3, 4, 5]));
            }
            if url.ends_with("/echo") {
                return CallResult::fetch_response(
                    200,
                    "OK",
                    json!({}),
                    json!({"seq": call.seq, "request": call.request}),
                );
            }
            CallResult::fetch_response(200, "OK", json!({}), json!({"url": url, "seq": call.seq}))
        }
        CallKind::Now => CallResult::Ok(json!(1_700_000_000_000u64 + 1000 * call.seq)),
        CallKind::Random => {
            let n = call.request["bytes"].as_u64().unwrap_or(0);
            let hex: String = (0..n)
                .map(|i| format!("{:02x}", (call.seq + i) as u8))
                .collect();
            CallResult::Ok(json!(hex))
        }
        CallKind::Sleep | CallKind::Emit => CallResult::Ok(Value::Null),
        _ => CallResult::Ok(json!({"echo": call.request, "seq": call.seq})),
    }
}

/// Runs `body` alone in a child process of this test binary (so that what it counts — threads,
/// engines made — is its own) and returns the child's standard output; `None` in the child
/// itself. `test` is the calling test's name and `var` the variable that marks the child.
pub fn alone(module: &str, test: &str, var: &str, body: fn()) -> Option<String> {
    use sequential_test_support::child;
    if child::role(var).is_some() {
        body();
        return None;
    }
    let out = child::relaunch(child::test_path(module, test), var, "1")
        .output()
        .expect("spawn the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(stdout)
}
