//! `/api/v1/runs…` and `POST /api/v1/tasks/:name/runs`: start (idempotent, optionally waiting),
//! list, read, long-poll, journal, output, events a run emitted, and the control verbs.

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use sequential_adaptor::{
    Created, NewRunOf, Order, Page, Run, RunFilter, RunId, RunStatus, VersionSel,
};
use sequential_support::time::rfc3339_millis;
use serde::Deserialize;
use serde_json::{Value, json};

use super::api::{expect_json, parse_json, read_body};
use super::error::{ApiError, ApiResult};
use super::view;
use super::{AppState, tasks};

/// The longest a request may wait (`?wait=`).
const MAX_WAIT: Duration = Duration::from_secs(300);

pub fn run_id(raw: &str) -> ApiResult<RunId> {
    raw.parse().map_err(|_| {
        ApiError::bad_request(format!(
            "invalid run id {raw:?}: expected a UUID such as 0190c3e2-7a4b-7c00-8000-000000000000"
        ))
        .details(json!({ "run": raw }))
    })
}

fn wait_param(raw: Option<&str>) -> ApiResult<Option<Duration>> {
    raw.map(|w| {
        sequential_support::duration::parse(w)
            .map(|d| d.min(MAX_WAIT))
            .map_err(|e| ApiError::bad_request(format!("?wait: {e}")))
    })
    .transpose()
}

/// Reads a run or 404 naming it.
pub async fn load(state: &AppState, id: RunId) -> ApiResult<Run> {
    match state.store().get_run(id).await {
        Ok(r) => Ok(r),
        Err(sequential_adaptor::Error::NotFound { .. }) => {
            Err(ApiError::run_not_found(&id.to_string()))
        }
        Err(e) => Err(ApiError::storage(e)),
    }
}

/// The Run object of `run` (reads its journal for the pause point and last seq).
pub async fn view(state: &AppState, run: &Run) -> ApiResult<Value> {
    let mut kept = state.kept_summary(run.id);
    if kept.ended_at_revision != Some(run.revision) {
        // the records appended since this server last looked, in small pages
        const PAGE: usize = 64;
        loop {
            let page = state
                .store()
                .read_journal(run.id, kept.summary.last_seq, PAGE)
                .await
                .map_err(ApiError::storage)?;
            kept.summary.apply(&page);
            if page.len() < PAGE {
                break;
            }
        }
        // An ended run whose journal ends with its ending record is done: a kill flips the
        // status before it appends `run.cancelled`, so both are checked.
        if run.status.is_terminal() && kept.summary.ended {
            kept.ended_at_revision = Some(run.revision);
        }
        state.keep_summary(run.id, kept.clone());
    }
    let hash = state.hash_of(&run.task, run.version).await;
    Ok(view::run_json(run, hash.as_deref(), &kept.summary))
}

/// Drives run `id` now, in this process, when the embedded worker is on (rather than at the
/// worker's next claim; the worker stays the fallback).
pub fn drive(state: &AppState, id: RunId) {
    if !state.worker {
        return;
    }
    let st = state.clone();
    tokio::spawn(async move {
        if let Err(e) = st.engine.run_until_settled(id, None).await {
            tracing::warn!(run = %id, error = %e, "driving a run");
            st.log.add(
                "run",
                "warn",
                format!("driving run {id}: {e}"),
                json!({ "run": id.to_string() }),
            );
        }
    });
}

/// Waits until `done(run)` or the deadline, re-reading the run whenever storage may have
/// changed; returns the last run read.
pub async fn wait_until(
    state: &AppState,
    id: RunId,
    deadline: Instant,
    done: impl Fn(&Run) -> bool,
) -> ApiResult<Run> {
    let mut stopping = state.stopping.subscribe();
    loop {
        let run = load(state, id).await?;
        let left = deadline.saturating_duration_since(Instant::now());
        if done(&run) || left.is_zero() || *stopping.borrow() {
            return Ok(run);
        }
        tokio::select! {
            _ = state.store().wait_for_change(left.min(Duration::from_millis(250))) => {}
            _ = stopping.changed() => {}
        }
    }
}

#[derive(Deserialize, Default)]
struct StartBody {
    #[serde(default)]
    input: Value,
    version: Option<u32>,
    run_id: Option<String>,
}

