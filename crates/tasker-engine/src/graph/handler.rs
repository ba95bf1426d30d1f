//! One handler activation in fetch-vm: the export named by the state, called as
//! `handler(input, ctx)` in module mode. Its host calls are durable steps of their own: each is
//! journaled (`call.requested`, `call.completed`, `log`, `timer.armed`) with the state's path and
//! activation, so a handler started again after a crash replays the calls it completed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use sequential_adaptor::{RunId, now_millis};
use sequential_fetch_vm::{
    CallKind, CallResult, ErrorInfo, HostCall, Mode, Options, Session, Step,
};
use sequential_flow_graph::{ErrorValue, HandlerCall};
use sequential_http_wrapper::RetryPolicy;
use serde_json::{Value, json};

use super::exports::{DEFAULT_BINDING, Exports};
use super::store::{HandlerJournal, Key, Writer, key_fields};
use crate::Engine;
use crate::driver::{join_error, perform_slow, random_hex, vm_error_name};
use crate::error::Result;
use crate::journal::{self, RecordKind};

/// code.js as graph handlers run it.
#[derive(Debug)]
pub(crate) struct Code {
    /// code.js with `export default` (if any) turned into a binding of the same length.
    source: String,
    exports: Exports,
}

impl Code {
    pub(crate) fn new(code: &str, exports: Exports) -> Code {
        let mut source = code.to_string();
        if let Some(at) = exports.default_at {
            let binding = format!("const {DEFAULT_BINDING} =");
            source.replace_range(at..at + binding.len(), &binding);
        }
        Code { source, exports }
    }

    /// The module a handler call runs: code.js plus a default export that calls the handler
    /// with the graph's `ctx` and reports `{output}` or `{outcome, output}`.
    fn module(&self, call: &HandlerCall) -> std::result::Result<String, ErrorValue> {
        let target = match &call.code {
            Some(body) => format!("(async function (input, ctx) {{\n{body}\n}})"),
            None => match self.exports.names.get(&call.handler) {
                Some(local) => local.clone(),
                None => {
                    return Err(ErrorValue::new(
                        "ReferenceError",
                        format!(
                            "code.js exports no function {:?} for state {}; export one: `export async function {}(input, ctx) {{ … }}`",
                            call.handler, call.path, call.handler
                        ),
                    ));
                }
            },
        };
        Ok(format!(
            "{}\n;export default async function (__sqIn, __sqVm) {{\n{WRAPPER_HEAD}  const __sqOut = await ({target})(__sqIn.input, __sqCtx);\n{WRAPPER_TAIL}}}\n",
            self.source
        ))
    }
}

/// Builds the handler's `ctx` (the VM's durable calls plus the graph's fields and `outcome`).
/// The VM's properties are copied as descriptors, so a getter (`ctx.signal`) stays lazy: only a
/// handler that reads it makes its host call.
const WRAPPER_HEAD: &str = r#"  const __sqCtx = Object.freeze(Object.assign(Object.defineProperties({}, Object.getOwnPropertyDescriptors(__sqVm)), __sqIn.ctx, {
    outcome(name, value) {
      return { $sequentialOutcome: String(name), value: value === undefined ? null : value };
    },
  }));
  try {
"#;

/// Reports the result; gives thrown `Error` subclasses their class name (S1).
const WRAPPER_TAIL: &str = r#"    if (__sqOut !== null && typeof __sqOut === "object" && typeof __sqOut.$sequentialOutcome === "string") {
      return { outcome: __sqOut.$sequentialOutcome, output: __sqOut.value };
    }
    return { output: __sqOut === undefined ? null : __sqOut };
  } catch (e) {
    if (e !== null && typeof e === "object" && e.name === "Error" && typeof e.constructor === "function" && e.constructor !== Error && e.constructor.name) {
      try { Object.defineProperty(e, "name", { value: e.constructor.name, configurable: true, writable: true }); } catch (_) {}
    }
    throw e;
  }
"#;

/// How a handler ended.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Ended {
    /// It returned (`outcome` when it returned `ctx.outcome(name, value)`).
    Ok {
        output: Value,
        outcome: Option<String>,
    },
    /// It threw.
    Err(ErrorValue),
    /// Call `seq` (a fetch) spent its retries: the run pauses as an implicit task's does, and
    /// `resume --retry` performs the call again (the handler replays up to it).
    Paused { seq: u64, error: Value },
}

/// What every handler of one run shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: Engine,
    pub(crate) writer: Arc<Writer>,
    pub(crate) code: Arc<Code>,
    pub(crate) run: RunId,
    pub(crate) task: String,
    pub(crate) retry: RetryPolicy,
    /// The task's `config.json` `baseUrl`, against which a relative fetch URL resolves.
    pub(crate) base_url: Option<String>,
}

