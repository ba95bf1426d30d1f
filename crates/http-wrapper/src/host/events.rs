//! [`EventStream`]: a run's journal records over NDJSON, reconnecting with `?after=<last seq>`
//! whenever the connection drops, until the terminal record.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use reqwest::Method;
use serde_json::Value;

use super::{HostClient, HostError, Record, chain, segment};
use crate::client::unit_random;

/// No byte for this long means the connection is dead: the server sends a ping line every
/// 15 s on an idle stream.
const IDLE: Duration = Duration::from_secs(45);

type Step = Pin<Box<dyn Future<Output = (Box<Reader>, Option<Result<Record, HostError>>)> + Send>>;

/// A run's records, in seq order, each once: the history after the seq the stream was opened
/// with, then live records, ending after `run.succeeded`, `run.failed` or `run.cancelled`.
///
/// A dropped connection (a restarted server, a proxy's timeout, a network blip) is reopened
/// with `?after=<last seq yielded>`; only when [`HostClient::with_reconnect`]'s attempts fail
/// in a row without a record does the stream end with [`HostError::StreamBroken`]. An answer
/// that retrying cannot change (404 for an unknown run, 401) ends it with that error.
///
/// Use it as a [`Stream`] or through [`EventStream::next`].
pub struct EventStream {
    reader: Option<Box<Reader>>,
    step: Option<Step>,
    last_seq: Option<u64>,
    reconnects: u32,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("last_seq", &self.last_seq)
            .field("reconnects", &self.reconnects)
            .finish_non_exhaustive()
    }
}

impl EventStream {
    pub(super) fn new(host: HostClient, run: String, after: Option<u64>) -> Self {
        EventStream {
            reader: Some(Box::new(Reader {
                host,
                run,
                after,
                resp: None,
                buf: Vec::new(),
                done: false,
                failures: 0,
                connections: 0,
                last_failure: String::new(),
            })),
            step: None,
            last_seq: after,
            reconnects: 0,
        }
    }

    /// The next record; `None` after the terminal one (or after an error).
    pub async fn next(&mut self) -> Option<Result<Record, HostError>> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx)).await
    }

    /// The seq of the last record yielded (or the one the stream was opened after): where a new
    /// stream would resume.
    pub fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }

    /// How many times the stream reconnected so far.
    pub fn reconnects(&self) -> u32 {
        self.reconnects
    }
}

impl Stream for EventStream {
    type Item = Result<Record, HostError>;

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
                self.reconnects = reader.connections.saturating_sub(1);
                if let Some(Ok(r)) = &item {
                    self.last_seq = Some(r.seq);
                }
                self.reader = Some(reader);
                Poll::Ready(item)
            }
        }
    }
}

/// The state behind the stream.
struct Reader {
    host: HostClient,
    run: String,
    /// The last seq yielded.
    after: Option<u64>,
    resp: Option<reqwest::Response>,
    buf: Vec<u8>,
    done: bool,
    /// Connections in a row that yielded no record.
    failures: u32,
    /// Connections opened so far.
    connections: u32,
    /// Why the last connection failed or ended.
    last_failure: String,
}

impl Reader {
    async fn next(&mut self) -> Option<Result<Record, HostError>> {
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

    /// One NDJSON line: a record to yield, or `None` for a ping, a duplicate or a resume hint.
    fn line(&mut self, line: &[u8]) -> Option<Result<Record, HostError>> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        let Ok(doc) = serde_json::from_str::<Value>(text) else {
            // a line cut by a dropped connection: the reconnect reads it again whole
            return None;
        };
        match doc["kind"].as_str() {
            Some("ping") => return None,
            Some("stream.lagged" | "stream.error") => {
                if let Some(seq) = doc["resume_after"].as_u64() {
                    self.after = self.after.max(Some(seq));
                }
                self.dropped(format!("the server ended the stream: {text}"));
                return None;
            }
            _ => {}
        }
        let record: Record = match serde_json::from_value(doc) {
            Ok(r) => r,
            Err(_) => return None,
        };
        if self.after.is_some_and(|a| record.seq <= a) {
            return None;
        }
        self.after = Some(record.seq);
        self.failures = 0;
        if record.is_terminal() {
            self.done = true;
            self.resp = None;
        }
        Some(Ok(record))
    }

