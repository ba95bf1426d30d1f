//! [`HostEventStream`]: the host-wide stream (`GET /api/v1/events`) over NDJSON, reconnecting
//! with `?after=<last cursor>` whenever the connection drops.

use std::pin::Pin;
use std::task::{Context, Poll};

use futures_core::Stream;
use serde::Deserialize;
use serde_json::Value;

use super::resuming::{Feed, Line, Resuming};
use super::{HostClient, HostError};

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

/// Every run's records as the server finds them, each once, without end: a dropped connection
/// is reopened after the last cursor yielded; only when [`HostClient::with_reconnect`]'s
/// attempts fail in a row does the stream end with [`HostError::StreamBroken`].
pub struct HostEventStream {
    inner: Resuming<HostFeed>,
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
            inner: Resuming::new(host, HostFeed { what }),
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
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        if let Some(Ok(r)) = &item {
            self.cursor = Some(r.cursor.clone());
        }
        Poll::Ready(item)
    }
}

/// The host-wide stream, resumed after the last cursor seen.
struct HostFeed {
    what: HostEvents,
}

impl Feed for HostFeed {
    type Item = HostRecord;

    fn request(&self) -> (String, Vec<(&'static str, String)>) {
        let mut query = Vec::new();
        if let Some(a) = &self.what.after {
            query.push(("after", a.clone()));
        }
        if let Some(t) = &self.what.task {
            query.push(("task", t.clone()));
        }
        if !self.what.kinds.is_empty() {
            query.push(("kinds", self.what.kinds.join(",")));
        }
        ("/events".to_string(), query)
    }

    fn line(&mut self, doc: Value, text: &str) -> Line<HostRecord> {
        match doc["kind"].as_str() {
            Some("ping") => return Line::Skip,
            Some("stream.start") => {
                // where a fresh stream began: a reconnect resumes from here
                if let Some(c) = doc["cursor"].as_str() {
                    self.what.after = Some(c.to_string());
                }
                return Line::Skip;
            }
            Some("stream.error" | "stream.lagged") => {
                if let Some(c) = doc["resume_after"].as_str() {
                    self.what.after = Some(c.to_string());
                }
                return Line::Ended(format!("the server ended the stream: {text}"));
            }
            _ => {}
        }
        let Ok(record) = serde_json::from_value::<HostRecord>(doc) else {
            return Line::Skip;
        };
        self.what.after = Some(record.cursor.clone());
        Line::Yield(record)
    }

    fn name(&self) -> String {
        "(every run: /events)".to_string()
    }
}
