//! Graph tasks (a `graph.json` beside code.js, GRAPHS.md): the engine side of
//! [`sequential_flow_graph`]. A run whose pinned version has a graph is driven by the graph's
//! stepping function: each transition's records are one all-or-nothing append (S6), a handler
//! performs nothing until its `state.entered` is committed (S7: its code runs up to its first
//! host calls while that append is prepared, and their `call.requested` records are part of it,
//! so a fetching state costs one durable write), timers are absolute deadlines in
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

/// Where [`Engine::rerun_graph`] starts the copy of a graph run (GRAPHS.md S15).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RerunFrom {
    /// Keep the journal up to the commit that last entered this state (its path as the journal
    /// writes it: `charge`, `price[1]/priceLine`, `checks#0/stock`); the new run enters it
    /// again, with fresh retry counters.
    State(String),
    /// Redrive a failed run: as `State` of the state whose failure ended it (the last
    /// `state.failed`).
    Failed,
}

impl crate::Engine {
    /// A new run of a graph run's task that copies its journal up to the entry of a state
    /// (S15: history is never truncated in place; the run itself is unchanged). Returns the
    /// new run (queued, for a driver to take) and how many records it kept. A run that is not
    /// a graph run, a state the run never entered, or — with [`RerunFrom::Failed`] — a run that
    /// did not fail in a state, is [`crate::Error::Invalid`] naming what would be valid.
    pub async fn rerun_graph(
        &self,
        id: sequential_adaptor::RunId,
        from: &RerunFrom,
    ) -> Result<(sequential_adaptor::Run, u64)> {
        let run = self.store.get_run(id).await?;
        let version = self
            .store
            .get_task_version(
                &run.task,
                sequential_adaptor::VersionSel::Exact(run.version),
            )
            .await?;
        let invalid = |input: String, expected: String| crate::Error::Invalid { input, expected };
        if version.graph.is_none() {
            return Err(invalid(
                format!("run {id} of task {} (an implicit task)", run.task),
                "a run of a graph task; an implicit run is copied with --from-seq".into(),
            ));
        }
        let records = self.read_all(id).await?;
        let state = match from {
            RerunFrom::State(s) => s.clone(),
            RerunFrom::Failed => {
                if run.status != sequential_adaptor::RunStatus::Failed {
                    return Err(invalid(
                        format!("redrive of run {id} ({})", run.status),
                        "a failed run (redrive re-enters the state that failed)".into(),
                    ));
                }
                records
                    .iter()
                    .rev()
                    .find(|r| r.kind == "state.failed")
                    .and_then(|r| r.data["path"].as_str())
                    .map(str::to_string)
                    .ok_or_else(|| {
                        invalid(
                            format!("redrive of run {id}: no state failed in it (it ended with {})", run.error.as_ref().map_or("no error".into(), |e| e["name"].to_string())),
                            "a run that failed in a task state; copy it with --from-state STATE or --from-seq N".into(),
                        )
                    })?
            }
        };
        let Some(cut) = entry_cut(&records, &state) else {
            let mut entered: Vec<&str> = records
                .iter()
                .filter(|r| r.kind == "state.entered")
                .filter_map(|r| r.data["path"].as_str())
                .collect();
            entered.dedup();
            let mut seen = std::collections::BTreeSet::new();
            entered.retain(|p| seen.insert(*p));
            return Err(invalid(
                format!("state {state:?} (run {id} never entered it)"),
                format!("a state the run entered: {}", entered.join(", ")),
            ));
        };
        let new = self.rerun(id, cut).await?;
        Ok((new, cut))
    }
}

