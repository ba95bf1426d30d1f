//! Graph runs across real processes: the test binary re-runs itself as a child that drives a
//! graph run, and the parent kills it with SIGKILL at exact points (a store wrapper in the
//! child stops it dead after its n-th append and says so) or once a timer is armed, then
//! finishes the run in another engine over the reopened store.

use crate::hooked::{Hooked, Hooks};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sequential_adaptor::{JournalRecord, RunId, RunStatus, StorageAdapter, now_millis};
use sequential_tasker_engine::{Engine, EngineConfig, StartOptions};
use sequential_test_support::child;
use sequential_test_support::http::CountingServer;
use serde_json::json;

use crate::graph::{
    E1_TRACE, assert_fold_matches, assert_trace, e1_code, e1_graph, e1_steps, graph_records,
    journal, put_graph, show,
};

fn open(backend: &str, path: &Path) -> Arc<dyn StorageAdapter> {
    match backend {
        "sqlite" => Arc::new(sequential_adaptor_sqlite::SqliteStore::open(path).unwrap()),
        _ => Arc::new(sequential_adaptor_folder::FolderStore::open(path).unwrap()),
    }
}

fn store_path(dir: &Path, backend: &str) -> PathBuf {
    match backend {
        "sqlite" => dir.join("runs.db"),
        _ => dir.join("tasks"),
    }
}

/// After its `trip`-th append, prints `tripped` and never returns: the process stands still
/// with exactly those appends durable, until it is killed.
#[derive(Debug)]
struct Tripwire {
    appends: AtomicU64,
    trip: u64,
}

#[async_trait]
impl Hooks for Tripwire {
    async fn after_append(&self) {
        let n = self.appends.fetch_add(1, Ordering::SeqCst) + 1;
        if n == self.trip {
            println!("tripped after append {n}");
            std::future::pending::<()>().await;
        }
    }
}

/// Runs in the child process: drives run `GRAPH_CHILD_RUN` on the store at `GRAPH_CHILD`
/// until it settles (timers within a minute are waited for), through a [`Tripwire`] when
/// `GRAPH_CHILD_TRIP` is set.
#[test]
fn graph_child() {
    let Some(path) = child::role("GRAPH_CHILD") else {
        return; // not a child: nothing to do
    };
    let backend = std::env::var("GRAPH_CHILD_BACKEND").unwrap();
    let id: RunId = std::env::var("GRAPH_CHILD_RUN").unwrap().parse().unwrap();
    let trip = std::env::var("GRAPH_CHILD_TRIP")
        .ok()
        .map(|t| t.parse::<u64>().unwrap());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut store = open(&backend, Path::new(&path));
        if let Some(trip) = trip {
            store = Arc::new(Hooked {
                inner: store,
                hooks: Tripwire {
                    appends: AtomicU64::new(0),
                    trip,
                },
            });
        }
        let engine = Engine::new(store, EngineConfig::default()).unwrap();
        engine
            .run_until_settled(id, Some(now_millis() + 60_000))
            .await
            .unwrap();
        println!("settled");
    });
}

