//! A database written by schema version 1 (JSON text everywhere, the journal a rowid table with
//! text kinds) is migrated in place when opened, and every run, record and signal reads back
//! exactly as it was written; the migrated file then works as a new one does.

use std::path::Path;

use rusqlite::{Connection, params};
use sequential_adaptor::{
    ClaimRequest, Fence, JournalRecord, Lease, NewRun, Page, Run, RunFilter, RunId, RunStatus,
    Signal, StorageAdapter, TaskName, rules,
};
use sequential_adaptor_sqlite::{SCHEMA_VERSION, SqliteStore};
use serde_json::{Value, json};

/// The schema version 1 wrote, as it wrote it.
const SCHEMA_1: &str = r#"
CREATE TABLE schema_migrations (
    version     INTEGER PRIMARY KEY,
    description TEXT NOT NULL,
    applied_at  INTEGER NOT NULL
);
CREATE TABLE task_versions (
    task       TEXT NOT NULL,
    version    INTEGER NOT NULL,
    hash       TEXT NOT NULL,
    code       TEXT NOT NULL,
    graph      TEXT,
    config     TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (task, version),
    UNIQUE (task, hash)
);
CREATE TABLE runs (
    id              BLOB PRIMARY KEY,
    task            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    status          TEXT NOT NULL,
    wake_at         INTEGER,
    lease_expires   INTEGER,
    fence           INTEGER NOT NULL,
    revision        INTEGER NOT NULL,
    idempotency_key TEXT UNIQUE,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    ended_at        INTEGER,
    body            TEXT NOT NULL
);
CREATE INDEX runs_by_task ON runs (task, id);
CREATE INDEX runs_by_status ON runs (status, id);
CREATE INDEX runs_by_wake ON runs (status, wake_at);
CREATE INDEX runs_by_lease ON runs (status, lease_expires);
CREATE TABLE journal (
    run  BLOB NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq  INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at   INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (run, seq)
);
CREATE TABLE signals (
    run     BLOB NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL,
    name    TEXT NOT NULL,
    payload TEXT NOT NULL,
    at      INTEGER NOT NULL,
    PRIMARY KEY (run, seq)
);
INSERT INTO schema_migrations VALUES (1, 'task versions, runs, journal, signals', 1700000000000);
INSERT INTO task_versions VALUES ('t', 1, 'abc', 'fetch("x")', NULL, '{}', 1700000000000);
PRAGMA user_version = 1;
PRAGMA application_id = 1397051717;
"#;

const NOW: i64 = 1_800_000_000_000;

fn run(status: RunStatus, input: Value) -> Run {
    let mut r = rules::new_run(
        NewRun::new(TaskName::new("t").unwrap(), 1, input),
        NOW - 60_000,
    );
    r.status = status;
    r
}

fn insert_run(conn: &Connection, r: &Run) {
    conn.execute(
        "INSERT INTO runs (id, task, version, status, wake_at, lease_expires, fence, revision, \
         idempotency_key, created_at, updated_at, ended_at, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
        params![
            r.id.as_bytes(),
            r.task.as_str(),
            r.version,
            r.status.as_str(),
            r.wake_at,
            r.lease.as_ref().map(|l| l.expires_at),
            r.fence as i64,
            r.revision as i64,
            r.idempotency_key,
            r.created_at,
            r.updated_at,
            r.ended_at,
            serde_json::to_string(r).unwrap(),
        ],
    )
    .unwrap();
}

fn insert_record(conn: &Connection, r: &JournalRecord) {
    conn.execute(
        "INSERT INTO journal (run, seq, kind, at, data) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![
            r.run.as_bytes(),
            r.seq as i64,
            r.kind,
            r.at,
            r.data.to_string()
        ],
    )
    .unwrap();
}

/// Every kind the engine writes, one the store does not know, and data of every JSON shape.
fn journal_of(run: RunId) -> Vec<JournalRecord> {
    let data = [
        (
            "run.started",
            json!({"task": "t", "version": 1, "hash": "7c4d3b56b277bddfcf6a61c844600d47b98bd17ece1003c5af48162970efe8cb", "input": {"n": 1}}),
        ),
        (
            "call.requested",
            json!({"seq": 0, "kind": "fetch", "request": {"url": "http://127.0.0.1:1/step?i=0", "options": {}}}),
        ),
        (
            "call.completed",
            json!({"seq": 0, "kind": "fetch", "result": {"ok": {"status": 200, "statusText": "OK", "headers": {"content-type": "application/json", "date": "Sat, 05 Dec 2026 21:48:41 GMT"}, "data": {"i": 0, "ok": true}}}}),
        ),
        (
            "log",
            json!({"seq": 1, "kind": "log", "request": {"level": "warn", "message": "héllo \u{1F600}"}, "result": {"ok": null}}),
        ),
        ("timer.armed", json!({"seq": 2, "wakeAt": NOW + 5})),
        ("child.started", json!({"seq": 3, "run": RunId::new()})),
        (
            "run.paused",
            json!({"seq": 3, "error": {"name": "FetchError", "message": "503"}}),
        ),
        (
            "call.completed",
            json!({"seq": 4, "kind": "random", "result": {"ok": [0.25, -1, 1e300, 18446744073709551615u64, -9223372036854775808i64]}}),
        ),
        (
            "run.failed",
            json!({"error": {"name": "TypeError", "message": "x", "stack": "at line 1"}}),
        ),
        (
            "run.cancelled",
            json!({"error": {"name": "Cancelled", "message": ""}}),
        ),
        ("run.succeeded", json!({"output": 1.0})),
        ("custom.kind", json!("just a string")),
        ("3", json!(3)),
        ("call.completed", json!({})),
    ];
    data.into_iter()
        .enumerate()
        .map(|(i, (kind, data))| JournalRecord {
            run,
            seq: i as u64,
            kind: kind.into(),
            at: NOW - 1000 + i as i64,
            data,
        })
        .collect()
}

