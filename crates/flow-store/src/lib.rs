//! The task store of sequential-flow's external mode: every `execute`/`resume` saves the task
//! (id, name, status, vmState, result or error, `createdAt`/`updatedAt`/`expiresAt`) with a TTL
//! (2 hours unless told); a `resume` that gives only `taskId` and the fetch response continues
//! the stored task; `get`, `delete`, `list`; expired tasks are invisible, and purged through an
//! expiry index (never a scan of every task per call).
//!
//! Backends by URL ([`FlowStore::open`]): `memory:` (the default), a folder, SQLite
//! (`sqlite:PATH`, or a path ending in `.db`), PostgreSQL (`postgres://…`) and Redis
//! (`redis://…`, TTL by key expiry). A custom backend implements [`TaskStore`] and runs the
//! conformance suite ([`task_store_tests!`], feature `conformance`).
//!
//! **Invariant:** fetch-vm stays free of storage and of clocks in its `Session`: this crate
//! calls its `external` module and keeps the clock (a [`Clock`] a test can replace) for TTLs.
//!
//! ```
//! use sequential_flow_store::{FlowStore, ResumeInput, SaveOptions};
//! use sequential_fetch_vm::external::{ExecuteRequest, FetchResponse};
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = FlowStore::open("memory:").await?;
//! let code = "const u = fetch('api/user/1'); u.name";
//! let paused = store
//!     .execute(ExecuteRequest::new(Some("t1".into()), code, serde_json::Value::Null), &SaveOptions::default())
//!     .await?;
//! assert_eq!(paused.fetch_request.unwrap().url, "api/user/1");
//! // another call, maybe another process: only the task id and the response
//! let reply = FetchResponse::new(200, "OK", serde_json::json!({"name": "Alice"}));
//! let done = store.resume(ResumeInput::stored("t1", reply), &SaveOptions::default()).await?;
//! assert_eq!(done.result, Some(serde_json::json!("Alice")));
//! assert_eq!(store.get("t1").await?.unwrap().status_word(), "completed");
//! # Ok::<(), sequential_flow_store::Error>(())
//! # }).unwrap();
//! ```
#![warn(missing_docs)]

mod backend;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod flow;
mod folder;
mod memory;
mod open;
mod postgres;
mod redis;
mod sqlite;
mod task;

pub use backend::TaskStore;
pub use error::{Error, Result};
pub use flow::{Clock, DEFAULT_TTL, FlowStore, ResumeInput, SaveOptions};
pub use folder::FolderTaskStore;
pub use memory::MemoryTaskStore;
pub use open::{FORMS, Location, open_backend, parse_url, redact};
pub use postgres::{DEFAULT_PG_SCHEMA, PostgresTaskStore};
pub use redis::{DEFAULT_REDIS_PREFIX, RedisTaskStore};
pub use sqlite::{SQLITE_SCHEMA_VERSION, SqliteTaskStore};
pub use task::{
    Gone, GoneReason, RECORD_FORMAT, RECORD_VERSION, Record, TOMBSTONE_RETENTION_MS, Task,
};

/// Re-exported so callers need not name fetch-vm for the request and response types.
pub use sequential_fetch_vm::external::{
    CallResponse, ExecuteRequest, ExternalOptions, FetchResponse, Status,
};

/// The examples of `docs/sequential-flow.md`, run as doc tests.
#[doc = include_str!("../../../docs/sequential-flow.md")]
#[cfg(doctest)]
pub struct GuideDoctests;

/// Opens the store at `url`: shorthand for [`FlowStore::open`].
pub async fn open(url: &str) -> Result<FlowStore> {
    FlowStore::open(url).await
}