#[derive(Deserialize)]
pub struct WaitQuery {
    wait: Option<String>,
}

/// `POST /tasks/:name/runs`: 202 with the queued run; the same `Idempotency-Key` (or `run_id`)
/// and input answers the existing run (200), other input 409; `?wait=30s` answers 200 once the
/// run ended, 202 if it has not by then.
pub async fn start(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<WaitQuery>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let task = tasks::task_name(&name)?;
    expect_json(&headers)?;
    let wait = wait_param(q.wait.as_deref())?;
    let bytes = read_body(body, state.limits.body_bytes).await?;
    let b: StartBody = parse_json(&bytes, "the start request")?;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or(b.run_id);
    let mut new = NewRunOf::latest(task.clone(), b.input);
    new.version = b.version.map_or(VersionSel::Latest, VersionSel::Exact);
    new.idempotency_key = key;
    // the version is picked as the run is stored (one statement on PostgreSQL)
    let (run, existed) = match state.store().create_run_of(new).await {
        Ok(Created::Created(r)) => (r, false),
        Ok(Created::Existing(r)) => (r, true),
        Err(sequential_adaptor::Error::NotFound { .. }) => {
            return Err(match b.version {
                None => ApiError::task_not_found(task.as_str()),
                Some(n) => ApiError::new(
                    StatusCode::NOT_FOUND,
                    "VERSION_NOT_FOUND",
                    format!("task `{task}` has no version {n}"),
                ),
            });
        }
        Err(sequential_adaptor::Error::Conflict { what }) => {
            return Err(ApiError::conflict("IDEMPOTENCY_KEY_REUSED", what));
        }
        Err(e) => return Err(ApiError::storage(e)),
    };
    if !existed {
        drive(&state, run.id);
    }
    let run = match wait {
        Some(w) => {
            wait_until(&state, run.id, Instant::now() + w, |r| {
                r.status.is_terminal()
            })
            .await?
        }
        None => run,
    };
    let status = if run.status.is_terminal() || existed {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((status, axum::Json(view(&state, &run).await?)).into_response())
}

#[derive(Deserialize)]
pub struct ListQuery {
    task: Option<String>,
    status: Option<String>,
    idempotency_key: Option<String>,
    limit: Option<usize>,
    cursor: Option<String>,
    order: Option<String>,
}

async fn list_runs(state: &AppState, q: ListQuery, task: Option<String>) -> ApiResult<Value> {
    let task = task.or(q.task).map(|t| tasks::task_name(&t)).transpose()?;
    let statuses = match q.status.as_deref() {
        None | Some("") => Vec::new(),
        Some(list) => list
            .split(',')
            .map(|s| {
                s.trim().parse::<RunStatus>().map_err(|_| {
                    ApiError::bad_request(format!(
                        "?status={s}: expected queued, running, waiting, paused, stopping, succeeded, failed or cancelled (comma-separated)"
                    ))
                })
            })
            .collect::<ApiResult<_>>()?,
    };
    let order = match q.order.as_deref() {
        None | Some("newest") => Order::NewestFirst,
        Some("oldest") => Order::OldestFirst,
        Some(o) => {
            return Err(ApiError::bad_request(format!(
                "?order={o}: expected newest or oldest"
            )));
        }
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let after = q.cursor.as_deref().map(run_id).transpose()?;
    let filter = RunFilter { task, statuses };
    if let Some(key) = q.idempotency_key {
        // a key names at most one run: scan pages for it
        let mut page = Page {
            after: None,
            limit: 1000,
            order: Order::NewestFirst,
        };
        loop {
            let got = state
                .store()
                .list_runs(&filter, page)
                .await
                .map_err(ApiError::storage)?;
            if let Some(r) = got
                .runs
                .iter()
                .find(|r| r.idempotency_key.as_deref() == Some(&key))
            {
                return Ok(json!({ "items": [view(state, r).await?], "next_cursor": null }));
            }
            match got.next {
                Some(n) => page.after = Some(n),
                None => return Ok(json!({ "items": [], "next_cursor": null })),
            }
        }
    }
    let got = state
        .store()
        .list_runs(
            &filter,
            Page {
                after,
                limit,
                order,
            },
        )
        .await
        .map_err(ApiError::storage)?;
    let mut items = Vec::with_capacity(got.runs.len());
    for r in &got.runs {
        items.push(view(state, r).await?);
    }
    Ok(json!({ "items": items, "next_cursor": got.next.map(|n| n.to_string()) }))
}

/// `GET /runs`: filters `task`, `status` (comma-separated), `idempotency_key`; paged by
/// `limit` and `cursor`, newest first unless `order=oldest`.
pub async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    Ok(axum::Json(list_runs(&state, q, None).await?))
}

/// `GET /tasks/:name/runs`.
pub async fn list_of_task(
    State(state): State<AppState>,
    Path(name): Path<String>,
    Query(q): Query<ListQuery>,
) -> ApiResult<axum::Json<Value>> {
    let task = tasks::task_name(&name)?;
    tasks::latest(&state, &task).await?;
    Ok(axum::Json(list_runs(&state, q, Some(name)).await?))
}

#[derive(Deserialize)]
pub struct GetQuery {
    wait: Option<String>,
    until: Option<String>,
    after: Option<u64>,
}

/// `GET /runs/:id`; `?wait=30s&until=terminal|change|<status>` long-polls (`change`: a status
/// change, or with `after=SEQ` a journal record past it; a status: until the run has it, or
/// ended).
pub async fn get(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<GetQuery>,
) -> ApiResult<Response> {
    let id = run_id(&id)?;
    let Some(w) = wait_param(q.wait.as_deref())? else {
        return get_now(&state, id).await;
    };
    let first = load(&state, id).await?;
    let deadline = Instant::now() + w;
    let run = match q.until.as_deref() {
        None | Some("terminal") => {
            wait_until(&state, id, deadline, |r| r.status.is_terminal()).await?
        }
        Some("change") => {
            // `change`: the status differs from the first read, or (with `after`) the
            // journal has a record past `after`
            let mut r = first.clone();
            loop {
                let moved = r.status != first.status
                    || match q.after {
                        Some(a) => !state
                            .store()
                            .read_journal(id, Some(a), 1)
                            .await
                            .map_err(ApiError::storage)?
                            .is_empty(),
                        None => false,
                    };
                if moved || Instant::now() >= deadline || r.status.is_terminal() {
                    break r;
                }
                let revision = r.revision;
                r = wait_until(&state, id, deadline, |x| x.revision != revision).await?;
            }
        }
        Some(u) => match u.parse::<RunStatus>() {
            Ok(want) => {
                wait_until(&state, id, deadline, |r| {
                    r.status == want || r.status.is_terminal()
                })
                .await?
            }
            Err(_) => {
                return Err(ApiError::bad_request(format!(
                    "?until={u}: expected terminal, change, or a status (queued, running, waiting, paused, stopping, succeeded, failed, cancelled)"
                )));
            }
        },
    };
    Ok(axum::Json(view(&state, &run).await?).into_response())
}

/// A plain `GET /runs/:id`: the Run object as stored now. With a change stamp (SQLite), the
/// stamp is read first; if nothing was committed since the Run object was last rendered, the
/// same bytes are answered without reading storage, else it is read and rendered anew.
async fn get_now(state: &AppState, id: RunId) -> ApiResult<Response> {
    let stamp = state.stamp_now();
    if let Some(body) = stamp.and_then(|s| state.rendered(id, s)) {
        return Ok(json_body(body));
    }
    let run = load(state, id).await?;
    let doc = view(state, &run).await?;
    let body = Bytes::from(serde_json::to_vec(&doc).map_err(|e| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL",
            format!("rendering run {id}: {e}"),
        )
    })?);
    if let Some(s) = stamp {
        state.keep_rendered(id, s, body.clone());
    }
    Ok(json_body(body))
}

