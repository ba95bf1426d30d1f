//! An embedder's `Fetcher`: every fetch of a run, and every `http` or declarative tool call,
//! goes through it (here one that answers from memory, so no server and no network).

use std::sync::{Arc, Mutex};

use sequential_adaptor::{RunStatus, now_millis};
use sequential_http_wrapper::{Failure, FetchError, Fetcher, Request, Response, async_trait};
use sequential_tasker_engine::{Engine, EngineConfig, StartOptions, ToolRegistry};
use serde_json::json;

use crate::{fixture, task};

/// Answers `…/users/{id}` with a user, `…/down` with spent retries, anything else with
/// `{"url": …}`; remembers every request.
#[derive(Debug, Default)]
struct Memory {
    seen: Mutex<Vec<Request>>,
}

impl Memory {
    fn urls(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.url.clone())
            .collect()
    }
}

#[async_trait]
impl Fetcher for Memory {
    async fn fetch(&self, req: &Request) -> Result<Response, FetchError> {
        self.seen.lock().unwrap().push(req.clone());
        if req.url.ends_with("/down") {
            return Err(FetchError::RetriesExhausted {
                url: req.url.clone(),
                attempts: 1,
                last: Failure::Connect("the memory fetcher says it is down".into()),
            });
        }
        let body = match req.url.rsplit_once("/users/") {
            Some((_, id)) => json!({ "id": id, "name": "Alice" }),
            None => json!({ "url": req.url }),
        };
        Ok(Response::new(&req.url, 200, body.to_string())
            .with_header("content-type", "application/json"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_fetcher_performs_every_fetch_and_http_tool_call_of_a_run() {
    let f = fixture("sqlite");
    let memory = Arc::new(Memory::default());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("users.json"),
        r#"{"name": "users", "request": {"url": "https://api.example.invalid/users/{{id}}"}}"#,
    )
    .unwrap();
    let mut tools = ToolRegistry::new();
    tools.load_dir(dir.path()).unwrap();
    let engine = Engine::new(f.store.clone(), EngineConfig::default())
        .unwrap()
        .with_tools(tools)
        .with_fetcher(memory.clone());
    // a durable sleep between the calls: the second drive replays the first fetch, never
    // performing it again
    let code = "export default async function (input, ctx) {\n  const a = await (await fetch('https://api.example.invalid/users/7')).json();\n  await ctx.sleep(1);\n  const b = await ctx.callTool('http', { url: 'https://api.example.invalid/ping' });\n  const c = await __callHostTool__('users', 'get', { id: 8 });\n  return { a: a.name, b: b.data.url, c: c.data.id };\n}";
    let t = task(&f, "remembered", code).await;
    let run = engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let done = engine
        .run_until_settled(run.id, Some(now_millis() + 60_000))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(
        done.output,
        Some(json!({"a": "Alice", "b": "https://api.example.invalid/ping", "c": "8"}))
    );
    assert_eq!(
        memory.urls(),
        [
            "https://api.example.invalid/users/7",
            "https://api.example.invalid/ping",
            "https://api.example.invalid/users/8"
        ],
        "each call once, in order, all through the user's fetcher"
    );
    let seen = memory.seen.lock().unwrap().clone();
    for req in &seen {
        let key = req.idempotency_key.as_deref().unwrap_or_default();
        assert!(key.starts_with(&format!("{}:", run.id)), "{key}");
    }
    assert!(
        seen[0].retry.is_some(),
        "a task's fetch carries its retry policy"
    );
    assert!(Arc::ptr_eq(
        engine.fetcher(),
        &(memory.clone() as Arc<dyn Fetcher>)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spent_retries_reported_by_a_user_fetcher_pause_the_run() {
    let f = fixture("folder");
    let memory = Arc::new(Memory::default());
    let engine = Engine::new(f.store.clone(), EngineConfig::default())
        .unwrap()
        .with_fetcher(memory.clone());
    let t = task(
        &f,
        "downstream",
        "fetch('https://api.example.invalid/down')",
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
    assert!(msg.contains("the memory fetcher says it is down"), "{msg}");
    assert_eq!(memory.urls().len(), 1);
}

/// Stores a version of `name` with `config` (`config.json`).
async fn task_with_config(
    f: &crate::Fixture,
    name: &str,
    code: &str,
    config: serde_json::Value,
) -> sequential_adaptor::TaskName {
    let t = sequential_adaptor::TaskName::new(name).unwrap();
    f.store
        .put_task_version(sequential_adaptor::NewTaskVersion {
            task: t.clone(),
            code: code.into(),
            graph: None,
            config,
        })
        .await
        .unwrap();
    t
}

/// The sequential-flow README's "Multiple Sequential Fetches" example, with relative URLs.
const README_MULTI: &str = "const user = fetch('api/users/1');\nconst posts = fetch('api/posts?userId=' + user.id);\n({ user: user.name, posts: posts.url })";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relative_urls_resolve_against_the_tasks_base_url() {
    let f = fixture("sqlite");
    let memory = Arc::new(Memory::default());
    let engine = Engine::new(f.store.clone(), EngineConfig::default())
        .unwrap()
        .with_fetcher(memory.clone());
    let t = task_with_config(
        &f,
        "relative",
        README_MULTI,
        json!({"baseUrl": "https://api.example.invalid/v1/"}),
    )
    .await;
    let run = engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let done = engine
        .run_until_settled(run.id, Some(now_millis() + 60_000))
        .await
        .unwrap();
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(
        memory.urls(),
        [
            "https://api.example.invalid/v1/api/users/1",
            "https://api.example.invalid/v1/api/posts?userId=1"
        ]
    );
    assert_eq!(
        done.output,
        Some(
            json!({"user": "Alice", "posts": "https://api.example.invalid/v1/api/posts?userId=1"})
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relative_url_without_base_url_fails_naming_the_url_and_base_url() {
    let f = fixture("folder");
    let memory = Arc::new(Memory::default());
    let engine = Engine::new(f.store.clone(), EngineConfig::default())
        .unwrap()
        .with_fetcher(memory.clone());
    for (name, config, hint) in [
        (
            "nobase",
            json!({}),
            "set \"baseUrl\" in the task's config.json",
        ),
        (
            "badbase",
            json!({"baseUrl": "api.example.invalid"}),
            "is not an absolute URL",
        ),
    ] {
        let t = task_with_config(&f, name, README_MULTI, config).await;
        let run = engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let done = engine
            .run_until_settled(run.id, Some(now_millis() + 60_000))
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Failed, "{done:?}");
        let error = done.error.expect("an error");
        assert_eq!(error["name"], "TypeError", "{error}");
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("\"api/users/1\""), "{message}");
        assert!(message.contains(hint), "{message}");
    }
    assert!(memory.urls().is_empty(), "nothing was fetched");
}

/// A graph handler's relative fetch URL resolves against `baseUrl` as an implicit task's does,
/// and without one fails with the same `TypeError` naming the URL and `baseUrl`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graph_handlers_relative_url_resolves_against_base_url_or_names_it() {
    let f = fixture("memory");
    let memory = Arc::new(Memory::default());
    let engine = Engine::new(f.store.clone(), EngineConfig::default())
        .unwrap()
        .with_fetcher(memory.clone());
    let graph = json!({
        "version": 1,
        "initial": "lookup",
        "states": {
            "lookup": { "onDone": "done" },
            "done": { "type": "final" }
        }
    });
    let code = "export async function lookup() {\n  const r = await fetch('api/users/1');\n  return (await r.json()).name;\n}\n";
    for (name, config) in [
        (
            "graph-base",
            json!({"baseUrl": "https://api.example.invalid/v1/"}),
        ),
        ("graph-nobase", json!({})),
    ] {
        let t = sequential_adaptor::TaskName::new(name).unwrap();
        f.store
            .put_task_version(sequential_adaptor::NewTaskVersion {
                task: t.clone(),
                code: code.into(),
                graph: Some(graph.clone()),
                config,
            })
            .await
            .unwrap();
        let run = engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let done = engine
            .run_until_settled(run.id, Some(now_millis() + 60_000))
            .await
            .unwrap();
        if name == "graph-base" {
            assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
            assert_eq!(
                memory.urls(),
                ["https://api.example.invalid/v1/api/users/1"]
            );
        } else {
            assert_eq!(done.status, RunStatus::Failed, "{done:?}");
            let error = done.error.expect("an error").to_string();
            assert!(error.contains("TypeError"), "{error}");
            assert!(error.contains("api/users/1"), "{error}");
            assert!(error.contains("baseUrl"), "{error}");
            assert_eq!(memory.urls().len(), 1, "nothing more was fetched");
        }
    }
}