fn write_schema_1(path: &Path) -> (Vec<Run>, Vec<JournalRecord>, Vec<Signal>) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch(SCHEMA_1).unwrap();
    let mut done = run(RunStatus::Succeeded, json!({"n": 1}));
    done.output = Some(json!({"last": 9}));
    done.ended_at = Some(NOW - 10);
    done.idempotency_key = Some("key-1".into());
    let mut waiting = run(RunStatus::Waiting, json!("w"));
    waiting.wake_at = Some(NOW - 5);
    waiting.waiting_for = Some("a timer".into());
    let mut running = run(RunStatus::Running, json!(null));
    running.fence = 3;
    running.lease = Some(Lease {
        owner: "gone".into(),
        token: 3,
        expires_at: NOW - 1,
    });
    let runs = vec![done, waiting, running];
    for r in &runs {
        insert_run(&conn, r);
    }
    let records = journal_of(runs[0].id);
    for r in &records {
        insert_record(&conn, r);
    }
    let signals: Vec<Signal> = [json!({"by": "ann"}), json!(null), json!([1, 2])]
        .into_iter()
        .enumerate()
        .map(|(i, payload)| Signal {
            run: runs[1].id,
            name: format!("event-{i}"),
            payload,
            seq: i as u64,
            at: NOW - 100 + i as i64,
        })
        .collect();
    for s in &signals {
        conn.execute(
            "INSERT INTO signals (run, seq, name, payload, at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                s.run.as_bytes(),
                s.seq as i64,
                s.name,
                s.payload.to_string(),
                s.at
            ],
        )
        .unwrap();
    }
    (runs, records, signals)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_1_database_is_migrated_in_place_and_reads_identically() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v1.db");
    let (runs, records, signals) = write_schema_1(&path);

    let store = SqliteStore::open(&path).unwrap();
    for r in &runs {
        assert_eq!(&store.get_run(r.id).await.unwrap(), r);
    }
    let listed = store
        .list_runs(&RunFilter::default(), Page::first(10))
        .await
        .unwrap();
    let mut by_id = runs.clone();
    by_id.sort_by_key(|r| r.id);
    assert_eq!(listed.runs, by_id);
    assert_eq!(
        store.read_journal(runs[0].id, None, 100).await.unwrap(),
        records
    );
    assert_eq!(
        store.read_journal(runs[0].id, Some(10), 2).await.unwrap(),
        records[11..13]
    );
    assert_eq!(store.read_signals(runs[1].id, None).await.unwrap(), signals);

    // the file is at the new version, in place
    {
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let applied: Vec<i64> = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(applied, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
        let journal_sql: String = conn
            .query_row(
                "SELECT sql FROM sqlite_schema WHERE name = 'journal'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert!(journal_sql.contains("WITHOUT ROWID"), "{journal_sql}");
        let kinds: Vec<(String, String)> = conn
            .prepare("SELECT typeof(kind), typeof(data) FROM journal ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let text_kinds = [11, 12];
        for (i, (kind, data)) in kinds.iter().enumerate() {
            let want = if text_kinds.contains(&i) {
                "text"
            } else {
                "integer"
            };
            assert_eq!(kind, want, "record {i}: {}", records[i].kind);
            assert_eq!(data, "text", "record {i} keeps its JSON text");
        }
    }

    // the migrated file works: claims go through the new timer and lease indexes, appends
    // mix with the records written before
    let claims = store
        .claim(&ClaimRequest {
            worker: "w".into(),
            now: NOW,
            lease_ms: 30_000,
            limit: 10,
        })
        .await
        .unwrap();
    let mut claimed: Vec<RunId> = claims.iter().map(|c| c.run.id).collect();
    claimed.sort();
    assert_eq!(claimed, vec![runs[1].id, runs[2].id]);
    let claim = claims.iter().find(|c| c.run.id == runs[1].id).unwrap();
    let more: Vec<JournalRecord> = journal_of(runs[1].id);
    store
        .append(runs[1].id, &more, Fence::Token(claim.token))
        .await
        .unwrap();
    assert_eq!(
        store.read_journal(runs[1].id, None, 100).await.unwrap(),
        more
    );
    store.delete_run(runs[0].id).await.unwrap();
    drop(store);

    // reopened: nothing migrates again, everything still reads
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.read_journal(runs[1].id, None, 100).await.unwrap(),
        more
    );
    assert_eq!(store.read_signals(runs[1].id, None).await.unwrap(), signals);
    assert!(store.get_run(runs[0].id).await.is_err(), "deleted");
    drop(store);
    let conn = Connection::open(&path).unwrap();
    let left: i64 = conn
        .query_row(
            "SELECT count(*) FROM journal WHERE run = ?1",
            [runs[0].id.as_bytes()],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "the deleted run's journal went with it");
    let binary: i64 = conn
        .query_row(
            "SELECT count(*) FROM journal WHERE typeof(data) = 'blob'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        binary,
        more.len() as i64,
        "new records are stored in binary"
    );
}
