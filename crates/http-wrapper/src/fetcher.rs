//! The `Fetcher` trait: what performs one request, so an embedder can wrap or replace the client.

use std::sync::Arc;

use async_trait::async_trait;

use crate::client::{Client, Request, Response};
use crate::error::FetchError;

/// Performs one request, as a task's `fetch(url, options)` describes it, to its end.
///
/// The trait sits at the level of a whole request, retries included: [`Client`] (the default)
/// applies its timeouts, retry policy (`req.retry`, else its own), `Retry-After` and the
/// `Idempotency-Key` inside `fetch`. A fetcher that *wraps* another one (adds an auth header,
/// records, rewrites URLs) gets all of that from the one it wraps; a fetcher that *replaces*
/// the client (a test double answering from memory) decides for itself.
///
/// What a caller such as the engine makes of the outcome:
/// - `Ok(response)`: any status, a 404 included, is an answer;
/// - [`FetchError::RetriesExhausted`]: the request may succeed later (the engine pauses the run);
/// - any other error: the request itself is wrong (the engine throws it into the task).
///
/// Implementations must send `req.idempotency_key` (when set) as the `Idempotency-Key` header
/// on every attempt; the engine relies on it to make a repeated call harmless.
#[async_trait]
pub trait Fetcher: Send + Sync + std::fmt::Debug {
    /// Performs `req`.
    async fn fetch(&self, req: &Request) -> Result<Response, FetchError>;
}

#[async_trait]
impl Fetcher for Client {
    async fn fetch(&self, req: &Request) -> Result<Response, FetchError> {
        Client::fetch(self, req).await
    }
}

#[async_trait]
impl<F: Fetcher + ?Sized> Fetcher for Arc<F> {
    async fn fetch(&self, req: &Request) -> Result<Response, FetchError> {
        (**self).fetch(req).await
    }
}

#[async_trait]
impl<F: Fetcher + ?Sized> Fetcher for Box<F> {
    async fn fetch(&self, req: &Request) -> Result<Response, FetchError> {
        (**self).fetch(req).await
    }
}
