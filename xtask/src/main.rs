//! Project automation, run as `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! - `cargo xtask ci`: what `.ci/run` runs — fmt check, clippy with `-D warnings`, tidy, and the
//!   README's test command (`cargo test --workspace`).
//! - `cargo xtask tidy`: repository rules no compiler checks (also run as a test).
//! - `cargo xtask bench <storage|vm|engine|machine|api|graph|flow|all>`: benchmarks in release mode; results
//!   are written into `docs/benchmarks.md`.

mod bench;
mod tidy;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  ci                 fmt --check, clippy -D warnings, tidy, cargo test --workspace
  tidy               check repository rules (lib.rs docs, no anyhow in libraries, versions only in the root manifest)
  bench <which>      run benchmarks in release mode and update docs/benchmarks.md
                     which: storage | vm | engine | machine | api | graph | flow | all
                     (engine --peers DIR: also the peers in DIR, e.g. ../shared/bench/peers)

example:
  cargo xtask bench storage";

fn main() {
    if let Err(e) = real_main() {
        eprintln!("error: {e:#}");
        std::process::exit(2);
    }
}

fn real_main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root();
    match args.first().map(String::as_str) {
        Some("ci") => ci(&root),
        Some("tidy") => {
            let problems = tidy::check(&root)?;
            if problems.is_empty() {
                println!("tidy: ok");
                Ok(())
            } else {
                for p in &problems {
                    eprintln!("tidy: {p}");
                }
                bail!("{} tidy problem(s)", problems.len())
            }
        }
        Some("bench") => bench::run(&root, &args[1..]),
        Some("-h" | "--help" | "help") | None => {
            println!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown xtask command {other:?}\n\n{USAGE}"),
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives one level below the root")
        .to_path_buf()
}

fn ci(root: &Path) -> Result<()> {
    let problems = tidy::check(root)?;
    if !problems.is_empty() {
        for p in &problems {
            eprintln!("tidy: {p}");
        }
        bail!("{} tidy problem(s)", problems.len());
    }
    println!("tidy: ok");
    cargo(root, &["fmt", "--all", "--", "--check"])?;
    cargo(
        root,
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    cargo(root, &["test", "--workspace"])?;
    Ok(())
}

pub(crate) fn cargo(root: &Path, args: &[&str]) -> Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    eprintln!("$ cargo {}", args.join(" "));
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root)
        .status()
        .with_context(|| format!("starting `cargo {}`", args.join(" ")))?;
    if !status.success() {
        bail!("`cargo {}` failed with {status}", args.join(" "));
    }
    Ok(())
}
