//! The conformance suite: every backend runs every case through [`crate::conformance_tests!`].
//!
//! Each case is a `pub async fn` taking a [`Harness`]; a new case added here runs on every
//! backend. Cases panic (assert) on a contract violation.

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde_json::{Value, json};

pub mod crash;

use crate::{
    Claim, ClaimRequest, Created, DeleteMode, Error, Fence, JournalRecord, NewRun, NewRunOf,
    NewTaskVersion, Order, Page, RunFilter, RunId, RunStatus, StorageAdapter, Takeover, TaskName,
    VersionSel, now_millis,
};

/// A boxed future, for [`Harness::reopen`].
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// Opens the same storage again as a new adapter.
pub type Reopen = Box<dyn Fn() -> BoxFuture<Arc<dyn StorageAdapter>> + Send + Sync>;

/// A fresh, empty store for one case.
pub struct Harness {
    /// The store under test.
    pub store: Arc<dyn StorageAdapter>,
    /// Opens the same storage again as a new adapter (a new "process"); `None` for purely
    /// in-memory backends.
    pub reopen: Option<Reopen>,
    /// Dropped after the case (a temp dir, a schema to drop).
    pub guard: Box<dyn std::any::Any + Send>,
}

impl std::fmt::Debug for Harness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Harness")
            .field("store", &self.store)
            .finish()
    }
}

impl Harness {
    /// The store after a reopen, or the same store when the backend cannot reopen.
    pub async fn reopened(&self) -> Arc<dyn StorageAdapter> {
        match &self.reopen {
            Some(f) => f().await,
            None => self.store.clone(),
        }
    }
}

/// Runs one case on a fresh multi-threaded runtime (used by the macro).
pub fn run_case<F: Future<Output = ()>>(f: F) {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime")
        .block_on(f)
}

/// Stamps every conformance case into the calling test module as its own `#[test]`.
///
/// `$make` is an `async fn() -> Option<Harness>`; `None` skips the case (a backend whose server
/// is absent; the factory prints why). A durable backend also passes `durable: $durable`, an
/// `fn() -> Durable`, which adds the SIGKILL crash case
/// ([`crash::acknowledged_appends_survive_sigkill`]). `MemoryStore` leaves it out: its storage
/// dies with its process, so there is nothing to survive a kill.
///
/// ```text
/// mod conformance {
///     sequential_adaptor::conformance_tests!(super::make, durable: super::durable);
/// }
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($make:path, durable: $durable:path) => {
        $crate::conformance_tests!($make);

        #[test]
        fn acknowledged_appends_survive_sigkill() {
            $crate::conformance::crash::acknowledged_appends_survive_sigkill(
                &$crate::conformance::crash::test_path(
                    module_path!(),
                    "acknowledged_appends_survive_sigkill",
                ),
                $durable(),
            );
        }
    };
    ($make:path) => {
        $crate::conformance_tests!(@cases $make;
            versions_are_deduplicated_by_hash_and_numbered,
            latest_and_pinned_version_lookup,
            create_run_with_idempotency_key,
            create_run_needs_an_existing_version,
            create_run_claimed_leases_only_a_new_run,
            create_run_of_pins_the_version_it_picks,
            update_run_is_compare_and_swap,
            append_is_idempotent_on_run_and_seq,
            append_rejects_gaps_and_foreign_records,
            multi_record_append_is_all_or_nothing,
            read_journal_pages_with_after_seq_and_limit,
            journal_is_durable_across_reopen,
            claim_picks_only_runnable_runs,
            claim_bumps_fencing_token_and_stale_appends_are_fenced,
            renew_and_release_need_the_current_token,
            settle_run_updates_and_releases_in_one_step,
            append_and_settle_writes_records_then_run,
            claim_run_takes_one_run_and_steals_only_when_asked,
            claim_hints_when_given_are_true,
            overdue_timers_are_claimed_in_deadline_order,
            concurrent_claimers_claim_each_run_exactly_once,
            signals_keep_order_and_are_durable,
            signal_wakes_waiting_run_and_refuses_finished_run,
            list_runs_filters_by_task_and_status,
            list_runs_pages_without_gaps_or_repeats_while_adding,
            prune_removes_only_old_finished_runs,
            delete_task_with_active_runs_needs_force,
            delete_run_removes_an_ended_run_and_refuses_an_active_one,
            large_payload_and_non_ascii_round_trip,
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

/// `Some(value)` when an administrative call (part 2 of the contract) worked; `None`, after a
/// line saying so, when the backend answers `Unsupported` — the case is then skipped.
fn admin<T>(what: &str, r: crate::Result<T>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(Error::Unsupported { what: why }) => {
            println!("skipped {what}: {why}");
            None
        }
        Err(e) => panic!("{what}: {e}"),
    }
}

fn name(s: &str) -> TaskName {
    TaskName::new(s).unwrap()
}

fn version(task: &str, code: &str) -> NewTaskVersion {
    NewTaskVersion {
        task: name(task),
        code: code.to_string(),
        graph: None,
        config: json!({"name": task}),
    }
}

fn rec(run: RunId, seq: u64, kind: &str, data: Value) -> JournalRecord {
    JournalRecord {
        run,
        seq,
        kind: kind.to_string(),
        at: 1_700_000_000_000 + seq as i64,
        data,
    }
}

/// A stored version of `task` (as [`task_with_version`]) and its content hash.
async fn task_with_hash(store: &dyn StorageAdapter, task: &str) -> (u32, String) {
    let v = task_with_version(store, task).await;
    let task = name(task);
    let stored = store.get_task_version(&task, VersionSel::Exact(v)).await;
    (v, stored.unwrap().hash)
}

async fn task_with_version(store: &dyn StorageAdapter, task: &str) -> u32 {
    store
        .put_task_version(version(task, "1 + 1"))
        .await
        .unwrap()
        .version
        .version
}

async fn queued_run(store: &dyn StorageAdapter, task: &str, input: Value) -> crate::Run {
    let v = task_with_version(store, task).await;
    match store
        .create_run(NewRun::new(name(task), v, input))
        .await
        .unwrap()
    {
        Created::Created(r) => r,
        Created::Existing(r) => panic!("a run without key came back as existing: {r:?}"),
    }
}

/// A new queued run of task `t` and its claim by worker `w` (for cases with no other runnable
/// run).
async fn claimed_run(store: &dyn StorageAdapter) -> (crate::Run, Claim) {
    let run = queued_run(store, "t", json!({})).await;
    let claim = store
        .claim(&claim_req("w", now_millis(), 60_000, 1))
        .await
        .unwrap()
        .remove(0);
    (run, claim)
}

fn claim_req(worker: &str, now: i64, lease_ms: u64, limit: usize) -> ClaimRequest {
    ClaimRequest {
        worker: worker.to_string(),
        now,
        lease_ms,
        limit,
    }
}

/// Puts the same content twice and two other contents: versions 1, 1 (not created), 2, 3.
pub async fn versions_are_deduplicated_by_hash_and_numbered(h: Harness) {
    let s = &*h.store;
    let a = s.put_task_version(version("t", "a")).await.unwrap();
    assert!(a.created);
    assert_eq!(a.version.version, 1);
    assert_eq!(a.version.hash, version("t", "a").content_hash());
    let again = s.put_task_version(version("t", "a")).await.unwrap();
    assert!(
        !again.created,
        "identical content must not create a version"
    );
    assert_eq!(again.version.version, 1);
    assert_eq!(
        s.put_task_version(version("t", "b"))
            .await
            .unwrap()
            .version
            .version,
        2
    );
    assert_eq!(
        s.put_task_version(version("t", "c"))
            .await
            .unwrap()
            .version
            .version,
        3
    );
    let back = s.put_task_version(version("t", "a")).await.unwrap();
    assert!(!back.created);
    assert_eq!(
        back.version.version, 1,
        "old content maps to its old version"
    );
    // graph and config are part of the content
    let mut g = version("t", "a");
    g.graph = Some(json!({"initial": "x"}));
    assert_eq!(s.put_task_version(g).await.unwrap().version.version, 4);
    // another task numbers from 1
    assert_eq!(
        s.put_task_version(version("u", "a"))
            .await
            .unwrap()
            .version
            .version,
        1
    );
    let Some(tasks) = admin("list_tasks", s.list_tasks().await) else {
        return;
    };
    let names: Vec<_> = tasks
        .iter()
        .map(|t| (t.name.as_str(), t.latest_version))
        .collect();
    assert_eq!(names, vec![("t", 4), ("u", 1)]);
}

/// `Latest` is the highest number; `Exact(n)` is that version; missing ones are `NotFound`.
pub async fn latest_and_pinned_version_lookup(h: Harness) {
    let s = &*h.store;
    for code in ["one", "two", "three"] {
        s.put_task_version(version("t", code)).await.unwrap();
    }
    let latest = s
        .get_task_version(&name("t"), VersionSel::Latest)
        .await
        .unwrap();
    assert_eq!((latest.version, latest.code.as_str()), (3, "three"));
    let two = s
        .get_task_version(&name("t"), VersionSel::Exact(2))
        .await
        .unwrap();
    assert_eq!((two.version, two.code.as_str()), (2, "two"));
    assert_eq!(two.config, json!({"name": "t"}));
    let missing = s.get_task_version(&name("t"), VersionSel::Exact(9)).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    let unknown = s.get_task_version(&name("nope"), VersionSel::Latest).await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );
}

