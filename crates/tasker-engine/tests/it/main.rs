//! Engine tests over real storage (SQLite files and folders) and a real loopback HTTP server.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::any;
use sequential_adaptor::{
    NewTaskVersion, Run, RunStatus, StorageAdapter, TaskName, VersionSel, now_millis,
};
use sequential_http_wrapper::{Backoff, Jitter, RetryPolicy};
use sequential_tasker_engine::{Engine, EngineConfig, StartOptions};
use serde_json::{Value, json};

type Hits = Arc<Mutex<Vec<(String, Option<String>)>>>;

async fn step(State(hits): State<Hits>, Path(i): Path<u32>, h: HeaderMap) -> impl IntoResponse {
    let key = h
        .get("idempotency-key")
        .map(|v| v.to_str().unwrap().to_string());
    hits.lock().unwrap().push((format!("/step/{i}"), key));
    axum::Json(json!({"i": i, "ok": true}))
}

async fn unavailable(State(hits): State<Hits>) -> impl IntoResponse {
    hits.lock().unwrap().push(("/down".into(), None));
    (StatusCode::SERVICE_UNAVAILABLE, "down")
}

async fn server() -> (SocketAddr, Hits) {
    let hits = Hits::default();
    let app = Router::new()
        .route("/step/{i}", any(step))
        .route("/down", any(unavailable))
        .with_state(hits.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, hits)
}

struct Fixture {
    engine: Engine,
    store: Arc<dyn StorageAdapter>,
    _dir: tempfile::TempDir,
}

fn backends() -> Vec<(&'static str, Fixture)> {
    ["sqlite", "folder"]
        .into_iter()
        .map(|b| (b, fixture(b)))
        .collect()
}

fn fixture(backend: &str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn StorageAdapter> = match backend {
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
    let (addr, hits) = server().await;
    for (backend, f) in backends() {
        hits.lock().unwrap().clear();
        let code = format!(
            "let sum = 0;\nfor (let i = 1; i <= 5; i++) {{ const r = fetch(`http://{addr}/step/${{i}}`); sum += r.i; }}\n({{ sum, who: input.who }})"
        );
        let t = task(&f, "five", &code).await;
        let run = run_to_end(&f, &t, json!({"who": "me"})).await;
        assert_eq!(run.status, RunStatus::Succeeded, "{backend}: {run:?}");
        assert_eq!(
            run.output,
            Some(json!({"sum": 15, "who": "me"})),
            "{backend}"
        );
        let seen = hits.lock().unwrap().clone();
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn module_fan_out_performs_all_fetches_and_replays_cold() {
    let (addr, hits) = server().await;
    for (backend, f) in backends() {
        hits.lock().unwrap().clear();
        let code = format!(
            "export default async function (input, ctx) {{\n  const rs = await Promise.all(input.ids.map(i => fetch(`http://{addr}/step/${{i}}`)));\n  const bodies = await Promise.all(rs.map(r => r.json()));\n  console.log('fetched', bodies.length);\n  return bodies.map(b => b.i);\n}}"
        );
        let t = task(&f, "fan", &code).await;
        let run = run_to_end(&f, &t, json!({"ids": [3, 1, 2]})).await;
        assert_eq!(run.output, Some(json!([3, 1, 2])), "{backend}: {run:?}");
        assert_eq!(hits.lock().unwrap().len(), 3, "{backend}");
        let k = kinds(&f, &run).await;
        assert_eq!(
            k.iter().filter(|k| *k == "log").count(),
            1,
            "{backend}: {k:?}"
        );
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
    let (addr, hits) = server().await;
    for (backend, f) in backends() {
        hits.lock().unwrap().clear();
        let t = task(&f, "down", &format!("fetch('http://{addr}/down')")).await;
        let run = run_to_end(&f, &t, json!({})).await;
        assert_eq!(run.status, RunStatus::Paused, "{backend}: {run:?}");
        let err = run.error.unwrap();
        assert!(
            err["error"]["message"].as_str().unwrap().contains("503"),
            "{backend}: {err}"
        );
        assert_eq!(hits.lock().unwrap().len(), 2, "{backend}: attempts = 2");
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
