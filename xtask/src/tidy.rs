//! Repository rules that no compiler checks; `cargo xtask tidy`, also run by `cargo test`.

use std::fs;
use std::path::Path;

use anyhow::{Context, Result};

/// Checks the workspace at `root`; returns one line per problem.
pub fn check(root: &Path) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    let crates = root.join("crates");
    let mut dirs: Vec<_> = fs::read_dir(&crates)
        .with_context(|| format!("reading {}", crates.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    dirs.push(root.join("xtask"));
    dirs.sort();
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
            if !text.trim_start().starts_with("//!") {
                problems.push(format!(
                    "{}: a library's lib.rs must open with a `//!` doc (purpose, invariant, example)",
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
    Ok(problems)
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
