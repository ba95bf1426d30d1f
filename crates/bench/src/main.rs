//! Benchmark programs behind `cargo xtask bench`. Each prints a Markdown section on stdout
//! (the xtask writes it into `docs/benchmarks.md`) and progress on stderr.
//!
//! - `sequential-bench storage`: append and claim speed of the folder and SQLite backends.
//! - `sequential-bench flow`: the flow task store per backend: save, load, resume, expiry cost.
//! - `sequential-bench engine [--peers DIR] [--storage sqlite|folder|postgres]…`: whole runs of N sequential `fetch()` steps against
//!   a loopback HTTP server: latency, a steady stream with 64 runs in flight (the engine in a
//!   process of its own, `engine-worker`), CPU per run by process, the machine's ceiling,
//!   storage per run, verdicts against the targets; the peers side by side with `--peers`.
//! - `sequential-bench api`: the host API of the real `sequential-ecosystem serve` (`$SEQUENTIAL_BIN`)
//!   on SQLite: `GET /runs/:id` req/s on 64 keep-alive connections, start-and-wait of a one-fetch
//!   task, idle RSS, journal record → SSE client.
//! - `sequential-bench graph`: a 10-state graph run end to end on SQLite, validation of a
//!   1,000-state graph, `Machine::action` per definition kind and log, follow latency across
//!   processes (`graph-follow-child`).
//! - `sequential-bench machine`: the layer store's workloads W1–W13 on generated trees, with git
//!   and `tar | zstd` side by side.

mod api;
mod engine;
mod flow;
mod graph;
mod machine;
mod postgres;
mod resume;
mod storage;

use std::time::Duration;

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).cloned().unwrap_or_default();
    if matches!(which.as_str(), "" | "-h" | "--help" | "help") {
        // the module's text is the usage: which benchmarks there are and what each measures
        println!(
            "sequential-bench <storage|flow|engine|api|graph|machine> [ARGS]: run one benchmark and print its Markdown section (`cargo xtask bench <which>` builds it in release mode and writes docs/benchmarks.md)\n\n  engine [--peers DIR] [--storage sqlite|folder|postgres]...\n\nKnobs (environment): BENCH_WINDOW_SECS, BENCH_WARMUP_SECS, BENCH_LATENCY_RUNS, BENCH_DATABASE_URL"
        );
        if which.is_empty() {
            bail!("which benchmark? expected one of: storage, flow, engine, api, graph, machine");
        }
        return Ok(());
    }
    match which.as_str() {
        "machine" => {
            print!("{}", machine::run()?);
            return Ok(());
        }
        "machine-child" => return machine::child(&args[2..]),
        "graph-follow-child" => return graph::follow_child(&args[2..]),
        _ => {}
    }
    // as `sequential-ecosystem worker` runs by default (`--scheduling batch`)
    if which == "engine-worker" {
        sequential_tasker_engine::worker_scheduling()?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    match which.as_str() {
        "storage" => rt.block_on(storage::run()),
        "graph" => rt.block_on(graph::run()).map(|md| print!("{md}")),
        "flow" => rt.block_on(flow::run()),
        "api" => rt.block_on(api::run(&args[2..])),
        "engine" => rt.block_on(engine::run(&args[2..])),
        "engine-worker" => rt.block_on(engine::worker(&args[2..])),
        other => bail!(
            "unknown benchmark {other:?}; expected one of: storage, flow, engine, api, graph, machine (--help: usage)"
        ),
    }
}

/// "Measured <date> on <n> cores (<cpu>), release build."
pub(crate) fn machine_line() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let date = std::process::Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let build = if cfg!(debug_assertions) {
        "debug build (not comparable: use `cargo xtask bench`)"
    } else {
        "release build"
    };
    let probe_us =
        |v: Option<f64>| v.map_or_else(|| "not measured".into(), |us| format!("{us:.0} µs"));
    format!(
        "Measured {date} on {cpus} cores ({model}), {build}, fsync on; single-core probe {:.0} ms \
         (a fixed integer loop, the best of three, run as this line was written: lower is a \
         faster core; compare sections measured on different machines or at different times by it); \
         loopback TCP round trip {} and fsync of a 4 KiB overwrite {} (medians, run at the same \
         moment: the kernel's network and disk paths, which move with the host apart from the core).",
        speed_probe_ms(),
        probe_us(loopback_probe_us()),
        probe_us(fsync_probe_us()),
    )
}

/// The median time of a 64-byte round trip between two threads over a loopback TCP connection,
/// in microseconds (`None` when loopback cannot be used).
fn loopback_probe_us() -> Option<f64> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
    let at = listener.local_addr().ok()?;
    let echo = std::thread::spawn(move || -> std::io::Result<()> {
        let (mut s, _) = listener.accept()?;
        s.set_nodelay(true)?;
        let mut buf = [0u8; 64];
        while s.read_exact(&mut buf).is_ok() {
            s.write_all(&buf)?;
        }
        Ok(())
    });
    let mut c = std::net::TcpStream::connect(at).ok()?;
    c.set_nodelay(true).ok()?;
    let mut buf = [7u8; 64];
    let mut times = Vec::with_capacity(2000);
    for _ in 0..2000 {
        let t = std::time::Instant::now();
        c.write_all(&buf).ok()?;
        c.read_exact(&mut buf).ok()?;
        times.push(t.elapsed());
    }
    drop(c);
    let _ = echo.join();
    times.sort();
    Some(percentile(&times, 0.5) * 1000.0)
}

/// The median time of writing 4 KiB over the start of a file and `fsync`ing it, in
/// microseconds, in the system's temporary directory (`None` when it cannot be written).
fn fsync_probe_us() -> Option<f64> {
    use std::io::{Seek, Write};
    let mut f = tempfile::tempfile().ok()?;
    let page = [1u8; 4096];
    f.write_all(&page).ok()?;
    f.sync_all().ok()?;
    let mut times = Vec::with_capacity(200);
    for _ in 0..200 {
        let t = std::time::Instant::now();
        f.seek(std::io::SeekFrom::Start(0)).ok()?;
        f.write_all(&page).ok()?;
        f.sync_all().ok()?;
        times.push(t.elapsed());
    }
    times.sort();
    Some(percentile(&times, 0.5) * 1000.0)
}

/// Milliseconds one core takes for a fixed loop of xorshift steps, the best of three: how fast
/// this machine's cores are at the moment (virtual machines vary between hosts and minutes).
fn speed_probe_ms() -> f64 {
    (0..3)
        .map(|_| {
            let t = std::time::Instant::now();
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            for _ in 0..100_000_000u32 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            std::hint::black_box(x);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .fold(f64::INFINITY, f64::min)
}

/// The `p` quantile of sorted durations, in milliseconds.
pub(crate) fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}
