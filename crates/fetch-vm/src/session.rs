//! A live run: the session thread that owns the JavaScript engine, and the handle that steps it.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Poll, Waker};

use serde_json::{Value, json};

use crate::engine::quickjs::QuickJs;
use crate::engine::{Delivery, Engine, Guard, Host, Job, Kind, Outcome};
use crate::source::scan;
use crate::{
    CallKind, CallResult, Error, HostCall, Journal, JournalEntry, Limits, Mode, Options, Step,
};

/// Sent by the handle to the session thread.
#[derive(Debug)]
enum Command {
    Complete(u64, CallResult),
}

/// Sent by the session thread at every step.
#[derive(Debug)]
struct Event {
    /// Journal entries appended since the previous event (not replayed ones).
    entries: Vec<JournalEntry>,
    step: Step,
}

/// The session thread's side of the event channel: what it sends, the handle reads by blocking
/// ([`Inbox::recv`]) or by awaiting ([`Inbox::recv_async`]), so an async caller steps a session
/// without parking a thread of its own. Dropping it closes the channel.
#[derive(Debug)]
struct Outbox(Arc<Shared>);

/// The handle's side of the event channel.
#[derive(Debug)]
struct Inbox(Arc<Shared>);

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Debug, Default)]
struct Queue {
    events: VecDeque<Event>,
    closed: bool,
    waker: Option<Waker>,
    /// A blocking [`Inbox::recv`] waits on the condvar (an async caller never does: waking
    /// the condvar for it would be a system call for nobody).
    blocked: bool,
}

fn event_channel() -> (Outbox, Inbox) {
    let shared = Arc::new(Shared::default());
    (Outbox(shared.clone()), Inbox(shared))
}

impl Shared {
    fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn wake(&self, mut q: std::sync::MutexGuard<'_, Queue>) {
        let waker = q.waker.take();
        let blocked = q.blocked;
        drop(q);
        if blocked {
            self.ready.notify_one();
        }
        if let Some(w) = waker {
            w.wake();
        }
    }
}

impl Outbox {
    fn send(&self, event: Event) {
        let mut q = self.0.queue();
        q.events.push_back(event);
        self.0.wake(q);
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let mut q = self.0.queue();
        q.closed = true;
        self.0.wake(q);
    }
}

impl Inbox {
    /// The next event, blocking until one comes; `None` once the thread has closed the channel.
    fn recv(&self) -> Option<Event> {
        let mut q = self.0.queue();
        loop {
            if let Some(e) = q.events.pop_front() {
                return Some(e);
            }
            if q.closed {
                return None;
            }
            q.blocked = true;
            q = self.0.ready.wait(q).unwrap_or_else(|p| p.into_inner());
            q.blocked = false;
        }
    }

    /// The next event, awaited.
    async fn recv_async(&self) -> Option<Event> {
        std::future::poll_fn(|cx| {
            let mut q = self.0.queue();
            if let Some(e) = q.events.pop_front() {
                return Poll::Ready(Some(e));
            }
            if q.closed {
                return Poll::Ready(None);
            }
            match &q.waker {
                Some(w) if w.will_wake(cx.waker()) => {}
                _ => q.waker = Some(cx.waker().clone()),
            }
            Poll::Pending
        })
        .await
    }
}

/// A run of JavaScript paused at its host calls.
///
/// [`Session::start`] replays the given journal (recorded results are handed to the code without
/// being reported) and runs until the code completes, fails, or waits for calls the journal has
/// no result for. [`Session::complete`] hands one result to a live session (a *hot* resume, no
/// replay). Starting a new session with [`Session::journal`] is a *cold* resume; both give the
/// same steps, results and journals.
///
/// The JavaScript runs on a thread of its own while the session lives, so that script-mode
/// `fetch` can block; dropping the session ends the code there (it cannot catch that) and the
/// thread, with its JavaScript runtime, goes back to a pool of idle threads (see
/// [`keep_idle_sessions`]). [`Session::start_async`] and [`Session::complete_async`] step it from
/// async code: the caller's task waits for the session thread without blocking a thread.
#[derive(Debug)]
pub struct Session {
    tx: Option<Sender<Command>>,
    rx: Inbox,
    journal: Journal,
    new_from: usize,
    /// Entries moved out by [`Session::drain_new_entries`].
    drained: usize,
    pending: Vec<HostCall>,
    ended: bool,
}

