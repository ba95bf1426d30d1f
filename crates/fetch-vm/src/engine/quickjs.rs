//! The QuickJS-NG backend through rquickjs: the only module of the crate that names rquickjs.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::{CStr, CString, c_int};
use std::rc::Rc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use rquickjs::context::EvalOptions;
use rquickjs::module::WriteOptions;
use rquickjs::prelude::List;
use rquickjs::promise::PromiseState;
use rquickjs::{
    Context, Ctx, Exception, Function, Module, Object, Persistent, Promise, Runtime, Value, qjs,
};

use super::{EXTRAS, Engine, Guard, Host, Job, Kind, Outcome, PRELUDE, RARE};
use crate::JsError;

pub(crate) mod pure;

/// The file name task code is compiled under (it shows in stacks and syntax errors).
const TASK_FILE: &str = "task.js";
/// The module name of the prelude.
const PRELUDE_NAME: &str = "fetch-vm:prelude";
/// The module name of the prelude's extras.
const EXTRAS_NAME: &str = "fetch-vm:extras";
/// The module name of the prelude's part only some runs need.
const RARE_NAME: &str = "fetch-vm:rare";

/// The host the natives of a prepared context call: filled for the length of one run.
type HostSlot = Rc<RefCell<Option<Rc<RefCell<dyn Host>>>>>;

/// A fresh context made ready ahead of its run: the prelude evaluated and called with natives
/// that reach whatever host is in `slot`, and nothing else ever run in it. It serves exactly one
/// run; only `begin` (the run's mode, input and task name) and the task code are left to do when
/// the run starts. Its runtime may have served earlier runs, each in a context of its own that
/// was freed before this one was made (see [`QuickJs::recycle`]).
struct Prepared {
    /// The prelude's helpers (`begin`, `deliver`, …); declared first so that it is dropped
    /// before the context.
    api: Persistent<Object<'static>>,
    context: Context,
    slot: HostSlot,
}

