//! The host's own log (`GET /api/v1/log`) and audit trail (`GET /api/v1/audit`).
//!
//! The server keeps its last [`KEEP`] lines in memory: what it did (started, stopped, its
//! worker's runs failing to be driven) and every API request it answered (method, path,
//! status, duration). `/log` streams them as NDJSON or text; `/audit` streams the requests
//! together with the run lifecycle records of the host-wide stream. Lines are this process's:
//! a restarted server starts a new log. What lasts is in storage (the journals, `/events`).

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use sequential_adaptor::now_millis;
use sequential_support::time::rfc3339_millis;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use super::AppState;
use super::error::{ApiError, ApiResult};
use super::host_events;
use super::stream::{Encoding, ping_every, ping_line, response, slot};

/// Lines kept.
pub const KEEP: usize = 1000;

/// The ring of recent lines; `seq` counts every line ever added.
#[derive(Debug, Default)]
pub struct HostLog {
    lines: Mutex<(u64, VecDeque<Line>)>,
    added: Notify,
}

/// A kept line as it was added; rendered to its JSON form only when read (a request adds one
/// line, and the ring drops one, on every request, while the lines are seldom read).
#[derive(Debug)]
struct Line {
    seq: u64,
    at: i64,
    kind: &'static str,
    level: &'static str,
    what: What,
}

#[derive(Debug)]
enum What {
    /// A message with fields of its own.
    Said { msg: String, extra: Value },
    /// An API request answered.
    Request {
        method: Method,
        path: String,
        status: u16,
        ms: f64,
    },
}

impl Line {
    /// `{seq, at, kind, level, msg, …extra}`.
    fn render(&self) -> Value {
        let (msg, extra) = match &self.what {
            What::Said { msg, extra } => (msg.clone(), extra.clone()),
            What::Request {
                method,
                path,
                status,
                ms,
            } => (
                format!("{method} {path} {status}"),
                json!({ "method": method.as_str(), "path": path, "status": status, "ms": ms }),
            ),
        };
        let mut line = json!({
            "seq": self.seq,
            "at": rfc3339_millis(self.at),
            "kind": self.kind,
            "level": self.level,
            "msg": msg,
        });
        if let (Some(l), Value::Object(x)) = (line.as_object_mut(), extra) {
            l.extend(x);
        }
        line
    }
}

impl HostLog {
    /// Adds a line `{seq, at, kind, level, msg, …extra}`.
    pub fn add(
        &self,
        kind: &'static str,
        level: &'static str,
        msg: impl Into<String>,
        extra: Value,
    ) {
        self.push(
            kind,
            level,
            What::Said {
                msg: msg.into(),
                extra,
            },
        );
    }

    fn push(&self, kind: &'static str, level: &'static str, what: What) {
        let at = now_millis();
        let mut g = self.lines.lock().unwrap();
        let seq = g.0;
        g.0 += 1;
        let dropped = if g.1.len() >= KEEP {
            g.1.pop_front()
        } else {
            None
        };
        g.1.push_back(Line {
            seq,
            at,
            kind,
            level,
            what,
        });
        drop(g);
        drop(dropped);
        self.added.notify_waiters();
    }

    /// The lines after `after` (all kept ones when `None`).
    fn after(&self, after: Option<u64>) -> Vec<(u64, Value)> {
        let g = self.lines.lock().unwrap();
        g.1.iter()
            .filter(|l| after.is_none_or(|a| l.seq > a))
            .map(|l| (l.seq, l.render()))
            .collect()
    }
}

/// Records every request in the host log (kind `request`) once its response head is ready.
pub async fn record(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    state.log.push(
        "request",
        if status >= 500 { "error" } else { "info" },
        What::Request {
            method,
            path,
            status,
            ms: started.elapsed().as_secs_f64() * 1000.0,
        },
    );
    resp
}

#[derive(Deserialize, Default)]
pub struct LogQuery {
    after: Option<u64>,
    follow: Option<bool>,
    format: Option<String>,
    ping: Option<u64>,
}

