//! What the run commands share: the engine built from the settings, run ids, durations, JSON
//! arguments, journal lines, the run document (`--json`) and how a settled run is reported.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use sequential_adaptor::{JournalRecord, Run, RunId, RunStatus, StorageAdapter};
use sequential_tasker_engine::journal::{CallKind, CallOutcome, CallRequest, Record, RecordKind};
use sequential_tasker_engine::{Engine, EngineConfig, ToolRegistry};
use serde::Serialize;
use serde_json::Value;

use crate::ctx::Ctx;
use crate::error::{EXIT_RUN_FAILED, EXIT_WAITING, Reported, UserError, user};
use crate::files;
use crate::storage::Opened;
use crate::time::rfc3339;

/// The directory of declarative tools (`tools/*.json`), relative to the current directory.
pub const TOOLS_DIR: &str = "tools";

/// Builds the engine over `storage` from [`engine_config`], with `concurrency` runs at once when
/// given; see [`engine_with`].
pub fn engine(ctx: &Ctx, storage: &Opened, concurrency: Option<usize>) -> Result<Engine> {
    let mut config = engine_config(ctx)?;
    if let Some(n) = concurrency {
        config.concurrency = n;
    }
    engine_with(storage, config)
}

/// The engine's settings, each from its environment variable, else `engine.<name>` in
/// `.sequentialrc.json` (else, with a warning, the legacy `defaults.<name>`): the run's
/// active-time bound from `TASK_TIMEOUT` (`engine.timeout`), the HTTP defaults from
/// `TASK_FETCH_TIMEOUT` (`engine.fetchTimeout`) and `TASK_MAX_RETRIES` (`engine.maxRetries`),
/// the JavaScript CPU slice from `TASK_CPU_SLICE_MS` (`engine.cpuSliceMs`), and how often a
/// run's drive may fail before the run fails (`engine.maxDriveAttempts`, default 5).
pub fn engine_config(ctx: &Ctx) -> Result<EngineConfig> {
    let rc = ctx.rc()?;
    let from_rc = |var: &str| -> Option<(String, String)> {
        let (name, _) = crate::rc::ENGINE_SETTINGS.iter().find(|(_, v)| *v == var)?;
        let (v, key) = rc.engine_setting(name)?;
        if key.starts_with("defaults.") {
            eprintln!(
                "warning: {key} in .sequentialrc.json is read as engine.{name} ({var}); \
                 `sequential-ecosystem config set engine.{name} {v}` moves it"
            );
        }
        let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
        Some((text, format!("{key} in .sequentialrc.json")))
    };
    let setting = |key: &str| -> Option<(String, String)> {
        std::env::var(key)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|v| (v, key.to_string()))
            .or_else(|| from_rc(key))
    };
    // the HTTP client reads its per-attempt timeout under the name TASK_TIMEOUT
    fn http_var(k: &str) -> &str {
        if k == "TASK_TIMEOUT" {
            "TASK_FETCH_TIMEOUT"
        } else {
            k
        }
    }
    let http = sequential_http_wrapper::ClientConfig::from_env(|k| setting(http_var(k)).map(|(v, _)| v))
        .map_err(|e| {
            let var = http_var(&e.key);
            let source = setting(var).map_or_else(|| var.to_string(), |(_, s)| s);
            user(
                format!(
                    "invalid {source} {:?}: expected {} ({var})",
                    e.value, e.expected
                ),
                "TASK_FETCH_TIMEOUT is milliseconds per fetch attempt (default 300000); TASK_MAX_RETRIES a whole number (default 3)",
            )
        })?;
    let mut config = EngineConfig {
        http,
        ..EngineConfig::default()
    };
    if let Some((raw, source)) = setting("TASK_TIMEOUT") {
        let ms = raw
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms >= 1)
            .ok_or_else(|| {
                user(
                    format!("invalid {source} {raw:?}: expected milliseconds, e.g. 300000 (5 minutes)"),
                    "TASK_TIMEOUT bounds how long a run may be active (waits for timers and events do not count); unset means no bound",
                )
            })?;
        let setting = source
            .strip_suffix(" in .sequentialrc.json")
            .map_or(source.clone(), |key| {
                format!("{key} in .sequentialrc.json (TASK_TIMEOUT)")
            });
        config.run_timeout = Some(sequential_tasker_engine::RunTimeout {
            limit: Duration::from_millis(ms),
            setting,
        });
    }
    if let Some((raw, source)) = setting("TASK_CPU_SLICE_MS") {
        let ms = raw
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|ms| (1..=3_600_000).contains(ms))
            .ok_or_else(|| {
                user(
                    format!("invalid {source} {raw:?}: expected milliseconds from 1 to 3600000"),
                    "TASK_CPU_SLICE_MS is how long JavaScript may run between two host calls (default 1000)",
                )
            })?;
        config.vm.limits.cpu_slice_ms = ms;
    }
    if let Some(v) = rc.get(MAX_DRIVE_ATTEMPTS)? {
        config.max_drive_attempts = v
            .as_u64()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                user(
                    format!(
                        "invalid {MAX_DRIVE_ATTEMPTS} {v} in .sequentialrc.json: expected a whole number from 1 to 100"
                    ),
                    "it is how many times driving one run may fail (storage errors, internal failures) before the run fails; default 5",
                )
            })? as u32;
    }
    Ok(config)
}