impl Prepared {
    /// A new context with the prelude set up, in `rt`: a runtime of [`new_runtime`] that no
    /// run's context lives in any more.
    fn new(rt: &Runtime) -> Result<Prepared, String> {
        let context = run_context(rt)?;
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

/// A run's context: the intrinsics `Context::full` adds (QuickJS's `JS_NewContext`, in its
/// order) but four. WeakRef (with FinalizationRegistry) and `performance` are left out: the
/// prelude removes the first and replaces the second. Two groups are added the first time code
/// names one of their globals ([`LATE_GROUPS`]): DOMException with `atob` and `btoa` (fifty
/// properties, which would cost every context as much as the two others save), and the typed
/// arrays with ArrayBuffer, DataView and Atomics (a tenth of the instructions of a run of
/// `1 + 1`, from making its context to freeing it).
fn run_context(rt: &Runtime) -> Result<Context, String> {
    let context = Context::base(rt).map_err(|e| format!("cannot create a QuickJS context: {e}"))?;
    let added = context.with(|ctx| {
        let c = ctx.as_raw().as_ptr();
        // SAFETY: `c` is the live context of `ctx`, which has only its base objects; each
        // intrinsic is added once, as `JS_NewContext` adds them.
        unsafe {
            qjs::JS_AddIntrinsicDate(c) == 0
                && qjs::JS_AddIntrinsicEval(c) == 0
                && qjs::JS_AddIntrinsicRegExp(c) == 0
                && qjs::JS_AddIntrinsicJSON(c) == 0
                && qjs::JS_AddIntrinsicProxy(c) == 0
                && qjs::JS_AddIntrinsicMapSet(c) == 0
                && qjs::JS_AddIntrinsicPromise(c) == 0
        }
    });
    if !added {
        return Err("cannot create a QuickJS context: adding its intrinsics failed".into());
    }
    // SAFETY: the live context, which has none of the late groups' globals yet.
    if context.with(|ctx| unsafe { define_late_groups(ctx.as_raw().as_ptr()) }) {
        Ok(context)
    } else {
        Err("cannot create a QuickJS context: defining its late globals failed".into())
    }
}

/// Intrinsics a run's context gets the first time code names one of their globals, each group
/// with the globals it defines.
const LATE_GROUPS: [(&str, &[&CStr]); 2] = [
    // `JS_AddIntrinsicAToB` adds DOMException only to the first context of a runtime: every
    // context gets its own, so that a run does not see it or not by chance
    ("domException", &[c"DOMException", c"atob", c"btoa"]),
    (
        "typedArrays",
        &[
            c"ArrayBuffer",
            c"SharedArrayBuffer",
            c"Uint8ClampedArray",
            c"Int8Array",
            c"Uint8Array",
            c"Int16Array",
            c"Uint16Array",
            c"Int32Array",
            c"Uint32Array",
            c"BigInt64Array",
            c"BigUint64Array",
            c"Float16Array",
            c"Float32Array",
            c"Float64Array",
            c"DataView",
            c"Atomics",
        ],
    ),
];

/// Adds late group `group` (an index of [`LATE_GROUPS`]) to context `c`, as `JS_NewContext`
/// adds it, except that `%TypedArray%.prototype.toString` is `Array.prototype.toString` as the
/// run left it (not as it was when the context was made: it differs only for code that replaced
/// that method first).
///
/// # Safety
/// `c` is a live context that does not have the group yet, whose global object has none of the
/// group's globals (`JS_AddIntrinsicTypedArrays` aborts on an existing `Atomics`).
unsafe fn add_late_group(c: *mut qjs::JSContext, group: usize) -> bool {
    // SAFETY: as the caller promises.
    unsafe {
        match group {
            0 => qjs::JS_AddIntrinsicDOMException(c) == 0 && qjs::JS_AddIntrinsicAToB(c) == 0,
            _ => qjs::JS_AddIntrinsicTypedArrays(c) == 0,
        }
    }
}

/// `magic` of a late global's getter and setter: its group, its name, and which of the two.
fn late_magic(group: usize, name: usize, setter: bool) -> c_int {
    ((group << 8) | (name << 1) | usize::from(setter)) as c_int
}

/// Defines every late group's globals on the global object of `c` as accessors (configurable,
/// not enumerable) whose getter and setter add the group (see [`late_global`]). Native
/// functions: the same accessors made in the prelude's JavaScript (two closures and a
/// descriptor each) cost as much as the typed arrays they put off.
///
/// # Safety
/// `c` is a live context whose global object has none of the late globals.
unsafe fn define_late_groups(c: *mut qjs::JSContext) -> bool {
    // SAFETY: every value made here is owned once and freed or handed over once; `c` is live.
    unsafe {
        let global = qjs::JS_GetGlobalObject(c);
        let mut ok = true;
        for (g, (_, names)) in LATE_GROUPS.iter().enumerate() {
            // shared by the group's accessors: marked (not extensible) once the group is added
            let mut state = [qjs::JS_NewObject(c)];
            for (n, name) in names.iter().enumerate() {
                let atom = qjs::JS_NewAtom(c, name.as_ptr());
                let magic = (late_magic(g, n, false), late_magic(g, n, true));
                ok &= define_accessor(c, global, atom, late_global, magic, &mut state);
                qjs::JS_FreeAtom(c, atom);
            }
            qjs::JS_FreeValue(c, state[0]);
        }
        qjs::JS_FreeValue(c, global);
        ok
    }
}

/// The signature of a native accessor: `magic` tells the getter from the setter (and whatever
/// else the accessor needs), `data` is what it was made with.
type Accessor = unsafe extern "C" fn(
    *mut qjs::JSContext,
    qjs::JSValue,
    c_int,
    *mut qjs::JSValue,
    c_int,
    *mut qjs::JSValue,
) -> qjs::JSValue;

/// Defines `atom` on `global` as an accessor (configurable, not enumerable) whose getter and
/// setter are `f` with `magic.0` and `magic.1`, each holding its own copy of `data`.
///
/// # Safety
/// `c` is a live context, `global` its global object, `data` values of it.
unsafe fn define_accessor(
    c: *mut qjs::JSContext,
    global: qjs::JSValue,
    atom: qjs::JSAtom,
    f: Accessor,
    magic: (c_int, c_int),
    data: &mut [qjs::JSValue],
) -> bool {
    let len = data.len() as c_int;
    // SAFETY: as the caller promises; `JS_DefinePropertyGetSet` takes both functions, also
    // when it fails.
    unsafe {
        let get = qjs::JS_NewCFunctionData(c, Some(f), 0, magic.0, len, data.as_mut_ptr());
        let set = qjs::JS_NewCFunctionData(c, Some(f), 1, magic.1, len, data.as_mut_ptr());
        let flags = qjs::JS_PROP_CONFIGURABLE as c_int;
        qjs::JS_DefinePropertyGetSet(c, global, atom, get, set, flags) >= 0
    }
}

/// Defines `atom` on the global object of `c` as the prelude defines its globals (writable,
/// configurable, not enumerable) with `value`, which it takes; `false` when that threw.
///
/// # Safety
/// `c` is a live context and `value` a value of it.
unsafe fn define_plain_global(
    c: *mut qjs::JSContext,
    atom: qjs::JSAtom,
    value: qjs::JSValue,
) -> bool {
    // SAFETY: as the caller promises; the global object is freed once.
    unsafe {
        let global = qjs::JS_GetGlobalObject(c);
        let flags = (qjs::JS_PROP_WRITABLE | qjs::JS_PROP_CONFIGURABLE) as c_int;
        let defined = qjs::JS_DefinePropertyValue(c, global, atom, value, flags);
        qjs::JS_FreeValue(c, global);
        defined >= 0
    }
}

/// The getter (no argument) and setter (one) of a late global: the first call of any of its
/// group's accessors removes them all and adds the group ([`add_late_group`]); then the getter
/// answers the global's value, the setter defines it (writable, configurable, not enumerable,
/// as the prelude's globals).
unsafe extern "C" fn late_global(
    c: *mut qjs::JSContext,
    _this: qjs::JSValue,
    argc: c_int,
    argv: *mut qjs::JSValue,
    magic: c_int,
    data: *mut qjs::JSValue,
) -> qjs::JSValue {
    let magic = magic as usize;
    let (g, n, setter) = (magic >> 8, (magic & 0xff) >> 1, magic & 1 == 1);
    let names = LATE_GROUPS[g].1;
    // SAFETY: QuickJS calls this with its live context, `argc` arguments and the one data value
    // `define_late_groups` gave (the group's state object); values made here are freed once.
    unsafe {
        let global = qjs::JS_GetGlobalObject(c);
        let state = *data;
        if qjs::JS_IsExtensible(c, state) == 1 {
            qjs::JS_PreventExtensions(c, state);
            for name in names {
                let atom = qjs::JS_NewAtom(c, name.as_ptr());
                qjs::JS_DeleteProperty(c, global, atom, 0);
                qjs::JS_FreeAtom(c, atom);
            }
            if !add_late_group(c, g) {
                qjs::JS_FreeValue(c, global);
                let group = LATE_GROUPS[g].0;
                let msg =
                    CString::new(format!("cannot add the {group} intrinsics")).unwrap_or_default();
                return qjs::JS_ThrowInternalError(c, c"%s".as_ptr(), msg.as_ptr());
            }
        }
        let atom = qjs::JS_NewAtom(c, names[n].as_ptr());
        let answer = if setter {
            let value = if argc >= 1 {
                qjs::JS_DupValue(c, *argv)
            } else {
                qjs::JS_UNDEFINED
            };
            if define_plain_global(c, atom, value) {
                qjs::JS_UNDEFINED
            } else {
                qjs::JS_EXCEPTION
            }
        } else {
            qjs::JS_GetProperty(c, global, atom)
        };
        qjs::JS_FreeAtom(c, atom);
        qjs::JS_FreeValue(c, global);
        answer
    }
}

/// A new runtime, and the bytes it holds before any run's context is made in it.
///
/// rquickjs keeps, for the runtime's lifetime, the prototype of native functions from the
/// first context that makes one (`Function.prototype` of that context, which it thereby keeps
/// alive). That first context is a bare one made here, that no code ever runs in: the natives
/// of every run's context get a prototype no run has touched, and every run's context can be
/// freed.
fn new_runtime() -> Result<(Runtime, i64), String> {
    let rt = Runtime::new().map_err(|e| format!("cannot create a QuickJS runtime: {e}"))?;
    let anchor = Context::base(&rt).map_err(|e| format!("cannot create a QuickJS context: {e}"))?;
    anchor
        .with(|ctx| Function::new(ctx, || {}).map(drop))
        .map_err(|e| format!("cannot create a QuickJS function: {e}"))?;
    drop(anchor);
    rt.run_gc();
    let base = rt.memory_usage().malloc_size;
    Ok((rt, base))
}

/// Runs jobs on QuickJS-NG, each in a fresh context that no other code has run in. The next
/// run's context is prepared after a run has reported its outcome (off the caller's path), in
/// the same runtime when the run left it clean (see [`QuickJs::recycle`]), else in a new one.
#[derive(Default)]
pub(crate) struct QuickJs {
    next: Option<Prepared>,
    /// Runs the runtime of `next` has served before.
    runs: u32,
    /// Bytes the runtime of `next` held when it was new (see [`new_runtime`]).
    base_bytes: i64,
}

/// Runs a runtime serves at most before it is freed and replaced, whatever they did: bounds
/// the fragmentation a long-lived allocator state could pile up.
const RUNS_PER_RUNTIME: u32 = 1000;
/// Promise jobs a finished run may leave queued that are still run (interrupted at once, in its
/// context, with no host) so that its context can be freed; past them the runtime goes.
const LEFTOVER_JOBS: usize = 64;
/// Most bytes a runtime may hold, once a run's context is freed, beyond what it held when new
/// for it to be reused (a context that could not be freed holds far more).
const REUSE_SLACK_BYTES: i64 = 64 << 10;

impl std::fmt::Debug for QuickJs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuickJs")
            .field("prepared", &self.next.is_some())
            .field("runs", &self.runs)
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
        let prepared = match self.next.take().map_or_else(|| self.fresh(), Ok) {
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
        // Only a run that ended by itself, without touching a limit, leaves a runtime to reuse.
        let clean = !guard.stopped()
            && matches!(
                outcome,
                Outcome::Value(_) | Outcome::Thrown(_) | Outcome::NotSerializable(_)
            );
        report(outcome);
        // Teardown and the next run's context happen after the caller has its answer.
        slot.borrow_mut().take();
        let reused = if clean && self.runs + 1 < RUNS_PER_RUNTIME {
            self.recycle(context, rt)
        } else {
            drop(context);
            drop(rt);
            None
        };
        self.next = match reused {
            Some(rt) => {
                self.runs += 1;
                Prepared::new(&rt).ok()
            }
            None => self.fresh().ok(),
        };
    }
}

impl QuickJs {
    /// A prepared context in a new runtime.
    fn fresh(&mut self) -> Result<Prepared, String> {
        let (rt, base) = new_runtime()?;
        self.runs = 0;
        self.base_bytes = base;
        Prepared::new(&rt)
    }

