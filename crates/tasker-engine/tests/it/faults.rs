//! Bad input and faults: runs that cannot be driven fail instead of being re-claimed forever,
//! failing drives are retried with backoff up to a cap, panics are internal failures, a slow
//! run does not hold up the others, a pause keeps its siblings' results, and a stopping worker
//! hands its runs back at once.

use crate::hooked::{Hooked, Hooks};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use sequential_adaptor::{Fence, JournalRecord, NewTaskVersion, RunStatus, TaskName, now_millis};
use sequential_http_wrapper::{FetchError, Fetcher, Request, Response};
use sequential_tasker_engine::{Engine, EngineConfig, RecordKind, StartOptions, StopHandle};
use sequential_test_support::http::CountingServer;
use serde_json::{Value, json};

use super::{Fixture, backends, fixture, hits, task};

/// Stores a version of `name` with `config`, bypassing every check a CLI would make.
async fn task_with_config(f: &Fixture, name: &str, code: &str, config: Value) -> TaskName {
    let t = TaskName::new(name).unwrap();
    f.store
        .put_task_version(NewTaskVersion {
            task: t.clone(),
            code: code.into(),
            graph: None,
            config,
        })
        .await
        .unwrap();
    t
}

/// Polls `cond` until it holds; panics with `what` after 30 s.
async fn until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_retry_in_the_config_fails_the_run_naming_it_and_is_never_reclaimed() {
    for (backend, f) in backends() {
        let t = task_with_config(&f, "poison", "1 + 1", json!({"retry": {"attempts": 0}})).await;
        let run = f
            .engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let done = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(done.status, RunStatus::Failed, "{backend}: {done:?}");
        let err = done.error.clone().unwrap();
        assert_eq!(err["name"], "ConfigError", "{backend}: {err}");
        let msg = err["message"].as_str().unwrap();
        assert!(
            msg.contains("retry.attempts") && msg.contains("from 1 to 100"),
            "{backend}: {msg}"
        );
        assert!(done.lease.is_none(), "{backend}: released");
        // a worker fails it once and is done with it
        let second = f
            .engine
            .start(&t, json!({"n": 2}), StartOptions::default())
            .await
            .unwrap();
        assert_eq!(f.engine.work_once().await.unwrap(), 1, "{backend}");
        let failed = f.store.get_run(second.id).await.unwrap();
        assert_eq!(failed.status, RunStatus::Failed, "{backend}: {failed:?}");
        assert_eq!(failed.attempt, 1, "{backend}: claimed once");
        assert_eq!(f.engine.work_once().await.unwrap(), 0, "{backend}");
        let journal = f.store.read_journal(second.id, None, 100).await.unwrap();
        assert_eq!(
            journal.last().map(|r| r.kind.as_str()),
            Some("run.failed"),
            "{backend}: {journal:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undecodable_journal_fails_the_run_naming_the_record() {
    for (backend, f) in backends() {
        let t = task(&f, "garbled", "1 + 1").await;
        let run = f
            .engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let record = |seq: u64, kind: &str, data: Value| JournalRecord {
            run: run.id,
            seq,
            kind: kind.into(),
            at: now_millis(),
            data,
        };
        let garbage = [
            record(0, "run.started", json!({"task": "garbled", "version": 1})),
            record(1, "call.completed", json!({"seq": "not a number"})),
        ];
        f.store.append(run.id, &garbage, Fence::None).await.unwrap();
        let done = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(done.status, RunStatus::Failed, "{backend}: {done:?}");
        let err = done.error.unwrap();
        assert_eq!(err["name"], "JournalError", "{backend}: {err}");
        assert!(
            err["message"]
                .as_str()
                .unwrap()
                .contains("journal record 1 is malformed"),
            "{backend}: {err}"
        );
    }
}

/// Appends fail while `failing` is above zero (each failure counts it down); `drives` counts how
/// often a drive began (each with a claim).
#[derive(Debug, Default)]
struct Flaky {
    failing: AtomicUsize,
    drives: AtomicUsize,
}

impl Hooks for Flaky {
    fn scheme(&self) -> Option<&'static str> {
        Some("flaky")
    }
    fn on_claimed(&self, _run: sequential_adaptor::RunId) {
        self.drives.fetch_add(1, Ordering::SeqCst);
    }
    fn before_append(&self) -> sequential_adaptor::Result<()> {
        let fail = self
            .failing
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if fail {
            return Err(sequential_adaptor::Error::backend(
                "appending to the journal",
                "disk on fire (injected)",
            ));
        }
        Ok(())
    }
}

/// Counts the journal reads of each run.
#[derive(Debug, Default)]
struct Reads(std::sync::Mutex<std::collections::HashMap<sequential_adaptor::RunId, usize>>);

impl Hooks for Reads {
    fn on_read_journal(&self, run: sequential_adaptor::RunId) {
        *self.0.lock().unwrap().entry(run).or_default() += 1;
    }
}

// A drive loads the journal a page at a time; a page shorter than a full one is its end, so
// resuming a run whose journal holds a few records costs one read, not a second that finds
// nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cold_resume_reads_a_short_journal_once() {
    for (backend, f) in backends() {
        let t = task(
            &f,
            "waits",
            "export default async function (input, ctx) {\n  const go = await ctx.waitForEvent('go');\n  return input.a + go;\n}",
        )
        .await;
        let run = f
            .engine
            .start(&t, json!({"a": 2}), StartOptions::default())
            .await
            .unwrap();
        let waiting = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(waiting.status, RunStatus::Waiting, "{backend}: {waiting:?}");
        // another engine (no live session): the resume replays the journal it reads
        let reads = Arc::new(Hooked {
            inner: f.store.clone(),
            hooks: Reads::default(),
        });
        let cold = Engine::new(reads.clone(), EngineConfig::default()).unwrap();
        f.store.send_signal(run.id, "go", json!(3)).await.unwrap();
        let done = cold
            .run_until_settled(run.id, Some(now_millis() + 60_000))
            .await
            .unwrap();
        assert_eq!(done.output, Some(json!(5)), "{backend}: {done:?}");
        assert_eq!(
            reads.hooks.0.lock().unwrap().get(&run.id),
            Some(&1),
            "{backend}"
        );
    }
}