/// A 200 with a JSON body already serialized.
fn json_body(body: Bytes) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[derive(Deserialize)]
pub struct JournalQuery {
    after: Option<u64>,
    limit: Option<usize>,
}

/// `GET /runs/:id/journal?after=&limit=`: `{items, last_seq}` (finite).
pub async fn journal(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<JournalQuery>,
) -> ApiResult<axum::Json<Value>> {
    let id = run_id(&id)?;
    load(&state, id).await?;
    let items = state
        .store()
        .read_journal(id, q.after, q.limit.unwrap_or(1000).clamp(1, 10_000))
        .await
        .map_err(ApiError::storage)?;
    let last = items.last().map(|r| r.seq).or(q.after);
    Ok(axum::Json(json!({ "items": items, "last_seq": last })))
}

/// `GET /runs/:id/output`: 200 the output once succeeded; 409 when failed or cancelled; 202
/// with the Run while it has not ended (`?wait=` waits first).
pub async fn output(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<WaitQuery>,
) -> ApiResult<Response> {
    let id = run_id(&id)?;
    let run = match wait_param(q.wait.as_deref())? {
        Some(w) => wait_until(&state, id, Instant::now() + w, |r| r.status.is_terminal()).await?,
        None => load(&state, id).await?,
    };
    match run.status {
        RunStatus::Succeeded => Ok(axum::Json(run.output.unwrap_or(Value::Null)).into_response()),
        RunStatus::Failed | RunStatus::Cancelled => Err(ApiError::conflict(
            "RUN_NOT_SUCCEEDED",
            format!("run {id} {} and has no output", run.status),
        )
        .details(json!({ "status": run.status, "error": run.error }))),
        _ => Ok((StatusCode::ACCEPTED, axum::Json(view(&state, &run).await?)).into_response()),
    }
}

