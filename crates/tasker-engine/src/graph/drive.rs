//! Drives one claimed graph run until it ends, waits or is released: facts (handler results,
//! due timers, ended child runs, inbox signals, a cancel) go through flow-graph's stepping
//! function; each step's records are committed in one append before its actions are performed.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use sequential_adaptor::{
    Fence, NewRun, ParentRef, Run, RunId, RunStatus, TaskName, TaskVersion, VersionSel, now_millis,
};
use sequential_flow_graph::{
    Action, Env, ErrorValue, Fact, HandlerCall, Record as GraphRecord, RecordData,
    RunStatus as GraphStatus, Snapshot, fold,
};
use sequential_http_wrapper::RetryPolicy;
use serde_json::{Value, json};
use tokio::task::{AbortHandle, JoinSet};

use super::GraphTask;
use super::handler::{self, Ended, Records, Shared};
use super::store::{self, Extra, HandlerJournal, Key, Writer, key_fields};
use crate::Engine;
use crate::driver::{child_event, join_error, notify_parent};
use crate::error::{Error, Result};
use crate::journal::RecordKind;
use crate::worker::{Level, StopWatch};

/// How a handler ended, and its last journal records (see [`handler::run`]).
type Handled = (Ended, Records);

/// How often a driver with handlers in flight looks at its inbox, its child runs and whether it
/// was asked to stop.
const TICK: Duration = Duration::from_millis(100);
/// How often it re-reads the run to see a cancel (between lease renewals).
const STATUS_EVERY: Duration = Duration::from_millis(300);
/// A handler being started while the commit that enters its state is prepared.
type Starting = Pin<Box<dyn Future<Output = Result<handler::Activation>> + Send>>;

/// Drives the claimed graph run `run` (held with `token`) of `version`.
pub(crate) async fn drive(
    engine: &Engine,
    run: Run,
    token: u64,
    version: &TaskVersion,
    stop: &mut StopWatch,
) -> Result<Run> {
    let graph = version.graph.as_ref().ok_or_else(|| Error::Internal {
        doing: format!("driving run {} as a graph run", run.id),
        cause: "its task version has no graph".into(),
    })?;
    let task = Arc::new(GraphTask::new(&version.code, graph)?);
    let retry = RetryPolicy::from_config(&version.config, &engine.config.http.retry)?;
    let loaded = store::load(engine.store.as_ref(), run.id).await?;
    let snapshot = match engine.cached_snapshot(run.id, loaded.records.len() as u64) {
        Some(s) => {
            debug_assert_eq!(
                fold(&task.graph, &loaded.records)?.to_bytes(),
                s.to_bytes(),
                "S10: the kept snapshot differs from the fold of the journal"
            );
            s
        }
        None => fold(&task.graph, &loaded.records)?,
    };
    engine.keep_snapshot(run.id, &snapshot);
    let writer = Arc::new(Writer::new(
        engine.store.clone(),
        run.id,
        token,
        loaded.next_seq,
    ));
    let shared = Arc::new(Shared {
        engine: engine.clone(),
        writer: writer.clone(),
        code: task.code.clone(),
        run: run.id,
        task: run.task.to_string(),
        retry,
        base_url: version
            .config
            .get("baseUrl")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string),
    });
    let mut d = GraphDriver {
        engine,
        extra: Extra {
            started: Some((run.task.to_string(), version.version, version.hash.clone())),
            signal: None,
            by: Some(engine.config.worker_id.clone()),
        },
        run,
        token,
        task,
        shared,
        writer,
        records: loaded.records,
        snapshot,
        handlers: loaded.handlers,
        children: loaded.children,
        child_waits: BTreeMap::new(),
        signals: loaded.signals,
        last_signal: None,
        last_owner: loaded.last_owner,
        running: HashMap::new(),
        set: JoinSet::new(),
        ready: VecDeque::new(),
        stopping: false,
        draining: false,
        paused: None,
        end: Vec::new(),
        last_renew: Instant::now(),
        last_status: Instant::now(),
    };
    let out = d.go(stop).await;
    d.set.abort_all();
    out
}