/// Same key + same input → the existing run; same key + other input → `Conflict`.
pub async fn create_run_with_idempotency_key(h: Harness) {
    let s = &*h.store;
    let v = task_with_version(s, "t").await;
    let mut new = NewRun::new(name("t"), v, json!({"n": 1}));
    new.idempotency_key = Some("order-17".into());
    let first = s.create_run(new.clone()).await.unwrap();
    let Created::Created(run) = first else {
        panic!("first create must create")
    };
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(run.idempotency_key.as_deref(), Some("order-17"));
    let second = s.create_run(new.clone()).await.unwrap();
    assert_eq!(second, Created::Existing(run.clone()));
    let mut other = new.clone();
    other.input = json!({"n": 2});
    let conflict = s.create_run(other).await;
    assert!(
        matches!(conflict, Err(Error::Conflict { .. })),
        "{conflict:?}"
    );
    // no key: always a new run
    let a = s
        .create_run(NewRun::new(name("t"), v, json!({})))
        .await
        .unwrap();
    let b = s
        .create_run(NewRun::new(name("t"), v, json!({})))
        .await
        .unwrap();
    assert_ne!(a.run().id, b.run().id);
    assert!(a.run().id < b.run().id, "run ids sort by creation");
    assert_eq!(s.get_run(run.id).await.unwrap(), run);
}

/// `create_run_of` pins the version it picks at the moment it stores the run (the latest, or
/// the one asked for), answers an unknown task or version with `NotFound` and stores nothing,
/// and treats an idempotency key as `create_run` does.
pub async fn create_run_of_pins_the_version_it_picks(h: Harness) {
    let s = &*h.store;
    let one = task_with_version(s, "t").await;
    let first = s
        .create_run_of(NewRunOf::latest(name("t"), json!({"n": 1})))
        .await
        .unwrap();
    let Created::Created(first) = first else {
        panic!("a run without key came back as existing: {first:?}")
    };
    assert_eq!((first.version, first.status), (one, RunStatus::Queued));
    assert_eq!(first.input, json!({"n": 1}));
    assert_eq!(s.get_run(first.id).await.unwrap(), first);
    let two = s
        .put_task_version(version("t", "2 + 2"))
        .await
        .unwrap()
        .version
        .version;
    assert_eq!(two, one + 1);
    let latest = s
        .create_run_of(NewRunOf::latest(name("t"), json!({})))
        .await
        .unwrap();
    assert_eq!(latest.run().version, two, "the latest version when stored");
    let mut pinned = NewRunOf::latest(name("t"), json!({}));
    pinned.version = VersionSel::Exact(one);
    assert_eq!(s.create_run_of(pinned).await.unwrap().run().version, one);
    // nothing stored for an unknown task or version
    let mut missing = NewRunOf::latest(name("t"), json!({}));
    missing.version = VersionSel::Exact(two + 1);
    let ghost = NewRunOf::latest(name("ghost"), json!({}));
    for bad in [missing, ghost] {
        let got = s.create_run_of(bad.clone()).await;
        assert!(
            matches!(got, Err(Error::NotFound { .. })),
            "{bad:?}: {got:?}"
        );
    }
    let before = admin(
        "list_runs",
        s.list_runs(&RunFilter::default(), Page::first(100)).await,
    );
    // a key: the same input finds the run, another input conflicts
    let mut keyed = NewRunOf::latest(name("t"), json!({"n": 2}));
    keyed.idempotency_key = Some("order-18".into());
    let Created::Created(run) = s.create_run_of(keyed.clone()).await.unwrap() else {
        panic!("the first use of a key must create")
    };
    assert_eq!(run.idempotency_key.as_deref(), Some("order-18"));
    assert_eq!(
        s.create_run_of(keyed.clone()).await.unwrap(),
        Created::Existing(run.clone())
    );
    keyed.input = json!({"n": 3});
    let conflict = s.create_run_of(keyed).await;
    assert!(
        matches!(conflict, Err(Error::Conflict { .. })),
        "{conflict:?}"
    );
    if let Some(before) = before {
        let after = s
            .list_runs(&RunFilter::default(), Page::first(100))
            .await
            .unwrap();
        assert_eq!(
            after.runs.len(),
            before.runs.len() + 1,
            "only the keyed run was added"
        );
    }
}