impl Session {
    /// Starts `code` with `input`, replaying `journal`, and runs it to its first step.
    ///
    /// Fails only when the session thread cannot be created; everything about the code itself
    /// (syntax errors included) is reported as [`Step::Failed`].
    pub fn start(
        code: &str,
        input: &Value,
        journal: Journal,
        options: &Options,
    ) -> Result<(Session, Step), Error> {
        let mut session = Self::launch(code, input, journal, options)?;
        let step = session.next_step();
        Ok((session, step))
    }

    /// [`Session::start`] for async callers: waits for the first step without blocking.
    pub async fn start_async(
        code: &str,
        input: &Value,
        journal: Journal,
        options: &Options,
    ) -> Result<(Session, Step), Error> {
        let mut session = Self::launch(code, input, journal, options)?;
        let step = session.next_step_async().await;
        Ok((session, step))
    }

    /// Hands the session to a session thread (an idle one, or a new one).
    fn launch(
        code: &str,
        input: &Value,
        journal: Journal,
        options: &Options,
    ) -> Result<Session, Error> {
        let (tx, thread_rx) = channel::<Command>();
        let (thread_tx, rx) = event_channel();
        let code = code.to_owned();
        let input_json = serde_json::to_string(input).map_err(|e| Error::Invalid {
            input: "input".into(),
            expected: format!("a JSON value ({e})"),
        })?;
        dispatch(Assignment {
            code,
            input_json,
            journal: journal.clone(),
            options: options.clone(),
            tx: thread_tx,
            rx: thread_rx,
        })?;
        Ok(Session {
            tx: Some(tx),
            rx,
            new_from: journal.len(),
            drained: 0,
            journal,
            pending: Vec::new(),
            ended: false,
        })
    }

    /// Hands the result of pending call `seq` to the code and runs to the next step.
    ///
    /// Errors when `seq` is not pending ([`Error::NotPending`], naming the pending seqs) or the
    /// session has ended ([`Error::Ended`]); the session is unchanged then.
    pub fn complete(&mut self, seq: u64, result: CallResult) -> Result<Step, Error> {
        if let Some(step) = self.hand(seq, result)? {
            return Ok(step);
        }
        Ok(self.next_step())
    }

    /// [`Session::complete`] for async callers: waits for the next step without blocking.
    pub async fn complete_async(&mut self, seq: u64, result: CallResult) -> Result<Step, Error> {
        if let Some(step) = self.hand(seq, result)? {
            return Ok(step);
        }
        Ok(self.next_step_async().await)
    }

    /// Sends a result to the session thread; `Some` is the step to report at once (the thread
    /// is gone).
    fn hand(&mut self, seq: u64, result: CallResult) -> Result<Option<Step>, Error> {
        if self.ended {
            return Err(Error::Ended);
        }
        if !self.pending.iter().any(|c| c.seq == seq) {
            return Err(Error::NotPending {
                seq,
                pending: self.pending.iter().map(|c| c.seq).collect(),
            });
        }
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send(Command::Complete(seq, result)).is_ok())
            .unwrap_or(false);
        if !sent {
            self.ended = true;
            return Ok(Some(Step::Failed(Error::Engine(
                "the session thread has stopped".into(),
            ))));
        }
        Ok(None)
    }

    /// The whole journal: the entries the session started with, then those appended since
    /// (except those moved out by [`Session::drain_new_entries`]).
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// How many entries the journal has, counting those moved out by
    /// [`Session::drain_new_entries`].
    pub fn journal_len(&self) -> usize {
        self.journal.len() + self.drained
    }

    /// Entries appended since the last call (or since start): what the caller must persist.
    pub fn take_new_entries(&mut self) -> Vec<JournalEntry> {
        let new = self.journal[self.new_from..].to_vec();
        self.new_from = self.journal.len();
        new
    }

    /// [`Session::take_new_entries`] for a caller that keeps the journal itself (or has no
    /// further use for it): the entries are moved out, not copied, and [`Session::journal`]
    /// no longer holds them.
    pub fn drain_new_entries(&mut self) -> Vec<JournalEntry> {
        let new: Vec<JournalEntry> = self.journal.drain(self.new_from..).collect();
        self.drained += new.len();
        new
    }

    /// Calls waiting for a result (empty once the session has ended).
    pub fn pending(&self) -> &[HostCall] {
        &self.pending
    }

    /// Whether the code has completed or failed.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn next_step(&mut self) -> Step {
        let event = self.rx.recv();
        self.take(event)
    }

    async fn next_step_async(&mut self) -> Step {
        let event = self.rx.recv_async().await;
        self.take(event)
    }

    fn take(&mut self, event: Option<Event>) -> Step {
        match event {
            Some(event) => {
                self.journal.extend(event.entries);
                match &event.step {
                    Step::Pending(calls) => self.pending = calls.clone(),
                    _ => {
                        self.pending.clear();
                        self.ended = true;
                    }
                }
                event.step
            }
            None => {
                self.pending.clear();
                self.ended = true;
                Step::Failed(Error::Engine(
                    "the session thread stopped unexpectedly".into(),
                ))
            }
        }
    }
}

