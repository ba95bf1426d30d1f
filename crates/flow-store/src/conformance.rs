//! The conformance suite every task store backend runs, through [`crate::task_store_tests!`].
//!
//! Each case takes a fresh [`Harness`] and drives it through [`FlowStore`] with a clock of its
//! own (starting at the real time, moved forward by the case), so expiry is tested without
//! sleeping. Cases panic on a contract violation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};

use crate::{
    Error, ExecuteRequest, FetchResponse, FlowStore, Record, ResumeInput, SaveOptions, Status,
    TaskStore,
};

/// A boxed future, for [`Harness::reopen`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Opens the same storage again as a new backend value (a new "process").
pub type Reopen = Box<dyn Fn() -> BoxFuture<Arc<dyn TaskStore>> + Send + Sync>;

/// A fresh, empty store for one case.
pub struct Harness {
    /// The backend under test.
    pub backend: Arc<dyn TaskStore>,
    /// Opens the same storage again; `None` for in-process backends.
    pub reopen: Option<Reopen>,
    /// Dropped after the case (a temp dir, a schema to drop).
    pub guard: Box<dyn std::any::Any + Send>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("backend", &self.backend)
            .finish()
    }
}

/// Runs one case on a fresh multi-threaded runtime (used by the macro).
pub fn run_case<F: Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Stamps every case into the calling test module as its own `#[test]`. `$make` is an
/// `async fn() -> Option<Harness>`; `None` skips (the factory prints why).
///
/// ```text
/// mod conformance {
///     sequential_flow_store::task_store_tests!(super::make);
/// }
/// ```
#[macro_export]
macro_rules! task_store_tests {
    ($make:path) => {
        $crate::task_store_tests!(@cases $make;
            execute_saves_and_resume_needs_only_task_id,
            tasks_survive_a_reopen,
            expired_task_is_invisible_and_resume_says_when,
            delete_leaves_a_tombstone_then_forgets,
            edited_vm_state_is_refused_and_nothing_is_stored,
            foreign_vm_state_is_refused,
            resume_of_unknown_or_finished_task_is_refused,
            purge_settles_only_what_the_index_says_is_due,
            list_shows_live_tasks_newest_first,
            odd_ids_and_large_non_ascii_payloads_round_trip,
        );
    };
    (@cases $make:path; $($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                $crate::conformance::run_case(async {
                    if let Some(h) = $make().await {
                        $crate::conformance::$case(h).await;
                    }
                });
            }
        )*
    };
}

/// A test clock: the real time at creation, moved by [`TestClock::advance`].
#[derive(Debug, Clone)]
pub struct TestClock(Arc<AtomicI64>);

impl TestClock {
    /// A clock at the real time.
    pub fn new() -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        TestClock(Arc::new(AtomicI64::new(now)))
    }

    /// Now, in Unix milliseconds.
    pub fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }

    /// Moves the clock forward.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }

    /// The clock for [`FlowStore::with_clock`].
    pub fn clock(&self) -> crate::Clock {
        let c = self.0.clone();
        Arc::new(move || c.load(Ordering::SeqCst))
    }
}

impl Default for TestClock {
    fn default() -> Self {
        Self::new()
    }
}

/// The README's "Multiple Sequential Fetches" example, relative URLs and all.
pub const MULTI_FETCH: &str = "const user = fetch('api/user/1');
const posts = fetch('api/posts?userId=' + user.id);
({ user: user.name, postCount: posts.length })";

fn store(h: &Harness, clock: &TestClock) -> FlowStore {
    FlowStore::new(h.backend.clone()).with_clock(clock.clock())
}

fn exec(id: &str, code: &str) -> ExecuteRequest {
    ExecuteRequest::new(Some(id.into()), code, Value::Null)
}

fn reply(data: Value) -> FetchResponse {
    FetchResponse::new(200, "OK", data)
}

fn ttl(d: Duration) -> SaveOptions {
    SaveOptions::with_ttl(d)
}

