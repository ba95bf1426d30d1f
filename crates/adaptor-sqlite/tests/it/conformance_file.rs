//! The conformance suite on a temp-file database, reopened as a new store, with the SIGKILL
//! crash case.

use std::sync::Arc;

use sequential_adaptor::StorageAdapter;
use sequential_adaptor::conformance::crash::Durable;
use sequential_adaptor::conformance::{BoxFuture, Harness};
use sequential_adaptor_sqlite::SqliteStore;

async fn make() -> Option<Harness> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("store.db");
    let store = SqliteStore::open(&path).expect("open a fresh database");
    let reopen = move || -> BoxFuture<Arc<dyn StorageAdapter>> {
        let path = path.clone();
        Box::pin(async move {
            Arc::new(SqliteStore::open(&path).expect("reopen the database"))
                as Arc<dyn StorageAdapter>
        })
    };
    Some(Harness {
        store: Arc::new(store),
        reopen: Some(Box::new(reopen)),
        guard: Box::new(dir),
    })
}

fn durable() -> Durable {
    Durable {
        create: || {
            Box::pin(async {
                let dir = tempfile::tempdir().expect("temp dir");
                let path = dir.path().join("crash.db");
                let location = path.to_str().expect("a UTF-8 temp path").to_string();
                Some((location, Box::new(dir) as Box<dyn std::any::Any + Send>))
            })
        },
        open: |path| {
            Box::pin(async move {
                Arc::new(SqliteStore::open(&path).expect("open the database"))
                    as Arc<dyn StorageAdapter>
            })
        },
        kills: 50,
        check: None,
    }
}

sequential_adaptor::conformance_tests!(make, durable: durable);
