//! A loopback HTTP server that counts what it is asked, on its own thread and runtime, so sync
//! and async tests use it alike. It stops when dropped.
//!
//! Routes (any method):
//! - `/step/{i}` → `200 {"i": i, "ok": true}`;
//! - `/slow/{ms}/{i}` → the same after `ms` milliseconds;
//! - `/status/{code}` → that status with body `{"status": code}`;
//! - `/flaky/{n}/{i}` → `503` for the first `n` requests to this path, then as `/step/{i}`;
//! - `/echo` → `200 {"method", "path", "headers": {…}, "body"}` of the request;
//! - `/down` → `503 down`, until [`CountingServer::set_down`]`(false)`, then `200 {"ok": true}`;
//! - `/hang-once/{i}` → the first request to this path gets no answer until the server is
//!   dropped (a client killed mid-request); later ones are answered as `/step/{i}`.
//!
//! ```
//! use sequential_test_support::http::CountingServer;
//!
//! let server = CountingServer::start();
//! let url = format!("{}/step/3", server.url());
//! # let body = std::thread::spawn(move || {
//! #     tokio::runtime::Runtime::new().unwrap()
//! #         .block_on(async { reqwest::get(&url).await.unwrap().text().await.unwrap() })
//! # }).join().unwrap();
//! # assert!(body.contains("\"i\":3"));
//! assert_eq!(server.count("/step/3"), 1);
//! ```

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde_json::{Value, json};

/// One request the server received.
#[derive(Debug, Clone, PartialEq)]
pub struct Hit {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path (without the query).
    pub path: String,
    /// The `Idempotency-Key` header, when sent.
    pub key: Option<String>,
    /// Every header (lowercase names; the last value of a repeated one).
    pub headers: BTreeMap<String, String>,
    /// The body as text (lossy UTF-8).
    pub body: String,
}

struct Shared {
    hits: Mutex<Vec<Hit>>,
    down: AtomicBool,
    /// Becomes `true` when the server stops: held requests end then.
    stopping: tokio::sync::watch::Sender<bool>,
}

/// The server; see the module docs for its routes.
pub struct CountingServer {
    url: String,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for CountingServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingServer")
            .field("url", &self.url)
            .finish()
    }
}

impl CountingServer {
    /// Starts a server on `127.0.0.1:0`.
    pub fn start() -> Self {
        Self::start_with(Router::new())
    }

    /// Starts a server with `extra` routes merged in beside the built-in ones.
    pub fn start_with(extra: Router) -> Self {
        let shared = Arc::new(Shared {
            hits: Mutex::new(Vec::new()),
            down: AtomicBool::new(true),
            stopping: tokio::sync::watch::Sender::new(false),
        });
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let state = shared.clone();
        let thread = std::thread::Builder::new()
            .name("counting-server".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("tokio runtime for the counting server");
                rt.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                        .await
                        .expect("binding 127.0.0.1:0");
                    addr_tx.send(listener.local_addr().unwrap()).unwrap();
                    let app = Router::new()
                        .route("/step/{i}", any(step))
                        .route("/slow/{ms}/{i}", any(slow))
                        .route("/status/{code}", any(status))
                        .route("/flaky/{n}/{i}", any(flaky))
                        .route("/echo", any(echo))
                        .route("/down", any(down))
                        .route("/hang-once/{i}", any(hang_once))
                        .with_state(state.clone())
                        .merge(extra)
                        .layer(axum::middleware::from_fn_with_state(state, record));
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stop_rx.await;
                        })
                        .await
                        .expect("the counting server");
                });
            })
            .expect("spawning the counting server's thread");
        let addr = addr_rx.recv().expect("the counting server's address");
        CountingServer {
            url: format!("http://{addr}"),
            shared,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Every request so far, in arrival order.
    pub fn hits(&self) -> Vec<Hit> {
        self.shared.hits.lock().unwrap().clone()
    }

    /// How many requests reached `path`.
    pub fn count(&self, path: &str) -> usize {
        self.shared
            .hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .count()
    }

    /// Forgets the requests so far.
    pub fn clear(&self) {
        self.shared.hits.lock().unwrap().clear();
    }

    /// Whether `/down` answers 503 (the default) or 200.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for CountingServer {
    fn drop(&mut self) {
        self.shared.stopping.send_replace(true);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn record(
    State(shared): State<Arc<Shared>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, usize::MAX)
        .await
        .unwrap_or_default();
    shared.hits.lock().unwrap().push(Hit {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        key: parts
            .headers
            .get("idempotency-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        headers: headers(&parts.headers),
        body: String::from_utf8_lossy(&bytes).into_owned(),
    });
    next.run(axum::extract::Request::from_parts(parts, bytes.into()))
        .await
}

fn headers(h: &HeaderMap) -> BTreeMap<String, String> {
    h.iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect()
}

async fn step(Path(i): Path<i64>) -> Response {
    axum::Json(json!({"i": i, "ok": true})).into_response()
}

async fn slow(Path((ms, i)): Path<(u64, i64)>) -> Response {
    tokio::time::sleep(Duration::from_millis(ms)).await;
    step(Path(i)).await
}

async fn status(Path(code): Path<u16>) -> Response {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST);
    (status, axum::Json(json!({"status": code}))).into_response()
}

async fn flaky(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    Path((n, i)): Path<(usize, i64)>,
) -> Response {
    // the recording middleware has already counted this request
    let seen = shared
        .hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.path == uri.path())
        .count();
    if seen <= n {
        (StatusCode::SERVICE_UNAVAILABLE, "flaky").into_response()
    } else {
        step(Path(i)).await
    }
}

