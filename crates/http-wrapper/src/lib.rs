//! The HTTP client that performs a task's fetches, and the [`Fetcher`] trait through which an
//! embedder wraps or replaces it; and [`HostClient`], the typed client of the host API
//! (`sequential-ecosystem serve`).
//!
//! Invariant: knows nothing of storage or the engine; a fetch is one request, and the host
//! client sees runs only as the host API's wire types ([`host`]).
//!
//! The README follows; its examples run as doc tests.
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod client;
mod data_url;
mod error;
mod fetcher;
mod h1;
pub mod host;
mod policy;

/// Re-exported so that an implementation of [`Fetcher`] needs no dependency of its own.
pub use async_trait::async_trait;
pub use client::{Client, Request, Response, is_retryable_status};
pub use error::{ConfigError, Failure, FetchError};
pub use fetcher::Fetcher;
pub use host::{EventStream, HostClient, HostError, RunClient, TaskClient};
pub use policy::{Backoff, ClientConfig, Jitter, RetryPolicy};
