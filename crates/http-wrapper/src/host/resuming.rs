//! [`Resuming`]: an NDJSON stream that reopens itself after a dropped connection, from where it
//! stopped. What is streamed, where it resumes and which lines count is a [`Feed`]'s business:
//! a run's journal ([`super::EventStream`]) or every run's ([`super::HostEventStream`]).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use reqwest::Method;
use serde_json::Value;

use super::{HostClient, HostError, chain};
use crate::client::unit_random;

/// No byte for this long means the connection is dead: the server sends a ping line every
/// 15 s on an idle stream.
const IDLE: Duration = Duration::from_secs(45);

/// What one NDJSON line means to a feed.
pub(super) enum Line<T> {
    /// Nothing to yield (a ping, a duplicate, a resume hint the feed took note of).
    Skip,
    /// The server ended the stream with this explanation: reconnect.
    Ended(String),
    /// A record.
    Yield(T),
    /// The last record the stream will ever have.
    Last(T),
}

/// A stream's subject: where to (re)connect, and what its lines mean. It keeps its own resume
/// point, moving it as lines arrive.
pub(super) trait Feed: Send + 'static {
    type Item: Send + 'static;
    /// The path under `/api/v1` and the query of a connection opened now.
    fn request(&self) -> (String, Vec<(&'static str, String)>);
    /// A parsed line (`text` is the line as received, for messages).
    fn line(&mut self, doc: Value, text: &str) -> Line<Self::Item>;
    /// Names the stream in [`HostError::StreamBroken`].
    fn name(&self) -> String;
}

/// The connection state behind a [`Resuming`] stream.
struct Reader<F> {
    host: HostClient,
    feed: F,
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

type Step<F> = Pin<
    Box<dyn Future<Output = (Box<Reader<F>>, Option<Result<<F as Feed>::Item, HostError>>)> + Send>,
>;

/// An NDJSON stream of `F`'s records that reconnects by itself; only when
/// [`HostClient::with_reconnect`]'s attempts fail in a row without a record does it end with
/// [`HostError::StreamBroken`]. An answer that retrying cannot change (404, 401) ends it with
/// that error.
pub(super) struct Resuming<F: Feed> {
    reader: Option<Box<Reader<F>>>,
    step: Option<Step<F>>,
    reconnects: u32,
}

impl<F: Feed> Resuming<F> {
    pub(super) fn new(host: HostClient, feed: F) -> Self {
        Resuming {
            reader: Some(Box::new(Reader {
                host,
                feed,
                resp: None,
                buf: Vec::new(),
                done: false,
                failures: 0,
                connections: 0,
                last_failure: String::new(),
            })),
            step: None,
            reconnects: 0,
        }
    }

    /// How many times the stream reconnected so far.
    pub(super) fn reconnects(&self) -> u32 {
        self.reconnects
    }
}

impl<F: Feed> Stream for Resuming<F> {
    type Item = Result<F::Item, HostError>;

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
                self.reader = Some(reader);
                Poll::Ready(item)
            }
        }
    }
}

impl<F: Feed> Reader<F> {
    async fn next(&mut self) -> Option<Result<F::Item, HostError>> {
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

    fn line(&mut self, line: &[u8]) -> Option<Result<F::Item, HostError>> {
        let text = String::from_utf8_lossy(line);
        let text = text.trim();
        if text.is_empty() {
            return None;
        }
        // a line cut by a dropped connection does not parse: the reconnect reads it again whole
        let doc = serde_json::from_str::<Value>(text).ok()?;
        match self.feed.line(doc, text) {
            Line::Skip => None,
            Line::Ended(why) => {
                self.dropped(why);
                None
            }
            Line::Yield(item) => {
                self.failures = 0;
                Some(Ok(item))
            }
            Line::Last(item) => {
                self.failures = 0;
                self.done = true;
                self.resp = None;
                Some(Ok(item))
            }
        }
    }

    /// The connection is gone: the next read reconnects.
    fn dropped(&mut self, why: String) {
        tracing::debug!(stream = %self.feed.name(), %why, "event stream dropped; resuming");
        self.resp = None;
        self.buf.clear();
        self.failures += 1;
        self.last_failure = why;
    }

    /// Opens the stream where the feed stands, waiting out the reconnect policy's delay first
    /// when connections keep failing.
    async fn connect(&mut self) -> Result<(), HostError> {
        loop {
            let policy = &self.host.reconnect;
            if self.failures >= policy.attempts.max(1) {
                return Err(HostError::StreamBroken {
                    run: self.feed.name(),
                    attempts: self.failures,
                    last: std::mem::take(&mut self.last_failure),
                });
            }
            if self.failures > 0 {
                tokio::time::sleep(policy.delay(self.failures, unit_random())).await;
            }
            let (path, query) = self.feed.request();
            let url = self.host.url(&path);
            let req = self
                .host
                .request(Method::GET, &url, None)
                .header(reqwest::header::ACCEPT, "application/x-ndjson")
                .query(&query);
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
