//! The Scramjet Transform Hub aliases (HOST-API.md §4.2, "STH compatibility"), so that
//! `@scramjet/api-client`'s `HostClient`, `SequenceClient` and `InstanceClient` work unchanged:
//! sequences are tasks, instances are runs. STH calls that have no meaning here (topics,
//! stdin/stdout byte streams) answer STH's error shape with a sentence saying so.
//!
//! A start's `{appConfig, args}` becomes the run's input: `args[0]` when `args` is a one-element
//! array, `args` itself when it is anything else, else `appConfig` (or `{}`).

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sequential_adaptor::{Created, NewRun, Order, Page, Run, RunFilter, RunId, RunStatus};
use serde_json::{Value, json};

use super::api::{expect_json, parse_json, read_body};
use super::error::{ApiError, ApiResult};
use super::runs::{load, run_id};
use super::tasks::{self, task_name};
use super::{AppState, runs};

/// A run as an STH `Instance`.
pub fn instance(run: &Run) -> Value {
    let (status, terminated) = match run.status {
        RunStatus::Queued => ("starting", Value::Null),
        RunStatus::Running | RunStatus::Waiting | RunStatus::Paused => ("running", Value::Null),
        RunStatus::Stopping => ("stopping", Value::Null),
        RunStatus::Succeeded => ("completed", json!({ "exitcode": 0, "reason": "completed" })),
        RunStatus::Failed => ("errored", json!({ "exitcode": 1, "reason": "failed" })),
        RunStatus::Cancelled => (
            "completed",
            json!({ "exitcode": 137, "reason": "cancelled" }),
        ),
    };
    json!({
        "id": run.id.to_string(),
        "sequence": run.task,
        "sequenceId": run.task,
        "status": status,
        "terminated": terminated,
        "created": sequential_support::time::rfc3339_millis(run.created_at),
        "started": sequential_support::time::rfc3339_millis(run.created_at),
        "ended": run.ended_at.map(sequential_support::time::rfc3339_millis),
        "appConfig": {},
        "args": [run.input],
        "run": { "status": run.status, "output": run.output, "error": run.error },
    })
}

async fn runs_of(
    state: &AppState,
    task: Option<&sequential_adaptor::TaskName>,
) -> ApiResult<Vec<Run>> {
    let filter = RunFilter {
        task: task.cloned(),
        statuses: Vec::new(),
    };
    let mut page = Page {
        after: None,
        limit: 1000,
        order: Order::NewestFirst,
    };
    let mut out = Vec::new();
    loop {
        let got = state
            .store()
            .list_runs(&filter, page)
            .await
            .map_err(ApiError::storage)?;
        out.extend(got.runs);
        match got.next {
            Some(n) if out.len() < 10_000 => page.after = Some(n),
            _ => return Ok(out),
        }
    }
}

async fn sequence(state: &AppState, name: &str) -> ApiResult<Value> {
    let task = task_name(name)?;
    let v = tasks::latest(state, &task).await?;
    let instances: Vec<String> = runs_of(state, Some(&task))
        .await?
        .iter()
        .filter(|r| !r.status.is_terminal())
        .map(|r| r.id.to_string())
        .collect();
    Ok(json!({
        "id": task,
        "config": { "name": task, "version": v.version, "hash": v.hash, "config": v.config },
        "instances": instances,
    }))
}

/// `GET /sequences`.
pub async fn list_sequences(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let mut out = Vec::new();
    for t in state
        .store()
        .list_tasks()
        .await
        .map_err(ApiError::storage)?
    {
        out.push(sequence(&state, t.name.as_str()).await?);
    }
    Ok(axum::Json(Value::Array(out)))
}

/// `GET /sequence/:id`.
pub async fn get_sequence(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(sequence(&state, &name).await?))
}

/// `POST /sequence`: a tar.gz of the task folder; a name already stored gets a new version
/// (STH would make a second sequence; here a task name is the id).
pub async fn send_sequence(
    State(state): State<AppState>,
    Query(q): Query<tasks::UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    tasks::upsert(&state, &headers, body, q.name.as_deref()).await
}

