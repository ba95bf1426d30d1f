//! PostgreSQL storage through the real binary: `migrate`, read-only commands on an empty
//! database, and a run. Each test works in a schema of its own, dropped afterwards. Without a
//! server (`DATABASE_URL_TEST`, default `postgres://postgres@127.0.0.1:5432/test`) each test
//! prints one skip line and passes, unless `REQUIRE_POSTGRES=1`.

use serde_json::Value;
use sqlx::{Connection, PgConnection};

use crate::runs::task;

const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// A fresh schema on the test server, dropped with the guard.
pub(crate) struct Schema {
    base: String,
    name: String,
}

impl Schema {
    /// `None` (after one skip line) when no server answers, unless `REQUIRE_POSTGRES=1`.
    pub(crate) fn fresh() -> Option<Schema> {
        let base = std::env::var("DATABASE_URL_TEST")
            .ok()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_URL.to_string());
        let reached = block_on(async {
            match tokio::time::timeout(
                std::time::Duration::from_secs(5),
                PgConnection::connect(&base),
            )
            .await
            {
                Ok(Ok(c)) => {
                    let _ = c.close().await;
                    Ok(())
                }
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("no answer within 5 s".to_string()),
            }
        });
        if let Err(why) = reached {
            if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("REQUIRE_POSTGRES=1 but no PostgreSQL server answers at {base}: {why}");
            }
            println!(
                "skipped: no PostgreSQL server at {base} ({why}); set DATABASE_URL_TEST to test against one"
            );
            return None;
        }
        let name = format!("cli_{}", uuid::Uuid::now_v7().simple());
        Some(Schema { base, name })
    }

    /// The DATABASE_URL naming this schema.
    pub(crate) fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}&pool_size=4", self.base, self.name)
    }

    fn exists(&self) -> bool {
        block_on(async {
            let mut c = PgConnection::connect(&self.base).await.unwrap();
            let row: (bool,) =
                sqlx::query_as("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
                    .bind(&self.name)
                    .fetch_one(&mut c)
                    .await
                    .unwrap();
            row.0
        })
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let dropped = block_on(async {
            let mut c = PgConnection::connect(&self.base).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut c)
                .await?;
            c.close().await
        });
        if let Err(e) = dropped {
            eprintln!("could not drop test schema {}: {e}", self.name);
        }
    }
}

const HELLO: &str = "export default async function (input) {\n  const r = await fetch('data:application/json,{\"greeting\":\"hello\"}');\n  const { greeting } = await r.json();\n  return { greeting, name: input.name ?? null };\n}\n";

#[test]
fn migrate_creates_the_schema_once_and_says_so() {
    let Some(db) = Schema::fresh() else { return };
    let sb = task("hello", HELLO, None);
    let doc = sb
        .cmd(&["migrate", "--json"])
        .env("DATABASE_URL", db.url())
        .run()
        .ok()
        .json();
    assert_eq!(doc["backend"], "postgres", "{doc}");
    assert_eq!(doc["from_version"], 0, "{doc}");
    assert_eq!(doc["source"], "database-url", "{doc}");
    assert!(
        !doc["applied"].as_array().unwrap().is_empty(),
        "the first migrate applies the steps: {doc}"
    );
    let to = doc["to_version"].clone();
    sb.cmd(&["migrate"])
        .env("SUPABASE_DB_URL", db.url())
        .run()
        .ok()
        .stdout_has(&format!("schema version {to} is current"))
        .stdout_has("nothing to do");
    sb.run(&["migrate", "--help"])
        .ok()
        .stdout_has("advisory lock")
        .stdout_has("--adaptor");
    // folder storage needs no step of its own
    sb.run(&["migrate"])
        .ok()
        .stdout_has("folder storage is brought up to date whenever it is opened");
}

