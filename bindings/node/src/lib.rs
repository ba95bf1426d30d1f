//! The native half of the `sequential-flow` Node package: `execute` and `resume` of fetch-vm's
//! external mode, run off the JavaScript thread and returned as promises of JSON text. The
//! JavaScript half (`index.js`) validates arguments, parses the JSON and talks to storage
//! objects; store URLs are opened here ([`NativeStore`], sequential-flow-store).

mod store;

use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;

/// Which external-mode call a [`VmCall`] makes.
#[derive(Debug, Clone, Copy)]
enum Call {
    Execute,
    Resume,
}

/// One `execute`/`resume` on the libuv thread pool: JSON request in, JSON response out.
#[derive(Debug)]
pub struct VmCall {
    call: Call,
    request: String,
}

impl Task for VmCall {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        Ok(match self.call {
            Call::Execute => sequential_fetch_vm::execute_json(&self.request),
            Call::Resume => sequential_fetch_vm::resume_json(&self.request),
        })
    }

    fn resolve(&mut self, _env: Env, output: String) -> napi::Result<String> {
        Ok(output)
    }
}

/// `execute(requestJson)`: a promise of the response JSON (`{id, status, fetchRequest, vmState,
/// result, error, ...}`); a bad request is an `error` response, never a rejection.
#[napi(js_name = "execute")]
pub fn execute(request: String) -> AsyncTask<VmCall> {
    AsyncTask::new(VmCall {
        call: Call::Execute,
        request,
    })
}

/// `resume(requestJson)`: as [`execute`], for `{taskId, vmState, originalCode, fetchResponse}`.
#[napi(js_name = "resume")]
pub fn resume(request: String) -> AsyncTask<VmCall> {
    AsyncTask::new(VmCall {
        call: Call::Resume,
        request,
    })
}

/// `executeSync(requestJson)`: [`execute`] on the calling thread (for benchmarks and scripts).
#[napi(js_name = "executeSync")]
pub fn execute_sync(request: String) -> String {
    sequential_fetch_vm::execute_json(&request)
}

/// `resumeSync(requestJson)`: [`resume`] on the calling thread.
#[napi(js_name = "resumeSync")]
pub fn resume_sync(request: String) -> String {
    sequential_fetch_vm::resume_json(&request)
}
