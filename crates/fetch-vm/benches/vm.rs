//! fetch-vm speed and memory: trivial script and module runs, hot resume, an evaluator call,
//! cold replay of 100 fetches, live sessions.

use std::hint::black_box;

use criterion::Criterion;
use sequential_fetch_vm::{CallResult, Evaluator, JournalEntry, Limits, Options, Session, Step};
use serde_json::{Value, json};

fn reply() -> CallResult {
    CallResult::fetch_response(200, "OK", json!({}), json!({"ok": true}))
}

fn pending_seq(step: &Step) -> u64 {
    match step {
        Step::Pending(calls) => calls[0].seq,
        other => panic!("expected pending, got {other:?}"),
    }
}

const LOOP: &str = "let n = 0; while (true) { if (fetch(`https://x.test/${n}`).ok) n++ }";
const HUNDRED: &str = "let n = 0; for (let i = 0; i < 100; i++) { if (fetch(`https://x.test/${i}`).ok) n++ } fetch('https://x.test/last'); n";

/// The journal of HUNDRED after its first 100 fetches.
fn hundred_journal(options: &Options) -> Vec<JournalEntry> {
    let (mut s, mut step) = Session::start(HUNDRED, &Value::Null, vec![], options).unwrap();
    for _ in 0..100 {
        step = s.complete(pending_seq(&step), reply()).unwrap();
    }
    s.journal().clone()
}

fn benches(c: &mut Criterion) {
    let mut options = Options::default();
    options.limits.max_journal_entries = u64::MAX;
    c.bench_function("trivial script to completion", |b| {
        b.iter(|| {
            let (_s, step) = Session::start("1 + 1", &Value::Null, vec![], &options).unwrap();
            assert_eq!(step, Step::Completed(json!(2)));
        })
    });
    // The run's own path only: each session is closed outside the timed part, which frees its
    // context and prepares the next on the calling thread (in a worker the janitor does that
    // between runs).
    c.bench_function("trivial module to completion", |b| {
        let code = "export default async function () { return 1 + 1 }";
        b.iter_custom(|iters| {
            let mut timed = std::time::Duration::ZERO;
            for _ in 0..iters {
                let began = std::time::Instant::now();
                let (s, step) = Session::start(code, &Value::Null, vec![], &options).unwrap();
                timed += began.elapsed();
                assert_eq!(step, Step::Completed(json!(2)));
                s.close();
            }
            timed
        })
    });
    c.bench_function("hot resume of one pending fetch", |b| {
        let (mut s, mut step) = Session::start(LOOP, &Value::Null, vec![], &options).unwrap();
        b.iter(|| {
            step = s.complete(pending_seq(&step), reply()).unwrap();
            black_box(&step);
        })
    });
    // one action of a JavaScript machine definition: the module loaded once, then called
    let evaluator = Evaluator::new(
        "export default (i) => { const ctx = i.context; ctx.counter++; return ctx; };",
        &Limits::default(),
    )
    .unwrap();
    let input = json!({"event": "INCREMENT", "context": {"running": true, "counter": 1}});
    c.bench_function("evaluator call", |b| {
        b.iter(|| black_box(evaluator.call(&input).unwrap()))
    });
    let journal = hundred_journal(&options);
    c.bench_function("cold replay of a 100-fetch journal", |b| {
        b.iter(|| {
            let (_s, step) =
                Session::start(HUNDRED, &Value::Null, journal.clone(), &options).unwrap();
            assert_eq!(pending_seq(&step), 100);
        })
    });
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn memory() {
    let options = Options::default();
    for _ in 0..1000 {
        Session::start("({ a: [1, 2, 3] })", &Value::Null, vec![], &options)
            .unwrap()
            .0
            .close();
    }
    let warm = rss_kib();
    for _ in 0..10_000 {
        drop(Session::start("({ a: [1, 2, 3] })", &Value::Null, vec![], &options).unwrap());
    }
    let after = rss_kib();
    println!(
        "memory: 10,000 sequential short sessions: RSS {:.1} MiB after 1,000 warm-up sessions, {:.1} MiB after 10,000 more",
        warm as f64 / 1024.0,
        after as f64 / 1024.0
    );
    let before = rss_kib();
    let live: Vec<_> = (0..1000)
        .map(|_| Session::start(LOOP, &Value::Null, vec![], &options).unwrap())
        .collect();
    let with_live = rss_kib();
    for (s, _) in live {
        s.close();
    }
    println!(
        "memory: 1,000 live sessions paused at a fetch: {:.1} MiB RSS ({:.0} KiB each)",
        with_live.saturating_sub(before) as f64 / 1024.0,
        with_live.saturating_sub(before) as f64 / 1000.0
    );
}

fn main() {
    if std::env::args().all(|a| a != "--list") {
        memory();
    }
    let mut c = Criterion::default().configure_from_args();
    benches(&mut c);
    c.final_summary();
}
