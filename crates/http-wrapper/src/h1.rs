//! The lean path for plain `http:` URLs: HTTP/1.1 on pooled keep-alive TCP connections, the
//! request written and the response read by the fetching task itself (no connection task, no
//! per-request header map, no body channel). Reqwest stays the path for everything else (see
//! [`eligible`]); a redirect answered here is followed through reqwest ([`Redirect`]).
//!
//! What it sends is what reqwest sends for the same request: the method, `path?query`, `host`
//! (with a non-default port), the client's `user-agent` and `accept: */*` unless the request
//! names its own, the request's headers, `idempotency-key`, and `content-length` for a
//! non-empty body.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::Failure;

/// Idle connections older than this are closed (reqwest's default pool idle timeout).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most idle connections kept per host and port.
const MAX_IDLE_PER_HOST: usize = 1024;
/// The most header lines a response may have (hyper's default).
const MAX_HEADERS: usize = 100;
/// The longest response head (hyper's default read buffer limit is larger; 64 KiB of headers
/// is far past anything a fetch meets).
const MAX_HEAD: usize = 64 * 1024;

/// Request headers that change the framing or the connection: such a request goes through
/// reqwest, which knows what to make of them.
const SPECIAL: [&str; 9] = [
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
    "expect",
];

/// Environment variables through which reqwest sends `http:` requests to a proxy: when one is
/// set, every request goes through reqwest.
const PROXY_VARS: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];

/// Turns the lean path off when set to `0`.
const SWITCH: &str = "SEQUENTIAL_HTTP_LEAN";

/// `false` when the process environment names a proxy for `http:` URLs, or turns the lean
/// path off.
pub(crate) fn enabled() -> bool {
    let proxy = PROXY_VARS
        .iter()
        .any(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()));
    !proxy && std::env::var_os(SWITCH).is_none_or(|v| v != "0")
}

/// Whether the lean path sends `req` exactly as reqwest would: an `http:` URL without
/// credentials and no header that changes framing or the connection.
pub(crate) fn eligible(url: &Url, headers: &[(HeaderName, HeaderValue)]) -> bool {
    url.scheme() == "http"
        && url.username().is_empty()
        && url.password().is_none()
        && url.host().is_some()
        && !headers.iter().any(|(k, _)| SPECIAL.contains(&k.as_str()))
}

/// One request on the lean path, validated.
pub(crate) struct Outgoing<'a> {
    pub(crate) method: &'a reqwest::Method,
    pub(crate) url: &'a Url,
    pub(crate) headers: &'a [(HeaderName, HeaderValue)],
    pub(crate) idempotency_key: Option<&'a str>,
    /// `None` for an empty body.
    pub(crate) body: Option<&'a [u8]>,
}

/// A complete response read on the lean path.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

/// How an exchange failed.
#[derive(Debug)]
pub(crate) enum LeanError {
    /// The body is over the cap.
    TooLarge,
    /// A transport failure, as reqwest's would be classified.
    Failed(Failure),
}

/// The pool of idle connections, by `host:port`.
pub(crate) struct Pool {
    idle: Mutex<HashMap<String, Vec<(Conn, Instant)>>>,
    connect_timeout: Duration,
    user_agent: String,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").finish_non_exhaustive()
    }
}

