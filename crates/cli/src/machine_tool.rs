//! The `machine` tool for tasks: `ctx.callTool("machine", {op: "run", instruction})` and the other
//! layer-store operations, on the store named by `SEQUENTIAL_MACHINE_DIR`/`SEQUENTIAL_MACHINE_WORK`.

use std::path::PathBuf;

use async_trait::async_trait;
use sequential_fetch_vm::ErrorInfo;
use sequential_layer_store::{CheckoutOptions, Error as StoreError, Output, RunOptions, Store};
use sequential_tasker_engine::{Tool, ToolCall};
use serde_json::{Value, json};

/// The layer store as a tool. The store is opened on each call (on a blocking thread), so
/// registering the tool creates nothing on disk.
///
/// Args: `{op, …}` with `op` one of `run {instruction, env?, captureFailed?}`, `exec
/// {instruction, env?}`, `checkout {ref, force?}`, `status`, `history`, `head`, `diff {a, b?}`,
/// `tag {name, ref?}`, `tags`, `inspect {ref}`, `ls {ref, path?}`, `cat {ref, path}` (text).
/// Results are the `--json` shapes of `sequential-machine`; `run` and `exec` also carry the
/// command's `stdout` and `stderr` (at most [`MAX_OUTPUT`] bytes each). A failing command throws a `MachineError` whose `code` is
/// its exit code.
#[derive(Debug, Clone)]
pub struct MachineTool {
    dir: PathBuf,
    work: PathBuf,
}

impl MachineTool {
    /// The store at `dir` bound to the work dir `work` (opened, and created if missing, on the
    /// first call).
    pub fn new(dir: impl Into<PathBuf>, work: impl Into<PathBuf>) -> Self {
        MachineTool {
            dir: dir.into(),
            work: work.into(),
        }
    }

    /// The store of `SEQUENTIAL_MACHINE_DIR` (default `.sequential-machine`) and work dir of
    /// `SEQUENTIAL_MACHINE_WORK` (default `<dir>/work`), made absolute against the current
    /// directory now.
    pub fn from_env() -> Self {
        let (dir, work) = crate::machine::locations(None, None);
        let abs = |p: PathBuf| {
            if p.is_absolute() {
                p
            } else {
                std::env::current_dir().map_or(p.clone(), |cwd| cwd.join(p))
            }
        };
        MachineTool::new(abs(dir), abs(work))
    }
}

fn bad_args(message: impl Into<String>) -> ErrorInfo {
    ErrorInfo::new("TypeError", message)
}

fn str_arg<'a>(args: &'a Value, key: &str, op: &str) -> Result<&'a str, ErrorInfo> {
    args[key]
        .as_str()
        .ok_or_else(|| bad_args(format!("machine {op} needs args.{key} (a string)")))
}

fn env_arg(args: &Value) -> Result<Vec<(String, String)>, ErrorInfo> {
    match &args["env"] {
        Value::Null => Ok(Vec::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Ok((k.clone(), other.to_string())),
            })
            .collect(),
        _ => Err(bad_args("machine args.env must be an object of strings")),
    }
}

fn store_error(e: StoreError) -> ErrorInfo {
    let mut info = ErrorInfo::new("MachineError", e.to_string());
    if let StoreError::CommandFailed {
        code,
        stdout_tail,
        stderr_tail,
        ..
    } = &e
    {
        info.details = Some(json!({
            "code": code,
            "stdoutTail": stdout_tail,
            "stderrTail": stderr_tail,
        }));
    }
    info
}

fn to_value(v: impl serde::Serialize) -> Result<Value, ErrorInfo> {
    serde_json::to_value(v).map_err(|e| ErrorInfo::new("MachineError", e.to_string()))
}

/// Most bytes of `stdout`/`stderr` kept in a result (it is journaled); the rest is cut and
/// `stdoutTruncated`/`stderrTruncated` is set.
pub const MAX_OUTPUT: usize = 64 * 1024;

fn cap_output(mut v: Value) -> Value {
    for (key, flag) in [("stdout", "stdoutTruncated"), ("stderr", "stderrTruncated")] {
        let Some(Value::String(text)) = v.get_mut(key) else {
            continue;
        };
        if text.len() <= MAX_OUTPUT {
            continue;
        }
        let mut end = MAX_OUTPUT;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        v[flag] = Value::Bool(true);
    }
    v
}

fn call_blocking(dir: PathBuf, work: PathBuf, args: Value) -> Result<Value, ErrorInfo> {
    let op = args["op"].as_str().ok_or_else(|| {
        bad_args(
            "the machine tool needs args.op: run, exec, checkout, status, history, head, diff, tag, tags, inspect, ls or cat",
        )
    })?;
    let store = Store::open(&dir, &work).map_err(store_error)?;
    let run_opts = |a: &Value| -> Result<RunOptions, ErrorInfo> {
        Ok(RunOptions {
            env: env_arg(a)?,
            capture_failed: a["captureFailed"].as_bool().unwrap_or(false),
            output: Output::Capture,
        })
    };
    let force = args["force"].as_bool().unwrap_or(false);
    match op {
        "run" => to_value(
            store
                .run(str_arg(&args, "instruction", op)?, &run_opts(&args)?)
                .map_err(store_error)?,
        )
        .map(cap_output),
        "exec" => {
            let r = store
                .exec(str_arg(&args, "instruction", op)?, &run_opts(&args)?)
                .map_err(store_error)?;
            to_value(r).map(cap_output)
        }
        "checkout" => to_value(
            store
                .checkout(str_arg(&args, "ref", op)?, CheckoutOptions { force })
                .map_err(store_error)?,
        ),
        "status" => to_value(store.status().map_err(store_error)?),
        "history" => to_value(store.history().map_err(store_error)?),
        "head" => {
            let h = store.head().map_err(store_error)?;
            Ok(json!({ "hash": h.map(|s| s.hex()), "short": h.map(|s| s.short()) }))
        }
        "diff" => to_value(
            store
                .diff(str_arg(&args, "a", op)?, args["b"].as_str())
                .map_err(store_error)?,
        ),
        "tag" => to_value(
            store
                .tag(str_arg(&args, "name", op)?, args["ref"].as_str())
                .map_err(store_error)?,
        ),
        "tags" => to_value(store.tags().map_err(store_error)?),
        "inspect" => to_value(
            store
                .inspect(str_arg(&args, "ref", op)?)
                .map_err(store_error)?,
        ),
        "ls" => to_value(
            store
                .ls(
                    str_arg(&args, "ref", op)?,
                    args["path"].as_str().unwrap_or(""),
                )
                .map_err(store_error)?,
        ),
        "cat" => {
            let bytes = store
                .cat(str_arg(&args, "ref", op)?, str_arg(&args, "path", op)?)
                .map_err(store_error)?;
            Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        }
        other => Err(bad_args(format!(
            "unknown machine op {other:?}: expected run, exec, checkout, status, history, head, diff, tag, tags, inspect, ls or cat"
        ))),
    }
}

#[async_trait]
impl Tool for MachineTool {
    async fn call(&self, call: ToolCall<'_>) -> Result<Value, ErrorInfo> {
        let (dir, work, args) = (self.dir.clone(), self.work.clone(), call.args.clone());
        tokio::task::spawn_blocking(move || call_blocking(dir, work, args))
            .await
            .unwrap_or_else(|e| {
                Err(ErrorInfo::new(
                    "MachineError",
                    format!("the machine tool panicked: {e}"),
                ))
            })
    }
}
