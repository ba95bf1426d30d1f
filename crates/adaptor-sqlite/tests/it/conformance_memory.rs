//! The conformance suite on `sqlite::memory:`, opened through the factory.

use sequential_adaptor::conformance::Harness;
use sequential_adaptor::{AdapterFactory, Registry};
use sequential_adaptor_sqlite::SqliteFactory;

async fn make() -> Option<Harness> {
    let mut registry = Registry::new();
    registry.register("sqlite", SqliteFactory::FORM, SqliteFactory);
    let store = registry
        .open("sqlite::memory:")
        .await
        .expect("open sqlite::memory:");
    assert_eq!(store.scheme(), "sqlite");
    let _ = &SqliteFactory as &dyn AdapterFactory;
    Some(Harness {
        store,
        reopen: None,
        guard: Box::new(()),
    })
}

sequential_adaptor::conformance_tests!(make);
