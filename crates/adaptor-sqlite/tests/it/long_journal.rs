//! A journal longer than the part read on the calling thread reads whole and in order, by any
//! page size and from any point, on a file database and in memory.

use sequential_adaptor::{Fence, JournalRecord, RunId, StorageAdapter};
use sequential_adaptor_sqlite::SqliteStore;
use serde_json::json;

fn rec(run: RunId, seq: u64) -> JournalRecord {
    JournalRecord {
        run,
        seq,
        kind: if seq.is_multiple_of(3) {
            "log"
        } else {
            "custom.kind"
        }
        .into(),
        at: seq as i64,
        data: json!({"seq": seq, "pad": "x".repeat(seq as usize % 40)}),
    }
}

async fn check(store: SqliteStore) {
    let run = crate::a_run(&store, "long").await;
    let all: Vec<JournalRecord> = (0..300).map(|s| rec(run, s)).collect();
    for chunk in all.chunks(50) {
        store.append(run, chunk, Fence::None).await.unwrap();
    }
    for limit in [1, 63, 64, 65, 100, 1000] {
        for after in [
            None,
            Some(0),
            Some(62),
            Some(63),
            Some(150),
            Some(298),
            Some(299),
        ] {
            let from = after.map_or(0, |a| a as usize + 1);
            let want: Vec<_> = all[from.min(300)..].iter().take(limit).cloned().collect();
            let got = store.read_journal(run, after, limit).await.unwrap();
            assert_eq!(got, want, "limit {limit}, after {after:?}");
        }
    }
    // paging through with the engine's page size gives the journal once
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.read_journal(run, after, 70).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.seq);
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

#[tokio::test]
async fn long_journals_read_whole_on_a_file() {
    let dir = tempfile::tempdir().unwrap();
    check(SqliteStore::open(dir.path().join("long.db")).unwrap()).await;
}

#[tokio::test]
async fn long_journals_read_whole_in_memory() {
    check(SqliteStore::memory().unwrap()).await;
}