/// `execute` saves a paused task; `resume({taskId, fetchResponse})` continues it twice and
/// the completed task is stored with its result.
pub async fn execute_saves_and_resume_needs_only_task_id(h: Harness) {
    let clock = TestClock::new();
    let s = store(&h, &clock);
    let first = s
        .execute(exec("task-1", MULTI_FETCH), &SaveOptions::default())
        .await
        .unwrap();
    assert_eq!(first.status, Status::Paused);
    assert_eq!(first.fetch_request.as_ref().unwrap().url, "api/user/1");
    assert_eq!(
        first.expires_at - first.updated_at,
        2 * 3_600_000,
        "default TTL"
    );
    let stored = s.get("task-1").await.unwrap().unwrap();
    assert_eq!(stored, first);
    clock.advance(Duration::from_secs(1));
    let second = s
        .resume(
            ResumeInput::stored("task-1", reply(json!({"id": 42, "name": "Alice"}))),
            &SaveOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(second.status, Status::Paused);
    assert_eq!(
        second.fetch_request.as_ref().unwrap().url,
        "api/posts?userId=42"
    );
    assert_eq!(second.created_at, first.created_at);
    assert!(second.updated_at > first.updated_at);
    let third = s
        .resume(
            ResumeInput::stored("task-1", reply(json!({"length": 5}))),
            &SaveOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(third.status, Status::Completed, "{third:?}");
    assert_eq!(third.result, Some(json!({"user": "Alice", "postCount": 5})));
    assert_eq!(third.vm_state, None);
    assert_eq!(s.get("task-1").await.unwrap().unwrap(), third);
}

/// What one backend value saved, another opened on the same storage reads and resumes.
pub async fn tasks_survive_a_reopen(h: Harness) {
    let Some(reopen) = &h.reopen else {
        println!("skipped tasks_survive_a_reopen: the backend lives in one process");
        return;
    };
    let clock = TestClock::new();
    let s = store(&h, &clock);
    s.execute(exec("t-reopen", MULTI_FETCH), &ttl(Duration::from_secs(60)))
        .await
        .unwrap();
    let other = FlowStore::new(reopen().await).with_clock(clock.clock());
    let t = other
        .resume(
            ResumeInput::stored("t-reopen", reply(json!({"id": 1, "name": "Bo"}))),
            &SaveOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(t.status, Status::Paused);
    assert_eq!(t.ttl, 60_000, "resume keeps the task's TTL");
    assert_eq!(s.get("t-reopen").await.unwrap().unwrap(), t);
}

/// After its TTL a task is invisible to `get` and `list`, and `resume` names when it expired.
pub async fn expired_task_is_invisible_and_resume_says_when(h: Harness) {
    let clock = TestClock::new();
    let s = store(&h, &clock);
    let t = s
        .execute(exec("short", MULTI_FETCH), &ttl(Duration::from_secs(10)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(11));
    match s.get("short").await {
        Err(Error::Expired { id, expired_at, .. }) => {
            assert_eq!(id, "short");
            assert_eq!(expired_at, t.expires_at);
        }
        other => panic!("expected Expired, got {other:?}"),
    }
    assert!(s.list(100).await.unwrap().is_empty());
    let err = s
        .resume(
            ResumeInput::stored("short", reply(json!({}))),
            &SaveOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Expired { id, expired_at, .. } if id == "short" && *expired_at == t.expires_at),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(
        msg.contains("\"short\"") && msg.contains("expired at"),
        "{msg}"
    );
    // also with the vmState in hand: an expired task stays expired
    let mut with_state = ResumeInput::stored("short", reply(json!({})));
    with_state.vm_state = t.vm_state.clone();
    assert!(matches!(
        s.resume(with_state, &SaveOptions::default()).await,
        Err(Error::Expired { .. })
    ));
}

/// `delete` leaves a tombstone (`resume` says deleted, and when); after the retention it is
/// forgotten.
pub async fn delete_leaves_a_tombstone_then_forgets(h: Harness) {
    let clock = TestClock::new();
    let s = store(&h, &clock);
    s.execute(exec("gone", MULTI_FETCH), &SaveOptions::default())
        .await
        .unwrap();
    let at = clock.now();
    assert!(s.delete("gone").await.unwrap());
    assert!(
        !s.delete("gone").await.unwrap(),
        "a second delete finds nothing"
    );
    match s
        .resume(
            ResumeInput::stored("gone", reply(json!({}))),
            &SaveOptions::default(),
        )
        .await
    {
        Err(Error::Deleted { id, deleted_at, .. }) => {
            assert_eq!(id, "gone");
            assert_eq!(deleted_at, at);
        }
        other => panic!("expected Deleted, got {other:?}"),
    }
    assert!(matches!(s.get("gone").await, Err(Error::Deleted { .. })));
    clock.advance(Duration::from_millis(
        crate::TOMBSTONE_RETENTION_MS as u64 + 1000,
    ));
    s.purge_expired().await.unwrap();
    assert_eq!(s.get("gone").await.unwrap(), None);
    assert!(matches!(
        s.resume(
            ResumeInput::stored("gone", reply(json!({}))),
            &SaveOptions::default()
        )
        .await,
        Err(Error::NotFound { .. })
    ));
}

/// A vmState whose recorded clock value was edited fails its checksum; nothing is stored.
pub async fn edited_vm_state_is_refused_and_nothing_is_stored(h: Harness) {
    let clock = TestClock::new();
    let s = store(&h, &clock);
    let code = "const t = Date.now(); const r = fetch('https://x.test/a'); ({ t, r })";
    let t = s
        .execute(exec("clocked", code), &SaveOptions::default())
        .await
        .unwrap();
    let state = t.vm_state.clone().unwrap();
    let mut doc: Value = serde_json::from_str(&state).unwrap();
    let journal = doc["body"]["journal"].as_array_mut().unwrap();
    let entry = journal
        .iter_mut()
        .find(|e| e["kind"] == "now")
        .expect("the recorded Date.now()");
    assert!(bump_first_number(&mut entry["result"]), "{entry}");
    let edited = doc.to_string();
    assert_ne!(edited, state);
    let mut input = ResumeInput::stored("clocked", reply(json!(1)));
    input.vm_state = Some(edited);
    let err = s.resume(input, &SaveOptions::default()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid { .. }) && err.to_string().contains("checksum"),
        "{err}"
    );
    assert_eq!(
        s.get("clocked").await.unwrap().unwrap(),
        t,
        "nothing stored"
    );
}

/// Adds one to the first number in `v` (a recorded clock value); whether there was one.
fn bump_first_number(v: &mut Value) -> bool {
    match v {
        Value::Number(n) => {
            *v = json!(n.as_i64().unwrap_or(0) + 1);
            true
        }
        Value::Array(a) => a.iter_mut().any(bump_first_number),
        Value::Object(o) => o.values_mut().any(bump_first_number),
        _ => false,
    }
}

/// A `taskId` with another task's vmState is refused; neither task changes.
pub async fn foreign_vm_state_is_refused(h: Harness) {
    let clock = TestClock::new();
    let s = store(&h, &clock);
    let a = s
        .execute(exec("a", MULTI_FETCH), &SaveOptions::default())
        .await
        .unwrap();
    let b = s
        .execute(exec("b", MULTI_FETCH), &SaveOptions::default())
        .await
        .unwrap();
    let mut input = ResumeInput::stored("a", reply(json!({"id": 1, "name": "x"})));
    input.vm_state = b.vm_state.clone();
    let err = s.resume(input, &SaveOptions::default()).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::Invalid { .. }) && msg.contains("\"a\"") && msg.contains("\"b\""),
        "{msg}"
    );
    assert_eq!(s.get("a").await.unwrap().unwrap(), a);
    assert_eq!(s.get("b").await.unwrap().unwrap(), b);
}

/// Unknown task: NotFound naming it; a completed task: NotPaused; a response to no pending
/// call: Invalid, the stored task untouched.
pub async fn resume_of_unknown_or_finished_task_is_refused(h: Harness) {
    let clock = TestClock::new();
    let s = store(&h, &clock);
    let err = s
        .resume(
            ResumeInput::stored("nope", reply(json!({}))),
            &SaveOptions::default(),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { id, .. } if id == "nope"),
        "{err:?}"
    );
    let done = s
        .execute(exec("done", "1 + 1"), &SaveOptions::default())
        .await
        .unwrap();
    assert_eq!(done.result, Some(json!(2)));
    assert!(matches!(
        s.resume(
            ResumeInput::stored("done", reply(json!({}))),
            &SaveOptions::default()
        )
        .await,
        Err(Error::NotPaused { .. })
    ));
    let p = s
        .execute(exec("p", MULTI_FETCH), &SaveOptions::default())
        .await
        .unwrap();
    let mut bad = ResumeInput::stored("p", reply(json!({})));
    bad.fetch_response.as_mut().unwrap().id = Some(json!("call-99"));
    let err = s.resume(bad, &SaveOptions::default()).await.unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert_eq!(s.get("p").await.unwrap().unwrap(), p);
}

