//! Printing results: text for people, or one JSON document (a dedicated output struct) with
//! `--json`. Only stdout; logs and errors go to stderr.

use std::io::Write;

use anyhow::{Context, Result};
use serde::Serialize;

/// Something a command prints: its JSON form is the struct itself, its text form is `text()`.
pub trait Render: Serialize {
    /// The text form, ending with a newline (empty for nothing).
    fn text(&self) -> String;
}

/// Where results go and in which form.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    json: bool,
}

impl Output {
    /// `json`: print JSON instead of text.
    pub fn new(json: bool) -> Self {
        Output { json }
    }

    /// Prints `value` on stdout.
    pub fn print(&self, value: &impl Render) -> Result<()> {
        let body = if self.json {
            let mut s = serde_json::to_string_pretty(value).context("encoding JSON output")?;
            s.push('\n');
            s
        } else {
            value.text()
        };
        let mut out = std::io::stdout().lock();
        match out.write_all(body.as_bytes()).and_then(|()| out.flush()) {
            Ok(()) => Ok(()),
            // `| head` closed the pipe: not an error worth reporting.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
            Err(e) => Err(e).context("writing to stdout"),
        }
    }
}

/// Left-aligned columns for text tables.
pub fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                line.push_str(&" ".repeat(widths[c] - cell.chars().count() + 2));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}
