//! Repository rules that no compiler checks; `cargo xtask tidy`, also run by `cargo test`.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Checks the workspace at `root`; returns one line per problem.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut dirs = crate_dirs(root)?;
    dirs.push(root.join("xtask"));
    for dir in dirs {
        let manifest_path = dir.join("Cargo.toml");
        let manifest = fs::read_to_string(&manifest_path)
            .with_context(|| format!("reading {}", manifest_path.display()))?;
        let rel = manifest_path
            .strip_prefix(root)
            .unwrap_or(&manifest_path)
            .display()
            .to_string();
        problems.extend(versions_outside_root(&manifest).into_iter().map(|line| {
            format!("{rel}: dependency declares its own version (use `.workspace = true`): {line}")
        }));
        let lib = dir.join("src/lib.rs");
        let is_binary_only = !lib.is_file();
        if !is_binary_only {
            let text = fs::read_to_string(&lib)?;
            let t = text.trim_start();
            if !t.starts_with("//!") && !t.starts_with("#![doc = include_str!(\"../README.md\")]") {
                problems.push(format!(
                    "{}: a library's lib.rs must open with a `//!` doc or `#![doc = include_str!(\"../README.md\")]` (purpose, invariant, example)",
                    lib.strip_prefix(root).unwrap_or(&lib).display()
                ));
            }
            // a package with binaries (the CLI) may use anyhow in the library its binaries share
            let has_binaries = dir.join("src/main.rs").is_file() || manifest.contains("[[bin]]");
            if !has_binaries
                && normal_dependency_names(&manifest)
                    .iter()
                    .any(|d| d == "anyhow")
            {
                problems.push(format!(
                    "{rel}: library crates return thiserror errors; anyhow belongs to binaries and xtask"
                ));
            }
        }
        let main = dir.join("src/main.rs");
        if main.is_file() && !fs::read_to_string(&main)?.trim_start().starts_with("//!") {
            problems.push(format!(
                "{}: main.rs must open with a `//!` doc",
                main.strip_prefix(root).unwrap_or(&main).display()
            ));
        }
    }
    problems.extend(dependency_rules(root)?);
    problems.extend(source_rules(root)?);
    Ok(problems)
}

/// ARCHITECTURE.md's boundaries between crates: tasker-engine sees storage only through the
/// trait (no backend in its `[dependencies]`), and no crate depends on the CLI.
fn dependency_rules(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for dir in crate_dirs(root)? {
        let manifest = fs::read_to_string(dir.join("Cargo.toml"))?;
        let name = package_name(&manifest);
        let deps = normal_dependency_names(&manifest);
        if name == "sequential-tasker-engine" {
            for d in deps.iter().filter(|d| d.starts_with("sequential-adaptor-")) {
                problems.push(format!(
                    "crates/tasker-engine depends on the backend {d}: the engine sees storage only as Arc<dyn StorageAdapter> (backends belong in its dev-dependencies)"
                ));
            }
        }
        if name != "sequential-ecosystem" && deps.iter().any(|d| d == "sequential-ecosystem") {
            problems.push(format!(
                "{name} depends on the CLI (sequential-ecosystem): libraries never depend on the binary"
            ));
        }
    }
    Ok(problems)
}

/// A rule over source text: `needle` may appear only under the paths in `homes`.
struct Rule {
    what: &'static str,
    needles: &'static [&'static str],
    homes: &'static [&'static str],
    /// Only files under these paths are checked (empty: every `.rs` file under crates/).
    scope: &'static [&'static str],
}

/// Where each shared helper lives, and what no other file may do.
const RULES: &[Rule] = &[
    Rule {
        what: "only fetch-vm's engine module names the JavaScript engine",
        needles: &["rquickjs"],
        homes: &[
            "crates/fetch-vm/src/engine/quickjs.rs",
            "crates/fetch-vm/src/engine/quickjs/",
        ],
        scope: &[],
    },
    Rule {
        what: "the duration grammar lives in crates/support (sequential_support::duration)",
        needles: &["humantime::", "fn parse_duration", "\"mins\"", "\"hrs\""],
        homes: &["crates/support/"],
        scope: &[],
    },
    Rule {
        what: "whole-file fsync belongs to the atomic-write helpers of crates/support (sequential_support::fs)",
        needles: &[".sync_all()"],
        // and the benchmarks' fsync probe, which times the system call itself
        homes: &["crates/support/", "crates/bench/src/main.rs"],
        scope: &[],
    },
    Rule {
        what: "advisory file locks are sequential_support::fs::LockFile",
        needles: &[".lock_shared()", "TryLockError", "libc::flock"],
        homes: &["crates/support/"],
        scope: &[],
    },
    Rule {
        what: "re-launching the test binary is sequential_test_support::child",
        needles: &["\"--exact\""],
        homes: &["crates/test-support/"],
        scope: &[],
    },
    Rule {
        what: "seeded generators are sequential_test_support::seed",
        needles: &["XorShift", "with_seed(", "StdRng"],
        homes: &["crates/test-support/"],
        scope: &[],
    },
    Rule {
        what: "libraries do not print (they emit tracing events; only binaries write to stdout/stderr)",
        needles: &["println!", "print!(", "eprintln!", "eprint!(", "dbg!("],
        homes: &["crates/adaptor/src/conformance"],
        scope: &[
            "crates/adaptor/src/",
            "crates/adaptor-folder/src/",
            "crates/adaptor-sqlite/src/",
            "crates/adaptor-postgres/src/",
            "crates/fetch-vm/src/",
            "crates/flow-graph/src/",
            "crates/http-wrapper/src/",
            "crates/layer-store/src/",
            "crates/support/src/",
            "crates/tasker-engine/src/",
        ],
    },
];

