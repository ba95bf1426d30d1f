//! The PostgreSQL parts of `sequential-bench engine --storage postgres`: a fresh schema per
//! measurement, the server's CPU, and the paragraph with the targets of issue 11.

use anyhow::Result;
use sequential_adaptor::now_millis;

use crate::engine::{IN_FLIGHT, Row, cpu_seconds_of, verdict, workers_for};

/// The PostgreSQL server `--storage postgres` measures: `BENCH_DATABASE_URL`, else the local one.
pub(crate) fn postgres_base() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema on the benchmark's PostgreSQL server, dropped (with everything in it) when
/// this is dropped.
pub(crate) struct PgSchema {
    pub(crate) base: String,
    name: String,
}

impl PgSchema {
    pub(crate) fn new() -> Self {
        PgSchema {
            base: postgres_base(),
            name: format!("bench_{}_{}", std::process::id(), now_millis()),
        }
    }

    /// The store's URL: this schema, and a pool large enough for 32 runs driven at once.
    pub(crate) fn url(&self) -> String {
        let sep = if self.base.contains('?') { '&' } else { '?' };
        format!("{}{sep}schema={}&pool_size=24", self.base, self.name)
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let (base, sql) = (
            self.base.clone(),
            format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name),
        );
        // Drop runs inside the benchmark's runtime, where blocking on another is not allowed
        let _ = std::thread::spawn(move || -> Result<()> {
            use sqlx::Connection;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&base).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })?;
            Ok(())
        })
        .join();
    }
}

/// User + system CPU of every process named `postgres` on this machine (the server and its
/// backends), in seconds.
pub(crate) fn postgres_cpu_seconds() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    dir.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim() == "postgres")
        })
        .filter_map(|pid| cpu_seconds_of(pid).ok())
        .sum()
}

/// Where the PostgreSQL targets come from.
const POSTGRES_TARGETS_SOURCE: &str = "issue 11 of this repository's tracker (“adaptor-postgres: PostgreSQL storage, and many workers on many machines”, its Speed section)";

/// The PostgreSQL row's own paragraph: how it was measured, and the targets.
pub(crate) fn postgres_section(pg: &Row) -> String {
    let tp = &pg.tp;
    let trips = tp.trips_per_run.unwrap_or(f64::NAN);
    let mut md = format!(
        "PostgreSQL ({}, a fresh schema, `pool_size=24`): the steady stream is driven by {} \
         worker processes ({} runs each at a time) on the one database; each load client waits \
         for its run's end notification (LISTEN, `PostgresStore::watch_end`: an end wakes only \
         the client of that run), then reads the run once — it used to ask for the run's state \
         every 5 ms, which cost the server as much CPU as the workers' writes. Beside the \
         table's columns: the PostgreSQL server's processes used {} of CPU per run (serving the \
         workers, and the load clients' starts and reads alike), and the workers sent {:.1} \
         statements per ten-step \
         run (the adaptor's statement counter: `BEGIN` and `COMMIT` included, and the claims of \
         idle moments), {:.2} per step. Storage: `pg_total_relation_size` of the tables after \
         `VACUUM`, per run. On 2 cores the workers, PostgreSQL, the echo server and the load \
         clients share the CPU, so the ceiling is the sum of their CPU per run.\n\n",
        postgres_base_shown(),
        workers_for("postgres"),
        IN_FLIGHT / workers_for("postgres"),
        tp.database_ms
            .map_or_else(|| "—".into(), |v| format!("{v:.2} ms")),
        trips,
        trips / 10.0,
    );
    md.push_str(&format!(
        "Targets, from {POSTGRES_TARGETS_SOURCE}; measured here:\n\n"
    ));
    md.push_str("| measure | target | measured | verdict |\n|---|---|---:|---|\n");
    let lines = [
        (
            "1-step p50, one run at a time",
            "≤ 4 ms".to_string(),
            format!("{:.2} ms", pg.p50_1),
            verdict(pg.p50_1 <= 4.0),
        ),
        (
            "10-step runs/s, 64 in flight across two worker processes",
            "≥ 600".to_string(),
            format!("{:.0}", tp.runs_per_s),
            verdict(tp.runs_per_s >= 600.0),
        ),
        (
            "database size per finished 10-step run",
            "≤ 4 KiB".to_string(),
            format!("{:.1} KiB", tp.bytes_per_run / 1024.0),
            verdict(tp.bytes_per_run <= 4096.0),
        ),
        (
            "round trips per durable step (workers)",
            "≤ 1".to_string(),
            format!("{:.2}", trips / 10.0),
            verdict(trips / 10.0 <= 1.0),
        ),
    ];
    for (what, target, got, v) in lines {
        md.push_str(&format!("| {what} | {target} | {got} | {v} |\n"));
    }
    md.push_str(
        "| 10-step runs/s ≥ 2× DBOS-TS on the same PostgreSQL | ≥ 2× | not measured by this invocation (DBOS-TS runs only with `--peers DIR`) | — |\n\n",
    );
    md
}

/// The benchmark's PostgreSQL server, password hidden.
fn postgres_base_shown() -> String {
    let base = postgres_base();
    match base.split_once("://").and_then(|(scheme, rest)| {
        let (auth, host) = rest.split_once('@')?;
        let user = auth.split(':').next().unwrap_or(auth);
        Some(format!("{scheme}://{user}@{host}"))
    }) {
        Some(shown) => shown,
        None => base,
    }
}
