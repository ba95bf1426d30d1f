//! The router: every `/api/v1` route, the bearer-token check, and body reading with the
//! documented limits and error shape.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::{AppState, compat, host_events, host_log, runs, stream, tasks};

/// One operation of the API, as registered and as the OpenAPI document lists it.
#[derive(Debug, Clone, Copy)]
pub struct Op {
    pub method: &'static str,
    pub path: &'static str,
    pub summary: &'static str,
    pub tag: &'static str,
}

/// Routes under construction, each recorded as it is registered, so that the OpenAPI document
/// is derived from the very same list and cannot miss a route.
struct Api {
    router: Router<AppState>,
    ops: Vec<Op>,
    tag: &'static str,
}

impl Api {
    fn at<H, T>(
        mut self,
        method: &'static str,
        path: &'static str,
        summary: &'static str,
        h: H,
    ) -> Self
    where
        H: Handler<T, AppState>,
        T: 'static,
    {
        let filter = match method {
            "GET" => MethodFilter::GET,
            "POST" => MethodFilter::POST,
            "PUT" => MethodFilter::PUT,
            "DELETE" => MethodFilter::DELETE,
            other => unreachable!("no route uses {other}"),
        };
        self.router = self.router.route(path, on(filter, h));
        self.ops.push(Op {
            method,
            path,
            summary,
            tag: self.tag,
        });
        self
    }

    fn tag(mut self, tag: &'static str) -> Self {
        self.tag = tag;
        self
    }
}

