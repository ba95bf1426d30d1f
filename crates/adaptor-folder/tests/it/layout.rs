//! The on-disk layout, the user's own task files, and opening through the registry.

use std::fs;

use serde_json::json;

use sequential_adaptor::{
    DeleteMode, Error, Fence, Registry, RunStatus, StorageAdapter, VersionSel,
};
use sequential_adaptor_folder::{FolderFactory, FolderStore};

use crate::{name, record, runs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_sit_where_the_layout_says() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let store = FolderStore::open(&root).unwrap();
    let run = runs(&store, "orders", 1).await[0];
    store
        .append(run, &[record(run, 0), record(run, 1)], Fence::None)
        .await
        .unwrap();
    store
        .send_signal(run, "approved", json!(true))
        .await
        .unwrap();
    let runs_dir = root.join("orders/runs");
    assert!(root.join("orders/versions/1.json").is_file());
    assert!(runs_dir.join(format!("{run}.json")).is_file());
    let journal = fs::read_to_string(runs_dir.join(format!("{run}.journal.ndjson"))).unwrap();
    assert_eq!(journal.lines().count(), 2, "one line per record");
    let signals = fs::read_to_string(runs_dir.join(format!("{run}.signals.ndjson"))).unwrap();
    assert_eq!(signals.lines().count(), 1);
    let format: serde_json::Value =
        serde_json::from_slice(&fs::read(root.join(".sequential/format.json")).unwrap()).unwrap();
    assert_eq!(format, json!({"version": FolderStore::FORMAT_VERSION}));
    // the run file is the run, readable by people and tools
    let on_disk: sequential_adaptor::Run =
        serde_json::from_slice(&fs::read(runs_dir.join(format!("{run}.json"))).unwrap()).unwrap();
    assert_eq!(on_disk, store.get_run(run).await.unwrap());
    assert_eq!(store.journal_len(run).await.unwrap(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_task_keeps_the_users_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let task_dir = root.join("mail");
    fs::create_dir_all(&task_dir).unwrap();
    let user_files = [
        ("code.js", "export default async () => 1;\n"),
        ("config.json", "{\"name\": \"mail\"}\n"),
        ("meta.json", "{\"version\": 3}\n"),
        ("graph.json", "{\"initial\": \"a\"}\n"),
    ];
    for (f, text) in user_files {
        fs::write(task_dir.join(f), text).unwrap();
    }
    let store = FolderStore::open(&root).unwrap();
    // a task folder without stored versions is not a stored task
    assert!(store.list_tasks().await.unwrap().is_empty());
    let missing = store.delete_task(&name("mail"), DeleteMode::Force).await;
    assert!(
        matches!(missing, Err(Error::NotFound { .. })),
        "{missing:?}"
    );
    let run = runs(&store, "mail", 2).await[0];
    store
        .append(run, &[record(run, 0)], Fence::None)
        .await
        .unwrap();
    assert_eq!(store.list_tasks().await.unwrap().len(), 1);
    store
        .delete_task(&name("mail"), DeleteMode::Force)
        .await
        .unwrap();
    for (f, text) in user_files {
        assert_eq!(
            fs::read_to_string(task_dir.join(f)).unwrap(),
            text,
            "{f} changed"
        );
    }
    assert!(!task_dir.join("versions").exists());
    assert!(!task_dir.join("runs").exists());
    assert!(store.list_tasks().await.unwrap().is_empty());
    assert!(matches!(
        store.get_run(run).await,
        Err(Error::NotFound { .. })
    ));
    let reopened = FolderStore::open(&root).unwrap();
    assert!(matches!(
        reopened.get_run(run).await,
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        reopened
            .get_task_version(&name("mail"), VersionSel::Latest)
            .await,
        Err(Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_opens_folder_urls() {
    let dir = tempfile::tempdir().unwrap();
    let mut registry = Registry::new();
    registry.register("folder", "folder:PATH", FolderFactory);
    let a = dir.path().join("a");
    let store = registry
        .open(&format!("folder:{}", a.display()))
        .await
        .unwrap();
    assert_eq!(store.scheme(), "folder");
    let run = runs(&*store, "t", 1).await[0];
    let b = registry
        .open(&format!("folder://{}", a.display()))
        .await
        .unwrap();
    assert_eq!(b.get_run(run).await.unwrap().status, RunStatus::Queued);
    b.health().await.unwrap();
    let empty = registry.open("folder:").await;
    assert!(matches!(empty, Err(Error::Invalid { .. })), "{empty:?}");
    let file = dir.path().join("plain-file");
    fs::write(&file, "x").unwrap();
    let not_dir = registry.open(&format!("folder:{}", file.display())).await;
    assert!(matches!(not_dir, Err(Error::Invalid { .. })), "{not_dir:?}");
}