    /// Frees the context of a finished run and returns its runtime when nothing of the run is
    /// left in it. A context is freed only once nothing refers to it: its objects form cycles
    /// (a GC frees those), but a promise job still queued holds its values from outside the
    /// heap, and only running it (or freeing the runtime) lets them go. So the leftover jobs
    /// run first, each interrupted at its first check, with no host to call (the natives throw).
    fn recycle(&self, context: Context, rt: Runtime) -> Option<Runtime> {
        rt.set_interrupt_handler(Some(Box::new(|| true)));
        let drained = context.with(|ctx| {
            for _ in 0..LEFTOVER_JOBS {
                if !ctx.execute_pending_job() {
                    return true;
                }
            }
            !rt.is_job_pending()
        });
        drop(context);
        rt.set_interrupt_handler(None);
        if !drained {
            return None;
        }
        rt.run_gc();
        let left = rt.memory_usage().malloc_size;
        if rt.is_job_pending() || left > self.base_bytes + REUSE_SLACK_BYTES {
            return None;
        }
        // As in a new runtime: no limit while the next context is prepared, the first GC at
        // the same size.
        rt.set_memory_limit(0);
        rt.set_gc_threshold(256 << 10);
        Some(rt)
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
            let value = eval_task_script(ctx, &code)?;
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

/// The prelude and its two lazily loaded parts compiled once per process: parsing the prelude
/// costs about a millisecond, loading its bytecode into a context 30–90 µs — a cost every run
/// pays for the prelude, which is why what only some runs need (`rare.js`, `extras.js`) is
/// loaded on first use.
static PRELUDE_BYTECODE: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
static EXTRAS_BYTECODE: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();
static RARE_BYTECODE: OnceLock<Result<Vec<u8>, String>> = OnceLock::new();

fn compile_glue(name: &str, source: &str) -> Result<Vec<u8>, String> {
    let rt = Runtime::new().map_err(|e| e.to_string())?;
    let context = Context::full(&rt).map_err(|e| e.to_string())?;
    context.with(|ctx| {
        let module = Module::declare(ctx.clone(), name, source).map_err(|e| {
            let thrown = describe(&ctx.catch());
            format!("{name} does not compile: {e}: {thrown}")
        })?;
        module
            .write(WriteOptions {
                strip_source: true,
                ..WriteOptions::default()
            })
            .map_err(|e| e.to_string())
    })
}

/// The default export of a glue module, from its cached bytecode.
fn load_glue<'js>(
    ctx: &Ctx<'js>,
    cache: &'static OnceLock<Result<Vec<u8>, String>>,
    name: &str,
    source: &str,
) -> rquickjs::Result<Function<'js>> {
    let bytecode = match cache.get_or_init(|| compile_glue(name, source)) {
        Ok(b) => b,
        Err(msg) => return Err(Exception::throw_internal(ctx, msg)),
    };
    // SAFETY: the bytes were produced by `Module::write` of this same QuickJS build in this
    // process (`compile_glue`), never read from outside, and live as long as the process.
    let module = unsafe { Module::load(ctx.clone(), bytecode)? };
    let (module, _evaluated) = module.eval()?;
    module.get("default")
}

/// The prelude's default export.
fn load_prelude<'js>(ctx: &Ctx<'js>) -> rquickjs::Result<Function<'js>> {
    load_glue(ctx, &PRELUDE_BYTECODE, PRELUDE_NAME, PRELUDE)
}

