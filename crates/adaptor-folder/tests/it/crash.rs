//! Crash tests with real processes: a child appends to runs until it is killed with SIGKILL.
//!
//! The test binary re-invokes itself (`--exact crash::appender_child`) with `FOLDER_CRASH_CHILD`
//! set; the child prints `ack <run> <seq>` after each `append` returns. The parent kills it at a
//! random ack count, 50 times, and after each kill checks that every acknowledged record is
//! there, the journal is dense and exactly what was written, and appending still works.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use sequential_adaptor::{Fence, Page, RunFilter, RunId, StorageAdapter};
use sequential_adaptor_folder::FolderStore;

use crate::{assert_clean_ndjson, record, runs};

const CHILD_ENV: &str = "FOLDER_CRASH_CHILD";
const CHILD_TEST: &str = "crash::appender_child";
const KILLS: usize = 50;

type Ack = Arc<dyn Fn(RunId, u64) + Send + Sync>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Appends `rounds` batches of 1–3 records to every run in the store, concurrently per run,
/// calling `ack(run, seq)` for each record once its `append` has returned.
async fn append_loop(store: FolderStore, rounds: u64, ack: Ack) {
    let all = store
        .list_runs(&RunFilter::default(), Page::first(100))
        .await
        .unwrap()
        .runs;
    let mut tasks = Vec::new();
    for run in all {
        let (s, ack) = (store.clone(), ack.clone());
        tasks.push(tokio::spawn(async move {
            let id = run.id;
            let mut next = s.journal_len(id).await.unwrap();
            for i in 0..rounds {
                let batch = 1 + (next + i) % 3;
                let recs: Vec<_> = (next..next + batch).map(|q| record(id, q)).collect();
                s.append(id, &recs, Fence::None).await.unwrap();
                for q in next..next + batch {
                    ack(id, q);
                }
                next += batch;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The child of the crash test when `FOLDER_CRASH_CHILD` is set (appends until killed);
/// otherwise the same loop in-process, checked after a reopen.
#[test]
fn appender_child() {
    let rt = runtime();
    if let Some(root) = std::env::var_os(CHILD_ENV) {
        let store = FolderStore::open(&root).unwrap();
        let ack: Ack = Arc::new(|run, seq| println!("ack {run} {seq}"));
        rt.block_on(append_loop(store, 1_000_000, ack));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let store = FolderStore::open(&root).unwrap();
    let ids = rt.block_on(runs(&store, "crash", 3));
    let acks = Arc::new(Mutex::new(Vec::new()));
    let sink = acks.clone();
    let ack: Ack = Arc::new(move |run, seq| sink.lock().unwrap().push((run, seq)));
    rt.block_on(append_loop(store, 10, ack));
    let reopened = FolderStore::open(&root).unwrap();
    let acks = acks.lock().unwrap().clone();
    for id in ids {
        let mine: Vec<u64> = acks.iter().filter(|a| a.0 == id).map(|a| a.1).collect();
        assert_eq!(
            mine,
            (0..mine.len() as u64).collect::<Vec<_>>(),
            "acks in order"
        );
        let journal = rt
            .block_on(reopened.read_journal(id, None, usize::MAX))
            .unwrap();
        assert_eq!(
            journal,
            (0..mine.len() as u64)
                .map(|q| record(id, q))
                .collect::<Vec<_>>()
        );
        assert!(journal.len() >= 10);
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

/// Reads complete `ack <run> <seq>` lines (a line cut by the kill is not an ack).
fn read_ack(out: &mut impl BufRead) -> Option<Option<(RunId, u64)>> {
    let mut line = Vec::new();
    if out.read_until(b'\n', &mut line).ok()? == 0 || !line.ends_with(b"\n") {
        return None;
    }
    let text = String::from_utf8_lossy(&line);
    let Some(rest) = text.trim_end().strip_prefix("ack ") else {
        return Some(None);
    };
    let (run, seq) = rest.split_once(' ').expect("ack line");
    Some(Some((run.parse().unwrap(), seq.parse().unwrap())))
}

fn journal_file(root: &Path, id: RunId) -> std::path::PathBuf {
    root.join("crash/runs").join(format!("{id}.journal.ndjson"))
}

#[test]
fn sigkill_fifty_times_loses_no_acknowledged_record() {
    let started = Instant::now();
    let seed = std::env::var("FOLDER_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                ^ u64::from(std::process::id())
        })
        | 1;
    println!("crash test seed {seed} (rerun with FOLDER_CRASH_SEED={seed})");
    let mut rng = XorShift(seed);
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let ids = rt.block_on(runs(&FolderStore::open(&root).unwrap(), "crash", 3));
    let exe = std::env::current_exe().unwrap();
    let mut acked: HashMap<RunId, u64> = HashMap::new();
    let (mut child_acks, mut torn_tails) = (0u64, 0u32);
    for round in 0..KILLS {
        let kill_after = rng.next() % 120;
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &root)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let note = |ack: (RunId, u64), acked: &mut HashMap<RunId, u64>| {
            let n = acked.entry(ack.0).or_default();
            *n = (*n).max(ack.1 + 1);
        };
        let mut seen = 0;
        while seen < kill_after {
            match read_ack(&mut out) {
                Some(Some(ack)) => {
                    note(ack, &mut acked);
                    seen += 1;
                }
                Some(None) => {}
                None => {
                    let status = child.wait().unwrap();
                    let mut err = String::new();
                    child
                        .stderr
                        .take()
                        .unwrap()
                        .read_to_string(&mut err)
                        .unwrap();
                    panic!("round {round}: the child ended before the kill ({status}):\n{err}");
                }
            }
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "round {round}: the child was killed: {status}"
        );
        // acks printed before the kill that the parent had not read yet count too
        while let Some(line) = read_ack(&mut out) {
            if let Some(ack) = line {
                note(ack, &mut acked);
                seen += 1;
            }
        }
        child_acks += seen;
        for &id in &ids {
            let bytes = std::fs::read(journal_file(&root, id)).unwrap();
            if !bytes.is_empty() && !bytes.ends_with(b"\n") {
                torn_tails += 1;
            }
        }
        let store = FolderStore::open(&root).unwrap();
        rt.block_on(async {
            for &id in &ids {
                let journal = store.read_journal(id, None, usize::MAX).await.unwrap();
                for (i, r) in journal.iter().enumerate() {
                    assert_eq!(r, &record(id, i as u64), "round {round}: run {id} seq {i}");
                }
                let want = acked.get(&id).copied().unwrap_or(0);
                assert!(
                    journal.len() as u64 >= want,
                    "round {round}: run {id} has {} records, {want} were acknowledged",
                    journal.len()
                );
                let next = journal.len() as u64;
                store
                    .append(id, &[record(id, next)], Fence::None)
                    .await
                    .unwrap();
                acked.insert(id, next + 1);
                assert_eq!(store.journal_len(id).await.unwrap(), next + 1);
                assert_clean_ndjson(&journal_file(&root, id));
            }
        });
    }
    println!(
        "crash test: {KILLS} SIGKILLs survived, {child_acks} records acknowledged by children, \
         {torn_tails} torn tails found and dropped, {:?}",
        started.elapsed()
    );
    assert!(
        child_acks > 0,
        "the children acknowledged nothing; the test tested nothing"
    );
}