/// Journal records as `(kind, data)`, for [`Writer::append`].
pub(crate) type Records = Vec<(String, Value)>;

/// A handler activation started in its session and stopped before it performs anything: the
/// records that must be durable before its calls are performed, and those calls (or how it
/// ended, when it ended without a host call that leaves the VM).
#[derive(Debug)]
pub(crate) struct Activation {
    key: Key,
    session: Option<Session>,
    requested: HashSet<u64>,
    timers: HashMap<u64, i64>,
    phase: Phase,
}

#[derive(Debug)]
enum Phase {
    /// It ended; its last records (taken by the transition its result makes).
    Ended(Ended, Records),
    /// It waits for these calls; `buffer` is durable before any of them is performed.
    Calls {
        buffer: Records,
        results: BTreeMap<u64, CallResult>,
        slow: Vec<HostCall>,
        sleeps: Vec<(u64, i64)>,
    },
}

impl Activation {
    fn ended(key: Key, ended: Ended) -> Activation {
        Activation {
            key,
            session: None,
            requested: HashSet::new(),
            timers: HashMap::new(),
            phase: Phase::Ended(ended, Vec::new()),
        }
    }

    /// The records that must be durable before its calls are performed (`call.requested`,
    /// `timer.armed`, and the completions and console lines before them). Whoever takes them
    /// makes them durable before the activation goes on ([`run`] with them taken appends none).
    pub(crate) fn take_durable(&mut self) -> Records {
        match &mut self.phase {
            Phase::Calls { buffer, .. } => std::mem::take(buffer),
            Phase::Ended(..) => Vec::new(),
        }
    }

    /// Puts `earlier` records (those of a step whose calls were answered at once) before those
    /// of the current phase.
    fn put_back(&mut self, mut earlier: Records) {
        let records = match &mut self.phase {
            Phase::Calls { buffer, .. } => buffer,
            Phase::Ended(_, records) => records,
        };
        earlier.append(records);
        *records = earlier;
    }

    /// Answers the calls the host answers at once (the clock, random values, console lines,
    /// refusals) until the handler waits for a call that must be performed (a fetch, a tool, a
    /// sleep) or ends. Nothing of that leaves the process, so it needs no durable write of its
    /// own: its records go with the next requests (or with the transition the result makes).
    async fn answer_immediate(&mut self, shared: &Shared) -> Result<()> {
        loop {
            let Phase::Calls {
                buffer,
                results,
                slow,
                sleeps,
            } = &mut self.phase
            else {
                return Ok(());
            };
            if !slow.is_empty() || !sleeps.is_empty() {
                return Ok(());
            }
            let earlier = std::mem::take(buffer);
            let results = std::mem::take(results);
            let Some(session) = self.session.take() else {
                return Ok(()); // `run` reports the missing session
            };
            self.complete(shared, session, results).await?;
            self.put_back(earlier);
        }
    }

    /// Hands `results` to the session and plans its next step.
    async fn complete(
        &mut self,
        shared: &Shared,
        mut session: Session,
        results: BTreeMap<u64, CallResult>,
    ) -> Result<()> {
        let mut last = None;
        for (seq, r) in results {
            if session.is_ended() {
                break;
            }
            last = Some(session.complete_async(seq, r).await);
        }
        let ended = match last {
            Some(Ok(step)) => return self.plan(shared, session, step),
            Some(Err(e)) => Ended::Err(vm_error(&e)),
            None => Ended::Err(ErrorValue::new(
                "Error",
                "the handler ended before taking the results of its calls",
            )),
        };
        self.phase = Phase::Ended(ended, Vec::new());
        Ok(())
    }

