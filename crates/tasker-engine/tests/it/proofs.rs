//! Proofs with real processes: the test binary re-runs itself as a child (`ENGINE_CHILD` set,
//! through `sequential_test_support::child`) that drives runs, and the parent kills it with
//! SIGKILL. Every step answers after 8 ms (`/slow/8/{i}` of the counting server).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sequential_adaptor::{
    NewTaskVersion, Page, RunFilter, RunId, RunStatus, StorageAdapter, TaskName, now_millis,
};
use sequential_tasker_engine::{Engine, EngineConfig, RecordKind, StartOptions};
use sequential_test_support::child;
use sequential_test_support::http::CountingServer;
use sequential_test_support::seed::Seeded;
use serde_json::json;

/// The counting server and the URL the tasks below fetch `{url}/{i}` under.
fn server() -> (CountingServer, String) {
    let server = CountingServer::start();
    let url = format!("{}/slow/8", server.url());
    (server, url)
}

/// The path step `i` is fetched at.
fn step(i: impl std::fmt::Display) -> String {
    format!("/slow/8/{i}")
}

/// (path, Idempotency-Key) of every request, in arrival order.
fn hits(server: &CountingServer) -> Vec<(String, String)> {
    server
        .hits()
        .into_iter()
        .map(|h| (h.path, h.key.unwrap_or_default()))
        .collect()
}

const FIVE: &str = "let sum = 0;\nfor (let i = 1; i <= 5; i++) { sum += fetch(`${input.url}/${i}`).i; }\n({ sum })";

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

/// Runs in the child process: drives `ENGINE_CHILD_RUN` (or, with `ENGINE_CHILD_RUN=work`,
/// everything runnable until nothing is left) on the store at `ENGINE_CHILD`.
#[test]
fn child_entry() {
    let Some(path) = child::role("ENGINE_CHILD") else {
        return; // not a child: nothing to do
    };
    let backend = std::env::var("ENGINE_CHILD_BACKEND").unwrap();
    let what = std::env::var("ENGINE_CHILD_RUN").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = open(&backend, Path::new(&path));
        let engine = Engine::new(
            store,
            EngineConfig {
                concurrency: 8,
                ..EngineConfig::default()
            },
        )
        .unwrap();
        if what == "idle" {
            // a worker over a store of sleeping runs: it claims nothing; it stops when the
            // parent closes our stdin
            assert_eq!(engine.work_once().await.unwrap(), 0, "nothing is runnable");
            println!("idle-ready");
            let stop = async {
                let _ = tokio::task::spawn_blocking(|| {
                    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())
                })
                .await;
            };
            engine.work(stop).await.unwrap();
        } else if what == "work" {
            // drive until no run is left to drive (runs held by the other worker count)
            let active = RunFilter {
                task: None,
                statuses: vec![RunStatus::Queued, RunStatus::Running, RunStatus::Stopping],
            };
            loop {
                if engine.work_once().await.unwrap() > 0 {
                    continue;
                }
                let left = engine
                    .store()
                    .list_runs(&active, Page::first(1))
                    .await
                    .unwrap();
                if left.runs.is_empty() {
                    break;
                }
                engine
                    .store()
                    .wait_for_change(Duration::from_millis(50))
                    .await;
            }
        } else {
            let id: RunId = what.parse().unwrap();
            engine
                .run_until_settled(id, Some(now_millis() + 60_000))
                .await
                .unwrap();
        }
    });
}

