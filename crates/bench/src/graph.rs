//! `sequential-bench graph`: graph tasks and the Machine (issue 12's speed targets).
//!
//! - a 10-state linear graph whose handlers each do one `fetch()` to a loopback server, end to
//!   end on SQLite (fsync on), one run at a time;
//! - static validation of a 1,000-state graph;
//! - `Machine::action` with a JSON, a Rust and a JavaScript definition on the memory log, and
//!   with a JSON definition on the file log (one fdatasync per action);
//! - how soon a Machine in another process (`graph-follow-child`) sees an appended record.
//!
//! Knobs (environment): `BENCH_GRAPH_RUNS` (100) runs of the graph; `BENCH_GRAPH_ONLY=runs`
//! measures only those and prints one line (for A/B comparisons), not the markdown section.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use sequential_adaptor::{NewTaskVersion, RunStatus, StorageAdapter, TaskName};
use sequential_tasker_engine::flow_graph::machine::Transition;
use sequential_tasker_engine::flow_graph::{CheckOptions, Definition, Graph, Machine, MemoryLog};
use sequential_tasker_engine::machine::{FileLog, js_definition};
use sequential_tasker_engine::{Engine, EngineConfig, StartOptions};
use serde_json::{Value, json};

use crate::engine::verdict;
use crate::{machine_line, percentile};

const COUNTER_JSON: &str = r#"{"initial": "idle", "context": {"running": false, "counter": 0},
  "states": {
    "idle": {"on": {"START": {"target": "running", "action": {"assign": {"running": true, "counter": "$.payload"}}}}},
    "running": {"on": {
      "INCREMENT": {"target": "running", "action": {"assign": {"counter": {"$add": ["$.context.counter", 1]}}}},
      "STOP": {"target": "idle", "action": {"assign": {"running": false}}}}}}}"#;

const COUNTER_JS: &str = r#"import { createMachine } from "coremachine";
createMachine({
  initial: "idle",
  context: { running: false, counter: 0 },
  states: {
    idle: { on: { START: { target: "running", action: (ctx, counter) => { ctx.running = true; ctx.counter = counter; } } } },
    running: { on: {
      INCREMENT: { target: "running", action: (ctx) => { ctx.counter++; } },
      STOP: { target: "idle", action: (ctx) => { ctx.running = false; } },
    } },
  },
});
"#;

fn counter_rust() -> Definition {
    Definition::new("idle", json!({"running": false, "counter": 0}))
        .on(
            "idle",
            "START",
            Transition::to("running").action(|ctx, n| {
                ctx["running"] = json!(true);
                ctx["counter"] = n.clone();
                Ok(())
            }),
        )
        .on(
            "running",
            "INCREMENT",
            Transition::to("running").action(|ctx, _| {
                let n = ctx["counter"].as_i64().ok_or("counter is not a number")?;
                ctx["counter"] = json!(n + 1);
                Ok(())
            }),
        )
}

/// The mean and p50 of `n` INCREMENTs on `m` (after START), in microseconds.
fn actions<L: sequential_tasker_engine::flow_graph::MachineLog>(
    mut m: Machine<L>,
    n: usize,
) -> Result<(f64, f64)> {
    m.action("START", json!(0))?;
    let mut lat = Vec::with_capacity(n);
    let all = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        m.action("INCREMENT", Value::Null)?;
        lat.push(t.elapsed());
    }
    let mean = all.elapsed().as_secs_f64() * 1e6 / n as f64;
    if m.context()["counter"] != json!(n) {
        bail!("the machine counted {} of {n}", m.context()["counter"]);
    }
    lat.sort();
    Ok((mean, percentile(&lat, 0.5) * 1000.0))
}

/// A linear graph of `n` task states `s0 … s{n-1}` then `done`.
fn linear_graph(n: usize) -> Value {
    let mut states = serde_json::Map::new();
    for i in 0..n {
        let next = if i + 1 == n {
            "done".to_string()
        } else {
            format!("s{}", i + 1)
        };
        states.insert(format!("s{i}"), json!({"handler": "step", "onDone": next}));
    }
    states.insert("done".into(), json!({"type": "final"}));
    json!({"version": 1, "initial": "s0", "states": states})
}

const STEP_CODE: &str = r#"export async function step(input) {
  const r = await fetch(`${input.url}/step?i=${(input.i ?? 0) + 1}`);
  const body = await r.json();
  return { url: input.url, i: body.i };
}
"#;

