//! `SqliteFactory`: the URL forms it accepts and refuses.

use sequential_adaptor::{Error, NewTaskVersion, Registry, TaskName, VersionSel};
use sequential_adaptor_sqlite::{SqliteFactory, SqliteStore};
use serde_json::json;

fn registry() -> Registry {
    let mut r = Registry::new();
    r.register("sqlite", SqliteFactory::FORM, SqliteFactory);
    r
}

#[tokio::test]
async fn sqlite_path_and_double_slash_forms_open_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("via-url.db");
    let task = TaskName::new("t").unwrap();
    {
        let a = registry()
            .open(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        let v = NewTaskVersion {
            task: task.clone(),
            code: "1".into(),
            graph: None,
            config: json!({}),
        };
        assert!(a.put_task_version(v).await.unwrap().created);
    }
    // sqlite:///abs/path (the path is absolute, so `//` + `/tmp/...`)
    let b = registry()
        .open(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    assert_eq!(
        b.get_task_version(&task, VersionSel::Latest)
            .await
            .unwrap()
            .code,
        "1"
    );
    assert!(path.exists());
}

#[tokio::test]
async fn memory_urls_are_separate_databases() {
    let a = registry().open("sqlite::memory:").await.unwrap();
    let b = registry().open("sqlite::memory:").await.unwrap();
    let task = TaskName::new("only-in-a").unwrap();
    let v = NewTaskVersion {
        task,
        code: "1".into(),
        graph: None,
        config: json!({}),
    };
    a.put_task_version(v).await.unwrap();
    assert_eq!(a.list_tasks().await.unwrap().len(), 1);
    assert!(b.list_tasks().await.unwrap().is_empty());
    a.health().await.unwrap();
}

#[test]
fn empty_or_foreign_urls_are_invalid_and_name_the_forms() {
    for url in ["sqlite:", "sqlite://", "folder:./x"] {
        match SqliteFactory::open_url(url) {
            Err(Error::Invalid { input, expected }) => {
                assert!(input.contains(url), "{input}");
                assert!(expected.contains("sqlite::memory:"), "{expected}");
            }
            other => panic!("{url}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn a_directory_is_not_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let err = SqliteStore::open(dir.path()).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
}
