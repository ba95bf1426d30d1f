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

/// Opens the crash case's store once the schema's earlier sessions are gone. A SIGKILLed
/// client's last statement runs on in its server process and may commit after the kill (the
/// server notices the dead client only when it answers) — even a statement the server had not
/// yet read when the client died, while its session still shows as idle: the parent would read
/// the journal before that commit, append the next record itself, and then meet a batch it did
/// not see. So those sessions are terminated (a statement not yet committed is rolled back) and
/// waited for until none is left. They are found by `application_name`, which `durable` sets to
/// the schema (the parent's own earlier stores, already dropped, share it).
async fn open_quiesced(url: String) -> Arc<dyn StorageAdapter> {
    let base = url.split('?').next().expect("a URL").to_string();
    let app = url
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("application_name="))
        .expect("the crash case's URL names its sessions")
        .to_string();
    let mut conn = support::connect(&base).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let left: i64 = sqlx::query_scalar(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&app)
        .fetch_one(&mut conn)
        .await
        .expect("terminating the earlier sessions");
        if left == 0 || std::time::Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    open(url).await
}

fn durable() -> Durable {
    Durable {
        create: || {
            Box::pin(async {
                let base = support::server().await?;
                let (url, guard) = support::fresh_schema(&base);
                let url = format!("{url}&application_name={}", guard.schema);
                Some((url, Box::new(guard) as Box<dyn std::any::Any + Send>))
            })
        },
        open: |url| Box::pin(open_quiesced(url)),
        kills: 50,
        check: None,
    }
}

sequential_adaptor::conformance_tests!(make, durable: durable);

/// PostgreSQL's claims tell the journal's length of a queued run and the version's hash, read
/// in the claim's statement: a worker starting a run reads neither again.
#[tokio::test]
async fn claims_tell_the_journal_length_and_the_version_hash() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let store = PostgresStore::open(&url).await.unwrap();
    sequential_adaptor::conformance::claims_tell_the_journal_length_and_the_version_hash(&store)
        .await;
}