/// `create_run_claimed` stores a new run already leased to the caller (no other claimer gets
/// it); with the same idempotency key and input it returns the existing run, unclaimed.
pub async fn create_run_claimed_leases_only_a_new_run(h: Harness) {
    let s = &*h.store;
    let v = task_with_version(s, "t").await;
    let now = now_millis();
    let mut new = NewRun::new(name("t"), v, json!({"n": 1}));
    new.idempotency_key = Some("k".into());
    let (created, claim) = s
        .create_run_claimed(new.clone(), &claim_req("w", now, 60_000, 1))
        .await
        .unwrap();
    let Created::Created(run) = created else {
        panic!("a new run came back as existing: {created:?}");
    };
    let claim = claim.expect("a new run is claimed");
    assert_eq!(claim.run.id, run.id);
    assert_eq!(claim.run.status, RunStatus::Running);
    assert_eq!(claim.run.attempt, 1);
    assert_eq!(claim.token, claim.run.fence);
    assert_eq!(
        claim.run.lease.as_ref().map(|l| l.owner.as_str()),
        Some("w")
    );
    assert_eq!(s.get_run(run.id).await.unwrap(), claim.run);
    let others = s.claim(&claim_req("x", now, 60_000, 10)).await.unwrap();
    assert!(others.is_empty(), "claimed twice: {others:?}");
    let (again, none) = s
        .create_run_claimed(new, &claim_req("x", now, 60_000, 1))
        .await
        .unwrap();
    assert!(
        matches!(again, Created::Existing(ref r) if r.id == run.id),
        "{again:?}"
    );
    assert!(none.is_none(), "an existing run is not claimed again");
    s.append(
        run.id,
        &[rec(run.id, 0, "log", json!(0))],
        Fence::Token(claim.token),
    )
    .await
    .unwrap();
}

/// What a claim tells beside the run, when an adapter tells it, is true: the journal's length
/// ([`Claim::journal_len`]) for a run claimed from `queued`, and for no other; the hash of
/// the run's task version ([`Claim::version_hash`]). By `claim` and by `claim_run` alike.
pub async fn claim_hints_when_given_are_true(h: Harness) {
    let s = &*h.store;
    let (v, hash) = task_with_hash(s, "t").await;
    let check = |c: &Claim, first: bool, len: u64| {
        if let Some(n) = c.journal_len {
            assert!(first, "a length told for a run that was not queued: {c:?}");
            assert_eq!(n, len, "{c:?}");
        }
        if let Some(told) = &c.version_hash {
            assert_eq!(told, &hash, "{c:?}");
        }
    };
    let now = now_millis();
    let mut made = Vec::new();
    for _ in 0..2 {
        let new = NewRun::new(name("t"), v, json!({}));
        made.push(s.create_run(new).await.unwrap().into_run());
    }
    let (a, b) = (&made[0], &made[1]);
    let first = s.claim(&claim_req("w", now, 60_000, 1)).await.unwrap();
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(first[0].run.id, a.id);
    check(&first[0], true, 0);
    let by_id = s
        .claim_run(b.id, &claim_req("w", now, 60_000, 1), Takeover::IfClaimable)
        .await
        .unwrap()
        .expect("a queued run is claimed");
    check(&by_id, true, 0);
    let token = first[0].token;
    s.append(
        a.id,
        &[rec(a.id, 0, "log", json!(0)), rec(a.id, 1, "log", json!(1))],
        Fence::Token(token),
    )
    .await
    .unwrap();
    s.release(a.id, token).await.unwrap();
    let again = s.claim(&claim_req("w", now, 60_000, 1)).await.unwrap();
    assert_eq!(again.len(), 1, "{again:?}");
    check(&again[0], false, 2);
    s.release(a.id, again[0].token).await.unwrap();
    let again = s
        .claim_run(a.id, &claim_req("w", now, 60_000, 1), Takeover::IfClaimable)
        .await
        .unwrap()
        .expect("a released run is claimed");
    check(&again, false, 2);
}

/// For a backend whose claims tell what they read ([`Claim::journal_len`],
/// [`Claim::version_hash`]): a new run's claim, by `claim` or by `claim_run`, tells an empty journal
/// and the version's hash; a run claimed again is told the hash and no length. Telling is
/// optional, so `conformance_tests!` does not stamp this case: a backend that tells calls it
/// from a test of its own.
pub async fn claims_tell_the_journal_length_and_the_version_hash(s: &dyn StorageAdapter) {
    let (v, hash) = task_with_hash(s, "told").await;
    let req = claim_req("w", now_millis(), 60_000, 1);
    let mut runs = Vec::new();
    for _ in 0..2 {
        let new = NewRun::new(name("told"), v, json!({}));
        runs.push(s.create_run(new).await.unwrap().into_run().id);
    }
    let first = s.claim(&req).await.unwrap();
    let by_id = s
        .claim_run(runs[1], &req, Takeover::IfClaimable)
        .await
        .unwrap()
        .expect("a queued run is claimed");
    for c in [&first[0], &by_id] {
        assert_eq!(c.journal_len, Some(0), "{c:?}");
        assert_eq!(c.version_hash.as_deref(), Some(hash.as_str()), "{c:?}");
    }
    s.release(runs[0], first[0].token).await.unwrap();
    let again = s
        .claim_run(runs[0], &req, Takeover::IfClaimable)
        .await
        .unwrap()
        .expect("a released run is claimed");
    assert_eq!(
        again.journal_len, None,
        "told a length for a run that was not queued"
    );
    assert_eq!(again.version_hash.as_deref(), Some(hash.as_str()));
}

/// A run pins an existing version; an unknown task or version is `NotFound`.
pub async fn create_run_needs_an_existing_version(h: Harness) {
    let s = &*h.store;
    let v = task_with_version(s, "t").await;
    let bad = s.create_run(NewRun::new(name("t"), v + 1, json!({}))).await;
    assert!(matches!(bad, Err(Error::NotFound { .. })), "{bad:?}");
    let bad = s.create_run(NewRun::new(name("ghost"), 1, json!({}))).await;
    assert!(matches!(bad, Err(Error::NotFound { .. })), "{bad:?}");
    let unknown = s.get_run(RunId::new()).await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );
}