fn source_rules(root: &Path) -> Result<Vec<String>> {
    let mut files = Vec::new();
    rust_files(&root.join("crates"), &mut files)?;
    let mut problems = Vec::new();
    for path in files {
        let rel = path
            .strip_prefix(root)
            .unwrap_or(&path)
            .to_string_lossy()
            .into_owned();
        let text = fs::read_to_string(&path)?;
        for rule in RULES {
            let in_scope = rule.scope.is_empty() || rule.scope.iter().any(|s| rel.starts_with(s));
            if !in_scope || rule.homes.iter().any(|h| rel.starts_with(h)) {
                continue;
            }
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                if let Some(needle) = rule.needles.iter().find(|x| code.contains(*x)) {
                    problems.push(format!("{rel}:{}: `{needle}`: {}", n + 1, rule.what));
                }
            }
        }
    }
    Ok(problems)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = e?.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out)?;
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
    Ok(())
}

fn crate_dirs(root: &Path) -> Result<Vec<std::path::PathBuf>> {
    let crates = root.join("crates");
    let mut dirs: Vec<_> = fs::read_dir(&crates)
        .with_context(|| format!("reading {}", crates.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.sort();
    Ok(dirs)
}

fn package_name(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == "name").then(|| v.trim().trim_matches('"').to_string())
        })
        .unwrap_or_default()
}

/// Lines in dependency tables that name a version instead of `workspace = true`.
fn versions_outside_root(manifest: &str) -> Vec<String> {
    let mut bad = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t
                .trim_matches(|c| c == '[' || c == ']')
                .ends_with("dependencies");
            continue;
        }
        if !in_deps || t.is_empty() || t.starts_with('#') {
            continue;
        }
        let Some((name, value)) = t.split_once('=') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        let uses_workspace = name.ends_with(".workspace")
            || value.contains("workspace = true")
            || value.contains("workspace=true");
        if !uses_workspace {
            bad.push(t.to_string());
        }
    }
    bad
}

/// Names in `[dependencies]` (not dev or build dependencies).
fn normal_dependency_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_deps = t == "[dependencies]";
            continue;
        }
        if let (true, Some((name, _))) = (in_deps, t.split_once('=')) {
            let name = name.trim();
            names.push(name.strip_suffix(".workspace").unwrap_or(name).to_string());
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_is_tidy() {
        let problems = check(&crate::project_root()).unwrap();
        assert!(
            problems.is_empty(),
            "tidy problems:\n{}",
            problems.join("\n")
        );
    }

    #[test]
    fn source_rules_flag_a_second_home_and_a_printing_library() {
        let root = std::env::temp_dir().join(format!("tidy-{}", std::process::id()));
        let src = root.join("crates/http-wrapper/src");
        fs::create_dir_all(&src).unwrap();
        fs::write(
            src.join("lib.rs"),
            "// XorShift in a comment is fine\nstruct XorShift;\nfn f() { println!(\"x\"); }\n",
        )
        .unwrap();
        let home = root.join("crates/test-support/src");
        fs::create_dir_all(&home).unwrap();
        fs::write(home.join("seed.rs"), "struct XorShift;\n").unwrap();
        let problems = source_rules(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0].starts_with("crates/http-wrapper/src/lib.rs:2: `XorShift`"),
            "{problems:#?}"
        );
        assert!(
            problems[1].contains("libraries do not print"),
            "{problems:#?}"
        );
    }

    #[test]
    fn flags_pinned_versions_and_accepts_workspace_ones() {
        let m = "[dependencies]\nserde.workspace = true\ntokio = { workspace = true, features = [\"rt\"] }\nregex = \"1\"\n[dev-dependencies]\nfoo = { version = \"2\" }\n";
        assert_eq!(
            versions_outside_root(m),
            vec!["regex = \"1\"", "foo = { version = \"2\" }"]
        );
    }

    #[test]
    fn finds_anyhow_only_in_normal_dependencies() {
        let m = "[dependencies]\nanyhow.workspace = true\n[dev-dependencies]\nx.workspace = true\n";
        assert_eq!(normal_dependency_names(m), vec!["anyhow"]);
        let m = "[dev-dependencies]\nanyhow.workspace = true\n";
        assert!(normal_dependency_names(m).is_empty());
    }
}
