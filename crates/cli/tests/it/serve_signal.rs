//! `ctx.signal` over HTTP: `POST /runs/:id/_kill` fires it in the running handler and aborts the
//! slow fetch it was passed (HOST-API.md §4.7 point 7).

use std::time::Duration;

use sequential_test_support::http::CountingServer;
use serde_json::json;

use crate::serve::{Server, upload};
use crate::util::Sandbox;

#[test]
fn kill_over_http_fires_ctx_signal_and_aborts_the_in_flight_fetch() {
    let counting = CountingServer::start();
    let sb = Sandbox::new();
    let s = Server::start(&sb, &[], &[]);
    let path = "/hang-once/7";
    let code = format!(
        "export default async function (input, ctx) {{
  ctx.signal.addEventListener('abort', () => console.log('aborted:', ctx.signal.reason.name, ctx.signal.reason.message));
  try {{
    await fetch('{}{path}', {{ signal: ctx.signal }});
    return 'fetched';
  }} catch (e) {{
    console.log('fetch rejected:', e.name);
    return 'caught';
  }}
}}
",
        counting.url()
    );
    upload(&s, "hangs", &code);
    let (st, run) = s.post("/api/v1/tasks/hangs/runs", json!({ "input": {} }));
    assert_eq!(st, 202, "{run}");
    let id = run["id"].as_str().unwrap().to_string();
    let mut waited = 0;
    while counting.count(path) == 0 {
        assert!(
            waited < 3000,
            "the run never fetched {path}: {}",
            s.stderr()
        );
        std::thread::sleep(Duration::from_millis(10));
        waited += 1;
    }
    let (st, killed) = s.post(&format!("/api/v1/runs/{id}/_kill"), json!({}));
    assert_eq!(
        (st, killed["status"].as_str()),
        (202, Some("cancelled")),
        "{killed}"
    );
    let (st, journal) = s.get(&format!("/api/v1/runs/{id}/journal"));
    assert_eq!(st, 200, "{journal}");
    let items = journal["items"].as_array().unwrap();
    let logs: Vec<&str> = items
        .iter()
        .filter(|r| r["kind"] == "log")
        .filter_map(|r| r["data"]["request"]["message"].as_str())
        .collect();
    assert_eq!(
        logs,
        vec![
            "aborted: AbortError the run was killed",
            "fetch rejected: AbortError"
        ],
        "{journal}"
    );
    assert_eq!(items.last().unwrap()["kind"], "run.cancelled", "{journal}");
    assert!(
        items
            .iter()
            .any(|r| r["kind"] == "call.completed" && r["data"]["kind"] == "abort"),
        "the abort is journaled: {journal}"
    );
    assert_eq!(counting.count(path), 1);
}
