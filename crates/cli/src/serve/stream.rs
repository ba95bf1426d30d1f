//! `GET /api/v1/runs/:id/events`: a run's journal as a stream, NDJSON or SSE.
//!
//! Records come from storage, never from an in-memory buffer: a consumer reads from
//! `?after=SEQ` (or SSE's `Last-Event-ID`) through the history and on into live records with
//! no gap and no duplicate, whether or not the server restarted in between. A slow consumer
//! only slows its own reads (the channel to it is bounded), so no consumer can lag behind a
//! buffer and lose records. The stream ends after the run's terminal record (SSE: then
//! `event: end`), at `?follow=false` after the history, or when the server shuts down.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::Frame;
use sequential_adaptor::{JournalRecord, RunId};
use serde::Deserialize;
use tokio::sync::mpsc;

use super::error::{ApiError, ApiResult};
use super::runs::{load, run_id};
use super::view::ends_stream;
use super::{AppState, Inner};

#[derive(Deserialize, Default)]
pub struct EventsQuery {
    after: Option<u64>,
    follow: Option<bool>,
    kinds: Option<String>,
    format: Option<String>,
    ping: Option<u64>,
}

impl EventsQuery {
    /// Only records of these kinds (comma-separated; `run.*` is a prefix).
    pub fn kinds(kinds: &str) -> Self {
        EventsQuery {
            kinds: Some(kinds.to_string()),
            ..EventsQuery::default()
        }
    }
}

/// A response body fed by a channel; it holds one of the server's stream slots while it lives.
pub(super) struct ChannelBody {
    pub(super) rx: mpsc::Receiver<Bytes>,
    pub(super) _slot: Slot,
}

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.rx.poll_recv(cx).map(|b| b.map(|b| Ok(Frame::data(b))))
    }
}

/// One open stream, counted against [`super::Limits::streams`].
pub(super) struct Slot(AppState);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.streams.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) fn slot(state: &AppState) -> ApiResult<Slot> {
    let open = state.streams.fetch_add(1, Ordering::Relaxed);
    let slot = Slot(state.clone());
    if open >= state.limits.streams {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "TOO_MANY_STREAMS",
            format!(
                "this server has {} streams open, its limit; retry later",
                state.limits.streams
            ),
        ));
    }
    Ok(slot)
}

#[derive(Clone, Copy, PartialEq)]
pub(super) enum Encoding {
    Ndjson,
    Sse,
}

/// Which records a consumer wants: every kind, or those named (`run.*` is a prefix).
pub(super) struct Kinds(pub(super) Option<Vec<String>>);

impl Kinds {
    /// `?kinds=a,b,run.*`; none: every kind.
    pub(super) fn parse(kinds: Option<&str>) -> Self {
        Kinds(kinds.map(|k| {
            k.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        }))
    }

    pub(super) fn wants(&self, kind: &str) -> bool {
        self.0.as_ref().is_none_or(|ks| {
            ks.iter().any(|k| match k.strip_suffix('*') {
                Some(prefix) => kind.starts_with(prefix),
                None => kind == k,
            })
        })
    }
}

fn encode(enc: Encoding, r: &JournalRecord) -> Bytes {
    let json = serde_json::to_string(r).expect("journal records serialize");
    match enc {
        Encoding::Ndjson => Bytes::from(json + "\n"),
        Encoding::Sse => Bytes::from(format!(
            "id: {}\nevent: {}\ndata: {json}\n\n",
            r.seq, r.kind
        )),
    }
}

