//! The QuickJS-NG backend through rquickjs: the only module of the crate that names rquickjs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rquickjs::context::EvalOptions;
use rquickjs::module::WriteOptions;
use rquickjs::prelude::List;
use rquickjs::promise::PromiseState;
use rquickjs::{
    Context, Ctx, Exception, Function, Module, Object, Persistent, Promise, Runtime, Value,
};

use super::{Engine, Guard, Host, Job, Kind, Outcome, PRELUDE};
use crate::JsError;

pub(crate) mod pure;

/// The file name task code is compiled under (it shows in stacks and syntax errors).
const TASK_FILE: &str = "task.js";
/// The module name of the prelude.
const PRELUDE_NAME: &str = "fetch-vm:prelude";

/// The host the natives of a prepared context call: filled for the length of one run.
type HostSlot = Rc<RefCell<Option<Rc<RefCell<dyn Host>>>>>;

/// A fresh context made ready ahead of its run: the prelude evaluated and called with natives
/// that reach whatever host is in `slot`, and nothing else ever run in it. It serves exactly one
/// run; only `begin` (the run's mode, input and task name) and the task code are left to do when
/// the run starts.
struct Prepared {
    /// The prelude's helpers (`begin`, `deliver`, …); declared first so that it is dropped
    /// before the context.
    api: Persistent<Object<'static>>,
    context: Context,
    slot: HostSlot,
}

impl Prepared {
    /// A new context in a new runtime, with the prelude set up.
    fn new() -> Result<Prepared, String> {
        let rt = Runtime::new().map_err(|e| format!("cannot create a QuickJS runtime: {e}"))?;
        let context =
            Context::full(&rt).map_err(|e| format!("cannot create a QuickJS context: {e}"))?;
        let slot: HostSlot = Rc::new(RefCell::new(None));
        let api = context.with(|ctx| {
            let set_up = || -> rquickjs::Result<Object<'_>> {
                let native = natives(&ctx, slot.clone())?;
                load_prelude(&ctx)?.call((native,))
            };
            match set_up() {
                Ok(api) => Ok(Persistent::save(&ctx, api)),
                Err(e) if e.is_exception() => Err(format!(
                    "the prelude failed: {}",
                    describe(&ctx.catch()).message
                )),
                Err(e) => Err(format!("the prelude failed: {e}")),
            }
        })?;
        Ok(Prepared { api, context, slot })
    }
}

/// Runs jobs on QuickJS-NG, each in a fresh runtime and context that no other code has run in.
/// The next run's are prepared after a run has reported its outcome (off the caller's path).
#[derive(Default)]
pub(crate) struct QuickJs {
    next: Option<Prepared>,
}

impl std::fmt::Debug for QuickJs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickJs")
            .field("prepared", &self.next.is_some())
            .finish()
    }
}

impl Engine for QuickJs {
    fn run(
        &mut self,
        job: &Job<'_>,
        host: Rc<RefCell<dyn Host>>,
        guard: Arc<Guard>,
        report: &mut dyn FnMut(Outcome),
    ) {
        let prepared = match self.next.take().map_or_else(Prepared::new, Ok) {
            Ok(p) => p,
            Err(msg) => return report(Outcome::Failed(msg)),
        };
        let Prepared { api, context, slot } = prepared;
        let rt = context.runtime().clone();
        rt.set_memory_limit(job.limits.memory_bytes);
        rt.set_max_stack_size(job.limits.stack_bytes);
        let g = guard.clone();
        rt.set_interrupt_handler(Some(Box::new(move || g.should_interrupt())));
        *slot.borrow_mut() = Some(host.clone());
        let outcome = context.with(|ctx| {
            let ran = api
                .restore(&ctx)
                .and_then(|api| run_in(&ctx, job, api, host, &guard));
            match ran {
                Ok(outcome) => outcome,
                Err(e) => caught(&ctx, e),
            }
        });
        report(outcome);
        // Teardown and the next run's context happen after the caller has its answer. The
        // runtime goes with the context: dropping a context that ran the prelude does not free
        // it (its natives stay alive until the runtime goes, even after a GC), and freeing the
        // whole runtime costs less than the GC that reusing it would need.
        slot.borrow_mut().take();
        drop(context);
        drop(rt);
        self.next = Prepared::new().ok();
    }
}

