//! Two processes claiming from one database file never claim the same run twice.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use sequential_adaptor::{ClaimRequest, NewRun, RunId, StorageAdapter, now_millis};
use sequential_adaptor_sqlite::SqliteStore;
use sequential_test_support::child;
use serde_json::json;

const CHILD_ENV: &str = "SQLITE_CLAIM_CHILD";
const RUNS: usize = 1_000;

async fn claim_all(store: &SqliteStore, worker: &str, mut on_claim: impl FnMut(RunId)) {
    loop {
        let req = ClaimRequest {
            worker: worker.into(),
            now: now_millis(),
            lease_ms: 600_000,
            limit: 3,
        };
        let got = store.claim(&req).await.unwrap();
        if got.is_empty() {
            break;
        }
        for c in got {
            on_claim(c.run.id);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_are_exclusive_across_processes() {
    if let Some(path) = child::role(CHILD_ENV) {
        let store = SqliteStore::open(&path).unwrap();
        let worker = format!("pid-{}", std::process::id());
        // start together: say we are ready, wait for the parent's "go"
        println!("READY");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        claim_all(&store, &worker, |id| println!("CLAIM {id}")).await;
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let store = SqliteStore::open(&path).unwrap();
    let (task, version) = crate::a_task(&store, "shared").await;
    let mut created = HashSet::new();
    for i in 0..RUNS {
        created.insert(
            store
                .create_run(NewRun::new(task.clone(), version, json!(i)))
                .await
                .unwrap()
                .run()
                .id,
        );
    }
    let mut children = Vec::new();
    for _ in 0..2 {
        let test = child::test_path(module_path!(), "claims_are_exclusive_across_processes");
        let mut child = child::relaunch(test, CHILD_ENV, path.to_str().unwrap())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        while !line.contains("READY") {
            line.clear();
            assert_ne!(
                out.read_line(&mut line).unwrap(),
                0,
                "claiming child ended before it was ready"
            );
        }
        children.push((child, out));
    }
    for (child, _) in &mut children {
        writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
    }
    // this process claims too, while the children do
    let mut claims: Vec<RunId> = Vec::new();
    claim_all(&store, "parent", |id| claims.push(id)).await;
    let mut per_process = vec![claims.len()];
    for (mut child, out) in children {
        let before = claims.len();
        for line in out.lines() {
            // libtest may print "test NAME ... " on the same line before the first claim
            let line = line.unwrap();
            if let Some(at) = line.find("CLAIM ") {
                claims.push(line[at + 6..].parse().unwrap());
            }
        }
        let status = child.wait().unwrap();
        assert!(status.success(), "claiming child failed: {status}");
        per_process.push(claims.len() - before);
    }
    let unique: HashSet<_> = claims.iter().copied().collect();
    assert_eq!(
        unique.len(),
        claims.len(),
        "a run was claimed twice; claims per process {per_process:?}"
    );
    assert_eq!(
        unique, created,
        "every run claimed exactly once; claims per process {per_process:?}"
    );
    println!("claims per process (parent, child, child): {per_process:?}");
}
