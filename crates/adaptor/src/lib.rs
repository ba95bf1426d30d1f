#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod adapter;
mod error;
mod memory;
mod model;
mod registry;
pub mod rules;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use adapter::{StorageAdapter, create_then_claim};
pub use error::{Error, Result};
pub use memory::{MemoryFactory, MemoryStore};
pub use model::*;
pub use registry::{AdapterFactory, Registry, scheme_of, strip_scheme};