    /// Turns the session's step into the next phase: its new journal entries, then what its
    /// host calls need (answered at once, performed later, or slept on).
    fn plan(&mut self, shared: &Shared, mut session: Session, step: Step) -> Result<()> {
        let key = &self.key;
        let mut buffer = new_entries(&mut session, key, &self.requested);
        let calls = match step {
            Step::Completed(v) => {
                // dropped, not closed: the runtime's teardown happens on its thread, off the
                // run's path
                drop(session);
                self.phase = Phase::Ended(result_of(v), buffer);
                return Ok(());
            }
            Step::Failed(e) => {
                self.phase = Phase::Ended(Ended::Err(vm_error(&e)), buffer);
                return Ok(());
            }
            Step::Pending(calls) => calls,
        };
        let mut results: BTreeMap<u64, CallResult> = BTreeMap::new();
        let mut slow: Vec<HostCall> = Vec::new();
        let mut sleeps: Vec<(u64, i64)> = Vec::new();
        let now = now_millis();
        for c in calls {
            match c.kind {
                CallKind::Now => {
                    results.insert(c.seq, CallResult::Ok(json!(now)));
                }
                CallKind::Random => {
                    let n = c.request["bytes"].as_u64().unwrap_or(16).min(65_536) as usize;
                    results.insert(c.seq, CallResult::Ok(json!(random_hex(n)?)));
                }
                CallKind::Emit | CallKind::Log => {
                    results.insert(c.seq, CallResult::Ok(Value::Null));
                }
                CallKind::Sleep => {
                    let wake = match self.timers.get(&c.seq) {
                        Some(w) => *w,
                        None => {
                            let ms = c.request["ms"].as_f64().unwrap_or(0.0).max(0.0) as i64;
                            let w = now + ms;
                            let mut data = journal::timer_armed(c.seq, w);
                            extend(&mut data, key);
                            buffer.push((RecordKind::TimerArmed.as_str().into(), data));
                            self.timers.insert(c.seq, w);
                            w
                        }
                    };
                    sleeps.push((c.seq, wake));
                }
                CallKind::WaitForEvent => {
                    results.insert(
                        c.seq,
                        unsupported("ctx.waitForEvent", "wait for events with a wait state: `{\"type\": \"wait\", \"on\": {\"approved\": \"next\"}}`"),
                    );
                }
                CallKind::Child => {
                    results.insert(
                        c.seq,
                        unsupported("ctx.runTask", "run another task with a task state: `{\"task\": \"other-task\", \"onDone\": \"next\"}`"),
                    );
                }
                CallKind::Tool if c.request["name"] == "task" => {
                    results.insert(
                        c.seq,
                        unsupported("the task tool", "run another task with a task state: `{\"task\": \"other-task\", \"onDone\": \"next\"}`"),
                    );
                }
                CallKind::Fetch | CallKind::Tool => {
                    let c = if c.kind == CallKind::Fetch {
                        match crate::driver::with_base_url(&c, shared.base_url.as_deref()) {
                            Ok(c) => c,
                            Err(e) => {
                                results.insert(c.seq, CallResult::Error(e));
                                continue;
                            }
                        }
                    } else {
                        c
                    };
                    if self.requested.insert(c.seq) {
                        let mut data = journal::call_requested(c.seq, c.kind, &c.request);
                        extend(&mut data, key);
                        buffer.push((RecordKind::CallRequested.as_str().into(), data));
                    }
                    slow.push(c);
                }
                _ => {
                    results.insert(
                        c.seq,
                        CallResult::Error(ErrorInfo::new(
                            "UnsupportedError",
                            format!("{} calls are not available in this engine", c.kind),
                        )),
                    );
                }
            }
        }
        self.session = Some(session);
        self.phase = Phase::Calls {
            buffer,
            results,
            slow,
            sleeps,
        };
        Ok(())
    }
}

/// Starts one handler activation in fetch-vm and runs its code up to its first host calls,
/// performing none of them (S7: the driver makes the `state.entered` that starts it durable
/// first). `Err` only when a random value cannot be drawn.
pub(crate) async fn start(
    shared: &Shared,
    call: HandlerCall,
    prior: HandlerJournal,
) -> Result<Activation> {
    let key: Key = (call.path.clone(), call.activation);
    let module = match shared.code.module(&call) {
        Ok(m) => m,
        Err(e) => return Ok(Activation::ended(key, Ended::Err(e))),
    };
    let mut ctx = call.ctx.clone();
    ctx["run"]["task"] = json!(shared.task);
    let input = json!({ "input": call.input, "ctx": ctx });
    let mut options: Options = shared.engine.config.vm.clone();
    options.mode = Mode::Module;
    let HandlerJournal {
        entries,
        requested,
        timers,
    } = prior;
    // stepped on this task: the code runs on its own stack, on this thread, to its next step
    let started = Session::start_async(&module, &input, entries, &options).await;
    let (session, step) = match started {
        Ok(s) => s,
        Err(e) => return Ok(Activation::ended(key, Ended::Err(vm_error(&e)))),
    };
    let mut act = Activation {
        key,
        session: None,
        requested,
        timers,
        phase: Phase::Ended(
            Ended::Ok {
                output: Value::Null,
                outcome: None,
            },
            Vec::new(),
        ),
    };
    act.plan(shared, session, step)?;
    act.answer_immediate(shared).await?;
    Ok(act)
}

