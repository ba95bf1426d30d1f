//! The retrying client.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderName, HeaderValue};

use crate::data_url;
use crate::error::{Failure, FetchError};
use crate::h1;
use crate::policy::{ClientConfig, RetryPolicy};

/// One request, as a task's `fetch(url, options)` describes it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request {
    /// `http:`, `https:` or `data:` URL.
    pub url: String,
    /// `GET` when empty.
    pub method: String,
    /// Header name/value pairs, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Option<Vec<u8>>,
    /// Sent as `Idempotency-Key` on every attempt (the engine uses `{run_id}:{seq}`).
    pub idempotency_key: Option<String>,
    /// Overrides the client's retry policy for this request.
    pub retry: Option<RetryPolicy>,
}

impl Request {
    /// A `GET` of `url`.
    pub fn get(url: impl Into<String>) -> Self {
        Request {
            url: url.into(),
            method: "GET".into(),
            ..Request::default()
        }
    }
}

/// A complete response.
#[derive(Clone, Debug, PartialEq)]
pub struct Response {
    /// The URL requested.
    pub url: String,
    /// Status code.
    pub status: u16,
    /// Reason phrase (`OK`, `Not Found`).
    pub status_text: String,
    /// Header name (lowercase)/value pairs.
    pub headers: Vec<(String, String)>,
    /// The whole body.
    pub body: Vec<u8>,
    /// Attempts it took (1 = no retry).
    pub attempts: u32,
}

impl Response {
    /// A response of `status` with `body` and no headers, as one attempt produced it: what a
    /// test double or a caching [`Fetcher`](crate::Fetcher) returns.
    pub fn new(url: impl Into<String>, status: u16, body: impl Into<Vec<u8>>) -> Self {
        let status_text = reqwest::StatusCode::from_u16(status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_string();
        Response {
            url: url.into(),
            status,
            status_text,
            headers: Vec::new(),
            body: body.into(),
            attempts: 1,
        }
    }

    /// The response with header `name: value` added (the name lowercased).
    pub fn with_header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_ascii_lowercase(), value.into()));
        self
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `true` for 200–299.
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON when the content type says JSON (or there is no content type and the
    /// body parses), else as a string — what script-mode `fetch` returns.
    pub fn data(&self) -> serde_json::Value {
        let try_json = match self.header("content-type") {
            Some(c) => c.contains("json"),
            None => true,
        };
        match serde_json::from_slice(&self.body) {
            Ok(v) if try_json => v,
            _ => serde_json::Value::String(self.text()),
        }
    }
}

/// Statuses that are retried: request timeout, too early, too many requests, and the
/// transient server errors.
pub fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 425 | 429 | 500 | 502 | 503 | 504)
}

/// The HTTP client that performs fetches: timeouts, retries with backoff and jitter,
/// `Retry-After`, `Idempotency-Key`, a response size cap, and local `data:` URLs.
///
/// Plain `http:` requests take a lean HTTP/1.1 path with its own keep-alive pool (unless a
/// proxy is configured in the environment, or the request carries credentials in its URL or a
/// header that changes framing); `https:` and the rest go through reqwest (rustls). Both send
/// the same request and follow redirects the same way. `SEQUENTIAL_HTTP_LEAN=0` in the
/// environment sends everything through reqwest.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// Follows a redirect answered on the lean path, with one redirect fewer to go.
    follow: reqwest::Client,
    lean: Option<Arc<h1::Pool>>,
    config: ClientConfig,
}

/// Redirects reqwest follows by default; the lean path's first hop counts as one.
const MAX_REDIRECTS: usize = 10;

enum AttemptError {
    /// Stop at once (the request itself is wrong, or the body is too large).
    Fatal(FetchError),
    /// Try again if attempts remain.
    Retry(Failure, Option<Duration>),
}

impl Client {
    /// A client with `config`.
    pub fn new(config: ClientConfig) -> Result<Self, FetchError> {
        let build = |redirects: usize| {
            reqwest::Client::builder()
                .connect_timeout(config.connect_timeout)
                .user_agent(config.user_agent.clone())
                .redirect(reqwest::redirect::Policy::limited(redirects))
                .build()
                .map_err(|e| FetchError::InvalidRequest {
                    option: "client".into(),
                    reason: e.to_string(),
                })
        };
        let http = build(MAX_REDIRECTS)?;
        let follow = build(MAX_REDIRECTS - 1)?;
        let lean = h1::enabled().then(|| {
            Arc::new(h1::Pool::new(
                config.connect_timeout,
                config.user_agent.clone(),
            ))
        });
        Ok(Client {
            http,
            follow,
            lean,
            config,
        })
    }

    /// The client's configuration.
    pub fn config(&self) -> &ClientConfig {
        &self.config
    }