/// Task code compiled in this process, by mode and source text: a graph runs the same handler
/// module for every activation, a JavaScript machine definition the same module for every guard
/// and action, and a worker the same script for every run of a task, so each is parsed once
/// and later contexts load its bytecode (a fresh context still evaluates it, so every run starts
/// from fresh globals and module state, exactly as if parsed). The bytes are leaked, because
/// `Module::load` borrows them for the module's lifetime (it reads with ROM data); the cache is
/// therefore bounded and stops taking entries once full.
static TASK_BYTECODE: Mutex<Option<TaskCache>> = Mutex::new(None);
/// Most bytes (source plus bytecode) the task cache holds; past it, code is parsed each time.
const TASK_CACHE_BYTES: usize = 32 << 20;
static TASK_CACHE_USED: AtomicUsize = AtomicUsize::new(0);

/// The bytecode of task modules and of task scripts (the same text compiles differently).
#[derive(Default)]
struct TaskCache {
    modules: HashMap<String, &'static [u8]>,
    scripts: HashMap<String, &'static [u8]>,
}

impl TaskCache {
    fn of(&mut self, kind: Kind) -> &mut HashMap<String, &'static [u8]> {
        match kind {
            Kind::Module => &mut self.modules,
            Kind::Script => &mut self.scripts,
        }
    }
}

