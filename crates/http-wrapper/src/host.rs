//! The typed client of the host API (`sequential-ecosystem serve`, `/api/v1`): [`HostClient`]
//! for the host and its tasks and runs, [`TaskClient`] for one task, [`RunClient`] for one run,
//! and [`EventStream`], a run's records that reconnect and resume by themselves.
//!
//! Every answer that is not a 2xx is a [`HostError::Api`] carrying the status and the
//! server's `{error, code, details}`.

mod events;
mod feed;
mod model;
mod resuming;

use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

pub use events::EventStream;
pub use feed::{HostEventStream, HostEvents, HostRecord};
pub use model::{
    EventAccepted, Health, JournalInfo, Page, Record, Run, RunFilter, RunOutput, RunParent,
    RunStatus, RunTask, StartOptions, StorageHealth, Task, TaskSummary, TaskVersionInfo, Uploaded,
    Version, Waiting,
};

use crate::policy::{Backoff, Jitter, RetryPolicy};

/// Characters a path segment keeps as they are (task names and run ids never need more).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// How long a request may take unless it waits on purpose (`?wait=`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a request may take beyond the wait it asked the server for.
const WAIT_MARGIN: Duration = Duration::from_secs(30);

/// The longest wait the server grants one request; longer waits are several requests.
const MAX_SERVER_WAIT: Duration = Duration::from_secs(300);

/// Why a host API call produced no usable answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HostError {
    /// The base URL cannot be used.
    #[error("invalid host URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No answer: the connection failed, broke or timed out.
    #[error("{method} {url}: no answer: {reason}")]
    Unreachable {
        /// `GET`, `POST` …
        method: String,
        /// The URL requested.
        url: String,
        /// What happened (the transport error and its causes).
        reason: String,
    },
    /// The server answered with an error (`{error, code, details}`).
    #[error("{method} {url}: {status} {code}: {message}")]
    Api {
        /// `GET`, `POST` …
        method: String,
        /// The URL requested.
        url: String,
        /// The HTTP status (400, 401, 404, 409, 413, 415, 422, 503 …).
        status: u16,
        /// The machine-readable code, e.g. `RUN_NOT_FOUND` (`HTTP_<status>` when the body
        /// was not the API's error shape).
        code: String,
        /// The server's message: the input and what would have been valid.
        message: String,
        /// The server's `details` (`null` when none).
        details: Box<Value>,
    },
    /// A 2xx answer whose body is not what this endpoint returns.
    #[error("{method} {url}: {status} with an unexpected body: {reason}")]
    Decode {
        /// `GET`, `POST` …
        method: String,
        /// The URL requested.
        url: String,
        /// The HTTP status.
        status: u16,
        /// What did not parse.
        reason: String,
    },
    /// An event stream kept breaking without delivering a record.
    #[error("the event stream of run {run} broke {attempts} time(s) in a row: {last}")]
    StreamBroken {
        /// The run.
        run: String,
        /// Consecutive failed connections.
        attempts: u32,
        /// The last failure.
        last: String,
    },
}

