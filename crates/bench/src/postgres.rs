//! The PostgreSQL parts of `sequential-bench engine --storage postgres`: a fresh schema per
//! measurement, the server's CPU, and the paragraph with the targets of issue 11.

use anyhow::Result;
use sequential_adaptor::now_millis;

use crate::engine::{IN_FLIGHT, PeerRow, Row, cpu_seconds_of, verdict, workers_for};

/// The PostgreSQL server `--storage postgres` measures: `BENCH_DATABASE_URL`, else the local one.
pub(crate) fn postgres_base() -> String {
    std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// The benchmark's PostgreSQL server without database or options
/// (`postgres://postgres@127.0.0.1:5432`): the DBOS peer's `PGURL`, to which it appends
/// `/postgres` and its own database's name.
pub(crate) fn server_url() -> String {
    let base = postgres_base();
    let (scheme, rest) = base.split_once("://").unwrap_or(("postgres", &base));
    let host = rest.split(['/', '?']).next().unwrap_or(rest);
    format!("{scheme}://{host}")
}

/// The postmaster of the PostgreSQL server on this machine: the `postgres` process whose
/// parent is not one (its backends are its children), for the DBOS peer's CPU figures.
pub(crate) fn postmaster_pid() -> Option<u32> {
    let comm = |pid: u32| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok();
    let parent = |pid: u32| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        stat.rsplit_once(')')?
            .1
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| comm(pid).is_some_and(|c| c.trim() == "postgres"))
        .find(|&pid| {
            parent(pid)
                .and_then(comm)
                .is_none_or(|c| c.trim() != "postgres")
        })
}

/// Drops database `name` on the benchmark's server (a peer's scratch database), forcing its
/// connections closed; a failure is only reported.
pub(crate) fn drop_database(name: &str) {
    let (url, sql) = (
        format!("{}/postgres", server_url()),
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
    );
    if let Err(e) = blocking(url, sql) {
        eprintln!("dropping database {name}: {e:#}");
    }
}

/// Runs `sql` on a connection of its own to `url`, on a thread of its own (callers are inside
/// the benchmark's runtime, where blocking on another is not allowed).
fn blocking(url: String, sql: String) -> Result<()> {
    std::thread::spawn(move || -> Result<()> {
        use sqlx::Connection;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut conn = sqlx::PgConnection::connect(&url).await?;
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await?;
            conn.close().await
        })?;
        Ok(())
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the thread running the statement panicked"))?
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
        let sql = format!("DROP SCHEMA IF EXISTS {} CASCADE", self.name);
        let _ = blocking(self.base.clone(), sql);
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

/// The PostgreSQL row's own paragraph: how it was measured, and the targets (the DBOS-TS
/// comparison from `dbos`, its row when `--peers` ran it in this invocation).
pub(crate) fn postgres_section(pg: &Row, dbos: Option<&PeerRow>) -> String {
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
    match dbos {
        Some(d) => {
            let p50 = d.p50_1.map_or_else(|| "—".into(), |v| format!("{v:.2} ms"));
            match d.per_s_64 {
                Some(theirs) if theirs > 0.0 => md.push_str(&format!(
                    "| 10-step runs/s ≥ 2× DBOS-TS on the same PostgreSQL | ≥ 2× | {:.2}× ({:.0} against DBOS-TS's {theirs:.0}; its 1-step p50 {p50}) | {} |\n",
                    tp.runs_per_s / theirs,
                    tp.runs_per_s,
                    verdict(tp.runs_per_s >= 2.0 * theirs)
                )),
                _ => md.push_str(
                    "| 10-step runs/s ≥ 2× DBOS-TS on the same PostgreSQL | ≥ 2× | DBOS-TS ran but reported no 64-concurrent throughput | — |\n",
                ),
            }
            let cpu = d.cpu_text();
            md.push_str(&format!(
                "\nDBOS-TS ran in this invocation on the same PostgreSQL server (database `dbos_ts_bench`, \
                 dropped afterwards), the same echo server and the same window, one Node process \
                 (its library and 64 concurrent clients in one); CPU per 10-step workflow: {}.\n\n",
                if cpu.is_empty() { "not sampled".into() } else { cpu }
            ));
        }
        None => md.push_str(
            "| 10-step runs/s ≥ 2× DBOS-TS on the same PostgreSQL | ≥ 2× | not measured by this invocation (DBOS-TS runs only with `--peers DIR`) | — |\n\n",
        ),
    }
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
