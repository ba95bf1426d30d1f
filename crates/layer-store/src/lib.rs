#![doc = include_str!("../README.md")]
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

/// Most bytes of a failing command's captured output kept in [`Error::CommandFailed`] (its end).
pub const OUTPUT_TAIL: usize = 4096;
