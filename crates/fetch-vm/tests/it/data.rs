//! Data-driven cases: every `tests/data/*.js` runs hot and cold, answering calls in both orders.
//!
//! A case starts with `// input: <json>` and `// expect: <json>` (the result), or
//! `// error: <text>` (a substring of the failure).

use std::path::Path;

use sequential_fetch_vm::{Options, Step};
use serde_json::Value;

use crate::harness::{Order, both_with, world};

fn header<'a>(code: &'a str, key: &str) -> Option<&'a str> {
    code.lines()
        .take_while(|l| l.starts_with("//"))
        .find_map(|l| l.strip_prefix(&format!("// {key}:")))
        .map(str::trim)
}

#[test]
fn data_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/data")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "js"))
        .collect();
    paths.sort();
    assert!(
        paths.len() >= 8,
        "expected the data cases in {}",
        dir.display()
    );
    let mut failures = Vec::new();
    for path in &paths {
        let code = std::fs::read_to_string(path).expect("read case");
        let input: Value =
            serde_json::from_str(header(&code, "input").unwrap_or("null")).expect("input json");
        for order in [Order::Fifo, Order::Lifo] {
            let run = both_with(&code, &input, &Options::default(), order, &mut world);
            let ok = match (header(&code, "expect"), header(&code, "error"), &run.end) {
                (Some(expect), _, Step::Completed(v)) => {
                    serde_json::from_str::<Value>(expect).expect("expect json") == *v
                }
                (_, Some(err), Step::Failed(e)) => e.to_string().contains(err),
                _ => false,
            };
            if !ok {
                failures.push(format!("{} ({order:?}): got {:?}", path.display(), run.end));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
}
