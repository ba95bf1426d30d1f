//! Copying runs in as they are (what `sync-tasks --runs` does): same ids, journals and signals;
//! a second copy writes nothing; a newer revision replaces an older one.

use sequential_adaptor::{
    Fence, JournalRecord, MemoryStore, NewRun, NewTaskVersion, RunStatus, StorageAdapter, TaskName,
    VersionSel,
};
use sequential_adaptor_postgres::{Imported, PostgresStore};
use serde_json::json;

use crate::support;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_journals_and_signals_copy_in_once_and_newer_revisions_replace_older() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, _guard) = support::fresh_schema(&base);
    let target = PostgresStore::open(&url).await.unwrap();
    let source = MemoryStore::new();
    let task = TaskName::new("copied").unwrap();
    let new = NewTaskVersion {
        task: task.clone(),
        code: "1".into(),
        graph: None,
        config: json!({}),
    };
    source.put_task_version(new.clone()).await.unwrap();
    target.put_task_version(new).await.unwrap();
    let mut keyed = NewRun::new(task.clone(), 1, json!({"n": 1}));
    keyed.idempotency_key = Some("order-1".into());
    let run = source.create_run(keyed).await.unwrap().into_run();
    let records: Vec<_> = (0..3)
        .map(|seq| JournalRecord {
            run: run.id,
            seq,
            kind: "log".into(),
            at: seq as i64,
            data: json!({"seq": seq}),
        })
        .collect();
    source.append(run.id, &records, Fence::None).await.unwrap();
    source.send_signal(run.id, "go", json!(1)).await.unwrap();
    let signals = source.read_signals(run.id, None).await.unwrap();

    assert_eq!(target.import_run(&run).await.unwrap(), Imported::Created);
    target.append(run.id, &records, Fence::None).await.unwrap();
    assert_eq!(target.import_signals(run.id, &signals).await.unwrap(), 1);
    assert_eq!(target.get_run(run.id).await.unwrap(), run);
    assert_eq!(
        target.read_journal(run.id, None, 10).await.unwrap(),
        records
    );
    assert_eq!(target.read_signals(run.id, None).await.unwrap(), signals);
    assert_eq!(target.journal_len(run.id).await.unwrap(), 3);

    // again: nothing new
    assert_eq!(target.import_run(&run).await.unwrap(), Imported::Unchanged);
    assert_eq!(target.import_signals(run.id, &signals).await.unwrap(), 0);

    // the source moves on: the newer revision replaces the copy
    let mut done = source.get_run(run.id).await.unwrap();
    done.status = RunStatus::Succeeded;
    done.output = Some(json!("ok"));
    let done = source.update_run(&done).await.unwrap();
    assert_eq!(target.import_run(&done).await.unwrap(), Imported::Updated);
    assert_eq!(target.get_run(run.id).await.unwrap(), done);
    // and an older copy never replaces a newer one
    assert_eq!(target.import_run(&run).await.unwrap(), Imported::Unchanged);
    assert_eq!(
        target
            .get_task_version(&task, VersionSel::Latest)
            .await
            .unwrap()
            .version,
        1
    );
}