/// The `.sequentialrc.json` key of [`EngineConfig::max_drive_attempts`].
pub const MAX_DRIVE_ATTEMPTS: &str = "engine.maxDriveAttempts";

/// The engine over `storage` with `config`, the `machine` tool (the layer store of
/// `SEQUENTIAL_MACHINE_DIR`) and tools from `./tools/*.json`.
pub fn engine_with(storage: &Opened, config: EngineConfig) -> Result<Engine> {
    let mut tools = ToolRegistry::new();
    tools.register("machine", crate::machine_tool::MachineTool::from_env());
    tools.load_dir(Path::new(TOOLS_DIR)).map_err(|e| {
        user(
            format!("cannot load the tools in {TOOLS_DIR}/: {e}"),
            "each tools/*.json is {\"name\": …, \"request\": {\"method\", \"url\", \"headers\", \"body\"}}",
        )
    })?;
    let engine = Engine::new(storage.adapter.clone(), config).map_err(engine_error)?;
    Ok(engine.with_tools(tools))
}

/// An engine error as the user should see it: bad input and missing runs exit 2 with a hint;
/// an internal failure (a panicked engine task) exits 1 with its cause.
pub fn engine_error(e: sequential_tasker_engine::Error) -> anyhow::Error {
    use sequential_tasker_engine::Error as E;
    match e {
        E::Storage(s) => storage_error(s),
        E::Invalid { .. } => UserError::new(e.to_string())
            .hint("`sequential-ecosystem show <run>` shows the run's state")
            .into(),
        E::Internal { .. } => UserError::new(e.to_string())
            .with_code(EXIT_RUN_FAILED)
            .hint("this is a bug in sequential-ecosystem, not in your task; DEBUG=1 shows more")
            .into(),
        other => anyhow::Error::new(other),
    }
}

/// Checks a task's `retry` settings (`config.json`) the way the engine will read them; a bad
/// one is a usage error naming the key, the value, what would be valid and `declared_in`.
pub fn check_retry(config: &Value, declared_in: &str) -> Result<()> {
    let defaults = sequential_http_wrapper::RetryPolicy::default();
    sequential_http_wrapper::RetryPolicy::from_config(config, &defaults)
        .map(|_| ())
        .map_err(|e| {
            user(
                format!(
                    "invalid {} = {} in {declared_in}: expected {}",
                    e.key, e.value, e.expected
                ),
                "for example \"retry\": {\"attempts\": 5, \"initialDelay\": \"200ms\", \"maxDelay\": \"30s\"}",
            )
        })
}

