//! External mode: the seed's `execute`/`resume` JSON contract, where an outside caller performs
//! each paused fetch and resumes the task with its response, possibly in another process.
//!
//! ```
//! use serde_json::{json, Value};
//! use sequential_fetch_vm::{execute_json, resume_json};
//!
//! let code = "const u = fetch('https://api.example.com/users/1'); ({ name: u.name })";
//! let out: Value = serde_json::from_str(&execute_json(&json!({"id": "t1", "code": code}).to_string()))?;
//! assert_eq!(out["status"], "paused");
//! assert_eq!(out["fetchRequest"]["url"], "https://api.example.com/users/1");
//! let resumed = resume_json(&json!({
//!     "taskId": "t1", "vmState": out["vmState"], "originalCode": code,
//!     "fetchResponse": {"data": {"name": "Alice"}, "status": 200, "statusText": "OK"},
//! }).to_string());
//! let done: Value = serde_json::from_str(&resumed)?;
//! assert_eq!(done["status"], "completed");
//! assert_eq!(done["result"], json!({"name": "Alice"}));
//! # Ok::<(), serde_json::Error>(())
//! ```

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::source::code_hash;
use crate::{
    CallKind, CallResult, Error, ErrorInfo, HostCall, Journal, Limits, Mode, Options, Session, Step,
};

/// The newest vmState format version this build writes and reads.
pub const VM_STATE_VERSION: u64 = 1;

const VM_STATE_FORMAT: &str = "sequential-fetch-vm/vm-state";

/// `execute({id, code, input})`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ExecuteRequest {
    /// The task id echoed back (`taskId` on resume).
    #[serde(default)]
    pub id: Option<String>,
    /// The JavaScript code.
    pub code: String,
    /// The input (`null` when absent).
    #[serde(default)]
    pub input: Value,
    /// `script`, `module` or `auto` (default).
    #[serde(default)]
    pub mode: Mode,
    /// Task name, for a module entry named after the task.
    #[serde(default)]
    pub task_name: Option<String>,
}

impl ExecuteRequest {
    /// A request for `code` with `input`.
    pub fn new(id: Option<String>, code: impl Into<String>, input: Value) -> Self {
        ExecuteRequest {
            id,
            code: code.into(),
            input,
            mode: Mode::Auto,
            task_name: None,
        }
    }
}

/// The response to the paused fetch (`fetchResponse`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct FetchResponse {
    /// Which call this answers (`fetchRequest.id`); default: the first pending fetch.
    #[serde(default)]
    pub id: Option<Value>,
    /// The body: JSON, or text (parsed when the content type says JSON).
    #[serde(default)]
    pub data: Value,
    /// HTTP status (default 200).
    #[serde(default = "default_status")]
    pub status: u16,
    /// HTTP status text.
    #[serde(default)]
    pub status_text: String,
    /// Response headers.
    #[serde(default)]
    pub headers: Option<Value>,
}

fn default_status() -> u16 {
    200
}

/// An answer to any pending call (`responses: [...]`), for non-fetch calls or several at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct CallResponse {
    /// The pending call's id.
    pub id: Value,
    /// Its result (for a fetch: `{status, statusText, headers, data}`).
    #[serde(default)]
    pub result: Value,
    /// Or the error it failed with.
    #[serde(default)]
    pub error: Option<ErrorInfo>,
}

/// `resume({taskId, vmState, originalCode, fetchResponse})`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ResumeRequest {
    /// The task id echoed back.
    #[serde(default)]
    pub task_id: Option<String>,
    /// The opaque state returned by the previous `execute`/`resume`.
    pub vm_state: String,
    /// The task's code; must hash to the code the state was recorded for.
    pub original_code: String,
    /// The response to the paused fetch.
    #[serde(default)]
    pub fetch_response: Option<FetchResponse>,
    /// Answers to other pending calls, applied after `fetchResponse`, in order.
    #[serde(default)]
    pub responses: Vec<CallResponse>,
}

impl FetchResponse {
    /// A response with `status` and `data` (no id: it answers the first pending fetch).
    pub fn new(status: u16, status_text: impl Into<String>, data: Value) -> Self {
        FetchResponse {
            id: None,
            data,
            status,
            status_text: status_text.into(),
            headers: None,
        }
    }
}

impl ResumeRequest {
    /// A resume of `vm_state` for `original_code`, answering the paused fetch with `response`.
    pub fn new(
        task_id: Option<String>,
        vm_state: impl Into<String>,
        original_code: impl Into<String>,
        response: Option<FetchResponse>,
    ) -> Self {
        ResumeRequest {
            task_id,
            vm_state: vm_state.into(),
            original_code: original_code.into(),
            fetch_response: response,
            responses: Vec::new(),
        }
    }
}

/// A paused fetch as the seed described it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct FetchRequest {
    /// The call id (`call-<seq>`).
    pub id: String,
    /// The URL.
    pub url: Value,
    /// The options exactly as the code passed them.
    pub options: Value,
}