/// `update_run` writes only over the revision it read, then bumps it.
pub async fn update_run_is_compare_and_swap(h: Harness) {
    let s = &*h.store;
    let run = queued_run(s, "t", json!({})).await;
    let mut edit = run.clone();
    edit.status = RunStatus::Waiting;
    edit.waiting_for = Some("approved".into());
    edit.wake_at = Some(now_millis() + 60_000);
    let updated = s.update_run(&edit).await.unwrap();
    assert_eq!(updated.revision, run.revision + 1);
    assert_eq!(updated.status, RunStatus::Waiting);
    assert_eq!(s.get_run(run.id).await.unwrap(), updated);
    // the old copy is stale now
    let mut stale = run.clone();
    stale.status = RunStatus::Cancelled;
    let err = s.update_run(&stale).await;
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");
    assert_eq!(s.get_run(run.id).await.unwrap().status, RunStatus::Waiting);
    // finishing sets ended_at
    let mut done = updated.clone();
    done.status = RunStatus::Succeeded;
    done.output = Some(json!({"ok": true}));
    let done = s.update_run(&done).await.unwrap();
    assert!(done.ended_at.is_some());
    assert_eq!(done.output, Some(json!({"ok": true})));
}

/// Re-appending the same records is a no-op; a different record at a stored seq is `Conflict`.
pub async fn append_is_idempotent_on_run_and_seq(h: Harness) {
    let s = &*h.store;
    let run = queued_run(s, "t", json!({})).await.id;
    let recs: Vec<_> = (0..4)
        .map(|i| rec(run, i, "log", json!({"i": i})))
        .collect();
    s.append(run, &recs, Fence::None).await.unwrap();
    s.append(run, &recs, Fence::None).await.unwrap();
    s.append(run, &recs[1..3], Fence::None).await.unwrap();
    assert_eq!(s.read_journal(run, None, 100).await.unwrap(), recs);
    let mut changed = recs[2].clone();
    changed.data = json!({"i": "other"});
    let err = s.append(run, &[changed], Fence::None).await;
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");
    // overlap: stored prefix identical, the rest new
    let more: Vec<_> = (2..6)
        .map(|i| rec(run, i, "log", json!({"i": i})))
        .collect();
    s.append(run, &more, Fence::None).await.unwrap();
    let all = s.read_journal(run, None, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.seq).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4, 5]
    );
    s.append(run, &[], Fence::None).await.unwrap();
}

/// A gap in seqs is `Invalid`; so is a record of another run; an unknown run is `NotFound`.
pub async fn append_rejects_gaps_and_foreign_records(h: Harness) {
    let s = &*h.store;
    let run = queued_run(s, "t", json!({})).await.id;
    let gap = s
        .append(run, &[rec(run, 1, "log", json!(1))], Fence::None)
        .await;
    assert!(matches!(gap, Err(Error::Invalid { .. })), "{gap:?}");
    let holes = s
        .append(
            run,
            &[rec(run, 0, "log", json!(0)), rec(run, 2, "log", json!(2))],
            Fence::None,
        )
        .await;
    assert!(matches!(holes, Err(Error::Invalid { .. })), "{holes:?}");
    assert!(
        s.read_journal(run, None, 10).await.unwrap().is_empty(),
        "a failed append writes nothing"
    );
    let other = RunId::new();
    let foreign = s
        .append(run, &[rec(other, 0, "log", json!(0))], Fence::None)
        .await;
    assert!(matches!(foreign, Err(Error::Invalid { .. })), "{foreign:?}");
    let unknown = s
        .append(other, &[rec(other, 0, "log", json!(0))], Fence::None)
        .await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );
    let unknown = s.read_journal(other, None, 10).await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );
}

/// A multi-record append that fails writes none of its records: a conflict, a foreign record
/// or a stale fence anywhere in the batch leaves the journal as it was, and the next append
/// at the next seq works. (That a batch is also whole after a crash is checked by the SIGKILL
/// case on durable backends.)
pub async fn multi_record_append_is_all_or_nothing(h: Harness) {
    let s = &*h.store;
    let run = queued_run(s, "t", json!({})).await.id;
    let base: Vec<_> = (0..3)
        .map(|i| rec(run, i, "log", json!({"i": i})))
        .collect();
    s.append(run, &base, Fence::None).await.unwrap();
    let journal = || async { s.read_journal(run, None, 100).await.unwrap() };
    // seq 0 identical, seq 1 different, seq 2 identical, seq 3 new: nothing may land
    let mut conflict = vec![base[0].clone(), base[1].clone(), base[2].clone()];
    conflict[1].data = json!({"i": "changed"});
    conflict.push(rec(run, 3, "log", json!(3)));
    let err = s.append(run, &conflict, Fence::None).await;
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");
    assert_eq!(journal().await, base, "a conflicting batch writes nothing");
    // new records followed by a record of another run
    let foreign = vec![
        rec(run, 3, "log", json!(3)),
        rec(run, 4, "log", json!(4)),
        rec(RunId::new(), 5, "log", json!(5)),
    ];
    let err = s.append(run, &foreign, Fence::None).await;
    assert!(matches!(err, Err(Error::Invalid { .. })), "{err:?}");
    assert_eq!(
        journal().await,
        base,
        "a batch with a foreign record writes nothing"
    );
    // a fenced batch
    let v = s
        .claim(&claim_req("w", now_millis(), 60_000, 1))
        .await
        .unwrap();
    assert_eq!(v.len(), 1);
    let stale = v[0].token - 1;
    let batch: Vec<_> = (3..6).map(|i| rec(run, i, "log", json!(i))).collect();
    let err = s.append(run, &batch, Fence::Token(stale)).await;
    assert!(matches!(err, Err(Error::Fenced { .. })), "{err:?}");
    assert_eq!(journal().await, base, "a fenced batch writes nothing");
    // and the whole batch lands with the right token
    s.append(run, &batch, Fence::Token(v[0].token))
        .await
        .unwrap();
    assert_eq!(journal().await.len(), 6);
}

/// `read_journal` pages with `after_seq` and `limit`.
pub async fn read_journal_pages_with_after_seq_and_limit(h: Harness) {
    let s = &*h.store;
    let run = queued_run(s, "t", json!({})).await.id;
    for chunk in (0..25u64).collect::<Vec<_>>().chunks(4) {
        let recs: Vec<_> = chunk
            .iter()
            .map(|&i| rec(run, i, "call.completed", json!({"i": i})))
            .collect();
        s.append(run, &recs, Fence::None).await.unwrap();
    }
    let seqs = |v: Vec<JournalRecord>| v.into_iter().map(|r| r.seq).collect::<Vec<_>>();
    assert_eq!(
        seqs(s.read_journal(run, None, 10).await.unwrap()),
        (0..10).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(s.read_journal(run, Some(9), 10).await.unwrap()),
        (10..20).collect::<Vec<_>>()
    );
    assert_eq!(
        seqs(s.read_journal(run, Some(19), 10).await.unwrap()),
        (20..25).collect::<Vec<_>>()
    );
    assert!(s.read_journal(run, Some(24), 10).await.unwrap().is_empty());
    assert!(s.read_journal(run, Some(100), 10).await.unwrap().is_empty());
    assert_eq!(
        seqs(s.read_journal(run, Some(0), 1).await.unwrap()),
        vec![1]
    );
}

