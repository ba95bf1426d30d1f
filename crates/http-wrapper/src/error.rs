//! Errors of the HTTP client.

use std::time::Duration;

/// A bad configuration value: names the key, the value and what would be valid.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid {key} = {value}: expected {expected}")]
pub struct ConfigError {
    /// The key, e.g. `retry.attempts` or `TASK_TIMEOUT`.
    pub key: String,
    /// The value as given.
    pub value: String,
    /// What would have been valid.
    pub expected: String,
}

/// Why a fetch produced no usable response. A non-2xx status that is not retried (or whose
/// retries are spent) is *not* an error of this kind unless retries were spent on it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The URL cannot be fetched as given.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A scheme other than `http`, `https` or `data`.
    #[error("unsupported URL scheme {scheme:?} in {url:?}: expected http, https or data")]
    UnsupportedScheme {
        /// The URL.
        url: String,
        /// Its scheme.
        scheme: String,
    },
    /// The request options are malformed (a bad method or header).
    #[error("invalid request option {option}: {reason}")]
    InvalidRequest {
        /// The option, e.g. `method` or `headers["x y"]`.
        option: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The response body is larger than the configured cap.
    #[error("response of {url} exceeds the {limit}-byte limit (max_response_bytes)")]
    TooLarge {
        /// The URL.
        url: String,
        /// The cap in bytes.
        limit: usize,
    },
    /// Every attempt failed; `last` says how the last one failed.
    #[error("{url} failed after {attempts} attempt(s): {last}")]
    RetriesExhausted {
        /// The URL.
        url: String,
        /// How many attempts were made.
        attempts: u32,
        /// The last failure.
        last: Failure,
    },
}

/// How one attempt failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The connection could not be made or broke.
    #[error("connection error: {0}")]
    Connect(String),
    /// No complete response within the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// A retryable status (408, 425, 429, 500, 502, 503, 504).
    #[error("HTTP {status} {status_text}")]
    Status {
        /// The status code.
        status: u16,
        /// Its reason phrase.
        status_text: String,
        /// The body of the last response, as text (lossy).
        body: String,
    },
    /// Any other transport error.
    #[error("{0}")]
    Other(String),
}