/// One pending call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct PendingCall {
    /// The call id (`call-<seq>`).
    pub id: String,
    /// Its sequence number.
    pub seq: u64,
    /// Its kind.
    pub kind: CallKind,
    /// Its request.
    pub request: Value,
}

/// Whether the run paused, completed or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Waiting for the calls in `pending` (`fetchRequest` is the first fetch among them).
    Paused,
    /// Finished; see `result`.
    Completed,
    /// Failed; see `error`.
    Error,
}

/// The response of `execute` and `resume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ExternalResponse {
    /// The task id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The code that ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// paused, completed or error.
    pub status: Status,
    /// The first pending fetch, when paused on one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fetch_request: Option<FetchRequest>,
    /// Every pending call, when paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending: Option<Vec<PendingCall>>,
    /// State to pass to `resume`, when paused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vm_state: Option<String>,
    /// The result, when completed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// `{name, message, stack}`, when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorInfo>,
}

impl ExternalResponse {
    fn failed(id: Option<String>, code: Option<String>, error: &Error) -> Self {
        ExternalResponse {
            id,
            code,
            status: Status::Error,
            fetch_request: None,
            pending: None,
            vm_state: None,
            result: None,
            error: Some(error.to_info()),
        }
    }
}

/// The persisted part of a vmState.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct StateBody {
    task_id: Option<String>,
    code_hash: String,
    mode: Mode,
    task_name: Option<String>,
    input: Value,
    journal: Journal,
}

#[derive(Debug, Serialize, Deserialize)]
struct VmState {
    format: String,
    version: u64,
    /// sha256 of the body's JSON: detects edits and truncation.
    checksum: String,
    body: StateBody,
}

fn encode_state(body: StateBody) -> String {
    let body_json = serde_json::to_string(&body).unwrap_or_default();
    let state = VmState {
        format: VM_STATE_FORMAT.into(),
        version: VM_STATE_VERSION,
        checksum: code_hash(&body_json),
        body,
    };
    serde_json::to_string(&state).unwrap_or_default()
}

fn decode_state(text: &str) -> Result<StateBody, Error> {
    let invalid = |expected: String| Error::Invalid {
        input: "vmState".into(),
        expected,
    };
    let raw: Value = serde_json::from_str(text).map_err(|e| {
        invalid(format!(
            "a JSON string written by execute/resume; it is truncated or garbage ({e})"
        ))
    })?;
    if raw.get("format").and_then(Value::as_str) != Some(VM_STATE_FORMAT) {
        return Err(invalid(format!(
            "an object with \"format\": \"{VM_STATE_FORMAT}\" (as written by execute/resume)"
        )));
    }
    let version = raw
        .get("version")
        .and_then(Value::as_u64)
        .ok_or_else(|| invalid("a numeric \"version\"".into()))?;
    if version > VM_STATE_VERSION {
        return Err(Error::UnsupportedVersion {
            found: version,
            supported: VM_STATE_VERSION,
        });
    }
    let state: VmState = serde_json::from_value(raw).map_err(|e| {
        invalid(format!(
            "a complete vmState ({e}); it was edited or truncated"
        ))
    })?;
    let body_json = serde_json::to_string(&state.body).unwrap_or_default();
    if code_hash(&body_json) != state.checksum {
        return Err(invalid(
            "an unmodified vmState: its checksum does not match its content (it was edited)".into(),
        ));
    }
    Ok(state.body)
}

fn call_id(seq: u64) -> String {
    format!("call-{seq}")
}

fn parse_id(id: &Value) -> Option<u64> {
    match id {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.strip_prefix("call-").unwrap_or(s).parse().ok(),
        _ => None,
    }
}

fn respond(
    id: Option<String>,
    code: &str,
    body: StateBody,
    session: &Session,
    step: Step,
) -> ExternalResponse {
    match step {
        Step::Completed(result) => ExternalResponse {
            id,
            code: Some(code.to_owned()),
            status: Status::Completed,
            fetch_request: None,
            pending: None,
            vm_state: None,
            result: Some(result),
            error: None,
        },
        Step::Failed(e) => ExternalResponse::failed(id, Some(code.to_owned()), &e),
        Step::Pending(calls) => {
            let fetch_request =
                calls
                    .iter()
                    .find(|c| c.kind == CallKind::Fetch)
                    .map(|c| FetchRequest {
                        id: call_id(c.seq),
                        url: c.request.get("url").cloned().unwrap_or(Value::Null),
                        options: c
                            .request
                            .get("options")
                            .cloned()
                            .unwrap_or_else(|| Value::Object(Default::default())),
                    });
            let pending = calls
                .iter()
                .map(|c: &HostCall| PendingCall {
                    id: call_id(c.seq),
                    seq: c.seq,
                    kind: c.kind,
                    request: c.request.clone(),
                })
                .collect();
            let vm_state = encode_state(StateBody {
                journal: session.journal().clone(),
                ..body
            });
            ExternalResponse {
                id,
                code: Some(code.to_owned()),
                status: Status::Paused,
                fetch_request,
                pending: Some(pending),
                vm_state: Some(vm_state),
                result: None,
                error: None,
            }
        }
    }
}

