//! The HTTP client that performs a task's fetches: connect and total timeouts, retries with
//! exponential backoff, full jitter and a cap, `Retry-After` honoured up to the cap, the same
//! `Idempotency-Key` header on every attempt, a response size cap, and `data:` URLs answered
//! locally (so examples work offline).
//!
//! Invariant: knows nothing of runs, journals or storage; it performs one request.
//!
//! Retried: connection errors, timeouts, 408, 425, 429, 500, 502, 503, 504. Never retried: any
//! other status (a 404 is a response, not an error).
//!
//! ```
//! use sequential_http_wrapper::{Client, ClientConfig, Request};
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let client = Client::new(ClientConfig::default())?;
//! let resp = client.fetch(&Request::get("data:application/json,{\"ok\":true}")).await?;
//! assert_eq!(resp.status, 200);
//! assert_eq!(resp.data()["ok"], true);
//! # Ok::<(), sequential_http_wrapper::FetchError>(()) }).unwrap();
//! ```
#![warn(missing_docs)]

mod client;
mod data_url;
mod error;
mod policy;

pub use client::{Client, Request, Response, is_retryable_status};
pub use error::{ConfigError, Failure, FetchError};
pub use policy::{Backoff, ClientConfig, Jitter, RetryPolicy, parse_duration};
