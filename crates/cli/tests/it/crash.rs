//! `kill -9` of a `run` in the middle of a fetch: `resume` in a new process takes the run over
//! at once and finishes it; the fetch in flight is repeated once, with the same Idempotency-Key.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;

use crate::runs::task;

/// Reads one HTTP request head; returns its Idempotency-Key header.
fn read_head(conn: &TcpStream) -> Option<String> {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut key = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return key;
        }
        let line = line.trim_end();
        if line.is_empty() {
            return key;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("idempotency-key")
        {
            key = Some(value.trim().to_string());
        }
    }
}

#[test]
fn resume_after_kill_9_mid_fetch_finishes_the_run_with_the_same_idempotency_key() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    // First request: hold it unanswered (the process is killed meanwhile). Second: answer it.
    let server = std::thread::spawn(move || {
        let (first, _) = listener.accept().unwrap();
        tx.send(read_head(&first)).unwrap();
        let (mut second, _) = listener.accept().unwrap();
        let key = read_head(&second);
        let body = r#"{"id":7,"name":"Alice"}"#;
        write!(
            second,
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        drop(first);
        key
    });
    let code = format!(
        "const before = fetch('data:application/json,{{\"n\":1}}');\nconst user = fetch('http://{addr}/users/7');\n({{ n: before.n, user: user.name }})"
    );
    let sb = task("crashy", &code, None);
    let mut child = sb.cmd(&["run", "crashy"]).spawn();
    let first_key = rx.recv().unwrap().expect("an Idempotency-Key header");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let h = sb.run(&["history", "crashy", "--json"]).ok().json();
    assert_eq!(h["runs"][0]["status"], "running", "{h}");
    let id = h["runs"][0]["run"].as_str().unwrap().to_string();
    assert!(first_key.starts_with(&format!("{id}:")), "{first_key}");
    let doc = sb.run(&["resume", &id, "--json", "--verbose"]).ok().json();
    assert_eq!(doc["output"], serde_json::json!({"n": 1, "user": "Alice"}));
    let second_key = server.join().unwrap().expect("an Idempotency-Key header");
    assert_eq!(first_key, second_key, "the repeated call keeps its key");
    let kinds: Vec<&str> = doc["journal"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds.iter().filter(|k| **k == "run.started").count(),
        1,
        "{kinds:?}"
    );
    assert_eq!(
        kinds.iter().filter(|k| **k == "call.completed").count(),
        2,
        "{kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"run.succeeded"));
}
