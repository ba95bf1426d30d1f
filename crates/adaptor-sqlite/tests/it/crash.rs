//! The crash test: a child process appends to several runs concurrently and is killed with
//! SIGKILL after a random number of acknowledged appends, 50 times; every acknowledged record
//! must survive, seqs must stay dense, and the journal must accept the next seq.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sequential_adaptor::{
    Fence, JournalRecord, NewRun, NewTaskVersion, Page, RunFilter, RunId, StorageAdapter, TaskName,
};
use sequential_adaptor_sqlite::SqliteStore;
use serde_json::json;

/// Set in the child: the database path to append to.
const CHILD_ENV: &str = "SQLITE_CRASH_CHILD";
/// Set to reproduce a failed run with its printed seed.
const SEED_ENV: &str = "SQLITE_CRASH_SEED";
const TEST_NAME: &str = "crash::acknowledged_appends_survive_sigkill";
const RUNS: usize = 8;
const KILLS: usize = 50;

/// The record the child writes at `seq` of run number `idx`, so the parent can check content.
fn record(run: RunId, idx: usize, seq: u64) -> JournalRecord {
    JournalRecord {
        run,
        seq,
        kind: "log".into(),
        at: seq as i64,
        data: json!({"run": idx, "seq": seq, "pad": "x".repeat((seq as usize * 37) % 700)}),
    }
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

async fn run_ids(store: &dyn StorageAdapter) -> Vec<RunId> {
    let page = store
        .list_runs(&RunFilter::default(), Page::first(100))
        .await
        .unwrap();
    page.runs.iter().map(|r| r.id).collect()
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        runtime().block_on(child(&path));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("crash.db");
    let rt = runtime();
    let ids = rt.block_on(async {
        let store = SqliteStore::open(&path).unwrap();
        let task = TaskName::new("crash").unwrap();
        let v = NewTaskVersion {
            task: task.clone(),
            code: "1".into(),
            graph: None,
            config: json!({}),
        };
        let version = store.put_task_version(v).await.unwrap().version.version;
        for i in 0..RUNS {
            store
                .create_run(NewRun::new(task.clone(), version, json!(i)))
                .await
                .unwrap();
        }
        run_ids(&store).await
    });
    assert_eq!(ids.len(), RUNS);
    let seed = std::env::var(SEED_ENV)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    println!("crash test seed {seed} (rerun with {SEED_ENV}={seed})");
    let mut rng = XorShift(seed);
    // per run: how many records are known to be acknowledged (seqs 0..n)
    let mut acked: HashMap<usize, u64> = HashMap::new();
    let started = Instant::now();
    let mut total_acks = 0u64;
    for kill in 0..KILLS {
        // one kill in eight comes before any acknowledgement (while opening or mid-append)
        let kill_after = if rng.next().is_multiple_of(8) {
            0
        } else {
            1 + rng.next() % 160
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        if kill_after == 0 {
            child.kill().unwrap();
        }
        let mut seen = 0u64;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let Some(ack) = line.strip_prefix("ACK ") else {
                continue;
            };
            let (idx, seq) = ack.split_once(' ').unwrap();
            let (idx, seq): (usize, u64) = (idx.parse().unwrap(), seq.parse().unwrap());
            let n = acked.entry(idx).or_default();
            *n = (*n).max(seq + 1);
            seen += 1;
            if seen == kill_after {
                child.kill().unwrap();
            }
        }
        let status = child.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "kill {kill}: the child must die by SIGKILL, not exit on its own ({status}, {seen} acks of {kill_after})"
        );
        total_acks += seen;
        rt.block_on(async {
            let store = SqliteStore::open(&path).unwrap();
            for (idx, &run) in ids.iter().enumerate() {
                let journal = store.read_journal(run, None, usize::MAX).await.unwrap();
                let want = acked.get(&idx).copied().unwrap_or(0);
                assert!(
                    journal.len() as u64 >= want,
                    "kill {kill} (seed {seed}): run {idx} has {} records, {want} were acknowledged",
                    journal.len()
                );
                for (i, r) in journal.iter().enumerate() {
                    assert_eq!(
                        r,
                        &record(run, idx, i as u64),
                        "kill {kill} (seed {seed}): run {idx} seq {i}"
                    );
                }
                let next = journal.len() as u64;
                store
                    .append(run, &[record(run, idx, next)], Fence::None)
                    .await
                    .unwrap();
                acked.insert(idx, next + 1);
            }
        });
    }
    println!(
        "crash test: {KILLS} SIGKILLs survived, {total_acks} acknowledged appends checked, {:?}",
        started.elapsed()
    );
}

/// The child: one appender per run, all concurrent, printing each acknowledged seq.
async fn child(path: &str) {
    let store = Arc::new(SqliteStore::open(path).unwrap());
    let ids = run_ids(&*store).await;
    let deadline = Instant::now() + std::time::Duration::from_secs(60);
    let mut tasks = Vec::new();
    for (idx, run) in ids.into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = store
                .read_journal(run, None, usize::MAX)
                .await
                .unwrap()
                .len() as u64;
            // the parent kills us long before this; the deadline only stops an orphan
            while Instant::now() < deadline {
                let n = 1 + next % 3;
                let batch: Vec<_> = (next..next + n).map(|s| record(run, idx, s)).collect();
                store.append(run, &batch, Fence::None).await.unwrap();
                for s in next..next + n {
                    println!("ACK {idx} {s}");
                }
                next += n;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