/// Appended records, runs and versions survive closing and reopening the storage.
pub async fn journal_is_durable_across_reopen(h: Harness) {
    let run = queued_run(&*h.store, "t", json!({"keep": "me"})).await;
    let recs: Vec<_> = (0..5)
        .map(|i| rec(run.id, i, "log", json!({"line": i})))
        .collect();
    h.store.append(run.id, &recs, Fence::None).await.unwrap();
    let s = h.reopened().await;
    assert_eq!(s.get_run(run.id).await.unwrap(), run);
    assert_eq!(s.read_journal(run.id, None, 100).await.unwrap(), recs);
    assert_eq!(
        s.get_task_version(&name("t"), VersionSel::Latest)
            .await
            .unwrap()
            .version,
        1
    );
    // and the reopened store continues the journal
    s.append(run.id, &[rec(run.id, 5, "log", json!(5))], Fence::None)
        .await
        .unwrap();
    assert_eq!(s.read_journal(run.id, Some(4), 10).await.unwrap().len(), 1);
}

/// Claim takes queued runs, due waiting runs and running runs with expired leases — only those.
pub async fn claim_picks_only_runnable_runs(h: Harness) {
    let s = &*h.store;
    let now = now_millis();
    let mut expect = HashSet::new();
    let queued = queued_run(s, "t", json!("queued")).await;
    expect.insert(queued.id);
    let set = |mut r: crate::Run, st: RunStatus, wake: Option<i64>| {
        r.status = st;
        r.wake_at = wake;
        r
    };
    let due = queued_run(s, "t", json!("due")).await;
    s.update_run(&set(due.clone(), RunStatus::Waiting, Some(now - 1)))
        .await
        .unwrap();
    expect.insert(due.id);
    let later = queued_run(s, "t", json!("later")).await;
    s.update_run(&set(later, RunStatus::Waiting, Some(now + 3_600_000)))
        .await
        .unwrap();
    let event = queued_run(s, "t", json!("event")).await;
    s.update_run(&set(event, RunStatus::Waiting, None))
        .await
        .unwrap();
    for st in [
        RunStatus::Paused,
        RunStatus::Succeeded,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ] {
        let r = queued_run(s, "t", json!(st.as_str())).await;
        s.update_run(&set(r, st, Some(now - 1))).await.unwrap();
    }
    // one run with a live lease, one whose lease expired
    let live = queued_run(s, "t", json!("live")).await;
    let expired = queued_run(s, "t", json!("expired")).await;
    let first = s.claim(&claim_req("w0", now, 60_000, 100)).await.unwrap();
    let got: HashSet<_> = first.iter().map(|c| c.run.id).collect();
    assert!(got.contains(&live.id) && got.contains(&expired.id) && got.contains(&queued.id));
    assert_eq!(got.len(), 4, "queued, due, live and expired: {got:?}");
    // let the "expired" lease lapse by renewing it into the past
    let exp_claim = first.iter().find(|c| c.run.id == expired.id).unwrap();
    s.renew(expired.id, exp_claim.token, now - 120_000, 1_000)
        .await
        .unwrap();
    let second = s.claim(&claim_req("w1", now, 60_000, 100)).await.unwrap();
    let ids: Vec<_> = second.iter().map(|c| c.run.id).collect();
    assert_eq!(
        ids,
        vec![expired.id],
        "only the run whose lease expired is claimable again"
    );
    assert!(second[0].run.status == RunStatus::Running);
    assert_eq!(second[0].run.lease.as_ref().unwrap().owner, "w1");
    let none = s.claim(&claim_req("w2", now, 60_000, 100)).await.unwrap();
    assert!(none.is_empty(), "nothing else is runnable: {none:?}");
    let _ = expect;
}

/// Each claim bumps the fencing token; appends with the old token fail with `Fenced`.
pub async fn claim_bumps_fencing_token_and_stale_appends_are_fenced(h: Harness) {
    let s = &*h.store;
    let now = now_millis();
    let run = queued_run(s, "t", json!({})).await.id;
    let c1 = s
        .claim(&claim_req("w1", now - 100_000, 1_000, 1))
        .await
        .unwrap();
    assert_eq!(c1.len(), 1);
    let t1 = c1[0].token;
    s.append(
        run,
        &[rec(run, 0, "run.started", json!({}))],
        Fence::Token(t1),
    )
    .await
    .unwrap();
    let c2 = s.claim(&claim_req("w2", now, 60_000, 1)).await.unwrap();
    assert_eq!(c2.len(), 1, "the expired lease is claimable");
    let t2 = c2[0].token;
    assert!(t2 > t1, "tokens grow: {t1} then {t2}");
    assert_eq!(c2[0].run.attempt, 2);
    let err = s
        .append(run, &[rec(run, 1, "log", json!("late"))], Fence::Token(t1))
        .await;
    assert!(
        matches!(err, Err(Error::Fenced { token, current, .. }) if token == t1 && current == t2),
        "{err:?}"
    );
    s.append(run, &[rec(run, 1, "log", json!("owner"))], Fence::Token(t2))
        .await
        .unwrap();
    let journal = s.read_journal(run, None, 10).await.unwrap();
    assert_eq!(journal.len(), 2);
    assert_eq!(journal[1].data, json!("owner"));
}

/// `renew` and `release` work only with the current token.
pub async fn renew_and_release_need_the_current_token(h: Harness) {
    let s = &*h.store;
    let now = now_millis();
    let run = queued_run(s, "t", json!({})).await.id;
    let c = s
        .claim(&claim_req("w", now, 1_000, 1))
        .await
        .unwrap()
        .remove(0);
    let renewed = s.renew(run, c.token, now + 500, 10_000).await.unwrap();
    assert_eq!(renewed.lease.as_ref().unwrap().expires_at, now + 10_500);
    let stale = s.renew(run, c.token + 1, now, 10_000).await;
    assert!(matches!(stale, Err(Error::Fenced { .. })), "{stale:?}");
    let released = s.release(run, c.token).await.unwrap();
    assert!(released.lease.is_none());
    let again = s.release(run, c.token).await;
    assert!(matches!(again, Err(Error::Fenced { .. })), "{again:?}");
}

