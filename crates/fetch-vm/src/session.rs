//! A live run: the coroutine that owns the JavaScript engine, and the handle that steps it.
//!
//! A session's JavaScript runs on a stack of its own (a [`corosensei`] coroutine), resumed on
//! the thread of whoever steps it: [`Session::start`] and [`Session::complete`] run the code
//! right there until it waits for the host, which suspends the coroutine (script-mode `fetch`
//! blocks only the code, never a thread). No thread is switched to or woken on a step. What a
//! run leaves behind — freeing its context, preparing the next one — is done by one janitor
//! thread once the run has ended, off the caller's path; the engine, with its warm runtime and
//! stack, then waits in an idle pool for the next session.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use corosensei::stack::DefaultStack;
use corosensei::{Coroutine, CoroutineResult, Yielder};
use serde_json::{Value, json};

use crate::engine::quickjs::QuickJs;
use crate::engine::{Delivery, Engine, Guard, Host, Job, Kind, Outcome};
use crate::source::scan;
use crate::{
    CallKind, CallResult, Error, HostCall, Journal, JournalEntry, Limits, Mode, Options, Step,
};

/// What a session's coroutine is resumed with.
enum Resume {
    /// Run this session.
    Assign(Assignment),
    /// The result of a pending call.
    Complete(u64, CallResult),
    /// The session is over (its last step was taken, or its handle dropped): end the code if it
    /// still runs, free what the run held, and wait for the next session.
    Close,
    /// Return: the coroutine frees its runtime and ends.
    Exit,
}

/// What a session's coroutine hands back when it suspends.
enum Yield {
    /// A step of the session.
    Event(Event),
    /// Between sessions.
    Idle,
}

/// A step, with the journal entries made since the previous one.
#[derive(Debug)]
struct Event {
    /// Journal entries appended since the previous event (not replayed ones).
    entries: Vec<JournalEntry>,
    step: Step,
}

/// A JavaScript engine on a stack of its own: a coroutine that runs sessions one after another
/// (see [`vm_main`]), suspended at a host call of its session, at the session's end, or between
/// sessions.
struct Vm {
    co: Coroutine<Resume, Yield, (), DefaultStack>,
    /// The JavaScript stack limit it was made for (its stack is larger).
    stack: usize,
    idle_since: Instant,
}

