//! Recovery: torn journal tails, temp-file debris, and formats from the future.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde_json::json;

use sequential_adaptor::{Error, Fence, Page, Registry, RunFilter, StorageAdapter, VersionSel};
use sequential_adaptor_folder::{FolderFactory, FolderStore};

use crate::{assert_clean_ndjson, name, record, runs};

fn journal_path(root: &Path, task: &str, run: sequential_adaptor::RunId) -> PathBuf {
    root.join(task)
        .join("runs")
        .join(format!("{run}.journal.ndjson"))
}

fn append_raw(path: &Path, bytes: &[u8]) {
    fs::OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_last_line_is_dropped_and_truncated_before_the_next_append() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let store = FolderStore::open(&root).unwrap();
    let ids = runs(&store, "t", 2).await;
    let (a, b) = (ids[0], ids[1]);
    let recs: Vec<_> = (0..3).map(|s| record(a, s)).collect();
    store.append(a, &recs, Fence::None).await.unwrap();
    store.append(b, &[record(b, 0)], Fence::None).await.unwrap();
    // a crash mid-write: half of record 3 without its newline
    let full = serde_json::to_vec(&record(a, 3)).unwrap();
    let pa = journal_path(&root, "t", a);
    append_raw(&pa, &full[..full.len() / 2]);
    // and in the other journal a complete-looking but unparsable last line
    let pb = journal_path(&root, "t", b);
    append_raw(&pb, b"{\"run\":\"garbage\n");
    drop(store);

    let store = FolderStore::open(&root).unwrap();
    assert_eq!(
        store.read_journal(a, None, 100).await.unwrap(),
        recs,
        "torn tail dropped"
    );
    assert_eq!(store.journal_len(a).await.unwrap(), 3);
    assert_eq!(
        store.read_journal(b, None, 100).await.unwrap(),
        vec![record(b, 0)]
    );
    // the next append replaces the torn bytes; the files stay valid NDJSON
    store
        .append(a, &[record(a, 3), record(a, 4)], Fence::None)
        .await
        .unwrap();
    store.append(b, &[record(b, 1)], Fence::None).await.unwrap();
    assert_clean_ndjson(&pa);
    assert_clean_ndjson(&pb);
    let again = FolderStore::open(&root).unwrap();
    let got = again.read_journal(a, None, 100).await.unwrap();
    assert_eq!(got, (0..5).map(|s| record(a, s)).collect::<Vec<_>>());
    assert_eq!(
        again.read_journal(b, Some(0), 10).await.unwrap(),
        vec![record(b, 1)]
    );
    // a bad line in the middle is corruption, reported with the file, not silently dropped
    append_raw(&pb, b"not json\n");
    append_raw(&pb, &serde_json::to_vec(&record(b, 2)).unwrap());
    append_raw(&pb, b"\n");
    let fresh = FolderStore::open(&root).unwrap();
    let err = fresh.read_journal(b, None, 10).await.unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err:?}");
    assert!(err.to_string().contains("journal.ndjson"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn torn_signal_line_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let store = FolderStore::open(&root).unwrap();
    let run = runs(&store, "t", 1).await[0];
    store.send_signal(run, "a", json!(1)).await.unwrap();
    let path = root.join("t/runs").join(format!("{run}.signals.ndjson"));
    append_raw(&path, b"{\"run\":");
    let store = FolderStore::open(&root).unwrap();
    assert_eq!(store.read_signals(run, None).await.unwrap().len(), 1);
    assert_eq!(store.send_signal(run, "b", json!(2)).await.unwrap(), 1);
    assert_clean_ndjson(&path);
    let names: Vec<_> = store
        .read_signals(run, None)
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert_eq!(names, vec!["a", "b"]);
}

/// A pid that cannot belong to a live process (above Linux's pid_max).
const DEAD_PID: u32 = 999_999_999;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temp_file_debris_is_never_read_and_dead_writers_debris_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let store = FolderStore::open(&root).unwrap();
    let run = runs(&store, "t", 1).await[0];
    store
        .append(run, &[record(run, 0)], Fence::None)
        .await
        .unwrap();
    let stored = store.get_run(run).await.unwrap();
    let ghost = sequential_adaptor::RunId::new();
    let mut ghost_run = stored.clone();
    ghost_run.id = ghost;
    let ghost_json = serde_json::to_vec(&ghost_run).unwrap();
    let mut v2 = store
        .get_task_version(&name("t"), VersionSel::Latest)
        .await
        .unwrap();
    v2.version = 2;
    v2.code = "from a temp file".into();
    let v2_json = serde_json::to_vec(&v2).unwrap();
    let runs_dir = root.join("t/runs");
    let versions_dir = root.join("t/versions");
    // debris of a writer that died (ours by name, dead pid) and of a live one (this process)
    let dead_run = runs_dir.join(format!(".{ghost}.json.{DEAD_PID}.0.tmp"));
    let dead_version = versions_dir.join(format!(".2.json.{DEAD_PID}.1.tmp"));
    let live = versions_dir.join(format!(".2.json.{}.77.tmp", std::process::id()));
    // and files that merely end in .tmp
    let foreign = [
        runs_dir.join(format!("{ghost}.json.tmp")),
        versions_dir.join("2.json.tmp"),
    ];
    fs::write(&dead_run, &ghost_json).unwrap();
    fs::write(&dead_version, &v2_json).unwrap();
    fs::write(&live, &v2_json).unwrap();
    fs::write(&foreign[0], &ghost_json).unwrap();
    fs::write(&foreign[1], &v2_json).unwrap();
    let journal_debris = runs_dir.join(format!(".{run}.journal.ndjson.{DEAD_PID}.2.tmp"));
    fs::write(&journal_debris, b"{\"half\":").unwrap();

    let check = async |s: &FolderStore| {
        let latest = s
            .get_task_version(&name("t"), VersionSel::Latest)
            .await
            .unwrap();
        assert_eq!(latest.version, 1, "a temp file is not a version");
        assert!(matches!(
            s.get_task_version(&name("t"), VersionSel::Exact(2)).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(s.list_tasks().await.unwrap()[0].latest_version, 1);
        let all = s
            .list_runs(&RunFilter::default(), Page::first(10))
            .await
            .unwrap();
        assert_eq!(all.runs.iter().map(|r| r.id).collect::<Vec<_>>(), vec![run]);
        assert!(matches!(
            s.get_run(ghost).await,
            Err(Error::NotFound { .. })
        ));
        assert_eq!(
            s.read_journal(run, None, 10).await.unwrap(),
            vec![record(run, 0)]
        );
        let claimed = s
            .claim(&sequential_adaptor::ClaimRequest {
                worker: "w".into(),
                now: sequential_adaptor::now_millis(),
                lease_ms: 1,
                limit: 10,
            })
            .await
            .unwrap();
        assert!(claimed.iter().all(|c| c.run.id == run));
    };
    check(&store).await;
    drop(store);
    let reopened = FolderStore::open(&root).unwrap();
    assert!(
        !dead_run.exists() && !dead_version.exists() && !journal_debris.exists(),
        "dead writers' temp files are cleaned on open"
    );
    assert!(live.exists(), "a live process's temp file is left alone");
    assert!(
        foreign.iter().all(|f| f.exists()),
        "files that are not ours are left alone"
    );
    check(&reopened).await;
    reopened
        .append(run, &[record(run, 1)], Fence::None)
        .await
        .unwrap();
}

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (Vec<u8>, std::time::SystemTime)> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            if meta.is_dir() {
                out.insert(e.path(), (Vec::new(), meta.modified().unwrap()));
                stack.push(e.path());
            } else {
                out.insert(
                    e.path(),
                    (fs::read(e.path()).unwrap(), meta.modified().unwrap()),
                );
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_format_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("tasks");
    let store = FolderStore::open(&root).unwrap();
    let run = runs(&store, "t", 1).await[0];
    store
        .append(run, &[record(run, 0)], Fence::None)
        .await
        .unwrap();
    drop(store);
    let fmt = root.join(".sequential/format.json");
    fs::write(&fmt, "{\"version\": 2, \"added\": \"by a newer build\"}\n").unwrap();
    // debris that an accepted open would clean up must survive a refused one
    fs::write(root.join(format!("t/runs/.x.json.{DEAD_PID}.0.tmp")), "x").unwrap();
    let before = snapshot(&root);

    let err = FolderStore::open(&root).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&fmt.display().to_string()),
        "names the file: {msg}"
    );
    assert!(
        msg.contains("version 2") && msg.contains("version 1"),
        "names both versions: {msg}"
    );
    let mut registry = Registry::new();
    registry.register("folder", "folder:PATH", FolderFactory);
    let err = registry
        .open(&format!("folder:{}", root.display()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err:?}");
    assert_eq!(snapshot(&root), before, "a refused open changes nothing");

    // a malformed format file is a clear error too, naming the file
    fs::write(&fmt, "{\"version\": \"one\"").unwrap();
    let err = FolderStore::open(&root).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err:?}");
    assert!(err.to_string().contains("format.json"), "{err}");
}