/// `GET /runs/:id/health`.
pub async fn health(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let id = run_id(&id)?;
    let run = load(&state, id).await?;
    let doc = view(&state, &run).await?;
    Ok(axum::Json(json!({
        "status": run.status,
        "state": doc["state"],
        "attempt": run.attempt,
        "owner": run.lease.as_ref().map(|l| l.owner.clone()),
        "lease_expires_at": run.lease.as_ref().map(|l| rfc3339_millis(l.expires_at)),
        "last_progress_at": rfc3339_millis(run.updated_at),
    })))
}

/// Every `ctx.emit` of run `id` with seq > `after`.
async fn emitted(
    state: &AppState,
    id: RunId,
    after: Option<u64>,
) -> ApiResult<(Vec<(u64, String, Value)>, Option<u64>)> {
    let mut out = Vec::new();
    let mut from = after;
    loop {
        let page = state
            .store()
            .read_journal(id, from, 1000)
            .await
            .map_err(ApiError::storage)?;
        let Some(last) = page.last() else {
            return Ok((out, from));
        };
        from = Some(last.seq);
        out.extend(page.iter().filter_map(view::emitted));
    }
}

/// An emitted event: ours (`seq`, `name`, `data`) and STH's names (`eventName`, `message`).
fn event_doc(seq: u64, name: &str, data: Value) -> Value {
    json!({ "seq": seq, "name": name, "data": data, "eventName": name, "message": data })
}

/// `GET /runs/:id/event/:name`: the last event of that name the run emitted; 404 if none yet.
pub async fn last_event(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> ApiResult<axum::Json<Value>> {
    let id = run_id(&id)?;
    load(&state, id).await?;
    match emitted(&state, id, None)
        .await?
        .0
        .into_iter()
        .rev()
        .find(|e| e.1 == name)
    {
        Some((seq, name, data)) => Ok(axum::Json(event_doc(seq, &name, data))),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "EVENT_NOT_FOUND",
            format!(
                "run {id} has not emitted {name:?} yet; GET …/once/{name}?after=SEQ waits for it"
            ),
        )),
    }
}

#[derive(Deserialize)]
pub struct OnceQuery {
    after: Option<u64>,
    timeout: Option<String>,
}

/// `GET /runs/:id/once/:name?after=SEQ&timeout=30s`: the first such event after `SEQ` — read
/// from the journal, so one emitted between two calls is never missed; 204 on timeout.
pub async fn once(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<OnceQuery>,
) -> ApiResult<Response> {
    let id = run_id(&id)?;
    load(&state, id).await?;
    let timeout = wait_param(q.timeout.as_deref().or(Some("30s")))?.unwrap_or_default();
    let deadline = Instant::now() + timeout;
    let mut after = q.after;
    loop {
        // read the run first: a run that ended before this read has every record it will
        // ever have in the journal read next, so the event is not missed
        let run = load(&state, id).await?;
        let (found, read_to) = emitted(&state, id, after).await?;
        if let Some((seq, name, data)) = found.into_iter().find(|e| e.1 == name) {
            return Ok(axum::Json(event_doc(seq, &name, data)).into_response());
        }
        if run.status.is_terminal() || Instant::now() >= deadline {
            return Ok(StatusCode::NO_CONTENT.into_response());
        }
        // the next round reads on from the last record this one looked at, never past it
        after = read_to;
        let left = deadline.saturating_duration_since(Instant::now());
        state
            .store()
            .wait_for_change(left.min(Duration::from_millis(250)))
            .await;
    }
}

