//! `run <task>`: store the task folder as a version, check the input, start a run and drive it
//! here until it ends, waits or pauses (exit 0, 1 or 3).

use anyhow::{Context, Result};
use sequential_adaptor::{
    NewTaskVersion, StorageAdapter, TaskName, TaskVersion, VersionSel, now_millis,
};
use sequential_tasker_engine::StartOptions;
use serde::Serialize;
use serde_json::{Map, Value, json};

use super::Ctx;
use crate::cli::RunArgs;
use crate::error::{UserError, user};
use crate::files;
use crate::output::Render;
use crate::progress::{self, Watch};
use crate::runs::{self, RunDoc, engine_error};
use crate::tasks::{self, CONFIG};

/// How far ahead `run` without `--wait` keeps going through timers (not events): the retry
/// with `setTimeout` of the original's examples completes in one `run`.
const DEFAULT_TIMER_WINDOW: std::time::Duration = std::time::Duration::from_secs(60);

/// The thrown value that stops the guarded code of [`check_syntax`] before its first statement.
const SYNTAX_GUARD: &str = "throw 0;";

/// Compiles task code without running it: the code is parsed whole (a script or a module)
/// before its first statement runs, and that first statement is a `throw` put before it, so
/// nothing of the task executes. A syntax error is a usage error naming `file`, the line and
/// the column.
fn check_syntax(code: &str, file: &str) -> Result<()> {
    use sequential_fetch_vm::{Options, Session, Step};
    let guarded = format!("{SYNTAX_GUARD}{code}");
    let (session, step) = Session::start(&guarded, &json!({}), Vec::new(), &Options::default())
        .map_err(|e| anyhow::anyhow!("cannot start the JavaScript VM to compile {file}: {e}"))?;
    session.close();
    let e = match step {
        Step::Failed(sequential_fetch_vm::Error::Js(e)) if e.name == "SyntaxError" => e,
        _ => return Ok(()),
    };
    let at = match (e.line, e.column) {
        // the guard shifts the first line only
        (Some(1), Some(col)) => format!(
            "{file}:1:{}",
            col.saturating_sub(SYNTAX_GUARD.len() as u32).max(1)
        ),
        (Some(line), Some(col)) => format!("{file}:{line}:{col}"),
        (Some(line), None) => format!("{file}:{line}"),
        _ => file.to_string(),
    };
    Err(user(
        format!("{at}: SyntaxError: {}", e.message),
        "fix the code and run `sequential-ecosystem run <task> --dry-run` again; nothing was stored or started",
    ))
}

/// What `--dry-run` prints.
#[derive(Serialize)]
pub(crate) struct DryRun {
    pub(crate) task: String,
    /// `folder` or `storage` (a stored-only task).
    pub(crate) source: &'static str,
    /// The version the run would pin, when it is already stored.
    pub(crate) version: Option<u32>,
    /// Whether running would store a new version first.
    pub(crate) new_version: bool,
    pub(crate) hash: String,
    pub(crate) input: Value,
    pub(crate) storage: String,
    pub(crate) idempotency_key: Option<String>,
}

impl Render for DryRun {
    fn text(&self) -> String {
        let version = match (self.version, self.new_version) {
            (Some(v), false) => format!("v{v} (already stored)"),
            (Some(v), true) => format!("v{v} (a new version would be stored)"),
            (None, _) => "v1 (a new version would be stored)".into(),
        };
        let mut s = format!(
            "would run task {} {version} from its {}\n",
            self.task, self.source
        );
        s.push_str(&format!("  hash:    sha256 {}\n", self.hash));
        s.push_str(&format!("  input:   {}\n", self.input));
        s.push_str(&format!("  storage: {}\n", self.storage));
        if let Some(k) = &self.idempotency_key {
            s.push_str(&format!("  idempotency key: {k}\n"));
        }
        s.push_str("nothing was stored or started (--dry-run)\n");
        s
    }
}

/// What `--detach` prints.
#[derive(Serialize)]
pub(crate) struct Detached {
    pub(crate) run: String,
    pub(crate) task: String,
    pub(crate) version: u32,
    pub(crate) status: sequential_adaptor::RunStatus,
    pub(crate) storage: String,
}

impl Render for Detached {
    fn text(&self) -> String {
        format!("{}\n", self.run)
    }
}

