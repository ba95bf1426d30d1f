#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod check;
mod diag;
mod error;
mod graph;
mod json;
mod parse;
mod path;
mod predicate;
pub mod reserved;
mod template;

pub use diag::{Diagnostic, Report, Severity};
pub use error::{Error, Result};
pub use graph::{Edge, Graph, State, SubGraph};
pub use parse::{CheckOptions, Parsed, check};
pub use predicate::Predicate;
pub use template::{Selector, Template};