    /// The connection is gone: the next read reconnects.
    fn dropped(&mut self, why: String) {
        tracing::debug!(run = %self.run, after = ?self.after, %why, "event stream dropped; resuming");
        self.resp = None;
        self.buf.clear();
        self.failures += 1;
        self.last_failure = why;
    }

    /// Opens the stream after `self.after`, waiting out the reconnect policy's delay first
    /// when connections keep failing.
    async fn connect(&mut self) -> Result<(), HostError> {
        let policy = &self.host.reconnect;
        loop {
            if self.failures >= policy.attempts.max(1) {
                return Err(HostError::StreamBroken {
                    run: self.run.clone(),
                    attempts: self.failures,
                    last: std::mem::take(&mut self.last_failure),
                });
            }
            if self.failures > 0 {
                tokio::time::sleep(policy.delay(self.failures, unit_random())).await;
            }
            let url = self
                .host
                .url(&format!("/runs/{}/events", segment(&self.run)));
            let mut req = self
                .host
                .request(Method::GET, &url, None)
                .header(reqwest::header::ACCEPT, "application/x-ndjson");
            if let Some(a) = self.after {
                req = req.query(&[("after", a)]);
            }
            self.connections += 1;
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
                    // overloaded or restarting: try again; anything else will not change
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::body::Body;
    use axum::extract::State;
    use axum::http::Uri;
    use axum::response::Response;
    use axum::routing::get;

    use super::*;

    fn line(seq: u64, kind: &str) -> String {
        format!(
            "{{\"run\":\"r\",\"seq\":{seq},\"kind\":\"{kind}\",\"at\":{},\"data\":{{}}}}\n",
            1000 + seq
        )
    }

    /// The first connection sends records 0 and 1, a ping and half a line, then drops; the
    /// second answers `?after=` with the rest (repeating record 1, as a careless server might).
    async fn events(State(calls): State<Arc<AtomicUsize>>, uri: Uri) -> Response {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let body = if n == 0 {
            let mut s = line(0, "run.started") + &line(1, "call.requested");
            s.push_str("{\"kind\":\"ping\"}\n{\"run\":\"r\",\"seq\":2,");
            s
        } else {
            assert_eq!(
                uri.query(),
                Some("after=1"),
                "resumes after the last record"
            );
            line(1, "call.requested") + &line(2, "call.completed") + &line(3, "run.succeeded")
        };
        Response::new(Body::from(body))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_dropped_stream_resumes_after_the_last_record_without_gap_or_duplicate() {
        let calls = Arc::new(AtomicUsize::new(0));
        let app = Router::new()
            .route("/api/v1/runs/r/events", get(events))
            .with_state(calls.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let host = HostClient::new(&format!("http://{addr}")).unwrap();
        let mut stream = host.run("r").events(None);
        let mut seqs = Vec::new();
        while let Some(r) = stream.next().await {
            seqs.push(r.unwrap().seq);
        }
        assert_eq!(seqs, [0, 1, 2, 3]);
        assert_eq!(stream.last_seq(), Some(3));
        assert_eq!(stream.reconnects(), 1);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "no connection after the terminal record"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stream_that_cannot_connect_ends_with_an_error_after_its_attempts() {
        // a port nobody listens on: bind, note it, close
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let host = HostClient::new(&format!("http://{addr}"))
            .unwrap()
            .with_reconnect(crate::RetryPolicy {
                attempts: 3,
                initial_delay: Duration::from_millis(1),
                max_delay: Duration::from_millis(5),
                ..crate::RetryPolicy::default()
            });
        let mut stream = host.run("r").events(Some(4));
        let e = stream.next().await.unwrap().unwrap_err();
        assert!(
            matches!(e, HostError::StreamBroken { attempts: 3, .. }),
            "{e}"
        );
        assert!(stream.next().await.is_none());
        assert_eq!(stream.last_seq(), Some(4));
    }
}