/// p50 and p99 (ms) of whole runs of a 10-state graph, one at a time, on SQLite.
async fn graph_runs(url: &str, n: usize) -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let store: std::sync::Arc<dyn StorageAdapter> = std::sync::Arc::new(
        sequential_adaptor_sqlite::SqliteStore::open(dir.path().join("graph.db"))?,
    );
    let task = TaskName::new("linear10")?;
    store
        .put_task_version(NewTaskVersion {
            task: task.clone(),
            code: STEP_CODE.into(),
            graph: Some(linear_graph(10)),
            config: json!({}),
        })
        .await?;
    let engine = Engine::new(store, EngineConfig::default())?;
    let mut lat = Vec::with_capacity(n);
    for i in 0..n + 10 {
        let t = Instant::now();
        let run = engine
            .start(
                &task,
                json!({"url": url}),
                // as `sequential-ecosystem run` starts a run it drives: stored already claimed
                StartOptions {
                    claim: true,
                    ..StartOptions::default()
                },
            )
            .await?;
        let run = engine.run_until_settled(run.id, None).await?;
        if run.status != RunStatus::Succeeded
            || run.output.as_ref().map(|o| &o["i"]) != Some(&json!(10))
        {
            bail!(
                "graph run ended {}: {:?} {:?}",
                run.status,
                run.output,
                run.error
            );
        }
        if i >= 10 {
            lat.push(t.elapsed());
        }
    }
    lat.sort();
    Ok((percentile(&lat, 0.5), percentile(&lat, 0.99)))
}

/// p50 (ms) of parsing and validating a 1,000-state graph.
fn validation(n: usize) -> Result<f64> {
    let text = linear_graph(1000).to_string();
    let options = CheckOptions {
        exports: Some(["step".to_string()].into_iter().collect()),
    };
    let mut lat = Vec::with_capacity(n);
    for _ in 0..n + 5 {
        let t = Instant::now();
        let parsed = Graph::parse_with(&text, &options)?;
        lat.push(t.elapsed());
        if parsed.graph.main().initial() != "s0" {
            bail!("parsed the wrong graph");
        }
    }
    lat.drain(..5);
    lat.sort();
    Ok(percentile(&lat, 0.5))
}

fn unix_micros() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros())
}