/// Starts the run in a prepared context (`api` is its prelude's helpers): evaluates the task,
/// then drives the job queue until the main promise settles.
fn run_in<'js>(
    ctx: &Ctx<'js>,
    job: &Job<'_>,
    api: Object<'js>,
    host: Rc<RefCell<dyn Host>>,
    guard: &Guard,
) -> rquickjs::Result<Outcome> {
    let mode = match job.kind {
        Kind::Script => "script",
        Kind::Module => "module",
    };
    let begin: Function<'js> = api.get("begin")?;
    begin.call::<_, ()>((mode, job.input_json, job.task_name.unwrap_or("")))?;
    let deliver: Function<'js> = api.get("deliver")?;
    let to_json: Function<'js> = api.get("toJson")?;

    let main: Promise<'js> = match job.kind {
        Kind::Script => {
            let mut code = std::borrow::Cow::Borrowed(job.code);
            if let Some((start, end)) = job.object_tail {
                let tail = &job.code[start..end];
                // `;` so that a previous line without one is not called: `x\n({…})`.
                let rewritten = format!("{};({}){}", &job.code[..start], tail, &job.code[end..]);
                let is_object_tail: Function<'js> = api.get("isObjectTail")?;
                if is_object_tail.call::<_, bool>((tail, rewritten.as_str()))? {
                    code = rewritten.into();
                }
            }
            let value: Value<'js> =
                ctx.eval_with_options(code.as_bytes(), eval_options(TASK_FILE))?;
            let finish: Function<'js> = api.get("finish")?;
            finish.call((value,))?
        }
        Kind::Module => {
            let module = declare_task(ctx, job.code)?;
            let (module, evaluated) = module.eval()?;
            let namespace = module.namespace()?;
            let run_module: Function<'js> = api.get("runModule")?;
            run_module.call((evaluated, namespace))?
        }
    };

    loop {
        while ctx.execute_pending_job() {}
        if guard.stopped() {
            return Ok(Outcome::Interrupted);
        }
        if main.state() != PromiseState::Pending {
            break;
        }
        let delivery = host.borrow_mut().wait();
        match delivery {
            Ok(d) => deliver.call::<_, ()>((d.seq as f64, d.ok, d.json))?,
            Err(_) => return Ok(Outcome::Interrupted),
        }
    }

    match main.state() {
        PromiseState::Resolved => {
            let value: Value<'js> = main
                .result::<Value<'js>>()
                .unwrap_or(Ok(Value::new_undefined(ctx.clone())))?;
            let List((ok, text)): List<(bool, String)> = to_json.call((value,))?;
            if ok {
                Ok(Outcome::Value(text))
            } else if text.contains("out of memory") {
                Ok(Outcome::OutOfMemory)
            } else {
                Ok(Outcome::NotSerializable(text))
            }
        }
        PromiseState::Rejected => {
            let err = main
                .result::<Value<'js>>()
                .map(|r| r.err())
                .unwrap_or_default()
                .unwrap_or(rquickjs::Error::Exception);
            Ok(caught(ctx, err))
        }
        PromiseState::Pending => Ok(Outcome::Interrupted),
    }
}

/// The prelude compiled once per process: parsing it costs about a millisecond, loading its
/// bytecode a few microseconds.
static PRELUDE_BYTECODE: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();

fn compile_prelude() -> Result<Vec<u8>, String> {
    let rt = Runtime::new().map_err(|e| e.to_string())?;
    let context = Context::full(&rt).map_err(|e| e.to_string())?;
    context.with(|ctx| {
        let module = Module::declare(ctx.clone(), PRELUDE_NAME, PRELUDE).map_err(|e| {
            let thrown = describe(&ctx.catch());
            format!("the prelude does not compile: {e}: {thrown}")
        })?;
        module
            .write(WriteOptions {
                strip_source: true,
                ..WriteOptions::default()
            })
            .map_err(|e| e.to_string())
    })
}

