//! Drives one claimed run: replay, perform host calls, journal, settle.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sequential_adaptor::{
    Claim, Fence, JournalRecord, NewRun, ParentRef, Run, RunId, RunStatus, Signal, TaskName,
    TaskVersion, VersionSel, now_millis,
};
use sequential_fetch_vm::{
    CallKind, CallResult, ErrorInfo, HostCall, Journal, JournalEntry, Options, Session, Step,
};
use sequential_http_wrapper::{FetchError, Request, RetryPolicy};
use serde_json::{Value, json};

use crate::Engine;
use crate::abort::Notice;
use crate::error::{Error, Result};
use crate::failures;
use crate::journal::{self, Record, RecordKind};
use crate::tools::ToolCall;
use crate::worker::{Level, StopWatch};

struct Driver<'a> {
    engine: &'a Engine,
    run: Run,
    token: u64,
    next_seq: u64,
    timers: HashMap<u64, i64>,
    requested: HashSet<u64>,
    consumed_signals: HashSet<u64>,
    /// Child runs by the seq of the call that started them.
    children: HashMap<u64, RunId>,
    /// Records not yet appended (see [`Driver::flush`]).
    buffer: Vec<JournalRecord>,
    /// Extra fields written with a call's completion record (e.g. the signal it consumed).
    extra: HashMap<u64, Value>,
    last_renew: Instant,
    /// The stored journal already ends the run (a worker died after appending the end but
    /// before settling): the end is settled, never appended twice.
    ended_in_journal: bool,
}

/// Records read at a time when a run's journal is loaded.
const JOURNAL_PAGE: usize = 1000;

/// Drives a claimed run until it settles (ends, waits or pauses), then releases it. When `stop`
/// asks, the run is released unsettled at the next step boundary (or at once, with the results
/// that came back journaled, when it asks for `Now`).
pub(crate) async fn drive(engine: &Engine, claim: Claim, stop: &mut StopWatch) -> Result<Run> {
    let store = engine.store.clone();
    let run = claim.run;
    if stop.level() > Level::Run {
        return Driver::new(engine, run, claim.token).release().await;
    }
    // a claim that names its version's hash needs no read of a version this engine kept
    let hash = claim.version_hash.as_deref();
    let read = match hash.and_then(|h| engine.kept_version(&run, h)) {
        Some(v) => Ok(v),
        None => store
            .get_task_version(&run.task, VersionSel::Exact(run.version))
            .await
            .map(|v| {
                let v = Arc::new(v);
                if hash == Some(v.hash.as_str()) {
                    engine.keep_version(v.clone());
                }
                v
            }),
    };
    let version = match read {
        Ok(v) => v,
        Err(sequential_adaptor::Error::NotFound { .. }) => {
            let pinned = store
                .read_journal(run.id, None, 1)
                .await?
                .first()
                .and_then(|r| Record::new(r).started()?.hash.map(str::to_string))
                .unwrap_or_else(|| "unknown (the run never started)".into());
            let latest = match store.get_task_version(&run.task, VersionSel::Latest).await {
                Ok(v) => format!("version {} has hash {}", v.version, v.hash),
                Err(_) => "the task has no stored version".into(),
            };
            let mut d = Driver::new(engine, run, claim.token);
            d.load().await?;
            let message = format!(
                "run {} is pinned to version {} of task `{}` (hash {pinned}), which was deleted; {latest}. \
                 Start a new run (or `rerun`) to use the current version.",
                d.run.id, d.run.version, d.run.task
            );
            let error =
                json!({ "name": "VersionMissing", "message": message, "pinnedHash": pinned });
            d.push(RecordKind::RunFailed, journal::run_ended_with(&error));
            d.flush().await?;
            return d.finish(RunStatus::Failed, None, Some(error)).await;
        }
        Err(e) => return Err(e.into()),
    };
    if version.graph.is_some() {
        return crate::graph::drive(engine, run, claim.token, &version, stop).await;
    }
    let mut d = Driver::new(engine, run, claim.token);
    // a run claimed from `queued` whose journal the claim found empty has nothing to load
    let entries = if claim.journal_len == Some(0) {
        Vec::new()
    } else {
        d.load().await?
    };
    if d.next_seq == 0 {
        let started =
            journal::run_started(&d.run.task, version.version, &version.hash, &d.run.input);
        d.push(RecordKind::RunStarted, started);
    }
    d.execute(&version, entries, stop).await
}

/// Fails `run` (held with `token`) with `error`: a `run.failed` record (when the journal takes
/// it), then the settled run. For drives that cannot succeed (see `failures`).
pub(crate) async fn fail(engine: &Engine, run: Run, token: u64, error: Value) -> Result<Run> {
    let last = engine
        .read_all(run.id)
        .await
        .map(|all| all.last().map(|r| r.seq));
    let mut d = Driver::new(engine, run, token);
    match last {
        Ok(last) => {
            d.next_seq = last.map_or(0, |s| s + 1);
            d.push(RecordKind::RunFailed, journal::run_ended_with(&error));
            if let Err(e) = d.flush().await {
                if matches!(e, Error::Storage(sequential_adaptor::Error::Fenced { .. })) {
                    return Err(e);
                }
                tracing::warn!(run = %d.run.id, error = %e, "the run fails without a run.failed record");
            }
        }
        Err(e) => {
            tracing::warn!(run = %d.run.id, error = %e, "the run fails without a run.failed record")
        }
    }
    d.finish(RunStatus::Failed, None, Some(error)).await
}