/// Every operation, in the order of the router, with the router under `/api/v1`.
fn api() -> (Router<AppState>, Vec<Op>) {
    let api = Api {
        router: Router::new(),
        ops: Vec::new(),
        tag: "host",
    }
    .at("GET", "/version", "The service, its version and the API version", version)
    .at("GET", "/health", "Whether the server and its storage answer", health)
    .at("GET", "/load-check", "Host load and how many runs are in each active state", load_check)
    .at("GET", "/config", "The public configuration: storage kind, limits, whether a token is needed", config)
    .at("GET", "/openapi.json", "This document", openapi)
    .at("GET", "/entities", "Every task's name and the ids of the runs that have not ended", entities)
    .at("GET", "/log", "The host's log: its recent lines and the requests it answered, then new ones (NDJSON, or text with Accept: text/plain)", host_log::log)
    .at("GET", "/audit", "NDJSON of the API requests answered and, from now on, every run's lifecycle records (run.*)", host_log::audit)
    .at("GET", "/events", "Every run's journal as one live stream (NDJSON or SSE) with run.created; ?task=, ?kinds=run.*; resumable with ?after=CURSOR or Last-Event-ID (?after=0: every stored run)", host_events::host_events)
    .tag("tasks")
    .at("GET", "/tasks", "Every task's latest version (paged)", tasks::list)
    .at("POST", "/tasks", "Create a task from JSON {name, code, graph?, config?} or a tar.gz of its folder; 409 if it exists", tasks::create)
    .at("GET", "/tasks/{name}", "A version's metadata, code, graph and config, and every version", tasks::get)
    .at("GET", "/tasks/{name}/graph", "The graph as graph show draws it: ?format=json|mermaid|dot, ?run=ID marks the states that run visited and is in", tasks::graph)
    .at("PUT", "/tasks/{name}", "Store a new version; running runs stay on theirs", tasks::replace)
    .at("DELETE", "/tasks/{name}", "Delete a task and its finished runs; 409 with active runs unless ?force=true", tasks::delete)
    .at("POST", "/tasks/{name}/runs", "Start a run: idempotent by Idempotency-Key, ?wait=30s answers once it ended", runs::start)
    .at("GET", "/tasks/{name}/runs", "The task's runs (filters and paging as /runs)", runs::list_of_task)
    .tag("runs")
    .at("GET", "/runs", "Runs, newest first; filters task, status, idempotency_key; paged", runs::list)
    .at("GET", "/runs/{id}", "A run; ?wait=30s&until=terminal|change|<status> long-polls", runs::get)
    .at("GET", "/runs/{id}/journal", "Journal records after ?after=SEQ (finite)", runs::journal)
    .at("GET", "/runs/{id}/events", "The journal as a live stream (NDJSON or SSE), resumable with ?after= or Last-Event-ID", stream::run_events)
    .at("GET", "/runs/{id}/log", "The run's console lines as a stream", compat::log)
    .at("GET", "/runs/{id}/output", "200 the output once succeeded; 409 failed or cancelled; 202 the run until then", runs::output)
    .at("GET", "/runs/{id}/health", "Status, pause point, lease owner and expiry", runs::health)
    .at("GET", "/runs/{id}/event/{name}", "The last event of that name the run emitted", runs::last_event)
    .at("GET", "/runs/{id}/events/{name}", "The events of that name the run emits (ctx.emit) as a stream, from ?after=SEQ, ending with the run", stream::named_events)
    .at("DELETE", "/runs/{id}", "Delete an ended run with its journal, signals and idempotency key; 409 while it runs, 404 unknown", runs::delete)
    .at("GET", "/runs/{id}/once/{name}", "The first event of that name after ?after=SEQ (race-free); 204 on timeout", runs::once)
    .at("POST", "/runs/{id}/_event", "Send an event {eventName, message} into the run's inbox", runs::send_event)
    .at("POST", "/runs/{id}/_stop", "Stop: the step in flight may finish within {timeout} ms; ends cancelled", runs::stop)
    .at("POST", "/runs/{id}/_kill", "End the run now (cancelled)", runs::kill)
    .at("POST", "/runs/{id}/_redrive", "Re-enter a failed run's failed step with fresh retries; 409 unless failed", runs::redrive)
    .at("POST", "/runs/{id}/_retry", "Continue a paused run", runs::retry)
    .at("POST", "/runs/{id}/_fork", "A new run with the first {from_seq} journal records of this one", runs::fork)
    .tag("sth")
    .at("GET", "/sequences", "STH: tasks as sequences", compat::list_sequences)
    .at("POST", "/sequence", "STH: upload a tar.gz (a new task or a new version)", compat::send_sequence)
    .at("GET", "/sequence/{name}", "STH: a task as a sequence", compat::get_sequence)
    .at("DELETE", "/sequence/{name}", "STH: delete a task (409 with active runs)", compat::delete_sequence)
    .at("POST", "/sequence/{name}/start", "STH: start a run from {appConfig, args}", compat::start)
    .at("GET", "/sequence/{name}/instances", "STH: ids of the task's active runs", compat::sequence_instances)
    .at("GET", "/instances", "STH: active runs as instances", compat::list_instances)
    .at("GET", "/instance/{id}", "STH: a run as an instance", compat::get_instance)
    .at("POST", "/instance/{id}/_event", "STH: send an event ([code, {eventName, message}])", runs::send_event)
    .at("POST", "/instance/{id}/_stop", "STH: stop ([code, {timeout}])", runs::stop)
    .at("POST", "/instance/{id}/_kill", "STH: kill", runs::kill)
    .at("GET", "/instance/{id}/once/{name}", "STH: the next event of that name", runs::once)
    .at("GET", "/instance/{id}/events/{name}", "STH: the events of that name as a stream", stream::named_events)
    .at("GET", "/instance/{id}/event/{name}", "STH: the last event of that name", runs::last_event)
    .at("GET", "/instance/{id}/health", "STH: the run's health", runs::health)
    .at("GET", "/instance/{id}/output", "STH: the output as one NDJSON line once ended", compat::output)
    .at("GET", "/instance/{id}/log", "STH: console lines as a stream", compat::log)
    .at("GET", "/instance/{id}/{stream}", "STH byte streams: 501, a run has none", compat::no_byte_streams)
    .at("POST", "/instance/{id}/{stream}", "STH byte streams: 501, a run has none", compat::no_byte_streams)
    .at("GET", "/topics", "STH topics: 501, not available yet", compat::no_topics)
    .at("POST", "/topics", "STH topics: 501, not available yet", compat::no_topics)
    .at("GET", "/topic/{name}", "STH topics: 501, not available yet", compat::no_topics)
    .at("POST", "/topic/{name}", "STH topics: 501, not available yet", compat::no_topics);
    (api.router.fallback(not_found), api.ops)
}

/// The host API's routes, for `serve` and for tests that mount it in-process.
pub fn router(state: AppState) -> Router {
    let (api, _) = api();
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(middleware::from_fn(error_shape))
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        // outside the token check, so refused requests are in the audit trail too; once per
        // request, with the path as asked (`/api/v1/…`)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            host_log::record,
        ))
        .merge(super::console::routes()) // the web console: a static shell, outside the token check
        .with_state(state)
}

/// The OpenAPI 3.1 document of every registered operation.
pub fn openapi_document() -> Value {
    let (_, ops) = api();
    let mut paths = serde_json::Map::new();
    for op in &ops {
        let params: Vec<Value> = op
            .path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let entry = paths
            .entry(format!("/api/v1{}", op.path))
            .or_insert_with(|| json!({}));
        entry[op.method.to_ascii_lowercase()] = json!({
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": format!("{} {}", op.method, op.path),
            "parameters": params,
            "responses": {
                "2XX": { "description": "success" },
                "default": {
                    "description": "an error",
                    "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
                }
            }
        });
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "sequential-ecosystem host API",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Durable runs of JavaScript tasks over HTTP; see docs/host-api.md."
        },
        "paths": paths,
        "components": {
            "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } },
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error", "code"],
                    "properties": {
                        "error": { "type": "string", "description": "what went wrong, naming the input and what is valid" },
                        "code": { "type": "string", "examples": ["RUN_NOT_FOUND"] },
                        "details": { "type": "object" }
                    }
                }
            }
        }
    })
}