/// `GET /runs/:id/events`: NDJSON (default) or SSE (`Accept: text/event-stream` or
/// `?format=sse`); `?after=SEQ` or `Last-Event-ID`; `?follow=false`; `?kinds=run.*,log`.
pub async fn run_events(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = run_id(&id)?;
    load(&state, id).await?;
    let enc = encoding(q.format.as_deref(), &headers)?;
    let last_event_id = last_event_id(&headers)?
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("Last-Event-ID {v:?}: expected a journal seq"))
            })
        })
        .transpose()?;
    let after = q.after.or(last_event_id);
    let ping = ping_every(&state, enc, q.ping);
    let kinds = Kinds::parse(q.kinds.as_deref());
    let slot = slot(&state)?;
    let (tx, rx) = mpsc::channel(64);
    let follow = q.follow.unwrap_or(true);
    let st = state.clone();
    tokio::spawn(async move {
        if enc == Encoding::Sse
            && tx
                .send(Bytes::from_static(b"retry: 2000\n\n"))
                .await
                .is_err()
        {
            return;
        }
        let render = move |r: &JournalRecord| kinds.wants(&r.kind).then(|| encode(enc, r));
        pump(st, id, after, follow, enc, ping, tx, render).await;
    });
    Ok(response(enc, rx, slot))
}

/// The encoding a consumer asked for: `?format=ndjson|sse`, else SSE when `Accept` names
/// `text/event-stream`, else NDJSON.
pub(super) fn encoding(format: Option<&str>, headers: &HeaderMap) -> ApiResult<Encoding> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    match format {
        Some("sse") => Ok(Encoding::Sse),
        Some("ndjson") => Ok(Encoding::Ndjson),
        None if accept.contains("text/event-stream") => Ok(Encoding::Sse),
        None => Ok(Encoding::Ndjson),
        Some(f) => Err(ApiError::bad_request(format!(
            "?format={f}: expected ndjson or sse"
        ))),
    }
}

/// SSE's `Last-Event-ID` header, trimmed.
pub(super) fn last_event_id(headers: &HeaderMap) -> ApiResult<Option<String>> {
    headers
        .get("last-event-id")
        .map(|v| {
            v.to_str().map(|s| s.trim().to_string()).map_err(|_| {
                ApiError::bad_request(
                    "Last-Event-ID is not text: expected the id of a record this stream sent",
                )
            })
        })
        .transpose()
}

/// How often to ping: `?ping=MS`, `?ping=0` (NDJSON only) for never, else the server's default.
pub(super) fn ping_every(state: &AppState, enc: Encoding, ping: Option<u64>) -> Option<Duration> {
    match (enc, ping) {
        (Encoding::Ndjson, Some(0)) => None,
        (_, Some(ms)) if ms > 0 => Some(Duration::from_millis(ms)),
        _ => Some(state.limits.ping),
    }
}

