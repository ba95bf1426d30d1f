//! The pool grows to what concurrent callers need, even while connections keep coming back.

use std::sync::Arc;

use sequential_adaptor::{NewRun, StorageAdapter};
use sequential_adaptor_postgres::PostgresStore;
use serde_json::json;

use crate::support;

/// Callers each reading runs in a loop, as a worker's runs read and write at once.
const CALLERS: usize = 5;

// Each read hands its connection back to the free list a fraction of a millisecond after taking
// it. A caller that found the list empty used to wait for whichever came first, a connection
// handed back or a new one from the pool, and gave up the new one half-way when one came back:
// under such a load the pool never grew past a connection or two, and every statement of the
// process queued for them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_callers_get_connections_of_their_own() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let store = Arc::new(PostgresStore::open(&url).await.unwrap());
    let (task, version) = support::task_version(&*store, "pool").await;
    let run = store
        .create_run(NewRun::new(task, version, json!(null)))
        .await
        .unwrap()
        .into_run();
    let mut callers = tokio::task::JoinSet::new();
    for _ in 0..CALLERS {
        let store = store.clone();
        callers.spawn(async move {
            for _ in 0..300 {
                assert_eq!(store.get_run(run.id).await.unwrap().id, run.id);
            }
        });
    }
    while let Some(done) = callers.join_next().await {
        done.unwrap();
    }
    // `support::with_schema` sets pool_size=5: one connection per caller
    assert_eq!(store.open_connections(), CALLERS as u32);
}
