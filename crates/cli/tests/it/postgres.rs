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
struct Schema {
    base: String,
    name: String,
}

impl Schema {
    /// `None` (after one skip line) when no server answers, unless `REQUIRE_POSTGRES=1`.
    fn fresh() -> Option<Schema> {
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
    fn url(&self) -> String {
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
