//! A/B of one JavaScript machine action (`ctx.counter++`, as issue 12's bench runs it): a fresh
//! `Session` per call (how the engine ran guards and actions before `Evaluator`) against one
//! `Evaluator::call`, alternating in the same process so that a noisy machine affects both.
//! `cargo run --release -p sequential-fetch-vm --example evaluator [N]` prints p50 and mean.

use std::time::{Duration, Instant};

use sequential_fetch_vm::{Evaluator, Limits, Mode, Options, Session, Step};
use serde_json::{Value, json};

const ACTION: &str =
    "export default async (i) => { const ctx = i.context; ctx.counter++; return ctx; };";

fn summary(mut lat: Vec<Duration>) -> String {
    lat.sort();
    let mean = lat.iter().sum::<Duration>() / lat.len() as u32;
    format!(
        "p50 {:.1} µs, mean {:.1} µs",
        lat[lat.len() / 2].as_secs_f64() * 1e6,
        mean.as_secs_f64() * 1e6
    )
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(2000);
    let options = Options::with_mode(Mode::Module);
    let evaluator = Evaluator::new(ACTION, &Limits::default()).expect("the module loads");
    let mut input = json!({"event": "INCREMENT", "context": {"counter": 0}});
    let (mut sessions, mut calls) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for _ in 0..n {
        let t = Instant::now();
        let (session, step) = Session::start(ACTION, &input, vec![], &options).expect("a session");
        let Step::Completed(a) = step else {
            panic!("{step:?}")
        };
        drop(session);
        sessions.push(t.elapsed());
        let t = Instant::now();
        let b: Value = evaluator.call(&input).expect("a result");
        calls.push(t.elapsed());
        assert_eq!(a, b);
        input["context"] = b;
    }
    println!("fresh Session per call: {}", summary(sessions));
    println!("Evaluator::call:        {}", summary(calls));
}
