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

fn claim_all(worker: &str) -> ClaimRequest {
    ClaimRequest {
        worker: worker.into(),
        now: now_millis(),
        lease_ms: 600_000,
        limit: 100,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stray_schedule_markers_are_repaired_and_lost_bookkeeping_is_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let store = FolderStore::open(&root).unwrap();
    let ids = runs(&store, "t", 3).await;
    // run 1 waits for an hour, run 2 is paused
    let mut later = store.get_run(ids[1]).await.unwrap();
    later.status = sequential_adaptor::RunStatus::Waiting;
    later.wake_at = Some(now_millis() + 3_600_000);
    store.update_run(&later).await.unwrap();
    let mut paused = store.get_run(ids[2]).await.unwrap();
    paused.status = sequential_adaptor::RunStatus::Paused;
    store.update_run(&paused).await.unwrap();
    // debris a crash could leave: stale early markers, and one for a run that never was
    let due = root.join(".sequential/due");
    let ghost = sequential_adaptor::RunId::new();
    for stray in [
        format!("0.t.{}", ids[1]),
        format!("5.t.{}", ids[2]),
        format!("0.t.{ghost}"),
        "not-a-marker".to_string(),
    ] {
        std::fs::write(due.join(stray), b"").unwrap();
    }
    let got = store.claim(&claim_all("w")).await.unwrap();
    assert_eq!(
        got.iter().map(|c| c.run.id).collect::<Vec<_>>(),
        vec![ids[0]]
    );
    let left: HashSet<String> = std::fs::read_dir(&due)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !left.iter().any(|n| n.contains(&ghost.to_string())),
        "{left:?}"
    );
    assert!(
        !left.iter().any(|n| n.contains(&ids[2].to_string())),
        "{left:?}"
    );
    assert!(!left.contains(&format!("0.t.{}", ids[1])), "{left:?}");
    assert!(store.claim(&claim_all("w")).await.unwrap().is_empty());
    // a folder copied without .sequential/: its queued runs are scheduled again on open
    let fresh = runs(&store, "u", 2).await;
    drop(store);
    std::fs::remove_dir_all(root.join(".sequential")).unwrap();
    let reopened = FolderStore::open(&root).unwrap();
    let got: HashSet<_> = reopened
        .claim(&claim_all("w2"))
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.run.id)
        .collect();
    assert_eq!(got, fresh.into_iter().collect::<HashSet<_>>());
}
