//! Runs N short sessions back to back, for instruction counts of the fixed per-session cost:
//! `valgrind --tool=callgrind target/<profile>/examples/sessions script 100` minus the same with
//! 1 session is 99 sessions' worth. Kinds: `script` (`1 + 1`), `module` (a module whose default
//! export returns its input, as a graph handler or JavaScript machine action runs).

use sequential_fetch_vm::{Mode, Options, Session, Step};
use serde_json::json;

const MODULE: &str = "export default async function (input, ctx) { return { n: input.n + 1 }; }";

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "script".into());
    let count: u64 = args.next().and_then(|n| n.parse().ok()).unwrap_or(100);
    let (code, options) = match kind.as_str() {
        "module" => (MODULE, Options::with_mode(Mode::Module)),
        _ => ("1 + 1", Options::default()),
    };
    for n in 0..count {
        let input = json!({ "n": n });
        let (session, step) = Session::start(code, &input, vec![], &options).expect("session");
        match step {
            Step::Completed(_) => {}
            other => panic!("session {n}: {other:?}"),
        }
        session.close();
    }
}