/// A store whose claims wait until every run claimed before has settled (a store far away,
/// slower than the runs), and which records how many slots each claim asked for.
#[derive(Debug, Default)]
struct ClaimsAfterSettles {
    claimed: AtomicUsize,
    settled: AtomicUsize,
    settles: tokio::sync::Notify,
    asks: std::sync::Mutex<Vec<usize>>,
}

#[async_trait]
impl Hooks for ClaimsAfterSettles {
    async fn before_claim(&self, req: &sequential_adaptor::ClaimRequest) {
        self.asks.lock().unwrap().push(req.limit);
        loop {
            let settle = self.settles.notified();
            tokio::pin!(settle);
            settle.as_mut().enable();
            if self.settled.load(Ordering::SeqCst) >= self.claimed.load(Ordering::SeqCst) {
                return;
            }
            settle.await;
        }
    }
    fn on_claimed(&self, _run: sequential_adaptor::RunId) {
        self.claimed.fetch_add(1, Ordering::SeqCst);
    }
    fn on_settled(&self, _run: sequential_adaptor::RunId) {
        self.settled.fetch_add(1, Ordering::SeqCst);
        self.settles.notify_waiters();
    }
}

// A worker books every run that ended while its claim was on its way before it claims again, so
// one claim refills all the slots that freed meanwhile. Booking one ended run per claim instead
// asks for one slot at a time — about one claim per run — while the others wait in the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_claim_refills_every_slot_that_freed_while_the_last_was_on_its_way() {
    let f = fixture("sqlite");
    let t = task(&f, "sum", "1 + 1").await;
    let slow = Arc::new(Hooked {
        inner: f.store.clone(),
        hooks: ClaimsAfterSettles::default(),
    });
    let config = EngineConfig {
        concurrency: 8,
        ..EngineConfig::default()
    };
    let engine = Engine::new(slow.clone(), config).unwrap();
    for i in 0..96 {
        let new = sequential_adaptor::NewRun::new(t.clone(), 1, json!({ "i": i }));
        f.store.create_run(new).await.unwrap();
    }
    let worked = tokio::time::timeout(Duration::from_secs(60), engine.work_once()).await;
    assert_eq!(worked.expect("the worker drained the queue").unwrap(), 96);
    let asks = slow.hooks.asks.lock().unwrap().clone();
    assert_eq!(asks[0], 8, "{asks:?}");
    assert!(
        asks[1..].iter().any(|&n| n > 1),
        "a claim after the first asks for every slot that freed, not one: {asks:?}"
    );
    assert!(
        asks.len() <= 60,
        "{} claims for 96 runs: {asks:?}",
        asks.len()
    );
}

/// Records how many slots each claim asked for.
#[derive(Debug, Default)]
struct Asks(std::sync::Mutex<Vec<usize>>);

