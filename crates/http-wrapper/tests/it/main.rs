//! Integration tests: a real axum server on 127.0.0.1:0 that injects each fault.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use sequential_http_wrapper::{
    Backoff, Client, ClientConfig, Failure, FetchError, Jitter, Request, RetryPolicy,
};

/// (path, Idempotency-Key header) of every request, in arrival order.
type Hits = Arc<Mutex<Vec<(String, Option<String>)>>>;

#[derive(Clone, Default)]
struct Seen {
    hits: Hits,
}

impl Seen {
    fn record(&self, path: &str, headers: &HeaderMap) -> usize {
        let key = headers
            .get("idempotency-key")
            .map(|v| v.to_str().unwrap().to_string());
        let mut hits = self.hits.lock().unwrap();
        hits.push((path.to_string(), key));
        hits.iter().filter(|(p, _)| p == path).count()
    }
    fn hits(&self, path: &str) -> Vec<Option<String>> {
        let hits = self.hits.lock().unwrap();
        hits.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, k)| k.clone())
            .collect()
    }
}

async fn flaky(State(s): State<Seen>, Path(n): Path<usize>, h: HeaderMap) -> Response {
    let count = s.record(&format!("/flaky/{n}"), &h);
    if count <= n {
        (StatusCode::SERVICE_UNAVAILABLE, "try later").into_response()
    } else {
        (
            [("content-type", "application/json")],
            format!("{{\"after\":{count}}}"),
        )
            .into_response()
    }
}

async fn status(State(s): State<Seen>, Path(code): Path<u16>, h: HeaderMap) -> Response {
    s.record(&format!("/status/{code}"), &h);
    (
        StatusCode::from_u16(code).unwrap(),
        format!("status {code}"),
    )
        .into_response()
}

async fn retry_after(State(s): State<Seen>, h: HeaderMap) -> Response {
    if s.record("/retry-after", &h) == 1 {
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", "3600")],
            "slow down",
        )
            .into_response()
    } else {
        "ok".into_response()
    }
}

async fn slow(State(s): State<Seen>, h: HeaderMap) -> Response {
    s.record("/slow", &h);
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late".into_response()
}

async fn big(Path(mode): Path<String>) -> Response {
    let chunk = vec![b'x'; 64 * 1024];
    if mode == "sized" {
        vec![b'x'; 2 << 20].into_response()
    } else {
        let stream = futures_stream(chunk, 32);
        Response::new(stream)
    }
}

fn futures_stream(chunk: Vec<u8>, n: usize) -> Body {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    tokio::spawn(async move {
        for _ in 0..n {
            if tx.send(Ok(chunk.clone())).await.is_err() {
                return;
            }
        }
    });
    Body::new(ReceiverStream(rx))
}

struct ReceiverStream(tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>);

impl axum::body::HttpBody for ReceiverStream {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|o| o.map(|r| r.map(|v| http_body::Frame::data(v.into()))))
    }
}

async fn echo(method: Method, h: HeaderMap, body: String) -> Response {
    let headers: serde_json::Map<String, serde_json::Value> = h
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().into()))
        .collect();
    axum::Json(serde_json::json!({"method": method.as_str(), "headers": headers, "body": body}))
        .into_response()
}

async fn server() -> (SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route("/flaky/{n}", any(flaky))
        .route("/status/{code}", any(status))
        .route("/retry-after", any(retry_after))
        .route("/slow", any(slow))
        .route("/big/{mode}", any(big))
        .route("/echo", any(echo))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, seen)
}

fn fast_policy(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        initial_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(20),
        backoff: Backoff::Exponential { factor: 2.0 },
        jitter: Jitter::Full,
    }
}

fn client(attempts: u32) -> Client {
    Client::new(ClientConfig {
        timeout: Duration::from_millis(300),
        max_response_bytes: 1 << 20,
        retry: fast_policy(attempts),
        ..ClientConfig::default()
    })
    .unwrap()
}

fn keyed(url: String) -> Request {
    Request {
        idempotency_key: Some("run-1:7".into()),
        ..Request::get(url)
    }
}

#[tokio::test]
async fn transient_503s_are_retried_with_the_same_idempotency_key() {
    let (addr, seen) = server().await;
    let resp = client(5)
        .fetch(&keyed(format!("http://{addr}/flaky/2")))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.attempts, 3);
    assert_eq!(resp.data()["after"], 3);
    let keys = seen.hits("/flaky/2");
    assert_eq!(keys, vec![Some("run-1:7".to_string()); 3]);
}

