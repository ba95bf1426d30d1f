//! Graph tasks (a `graph.json` beside code.js, GRAPHS.md): the engine side of
//! [`sequential_flow_graph`]. A run whose pinned version has a graph is driven by the graph's
//! stepping function: each transition's records are one all-or-nothing append (S6), a handler
//! starts only once its `state.entered` is committed (S7), timers are absolute deadlines in
//! storage (S8), events come from the run's inbox (S11), and the run is pinned to the hashes of
//! its graph and code (S13). Handlers are exports of code.js, run in fetch-vm; their `fetch`es
//! are durable steps journaled between the graph records with the state's path.
//!
//! ```
//! use sequential_adaptor::TaskName;
//! use sequential_tasker_engine::graph::{GraphTask, exports};
//! use serde_json::json;
//!
//! let code = "export async function greet(input) { return `hi ${input.name}`; }";
//! assert!(exports(code).names.contains_key("greet"));
//! let task = GraphTask::new(
//!     code,
//!     &json!({"version": 1, "initial": "greet", "states": {
//!         "greet": {"onDone": "done"}, "done": {"type": "final"}}}),
//! )?;
//! assert!(task.graph_hash.starts_with("sha256:"));
//! assert_eq!(task.graph.main().initial(), "greet");
//! # Ok::<(), sequential_tasker_engine::Error>(())
//! ```

mod drive;
mod exports;
mod handler;
mod store;

use sequential_adaptor::canonical_json;
use sequential_flow_graph::{CheckOptions, Diagnostic, Graph, Report};
use serde_json::Value;

pub use exports::{DEFAULT_BINDING, Exports, exports};

pub(crate) use drive::{drive, kill_records};
pub(crate) use store::cut as rerun_cut;

use crate::error::Result;

/// A graph task version ready to drive: its graph checked against code.js's exports, and the
/// hashes a run is pinned to (S13).
#[derive(Debug)]
pub struct GraphTask {
    /// The validated graph.
    pub graph: Graph,
    /// Warnings of validation (legacy keys, eventless cycles).
    pub warnings: Vec<Diagnostic>,
    /// `sha256:<hex>` of graph.json as canonical JSON.
    pub graph_hash: String,
    /// `sha256:<hex>` of code.js.
    pub code_hash: String,
    /// What code.js exports.
    pub exports: Exports,
    code: std::sync::Arc<handler::Code>,
}

impl GraphTask {
    /// Checks `graph` against the exports of `code`; an invalid graph is [`Error::Graph`]
    /// listing every error at its JSON pointer.
    pub fn new(code: &str, graph: &Value) -> Result<GraphTask> {
        let exports = exports(code);
        let options = CheckOptions {
            exports: Some(exports.names()),
        };
        let parsed = Graph::parse_with(&graph.to_string(), &options)?;
        Ok(GraphTask {
            graph: parsed.graph,
            warnings: parsed.warnings,
            graph_hash: graph_hash(graph),
            code_hash: sequential_fetch_vm::code_hash(code),
            code: std::sync::Arc::new(handler::Code::new(code, exports.clone())),
            exports,
        })
    }
}

/// `graph check`: every error and warning of graph.json text (static validation, S16), with
/// the handlers checked against the exports of `code`.
pub fn check(code: &str, graph_json: &str) -> Report {
    let options = CheckOptions {
        exports: Some(exports(code).names()),
    };
    sequential_flow_graph::check(graph_json, &options)
}

/// `sha256:<hex>` of a graph.json as canonical JSON (what `run.started` pins, S13).
pub fn graph_hash(graph: &Value) -> String {
    sequential_fetch_vm::code_hash(&canonical_json(graph))
}