#[async_trait]
impl Hooks for Asks {
    async fn before_claim(&self, req: &sequential_adaptor::ClaimRequest) {
        self.0.lock().unwrap().push(req.limit);
    }
}

// With `claim_gather`, a worker that has runs in hand and fewer than a quarter of its slots free
// waits for more of them to settle before it claims: no claim asks for a single slot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gathering_worker_claims_several_slots_at_a_time() {
    let f = fixture("sqlite");
    let t = task(&f, "sum", "1 + 1").await;
    let counted = Arc::new(Hooked {
        inner: f.store.clone(),
        hooks: Asks::default(),
    });
    let config = EngineConfig {
        concurrency: 8,
        // longer than the test: only settled runs end a gather
        claim_gather: Some(Duration::from_secs(600)),
        ..EngineConfig::default()
    };
    let engine = Engine::new(counted.clone(), config).unwrap();
    for i in 0..96 {
        let new = sequential_adaptor::NewRun::new(t.clone(), 1, json!({ "i": i }));
        f.store.create_run(new).await.unwrap();
    }
    let worked = tokio::time::timeout(Duration::from_secs(60), engine.work_once()).await;
    assert_eq!(worked.expect("the worker drained the queue").unwrap(), 96);
    let asks = counted.hooks.0.lock().unwrap().clone();
    assert_eq!(asks[0], 8, "{asks:?}");
    assert!(
        asks.iter().all(|&n| n >= 2),
        "a claim asked for fewer than a quarter of the slots: {asks:?}"
    );
}

/// Counts the reads a drive may begin with: exact task versions, and journals.
#[derive(Debug, Default)]
struct StartReads {
    versions: AtomicUsize,
    journals: AtomicUsize,
}

impl Hooks for StartReads {
    fn on_get_task_version(&self, sel: &sequential_adaptor::VersionSel) {
        if matches!(sel, sequential_adaptor::VersionSel::Exact(_)) {
            self.versions.fetch_add(1, Ordering::SeqCst);
        }
    }
    fn on_read_journal(&self, _run: sequential_adaptor::RunId) {
        self.journals.fetch_add(1, Ordering::SeqCst);
    }
}

