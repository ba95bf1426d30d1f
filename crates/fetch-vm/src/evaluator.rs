//! [`Evaluator`]: a JavaScript module's default export as a deterministic pure function.

use std::sync::mpsc::{Receiver, Sender, SyncSender, channel, sync_channel};
use std::thread::JoinHandle;

use serde_json::Value;

use crate::engine::quickjs::pure::Realm;
use crate::{Error, Limits};

/// A JavaScript module loaded once, whose default export is called as a pure function of JSON:
/// for embedders that run small deterministic code many times (the guards and actions of a
/// JavaScript state machine definition, for instance).
///
/// [`Evaluator::new`] evaluates the module in a JavaScript runtime of its own, on a thread of
/// its own; [`Evaluator::call`] hands an input to that thread, which calls the default export
/// with it, runs the returned promise (if any) to its end, and sends back the JSON of the
/// result (`undefined` is `null`). The handle is `Send + Sync`; calls from several threads
/// take turns. Dropping the handle ends the thread, and with it the runtime.
///
/// **The code must compute from its input alone.** Every way to reach the outside refuses and
/// throws an error naming the call: `fetch()`, `Date.now()`, `new Date()` and `Date()`
/// (`new Date(ms)`, `Date.parse` and `Date.UTC` are allowed), `performance.now()`,
/// `Math.random()`, `crypto.randomUUID()` and `crypto.getRandomValues()`, `setTimeout()` and
/// `setInterval()`, and the task API's `ctx.*`; the call then fails with
/// [`Error::HostCall`], even when the code caught the error. `WeakRef` and
/// `FinalizationRegistry` are absent; `console` output is ignored. A module that imports
/// another module fails to load.
///
/// **One realm per evaluator.** The module is evaluated once; every call runs in the same
/// JavaScript context, so module-level variables and globals the code sets persist from one
/// call to the next of the same evaluator (as JavaScript state machine libraries run every
/// action in one realm). Keep state in the input and the result. After a call that hit a
/// limit ([`Error::Timeout`], [`Error::MemoryLimit`], [`Error::StackLimit`]) the realm is
/// thrown away and the module evaluated afresh before the next call.
///
/// **Limits** ([`Limits`]): `cpu_slice_ms` bounds each call (and the module's evaluation);
/// `memory_bytes` and `stack_bytes` the runtime; `max_result_bytes` the result's JSON. The
/// other fields do not apply.
///
/// ```
/// use sequential_fetch_vm::{Error, Evaluator, Limits};
/// use serde_json::json;
///
/// let add = Evaluator::new(
///     "export default ({ a, b }) => ({ sum: a + b });",
///     &Limits::default(),
/// )?;
/// assert_eq!(add.call(&json!({"a": 1, "b": 2}))?, json!({"sum": 3}));
///
/// let stamp = Evaluator::new("export default () => Date.now();", &Limits::default())?;
/// let err = stamp.call(&json!(null)).unwrap_err();
/// assert!(matches!(&err, Error::HostCall { kind, .. } if kind == "now"), "{err}");
/// # Ok::<(), Error>(())
/// ```
#[derive(Debug)]
pub struct Evaluator {
    tx: Option<Sender<Request>>,
    thread: Option<JoinHandle<()>>,
}

/// One call, sent to the evaluator's thread.
#[derive(Debug)]
struct Request {
    input_json: String,
    reply: SyncSender<Result<Value, Error>>,
}

impl Evaluator {
    /// Evaluates module `code` (an ES module whose default export is a function) on a new
    /// thread. A syntax error, an exception thrown by the module's top level, a host call made
    /// there or a default export that is not a function is an error here.
    pub fn new(code: &str, limits: &Limits) -> Result<Evaluator, Error> {
        let (tx, rx) = channel::<Request>();
        let (ready_tx, ready_rx) = sync_channel::<Result<(), Error>>(1);
        let code = code.to_owned();
        let limits = limits.clone();
        let thread = std::thread::Builder::new()
            .name("fetch-vm-evaluator".into())
            .stack_size(limits.stack_bytes.saturating_add(4 << 20))
            .spawn(move || serve(&code, &limits, &rx, &ready_tx))
            .map_err(|e| Error::Engine(format!("cannot start an evaluator thread: {e}")))?;
        let ready = ready_rx
            .recv()
            .unwrap_or_else(|_| Err(Error::Engine("the evaluator thread ended".into())));
        let mut evaluator = Evaluator {
            tx: Some(tx),
            thread: Some(thread),
        };
        match ready {
            Ok(()) => Ok(evaluator),
            Err(e) => {
                evaluator.shut_down();
                Err(e)
            }
        }
    }

    /// Calls the module's default export with `input` and returns its result (the value the
    /// returned promise resolved to, for an async function). A thrown exception is
    /// [`Error::Js`], a host call [`Error::HostCall`], a promise that nothing can settle
    /// [`Error::Stalled`], a result that is not JSON [`Error::NotSerializable`].
    pub fn call(&self, input: &Value) -> Result<Value, Error> {
        let input_json = serde_json::to_string(input).map_err(|e| Error::Invalid {
            input: "input".into(),
            expected: format!("a JSON value ({e})"),
        })?;
        let (reply, answer) = sync_channel(1);
        let gone = || Error::Engine("the evaluator thread ended".into());
        self.tx
            .as_ref()
            .ok_or_else(gone)?
            .send(Request { input_json, reply })
            .map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }

    fn shut_down(&mut self) {
        self.tx.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Evaluator {
    /// Ends the thread (after the call it is running, if any) and frees the runtime.
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The evaluator's thread: loads the module, then answers calls until the handle is dropped.
fn serve(
    code: &str,
    limits: &Limits,
    rx: &Receiver<Request>,
    ready: &SyncSender<Result<(), Error>>,
) {
    let mut realm = match Realm::new(code, limits) {
        Ok(r) => Some(r),
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let _ = ready.send(Ok(()));
    while let Ok(Request { input_json, reply }) = rx.recv() {
        let r = match &realm {
            Some(r) => Ok(r),
            None => Realm::new(code, limits).map(|r| &*realm.insert(r)),
        };
        let result = r.and_then(|r| r.call(&input_json));
        if matches!(
            result,
            Err(Error::Timeout { .. } | Error::MemoryLimit { .. } | Error::StackLimit { .. })
        ) {
            realm = None; // evaluated afresh before the next call
        }
        let result = result.and_then(|text| {
            serde_json::from_str(&text)
                .map_err(|e| Error::Engine(format!("the result is not JSON: {e}")))
        });
        let _ = reply.send(result);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_handle_is_send_and_sync() {
        fn shared<T: Send + Sync>() {}
        shared::<super::Evaluator>();
    }
}
