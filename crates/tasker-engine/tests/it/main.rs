//! Engine tests over the reference `MemoryStore` and real storage (SQLite files and folders),
//! with the shared counting loopback server of `sequential-test-support`. Behaviour that needs
//! storage outliving a process (kills, restarts) is in `proofs`, on SQLite and folders.

mod abort;
mod faults;
mod fetcher;
mod graph;
mod graph_proofs;
mod graph_redrive;
mod hooked;
mod machine;
mod proofs;
mod randomness;

use std::sync::Arc;
use std::time::Duration;

use sequential_adaptor::{
    NewTaskVersion, Run, RunStatus, StorageAdapter, TaskName, VersionSel, now_millis,
};
use sequential_http_wrapper::{Backoff, Jitter, RetryPolicy};
use sequential_tasker_engine::{Engine, EngineConfig, RecordKind, StartOptions};
use sequential_test_support::http::CountingServer;
use serde_json::{Value, json};

/// (path, Idempotency-Key) of every request the server saw, in arrival order.
fn hits(server: &CountingServer) -> Vec<(String, Option<String>)> {
    server.hits().into_iter().map(|h| (h.path, h.key)).collect()
}

struct Fixture {
    engine: Engine,
    store: Arc<dyn StorageAdapter>,
    _dir: tempfile::TempDir,
}

fn backends() -> Vec<(&'static str, Fixture)> {
    ["memory", "sqlite", "folder"]
        .into_iter()
        .map(|b| (b, fixture(b)))
        .collect()
}

fn fixture(backend: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StorageAdapter> = match backend {
        "memory" => Arc::new(sequential_adaptor::MemoryStore::new()),
        "sqlite" => {
            Arc::new(sequential_adaptor_sqlite::SqliteStore::open(dir.path().join("s.db")).unwrap())
        }
        _ => Arc::new(
            sequential_adaptor_folder::FolderStore::open(dir.path().join("tasks")).unwrap(),
        ),
    };
    let mut config = EngineConfig::default();
    config.http.retry = RetryPolicy {
        attempts: 2,
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        backoff: Backoff::Fixed,
        jitter: Jitter::None,
    };
    let engine = Engine::new(store.clone(), config).unwrap();
    Fixture {
        engine,
        store,
        _dir: dir,
    }
}

async fn task(f: &Fixture, name: &str, code: &str) -> TaskName {
    let t = TaskName::new(name).unwrap();
    f.store
        .put_task_version(NewTaskVersion {
            task: t.clone(),
            code: code.into(),
            graph: None,
            config: json!({}),
        })
        .await
        .unwrap();
    t
}

async fn run_to_end(f: &Fixture, t: &TaskName, input: Value) -> Run {
    let run = f
        .engine
        .start(t, input, StartOptions::default())
        .await
        .unwrap();
    f.engine.run_until_settled(run.id, None).await.unwrap()
}

