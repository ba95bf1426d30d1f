//! The SIGKILL crash case, for backends whose storage outlives the process.
//!
//! The test re-launches its own binary as a child that appends to several runs at once,
//! printing `ACK <run> <seq>` after each append returns; the parent kills it with SIGKILL after
//! a random number of acknowledgements (sometimes before the first), many times over. After
//! every kill: every acknowledged record is present and unchanged, seqs are dense, the journal
//! ends on a batch boundary (a multi-record append is all-or-nothing), and the next append
//! works. The seed is printed; `CONFORMANCE_CRASH_SEED=N` replays a failure.

use std::any::Any;
use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sequential_test_support::{child, seed::Seeded};
use serde_json::json;

use super::BoxFuture;
use crate::{
    Fence, JournalRecord, NewRun, NewTaskVersion, RunId, StorageAdapter, TaskName, VersionSel,
};

/// Set in the child: the location of the storage to append to.
const CHILD_ENV: &str = "CONFORMANCE_CRASH_CHILD";
/// Set to replay a failed run with its printed seed.
const SEED_ENV: &str = "CONFORMANCE_CRASH_SEED";
/// How many runs the child appends to concurrently.
const RUNS: usize = 8;

/// Fresh storage's location and the guard that removes it when dropped.
pub type Location = (String, Box<dyn Any + Send>);

/// How a durable backend is created and opened again, in this process or another.
pub struct Durable {
    /// Creates fresh, empty storage: its location (a path, a URL) as the child will get it, and
    /// a guard that removes it when dropped. `None` skips the case (a server that is absent).
    pub create: fn() -> BoxFuture<Option<Location>>,
    /// Opens the storage at a location `create` returned.
    pub open: fn(String) -> BoxFuture<Arc<dyn StorageAdapter>>,
    /// How many times the child is killed (50 is the suite's standard).
    pub kills: usize,
    /// A backend's own check of its storage at `location` after each kill's recovery and
    /// append (say, that every journal file ends with a whole line), or `None`.
    pub check: Option<fn(&str)>,
}

impl std::fmt::Debug for Durable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Durable")
            .field("kills", &self.kills)
            .finish()
    }
}

/// The libtest path of a test stamped into module `module` (see `child::test_path`).
pub fn test_path(module: &str, name: &str) -> String {
    child::test_path(module, name)
}

/// The record the child writes at `seq` of run number `idx`, so the parent can check content:
/// every seventh is 70 KB (it spans many pages, so a kill can tear it), the rest small.
fn record(run: RunId, idx: usize, seq: u64) -> JournalRecord {
    let pad = if seq % 7 == 3 {
        70_000
    } else {
        (seq as usize * 37) % 700
    };
    JournalRecord {
        run,
        seq,
        kind: "log".into(),
        at: seq as i64,
        data: json!({"run": idx, "seq": seq, "pad": "x".repeat(pad)}),
    }
}