struct GraphDriver<'a> {
    engine: &'a Engine,
    run: Run,
    token: u64,
    task: Arc<GraphTask>,
    shared: Arc<Shared>,
    writer: Arc<Writer>,
    extra: Extra,
    /// The graph records so far, and their fold.
    records: Vec<GraphRecord>,
    snapshot: Snapshot,
    /// What each handler activation journaled before this drive (taken when it starts again).
    handlers: HashMap<Key, HandlerJournal>,
    /// Child runs by the activation that started them.
    children: HashMap<Key, RunId>,
    /// Child runs still awaited.
    child_waits: BTreeMap<Key, RunId>,
    /// Signals made into events so far, and the last signal read.
    signals: HashSet<u64>,
    last_signal: Option<u64>,
    last_owner: Option<String>,
    /// Handlers in flight.
    running: HashMap<Key, AbortHandle>,
    set: JoinSet<(Key, Result<Handled>)>,
    /// Facts waiting to be stepped (children that had already ended).
    ready: VecDeque<Fact>,
    /// A cancel reached the run: no new state is entered; it ends once its handlers finish.
    stopping: bool,
    /// The worker is stopping: no new handler starts; the run is released.
    draining: bool,
    /// A handler's fetch spent its retries: the run pauses (activation, call seq, error).
    paused: Option<(Key, u64, Value)>,
    /// The records of the transition that ended the run, written with its settle (one durable
    /// write where the backend combines them).
    end: Records,
    last_renew: Instant,
    last_status: Instant,
}

