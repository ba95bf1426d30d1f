//! Integration tests against the shared counting loopback server (`sequential-test-support`),
//! plus the few routes only these tests need: a `Retry-After`, bodies over the size cap.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use sequential_http_wrapper::{
    Backoff, Client, ClientConfig, Failure, FetchError, Fetcher, Jitter, Request, RetryPolicy,
    async_trait,
};
use sequential_test_support::http::CountingServer;
use serde_json::json;

/// The counting server with `/retry-after` (429 with `Retry-After: 3600` the first time, then
/// 200) and `/big/{sized|streamed}` (a 2 MiB body, with or without a length).
fn server() -> CountingServer {
    let first = Arc::new(AtomicUsize::new(0));
    let extra = Router::new()
        .route(
            "/retry-after",
            any(move || {
                let n = first.fetch_add(1, Ordering::SeqCst);
                async move { retry_after(n) }
            }),
        )
        .route("/big/{mode}", any(big))
        .route(
            "/moved/{code}",
            any(|Path(code): Path<u16>| async move {
                (
                    StatusCode::from_u16(code).unwrap(),
                    [("location", "/echo")],
                    "see there",
                )
            }),
        );
    CountingServer::start_with(extra)
}

/// The `Idempotency-Key` of every request to `path`, in arrival order.
fn keys(server: &CountingServer, path: &str) -> Vec<Option<String>> {
    server
        .hits()
        .into_iter()
        .filter(|h| h.path == path)
        .map(|h| h.key)
        .collect()
}

fn retry_after(earlier: usize) -> Response {
    if earlier == 0 {
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
    let server = server();
    let resp = client(5)
        .fetch(&keyed(format!("{}/flaky/2/7", server.url())))
        .await
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.attempts, 3);
    // the third request got the answer that follows the two 503s
    assert_eq!(resp.data(), json!({"i": 7, "ok": true}));
    let keys = keys(&server, "/flaky/2/7");
    assert_eq!(keys, vec![Some("run-1:7".to_string()); 3]);
}

#[tokio::test]
async fn every_retryable_status_is_retried_until_attempts_are_spent() {
    let server = server();
    for code in [408u16, 425, 429, 500, 502, 503, 504] {
        let err = client(3)
            .fetch(&Request::get(format!("{}/status/{code}", server.url())))
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
        assert_eq!(server.count(&format!("/status/{code}")), 3, "status {code}");
    }
}

#[tokio::test]
async fn other_4xx_are_answers_not_retried() {
    let server = server();
    for code in [400u16, 401, 403, 404, 409, 422] {
        let resp = client(5)
            .fetch(&Request::get(format!("{}/status/{code}", server.url())))
            .await
            .unwrap();
        assert_eq!((resp.status, resp.attempts), (code, 1));
        assert!(!resp.ok());
        assert_eq!(server.count(&format!("/status/{code}")), 1);
    }
}

#[tokio::test]
async fn retry_after_is_honoured_up_to_the_cap() {
    let server = server();
    // Retry-After says an hour; the policy caps delays at 20 ms, so this returns promptly.
    let resp = client(3)
        .fetch(&Request::get(format!("{}/retry-after", server.url())))
        .await
        .unwrap();
    assert_eq!((resp.status, resp.attempts), (200, 2));
    assert_eq!(server.count("/retry-after"), 2);
}

