//! Every statement of a run's life reaches `runs` and `journal` through an index with a key to
//! start from, on the plan a prepared statement is left with after its first executions (a
//! generic plan), in tables that were never analysed: with autovacuum off, or before it has
//! run, the planner only knows the tables' size in pages. A plan that scans `runs` makes every
//! settle cost as much as the run history is long, and so does one that reads a whole index in
//! order (with sequential scans priced out, the batch settle's plan made at 100 runs read every
//! run of the task through `runs_by_task` to feed a merge join: 5,000 rows and 13 ms per settle
//! in the engine bench); a list page that filters the whole index instead of starting at its
//! cursor costs as much as the pages before it.

use sequential_adaptor_postgres::{PostgresStore, hot_statements, planner_settings};
use sqlx::{AssertSqlSafe, Executor, Row};

use crate::support;

/// Sizes of the run history (each run with three journal records) at which the plans are made
/// anew. The planner's choice depends on the size it sees when it makes a generic plan, which a
/// connection then keeps while the tables grow: the old settle statement scanned `runs` when
/// its plan was made at about a thousand runs, and kept scanning at any size after.
const HISTORY: [i64; 3] = [100, 1_000, 10_000];

#[tokio::test]
async fn no_statement_of_a_runs_life_scans_the_run_history() {
    let Some(base) = support::server().await else {
        return;
    };
    let (url, guard) = support::fresh_schema(&base);
    drop(PostgresStore::open(&url).await.unwrap());
    let mut conn = support::connect(&base).await;
    conn.execute(AssertSqlSafe(format!(
        "SET search_path TO {}; \
         ALTER TABLE runs SET (autovacuum_enabled = false); \
         ALTER TABLE journal SET (autovacuum_enabled = false); \
         SET plan_cache_mode = force_generic_plan",
        guard.schema
    )))
    .await
    .unwrap();
    for (name, value) in planner_settings() {
        conn.execute(AssertSqlSafe(format!("SET {name} = {value}")))
            .await
            .unwrap();
    }
    let mut scans = Vec::new();
    let mut stored = 0;
    for size in HISTORY {
        let grow = format!(
            "INSERT INTO runs (id, task, version, status, input, fence, attempt, revision, \
                               created_at, updated_at, ended_at) \
             SELECT gen_random_uuid(), 't', 1, 'succeeded', '{{}}', 1, 1, 3, g, g, g \
             FROM generate_series({}, {size}) g \
             RETURNING id",
            stored + 1
        );
        let ids: Vec<uuid::Uuid> = sqlx::query(AssertSqlSafe(grow))
            .fetch_all(&mut conn)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        sqlx::query(
            "INSERT INTO journal (run, seq, at, packed) \
             SELECT r, s, 0, '\\x00'::bytea FROM unnest($1::uuid[]) r, generate_series(0, 2) s",
        )
        .bind(&ids)
        .execute(&mut conn)
        .await
        .unwrap();
        stored = size;
        scans.extend(scanning_plans(&mut conn, size).await);
    }
    let analyzed: i64 = sqlx::query(
        "SELECT count(*) FROM pg_stat_user_tables \
         WHERE schemaname = current_schema() AND relname IN ('runs', 'journal') \
           AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap()
    .get(0);
    assert_eq!(
        analyzed, 0,
        "the tables must stay unanalysed for this test to mean anything"
    );
    assert!(
        scans.is_empty(),
        "plans that scan a table:\n{}",
        scans.join("\n\n")
    );
}

/// The generic plans of every statement of a run's life, made now, that scan `runs` or
/// `journal`, each as its name and plan.
async fn scanning_plans(conn: &mut sqlx::PgConnection, size: i64) -> Vec<String> {
    conn.execute("DEALLOCATE ALL").await.unwrap();
    assert!(
        hot_statements().len() >= 20,
        "every statement of a run's life is checked"
    );
    let mut scans = Vec::new();
    for (i, (name, sql)) in hot_statements().iter().enumerate() {
        let params = (1..=99)
            .rev()
            .find(|n| sql.contains(&format!("${n}")))
            .unwrap_or(0);
        conn.execute(AssertSqlSafe(format!("PREPARE s{i} AS {sql}")))
            .await
            .unwrap_or_else(|e| panic!("{name} does not prepare: {e}"));
        let args = if params == 0 {
            String::new()
        } else {
            format!("({})", vec!["NULL"; params].join(", "))
        };
        let plan: String = sqlx::query(AssertSqlSafe(format!(
            "EXPLAIN (COSTS OFF, FORMAT JSON) EXECUTE s{i}{args}"
        )))
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{name} cannot be explained: {e}"))
        .try_get_unchecked(0)
        .unwrap();
        let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
        let mut whole = Vec::new();
        unbounded_reads(&plan[0]["Plan"], &mut whole);
        if !whole.is_empty() {
            scans.push(format!(
                "{name}, made at {size} runs, reads all of: {}\n{plan:#}",
                whole.join(", ")
            ));
        }
    }
    scans
}

/// The reads of `runs` or `journal` in `node` (a plan node of `EXPLAIN (FORMAT JSON)`) and below
/// it that are not bounded by a key: a sequential scan, or an index scan with no index
/// condition (in index order: the planner picks one to feed a merge join, and it reads every
/// run of the history; a list page starts at its cursor or its task). Each as `node on table`.
fn unbounded_reads(node: &serde_json::Value, found: &mut Vec<String>) {
    let kind = node["Node Type"].as_str().unwrap_or_default();
    let table = node["Relation Name"].as_str().unwrap_or_default();
    let scan = matches!(kind, "Seq Scan" | "Index Scan" | "Index Only Scan");
    // the queued runs' partial index holds only runs waiting for their first claim
    let bounded = node.get("Index Cond").is_some() || node["Index Name"] == "runs_queued";
    if scan && matches!(table, "runs" | "journal") && !bounded {
        let index = node["Index Name"]
            .as_str()
            .map(|i| format!(" using {i}"))
            .unwrap_or_default();
        found.push(format!("{kind}{index} on {table}"));
    }
    for child in node["Plans"].as_array().into_iter().flatten() {
        unbounded_reads(child, found);
    }
}