/// A connection and the bytes read past the last response (none, on a healthy connection).
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Pool {
    pub(crate) fn new(connect_timeout: Duration, user_agent: String) -> Self {
        Pool {
            idle: Mutex::new(HashMap::new()),
            connect_timeout,
            user_agent,
        }
    }

    /// Performs one exchange. A pooled connection that turns out closed before any byte of
    /// the response arrived is replaced by a new one and the request sent again (as a
    /// connection pool does when the server closed an idle connection).
    pub(crate) async fn send(&self, req: &Outgoing<'_>, limit: usize) -> Result<Answer, LeanError> {
        let host = req.url.host_str().unwrap_or_default();
        let port = req.url.port_or_known_default().unwrap_or(80);
        let key = format!("{host}:{port}");
        let head = self.head(req);
        if let Some(conn) = self.checkout(&key) {
            match exchange(conn, &head, req, limit).await {
                Ok((answer, conn)) => {
                    if let Some(conn) = conn {
                        self.checkin(key, conn);
                    }
                    return Ok(answer);
                }
                Err(Exchange::Stale) => {}
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        let conn = self.connect(req.url).await?;
        match exchange(conn, &head, req, limit).await {
            Ok((answer, conn)) => {
                if let Some(conn) = conn {
                    self.checkin(key, conn);
                }
                Ok(answer)
            }
            Err(Exchange::Stale) => Err(LeanError::Failed(Failure::Other(
                "connection closed before the response began".into(),
            ))),
            Err(Exchange::Failed(e)) => Err(e),
        }
    }

    /// The request line and headers.
    fn head(&self, req: &Outgoing<'_>) -> Vec<u8> {
        let url = req.url;
        let mut h = Vec::with_capacity(256);
        h.extend_from_slice(req.method.as_str().as_bytes());
        h.push(b' ');
        h.extend_from_slice(url.path().as_bytes());
        if let Some(q) = url.query() {
            h.push(b'?');
            h.extend_from_slice(q.as_bytes());
        }
        h.extend_from_slice(b" HTTP/1.1\r\nhost: ");
        h.extend_from_slice(url.host_str().unwrap_or_default().as_bytes());
        if let Some(port) = url.port() {
            h.extend_from_slice(format!(":{port}").as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        let named = |n: &str| req.headers.iter().any(|(k, _)| k.as_str() == n);
        if !named("user-agent") {
            put_header(&mut h, "user-agent", self.user_agent.as_bytes());
        }
        if !named("accept") {
            put_header(&mut h, "accept", b"*/*");
        }
        for (k, v) in req.headers {
            put_header(&mut h, k.as_str(), v.as_bytes());
        }
        if let Some(key) = req.idempotency_key {
            put_header(&mut h, "idempotency-key", key.as_bytes());
        }
        if let Some(body) = req.body {
            put_header(&mut h, "content-length", body.len().to_string().as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        h
    }

    fn checkout(&self, key: &str) -> Option<Conn> {
        let mut idle = self.idle.lock().ok()?;
        let list = idle.get_mut(key)?;
        while let Some((conn, since)) = list.pop() {
            if since.elapsed() < IDLE_TIMEOUT {
                return Some(conn);
            }
        }
        None
    }

    fn checkin(&self, key: String, conn: Conn) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = idle.entry(key).or_default();
            if list.len() < MAX_IDLE_PER_HOST {
                list.push((conn, Instant::now()));
            }
        }
    }

    async fn connect(&self, url: &Url) -> Result<Conn, LeanError> {
        let port = url.port_or_known_default().unwrap_or(80);
        // an IP address is used as is; a name is resolved (getaddrinfo on the blocking pool,
        // as reqwest's default resolver does)
        let host = url.host_str().unwrap_or_default();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        let connect = TcpStream::connect((host, port));
        let stream = match tokio::time::timeout(self.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(LeanError::Failed(Failure::Connect(format!(
                    "tcp connect error: {e}"
                ))));
            }
            // reqwest reports a connect timeout as a timeout
            Err(_) => return Err(LeanError::Failed(Failure::Timeout(Duration::ZERO))),
        };
        let _ = stream.set_nodelay(true);
        Ok(Conn {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }
}

fn put_header(h: &mut Vec<u8>, name: &str, value: &[u8]) {
    h.extend_from_slice(name.as_bytes());
    h.extend_from_slice(b": ");
    h.extend_from_slice(value);
    h.extend_from_slice(b"\r\n");
}

enum Exchange {
    /// The connection was closed before any byte of the response: try a new one.
    Stale,
    Failed(LeanError),
}

fn other(what: &str, e: impl std::fmt::Display) -> Exchange {
    Exchange::Failed(LeanError::Failed(Failure::Other(format!("{what}: {e}"))))
}

fn broken(what: &str) -> Exchange {
    Exchange::Failed(LeanError::Failed(Failure::Other(what.to_string())))
}

/// Reads more bytes into `conn.buf`; `Ok(false)` at end of stream.
async fn fill(conn: &mut Conn) -> std::io::Result<bool> {
    if conn.buf.capacity() - conn.buf.len() < 1024 {
        conn.buf.reserve(8192);
    }
    Ok(conn.stream.read_buf(&mut conn.buf).await? > 0)
}

/// Sends the request on `conn` and reads the whole response; the connection comes back when
/// it can carry another request.
async fn exchange(
    mut conn: Conn,
    head: &[u8],
    req: &Outgoing<'_>,
    limit: usize,
) -> Result<(Answer, Option<Conn>), Exchange> {
    if !conn.buf.is_empty() {
        // bytes nobody asked for: the connection is not in a known state
        return Err(Exchange::Stale);
    }
    let written = match req.body {
        Some(body) if head.len() + body.len() <= 64 * 1024 => {
            let mut all = Vec::with_capacity(head.len() + body.len());
            all.extend_from_slice(head);
            all.extend_from_slice(body);
            conn.stream.write_all(&all).await
        }
        Some(body) => match conn.stream.write_all(head).await {
            Ok(()) => conn.stream.write_all(body).await,
            Err(e) => Err(e),
        },
        None => conn.stream.write_all(head).await,
    };
    if written.is_err() {
        return Err(Exchange::Stale);
    }
    // the head, skipping informational (1xx) responses
    let (status, headers, keep_alive, framing) = loop {
        let (parsed, used) = loop {
            match parse_head(&conn.buf) {
                Ok(Some(p)) => break p,
                Ok(None) => {}
                Err(e) => return Err(broken(&e)),
            }
            if conn.buf.len() > MAX_HEAD {
                return Err(broken("response head too large"));
            }
            let was_empty = conn.buf.is_empty();
            match fill(&mut conn).await {
                Ok(true) => {}
                Ok(false) | Err(_) if was_empty => return Err(Exchange::Stale),
                Ok(false) => return Err(broken("connection closed inside the response head")),
                Err(e) => return Err(other("reading the response", e)),
            }
        };
        conn.buf.drain(..used);
        if (100..200).contains(&parsed.status) && parsed.status != 101 {
            continue;
        }
        if parsed.status == 101 {
            return Err(broken("unexpected 101 Switching Protocols"));
        }
        let framing = framing_of(req.method, &parsed).map_err(|e| broken(&e))?;
        break (parsed.status, parsed.headers, parsed.keep_alive, framing);
    };
    let too_large = || Exchange::Failed(LeanError::TooLarge);
    let mut reusable = keep_alive;
    let body = match framing {
        Framing::Empty => Vec::new(),
        Framing::Length(n) => {
            if n > limit {
                return Err(too_large());
            }
            while conn.buf.len() < n {
                match fill(&mut conn).await {
                    Ok(true) => {}
                    Ok(false) => return Err(broken("connection closed inside the response body")),
                    Err(e) => return Err(other("reading the response body", e)),
                }
            }
            // copied out, so that the connection keeps its read buffer for the next response
            let body = conn.buf[..n].to_vec();
            conn.buf.drain(..n);
            body
        }
        Framing::Chunked => read_chunked(&mut conn, limit).await?,
        Framing::UntilClose => {
            reusable = false;
            loop {
                if conn.buf.len() > limit {
                    return Err(too_large());
                }
                match fill(&mut conn).await {
                    Ok(true) => {}
                    Ok(false) => break,
                    Err(e) => return Err(other("reading the response body", e)),
                }
            }
            std::mem::take(&mut conn.buf)
        }
    };
    let conn = (reusable && conn.buf.is_empty()).then_some(conn);
    Ok((
        Answer {
            status,
            headers,
            body,
        },
        conn,
    ))
}

/// Decodes a chunked body from `conn` (trailers are read and dropped, as reqwest does).
async fn read_chunked(conn: &mut Conn, limit: usize) -> Result<Vec<u8>, Exchange> {
    let mut body = Vec::new();
    let mut at = 0; // parse position in conn.buf
    loop {
        // a size line
        let line_end = loop {
            if let Some(i) = find_crlf(&conn.buf[at..]) {
                break at + i;
            }
            if conn.buf.len() - at > 4096 {
                return Err(broken("chunk size line too long"));
            }
            more(conn).await?;
        };
        let line = &conn.buf[at..line_end];
        let digits = line.split(|b| *b == b';').next().unwrap_or_default();
        let size = std::str::from_utf8(digits)
            .ok()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .and_then(|s| usize::from_str_radix(s, 16).ok())
            .ok_or_else(|| broken("invalid chunk size"))?;
        at = line_end + 2;
        if size == 0 {
            // trailers, up to an empty line
            loop {
                let end = loop {
                    if let Some(i) = find_crlf(&conn.buf[at..]) {
                        break at + i;
                    }
                    if conn.buf.len() - at > MAX_HEAD {
                        return Err(broken("chunked trailers too large"));
                    }
                    more(conn).await?;
                };
                let empty = end == at;
                at = end + 2;
                if empty {
                    conn.buf.drain(..at);
                    return Ok(body);
                }
            }
        }
        if body.len() + size > limit {
            return Err(Exchange::Failed(LeanError::TooLarge));
        }
        while conn.buf.len() < at + size + 2 {
            more(conn).await?;
        }
        body.extend_from_slice(&conn.buf[at..at + size]);
        if &conn.buf[at + size..at + size + 2] != b"\r\n" {
            return Err(broken("chunk not followed by CRLF"));
        }
        at += size + 2;
        // keep the buffer small: drop what was decoded
        conn.buf.drain(..at);
        at = 0;
    }
}

async fn more(conn: &mut Conn) -> Result<(), Exchange> {
    match fill(conn).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(broken("connection closed inside a chunked body")),
        Err(e) => Err(other("reading a chunked body", e)),
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
    keep_alive: bool,
    content_length: Option<Result<usize, ()>>,
    chunked: bool,
    transfer_encoding: bool,
}

enum Framing {
    Empty,
    Length(usize),
    Chunked,
    UntilClose,
}

/// The response head at the start of `buf` and its length; `None` when incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut slots);
    let used = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(format!("invalid HTTP response: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let http11 = resp.version == Some(1);
    let mut head = Head {
        status,
        headers: Vec::with_capacity(resp.headers.len()),
        keep_alive: http11,
        content_length: None,
        chunked: false,
        transfer_encoding: false,
    };
    for h in resp.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        let value = String::from_utf8_lossy(h.value).into_owned();
        match name.as_str() {
            "connection" => {
                for token in value.split(',').map(str::trim) {
                    if token.eq_ignore_ascii_case("close") {
                        head.keep_alive = false;
                    } else if token.eq_ignore_ascii_case("keep-alive") && !http11 {
                        head.keep_alive = true;
                    }
                }
            }
            "content-length" => {
                let n = value.trim().parse::<usize>().map_err(|_| ());
                head.content_length = match (head.content_length, n) {
                    (None, n) => Some(n),
                    (Some(Ok(a)), Ok(b)) if a == b => Some(Ok(a)),
                    _ => Some(Err(())),
                };
            }
            "transfer-encoding" => {
                head.transfer_encoding = true;
                head.chunked = value
                    .rsplit(',')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
            }
            _ => {}
        }
        head.headers.push((name, value));
    }
    Ok(Some((head, used)))
}

fn framing_of(method: &reqwest::Method, head: &Head) -> Result<Framing, String> {
    if *method == reqwest::Method::HEAD || head.status == 204 || head.status == 304 {
        return Ok(Framing::Empty);
    }
    if head.transfer_encoding {
        return Ok(if head.chunked {
            Framing::Chunked
        } else {
            Framing::UntilClose
        });
    }
    match head.content_length {
        Some(Ok(0)) => Ok(Framing::Empty),
        Some(Ok(n)) => Ok(Framing::Length(n)),
        Some(Err(())) => Err("invalid content-length in the response".into()),
        None => Ok(Framing::UntilClose),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_with_their_framing() {
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n\r\nhello";
        let (head, used) = parse_head(raw).unwrap().unwrap();
        assert_eq!(
            (head.status, used, head.keep_alive),
            (200, raw.len() - 5, true)
        );
        assert_eq!(head.headers[1], ("x-a".to_string(), "b".to_string()));
        assert!(matches!(
            framing_of(&reqwest::Method::GET, &head),
            Ok(Framing::Length(5))
        ));
        assert!(matches!(
            framing_of(&reqwest::Method::HEAD, &head),
            Ok(Framing::Empty)
        ));
        let raw = b"HTTP/1.0 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n";
        let (head, _) = parse_head(raw).unwrap().unwrap();
        assert!(!head.keep_alive);
        assert!(matches!(
            framing_of(&reqwest::Method::GET, &head),
            Ok(Framing::Chunked)
        ));
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n";
        let (head, _) = parse_head(raw).unwrap().unwrap();
        assert!(framing_of(&reqwest::Method::GET, &head).is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\nX-A").unwrap().is_none());
        assert!(parse_head(b"NOT HTTP\r\n\r\n").is_err());
    }
}
