#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod check;
mod diag;
mod error;
mod graph;
mod json;
pub mod machine;
mod parse;
mod path;
mod predicate;
mod record;
pub mod reserved;
mod snapshot;
mod step;
mod template;

pub use diag::{Diagnostic, Report, Severity};
pub use error::{Error, Result};
pub use graph::{Edge, Graph, State, SubGraph};
pub use machine::{Definition, Machine, MachineLog, MemoryLog};
pub use parse::{CheckOptions, Parsed, check};
pub use predicate::Predicate;
pub use record::{ErrorValue, Record, RecordData, RecordKind};
pub use snapshot::{
    Active, ArmedTimer, Fanout, InboxEvent, Phase, Region, RegionStatus, RunStatus, Snapshot, fold,
};
pub use step::{Action, Env, Fact, HandlerCall, Step, redrive_point, step};
pub use template::{Selector, Template};
