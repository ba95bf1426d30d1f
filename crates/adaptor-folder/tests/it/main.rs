//! Integration tests of the folder store: the conformance suite plus crash and concurrency tests.

mod conformance {
    use std::sync::Arc;

    use sequential_adaptor::StorageAdapter;
    use sequential_adaptor::conformance::{BoxFuture, Harness};
    use sequential_adaptor_folder::FolderStore;

    async fn make() -> Option<Harness> {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("tasks");
        let store = FolderStore::open(&root).expect("open folder store");
        let reopen_root = root.clone();
        let reopen = move || -> BoxFuture<Arc<dyn StorageAdapter>> {
            let root = reopen_root.clone();
            Box::pin(async move {
                Arc::new(FolderStore::open(&root).expect("reopen folder store"))
                    as Arc<dyn StorageAdapter>
            })
        };
        Some(Harness {
            store: Arc::new(store),
            reopen: Some(Box::new(reopen)),
            guard: Box::new(dir),
        })
    }

    sequential_adaptor::conformance_tests!(make);
}
