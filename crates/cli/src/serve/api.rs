//! The router: every `/api/v1` route, the bearer-token check, and body reading with the
//! documented limits and error shape.

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::error::{ApiError, ApiResult};
use super::{AppState, compat, runs, stream, tasks};

/// The host API's routes, for `serve` and for tests that mount it in-process.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/version", get(version))
        .route("/health", get(health))
        .route("/load-check", get(load_check))
        .route("/config", get(config))
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route(
            "/tasks/{name}",
            get(tasks::get).put(tasks::replace).delete(tasks::delete),
        )
        .route(
            "/tasks/{name}/runs",
            post(runs::start).get(runs::list_of_task),
        )
        .route("/runs", get(runs::list))
        .route("/runs/{id}", get(runs::get))
        .route("/runs/{id}/journal", get(runs::journal))
        .route("/runs/{id}/events", get(stream::run_events))
        .route("/runs/{id}/output", get(runs::output))
        .route("/runs/{id}/health", get(runs::health))
        .route("/runs/{id}/event/{name}", get(runs::last_event))
        .route("/runs/{id}/once/{name}", get(runs::once))
        .route("/runs/{id}/_event", post(runs::send_event))
        .route("/runs/{id}/_stop", post(runs::stop))
        .route("/runs/{id}/_kill", post(runs::kill))
        .route("/runs/{id}/_retry", post(runs::retry))
        .route("/runs/{id}/_fork", post(runs::fork))
        .route("/runs/{id}/log", get(compat::log))
        // STH compatibility: sequences are tasks, instances are runs
        .route("/sequences", get(compat::list_sequences))
        .route("/sequence", post(compat::send_sequence))
        .route(
            "/sequence/{name}",
            get(compat::get_sequence).delete(compat::delete_sequence),
        )
        .route("/sequence/{name}/start", post(compat::start))
        .route(
            "/sequence/{name}/instances",
            get(compat::sequence_instances),
        )
        .route("/instances", get(compat::list_instances))
        .route("/instance/{id}", get(compat::get_instance))
        .route("/instance/{id}/_event", post(runs::send_event))
        .route("/instance/{id}/_stop", post(runs::stop))
        .route("/instance/{id}/_kill", post(runs::kill))
        .route("/instance/{id}/once/{name}", get(runs::once))
        .route("/instance/{id}/event/{name}", get(runs::last_event))
        .route("/instance/{id}/health", get(runs::health))
        .route("/instance/{id}/output", get(compat::output))
        .route("/instance/{id}/log", get(compat::log))
        .route(
            "/instance/{id}/{stream}",
            get(compat::no_byte_streams).post(compat::no_byte_streams),
        )
        .route("/topics", get(compat::no_topics).post(compat::no_topics))
        .route(
            "/topic/{name}",
            get(compat::no_topics).post(compat::no_topics),
        )
        .fallback(not_found);
    Router::new()
        .nest("/api/v1", api)
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), authorize))
        .with_state(state)
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
