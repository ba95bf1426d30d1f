//! Every statement of a run's life reaches `runs` and `journal` through an index, on the plan
//! a prepared statement is left with after its first executions (a generic plan), in tables
//! that were never analysed: with autovacuum off, or before it has run, the planner only knows
//! the tables' size in pages. A plan that scans `runs` makes every settle cost as much as the
//! run history is long; a list page that filters the whole index instead of starting at its
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
        let plan: Vec<String> = sqlx::query(AssertSqlSafe(format!(
            "EXPLAIN (COSTS OFF) EXECUTE s{i}{args}"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{name} cannot be explained: {e}"))
        .iter()
        .map(|row| row.get(0))
        .collect();
        let scans_a_table = plan
            .iter()
            .any(|line| line.contains("Seq Scan on runs") || line.contains("Seq Scan on journal"));
        // a list page starts at its cursor (or its task) in the index, not at the first run
        let list_unbounded =
            name.starts_with("LIST") && !plan.iter().any(|line| line.contains("Index Cond"));
        if scans_a_table || list_unbounded {
            scans.push(format!("{name}, made at {size} runs:\n{}", plan.join("\n")));
        }
    }
    scans
}