#[tokio::test]
async fn timeouts_are_retried_then_reported() {
    let server = server();
    // answers after a second; an attempt times out after 300 ms
    let err = client(2)
        .fetch(&Request::get(format!("{}/slow/1000/0", server.url())))
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
    assert_eq!(server.count("/slow/1000/0"), 2);
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
    let server = server();
    for mode in ["sized", "streamed"] {
        let err = client(3)
            .fetch(&Request::get(format!("{}/big/{mode}", server.url())))
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
    let server = server();
    let req = Request {
        url: format!("{}/echo", server.url()),
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
    // the body arrived byte for byte (the echo shows it parsed)
    assert_eq!(server.hits()[0].body, r#"{"items":[1,2]}"#);
    assert_eq!(v["body"], json!({"items": [1, 2]}));
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

/// Adds a header to every request and lets the wrapped fetcher perform it.
#[derive(Debug)]
struct WithHeader<F>(F);

#[async_trait]
impl<F: Fetcher> Fetcher for WithHeader<F> {
    async fn fetch(&self, req: &Request) -> Result<sequential_http_wrapper::Response, FetchError> {
        let mut req = req.clone();
        req.headers.push(("x-tenant".into(), "acme".into()));
        self.0.fetch(&req).await
    }
}

#[tokio::test]
async fn a_wrapping_fetcher_adds_headers_and_keeps_the_clients_retries() {
    let server = server();
    let fetcher: Arc<dyn Fetcher> = Arc::new(WithHeader(client(5)));
    let resp = fetcher
        .fetch(&keyed(format!("{}/flaky/2/1", server.url())))
        .await
        .unwrap();
    assert_eq!(
        (resp.status, resp.attempts),
        (200, 3),
        "the client still retries"
    );
    let hits = server.hits();
    assert_eq!(hits.len(), 3);
    for h in hits {
        assert_eq!(h.headers.get("x-tenant").map(String::as_str), Some("acme"));
        assert_eq!(h.key.as_deref(), Some("run-1:7"));
    }
}

fn post_echo_via(server: &CountingServer, code: u16) -> Request {
    Request {
        url: format!("{}/moved/{code}#frag", server.url()),
        method: "POST".into(),
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("authorization".into(), "Bearer x".into()),
        ],
        body: Some(br#"{"a":1}"#.to_vec()),
        idempotency_key: Some("r:2".into()),
        retry: None,
    }
}

#[tokio::test]
async fn redirects_are_followed_as_reqwest_follows_them() {
    let server = server();
    // 301: a POST becomes a GET without its body or payload headers; same host keeps the rest
    let resp = client(1).fetch(&post_echo_via(&server, 301)).await.unwrap();
    let v = resp.data();
    assert_eq!((resp.status, v["method"].as_str()), (200, Some("GET")));
    assert_eq!(v["body"], "");
    assert_eq!(v["headers"].get("content-type"), None);
    assert_eq!(v["headers"]["authorization"], "Bearer x");
    assert_eq!(v["headers"]["idempotency-key"], "r:2");
    let referer = format!("{}/moved/301", server.url());
    assert_eq!(v["headers"]["referer"].as_str(), Some(referer.as_str()));
    // 307: method, body and headers stay
    let resp = client(1).fetch(&post_echo_via(&server, 307)).await.unwrap();
    let v = resp.data();
    assert_eq!(v["method"], "POST");
    assert_eq!(v["body"], json!({"a": 1}));
    assert_eq!(v["headers"]["content-type"], "application/json");
    // every hop was sent once
    assert_eq!(server.count("/moved/301"), 1);
    assert_eq!(server.count("/moved/307"), 1);
    assert_eq!(server.count("/echo"), 2);
    // a redirect without a location is an answer
    let resp = client(1)
        .fetch(&Request::get(format!("{}/status/302", server.url())))
        .await
        .unwrap();
    assert_eq!(resp.status, 302);
}

/// A raw HTTP/1.1 server on loopback: answers every request on a connection with `answer`,
/// closing the connection after one answer when `close_after_one`. Returns its URL and the
/// count of connections it accepted.
async fn raw_server(answer: &'static [u8], close_after_one: bool) -> (String, Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.clear();
                    if sock.write_all(answer).await.is_err() || close_after_one {
                        return;
                    }
                }
            });
        }
    });
    (url, accepted)
}

#[tokio::test]
async fn connections_are_kept_alive_and_replaced_when_the_server_closed_them() {
    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
    let (url, accepted) = raw_server(answer, false).await;
    let c = client(1);
    for _ in 0..5 {
        assert_eq!(c.fetch(&Request::get(&url)).await.unwrap().text(), "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection, reused");
    // a server that closes after each answer (without saying so): every later request finds
    // its pooled connection closed — at once, or only when the answer does not come — and goes
    // out again on a new one, within one attempt, however soon after the close it is sent
    let (url, accepted) = raw_server(answer, true).await;
    for _ in 0..3 {
        let resp = c.fetch(&Request::get(&url)).await.unwrap();
        assert_eq!((resp.text().as_str(), resp.attempts), ("ok", 1));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn chunked_and_close_delimited_bodies_are_read_whole() {
    let chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\nx-a: b\r\n\r\n\
        5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: t\r\n\r\n";
    let (url, accepted) = raw_server(chunked, false).await;
    let c = client(1);
    for _ in 0..2 {
        let resp = c.fetch(&Request::get(&url)).await.unwrap();
        assert_eq!(resp.text(), "hello, world");
        assert_eq!(resp.header("x-a"), Some("b"));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    let until_close = b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nto the end";
    let (url, accepted) = raw_server(until_close, true).await;
    for _ in 0..2 {
        assert_eq!(
            c.fetch(&Request::get(&url)).await.unwrap().text(),
            "to the end"
        );
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
    let broken = b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort";
    let (url, _) = raw_server(broken, true).await;
    let err = c.fetch(&Request::get(&url)).await.unwrap_err();
    assert!(
        matches!(
            err,
            FetchError::RetriesExhausted {
                last: Failure::Other(_),
                ..
            }
        ),
        "{err:?}"
    );
}
