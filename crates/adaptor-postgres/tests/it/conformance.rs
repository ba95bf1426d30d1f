//! The conformance suite, each case in a fresh schema reopened as a new store, with the SIGKILL
//! crash case (the child appends through its own pool; the location is a URL naming the schema).

use std::sync::Arc;

use sequential_adaptor::StorageAdapter;
use sequential_adaptor::conformance::crash::Durable;
use sequential_adaptor::conformance::{BoxFuture, Harness};
use sequential_adaptor_postgres::PostgresStore;

use crate::support;

async fn open(url: String) -> Arc<dyn StorageAdapter> {
    Arc::new(
        PostgresStore::open(&url)
            .await
            .unwrap_or_else(|e| panic!("opening {url}: {e}")),
    )
}

async fn make() -> Option<Harness> {
    let base = support::server().await?;
    let (url, guard) = support::fresh_schema(&base);
    let store = open(url.clone()).await;
    let reopen = move || -> BoxFuture<Arc<dyn StorageAdapter>> { Box::pin(open(url.clone())) };
    Some(Harness {
        store,
        reopen: Some(Box::new(reopen)),
        guard: Box::new(guard),
    })
}

fn durable() -> Durable {
    Durable {
        create: || {
            Box::pin(async {
                let base = support::server().await?;
                let (url, guard) = support::fresh_schema(&base);
                Some((url, Box::new(guard) as Box<dyn std::any::Any + Send>))
            })
        },
        open: |url| Box::pin(open(url)),
        kills: 50,
        check: None,
    }
}

sequential_adaptor::conformance_tests!(make, durable: durable);
