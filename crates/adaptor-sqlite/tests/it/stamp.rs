//! `ChangeStamp`: the same number while nothing commits; another after a commit by the store's
//! writer or by a connection it does not know of (as another process's would be).

use sequential_adaptor::{NewTaskVersion, StorageAdapter, TaskName};
use sequential_adaptor_sqlite::{ChangeStamp, SqliteStore};
use serde_json::json;

fn version(code: &str) -> NewTaskVersion {
    NewTaskVersion {
        task: TaskName::new("t").unwrap(),
        code: code.into(),
        graph: None,
        config: json!({}),
    }
}

#[tokio::test]
async fn the_stamp_moves_exactly_when_someone_else_commits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("stamp.db");
    let store = SqliteStore::open(&path).unwrap();
    store.put_task_version(version("1")).await.unwrap();
    let stamp = ChangeStamp::open(&path).unwrap();
    let first = stamp.now().unwrap();
    // reads (of the store or of the stamp itself) move nothing
    store.list_tasks().await.unwrap();
    assert_eq!(stamp.now().unwrap(), first);
    assert_eq!(stamp.now().unwrap(), first);
    // a commit by the store's writer thread
    store.put_task_version(version("2")).await.unwrap();
    let second = stamp.now().unwrap();
    assert_ne!(second, first, "a commit of the store's writer was not seen");
    assert_eq!(stamp.now().unwrap(), second);
    // a commit by a connection of its own, as another process's
    let other = rusqlite::Connection::open(&path).unwrap();
    other
        .execute(
            "UPDATE task_versions SET config = '{\"x\":1}' WHERE version = 1",
            [],
        )
        .unwrap();
    assert_ne!(
        stamp.now().unwrap(),
        second,
        "another connection's commit was not seen"
    );
}
