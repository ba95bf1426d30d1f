//! The storage contract of sequential-ecosystem: the domain model (task versions, runs, journal
//! records, signals, leases), the object-safe [`StorageAdapter`] trait, the [`Registry`] that
//! maps a `DATABASE_URL` scheme to a backend, and — behind `feature = "conformance"` — the one
//! test suite every backend must pass.
//!
//! Invariant: this crate knows no backend, no JavaScript and no HTTP. Semantics shared by all
//! backends (what is claimable, how appends are checked) live in [`rules`] as plain functions.
//!
//! ```
//! use sequential_adaptor::{NewTaskVersion, TaskName, RunStatus};
//! use serde_json::json;
//!
//! let name = TaskName::new("order-flow")?;
//! let v = NewTaskVersion { task: name, code: "1 + 1".into(), graph: None, config: json!({}) };
//! assert_eq!(v.content_hash().len(), 64);
//! assert!(TaskName::new("../etc").is_err());
//! assert!(RunStatus::Succeeded.is_terminal());
//! # Ok::<(), sequential_adaptor::Error>(())
//! ```
#![warn(missing_docs)]

mod adapter;
mod error;
mod memory;
mod model;
mod registry;
pub mod rules;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

pub use adapter::StorageAdapter;
pub use error::{Error, Result};
pub use memory::{MemoryFactory, MemoryStore};
pub use model::*;
pub use registry::{AdapterFactory, Registry, scheme_of, strip_scheme};