pub async fn run(ctx: &Ctx, args: RunArgs) -> Result<()> {
    let name = tasks::task_name(&args.task)?;
    let wait = args
        .wait
        .as_deref()
        .map(|w| runs::duration("--wait", w))
        .transpose()?;
    let input = match &args.input {
        Some(raw) => runs::read_json_arg("--input", raw)?,
        None => Value::Object(Map::new()),
    };
    let folder = if ctx.tasks.has_folder(&name) {
        Some(ctx.tasks.read(&name)?)
    } else {
        None
    };
    let new_version = folder.as_ref().map(|f| f.to_new_version()).transpose()?;
    if let Some(v) = &new_version {
        // a run that could only fail is refused before anything is stored
        runs::check_retry(
            &v.config,
            &files::show(&ctx.tasks.folder(&name).join(CONFIG)),
        )?;
    }
    if let Some(v) = &new_version
        && let Some(graph) = &v.graph
    {
        // a graph that fails `graph check` could only fail its run
        super::graph::refuse_invalid(
            &name,
            &v.code,
            graph,
            &files::show(&ctx.tasks.folder(&name).join(tasks::GRAPH)),
        )?;
    }

    if args.dry_run {
        if let Some(v) = &new_version {
            check_syntax(
                &v.code,
                &files::show(&ctx.tasks.folder(&name).join(tasks::CODE)),
            )?;
        }
        return dry_run(ctx, &name, new_version, input, &args).await;
    }

    let storage = if new_version.is_some() {
        ctx.storage(None).await?
    } else {
        match ctx.existing_storage().await? {
            (_, Some(s)) => s,
            (_, None) => return Err(tasks::not_found(&name, ctx.tasks.root())),
        }
    };
    let (config, declared_in) = match &new_version {
        Some(v) => (
            v.config.clone(),
            files::show(&ctx.tasks.folder(&name).join(CONFIG)),
        ),
        None => {
            let v = stored_latest(storage.adapter.as_ref(), &name)
                .await?
                .ok_or_else(|| tasks::not_found(&name, ctx.tasks.root()))?;
            (v.config, format!("the config of stored task {name}"))
        }
    };
    runs::check_retry(&config, &declared_in)?;
    let input = with_rc_defaults(ctx, &config, input)?;
    let input = validate_input(&name, &config, &declared_in, input)?;
    let version = match new_version {
        Some(new) => {
            let put = storage
                .adapter
                .put_task_version(new)
                .await
                .with_context(|| format!("storing task {name} in {}", storage.choice.url))?;
            tracing::debug!(task = %name, version = put.version.version, created = put.created, "task version");
            put.version.version
        }
        None => stored_latest(storage.adapter.as_ref(), &name)
            .await?
            .map_or(1, |v| v.version),
    };

    let engine = runs::engine(ctx, &storage, None)?;
    let run = engine
        .start(
            &name,
            input,
            StartOptions {
                idempotency_key: args.idempotency_key.clone(),
                version: Some(version),
                // driven right here unless detached: stored already claimed
                claim: !args.detach,
            },
        )
        .await
        .map_err(|e| match e {
            sequential_tasker_engine::Error::Storage(sequential_adaptor::Error::Conflict {
                what,
            }) => key_reused(args.idempotency_key.as_deref(), &what),
            e => engine_error(e),
        })?;
    if args.detach {
        return ctx.out.print(&Detached {
            run: run.id.to_string(),
            task: run.task.to_string(),
            version: run.version,
            status: run.status,
            storage: storage.choice.url.clone(),
        });
    }
    // without --wait: on through timers due within a minute, but not waiting for events
    let events = wait.is_some();
    let wait_until = now_millis() + wait.unwrap_or(DEFAULT_TIMER_WINDOW).as_millis() as i64;
    let wait_until = (wait_until > now_millis()).then_some(wait_until);
    let watch = Watch {
        verbose: args.verbose && !ctx.json,
        spinner: runs::progress_enabled(),
        start: run.created_at,
    };
    let settled = progress::drive_with(&engine, run.id, wait_until, events, None, watch).await?;
    let journal = if args.verbose || args.save.is_some() {
        Some(runs::journal(engine.store(), settled.id).await?)
    } else {
        None
    };
    if let Some(path) = &args.save {
        let path = if path.is_empty() {
            format!("{}-{}.json", settled.task, settled.id)
        } else {
            path.clone()
        };
        let doc = RunDoc::new(&settled, &storage.choice.url, journal.as_deref());
        files::write_atomic(std::path::Path::new(&path), files::pretty(&doc).as_bytes())?;
        eprintln!("saved run {} to {path}", settled.id);
    }
    let doc = RunDoc::new(
        &settled,
        &storage.choice.url,
        journal.as_deref().filter(|_| args.verbose),
    );
    runs::report_settled(ctx, &settled, &doc)
}

