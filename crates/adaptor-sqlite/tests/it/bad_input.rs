//! Files that must be refused untouched: not a SQLite database, another application's
//! database, a database written by a newer schema version.

use std::path::Path;

use sequential_adaptor::{Error, StorageAdapter};
use sequential_adaptor_sqlite::{SCHEMA_VERSION, SqliteStore};

fn sidecars(path: &Path) -> Vec<String> {
    ["-wal", "-shm", "-journal"]
        .iter()
        .map(|s| format!("{}{s}", path.display()))
        .filter(|p| Path::new(p).exists())
        .collect()
}

fn refuse_untouched(path: &Path) -> Error {
    let before = std::fs::read(path).unwrap();
    let err = SqliteStore::open(path).expect_err("the file must be refused");
    assert_eq!(
        std::fs::read(path).unwrap(),
        before,
        "the refused file was changed"
    );
    assert!(
        sidecars(path).is_empty(),
        "refusing left files behind: {:?}",
        sidecars(path)
    );
    err
}

#[test]
fn a_file_that_is_not_a_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in [
        (
            "text.db",
            b"this is a text file, not a database\n".repeat(3),
        ),
        ("zeros.db", vec![0u8; 8192]),
        ("json.db", br#"{"runs": []}"#.to_vec()),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        match refuse_untouched(&path) {
            Error::Invalid { input, expected } => {
                assert!(
                    input.contains(&path.display().to_string()),
                    "names the file: {input}"
                );
                assert!(expected.starts_with("a SQLite database"), "{expected}");
            }
            other => panic!("{name}: expected Invalid, got {other:?}"),
        }
    }
}

#[test]
fn another_applications_database_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO photos (name) VALUES ('cat');")
            .unwrap();
    }
    let err = refuse_untouched(&path);
    assert!(
        matches!(&err, Error::Invalid { input, .. } if input.contains("another application")),
        "{err:?}"
    );
}

#[test]
fn a_database_of_a_newer_schema_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    drop(SqliteStore::open(&path).unwrap());
    let newer = SCHEMA_VERSION + 7;
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(&format!("PRAGMA user_version = {newer};"))
            .unwrap();
    }
    assert!(
        sidecars(&path).is_empty(),
        "the WAL was checkpointed on close"
    );
    match refuse_untouched(&path) {
        Error::Unsupported { what } => {
            assert!(
                what.contains(&path.display().to_string()),
                "names the file: {what}"
            );
            assert!(
                what.contains(&newer.to_string()),
                "names the file's version: {what}"
            );
            assert!(
                what.contains(&SCHEMA_VERSION.to_string()),
                "names our version: {what}"
            );
        }
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[tokio::test]
async fn an_empty_file_becomes_a_database_and_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("empty.db");
    std::fs::write(&path, b"").unwrap();
    let store = SqliteStore::open(&path).unwrap();
    store.health().await.unwrap();
    drop(store);
    let again = SqliteStore::open(&path).unwrap();
    again.health().await.unwrap();
    assert!(again.list_tasks().await.unwrap().is_empty());
}