// SAFETY: a coroutine is `!Send` because the values on its stack might not be. Everything on a
// `Vm`'s stack while it is suspended belongs to the session and engine it runs (the QuickJS
// runtime with its contexts, the `Rc`s of the session's driver): created on that stack, reached
// only from it, and moved together with it. QuickJS keeps no thread-local state and reads the
// stack pointer only against the stack top recorded on this stack, and no frame alive across a
// suspension holds a thread-local's address, so the coroutine may be resumed on another thread.
// `&Vm` gives no access to anything, so sharing one is harmless too.
unsafe impl Send for Vm {}
unsafe impl Sync for Vm {}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("stack", &self.stack).finish()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Stack beyond the JavaScript limit, for the Rust and C frames below and around the code (as
/// a thread's stack would have: reserved, not committed, until used).
const STACK_MARGIN: usize = 4 << 20;

/// Engines made by this process (see [`session_engines_made`]).
static MADE: AtomicU64 = AtomicU64::new(0);
/// Engines that exist (made and not freed).
static LIVE: AtomicUsize = AtomicUsize::new(0);

impl Vm {
    fn new(stack: usize) -> Result<Vm, Error> {
        let memory = DefaultStack::new(stack.saturating_add(STACK_MARGIN))
            .map_err(|e| Error::Engine(format!("cannot allocate a session's stack: {e}")))?;
        MADE.fetch_add(1, Ordering::Relaxed);
        LIVE.fetch_add(1, Ordering::Relaxed);
        Ok(Vm {
            co: Coroutine::with_stack(memory, vm_main),
            stack,
            idle_since: Instant::now(),
        })
    }

    /// Resumes the coroutine; `None` when it returned or panicked (it is done then, and can be
    /// dropped).
    fn resume(&mut self, input: Resume) -> Option<Yield> {
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.co.resume(input))) {
            Ok(CoroutineResult::Yield(y)) => Some(y),
            Ok(CoroutineResult::Return(())) | Err(_) => None,
        }
    }

    /// Ends the session it runs (if any) and frees what it left; `Some(self)` once it waits for
    /// the next session.
    fn finish(mut self) -> Option<Vm> {
        // the session's code ends at its next host call (refused) or interrupt check; the
        // engine then reports nothing more and tears the run down
        for _ in 0..4 {
            match self.resume(Resume::Close)? {
                Yield::Idle => {
                    self.idle_since = Instant::now();
                    return Some(self);
                }
                Yield::Event(_) => {}
            }
        }
        // Never seen: a coroutine that will not reach its idle point is not dropped (that
        // would unwind its stack through the engine's C frames), it is left as it is.
        std::mem::forget(self);
        None
    }

    /// Lets the coroutine return, freeing its runtime; then drops it.
    fn exit(mut self) {
        if self.co.started() && !self.co.done() {
            let _ = self.resume(Resume::Exit);
        }
        if self.co.started() && !self.co.done() {
            std::mem::forget(self);
        }
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
/// The JavaScript runs on a stack of its own, on the thread that calls `start` or `complete`,
/// until the code's next step; dropping the session ends the code (it cannot catch that) on the
/// process's janitor thread, which then frees the run's context and keeps the engine for the
/// next session (see [`keep_idle_sessions`]). [`Session::start_async`] and
/// [`Session::complete_async`] are the same for async callers: a step runs on the caller's task
/// (a step is the code's own CPU time, up to its CPU slice).
#[derive(Debug)]
pub struct Session {
    /// The engine while the session runs (`None` once it has ended).
    vm: Option<Vm>,
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
    /// Fails only when no engine can be made (its stack cannot be allocated); everything about
    /// the code itself (syntax errors included) is reported as [`Step::Failed`].
    pub fn start(
        code: &str,
        input: &Value,
        journal: Journal,
        options: &Options,
    ) -> Result<(Session, Step), Error> {
        let input_json = serde_json::to_string(input).map_err(|e| Error::Invalid {
            input: "input".into(),
            expected: format!("a JSON value ({e})"),
        })?;
        let stack = options.limits.stack_bytes;
        let vm = engine_for(stack)?;
        let mut session = Session {
            vm: Some(vm),
            new_from: journal.len(),
            drained: 0,
            journal: journal.clone(),
            pending: Vec::new(),
            ended: false,
        };
        let step = session.step(Resume::Assign(Assignment {
            code: code.to_owned(),
            input_json,
            journal,
            options: options.clone(),
        }));
        Ok((session, step))
    }

    /// [`Session::start`] for async callers (the first step runs on the caller's task).
    pub async fn start_async(
        code: &str,
        input: &Value,
        journal: Journal,
        options: &Options,
    ) -> Result<(Session, Step), Error> {
        Self::start(code, input, journal, options)
    }

    /// Hands the result of pending call `seq` to the code and runs to the next step.
    ///
    /// Errors when `seq` is not pending ([`Error::NotPending`], naming the pending seqs) or the
    /// session has ended ([`Error::Ended`]); the session is unchanged then.
    pub fn complete(&mut self, seq: u64, result: CallResult) -> Result<Step, Error> {
        if self.ended {
            return Err(Error::Ended);
        }
        if !self.pending.iter().any(|c| c.seq == seq) {
            return Err(Error::NotPending {
                seq,
                pending: self.pending.iter().map(|c| c.seq).collect(),
            });
        }
        Ok(self.step(Resume::Complete(seq, result)))
    }

    /// [`Session::complete`] for async callers (the step runs on the caller's task).
    pub async fn complete_async(&mut self, seq: u64, result: CallResult) -> Result<Step, Error> {
        self.complete(seq, result)
    }

    /// Resumes the engine with `input` and takes the step it reports. At the session's end the
    /// engine goes to the janitor, which frees the run's context.
    fn step(&mut self, input: Resume) -> Step {
        let event = match self.vm.as_mut().map(|vm| vm.resume(input)) {
            Some(Some(Yield::Event(event))) => Some(event),
            // the engine is between sessions (it ended this one without a step) or done
            Some(Some(Yield::Idle)) => {
                if let Some(vm) = self.vm.take() {
                    park(vm);
                }
                None
            }
            Some(None) => {
                self.vm = None;
                None
            }
            None => None,
        };
        let step = self.take(event);
        if self.ended
            && let Some(vm) = self.vm.take()
        {
            janitor(vm);
        }
        step
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
                    "the session's engine stopped unexpectedly".into(),
                ))
            }
        }
    }
}