impl Session {
    /// Ends the session and waits for its thread to free the JavaScript runtime. Dropping a
    /// session does the same without waiting.
    pub fn close(mut self) {
        self.tx.take();
        // The thread drops its end of the channel once the runtime is torn down.
        while self.rx.recv().is_some() {}
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing the channel makes the thread's next wait fail; the guard then interrupts
        // whatever the code does (even a `catch` that loops) and the thread frees the runtime
        // and ends on its own, off the caller's path.
        self.tx.take();
    }
}

/// Everything a session thread needs to run one session.
#[derive(Debug)]
struct Assignment {
    code: String,
    input_json: String,
    journal: Journal,
    options: Options,
    tx: Outbox,
    rx: Receiver<Command>,
}

/// Idle session threads (with the stack size they were built for), most recent last.
static IDLE: Mutex<Vec<Idle>> = Mutex::new(Vec::new());

/// An idle session thread: the stack size it was built for, a number naming it, and where to
/// send its next session.
type Idle = (usize, u64, Sender<Assignment>);

/// Numbers idle threads, so one that times out can find (and take) its own entry.
static NEXT_IDLE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// How long a session thread waits in the idle pool before it ends (freeing its stack and
/// warm runtime): a burst of sessions does not keep its threads forever.
const IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(2);

/// How many idle session threads (each keeping a warm JavaScript runtime) are kept.
static MAX_IDLE: AtomicUsize = AtomicUsize::new(8);

/// Keeps up to `n` idle session threads (each with a warm JavaScript runtime) instead of the
/// default 8, so that a worker running `n` sessions at once reuses threads rather than
/// spawning one per session; only ever raises the number. Threads are made on demand: an
/// idle process holds none.
pub fn keep_idle_sessions(n: usize) {
    MAX_IDLE.fetch_max(n, Ordering::Relaxed);
}

fn idle() -> std::sync::MutexGuard<'static, Vec<Idle>> {
    IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Hands `assignment` to an idle session thread, or spawns one.
fn dispatch(mut assignment: Assignment) -> Result<(), Error> {
    let stack = assignment.options.limits.stack_bytes;
    loop {
        let worker = {
            let mut idle = idle();
            let found = idle.iter().rposition(|(s, _, _)| *s >= stack);
            found.map(|i| idle.swap_remove(i))
        };
        let Some((_, _, worker)) = worker else { break };
        match worker.send(assignment) {
            Ok(()) => return Ok(()),
            Err(returned) => assignment = returned.0,
        }
    }
    std::thread::Builder::new()
        .name("fetch-vm-session".into())
        .stack_size(stack.saturating_add(4 << 20))
        .spawn(move || session_thread(stack, assignment))
        .map(drop)
        .map_err(|e| Error::Engine(format!("cannot spawn a session thread: {e}")))
}