#[derive(Clone, Copy, PartialEq)]
enum Form {
    Ndjson,
    Text,
}

fn text_line(v: &Value) -> String {
    format!(
        "{} {:5} {}\n",
        v["at"].as_str().unwrap_or(""),
        v["level"].as_str().unwrap_or("info"),
        v["msg"].as_str().unwrap_or("")
    )
}

/// `GET /api/v1/log`: the host log, NDJSON (default) or text (`Accept: text/plain` or
/// `?format=text`); `?after=SEQ`; follows new lines unless `?follow=false`.
pub async fn log(
    State(state): State<AppState>,
    Query(q): Query<LogQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let form = match q.format.as_deref() {
        Some("text") => Form::Text,
        Some("ndjson") => Form::Ndjson,
        None if accept.starts_with("text/plain") => Form::Text,
        None => Form::Ndjson,
        Some(f) => {
            return Err(ApiError::bad_request(format!(
                "?format={f}: expected ndjson or text"
            )));
        }
    };
    let ping = match form {
        Form::Ndjson => ping_every(&state, Encoding::Ndjson, q.ping),
        Form::Text => None,
    };
    let slot = slot(&state)?;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(tail_log(
        state.clone(),
        q.after,
        q.follow.unwrap_or(true),
        ping,
        tx,
        move |v| match form {
            Form::Ndjson => Bytes::from(v.to_string() + "\n"),
            Form::Text => Bytes::from(text_line(v)),
        },
        |_| true,
    ));
    let mut resp = response(Encoding::Ndjson, rx, slot);
    if form == Form::Text {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("text/plain; charset=utf-8"),
        );
    }
    Ok(resp)
}

/// Feeds host-log lines that `keep` accepts, encoded by `enc`, from `after` on.
async fn tail_log(
    state: AppState,
    mut after: Option<u64>,
    follow: bool,
    ping: Option<Duration>,
    tx: mpsc::Sender<Bytes>,
    enc: impl Fn(&Value) -> Bytes + Send + 'static,
    keep: impl Fn(&Value) -> bool + Send + 'static,
) {
    let mut stopping = state.stopping.subscribe();
    let mut last_sent = Instant::now();
    loop {
        // registered before reading, so a line added in between still wakes us
        let added = state.log.added.notified();
        for (seq, line) in state.log.after(after) {
            after = Some(seq);
            if keep(&line) {
                if tx.send(enc(&line)).await.is_err() {
                    return;
                }
                last_sent = Instant::now();
            }
        }
        if !follow || *stopping.borrow() {
            return;
        }
        if let Some(p) = ping
            && last_sent.elapsed() >= p
        {
            if tx.send(ping_line(Encoding::Ndjson)).await.is_err() {
                return;
            }
            last_sent = Instant::now();
        }
        let nap = ping.unwrap_or(Duration::from_secs(15));
        tokio::select! {
            _ = added => {}
            _ = tokio::time::sleep(nap) => {}
            _ = tx.closed() => return,
            _ = stopping.changed() => return,
        }
    }
}

#[derive(Deserialize, Default)]
pub struct AuditQuery {
    follow: Option<bool>,
    ping: Option<u64>,
}

/// `GET /api/v1/audit`: NDJSON of the API requests this server answered (kind `request`, the
/// kept ones first) and, from now on, every run's lifecycle records (`run.*` of `/events`).
pub async fn audit(
    State(state): State<AppState>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Response> {
    let slot = slot(&state)?;
    let (tx, rx) = mpsc::channel(64);
    let follow = q.follow.unwrap_or(true);
    let ping = ping_every(&state, Encoding::Ndjson, q.ping);
    if follow {
        host_events::spawn_lifecycle(&state, tx.clone());
    }
    tokio::spawn(tail_log(
        state.clone(),
        None,
        follow,
        ping,
        tx,
        |v| Bytes::from(v.to_string() + "\n"),
        |v| v["kind"] == "request",
    ));
    Ok(response(Encoding::Ndjson, rx, slot))
}