async fn kinds(f: &Fixture, run: &Run) -> Vec<String> {
    f.store
        .read_journal(run.id, None, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.kind)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn script_task_with_five_fetches_succeeds_with_idempotency_keys() {
    let server = CountingServer::start();
    let url = server.url();
    for (backend, f) in backends() {
        server.clear();
        let code = format!(
            "let sum = 0;\nfor (let i = 1; i <= 5; i++) {{ const r = fetch(`{url}/step/${{i}}`); sum += r.i; }}\n({{ sum, who: input.who }})"
        );
        let t = task(&f, "five", &code).await;
        let run = run_to_end(&f, &t, json!({"who": "me"})).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{backend}: {run:?}");
        assert_eq!(
            run.output,
            Some(json!({"sum": 15, "who": "me"})),
            "{backend}"
        );
        let seen = hits(&server);
        assert_eq!(
            seen.len(),
            5,
            "{backend}: each fetch exactly once: {seen:?}"
        );
        for (path, key) in &seen {
            let key = key.as_deref().unwrap_or_default();
            assert!(
                key.starts_with(&format!("{}:", run.id)),
                "{backend}: {path} key {key}"
            );
        }
        let k = kinds(&f, &run).await;
        assert_eq!(k.first().map(String::as_str), Some("run.started"));
        assert_eq!(k.last().map(String::as_str), Some("run.succeeded"));
        assert_eq!(
            k.iter().filter(|k| *k == "call.requested").count(),
            5,
            "{backend}: {k:?}"
        );
        assert_eq!(
            k.iter().filter(|k| *k == "call.completed").count(),
            5,
            "{backend}: {k:?}"
        );
        assert!(run.lease.is_none(), "{backend}: the lease is released");
    }
}

/// The fan-out's results come back, the run waits for an event, and a fresh engine (a new
/// process: no live session to resume) finishes it by replaying the journal from its start:
/// no fetch is sent again, the console line is not written twice, the output is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_fan_out_performs_all_fetches_and_replays_cold() {
    let server = CountingServer::start();
    let url = server.url();
    for (backend, f) in backends() {
        server.clear();
        let code = format!(
            "export default async function (input, ctx) {{\n  const rs = await Promise.all(input.ids.map(i => fetch(`{url}/step/${{i}}`)));\n  const bodies = await Promise.all(rs.map(r => r.json()));\n  console.log('fetched', bodies.length);\n  const go = await ctx.waitForEvent('go');\n  return {{ ids: bodies.map(b => b.i), go }};\n}}"
        );
        let t = task(&f, "fan", &code).await;
        let run = f
            .engine
            .start(&t, json!({"ids": [3, 1, 2]}), StartOptions::default())
            .await
            .unwrap();
        let waiting = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(waiting.status, RunStatus::Waiting, "{backend}: {waiting:?}");
        assert_eq!(hits(&server).len(), 3, "{backend}");

        let cold = Engine::new(f.store.clone(), EngineConfig::default()).unwrap();
        assert_eq!(
            cold.hot_sessions(),
            0,
            "{backend}: a new engine has no live session"
        );
        f.store.send_signal(run.id, "go", json!(7)).await.unwrap();
        let done = cold
            .run_until_settled(run.id, Some(now_millis() + 60_000))
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
        assert_eq!(
            done.output,
            Some(json!({"ids": [3, 1, 2], "go": 7})),
            "{backend}"
        );
        assert_eq!(
            cold.hot_resumes(),
            0,
            "{backend}: resumed by replay, not hot"
        );
        assert_eq!(
            hits(&server).len(),
            3,
            "{backend}: replay sent no fetch again"
        );
        let k = kinds(&f, &done).await;
        assert_eq!(
            k.iter().filter(|k| *k == "log").count(),
            1,
            "{backend}: {k:?}"
        );
    }
}

