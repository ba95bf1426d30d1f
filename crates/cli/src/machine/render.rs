//! What the user sees of a machine command: the text and `--json` output shapes, and progress
//! on stderr.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sequential_layer_store::{
    BatchOutcome, CheckoutOutcome, DiffReport, ExecOutcome, GcReport, HistoryEntry, InspectReport,
    LsEntry, Phase, Progress as StoreProgress, ResetOutcome, RunOutcome, StatusReport, TagInfo,
    VerifyReport,
};
use serde::Serialize;

use crate::output::{Render, table};

/// Progress on stderr (terminal only, not with NO_PROGRESS set): a bar of files captured or written,
/// fed by the store, and a spinner for `gc` and `verify`.
pub(super) struct Progress {
    on: bool,
    spinner: ProgressBar,
    files: ProgressBar,
}

impl Progress {
    pub(super) fn new() -> Self {
        let on = std::io::stderr().is_terminal() && !sequential_support::env::no_progress();
        let bar = || {
            if on {
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            } else {
                ProgressBar::hidden()
            }
        };
        Progress {
            on,
            spinner: bar(),
            files: bar(),
        }
    }

    /// What the store reports to (`None` when nothing is drawn).
    pub(super) fn sink(&self) -> Option<Arc<dyn StoreProgress>> {
        self.on.then(|| {
            self.files.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} files, {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            Arc::new(FileBar(self.files.clone())) as Arc<dyn StoreProgress>
        })
    }

    pub(super) fn start(&self, msg: String) {
        if self.on {
            self.spinner.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            self.spinner.set_message(msg);
            self.spinner.enable_steady_tick(Duration::from_millis(100));
        }
    }

    pub(super) fn finish(&self) {
        self.spinner.finish_and_clear();
        self.files.finish_and_clear();
    }
}

/// The store's progress reports drawn as a bar.
struct FileBar(ProgressBar);

impl StoreProgress for FileBar {
    fn update(&self, phase: Phase, done: u64, total: u64, bytes: u64) {
        let what = match phase {
            Phase::Capturing => "capturing",
            Phase::Writing => "writing",
            _ => "working",
        };
        self.0.set_length(total);
        self.0.set_position(done);
        self.0
            .set_message(format!("{what} {}", indicatif::HumanBytes(bytes)));
    }
}

// ---- output shapes ------------------------------------------------------------------------

/// A name or instruction on one line: control characters (newlines in file names) escaped.
fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

impl Render for RunOutcome {
    fn text(&self) -> String {
        let parent = self.parent.as_deref().map_or("the empty state", short);
        if self.cached {
            format!(
                "{}  cache hit: {:?} already ran on {parent}; head moved, nothing ran\n",
                self.short, self.instruction
            )
        } else {
            format!(
                "{}  captured {:?} on {parent}\n",
                self.short, self.instruction
            )
        }
    }
}

impl Render for ExecOutcome {
    fn text(&self) -> String {
        String::new()
    }
}

impl Render for BatchOutcome {
    fn text(&self) -> String {
        self.results.iter().map(Render::text).collect()
    }
}

fn change_lines(added: &[String], modified: &[String], deleted: &[String]) -> String {
    let mut s = String::new();
    for (mark, paths) in [("A", added), ("M", modified), ("D", deleted)] {
        for p in paths {
            s.push_str(&format!("{mark} {}\n", printable(p)));
        }
    }
    s
}

impl Render for StatusReport {
    fn text(&self) -> String {
        if self.clean {
            "clean: the work dir equals head\n".into()
        } else {
            change_lines(&self.added, &self.modified, &self.deleted)
        }
    }
}

impl Render for DiffReport {
    fn text(&self) -> String {
        if self.added.is_empty() && self.modified.is_empty() && self.deleted.is_empty() {
            "no differences\n".into()
        } else {
            change_lines(&self.added, &self.modified, &self.deleted)
        }
    }
}

/// `history`: a JSON array.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(super) struct History(pub(super) Vec<HistoryEntry>);

impl Render for History {
    fn text(&self) -> String {
        if self.0.is_empty() {
            return "no states yet\n".into();
        }
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|h| vec![h.short.clone(), h.time.clone(), printable(&h.instruction)])
            .collect();
        table(&rows)
    }
}

/// `head`.
#[derive(Debug, Serialize)]
pub(super) struct Head {
    pub(super) hash: Option<String>,
    pub(super) short: Option<String>,
}

