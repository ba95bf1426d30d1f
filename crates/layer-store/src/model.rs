//! Result structs of the store operations (serde-serializable, the `--json` shapes of the CLI)
//! and the records persisted under the store directory.

use serde::{Deserialize, Serialize};

/// Result of `run` (also of each step of `batch`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RunOutcome {
    /// New head state id (64 hex).
    pub hash: String,
    /// Its first 12 chars.
    pub short: String,
    /// Whether the result came from the cache (the command did not run).
    pub cached: bool,
    /// The instruction.
    pub instruction: String,
    /// The state the instruction ran on (`None` = empty root).
    pub parent: Option<String>,
    /// The command's standard output, when captured (see [`crate::Output::Capture`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// The command's standard error, when captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
}

/// Result of `exec`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ExecOutcome {
    /// Exit code (128 + signal when killed by a signal).
    pub code: i32,
    /// Standard output, when captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// Standard error, when captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
}

/// Result of `batch`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BatchOutcome {
    /// The steps that succeeded, in order.
    pub results: Vec<RunOutcome>,
    /// The step that failed (the batch stopped there).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed: Option<BatchFailure>,
}

/// The failing step of a batch.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BatchFailure {
    /// Zero-based position in the batch.
    pub index: usize,
    /// The instruction.
    pub instruction: String,
    /// Its exit code.
    pub code: i32,
}

/// Uncommitted changes of the work dir vs head.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct StatusReport {
    /// Paths present in the work dir only (directories included).
    pub added: Vec<String>,
    /// Paths whose content, mode, kind or link target differ.
    pub modified: Vec<String>,
    /// Paths present in head only.
    pub deleted: Vec<String>,
    /// No difference at all.
    pub clean: bool,
}

/// Differences between two states.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct DiffReport {
    /// Paths in `b` only.
    pub added: Vec<String>,
    /// Paths that differ.
    pub modified: Vec<String>,
    /// Paths in `a` only.
    pub deleted: Vec<String>,
}

/// One line of `history`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct HistoryEntry {
    /// State id.
    pub hash: String,
    /// Short state id.
    pub short: String,
    /// The instruction that produced it.
    pub instruction: String,
    /// Parent state id.
    pub parent: Option<String>,
    /// Short parent id.
    #[serde(rename = "parentShort")]
    pub parent_short: Option<String>,
    /// Creation time, RFC 3339 UTC.
    pub time: String,
}

/// Result of `checkout`, `restore` and `rebuild`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckoutOutcome {
    /// The state now at head (`None` = empty root).
    pub hash: Option<String>,
    /// Its short form.
    pub short: Option<String>,
    /// Paths written (created, rewritten or re-moded).
    pub written: usize,
    /// Paths removed.
    pub removed: usize,
}

/// A tag.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TagInfo {
    /// Tag name (checkpoints: without the `checkpoint/` prefix in `checkpoints`).
    pub name: String,
    /// State id.
    pub hash: String,
    /// Short state id.
    pub short: String,
}

/// Result of `inspect`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct InspectReport {
    /// State id.
    pub hash: String,
    /// Short state id.
    pub short: String,
    /// The instruction.
    pub instruction: String,
    /// Parent state id.
    pub parent: Option<String>,
    /// Creation time, RFC 3339 UTC.
    pub time: String,
    /// Uncompressed bytes of file contents in the layer.
    pub size: u64,
    /// Entries in the layer (whiteouts included).
    pub files: u64,
    /// Stored bytes of the layer (its new objects, compressed, plus the changeset).
    pub compressed_size: u64,
    /// Layer id (sha256 of the uncompressed changeset).
    pub layer: String,
}

/// One entry of `ls`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LsEntry {
    /// Name within the directory.
    pub name: String,
    /// `file`, `dir`, `symlink` or `hardlink`.
    pub kind: String,
    /// Permission bits.
    pub mode: u32,
    /// Size in bytes.
    pub size: u64,
    /// Symlink text or hard-link target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// sha256 of the content (files and hard links): the object id in the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Result of `reset`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ResetOutcome {
    /// States forgotten.
    pub states_removed: usize,
    /// Whether the work dir was emptied too.
    pub work_cleared: bool,
}

/// Result of `gc`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct GcReport {
    /// Unreachable states removed.
    pub states_removed: usize,
    /// Unreachable objects removed.
    pub objects_removed: usize,
    /// Objects kept.
    pub objects_kept: usize,
    /// Pack files before.
    pub packs_before: usize,
    /// Pack files after.
    pub packs_after: usize,
    /// Bytes of pack files before.
    pub bytes_before: u64,
    /// Bytes of pack files after.
    pub bytes_after: u64,
}

/// Result of `verify`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct VerifyReport {
    /// No error found.
    pub ok: bool,
    /// States checked.
    pub states: usize,
    /// Objects read and checked against their hash.
    pub objects: usize,
    /// Problems that make data unusable (each names the object or file).
    pub errors: Vec<String>,
    /// Harmless leftovers (temp files and packs of a killed writer; `gc` removes them).
    pub warnings: Vec<String>,
}

/// Persisted record of one state (`states/<id>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StateRecord {
    pub version: u32,
    pub id: String,
    pub parent: Option<String>,
    pub layer: String,
    pub manifest: String,
    pub instruction: String,
    pub time_ms: i64,
    pub size: u64,
    pub files: u64,
    pub compressed_size: u64,
}

/// Persisted cache key record (`keys/<key>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct KeyRecord {
    pub version: u32,
    pub layer: String,
    pub state: String,
}

/// RFC 3339 UTC of a Unix time in milliseconds (`2026-11-29T02:54:09.999Z`); times outside
/// 1970–9999 (only a damaged record has them) are clamped into that range by support.
pub(crate) use sequential_support::time::rfc3339_millis as rfc3339;

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            super::rfc3339(1_795_920_849_999),
            "2026-11-29T02:54:09.999Z"
        );
        // A damaged record's time is clamped instead of panicking.
        assert_eq!(super::rfc3339(-1), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::rfc3339(i64::MAX), "9999-12-31T23:59:59.999Z");
    }
}
