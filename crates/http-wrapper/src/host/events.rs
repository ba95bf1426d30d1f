//! [`EventStream`]: a run's journal records over NDJSON, reconnecting with `?after=<last seq>`
//! whenever the connection drops, until the terminal record.

use std::pin::Pin;
use std::task::{Context, Poll};
#[cfg(test)]
use std::time::Duration;

use futures_core::Stream;
use serde_json::Value;

use super::resuming::{Feed, Line, Resuming};
use super::{HostClient, HostError, Record, segment};

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
    inner: Resuming<RunFeed>,
    last_seq: Option<u64>,
}

impl std::fmt::Debug for EventStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventStream")
            .field("last_seq", &self.last_seq)
            .field("reconnects", &self.inner.reconnects())
            .finish_non_exhaustive()
    }
}

impl EventStream {
    pub(super) fn new(host: HostClient, run: String, after: Option<u64>) -> Self {
        EventStream {
            inner: Resuming::new(host, RunFeed { run, after }),
            last_seq: after,
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
        self.inner.reconnects()
    }
}

impl Stream for EventStream {
    type Item = Result<Record, HostError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        if let Some(Ok(r)) = &item {
            self.last_seq = Some(r.seq);
        }
        Poll::Ready(item)
    }
}

/// One run's journal, resumed after the last seq seen.
struct RunFeed {
    run: String,
    after: Option<u64>,
}

impl Feed for RunFeed {
    type Item = Record;

    fn request(&self) -> (String, Vec<(&'static str, String)>) {
        let path = format!("/runs/{}/events", segment(&self.run));
        (
            path,
            self.after
                .map(|a| ("after", a.to_string()))
                .into_iter()
                .collect(),
        )
    }

    /// A record to yield, or a ping, a duplicate or a resume hint to skip.
    fn line(&mut self, doc: Value, text: &str) -> Line<Record> {
        match doc["kind"].as_str() {
            Some("ping") => return Line::Skip,
            Some("stream.lagged" | "stream.error") => {
                if let Some(seq) = doc["resume_after"].as_u64() {
                    self.after = self.after.max(Some(seq));
                }
                return Line::Ended(format!("the server ended the stream: {text}"));
            }
            _ => {}
        }
        let Ok(record) = serde_json::from_value::<Record>(doc) else {
            return Line::Skip;
        };
        if self.after.is_some_and(|a| record.seq <= a) {
            return Line::Skip;
        }
        self.after = Some(record.seq);
        if record.is_terminal() {
            Line::Last(record)
        } else {
            Line::Yield(record)
        }
    }

    fn name(&self) -> String {
        self.run.clone()
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