async fn hang_once(State(shared): State<Arc<Shared>>, uri: Uri, Path(i): Path<i64>) -> Response {
    let seen = shared
        .hits
        .lock()
        .unwrap()
        .iter()
        .filter(|h| h.path == uri.path())
        .count();
    if seen == 1 {
        let mut stopping = shared.stopping.subscribe();
        let _ = stopping.wait_for(|s| *s).await;
        return (StatusCode::SERVICE_UNAVAILABLE, "stopping").into_response();
    }
    step(Path(i)).await
}

async fn echo(method: Method, uri: Uri, h: HeaderMap, body: Bytes) -> Response {
    let body: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    axum::Json(json!({
        "method": method.as_str(),
        "path": uri.path(),
        "headers": headers(&h),
        "body": body,
    }))
    .into_response()
}

async fn down(State(shared): State<Arc<Shared>>) -> Response {
    if shared.down.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, "down").into_response()
    } else {
        axum::Json(json!({"ok": true})).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(url: String) -> (u16, String) {
        let r = reqwest::Client::new()
            .post(url)
            .header("idempotency-key", "k1")
            .body("hello")
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    #[tokio::test]
    async fn routes_answer_and_every_request_is_counted() {
        let s = CountingServer::start();
        let u = s.url().to_string();
        assert_eq!(
            get(format!("{u}/step/4")).await,
            (200, r#"{"i":4,"ok":true}"#.into())
        );
        assert_eq!(get(format!("{u}/status/418")).await.0, 418);
        assert_eq!(get(format!("{u}/flaky/2/1")).await.0, 503);
        assert_eq!(get(format!("{u}/flaky/2/1")).await.0, 503);
        assert_eq!(get(format!("{u}/flaky/2/1")).await.0, 200);
        assert_eq!(get(format!("{u}/down")).await.0, 503);
        s.set_down(false);
        assert_eq!(get(format!("{u}/down")).await.0, 200);
        let (code, echo) = get(format!("{u}/echo")).await;
        assert_eq!(code, 200);
        assert!(
            echo.contains(r#""body":"hello""#) && echo.contains("idempotency-key"),
            "{echo}"
        );
        assert_eq!(s.count("/flaky/2/1"), 3);
        let first = &s.hits()[0];
        assert_eq!(
            (
                first.method.as_str(),
                first.key.as_deref(),
                first.body.as_str()
            ),
            ("POST", Some("k1"), "hello")
        );
        s.clear();
        assert!(s.hits().is_empty());
    }
}