/// A session thread: runs sessions one after another, parking in the idle pool in between.
fn session_thread(stack: usize, first: Assignment) {
    let mut engine = QuickJs::default();
    let mut next = first;
    loop {
        session_main(next, &mut engine);
        let (tx, rx) = channel();
        let me = NEXT_IDLE.fetch_add(1, Ordering::Relaxed);
        {
            let mut idle = idle();
            if idle.len() >= MAX_IDLE.load(Ordering::Relaxed) {
                return;
            }
            idle.push((stack, me, tx));
        }
        let assignment = match rx.recv_timeout(IDLE_FOR) {
            Ok(a) => Ok(a),
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                // leave the pool, unless a session is already on its way to this thread
                let mut idle = idle();
                match idle.iter().position(|(_, id, _)| *id == me) {
                    Some(i) => {
                        idle.swap_remove(i);
                        return;
                    }
                    None => {
                        drop(idle);
                        rx.recv()
                    }
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return,
        };
        match assignment {
            Ok(assignment) => next = assignment,
            Err(_) => return,
        }
    }
}

/// Runs one session on this thread.
fn session_main(assignment: Assignment, engine: &mut QuickJs) {
    let Assignment {
        code,
        input_json,
        journal,
        options,
        tx,
        rx,
    } = assignment;
    let code = code.as_str();
    let input_json = input_json.as_str();
    let scanned = scan(code);
    let kind = match options.mode {
        Mode::Script => Kind::Script,
        Mode::Module => Kind::Module,
        _ => {
            if scanned.is_module {
                Kind::Module
            } else {
                Kind::Script
            }
        }
    };
    let guard = Arc::new(Guard::new());
    let driver = Rc::new(RefCell::new(Driver::new(
        journal,
        options.limits.clone(),
        guard.clone(),
        tx,
        rx,
    )));
    let job = Job {
        code,
        kind,
        object_tail: if kind == Kind::Script {
            scanned.object_tail
        } else {
            None
        },
        input_json,
        task_name: options.task_name.as_deref(),
        limits: &options.limits,
    };
    guard.start_slice(options.limits.cpu_slice_ms);
    let limits = &options.limits;
    let mut report = |outcome: Outcome| {
        let mut d = driver.borrow_mut();
        if d.evicted {
            return;
        }
        let step = d.final_step(outcome, &guard, limits);
        let entries = std::mem::take(&mut d.fresh);
        if let Some((tx, _)) = d.link.take() {
            tx.send(Event { entries, step });
        }
    };
    engine.run(&job, driver.clone(), guard.clone(), &mut report);
    // The engine may keep the driver alive a little longer (its natives); the handle must see
    // the channels close now.
    driver.borrow_mut().link = None;
}

/// The session side of the engine boundary: seq numbering, replay, determinism checks, limits.
struct Driver {
    /// The entries the session started with, replayed in order. Entries made live go to
    /// `fresh` only: a live call's seq is past every recorded one, so nothing looks it up again.
    journal: Journal,
    /// Next journal entry to hand out during replay (`journal.len()` once live).
    cursor: usize,
    /// seq → index in `journal`.
    recorded: HashMap<u64, usize>,
    next_seq: u64,
    /// Calls made and not yet answered.
    issued: BTreeMap<u64, HostCall>,
    /// Entries appended since the last event.
    fresh: Vec<JournalEntry>,
    limits: Limits,
    guard: Arc<Guard>,
    /// The channels to the handle; `None` once the session is over.
    link: Option<(Outbox, Receiver<Command>)>,
    abort: Option<Error>,
    evicted: bool,
}

impl Driver {
    fn new(
        journal: Journal,
        limits: Limits,
        guard: Arc<Guard>,
        tx: Outbox,
        rx: Receiver<Command>,
    ) -> Self {
        let recorded = journal
            .iter()
            .enumerate()
            .map(|(i, e)| (e.seq, i))
            .collect();
        Driver {
            journal,
            cursor: 0,
            recorded,
            next_seq: 0,
            issued: BTreeMap::new(),
            fresh: Vec::new(),
            limits,
            guard,
            link: Some((tx, rx)),
            abort: None,
            evicted: false,
        }
    }

    /// Ends the run with `error`; returns the message thrown into JavaScript.
    fn fail(&mut self, error: Error) -> String {
        let msg = error.to_string();
        if self.abort.is_none() {
            self.abort = Some(error);
        }
        self.guard.stop();
        msg
    }

    fn refused(&self) -> Option<String> {
        if self.evicted {
            return Some("the session was closed".into());
        }
        self.abort.as_ref().map(|e| e.to_string())
    }

    /// Assigns the next seq to a call, checking it against the journal and the limits.
    fn next_call(&mut self, kind: CallKind, request: &Value) -> Result<u64, String> {
        let seq = self.next_seq;
        if seq >= self.limits.max_journal_entries {
            return Err(self.fail(Error::JournalTooLong {
                limit: self.limits.max_journal_entries,
            }));
        }
        if let Some(&idx) = self.recorded.get(&seq) {
            let entry = &self.journal[idx];
            if entry.kind != kind || entry.request != *request {
                let recorded = json!({ "kind": entry.kind, "request": entry.request });
                return Err(self.fail(Error::NonDeterminism {
                    seq,
                    recorded,
                    now: json!({ "kind": kind, "request": request }),
                }));
            }
        }
        self.next_seq += 1;
        Ok(seq)
    }

    /// The step a finished run ends with.
    fn final_step(&mut self, outcome: Outcome, guard: &Guard, limits: &Limits) -> Step {
        if let Some(e) = self.abort.take() {
            Step::Failed(e)
        } else if guard.timed_out() {
            Step::Failed(Error::Timeout {
                limit_ms: limits.cpu_slice_ms,
            })
        } else {
            match outcome {
                Outcome::OutOfMemory => Step::Failed(Error::MemoryLimit {
                    limit_bytes: limits.memory_bytes,
                }),
                Outcome::StackOverflow => Step::Failed(Error::StackLimit {
                    limit_bytes: limits.stack_bytes,
                }),
                Outcome::Interrupted => {
                    Step::Failed(Error::Engine("execution was interrupted".into()))
                }
                Outcome::Failed(msg) => Step::Failed(Error::Engine(msg)),
                other => match self.leftover() {
                    Some(e) => Step::Failed(e),
                    None => match other {
                        Outcome::Value(text) if text.len() > limits.max_result_bytes => {
                            Step::Failed(Error::ResultTooLarge {
                                size: text.len(),
                                limit: limits.max_result_bytes,
                            })
                        }
                        Outcome::Value(text) => match serde_json::from_str(&text) {
                            Ok(v) => Step::Completed(v),
                            Err(e) => Step::Failed(Error::NotSerializable {
                                message: e.to_string(),
                            }),
                        },
                        Outcome::Thrown(js) => Step::Failed(Error::Js(js)),
                        Outcome::NotSerializable(message) => {
                            Step::Failed(Error::NotSerializable { message })
                        }
                        _ => Step::Failed(Error::Engine("unexpected engine outcome".into())),
                    },
                },
            }
        }
    }

    /// A replay divergence: journal entries the code never reached.
    fn leftover(&self) -> Option<Error> {
        let entry = self.journal.get(self.cursor)?;
        Some(Error::NonDeterminism {
            seq: entry.seq,
            recorded: json!({ "kind": entry.kind, "request": entry.request }),
            now: Value::Null,
        })
    }

    fn delivery(entry: &JournalEntry) -> Delivery {
        let (ok, json) = match &entry.result {
            CallResult::Ok(v) if entry.kind == CallKind::Fetch => (true, fetch_delivery(v)),
            CallResult::Ok(v) => (true, serde_json::to_string(v)),
            CallResult::Error(info) => (false, serde_json::to_string(info)),
        };
        Delivery {
            seq: entry.seq,
            ok,
            json: json.unwrap_or_else(|_| "null".into()),
        }
    }
}

/// A fetch response as the prelude reads it: its `headers` as JSON text (`headersJson`), which
/// the prelude parses only when the code asks for them (a script-mode `fetch` that gets JSON
/// back never does): an object of a dozen headers is most of what parsing a response costs.
fn fetch_delivery(response: &Value) -> serde_json::Result<String> {
    match response.as_object() {
        Some(map) if let Some(headers) = map.get("headers") => {
            let headers_json = serde_json::to_string(headers)?;
            serde_json::to_string(&FetchDelivery { map, headers_json })
        }
        _ => serde_json::to_string(response),
    }
}

/// A fetch response's fields in one pass, `headers` written as `headersJson`: its JSON text.
struct FetchDelivery<'a> {
    map: &'a serde_json::Map<String, Value>,
    headers_json: String,
}