/// How many records the child appends in one call when the journal holds `len`: 1 to 3, a
/// function of the length alone, so the parent knows every batch boundary.
fn batch_len(len: u64) -> u64 {
    1 + len % 3
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The runs of the crash task, in creation order (the child finds them the same way).
async fn run_ids(store: &dyn StorageAdapter) -> Vec<RunId> {
    let task = TaskName::new("crash").unwrap();
    let mut ids = Vec::new();
    for i in 0..RUNS {
        let mut new = NewRun::new(task.clone(), 1, json!(i));
        new.idempotency_key = Some(format!("crash-{i}"));
        ids.push(store.create_run(new).await.unwrap().into_run().id);
    }
    ids
}

/// The case: run in the parent, it kills a child `durable.kills` times; run in the child
/// (`CONFORMANCE_CRASH_CHILD` set), it appends until killed.
pub fn acknowledged_appends_survive_sigkill(test: &str, durable: Durable) {
    let rt = runtime();
    if let Some(location) = child::role(CHILD_ENV) {
        rt.block_on(appender((durable.open)(location)));
        return;
    }
    let Some((location, _guard)) = rt.block_on((durable.create)()) else {
        return;
    };
    let ids = rt.block_on(async {
        let store = (durable.open)(location.clone()).await;
        let task = TaskName::new("crash").unwrap();
        let v = NewTaskVersion {
            task: task.clone(),
            code: "1".into(),
            graph: None,
            config: json!({}),
        };
        store.put_task_version(v).await.unwrap();
        assert_eq!(
            store
                .get_task_version(&task, VersionSel::Latest)
                .await
                .unwrap()
                .version,
            1
        );
        run_ids(&*store).await
    });
    let mut rng = Seeded::from_env(SEED_ENV);
    let seed = rng.seed();
    // per run: the journal length known before the child starts (all acknowledged)
    let mut known: HashMap<usize, u64> = HashMap::new();
    let started = Instant::now();
    let mut total_acks = 0u64;
    for kill in 0..durable.kills {
        // one kill in eight comes before any acknowledgement (while opening or mid-append)
        let kill_after = if rng.one_in(8) { 0 } else { rng.range(1..161) };
        let mut proc = child::relaunch(test, CHILD_ENV, &location)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("re-launching the test binary");
        let stdout = proc.stdout.take().unwrap();
        if kill_after == 0 {
            proc.kill().unwrap();
        }
        let mut acked: HashMap<usize, u64> = known.clone();
        let mut seen = 0u64;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(ack) = line.strip_prefix("ACK ") else {
                continue;
            };
            let (idx, seq) = ack.split_once(' ').unwrap();
            let (idx, seq): (usize, u64) = (idx.parse().unwrap(), seq.parse().unwrap());
            let n = acked.entry(idx).or_default();
            *n = (*n).max(seq + 1);
            seen += 1;
            if seen == kill_after {
                proc.kill().unwrap();
            }
        }
        let status = proc.wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(9),
            "kill {kill} (seed {seed}): the child must die by SIGKILL, not end on its own ({status}, {seen} acks of {kill_after})"
        );
        total_acks += seen;
        rt.block_on(async {
            let store = (durable.open)(location.clone()).await;
            for (idx, &run) in ids.iter().enumerate() {
                let journal = store.read_journal(run, None, usize::MAX).await.unwrap();
                let len = journal.len() as u64;
                let want = acked.get(&idx).copied().unwrap_or(0);
                assert!(
                    len >= want,
                    "kill {kill} (seed {seed}): run {idx} has {len} records, {want} were acknowledged"
                );
                for (i, r) in journal.iter().enumerate() {
                    assert_eq!(
                        r,
                        &record(run, idx, i as u64),
                        "kill {kill} (seed {seed}): run {idx} seq {i}"
                    );
                }
                let mut boundary = known.get(&idx).copied().unwrap_or(0);
                while boundary < len {
                    boundary += batch_len(boundary);
                }
                assert_eq!(
                    boundary, len,
                    "kill {kill} (seed {seed}): run {idx} ends inside a batch: part of a multi-record append survived"
                );
                store
                    .append(run, &[record(run, idx, len)], Fence::None)
                    .await
                    .unwrap();
                known.insert(idx, len + 1);
            }
        });
        if let Some(check) = durable.check {
            check(&location);
        }
    }
    println!(
        "crash case: {} SIGKILLs survived, {total_acks} acknowledged appends checked, {:?}",
        durable.kills,
        started.elapsed()
    );
}

/// The child: one appender per run, all concurrent, printing each acknowledged seq.
async fn appender(store: BoxFuture<Arc<dyn StorageAdapter>>) {
    let store = store.await;
    let ids = run_ids(&*store).await;
    // the parent kills us long before this; the deadline only ends an orphan
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut tasks = Vec::new();
    for (idx, run) in ids.into_iter().enumerate() {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = store
                .read_journal(run, None, usize::MAX)
                .await
                .unwrap()
                .len() as u64;
            while Instant::now() < deadline {
                let n = batch_len(next);
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
