//! After a state: outcome selection (S3), success with assign, transitions, failure with
//! retry, catch and onError (S4, S5), timers and consumed events.

use serde_json::{Map, Value};

use crate::graph::{Kind, Recovery, Wait};
use crate::path::{self};
use crate::record::{ErrorValue, RecordData};
use crate::reserved;

use super::flow::{Flow, Stepper, Work, input_template, truthy};

impl Stepper<'_> {
    /// A task's handler or child returned: outcome selection (S3 b).
    pub(super) fn task_done(&mut self, path: &str, output: Value, outcome: Option<String>) -> Flow {
        let Some(Kind::Task(t)) = self.g.state_at(path).map(|s| &s.kind) else {
            return Ok(());
        };
        let accepted = || {
            let v: Vec<&str> = t.next.on.iter().map(|(k, _)| k.as_str()).collect();
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        let chosen = match &outcome {
            Some(o) => t
                .next
                .on
                .iter()
                .find(|(k, _)| k == o)
                .map(|(_, target)| (target.clone(), format!("outcome:{o}")))
                .ok_or_else(|| {
                    format!("handler outcome {o:?} of state {path} has no transition; its `on` accepts: {}", accepted())
                }),
            None if t.next.on_success.is_some() || t.next.on_fail.is_some() => {
                let success = truthy(output.get("success"));
                let (target, via) = if success {
                    (&t.next.on_success, "success")
                } else {
                    (&t.next.on_fail, "fail")
                };
                target.clone().map(|t| (t, via.to_string())).ok_or_else(|| {
                    format!(
                        "state {path} returned success={success} and has no {}",
                        if success { "onSuccess" } else { "onFail" }
                    )
                })
            }
            None => t
                .next
                .on_done
                .clone()
                .map(|t| (t, "done".to_string()))
                .ok_or_else(|| {
                    format!("state {path} returned without ctx.outcome() and has no onDone; its `on` accepts: {}", accepted())
                }),
        };
        match chosen {
            Ok((target, via)) => self.succeed_to(path, output, &target, &via),
            Err(msg) => self.fail_state(path, ErrorValue::new(reserved::NO_TRANSITION, msg), false),
        }
    }

    /// Succeeds the state at `path` with `output` via onDone (pass, wait, parallel, map).
    pub(super) fn succeed_done(&mut self, path: &str, output: Value) -> Flow {
        let target = match self.g.state_at(path).map(|s| &s.kind) {
            Some(Kind::Pass(p)) => p.on_done.clone(),
            Some(Kind::Wait(Wait::Time { on_done, .. })) => on_done.clone(),
            Some(Kind::Parallel(p)) => p.on_done.clone(),
            Some(Kind::Map(m)) => m.on_done.clone(),
            _ => return Ok(()),
        };
        self.succeed_to(path, output, &target, "done")
    }

    /// `assign`, `state.succeeded`, timers cancelled, `transition`.
    pub(super) fn succeed_to(
        &mut self,
        path: &str,
        output: Value,
        target: &str,
        via: &str,
    ) -> Flow {
        let st = self.g.state_at(path).expect("active states exist");
        let vars = if st.assign.is_empty() {
            None
        } else {
            let scope = self.state_scope(path, Some(&output))?;
            let mut vars = Map::new();
            for (k, t) in &st.assign {
                match t.render_raw(&scope) {
                    Ok(v) => {
                        vars.insert(k.clone(), v);
                    }
                    Err(sel) => return self.fail_state(path, input_template(sel, path), false),
                }
            }
            Some(vars)
        };
        self.emit(
            Some(path),
            RecordData::StateSucceeded {
                output: output.clone(),
                vars,
            },
        )?;
        self.transition(path, target, via, output)
    }

    pub(super) fn transition(
        &mut self,
        path: &str,
        target: &str,
        via: &str,
        next_input: Value,
    ) -> Flow {
        if let Some(max) = self.g.limits.max_transitions
            && self.snap.transitions >= max
        {
            return self.terminate(
                path,
                ErrorValue::new(
                    reserved::LOOP_LIMIT,
                    format!("more than {max} transitions (limits.maxTransitions), at {path}"),
                ),
            );
        }
        self.cancel_timers(path)?;
        let (prefix, name) = path::split_last(path);
        self.emit(
            Some(path),
            RecordData::Transition {
                from: name.to_string(),
                to: target.to_string(),
                via: via.to_string(),
            },
        )?;
        self.work.push(Work {
            prefix: prefix.to_string(),
            name: target.to_string(),
            input: next_input,
        });
        Ok(())
    }

    pub(super) fn cancel_timers(&mut self, path: &str) -> Flow {
        let timers: Vec<String> = match self.snap.active(path) {
            Some(a) => a.timers.keys().cloned().collect(),
            None => return Ok(()),
        };
        for timer in timers {
            self.emit(Some(path), RecordData::TimerCancelled { timer })?;
        }
        Ok(())
    }

    /// `state.failed`, then retry (S4), catch, onError, or the region fails (S3 a).
    pub(super) fn fail_state(&mut self, path: &str, error: ErrorValue, from_branch: bool) -> Flow {
        self.cancel_timers(path)?;
        let attempt = self.active(path)?.attempt;
        self.emit(
            Some(path),
            RecordData::StateFailed {
                attempt,
                error: error.clone(),
            },
        )?;
        if reserved::is_terminal(&error.name) {
            return self.terminate(path, error);
        }
        let st = self.g.state_at(path).expect("active states exist");
        let empty = Recovery::default();
        let (recovery, retry) = match &st.kind {
            Kind::Task(t) => (
                &t.recovery,
                t.recovery.retry.as_ref().or(self.g.defaults.retry.as_ref()),
            ),
            Kind::Parallel(p) => (&p.recovery, p.recovery.retry.as_ref()),
            Kind::Map(m) => (&m.recovery, m.recovery.retry.as_ref()),
            _ => (&empty, None),
        };
        let matches = |errors: &[String]| {
            errors.iter().any(|e| {
                e == "*" || *e == error.name || (from_branch && e == reserved::BRANCH_FAILED)
            })
        };
        if let Some((i, r)) = retry
            .into_iter()
            .flatten()
            .enumerate()
            .find(|(_, r)| matches(&r.errors))
        {
            let used = self.active(path)?.retries.get(i).copied().unwrap_or(0);
            if used < r.max_attempts {
                let mut delay = r.interval_ms as f64 * r.backoff_rate.powi(used as i32);
                if let Some(max) = r.max_delay_ms {
                    delay = delay.min(max as f64);
                }
                if r.full_jitter {
                    delay *= self.env.draw.clamp(0.0, 1.0);
                }
                let delay_ms = delay.min(i64::MAX as f64 / 2.0).floor() as u64;
                return self.emit(
                    Some(path),
                    RecordData::RetryScheduled {
                        attempt: attempt + 1,
                        retrier: i,
                        delay_ms,
                        fire_at: self.env.now.saturating_add(delay_ms as i64),
                    },
                );
            }
        }
        if let Some((i, c)) = recovery
            .catch
            .iter()
            .enumerate()
            .find(|(_, c)| matches(&c.errors))
        {
            return self.transition(path, &c.target, &format!("catch[{i}]"), error.to_json());
        }
        if let Some(t) = &recovery.on_error {
            return self.transition(path, t, "error", error.to_json());
        }
        let (prefix, _) = path::split_last(path);
        self.region_failed(prefix, path, error)
    }

    /// A timer of the active state at `path` fired (its `timer.fired` is written).
    pub(super) fn timer(&mut self, path: &str, timer: &str) -> Flow {
        match timer {
            "retry" => {
                let a = self.active(path)?;
                let (attempt, input) = (a.attempt + 1, a.input.clone());
                self.emit(
                    Some(path),
                    RecordData::StateEntered {
                        attempt,
                        restart: None,
                        input,
                    },
                )?;
                self.setup(path)
            }
            "timeout" => {
                let ms = match self.g.state_at(path).map(|s| &s.kind) {
                    Some(Kind::Task(t)) => t.timeout_ms.or(self.g.defaults.timeout_ms),
                    _ => None,
                };
                let e = ErrorValue::new(
                    reserved::TIMEOUT,
                    format!(
                        "state {path} ran past its timeout of {}",
                        sequential_support::duration::format(std::time::Duration::from_millis(
                            ms.unwrap_or(0)
                        ))
                    ),
                );
                self.fail_state(path, e, false)
            }
            "wait" => {
                let input = self.active(path)?.input.clone();
                self.succeed_done(path, input)
            }
            "after" => {
                let Some(Kind::Wait(Wait::Event {
                    after: Some((d, _, target)),
                    ..
                })) = self.g.state_at(path).map(|s| &s.kind)
                else {
                    return Ok(());
                };
                let input = self.active(path)?.input.clone();
                self.succeed_to(path, input, target, &format!("after:{d}"))
            }
            _ => Ok(()),
        }
    }

    /// The wait state at `path` consumes the oldest inbox event called `name`.
    pub(super) fn consume(&mut self, path: &str, name: &str) -> Flow {
        self.emit(
            Some(path),
            RecordData::EventConsumed {
                name: name.to_string(),
                discarded: false,
            },
        )?;
        let Some(Kind::Wait(Wait::Event { on, .. })) = self.g.state_at(path).map(|s| &s.kind)
        else {
            return Ok(());
        };
        let target = on
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, t)| t.clone())
            .unwrap_or_default();
        let message = self
            .active(path)?
            .consumed
            .as_ref()
            .map(|c| c["message"].clone())
            .unwrap_or(Value::Null);
        self.succeed_to(path, message, &target, &format!("event:{name}"))
    }
}