/// 300 tasks with staggered TTLs: each purge settles exactly the expired ones (read from the
/// expiry index), tombstones go after their retention, and nothing live is touched.
pub async fn purge_settles_only_what_the_index_says_is_due(h: Harness) {
    let clock = TestClock::new();
    let s = store(&h, &clock);
    for i in 0..300u64 {
        s.execute(
            exec(&format!("bulk-{i:03}"), "fetch('https://x.test/' + 1)"),
            &ttl(Duration::from_secs(10 + i % 3 * 10)),
        )
        .await
        .unwrap();
    }
    assert_eq!(s.list(1000).await.unwrap().len(), 300);
    clock.advance(Duration::from_secs(15));
    let changed = s.purge_expired().await.unwrap();
    assert_eq!(changed, 100, "the 10 s third");
    assert_eq!(s.purge_expired().await.unwrap(), 0, "nothing more is due");
    assert_eq!(s.list(1000).await.unwrap().len(), 200);
    assert!(s.backend().due(clock.now(), 10).await.unwrap().is_empty());
    assert!(matches!(
        s.get("bulk-000").await,
        Err(Error::Expired { .. })
    ));
    assert!(s.get("bulk-001").await.unwrap().is_some());
    clock.advance(Duration::from_millis(
        crate::TOMBSTONE_RETENTION_MS as u64 + 60_000,
    ));
    s.purge_expired().await.unwrap();
    assert!(s.list(1000).await.unwrap().is_empty());
    assert_eq!(s.get("bulk-000").await.unwrap(), None);
    assert_eq!(s.get("bulk-002").await.unwrap(), None);
    assert_eq!(
        s.backend().get("bulk-002").await.unwrap(),
        None,
        "forgotten"
    );
}