impl crate::Engine {
    /// Redrives failed graph run `id` in place (GRAPHS.md S15, Step Functions redrive): one
    /// commit appends `run.redriven` and the `state.entered` (attempt 1, fresh retry counters)
    /// of the main-graph state whose failure ended the run — for a failure inside a branch or
    /// item, the parallel or map state holding it — then the run is `queued` again under the
    /// same id for a worker to drive. The journal continues: `run.failed` stays in it, and the
    /// states that succeeded before keep their results and are not run again.
    ///
    /// A run that is not failed, an implicit run (its code replays to the same exception: copy
    /// it with `rerun --from-seq` instead), or a run that did not fail in a state is
    /// [`crate::Error::Invalid`] naming what would be valid.
    pub async fn redrive(&self, id: sequential_adaptor::RunId) -> Result<sequential_adaptor::Run> {
        use sequential_adaptor::{Fence, JournalRecord, RunStatus, now_millis};
        use sequential_flow_graph::{Env, Fact, RunStatus as GraphStatus, fold, redrive_point};
        let invalid = |input: String, expected: String| crate::Error::Invalid { input, expected };
        let mut run = self.store.get_run(id).await?;
        if run.status != RunStatus::Failed {
            return Err(invalid(
                format!("redrive of run {id} ({})", run.status),
                "a failed run (redrive re-enters the state whose failure ended it)".into(),
            ));
        }
        let version = self
            .store
            .get_task_version(
                &run.task,
                sequential_adaptor::VersionSel::Exact(run.version),
            )
            .await?;
        let Some(graph) = &version.graph else {
            return Err(invalid(
                format!("redrive of run {id} of task {} (an implicit task)", run.task),
                "a failed run of a graph task: an implicit run replays to the same exception, so copy it up to a record before the failure with `rerun --from-seq N` (POST /api/v1/runs/ID/_fork)".into(),
            ));
        };
        let task = GraphTask::new(&version.code, graph)?;
        let loaded = store::load(self.store.as_ref(), id).await?;
        let snapshot = fold(&task.graph, &loaded.records)?;
        match snapshot.status {
            GraphStatus::Failed => {
                let Some((state, input)) = redrive_point(&loaded.records) else {
                    return Err(invalid(
                        format!("redrive of run {id}: no state failed in it"),
                        "a run that failed in a state; copy it with `rerun --from-seq N`".into(),
                    ));
                };
                let env = Env {
                    now: now_millis(),
                    run_id: id.to_string(),
                    draw: 0.0,
                };
                let step = snapshot.step(&task.graph, Fact::Redrive { state, input }, &env)?;
                let at = now_millis();
                let records: Vec<JournalRecord> =
                    store::stored(&step.records, &store::Extra::default())
                        .into_iter()
                        .enumerate()
                        .map(|(i, (kind, data))| JournalRecord {
                            run: id,
                            seq: loaded.next_seq + i as u64,
                            kind,
                            at,
                            data,
                        })
                        .collect();
                // one all-or-nothing append (S6); a concurrent redrive loses on the seq
                self.store.append(id, &records, Fence::None).await?;
                self.keep_snapshot(id, &step.snapshot);
            }
            // an earlier redrive appended its records and lost the status write: finish it
            GraphStatus::Running if redriven_last(&loaded.records) => {
                self.keep_snapshot(id, &snapshot);
            }
            other => {
                return Err(invalid(
                    format!(
                        "redrive of run {id}: its journal says the run is {}",
                        other.as_str()
                    ),
                    "a run whose journal ends with run.failed".into(),
                ));
            }
        }
        run.status = RunStatus::Queued;
        run.error = None;
        run.output = None;
        run.ended_at = None;
        run.wake_at = None;
        run.waiting_for = None;
        Ok(self.store.update_run(&run).await?)
    }
}

/// `true` when the last commit of graph records is a redrive's (`run.redriven`, the
/// `state.entered` of attempt 1 and what entering armed): its state has not run yet, so a
/// driver picking the run up starts it as new rather than as a takeover (S7).
pub(crate) fn redriven_last(records: &[sequential_flow_graph::Record]) -> bool {
    use sequential_flow_graph::RecordData;
    let mut tail = records.iter().rev();
    for r in tail.by_ref() {
        match r.data {
            RecordData::RunRedriven {} => return true,
            RecordData::StateEntered { restart: None, .. } | RecordData::TimerScheduled { .. } => {}
            _ => return false,
        }
    }
    false
}

/// The first seq of the commit that last entered `path` afresh (a `state.entered` record with
/// that path and attempt 1, not one of a redrive, whose commit follows a failure), or `None`
/// when the journal never entered it.
fn entry_cut(records: &[sequential_adaptor::JournalRecord], path: &str) -> Option<u64> {
    // the commit holding seq `at` starts at a record carrying `batch` (its length)
    let commit_start = |at: u64| {
        let mut start = at;
        for r in records.iter().filter(|r| r.seq <= at) {
            if let Some(n) = r.data.get("batch").and_then(Value::as_u64)
                && r.seq + n > at
            {
                start = r.seq;
            }
        }
        start
    };
    records
        .iter()
        .rev()
        .filter(|r| {
            // a retry enters the state again with attempt 2, 3 …: the visit began at attempt 1
            r.kind == "state.entered"
                && r.data["path"].as_str() == Some(path)
                && r.data["attempt"].as_u64().unwrap_or(1) <= 1
        })
        .map(|r| commit_start(r.seq))
        .find(|start| {
            records
                .iter()
                .find(|r| r.seq == *start)
                .is_none_or(|r| r.kind != "run.redriven")
        })
}