/// Runs `req` until it completes, fails or pauses at its first pending call(s).
pub fn execute(req: &ExecuteRequest, limits: &Limits) -> ExternalResponse {
    let mut options = Options::with_mode(req.mode);
    options.task_name = req.task_name.clone();
    options.limits = limits.clone();
    match Session::start(&req.code, &req.input, Vec::new(), &options) {
        Ok((session, step)) => {
            let body = StateBody {
                task_id: req.id.clone(),
                code_hash: code_hash(&req.code),
                mode: req.mode,
                task_name: req.task_name.clone(),
                input: req.input.clone(),
                journal: Vec::new(),
            };
            respond(req.id.clone(), &req.code, body, &session, step)
        }
        Err(e) => ExternalResponse::failed(req.id.clone(), Some(req.code.clone()), &e),
    }
}

/// Replays `req.vm_state` against `req.original_code`, hands over the responses, and runs to
/// the next pause or the end.
pub fn resume(req: &ResumeRequest, limits: &Limits) -> ExternalResponse {
    let id = req.task_id.clone();
    let code = &req.original_code;
    match resume_inner(req, limits) {
        Ok((body, session, step)) => respond(id, code, body, &session, step),
        Err(e) => ExternalResponse::failed(id, Some(code.clone()), &e),
    }
}

fn resume_inner(req: &ResumeRequest, limits: &Limits) -> Result<(StateBody, Session, Step), Error> {
    let body = decode_state(&req.vm_state)?;
    let given = code_hash(&req.original_code);
    if given != body.code_hash {
        return Err(Error::CodeMismatch {
            recorded: body.code_hash,
            given,
        });
    }
    let mut options = Options::with_mode(body.mode);
    options.task_name = body.task_name.clone();
    options.limits = limits.clone();
    let (mut session, mut step) = Session::start(
        &req.original_code,
        &body.input,
        body.journal.clone(),
        &options,
    )?;
    let mut answers: Vec<(Option<Value>, bool, CallResult)> = Vec::new();
    if let Some(f) = &req.fetch_response {
        let result = CallResult::fetch_response(
            f.status,
            &f.status_text,
            f.headers
                .clone()
                .unwrap_or_else(|| Value::Object(Default::default())),
            f.data.clone(),
        );
        answers.push((f.id.clone(), true, result));
    }
    for r in &req.responses {
        let result = match &r.error {
            Some(e) => CallResult::Error(e.clone()),
            None => CallResult::Ok(r.result.clone()),
        };
        answers.push((Some(r.id.clone()), false, result));
    }
    for (id, is_fetch, result) in answers {
        let Step::Pending(calls) = &step else {
            return Err(Error::Invalid {
                input: "resume".into(),
                expected: "responses only while the task is paused; it has already ended".into(),
            });
        };
        let seq = match &id {
            Some(id) => parse_id(id).ok_or_else(|| Error::Invalid {
                input: format!("response id {id}"),
                expected: format!(
                    "one of the pending ids: {}",
                    calls
                        .iter()
                        .map(|c| call_id(c.seq))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?,
            None => {
                let first_fetch = calls
                    .iter()
                    .find(|c| c.kind == CallKind::Fetch || !is_fetch);
                match first_fetch {
                    Some(c) => c.seq,
                    None => {
                        return Err(Error::Invalid {
                            input: "fetchResponse".into(),
                            expected: format!(
                                "no fetch is pending; answer the pending calls with `responses`: {}",
                                calls
                                    .iter()
                                    .map(|c| format!("{} ({})", call_id(c.seq), c.kind))
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        });
                    }
                }
            }
        };
        step = session.complete(seq, result)?;
    }
    Ok((body, session, step))
}

fn parse_request<T: serde::de::DeserializeOwned>(what: &str, req: &str) -> Result<T, Error> {
    serde_json::from_str(req).map_err(|e| Error::Invalid {
        input: format!("{what} request"),
        expected: format!("a JSON object with the documented fields ({e})"),
    })
}

/// [`execute`] on JSON text, with default limits: the body of `sequential-ecosystem vm execute`.
pub fn execute_json(req: &str) -> String {
    let response = match parse_request::<ExecuteRequest>("execute", req) {
        Ok(r) => execute(&r, &Limits::default()),
        Err(e) => ExternalResponse::failed(None, None, &e),
    };
    serde_json::to_string(&response).unwrap_or_default()
}

/// [`resume`] on JSON text, with default limits: the body of `sequential-ecosystem vm resume`.
pub fn resume_json(req: &str) -> String {
    let response = match parse_request::<ResumeRequest>("resume", req) {
        Ok(r) => resume(&r, &Limits::default()),
        Err(e) => ExternalResponse::failed(None, None, &e),
    };
    serde_json::to_string(&response).unwrap_or_default()
}