async fn entities(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    use sequential_adaptor::{Page, RunFilter, RunStatus};
    let tasks: Vec<String> = state
        .store()
        .list_tasks()
        .await
        .map_err(ApiError::storage)?
        .into_iter()
        .map(|t| t.name.to_string())
        .collect();
    let filter = RunFilter {
        task: None,
        statuses: RunStatus::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect(),
    };
    let mut runs = Vec::new();
    let mut page = Page::first(1000);
    loop {
        let got = state
            .store()
            .list_runs(&filter, page)
            .await
            .map_err(ApiError::storage)?;
        runs.extend(got.runs.iter().map(|r| r.id.to_string()));
        match got.next {
            Some(after) => page.after = Some(after),
            None => break,
        }
    }
    Ok(axum::Json(json!({ "tasks": tasks, "runs": runs })))
}

async fn openapi() -> axum::Json<Value> {
    axum::Json(openapi_document())
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ROUTE_NOT_FOUND",
        format!(
            "no route {} {}; the API lives under /api/v1 (GET /api/v1/version, /api/v1/tasks, /api/v1/runs …)",
            req.method(),
            req.uri().path()
        ),
    )
}

/// Gives every error the documented shape, also those the framework answers itself (a query
/// string or path that does not parse, a method the route does not have).
async fn error_shape(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status();
    let is_json = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if status.as_u16() < 400 || is_json {
        return resp;
    }
    let allow = resp
        .headers()
        .get(header::ALLOW)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| (status == StatusCode::METHOD_NOT_ALLOWED).then(|| allowed(&path)));
    let text = axum::body::to_bytes(resp.into_body(), 64 << 10)
        .await
        .map(|b| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_default();
    let (code, message) = match status {
        StatusCode::METHOD_NOT_ALLOWED => (
            "METHOD_NOT_ALLOWED",
            format!(
                "{method} is not served at {path}; this path takes {}",
                allow.as_deref().unwrap_or("other methods")
            ),
        ),
        StatusCode::BAD_REQUEST => (
            "BAD_REQUEST",
            format!("{method} {path}: {text} (see GET /api/v1/openapi.json for the parameters)"),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => ("BODY_TOO_LARGE", format!("{method} {path}: {text}")),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("UNSUPPORTED_MEDIA_TYPE", format!("{method} {path}: {text}"))
        }
        StatusCode::UNPROCESSABLE_ENTITY => ("INVALID", format!("{method} {path}: {text}")),
        StatusCode::NOT_FOUND => ("NOT_FOUND", format!("{method} {path}: {text}")),
        _ => ("ERROR", format!("{method} {path}: {text}")),
    };
    let mut out = ApiError::new(status, code, message).into_response();
    if let Some(a) = allow.and_then(|a| header::HeaderValue::from_str(&a).ok()) {
        out.headers_mut().insert(header::ALLOW, a);
    }
    out
}

/// The methods registered for `path` (`/api/v1/runs/…`), comma-separated.
fn allowed(path: &str) -> String {
    static OPS: std::sync::OnceLock<Vec<Op>> = std::sync::OnceLock::new();
    let ops = OPS.get_or_init(|| api().1);
    let rel = path.strip_prefix("/api/v1").unwrap_or(path);
    let segs: Vec<&str> = rel.split('/').collect();
    let mut methods: Vec<&str> = ops
        .iter()
        .filter(|op| {
            let t: Vec<&str> = op.path.split('/').collect();
            t.len() == segs.len()
                && t.iter()
                    .zip(&segs)
                    .all(|(t, s)| t.starts_with('{') || t == s)
        })
        .map(|op| op.method)
        .collect();
    methods.sort_unstable();
    methods.dedup();
    methods.join(", ")
}

/// With a token configured, every request needs `Authorization: Bearer <token>`; the
/// comparison takes the same time whatever the mismatch.
async fn authorize(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(token) = &state.token {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let ok: bool = subtle::ConstantTimeEq::ct_eq(given.as_bytes(), token.as_bytes()).into();
        if !ok {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "this server needs `Authorization: Bearer <token>` (the token it was started with: SEQUENTIAL_API_TOKEN or --token-file)",
            )
            .into_response();
        }
    }
    next.run(req).await
}

