//! Pure evaluations on QuickJS-NG (behind [`crate::Evaluator`]): one runtime and context that
//! load a module once and call its default export for every input, with `pure.js` refusing
//! every host call.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::{Duration, Instant};

use rquickjs::prelude::List;
use rquickjs::promise::PromiseState;
use rquickjs::{Context, Ctx, Function, Module, Object, Persistent, Promise, Runtime, Value};

use super::{TASK_FILE, caught, eval_options};
use crate::engine::{Outcome, PURE};
use crate::{Error, Limits};

/// What the interrupt handler and the `refuse` native share with the realm.
#[derive(Debug, Default)]
struct Watch {
    /// When the running call's time is up; `None` between calls.
    deadline: Cell<Option<Instant>>,
    timed_out: Cell<bool>,
    /// The first host call the running call tried: `(kind, how the code wrote it)`.
    refused: RefCell<Option<(String, String)>>,
}

impl Watch {
    fn should_interrupt(&self) -> bool {
        if self.timed_out.get() {
            return true;
        }
        let over = self.deadline.get().is_some_and(|d| Instant::now() > d);
        if over {
            self.timed_out.set(true);
        }
        over
    }

    fn start(&self, limits: &Limits) {
        let slice = Duration::from_millis(limits.cpu_slice_ms);
        self.deadline.set(Instant::now().checked_add(slice));
        self.timed_out.set(false);
        self.refused.borrow_mut().take();
    }
}

/// A runtime and context holding one loaded module: see [`crate::Evaluator`] for the semantics.
pub(crate) struct Realm {
    // the persistent values are declared first: they are dropped before the context
    entry: Persistent<Function<'static>>,
    glue: Persistent<Object<'static>>,
    context: Context,
    watch: Rc<Watch>,
    limits: Limits,
}

impl Realm {
    /// A new runtime and context with `pure.js` set up and module `code` evaluated; its default
    /// export must be a function.
    pub(crate) fn new(code: &str, limits: &Limits) -> Result<Realm, Error> {
        let rt =
            Runtime::new().map_err(|e| Error::Engine(format!("cannot create a runtime: {e}")))?;
        rt.set_memory_limit(limits.memory_bytes);
        rt.set_max_stack_size(limits.stack_bytes);
        let watch = Rc::new(Watch::default());
        let w = watch.clone();
        rt.set_interrupt_handler(Some(Box::new(move || w.should_interrupt())));
        let context = Context::full(&rt)
            .map_err(|e| Error::Engine(format!("cannot create a context: {e}")))?;
        watch.start(limits);
        let loaded = context.with(|ctx| {
            let set_up = || -> rquickjs::Result<Result<(Object<'_>, Function<'_>), Error>> {
                let w = watch.clone();
                let refuse = Function::new(ctx.clone(), move |kind: String, shown: String| {
                    let message = format!(
                        "{shown} is a host call ({kind}), which a pure function may not make: it must compute its result from its input alone"
                    );
                    w.refused.borrow_mut().get_or_insert((kind, shown));
                    message
                })?;
                let make: Function<'_> =
                    ctx.eval_with_options(PURE, eval_options("fetch-vm:pure.js"))?;
                let glue: Object<'_> = make.call((refuse,))?;
                let (module, evaluated) = Module::declare(ctx.clone(), TASK_FILE, code)?.eval()?;
                settle(&ctx, evaluated)?;
                let entry: Value<'_> = module.get("default")?;
                match entry.into_function() {
                    Some(f) => Ok(Ok((glue, f))),
                    None => Ok(Err(Error::Invalid {
                        input: "module".into(),
                        expected: "a default export that is a function (`export default function (input) { … }`)".into(),
                    })),
                }
            };
            match set_up() {
                Ok(Ok((glue, entry))) => Ok((
                    Persistent::save(&ctx, glue),
                    Persistent::save(&ctx, entry),
                )),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(failure(&ctx, e, &watch, limits)),
            }
        });
        watch.deadline.set(None);
        let (glue, entry) = loaded?;
        Ok(Realm {
            entry,
            glue,
            context,
            watch,
            limits: limits.clone(),
        })
    }

