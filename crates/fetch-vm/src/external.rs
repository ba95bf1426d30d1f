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

/// `options` of `execute` and `resume`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ExternalOptions {
    /// Resolves relative fetch URLs in `fetchRequest.url` (as `new URL(url, baseUrl)` does);
    /// without it a relative URL is handed out exactly as the code wrote it. Kept in `vmState`;
    /// a `resume` may give another one.
    #[serde(default)]
    pub base_url: Option<String>,
}

/// `execute({id, name, code, input}, options)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct ExecuteRequest {
    /// The task id echoed back (`taskId` on resume); a UUID v7 is generated when it is missing.
    #[serde(default)]
    pub id: Option<String>,
    /// The task's name, echoed back on every response.
    #[serde(default)]
    pub name: Option<String>,
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
    /// The options (`baseUrl`).
    #[serde(default)]
    pub options: ExternalOptions,
}

impl ExecuteRequest {
    /// A request for `code` with `input`.
    pub fn new(id: Option<String>, code: impl Into<String>, input: Value) -> Self {
        ExecuteRequest {
            id,
            name: None,
            code: code.into(),
            input,
            mode: Mode::Auto,
            task_name: None,
            options: ExternalOptions::default(),
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
    /// The options; a `baseUrl` here replaces the one `execute` was given.
    #[serde(default)]
    pub options: ExternalOptions,
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
            options: ExternalOptions::default(),
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

/// Whether the run is running, paused, completed or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Still running (a stored task being worked on); `execute` and `resume` never return it.
    Running,
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
    /// The task id (given, or generated by `execute`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The task's name, as `execute` was given it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
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
    /// The error message, when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `{name, message, stack}`, when failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_info: Option<ErrorInfo>,
}

impl ExternalResponse {
    fn new(id: Option<String>, name: Option<String>, code: Option<String>, status: Status) -> Self {
        ExternalResponse {
            id,
            name,
            code,
            status,
            fetch_request: None,
            pending: None,
            vm_state: None,
            result: None,
            error: None,
            error_info: None,
        }
    }

    fn failed(
        id: Option<String>,
        name: Option<String>,
        code: Option<String>,
        error: &Error,
    ) -> Self {
        let info = error.to_info();
        ExternalResponse {
            error: Some(info.message.clone()),
            error_info: Some(info),
            ..ExternalResponse::new(id, name, code, Status::Error)
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    base_url: Option<String>,
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

/// What a valid vmState says about itself, from [`check_vm_state`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct VmStateInfo {
    /// The id of the task the state was written for.
    pub task_id: Option<String>,
    /// The task's name, as `execute` was given it.
    pub name: Option<String>,
    /// How many host calls (clock, randomness and fetches included) the state has recorded.
    pub recorded_calls: usize,
}

/// Checks `vm_state` without running anything: format, version, checksum (an edited recorded
/// value fails here), that it belongs to `task_id` (when given) and was recorded for `code`
/// (when given). A task store calls it before a resume so that bad input stores nothing.
pub fn check_vm_state(
    vm_state: &str,
    task_id: Option<&str>,
    code: Option<&str>,
) -> Result<VmStateInfo, Error> {
    let body = decode_state(vm_state)?;
    check_task_id(&body, task_id)?;
    if let Some(code) = code {
        let given = code_hash(code);
        if given != body.code_hash {
            return Err(Error::CodeMismatch {
                recorded: body.code_hash,
                given,
            });
        }
    }
    Ok(VmStateInfo {
        task_id: body.task_id,
        name: body.name,
        recorded_calls: body.journal.len(),
    })
}

fn check_task_id(body: &StateBody, task_id: Option<&str>) -> Result<(), Error> {
    match (task_id, body.task_id.as_deref()) {
        (Some(given), Some(recorded)) if given != recorded => Err(Error::Invalid {
            input: format!("taskId {given:?}"),
            expected: format!(
                "the id of the task this vmState was written for ({recorded:?}); pass that \
                 task's own vmState, or its id"
            ),
        }),
        _ => Ok(()),
    }
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
    let name = body.name.clone();
    let done =
        |status| ExternalResponse::new(id.clone(), name.clone(), Some(code.to_owned()), status);
    match step {
        Step::Completed(result) => ExternalResponse {
            result: Some(result),
            ..done(Status::Completed)
        },
        Step::Failed(e) => {
            ExternalResponse::failed(id.clone(), name.clone(), Some(code.to_owned()), &e)
        }
        Step::Pending(calls) => {
            let base = body.base_url.as_deref();
            let request = |c: &HostCall| {
                let mut request = c.request.clone();
                if let (CallKind::Fetch, Some(base), Some(url)) =
                    (c.kind, base, c.request.get("url").and_then(Value::as_str))
                    && let Some(resolved) = resolve_url(url, base)
                {
                    request["url"] = Value::String(resolved);
                }
                request
            };
            let fetch_request = calls.iter().find(|c| c.kind == CallKind::Fetch).map(|c| {
                let request = request(c);
                FetchRequest {
                    id: call_id(c.seq),
                    url: request.get("url").cloned().unwrap_or(Value::Null),
                    options: request
                        .get("options")
                        .cloned()
                        .unwrap_or_else(|| Value::Object(Default::default())),
                }
            });
            let pending = calls
                .iter()
                .map(|c: &HostCall| PendingCall {
                    id: call_id(c.seq),
                    seq: c.seq,
                    kind: c.kind,
                    request: request(c),
                })
                .collect();
            let vm_state = encode_state(StateBody {
                journal: session.journal().clone(),
                ..body
            });
            ExternalResponse {
                fetch_request,
                pending: Some(pending),
                vm_state: Some(vm_state),
                ..done(Status::Paused)
            }
        }
    }
}

/// Resolves `url` against `base` as `new URL(url, base)` does (RFC 3986 §5.2): an absolute URL
/// is returned unchanged, `//host/p`, `/p`, `?q`, `#f` and `p` relative to `base`. `None` when
/// `base` is not an absolute URL.
pub fn resolve_url(url: &str, base: &str) -> Option<String> {
    if is_absolute_url(url) {
        return Some(url.to_owned());
    }
    if !is_absolute_url(base) {
        return None;
    }
    let base = base.split('#').next().unwrap_or(base);
    let (scheme, rest) = base.split_once(':')?;
    let (authority, path_query) = match rest.strip_prefix("//") {
        Some(r) => {
            let end = r.find(['/', '?']).unwrap_or(r.len());
            (Some(&r[..end]), &r[end..])
        }
        None => (None, rest),
    };
    let (base_path, base_query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path_query, None),
    };
    let prefix = match authority {
        Some(a) => format!("{scheme}://{a}"),
        None => format!("{scheme}:"),
    };
    if let Some(r) = url.strip_prefix("//") {
        return Some(format!("{scheme}://{r}"));
    }
    if url.is_empty() || url.starts_with('#') {
        let query = base_query.map(|q| format!("?{q}")).unwrap_or_default();
        return Some(format!("{prefix}{base_path}{query}{url}"));
    }
    if url.starts_with('?') {
        return Some(format!("{prefix}{base_path}{url}"));
    }
    let (path, tail) = match url.find(['?', '#']) {
        Some(i) => (&url[..i], &url[i..]),
        None => (url, ""),
    };
    let merged = if path.starts_with('/') {
        path.to_owned()
    } else if authority.is_some() && base_path.is_empty() {
        format!("/{path}")
    } else {
        let dir = base_path.rfind('/').map_or("", |i| &base_path[..=i]);
        format!("{dir}{path}")
    };
    Some(format!("{prefix}{}{tail}", remove_dot_segments(&merged)))
}

/// Whether `url` starts with a scheme (`https:`, `data:`, …), so no base URL applies to it.
pub fn is_absolute_url(url: &str) -> bool {
    let Some((scheme, _)) = url.split_once(':') else {
        return false;
    };
    let mut chars = scheme.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    out.join("/")
}

/// The answer to a call external mode performs itself: `now` from the OS clock, `random` from
/// the OS generator, `log` acknowledged; `None` for calls the caller must answer.
fn local_answer(call: &HostCall) -> Option<CallResult> {
    match call.kind {
        CallKind::Now => {
            let ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64);
            Some(CallResult::Ok(Value::from(ms)))
        }
        CallKind::Random => {
            let n = call.request["bytes"].as_u64().unwrap_or(16).min(65_536) as usize;
            let mut bytes = vec![0u8; n];
            Some(match getrandom::fill(&mut bytes) {
                Ok(()) => CallResult::Ok(Value::String(hex::encode(bytes))),
                Err(e) => CallResult::Error(ErrorInfo::new(
                    "Error",
                    format!("drawing {n} random bytes from the operating system's generator: {e}"),
                )),
            })
        }
        CallKind::Log => Some(CallResult::Ok(Value::Null)),
        _ => None,
    }
}

/// Answers the clock, randomness and console calls among the pending ones until the code
/// completes, fails or waits only for calls the caller performs. The answers are journaled, so
/// every later resume replays the same values.
fn answer_local(session: &mut Session, mut step: Step) -> Result<Step, Error> {
    loop {
        let Step::Pending(calls) = &step else {
            return Ok(step);
        };
        let Some((seq, result)) = calls
            .iter()
            .find_map(|c| local_answer(c).map(|r| (c.seq, r)))
        else {
            return Ok(step);
        };
        step = session.complete(seq, result)?;
    }
}

/// Runs `req` until it completes, fails or pauses at its first call the caller must perform
/// (in script mode always a fetch: clock, randomness and console are answered here).
pub fn execute(req: &ExecuteRequest, limits: &Limits) -> ExternalResponse {
    let id = Some(
        req.id
            .clone()
            .unwrap_or_else(|| uuid::Uuid::now_v7().to_string()),
    );
    let mut options = Options::with_mode(req.mode);
    options.task_name = req.task_name.clone();
    options.limits = limits.clone();
    let started = Session::start(&req.code, &req.input, Vec::new(), &options)
        .and_then(|(mut session, step)| Ok((answer_local(&mut session, step)?, session)));
    match started {
        Ok((step, session)) => {
            let body = StateBody {
                task_id: id.clone(),
                code_hash: code_hash(&req.code),
                mode: req.mode,
                task_name: req.task_name.clone(),
                input: req.input.clone(),
                journal: Vec::new(),
                name: req.name.clone(),
                base_url: req.options.base_url.clone(),
            };
            respond(id, &req.code, body, &session, step)
        }
        Err(e) => ExternalResponse::failed(id, req.name.clone(), Some(req.code.clone()), &e),
    }
}

/// Replays `req.vm_state` against `req.original_code`, hands over the responses, and runs to
/// the next pause or the end.
pub fn resume(req: &ResumeRequest, limits: &Limits) -> ExternalResponse {
    let code = &req.original_code;
    match resume_inner(req, limits) {
        Ok((body, session, step)) => {
            let id = req.task_id.clone().or_else(|| body.task_id.clone());
            respond(id, code, body, &session, step)
        }
        Err(e) => ExternalResponse::failed(req.task_id.clone(), None, Some(code.clone()), &e),
    }
}

fn resume_inner(req: &ResumeRequest, limits: &Limits) -> Result<(StateBody, Session, Step), Error> {
    let mut body = decode_state(&req.vm_state)?;
    check_task_id(&body, req.task_id.as_deref())?;
    if let Some(base) = &req.options.base_url {
        body.base_url = Some(base.clone());
    }
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
    let (mut session, step) = Session::start(
        &req.original_code,
        &body.input,
        body.journal.clone(),
        &options,
    )?;
    let mut step = answer_local(&mut session, step)?;
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
        step = answer_local(&mut session, step)?;
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
        Err(e) => ExternalResponse::failed(None, None, None, &e),
    };
    serde_json::to_string(&response).unwrap_or_default()
}

/// [`resume`] on JSON text, with default limits: the body of `sequential-ecosystem vm resume`.
pub fn resume_json(req: &str) -> String {
    let response = match parse_request::<ResumeRequest>("resume", req) {
        Ok(r) => resume(&r, &Limits::default()),
        Err(e) => ExternalResponse::failed(None, None, None, &e),
    };
    serde_json::to_string(&response).unwrap_or_default()
}