/// `POST /runs/:id/_event`: `{eventName, message}` (also STH's `[5001, {eventName, message}]`)
/// into the run's inbox, durable before the 202.
pub async fn send_event(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let id = run_id(&id)?;
    expect_json(&headers)?;
    let bytes = read_body(body, state.limits.body_bytes).await?;
    let doc: Value = parse_json(&bytes, "the event")?;
    let doc = match doc {
        Value::Array(mut a) if a.len() == 2 => a.pop().unwrap_or(Value::Null),
        other => other,
    };
    let name = doc
        .get("eventName")
        .or_else(|| doc.get("name"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError::unprocessable("the event has no \"eventName\": expected {\"eventName\": \"approved\", \"message\": …}")
        })?
        .to_string();
    let message = doc
        .get("message")
        .or_else(|| doc.get("payload"))
        .cloned()
        .unwrap_or(Value::Null);
    let before = load(&state, id).await?;
    if before.status.is_terminal() {
        return Err(ApiError::conflict(
            "RUN_FINISHED",
            format!(
                "run {id} {}; events cannot reach a finished run",
                before.status
            ),
        ));
    }
    let consumed =
        before.status == RunStatus::Waiting && before.waiting_for.as_deref() == Some(name.as_str());
    let seq = match state.store().send_signal(id, &name, message).await {
        Ok(s) => s,
        Err(sequential_adaptor::Error::Conflict { what }) => {
            return Err(ApiError::conflict("RUN_FINISHED", what));
        }
        Err(e) => return Err(ApiError::storage(e)),
    };
    if consumed {
        drive(&state, id);
    }
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "accepted": true, "seq": seq, "consumed": consumed })),
    )
        .into_response())
}

/// A control verb's body: `{…}`, or STH's `[code, {…}]`.
async fn control_body(state: &AppState, headers: &HeaderMap, body: Body) -> ApiResult<Value> {
    expect_json(headers)?;
    let bytes = read_body(body, state.limits.body_bytes).await?;
    Ok(match parse_json(&bytes, "the request")? {
        Value::Array(mut a) if a.len() == 2 => a.pop().unwrap_or(Value::Null),
        other => other,
    })
}

fn active(run: &Run) -> ApiResult<()> {
    if run.status.is_terminal() {
        return Err(ApiError::conflict(
            "RUN_FINISHED",
            format!("run {} already {}", run.id, run.status),
        ));
    }
    Ok(())
}

/// `POST /runs/:id/_stop {timeout}`: answers at once (`stopping`); the step in flight may
/// finish for up to `timeout` ms, then the run is killed; it ends `cancelled`.
pub async fn stop(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let id = run_id(&id)?;
    let b = control_body(&state, &headers, body).await?;
    let timeout = b.get("timeout").and_then(Value::as_u64).unwrap_or(7000);
    let run = load(&state, id).await?;
    active(&run)?;
    let engine = state.engine.clone();
    tokio::spawn(async move {
        let _ = engine.cancel(id, Duration::from_millis(timeout)).await;
    });
    let run = wait_until(
        &state,
        id,
        Instant::now() + Duration::from_millis(50),
        |r| r.status == RunStatus::Stopping || r.status.is_terminal(),
    )
    .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(view(&state, &run).await?)).into_response())
}

/// `POST /runs/:id/_kill`: ends the run `cancelled` now; 409 if it already ended.
pub async fn kill(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = run_id(&id)?;
    active(&load(&state, id).await?)?;
    let run = state.engine.kill(id).await.map_err(ApiError::engine)?;
    Ok((StatusCode::ACCEPTED, axum::Json(view(&state, &run).await?)).into_response())
}