impl GraphDriver<'_> {
    async fn go(&mut self, stop: &mut StopWatch) -> Result<Run> {
        if self.snapshot.status != GraphStatus::NotStarted {
            if self.snapshot.status != GraphStatus::Running {
                // the journal ended the run; its status was not written before a crash
                return self.ended().await;
            }
            if self.snapshot.graph_hash != self.task.graph_hash
                || self.snapshot.code_hash != self.task.code_hash
            {
                return self.pinned_elsewhere().await;
            }
        }
        let actions = if self.snapshot.status == GraphStatus::NotStarted {
            let fact = Fact::RunStarted {
                input: self.run.input.clone(),
                graph_hash: self.task.graph_hash.clone(),
                code_hash: self.task.code_hash.clone(),
            };
            self.commit(fact, None).await?
        } else {
            let pending = self
                .snapshot
                .pending_actions(&self.task.graph, &self.env()?);
            if pending.iter().any(|a| matches!(a, Action::RunHandler(_)))
                && !super::redriven_last(&self.records)
            {
                // handlers were running when the previous driver stopped: a takeover (S7)
                let previous_owner = self.last_owner.clone().unwrap_or_else(|| "unknown".into());
                self.commit(Fact::Recovered { previous_owner }, None)
                    .await?
            } else {
                pending
            }
        };
        self.perform(actions).await?;
        if let Some(run) = self.check_status().await? {
            return Ok(run);
        }
        self.import_signals().await?;
        self.run_loop(stop).await
    }

    async fn run_loop(&mut self, stop: &mut StopWatch) -> Result<Run> {
        loop {
            if self.snapshot.status != GraphStatus::Running {
                return self.ended().await;
            }
            if let Some((key, seq, error)) = self.paused.take() {
                return self.pause(key, seq, error).await;
            }
            self.draining = stop.level() > Level::Run;
            if let Some(run) = self.keep_lease().await? {
                return Ok(run);
            }
            if self.stopping {
                if self.running.is_empty() {
                    let actions = self.commit(Fact::Cancel, None).await?;
                    self.perform(actions).await?;
                    continue;
                }
            } else {
                if let Some(fact) = self.ready.pop_front() {
                    let actions = self.commit(fact, None).await?;
                    self.perform(actions).await?;
                    continue;
                }
                if let Some(t) = self
                    .snapshot
                    .armed_timers()
                    .into_iter()
                    .filter(|t| t.fire_at <= now_millis())
                    .min_by_key(|t| t.fire_at)
                {
                    let fact = Fact::TimerFired {
                        path: t.path,
                        timer: t.timer,
                    };
                    let actions = self.commit(fact, None).await?;
                    self.perform(actions).await?;
                    continue;
                }
            }
            if self.running.is_empty() {
                if self.draining {
                    return self.release().await;
                }
                if self.poll_children().await? || self.import_signals().await? {
                    continue;
                }
                return self.suspend().await;
            }
            let next_timer = if self.stopping {
                None
            } else {
                self.snapshot.armed_timers().iter().map(|t| t.fire_at).min()
            };
            let sleep_for = next_timer
                .map(|at| Duration::from_millis((at - now_millis()).max(0) as u64))
                .unwrap_or(TICK)
                .min(TICK);
            tokio::select! {
                done = self.set.join_next_with_id() => {
                    if let Some(done) = done {
                        self.handler_done(done).await?;
                    }
                }
                _ = tokio::time::sleep(sleep_for) => {
                    if !self.stopping {
                        self.import_signals().await?;
                        self.poll_children().await?;
                    }
                }
                _ = stop.now() => return self.release().await,
            }
        }
    }

    /// A handler task ended.
    async fn handler_done(
        &mut self,
        done: std::result::Result<
            (tokio::task::Id, (Key, Result<Handled>)),
            tokio::task::JoinError,
        >,
    ) -> Result<()> {
        let (key, ended) = match done {
            Ok((_, (key, ended))) => (key, ended),
            Err(e) if e.is_cancelled() => return Ok(()), // aborted: its result does not count
            Err(e) => return Err(join_error(e)),
        };
        self.running.remove(&key);
        let (ended, tail) = ended?;
        if self.stopping {
            // cancelled meanwhile: no new state is entered (S14); the handler's last records
            // are kept all the same
            return self.writer.append(tail).await;
        }
        let (path, activation) = key;
        let fact = match ended {
            Ended::Ok { output, outcome } => Fact::HandlerSucceeded {
                path,
                activation,
                output,
                outcome,
            },
            Ended::Err(error) => Fact::HandlerFailed {
                path,
                activation,
                error,
            },
            Ended::Paused { seq, error } => {
                self.writer.append(tail).await?;
                if self.paused.is_none() {
                    self.paused = Some(((path, activation), seq, error));
                }
                return Ok(());
            }
        };
        // the handler's last journal records (the completion of its last call) go in the same
        // append as the transition its result makes (one durable write instead of two)
        let actions = self.commit_after(tail, fact, None).await?;
        self.perform(actions).await
    }

    /// Steps `fact` and commits its records in one append (S6); returns the actions to
    /// perform now that they are durable (S7). A stale fact changes nothing. The handlers the
    /// step starts are started here, behind the append (their first requests join it); a
    /// step that ends the run with nothing in flight leaves its records to the settle.
    async fn commit(&mut self, fact: Fact, signal: Option<u64>) -> Result<Vec<Action>> {
        self.commit_after(Vec::new(), fact, signal).await
    }

    /// [`Self::commit`], with `tail` (an ended handler's last journal records, which belong to
    /// no transition) first in the same append. Journaled even when the fact is stale.
    async fn commit_after(
        &mut self,
        tail: Records,
        fact: Fact,
        signal: Option<u64>,
    ) -> Result<Vec<Action>> {
        let env = self.env()?;
        let step = self.snapshot.step(&self.task.graph, fact, &env)?;
        if let Some(why) = &step.ignored {
            tracing::debug!(run = %self.run.id, why, "stale fact ignored");
        }
        if step.records.is_empty() {
            self.writer.append(tail).await?;
            return Ok(step.actions);
        }
        let extra = Extra {
            signal,
            ..self.extra.clone()
        };
        let mut records = tail;
        records.extend(store::stored(&step.records, &extra));
        // the handlers this transition starts run up to their first host calls meanwhile;
        // the requests of those calls join this append (performed only once it is durable)
        let (actions, mut starting) = self.start_handlers(step.actions);
        let mut started: Vec<Option<Result<handler::Activation>>> =
            starting.iter().map(|_| None).collect();
        if !starting.is_empty() {
            // the VM ends a slice of JavaScript after `cpu_slice_ms` (1 s by default), so this
            // only keeps a long replay from holding the commit past the lease's renewal; a
            // handler slower than that goes on in its task and appends its own records
            let deadline = tokio::time::Instant::now() + self.engine.config.lease / 4;
            let all = std::future::poll_fn(|cx| {
                let mut left = false;
                for ((_, fut), done) in starting.iter_mut().zip(started.iter_mut()) {
                    if done.is_none() {
                        match fut.as_mut().poll(cx) {
                            Poll::Ready(r) => *done = Some(r),
                            Poll::Pending => left = true,
                        }
                    }
                }
                if left { Poll::Pending } else { Poll::Ready(()) }
            });
            let _ = tokio::time::timeout_at(deadline, all).await;
        }
        for act in started.iter_mut().flatten().flatten() {
            records.extend(act.take_durable());
        }
        let ends = step.snapshot.status != GraphStatus::Running
            && starting.is_empty()
            && self.running.is_empty()
            && self.child_waits.is_empty();
        if ends {
            // nothing is left to wind down: the run settles next, with these records
            self.end = records;
        } else {
            self.writer.append(records).await?;
        }
        // durable: the handlers go on in their own tasks
        for ((key, fut), done) in starting.into_iter().zip(started) {
            let shared = self.shared.clone();
            let k = key.clone();
            let handle = match done {
                Some(Ok(act)) => self
                    .set
                    .spawn(async move { (k, handler::run(shared, act).await) }),
                Some(Err(e)) => self.set.spawn(async move { (k, Err(e)) }),
                None => self.set.spawn(async move {
                    let ran = match fut.await {
                        Ok(act) => handler::run(shared, act).await,
                        Err(e) => Err(e),
                    };
                    (k, ran)
                }),
            };
            self.running.insert(key, handle);
        }
        self.records.extend(step.records);
        self.snapshot = step.snapshot;
        debug_assert_eq!(
            fold(&self.task.graph, &self.records)?.to_bytes(),
            self.snapshot.to_bytes(),
            "S10: fold(journal) != snapshot"
        );
        self.engine.keep_snapshot(self.run.id, &self.snapshot);
        Ok(actions)
    }

    /// Performs what a committed step asks. Timers and event waits are read from the snapshot
    /// (its armed timers are the deadlines in storage), so only handlers and children start here.
    async fn perform(&mut self, actions: Vec<Action>) -> Result<()> {
        for action in actions {
            match action {
                Action::RunHandler(call) => self.spawn(call),
                Action::StartChild {
                    path,
                    activation,
                    task,
                    input,
                } => {
                    if let Some(fact) = self.start_child((path, activation), &task, input).await? {
                        self.ready.push_back(fact);
                    }
                }
                Action::Abort { path, activation } => {
                    let key = (path, activation);
                    if let Some(h) = self.running.remove(&key) {
                        h.abort();
                    }
                    if let Some(child) = self.child_waits.remove(&key) {
                        match Box::pin(self.engine.kill(child)).await {
                            Ok(_) | Err(Error::Invalid { .. }) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn spawn(&mut self, call: HandlerCall) {
        if self.draining || self.stopping {
            // entered but not started: the next driver starts it again (`restart=n`)
            return;
        }
        let key: Key = (call.path.clone(), call.activation);
        let prior = self.handlers.remove(&key).unwrap_or_default();
        let shared = self.shared.clone();
        let k = key.clone();
        let handle = self.set.spawn(async move {
            let ran = match handler::start(&shared, call, prior).await {
                Ok(act) => handler::run(shared, act).await,
                Err(e) => Err(e),
            };
            (k, ran)
        });
        self.running.insert(key, handle);
    }

    /// Starts the handlers among `actions` (those of a step being committed): each future
    /// runs its handler up to its first host calls and performs nothing. Returns the other
    /// actions, and each handler's key and start.
    fn start_handlers(&mut self, actions: Vec<Action>) -> (Vec<Action>, Vec<(Key, Starting)>) {
        let mut rest = Vec::with_capacity(actions.len());
        let mut starting = Vec::new();
        for action in actions {
            let Action::RunHandler(call) = action else {
                rest.push(action);
                continue;
            };
            if self.draining || self.stopping {
                // entered but not started: the next driver starts it again (`restart=n`)
                continue;
            }
            let key: Key = (call.path.clone(), call.activation);
            let prior = self.handlers.remove(&key).unwrap_or_default();
            let shared = self.shared.clone();
            let start: Starting =
                Box::pin(async move { handler::start(&shared, call, prior).await });
            starting.push((key, start));
        }
        (rest, starting)
    }

    /// Starts (or finds) the child run of a `task:` state; the fact to step when it has ended
    /// already (or cannot start).
    async fn start_child(&mut self, key: Key, task: &str, input: Value) -> Result<Option<Fact>> {
        let store = self.engine.store.clone();
        let failed = |key: Key, name: &str, message: String| {
            Some(Fact::ChildFinished {
                path: key.0,
                activation: key.1,
                result: Err(ErrorValue::new(name, message)),
            })
        };
        let child = match self.children.get(&key) {
            Some(id) => store.get_run(*id).await?,
            None => {
                let name = match TaskName::new(task) {
                    Ok(n) => n,
                    Err(e) => return Ok(failed(key, "TaskNotFound", e.to_string())),
                };
                let version = match store.get_task_version(&name, VersionSel::Latest).await {
                    Ok(v) => v.version,
                    Err(sequential_adaptor::Error::NotFound { what }) => {
                        return Ok(failed(key, "TaskNotFound", what));
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut new = NewRun::new(name, version, input);
                new.idempotency_key = Some(format!("graph:{}:{}:{}", self.run.id, key.0, key.1));
                new.parent = Some(ParentRef {
                    run: self.run.id,
                    seq: key.1,
                });
                let run = store.create_run(new).await?.into_run();
                let mut data = json!({ "run": run.id });
                if let Value::Object(m) = &mut data {
                    m.extend(key_fields(&key));
                }
                self.writer
                    .append(vec![(RecordKind::ChildStarted.as_str().into(), data)])
                    .await?;
                self.children.insert(key.clone(), run.id);
                run
            }
        };
        match child_result(&child) {
            Some(result) => Ok(Some(Fact::ChildFinished {
                path: key.0,
                activation: key.1,
                result,
            })),
            None => {
                self.child_waits.insert(key, child.id);
                Ok(None)
            }
        }
    }

    /// Children that ended become facts; `true` when one did.
    async fn poll_children(&mut self) -> Result<bool> {
        let mut any = false;
        for (key, id) in self.child_waits.clone() {
            let child = self.engine.store.get_run(id).await?;
            if let Some(result) = child_result(&child) {
                self.child_waits.remove(&key);
                self.ready.push_back(Fact::ChildFinished {
                    path: key.0,
                    activation: key.1,
                    result,
                });
                any = true;
            }
        }
        Ok(any)
    }

    /// Makes each new inbox signal one `event.received` (S11); `true` when there was one.
    async fn import_signals(&mut self) -> Result<bool> {
        if self.stopping || self.snapshot.status != GraphStatus::Running {
            return Ok(false);
        }
        let signals = self
            .engine
            .store
            .read_signals(self.run.id, self.last_signal)
            .await?;
        let mut any = false;
        for s in signals {
            self.last_signal = Some(s.seq);
            if self.signals.contains(&s.seq) || is_child_signal(&s.name) {
                continue;
            }
            if self.snapshot.status != GraphStatus::Running {
                break;
            }
            let fact = Fact::EventReceived {
                name: s.name.clone(),
                message: s.payload.clone(),
            };
            let actions = self.commit(fact, Some(s.seq)).await?;
            self.signals.insert(s.seq);
            self.perform(actions).await?;
            any = true;
        }
        Ok(any)
    }

    /// Renews the lease when due and looks at the run's status: a cancel makes the run stop
    /// entering states; a kill ends this drive (`Some`: the run as the kill left it).
    async fn keep_lease(&mut self) -> Result<Option<Run>> {
        let lease = self.engine.config.lease;
        if self.last_renew.elapsed() >= lease / 3 {
            let run = self
                .engine
                .store
                .renew(
                    self.run.id,
                    self.token,
                    now_millis(),
                    lease.as_millis() as u64,
                )
                .await?;
            self.last_renew = Instant::now();
            self.last_status = Instant::now();
            return self.seen(run).await;
        }
        if self.last_status.elapsed() >= STATUS_EVERY {
            return self.check_status().await;
        }
        Ok(None)
    }

    async fn check_status(&mut self) -> Result<Option<Run>> {
        self.last_status = Instant::now();
        let run = self.engine.store.get_run(self.run.id).await?;
        self.seen(run).await
    }

    async fn seen(&mut self, run: Run) -> Result<Option<Run>> {
        if run.status.is_terminal() {
            // killed: its state stands
            self.set.abort_all();
            let _ = self.engine.store.release(run.id, self.token).await;
            return Ok(Some(run));
        }
        if run.status == RunStatus::Stopping {
            self.stopping = true;
        }
        self.run.revision = run.revision;
        self.run.status = run.status;
        Ok(None)
    }

    /// Nothing runs: the run waits for its earliest timer, an event or a child run.
    async fn suspend(&mut self) -> Result<Run> {
        let wake_at = self.snapshot.armed_timers().iter().map(|t| t.fire_at).min();
        let events = self.awaited_events();
        // one name, as `signal` takes it: a child's end, or the first event a wait accepts
        let waiting_for = match self.child_waits.values().next() {
            Some(child) => Some(child_event(child)),
            None => events.into_iter().next(),
        };
        if wake_at.is_none() && waiting_for.is_none() {
            let error = json!({
                "name": "GraphStalled",
                "message": format!(
                    "graph run {} has no handler, timer, event wait or child run in flight, and has not ended (states: {})",
                    self.run.id,
                    self.snapshot.current_states().join(", ")
                ),
            });
            return self.finish(RunStatus::Failed, None, Some(error)).await;
        }
        let mut run = self.run.clone();
        if run
            .error
            .as_ref()
            .is_some_and(crate::failures::is_drive_error)
        {
            run.error = None;
        }
        run.status = RunStatus::Waiting;
        run.wake_at = wake_at;
        run.waiting_for = waiting_for;
        self.write(run).await
    }

    /// The events the run's event waits accept.
    fn awaited_events(&self) -> Vec<String> {
        let mut out = Vec::new();
        let graph = &self.task.graph;
        self.snapshot.each_active(&mut |a| {
            if a.phase != sequential_flow_graph::Phase::Running {
                return;
            }
            let Some(st) = graph.state_at(&a.path) else {
                return;
            };
            if st.type_name() == "wait" {
                for e in st.edges() {
                    if let Some(name) = e.via.strip_prefix("event:")
                        && !out.iter().any(|x| x == name)
                    {
                        out.push(name.to_string());
                    }
                }
            }
        });
        out
    }

    /// The journal ended the run: the run is settled to match.
    async fn ended(&mut self) -> Result<Run> {
        self.set.abort_all();
        for (_, child) in std::mem::take(&mut self.child_waits) {
            match Box::pin(self.engine.kill(child)).await {
                Ok(_) | Err(Error::Invalid { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        let s = &self.snapshot;
        match s.status {
            GraphStatus::Succeeded => {
                let output = s.output.clone().unwrap_or(Value::Null);
                self.finish(RunStatus::Succeeded, Some(output), None).await
            }
            GraphStatus::Cancelled => {
                let error = json!({ "name": "Cancelled", "message": "the run was cancelled" });
                self.finish(RunStatus::Cancelled, None, Some(error)).await
            }
            _ => {
                let mut error = s.error.as_ref().map_or_else(
                    || json!({"name": "Error", "message": ""}),
                    ErrorValue::to_json,
                );
                // a fail state names an error without a message: say what led to it
                if error["message"].as_str().is_none_or(str::is_empty)
                    && let Some(name) = error["cause"]["name"].as_str()
                {
                    let why = match error["cause"]["message"].as_str().filter(|m| !m.is_empty()) {
                        Some(m) => format!("{name}: {m}"),
                        None => name.to_string(),
                    };
                    error["message"] = json!(format!("caused by {why}"));
                }
                self.finish(RunStatus::Failed, None, Some(error)).await
            }
        }
    }

    /// The task version's graph or code no longer hashes as the run recorded (S13).
    async fn pinned_elsewhere(&mut self) -> Result<Run> {
        let s = &self.snapshot;
        let states = s.current_states();
        let message = format!(
            "run {} is pinned to graph {} and code {}, but version {} of task `{}` now has graph {} and code {}; \
             the run is in state {}. Start a new run to use the changed task.",
            self.run.id,
            s.graph_hash,
            s.code_hash,
            self.run.version,
            self.run.task,
            self.task.graph_hash,
            self.task.code_hash,
            if states.is_empty() {
                "(none)".to_string()
            } else {
                states.join(", ")
            }
        );
        let error = ErrorValue::new("GraphChanged", message).with_cause(json!({
            "pinned": { "graph_hash": s.graph_hash, "code_hash": s.code_hash },
            "found": { "graph_hash": self.task.graph_hash, "code_hash": self.task.code_hash },
            "states": states,
        }));
        let record = GraphRecord::new(
            None,
            RecordData::RunFailed {
                error: error.clone(),
            },
        );
        self.writer
            .append(store::stored(&[record], &Extra::default()))
            .await?;
        self.finish(RunStatus::Failed, None, Some(error.to_json()))
            .await
    }

    /// A handler's fetch spent its retries: the run pauses as an implicit task's does (`run.paused`
    /// naming the call and the state's path); `resume --retry` queues it, and the next drive
    /// runs the state's handler again, replaying its journaled calls and performing that fetch
    /// again. Other handlers in flight are stopped; their unfinished calls run again then.
    async fn pause(&mut self, key: Key, seq: u64, error: Value) -> Result<Run> {
        self.set.abort_all();
        self.running.clear();
        let mut info = crate::journal::run_paused(seq, &error);
        if let Value::Object(m) = &mut info {
            m.insert("path".into(), key.0.into());
        }
        self.writer
            .append(vec![(RecordKind::RunPaused.as_str().into(), info.clone())])
            .await?;
        self.finish(RunStatus::Paused, None, Some(info)).await
    }

    /// Hands the run back unsettled (the worker is stopping).
    async fn release(&mut self) -> Result<Run> {
        self.set.abort_all();
        self.running.clear();
        let run = self.engine.store.release(self.run.id, self.token).await?;
        tracing::debug!(run = %run.id, "graph run released unsettled: the worker is stopping");
        self.run = run.clone();
        Ok(run)
    }

    async fn finish(
        &mut self,
        status: RunStatus,
        output: Option<Value>,
        error: Option<Value>,
    ) -> Result<Run> {
        let mut run = self.run.clone();
        run.status = status;
        run.output = output;
        run.error = error;
        run.wake_at = None;
        run.waiting_for = None;
        self.write(run).await
    }

    /// Stores the settled run and drops the lease; tells a parent that its child ended; wakes a
    /// waiting run at once when a signal or a child's end arrived meanwhile.
    async fn write(&mut self, run: Run) -> Result<Run> {
        let store = self.engine.store.clone();
        // the records of the transition that ended the run go with its settle
        let end = self.writer.stamp(std::mem::take(&mut self.end)).await;
        let released = match store.append_and_settle(&run, &end, self.token).await {
            Ok(r) => r,
            Err(sequential_adaptor::Error::Conflict { .. }) => {
                let mut fresh = store.get_run(run.id).await?;
                if fresh.status.is_terminal() {
                    let _ = store.release(run.id, self.token).await;
                    return Ok(fresh);
                }
                let stopping = fresh.status == RunStatus::Stopping;
                fresh.status = run.status;
                fresh.output = run.output.clone();
                fresh.error = run.error.clone();
                fresh.waiting_for = run.waiting_for.clone();
                fresh.wake_at = run.wake_at;
                if stopping && !run.status.is_terminal() {
                    // a cancel arrived: the run becomes runnable so a worker winds it down
                    fresh.status = RunStatus::Stopping;
                }
                // the records may be in already: appending them again is skipped
                store.append_and_settle(&fresh, &end, self.token).await?
            }
            Err(e) => return Err(e.into()),
        };
        self.run = released.clone();
        notify_parent(&*store, &released).await?;
        if released.status == RunStatus::Waiting {
            // a signal may have arrived between our read of the inbox and the write above
            let signals = store.read_signals(released.id, self.last_signal).await?;
            let arrived = signals
                .iter()
                .any(|s| !self.signals.contains(&s.seq) && !is_child_signal(&s.name));
            let mut child_done = false;
            for id in self.child_waits.values() {
                child_done |= store.get_run(*id).await?.status.is_terminal();
            }
            if arrived || child_done {
                let mut wake = released.clone();
                wake.wake_at = Some(now_millis());
                return Ok(store.update_run(&wake).await?);
            }
        }
        Ok(released)
    }

    fn env(&self) -> Result<Env> {
        Ok(Env {
            now: now_millis(),
            run_id: self.run.id.to_string(),
            draw: draw()?,
        })
    }
}

/// A child run's result once it has ended.
fn child_result(child: &Run) -> Option<std::result::Result<Value, ErrorValue>> {
    match child.status {
        RunStatus::Succeeded => Some(Ok(child.output.clone().unwrap_or(Value::Null))),
        RunStatus::Failed | RunStatus::Cancelled => {
            let e = child.error.clone().unwrap_or(Value::Null);
            Some(Err(ErrorValue::new(
                e["name"].as_str().unwrap_or("Error"),
                e["message"].as_str().unwrap_or_default(),
            )))
        }
        _ => None,
    }
}

/// `child:<run id>`: a child's end, which wakes its parent (not an event of the graph).
fn is_child_signal(name: &str) -> bool {
    name.strip_prefix("child:")
        .is_some_and(|id| id.parse::<RunId>().is_ok())
}

/// A uniform draw in [0, 1) from the operating system's generator (for `jitter: "full"`; the
/// delay it gives is journaled).
fn draw() -> Result<f64> {
    let mut b = [0u8; 8];
    getrandom::fill(&mut b).map_err(|e| Error::Internal {
        doing: "drawing a random number for a retry's jitter".into(),
        cause: e.to_string(),
    })?;
    Ok((u64::from_le_bytes(b) >> 11) as f64 / (1u64 << 53) as f64)
}

/// Ends a graph run that is being killed: the records of a cancel (timers cancelled, branches
/// and items cancelled, the inbox discarded, `run.cancelled`), appended whoever holds the run.
/// A run that never started gets none.
pub(crate) async fn kill_records(engine: &Engine, run: &Run, version: &TaskVersion) -> Result<()> {
    let Some(graph) = &version.graph else {
        return Ok(());
    };
    let task = GraphTask::new(&version.code, graph)?;
    for _ in 0..5 {
        let loaded = store::load(engine.store.as_ref(), run.id).await?;
        let snapshot = fold(&task.graph, &loaded.records)?;
        if snapshot.status != GraphStatus::Running {
            return Ok(());
        }
        let env = Env {
            now: now_millis(),
            run_id: run.id.to_string(),
            draw: 0.0,
        };
        let step = snapshot.step(&task.graph, Fact::Cancel, &env)?;
        let at = now_millis();
        let records: Vec<_> = store::stored(&step.records, &Extra::default())
            .into_iter()
            .enumerate()
            .map(|(i, (kind, data))| sequential_adaptor::JournalRecord {
                run: run.id,
                seq: loaded.next_seq + i as u64,
                kind,
                at,
                data,
            })
            .collect();
        match engine.store.append(run.id, &records, Fence::None).await {
            Ok(()) => {
                engine.keep_snapshot(run.id, &step.snapshot);
                return Ok(());
            }
            // the driver appended meanwhile: read again
            Err(
                sequential_adaptor::Error::Conflict { .. }
                | sequential_adaptor::Error::Invalid { .. },
            ) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