impl Session {
    /// Ends the session and frees its JavaScript context on this thread, before returning.
    /// Dropping a session does the same on the janitor thread.
    pub fn close(mut self) {
        if let Some(vm) = self.vm.take()
            && let Some(vm) = vm.finish()
        {
            park(vm);
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // The janitor resumes the engine with `Close`: the code's next host call fails and the
        // guard interrupts whatever the code does (even a `catch` that loops); the engine then
        // frees the run's context, off the caller's path.
        if let Some(vm) = self.vm.take() {
            janitor(vm);
        }
    }
}

/// How many session engines (a stack and a JavaScript runtime each) this process has made. A
/// process that runs sessions one after another makes one; a worker, about as many as it runs
/// at once.
pub fn session_engines_made() -> u64 {
    MADE.load(Ordering::Relaxed)
}

/// Everything an engine needs to run one session.
#[derive(Debug)]
struct Assignment {
    code: String,
    input_json: String,
    journal: Journal,
    options: Options,
}

/// Idle engines, most recent last.
static IDLE: Mutex<Vec<Vm>> = Mutex::new(Vec::new());

/// How long an engine waits in the idle pool before it is freed (its stack and warm runtime):
/// a burst of sessions does not keep its engines forever.
const IDLE_FOR: Duration = Duration::from_secs(2);

/// How many idle engines (each keeping a warm JavaScript runtime) are kept.
static MAX_IDLE: AtomicUsize = AtomicUsize::new(8);

/// Keeps up to `n` idle session engines (each a stack with a warm JavaScript runtime) instead
/// of the default 8, so that a worker running `n` sessions at once reuses engines rather than
/// making one per session; only ever raises the number. Engines are made on demand: an idle
/// process holds none, and one idle for 2 s is freed.
pub fn keep_idle_sessions(n: usize) {
    MAX_IDLE.fetch_max(n, Ordering::Relaxed);
}

fn idle() -> std::sync::MutexGuard<'static, Vec<Vm>> {
    IDLE.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The most recently parked idle engine made for at least `stack` bytes of JavaScript stack.
fn take_idle(stack: usize) -> Option<Vm> {
    let mut idle = idle();
    let found = idle.iter().rposition(|vm| vm.stack >= stack)?;
    Some(idle.remove(found))
}

/// Puts an engine that waits for its next session in the idle pool, or frees it when the pool
/// is full.
fn park(vm: Vm) {
    let mut idle = idle();
    if idle.len() < MAX_IDLE.load(Ordering::Relaxed) {
        idle.push(vm);
    } else {
        drop(idle);
        vm.exit();
    }
}

/// Frees the engines idle for longer than [`IDLE_FOR`].
fn trim() {
    let old: Vec<Vm> = {
        let mut idle = idle();
        let keep = idle
            .iter()
            .position(|vm| vm.idle_since.elapsed() < IDLE_FOR)
            .unwrap_or(idle.len());
        idle.drain(..keep).collect()
    };
    for vm in old {
        vm.exit();
    }
}

/// Engines whose session is over, waiting for the janitor thread, and how many it is finishing.
struct Backlog {
    queue: VecDeque<Vm>,
    finishing: usize,
    /// Whether the janitor thread runs (`None`: not made yet; `Some(false)`: it could not be).
    thread: Option<bool>,
}

static BACKLOG: Mutex<Backlog> = Mutex::new(Backlog {
    queue: VecDeque::new(),
    finishing: 0,
    thread: None,
});
/// Wakes the janitor thread: an engine was queued.
static QUEUED: Condvar = Condvar::new();
/// Wakes a session start waiting for an engine: the janitor parked one.
static FINISHED: Condvar = Condvar::new();

/// Engines queued for the janitor at most; past them, a session's end frees its context on the
/// caller's thread (a caller that ends sessions faster than the janitor frees them does not
/// pile up engines).
const MAX_BACKLOG: usize = 4;
/// How long a session start waits for an engine the janitor is finishing (about one context's
/// teardown and preparation) before it makes a new one.
const WAIT_FOR_ENGINE: Duration = Duration::from_millis(5);

/// Whether the janitor thread is to run in the cores' idle time (see
/// [`clean_up_in_idle_time`]).
static JANITOR_IN_IDLE_TIME: AtomicBool = AtomicBool::new(false);

/// Runs this process's janitor thread — which frees the context of each finished session and
/// prepares the next one on its engine — under Linux's `SCHED_IDLE` policy from now on: it then
/// works only while no other thread of the machine wants a core, so under load its work fills
/// the moments the cores would idle (while every run in flight waits for a commit or a
/// response) instead of taking turns with the runs' steps. A session start then never waits for
/// an engine the janitor is finishing (the janitor may not get a core soon): it takes one the
/// janitor has not begun, or makes one. For a worker process that keeps many runs in flight
/// (`sequential-ecosystem worker` asks for it); elsewhere than Linux it changes nothing.
///
/// Measured on the engine benchmark's worker (2 cores, 64 runs in flight, seven interleaved
/// pairs): the cores idled 4–10% of the window instead of 12–14%, about 5% more runs per second
/// at the same CPU per run (docs/benchmarks.md).
pub fn clean_up_in_idle_time() {
    JANITOR_IN_IDLE_TIME.store(true, Ordering::Relaxed);
}

fn backlog() -> std::sync::MutexGuard<'static, Backlog> {
    BACKLOG.lock().unwrap_or_else(|p| p.into_inner())
}