/// `list` returns live tasks, most recently updated first, up to the limit.
pub async fn list_shows_live_tasks_newest_first(h: Harness) {
    let clock = TestClock::new();
    let s = store(&h, &clock);
    for id in ["l1", "l2", "l3"] {
        s.execute(exec(id, MULTI_FETCH), &SaveOptions::default())
            .await
            .unwrap();
        clock.advance(Duration::from_millis(5));
    }
    s.delete("l2").await.unwrap();
    let ids: Vec<String> = s
        .list(10)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.id)
        .collect();
    assert_eq!(ids, ["l3", "l1"]);
    assert_eq!(s.list(1).await.unwrap().len(), 1);
}

/// Ids with slashes, spaces and non-ASCII, and a large non-ASCII result, round-trip.
pub async fn odd_ids_and_large_non_ascii_payloads_round_trip(h: Harness) {
    let clock = TestClock::new();
    let s = store(&h, &clock);
    let big = "ünïcødé ✓ ".repeat(20_000);
    let code = format!("const r = fetch('https://x.test/'); r.s + {big:?}.length");
    for id in ["../etc/passwd", "with space", "ÿ-ß/ü", "UPPER.lower_1-2"] {
        let t = s
            .execute(exec(id, &code), &SaveOptions::default())
            .await
            .unwrap();
        assert_eq!(s.get(id).await.unwrap().unwrap(), t, "{id}");
        let done = s
            .resume(
                ResumeInput::stored(id, reply(json!({"s": big}))),
                &SaveOptions::default(),
            )
            .await
            .unwrap();
        assert_eq!(done.status, Status::Completed, "{done:?}");
        assert_eq!(s.backend().get(id).await.unwrap(), Some(Record::Task(done)));
    }
}