/// Why a step stops before the run goes on.
enum Park {
    /// A call spent its retries: the run pauses once its siblings are journaled.
    Pause { seq: u64, error: Value },
    /// The worker is stopping: the run is released once the results in hand are journaled.
    Release,
    /// The run was killed (or its stop timed out): `ctx.signal` fires once the results in hand
    /// are journaled, then the run ends `cancelled` (see [`Driver::aborted`]).
    Abort {
        reason: Value,
        done: tokio::sync::oneshot::Sender<()>,
    },
}

impl<'a> Driver<'a> {
    fn new(engine: &'a Engine, run: Run, token: u64) -> Self {
        Driver {
            engine,
            run,
            token,
            next_seq: 0,
            timers: HashMap::new(),
            requested: HashSet::new(),
            consumed_signals: HashSet::new(),
            children: HashMap::new(),
            buffer: Vec::new(),
            extra: HashMap::new(),
            last_renew: Instant::now(),
            ended_in_journal: false,
        }
    }

    /// Reads the stored journal: the VM journal, armed timers, requested calls, used signals.
    async fn load(&mut self) -> Result<Journal> {
        let store = &self.engine.store;
        let mut entries = Vec::new();
        let mut requests: HashMap<u64, Value> = HashMap::new();
        let mut after = None;
        let mut more = true;
        while more {
            let page = store.read_journal(self.run.id, after, JOURNAL_PAGE).await?;
            // a short page is the journal's end: no read that finds nothing
            more = page.len() == JOURNAL_PAGE;
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            self.next_seq = last.seq + 1;
            for stored in &page {
                let bad = |reason: String| Error::Journal {
                    run: stored.run,
                    seq: stored.seq,
                    reason,
                };
                let rec = Record::new(stored);
                match rec.kind() {
                    Some(RecordKind::CallCompleted | RecordKind::Log) => {
                        if let Some(s) = rec.signal() {
                            self.consumed_signals.insert(s);
                        }
                        let mut data = stored.data.clone();
                        if rec.request().is_none()
                            && let Some(obj) = data.as_object_mut()
                        {
                            // the request is stored once, in the call.requested record
                            let seq = rec.call_seq().unwrap_or(u64::MAX);
                            let request = requests.remove(&seq).ok_or_else(|| {
                                bad(format!(
                                    "call {seq} has no request and no call.requested record"
                                ))
                            })?;
                            obj.insert("request".into(), request);
                        }
                        let entry: JournalEntry =
                            serde_json::from_value(data).map_err(|e| bad(e.to_string()))?;
                        entries.push(entry);
                    }
                    Some(RecordKind::TimerArmed) => match (rec.call_seq(), rec.wake_at()) {
                        (Some(s), Some(w)) => {
                            self.timers.insert(s, w);
                        }
                        _ => return Err(bad("timer.armed needs seq and wakeAt".into())),
                    },
                    Some(RecordKind::ChildStarted) => {
                        if let (Some(s), Some(r)) = (rec.call_seq(), rec.child_run()) {
                            self.children.insert(s, r);
                        }
                    }
                    Some(RecordKind::CallRequested) => {
                        if let Some(s) = rec.call_seq() {
                            self.requested.insert(s);
                            requests.insert(s, rec.request().cloned().unwrap_or(Value::Null));
                        }
                    }
                    Some(RecordKind::RunSucceeded | RecordKind::RunFailed) => {
                        self.ended_in_journal = true;
                    }
                    _ => {}
                }
            }
        }
        Ok(entries)
    }

    /// Adds a record to the buffer; it becomes durable at the next [`Driver::flush`], which
    /// happens before every side effect and before the run settles.
    fn push(&mut self, kind: RecordKind, data: Value) {
        self.buffer.push(JournalRecord {
            run: self.run.id,
            seq: self.next_seq,
            kind: kind.as_str().to_string(),
            at: now_millis(),
            data,
        });
        self.next_seq += 1;
    }