/// The streaming response over `rx`.
pub(super) fn response(enc: Encoding, rx: mpsc::Receiver<Bytes>, slot: Slot) -> Response {
    let content_type = match enc {
        Encoding::Ndjson => "application/x-ndjson",
        Encoding::Sse => "text/event-stream",
    };
    let mut resp = Body::new(ChannelBody { rx, _slot: slot }).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

/// The keep-alive line of an encoding.
pub(super) fn ping_line(enc: Encoding) -> Bytes {
    Bytes::from_static(match enc {
        Encoding::Ndjson => b"{\"kind\":\"ping\"}\n",
        Encoding::Sse => b": ping\n\n",
    })
}

/// Feeds one consumer: history from storage, then live records as storage changes.
/// `true` when `page[i]` ends the run's stream: a `run.succeeded`/`failed`/`cancelled` record
/// that no record follows. A failed graph run that was redriven continues its journal after its
/// `run.failed` (`run.redriven`, …), so its stream goes on there.
async fn ends_here(inner: &Inner, id: RunId, page: &[JournalRecord], i: usize) -> bool {
    if !ends_stream(&page[i]) {
        return false;
    }
    if i + 1 < page.len() {
        return false;
    }
    match inner
        .engine
        .store()
        .read_journal(id, Some(page[i].seq), 1)
        .await
    {
        Ok(more) => more.is_empty(),
        Err(_) => true,
    }
}

/// Streams run `id`'s journal after `after` into `tx`: the bytes `render` makes of each record
/// (records it answers `None` for are skipped), a ping line when idle for `ping`, and after the
/// record that ends the run, `event: end` (SSE) and the end of the stream; with `follow`, live
/// records as they are appended.
#[allow(clippy::too_many_arguments)]
async fn pump(
    state: AppState,
    id: RunId,
    mut after: Option<u64>,
    follow: bool,
    enc: Encoding,
    ping: Option<Duration>,
    tx: mpsc::Sender<Bytes>,
    render: impl Fn(&JournalRecord) -> Option<Bytes>,
) {
    let inner: &Inner = &state;
    let mut stopping = inner.stopping.subscribe();
    let mut last_sent = Instant::now();
    loop {
        let page = match inner.engine.store().read_journal(id, after, 512).await {
            Ok(p) => p,
            Err(e) => {
                let err = serde_json::json!({ "kind": "stream.error", "error": e.to_string(), "resume_after": after });
                let _ = tx.send(Bytes::from(err.to_string() + "\n")).await;
                return;
            }
        };
        let full = page.len() == 512;
        for (i, r) in page.iter().enumerate() {
            after = Some(r.seq);
            if let Some(bytes) = render(r) {
                if tx.send(bytes).await.is_err() {
                    return;
                }
                last_sent = Instant::now();
            }
            if ends_here(inner, id, &page, i).await {
                if enc == Encoding::Sse {
                    let _ = tx
                        .send(Bytes::from_static(b"event: end\ndata: {}\n\n"))
                        .await;
                }
                return;
            }
        }
        if full {
            continue;
        }
        if !follow || *stopping.borrow() {
            return;
        }
        if let Some(p) = ping
            && last_sent.elapsed() >= p
        {
            if tx.send(ping_line(enc)).await.is_err() {
                return;
            }
            last_sent = Instant::now();
        }
        let nap = ping.map_or(Duration::from_millis(250), |p| {
            p.min(Duration::from_millis(250))
        });
        tokio::select! {
            _ = inner.engine.store().wait_for_change(nap) => {}
            _ = tx.closed() => return,
            _ = stopping.changed() => return,
        }
    }
}

#[derive(Deserialize, Default)]
pub struct NamedQuery {
    after: Option<u64>,
    follow: Option<bool>,
    format: Option<String>,
    ping: Option<u64>,
}

/// `GET /runs/:id/events/:name` (and STH's `/instance/:id/events/:name`): every event of that
/// name the run emits with `ctx.emit`, one `{seq, name, data, eventName, message}` per line (SSE:
/// `id:` = seq), from `?after=SEQ` or `Last-Event-ID`; ends when the run does.
pub async fn named_events(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
    Query(q): Query<NamedQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = run_id(&id)?;
    load(&state, id).await?;
    let enc = encoding(q.format.as_deref(), &headers)?;
    let last = last_event_id(&headers)?
        .map(|v| {
            v.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("Last-Event-ID {v:?}: expected a journal seq"))
            })
        })
        .transpose()?;
    let after = q.after.or(last);
    let ping = ping_every(&state, enc, q.ping);
    let follow = q.follow.unwrap_or(true);
    let slot = slot(&state)?;
    let (tx, rx) = mpsc::channel(64);
    let render = move |r: &JournalRecord| {
        let (seq, n, data) = super::view::emitted(r)?;
        if n != name {
            return None;
        }
        let doc = serde_json::json!({ "seq": seq, "name": n, "data": data, "eventName": n, "message": data });
        Some(match enc {
            Encoding::Ndjson => Bytes::from(doc.to_string() + "\n"),
            Encoding::Sse => Bytes::from(format!("id: {seq}\nevent: {n}\ndata: {doc}\n\n")),
        })
    };
    tokio::spawn(pump(
        state.clone(),
        id,
        after,
        follow,
        enc,
        ping,
        tx,
        render,
    ));
    Ok(response(enc, rx, slot))
}
