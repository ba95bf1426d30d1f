//! Store URLs users get wrong: unknown schemes, unreachable servers, unwritable paths.

use sequential_flow_store::{Error, FlowStore};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn unreachable_stores_are_named() {
    rt().block_on(async {
        for url in [
            "postgres://postgres@127.0.0.1:1/test",
            "redis://127.0.0.1:1",
        ] {
            let err = FlowStore::open(url).await.unwrap_err();
            assert!(matches!(err, Error::Unreachable { .. }), "{url}: {err:?}");
            assert!(err.to_string().contains(url), "{err}");
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        let under_a_file = file.path().join("sub/flow.db");
        let err = FlowStore::open(under_a_file.to_str().unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
        assert!(err.to_string().contains("flow.db"), "{err}");
    });
}

#[test]
fn unknown_schemes_list_the_valid_forms_and_hide_passwords() {
    rt().block_on(async {
        let err = FlowStore::open("mysql://root:hunter2@db/x")
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(err.is_bad_input());
        assert!(msg.contains("mysql") && msg.contains("sqlite:") && msg.contains("redis://"));
        assert!(!msg.contains("hunter2"), "{msg}");
        let err = FlowStore::open("postgres://u@127.0.0.1/x?schema=Bad-Name")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("schema"), "{err}");
    });
}

#[test]
fn default_memory_store_and_sqlite_by_extension() {
    rt().block_on(async {
        assert_eq!(FlowStore::open("memory:").await.unwrap().url(), "memory:");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("flow.sqlite3");
        let s = FlowStore::open(path.to_str().unwrap()).await.unwrap();
        assert!(s.url().starts_with("sqlite:"), "{}", s.url());
        let s = FlowStore::open(dir.path().join("folder").to_str().unwrap())
            .await
            .unwrap();
        assert!(
            dir.path().join("folder/format.json").exists(),
            "{}",
            s.url()
        );
    });
}