/// The cached bytecode of `code` run as `kind`.
fn cached_task(kind: Kind, code: &str) -> Option<&'static [u8]> {
    let mut guard = TASK_BYTECODE.lock().ok()?;
    guard.as_mut()?.of(kind).get(code).copied()
}

/// Keeps the bytecode `write` makes of `code` (run as `kind`), while the cache has room.
fn remember_task(kind: Kind, code: &str, write: impl FnOnce() -> Option<Vec<u8>>) {
    if TASK_CACHE_USED.load(Ordering::Relaxed) + code.len() * 2 > TASK_CACHE_BYTES {
        return;
    }
    let Some(bytes) = write() else { return };
    let Ok(mut guard) = TASK_BYTECODE.lock() else {
        return;
    };
    let map = guard.get_or_insert_with(TaskCache::default).of(kind);
    let used = TASK_CACHE_USED.load(Ordering::Relaxed) + code.len() + bytes.len();
    if !map.contains_key(code) && used <= TASK_CACHE_BYTES {
        TASK_CACHE_USED.store(used, Ordering::Relaxed);
        map.insert(code.to_string(), Vec::leak(bytes));
    }
}

/// Declares the task module `code`: from cached bytecode when this process compiled the same
/// text before, else by parsing it (and caching the result).
fn declare_task<'js>(ctx: &Ctx<'js>, code: &str) -> rquickjs::Result<Module<'js>> {
    if let Some(bytes) = cached_task(Kind::Module, code) {
        // SAFETY: the bytes were produced by `Module::write` of this same QuickJS build in this
        // process (below) and are never freed.
        return unsafe { Module::load(ctx.clone(), bytes) };
    }
    let module = Module::declare(ctx.clone(), TASK_FILE, code)?;
    remember_task(Kind::Module, code, || {
        module.write(WriteOptions::default()).ok()
    });
    Ok(module)
}

/// Runs the task script `code` as sloppy global code under [`TASK_FILE`], as `eval` would:
/// from cached bytecode when this process compiled the same text before, else compiled here
/// (and cached) first. A syntax error throws as `eval` throws it.
fn eval_task_script<'js>(ctx: &Ctx<'js>, code: &str) -> rquickjs::Result<Value<'js>> {
    let c = ctx.as_raw().as_ptr();
    // A value QuickJS returned, or the exception it left pending for `caught` to take.
    let owned = |v: qjs::JSValue| {
        // SAFETY: reads the tag of a plain value.
        if unsafe { qjs::JS_VALUE_GET_NORM_TAG(v) } == qjs::JS_TAG_EXCEPTION {
            Err(rquickjs::Error::Exception)
        } else {
            Ok(v)
        }
    };
    let function = match cached_task(Kind::Script, code) {
        // SAFETY: the bytes were written by `JS_WriteObject` of this same QuickJS build in this
        // process (below) and are never freed.
        Some(bytes) => owned(unsafe {
            qjs::JS_ReadObject(
                c,
                bytes.as_ptr(),
                bytes.len() as _,
                qjs::JS_READ_OBJ_BYTECODE as _,
            )
        })?,
        None => {
            let source = std::ffi::CString::new(code)?;
            let file = std::ffi::CString::new(TASK_FILE)?;
            let flags = qjs::JS_EVAL_TYPE_GLOBAL | qjs::JS_EVAL_FLAG_COMPILE_ONLY;
            // SAFETY: `source` is NUL-terminated at `code.len()`, as `JS_Eval` requires.
            let function = owned(unsafe {
                qjs::JS_Eval(
                    c,
                    source.as_ptr(),
                    code.len() as _,
                    file.as_ptr(),
                    flags as _,
                )
            })?;
            remember_task(Kind::Script, code, || {
                let mut size = 0;
                // SAFETY: `function` is a live value of `c` (only read here); the buffer QuickJS
                // returns is copied, then freed with the allocator that made it.
                unsafe {
                    let buf = qjs::JS_WriteObject(
                        c,
                        &mut size,
                        function,
                        qjs::JS_WRITE_OBJ_BYTECODE as _,
                    );
                    if buf.is_null() {
                        return None;
                    }
                    let bytes = std::slice::from_raw_parts(buf, size as usize).to_vec();
                    qjs::js_free(c, buf.cast());
                    Some(bytes)
                }
            });
            function
        }
    };
    // SAFETY: `JS_EvalFunction` takes the function (it frees it, whatever the outcome); the
    // value it returns is owned and handed to a `Value` of this context.
    let value = owned(unsafe { qjs::JS_EvalFunction(c, function) })?;
    Ok(unsafe { Value::from_raw(ctx.clone(), value) })
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