fn spawn_child(backend: &str, path: &Path, what: &str) -> Child {
    child::relaunch(
        child::test_path(module_path!(), "child_entry"),
        "ENGINE_CHILD",
        path.to_str().expect("a UTF-8 temp path"),
    )
    .env("ENGINE_CHILD_BACKEND", backend)
    .env("ENGINE_CHILD_RUN", what)
    // only the idle worker talks to the parent (a ready line out, end of stdin to stop)
    .stdin(if what == "idle" {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(if what == "idle" {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap()
}

async fn prepare(
    backend: &str,
    dir: &Path,
    code: &str,
) -> (Arc<dyn StorageAdapter>, Engine, TaskName) {
    let store = open(backend, &store_path(dir, backend));
    let t = TaskName::new("proof").unwrap();
    store
        .put_task_version(NewTaskVersion {
            task: t.clone(),
            code: code.into(),
            graph: None,
            config: json!({}),
        })
        .await
        .unwrap();
    let engine = Engine::new(store.clone(), EngineConfig::default()).unwrap();
    (store, engine, t)
}

async fn completed_steps(store: &dyn StorageAdapter, id: RunId) -> usize {
    store
        .read_journal(id, None, 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|r| r.kind == RecordKind::CallCompleted)
        .count()
}

fn kill9(child: &mut Child) {
    // Child::kill sends SIGKILL on Unix
    child.kill().unwrap();
    child.wait().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_after_the_third_journaled_response_repeats_nothing_completed() {
    for backend in ["sqlite", "folder"] {
        let (server, url) = server();
        let dir = tempfile::tempdir().unwrap();
        let (store, engine, t) = prepare(backend, dir.path(), FIVE).await;
        let run = engine
            .start(&t, json!({"url": url}), StartOptions::default())
            .await
            .unwrap();
        let mut child = spawn_child(
            backend,
            &store_path(dir.path(), backend),
            &run.id.to_string(),
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while completed_steps(&*store, run.id).await < 3 {
            assert!(
                Instant::now() < deadline,
                "{backend}: the child never journaled 3 responses"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        kill9(&mut child);
        let journaled = completed_steps(&*store, run.id).await;
        // a second process resumes it: a new engine over a reopened store
        let store2 = open(backend, &store_path(dir.path(), backend));
        let engine2 = Engine::new(store2, EngineConfig::default()).unwrap();
        let done = engine2.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
        assert_eq!(done.output, Some(json!({"sum": 15})), "{backend}");
        let seen = hits(&server);
        for i in 1..=journaled {
            let n = seen.iter().filter(|(p, _)| *p == step(i)).count();
            assert_eq!(
                n, 1,
                "{backend}: step {i} was journaled before the kill and must not repeat: {seen:?}"
            );
        }
        for i in 1..=5 {
            let keys: Vec<_> = seen
                .iter()
                .filter(|(p, _)| *p == step(i))
                .map(|(_, k)| k.clone())
                .collect();
            assert!(
                (1..=2).contains(&keys.len()),
                "{backend}: step {i}: {keys:?}"
            );
            assert!(
                keys.windows(2).all(|w| w[0] == w[1]),
                "{backend}: step {i} keys differ: {keys:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_kills_at_random_moments_never_repeat_a_completed_call() {
    let mut rng = Seeded::from_env("ENGINE_KILL_SEED");
    let (server, url) = server();
    let mut interrupted = [0usize; 6];
    for round in 0..30 {
        let backend = if round % 2 == 0 { "sqlite" } else { "folder" };
        server.clear();
        let dir = tempfile::tempdir().unwrap();
        let (store, engine, t) = prepare(backend, dir.path(), FIVE).await;
        let run = engine
            .start(&t, json!({"url": url}), StartOptions::default())
            .await
            .unwrap();
        let mut child = spawn_child(
            backend,
            &store_path(dir.path(), backend),
            &run.id.to_string(),
        );
        if round % 3 == 0 {
            // during start-up: the child may not have claimed the run yet
            tokio::time::sleep(Duration::from_millis(rng.below(30))).await;
        } else {
            // once the run has started (however slow the machine is), somewhere in its steps
            let deadline = Instant::now() + Duration::from_secs(30);
            while store
                .read_journal(run.id, None, 1)
                .await
                .unwrap()
                .is_empty()
            {
                assert!(
                    Instant::now() < deadline,
                    "round {round}: the child never started the run"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        }
        kill9(&mut child);
        let journaled = completed_steps(&*store, run.id).await;
        interrupted[journaled.min(5)] += 1;
        let store2 = open(backend, &store_path(dir.path(), backend));
        let done = Engine::new(store2, EngineConfig::default())
            .unwrap()
            .run_until_settled(run.id, None)
            .await
            .unwrap();
        assert_eq!(
            done.output,
            Some(json!({"sum": 15})),
            "round {round} ({backend}): {done:?}"
        );
        let seen = hits(&server);
        let mut per_step: HashMap<String, Vec<String>> = HashMap::new();
        for (p, k) in seen {
            per_step.entry(p).or_default().push(k);
        }
        for i in 1..=5usize {
            let keys = per_step.get(&step(i)).cloned().unwrap_or_default();
            let limit = if i <= journaled { 1 } else { 2 };
            assert!(
                (1..=limit).contains(&keys.len()),
                "round {round} ({backend}): step {i} seen {} times (journaled before kill: {journaled})",
                keys.len()
            );
            assert!(
                keys.iter()
                    .all(|k| *k == format!("{}:{}", run.id, keys_seq(&keys[0]))),
                "round {round}: {keys:?}"
            );
        }
    }
    println!("steps journaled when killed (0..=5): {interrupted:?}");
    assert!(
        interrupted[1..5].iter().sum::<usize>() > 0,
        "no kill landed between steps: {interrupted:?}"
    );
}

fn keys_seq(key: &str) -> &str {
    key.rsplit_once(':').map_or("", |(_, s)| s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sleeping_run_whose_process_died_finishes_when_a_worker_starts_later() {
    let dir = tempfile::tempdir().unwrap();
    let code =
        "export default async function (input, ctx) { await ctx.sleep('300ms'); return 'woke'; }";
    let (store, engine, t) = prepare("sqlite", dir.path(), code).await;
    let run = engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let mut child = spawn_child(
        "sqlite",
        &store_path(dir.path(), "sqlite"),
        &run.id.to_string(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.get_run(run.id).await.unwrap().status != RunStatus::Waiting {
        assert!(
            Instant::now() < deadline,
            "the child never put the run to sleep"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    kill9(&mut child);
    // start the worker only once the timer is overdue
    let wake_at = store
        .get_run(run.id)
        .await
        .unwrap()
        .wake_at
        .expect("a timer");
    let until_due = (wake_at - now_millis()).max(0) as u64 + 1;
    tokio::time::sleep(Duration::from_millis(until_due)).await;
    let mut worker = spawn_child("sqlite", &store_path(dir.path(), "sqlite"), "work");
    assert!(worker.wait().unwrap().success());
    let done = store.get_run(run.id).await.unwrap();
    assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
    assert_eq!(done.output, Some(json!("woke")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_worker_processes_drain_one_thousand_runs_each_exactly_once() {
    let (server, url) = server();
    let dir = tempfile::tempdir().unwrap();
    let code = "const r = fetch(`${input.url}/${input.n}`); r.i";
    let (store, engine, t) = prepare("sqlite", dir.path(), code).await;
    let mut ids = Vec::new();
    for n in 0..1000 {
        ids.push(
            engine
                .start(&t, json!({"url": url, "n": n}), StartOptions::default())
                .await
                .unwrap()
                .id,
        );
    }
    let path = store_path(dir.path(), "sqlite");
    let mut a = spawn_child("sqlite", &path, "work");
    let mut b = spawn_child("sqlite", &path, "work");
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    for (n, id) in ids.iter().enumerate() {
        let run = store.get_run(*id).await.unwrap();
        assert_eq!(run.status, RunStatus::Succeeded, "run {n}: {run:?}");
        assert_eq!(run.output, Some(json!(n)));
        let ends = store
            .read_journal(*id, None, 100)
            .await
            .unwrap()
            .iter()
            .filter(|r| r.kind == RecordKind::RunSucceeded)
            .count();
        assert_eq!(ends, 1, "run {n} completed {ends} times");
    }
    let seen = hits(&server).len();
    assert_eq!(
        seen, 1000,
        "each run's one fetch was performed exactly once"
    );
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_worker_over_ten_thousand_sleeping_runs_stays_small() {
    let dir = tempfile::tempdir().unwrap();
    let (store, engine, t) = prepare("sqlite", dir.path(), "1").await;
    let far = now_millis() + 3_600_000;
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let (store, engine, t) = (store.clone(), engine.clone(), t.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..625 {
                let mut run = engine
                    .start(&t, json!({}), StartOptions::default())
                    .await
                    .unwrap();
                run.status = RunStatus::Waiting;
                run.wake_at = Some(far);
                store.update_run(&run).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut worker = spawn_child("sqlite", &store_path(dir.path(), "sqlite"), "idle");
    // read its output to the end (so it never writes into a closed pipe); tell us when it is idle
    let stdout = worker.stdout.take().unwrap();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let drain = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut ready_tx = Some(ready_tx);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.ends_with("idle-ready") {
                ready_tx.take().map(|tx| tx.send(()));
            }
        }
    });
    assert!(
        ready_rx.await.is_ok(),
        "the idle worker never made its first pass"
    );
    // sample its memory 25 times, 20 ms apart (a sampling interval, not a synchronisation:
    // the worker is already idle), then close its stdin to stop it
    let mut peak = 0;
    for _ in 0..25 {
        if let Some(kib) = rss_kib(worker.id()) {
            peak = peak.max(kib);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(worker.stdin.take());
    assert!(
        worker.wait().unwrap().success(),
        "the idle worker stopped cleanly"
    );
    drain.join().unwrap();
    println!(
        "idle worker over 10,000 sleeping runs: peak RSS {} KiB",
        peak
    );
    assert!(peak > 0, "RSS was never sampled");
    assert!(
        peak < 60 * 1024,
        "idle worker RSS {peak} KiB is over 60 MiB"
    );
    let waiting = store
        .list_runs(
            &sequential_adaptor::RunFilter {
                task: Some(t),
                statuses: vec![RunStatus::Waiting],
            },
            sequential_adaptor::Page::first(20_000),
        )
        .await
        .unwrap();
    assert_eq!(
        waiting.runs.len(),
        10_000,
        "the worker claimed none of the sleeping runs"
    );
}
