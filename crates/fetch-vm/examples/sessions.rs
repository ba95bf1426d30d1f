//! Runs N short sessions back to back, for instruction counts of the fixed per-session cost:
//! `valgrind --tool=callgrind target/release/examples/sessions script 101` minus the same with
//! 1 session is 100 sessions' worth. Kinds: `script` (`1 + 1`), `module` (a module whose default
//! export returns its input, as a graph handler or JavaScript machine action runs). A third
//! argument `drop` drops each session instead of closing it (as the engine and the Machine do),
//! and prints wall-clock p50/mean per session and the process's CPU time per session; with
//! `PACE_US=n` in the environment it waits n µs between sessions (a caller that does other work
//! between runs, as the graph engine appends and fsyncs between handlers).

use std::time::{Duration, Instant};

use sequential_fetch_vm::{Mode, Options, Session, Step};
use serde_json::json;

const MODULE: &str = "export default async function (input, ctx) { return { n: input.n + 1 }; }";

/// User + system CPU time of this process so far (from /proc, in clock ticks of 10 ms).
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<u64> = after
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "script".into());
    let count: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let timed = args.next().is_some_and(|a| a == "drop");
    let (code, options) = match kind.as_str() {
        "module" => (MODULE, Options::with_mode(Mode::Module)),
        _ => ("1 + 1", Options::default()),
    };
    let pace = std::env::var("PACE_US")
        .ok()
        .and_then(|p| p.parse().ok())
        .map(Duration::from_micros);
    let mut lat = Vec::with_capacity(count as usize);
    let cpu0 = cpu();
    for n in 0..count {
        if let Some(pace) = pace {
            std::thread::sleep(pace);
        }
        let input = json!({ "n": n });
        let t = Instant::now();
        let (session, step) = Session::start(code, &input, vec![], &options).expect("session");
        lat.push(t.elapsed());
        match step {
            Step::Completed(_) => {}
            other => panic!("session {n}: {other:?}"),
        }
        if timed {
            drop(session);
        } else {
            session.close();
        }
    }
    if timed {
        let mean = lat.iter().sum::<Duration>().as_secs_f64() * 1e6 / count as f64;
        let cpu = (cpu() - cpu0).as_secs_f64() * 1e6 / count as f64;
        lat.sort();
        let p50 = lat[lat.len() / 2].as_secs_f64() * 1e6;
        println!(
            "{kind} x{count}: p50 {p50:.0} µs, mean {mean:.0} µs, CPU {cpu:.0} µs per session"
        );
    }
}
