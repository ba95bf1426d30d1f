//! Store URLs: a sequential-flow-store `FlowStore` behind a napi class.

use std::time::Duration;

use napi::bindgen_prelude::Either;
use napi_derive::napi;
use sequential_flow_store::{Error, ExecuteRequest, FlowStore, ResumeInput, SaveOptions};
use serde::Serialize;
use serde_json::{Value, json};

/// A task store opened by URL (`openStore(url)`): `execute`/`resume` through it save the task
/// with a TTL; `get`, `delete`, `list`. Every method resolves to JSON text: `{"ok": value}` or
/// `{"error": {"code", "message", ...}}`, which `index.js` turns into a value or a
/// `SequentialFlowError` (so no error crosses the boundary as a bare string).
#[napi]
#[derive(Debug)]
pub struct NativeStore {
    store: FlowStore,
}

/// `openStore(url)`: a promise of the opened [`NativeStore`], or of an error answer naming the
/// URL (invalid form, unreachable server).
#[napi(js_name = "openStore")]
pub async fn open_store(url: String) -> napi::Result<Either<NativeStore, String>> {
    Ok(match FlowStore::open(&url).await {
        Ok(store) => Either::A(NativeStore { store }),
        Err(e) => Either::B(error_answer(&e)),
    })
}

#[napi]
impl NativeStore {
    /// `execute(requestJson, ttlMs)`: runs the request and saves the task it becomes.
    #[napi]
    pub async fn execute(&self, request: String, ttl_ms: Option<f64>) -> String {
        let request: ExecuteRequest = match parse("execute request", &request) {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        answer(self.store.execute(request, &save_options(ttl_ms)).await)
    }

    /// `resume(inputJson, ttlMs)`: `{taskId, vmState?, originalCode?, fetchResponse, ...}`.
    #[napi]
    pub async fn resume(&self, input: String, ttl_ms: Option<f64>) -> String {
        let input: ResumeInput = match parse("resume request", &input) {
            Ok(r) => r,
            Err(answer) => return answer,
        };
        answer(self.store.resume(input, &save_options(ttl_ms)).await)
    }

    /// `get(id)`: the live task, or `null` when unknown, expired or deleted.
    #[napi]
    pub async fn get(&self, id: String) -> String {
        match self.store.get(&id).await {
            Err(Error::Expired { .. } | Error::Deleted { .. }) => ok_answer(&Value::Null),
            other => answer(other),
        }
    }

    /// `delete(id)`: whether a live task was there.
    #[napi]
    pub async fn delete(&self, id: String) -> String {
        answer(self.store.delete(&id).await)
    }

    /// `list(limit)`: live tasks, most recently updated first.
    #[napi]
    pub async fn list(&self, limit: u32) -> String {
        answer(self.store.list(limit as usize).await)
    }

    /// The store's URL, credentials removed.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.store.url().to_owned()
    }
}

fn save_options(ttl_ms: Option<f64>) -> SaveOptions {
    match ttl_ms {
        Some(ms) if ms.is_finite() && ms > 0.0 => {
            SaveOptions::with_ttl(Duration::from_millis(ms.ceil() as u64))
        }
        _ => SaveOptions::default(),
    }
}

fn parse<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| {
        json!({"error": {"code": "INVALID", "message": format!("invalid {what}: expected the documented fields ({e})")}})
            .to_string()
    })
}

fn ok_answer<T: Serialize>(value: &T) -> String {
    json!({ "ok": value }).to_string()
}

fn answer<T: Serialize>(result: Result<T, Error>) -> String {
    match result {
        Ok(value) => ok_answer(&value),
        Err(e) => error_answer(&e),
    }
}

fn error_answer(e: &Error) -> String {
    let (code, extra) = match e {
        Error::InvalidUrl { .. } => ("INVALID_URL", json!({})),
        Error::Unreachable { url, .. } => ("UNREACHABLE", json!({ "url": url })),
        Error::NotFound { id, .. } => ("NOT_FOUND", json!({ "taskId": id })),
        Error::Expired { id, expired_at, .. } => {
            ("EXPIRED", json!({ "taskId": id, "expiredAt": expired_at }))
        }
        Error::Deleted { id, deleted_at, .. } => {
            ("DELETED", json!({ "taskId": id, "deletedAt": deleted_at }))
        }
        Error::NotPaused { id, .. } => ("NOT_PAUSED", json!({ "taskId": id })),
        Error::Invalid { .. } => ("INVALID", json!({})),
        _ => ("BACKEND", json!({})),
    };
    let mut error = extra;
    error["code"] = json!(code);
    error["message"] = json!(e.to_string());
    json!({ "error": error }).to_string()
}