    /// Appends the buffered records in one durable write.
    async fn flush(&mut self) -> Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let records = std::mem::take(&mut self.buffer);
        self.engine
            .store
            .append(self.run.id, &records, Fence::Token(self.token))
            .await?;
        Ok(())
    }

    /// Buffers the VM's new journal entries (completed calls and console lines).
    fn persist(&mut self, session: &mut Session) -> Result<()> {
        for entry in session.drain_new_entries() {
            self.record(entry)?;
        }
        Ok(())
    }

    /// Buffers one VM journal entry as its record.
    fn record(&mut self, entry: JournalEntry) -> Result<()> {
        let kind = if entry.kind == CallKind::Log {
            RecordKind::Log
        } else {
            RecordKind::CallCompleted
        };
        // The entry's serde shape, built from its parts: they are moved, not copied.
        let JournalEntry {
            seq,
            kind: call_kind,
            request,
            result,
        } = entry;
        // (`json!` would copy a value it is given: it serializes its argument)
        let (tag, value) = match result {
            CallResult::Ok(value) => ("ok", value),
            CallResult::Error(info) => (
                "error",
                serde_json::to_value(info).map_err(|e| Error::Internal {
                    doing: format!("encoding journal entry {seq}"),
                    cause: e.to_string(),
                })?,
            ),
        };
        let result = Value::Object(serde_json::Map::from_iter([(tag.to_string(), value)]));
        let mut obj = serde_json::Map::new();
        obj.insert("seq".into(), Value::from(seq));
        obj.insert("kind".into(), Value::from(call_kind.as_str()));
        if !self.requested.contains(&seq) {
            obj.insert("request".into(), request); // else already in its call.requested record
        }
        obj.insert("result".into(), result);
        if let Some(Value::Object(map)) = self.extra.remove(&seq) {
            obj.extend(map);
        }
        self.push(kind, Value::Object(obj));
        Ok(())
    }

    async fn renew_if_due(&mut self) -> Result<()> {
        let lease = self.engine.config.lease;
        if self.last_renew.elapsed() >= lease / 3 {
            self.run = self
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
        }
        Ok(())
    }

    async fn execute(
        &mut self,
        version: &TaskVersion,
        entries: Journal,
        stop: &mut StopWatch,
    ) -> Result<Run> {
        let retry = RetryPolicy::from_config(&version.config, &self.engine.config.http.retry)?;
        let base_url = version.config.get("baseUrl").and_then(Value::as_str);
        let mut live = self.engine.live.register(self.run.id);
        let mut stopping = false;
        let hot = self.engine.take_hot(self.run.id, entries.len());
        let mut options: Options = self.engine.config.vm.clone();
        options.task_name = Some(version.task.to_string());
        let (mut session, mut step) = match hot {
            Some(session) => {
                let step = Step::Pending(session.pending().to_vec());
                (session, step)
            }
            None => Session::start_async(&version.code, &self.run.input, entries, &options).await?,
        };
        let mut park: Option<Park> = None;
        loop {
            self.persist(&mut session)?;
            let calls = match step {
                Step::Completed(v) => {
                    if !self.ended_in_journal {
                        self.push(RecordKind::RunSucceeded, journal::run_succeeded(&v));
                    }
                    return self.finish(RunStatus::Succeeded, Some(v), None).await;
                }
                Step::Failed(e) => {
                    let error = vm_error_json(&e);
                    if !self.ended_in_journal {
                        self.push(RecordKind::RunFailed, journal::run_ended_with(&error));
                    }
                    return self.finish(RunStatus::Failed, None, Some(error)).await;
                }
                Step::Pending(calls) => calls,
            };
            match park.take() {
                Some(Park::Pause { seq, error }) => return self.pause(seq, &error).await,
                Some(Park::Release) => return self.release().await,
                Some(Park::Abort { reason, done }) => {
                    return self.aborted(session, &calls, reason, done).await;
                }
                None => {}
            }
            while let Ok(notice) = live.notices.try_recv() {
                match notice {
                    Notice::Stop => stopping = true,
                    Notice::Abort { reason, done } => {
                        return self.aborted(session, &calls, reason, done).await;
                    }
                }
            }
            self.renew_if_due().await?;
            if stopping || self.run.status == RunStatus::Stopping {
                return self.cancelled("cancelled while running").await;
            }
            if stop.level() > Level::Run {
                return self.release().await;
            }
            let mut held = Some(session);
            let performed = self
                .perform(
                    &calls,
                    (&retry, base_url),
                    stop,
                    &mut live.notices,
                    &mut stopping,
                    &mut held,
                )
                .await?;
            // a session parked while its calls were out is rebuilt by replay, taking the first
            // result that came back as its last journal entry
            let mut revived = None;
            session = match held {
                Some(s) => s,
                None => {
                    let first = match &performed {
                        Performed::Results(r) | Performed::Park { results: r, .. } => {
                            r.first().cloned()
                        }
                        Performed::Wait { .. } => None,
                    };
                    let (s, st) = self.revive(version, &options, &calls, first).await?;
                    revived = Some(st);
                    s
                }
            };
            let mut results = match performed {
                Performed::Results(r) => r,
                Performed::Wait { wake_at, event } => {
                    let run = self.suspend(wake_at, event).await?;
                    if run.status == RunStatus::Waiting {
                        self.engine.keep_hot(run.id, session);
                    }
                    return Ok(run);
                }
                // the siblings that came back are journaled first (below), then the run parks
                Performed::Park { park: p, results } => {
                    if results.is_empty() {
                        return match p {
                            Park::Pause { seq, error } => self.pause(seq, &error).await,
                            Park::Release => self.release().await,
                            Park::Abort { reason, done } => {
                                self.aborted(session, &calls, reason, done).await
                            }
                        };
                    }
                    park = Some(p);
                    results
                }
            };
            // the code runs on to its next step here (on its own stack, on this task's thread)
            let mut st = None;
            if let Some(step) = revived {
                results.remove(0);
                st = Some(Ok(step));
            }
            for (seq, result) in results {
                if session.is_ended() {
                    break;
                }
                st = Some(session.complete_async(seq, result).await);
            }
            step = match st {
                Some(r) => r?,
                None => {
                    return Err(Error::Internal {
                        doing: "completing the pending calls".into(),
                        cause: "the session ended before taking any result".into(),
                    });
                }
            };
        }
    }

    /// Rebuilds the session parked in [`Driver::perform`] by replaying the run's journal (as a
    /// cold resume does), with `first` — the first result that came back while it was parked —
    /// as its last entry; that entry is journaled here, since the new session reports only what
    /// follows it.
    async fn revive(
        &mut self,
        version: &TaskVersion,
        options: &Options,
        calls: &[HostCall],
        first: Option<(u64, CallResult)>,
    ) -> Result<(Session, Step)> {
        // the parked session's journal is the stored one: everything it journaled was
        // durable before its calls went out (flushed again here in case)
        self.flush().await?;
        let mut journal = self.load().await?;
        if let Some((seq, result)) = first {
            let call = calls
                .iter()
                .find(|c| c.seq == seq)
                .ok_or_else(|| Error::Internal {
                    doing: "resuming a parked session".into(),
                    cause: format!("call {seq} came back but was not pending"),
                })?;
            let entry = JournalEntry {
                seq,
                kind: call.kind,
                request: call.request.clone(),
                result,
            };
            self.record(entry.clone())?;
            journal.push(entry);
        }
        Ok(Session::start_async(&version.code, &self.run.input, journal, options).await?)
    }

    /// Pauses the run at call `seq`, whose retries were spent with `error`.
    async fn pause(&mut self, seq: u64, error: &Value) -> Result<Run> {
        let info = journal::run_paused(seq, error);
        self.push(RecordKind::RunPaused, info.clone());
        self.finish(RunStatus::Paused, None, Some(info)).await
    }

    /// Hands the run back unsettled (the worker is stopping): what is buffered is journaled and
    /// the lease dropped, so another worker can claim it at once.
    async fn release(&mut self) -> Result<Run> {
        self.flush().await?;
        let run = self.engine.store.release(self.run.id, self.token).await?;
        tracing::debug!(run = %run.id, "released unsettled: the worker is stopping");
        self.run = run.clone();
        Ok(run)
    }

    /// Ends the run as cancelled (a graceful cancel reached the worker).
    async fn cancelled(&mut self, why: &str) -> Result<Run> {
        let error = json!({ "name": "Cancelled", "message": why });
        self.push(RecordKind::RunCancelled, journal::run_ended_with(&error));
        self.finish(RunStatus::Cancelled, None, Some(error)).await
    }

    /// The run was killed, or its stop timed out (`reason`: the `AbortError` it fires with):
    /// answers the code's `ctx.signal` with the reason and its calls in flight (abandoned) with
    /// an `AbortError`, journals what the code logged about it, ends the run `cancelled` and
    /// answers `done`. Calls the code makes after the abort are not performed.
    async fn aborted(
        &mut self,
        session: Session,
        calls: &[HostCall],
        reason: Value,
        done: tokio::sync::oneshot::Sender<()>,
    ) -> Result<Run> {
        if done.is_closed() {
            // the kill stopped waiting and cancelled the run in storage itself
            let _ = self.engine.store.release(self.run.id, self.token).await;
            return Ok(self.engine.store.get_run(self.run.id).await?);
        }
        let message = reason["message"]
            .as_str()
            .unwrap_or("the run was aborted")
            .to_string();
        let mut answers: Vec<(u64, CallResult)> = calls
            .iter()
            .filter(|c| c.kind == CallKind::Abort)
            .map(|c| (c.seq, CallResult::Ok(reason.clone())))
            .collect();
        answers.extend(
            calls
                .iter()
                .filter(|c| matches!(c.kind, CallKind::Fetch | CallKind::Tool))
                .map(|c| {
                    let info = ErrorInfo::new("AbortError", message.clone());
                    (c.seq, CallResult::Error(info))
                }),
        );
        if !answers.is_empty() {
            let mut session = session;
            let mut last = None;
            for (seq, result) in answers {
                if session.is_ended() {
                    break;
                }
                last = Some(session.complete_async(seq, result).await);
            }
            if let Some(Err(e)) = last {
                tracing::debug!(run = %self.run.id, error = %e, "the aborted code failed");
            }
            self.persist(&mut session)?;
        }
        let error = json!({ "name": "Cancelled", "message": message });
        self.push(RecordKind::RunCancelled, journal::run_ended_with(&error));
        let run = self.finish(RunStatus::Cancelled, None, Some(error)).await;
        let _ = done.send(());
        run
    }

    /// Performs what can be performed now.
    async fn perform(
        &mut self,
        calls: &[HostCall],
        (retry, base_url): (&RetryPolicy, Option<&str>),
        stop: &mut StopWatch,
        notices: &mut tokio::sync::mpsc::UnboundedReceiver<Notice>,
        stopping: &mut bool,
        held: &mut Option<Session>,
    ) -> Result<Performed> {
        let now = now_millis();
        let mut results = BTreeMap::new();
        let mut wake_at: Option<i64> = None;
        let mut event = None;
        let mut slow = Vec::new();
        let mut signals: Option<Vec<Signal>> = None;
        for call in calls {
            match call.kind {
                CallKind::Now => {
                    results.insert(call.seq, CallResult::Ok(json!(now)));
                }
                CallKind::Random => {
                    let n = call.request["bytes"].as_u64().unwrap_or(16).min(65_536) as usize;
                    results.insert(call.seq, CallResult::Ok(json!(random_hex(n)?)));
                }
                CallKind::Emit | CallKind::Log => {
                    results.insert(call.seq, CallResult::Ok(Value::Null));
                }
                // `ctx.signal`: answered only when the run is aborted (see `aborted`)
                CallKind::Abort => {}
                CallKind::Sleep => {
                    let ms = call.request["ms"].as_f64().unwrap_or(0.0).max(0.0) as i64;
                    let wake = match self.timers.get(&call.seq) {
                        Some(w) => *w,
                        None => self.arm(call.seq, now + ms).await?,
                    };
                    if wake <= now {
                        results.insert(call.seq, CallResult::Ok(Value::Null));
                    } else {
                        wake_at = Some(wake_at.map_or(wake, |w: i64| w.min(wake)));
                    }
                }
                CallKind::WaitForEvent => {
                    let name = call.request["name"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    if signals.is_none() {
                        signals = Some(self.engine.store.read_signals(self.run.id, None).await?);
                    }
                    let found = signals.as_ref().and_then(|all| {
                        all.iter()
                            .find(|s| s.name == name && !self.consumed_signals.contains(&s.seq))
                    });
                    if let Some(sig) = found {
                        self.consumed_signals.insert(sig.seq);
                        self.extra
                            .insert(call.seq, journal::consumed_signal(sig.seq));
                        results.insert(call.seq, CallResult::Ok(sig.payload.clone()));
                        continue;
                    }
                    let timeout = call.request["timeoutMs"]
                        .as_f64()
                        .map(|t| t.max(0.0) as i64);
                    let wake = match (self.timers.get(&call.seq), timeout) {
                        (Some(w), _) => Some(*w),
                        (None, Some(t)) => Some(self.arm(call.seq, now + t).await?),
                        (None, None) => None,
                    };
                    match wake {
                        Some(w) if w <= now => {
                            results.insert(call.seq, CallResult::Ok(Value::Null));
                        }
                        Some(w) => {
                            wake_at = Some(wake_at.map_or(w, |x: i64| x.min(w)));
                            event.get_or_insert(name);
                        }
                        None => {
                            event.get_or_insert(name);
                        }
                    }
                }
                CallKind::Fetch => match with_base_url(call, base_url) {
                    Ok(call) => slow.push(call),
                    Err(e) => {
                        results.insert(call.seq, CallResult::Error(e));
                    }
                },
                CallKind::Tool if call.request["name"] == "task" => {
                    let args = &call.request["args"];
                    let task = args["task"].as_str().or_else(|| args["name"].as_str());
                    let req = json!({ "task": task, "input": args["input"] });
                    match self.child(call.seq, &req).await? {
                        Some(r) => {
                            results.insert(call.seq, r);
                        }
                        None => {
                            event.get_or_insert(child_event(&self.children[&call.seq]));
                        }
                    }
                }
                CallKind::Tool => slow.push(call.clone()),
                CallKind::Child => match self.child(call.seq, &call.request).await? {
                    Some(r) => {
                        results.insert(call.seq, r);
                    }
                    None => {
                        event.get_or_insert(child_event(&self.children[&call.seq]));
                    }
                },
                _ => {
                    results.insert(
                        call.seq,
                        CallResult::Error(ErrorInfo::new(
                            "UnsupportedError",
                            format!("{} calls are not available in this engine", call.kind),
                        )),
                    );
                }
            }
        }
        if !slow.is_empty() {
            for call in &slow {
                if self.requested.insert(call.seq) {
                    let data = journal::call_requested(call.seq, call.kind, &call.request);
                    self.push(RecordKind::CallRequested, data);
                }
            }
            // everything so far is durable before the side effects start
            self.flush().await?;
            let mut set = OutCalls::new(self.engine, self.run.id, slow, retry);
            let lease = self.engine.config.lease;
            // A call that spent its retries pauses the run, but only once its siblings are
            // back (each bounded by its own timeout), so none of their results is lost.
            let mut pause: Option<(u64, Value)> = None;
            // a session whose calls are out longer than `park_after` (and a millisecond more
            // per journal entry, so that the replay stays a small fraction of the wait) gives
            // back its thread and runtime; `execute` rebuilds it by replay when the results are in
            let park_after = self.engine.config.park_after;
            let entries = held.as_ref().map_or(0, Session::journal_len) as u32;
            let park_at = tokio::time::Instant::now()
                + park_after.unwrap_or(Duration::ZERO)
                + Duration::from_millis(1) * entries;
            loop {
                let done = tokio::select! {
                    done = set.join_next() => done,
                    _ = tokio::time::sleep_until(park_at), if park_after.is_some() && held.is_some() => {
                        if held.take().is_some() {
                            self.engine.count_park();
                        }
                        continue;
                    }
                    _ = tokio::time::sleep(lease / 3) => {
                        self.renew_if_due().await?;
                        continue;
                    }
                    _ = stop.now() => {
                        set.abort_all();
                        return Ok(Performed::Park {
                            park: Park::Release,
                            results: results.into_iter().collect(),
                        });
                    }
                    Some(notice) = notices.recv() => match notice {
                        Notice::Stop => {
                            *stopping = true;
                            continue;
                        }
                        Notice::Abort { reason, done } => {
                            set.abort_all();
                            return Ok(Performed::Park {
                                park: Park::Abort { reason, done },
                                results: results.into_iter().collect(),
                            });
                        }
                    },
                };
                let Some(done) = done else { break };
                let (seq, outcome) = done?;
                match outcome {
                    Ok(r) => {
                        results.insert(seq, r);
                    }
                    Err(error) => {
                        if pause.as_ref().is_none_or(|(s, _)| seq < *s) {
                            pause = Some((seq, error));
                        }
                    }
                }
            }
            if let Some((seq, error)) = pause {
                return Ok(Performed::Park {
                    park: Park::Pause { seq, error },
                    results: results.into_iter().collect(),
                });
            }
        }
        if results.is_empty() {
            return Ok(Performed::Wait { wake_at, event });
        }
        Ok(Performed::Results(results.into_iter().collect()))
    }

    /// Starts (or finds) the child run of call `seq`; its result once it has ended, `None` while
    /// it runs (the parent then waits for the child's completion signal).
    async fn child(&mut self, seq: u64, request: &Value) -> Result<Option<CallResult>> {
        let store = &self.engine.store;
        let child = match self.children.get(&seq) {
            Some(id) => store.get_run(*id).await?,
            None => {
                let Some(task) = request["task"].as_str() else {
                    return Ok(Some(CallResult::Error(ErrorInfo::new(
                        "TypeError",
                        "ctx.runTask needs a task name (a string)",
                    ))));
                };
                let name = match TaskName::new(task) {
                    Ok(n) => n,
                    Err(e) => {
                        return Ok(Some(CallResult::Error(ErrorInfo::new(
                            "TypeError",
                            e.to_string(),
                        ))));
                    }
                };
                let version = match store.get_task_version(&name, VersionSel::Latest).await {
                    Ok(v) => v,
                    Err(sequential_adaptor::Error::NotFound { what }) => {
                        return Ok(Some(CallResult::Error(ErrorInfo::new(
                            "TaskNotFound",
                            format!("ctx.runTask: {what}"),
                        ))));
                    }
                    Err(e) => return Err(e.into()),
                };
                let mut new = NewRun::new(name, version.version, request["input"].clone());
                new.idempotency_key = Some(format!("child:{}:{seq}", self.run.id));
                new.parent = Some(ParentRef {
                    run: self.run.id,
                    seq,
                });
                let created = store.create_run(new).await?;
                let run = created.into_run();
                self.push(
                    RecordKind::ChildStarted,
                    journal::child_started(seq, run.id),
                );
                self.children.insert(seq, run.id);
                run
            }
        };
        self.children.insert(seq, child.id);
        Ok(match child.status {
            RunStatus::Succeeded => Some(CallResult::Ok(child.output.unwrap_or(Value::Null))),
            RunStatus::Failed | RunStatus::Cancelled => {
                let mut info = ErrorInfo::new(
                    "ChildRunFailed",
                    format!(
                        "child run {} of task `{}` {}: {}",
                        child.id,
                        child.task,
                        child.status,
                        child
                            .error
                            .as_ref()
                            .and_then(|e| e["message"].as_str())
                            .unwrap_or("no message")
                    ),
                );
                info.details =
                    Some(json!({ "run": child.id, "status": child.status, "error": child.error }));
                Some(CallResult::Error(info))
            }
            _ => None,
        })
    }

    async fn arm(&mut self, seq: u64, wake: i64) -> Result<i64> {
        self.push(RecordKind::TimerArmed, journal::timer_armed(seq, wake));
        self.timers.insert(seq, wake);
        Ok(wake)
    }

    async fn suspend(&mut self, wake_at: Option<i64>, event: Option<String>) -> Result<Run> {
        let mut run = self.run.clone();
        if run.error.as_ref().is_some_and(failures::is_drive_error) {
            run.error = None; // the drive went through: failed drives are no longer counted
        }
        run.status = RunStatus::Waiting;
        run.wake_at = wake_at;
        run.waiting_for = event;
        self.write(run).await
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

    /// Stores the settled run, releases the lease, and tells a parent that its child ended.
    async fn write(&mut self, run: Run) -> Result<Run> {
        // the last records and the settled run: one durable write where the backend can
        let records = std::mem::take(&mut self.buffer);
        let store = &self.engine.store;
        let released = match store.append_and_settle(&run, &records, self.token).await {
            Ok(r) => r,
            Err(sequential_adaptor::Error::Conflict { .. }) => {
                // Something else touched the run: a signal, a cancel or a kill.
                let mut fresh = store.get_run(run.id).await?;
                if fresh.status.is_terminal() {
                    // killed: its state stands
                    let _ = store.release(run.id, self.token).await;
                    return Ok(fresh);
                }
                let woke = fresh.status == RunStatus::Waiting
                    && fresh.wake_at.is_some_and(|w| w <= now_millis());
                let stopping = fresh.status == RunStatus::Stopping;
                fresh.status = run.status;
                fresh.output = run.output.clone();
                fresh.error = run.error.clone();
                fresh.waiting_for = run.waiting_for.clone();
                fresh.wake_at = run.wake_at;
                if woke && run.status == RunStatus::Waiting {
                    fresh.wake_at = Some(now_millis());
                }
                if stopping && !run.status.is_terminal() {
                    // a cancel arrived: the run becomes runnable so a worker winds it down
                    fresh.status = RunStatus::Stopping;
                }
                // the records may already be in: appending them again is skipped
                store
                    .append_and_settle(&fresh, &records, self.token)
                    .await?
            }
            Err(e) => return Err(e.into()),
        };
        self.run = released.clone();
        notify_parent(&**store, &released).await?;
        // A signal may have arrived between our read of the inbox and the write above.
        if released.status == RunStatus::Waiting
            && let Some(name) = released.waiting_for.clone()
        {
            let signals = store.read_signals(released.id, None).await?;
            let child_done = match name.strip_prefix("child:").map(str::parse::<RunId>) {
                Some(Ok(id)) => store
                    .get_run(id)
                    .await
                    .is_ok_and(|c| c.status.is_terminal()),
                _ => false,
            };
            let arrived = signals
                .iter()
                .any(|s| s.name == name && !self.consumed_signals.contains(&s.seq));
            if arrived || child_done {
                let mut wake = released.clone();
                wake.wake_at = Some(now_millis());
                return Ok(store.update_run(&wake).await?);
            }
        }
        Ok(released)
    }
}

enum Performed {
    Results(Vec<(u64, CallResult)>),
    Wait {
        wake_at: Option<i64>,
        event: Option<String>,
    },
    /// The run stops here; `results` (possibly none) are completed and journaled first.
    Park {
        park: Park,
        results: Vec<(u64, CallResult)>,
    },
}

type CallOutcome = (u64, std::result::Result<CallResult, Value>);
type OneCall = std::pin::Pin<Box<dyn std::future::Future<Output = CallOutcome> + Send>>;

/// The fetch and tool calls of one step while they are out. A lone call (the usual step: one
/// `fetch`) is polled by the driver's own task; several run as tasks of their own, at once.
enum OutCalls {
    One(Option<OneCall>),
    Many(tokio::task::JoinSet<CallOutcome>),
}

impl OutCalls {
    fn new(engine: &Engine, run: RunId, calls: Vec<HostCall>, retry: &RetryPolicy) -> Self {
        let out = |call: HostCall| {
            let engine = engine.clone();
            let key = format!("{run}:{}", call.seq);
            let retry = retry.clone();
            async move { (call.seq, perform_slow(&engine, &call, &key, retry).await) }
        };
        if calls.len() == 1 {
            let call = calls.into_iter().next().expect("one call");
            return OutCalls::One(Some(Box::pin(out(call))));
        }
        let mut set = tokio::task::JoinSet::new();
        for call in calls {
            set.spawn(out(call));
        }
        OutCalls::Many(set)
    }

    /// The next call to come back; `None` once every call is back.
    async fn join_next(&mut self) -> Option<Result<CallOutcome>> {
        match self {
            OutCalls::One(slot) => {
                let call = slot.as_mut()?;
                // a panic of the call fails it as a panicked task of its own would
                let done = std::future::poll_fn(|cx| {
                    let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        call.as_mut().poll(cx)
                    }));
                    match polled {
                        Ok(std::task::Poll::Pending) => std::task::Poll::Pending,
                        Ok(std::task::Poll::Ready(done)) => std::task::Poll::Ready(Ok(done)),
                        Err(panic) => std::task::Poll::Ready(Err(panicked(panic.as_ref()))),
                    }
                })
                .await;
                *slot = None;
                Some(done)
            }
            OutCalls::Many(set) => Some(set.join_next().await?.map_err(join_error)),
        }
    }

    /// Gives up the calls still out.
    fn abort_all(&mut self) {
        match self {
            OutCalls::One(slot) => *slot = None,
            OutCalls::Many(set) => set.abort_all(),
        }
    }
}