/// `claim_run` claims just the run asked for, only when claimable, unless told to steal.
pub async fn claim_run_takes_one_run_and_steals_only_when_asked(h: Harness) {
    let s = &*h.store;
    let now = now_millis();
    let first = queued_run(s, "t", json!(1)).await;
    let second = queued_run(s, "t", json!(2)).await;
    let req = claim_req("w1", now, 60_000, 100);
    let c = s
        .claim_run(second.id, &req, Takeover::IfClaimable)
        .await
        .unwrap()
        .expect("queued run is claimable");
    assert_eq!(c.run.id, second.id);
    assert_eq!(c.run.status, RunStatus::Running);
    assert_eq!(
        s.get_run(first.id).await.unwrap().status,
        RunStatus::Queued,
        "other runs are untouched"
    );
    let again = s
        .claim_run(
            second.id,
            &claim_req("w2", now, 60_000, 1),
            Takeover::IfClaimable,
        )
        .await
        .unwrap();
    assert!(again.is_none(), "a live lease is not taken without Steal");
    let stolen = s
        .claim_run(second.id, &claim_req("w2", now, 60_000, 1), Takeover::Steal)
        .await
        .unwrap()
        .expect("Steal takes a live lease");
    assert!(stolen.token > c.token);
    assert_eq!(stolen.run.lease.as_ref().unwrap().owner, "w2");
    let late = s
        .append(
            second.id,
            &[rec(second.id, 0, "log", json!(0))],
            Fence::Token(c.token),
        )
        .await;
    assert!(matches!(late, Err(Error::Fenced { .. })), "{late:?}");
    let mut done = stolen.run.clone();
    done.status = RunStatus::Succeeded;
    s.update_run(&done).await.unwrap();
    let finished = s
        .claim_run(second.id, &claim_req("w3", now, 1, 1), Takeover::Steal)
        .await
        .unwrap();
    assert!(finished.is_none(), "a finished run is never claimed");
    let unknown = s.claim_run(RunId::new(), &req, Takeover::IfClaimable).await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );
}

/// Overdue waiting runs are claimed earliest deadline first.
pub async fn overdue_timers_are_claimed_in_deadline_order(h: Harness) {
    let s = &*h.store;
    let now = now_millis();
    let mut by_deadline = Vec::new();
    for offset in [3_000i64, 1_000, 5_000, 2_000] {
        let mut r = queued_run(s, "t", json!(offset)).await;
        r.status = RunStatus::Waiting;
        r.wake_at = Some(now - offset);
        let r = s.update_run(&r).await.unwrap();
        by_deadline.push((now - offset, r.id));
    }
    by_deadline.sort();
    let mut got = Vec::new();
    for _ in 0..4 {
        let c = s.claim(&claim_req("w", now, 60_000, 1)).await.unwrap();
        got.extend(c.into_iter().map(|c| c.run.id));
    }
    let want: Vec<_> = by_deadline.into_iter().map(|(_, id)| id).collect();
    assert_eq!(got, want, "claims must follow wake_at order");
}

/// `settle_run` is a compare-and-swap update plus a release, fenced by the token.
pub async fn settle_run_updates_and_releases_in_one_step(h: Harness) {
    let s = &*h.store;
    let (run, c) = claimed_run(s).await;
    let mut done = c.run.clone();
    done.status = RunStatus::Succeeded;
    done.output = Some(json!("ok"));
    let stale = s.settle_run(&done, c.token + 1).await;
    assert!(matches!(stale, Err(Error::Fenced { .. })), "{stale:?}");
    let mut old = run.clone();
    old.status = RunStatus::Failed;
    let conflict = s.settle_run(&old, c.token).await;
    assert!(
        matches!(conflict, Err(Error::Conflict { .. })),
        "{conflict:?}"
    );
    let settled = s.settle_run(&done, c.token).await.unwrap();
    assert!(settled.lease.is_none());
    assert_eq!(settled.status, RunStatus::Succeeded);
    assert!(settled.ended_at.is_some());
    assert_eq!(s.get_run(run.id).await.unwrap(), settled);
    let again = s.settle_run(&settled, c.token).await;
    assert!(
        matches!(again, Err(Error::Fenced { .. })),
        "the lease is gone: {again:?}"
    );
}

/// `append_and_settle` leaves the records in the journal and the run settled and released; a
/// stale token writes nothing; after a `Conflict` the same call with the current run succeeds
/// (the records, if already appended, are skipped as an idempotent retry).
pub async fn append_and_settle_writes_records_then_run(h: Harness) {
    let s = &*h.store;
    let (run, c) = claimed_run(s).await;
    let records = vec![
        rec(run.id, 0, "log", json!({"n": 0})),
        rec(run.id, 1, "log", json!({"n": 1})),
    ];
    let mut done = c.run.clone();
    done.status = RunStatus::Succeeded;
    done.output = Some(json!("ok"));

    let stale = s.append_and_settle(&done, &records, c.token + 1).await;
    assert!(matches!(stale, Err(Error::Fenced { .. })), "{stale:?}");
    assert!(s.read_journal(run.id, None, 10).await.unwrap().is_empty());

    let mut old = run.clone();
    old.status = RunStatus::Failed;
    let conflict = s.append_and_settle(&old, &records, c.token).await;
    assert!(
        matches!(conflict, Err(Error::Conflict { .. })),
        "{conflict:?}"
    );
    assert_eq!(s.get_run(run.id).await.unwrap().status, RunStatus::Running);

    let settled = s.append_and_settle(&done, &records, c.token).await.unwrap();
    assert!(settled.lease.is_none());
    assert_eq!(settled.status, RunStatus::Succeeded);
    assert_eq!(settled.output, Some(json!("ok")));
    assert_eq!(s.get_run(run.id).await.unwrap(), settled);
    let journal = s.read_journal(run.id, None, 10).await.unwrap();
    assert_eq!(journal, records);

    let (empty, c) = claimed_run(s).await;
    assert_eq!(c.run.id, empty.id);
    let mut waiting = c.run.clone();
    waiting.status = RunStatus::Waiting;
    let settled = s.append_and_settle(&waiting, &[], c.token).await.unwrap();
    assert_eq!(settled.status, RunStatus::Waiting);
    assert!(s.read_journal(empty.id, None, 10).await.unwrap().is_empty());
}

/// Eight concurrent claimers over 1,000 queued runs claim each exactly once.
pub async fn concurrent_claimers_claim_each_run_exactly_once(h: Harness) {
    let v = task_with_version(&*h.store, "t").await;
    let mut creators = Vec::new();
    for c in 0..8 {
        let s = h.store.clone();
        creators.push(tokio::spawn(async move {
            for i in 0..125 {
                s.create_run(NewRun::new(name("t"), v, json!([c, i])))
                    .await
                    .unwrap();
            }
        }));
    }
    for c in creators {
        c.await.unwrap();
    }
    let now = now_millis();
    let mut claimers = Vec::new();
    for w in 0..8 {
        let s = h.store.clone();
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let got = s
                    .claim(&claim_req(&format!("w{w}"), now, 600_000, 7))
                    .await
                    .unwrap();
                if got.is_empty() {
                    break;
                }
                mine.extend(got.into_iter().map(|c| c.run.id));
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        1000,
        "claims: {} (duplicates: {})",
        all.len(),
        all.len() - unique.len()
    );
    assert_eq!(unique.len(), 1000);
}

