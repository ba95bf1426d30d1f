//! `ctx.signal`: a kill (or a stop whose timeout expired) fires it in the running code, aborts
//! the fetches it was passed to, and is journaled, so a replay meets the abort where the code did.

use std::time::Duration;

use sequential_adaptor::{Run, RunStatus};
use sequential_tasker_engine::StartOptions;
use sequential_test_support::http::CountingServer;
use serde_json::{Value, json};

use crate::{Fixture, backends, fixture, task};

/// A task that listens on `ctx.signal` and fetches `path` with it; it logs what it sees.
fn listening_task(url: &str, path: &str) -> String {
    format!(
        "export default async function (input, ctx) {{
  ctx.signal.addEventListener('abort', (e) => console.log('listener', e.type, ctx.signal.aborted, ctx.signal.reason.name, ctx.signal.reason.message));
  console.log('before', ctx.signal.aborted);
  try {{
    await fetch('{url}{path}', {{ signal: ctx.signal }});
    return 'finished';
  }} catch (e) {{
    console.log('caught', e.name, e.message, e === ctx.signal.reason);
    return 'caught';
  }}
}}"
    )
}

/// The console lines of a run's journal.
async fn logs(f: &Fixture, run: &Run) -> Vec<String> {
    f.engine
        .read_all(run.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "log")
        .map(|r| {
            r.data["request"]["message"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect()
}

/// Starts `task` and drives it in the background until the server has seen `path`.
async fn drive_until_fetching(
    f: &Fixture,
    server: &CountingServer,
    name: &str,
    code: &str,
    path: &str,
) -> (Run, tokio::task::JoinHandle<Run>) {
    let t = task(f, name, code).await;
    let run = f
        .engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let engine = f.engine.clone();
    let id = run.id;
    let driving = tokio::spawn(async move { engine.run_until_settled(id, None).await.unwrap() });
    for _ in 0..2000 {
        if server.count(path) > 0 {
            return (run, driving);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("the run never fetched {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_fires_ctx_signal_and_the_fetch_passed_it_rejects_with_an_abort_error() {
    let server = CountingServer::start();
    for (backend, f) in backends() {
        server.clear();
        let path = "/hang-once/1";
        let code = listening_task(server.url(), path);
        let (run, driving) = drive_until_fetching(&f, &server, "killed", &code, path).await;
        let killed = f.engine.kill(run.id).await.unwrap();
        assert_eq!(killed.status, RunStatus::Cancelled, "{backend}: {killed:?}");
        let settled = driving.await.unwrap();
        assert_eq!(settled.status, RunStatus::Cancelled, "{backend}");
        assert_eq!(settled.error.as_ref().unwrap()["name"], "Cancelled");
        assert_eq!(
            logs(&f, &run).await,
            vec![
                "before false",
                "listener abort true AbortError the run was killed",
                "caught AbortError the run was killed true",
            ],
            "{backend}"
        );
        let journal = f.engine.read_all(run.id).await.unwrap();
        let kinds: Vec<&str> = journal.iter().map(|r| r.kind.as_str()).collect();
        assert_eq!(kinds.last(), Some(&"run.cancelled"), "{backend}: {kinds:?}");
        assert_eq!(
            kinds.iter().filter(|k| **k == "run.cancelled").count(),
            1,
            "{backend}: {kinds:?}"
        );
        // the abort is a journaled fact: the answer to the code's `abort` call
        let abort = journal
            .iter()
            .find(|r| r.kind == "call.completed" && r.data["kind"] == "abort")
            .unwrap_or_else(|| panic!("{backend}: no abort record in {kinds:?}"));
        assert_eq!(
            abort.data["result"]["ok"],
            json!({"name": "AbortError", "message": "the run was killed"}),
            "{backend}: {}",
            abort.data
        );
        assert_eq!(server.count(path), 1, "{backend}");
        // a second kill finds the run ended
        let again = f.engine.kill(run.id).await.unwrap_err();
        assert!(
            again.to_string().contains("cancelled"),
            "{backend}: {again}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_meets_the_abort_where_the_code_did_and_fetches_nothing() {
    let server = CountingServer::start();
    let f = fixture("sqlite");
    let path = "/hang-once/2";
    let code = listening_task(server.url(), path);
    let (run, driving) = drive_until_fetching(&f, &server, "replayed", &code, path).await;
    f.engine.kill(run.id).await.unwrap();
    driving.await.unwrap();
    let first = logs(&f, &run).await;
    // the whole journal but the end, replayed by a new run: the code meets the abort at the
    // same point, catches it the same way, and finishes without fetching again
    let len = f.engine.read_all(run.id).await.unwrap().len() as u64;
    let again = f.engine.rerun(run.id, len).await.unwrap();
    let again = f.engine.run_until_settled(again.id, None).await.unwrap();
    assert_eq!(again.status, RunStatus::Succeeded, "{again:?}");
    assert_eq!(again.output, Some(json!("caught")));
    assert_eq!(logs(&f, &again).await, first);
    assert_eq!(server.count(path), 1, "the aborted fetch was not repeated");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_that_times_out_fires_the_signal_and_one_in_time_does_not() {
    let server = CountingServer::start();
    let f = fixture("sqlite");
    // the step outlives the stop timeout: the signal fires with the timeout as its reason
    let path = "/hang-once/3";
    let code = listening_task(server.url(), path);
    let (run, driving) = drive_until_fetching(&f, &server, "stopped", &code, path).await;
    let stopped = f
        .engine
        .cancel(run.id, Duration::from_millis(300))
        .await
        .unwrap();
    assert_eq!(stopped.status, RunStatus::Cancelled, "{stopped:?}");
    driving.await.unwrap();
    let lines = logs(&f, &run).await;
    assert_eq!(
        lines.get(1).map(String::as_str),
        Some("listener abort true AbortError the run did not stop within its 300 ms stop timeout"),
        "{lines:?}"
    );
    // the step ends within the timeout: the run is cancelled at the step boundary, unaborted
    let path = "/slow/300/4";
    let code = format!(
        "export default async function (input, ctx) {{
  ctx.signal.addEventListener('abort', () => console.log('aborted'));
  await fetch('{}{path}', {{ signal: ctx.signal }});
  console.log('fetched');
  await fetch('{}/step/5');
  return 'finished';
}}",
        server.url(),
        server.url()
    );
    let (run, driving) = drive_until_fetching(&f, &server, "stops", &code, path).await;
    let stopped = f
        .engine
        .cancel(run.id, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(stopped.status, RunStatus::Cancelled, "{stopped:?}");
    assert_eq!(driving.await.unwrap().status, RunStatus::Cancelled);
    assert_eq!(logs(&f, &run).await, vec!["fetched"]);
    assert_eq!(server.count("/step/5"), 0, "no step after the stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abort_controllers_abort_fetches_locally_and_the_signal_never_reaches_the_host() {
    let server = CountingServer::start();
    let f = fixture("memory");
    let code = format!(
        "export default async function (input, ctx) {{
  const c = new AbortController();
  const seen = [];
  c.signal.onabort = (e) => seen.push('onabort ' + e.type);
  c.abort();
  c.abort();
  try {{ await fetch('{}/step/1', {{ signal: c.signal }}); }} catch (e) {{ seen.push(e.name); }}
  try {{ AbortSignal.abort('why').throwIfAborted(); }} catch (e) {{ seen.push(e); }}
  let bad = null;
  try {{ await fetch('{}/step/2', {{ signal: {{}} }}); }} catch (e) {{ bad = e.name; }}
  const r = await fetch('{}/echo', {{ method: 'POST', body: 'x', signal: ctx.signal }});
  return {{ seen, bad, aborted: ctx.signal.aborted, status: r.status }};
}}",
        server.url(),
        server.url(),
        server.url()
    );
    let t = task(&f, "local", &code).await;
    let run = f
        .engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let done = f.engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(
        done.output,
        Some(json!({
            "seen": ["onabort abort", "AbortError", "why"],
            "bad": "TypeError",
            "aborted": false,
            "status": 200
        }))
    );
    let hits = server.hits();
    assert_eq!(hits.len(), 1, "{hits:?}");
    // the signal is not part of the journaled request
    let requested: Vec<Value> = f
        .engine
        .read_all(run.id)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kind == "call.requested")
        .map(|r| r.data)
        .collect();
    assert!(
        requested
            .iter()
            .all(|d| d["request"]["options"].get("signal").is_none()),
        "{requested:?}"
    );
}