/// The error for an idempotency key used before with another input (`what`: the storage's
/// or the server's words).
pub(crate) fn key_reused(key: Option<&str>, what: &str) -> anyhow::Error {
    user(
        format!("idempotency key {:?}: {what}", key.unwrap_or("")),
        "the key was used with another input; use a new key, or the same input to get the existing run",
    )
}

async fn dry_run(
    ctx: &Ctx,
    name: &TaskName,
    new_version: Option<NewTaskVersion>,
    input: Value,
    args: &RunArgs,
) -> Result<()> {
    let (choice, storage) = ctx.existing_storage().await?;
    let adapter = storage.as_ref().map(|s| s.adapter.clone());
    let out = match new_version {
        Some(new) => {
            let config_path = files::show(&ctx.tasks.folder(name).join(CONFIG));
            let input = with_rc_defaults(ctx, &new.config, input)?;
            let input = validate_input(name, &new.config, &config_path, input)?;
            let hash = new.content_hash();
            let (version, fresh) = match &adapter {
                Some(a) => match find_hash(a.as_ref(), name, &hash).await? {
                    Some(v) => (Some(v), false),
                    None => (
                        stored_latest(a.as_ref(), name)
                            .await?
                            .map(|v| v.version + 1),
                        true,
                    ),
                },
                None => (None, true),
            };
            DryRun {
                task: name.to_string(),
                source: "folder",
                version,
                new_version: fresh,
                hash,
                input,
                storage: choice.url,
                idempotency_key: args.idempotency_key.clone(),
            }
        }
        None => {
            let stored = match &adapter {
                Some(a) => stored_latest(a.as_ref(), name).await?,
                None => None,
            };
            let Some(v) = stored else {
                return Err(tasks::not_found(name, ctx.tasks.root()));
            };
            runs::check_retry(&v.config, &format!("the config of stored task {name}"))?;
            check_syntax(
                &v.code,
                &format!("the code of stored task {name} v{}", v.version),
            )?;
            let input = with_rc_defaults(ctx, &v.config, input)?;
            let input = validate_input(
                name,
                &v.config,
                &format!("the config of stored task {name}"),
                input,
            )?;
            DryRun {
                task: name.to_string(),
                source: "storage",
                version: Some(v.version),
                new_version: false,
                hash: v.hash,
                input,
                storage: choice.url,
                idempotency_key: args.idempotency_key.clone(),
            }
        }
    };
    ctx.out.print(&out)
}

/// `input` with the input defaults of `.sequentialrc.json` (`defaults.<input>`) added where
/// the run does not give them; `config` declares the task's inputs. Those defaults win over a
/// `default` in `config.json` (they are this project's settings); the run's `--input` wins over
/// both.
pub(crate) fn with_rc_defaults(ctx: &Ctx, config: &Value, input: Value) -> Result<Value> {
    let Value::Object(mut obj) = input else {
        return Ok(input);
    };
    let specs = tasks::config_summary(config).1;
    let declared: Vec<String> = specs.iter().map(|i| i.name.clone()).collect();
    for (name, value) in ctx.rc()?.input_defaults(&declared) {
        if obj.get(&name).is_none_or(Value::is_null) {
            // `config set defaults.userId 123` stores a number; a string input takes its text
            let string = specs.iter().any(|i| i.name == name && i.ty == "string");
            let value = match value {
                Value::Number(n) if string => Value::String(n.to_string()),
                Value::Bool(b) if string => Value::String(b.to_string()),
                v => v,
            };
            obj.insert(name, value);
        }
    }
    Ok(Value::Object(obj))
}

/// The latest stored version, `None` when there is none.
async fn stored_latest(
    adapter: &dyn StorageAdapter,
    name: &TaskName,
) -> Result<Option<TaskVersion>> {
    super::latest_version(adapter, name).await
}

