//! `/api/v1/tasks…`: upload (JSON or a tar.gz of the task folder), versions, delete.

use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sequential_adaptor::{
    DeleteMode, NewTaskVersion, Page, RunFilter, RunStatus, TaskName, TaskVersion, VersionSel,
};
use sequential_support::time::rfc3339_millis;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{parse_json, read_body};
use super::error::{ApiError, ApiResult};
use super::{AppState, upload};

/// A task name from a path or body, or 400 naming the rule.
pub fn task_name(raw: &str) -> ApiResult<TaskName> {
    TaskName::new(raw).map_err(|_| {
        ApiError::bad_request(format!(
            "invalid task name {raw:?}: expected {}",
            TaskName::RULE
        ))
        .details(json!({ "task": raw }))
    })
}

/// The latest version of `name`, or 404.
pub async fn latest(state: &AppState, name: &TaskName) -> ApiResult<TaskVersion> {
    match state
        .store()
        .get_task_version(name, VersionSel::Latest)
        .await
    {
        Ok(v) => Ok(v),
        Err(sequential_adaptor::Error::NotFound { .. }) => {
            Err(ApiError::task_not_found(name.as_str()))
        }
        Err(e) => Err(ApiError::storage(e)),
    }
}

/// Runs of `task` that have not ended.
async fn active_runs(state: &AppState, task: &TaskName) -> ApiResult<Vec<String>> {
    let filter = RunFilter {
        task: Some(task.clone()),
        statuses: RunStatus::ALL
            .into_iter()
            .filter(|s| !s.is_terminal())
            .collect(),
    };
    let page = state
        .store()
        .list_runs(&filter, Page::first(1000))
        .await
        .map_err(ApiError::storage)?;
    Ok(page.runs.iter().map(|r| r.id.to_string()).collect())
}

fn summary(v: &TaskVersion, active: Option<usize>) -> Value {
    json!({
        "name": v.task,
        "version": v.version,
        "hash": v.hash,
        "kind": if v.graph.is_some() { "graph" } else { "implicit" },
        "description": v.config.get("description").cloned().unwrap_or(Value::Null),
        "inputs": v.config.get("inputs").cloned().unwrap_or(json!([])),
        "updated_at": rfc3339_millis(v.created_at),
        "active_runs": active,
    })
}

#[derive(Deserialize)]
pub struct ListQuery {
    limit: Option<usize>,
    cursor: Option<String>,
}

/// `GET /tasks`: every stored task's latest version, by name, paged by name.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let all = state
        .store()
        .list_tasks()
        .await
        .map_err(ApiError::storage)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let rest = all
        .into_iter()
        .filter(|t| q.cursor.as_deref().is_none_or(|c| t.name.as_str() > c));
    let mut items = Vec::new();
    let mut next = None;
    for t in rest {
        if items.len() == limit {
            next = items
                .last()
                .and_then(|i: &Value| i["name"].as_str().map(str::to_string));
            break;
        }
        let v = latest(&state, &t.name).await?;
        items.push(summary(&v, None));
    }
    Ok(axum::Json(json!({ "items": items, "next_cursor": next })))
}

#[derive(Deserialize)]
struct JsonTask {
    name: Option<String>,
    code: String,
    graph: Option<Value>,
    config: Option<Value>,
}

#[derive(Deserialize)]
pub struct UploadQuery {
    pub name: Option<String>,
}

/// Reads an upload: JSON `{name, code, graph?, config?}` or a tar.gz of the task folder.
async fn read_upload(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    name_hint: Option<&str>,
) -> ApiResult<NewTaskVersion> {
    let bytes = read_body(body, state.limits.upload_bytes).await?;
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    if ct.starts_with("application/json") {
        let t: JsonTask = parse_json(&bytes, "the task document")?;
        let raw = t.name.as_deref().or(name_hint).ok_or_else(|| {
            ApiError::unprocessable(
                "the task document has no \"name\": expected {name, code, graph?, config?}",
            )
        })?;
        let task = task_name(raw)?;
        if let Some(hint) = name_hint
            && hint != raw
        {
            return Err(ApiError::unprocessable(format!(
                "the body names task {raw:?} but the path names {hint:?}"
            )));
        }
        let config = t.config.unwrap_or_else(|| json!({ "name": raw }));
        return Ok(NewTaskVersion {
            task,
            code: t.code,
            graph: t.graph,
            config,
        });
    }
    if ct.starts_with("application/octet-stream")
        || ct.starts_with("application/gzip")
        || ct.starts_with("application/x-gzip")
        || ct.starts_with("application/x-tar")
    {
        let folder = upload::unpack(&bytes, state.limits.upload_files, state.limits.upload_bytes)?;
        return folder.into_version(name_hint);
    }
    Err(ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "UNSUPPORTED_MEDIA_TYPE",
        format!(
            "Content-Type {ct:?}: expected application/json ({{name, code, graph?, config?}}) or application/octet-stream (a tar.gz of the task folder)"
        ),
    ))
}