fn spawn_child(backend: &str, path: &Path, run: RunId, trip: Option<u64>) -> Child {
    let mut cmd = child::relaunch(
        child::test_path(module_path!(), "graph_child"),
        "GRAPH_CHILD",
        path.to_str().expect("a UTF-8 temp path"),
    );
    cmd.env("GRAPH_CHILD_BACKEND", backend)
        .env("GRAPH_CHILD_RUN", run.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(t) = trip {
        cmd.env("GRAPH_CHILD_TRIP", t.to_string());
    }
    cmd.spawn().unwrap()
}

/// Reads the child's output until a line containing `what`; `false` when it ended first.
fn wait_for_line(child: &mut Child, what: &str) -> bool {
    let out = child.stdout.take().unwrap();
    let mut lines = BufReader::new(out).lines();
    let found = lines
        .by_ref()
        .map_while(Result::ok)
        .any(|l| l.contains(what));
    // keep draining in the background so the child never blocks on a full pipe
    std::thread::spawn(move || lines.for_each(drop));
    found
}

fn kill9(child: &mut Child) {
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
}

/// Lengths of the graph-record prefixes a journal can hold between commits of E1.
const E1_COMMIT_ENDS: [usize; 5] = [0, 2, 5, 8, 12];

/// Graph records without the ones a recovery adds (`run.recovered`, `state.entered` with a
/// restart): what is left is the trace an uninterrupted run writes.
fn without_recovery(
    records: &[sequential_tasker_engine::flow_graph::Record],
) -> Vec<sequential_tasker_engine::flow_graph::Record> {
    records
        .iter()
        .filter(|r| {
            let (kind, data) = r.to_parts();
            kind.as_str() != "run.recovered"
                && !(kind.as_str() == "state.entered" && data.get("restart").is_some())
        })
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_any_append_of_e1_gives_the_same_run() {
    let server = CountingServer::start();
    // E1 appends: 4 graph commits; a handler's call.requested goes in the commit that entered
    // its state, its call.completed in the commit of the transition its result makes
    const APPENDS: u64 = 4;
    for backend in ["sqlite", "folder"] {
        for trip in 1..=APPENDS {
            server.clear();
            let dir = tempfile::tempdir().unwrap();
            let path = store_path(dir.path(), backend);
            let store = open(backend, &path);
            let t = put_graph(
                store.as_ref(),
                "order-linear",
                &e1_steps(&server),
                e1_graph(),
            )
            .await;
            let engine = Engine::new(store.clone(), EngineConfig::default()).unwrap();
            let run = engine
                .start(&t, json!({"orderId": 7}), StartOptions::default())
                .await
                .unwrap();
            let mut child = spawn_child(backend, &path, run.id, Some(trip));
            assert!(
                wait_for_line(&mut child, "tripped"),
                "{backend} trip {trip}: the child ended before its append {trip}"
            );
            kill9(&mut child);
            // no partial transition is ever visible
            let before = graph_records(&journal(store.as_ref(), run.id).await);
            assert!(
                E1_COMMIT_ENDS.contains(&before.len()),
                "{backend} trip {trip}: {} graph records after the kill:\n{}",
                before.len(),
                show(&before)
            );
            // another process (a new engine over the reopened store) finishes it
            drop((engine, store));
            let store2 = open(backend, &path);
            let engine2 = Engine::new(store2.clone(), EngineConfig::default()).unwrap();
            let done = engine2.run_until_settled(run.id, None).await.unwrap();
            assert_eq!(
                done.status,
                RunStatus::Succeeded,
                "{backend} trip {trip}: {done:?}"
            );
            assert_eq!(
                done.output,
                Some(json!({"notified": 7})),
                "{backend} trip {trip}"
            );
            assert_eq!(
                server.count("/step/1"),
                1,
                "{backend} trip {trip}: fetchOrder once"
            );
            assert!(
                server.count("/step/2") <= 2,
                "{backend} trip {trip}: charge at most twice"
            );
            assert_eq!(
                server.count("/step/3"),
                1,
                "{backend} trip {trip}: notify once"
            );
            let records = graph_records(&journal(store2.as_ref(), run.id).await);
            assert_trace(&without_recovery(&records), &E1_TRACE);
            // before the last commit a handler was always in flight: it restarts (S7)
            let recovered = records
                .iter()
                .filter(|r| r.kind().as_str() == "run.recovered")
                .count();
            assert_eq!(
                recovered,
                usize::from(trip < APPENDS),
                "{backend} trip {trip}:\n{}",
                show(&records)
            );
            assert_fold_matches(&engine2, run.id).await;
            // every record is there once, seqs dense
            let j = journal(store2.as_ref(), run.id).await;
            assert!(j.iter().enumerate().all(|(i, r)| r.seq == i as u64));
        }
    }
}

/// Fails the `fail_at`-th append (once) without touching the store.
#[derive(Debug)]
struct FailOnce {
    appends: AtomicU64,
    fail_at: u64,
}

impl Hooks for FailOnce {
    fn before_append(&self) -> sequential_adaptor::Result<()> {
        if self.appends.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(sequential_adaptor::Error::backend(
                "appending to the journal",
                "disk on fire (injected)",
            ));
        }
        Ok(())
    }
}

/// S7 with handlers started while their transition is committed: a handler's code runs up to
/// its first fetch while the append that enters its state is prepared (its `call.requested`
/// joins that append), but the fetch is performed only once that append is durable. When the
/// append fails, the handler of the state it entered has fetched nothing: after the retried
/// drive, that state's fetch was made exactly once (the state before it, whose completion was
/// in the failed append, may fetch again: at least once).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_fetches_nothing_until_the_append_entering_its_state_is_durable() {
    let server = CountingServer::start();
    for backend in ["sqlite", "folder"] {
        // E1's appends 1-3 each enter a fetching state (fetchOrder, charge, notify)
        for fail_at in 1..=3u64 {
            server.clear();
            let dir = tempfile::tempdir().unwrap();
            let path = store_path(dir.path(), backend);
            let store: Arc<dyn StorageAdapter> = Arc::new(Hooked {
                inner: open(backend, &path),
                hooks: FailOnce {
                    appends: AtomicU64::new(0),
                    fail_at,
                },
            });
            let t = put_graph(
                store.as_ref(),
                "order-linear",
                &e1_steps(&server),
                e1_graph(),
            )
            .await;
            let config = EngineConfig {
                drive_retry_delay: Duration::from_millis(5),
                ..EngineConfig::default()
            };
            let engine = Engine::new(store.clone(), config).unwrap();
            let run = engine
                .start(&t, json!({"orderId": 7}), StartOptions::default())
                .await
                .unwrap();
            let done = engine.run_until_settled(run.id, None).await.unwrap();
            let what = format!("{backend}, append {fail_at} failed");
            assert_eq!(done.status, RunStatus::Succeeded, "{what}: {done:?}");
            assert_eq!(done.output, Some(json!({"notified": 7})), "{what}");
            assert_eq!(
                server.count(&format!("/step/{fail_at}")),
                1,
                "{what}: the state it entered fetched before it was durable"
            );
            for step in 1..=3 {
                let n = server.count(&format!("/step/{step}"));
                assert!((1..=2).contains(&n), "{what}: /step/{step} {n} times");
            }
            let records = graph_records(&journal(store.as_ref(), run.id).await);
            assert_trace(&without_recovery(&records), &E1_TRACE);
            assert_fold_matches(&engine, run.id).await;
        }
    }
}

