//! `cargo xtask bench <which>`: runs the benchmark binary in release mode and writes its
//! Markdown into `docs/benchmarks.md`, between `<!-- bench:NAME -->` markers.

use std::fs;
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

const KNOWN: &[&str] = &["storage", "vm", "engine", "machine", "api", "graph", "flow"];

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
    // `engine --peers DIR`: the rest is the benchmark's own arguments (DIR made absolute, since
    // the benchmark runs in the workspace root)
    let extra: Vec<String> = match args.get(1..) {
        Some(rest) if !rest.is_empty() && which.len() == 1 && which[0] == "engine" => rest
            .iter()
            .enumerate()
            .map(|(i, a)| {
                if i > 0 && rest[i - 1] == "--peers" {
                    std::path::absolute(a).map_or_else(|_| a.clone(), |p| p.display().to_string())
                } else {
                    a.clone()
                }
            })
            .collect(),
        Some(rest) if !rest.is_empty() => {
            bail!(
                "unexpected arguments {rest:?}; only `bench engine` takes any (--peers DIR, --storage BACKEND)"
            )
        }
        _ => Vec::new(),
    };
    for w in which {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        if w == "vm" {
            let section = vm(root, &cargo)?;
            print!("{section}");
            write_section(&root.join("docs/benchmarks.md"), w, &section)?;
            eprintln!("updated docs/benchmarks.md section `{w}`");
            continue;
        }
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
        // `api` serves with the real binary: built, like the load generator, with the `bench`
        // profile (release optimizations without the release profile's long fat-LTO link)
        let profile = if w == "api" {
            eprintln!(
                "$ cargo build --profile bench -p sequential-ecosystem --bin sequential-ecosystem"
            );
            let st = Command::new(&cargo)
                .args([
                    "build",
                    "--profile",
                    "bench",
                    "--quiet",
                    "-p",
                    "sequential-ecosystem",
                    "--bin",
                    "sequential-ecosystem",
                ])
                .current_dir(root)
                .status()
                .context("building sequential-ecosystem")?;
            if !st.success() {
                bail!("building sequential-ecosystem failed with {st}");
            }
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            // the `bench` profile builds into target/release, where a `--release` build may
            // replace the binary: the benchmark serves with a copy of its own
            let copy = target.join("bench-api/sequential-ecosystem");
            fs::create_dir_all(target.join("bench-api"))?;
            fs::copy(target.join("release/sequential-ecosystem"), &copy)
                .context("copying target/release/sequential-ecosystem")?;
            extra_env.push(("SEQUENTIAL_BIN", copy));
            "--profile=bench"
        } else {
            "--release"
        };
        eprintln!("$ cargo run {profile} -p sequential-bench -- {w}");
        let out = Command::new(&cargo)
            .envs(extra_env)
            .args(["run", profile, "--quiet", "-p", "sequential-bench", "--", w])
            .args(&extra)
            .current_dir(root)
            .stderr(std::process::Stdio::inherit())
            .output()
            .context("starting the benchmark")?;
        if !out.status.success() {
            bail!("benchmark {w} failed with {}", out.status);
        }
        let section = String::from_utf8(out.stdout).context("benchmark output is not UTF-8")?;
        print!("{section}");
        // `engine --storage postgres` has a section of its own, beside the default backends'
        let name = match extra.iter().position(|a| a == "--storage") {
            Some(i) if w == "engine" => format!("{w}-{}", extra.get(i + 1).map_or("", |s| s)),
            _ => w.to_string(),
        };
        write_section(&root.join("docs/benchmarks.md"), &name, &section)?;
        eprintln!("updated docs/benchmarks.md section `{name}`");
    }
    Ok(())
}