/// A storage error; a missing run or task gets a hint that fits the run commands.
pub fn storage_error(e: sequential_adaptor::Error) -> anyhow::Error {
    match &e {
        sequential_adaptor::Error::NotFound { .. } => UserError::new(e.to_string())
            .hint("`sequential-ecosystem history <task>` lists a task's runs")
            .into(),
        _ => e.into(),
    }
}

/// Parses a run id given on the command line.
pub fn run_id(raw: &str) -> Result<RunId> {
    raw.trim().parse::<RunId>().map_err(|_| {
        user(
            format!(
                "invalid run id {raw:?}: expected a UUID such as 0190c3e2-7a4b-7c00-8000-000000000000"
            ),
            "`sequential-ecosystem history <task>` lists a task's runs and their ids",
        )
    })
}

/// Reads a run; a missing run is a user error naming it and the storage.
pub async fn get_run(storage: &Opened, id: RunId) -> Result<Run> {
    match storage.adapter.get_run(id).await {
        Ok(run) => Ok(run),
        Err(sequential_adaptor::Error::NotFound { .. }) => {
            Err(run_not_found(id, &storage.choice.url))
        }
        Err(e) => Err(e.into()),
    }
}

/// The error for a run that does not exist in `storage`.
pub fn run_not_found(id: RunId, storage: &str) -> anyhow::Error {
    user(
        format!("run {id} not found in {storage}"),
        "`sequential-ecosystem history <task>` lists a task's runs; DATABASE_URL selects the storage",
    )
}

/// Parses a duration flag in the one grammar of `sequential_support::duration` (`250ms`, `2s`,
/// `5m`, `1h`, `7d`, `1w`, `"1h 30m"`; a bare number is milliseconds).
pub fn duration(flag: &str, raw: &str) -> Result<Duration> {
    sequential_support::duration::parse(raw).map_err(|_| {
        user(
            format!(
                "invalid duration {raw:?} for {flag}: expected {}",
                sequential_support::duration::FORMS
            ),
            format!("for example {flag} 30s"),
        )
    })
}

/// Parses a JSON argument (`what` names it); a syntax error shows line and column.
pub fn json_arg(what: &str, text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let msg = full.strip_suffix(&suffix).unwrap_or(&full);
        user(
            format!(
                "{what} is not valid JSON: {msg} at line {}, column {}",
                e.line(),
                e.column()
            ),
            format!(
                "quote it for the shell, e.g. '{{\"orderId\": 42}}'; strings need double quotes (near: {})",
                near(text, e.line(), e.column())
            ),
        )
    })
}

/// The text around line `line`, column `col` (1-based), for error messages.
fn near(text: &str, line: usize, col: usize) -> String {
    let l = text.lines().nth(line.saturating_sub(1)).unwrap_or("");
    let chars: Vec<char> = l.chars().collect();
    let at = col.saturating_sub(1).min(chars.len());
    let start = at.saturating_sub(15);
    let end = (at + 15).min(chars.len());
    let before: String = chars[start..at].iter().collect();
    let after: String = chars[at..end].iter().collect();
    format!("{before}⟨here⟩{after}")
}

/// `--input JSON` or `--input @file`: the text and what to call it in messages.
pub fn read_json_arg(flag: &str, raw: &str) -> Result<Value> {
    match raw.strip_prefix('@') {
        Some(path) => {
            let p = Path::new(path);
            let bytes = files::read_bytes(p)?;
            let text = String::from_utf8(bytes)
                .map_err(|_| user(format!("{path} is not UTF-8 text"), "save it as UTF-8 JSON"))?;
            json_arg(&format!("{flag} @{path} ({})", files::show(p)), &text)
        }
        None => json_arg(flag, raw),
    }
}

