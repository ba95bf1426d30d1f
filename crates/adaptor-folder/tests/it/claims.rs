//! Claims through two independently opened stores on one folder.

use std::collections::HashSet;
use std::sync::Arc;

use sequential_adaptor::{ClaimRequest, Fence, StorageAdapter, now_millis};
use sequential_adaptor_folder::FolderStore;

use crate::{record, runs};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_folder_never_claim_a_run_twice() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let a: Arc<dyn StorageAdapter> = Arc::new(FolderStore::open(&root).unwrap());
    let b: Arc<dyn StorageAdapter> = Arc::new(FolderStore::open(&root).unwrap());
    let mut ids = runs(&*a, "t", 120).await;
    ids.extend(runs(&*b, "t", 120).await);
    let now = now_millis();
    let mut claimers = Vec::new();
    for w in 0..8 {
        let s = if w % 2 == 0 { a.clone() } else { b.clone() };
        claimers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let req = ClaimRequest {
                    worker: format!("w{w}"),
                    now,
                    lease_ms: 600_000,
                    limit: 3,
                };
                let got = s.claim(&req).await.unwrap();
                if got.is_empty() {
                    break;
                }
                for c in got {
                    // the claim is real: the holder's token fences appends
                    s.append(c.run.id, &[record(c.run.id, 0)], Fence::Token(c.token))
                        .await
                        .unwrap();
                    mine.push(c.run.id);
                }
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for c in claimers {
        all.extend(c.await.unwrap());
    }
    let unique: HashSet<_> = all.iter().copied().collect();
    assert_eq!(all.len() - unique.len(), 0, "runs claimed twice");
    assert_eq!(
        unique,
        ids.iter().copied().collect::<HashSet<_>>(),
        "every run claimed once"
    );
    for id in ids {
        assert_eq!(a.get_run(id).await.unwrap().attempt, 1);
        assert_eq!(b.read_journal(id, None, 10).await.unwrap().len(), 1);
    }
}