async fn store_version(
    state: &AppState,
    new: NewTaskVersion,
    status: StatusCode,
) -> ApiResult<Response> {
    if let Some(graph) = &new.graph {
        // a graph that would fail its runs is refused before it is stored
        let report = sequential_tasker_engine::graph::check(&new.code, &graph.to_string());
        if !report.is_ok() {
            let errors: Vec<Value> = report
                .errors()
                .map(|d| json!({ "pointer": d.pointer, "message": d.message, "expected": d.expected }))
                .collect();
            let first = &errors[0];
            return Err(ApiError::unprocessable(format!(
                "graph.json of task `{}` has {} error(s); the first, at {}: {} (expected {}); nothing was stored",
                new.task,
                errors.len(),
                first["pointer"].as_str().unwrap_or(""),
                first["message"].as_str().unwrap_or(""),
                first["expected"].as_str().unwrap_or("")
            ))
            .details(json!({ "errors": errors })));
        }
    }
    let put = state
        .store()
        .put_task_version(new)
        .await
        .map_err(ApiError::storage)?;
    let v = put.version;
    Ok((
        status,
        axum::Json(json!({
            "id": v.task,
            "name": v.task,
            "version": v.version,
            "hash": v.hash,
            "created": put.created,
        })),
    )
        .into_response())
}

/// Stores an upload as a new version of its task, existing or not: 201 when the task is new,
/// 200 when it existed (identical content answers the existing version).
pub async fn upsert(
    state: &AppState,
    headers: &HeaderMap,
    body: Body,
    name: Option<&str>,
) -> ApiResult<Response> {
    let new = read_upload(state, headers, body, name).await?;
    let existed = state
        .store()
        .get_task_version(&new.task, VersionSel::Latest)
        .await
        .is_ok();
    let status = if existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    store_version(state, new, status).await
}

/// `POST /tasks`: a new task; 409 when the name is taken (PUT stores a new version).
pub async fn create(
    State(state): State<AppState>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let new = read_upload(&state, &headers, body, q.name.as_deref()).await?;
    if let Ok(existing) = state
        .store()
        .get_task_version(&new.task, VersionSel::Latest)
        .await
    {
        return Err(ApiError::conflict(
            "TASK_EXISTS",
            format!(
                "task `{}` exists (version {}); PUT /api/v1/tasks/{} stores a new version",
                new.task, existing.version, new.task
            ),
        )
        .details(json!({ "task": new.task, "version": existing.version })));
    }
    store_version(&state, new, StatusCode::CREATED).await
}

/// `PUT /tasks/:name`: a new version (identical content answers the existing one); runs stay
/// pinned to their versions.
pub async fn replace(
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    task_name(&name)?;
    let new = read_upload(&state, &headers, body, Some(&name)).await?;
    store_version(&state, new, StatusCode::OK).await
}

#[derive(Deserialize)]
pub struct VersionQuery {
    version: Option<u32>,
}

/// `GET /tasks/:name`: a version's metadata, code, graph and config, and every version.
pub async fn get(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<VersionQuery>,
) -> ApiResult<axum::Json<Value>> {
    let task = task_name(&name)?;
    let newest = latest(&state, &task).await?;
    let v = match q.version {
        None => newest.clone(),
        Some(n) => state
            .store()
            .get_task_version(&task, VersionSel::Exact(n))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "VERSION_NOT_FOUND",
                    format!(
                        "task `{task}` has no version {n}: versions are 1 to {}",
                        newest.version
                    ),
                )
            })?,
    };
    let mut versions = Vec::new();
    for n in 1..=newest.version {
        if let Ok(x) = state
            .store()
            .get_task_version(&task, VersionSel::Exact(n))
            .await
        {
            versions.push(json!({ "version": x.version, "hash": x.hash, "created_at": rfc3339_millis(x.created_at) }));
        }
    }
    let active = active_runs(&state, &task).await?;
    let mut doc = summary(&v, Some(active.len()));
    doc["code"] = Value::String(v.code.clone());
    doc["graph"] = v.graph.clone().unwrap_or(Value::Null);
    doc["config"] = v.config.clone();
    doc["versions"] = Value::Array(versions);
    Ok(axum::Json(doc))
}

