//! The HTTP client that performs a task's fetches, and the [`Fetcher`] trait through which an
//! embedder wraps or replaces it.
//!
//! Invariant: knows nothing of runs, journals or storage; it performs one request.
//!
//! The README follows; its examples run as doc tests.
//!
#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod client;
mod data_url;
mod error;
mod fetcher;
mod policy;

/// Re-exported so that an implementation of [`Fetcher`] needs no dependency of its own.
pub use async_trait::async_trait;
pub use client::{Client, Request, Response, is_retryable_status};
pub use error::{ConfigError, Failure, FetchError};
pub use fetcher::Fetcher;
pub use policy::{Backoff, ClientConfig, Jitter, RetryPolicy};