/// Signals come back in the order sent, with dense seqs, after a reopen too.
pub async fn signals_keep_order_and_are_durable(h: Harness) {
    let run = queued_run(&*h.store, "t", json!({})).await.id;
    for (i, n) in ["a", "b", "a"].iter().enumerate() {
        let seq = h.store.send_signal(run, n, json!({"i": i})).await.unwrap();
        assert_eq!(seq, i as u64);
    }
    let s = h.reopened().await;
    let all = s.read_signals(run, None).await.unwrap();
    let got: Vec<_> = all
        .iter()
        .map(|g| (g.seq, g.name.as_str(), g.payload.clone()))
        .collect();
    assert_eq!(
        got,
        vec![
            (0, "a", json!({"i": 0})),
            (1, "b", json!({"i": 1})),
            (2, "a", json!({"i": 2}))
        ]
    );
    assert_eq!(s.read_signals(run, Some(0)).await.unwrap().len(), 2);
    assert!(s.read_signals(run, Some(2)).await.unwrap().is_empty());
    let unknown = s.send_signal(RunId::new(), "x", json!(null)).await;
    assert!(
        matches!(unknown, Err(Error::NotFound { .. })),
        "{unknown:?}"
    );
}

/// A signal makes a waiting run claimable; a finished run refuses signals.
pub async fn signal_wakes_waiting_run_and_refuses_finished_run(h: Harness) {
    let s = &*h.store;
    let now = now_millis();
    let mut run = queued_run(s, "t", json!({})).await;
    run.status = RunStatus::Waiting;
    run.waiting_for = Some("approved".into());
    let run = s.update_run(&run).await.unwrap();
    assert!(
        s.claim(&claim_req("w", now, 1_000, 10))
            .await
            .unwrap()
            .is_empty()
    );
    s.send_signal(run.id, "approved", json!(true))
        .await
        .unwrap();
    let claimed = s
        .claim(&claim_req("w", now_millis() + 1, 1_000, 10))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1, "the signal made the run runnable");
    let mut done = claimed[0].run.clone();
    done.status = RunStatus::Succeeded;
    s.update_run(&done).await.unwrap();
    let err = s.send_signal(run.id, "approved", json!(true)).await;
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");
}

/// `list_runs` filters by task and by status.
pub async fn list_runs_filters_by_task_and_status(h: Harness) {
    let s = &*h.store;
    let a1 = queued_run(s, "a", json!(1)).await;
    let b1 = queued_run(s, "b", json!(1)).await;
    let mut a2 = queued_run(s, "a", json!(2)).await;
    a2.status = RunStatus::Failed;
    s.update_run(&a2).await.unwrap();
    let Some(all) = admin(
        "list_runs",
        s.list_runs(&RunFilter::default(), Page::first(100)).await,
    ) else {
        return;
    };
    assert_eq!(
        all.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![a1.id, b1.id, a2.id]
    );
    assert_eq!(all.next, None);
    let only_a = RunFilter {
        task: Some(name("a")),
        statuses: vec![],
    };
    let got = s.list_runs(&only_a, Page::first(100)).await.unwrap();
    assert_eq!(
        got.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![a1.id, a2.id]
    );
    let failed_a = RunFilter {
        task: Some(name("a")),
        statuses: vec![RunStatus::Failed],
    };
    let got = s.list_runs(&failed_a, Page::first(100)).await.unwrap();
    assert_eq!(
        got.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![a2.id]
    );
    let queued = RunFilter {
        task: None,
        statuses: vec![RunStatus::Queued, RunStatus::Running],
    };
    let got = s.list_runs(&queued, Page::first(100)).await.unwrap();
    assert_eq!(
        got.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![a1.id, b1.id]
    );
    let newest = Page {
        after: None,
        limit: 2,
        order: Order::NewestFirst,
    };
    let got = s.list_runs(&RunFilter::default(), newest).await.unwrap();
    assert_eq!(
        got.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![a2.id, b1.id]
    );
    assert_eq!(got.next, Some(b1.id));
    let rest = Page {
        after: got.next,
        limit: 2,
        order: Order::NewestFirst,
    };
    let got = s.list_runs(&RunFilter::default(), rest).await.unwrap();
    assert_eq!(
        got.runs.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![a1.id]
    );
    assert_eq!(got.next, None);
    let none = s
        .list_runs(
            &RunFilter {
                task: Some(name("zzz")),
                statuses: vec![],
            },
            Page::first(10),
        )
        .await;
    assert!(none.unwrap().runs.is_empty());
}

/// Paging while runs are being added sees every earlier run exactly once.
pub async fn list_runs_pages_without_gaps_or_repeats_while_adding(h: Harness) {
    let s = &*h.store;
    if admin(
        "list_runs",
        s.list_runs(&RunFilter::default(), Page::first(1)).await,
    )
    .is_none()
    {
        return;
    }
    let mut before = Vec::new();
    for i in 0..40 {
        before.push(queued_run(s, "t", json!(i)).await.id);
    }
    let mut seen = Vec::new();
    let mut page = Page::first(7);
    let mut added = 0;
    loop {
        let got = s.list_runs(&RunFilter::default(), page).await.unwrap();
        seen.extend(got.runs.iter().map(|r| r.id));
        // add a run between pages
        queued_run(s, "t", json!(format!("new {added}"))).await;
        added += 1;
        match got.next {
            Some(after) => {
                page = Page {
                    after: Some(after),
                    ..page
                }
            }
            None => break,
        }
        assert!(added < 100, "paging never ends");
    }
    let unique: HashSet<_> = seen.iter().copied().collect();
    assert_eq!(unique.len(), seen.len(), "a run was listed twice");
    for id in &before {
        assert!(unique.contains(id), "run {id} was skipped");
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, seen, "pages are in id order");
}