#[test]
fn read_only_commands_on_an_unmigrated_database_ask_for_migrate_and_create_nothing() {
    let Some(db) = Schema::fresh() else { return };
    let sb = task("hello", HELLO, None);
    for args in [&["list"][..], &["history", "hello"][..]] {
        sb.cmd(args)
            .env("DATABASE_URL", db.url())
            .run()
            .usage_error()
            .stderr_has("sequential-ecosystem migrate")
            .stderr_has(&db.name);
    }
    assert!(!db.exists(), "a read-only command created the schema");
}

#[test]
fn a_run_on_postgres_is_stored_and_listed() {
    let Some(db) = Schema::fresh() else { return };
    let sb = task("hello", HELLO, None);
    let url = db.url();
    let doc = sb
        .cmd(&["run", "hello", "--input", r#"{"name": "Ann"}"#, "--json"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .json();
    assert_eq!(doc["status"], "succeeded", "{doc}");
    assert_eq!(doc["output"]["greeting"], "hello", "{doc}");
    assert_eq!(doc["output"]["name"], "Ann", "{doc}");
    let run = doc["run"].as_str().unwrap().to_string();
    let list = sb
        .cmd(&["list", "--json"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .json();
    let text = list.to_string();
    assert!(text.contains("hello"), "{list}");
    let shown: Value = sb
        .cmd(&["show", &run, "--json"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .json();
    assert_eq!(shown["status"], "succeeded", "{shown}");
    sb.cmd(&["history", "hello"])
        .env("DATABASE_URL", &url)
        .run()
        .ok()
        .stdout_has(&run[..8]);
    // the URL's password never reaches the output
    let with_password = url.replace("postgres@", "postgres:hunter2@");
    sb.cmd(&["sync-tasks"])
        .env("DATABASE_URL", &with_password)
        .run()
        .ok()
        .stdout_has("hello  unchanged v1")
        .stdout_has("postgres:***@")
        .stdout_lacks("hunter2");
    sb.cmd(&["config", "show", "--json"])
        .env("DATABASE_URL", &with_password)
        .run()
        .ok()
        .stdout_lacks("hunter2");
}

#[test]
fn sync_tasks_runs_copies_runs_once_keeping_their_ids() {
    let Some(db) = Schema::fresh() else { return };
    let sb = task("hello", HELLO, None);
    // two runs on folder storage (the configured storage)
    let first = sb.run(&["run", "hello", "--json"]).ok().json();
    let second = sb
        .run(&["run", "hello", "--input", r#"{"name": "Bo"}"#, "--json"])
        .ok()
        .json();
    let url = db.url();
    let doc = sb
        .run(&["sync-tasks", "--adaptor", &url, "--runs", "--json"])
        .ok()
        .json();
    let runs = &doc["runs"];
    assert_eq!(runs["created"], 2, "{doc}");
    assert_eq!(runs["from"], "folder:tasks", "{doc}");
    assert!(runs["records"].as_u64().unwrap() > 0, "{doc}");
    // a second sync copies nothing
    let again = sb
        .run(&["sync-tasks", "--adaptor", &url, "--runs", "--json"])
        .ok()
        .json();
    assert_eq!(
        (
            &again["runs"]["created"],
            &again["runs"]["updated"],
            &again["runs"]["unchanged"],
            &again["runs"]["records"],
            &again["runs"]["signals"]
        ),
        (
            &Value::from(0),
            &Value::from(0),
            &Value::from(2),
            &Value::from(0),
            &Value::from(0)
        ),
        "{again}"
    );
    sb.run(&["sync-tasks", "--adaptor", &url, "--runs"])
        .ok()
        .stdout_has("nothing new (2 already copied)");
    // the copies keep their ids, outputs and journals
    for original in [&first, &second] {
        let id = original["run"].as_str().unwrap();
        let folder = sb.run(&["show", id, "--journal", "--json"]).ok().json();
        let copy = sb
            .cmd(&["show", id, "--journal", "--json"])
            .env("DATABASE_URL", &url)
            .run()
            .ok()
            .json();
        assert_eq!(copy["status"], "succeeded", "{copy}");
        assert_eq!(copy["output"], original["output"], "{copy}");
        assert_eq!(copy["journal"], folder["journal"], "{copy}");
    }
    // only into PostgreSQL, and only with a target
    sb.run(&["sync-tasks", "--adaptor", "sqlite:copy.db", "--runs"])
        .usage_error()
        .stderr_has("--runs copies runs into PostgreSQL storage");
    sb.run(&["sync-tasks", "--runs"])
        .code(2)
        .stderr_has("--adaptor <NAME|URL>");
}

/// A throw-away PostgreSQL cluster on a free port (binaries from `pg_config --bindir`; run as
/// the `postgres` user through `runuser` when the test runs as root), stopped when dropped, so
/// the shared server is never touched.
struct Cluster {
    _dir: tempfile::TempDir,
    data: std::path::PathBuf,
    log: std::path::PathBuf,
    bindir: std::path::PathBuf,
    as_postgres: bool,
    port: u16,
}

impl Cluster {
    /// `None` (after one skip line) without the server binaries, unless `REQUIRE_POSTGRES=1`.
    fn start() -> Option<Cluster> {
        let bindir = std::process::Command::new("pg_config")
            .arg("--bindir")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| std::path::PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
            .filter(|d| d.join("initdb").is_file() && d.join("pg_ctl").is_file());
        let Some(bindir) = bindir else {
            if std::env::var("REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                panic!("REQUIRE_POSTGRES=1 but `pg_config --bindir` names no initdb and pg_ctl");
            }
            println!(
                "skipped: no PostgreSQL server binaries (pg_config --bindir with initdb, pg_ctl)"
            );
            return None;
        };
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().join("pg");
        std::fs::create_dir(&home).unwrap();
        if root {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let chown = std::process::Command::new("chown")
                .args(["postgres:", home.to_str().unwrap()])
                .status()
                .unwrap();
            assert!(chown.success(), "chown of the cluster directory");
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cluster = Cluster {
            data: home.join("data"),
            log: home.join("log"),
            _dir: dir,
            bindir,
            as_postgres: root,
            port,
        };
        cluster.pg(
            "initdb",
            &[
                "-D",
                cluster.data.to_str().unwrap(),
                "-U",
                "postgres",
                "-A",
                "trust",
                "--no-sync",
            ],
        );
        cluster.ctl(&["start"]);
        Some(cluster)
    }

    /// Runs a server binary (as `postgres` when we are root); panics with its output on failure.
    fn pg(&self, bin: &str, args: &[&str]) {
        let exe = self.bindir.join(bin);
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        let out = cmd.args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{bin} {args:?}: {}\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `pg_ctl ACTION` on this cluster, waiting for it to finish.
    fn ctl(&self, action: &[&str]) {
        let opts = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories=''",
            self.port
        );
        let mut args = vec![
            "-D",
            self.data.to_str().unwrap(),
            "-l",
            self.log.to_str().unwrap(),
            "-o",
            &opts,
            "-w",
            "-t",
            "60",
        ];
        args.extend_from_slice(action);
        self.pg("pg_ctl", &args);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.data.to_str().unwrap().to_string();
        let exe = self.bindir.join("pg_ctl");
        let mut cmd = if self.as_postgres {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            std::process::Command::new(&exe)
        };
        let _ = cmd
            .args(["-D", &data, "-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// Five fetches to the counting server, one path per (run, step), so repeats can be counted.
const FIVE_FETCHES: &str = "export default async function (input) {\n  let sum = 0;\n  for (let s = 0; s < 5; s++) {\n    const r = await fetch(`${input.base}/step/${input.k * 10 + s}`);\n    sum += (await r.json()).i;\n  }\n  return { k: input.k, sum };\n}\n";

/// Worker processes that are SIGKILLed and reaped if the test ends before stopping them (a
/// failed assertion), so none outlives the test.
struct Workers(Vec<std::process::Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for mut w in self.0.drain(..) {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

fn sigterm(child: &std::process::Child) {
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// How many runs of `store` are `succeeded`.
async fn succeeded(store: &sequential_adaptor_postgres::PostgresStore) -> usize {
    use sequential_adaptor::{Page, RunFilter, RunStatus, StorageAdapter};
    let filter = RunFilter {
        task: None,
        statuses: vec![RunStatus::Succeeded],
    };
    let mut n = 0;
    let mut page = Page::first(1000);
    loop {
        let got = store.list_runs(&filter, page).await.unwrap();
        n += got.runs.len();
        match got.next {
            Some(after) => page.after = Some(after),
            None => return n,
        }
    }
}

/// Every run succeeded with the right output and five completed calls, and a fetch performed
/// more than once (in flight when its worker lost the run) carried the same Idempotency-Key
/// each time, and the run ended exactly once (a worker killed between appending the end and
/// settling leaves the end in the journal; the next one settles without appending it again).
async fn check_each_run_once(
    store: &sequential_adaptor_postgres::PostgresStore,
    server: &sequential_test_support::http::CountingServer,
    runs: &[(sequential_adaptor::RunId, u64)],
) {
    use sequential_adaptor::StorageAdapter;
    let hits = server.hits();
    for (id, k) in runs {
        let run = store.get_run(*id).await.unwrap();
        assert_eq!(
            run.output,
            Some(serde_json::json!({"k": k, "sum": 50 * k + 10})),
            "run {id}"
        );
        let journal = store.read_journal(*id, None, usize::MAX).await.unwrap();
        let ends: Vec<_> = journal
            .iter()
            .filter(|r| r.kind == "run.succeeded")
            .collect();
        assert!(
            ends.len() == 1,
            "run {id} ended {} times: {:#?}",
            ends.len(),
            journal
                .iter()
                .map(|r| format!("{} {} {}", r.seq, r.kind, r.data))
                .collect::<Vec<_>>()
        );
        for s in 0..5 {
            let path = format!("/step/{}", k * 10 + s);
            let keys: Vec<_> = hits
                .iter()
                .filter(|h| h.path == path)
                .map(|h| h.key.clone())
                .collect();
            assert!(!keys.is_empty(), "run {id} step {s} was never performed");
            assert!(
                keys.iter().all(|key| key.is_some() && key == &keys[0]),
                "run {id} step {s} repeated with different keys: {keys:?}"
            );
        }
        let completed = journal
            .iter()
            .filter(|r| r.kind == "call.completed")
            .count();
        assert_eq!(completed, 5, "run {id}: {completed} completed calls");
    }
}

#[test]
fn workers_ride_out_a_postgres_restart_and_finish_every_run_once() {
    use sequential_adaptor::{NewRun, StorageAdapter, TaskName};
    use sequential_adaptor_postgres::PostgresStore;
    use sequential_test_support::http::CountingServer;

    let Some(cluster) = Cluster::start() else {
        return;
    };
    let url = cluster.url();
    let server = CountingServer::start();
    let sb = task("five", FIVE_FETCHES, None);
    sb.cmd(&["sync-tasks"]).env("DATABASE_URL", &url).run().ok();
    const RUNS: u64 = 300;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(PostgresStore::open(&url)).unwrap();
    let runs: Vec<_> = rt.block_on(async {
        let mut runs = Vec::new();
        for k in 0..RUNS {
            let input = serde_json::json!({"base": server.url(), "k": k});
            let run = store
                .create_run(NewRun::new(TaskName::new("five").unwrap(), 1, input))
                .await
                .unwrap()
                .into_run();
            runs.push((run.id, k));
        }
        runs
    });
    let mut workers = Workers(
        (0..2)
            .map(|_| {
                sb.cmd(&["worker", "--concurrency", "8"])
                    .env("DATABASE_URL", &url)
                    .spawn()
            })
            .collect(),
    );
    let wait_for = |n: usize, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        loop {
            let done = rt.block_on(succeeded(&store));
            if done >= n {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {done} of {n} runs succeeded"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    wait_for(RUNS as usize / 3, "before the restart");
    let before = rt.block_on(succeeded(&store));
    cluster.ctl(&["-m", "fast", "restart"]);
    wait_for(RUNS as usize, "after the restart");
    let mut noticed = 0;
    while let Some(w) = workers.0.pop() {
        sigterm(&w);
        let out = w.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "a worker failed: {stderr}");
        noticed += stderr.lines().filter(|l| l.contains("connection")).count();
    }
    println!(
        "restarted PostgreSQL with {before} of {RUNS} runs done; all {RUNS} finished; \
         the workers logged {noticed} lines about the lost connection"
    );
    rt.block_on(check_each_run_once(&store, &server, &runs));
    drop(cluster);
}

#[test]
fn three_workers_drain_two_thousand_runs_and_one_sigkill_loses_or_repeats_nothing() {
    use sequential_adaptor::{NewRun, StorageAdapter, TaskName};
    use sequential_adaptor_postgres::PostgresStore;
    use sequential_test_support::http::CountingServer;

    let Some(db) = Schema::fresh() else { return };
    let url = db.url().replace("pool_size=4", "pool_size=10");
    let server = CountingServer::start();
    let sb = task("five", FIVE_FETCHES, None);
    sb.cmd(&["sync-tasks"]).env("DATABASE_URL", &url).run().ok();
    const RUNS: u64 = 2_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let store = rt.block_on(PostgresStore::open(&url)).unwrap();
    let runs: Vec<_> = rt.block_on(async {
        let mut runs = Vec::new();
        for k in 0..RUNS {
            let input = serde_json::json!({"base": server.url(), "k": k});
            let run = store
                .create_run(NewRun::new(TaskName::new("five").unwrap(), 1, input))
                .await
                .unwrap()
                .into_run();
            runs.push((run.id, k));
        }
        runs
    });
    let spawn = || {
        sb.cmd(&["worker", "--concurrency", "8"])
            .env("DATABASE_URL", &url)
            .spawn()
    };
    let mut workers = Workers((0..3).map(|_| spawn()).collect());
    let wait_for = |n: usize, what: &str| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
        loop {
            let done = rt.block_on(succeeded(&store));
            if done >= n {
                return done;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{what}: {done} of {n} runs succeeded"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    };
    let halfway = wait_for(RUNS as usize / 2, "before the kill");
    let mut victim = workers.0.remove(0);
    victim.kill().unwrap(); // SIGKILL
    victim.wait().unwrap();
    workers.0.push(spawn());
    wait_for(RUNS as usize, "after the kill");
    while let Some(w) = workers.0.pop() {
        sigterm(&w);
        let out = w.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "a worker failed: {stderr}");
    }
    rt.block_on(check_each_run_once(&store, &server, &runs));
    let hits = server.hits();
    let mut per_path = std::collections::HashMap::new();
    for h in &hits {
        *per_path.entry(h.path.clone()).or_insert(0usize) += 1;
    }
    let repeated = per_path.values().filter(|n| **n > 1).count();
    assert!(
        per_path.values().all(|n| *n <= 2),
        "a fetch was performed more than twice after one kill"
    );
    // every run was settled: no lease is left, the dead worker's included
    let leased = rt.block_on(async {
        let mut leased = 0;
        for (id, _) in &runs {
            if store.get_run(*id).await.unwrap().lease.is_some() {
                leased += 1;
            }
        }
        leased
    });
    assert_eq!(leased, 0, "runs still leased after the drain");
    println!(
        "SIGKILLed a worker with {halfway} of {RUNS} runs done; {} fetches for {} steps, \
         {repeated} in-flight steps repeated with their key",
        hits.len(),
        RUNS * 5
    );
}