/// The prelude's default export, from the cached bytecode.
fn load_prelude<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Function<'js>> {
    let bytecode = match PRELUDE_BYTECODE.get_or_init(compile_prelude) {
        Ok(b) => b,
        Err(msg) => return Err(Exception::throw_internal(ctx, msg)),
    };
    // SAFETY: the bytes were produced by `Module::write` of this same QuickJS build in this
    // process (`compile_prelude`), never read from outside.
    let module = unsafe { Module::load(ctx.clone(), bytecode)? };
    let (module, _evaluated) = module.eval()?;
    module.get("default")
}

/// Task modules compiled in this process, by source text: a graph runs the same handler module
/// for every activation and a JavaScript machine definition the same module for every guard and
/// action, so each is parsed once and later contexts load its bytecode (a fresh context still
/// evaluates it, so every run starts from fresh globals and module state, exactly as if parsed).
/// The bytes are leaked, because `Module::load` borrows them for the module's lifetime (it reads
/// with ROM data); the cache is therefore bounded and stops taking entries once full.
static TASK_BYTECODE: Mutex<Option<HashMap<String, &'static [u8]>>> = Mutex::new(None);
/// Most bytes (source plus bytecode) the task cache holds; past it, modules are parsed each time.
const TASK_CACHE_BYTES: usize = 32 << 20;
static TASK_CACHE_USED: AtomicUsize = AtomicUsize::new(0);

/// Declares the task module `code`: from cached bytecode when this process compiled the same
/// text before, else by parsing it (and caching the result).
fn declare_task<'js>(ctx: &Ctx<'js>, code: &str) -> rquickjs::Result<Module<'js>> {
    let cached = TASK_BYTECODE
        .lock()
        .ok()
        .and_then(|m| m.as_ref().and_then(|m| m.get(code).copied()));
    if let Some(bytes) = cached {
        // SAFETY: the bytes were produced by `Module::write` of this same QuickJS build in this
        // process (below) and are never freed.
        return unsafe { Module::load(ctx.clone(), bytes) };
    }
    let module = Module::declare(ctx.clone(), TASK_FILE, code)?;
    let cost = code.len() * 2;
    if TASK_CACHE_USED.load(Ordering::Relaxed) + cost <= TASK_CACHE_BYTES
        && let Ok(bytes) = module.write(WriteOptions::default())
        && let Ok(mut guard) = TASK_BYTECODE.lock()
    {
        let map = guard.get_or_insert_with(HashMap::new);
        let used = TASK_CACHE_USED.load(Ordering::Relaxed) + code.len() + bytes.len();
        if !map.contains_key(code) && used <= TASK_CACHE_BYTES {
            TASK_CACHE_USED.store(used, Ordering::Relaxed);
            map.insert(code.to_string(), Vec::leak(bytes));
        }
    }
    Ok(module)
}

/// Sloppy global-code evaluation under `filename`.
fn eval_options(filename: &str) -> EvalOptions {
    let mut options = EvalOptions::default();
    options.global = true;
    options.strict = false;
    options.filename = Some(filename.into());
    options
}

/// The host in `slot`, or the message thrown when there is none (the run is over).
fn host_in(slot: &HostSlot) -> Result<Rc<RefCell<dyn Host>>, String> {
    slot.borrow()
        .clone()
        .ok_or_else(|| "the session was closed".to_string())
}