/// A run whose fetches are out longer than `park_after` gives back its JavaScript session and
/// is rebuilt by replay when they come back: same output, no fetch sent twice, each console
/// line journaled once — in module and in script mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_parked_during_a_slow_fetch_resumes_by_replay() {
    let server = CountingServer::start();
    let url = server.url();
    let module = format!(
        "export default async function () {{\n  console.log('before');\n  const [a, b] = await Promise.all([fetch(`{url}/slow/300/1`), fetch(`{url}/step/2`)]);\n  console.log('between');\n  const c = await fetch(`{url}/slow/250/3`);\n  const out = [(await a.json()).i, (await b.json()).i, (await c.json()).i];\n  console.log('after', out.join());\n  return out;\n}}"
    );
    let script = format!(
        "console.log('before');\nconst a = fetch(`{url}/slow/300/1`).i;\nconsole.log('between');\nconst b = fetch(`{url}/step/2`).i;\nconst c = fetch(`{url}/slow/250/3`).i;\nconsole.log('after');\n[a, b, c]"
    );
    for (mode, code) in [("module", module), ("script", script)] {
        for (backend, mut f) in backends() {
            server.clear();
            let config = EngineConfig {
                park_after: Some(Duration::from_millis(50)),
                ..EngineConfig::default()
            };
            f.engine = Engine::new(f.store.clone(), config).unwrap();
            let t = task(&f, "parks", &code).await;
            let run = run_to_end(&f, &t, json!({})).await;
            assert_eq!(
                run.status,
                RunStatus::Succeeded,
                "{mode} {backend}: {run:?}"
            );
            assert_eq!(run.output, Some(json!([1, 2, 3])), "{mode} {backend}");
            assert!(
                f.engine.parked_sessions() >= 2,
                "{mode} {backend}: parked {} times",
                f.engine.parked_sessions()
            );
            assert_eq!(
                hits(&server).len(),
                3,
                "{mode} {backend}: {:?}",
                hits(&server)
            );
            let k = kinds(&f, &run).await;
            let count = |kind: &str| k.iter().filter(|x| *x == kind).count();
            assert_eq!(count("log"), 3, "{mode} {backend}: {k:?}");
            assert_eq!(count("call.completed"), 3, "{mode} {backend}: {k:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_sleep_waits_in_storage_then_finishes() {
    for (backend, f) in backends() {
        let code = "export default async function (input, ctx) { const t0 = Date.now(); await ctx.sleep(150); return { slept: Date.now() - t0 >= 150 }; }";
        let t = task(&f, "nap", code).await;
        let run = f
            .engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let waiting = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(waiting.status, RunStatus::Waiting, "{backend}");
        assert!(
            waiting.wake_at.is_some_and(|w| w > now_millis() - 1000),
            "{backend}: {waiting:?}"
        );
        // a fresh engine (a restarted process) finishes it once the timer is due
        let engine = Engine::new(f.store.clone(), EngineConfig::default()).unwrap();
        let done = engine
            .run_until_settled(run.id, Some(now_millis() + 60_000))
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
        assert_eq!(done.output, Some(json!({"slept": true})), "{backend}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_event_takes_signals_and_times_out_to_null() {
    for (backend, f) in backends() {
        let code = "export default async function (input, ctx) {\n  const a = await ctx.waitForEvent('approved');\n  const b = await ctx.waitForEvent('never', { timeout: 1 });\n  return { a, b };\n}";
        let t = task(&f, "approve", code).await;
        let run = f
            .engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let waiting = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(waiting.status, RunStatus::Waiting, "{backend}");
        assert_eq!(
            waiting.waiting_for.as_deref(),
            Some("approved"),
            "{backend}"
        );
        f.store
            .send_signal(run.id, "other", json!(0))
            .await
            .unwrap();
        f.store
            .send_signal(run.id, "approved", json!({"by": "ann"}))
            .await
            .unwrap();
        let done = f
            .engine
            .run_until_settled(run.id, Some(now_millis() + 60_000))
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
        assert_eq!(
            done.output,
            Some(json!({"a": {"by": "ann"}, "b": null})),
            "{backend}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thrown_errors_fail_the_run_with_name_and_message() {
    for (backend, f) in backends() {
        let t = task(
            &f,
            "boom",
            "function f() { throw new TypeError('bad ' + input.x); }\nf();",
        )
        .await;
        let run = run_to_end(&f, &t, json!({"x": 7})).await;
        assert_eq!(run.status, RunStatus::Failed, "{backend}");
        let err = run.error.unwrap();
        assert_eq!(err["name"], "TypeError", "{backend}: {err}");
        assert_eq!(err["message"], "bad 7", "{backend}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_retries_pause_the_run_with_the_failing_call() {
    let server = CountingServer::start();
    let url = server.url();
    for (backend, f) in backends() {
        server.clear();
        let t = task(&f, "down", &format!("fetch('{url}/down')")).await;
        let run = run_to_end(&f, &t, json!({})).await;
        assert_eq!(run.status, RunStatus::Paused, "{backend}: {run:?}");
        let err = run.error.unwrap();
        assert!(
            err["error"]["message"].as_str().unwrap().contains("503"),
            "{backend}: {err}"
        );
        assert_eq!(hits(&server).len(), 2, "{backend}: attempts = 2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_pin_their_version() {
    let f = fixture("sqlite");
    let t = task(
        &f,
        "pin",
        "export default async function (i, ctx) { await ctx.sleep(1); return 'v1'; }",
    )
    .await;
    let run = f
        .engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let _ = task(
        &f,
        "pin",
        "export default async function () { return 'v2'; }",
    )
    .await;
    let done = f
        .engine
        .run_until_settled(run.id, Some(now_millis() + 60_000))
        .await
        .unwrap();
    assert_eq!(done.output, Some(json!("v1")), "{done:?}");
    assert_eq!(
        f.store
            .get_task_version(&t, VersionSel::Latest)
            .await
            .unwrap()
            .version,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn child_runs_return_results_and_failures_are_catchable() {
    for (backend, f) in backends() {
        task(
            &f,
            "double",
            "export default async function (input) { return input.n * 2; }",
        )
        .await;
        task(&f, "broken", "throw new Error('child broke');").await;
        let parent = task(
            &f,
            "parent",
            "export default async function (input, ctx) {\n  const a = await ctx.runTask('double', { n: 21 });\n  let caught = null;\n  try { await ctx.runTask('broken', {}); } catch (e) { caught = e.name + ': ' + e.message; }\n  const t = await ctx.callTool('task', { task: 'double', input: { n: 1 } });\n  return { a, caught, t };\n}",
        )
        .await;
        let run = run_to_end(&f, &parent, json!({})).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{backend}: {run:?}");
        let out = run.output.clone().unwrap();
        assert_eq!(out["a"], 42, "{backend}: {out}");
        assert_eq!(out["t"], 2, "{backend}: {out}");
        let caught = out["caught"].as_str().unwrap();
        assert!(
            caught.starts_with("ChildRunFailed") && caught.contains("child broke"),
            "{backend}: {caught}"
        );
        let k = kinds(&f, &run).await;
        assert_eq!(
            k.iter().filter(|k| *k == "child.started").count(),
            3,
            "{backend}: {k:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_http_declarative_and_unknown() {
    let server = CountingServer::start();
    let url = server.url();
    let f = fixture("sqlite");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("steps.json"),
        format!(
            r#"{{"name": "steps", "request": {{"method": "GET", "url": "{url}/step/{{{{i}}}}"}}}}"#
        ),
    )
    .unwrap();
    let mut tools = sequential_tasker_engine::ToolRegistry::new();
    assert_eq!(tools.load_dir(dir.path()).unwrap(), 1);
    let engine = Engine::new(f.store.clone(), EngineConfig::default())
        .unwrap()
        .with_tools(tools);
    let code = format!(
        "export default async function (input, ctx) {{\n  const a = await ctx.callTool('http', {{ url: '{url}/step/4' }});\n  const b = await __callHostTool__('steps', 'get', {{ i: 5 }});\n  let err = null;\n  try {{ await ctx.callTool('nope', {{}}); }} catch (e) {{ err = e.name; }}\n  return {{ a: a.data.i, b: b.data.i, err }};\n}}"
    );
    let t = task(&f, "tooling", &code).await;
    let run = engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let run = engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(
        run.output,
        Some(json!({"a": 4, "b": 5, "err": "ToolNotFound"})),
        "{run:?}"
    );
    let seen = hits(&server);
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|(_, k)| {
        k.as_deref()
            .is_some_and(|k| k.starts_with(&run.id.to_string()))
    }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_waiting_parent_cancels_its_child() {
    for (backend, f) in backends() {
        task(
            &f,
            "slowchild",
            "export default async function (i, ctx) { await ctx.waitForEvent('go'); return 1; }",
        )
        .await;
        let p = task(
            &f,
            "waiter",
            "export default async function (i, ctx) { return await ctx.runTask('slowchild', {}); }",
        )
        .await;
        let run = f
            .engine
            .start(&p, json!({}), StartOptions::default())
            .await
            .unwrap();
        let waiting = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(waiting.status, RunStatus::Waiting, "{backend}: {waiting:?}");
        let child_id: sequential_adaptor::RunId = waiting.waiting_for.as_deref().unwrap()
            ["child:".len()..]
            .parse()
            .unwrap();
        assert_eq!(
            f.store.get_run(child_id).await.unwrap().status,
            RunStatus::Waiting,
            "{backend}"
        );
        let cancelled = f
            .engine
            .cancel(run.id, Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!(cancelled.status, RunStatus::Cancelled, "{backend}");
        assert_eq!(
            f.store.get_run(child_id).await.unwrap().status,
            RunStatus::Cancelled,
            "{backend}"
        );
        let again = f
            .engine
            .cancel(run.id, Duration::from_secs(1))
            .await
            .unwrap_err();
        assert!(
            again.to_string().contains("already was cancelled"),
            "{backend}: {again}"
        );
        let k = kinds(&f, &cancelled).await;
        assert_eq!(
            k.last().map(String::as_str),
            Some("run.cancelled"),
            "{backend}: {k:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_run_retries_and_completes_when_the_service_is_back() {
    let server = CountingServer::start();
    let url = server.url();
    let f = fixture("sqlite");
    // the second fetch goes to a service that is always down: each drive spends its 2 attempts
    let t = task(
        &f,
        "flaky",
        &format!("const a = fetch('{url}/step/1'); const b = fetch('{url}/down'); a.i"),
    )
    .await;
    let run = run_to_end(&f, &t, json!({})).await;
    assert_eq!(run.status, RunStatus::Paused);
    assert_eq!(run.error.as_ref().unwrap()["seq"], 1, "{run:?}");
    let queued = f.engine.retry(run.id).await.unwrap();
    assert_eq!(queued.status, RunStatus::Queued);
    let err = f.engine.retry(run.id).await.unwrap_err();
    assert!(err.to_string().contains("only a paused run"), "{err}");
    let again = f.engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(again.status, RunStatus::Paused, "still down");
    let seen: Vec<_> = hits(&server).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        seen.iter().filter(|p| *p == "/step/1").count(),
        1,
        "the completed fetch is not repeated: {seen:?}"
    );
    assert_eq!(
        seen.iter().filter(|p| *p == "/down").count(),
        4,
        "2 attempts per drive: {seen:?}"
    );
    let err = f
        .engine
        .retry(sequential_adaptor::RunId::new())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_from_a_seq_replays_the_prefix_and_redoes_the_rest() {
    let server = CountingServer::start();
    let url = server.url();
    let f = fixture("folder");
    let code =
        format!("const a = fetch('{url}/step/1'); const b = fetch('{url}/step/2'); a.i + b.i");
    let t = task(&f, "twice", &code).await;
    let first = run_to_end(&f, &t, json!({})).await;
    assert_eq!(first.output, Some(json!(3)));
    let journal = f.engine.read_all(first.id).await.unwrap();
    // keep run.started, the first request and its completion
    let cut = journal
        .iter()
        .position(|r| r.kind == RecordKind::CallCompleted)
        .unwrap() as u64
        + 1;
    let second = f.engine.rerun(first.id, cut).await.unwrap();
    let second = f.engine.run_until_settled(second.id, None).await.unwrap();
    assert_eq!(second.output, Some(json!(3)));
    let seen: Vec<_> = hits(&server).into_iter().map(|(p, _)| p).collect();
    assert_eq!(
        seen,
        vec!["/step/1", "/step/2", "/step/2"],
        "only the second fetch is redone"
    );
    let err = f.engine.rerun(first.id, 10_000).await.unwrap_err();
    assert!(err.to_string().contains("--from-seq 10000"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hot_and_cold_resumes_write_identical_journals() {
    let code = "export default async function (input, ctx) {\n  const out = [];\n  for (const n of input.names) { await ctx.sleep(1); out.push(await ctx.waitForEvent(n)); console.log('got', n); }\n  return out;\n}";
    let mut journals = Vec::new();
    for max_hot in [64usize, 0] {
        let f = fixture("sqlite");
        let config = EngineConfig {
            max_hot_sessions: max_hot,
            ..EngineConfig::default()
        };
        let engine = Engine::new(f.store.clone(), config).unwrap();
        let t = task(&f, "events", code).await;
        let run = engine
            .start(&t, json!({"names": ["a", "b"]}), StartOptions::default())
            .await
            .unwrap();
        for n in ["a", "b"] {
            f.store
                .send_signal(run.id, n, json!({"for": n}))
                .await
                .unwrap();
        }
        let done = engine
            .run_until_settled(run.id, Some(now_millis() + 60_000))
            .await
            .unwrap();
        assert_eq!(
            done.output,
            Some(json!([{"for": "a"}, {"for": "b"}])),
            "max_hot {max_hot}"
        );
        if max_hot > 0 {
            assert_eq!(
                engine.hot_sessions(),
                0,
                "a finished run leaves no live session"
            );
            assert!(
                engine.hot_resumes() >= 2,
                "resumed hot: {}",
                engine.hot_resumes()
            );
        } else {
            assert_eq!(engine.hot_resumes(), 0);
        }
        let j: Vec<(String, Value)> = engine
            .read_all(run.id)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                let mut d = r.data;
                // timer deadlines and the run id differ between the two runs
                if let Some(o) = d.as_object_mut() {
                    o.remove("wakeAt");
                    o.remove("input");
                }
                (r.kind, d)
            })
            .collect();
        journals.push(j);
    }
    assert_eq!(journals[0], journals[1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_held_by_a_dead_process_of_this_host_is_taken_over_at_once() {
    let f = fixture("sqlite");
    let t = task(&f, "orphan", "1 + 1").await;
    let run = f
        .engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    // a process that has exited: its pid no longer exists
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead_pid = child.id();
    child.wait().unwrap();
    let host = sequential_support::process::hostname();
    let req = sequential_adaptor::ClaimRequest {
        worker: format!("{host}:{dead_pid}"),
        now: now_millis(),
        lease_ms: 3_600_000,
        limit: 1,
    };
    let held = f
        .store
        .claim_run(run.id, &req, sequential_adaptor::Takeover::IfClaimable)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(held.run.status, RunStatus::Running);
    let done = f.engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(done.output, Some(json!(2)));
    assert!(done.attempt >= 2, "claimed twice: {}", done.attempt);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_pinned_version_fails_the_run_naming_both_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let store: Arc<dyn StorageAdapter> =
        Arc::new(sequential_adaptor_folder::FolderStore::open(&root).unwrap());
    let f = Fixture {
        engine: Engine::new(store.clone(), EngineConfig::default()).unwrap(),
        store,
        _dir: dir,
    };
    let t = task(
        &f,
        "pinned",
        "export default async function (i, ctx) { await ctx.sleep('1h'); return 1; }",
    )
    .await;
    let v1 = f
        .store
        .get_task_version(&t, VersionSel::Latest)
        .await
        .unwrap();
    let run = f
        .engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    assert_eq!(
        f.engine
            .run_until_settled(run.id, None)
            .await
            .unwrap()
            .status,
        RunStatus::Waiting
    );
    let _ = task(
        &f,
        "pinned",
        "export default async function () { return 2; }",
    )
    .await;
    let v2 = f
        .store
        .get_task_version(&t, VersionSel::Latest)
        .await
        .unwrap();
    std::fs::remove_file(root.join("pinned/versions/1.json")).unwrap();
    let mut r = f.store.get_run(run.id).await.unwrap();
    r.wake_at = Some(now_millis());
    f.store.update_run(&r).await.unwrap();
    let done = f.engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed, "{done:?}");
    let err = done.error.unwrap();
    assert_eq!(err["name"], "VersionMissing");
    let msg = err["message"].as_str().unwrap();
    assert!(msg.contains(&v1.hash) && msg.contains(&v2.hash), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_that_loops_forever_times_out_and_the_engine_goes_on() {
    let f = fixture("sqlite");
    let mut config = EngineConfig::default();
    config.vm.limits.cpu_slice_ms = 100;
    let engine = Engine::new(f.store.clone(), config).unwrap();
    let t = task(&f, "spin", "while (true) {}").await;
    let run = engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let done = engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed);
    assert_eq!(done.error.as_ref().unwrap()["name"], "Timeout", "{done:?}");
    assert!(
        done.error.unwrap()["message"]
            .as_str()
            .unwrap()
            .contains("100 ms")
    );
    let ok = task(&f, "fine", "6 * 7").await;
    let run = engine
        .start(&ok, json!({}), StartOptions::default())
        .await
        .unwrap();
    assert_eq!(
        engine.run_until_settled(run.id, None).await.unwrap().output,
        Some(json!(42))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_responses_and_unreachable_hosts_are_named_never_crash() {
    let f = fixture("sqlite");
    let mut config = EngineConfig::default();
    config.http.max_response_bytes = 1024;
    config.http.retry.attempts = 2;
    config.http.retry.initial_delay = Duration::from_millis(1);
    let engine = Engine::new(f.store.clone(), config).unwrap();
    let big = format!("data:text/plain,{}", "x".repeat(4096));
    let t = task(
        &f,
        "big",
        &format!(
            "let m; try {{ fetch('{big}'); }} catch (e) {{ m = e.name + ': ' + e.message; }} m"
        ),
    )
    .await;
    let run = engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let done = engine.run_until_settled(run.id, None).await.unwrap();
    let caught = done.output.unwrap();
    assert!(
        caught
            .as_str()
            .unwrap()
            .contains("exceeds the 1024-byte limit"),
        "{caught}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let t = task(
        &f,
        "nowhere",
        &format!("fetch('http://127.0.0.1:{port}/x')"),
    )
    .await;
    let run = engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let done = engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(done.status, RunStatus::Paused, "{done:?}");
    let msg = done.error.unwrap()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("after 2 attempt(s)") && msg.contains("connection"),
        "{msg}"
    );
}

/// A worker killed after appending a run's end but before settling it: the next worker replays
/// the journal, settles the run, and does not append a second end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_journal_that_already_ends_the_run_is_settled_without_a_second_end() {
    for (backend, f) in backends() {
        let t = task(&f, "ends", "({ done: true })").await;
        let run = run_to_end(&f, &t, json!({})).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{backend}");
        // what a worker that died before settling leaves: the end journaled, the run not settled
        let mut unsettled = run.clone();
        unsettled.status = RunStatus::Queued;
        unsettled.output = None;
        f.store.update_run(&unsettled).await.unwrap();
        let again = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(again.status, RunStatus::Succeeded, "{backend}: {again:?}");
        assert_eq!(again.output, Some(json!({ "done": true })), "{backend}");
        let ends = kinds(&f, &run)
            .await
            .into_iter()
            .filter(|k| k == "run.succeeded")
            .count();
        assert_eq!(ends, 1, "{backend}: the end was appended twice");
    }
}

/// What a run started and driven by one engine (as `sequential-ecosystem run` does) costs in
/// commits, the unit of its latency on a disk that syncs: one to start and claim it, one before
/// each call (the results so far and the call's `call.requested`, durable before it is sent),
/// one to settle (the last results with the end). A change that adds one fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_commits_once_to_start_once_per_call_and_once_to_settle() {
    let server = CountingServer::start();
    let url = server.url();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.db");
    let store = Arc::new(sequential_adaptor_sqlite::SqliteStore::open(path).unwrap());
    let f = Fixture {
        engine: Engine::new(store.clone(), EngineConfig::default()).unwrap(),
        store: store.clone(),
        _dir: dir,
    };
    let engine = &f.engine;
    let code = format!(
        "let n = 0;\nfor (let i = 0; i < input.steps; i++) {{ n += fetch(`{url}/step/${{i + 1}}`).i; }}\nn"
    );
    let t = task(&f, "steps", &code).await;
    for steps in [1u64, 3] {
        let before = store.writer_stats().transactions;
        let claimed = StartOptions {
            claim: true,
            ..StartOptions::default()
        };
        let run = engine
            .start(&t, json!({ "steps": steps }), claimed)
            .await
            .unwrap();
        let run = engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded, "{run:?}");
        let commits = store.writer_stats().transactions - before;
        assert_eq!(commits, 1 + steps + 1, "{steps} step(s)");
        let mut want = vec!["run.started".to_string()];
        for _ in 0..steps {
            want.extend(["call.requested".to_string(), "call.completed".to_string()]);
        }
        want.push("run.succeeded".into());
        assert_eq!(kinds(&f, &run).await, want, "{steps} step(s)");
    }
}