/// `POST /runs/:id/_retry`: continues a paused run (its failed call is performed again); 409
/// unless paused.
pub async fn retry(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = run_id(&id)?;
    let run = load(&state, id).await?;
    if run.status != RunStatus::Paused {
        return Err(ApiError::conflict(
            "RUN_NOT_PAUSED",
            format!(
                "run {id} is {}; only a paused run can be retried",
                run.status
            ),
        ));
    }
    let run = state.engine.retry(id).await.map_err(ApiError::engine)?;
    drive(&state, id);
    Ok((StatusCode::ACCEPTED, axum::Json(view(&state, &run).await?)).into_response())
}

/// `POST /runs/:id/_fork {from_seq}`: a new run whose journal is the first `from_seq` records
/// of this one (0: start over); 201 with it.
pub async fn fork(
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> ApiResult<Response> {
    let id = run_id(&id)?;
    let b = control_body(&state, &headers, body).await?;
    load(&state, id).await?;
    let from = match b.get("from_seq") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "from_seq {v}: expected a journal seq (a whole number)"
            ))
        })?,
    };
    let run = state.engine.rerun(id, from).await.map_err(|e| match e {
        sequential_tasker_engine::Error::Invalid { input, expected } => {
            ApiError::unprocessable(format!("invalid {input}: expected {expected}"))
        }
        other => ApiError::engine(other),
    })?;
    drive(&state, run.id);
    Ok((StatusCode::CREATED, axum::Json(view(&state, &run).await?)).into_response())
}

/// `DELETE /runs/:id`: deletes an ended run with its journal, signals and idempotency key
/// (200 `{id}`); 409 `RUN_ACTIVE` while it has not ended, 409 `CONFLICT` for an ended child
/// whose parent is still active (the parent reads it when it resumes), 404 for an unknown run.
pub async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<axum::Json<Value>> {
    let id = run_id(&id)?;
    let run = load(&state, id).await?;
    if !run.status.is_terminal() {
        return Err(ApiError::conflict(
            "RUN_ACTIVE",
            format!(
                "run {id} is {}; only an ended run can be deleted (POST /api/v1/runs/{id}/_kill ends it)",
                run.status
            ),
        )
        .details(json!({ "status": run.status })));
    }
    state
        .store()
        .delete_run(id)
        .await
        .map_err(ApiError::storage)?;
    Ok(axum::Json(json!({ "id": id })))
}

/// `POST /runs/:id/_redrive`: 409 unless the run failed. A failed graph run re-enters the
/// main-graph state whose failure ended it with fresh retry counters, under the same id (its
/// journal continues, GRAPHS.md S15): 202 with the run, queued again. A failed implicit run is
/// 409 `NOT_A_GRAPH_RUN`: its code would replay to the same exception, so `_fork` is the way.
pub async fn redrive(State(state): State<AppState>, Path(id): Path<String>) -> ApiResult<Response> {
    let id = run_id(&id)?;
    let run = load(&state, id).await?;
    if run.status != RunStatus::Failed {
        return Err(ApiError::conflict(
            "RUN_NOT_FAILED",
            format!(
                "run {id} is {}; only a failed run can be redriven{}",
                run.status,
                if run.status == RunStatus::Paused {
                    " (a paused run continues with POST …/_retry)"
                } else {
                    ""
                }
            ),
        )
        .details(json!({ "status": run.status })));
    }
    let version = state
        .engine
        .store()
        .get_task_version(
            &run.task,
            sequential_adaptor::VersionSel::Exact(run.version),
        )
        .await
        .map_err(|e| ApiError::engine(e.into()))?;
    if version.graph.is_none() {
        return Err(ApiError::conflict(
            "NOT_A_GRAPH_RUN",
            format!(
                "run {id} of task {} is an implicit run: redrive re-enters the failed state of a graph run, and an implicit run's code would replay to the same exception; POST /api/v1/runs/{id}/_fork {{\"from_seq\": N}} continues its first N journal records as a new run",
                run.task
            ),
        ));
    }
    let run = state.engine.redrive(id).await.map_err(ApiError::engine)?;
    drive(&state, id);
    Ok((StatusCode::ACCEPTED, axum::Json(view(&state, &run).await?)).into_response())
}