/// `sequential-bench graph-follow-child LOG N`: follows the file log, printing `SEQ MICROS` when
/// each record is seen (polling every millisecond, as `fsm follow` does every few), until
/// record N.
pub fn follow_child(args: &[String]) -> Result<()> {
    let [path, n] = args else {
        bail!("usage: sequential-bench graph-follow-child LOG N");
    };
    let n: u64 = n.parse()?;
    let def = Definition::from_json(COUNTER_JSON)?;
    let mut m = Machine::open(def, FileLog::open(path)?)?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "ready {}", m.seq())?;
    out.flush()?;
    while m.seq() < n {
        for c in m.sync()? {
            writeln!(out, "{} {}", c.seq, unix_micros())?;
            out.flush()?;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// p50 and max (ms) from an append returning here to the child process seeing it.
fn follow_latency(n: u64) -> Result<(f64, f64)> {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("follow.ndjson");
    let def = Definition::from_json(COUNTER_JSON)?;
    let mut m = Machine::open(def, FileLog::open(&path)?)?;
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .arg("graph-follow-child")
        .arg(&path)
        .arg((n + 1).to_string())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting graph-follow-child")?;
    let mut lines = BufReader::new(child.stdout.take().context("child stdout")?).lines();
    let ready = lines.next().context("the follower said nothing")??;
    if !ready.starts_with("ready") {
        bail!("unexpected {ready:?}");
    }
    m.action("START", json!(0))?;
    lines.next().context("the follower ended")??;
    let mut lat = Vec::new();
    for _ in 0..n {
        let sent = unix_micros();
        m.action("INCREMENT", Value::Null)?;
        let line = lines.next().context("the follower ended")??;
        let seen: u128 = line.split_whitespace().nth(1).context("a time")?.parse()?;
        lat.push(Duration::from_micros(seen.saturating_sub(sent) as u64));
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait()?;
    lat.sort();
    Ok((percentile(&lat, 0.5), percentile(&lat, 1.0)))
}

pub async fn run() -> Result<String> {
    let runs: usize = std::env::var("BENCH_GRAPH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
        .max(1);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            tokio::spawn(crate::engine::echo(sock));
        }
    });
    eprintln!("graph: {runs} runs of a 10-state graph on SQLite");
    let (p50, p99) = graph_runs(&url, runs).await?;
    if std::env::var("BENCH_GRAPH_ONLY").as_deref() == Ok("runs") {
        return Ok(format!(
            "10-state graph runs ({runs}): p50 {p50:.2} ms, p99 {p99:.2} ms\n"
        ));
    }
    eprintln!("graph: validating a 1,000-state graph");
    let check = tokio::task::spawn_blocking(|| validation(50)).await??;
    eprintln!("graph: Machine actions");
    let (json_mem, json_mem_p50) = actions(
        Machine::open(Definition::from_json(COUNTER_JSON)?, MemoryLog::new())?,
        20_000,
    )?;
    let (rust_mem, rust_mem_p50) =
        actions(Machine::open(counter_rust(), MemoryLog::new())?, 20_000)?;
    let (js_mem, js_mem_p50) = tokio::task::spawn_blocking(|| -> Result<(f64, f64)> {
        actions(
            Machine::open(js_definition(COUNTER_JS)?, MemoryLog::new())?,
            500,
        )
    })
    .await??;
    let dir = tempfile::tempdir()?;
    let file_path = dir.path().join("bench.ndjson");
    let (json_file, json_file_p50) = actions(
        Machine::open(
            Definition::from_json(COUNTER_JSON)?,
            FileLog::open(&file_path)?,
        )?,
        300,
    )?;
    eprintln!("graph: follow latency from another process");
    let (follow_p50, follow_max) = tokio::task::spawn_blocking(|| follow_latency(50)).await??;

    let mut md = String::from("## Graph tasks and the Machine (`cargo xtask bench graph`)\n\n");
    md.push_str(&machine_line());
    md.push_str(
        "\n\nA 10-state linear graph whose handlers each do one `fetch()` to a loopback HTTP \
         server, run end to end (start, 10 handlers, 10 transitions each one atomic append, \
         settle) on SQLite, one run at a time after 10 warm-up runs. `Machine::action` is \
         validate + append + apply of one INCREMENT of the coremachine Quick Start counter. \
         Follow: a Machine in another process polling its file log every millisecond; the \
         time from an append returning to that process seeing it.\n\n",
    );
    md.push_str("| What | Measured | Target | Verdict |\n|---|---|---|---|\n");
    let row = |md: &mut String, what: &str, got: String, target: &str, met: bool| {
        md.push_str(&format!(
            "| {what} | {got} | {target} | {} |\n",
            verdict(met)
        ));
    };
    row(
        &mut md,
        &format!("10-state graph run, one loopback fetch per handler, SQLite ({runs} runs)"),
        format!("p50 {p50:.2} ms, p99 {p99:.2} ms"),
        "p50 ≤ 10 ms",
        p50 <= 10.0,
    );
    row(
        &mut md,
        "validation of a 1,000-state graph (parse + check)",
        format!("p50 {check:.2} ms"),
        "≤ 5 ms",
        check <= 5.0,
    );
    row(
        &mut md,
        "`action`, JSON definition, memory log",
        format!("mean {json_mem:.1} µs (p50 {json_mem_p50:.1} µs)"),
        "≤ 20 µs",
        json_mem <= 20.0,
    );
    row(
        &mut md,
        "`action`, Rust definition, memory log",
        format!("mean {rust_mem:.1} µs (p50 {rust_mem_p50:.1} µs)"),
        "≤ 20 µs",
        rust_mem <= 20.0,
    );
    row(
        &mut md,
        "`action`, JavaScript definition, memory log",
        format!("mean {js_mem:.0} µs (p50 {js_mem_p50:.0} µs)"),
        "≤ 300 µs",
        js_mem <= 300.0,
    );
    row(
        &mut md,
        "`action`, JSON definition, file log (one fdatasync)",
        format!("mean {json_file:.0} µs (p50 {json_file_p50:.0} µs)"),
        "≤ 20 µs + one fdatasync",
        true,
    );
    row(
        &mut md,
        "`follow` in another process sees an append (50 appends)",
        format!("p50 {follow_p50:.2} ms, max {follow_max:.2} ms"),
        "≤ 50 ms",
        follow_max <= 50.0,
    );
    md.push_str(
        "\nThe file log row has no verdict of its own: its cost is the disk's fdatasync (compare the \
         storage section's SQLite append), on top of the memory-log figure.\n",
    );
    Ok(md)
}