/// An engine for a session that needs `stack` bytes of JavaScript stack: an idle one; else a
/// new one while there are fewer engines than the idle pool keeps (the janitor then frees one
/// run's context while the next runs on another); else one whose session is over, finished
/// here (queued) or by the janitor (waited for, briefly); else a new one.
fn engine_for(stack: usize) -> Result<Vm, Error> {
    let deadline = Instant::now() + WAIT_FOR_ENGINE;
    loop {
        if let Some(vm) = take_idle(stack) {
            return Ok(vm);
        }
        if LIVE.load(Ordering::Relaxed) < MAX_IDLE.load(Ordering::Relaxed) {
            return Vm::new(stack);
        }
        let mut b = backlog();
        if let Some(i) = b.queue.iter().position(|vm| vm.stack >= stack) {
            let vm = b.queue.remove(i);
            drop(b);
            match vm.and_then(Vm::finish) {
                Some(vm) => return Ok(vm),
                None => continue,
            }
        }
        let now = Instant::now();
        if b.finishing == 0 || now >= deadline || JANITOR_IN_IDLE_TIME.load(Ordering::Relaxed) {
            drop(b);
            return Vm::new(stack);
        }
        drop(FINISHED.wait_timeout(b, deadline - now));
    }
}

/// Hands an engine whose session is over to the janitor thread, which ends the session's code
/// if it still runs, frees its context, prepares the next and parks the engine; does that here
/// when the janitor is behind or cannot be made.
fn janitor(vm: Vm) {
    let mut b = backlog();
    if b.thread.is_none() {
        // the new thread takes its scheduling policy before anything is queued for it
        let (ready, started) = std::sync::mpsc::channel();
        let made = std::thread::Builder::new()
            .name("fetch-vm-janitor".into())
            .spawn(move || janitor_thread(ready))
            .is_ok()
            && started.recv().is_ok();
        b.thread = Some(made);
    }
    if b.thread == Some(true) && b.queue.len() < MAX_BACKLOG {
        b.queue.push_back(vm);
        drop(b);
        QUEUED.notify_one();
        return;
    }
    drop(b);
    if let Some(vm) = vm.finish() {
        park(vm);
    }
}

