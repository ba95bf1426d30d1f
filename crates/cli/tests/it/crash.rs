//! `kill -9` of a `run` in the middle of a fetch: `resume` in a new process takes the run over
//! at once and finishes it; the fetch in flight is repeated once, with the same Idempotency-Key.

use std::time::{Duration, Instant};

use sequential_test_support::http::CountingServer;

use crate::runs::task;

#[test]
fn resume_after_kill_9_mid_fetch_finishes_the_run_with_the_same_idempotency_key() {
    // the first request to /hang-once/7 is never answered (the process is killed meanwhile);
    // the second, from `resume`, is
    let server = CountingServer::start();
    let addr = server.url().trim_start_matches("http://").to_string();
    let code = format!(
        "const before = fetch('data:application/json,{{\"n\":1}}');\nconst step = fetch('http://{addr}/hang-once/7');\n({{ n: before.n, step: step.i }})"
    );
    let sb = task("crashy", &code, None);
    let mut child = sb.cmd(&["run", "crashy"]).spawn();
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.count("/hang-once/7") == 0 {
        assert!(Instant::now() < deadline, "the run never made its fetch");
        std::thread::sleep(Duration::from_millis(10));
    }
    let first_key = server.hits()[0]
        .key
        .clone()
        .expect("an Idempotency-Key header");
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let h = sb.run(&["history", "crashy", "--json"]).ok().json();
    assert_eq!(h["runs"][0]["status"], "running", "{h}");
    let id = h["runs"][0]["run"].as_str().unwrap().to_string();
    assert!(first_key.starts_with(&format!("{id}:")), "{first_key}");
    let doc = sb.run(&["resume", &id, "--json", "--verbose"]).ok().json();
    assert_eq!(doc["output"], serde_json::json!({"n": 1, "step": 7}));
    assert_eq!(
        server.count("/hang-once/7"),
        2,
        "the call in flight is repeated once"
    );
    let second_key = server.hits()[1]
        .key
        .clone()
        .expect("an Idempotency-Key header");
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