/// One journal record for `--json` output.
#[derive(Debug, Serialize)]
pub struct RecordOut {
    /// 0, 1, 2 …
    pub seq: u64,
    /// `run.started`, `call.completed`, …
    pub kind: String,
    /// RFC 3339 (second precision).
    pub at: String,
    /// Unix milliseconds.
    pub at_ms: i64,
    /// The record's payload.
    pub data: Value,
}

impl From<&JournalRecord> for RecordOut {
    fn from(r: &JournalRecord) -> Self {
        RecordOut {
            seq: r.seq,
            kind: r.kind.clone(),
            at: rfc3339(r.at),
            at_ms: r.at,
            data: r.data.clone(),
        }
    }
}

/// A run as printed by `run --json`, `resume --json`, `show --json` …
#[derive(Debug, Serialize)]
pub struct RunDoc {
    /// The run id.
    pub run: String,
    /// The task.
    pub task: String,
    /// The pinned task version.
    pub version: u32,
    /// `queued`, `running`, `waiting`, `paused`, `stopping`, `succeeded`, `failed`, `cancelled`.
    pub status: RunStatus,
    /// The run's input.
    pub input: Value,
    /// The result, once succeeded.
    pub output: Option<Value>,
    /// `{name, message, stack?}` once failed; for a paused run `{seq, error}`.
    pub error: Option<Value>,
    /// What a waiting run waits for: an event name or `child:<run>`.
    pub waiting_for: Option<String>,
    /// When a waiting run's timer fires (RFC 3339).
    pub wake_at: Option<String>,
    /// The parent run, for a child run.
    pub parent: Option<String>,
    /// The idempotency key it was started with.
    pub idempotency_key: Option<String>,
    /// How many times it was claimed.
    pub attempt: u32,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, once finished.
    pub ended_at: Option<String>,
    /// The storage URL.
    pub storage: String,
    /// The command that continues it, when there is one.
    pub next: Option<String>,
    /// The journal (with `--verbose` / `--journal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<Vec<RecordOut>>,
    /// Creation time in Unix ms: journal offsets in text are relative to it.
    #[serde(skip)]
    pub created_ms: i64,
}

impl RunDoc {
    /// The document of `run`.
    pub fn new(run: &Run, storage: &str, journal: Option<&[JournalRecord]>) -> Self {
        RunDoc {
            run: run.id.to_string(),
            task: run.task.to_string(),
            version: run.version,
            status: run.status,
            input: run.input.clone(),
            output: run.output.clone(),
            error: run.error.clone(),
            waiting_for: run.waiting_for.clone(),
            wake_at: run.wake_at.map(rfc3339),
            parent: run.parent.as_ref().map(|p| p.run.to_string()),
            idempotency_key: run.idempotency_key.clone(),
            attempt: run.attempt,
            created_at: rfc3339(run.created_at),
            ended_at: run.ended_at.map(rfc3339),
            storage: storage.to_string(),
            next: next_step(run).map(|(cmd, _)| cmd),
            journal: journal.map(|j| j.iter().map(RecordOut::from).collect()),
            created_ms: run.created_at,
        }
    }
}