    /// Performs `req`, retrying retryable failures by the request's (or the client's) policy.
    /// A non-retryable status (e.g. 404) is returned as a response; retries spent on a
    /// retryable status or transport error is [`FetchError::RetriesExhausted`].
    pub async fn fetch(&self, req: &Request) -> Result<Response, FetchError> {
        let scheme = req
            .url
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .ok_or_else(|| FetchError::InvalidUrl {
                url: req.url.clone(),
                reason: "a URL needs a scheme such as https:".into(),
            })?;
        match scheme.as_str() {
            "data" => {
                let resp = data_url::respond(&req.url)?;
                if resp.body.len() > self.config.max_response_bytes {
                    return Err(FetchError::TooLarge {
                        url: req.url.chars().take(64).collect(),
                        limit: self.config.max_response_bytes,
                    });
                }
                return Ok(resp);
            }
            "http" | "https" => {}
            _ => {
                return Err(FetchError::UnsupportedScheme {
                    url: req.url.clone(),
                    scheme,
                });
            }
        }
        let policy = req.retry.as_ref().unwrap_or(&self.config.retry);
        let attempts = policy.attempts.max(1);
        let mut attempt = 1;
        loop {
            let failure = match self.attempt(req).await {
                Ok(mut resp) => {
                    resp.attempts = attempt;
                    if !is_retryable_status(resp.status) {
                        return Ok(resp);
                    }
                    let retry_after = resp.header("retry-after").and_then(parse_retry_after);
                    let f = Failure::Status {
                        status: resp.status,
                        status_text: resp.status_text.clone(),
                        body: resp.text().chars().take(2048).collect(),
                    };
                    (f, retry_after)
                }
                Err(AttemptError::Fatal(e)) => return Err(e),
                Err(AttemptError::Retry(f, after)) => (f, after),
            };
            if attempt >= attempts {
                return Err(FetchError::RetriesExhausted {
                    url: req.url.clone(),
                    attempts: attempt,
                    last: failure.0,
                });
            }
            let delay = match failure.1 {
                Some(after) => after.min(policy.max_delay),
                None => policy.delay(attempt, unit_random()),
            };
            tracing::debug!(url = %req.url, attempt, ?delay, failure = %failure.0, "retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
    }

    async fn attempt(&self, req: &Request) -> Result<Response, AttemptError> {
        let timeout = self.config.timeout;
        match tokio::time::timeout(timeout, self.attempt_inner(req)).await {
            Ok(r) => r,
            Err(_) => Err(AttemptError::Retry(Failure::Timeout(timeout), None)),
        }
    }

    async fn attempt_inner(&self, req: &Request) -> Result<Response, AttemptError> {
        let fatal = |option: &str, reason: String| {
            AttemptError::Fatal(FetchError::InvalidRequest {
                option: option.to_string(),
                reason,
            })
        };
        let method = if req.method.is_empty() {
            reqwest::Method::GET
        } else {
            reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
                .map_err(|_| fatal("method", format!("{:?} is not an HTTP method", req.method)))?
        };
        let url = reqwest::Url::parse(&req.url).map_err(|e| {
            AttemptError::Fatal(FetchError::InvalidUrl {
                url: req.url.clone(),
                reason: e.to_string(),
            })
        })?;
        let mut headers = Vec::with_capacity(req.headers.len());
        for (k, v) in &req.headers {
            let name = HeaderName::from_bytes(k.as_bytes())
                .map_err(|_| fatal(&format!("headers[{k:?}]"), "not a valid header name".into()))?;
            let value = HeaderValue::from_str(v).map_err(|_| {
                fatal(
                    &format!("headers[{k:?}]"),
                    "not a valid header value".into(),
                )
            })?;
            headers.push((name, value));
        }
        if let Some(lean) = &self.lean
            && h1::eligible(&url, &headers)
        {
            return self.lean(lean, req, method, url, headers).await;
        }
        let mut builder = self.http.request(method, url);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some(key) = &req.idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        if let Some(body) = &req.body {
            builder = builder.body(body.clone());
        }
        self.send(builder, req).await
    }

    /// Sends a request built for reqwest and reads its response.
    async fn send(
        &self,
        builder: reqwest::RequestBuilder,
        req: &Request,
    ) -> Result<Response, AttemptError> {
        let mut resp = builder.send().await.map_err(classify)?;
        let limit = self.config.max_response_bytes;
        if resp.content_length().is_some_and(|n| n as usize > limit) {
            return Err(AttemptError::Fatal(FetchError::TooLarge {
                url: req.url.clone(),
                limit,
            }));
        }
        let status = resp.status();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > limit {
                return Err(AttemptError::Fatal(FetchError::TooLarge {
                    url: req.url.clone(),
                    limit,
                }));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response {
            url: req.url.clone(),
            status: status.as_u16(),
            status_text: status.canonical_reason().unwrap_or("").to_string(),
            headers,
            body,
            attempts: 1,
        })
    }

    /// One attempt on the lean path; a redirect it answers is followed through reqwest as
    /// reqwest would have followed it (method and body per status, credentials dropped across
    /// hosts, `Referer`), with one redirect fewer to go.
    async fn lean(
        &self,
        pool: &h1::Pool,
        req: &Request,
        method: reqwest::Method,
        url: reqwest::Url,
        headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Response, AttemptError> {
        let limit = self.config.max_response_bytes;
        let too_large = || {
            AttemptError::Fatal(FetchError::TooLarge {
                url: req.url.clone(),
                limit,
            })
        };
        let out = h1::Outgoing {
            method: &method,
            url: &url,
            headers: &headers,
            idempotency_key: req.idempotency_key.as_deref(),
            body: req.body.as_deref().filter(|b| !b.is_empty()),
        };
        let answer = match pool.send(&out, limit).await {
            Ok(a) => a,
            Err(h1::LeanError::TooLarge) => return Err(too_large()),
            Err(h1::LeanError::Failed(f)) => return Err(AttemptError::Retry(f, None)),
        };
        if let Some(builder) = self.redirect(&answer, req, method, &url, headers) {
            return self.send(builder, req).await;
        }
        let status = reqwest::StatusCode::from_u16(answer.status).map_err(|e| {
            AttemptError::Retry(Failure::Other(format!("invalid status: {e}")), None)
        })?;
        Ok(Response {
            url: req.url.clone(),
            status: answer.status,
            status_text: status.canonical_reason().unwrap_or("").to_string(),
            headers: answer.headers,
            body: answer.body,
            attempts: 1,
        })
    }

    /// The request that follows `answer` when it is a redirect reqwest follows.
    fn redirect(
        &self,
        answer: &h1::Answer,
        req: &Request,
        mut method: reqwest::Method,
        url: &reqwest::Url,
        mut headers: Vec<(HeaderName, HeaderValue)>,
    ) -> Option<reqwest::RequestBuilder> {
        use reqwest::Method;
        use reqwest::header::{
            AUTHORIZATION, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, COOKIE,
            PROXY_AUTHORIZATION, TRANSFER_ENCODING, WWW_AUTHENTICATE,
        };
        let mut body = req.body.clone();
        let drop_payload = |h: &mut Vec<(HeaderName, HeaderValue)>| {
            h.retain(|(k, _)| {
                ![
                    CONTENT_TYPE,
                    CONTENT_LENGTH,
                    CONTENT_ENCODING,
                    TRANSFER_ENCODING,
                ]
                .contains(k)
            });
        };
        match answer.status {
            301 | 302 => {
                if method == Method::POST {
                    method = Method::GET;
                    body = None;
                    drop_payload(&mut headers);
                }
            }
            303 => {
                if method != Method::HEAD {
                    method = Method::GET;
                }
                body = None;
                drop_payload(&mut headers);
            }
            307 | 308 => {}
            _ => return None,
        }
        let location = answer
            .headers
            .iter()
            .find(|(k, _)| k == "location")
            .map(|(_, v)| v.as_str())?;
        let next = url.join(location).ok()?;
        let cross_host = next.host_str() != url.host_str()
            || next.port_or_known_default() != url.port_or_known_default();
        if cross_host {
            headers.retain(|(k, _)| {
                ![AUTHORIZATION, COOKIE, PROXY_AUTHORIZATION, WWW_AUTHENTICATE].contains(k)
                    && k.as_str() != "cookie2"
            });
        }
        let mut builder = self.follow.request(method, next);
        for (name, value) in headers {
            builder = builder.header(name, value);
        }
        if let Some(key) = &req.idempotency_key {
            builder = builder.header("idempotency-key", key);
        }
        // the lean path takes `http:` URLs only, so the referer is never an `https:` one
        let mut referer = url.clone();
        referer.set_fragment(None);
        builder = builder.header(reqwest::header::REFERER, referer.as_str());
        if let Some(body) = body {
            builder = builder.body(body);
        }
        Some(builder)
    }
}

/// A uniform number in [0, 1) from the operating system's generator, for jitter (0.5, i.e. half
/// the delay, in the unlikely case that the generator fails).
pub(crate) fn unit_random() -> f64 {
    getrandom::u64().map_or(0.5, |x| (x >> 11) as f64 / (1u64 << 53) as f64)
}

fn classify(e: reqwest::Error) -> AttemptError {
    let failure = if e.is_timeout() {
        Failure::Timeout(Duration::ZERO)
    } else if e.is_connect() {
        Failure::Connect(error_chain(&e))
    } else {
        Failure::Other(error_chain(&e))
    };
    AttemptError::Retry(failure, None)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// `Retry-After` as seconds or an HTTP date.
fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.trim().parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v.trim()).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon"), None);
    }

    #[test]
    fn jitter_draws_spread_over_the_unit_interval() {
        let draws: Vec<f64> = (0..1000).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|x| (0.0..1.0).contains(x)));
        assert!(draws.iter().any(|x| *x < 0.25) && draws.iter().any(|x| *x > 0.75));
    }

    #[test]
    fn made_responses_have_a_reason_phrase_and_headers() {
        let r = Response::new("https://x/", 404, "nope").with_header("Content-Type", "text/plain");
        assert_eq!((r.status_text.as_str(), r.attempts), ("Not Found", 1));
        assert_eq!(r.header("content-type"), Some("text/plain"));
        assert_eq!(r.text(), "nope");
    }

    #[test]
    fn retryable_statuses() {
        let r: Vec<u16> = (400..600).filter(|s| is_retryable_status(*s)).collect();
        assert_eq!(r, vec![408, 425, 429, 500, 502, 503, 504]);
    }
}
