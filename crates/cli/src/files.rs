//! Reading JSON files with errors that name the file, line and column; atomic writes.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::de::DeserializeOwned;

use crate::error::{UserError, user};

/// `path` as the user should see it: relative to the current directory when it is inside it.
pub fn show(path: &Path) -> String {
    let cwd = std::env::current_dir().unwrap_or_default();
    let rel = path.strip_prefix(&cwd).unwrap_or(path);
    // `./x` → `x`; `.` stays `.`.
    let cleaned: PathBuf = rel
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if cleaned.as_os_str().is_empty() {
        ".".to_string()
    } else {
        cleaned.display().to_string()
    }
}

/// Reads a file's bytes; an I/O failure is a user error naming the file.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    fs::read(path).map_err(|e| {
        user(
            format!("cannot read {}: {e}", show(path)),
            "check that the file exists, is a regular file and is readable",
        )
    })
}

/// Parses `bytes` (the content of `path`) as `T`; a syntax or shape error names the file,
/// line and column.
pub fn parse_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| json_error(path, &e))
}

/// Reads and parses a JSON file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let bytes = read_bytes(path)?;
    parse_json(path, &bytes)
}

/// The user error for a serde_json failure in `path`.
pub fn json_error(path: &Path, e: &serde_json::Error) -> anyhow::Error {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = full.strip_suffix(&suffix).unwrap_or(&full);
    let (kind, must) = match e.classify() {
        serde_json::error::Category::Data => (
            "unexpected content",
            "see docs/cli.md for the fields this file holds",
        ),
        _ => ("malformed JSON", "it must be valid JSON"),
    };
    UserError::new(format!(
        "{kind} in {} at line {}, column {}: {msg}",
        show(path),
        e.line(),
        e.column()
    ))
    .hint(format!(
        "fix {}:{}:{} ({must})",
        show(path),
        e.line(),
        e.column()
    ))
    .into()
}

/// Pretty JSON with a trailing newline, as written to user-facing files.
pub fn pretty(value: &impl serde::Serialize) -> String {
    let mut s = serde_json::to_string_pretty(value).expect("JSON values always serialize");
    s.push('\n');
    s
}

/// Writes `bytes` to `path` atomically: a temporary file beside it, fsync, rename, then fsync
/// of the directory. Readers see the old content or the new, never a mix.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    sequential_support::fs::write_atomic(path, bytes)
        .map_err(|e| e.source)
        .with_context(|| format!("writing {}", show(path)))
}

/// Creates `path` with `bytes`, failing if it exists; fsynced.
pub fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    sequential_support::fs::write_new(path, bytes)
        .map_err(|e| e.source)
        .with_context(|| format!("writing {}", show(path)))
}