impl Render for Head {
    fn text(&self) -> String {
        match &self.hash {
            Some(h) => format!("{h}\n"),
            None => "none (the store has no state yet)\n".into(),
        }
    }
}

impl Render for CheckoutOutcome {
    fn text(&self) -> String {
        format!(
            "HEAD is now {}: {} path(s) written, {} removed\n",
            self.short.as_deref().unwrap_or("the empty state"),
            self.written,
            self.removed
        )
    }
}

impl Render for TagInfo {
    fn text(&self) -> String {
        format!("{}  {}\n", self.short, self.name)
    }
}

/// `tags`, `checkpoints`: a JSON array.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(super) struct Tags(pub(super) Vec<TagInfo>);

impl Render for Tags {
    fn text(&self) -> String {
        if self.0.is_empty() {
            return "no tags\n".into();
        }
        self.0.iter().map(Render::text).collect()
    }
}

/// `untag`.
#[derive(Debug, Serialize)]
pub(super) struct Untagged {
    pub(super) untagged: String,
}

impl Render for Untagged {
    fn text(&self) -> String {
        format!("removed tag {}\n", self.untagged)
    }
}

impl Render for InspectReport {
    fn text(&self) -> String {
        table(&[
            vec!["state".into(), self.hash.clone()],
            vec!["layer".into(), self.layer.clone()],
            vec![
                "parent".into(),
                self.parent.clone().unwrap_or_else(|| "none".into()),
            ],
            vec!["instruction".into(), printable(&self.instruction)],
            vec!["time".into(), self.time.clone()],
            vec!["files".into(), self.files.to_string()],
            vec!["size".into(), format!("{} bytes", self.size)],
            vec![
                "stored".into(),
                format!("{} bytes (compressed)", self.compressed_size),
            ],
        ])
    }
}

impl Render for ResetOutcome {
    fn text(&self) -> String {
        format!(
            "forgot {} state(s){}\n",
            self.states_removed,
            if self.work_cleared {
                "; the work dir is empty"
            } else {
                "; the work dir was left as it is"
            }
        )
    }
}

impl Render for GcReport {
    fn text(&self) -> String {
        format!(
            "removed {} state(s) and {} object(s), kept {} object(s); packs {} → {} ({} → {} bytes)\n",
            self.states_removed,
            self.objects_removed,
            self.objects_kept,
            self.packs_before,
            self.packs_after,
            self.bytes_before,
            self.bytes_after
        )
    }
}

/// `ls`: a JSON array.
#[derive(Debug, Serialize)]
#[serde(transparent)]
pub(super) struct Ls {
    pub(super) entries: Vec<LsEntry>,
}

impl Render for Ls {
    fn text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .entries
            .iter()
            .map(|e| {
                let mut name = printable(&e.name);
                if e.kind == "dir" {
                    name.push('/');
                }
                if let Some(t) = &e.target {
                    name.push_str(&format!(" -> {}", printable(t)));
                }
                vec![
                    e.kind.clone(),
                    format!("{:04o}", e.mode),
                    e.size.to_string(),
                    name,
                ]
            })
            .collect();
        table(&rows)
    }
}

/// `cat --json`.
#[derive(Debug, Serialize)]
pub(super) struct Cat {
    r#ref: String,
    path: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

impl Cat {
    /// The JSON of file `path` of state `r#ref`: UTF-8 content as `text`, anything else as
    /// standard padded `base64`.
    pub(super) fn new(r#ref: String, path: String, bytes: Vec<u8>) -> Cat {
        let size = bytes.len() as u64;
        let (text, base64) = match String::from_utf8(bytes) {
            Ok(t) => (Some(t), None),
            Err(e) => (
                None,
                Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
            ),
        };
        Cat {
            r#ref,
            path,
            size,
            text,
            base64,
        }
    }
}

impl Render for Cat {
    fn text(&self) -> String {
        self.text.clone().unwrap_or_default()
    }
}

impl Render for VerifyReport {
    fn text(&self) -> String {
        let mut s = format!(
            "{}: {} state(s), {} object(s) checked\n",
            if self.ok { "ok" } else { "DAMAGED" },
            self.states,
            self.objects
        );
        for e in &self.errors {
            s.push_str(&format!("error: {e}\n"));
        }
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        s
    }
}