/// Performs a fetch or a tool call. `Err` carries the error that pauses the run (retries spent).
pub(crate) async fn perform_slow(
    engine: &Engine,
    call: &HostCall,
    key: &str,
    retry: RetryPolicy,
) -> std::result::Result<CallResult, Value> {
    if call.kind == CallKind::Tool {
        let name = call.request["name"].as_str().unwrap_or_default();
        let Some(tool) = engine.tools.get(name) else {
            return Ok(CallResult::Error(ErrorInfo::new(
                "ToolNotFound",
                format!(
                    "no tool named {name:?}; registered tools: {}, task",
                    engine.tools.names().join(", ")
                ),
            )));
        };
        let tc = ToolCall {
            name,
            method: call.request["method"].as_str(),
            args: &call.request["args"],
            idempotency_key: key,
            fetcher: engine.fetcher.as_ref(),
        };
        return Ok(match tool.call(tc).await {
            Ok(v) => CallResult::Ok(v),
            Err(e) => CallResult::Error(e),
        });
    }
    let mut req = fetch_request(&call.request);
    req.idempotency_key = Some(key.to_string());
    req.retry = Some(retry);
    match engine.fetcher.fetch(&req).await {
        Ok(resp) => {
            // hop-by-hop headers describe the connection, not the response: not journaled
            let headers: serde_json::Map<String, Value> = resp
                .headers
                .iter()
                .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            Ok(CallResult::fetch_response(
                resp.status,
                &resp.status_text,
                Value::Object(headers),
                resp.data(),
            ))
        }
        Err(e @ FetchError::RetriesExhausted { .. }) => {
            Err(json!({ "name": "FetchError", "message": e.to_string() }))
        }
        Err(e) => {
            let name = match e {
                FetchError::InvalidUrl { .. }
                | FetchError::UnsupportedScheme { .. }
                | FetchError::InvalidRequest { .. } => "TypeError",
                _ => "FetchError",
            };
            Ok(CallResult::Error(ErrorInfo::new(name, e.to_string())))
        }
    }
}

