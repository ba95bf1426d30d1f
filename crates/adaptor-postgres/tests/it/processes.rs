//! Two processes start a run with the same idempotency key at the same instant, 100 times:
//! exactly one run each time. The children are this test binary, re-launched.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use sequential_adaptor::{
    Created, NewRun, NewTaskVersion, Page, RunFilter, StorageAdapter, TaskName,
};
use sequential_adaptor_postgres::PostgresStore;
use sequential_test_support::child;
use serde_json::json;

use crate::support;

const CHILD_ENV: &str = "POSTGRES_KEY_RACE_CHILD";
const ROUNDS: usize = 100;

/// The child: for each `go N` line, starts run `key-N` and prints `RUN N <id> created|existing`.
async fn starter(url: &str) {
    let store = PostgresStore::open(url).await.unwrap();
    let task = TaskName::new("race").unwrap();
    println!("READY");
    for line in std::io::stdin().lines() {
        let line = line.unwrap();
        let Some(n) = line.strip_prefix("go ") else {
            break;
        };
        let mut new = NewRun::new(task.clone(), 1, json!({"round": n}));
        new.idempotency_key = Some(format!("key-{n}"));
        let (id, how) = match store.create_run(new).await.unwrap() {
            Created::Created(r) => (r.id, "created"),
            Created::Existing(r) => (r.id, "existing"),
        };
        println!("RUN {n} {id} {how}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_starting_with_one_key_make_one_run() {
    if let Some(url) = child::role(CHILD_ENV) {
        return starter(&url).await;
    }
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let store = PostgresStore::open(&url).await.unwrap();
    store
        .put_task_version(NewTaskVersion {
            task: TaskName::new("race").unwrap(),
            code: "1".into(),
            graph: None,
            config: json!({}),
        })
        .await
        .unwrap();
    let test = child::test_path(
        module_path!(),
        "two_processes_starting_with_one_key_make_one_run",
    );
    let mut children = Vec::new();
    for _ in 0..2 {
        let mut c = child::relaunch(&test, CHILD_ENV, &url)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(c.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("READY") {
            line.clear();
            assert_ne!(
                out.read_line(&mut line).unwrap(),
                0,
                "a child ended before it was ready"
            );
        }
        let stdin = c.stdin.take();
        children.push((c, stdin, out));
    }
    // round n: both children get `go n` back to back, then both answers are read
    let mut answers: HashMap<usize, Vec<(String, String)>> = HashMap::new();
    for n in 0..ROUNDS {
        for (_, stdin, _) in &mut children {
            writeln!(stdin.as_mut().unwrap(), "go {n}").unwrap();
        }
        for (_, _, out) in &mut children {
            let mut line = String::new();
            loop {
                line.clear();
                assert_ne!(out.read_line(&mut line).unwrap(), 0, "a child ended early");
                // libtest may print "test NAME ... " before the first line
                if let Some(at) = line.find("RUN ") {
                    let parts: Vec<&str> = line[at..].split_whitespace().collect();
                    assert_eq!(parts[1], n.to_string(), "{line}");
                    answers
                        .entry(n)
                        .or_default()
                        .push((parts[2].to_string(), parts[3].to_string()));
                    break;
                }
            }
        }
    }
    for (c, stdin, _) in &mut children {
        drop(stdin.take()); // end of input: the child ends
        let status = c.wait().unwrap();
        assert!(status.success(), "a child failed: {status}");
    }
    for n in 0..ROUNDS {
        let a = &answers[&n];
        assert_eq!(a[0].0, a[1].0, "round {n}: two different runs {a:?}");
        let created = a.iter().filter(|(_, how)| how == "created").count();
        assert_eq!(created, 1, "round {n}: exactly one process creates: {a:?}");
    }
    let all = store
        .list_runs(&RunFilter::default(), Page::first(10 * ROUNDS))
        .await
        .unwrap();
    assert_eq!(all.runs.len(), ROUNDS, "one run per key");
}
