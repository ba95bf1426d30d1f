//! Integration tests of the folder store: the conformance suite (with its SIGKILL crash case),
//! on-disk layout, recovery from torn writes and debris, format versioning, concurrent stores.

mod claims;
mod layout;
mod recovery;

use serde_json::{Value, json};

use sequential_adaptor::{JournalRecord, NewRun, NewTaskVersion, RunId, StorageAdapter, TaskName};

mod conformance {
    use std::sync::Arc;

    use sequential_adaptor::StorageAdapter;
    use sequential_adaptor::conformance::crash::Durable;
    use sequential_adaptor::conformance::{BoxFuture, Harness};
    use sequential_adaptor_folder::FolderStore;

    fn durable() -> Durable {
        Durable {
            create: || {
                Box::pin(async {
                    let dir = tempfile::tempdir().expect("temp dir");
                    let root = dir.path().join("tasks");
                    let location = root.to_str().expect("a UTF-8 temp path").to_string();
                    Some((location, Box::new(dir) as Box<dyn std::any::Any + Send>))
                })
            },
            open: |root| {
                Box::pin(async move {
                    Arc::new(FolderStore::open(&root).expect("open folder store"))
                        as Arc<dyn StorageAdapter>
                })
            },
            kills: 50,
            check: Some(every_journal_ends_with_a_whole_line),
        }
    }

    /// After recovery and an append, no journal keeps a torn line.
    fn every_journal_ends_with_a_whole_line(root: &str) {
        let runs = std::path::Path::new(root).join("crash/runs");
        for e in std::fs::read_dir(&runs).expect("the crash task's runs") {
            let path = e.unwrap().path();
            if path.to_string_lossy().ends_with(".journal.ndjson") {
                super::assert_clean_ndjson(&path);
            }
        }
    }

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

    sequential_adaptor::conformance_tests!(make, durable: durable);
}

/// A validated task name.
pub fn name(s: &str) -> TaskName {
    TaskName::new(s).unwrap()
}

/// Stores a version of `task` and creates `n` queued runs of it.
pub async fn runs(store: &dyn StorageAdapter, task: &str, n: usize) -> Vec<RunId> {
    let v = store
        .put_task_version(NewTaskVersion {
            task: name(task),
            code: "1 + 1".into(),
            graph: None,
            config: json!({"name": task}),
        })
        .await
        .unwrap()
        .version
        .version;
    let mut out = Vec::new();
    for i in 0..n {
        let r = store
            .create_run(NewRun::new(name(task), v, json!({ "i": i })))
            .await
            .unwrap();
        out.push(r.run().id);
    }
    out
}

/// The record the tests write at `seq` of `run`: every seventh is 70 KB (spans many pages, so a
/// kill can tear it), the rest small.
pub fn record(run: RunId, seq: u64) -> JournalRecord {
    let pad = if seq % 7 == 3 {
        70_000
    } else {
        (seq % 5) as usize * 10
    };
    JournalRecord {
        run,
        seq,
        kind: "log".into(),
        at: 1_700_000_000_000 + seq as i64,
        data: json!({ "seq": seq, "pad": "x".repeat(pad), "text": "Grüße 🚀" }),
    }
}

/// Checks every line of a journal file parses and the file ends with a newline.
pub fn assert_clean_ndjson(path: &std::path::Path) {
    let bytes = std::fs::read(path).unwrap();
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "{} does not end with a newline",
        path.display()
    );
    for (i, line) in bytes.split(|&b| b == b'\n').enumerate() {
        if !line.is_empty() {
            serde_json::from_slice::<Value>(line).unwrap_or_else(|e| {
                panic!("line {} of {} does not parse: {e}", i + 1, path.display())
            });
        }
    }
}