/// `prune` removes finished runs that ended before the cut-off, with their journals, only.
pub async fn prune_removes_only_old_finished_runs(h: Harness) {
    let s = &*h.store;
    let now = now_millis();
    let finish = |mut r: crate::Run, st: RunStatus, ended: i64| {
        r.status = st;
        r.ended_at = Some(ended);
        r
    };
    let old_done = queued_run(s, "t", json!(1)).await;
    s.append(
        old_done.id,
        &[rec(old_done.id, 0, "log", json!(0))],
        Fence::None,
    )
    .await
    .unwrap();
    s.update_run(&finish(
        old_done.clone(),
        RunStatus::Succeeded,
        now - 10_000,
    ))
    .await
    .unwrap();
    let old_failed = queued_run(s, "t", json!(2)).await;
    s.update_run(&finish(old_failed.clone(), RunStatus::Failed, now - 10_000))
        .await
        .unwrap();
    let new_done = queued_run(s, "t", json!(3)).await;
    s.update_run(&finish(new_done.clone(), RunStatus::Cancelled, now))
        .await
        .unwrap();
    let active = queued_run(s, "t", json!(4)).await;
    let mut waiting = active.clone();
    waiting.status = RunStatus::Waiting;
    waiting.ended_at = Some(now - 10_000);
    s.update_run(&waiting).await.unwrap();
    let Some(pruned) = admin("prune", s.prune(now - 5_000).await) else {
        return;
    };
    assert_eq!(pruned, 2);
    assert!(matches!(
        s.get_run(old_done.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.get_run(old_failed.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.read_journal(old_done.id, None, 10).await,
        Err(Error::NotFound { .. })
    ));
    assert!(s.get_run(new_done.id).await.is_ok());
    assert!(s.get_run(active.id).await.is_ok());
    assert_eq!(s.prune(now - 5_000).await.unwrap(), 0);
    assert_eq!(
        s.get_task_version(&name("t"), VersionSel::Latest)
            .await
            .unwrap()
            .version,
        1
    );
}

/// Deleting a task with active runs is a `Conflict` unless forced; a missing task is `NotFound`.
pub async fn delete_task_with_active_runs_needs_force(h: Harness) {
    let s = &*h.store;
    let run = queued_run(s, "busy", json!({})).await;
    let err = s.delete_task(&name("busy"), DeleteMode::IfIdle).await;
    if let Err(Error::Unsupported { what }) = &err {
        println!("skipped delete_task: {what}");
        return;
    }
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");
    assert!(s.get_run(run.id).await.is_ok(), "nothing deleted");
    s.delete_task(&name("busy"), DeleteMode::Force)
        .await
        .unwrap();
    assert!(matches!(
        s.get_run(run.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.get_task_version(&name("busy"), VersionSel::Latest).await,
        Err(Error::NotFound { .. })
    ));
    // an idle task (only finished runs) goes without force
    let mut done = queued_run(s, "idle", json!({})).await;
    done.status = RunStatus::Succeeded;
    s.update_run(&done).await.unwrap();
    s.delete_task(&name("idle"), DeleteMode::IfIdle)
        .await
        .unwrap();
    if let Some(tasks) = admin("list_tasks", s.list_tasks().await) {
        assert!(tasks.is_empty());
    }
    let missing = s.delete_task(&name("ghost"), DeleteMode::Force).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    // the name is free again and numbers from 1
    assert_eq!(task_with_version(s, "busy").await, 1);
}

/// `delete_run` removes an ended run with its journal, signals and idempotency key; an active
/// run (or a finished child of an active parent) is a `Conflict` and stays; an unknown run is
/// `NotFound`; deleting a parent leaves its children.
pub async fn delete_run_removes_an_ended_run_and_refuses_an_active_one(h: Harness) {
    let s = &*h.store;
    let v = task_with_version(s, "d").await;
    let mut keyed = NewRun::new(name("d"), v, json!({"n": 1}));
    keyed.idempotency_key = Some("delete-me".into());
    let run = s.create_run(keyed.clone()).await.unwrap().into_run();
    s.append(run.id, &[rec(run.id, 0, "log", json!(0))], Fence::None)
        .await
        .unwrap();
    s.send_signal(run.id, "poke", json!({})).await.unwrap();
    let err = s.delete_run(run.id).await;
    if let Err(Error::Unsupported { what }) = &err {
        println!("skipped delete_run: {what}");
        return;
    }
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");
    assert_eq!(s.get_run(run.id).await.unwrap(), run, "nothing deleted");
    assert_eq!(s.read_journal(run.id, None, 10).await.unwrap().len(), 1);
    // a finished child of an active parent stays until the parent ends
    let mut new_child = NewRun::new(name("d"), v, json!({"n": 2}));
    new_child.parent = Some(crate::ParentRef {
        run: run.id,
        seq: 0,
    });
    let mut child = s.create_run(new_child).await.unwrap().into_run();
    child.status = RunStatus::Failed;
    let child = s.update_run(&child).await.unwrap();
    let err = s.delete_run(child.id).await;
    assert!(matches!(err, Err(Error::Conflict { .. })), "{err:?}");
    assert!(s.get_run(child.id).await.is_ok());
    // ended: the run, its journal and its signals go; the key is free again
    let mut done = run.clone();
    done.status = RunStatus::Succeeded;
    s.update_run(&done).await.unwrap();
    s.delete_run(run.id).await.unwrap();
    assert!(matches!(
        s.get_run(run.id).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        s.read_journal(run.id, None, 10).await,
        Err(Error::NotFound { .. })
    ));
    assert!(
        s.read_signals(run.id, None)
            .await
            .unwrap_or_default()
            .is_empty()
    );
    let again = s.delete_run(run.id).await;
    assert!(matches!(again, Err(Error::NotFound { .. })), "{again:?}");
    keyed.input = json!({"n": "other input, same key"});
    let Created::Created(fresh) = s.create_run(keyed).await.unwrap() else {
        panic!("the deleted run's idempotency key still maps to it");
    };
    assert_ne!(fresh.id, run.id);
    // the child outlives its parent, and can be deleted now that the parent is gone
    let s = h.reopened().await;
    assert!(matches!(
        s.get_run(run.id).await,
        Err(Error::NotFound { .. })
    ));
    assert_eq!(s.get_run(child.id).await.unwrap(), child);
    s.delete_run(child.id).await.unwrap();
    assert!(matches!(
        s.get_run(child.id).await,
        Err(Error::NotFound { .. })
    ));
    let ghost = s.delete_run(RunId::new()).await;
    assert!(matches!(ghost, Err(Error::NotFound { .. })), "{ghost:?}");
    assert!(s.get_run(fresh.id).await.is_ok(), "other runs stay");
}

/// A 1 MiB payload and non-ASCII text come back unchanged.
pub async fn large_payload_and_non_ascii_round_trip(h: Harness) {
    let big = "x".repeat(1 << 20);
    let text = "Grüße, 世界! 🚀 \"quotes\" \\ back\nslash\ttab \u{0}nul \u{2028}";
    let mut v = version("t", &format!("// {text}\n({{ ok: true }})"));
    v.config = json!({"description": text, "blob": big});
    let stored = h.store.put_task_version(v.clone()).await.unwrap().version;
    let run = h
        .store
        .create_run(NewRun::new(
            name("t"),
            stored.version,
            json!({"text": text, "big": big}),
        ))
        .await
        .unwrap()
        .into_run();
    let recs = vec![rec(
        run.id,
        0,
        "call.completed",
        json!({"body": big, "text": text}),
    )];
    h.store.append(run.id, &recs, Fence::None).await.unwrap();
    let s = h.reopened().await;
    let back = s
        .get_task_version(&name("t"), VersionSel::Latest)
        .await
        .unwrap();
    assert_eq!(back.code, v.code);
    assert_eq!(back.config, v.config);
    assert_eq!(
        s.get_run(run.id).await.unwrap().input,
        json!({"text": text, "big": big})
    );
    assert_eq!(s.read_journal(run.id, None, 10).await.unwrap(), recs);
}
