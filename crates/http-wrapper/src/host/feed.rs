//! [`HostEventStream`]: the host-wide stream (`GET /api/v1/events`) over NDJSON, reconnecting
//! with `?after=<last cursor>` whenever the connection drops.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use reqwest::Method;
use serde::Deserialize;
use serde_json::Value;

use super::{HostClient, HostError, chain};
use crate::client::unit_random;

/// No byte for this long means the connection is dead (the server pings every 15 s).
const IDLE: Duration = Duration::from_secs(45);

/// One record of the host-wide stream: a run's journal record, or `run.created` (no `seq`)
/// announcing a run, or `run.deleted`.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct HostRecord {
    /// The run.
    pub run: String,
    /// The journal seq (`None` for `run.created` and `run.deleted`).
    #[serde(default)]
    pub seq: Option<u64>,
    /// `run.created`, `run.started`, `call.requested`, …
    pub kind: String,
    /// When it happened (Unix milliseconds).
    pub at: i64,
    /// The payload (`run.created`: `{task, version, status, parent}`).
    #[serde(default)]
    pub data: Value,
    /// Resumes the stream right after this record (`HostEvents::after`).
    pub cursor: String,
}

/// What [`HostClient::events`] streams.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct HostEvents {
    /// Resume after the record with this cursor; `Some("0")` replays every stored run first;
    /// `None` starts now.
    pub after: Option<String>,
    /// Only this task's runs.
    pub task: Option<String>,
    /// Only these kinds (`run.*` is a prefix).
    pub kinds: Vec<String>,
}

type Step =
    Pin<Box<dyn Future<Output = (Box<Reader>, Option<Result<HostRecord, HostError>>)> + Send>>;

/// Every run's records as the server finds them, each once, without end: a dropped connection
/// is reopened after the last cursor yielded; only when [`HostClient::with_reconnect`]'s
/// attempts fail in a row does the stream end with [`HostError::StreamBroken`].
pub struct HostEventStream {
    reader: Option<Box<Reader>>,
    step: Option<Step>,
    cursor: Option<String>,
}

impl std::fmt::Debug for HostEventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostEventStream")
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

impl HostEventStream {
    pub(super) fn new(host: HostClient, what: HostEvents) -> Self {
        HostEventStream {
            cursor: what.after.clone(),
            reader: Some(Box::new(Reader {
                host,
                what,
                resp: None,
                buf: Vec::new(),
                done: false,
                failures: 0,
                last_failure: String::new(),
            })),
            step: None,
        }
    }

    /// The next record; `None` only after an error.
    pub async fn next(&mut self) -> Option<Result<HostRecord, HostError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The cursor of the last record yielded (or the one the stream was opened after).
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }
}

impl Stream for HostEventStream {
    type Item = Result<HostRecord, HostError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.step.is_none() {
            let Some(mut reader) = self.reader.take() else {
                return Poll::Ready(None);
            };
            self.step = Some(Box::pin(async move {
                let item = reader.next().await;
                (reader, item)
            }));
        }
        let step = self.step.as_mut().expect("set above");
        match step.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready((reader, item)) => {
                self.step = None;
                if let Some(Ok(r)) = &item {
                    self.cursor = Some(r.cursor.clone());
                }
                self.reader = Some(reader);
                Poll::Ready(item)
            }
        }
    }
}

struct Reader {
    host: HostClient,
    /// `what.after` is the last cursor yielded.
    what: HostEvents,
    resp: Option<reqwest::Response>,
    buf: Vec<u8>,
    done: bool,
    failures: u32,
    last_failure: String,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<HostRecord, HostError>> {
        loop {
            if self.done {
                return None;
            }
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                match self.line(&line) {
                    Some(item) => return Some(item),
                    None => continue,
                }
            }
            let Some(resp) = self.resp.as_mut() else {
                if let Err(e) = self.connect().await {
                    self.done = true;
                    return Some(Err(e));
                }
                continue;
            };
            match tokio::time::timeout(IDLE, resp.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buf.extend_from_slice(&bytes),
                Ok(Ok(None)) => self.dropped("the server closed the stream".to_string()),
                Ok(Err(e)) => self.dropped(chain(&e)),
                Err(_) => self.dropped(format!(
                    "nothing received for {}",
                    sequential_support::duration::format(IDLE)
                )),
            }
        }
    }

    fn line(&mut self, line: &[u8]) -> Option<Result<HostRecord, HostError>> {
        let text = String::from_utf8_lossy(line);
        let doc: Value = serde_json::from_str(text.trim()).ok()?;
        match doc["kind"].as_str() {
            Some("ping") => return None,
            Some("stream.start") => {
                // where a fresh stream began: a reconnect resumes from here
                if let Some(c) = doc["cursor"].as_str() {
                    self.what.after = Some(c.to_string());
                }
                return None;
            }
            Some("stream.error" | "stream.lagged") => {
                if let Some(c) = doc["resume_after"].as_str() {
                    self.what.after = Some(c.to_string());
                }
                self.dropped(format!("the server ended the stream: {}", text.trim()));
                return None;
            }
            _ => {}
        }
        let record: HostRecord = serde_json::from_value(doc).ok()?;
        self.what.after = Some(record.cursor.clone());
        self.failures = 0;
        Some(Ok(record))
    }

    fn dropped(&mut self, why: String) {
        tracing::debug!(%why, "host event stream dropped; resuming");
        self.resp = None;
        self.buf.clear();
        self.failures += 1;
        self.last_failure = why;
    }

    async fn connect(&mut self) -> Result<(), HostError> {
        loop {
            let policy = &self.host.reconnect;
            if self.failures >= policy.attempts.max(1) {
                return Err(HostError::StreamBroken {
                    run: "(every run: /events)".to_string(),
                    attempts: self.failures,
                    last: std::mem::take(&mut self.last_failure),
                });
            }
            if self.failures > 0 {
                tokio::time::sleep(policy.delay(self.failures, unit_random())).await;
            }
            let url = self.host.url("/events");
            let mut query: Vec<(&str, String)> = Vec::new();
            if let Some(a) = &self.what.after {
                query.push(("after", a.clone()));
            }
            if let Some(t) = &self.what.task {
                query.push(("task", t.clone()));
            }
            if !self.what.kinds.is_empty() {
                query.push(("kinds", self.what.kinds.join(",")));
            }
            let req = self
                .host
                .request(Method::GET, &url, None)
                .header(reqwest::header::ACCEPT, "application/x-ndjson")
                .query(&query);
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    self.resp = Some(resp);
                    return Ok(());
                }
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let body = resp.bytes().await.map(|b| b.to_vec()).unwrap_or_default();
                    let answer = super::Answer {
                        method: Method::GET,
                        url,
                        status,
                        body,
                    };
                    if matches!(status, 502..=504 | 429) {
                        self.failures += 1;
                        self.last_failure = answer.error().to_string();
                        continue;
                    }
                    return Err(answer.error());
                }
                Err(e) => {
                    self.failures += 1;
                    self.last_failure = chain(&e);
                }
            }
        }
    }
}