/// The command that moves `run` on, and a sentence saying what it waits for.
pub fn next_step(run: &Run) -> Option<(String, String)> {
    let id = run.id;
    let bin = "sequential-ecosystem";
    match run.status {
        RunStatus::Waiting => {
            let timer = run.wake_at.map(|w| {
                let left = (w - sequential_adaptor::now_millis()).max(0);
                (rfc3339(w), human_ms(left))
            });
            match (run.waiting_for.as_deref(), timer) {
                (Some(child), _) if child.starts_with("child:") => Some((
                    format!("{bin} resume {id}"),
                    format!("it waits for child run {}", &child["child:".len()..]),
                )),
                (Some(event), Some((at, left))) => Some((
                    format!("{bin} signal {id} {event} '<JSON>' && {bin} resume {id}"),
                    format!(
                        "it waits for event {event:?} (times out at {at}, in {left}); send it, then resume"
                    ),
                )),
                (Some(event), None) => Some((
                    format!("{bin} signal {id} {event} '<JSON>' && {bin} resume {id}"),
                    format!("it waits for event {event:?}; send it, then resume"),
                )),
                (None, Some((at, left))) => Some((
                    format!("{bin} resume {id} --wait {left}"),
                    format!(
                        "it sleeps until {at} (in {left}); a worker or `resume` continues it then"
                    ),
                )),
                (None, None) => Some((format!("{bin} resume {id}"), "it waits".into())),
            }
        }
        RunStatus::Paused => {
            let why = run
                .error
                .as_ref()
                .map(|e| {
                    let seq = e["seq"]
                        .as_u64()
                        .map_or(String::new(), |s| format!(" #{s}"));
                    let msg = e["error"]["message"]
                        .as_str()
                        .unwrap_or("its retries are spent");
                    format!("call{seq} failed after its retries: {msg}")
                })
                .unwrap_or_else(|| "a call failed after its retries".into());
            Some((format!("{bin} resume {id} --retry"), why))
        }
        RunStatus::Queued => Some((
            format!("{bin} resume {id}"),
            "it is queued; a worker or `resume` drives it".into(),
        )),
        RunStatus::Running | RunStatus::Stopping => Some((
            format!("{bin} show {id} --follow"),
            "another process is driving it".into(),
        )),
        _ => None,
    }
}

/// `1500` → `1.5s`, `90000` → `1m30s`: a duration [`duration`] reads back (rounded up).
pub fn human_ms(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = (ms + 999) / 1000;
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m", (s + 59) / 60)
    } else if s < 86_400 {
        format!("{}h", (s + 3599) / 3600)
    } else {
        format!("{}d", (s + 86_399) / 86_400)
    }
}

/// The whole journal of a run.
pub async fn journal(store: &Arc<dyn StorageAdapter>, id: RunId) -> Result<Vec<JournalRecord>> {
    journal_after(store, id, None).await
}

/// The journal records after `after`.
pub async fn journal_after(
    store: &Arc<dyn StorageAdapter>,
    id: RunId,
    after: Option<u64>,
) -> Result<Vec<JournalRecord>> {
    let mut all: Vec<JournalRecord> = Vec::new();
    let mut cursor = after;
    loop {
        let page = store
            .read_journal(id, cursor, 1000)
            .await
            .with_context(|| format!("reading the journal of run {id}"))?;
        let Some(last) = page.last() else {
            return Ok(all);
        };
        cursor = Some(last.seq);
        all.extend(page);
    }
}

/// One line per journal record: `#3  +12ms  call.completed  fetch 200 {"id":7}`.
pub fn record_line(r: &JournalRecord, start: i64) -> String {
    format!(
        "#{:<3} {:>7}  {:<15} {}",
        r.seq,
        format!("+{}", human_elapsed(r.at - start)),
        r.kind,
        summary(r)
    )
}

fn human_elapsed(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 10_000 {
        format!("{ms}ms")
    } else if ms < 600_000 {
        format!("{}s", ms / 1000)
    } else if ms < 36_000_000 {
        format!("{}m", ms / 60_000)
    } else {
        format!("{}h", ms / 3_600_000)
    }
}

/// Compact JSON, cut to `max` characters.
pub fn short_json(v: &Value, max: usize) -> String {
    short(&v.to_string(), max)
}