#[derive(Deserialize)]
pub struct DeleteQuery {
    #[serde(default)]
    pub force: bool,
}

/// `DELETE /tasks/:name`: 409 listing the active runs unless `?force=true` (which cancels them).
pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<DeleteQuery>,
) -> ApiResult<axum::Json<Value>> {
    let task = task_name(&name)?;
    latest(&state, &task).await?;
    let active = active_runs(&state, &task).await?;
    if !active.is_empty() && !q.force {
        return Err(ApiError::conflict(
            "TASK_HAS_ACTIVE_RUNS",
            format!(
                "task `{task}` has {} active run(s); finish or cancel them, or DELETE with ?force=true",
                active.len()
            ),
        )
        .details(json!({ "runs": active })));
    }
    for id in &active {
        if let Ok(id) = id.parse() {
            let _ = state.engine.kill(id).await;
        }
    }
    let mode = if q.force {
        DeleteMode::Force
    } else {
        DeleteMode::IfIdle
    };
    state
        .store()
        .delete_task(&task, mode)
        .await
        .map_err(ApiError::storage)?;
    Ok(axum::Json(json!({ "name": task })))
}

#[derive(Deserialize)]
pub struct GraphQuery {
    format: Option<String>,
    run: Option<String>,
    version: Option<u32>,
}

/// `GET /tasks/:name/graph?format=json|mermaid|dot&run=ID`: the graph as `graph show` draws
/// it (latest version, `?version=N`, or with `run` the version that run is pinned to, its
/// visited and current states marked); 404 for a task without graph.json.
pub async fn graph(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<GraphQuery>,
) -> ApiResult<Response> {
    use crate::commands::graph::{Format, render_stored};
    let task = task_name(&name)?;
    let format = match q.format.as_deref() {
        None | Some("json") => Format::Json,
        Some("mermaid") => Format::Mermaid,
        Some("dot") => Format::Dot,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "?format={f}: expected json, mermaid or dot"
            )));
        }
    };
    let newest = latest(&state, &task).await?;
    let run = match q.run.as_deref() {
        None => None,
        Some(raw) => {
            let id = super::runs::run_id(raw)?;
            let run = super::runs::load(&state, id).await?;
            if run.task != task {
                return Err(ApiError::bad_request(format!(
                    "?run={id} is a run of task `{}`, not of `{task}`",
                    run.task
                ))
                .details(json!({ "run": id.to_string(), "task": run.task })));
            }
            let journal = state.engine.read_all(id).await.map_err(ApiError::engine)?;
            Some((run, journal))
        }
    };
    let version = match (&run, q.version) {
        (Some((r, _)), _) => Some(r.version),
        (None, v) => v,
    };
    let v = match version {
        None => newest,
        Some(n) => state
            .store()
            .get_task_version(&task, VersionSel::Exact(n))
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "VERSION_NOT_FOUND",
                    format!("task `{task}` has no version {n} (any more)"),
                )
            })?,
    };
    let Some(graph) = v.graph.as_ref() else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "GRAPH_NOT_FOUND",
            format!(
                "task `{task}` v{} has no graph.json: it is an implicit task (its code is the whole task)",
                v.version
            ),
        ));
    };
    let text = render_stored(
        &task,
        graph,
        run.as_ref().map(|(r, j)| (r, j.as_slice())),
        format,
    )
    .map_err(ApiError::unprocessable)?;
    let content_type = match format {
        Format::Json => "application/json",
        Format::Mermaid => "text/vnd.mermaid; charset=utf-8",
        Format::Dot => "text/vnd.graphviz; charset=utf-8",
    };
    Ok(([(header::CONTENT_TYPE, content_type)], text).into_response())
}