/// The natives the prelude builds on: three that reach the host in `slot`, and `duration`.
fn natives<'js>(ctx: &Ctx<'js>, slot: HostSlot) -> rquickjs::Result<Object<'js>> {
    let native = Object::new(ctx.clone())?;
    let h = slot.clone();
    native.set(
        "request",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, kind: String, request: String| -> rquickjs::Result<f64> {
                let r = host_in(&h).and_then(|h| h.borrow_mut().request(&kind, &request));
                r.map(|seq| seq as f64)
                    .map_err(|msg| Exception::throw_internal(&ctx, &msg))
            },
        )?,
    )?;
    let h = slot.clone();
    native.set(
        "wait",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>| -> rquickjs::Result<List<(f64, bool, String)>> {
                let r = host_in(&h).and_then(|h| h.borrow_mut().wait());
                r.map(|d| List((d.seq as f64, d.ok, d.json)))
                    .map_err(|msg| Exception::throw_internal(&ctx, &msg))
            },
        )?,
    )?;
    native.set(
        "log",
        Function::new(
            ctx.clone(),
            move |ctx: Ctx<'js>, level: String, message: String| -> rquickjs::Result<()> {
                let r = host_in(&slot).and_then(|h| h.borrow_mut().log(&level, &message));
                r.map_err(|msg| Exception::throw_internal(&ctx, &msg))
            },
        )?,
    )?;
    native.set(
        "duration",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>,
             what: String,
             text: Option<String>,
             shown: String|
             -> rquickjs::Result<f64> {
                super::duration_ms(&what, text.as_deref(), &shown)
                    .map_err(|msg| Exception::throw_type(&ctx, &msg))
            },
        )?,
    )?;
    Ok(native)
}

/// Turns a failed rquickjs call into an outcome, reading the pending exception.
fn caught(ctx: &Ctx<'_>, err: rquickjs::Error) -> Outcome {
    if !err.is_exception() {
        return Outcome::Failed(err.to_string());
    }
    let value = ctx.catch();
    let js = describe(&value);
    let lower = js.message.to_ascii_lowercase();
    if lower.contains("out of memory") {
        Outcome::OutOfMemory
    } else if lower.contains("stack overflow") || lower.contains("maximum call stack") {
        Outcome::StackOverflow
    } else if js.message == "interrupted" {
        Outcome::Interrupted
    } else {
        Outcome::Thrown(js)
    }
}

/// `{name, message, stack}` of a thrown value; syntax errors also get line and column.
fn describe(value: &Value<'_>) -> JsError {
    let (name, message, stack) = match value.as_object() {
        Some(obj) => {
            let get = |k: &str| -> Option<String> {
                obj.get::<_, Option<rquickjs::Coerced<String>>>(k)
                    .ok()
                    .flatten()
                    .map(|c| c.0)
            };
            let is_error = obj
                .get::<_, Value<'_>>("message")
                .map(|m| !m.is_undefined())
                .unwrap_or(false);
            if is_error {
                (
                    get("name").unwrap_or_else(|| "Error".into()),
                    get("message").unwrap_or_default(),
                    get("stack").filter(|s| !s.is_empty()),
                )
            } else {
                let text = value
                    .ctx()
                    .json_stringify(value.clone())
                    .ok()
                    .flatten()
                    .and_then(|s| s.to_string().ok())
                    .unwrap_or_else(|| "[object]".into());
                ("Error".into(), text, None)
            }
        }
        None => {
            let text = value
                .get::<rquickjs::Coerced<String>>()
                .map(|c| c.0)
                .unwrap_or_else(|_| format!("{value:?}"));
            ("Error".into(), text, None)
        }
    };
    let (line, column) = if name == "SyntaxError" {
        stack
            .as_deref()
            .and_then(position)
            .map_or((None, None), |(l, c)| (Some(l), Some(c)))
    } else {
        (None, None)
    };
    JsError {
        name,
        message,
        stack,
        line,
        column,
    }
}

/// Line and column of the first `task.js:L:C` in a stack.
fn position(stack: &str) -> Option<(u32, u32)> {
    let at = stack.find("task.js:")? + "task.js:".len();
    let mut parts = stack[at..].split(|c: char| !c.is_ascii_digit());
    let line = parts.next()?.parse().ok()?;
    let column = parts.next()?.parse().ok()?;
    Some((line, column))
}
