//! Runs JavaScript tasks that pause at every host call and resume anywhere by journal replay.
//!
//! A task is ordinary JavaScript, in *script mode* (statements top to bottom, `fetch` returns the
//! response body synchronously, the last expression is the result) or *module mode*
//! (`export default async function (input, ctx)` with a WHATWG `fetch`). Every side effect —
//! `fetch`, `ctx.sleep`, `ctx.waitForEvent`, `ctx.emit`, `ctx.callTool`, `ctx.runTask`, and also
//! `Date.now()`, `new Date()`, `Math.random()`, `crypto.*` — is a [`HostCall`] with a dense
//! `seq`. A [`Session`] runs the code until it completes, fails, or waits for calls
//! ([`Step::Pending`]); the caller performs them and hands back results with
//! [`Session::complete`]. Completed calls form the [`Journal`]; starting a new session with it
//! replays the code to the same point (recorded results are returned, not reported), so a run
//! can continue in another process.
//!
//! **Invariant**: this crate never performs I/O, reads the wall clock or draws randomness for
//! the code; it only returns what it needs. Only `src/engine/quickjs.rs` names rquickjs.
//!
//! ```
//! use sequential_fetch_vm::{CallResult, Options, Session, Step};
//! use serde_json::json;
//!
//! let code = r#"const user = fetch(`https://api.example.com/users/${input.id}`);
//! ({ name: user.name })"#;
//! let (mut session, mut step) = Session::start(code, &json!({ "id": 7 }), vec![], &Options::default())?;
//! while let Step::Pending(calls) = step {
//!     let call = &calls[0]; // the caller would perform call.request here
//!     let reply = CallResult::fetch_response(200, "OK", json!({}), json!({ "name": "Alice" }));
//!     step = session.complete(call.seq, reply)?;
//! }
//! assert_eq!(step, Step::Completed(json!({ "name": "Alice" })));
//! # Ok::<(), sequential_fetch_vm::Error>(())
//! ```
#![warn(missing_docs)]

mod engine;
mod error;
pub mod external;
mod model;
mod session;
mod source;

pub use error::{Error, JsError};
pub use external::{execute_json, resume_json};
pub use model::{
    CallKind, CallResult, ErrorInfo, HostCall, Journal, JournalEntry, Limits, Mode, Options, Step,
};
pub use session::Session;

/// `sha256:<hex>` of task code, as recorded in a vmState.
pub fn code_hash(code: &str) -> String {
    source::code_hash(code)
}