/// The stored version with content hash `hash`, if any.
async fn find_hash(
    adapter: &dyn StorageAdapter,
    name: &TaskName,
    hash: &str,
) -> Result<Option<u32>> {
    let Some(latest) = stored_latest(adapter, name).await? else {
        return Ok(None);
    };
    for n in (1..=latest.version).rev() {
        match adapter.get_task_version(name, VersionSel::Exact(n)).await {
            Ok(v) if v.hash == hash => return Ok(Some(n)),
            Ok(_) | Err(sequential_adaptor::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(None)
}

/// Checks `input` against the inputs declared in `config` (`{"inputs": [{"name", "type",
/// "default"?, "required"?}]}`): present (or defaulted) and of the declared type. Returns the
/// input with defaults filled in. `declared_in` names the config for messages.
pub fn validate_input(
    task: &TaskName,
    config: &Value,
    declared_in: &str,
    input: Value,
) -> Result<Value> {
    let declared: Vec<Value> = match config.get("inputs") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    };
    if declared.is_empty() {
        return Ok(input);
    }
    let specs: Vec<(String, String, Option<Value>, bool)> = declared
        .iter()
        .filter_map(|d| match d {
            Value::String(name) => Some((name.clone(), "any".to_string(), None, true)),
            Value::Object(o) => {
                let name = o.get("name")?.as_str()?.to_string();
                let ty = o
                    .get("type")
                    .and_then(Value::as_str)
                    .unwrap_or("any")
                    .to_string();
                let default = o.get("default").cloned();
                let required = o.get("required").and_then(Value::as_bool).unwrap_or(true)
                    && !o.get("optional").and_then(Value::as_bool).unwrap_or(false);
                Some((name, ty, default, required))
            }
            _ => None,
        })
        .collect();
    let mut obj = match input {
        Value::Object(o) => o,
        other => {
            let names: Vec<&str> = specs.iter().map(|s| s.0.as_str()).collect();
            return Err(user(
                format!(
                    "the input of task {task} must be a JSON object with {} (declared in {declared_in}), not {}",
                    names.join(", "),
                    runs::short_json(&other, 60)
                ),
                format!("for example --input '{}'", example(&specs)),
            ));
        }
    };
    let mut missing = Vec::new();
    for (name, ty, default, required) in &specs {
        match obj.get(name) {
            None | Some(Value::Null) => {
                if let Some(d) = default {
                    obj.insert(name.clone(), d.clone());
                } else if *required {
                    missing.push(format!("{name:?} ({ty})"));
                }
            }
            Some(v) if !type_matches(ty, v) => {
                return Err(UserError::new(format!(
                    "input {name:?} of task {task} must be of type {ty} (declared in {declared_in}), not {}",
                    runs::short_json(v, 60)
                ))
                .hint(format!("for example --input '{}'", example(&specs)))
                .into());
            }
            Some(_) => {}
        }
    }
    if !missing.is_empty() {
        let s = if missing.len() == 1 { "" } else { "s" };
        return Err(user(
            format!(
                "the input of task {task} is missing the declared input{s} {} (declared in {declared_in})",
                missing.join(", ")
            ),
            format!(
                "pass {}, e.g. --input '{}', or give {} a \"default\" in config.json",
                if missing.len() == 1 { "it" } else { "them" },
                example(&specs),
                if missing.len() == 1 { "it" } else { "each" },
            ),
        ));
    }
    Ok(Value::Object(obj))
}

fn type_matches(ty: &str, v: &Value) -> bool {
    match ty {
        "string" => v.is_string(),
        "number" => v.is_number(),
        "integer" => v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0),
        "boolean" => v.is_boolean(),
        "object" => v.is_object(),
        "array" => v.is_array(),
        _ => true,
    }
}

/// An example input for the declared inputs.
fn example(specs: &[(String, String, Option<Value>, bool)]) -> String {
    let mut o = Map::new();
    for (name, ty, default, _) in specs {
        let v = default.clone().unwrap_or_else(|| match ty.as_str() {
            "number" | "integer" => json!(1),
            "boolean" => json!(true),
            "object" => json!({}),
            "array" => json!([]),
            _ => json!("…"),
        });
        o.insert(name.clone(), v);
    }
    Value::Object(o).to_string()
}