/// Headers that describe one connection (RFC 9110 §7.6.1), plus the body length, which the
/// journaled (decoded) body makes redundant.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "content-length",
];

/// The event a parent waits for until child `id` ends.
/// When `run` has ended and is a child, tells its parent (the `child:<id>` signal it waits on).
/// A parent that ended or is gone needs no telling.
pub(crate) async fn notify_parent(
    store: &dyn sequential_adaptor::StorageAdapter,
    run: &Run,
) -> Result<()> {
    if let (true, Some(parent)) = (run.status.is_terminal(), run.parent) {
        let done = json!({ "run": run.id, "status": run.status });
        match store
            .send_signal(parent.run, &child_event(&run.id), done)
            .await
        {
            Ok(_)
            | Err(sequential_adaptor::Error::Conflict { .. })
            | Err(sequential_adaptor::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub(crate) fn child_event(id: &RunId) -> String {
    format!("child:{id}")
}

/// The internal failure of a call that panicked, with the panic's message.
fn panicked(panic: &(dyn std::any::Any + Send)) -> Error {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    Error::Internal {
        doing: "performing a call".into(),
        cause: format!("it panicked with message {message:?}"),
    }
}

pub(crate) fn join_error(e: tokio::task::JoinError) -> Error {
    Error::Internal {
        doing: "waiting for an engine task".into(),
        cause: e.to_string(),
    }
}

/// `call` with its relative URL resolved against the task's `baseUrl` (`config.json`); a
/// relative URL without one is a `TypeError` naming the URL and how to set `baseUrl`.
pub(crate) fn with_base_url(
    call: &HostCall,
    base_url: Option<&str>,
) -> std::result::Result<HostCall, ErrorInfo> {
    let Some(url) = call.request["url"].as_str() else {
        return Ok(call.clone());
    };
    if sequential_fetch_vm::external::is_absolute_url(url) {
        return Ok(call.clone());
    }
    let Some(base) = base_url else {
        return Err(ErrorInfo::new(
            "TypeError",
            format!(
                "fetch: relative URL {url:?} needs a base URL: set \"baseUrl\" in the task's \
                 config.json (e.g. {{\"baseUrl\": \"https://api.example.com/\"}}) or fetch an \
                 absolute URL"
            ),
        ));
    };
    let Some(resolved) = sequential_fetch_vm::external::resolve_url(url, base) else {
        return Err(ErrorInfo::new(
            "TypeError",
            format!(
                "fetch: relative URL {url:?} cannot be resolved: the task's config.json \
                 \"baseUrl\" {base:?} is not an absolute URL (e.g. \"https://api.example.com/\")"
            ),
        ));
    };
    let mut call = call.clone();
    call.request["url"] = Value::String(resolved);
    Ok(call)
}

fn fetch_request(req: &Value) -> Request {
    let url = match &req["url"] {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let opts = &req["options"];
    let method = opts["method"].as_str().unwrap_or("GET").to_string();
    let headers = crate::tools::headers_of(&opts["headers"]);
    let body = crate::tools::body_of(&opts["body"]);
    Request {
        url,
        method,
        headers,
        body,
        idempotency_key: None,
        retry: None,
    }
}

fn vm_error_json(e: &sequential_fetch_vm::Error) -> Value {
    match e {
        sequential_fetch_vm::Error::Js(js) => {
            let mut v = json!({ "name": js.name, "message": js.message });
            if let Some(stack) = &js.stack {
                v["stack"] = json!(stack);
            }
            if let (Some(line), Some(column)) = (js.line, js.column) {
                v["line"] = json!(line);
                v["column"] = json!(column);
            }
            v
        }
        other => json!({ "name": vm_error_name(other), "message": other.to_string() }),
    }
}

pub(crate) fn vm_error_name(e: &sequential_fetch_vm::Error) -> &'static str {
    match e {
        sequential_fetch_vm::Error::Timeout { .. } => "Timeout",
        sequential_fetch_vm::Error::NonDeterminism { .. } => "NonDeterminism",
        sequential_fetch_vm::Error::MemoryLimit { .. } => "MemoryLimit",
        sequential_fetch_vm::Error::StackLimit { .. } => "StackLimit",
        _ => "Error",
    }
}

/// `n` bytes from the operating system's generator, as lowercase hex. The result is journaled,
/// so a replay sees the same bytes.
pub(crate) fn random_hex(n: usize) -> Result<String> {
    let mut bytes = vec![0u8; n];
    getrandom::fill(&mut bytes).map_err(|e| Error::Internal {
        doing: format!("drawing {n} random bytes from the operating system's generator"),
        cause: e.to_string(),
    })?;
    Ok(hex::encode(bytes))
}
