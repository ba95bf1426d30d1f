//! Regions: a final state ends its region; a branch or item reports to its parallel or map
//! state; the main graph ends the run. Cancellation and the terminal end.

use serde_json::Value;

use crate::error::Result;
use crate::graph::{Kind, Tolerance};
use crate::path::{self, Sub};
use crate::record::{ErrorValue, RecordData};
use crate::reserved;
use crate::snapshot::{Fanout, RegionStatus};

use super::flow::{Flow, Stepper, Work, input_template, parent_of};

impl Stepper<'_> {
    pub(super) fn finish_final(&mut self, path: &str, handler_output: Option<Value>) -> Flow {
        let Some(Kind::Final(f)) = self.g.state_at(path).map(|s| &s.kind) else {
            return Ok(());
        };
        let (prefix, _) = path::split_last(path);
        let prefix = prefix.to_string();
        let a = self.active(path)?;
        let handled = a.error.clone();
        let output = match &f.output {
            Some(t) => {
                let scope = self.state_scope(path, handler_output.as_ref())?;
                match t.render_raw(&scope) {
                    Ok(v) => v,
                    Err(sel) => {
                        let e = input_template(sel, path);
                        return self.region_failed(&prefix, path, e);
                    }
                }
            }
            None => handler_output.unwrap_or_else(|| a.input.clone()),
        };
        self.region_succeeded(&prefix, path, output, handled)
    }

    pub(super) fn region_succeeded(
        &mut self,
        prefix: &str,
        path: &str,
        output: Value,
        handled: Option<ErrorValue>,
    ) -> Flow {
        let Some((parent, sub)) = parent_of(prefix) else {
            // the main graph: the run succeeds
            let output = match &self.g.output {
                Some(t) => {
                    let scope = self.scope("", &output, (None, None), Some(&output));
                    match t.render_raw(&scope) {
                        Ok(v) => v,
                        Err(sel) => {
                            let e = ErrorValue::new(
                                reserved::INPUT_TEMPLATE,
                                format!("selector {sel} of the graph's output resolved to nothing"),
                            );
                            return self.terminate(path, e);
                        }
                    }
                }
                None => output,
            };
            self.discard_inbox()?;
            return self.emit(
                None,
                RecordData::RunSucceeded {
                    output,
                    handled_error: handled,
                },
            );
        };
        match sub {
            Sub::Branch(b) => {
                self.emit(
                    Some(&parent),
                    RecordData::BranchSucceeded { branch: b, output },
                )?;
                let outputs = match self.snap.active(&parent).and_then(|a| a.fanout.as_ref()) {
                    Some(Fanout::Parallel { branches })
                        if branches.iter().all(|r| r.status == RegionStatus::Succeeded) =>
                    {
                        branches
                            .iter()
                            .map(|r| r.output.clone().unwrap_or(Value::Null))
                            .collect::<Vec<_>>()
                    }
                    _ => return Ok(()),
                };
                self.succeed_done(&parent, Value::Array(outputs))
            }
            Sub::Item(i) => {
                self.emit(
                    Some(&parent),
                    RecordData::ItemSucceeded { index: i, output },
                )?;
                self.map_progress(&parent, None)
            }
        }
    }

    pub(super) fn region_failed(&mut self, prefix: &str, path: &str, error: ErrorValue) -> Flow {
        let Some((parent, sub)) = parent_of(prefix) else {
            return self.terminate(path, error);
        };
        match sub {
            Sub::Branch(b) => {
                self.emit(
                    Some(&parent),
                    RecordData::BranchFailed {
                        branch: b,
                        error: error.clone(),
                    },
                )?;
                let others: Vec<usize> =
                    match self.snap.active(&parent).and_then(|a| a.fanout.as_ref()) {
                        Some(Fanout::Parallel { branches }) => branches
                            .iter()
                            .enumerate()
                            .filter(|(_, r)| r.status == RegionStatus::Running)
                            .map(|(i, _)| i)
                            .collect(),
                        _ => Vec::new(),
                    };
                for o in others {
                    self.cancel_region(&path::branch(&parent, o))?;
                    self.emit(Some(&parent), RecordData::BranchCancelled { branch: o })?;
                }
                self.fail_state(&parent, error, true)
            }
            Sub::Item(i) => {
                self.emit(
                    Some(&parent),
                    RecordData::ItemFailed {
                        index: i,
                        error: error.clone(),
                    },
                )?;
                self.map_progress(&parent, Some(error))
            }
        }
    }

    /// The items of the map state at `path`, evaluated in its scope.
    pub(super) fn map_items(
        &self,
        path: &str,
    ) -> Result<std::result::Result<Vec<Value>, ErrorValue>> {
        let Some(Kind::Map(m)) = self.g.state_at(path).map(|s| &s.kind) else {
            return Ok(Ok(Vec::new()));
        };
        let scope = self.state_scope(path, None)?;
        Ok(match m.items.resolve(&scope) {
            Some(Value::Array(a)) => Ok(a.clone()),
            Some(v) => Err(ErrorValue::new(
                reserved::INPUT_TEMPLATE,
                format!("items {} of state {path} is {v}, not an array", m.items),
            )),
            None => Err(input_template(&m.items, path)),
        })
    }

    /// Starts items up to `maxConcurrency`, and ends the map when all are done or too many
    /// failed.
    pub(super) fn map_progress(&mut self, path: &str, mut last_error: Option<ErrorValue>) -> Flow {
        let Some(Kind::Map(m)) = self.g.state_at(path).map(|s| &s.kind) else {
            return Ok(());
        };
        let items = match self.map_items(path)? {
            Ok(items) => items,
            Err(e) => return self.fail_state(path, e, false),
        };
        let total = items.len();
        let limit = if m.max_concurrency == 0 {
            total
        } else {
            m.max_concurrency
        };
        let mut batch = Vec::new();
        loop {
            let (started, failed, running, done) = match self.active(path)?.fanout.as_ref() {
                Some(Fanout::Map {
                    started,
                    failed,
                    running,
                    outputs,
                }) => (*started, *failed, running.len(), outputs.len()),
                _ => (0, 0, 0, 0),
            };
            let exceeded = match m.tolerance {
                Tolerance::None => failed > 0,
                Tolerance::Count(n) => failed as u64 > n,
                Tolerance::Percent(p) => failed as f64 * 100.0 > p * total as f64,
            };
            if exceeded {
                let running: Vec<usize> = match self.active(path)?.fanout.as_ref() {
                    Some(Fanout::Map { running, .. }) => running.keys().copied().collect(),
                    _ => Vec::new(),
                };
                for i in running {
                    self.cancel_region(&path::item(path, i))?;
                    self.emit(Some(path), RecordData::ItemCancelled { index: i })?;
                }
                let item_error = last_error
                    .take()
                    .unwrap_or_else(|| ErrorValue::new("Error", "an item failed"));
                let error = match m.tolerance {
                    Tolerance::None => item_error,
                    Tolerance::Count(n) => ErrorValue::new(
                        reserved::TOLERATED_FAILURE_EXCEEDED,
                        format!("{failed} of {total} items failed; toleratedFailures is {n}"),
                    )
                    .with_cause(item_error.to_json()),
                    Tolerance::Percent(p) => ErrorValue::new(
                        reserved::TOLERATED_FAILURE_EXCEEDED,
                        format!("{failed} of {total} items failed; toleratedFailurePercent is {p}"),
                    )
                    .with_cause(item_error.to_json()),
                };
                return self.fail_state(path, error, false);
            }
            if done == total {
                let outputs = match self.active(path)?.fanout.as_ref() {
                    Some(Fanout::Map { outputs, .. }) => outputs.values().cloned().collect(),
                    _ => Vec::new(),
                };
                return self.succeed_done(path, Value::Array(outputs));
            }
            if running >= limit || started >= total {
                break;
            }
            let i = started;
            self.emit(
                Some(path),
                RecordData::ItemStarted {
                    index: i,
                    item: items[i].clone(),
                },
            )?;
            let input = match &m.item_input {
                None => Ok(items[i].clone()),
                Some(t) => {
                    let scope = self.state_scope(path, None)?;
                    let mut scope = scope;
                    scope["item"] = items[i].clone();
                    scope["index"] = i.into();
                    t.render_raw(&scope)
                        .map_err(|sel| input_template(sel, path))
                }
            };
            match input {
                Ok(input) => batch.push(Work {
                    prefix: path::item(path, i),
                    name: m.iterator.initial.clone(),
                    input,
                }),
                Err(e) => {
                    self.emit(
                        Some(path),
                        RecordData::ItemFailed {
                            index: i,
                            error: e.clone(),
                        },
                    )?;
                    last_error = Some(e);
                }
            }
        }
        self.work.extend(batch.into_iter().rev());
        Ok(())
    }

    /// Cancels what runs below the region at `prefix`: nested branches and items, and timers.
    pub(super) fn cancel_region(&mut self, prefix: &str) -> Flow {
        let Some(a) = self.snap.region(prefix).and_then(|r| r.current.as_ref()) else {
            return Ok(());
        };
        let path = a.path.clone();
        let (branches, items): (Vec<usize>, Vec<usize>) = match &a.fanout {
            Some(Fanout::Parallel { branches }) => (
                branches
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| r.status == RegionStatus::Running)
                    .map(|(i, _)| i)
                    .collect(),
                Vec::new(),
            ),
            Some(Fanout::Map { running, .. }) => (Vec::new(), running.keys().copied().collect()),
            None => (Vec::new(), Vec::new()),
        };
        for b in branches {
            self.cancel_region(&path::branch(&path, b))?;
            self.emit(Some(&path), RecordData::BranchCancelled { branch: b })?;
        }
        for i in items {
            self.cancel_region(&path::item(&path, i))?;
            self.emit(Some(&path), RecordData::ItemCancelled { index: i })?;
        }
        self.cancel_timers(&path)
    }

    pub(super) fn discard_inbox(&mut self) -> Flow {
        let names: Vec<String> = self.snap.inbox.iter().map(|e| e.name.clone()).collect();
        for name in names {
            self.emit(
                None,
                RecordData::EventConsumed {
                    name,
                    discarded: true,
                },
            )?;
        }
        Ok(())
    }

    /// The run fails at `path` (an unhandled error of the main graph, or a terminal error
    /// anywhere): everything still running is cancelled.
    pub(super) fn terminate(&mut self, path: &str, error: ErrorValue) -> Flow {
        self.cancel_region("")?;
        self.discard_inbox()?;
        self.work.clear();
        self.emit(Some(path), RecordData::RunFailed { error })
    }
}