    /// Calls the default export with the value of `input_json` and runs it to its end: the
    /// result as JSON text.
    pub(crate) fn call(&self, input_json: &str) -> Result<String, Error> {
        self.watch.start(&self.limits);
        let out = self.context.with(|ctx| {
            let run = || -> rquickjs::Result<Result<String, Error>> {
                let glue = self.glue.clone().restore(&ctx)?;
                let entry = self.entry.clone().restore(&ctx)?;
                let call: Function<'_> = glue.get("call")?;
                let to_json: Function<'_> = glue.get("toJson")?;
                let value: Value<'_> = call.call((entry, input_json))?;
                let value = match value.clone().into_promise() {
                    Some(p) => match settle(&ctx, p)? {
                        Some(v) => v,
                        None => return Ok(Err(Error::Stalled)),
                    },
                    None => {
                        while ctx.execute_pending_job() {}
                        value
                    }
                };
                let List((ok, text)): List<(bool, String)> = to_json.call((value,))?;
                Ok(if ok {
                    Ok(text)
                } else if text.contains("out of memory") {
                    Err(Error::MemoryLimit {
                        limit_bytes: self.limits.memory_bytes,
                    })
                } else {
                    Err(Error::NotSerializable { message: text })
                })
            };
            match run() {
                Ok(r) => r,
                Err(e) => Err(failure(&ctx, e, &self.watch, &self.limits)),
            }
        });
        self.watch.deadline.set(None);
        // a refused host call decides the outcome even when the code caught the error
        if let Some((kind, call)) = self.watch.refused.borrow_mut().take() {
            return Err(Error::HostCall { kind, call });
        }
        if self.watch.timed_out.get() {
            return Err(Error::Timeout {
                limit_ms: self.limits.cpu_slice_ms,
            });
        }
        let text = out?;
        if text.len() > self.limits.max_result_bytes {
            return Err(Error::ResultTooLarge {
                size: text.len(),
                limit: self.limits.max_result_bytes,
            });
        }
        Ok(text)
    }
}

/// Drives the job queue until `promise` settles: its value, `None` when nothing is left to run
/// and it is still pending, or the exception it was rejected with.
fn settle<'js>(ctx: &Ctx<'js>, promise: Promise<'js>) -> rquickjs::Result<Option<Value<'js>>> {
    while ctx.execute_pending_job() {}
    match promise.state() {
        PromiseState::Pending => Ok(None),
        PromiseState::Resolved => promise
            .result::<Value<'js>>()
            .unwrap_or_else(|| Ok(Value::new_undefined(ctx.clone())))
            .map(Some),
        PromiseState::Rejected => Err(promise
            .result::<Value<'js>>()
            .and_then(|r| r.err())
            .unwrap_or(rquickjs::Error::Exception)),
    }
}

/// The error of a failed rquickjs call (reading the pending exception).
fn failure(ctx: &Ctx<'_>, err: rquickjs::Error, watch: &Watch, limits: &Limits) -> Error {
    if let Some((kind, call)) = watch.refused.borrow_mut().take() {
        ctx.catch();
        return Error::HostCall { kind, call };
    }
    if watch.timed_out.get() {
        ctx.catch();
        return Error::Timeout {
            limit_ms: limits.cpu_slice_ms,
        };
    }
    match caught(ctx, err) {
        Outcome::Thrown(js) => Error::Js(js),
        Outcome::OutOfMemory => Error::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        },
        Outcome::StackOverflow => Error::StackLimit {
            limit_bytes: limits.stack_bytes,
        },
        Outcome::Interrupted => Error::Timeout {
            limit_ms: limits.cpu_slice_ms,
        },
        Outcome::Value(_) | Outcome::NotSerializable(_) => {
            Error::Engine("unexpected outcome".into())
        }
        Outcome::Failed(msg) => Error::Engine(msg),
    }
}