fn short(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// What a record says, in one line.
fn summary(r: &JournalRecord) -> String {
    let rec = Record::new(r);
    let Some(kind) = rec.kind() else {
        return crate::commands::graph::journal_text(&r.kind, &r.data)
            .unwrap_or_else(|| short_json(&r.data, 100));
    };
    match kind {
        RecordKind::RunStarted => match rec.started() {
            Some(s) => format!(
                "{} v{} input {}",
                s.task.unwrap_or("?"),
                s.version.map_or_else(|| "null".into(), |v| v.to_string()),
                short_json(s.input, 80)
            ),
            None => short_json(&r.data, 100),
        },
        RecordKind::CallRequested => format!("{} {}", call_kind_name(&rec), request(&rec)),
        RecordKind::CallCompleted => {
            let kind = rec.call_kind();
            let name = call_kind_name(&rec);
            let call = rec
                .call_seq()
                .map_or(String::new(), |s| format!("call {s}: "));
            let result = match rec.outcome() {
                Some(CallOutcome::Ok(Value::Null)) | None => "null".into(),
                Some(CallOutcome::Ok(ok)) if kind == Some(CallKind::Fetch) => {
                    format!("{} {}", ok["status"], short_json(&ok["data"], 80))
                }
                Some(CallOutcome::Ok(ok)) => short_json(ok, 90),
                Some(CallOutcome::Threw(e)) => {
                    format!("threw {}: {}", e.name, short(e.message, 80))
                }
            };
            match (kind, rec.call_request()) {
                (Some(CallKind::Fetch | CallKind::Tool), _) => format!("{call}{name} → {result}"),
                (Some(CallKind::Child), _) => {
                    format!("{call}{name} {} → {result}", request(&rec))
                }
                (Some(CallKind::WaitForEvent), event) => {
                    let name = match event {
                        Some(CallRequest::WaitForEvent { name, .. }) => name,
                        _ => None,
                    };
                    format!("{call}event {:?} → {result}", name.unwrap_or("?"))
                }
                (Some(CallKind::Sleep), sleep) => {
                    let ms = match sleep {
                        Some(CallRequest::Sleep { ms }) => ms,
                        _ => None,
                    };
                    format!("{call}slept {}", human_ms(ms.unwrap_or(0)))
                }
                _ => format!("{call}{name} → {result}"),
            }
        }
        RecordKind::Log => match rec.log_line() {
            Some((level, msg)) => format!("console.{level}: {}", short(&msg, 100)),
            None => "console.log: null".into(),
        },
        RecordKind::TimerArmed => format!(
            "call {} wakes at {}",
            seq_text(rec.call_seq()),
            rec.wake_at().map_or_else(|| "?".into(), rfc3339)
        ),
        RecordKind::ChildStarted => format!(
            "call {} started child run {}",
            seq_text(rec.call_seq()),
            rec.child_run()
                .map_or_else(|| "?".into(), |id| id.to_string())
        ),
        RecordKind::RunSucceeded => short_json(rec.output().unwrap_or(&Value::Null), 100),
        RecordKind::RunFailed | RecordKind::RunCancelled => match rec.error() {
            Some(e) => format!("{}: {}", e.name, short(e.message, 100)),
            None => short_json(&r.data, 100),
        },
        RecordKind::RunPaused => format!(
            "call {} failed after its retries: {}",
            seq_text(rec.call_seq()),
            short(rec.error().map_or("", |e| e.message), 100)
        ),
        _ => short_json(&r.data, 100),
    }
}

/// A call's seq as the journal shows it (`null` when the record has none).
fn seq_text(seq: Option<u64>) -> String {
    seq.map_or_else(|| "null".into(), |s| s.to_string())
}

/// The call's kind (`fetch`, `waitForEvent` …), `?` when the record names none.
fn call_kind_name(rec: &Record<'_>) -> &'static str {
    rec.call_kind().map_or("?", |k| k.as_str())
}

/// `GET data:application/json,…` / a tool's name / a child's task.
fn request(rec: &Record<'_>) -> String {
    match rec.call_request() {
        Some(CallRequest::Fetch { method, url }) => {
            format!("{method} {}", short(&readable_url(&url), 90))
        }
        Some(CallRequest::Tool { name }) => name.unwrap_or("?").to_string(),
        Some(CallRequest::Child { task }) => format!("task {}", task.unwrap_or("?")),
        _ => short_json(rec.request().unwrap_or(&Value::Null), 80),
    }
}

/// A `data:` URL with its %-escapes decoded (for display); other URLs as they are.
fn readable_url(url: &str) -> String {
    if !url.starts_with("data:") || url.contains(";base64,") {
        return url.to_string();
    }
    let bytes = url.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| url.to_string())
}

/// Prints journal records on stderr (for `--verbose` while stdout carries the result).
pub fn eprint_records(records: &[JournalRecord], start: i64) {
    let mut err = std::io::stderr().lock();
    for r in records {
        let _ = writeln!(err, "{}", record_line(r, start));
    }
}

/// How a settled run is reported: the document on stdout (`--json`) or the output (text); the
/// failure, the wait or the pause on stderr; the exit code 0, 1 or 3.
pub fn report_settled(ctx: &Ctx, run: &Run, doc: &RunDoc) -> Result<()> {
    if ctx.json {
        ctx.out.print(doc)?;
    }
    match run.status {
        RunStatus::Succeeded => {
            if !ctx.json {
                let out = run.output.clone().unwrap_or(Value::Null);
                let mut text = serde_json::to_string_pretty(&out).context("encoding the output")?;
                text.push('\n');
                let mut stdout = std::io::stdout().lock();
                match stdout
                    .write_all(text.as_bytes())
                    .and_then(|()| stdout.flush())
                {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
                    Err(e) => return Err(e).context("writing to stdout"),
                }
            }
            Ok(())
        }
        RunStatus::Failed | RunStatus::Cancelled => {
            let e = run.error.clone().unwrap_or(Value::Null);
            let name = e["name"].as_str().unwrap_or("Error");
            let message = e["message"].as_str().unwrap_or("no message");
            let verb = if run.status == RunStatus::Failed {
                "failed"
            } else {
                "was cancelled"
            };
            let mut what = format!(
                "run {} of task {} {verb}: {name}: {message}",
                run.id, run.task
            );
            if let Some(stack) = e["stack"].as_str().filter(|s| !s.trim().is_empty()) {
                what.push('\n');
                what.push_str(stack.trim_end());
            }
            Err(UserError::new(what)
                .with_code(EXIT_RUN_FAILED)
                .hint(format!(
                    "`sequential-ecosystem show {} --journal` shows every step; `sequential-ecosystem rerun {} --from-seq 0` runs it again",
                    run.id, run.id
                ))
                .into())
        }
        _ => {
            let (cmd, why) = next_step(run).unwrap_or_else(|| {
                (
                    format!("sequential-ecosystem show {}", run.id),
                    String::new(),
                )
            });
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "run {} of task {} is {}: {why}",
                run.id, run.task, run.status
            );
            let _ = writeln!(err, "next: {cmd}");
            Err(Reported(EXIT_WAITING).into())
        }
    }
}

/// Whether progress may be drawn: stderr is a terminal and `NO_PROGRESS` is unset or empty.
pub fn progress_enabled() -> bool {
    std::io::stderr().is_terminal() && !sequential_support::env::no_progress()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_failures_exit_1_with_their_cause_and_bad_input_exits_2() {
        let internal = engine_error(sequential_tasker_engine::Error::Internal {
            doing: "driving run 1".into(),
            cause: "task 7 panicked with message \"boom\"".into(),
        });
        assert!(internal.to_string().contains("panicked with message"));
        assert_eq!(crate::error::report(&internal), EXIT_RUN_FAILED);
        let invalid = engine_error(sequential_tasker_engine::Error::Invalid {
            input: "run 1 (succeeded)".into(),
            expected: "a paused run".into(),
        });
        assert_eq!(crate::error::report(&invalid), crate::error::EXIT_USAGE);
    }
}