/// The natives the prelude builds on: three that reach the host in `slot`, `duration`, and
/// `extras` (the default export of `extras.js`, loaded into the calling context).
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
    // SAFETY: a new C function of this context, owned by the value made of it.
    let define_global = unsafe {
        let f = qjs::JS_NewCFunction2(
            ctx.as_raw().as_ptr(),
            Some(define_global),
            c"defineGlobal".as_ptr(),
            2,
            qjs::JSCFunctionEnum_JS_CFUNC_generic,
            0,
        );
        Value::from_raw(ctx.clone(), f)
    };
    native.set("defineGlobal", define_global)?;
    native.set(
        "lazyGlobals",
        Function::new(
            ctx.clone(),
            |ctx: Ctx<'js>, names: Vec<String>, make: Function<'js>| -> rquickjs::Result<()> {
                // SAFETY: the live context of `ctx`; `make` is a function of it.
                if unsafe { define_lazy_globals(ctx.as_raw().as_ptr(), &names, make.as_raw()) } {
                    Ok(())
                } else {
                    Err(Exception::throw_internal(
                        &ctx,
                        "cannot define the lazy globals",
                    ))
                }
            },
        )?,
    )?;
    native.set(
        "extras",
        Function::new(ctx.clone(), |ctx: Ctx<'js>| {
            load_glue(&ctx, &EXTRAS_BYTECODE, EXTRAS_NAME, EXTRAS)
        })?,
    )?;
    native.set(
        "rare",
        Function::new(ctx.clone(), |ctx: Ctx<'js>| {
            #[cfg(test)]
            tests::RARE_LOADS.with(|n| n.set(n.get() + 1));
            load_glue(&ctx, &RARE_BYTECODE, RARE_NAME, RARE)
        })?,
    )?;
    Ok(native)
}

/// The native `defineGlobal(name, value)`: a global as the prelude defines its own (writable,
/// configurable, not enumerable), without the descriptor object `Object.defineProperty` reads.
unsafe extern "C" fn define_global(
    c: *mut qjs::JSContext,
    _this: qjs::JSValue,
    argc: c_int,
    argv: *mut qjs::JSValue,
) -> qjs::JSValue {
    if argc < 2 {
        return qjs::JS_UNDEFINED;
    }
    // SAFETY: QuickJS calls this with its live context and `argc` arguments; the atom and the
    // global object made here are freed once, the value handed over once.
    unsafe {
        let atom = qjs::JS_ValueToAtom(c, *argv);
        if atom == 0 {
            return qjs::JS_EXCEPTION;
        }
        let defined = define_plain_global(c, atom, qjs::JS_DupValue(c, *argv.add(1)));
        qjs::JS_FreeAtom(c, atom);
        if !defined {
            qjs::JS_EXCEPTION
        } else {
            qjs::JS_UNDEFINED
        }
    }
}

/// The native `lazyGlobals(names, make)`: defines each of `names` on the global object of `c`
/// as an accessor (configurable, not enumerable) whose getter calls `make(name)` and keeps what
/// it answers as the global's value, and whose setter keeps the value assigned (see
/// [`lazy_global`]). Native for the same reason as [`define_late_groups`].
///
/// # Safety
/// `c` is a live context and `make` a function of it.
unsafe fn define_lazy_globals(
    c: *mut qjs::JSContext,
    names: &[String],
    make: qjs::JSValue,
) -> bool {
    // SAFETY: every value made here is owned once and freed or handed over once; `c` is live.
    unsafe {
        let global = qjs::JS_GetGlobalObject(c);
        let mut ok = true;
        for name in names {
            let Ok(name) = CString::new(name.as_str()) else {
                ok = false;
                continue;
            };
            let atom = qjs::JS_NewAtom(c, name.as_ptr());
            let mut data = [qjs::JS_AtomToString(c, atom), make];
            ok &= define_accessor(c, global, atom, lazy_global, (0, 1), &mut data);
            qjs::JS_FreeValue(c, data[0]);
            qjs::JS_FreeAtom(c, atom);
        }
        qjs::JS_FreeValue(c, global);
        ok
    }
}

