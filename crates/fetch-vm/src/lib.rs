#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod engine;
mod error;
mod evaluator;
pub mod external;
mod model;
mod session;
mod source;

pub use error::{Error, JsError};
pub use evaluator::Evaluator;
pub use external::{execute_json, resume_json};
pub use model::{
    CallKind, CallResult, ErrorInfo, HostCall, Journal, JournalEntry, Limits, Mode, Options, Step,
};
pub use session::{Session, clean_up_in_idle_time, keep_idle_sessions, session_engines_made};

/// `sha256:<hex>` of task code, as recorded in a vmState.
pub fn code_hash(code: &str) -> String {
    source::code_hash(code)
}