/// E1-crash of GRAPHS.md §3.1: the server holds the first `charge`; the runner is killed once
/// record 5 is committed, restarted, then the server lets go.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e1_crash_in_charge_recovers_with_a_restart_of_charge() {
    use axum::extract::State;
    for backend in ["sqlite", "folder"] {
        let (gate_tx, gate_rx) = tokio::sync::watch::channel(false);
        let router = axum::Router::new()
            .route(
                "/gate/charge",
                axum::routing::any(
                    |State(mut open): State<tokio::sync::watch::Receiver<bool>>| async move {
                        let _ = open.wait_for(|o| *o).await;
                        axum::Json(json!({"ok": true}))
                    },
                ),
            )
            .with_state(gate_rx);
        let server = CountingServer::start_with(router);
        let u = server.url().to_string();
        let code = e1_code([
            &format!("{u}/step/1"),
            &format!("{u}/gate/charge"),
            &format!("{u}/step/3"),
        ]);
        let dir = tempfile::tempdir().unwrap();
        let path = store_path(dir.path(), backend);
        let store = open(backend, &path);
        let t = put_graph(store.as_ref(), "order-linear", &code, e1_graph()).await;
        let engine = Engine::new(store.clone(), EngineConfig::default()).unwrap();
        let run = engine
            .start(&t, json!({"orderId": 7}), StartOptions::default())
            .await
            .unwrap();
        let mut child = spawn_child(backend, &path, run.id, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while server.count("/gate/charge") == 0 {
            assert!(Instant::now() < deadline, "{backend}: charge never called");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        kill9(&mut child);
        assert_eq!(
            graph_records(&journal(store.as_ref(), run.id).await).len(),
            5
        );
        let store2 = open(backend, &path);
        let engine2 = Engine::new(store2.clone(), EngineConfig::default()).unwrap();
        let driving = tokio::spawn({
            let engine2 = engine2.clone();
            async move { engine2.run_until_settled(run.id, None).await }
        });
        while server.count("/gate/charge") < 2 {
            assert!(
                Instant::now() < deadline,
                "{backend}: charge never called again"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        gate_tx.send_replace(true);
        let done = driving.await.unwrap().unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
        assert_eq!(done.output, Some(json!({"notified": 7})), "{backend}");
        let records = graph_records(&journal(store2.as_ref(), run.id).await);
        assert_trace(
            &records,
            &[
                E1_TRACE[0],
                E1_TRACE[1],
                E1_TRACE[2],
                E1_TRACE[3],
                r#"state.entered charge attempt=1"#,
                r#"run.recovered -"#,
                r#"state.entered charge attempt=1 restart=1 input={"id":7,"amount":42}"#,
                E1_TRACE[5],
                E1_TRACE[6],
                E1_TRACE[7],
                E1_TRACE[8],
                E1_TRACE[9],
                E1_TRACE[10],
                E1_TRACE[11],
            ],
        );
        assert_fold_matches(&engine2, run.id).await;
        assert_eq!(server.count("/step/1"), 1, "{backend}: fetchOrder once");
        let keys: Vec<_> = server
            .hits()
            .into_iter()
            .filter(|h| h.path == "/gate/charge")
            .map(|h| h.key.unwrap())
            .collect();
        assert_eq!(
            keys.len(),
            2,
            "{backend}: charge twice (once cut short by the kill)"
        );
        assert_eq!(
            keys[0], keys[1],
            "{backend}: the repeated charge keeps its Idempotency-Key"
        );
        // the run reads back after the host restarts
        drop((engine, engine2, store, store2));
        let again = open(backend, &path).get_run(run.id).await.unwrap();
        assert_eq!(again.status, RunStatus::Succeeded);
    }
}

/// Polls the journal of `run` until a record of `kind` is there; returns it.
async fn wait_for_record(store: &dyn StorageAdapter, run: RunId, kind: &str) -> JournalRecord {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(r) = journal(store, run)
            .await
            .into_iter()
            .find(|r| r.kind == kind)
        {
            return r;
        }
        assert!(Instant::now() < deadline, "no {kind} record in time");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_backoff_and_a_2s_wait_survive_kill_9_and_fire_at_their_deadlines() {
    for backend in ["sqlite", "folder"] {
        let dir = tempfile::tempdir().unwrap();
        let path = store_path(dir.path(), backend);
        let store = open(backend, &path);
        let graph = json!({
            "version": 1,
            "initial": "flaky",
            "states": {
                "flaky": {
                    "retry": [{ "errors": ["Busy"], "maxAttempts": 1, "interval": "2s" }],
                    "onDone": "pause"
                },
                "pause": { "type": "wait", "for": "2s", "onDone": "done" },
                "done": { "type": "final" }
            }
        });
        let code = r#"
class Busy extends Error {}
export async function flaky(input, ctx) {
  if (ctx.attempt === 1) throw new Busy("not yet");
  return { attempt: ctx.attempt };
}
"#;
        let t = put_graph(store.as_ref(), "timers", code, graph).await;
        let engine = Engine::new(store.clone(), EngineConfig::default()).unwrap();
        let run = engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let mut restarts = Vec::new();
        for kind in ["retry.scheduled", "timer.scheduled"] {
            let mut child = spawn_child(backend, &path, run.id, None);
            wait_for_record(store.as_ref(), run.id, kind).await;
            kill9(&mut child);
            // the restart comes 700 ms later: a timer reset to its full length would fire
            // 2 s after the restart, not at its deadline
            tokio::time::sleep(Duration::from_millis(700)).await;
            restarts.push(now_millis());
        }
        // the last restart drives the run to its end
        let mut child = spawn_child(backend, &path, run.id, None);
        assert!(wait_for_line(&mut child, "settled"), "{backend}");
        assert!(child.wait().unwrap().success());
        let done = store.get_run(run.id).await.unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
        assert_eq!(done.output, Some(json!({"attempt": 2})));
        let j = journal(store.as_ref(), run.id).await;
        let deadline_of = |kind: &str| {
            j.iter().find(|r| r.kind == kind).unwrap().data["fire_at"]
                .as_i64()
                .unwrap()
        };
        let fired: Vec<(String, i64)> = j
            .iter()
            .filter(|r| r.kind == "timer.fired")
            .map(|r| (r.data["timer"].as_str().unwrap().to_string(), r.at))
            .collect();
        assert_eq!(fired.len(), 2, "{backend}: {fired:?}");
        for ((timer, at), (deadline, restart)) in fired.iter().zip([
            (deadline_of("retry.scheduled"), restarts[0]),
            (deadline_of("timer.scheduled"), restarts[1]),
        ]) {
            assert!(
                *at >= deadline,
                "{backend}: {timer} fired at {at}, before {deadline}"
            );
            assert!(
                *at < restart + 2_000,
                "{backend}: {timer} fired at {at}: reset to its full length after the restart at {restart}, not at its deadline {deadline}"
            );
        }
        let records = graph_records(&j);
        assert_eq!(
            records
                .iter()
                .filter(|r| r.kind().as_str() == "run.recovered")
                .count(),
            0,
            "{backend}: nothing was running when the kills came, so nothing restarts: {}",
            show(&records)
        );
    }
}