/// The getter (`magic` 0) and setter (1) of a lazy global (data: its name and `make`): either
/// replaces the accessor with a plain global (writable, configurable, not enumerable) holding
/// `make(name)` or the value assigned; the getter answers that value.
unsafe extern "C" fn lazy_global(
    c: *mut qjs::JSContext,
    _this: qjs::JSValue,
    argc: c_int,
    argv: *mut qjs::JSValue,
    magic: c_int,
    data: *mut qjs::JSValue,
) -> qjs::JSValue {
    // SAFETY: QuickJS calls this with its live context, `argc` arguments and the two data
    // values `define_lazy_globals` gave; values made here are freed or handed over once.
    unsafe {
        let mut name = *data;
        let value = if magic == 1 {
            if argc >= 1 {
                qjs::JS_DupValue(c, *argv)
            } else {
                qjs::JS_UNDEFINED
            }
        } else {
            qjs::JS_Call(c, *data.add(1), qjs::JS_UNDEFINED, 1, &mut name)
        };
        if qjs::JS_IsException(value) {
            return value;
        }
        let atom = qjs::JS_ValueToAtom(c, name);
        let defined = define_plain_global(c, atom, qjs::JS_DupValue(c, value));
        qjs::JS_FreeAtom(c, atom);
        if !defined {
            qjs::JS_FreeValue(c, value);
            qjs::JS_EXCEPTION
        } else if magic == 1 {
            qjs::JS_FreeValue(c, value);
            qjs::JS_UNDEFINED
        } else {
            value
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// How many times a context on this thread loaded the prelude's rare part.
        pub(super) static RARE_LOADS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A prepared context holds the prelude without the part only some runs need (`rare.js`):
    /// a script-mode run that fetches, reads its input, uses Headers or URL and returns JSON
    /// never loads it; the
    /// first use of what it holds loads it once, whichever global is named first.
    #[test]
    fn the_rare_part_of_the_prelude_is_loaded_on_first_use_only() {
        let (rt, _) = new_runtime().unwrap();
        let prepared = Prepared::new(&rt).unwrap();
        let loads = || RARE_LOADS.with(std::cell::Cell::get);
        let before = loads();
        let api = prepared.api.clone();
        let plain: bool = prepared.context.with(|ctx| {
            let api = api.restore(&ctx).unwrap();
            let begin: Function<'_> = api.get("begin").unwrap();
            begin.call::<_, ()>(("script", r#"{"n":2}"#, "t")).unwrap();
            let to_json: Function<'_> = api.get("toJson").unwrap();
            let List((ok, _)): List<(bool, String)> =
                to_json.call((Object::new(ctx.clone()).unwrap(),)).unwrap();
            ctx.eval(
                "typeof fetch === 'function' && input.n === 2 && typeof FetchError === 'function' && new Headers({ A: '1' }).get('a') === '1' && new URL('http://h/p').pathname === '/p'",
            )
            .map(|v: bool| v && ok)
            .unwrap()
        });
        assert!(plain);
        assert_eq!(loads(), before, "nothing of the rare part was named");
        let used: bool = prepared
            .context
            .with(|ctx| {
                ctx.eval(
                    "typeof console.log === 'function' && typeof crypto.randomUUID === 'function' && \
                     typeof setTimeout === 'function' && Object.isFrozen(ctx) && \
                     typeof new AbortController().signal.addEventListener === 'function'",
                )
            })
            .unwrap();
        assert!(used);
        assert_eq!(loads(), before + 1, "loaded once, on first use");
    }

    /// The global names a context has, as JSON text, after running `touch` in it.
    fn globals(context: &Context, touch: &str) -> Vec<String> {
        context.with(|ctx| {
            let names: String = ctx
                .eval(format!(
                    "{touch}; JSON.stringify(Object.getOwnPropertyNames(globalThis).sort())"
                ))
                .unwrap();
            serde_json::from_str(&names).unwrap()
        })
    }

    /// The web classes of the extras are globals from the start, made when code first names
    /// one: an accessor until then, the class after; a value assigned first is kept.
    #[test]
    fn lazy_globals_are_made_on_first_use_and_can_be_assigned_first() {
        let (rt, _) = new_runtime().unwrap();
        let prepared = Prepared::new(&rt).unwrap();
        let ok: bool = prepared.context.with(|ctx| {
            ctx.eval(
                "const d = (n) => Object.getOwnPropertyDescriptor(globalThis, n); \
                 const before = typeof d('Headers').get === 'function' && !d('Headers').enumerable; \
                 const h = new Headers({ A: '1' }); \
                 globalThis.URL = 5; Object.prototype.Response = 7; Object.prototype.ctx = 8; \
                 before && h.get('a') === '1' && d('Headers').value === Headers && \
                 d('Headers').writable && d('Headers').configurable && !d('Headers').enumerable && \
                 URL === 5 && d('URL').value === 5 && typeof d('Response').get === 'function' && \
                 new URLSearchParams('a=1&b=2').get('b') === '2' && \
                 ['console', 'ctx', 'crypto', 'setTimeout', 'clearInterval'] \
                   .every((n) => typeof d(n).get === 'function') && \
                 typeof console.log === 'function' && typeof ctx.sleep === 'function' && \
                 Object.isFrozen(ctx) && typeof crypto.randomUUID === 'function' && \
                 clearTimeout === clearInterval && d('console').value === console && \
                 typeof d('setInterval').get === 'function' && typeof setInterval === 'function' && \
                 typeof Response === 'function' && typeof ctx.emit === 'function'",
            )
            .unwrap()
        });
        assert!(ok);
    }

    /// A run's context has every global a full QuickJS context has (but the two the prelude
    /// removes) before and after `atob` is first named, which adds it with DOMException.
    #[test]
    fn a_run_context_has_the_globals_of_a_full_one() {
        let (rt, _) = new_runtime().unwrap();
        let full = globals(&Context::full(&rt).unwrap(), "0");
        let prepared = Prepared::new(&rt).unwrap();
        let before = globals(&prepared.context, "0");
        // the late groups' globals, each defined by its group when first named
        prepared.context.with(|ctx| {
            let names: usize = ctx
                .eval(format!(
                    "globalThis.late = Object.getOwnPropertyNames(globalThis).filter((n) => \
                       {full:?}.includes(n) && Object.getOwnPropertyDescriptor(globalThis, n).get); \
                     late.length"
                ))
                .unwrap();
            assert_eq!(names, 3 + 16, "DOMException, atob, btoa and the typed arrays' globals");
        });
        let after = globals(&prepared.context, "typeof atob");
        for name in &full {
            if name == "WeakRef" || name == "FinalizationRegistry" {
                assert!(!after.contains(name), "{name} should be gone");
                continue;
            }
            assert!(before.contains(name), "{name} missing before first use");
            assert!(after.contains(name), "{name} missing after first use");
        }
        let works: bool = prepared.context.with(|ctx| {
            ctx.eval(
                "const b = new Uint8Array([1, 2, 3]); \
                 const v = new DataView(new ArrayBuffer(4)); v.setUint16(0, 513); \
                 b.length === 3 && ArrayBuffer.isView(b) && v.getUint8(1) === 1 && \
                 typeof Atomics === 'object' && btoa('hi') === 'aGk=' && \
                 !Object.getOwnPropertyDescriptor(globalThis, 'DOMException').get && \
                 late.every((n) => n in globalThis && \
                   !Object.getOwnPropertyDescriptor(globalThis, n).get) && \
                 Object.getPrototypeOf(Int8Array.prototype).toString === Array.prototype.toString",
            )
            .unwrap()
        });
        assert!(works);
        // a later context of the same runtime: DOMException is there too (atob throws it)
        let later = Prepared::new(&rt).unwrap();
        let kept: bool = later.context.with(|ctx| {
            ctx.eval(
                "let threw; try { atob('!'); } catch (e) { threw = e instanceof DOMException; } \
                 threw && typeof btoa === 'function'",
            )
            .unwrap()
        });
        assert!(kept);
        // an assignment before first use wins over the one added later
        let mine = Prepared::new(&rt).unwrap();
        let kept: bool = mine.context.with(|ctx| {
            ctx.eval("globalThis.btoa = 7; btoa === 7 && typeof DOMException === 'function'")
                .unwrap()
        });
        assert!(kept);
        // the same for a typed array; an accessor kept and called after its group was added
        // answers the global (and adds nothing twice)
        let again = Prepared::new(&rt).unwrap();
        let kept: bool = again.context.with(|ctx| {
            ctx.eval(
                "const get = Object.getOwnPropertyDescriptor(globalThis, 'Int32Array').get; \
                 globalThis.Uint8Array = 5; \
                 Uint8Array === 5 && typeof Int8Array === 'function' && \
                 get() === Int32Array && new Int32Array(2).length === 2",
            )
            .unwrap()
        });
        assert!(kept);
    }
}