#[tokio::test]
async fn every_retryable_status_is_retried_until_attempts_are_spent() {
    let (addr, seen) = server().await;
    for code in [408u16, 425, 429, 500, 502, 503, 504] {
        let err = client(3)
            .fetch(&Request::get(format!("http://{addr}/status/{code}")))
            .await
            .unwrap_err();
        match err {
            FetchError::RetriesExhausted {
                attempts: 3,
                last: Failure::Status { status, .. },
                ..
            } => {
                assert_eq!(status, code)
            }
            other => panic!("{code}: {other:?}"),
        }
        assert_eq!(
            seen.hits(&format!("/status/{code}")).len(),
            3,
            "status {code}"
        );
    }
}

#[tokio::test]
async fn other_4xx_are_answers_not_retried() {
    let (addr, seen) = server().await;
    for code in [400u16, 401, 403, 404, 409, 422] {
        let resp = client(5)
            .fetch(&Request::get(format!("http://{addr}/status/{code}")))
            .await
            .unwrap();
        assert_eq!((resp.status, resp.attempts), (code, 1));
        assert!(!resp.ok());
        assert_eq!(seen.hits(&format!("/status/{code}")).len(), 1);
    }
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_cap() {
    let (addr, seen) = server().await;
    // Retry-After says an hour; the policy caps delays at 20 ms, so this returns promptly.
    let resp = client(3)
        .fetch(&Request::get(format!("http://{addr}/retry-after")))
        .await
        .unwrap();
    assert_eq!((resp.status, resp.attempts), (200, 2));
    assert_eq!(seen.hits("/retry-after").len(), 2);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let (addr, seen) = server().await;
    let err = client(2)
        .fetch(&Request::get(format!("http://{addr}/slow")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::RetriesExhausted {
                attempts: 2,
                last: Failure::Timeout(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(seen.hits("/slow").len(), 2);
}

#[tokio::test]
async fn unreachable_host_is_a_connection_error_after_retries() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let err = client(3)
        .fetch(&Request::get(format!("http://127.0.0.1:{port}/")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::RetriesExhausted {
                attempts: 3,
                last: Failure::Connect(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("after 3 attempt(s)"), "{err}");
}

#[tokio::test]
async fn bodies_over_the_cap_are_cut_off() {
    let (addr, _) = server().await;
    for mode in ["sized", "streamed"] {
        let err = client(3)
            .fetch(&Request::get(format!("http://{addr}/big/{mode}")))
            .await
            .unwrap_err();
        assert!(
            matches!(err, FetchError::TooLarge { limit, .. } if limit == 1 << 20),
            "{mode}: {err:?}"
        );
        assert!(err.to_string().contains("1048576-byte limit"), "{err}");
    }
}

#[tokio::test]
async fn method_headers_and_body_are_sent_exactly() {
    let (addr, _) = server().await;
    let req = Request {
        url: format!("http://{addr}/echo"),
        method: "post".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-trace".into(), "abc".into()),
        ],
        body: Some(br#"{"items":[1,2]}"#.to_vec()),
        idempotency_key: Some("r:1".into()),
        retry: None,
    };
    let resp = client(1).fetch(&req).await.unwrap();
    let v = resp.data();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["body"], r#"{"items":[1,2]}"#);
    assert_eq!(v["headers"]["x-trace"], "abc");
    assert_eq!(v["headers"]["idempotency-key"], "r:1");
    assert_eq!(resp.header("Content-Type"), Some("application/json"));
}

#[tokio::test]
async fn bad_urls_and_options_are_named() {
    let c = client(3);
    let err = c
        .fetch(&Request::get("ftp://example.com/x"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, FetchError::UnsupportedScheme { ref scheme, .. } if scheme == "ftp"),
        "{err:?}"
    );
    let err = c.fetch(&Request::get("not a url")).await.unwrap_err();
    assert!(matches!(err, FetchError::InvalidUrl { .. }), "{err:?}");
    let err = c.fetch(&Request::get("http://[::1")).await.unwrap_err();
    assert!(matches!(err, FetchError::InvalidUrl { .. }), "{err:?}");
    let bad_method = Request {
        method: "GE T".into(),
        ..Request::get("http://127.0.0.1:9/")
    };
    let err = c.fetch(&bad_method).await.unwrap_err();
    assert!(err.to_string().contains("method"), "{err}");
}

#[tokio::test]
async fn data_urls_need_no_network() {
    let resp = client(1)
        .fetch(&Request::get(
            "data:application/json,%7B%22user%22%3A%22Alice%22%7D",
        ))
        .await
        .unwrap();
    assert_eq!(resp.data()["user"], "Alice");
}
