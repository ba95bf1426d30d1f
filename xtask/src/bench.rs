//! `cargo xtask bench <which>`: runs the benchmark binary in release mode and writes its
//! Markdown into `docs/benchmarks.md`, between `<!-- bench:NAME -->` markers.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

const KNOWN: &[&str] = &["storage", "engine", "machine"];

pub fn run(root: &Path, args: &[String]) -> Result<()> {
    let which: Vec<&str> = match args.first().map(String::as_str) {
        Some("all") => KNOWN.to_vec(),
        Some(w) if KNOWN.contains(&w) => vec![w],
        Some(w) => bail!(
            "unknown benchmark {w:?}; expected one of: {}, all",
            KNOWN.join(", ")
        ),
        None => bail!(
            "which benchmark? expected one of: {}, all",
            KNOWN.join(", ")
        ),
    };
    for w in which {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut extra_env = Vec::new();
        if w == "machine" {
            // The machine benchmark also times the real CLI (process start included).
            eprintln!("$ cargo build --release -p sequential-ecosystem --bin sequential-machine");
            let st = Command::new(&cargo)
                .args([
                    "build",
                    "--release",
                    "--quiet",
                    "-p",
                    "sequential-ecosystem",
                    "--bin",
                    "sequential-machine",
                ])
                .current_dir(root)
                .status()
                .context("building sequential-machine")?;
            if !st.success() {
                bail!("building sequential-machine failed with {st}");
            }
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            extra_env.push((
                "SEQUENTIAL_MACHINE_BIN",
                target.join("release/sequential-machine"),
            ));
        }
        eprintln!("$ cargo run --release -p sequential-bench -- {w}");
        let out = Command::new(&cargo)
            .envs(extra_env)
            .args([
                "run",
                "--release",
                "--quiet",
                "-p",
                "sequential-bench",
                "--",
                w,
            ])
            .current_dir(root)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("starting the benchmark")?;
        if !out.status.success() {
            bail!("benchmark {w} failed with {}", out.status);
        }
        let section = String::from_utf8(out.stdout).context("benchmark output is not UTF-8")?;
        print!("{section}");
        write_section(&root.join("docs/benchmarks.md"), w, &section)?;
        eprintln!("updated docs/benchmarks.md section `{w}`");
    }
    Ok(())
}

/// Replaces (or appends) the section between `<!-- bench:NAME -->` and `<!-- /bench:NAME -->`.
fn write_section(path: &Path, name: &str, body: &str) -> Result<()> {
    let start = format!("<!-- bench:{name} -->");
    let end = format!("<!-- /bench:{name} -->");
    let old = fs::read_to_string(path).unwrap_or_else(|_| {
        "# Benchmarks\n\nWritten by `cargo xtask bench <which>`; each section is replaced by the next run of its benchmark.\n".to_string()
    });
    let block = format!("{start}\n{}\n{end}", body.trim_end());
    let new = match (old.find(&start), old.find(&end)) {
        (Some(s), Some(e)) if e > s => format!("{}{block}{}", &old[..s], &old[e + end.len()..]),
        _ => format!("{}\n{block}\n", old.trim_end()),
    };
    let tmp = path.with_extension("md.tmp");
    fs::write(&tmp, new)?;
    fs::rename(&tmp, path)?;
    Ok(())
}