// SQLite's claims tell the journal's length of a run claimed from `queued` and the hash of
// its task version: a worker starting runs reads no journal, and reads their version once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_starting_runs_reads_no_journal_and_their_version_once() {
    let f = fixture("sqlite");
    let t = task(&f, "sum", "1 + 1").await;
    let counted = Arc::new(Hooked {
        inner: f.store.clone(),
        hooks: StartReads::default(),
    });
    let config = EngineConfig {
        concurrency: 1,
        ..EngineConfig::default()
    };
    let engine = Engine::new(counted.clone(), config).unwrap();
    let mut ids = Vec::new();
    for i in 0..5 {
        let new = sequential_adaptor::NewRun::new(t.clone(), 1, json!({ "i": i }));
        ids.push(f.store.create_run(new).await.unwrap().into_run().id);
    }
    assert_eq!(engine.work_once().await.unwrap(), 5);
    for id in ids {
        let run = f.store.get_run(id).await.unwrap();
        assert_eq!(
            (run.status, run.output),
            (RunStatus::Succeeded, Some(json!(2)))
        );
    }
    assert_eq!(counted.hooks.versions.load(Ordering::SeqCst), 1);
    assert_eq!(counted.hooks.journals.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_drives_are_retried_with_backoff_then_fail_the_run_with_the_cause() {
    for (backend, f) in backends() {
        let flaky = Arc::new(Hooked {
            inner: f.store.clone(),
            hooks: Flaky::default(),
        });
        let config = EngineConfig {
            max_drive_attempts: 3,
            drive_retry_delay: Duration::from_millis(10),
            ..EngineConfig::default()
        };
        let engine = Engine::new(flaky.clone(), config).unwrap();
        let t = task(&f, "wobbly", "6 * 7").await;
        // two failed drives, then the third goes through
        flaky.hooks.failing.store(2, Ordering::SeqCst);
        let run = engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let done = engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
        assert_eq!(done.output, Some(json!(42)), "{backend}");
        assert_eq!(
            done.error, None,
            "{backend}: the failed drives are forgotten"
        );
        assert_eq!(flaky.hooks.drives.load(Ordering::SeqCst), 3, "{backend}");
        // every drive fails: after 3 the run fails, naming the cause
        flaky.hooks.drives.store(0, Ordering::SeqCst);
        flaky.hooks.failing.store(usize::MAX, Ordering::SeqCst);
        let run = engine
            .start(&t, json!({"n": 2}), StartOptions::default())
            .await
            .unwrap();
        let done = engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(done.status, RunStatus::Failed, "{backend}: {done:?}");
        let err = done.error.unwrap();
        assert_eq!(err["name"], "StorageError", "{backend}: {err}");
        assert_eq!(err["driveAttempts"], 3, "{backend}: {err}");
        let msg = err["message"].as_str().unwrap();
        assert!(
            msg.contains("failed 3 time(s)") && msg.contains("disk on fire"),
            "{backend}: {msg}"
        );
        assert_eq!(flaky.hooks.drives.load(Ordering::SeqCst), 3, "{backend}");
        assert!(done.lease.is_none(), "{backend}");
    }
}

/// A fetcher with a bug: it panics.
#[derive(Debug)]
struct Panics;

#[async_trait]
impl Fetcher for Panics {
    async fn fetch(&self, _req: &Request) -> Result<Response, FetchError> {
        panic!("the fetcher fell over");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_an_internal_failure_that_fails_the_run_with_its_cause() {
    let f = fixture("sqlite");
    let config = EngineConfig {
        max_drive_attempts: 2,
        drive_retry_delay: Duration::from_millis(5),
        ..EngineConfig::default()
    };
    let engine = Engine::new(f.store.clone(), config)
        .unwrap()
        .with_fetcher(Arc::new(Panics));
    let t = task(&f, "buggy", "fetch('https://example.com/x').status").await;
    let run = engine
        .start(&t, json!({}), StartOptions::default())
        .await
        .unwrap();
    let done = engine.run_until_settled(run.id, None).await.unwrap();
    assert_eq!(done.status, RunStatus::Failed, "{done:?}");
    let err = done.error.unwrap();
    assert_eq!(err["name"], "InternalError", "{err}");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("internal failure") && msg.contains("the fetcher fell over"),
        "{msg}"
    );
    assert!(!msg.contains("invalid"), "not a usage error: {msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_run_does_not_hold_up_the_others() {
    let server = CountingServer::start();
    let url = server.url();
    let mut f = fixture("sqlite");
    f.engine = Engine::new(
        f.store.clone(),
        EngineConfig {
            concurrency: 2,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let code = "const r = fetch(`${input.url}`); r.i";
    let t = task(&f, "one", code).await;
    let start = |url: String| {
        let (engine, t) = (f.engine.clone(), t.clone());
        async move {
            engine
                .start(&t, json!({ "url": url }), StartOptions::default())
                .await
                .unwrap()
                .id
        }
    };
    let slow = start(format!("{url}/slow/4000/1")).await;
    let mut quick = Vec::new();
    for i in 0..12 {
        quick.push(start(format!("{url}/step/{i}")).await);
    }
    let stop = StopHandle::new();
    let worker = {
        let (engine, stop) = (f.engine.clone(), stop.clone());
        tokio::spawn(async move { engine.work_until(&stop).await })
    };
    let store = f.store.clone();
    until("the dozen quick runs", || {
        let (store, quick) = (store.clone(), quick.clone());
        async move {
            for id in quick {
                if store.get_run(id).await.unwrap().status != RunStatus::Succeeded {
                    return false;
                }
            }
            true
        }
    })
    .await;
    let slow_now = f.store.get_run(slow).await.unwrap();
    assert_eq!(
        slow_now.status,
        RunStatus::Running,
        "the slow run still waits for its fetch while the dozen are done: {slow_now:?}"
    );
    stop.stop();
    let report = worker.await.unwrap().unwrap();
    assert_eq!(report.claimed, 13);
    let slow_done = f.store.get_run(slow).await.unwrap();
    assert_eq!(slow_done.status, RunStatus::Succeeded, "{slow_done:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pause_journals_the_sibling_calls_so_a_retry_never_repeats_them() {
    let server = CountingServer::start();
    let url = server.url();
    for (backend, f) in backends() {
        server.clear();
        server.set_down(true);
        let code = format!(
            "export default async function () {{\n  const rs = await Promise.all([fetch('{url}/step/1'), fetch('{url}/slow/300/2'), fetch('{url}/down')]);\n  const [a, b] = await Promise.all([rs[0].json(), rs[1].json()]);\n  return a.i + b.i + rs[2].status;\n}}"
        );
        let t = task(&f, "siblings", &code).await;
        let run = f
            .engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let paused = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(paused.status, RunStatus::Paused, "{backend}: {paused:?}");
        let completed: Vec<Value> = f
            .engine
            .read_all(run.id)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.kind == RecordKind::CallCompleted)
            .map(|r| r.data)
            .collect();
        assert_eq!(
            completed.len(),
            2,
            "{backend}: both siblings journaled before parking: {completed:?}"
        );
        server.set_down(false);
        f.engine.retry(run.id).await.unwrap();
        let done = f.engine.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{backend}: {done:?}");
        assert_eq!(done.output, Some(json!(203)), "{backend}");
        let seen: Vec<String> = hits(&server).into_iter().map(|(p, _)| p).collect();
        for sibling in ["/step/1", "/slow/300/2"] {
            assert_eq!(
                seen.iter().filter(|p| *p == sibling).count(),
                1,
                "{backend}: {sibling} came back before the pause and is not requested again: {seen:?}"
            );
        }
        assert_eq!(
            seen.iter().filter(|p| *p == "/down").count(),
            3,
            "{backend}: 2 attempts, then 1 after the retry: {seen:?}"
        );
    }
}

/// Starts a worker on `engine` in the background; returns its stop handle and task.
fn spawn_worker(
    engine: &Engine,
) -> (
    StopHandle,
    tokio::task::JoinHandle<sequential_tasker_engine::Result<sequential_tasker_engine::WorkReport>>,
) {
    let stop = StopHandle::new();
    let (e, s) = (engine.clone(), stop.clone());
    (stop, tokio::spawn(async move { e.work_until(&s).await }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_lets_the_step_in_flight_finish_then_releases_the_run() {
    let server = CountingServer::start();
    let url = server.url();
    for (backend, f) in backends() {
        server.clear();
        let code = format!(
            "const a = fetch('{url}/slow/300/1'); const b = fetch('{url}/step/2'); a.i + b.i"
        );
        let t = task(&f, "twostep", &code).await;
        let run = f
            .engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let (stop, worker) = spawn_worker(&f.engine);
        until("the slow fetch to start", || async {
            server.count("/slow/300/1") == 1
        })
        .await;
        stop.stop();
        let report = worker.await.unwrap().unwrap();
        assert_eq!(report.released, 1, "{backend}: {report:?}");
        let released = f.store.get_run(run.id).await.unwrap();
        assert_eq!(released.status, RunStatus::Running, "{backend}");
        assert!(released.lease.is_none(), "{backend}: {released:?}");
        assert_eq!(server.count("/step/2"), 0, "{backend}: no new step began");
        // another engine claims it at once (no lease to wait out) and finishes it
        let other = Engine::new(f.store.clone(), EngineConfig::default()).unwrap();
        let done = other.run_until_settled(run.id, None).await.unwrap();
        assert_eq!(done.output, Some(json!(3)), "{backend}: {done:?}");
        assert_eq!(
            server.count("/slow/300/1"),
            1,
            "{backend}: the step that finished during the grace period is journaled"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_stopped_now_or_out_of_grace_releases_a_run_mid_fetch() {
    let server = CountingServer::start();
    let url = server.url();
    for grace_runs_out in [false, true] {
        let f = fixture("sqlite");
        let config = EngineConfig {
            stop_grace: if grace_runs_out {
                Duration::from_millis(100)
            } else {
                Duration::from_secs(3600)
            },
            ..EngineConfig::default()
        };
        let engine = Engine::new(f.store.clone(), config).unwrap();
        let path = format!("/hang-once/{}", u8::from(grace_runs_out));
        let t = task(&f, "hangs", &format!("fetch('{url}{path}').i")).await;
        let run = engine
            .start(&t, json!({}), StartOptions::default())
            .await
            .unwrap();
        let (stop, worker) = spawn_worker(&engine);
        until("the fetch to hang", || async { server.count(&path) == 1 }).await;
        stop.stop();
        if !grace_runs_out {
            stop.stop_now();
        }
        let report = worker.await.unwrap().unwrap();
        assert_eq!(report.released, 1, "{report:?}");
        let released = f.store.get_run(run.id).await.unwrap();
        assert!(released.lease.is_none(), "{released:?}");
        let done = Engine::new(f.store.clone(), EngineConfig::default())
            .unwrap()
            .run_until_settled(run.id, None)
            .await
            .unwrap();
        assert_eq!(done.status, RunStatus::Succeeded, "{done:?}");
        let keys: Vec<_> = server
            .hits()
            .into_iter()
            .filter(|h| h.path == path)
            .map(|h| h.key)
            .collect();
        assert_eq!(keys.len(), 2, "the call in flight is repeated once");
        assert_eq!(keys[0], keys[1], "with the same idempotency key");
    }
}