impl HostError {
    /// The HTTP status of an [`HostError::Api`] error.
    pub fn status(&self) -> Option<u16> {
        match self {
            HostError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The API's error code (`RUN_NOT_FOUND`, `IDEMPOTENCY_KEY_REUSED` …) of an
    /// [`HostError::Api`] error.
    pub fn code(&self) -> Option<&str> {
        match self {
            HostError::Api { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// A body to send.
enum Body {
    None,
    Json(Value),
    Bytes(Vec<u8>, &'static str),
}

/// A status and body as the server sent them.
struct Answer {
    method: Method,
    url: String,
    status: u16,
    body: Vec<u8>,
}

impl Answer {
    fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as `T` if 2xx, else the API error.
    fn json<T: DeserializeOwned>(self) -> Result<T, HostError> {
        if !self.ok() {
            return Err(self.error());
        }
        self.decode()
    }

    fn decode<T: DeserializeOwned>(self) -> Result<T, HostError> {
        serde_json::from_slice(&self.body).map_err(|e| HostError::Decode {
            method: self.method.to_string(),
            url: self.url.clone(),
            status: self.status,
            reason: e.to_string(),
        })
    }

    fn error(self) -> HostError {
        let doc: Value = serde_json::from_slice(&self.body).unwrap_or(Value::Null);
        let (code, message) = match (doc["code"].as_str(), doc["error"].as_str()) {
            (Some(c), Some(m)) => (c.to_string(), m.to_string()),
            _ => {
                let text = String::from_utf8_lossy(&self.body);
                let text: String = text.trim().chars().take(300).collect();
                (format!("HTTP_{}", self.status), text)
            }
        };
        HostError::Api {
            method: self.method.to_string(),
            url: self.url,
            status: self.status,
            code,
            message,
            details: Box::new(doc.get("details").cloned().unwrap_or(Value::Null)),
        }
    }
}

/// The host API client. Cheap to clone; clones share connections.
///
/// ```no_run
/// # async fn demo() -> Result<(), sequential_http_wrapper::HostError> {
/// use sequential_http_wrapper::HostClient;
/// use sequential_http_wrapper::host::StartOptions;
///
/// let host = HostClient::new("http://127.0.0.1:8080")?.with_token("s3cret");
/// let run = host
///     .task("hello")
///     .start(serde_json::json!({ "name": "Ada" }), StartOptions::default())
///     .await?;
/// let done = host.run(&run.id).get_wait(std::time::Duration::from_secs(30)).await?;
/// println!("{}: {:?}", done.status, done.output);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct HostClient {
    /// `…/api/v1`, without a trailing slash.
    api: String,
    http: reqwest::Client,
    token: Option<String>,
    timeout: Duration,
    reconnect: RetryPolicy,
}

impl HostClient {
    /// A client of the server at `base_url` (`http://127.0.0.1:8080`, with or without
    /// `/api/v1`).
    pub fn new(base_url: &str) -> Result<Self, HostError> {
        let invalid = |reason: &str| HostError::InvalidUrl {
            url: base_url.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = base_url.trim().trim_end_matches('/');
        let parsed = reqwest::Url::parse(trimmed)
            .map_err(|e| invalid(&format!("{e}; expected e.g. http://127.0.0.1:8080")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(invalid(
                "expected an http:// or https:// URL, e.g. http://127.0.0.1:8080",
            ));
        }
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid(
                "expected no query or fragment, e.g. http://127.0.0.1:8080",
            ));
        }
        let api = if trimmed.ends_with("/api/v1") {
            trimmed.to_string()
        } else {
            format!("{trimmed}/api/v1")
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!(
                "sequential-http-wrapper/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .map_err(|e| invalid(&format!("cannot build an HTTP client: {e}")))?;
        Ok(HostClient {
            api,
            http,
            token: None,
            timeout: DEFAULT_TIMEOUT,
            reconnect: RetryPolicy {
                attempts: 20,
                initial_delay: Duration::from_millis(100),
                max_delay: Duration::from_secs(2),
                backoff: Backoff::Exponential { factor: 2.0 },
                jitter: Jitter::Full,
            },
        })
    }

    /// Sends `Authorization: Bearer <token>` with every request (the server's
    /// `SEQUENTIAL_API_TOKEN`).
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// How long a request may take (default 30 s); requests that wait on purpose get their
    /// wait on top.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How an [`EventStream`] reconnects: `attempts` connections in a row that deliver no
    /// record end it with [`HostError::StreamBroken`]; the delays between them follow the
    /// policy (default: 20 attempts, 100 ms doubling up to 2 s, full jitter).
    pub fn with_reconnect(mut self, policy: RetryPolicy) -> Self {
        self.reconnect = policy;
        self
    }

    /// The API root, `…/api/v1`.
    pub fn api_url(&self) -> &str {
        &self.api
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    fn request(
        &self,
        method: Method,
        url: &str,
        timeout: Option<Duration>,
    ) -> reqwest::RequestBuilder {
        let mut req = self.http.request(method, url);
        if let Some(t) = timeout {
            req = req.timeout(t);
        }
        if let Some(token) = &self.token {
            req = req.bearer_auth(token);
        }
        req
    }

    /// One request; the whole body is read.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        body: Body,
        waits: Option<Duration>,
    ) -> Result<Answer, HostError> {
        let url = self.url(path);
        let timeout = self.timeout + waits.map_or(Duration::ZERO, |w| w + WAIT_MARGIN);
        let mut req = self.request(method.clone(), &url, Some(timeout));
        if !query.is_empty() {
            req = req.query(query);
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        req = match body {
            Body::None => req,
            Body::Json(v) => req
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(v.to_string()),
            Body::Bytes(b, ct) => req.header(reqwest::header::CONTENT_TYPE, ct).body(b),
        };
        let unreachable = |e: reqwest::Error| HostError::Unreachable {
            method: method.to_string(),
            url: url.clone(),
            reason: chain(&e),
        };
        let resp = req.send().await.map_err(unreachable)?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await.map_err(unreachable)?.to_vec();
        Ok(Answer {
            method: method.clone(),
            url: url.clone(),
            status,
            body,
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, HostError> {
        self.send(Method::GET, path, &[], &[], Body::None, None)
            .await?
            .json()
    }

    async fn post<T: DeserializeOwned>(&self, path: &str, body: Value) -> Result<T, HostError> {
        self.send(Method::POST, path, &[], &[], Body::Json(body), None)
            .await?
            .json()
    }

    /// `GET /events`: every run's records (each run announced by `run.created`), from the
    /// cursor in `what.after` (or now), live and without end. When the connection drops, the
    /// stream reconnects after the last cursor by itself: no record is lost or repeated.
    pub fn events(&self, what: HostEvents) -> HostEventStream {
        HostEventStream::new(self.clone(), what)
    }

    /// `GET /version`.
    pub async fn version(&self) -> Result<Version, HostError> {
        self.get("/version").await
    }

    /// `GET /health`. A server whose storage is down answers 503 with the same document,
    /// returned here with `ok: false`.
    pub async fn health(&self) -> Result<Health, HostError> {
        let answer = self
            .send(Method::GET, "/health", &[], &[], Body::None, None)
            .await?;
        if answer.status == 503
            && let Ok(h) = serde_json::from_slice::<Health>(&answer.body)
        {
            return Ok(h);
        }
        answer.json()
    }

    /// `GET /tasks`, every page: each stored task's latest version, by name.
    pub async fn list_tasks(&self) -> Result<Vec<TaskSummary>, HostError> {
        let mut all = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let mut query = vec![("limit", "1000".to_string())];
            if let Some(c) = &cursor {
                query.push(("cursor", c.clone()));
            }
            let page: Page<TaskSummary> = self
                .send(Method::GET, "/tasks", &query, &[], Body::None, None)
                .await?
                .json()?;
            all.extend(page.items);
            match page.next_cursor {
                Some(c) if cursor.as_ref() != Some(&c) => cursor = Some(c),
                _ => return Ok(all),
            }
        }
    }

    /// `PUT /tasks/:name` with `{name, code, graph?, config?}`: stores the content as the
    /// task's next version (creating the task if needed); identical content answers the version
    /// that already holds it (`created: false`). Runs stay pinned to their versions.
    pub async fn upload(
        &self,
        name: &str,
        code: &str,
        graph: Option<&Value>,
        config: Option<&Value>,
    ) -> Result<Uploaded, HostError> {
        let mut doc = json!({ "name": name, "code": code });
        if let Some(g) = graph {
            doc["graph"] = g.clone();
        }
        if let Some(c) = config {
            doc["config"] = c.clone();
        }
        self.send(
            Method::PUT,
            &format!("/tasks/{}", segment(name)),
            &[],
            &[],
            Body::Json(doc),
            None,
        )
        .await?
        .json()
    }

    /// `POST /tasks` with a tar.gz of a task folder (`<name>/code.js`, `config.json`, …; the
    /// name comes from its `config.json` or folder): a new task. A name that exists is a 409
    /// `TASK_EXISTS` error (use [`HostClient::upload`] for a new version); a package that
    /// fails the server's checks is a 422.
    pub async fn upload_tar_gz(&self, bytes: Vec<u8>) -> Result<Uploaded, HostError> {
        self.send(
            Method::POST,
            "/tasks",
            &[],
            &[],
            Body::Bytes(bytes, "application/octet-stream"),
            None,
        )
        .await?
        .json()
    }

    /// One task.
    pub fn task(&self, name: &str) -> TaskClient {
        TaskClient {
            host: self.clone(),
            name: name.to_string(),
        }
    }

    /// `GET /runs`: one page of runs matching `filter`, newest first unless
    /// `filter.oldest_first`; pass `next_cursor` back as `filter.cursor` for the next page.
    pub async fn list_runs(&self, filter: &RunFilter) -> Result<Page<Run>, HostError> {
        let mut query = Vec::new();
        if let Some(t) = &filter.task {
            query.push(("task", t.clone()));
        }
        if !filter.statuses.is_empty() {
            let list: Vec<&str> = filter.statuses.iter().map(|s| s.as_str()).collect();
            query.push(("status", list.join(",")));
        }
        if let Some(k) = &filter.idempotency_key {
            query.push(("idempotency_key", k.clone()));
        }
        if let Some(l) = filter.limit {
            query.push(("limit", l.to_string()));
        }
        if let Some(c) = &filter.cursor {
            query.push(("cursor", c.clone()));
        }
        if filter.oldest_first {
            query.push(("order", "oldest".to_string()));
        }
        self.send(Method::GET, "/runs", &query, &[], Body::None, None)
            .await?
            .json()
    }

    /// One run (nothing is requested until a method is called).
    pub fn run(&self, id: &str) -> RunClient {
        RunClient {
            host: self.clone(),
            id: id.to_string(),
        }
    }
}

/// One task of a [`HostClient`].
#[derive(Clone, Debug)]
pub struct TaskClient {
    host: HostClient,
    name: String,
}

impl TaskClient {
    /// The task name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn path(&self) -> String {
        format!("/tasks/{}", segment(&self.name))
    }

    /// `GET /tasks/:name`: the latest version's code, config and graph, and every version.
    pub async fn get(&self) -> Result<Task, HostError> {
        self.host.get(&self.path()).await
    }

    /// `POST /tasks/:name/runs`: a run of the latest version (or `options.version`) with
    /// `input`. With `options.idempotency_key`, a second start with the same key and input
    /// answers the same run, and one with another input is a 409 `IDEMPOTENCY_KEY_REUSED`
    /// error. With `options.wait`, answers once the run ended or after that long.
    pub async fn start(&self, input: Value, options: StartOptions) -> Result<Run, HostError> {
        let mut body = json!({ "input": input });
        if let Some(v) = options.version {
            body["version"] = v.into();
        }
        let mut query = Vec::new();
        let wait = options.wait.map(|w| w.min(MAX_SERVER_WAIT));
        if let Some(w) = wait {
            query.push(("wait", sequential_support::duration::format(w)));
        }
        let mut headers = Vec::new();
        if let Some(k) = options.idempotency_key {
            headers.push(("idempotency-key", k));
        }
        self.host
            .send(
                Method::POST,
                &format!("{}/runs", self.path()),
                &query,
                &headers,
                Body::Json(body),
                wait,
            )
            .await?
            .json()
    }

    /// `GET /tasks/:name/runs`: the first page of this task's runs, newest first (more with
    /// [`HostClient::list_runs`] and [`RunFilter::task`]).
    pub async fn runs(&self) -> Result<Page<Run>, HostError> {
        self.host.get(&format!("{}/runs", self.path())).await
    }
}

/// One run of a [`HostClient`].
#[derive(Clone, Debug)]
pub struct RunClient {
    host: HostClient,
    id: String,
}

impl RunClient {
    /// The run id.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn path(&self) -> String {
        format!("/runs/{}", segment(&self.id))
    }

    /// `GET /runs/:id`.
    pub async fn get(&self) -> Result<Run, HostError> {
        self.host.get(&self.path()).await
    }

    /// The run once it ended, or as it is after `wait` (long-polls; a wait longer than the
    /// server grants one request takes several).
    pub async fn get_wait(&self, wait: Duration) -> Result<Run, HostError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let run = self
                .poll(left.min(MAX_SERVER_WAIT), "terminal", None)
                .await?;
            if run.status.is_terminal() || left <= MAX_SERVER_WAIT {
                return Ok(run);
            }
        }
    }

    /// The run once it changed: its status differs from when the server received the request,
    /// or (with `after`) its journal has a record past `after`; or as it is after `wait` (at
    /// most the server's limit of 5 minutes).
    pub async fn get_change(&self, wait: Duration, after: Option<u64>) -> Result<Run, HostError> {
        self.poll(wait.min(MAX_SERVER_WAIT), "change", after).await
    }

    async fn poll(
        &self,
        wait: Duration,
        until: &str,
        after: Option<u64>,
    ) -> Result<Run, HostError> {
        let mut query = vec![
            ("wait", sequential_support::duration::format(wait)),
            ("until", until.to_string()),
        ];
        if let Some(a) = after {
            query.push(("after", a.to_string()));
        }
        self.host
            .send(
                Method::GET,
                &self.path(),
                &query,
                &[],
                Body::None,
                Some(wait),
            )
            .await?
            .json()
    }

    /// `GET /runs/:id/journal`, every page: the whole journal.
    pub async fn journal(&self) -> Result<Vec<Record>, HostError> {
        self.journal_after(None).await
    }

    /// The journal records after seq `after` (all of them with `None`).
    pub async fn journal_after(&self, after: Option<u64>) -> Result<Vec<Record>, HostError> {
        #[derive(serde::Deserialize)]
        struct Journal {
            items: Vec<Record>,
        }
        let mut all = Vec::new();
        let mut cursor = after;
        loop {
            let mut query = vec![("limit", "10000".to_string())];
            if let Some(a) = cursor {
                query.push(("after", a.to_string()));
            }
            let page: Journal = self
                .host
                .send(
                    Method::GET,
                    &format!("{}/journal", self.path()),
                    &query,
                    &[],
                    Body::None,
                    None,
                )
                .await?
                .json()?;
            let Some(last) = page.items.last() else {
                return Ok(all);
            };
            cursor = Some(last.seq);
            all.extend(page.items);
        }
    }

    /// `POST /runs/:id/_event`: delivers event `name` with `payload` (stored before the
    /// answer). A run that ended answers a 409 `RUN_FINISHED` error.
    pub async fn send_event(&self, name: &str, payload: Value) -> Result<EventAccepted, HostError> {
        self.host
            .post(
                &format!("{}/_event", self.path()),
                json!({ "eventName": name, "message": payload }),
            )
            .await
    }

    /// The run's records after seq `after` (all with `None`), then the live ones as they are
    /// written, ending after the terminal record (`run.succeeded|failed|cancelled`). When the
    /// connection drops, the stream reconnects with `?after=<last seq>` by itself: no record is
    /// lost or repeated.
    pub fn events(&self, after: Option<u64>) -> EventStream {
        EventStream::new(self.host.clone(), self.id.clone(), after)
    }

    /// `POST /runs/:id/_stop`: the step in flight may finish for up to `timeout`, then the run
    /// is killed; answers at once with the run (`stopping`, or already `cancelled`).
    pub async fn stop(&self, timeout: Duration) -> Result<Run, HostError> {
        self.host
            .post(
                &format!("{}/_stop", self.path()),
                json!({ "timeout": timeout.as_millis() as u64 }),
            )
            .await
    }

    /// `POST /runs/:id/_kill`: ends the run `cancelled` now (409 `RUN_FINISHED` if it ended).
    pub async fn kill(&self) -> Result<Run, HostError> {
        self.host
            .post(&format!("{}/_kill", self.path()), json!({}))
            .await
    }

    /// `DELETE /runs/:id`: deletes an ended run with its journal, events and idempotency key.
    /// A run that has not ended is a 409 `RUN_ACTIVE` error (kill it first); an unknown run
    /// 404 `RUN_NOT_FOUND`.
    pub async fn delete(&self) -> Result<(), HostError> {
        self.host
            .send(Method::DELETE, &self.path(), &[], &[], Body::None, None)
            .await?
            .json::<Value>()
            .map(|_| ())
    }

    /// `POST /runs/:id/_retry`: continues a paused run (409 `RUN_NOT_PAUSED` otherwise).
    pub async fn retry(&self) -> Result<Run, HostError> {
        self.host
            .post(&format!("{}/_retry", self.path()), json!({}))
            .await
    }

    /// `POST /runs/:id/_fork`: a new run of the same version and input whose journal is the
    /// first `from_seq` records of this one (0: from scratch).
    pub async fn fork(&self, from_seq: u64) -> Result<Run, HostError> {
        self.host
            .post(
                &format!("{}/_fork", self.path()),
                json!({ "from_seq": from_seq }),
            )
            .await
    }

    /// `GET /runs/:id/output`: the output of a succeeded run, or the run while it has not
    /// ended; a failed or cancelled run is a 409 `RUN_NOT_SUCCEEDED` error.
    pub async fn output(&self) -> Result<RunOutput, HostError> {
        let answer = self
            .host
            .send(
                Method::GET,
                &format!("{}/output", self.path()),
                &[],
                &[],
                Body::None,
                None,
            )
            .await?;
        match answer.status {
            202 => Ok(RunOutput::Pending(Box::new(answer.decode()?))),
            _ => answer.json().map(RunOutput::Ready),
        }
    }
}

/// A path segment, escaped.
fn segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// An error with its causes, `a: b: c`.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
        source = cause.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_are_normalised_to_the_api_root() {
        for given in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/api/v1",
            "http://127.0.0.1:8080/api/v1/",
        ] {
            assert_eq!(
                HostClient::new(given).unwrap().api_url(),
                "http://127.0.0.1:8080/api/v1",
                "{given}"
            );
        }
        for bad in ["127.0.0.1:8080", "ftp://host", "http://h/?x=1", ""] {
            let e = HostClient::new(bad).unwrap_err();
            assert!(matches!(e, HostError::InvalidUrl { .. }), "{bad}: {e}");
            assert!(e.to_string().contains("http://127.0.0.1:8080"), "{e}");
        }
    }

    #[test]
    fn error_answers_carry_status_code_and_details() {
        let answer = Answer {
            method: Method::GET,
            url: "http://h/api/v1/runs/x".into(),
            status: 404,
            body: br#"{"error":"run x not found","code":"RUN_NOT_FOUND","details":{"run":"x"}}"#
                .to_vec(),
        };
        let e = answer.json::<Run>().unwrap_err();
        assert_eq!((e.status(), e.code()), (Some(404), Some("RUN_NOT_FOUND")));
        assert!(e.to_string().contains("run x not found"), "{e}");
        let proxy = Answer {
            method: Method::GET,
            url: "http://h/api/v1/version".into(),
            status: 502,
            body: b"<html>bad gateway</html>".to_vec(),
        };
        let e = proxy.json::<Version>().unwrap_err();
        assert_eq!(e.code(), Some("HTTP_502"));
        assert!(e.to_string().contains("bad gateway"), "{e}");
    }

    #[test]
    fn path_segments_are_escaped() {
        assert_eq!(segment("order-flow_2"), "order-flow_2");
        assert_eq!(segment("../x y"), "..%2Fx%20y");
    }
}