/// Puts the janitor thread under SCHED_IDLE once [`clean_up_in_idle_time`] asks for it.
fn idle_time_if_asked(in_idle_time: &mut bool) {
    if !*in_idle_time && JANITOR_IN_IDLE_TIME.load(Ordering::Relaxed) {
        *in_idle_time = true;
        // (lowering a thread's own priority is never refused; were it, the janitor would simply
        // keep the policy it has)
        let _ = sequential_support::process::idle_scheduling();
    }
}

/// The janitor's loop; `ready` is told once the thread has taken its scheduling policy (see
/// [`clean_up_in_idle_time`]; asked for later, the policy is taken at the next turn).
fn janitor_thread(ready: std::sync::mpsc::Sender<()>) {
    let mut in_idle_time = false;
    idle_time_if_asked(&mut in_idle_time);
    let _ = ready.send(());
    let mut b = backlog();
    loop {
        idle_time_if_asked(&mut in_idle_time);
        let Some(vm) = b.queue.pop_front() else {
            let (next, _) = QUEUED
                .wait_timeout(b, IDLE_FOR / 2)
                .unwrap_or_else(|p| p.into_inner());
            drop(next);
            trim();
            b = backlog();
            continue;
        };
        b.finishing += 1;
        drop(b);
        if let Some(vm) = vm.finish() {
            park(vm);
        }
        trim();
        b = backlog();
        b.finishing -= 1;
        FINISHED.notify_all();
    }
}

/// An engine's coroutine: runs sessions one after another, suspending between them.
fn vm_main(yielder: &Yielder<Resume, Yield>, first: Resume) {
    let mut engine = QuickJs::default();
    let mut next = first;
    loop {
        match next {
            Resume::Assign(assignment) => session_main(assignment, &mut engine, yielder),
            Resume::Exit => return,
            // a session that ended before its handle said so
            Resume::Complete(..) | Resume::Close => {}
        }
        next = yielder.suspend(Yield::Idle);
    }
}

/// Runs one session on this coroutine.
fn session_main(assignment: Assignment, engine: &mut QuickJs, yielder: &Yielder<Resume, Yield>) {
    let Assignment {
        code,
        input_json,
        journal,
        options,
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
        yielder,
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
        let (link, event) = {
            let mut d = driver.borrow_mut();
            if d.evicted {
                return;
            }
            let step = d.final_step(outcome, &guard, limits);
            let entries = std::mem::take(&mut d.fresh);
            (d.link.take(), Event { entries, step })
        };
        if let Some(link) = link {
            // the caller has its answer; the teardown below waits for the janitor
            link.suspend(Yield::Event(event));
        }
    };
    engine.run(&job, driver.clone(), guard.clone(), &mut report);
    driver.borrow_mut().link = None;
}

/// The way from the session's code back to its handle: the yielder of the coroutine it runs on.
#[derive(Clone, Copy)]
struct Link(*const Yielder<Resume, Yield>);

impl Link {
    /// Suspends the coroutine with `y`; returns what it is resumed with.
    fn suspend(self, y: Yield) -> Resume {
        // SAFETY: the yielder is the argument of the coroutine's main function (`vm_main`),
        // which outlives every session it runs; a `Link` is used only on that coroutine, while
        // its session runs (`session_main` clears it before returning).
        unsafe { &*self.0 }.suspend(y)
    }
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
    /// The way back to the handle; `None` once the session is over.
    link: Option<Link>,
    abort: Option<Error>,
    evicted: bool,
}

impl Driver {
    fn new(
        journal: Journal,
        limits: Limits,
        guard: Arc<Guard>,
        yielder: &Yielder<Resume, Yield>,
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
            link: Some(Link(yielder)),
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
        let command = match self.link {
            Some(link) => link.suspend(Yield::Event(event)),
            None => Resume::Close,
        };
        let Resume::Complete(seq, result) = command else {
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
