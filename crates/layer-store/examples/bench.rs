//! Times one store operation on a real tree: `bench <op> <store dir> <work dir> [arg]`.
//!
//! Ops: `run <cmd>`, `status`, `checkout <ref>` (forced), `rebuild`, `verify`, `gc`, `history`,
//! `inspect <ref>`, `diff <ref>` (against HEAD), `tags`, `tag <name>`, `ls <dir>`.
//! Prints the elapsed milliseconds and the operation's JSON result (abridged).

use sequential_layer_store::{CheckoutOptions, Output, RunOptions, Store};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [op, dir, work, rest @ ..] = args.as_slice() else {
        return Err("usage: bench <op> <store dir> <work dir> [arg]".into());
    };
    let arg = rest.first().map(String::as_str).unwrap_or("");
    let t0 = Instant::now();
    let store = Store::open(dir, work)?;
    let t_open = t0.elapsed();
    let t = Instant::now();
    let json = match op.as_str() {
        "run" => {
            let opts = RunOptions {
                output: Output::Null,
                ..RunOptions::default()
            };
            serde_json::to_string(&store.run(arg, &opts)?)?
        }
        "status" => {
            let s = store.status()?;
            format!(
                "{{\"clean\":{},\"added\":{},\"modified\":{},\"deleted\":{}}}",
                s.clean,
                s.added.len(),
                s.modified.len(),
                s.deleted.len()
            )
        }
        "checkout" => {
            serde_json::to_string(&store.checkout(arg, CheckoutOptions { force: true })?)?
        }
        "rebuild" => serde_json::to_string(&store.rebuild()?)?,
        "verify" => {
            let v = store.verify()?;
            format!(
                "{{\"ok\":{},\"objects\":{},\"states\":{}}}",
                v.ok, v.objects, v.states
            )
        }
        "gc" => serde_json::to_string(&store.gc()?)?,
        "history" => format!("{} entries", store.history()?.len()),
        "inspect" => serde_json::to_string(&store.inspect(arg)?)?,
        "diff" => {
            let d = store.diff(arg, None)?;
            format!(
                "{{\"added\":{},\"modified\":{},\"deleted\":{}}}",
                d.added.len(),
                d.modified.len(),
                d.deleted.len()
            )
        }
        "tags" => serde_json::to_string(&store.tags()?)?,
        "tag" => serde_json::to_string(&store.tag(arg, None)?)?,
        "ls" => format!("{} entries", store.ls("HEAD", arg)?.len()),
        other => return Err(format!("unknown op {other}").into()),
    };
    println!(
        "{op}: {:.1} ms (open {:.1} ms) {json}",
        t.elapsed().as_secs_f64() * 1e3,
        t_open.as_secs_f64() * 1e3
    );
    Ok(())
}
