//! The boundary between session logic and a JavaScript engine: a backend implements [`Engine`].
//!
//! Everything engine-independent lives outside the backend: the JavaScript glue
//! (`prelude.js`: fetch, Response, ctx, console, Date/Math/crypto interposition) talks to the
//! host through three native functions (`request`, `wait`, `log`) whose Rust side is [`Host`].
//! A V8 backend would implement [`Engine::run`] the same way: create an isolate with the limits,
//! expose the three natives, evaluate `prelude.js`, then the task, and drive the job queue.

pub(crate) mod quickjs;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::{JsError, Limits};

/// The JavaScript glue shared by every backend.
pub(crate) const PRELUDE: &str = include_str!("prelude.js");

/// Which way the task code is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Script,
    Module,
}

/// One run of task code.
#[derive(Debug)]
pub(crate) struct Job<'a> {
    pub code: &'a str,
    pub kind: Kind,
    /// Byte range of a final `{ … }` statement that may be an object literal (script mode).
    pub object_tail: Option<(usize, usize)>,
    pub input_json: &'a str,
    pub task_name: Option<&'a str>,
    pub limits: &'a Limits,
}

/// A completion handed to the code by [`Host::wait`].
#[derive(Debug)]
pub(crate) struct Delivery {
    pub seq: u64,
    pub ok: bool,
    pub json: String,
}

/// What the engine needs from the session: the three natives. An `Err` carries a message the
/// engine throws into JavaScript; the session has then already decided the run's fate.
pub(crate) trait Host {
    /// Registers a host call; returns its seq.
    fn request(&mut self, kind: &str, request_json: &str) -> Result<u64, String>;
    /// The next completion to apply (blocking until the caller supplies one when live).
    fn wait(&mut self) -> Result<Delivery, String>;
    /// Records a console line.
    fn log(&mut self, level: &str, message: &str) -> Result<(), String>;
}

/// How a run ended, from the engine's point of view.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// The result, as JSON text.
    Value(String),
    /// An uncaught exception.
    Thrown(JsError),
    /// The result could not be turned into JSON.
    NotSerializable(String),
    /// The heap limit was hit.
    OutOfMemory,
    /// The stack limit was hit.
    StackOverflow,
    /// Execution was interrupted (CPU slice, abort or eviction; see [`Guard`]).
    Interrupted,
    /// The engine itself failed.
    Failed(String),
}

/// A JavaScript engine backend.
pub(crate) trait Engine {
    /// Runs `job` to its end, calling `host` for every host call, and hands the outcome to
    /// `report` *before* tearing the engine down (teardown is off the caller's critical path).
    fn run(
        &mut self,
        job: &Job<'_>,
        host: Rc<RefCell<dyn Host>>,
        guard: Arc<Guard>,
        report: &mut dyn FnMut(Outcome),
    );
}

/// Shared state of the interrupt handler: a CPU-slice deadline and a stop flag. The monotonic
/// clock read here only enforces the limit; JavaScript never observes it.
#[derive(Debug)]
pub(crate) struct Guard {
    base: Instant,
    /// Nanoseconds since `base` after which the slice is over; 0 = no slice running.
    deadline: AtomicU64,
    stop: AtomicBool,
    timed_out: AtomicBool,
}

impl Guard {
    pub(crate) fn new() -> Self {
        Guard {
            base: Instant::now(),
            deadline: AtomicU64::new(0),
            stop: AtomicBool::new(false),
            timed_out: AtomicBool::new(false),
        }
    }

    /// Starts a slice of at most `ms` milliseconds of JavaScript.
    pub(crate) fn start_slice(&self, ms: u64) {
        let now = self.base.elapsed().as_nanos() as u64;
        let deadline = now.saturating_add(ms.saturating_mul(1_000_000)).max(1);
        self.deadline.store(deadline, Ordering::Relaxed);
    }

    /// Stops the clock while the code waits for the host.
    pub(crate) fn pause(&self) {
        self.deadline.store(0, Ordering::Relaxed);
    }

    /// Makes every further interrupt check fire: the run is over.
    pub(crate) fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    pub(crate) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    pub(crate) fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Relaxed)
    }

    /// Called by the engine's interrupt handler.
    pub(crate) fn should_interrupt(&self) -> bool {
        if self.stop.load(Ordering::Relaxed) {
            return true;
        }
        let deadline = self.deadline.load(Ordering::Relaxed);
        if deadline != 0 && self.base.elapsed().as_nanos() as u64 > deadline {
            self.timed_out.store(true, Ordering::Relaxed);
            self.stop.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }
}
