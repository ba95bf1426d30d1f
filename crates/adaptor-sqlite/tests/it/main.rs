//! Integration tests of sequential-adaptor-sqlite: the conformance suite on a file and in
//! memory, refusal of foreign and newer files, the factory's URLs, claims across processes,
//! and end watches.

mod bad_input;
mod conformance_file;
mod conformance_memory;
mod ends;
mod factory;
mod group_commit;
mod long_journal;
mod migration;
mod processes;
mod stamp;

use sequential_adaptor::{NewRun, NewTaskVersion, RunId, StorageAdapter, TaskName};
use sequential_adaptor_sqlite::SqliteStore;

/// Stores version 1 of a task named `name` whose code is `1`: the task and version runs are
/// created at.
async fn a_task(store: &SqliteStore, name: &str) -> (TaskName, u32) {
    let task = TaskName::new(name).unwrap();
    let v = NewTaskVersion {
        task: task.clone(),
        code: "1".into(),
        graph: None,
        config: serde_json::json!({}),
    };
    let version = store.put_task_version(v).await.unwrap().version.version;
    (task, version)
}

/// One queued run (input `null`) of a new task named `name`.
async fn a_run(store: &SqliteStore, name: &str) -> RunId {
    let (task, version) = a_task(store, name).await;
    let new = NewRun::new(task, version, serde_json::Value::Null);
    store.create_run(new).await.unwrap().into_run().id
}

/// SQLite's claims tell the journal's length of a queued run and the version's hash, read in
/// the claim's transaction: a worker starting a run reads neither again.
#[tokio::test]
async fn claims_tell_the_journal_length_and_the_version_hash() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("told.db")).unwrap();
    sequential_adaptor::conformance::claims_tell_the_journal_length_and_the_version_hash(&store)
        .await;
}