/// `vm`: fetch-vm's criterion bench (`cargo bench -p sequential-fetch-vm --bench vm`), its
/// estimates and memory lines turned into a table beside the targets of issue 4.
fn vm(root: &Path, cargo: &str) -> Result<String> {
    eprintln!("$ cargo bench -p sequential-fetch-vm --bench vm");
    let out = Command::new(cargo)
        .args([
            "bench",
            "--quiet",
            "-p",
            "sequential-fetch-vm",
            "--bench",
            "vm",
        ])
        .current_dir(root)
        .stderr(std::process::Stdio::inherit())
        .output()
        .context("starting cargo bench")?;
    if !out.status.success() {
        bail!("cargo bench failed with {}", out.status);
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let times = criterion_estimates(&text);
    let memory: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("memory: "))
        .collect();
    // (measure, limit in seconds and as shown; `None`: measured and reported)
    let targets = [
        ("trivial script to completion", Some((300e-6, "≤ 300 µs"))),
        ("trivial module to completion", None),
        ("hot resume of one pending fetch", Some((50e-6, "≤ 50 µs"))),
        ("cold replay of a 100-fetch journal", Some((5e-3, "≤ 5 ms"))),
    ];
    let mut md = String::from("## JavaScript VM (`cargo xtask bench vm`)\n\n");
    md.push_str(&format!("{}\n\n", measured_line()));
    md.push_str(
        "From `cargo bench -p sequential-fetch-vm --bench vm` (criterion; the middle estimate of \
         its confidence interval). Sessions run on a stack of their own, on the calling thread, \
         with a pooled, warm runtime.\n\n",
    );
    md.push_str("| measure | measured | target | verdict |\n|---|---:|---|---|\n");
    for (name, limit) in targets {
        let got = times
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.as_str());
        let (verdict, target) = match (got.and_then(seconds), limit) {
            (Some(_), None) => ("—", "measured and reported"),
            (Some(s), Some((limit, target))) if s <= limit => ("met", target),
            (Some(_), Some((_, target))) => ("missed", target),
            (None, limit) => ("not measured", limit.map_or("—", |(_, t)| t)),
        };
        let got = got.unwrap_or("not reported");
        md.push_str(&format!("| {name} | {got} | {target} | {verdict} |\n"));
    }
    md.push_str("\nMemory (targets: 1,000 live sessions ≤ 300 MiB RSS; no growth over 10,000 sequential sessions):\n\n");
    for m in memory {
        md.push_str(&format!("- {m}\n"));
    }
    Ok(md)
}

/// (benchmark name, middle estimate) from criterion's `time: [low mid high]` lines.
fn criterion_estimates(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut name = String::new();
    for line in text.lines() {
        let (before, after) = match line.split_once("time:") {
            Some(parts) => parts,
            None => {
                if !line.starts_with(char::is_whitespace) && !line.trim().is_empty() {
                    name = line.trim().to_string();
                }
                continue;
            }
        };
        if !before.trim().is_empty() {
            name = before.trim().to_string();
        }
        let inner = after.trim().trim_start_matches('[').trim_end_matches(']');
        let parts: Vec<&str> = inner.split_whitespace().collect();
        // "[212.31 µs 215.02 µs 218.11 µs]" → value and unit pairs
        if parts.len() >= 4 {
            out.push((name.clone(), format!("{} {}", parts[2], parts[3])));
        }
    }
    out
}

/// Seconds in a criterion estimate such as `215.02 µs`.
fn seconds(estimate: &str) -> Option<f64> {
    let (value, unit) = estimate.split_once(' ')?;
    let scale = match unit {
        "ns" => 1e-9,
        "µs" | "us" => 1e-6,
        "ms" => 1e-3,
        "s" => 1.0,
        _ => return None,
    };
    value.parse::<f64>().ok().map(|v| v * scale)
}

fn measured_line() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("Measured {date} on {cpus} cores, release build.")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn criterion_lines_give_the_middle_estimate() {
        let text = "trivial script to completion\n                        time:   [212.31 µs 215.02 µs 218.11 µs]\n\
                    change: [-1% +0% +1%]\nhot resume   time:   [15.1 µs 15.4 µs 15.9 µs]\n";
        assert_eq!(
            criterion_estimates(text),
            vec![
                (
                    "trivial script to completion".to_string(),
                    "215.02 µs".to_string()
                ),
                ("hot resume".to_string(), "15.4 µs".to_string()),
            ]
        );
    }

    #[test]
    fn estimates_read_as_seconds() {
        let near =
            |got: Option<f64>, want: f64| got.is_some_and(|g| (g - want).abs() < want * 1e-9);
        assert!(near(seconds("322.62 µs"), 322.62e-6));
        assert!(near(seconds("1.2640 ms"), 1.264e-3));
        assert!(near(seconds("900 ns"), 900e-9));
        assert!(near(seconds("2 s"), 2.0));
        assert_eq!(seconds("12 parsecs"), None);
        assert_eq!(seconds("fast"), None);
    }
}