/// Runs a started handler activation to its end, journaling its calls: the records each step
/// needs durable are appended before its calls are performed. Returns how it ended and its
/// last records (the completions it took after its last durable write), which the caller
/// appends with the transition the result makes: a crash before that append only loses
/// completions that replay would have skipped, so the handler runs again and performs those
/// calls again (the same idempotency key; at-least-once, as a crash between a call and its
/// `call.completed` always did). `Err` only when the journal cannot be written (the drive fails).
pub(crate) async fn run(shared: Arc<Shared>, mut act: Activation) -> Result<(Ended, Records)> {
    loop {
        act.answer_immediate(&shared).await?;
        let placeholder = Phase::Ended(
            Ended::Ok {
                output: Value::Null,
                outcome: None,
            },
            Vec::new(),
        );
        let (buffer, mut results, slow, sleeps) =
            match std::mem::replace(&mut act.phase, placeholder) {
                Phase::Ended(ended, records) => {
                    return Ok((ended, records));
                }
                Phase::Calls {
                    buffer,
                    results,
                    slow,
                    sleeps,
                } => (buffer, results, slow, sleeps),
            };
        let Some(session) = act.session.take() else {
            return Err(crate::error::Error::Internal {
                doing: format!(
                    "running the handler of {} (activation {})",
                    act.key.0, act.key.1
                ),
                cause: "its session is gone while calls are pending".into(),
            });
        };
        // the requests and deadlines are durable before the side effects start
        shared.writer.append(buffer).await?;
        let mut set = tokio::task::JoinSet::new();
        for c in slow {
            let engine = shared.engine.clone();
            let idempotency = format!("{}:{}:{}:{}", shared.run, act.key.0, act.key.1, c.seq);
            let retry = shared.retry.clone();
            set.spawn(async move {
                // spent retries (Err) pause the run, as in an implicit task
                (c.seq, perform_slow(&engine, &c, &idempotency, retry).await)
            });
        }
        for (seq, wake) in sleeps {
            set.spawn(async move {
                let left = (wake - now_millis()).max(0) as u64;
                tokio::time::sleep(std::time::Duration::from_millis(left)).await;
                (seq, Ok(CallResult::Ok(Value::Null)))
            });
        }
        let mut spent: Option<(u64, Value)> = None;
        while let Some(done) = set.join_next().await {
            match done.map_err(join_error)? {
                (seq, Ok(r)) => {
                    results.insert(seq, r);
                }
                (seq, Err(error)) => {
                    if spent.as_ref().is_none_or(|(s, _)| seq < *s) {
                        spent = Some((seq, error));
                    }
                }
            }
        }
        if let Some((seq, error)) = spent {
            // the calls that came back are performed again on resume (at least once)
            session.close();
            return Ok((Ended::Paused { seq, error }, Vec::new()));
        }
        act.complete(&shared, session, results).await?;
    }
}

/// The session's new journal entries as records of this activation.
fn new_entries(
    session: &mut Session,
    key: &Key,
    requested: &std::collections::HashSet<u64>,
) -> Vec<(String, Value)> {
    session
        .drain_new_entries()
        .into_iter()
        .map(|entry| {
            let kind = if entry.kind == CallKind::Log {
                RecordKind::Log
            } else {
                RecordKind::CallCompleted
            };
            let mut data = serde_json::to_value(&entry).unwrap_or(Value::Null);
            if let Some(obj) = data.as_object_mut()
                && requested.contains(&entry.seq)
            {
                obj.remove("request"); // already in its call.requested record
            }
            extend(&mut data, key);
            (kind.as_str().to_string(), data)
        })
        .collect()
}

fn extend(data: &mut Value, key: &Key) {
    if let Value::Object(m) = data {
        m.extend(key_fields(key));
    }
}

fn unsupported(what: &str, instead: &str) -> CallResult {
    CallResult::Error(ErrorInfo::new(
        "UnsupportedError",
        format!("{what} is not available inside a graph handler; {instead}"),
    ))
}

/// What the wrapper returned: `{output}` or `{outcome, output}`.
fn result_of(v: Value) -> Ended {
    let outcome = v.get("outcome").and_then(Value::as_str).map(str::to_string);
    let output = v.get("output").cloned().unwrap_or(Value::Null);
    Ended::Ok { output, outcome }
}

/// A VM failure as the state's error. A thrown name in the reserved `flow.` space is kept out
/// of it (S5).
fn vm_error(e: &sequential_fetch_vm::Error) -> ErrorValue {
    let (name, message) = match e {
        sequential_fetch_vm::Error::Js(js) => (js.name.clone(), js.message.clone()),
        sequential_fetch_vm::Error::NotSerializable { .. } => (
            sequential_flow_graph::reserved::NOT_SERIALIZABLE.to_string(),
            e.to_string(),
        ),
        other => (vm_error_name(other).to_string(), other.to_string()),
    };
    if name.starts_with("flow.") && name != sequential_flow_graph::reserved::NOT_SERIALIZABLE {
        return ErrorValue::new(
            "Error",
            format!(
                "a handler threw the reserved error name {name:?} (flow.* names belong to the executor): {message}"
            ),
        );
    }
    ErrorValue::new(name, message)
}
