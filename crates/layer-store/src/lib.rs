//! Content-addressed filesystem layers: run a command in a work dir, capture what it changed
//! as an immutable layer, and make the same command from the same state an instant cache hit.
//!
//! A [`Store`] owns a store directory (objects in packs, state records, refs, cache keys, the
//! stat-cache index) and one work dir. Every operation of the `sequential-machine` CLI is a
//! method returning a serde-serializable result struct (the CLI's `--json` shape).
//!
//! **Invariant**: stored data is immutable and content-addressed. A layer id is the sha256 of
//! its deterministic changeset (sorted entries, permission bits only, no owner or timestamps,
//! OCI `.wh.` whiteouts); a state id is `sha256(parent state ‖ layer)`; every object is verified
//! against its sha256 when read. The crate knows nothing of the CLI, tasks or the engine.
//!
//! ```
//! use sequential_layer_store::{CheckoutOptions, RunOptions, Store};
//! # fn main() -> Result<(), sequential_layer_store::Error> {
//! # let tmp = tempfile::tempdir().unwrap();
//! let store = Store::open(tmp.path().join("store"), tmp.path().join("work"))?;
//! let opts = RunOptions::default();
//! let first = store.run("echo hello > greeting", &opts)?;
//! assert!(!first.cached);
//! store.run("rm greeting && mkdir -p out", &opts)?;
//! store.checkout(&first.hash, CheckoutOptions::default())?;   // back: greeting exists again
//! assert_eq!(store.cat("HEAD", "greeting")?, b"hello\n");
//! let again = store.run("rm greeting && mkdir -p out", &opts)?; // same instruction, same parent
//! assert!(again.cached);
//! assert!(store.status()?.clean);
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod chunk;
mod error;
mod fsutil;
mod id;
mod index;
mod maintenance;
mod materialize;
mod model;
mod objects;
mod progress;
mod store;
pub mod tree;

pub use error::{Error, Result};
pub use id::{CacheKey, Digest, LayerId, RUNNER_VERSION, StateId};
pub use model::{
    BatchFailure, BatchOutcome, CheckoutOutcome, DiffReport, ExecOutcome, GcReport, HistoryEntry,
    InspectReport, LsEntry, ResetOutcome, RunOutcome, StatusReport, TagInfo, VerifyReport,
};
pub use progress::{Phase, Progress};
pub use store::{CheckoutOptions, FORMAT_VERSION, Output, ResetMode, RunOptions, Store};
