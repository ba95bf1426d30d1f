//! The boundary between session logic and a JavaScript engine: a backend implements [`Engine`].
//!
//! Everything engine-independent lives outside the backend: the JavaScript glue
//! (`prelude.js`: fetch, ctx, console, Date/Math/crypto interposition) talks to the
//! host through three native functions (`request`, `wait`, `log`) whose Rust side is [`Host`],
//! and reads durations through a fourth, pure one (`duration`, see [`duration_ms`]). A fifth,
//! `extras`, evaluates `extras.js` (the classes and helpers few runs use: Headers, URL,
//! Response, AbortSignal, encoders, …) in the calling context and returns its default export;
//! the prelude calls it on first use, so a run that needs none of it does not read its code.
//! Two more define globals as the prelude's own (writable, configurable, not enumerable):
//! `defineGlobal(name, value)`, and `lazyGlobals(names, make)`, whose value is `make(name)`,
//! called the first time code names one (`console`, `ctx`, the timers, the extras' classes).
//! A backend may also put off intrinsics few runs use until code first names one of their
//! globals (the QuickJS one does so for the typed arrays and DOMException, with native
//! accessors: see `quickjs::run_context`).
//! A V8 backend would implement [`Engine::run`] the same way: create an isolate with the limits,
//! expose the natives, evaluate `prelude.js` and call it, call its `begin` with the run's
//! mode and input, evaluate the task, and drive the job queue. Everything before `begin` knows
//! nothing of the run, so a backend may do it ahead of time, in a fresh context per run (the
//! QuickJS backend does it after the previous run on the same thread has reported, in the same
//! runtime when that run left nothing behind).

pub(crate) mod quickjs;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crate::{JsError, Limits};

/// The JavaScript glue shared by every backend.
pub(crate) const PRELUDE: &str = include_str!("prelude.js");
/// The part of the glue few runs need, which the prelude asks for (the `extras` native) on
/// first use.
pub(crate) const EXTRAS: &str = include_str!("extras.js");
/// The part of the glue only some runs need (crypto, console, timers, the abort signal, `ctx`,
/// module mode's fetch and entry), which the prelude asks for (the `rare` native) on first use.
pub(crate) const RARE: &str = include_str!("rare.js");
/// The JavaScript glue of pure evaluations ([`crate::Evaluator`]): host calls refused.
pub(crate) const PURE: &str = include_str!("pure.js");

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

/// The native `duration(what, text, shown)` behind `ctx.sleep("1h 30m")` and
/// `ctx.waitForEvent(name, {timeout})`: `text` in the one duration grammar
/// (`sequential_support::duration`) as milliseconds. `Err` is the message of the `TypeError`
/// the backend throws; `what` names the caller and `shown` is the value as the code wrote it
/// (`text` is `None` when the value was not a string). Numbers never get here: the prelude
/// reads them as milliseconds itself.
pub(crate) fn duration_ms(what: &str, text: Option<&str>, shown: &str) -> Result<f64, String> {
    use sequential_support::duration;
    text.ok_or(())
        .and_then(|t| duration::parse_millis(t).map_err(|_| ()))
        .map(|ms| ms as f64)
        .map_err(|()| format!("{what}: expected {}, got {shown}", duration::FORMS))
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

#[cfg(test)]
mod tests {
    use super::duration_ms;

    #[test]
    fn durations_read_the_shared_grammar_and_name_the_caller() {
        assert_eq!(
            duration_ms("ctx.sleep", Some("1h 30m"), "1h 30m"),
            Ok(5_400_000.0)
        );
        assert_eq!(duration_ms("ctx.sleep", Some("250"), "250"), Ok(250.0));
        let e = duration_ms("ctx.sleep", Some("soon"), "soon").unwrap_err();
        assert!(
            e.starts_with("ctx.sleep: expected milliseconds") && e.ends_with(", got soon"),
            "{e}"
        );
        let e = duration_ms("ctx.waitForEvent timeout", None, "null").unwrap_err();
        assert!(e.ends_with("got null"), "{e}");
    }
}