/// Reads a body of at most `limit` bytes; more is 413 in the API's error shape.
pub async fn read_body(body: Body, limit: usize) -> ApiResult<Bytes> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "BODY_TOO_LARGE",
            format!("the request body is over this server's limit of {limit} bytes"),
        )
        .details(json!({ "limit": limit }))
    })
}

/// Checks that a body is JSON (`Content-Type: application/json`, or none at all).
pub fn expect_json(headers: &HeaderMap) -> ApiResult<()> {
    match headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    {
        None => Ok(()),
        Some(ct) if ct.starts_with("application/json") => Ok(()),
        Some(ct) => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UNSUPPORTED_MEDIA_TYPE",
            format!("Content-Type {ct:?}: expected application/json"),
        )),
    }
}

/// Parses a JSON body (an empty body is `{}`); a syntax error names line and column.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8], what: &str) -> ApiResult<T> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "{what} is not valid JSON: {e} (at line {}, column {})",
            e.line(),
            e.column()
        ))
        .details(json!({ "line": e.line(), "column": e.column() }))
    })
}

async fn version() -> axum::Json<Value> {
    axum::Json(json!({
        "service": "sequential-ecosystem",
        "version": env!("CARGO_PKG_VERSION"),
        "apiVersion": "v1",
        "build": option_env!("SEQUENTIAL_BUILD").unwrap_or("dev"),
    }))
}

async fn health(State(state): State<AppState>) -> Response {
    let storage = state.store().health().await;
    let body = json!({
        "ok": storage.is_ok(),
        "storage": {
            "adapter": state.store().scheme(),
            "ok": storage.is_ok(),
            "error": storage.err().map(|e| e.to_string()),
        },
        "worker": state.worker,
        "uptime_s": state.started.elapsed().as_secs(),
    });
    let status = if body["ok"] == true {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

async fn load_check(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    use sequential_adaptor::{Page, RunFilter, RunStatus};
    let mut counts = serde_json::Map::new();
    for status in [
        RunStatus::Running,
        RunStatus::Waiting,
        RunStatus::Queued,
        RunStatus::Paused,
    ] {
        let filter = RunFilter {
            task: None,
            statuses: vec![status],
        };
        let mut n = 0usize;
        let mut page = Page::first(1000);
        loop {
            let got = state
                .store()
                .list_runs(&filter, page)
                .await
                .map_err(ApiError::storage)?;
            n += got.runs.len();
            match got.next {
                Some(after) => page.after = Some(after),
                None => break,
            }
        }
        counts.insert(status.as_str().into(), n.into());
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let avg: Vec<f64> = load
        .split_whitespace()
        .take(3)
        .filter_map(|x| x.parse().ok())
        .collect();
    Ok(axum::Json(json!({
        "avgLoad": avg.first().copied().unwrap_or(0.0),
        "loadAverages": avg,
        "currentLoad": avg.first().copied().unwrap_or(0.0),
        "memFree": null,
        "memUsed": null,
        "fsSize": [],
        "runs": counts,
        "streams": state.streams.load(std::sync::atomic::Ordering::Relaxed),
    })))
}

async fn config(State(state): State<AppState>) -> axum::Json<Value> {
    axum::Json(json!({
        "storage": { "adapter": state.store().scheme() },
        "worker": state.worker,
        "auth": state.token.is_some(),
        "limits": {
            "upload_bytes": state.limits.upload_bytes,
            "body_bytes": state.limits.body_bytes,
            "upload_files": state.limits.upload_files,
            "streams": state.limits.streams,
            "ping_ms": state.limits.ping.as_millis() as u64,
        },
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `.at(` in this file is a registered operation; the document lists each once.
    #[test]
    fn the_openapi_document_lists_every_registered_route() {
        let source = include_str!("api.rs");
        let registered = source
            .lines()
            .filter(|l| l.trim_start().starts_with(".at("))
            .count();
        let doc = openapi_document();
        let listed: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|m| m.as_object().unwrap().len())
            .sum();
        let (_, ops) = api();
        assert_eq!(ops.len(), registered, "every .at( registers one operation");
        assert_eq!(
            listed, registered,
            "every operation is in the document once"
        );
        for op in &ops {
            let entry =
                &doc["paths"][format!("/api/v1{}", op.path)][op.method.to_ascii_lowercase()];
            assert!(
                entry["summary"].as_str().is_some_and(|s| !s.is_empty()),
                "{op:?}"
            );
        }
        assert_eq!(
            doc["paths"]["/api/v1/runs/{id}/once/{name}"]["get"]["parameters"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }
}