impl serde::Serialize for FetchDelivery<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut out = s.serialize_map(Some(self.map.len()))?;
        for (key, value) in self.map {
            if key == "headers" {
                out.serialize_entry("headersJson", &self.headers_json)?;
            } else {
                out.serialize_entry(key, value)?;
            }
        }
        out.end()
    }
}

impl Host for Driver {
    fn request(&mut self, kind: &str, request_json: &str) -> Result<u64, String> {
        if let Some(msg) = self.refused() {
            return Err(msg);
        }
        let Some(kind) = CallKind::parse(kind).filter(|k| *k != CallKind::Log) else {
            return Err(format!("unknown host call kind {kind:?}"));
        };
        if request_json.len() > self.limits.max_request_bytes {
            return Err(self.fail(Error::RequestTooLarge {
                seq: self.next_seq,
                kind: kind.to_string(),
                size: request_json.len(),
                limit: self.limits.max_request_bytes,
            }));
        }
        let request: Value = serde_json::from_str(request_json).map_err(|e| e.to_string())?;
        let seq = self.next_call(kind, &request)?;
        self.issued.insert(seq, HostCall { seq, kind, request });
        Ok(seq)
    }

    fn wait(&mut self) -> Result<Delivery, String> {
        if let Some(msg) = self.refused() {
            return Err(msg);
        }
        if let Some(entry) = self.journal.get(self.cursor) {
            if entry.kind == CallKind::Log || !self.issued.contains_key(&entry.seq) {
                let e = Error::NonDeterminism {
                    seq: entry.seq,
                    recorded: json!({ "kind": entry.kind, "request": entry.request }),
                    now: Value::Null,
                };
                return Err(self.fail(e));
            }
            self.cursor += 1;
            self.issued.remove(&entry.seq);
            // Each answered call starts a new CPU slice, in replay exactly as when live.
            self.guard.start_slice(self.limits.cpu_slice_ms);
            return Ok(Self::delivery(entry));
        }
        // Live: report every call still waiting, and block until the caller answers one.
        if self.issued.is_empty() {
            return Err(self.fail(Error::Stalled));
        }
        self.guard.pause();
        let event = Event {
            entries: std::mem::take(&mut self.fresh),
            step: Step::Pending(self.issued.values().cloned().collect()),
        };
        let command = match &self.link {
            Some((tx, rx)) => {
                tx.send(event);
                rx.recv().ok()
            }
            None => None,
        };
        let Some(Command::Complete(seq, result)) = command else {
            self.evicted = true;
            self.guard.stop();
            return Err("the session was closed".into());
        };
        let Some(call) = self.issued.remove(&seq) else {
            return Err(self.fail(Error::Engine(format!("call {seq} was not pending"))));
        };
        let entry = JournalEntry {
            seq,
            kind: call.kind,
            request: call.request,
            result,
        };
        let delivery = Self::delivery(&entry);
        self.fresh.push(entry);
        self.guard.start_slice(self.limits.cpu_slice_ms);
        Ok(delivery)
    }

    fn log(&mut self, level: &str, message: &str) -> Result<(), String> {
        if let Some(msg) = self.refused() {
            return Err(msg);
        }
        let request = json!({ "level": level, "message": message });
        let size = request.to_string().len();
        if size > self.limits.max_request_bytes {
            return Err(self.fail(Error::RequestTooLarge {
                seq: self.next_seq,
                kind: "log".into(),
                size,
                limit: self.limits.max_request_bytes,
            }));
        }
        let seq = self.next_call(CallKind::Log, &request)?;
        if let Some(entry) = self.journal.get(self.cursor) {
            if entry.seq != seq {
                let e = Error::NonDeterminism {
                    seq,
                    recorded: json!({ "kind": entry.kind, "request": entry.request }),
                    now: json!({ "kind": CallKind::Log, "request": request }),
                };
                return Err(self.fail(e));
            }
            self.cursor += 1;
            return Ok(());
        }
        let entry = JournalEntry {
            seq,
            kind: CallKind::Log,
            request,
            result: CallResult::Ok(Value::Null),
        };
        self.fresh.push(entry);
        Ok(())
    }
}