/// `DELETE /sequence/:id`: 409 while it has active instances.
pub async fn delete_sequence(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let _deleted = tasks::delete(
        State(state),
        Path(name.clone()),
        Query(tasks::DeleteQuery { force: false }),
    )
    .await?;
    Ok(axum::Json(json!({ "id": name })))
}

/// `GET /sequence/:id/instances`: the ids of its runs that have not ended.
pub async fn sequence_instances(
    State(state): State<AppState>,
    Path(name): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let task = task_name(&name)?;
    tasks::latest(&state, &task).await?;
    let ids: Vec<String> = runs_of(&state, Some(&task))
        .await?
        .iter()
        .filter(|r| !r.status.is_terminal())
        .map(|r| r.id.to_string())
        .collect();
    Ok(axum::Json(json!(ids)))
}

/// `GET /instances`: runs that have not ended, as STH instances.
pub async fn list_instances(State(state): State<AppState>) -> ApiResult<axum::Json<Value>> {
    let runs = runs_of(&state, None).await?;
    Ok(axum::Json(Value::Array(
        runs.iter()
            .filter(|r| !r.status.is_terminal())
            .map(instance)
            .collect(),
    )))
}

/// `POST /sequence/:id/start {appConfig, args}` → `{id}` of the new run.
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let task = task_name(&name)?;
    expect_json(&headers)?;
    let bytes = read_body(body, state.limits.body_bytes).await?;
    let payload: Value = parse_json(&bytes, "the start payload")?;
    let input = match payload.get("args") {
        Some(Value::Array(a)) if a.len() == 1 => a[0].clone(),
        Some(Value::Array(a)) if a.is_empty() => {
            payload.get("appConfig").cloned().unwrap_or(json!({}))
        }
        Some(args) if !args.is_null() => args.clone(),
        _ => payload.get("appConfig").cloned().unwrap_or(json!({})),
    };
    let version = tasks::latest(&state, &task).await?;
    let new = NewRun::new(task, version.version, input);
    let run = match state
        .store()
        .create_run(new)
        .await
        .map_err(ApiError::storage)?
    {
        Created::Created(r) | Created::Existing(r) => r,
    };
    runs::drive(&state, run.id);
    Ok((
        StatusCode::OK,
        axum::Json(json!({ "id": run.id.to_string(), "result": "success" })),
    )
        .into_response())
}

/// `GET /instance/:id`.
pub async fn get_instance(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let run = load(&state, run_id(&id)?).await?;
    Ok(axum::Json(instance(&run)))
}

/// `GET /instance/:id/output`: the output as one NDJSON line once the run ended (the run is
/// waited for up to 5 minutes); a failed run's error.
pub async fn output(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id: RunId = run_id(&id)?;
    let run = runs::wait_until(
        &state,
        id,
        std::time::Instant::now() + std::time::Duration::from_secs(300),
        |r| r.status.is_terminal(),
    )
    .await?;
    let line = match run.status {
        RunStatus::Succeeded => run.output.unwrap_or(Value::Null),
        _ => json!({ "status": run.status, "error": run.error }),
    };
    Ok((
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        format!("{line}\n"),
    )
        .into_response())
}

/// Byte streams of a process (stdin, stdout, stderr, input) do not exist for a task run.
pub async fn no_byte_streams(Path((_, stream)): Path<(String, String)>) -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "NOT_SUPPORTED",
        format!(
            "instance stream {stream:?}: a run is a function, not a process, so it has no byte streams; read its output (…/output), its events (…/events) or send it events (…/_event)"
        ),
    )
}

/// Topics are reserved for a later version (HOST-API.md §4.2).
pub async fn no_topics() -> ApiError {
    ApiError::new(
        StatusCode::NOT_IMPLEMENTED,
        "NOT_SUPPORTED",
        "topics are not available yet: this server keeps durable runs, not data streams",
    )
}

/// `GET /instance/:id/log`: the run's `console.*` lines as NDJSON (until it ends).
pub async fn log(
    state: State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    super::stream::run_events(
        state,
        Path(id),
        Query(super::stream::EventsQuery::kinds("log")),
        headers,
    )
    .await
}
