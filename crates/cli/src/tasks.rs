//! Task folders (`tasks/<name>/{code.js, config.json, meta.json, graph.json?}`): reading them
//! into task versions, and scaffolding new ones.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use sequential_adaptor::{NewTaskVersion, TaskName, UnixMillis};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{UserError, user};
use crate::files;

/// The files a user edits in a task folder.
pub const CODE: &str = "code.js";
/// Task configuration: name, description, inputs.
pub const CONFIG: &str = "config.json";
/// Folder metadata: created, updated, version (of this metadata format).
pub const META: &str = "meta.json";
/// Optional explicit state graph (GRAPHS.md).
pub const GRAPH: &str = "graph.json";

/// The `meta.json` format version `create-task` writes.
pub const META_VERSION: u64 = 1;

/// Input types accepted by `--inputs name:type`.
pub const INPUT_TYPES: [&str; 7] = [
    "string", "number", "integer", "boolean", "object", "array", "any",
];

/// Validates a task name given on the command line (exit 2 with the rule).
pub fn task_name(raw: &str) -> Result<TaskName> {
    TaskName::new(raw).map_err(|_| {
        user(
            format!("invalid task name {raw:?}: expected {}", TaskName::RULE),
            "task names become directory names and URL segments, e.g. order-flow or send_email2",
        )
    })
}

/// The directory holding the task folders.
#[derive(Debug, Clone)]
pub struct TasksDir {
    root: PathBuf,
}

/// One declared input in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpec {
    /// The property of the run input.
    pub name: String,
    /// A JSON type name (`string`, `number`, …).
    #[serde(rename = "type", default = "default_type")]
    pub ty: String,
    /// What it is for.
    #[serde(default)]
    pub description: String,
}

fn default_type() -> String {
    "any".to_string()
}

/// An `inputs` entry: the full form, or just a name.
#[derive(Deserialize)]
#[serde(untagged)]
enum InputEntry {
    Name(String),
    Full(InputSpec),
}

/// The fields of `config.json` this binary reads; other fields are kept as they are.
#[derive(Deserialize)]
struct ConfigShape {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    inputs: Vec<InputEntry>,
}

/// `meta.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Meta {
    /// When the folder was created (RFC 3339).
    #[serde(default)]
    pub created: Option<String>,
    /// When it was last changed by a tool (RFC 3339).
    #[serde(default)]
    pub updated: Option<String>,
    /// The meta format version.
    #[serde(default)]
    pub version: Option<u64>,
}

/// A task folder as read from disk.
#[derive(Debug, Clone)]
pub struct TaskFolder {
    /// The task (the folder's name).
    pub name: TaskName,
    /// The folder.
    pub dir: PathBuf,
    /// `code.js`, when present.
    pub code: Option<String>,
    /// `config.json` as stored (an empty object when the file is absent).
    pub config: Value,
    /// `config.description`.
    pub description: Option<String>,
    /// `config.inputs`.
    pub inputs: Vec<InputSpec>,
    /// `meta.json`, when present.
    pub meta: Option<Meta>,
    /// `graph.json`, when present.
    pub graph: Option<Value>,
}

impl TaskFolder {
    /// The task version this folder's content makes.
    pub fn to_new_version(&self) -> Result<NewTaskVersion> {
        let Some(code) = &self.code else {
            return Err(user(
                format!("{} has no {CODE}", files::show(&self.dir)),
                format!(
                    "a task folder needs {CODE}; `sequential-ecosystem create-task <name>` writes a working one"
                ),
            ));
        };
        Ok(NewTaskVersion {
            task: self.name.clone(),
            code: code.clone(),
            graph: self.graph.clone(),
            config: self.config.clone(),
        })
    }
}

/// The description and inputs read from a `config.json` value (also used for stored configs).
pub fn config_summary(config: &Value) -> (Option<String>, Vec<InputSpec>) {
    match serde_json::from_value::<ConfigShape>(config.clone()) {
        Ok(shape) => (shape.description, inputs_of(shape.inputs)),
        Err(_) => (
            config
                .get("description")
                .and_then(Value::as_str)
                .map(str::to_string),
            Vec::new(),
        ),
    }
}

fn inputs_of(entries: Vec<InputEntry>) -> Vec<InputSpec> {
    entries
        .into_iter()
        .map(|e| match e {
            InputEntry::Name(name) => InputSpec {
                name,
                ty: default_type(),
                description: String::new(),
            },
            InputEntry::Full(spec) => spec,
        })
        .collect()
}

impl TasksDir {
    /// The tasks directory at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        TasksDir { root: root.into() }
    }

    /// The directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `root/<name>`.
    pub fn folder(&self, name: &TaskName) -> PathBuf {
        self.root.join(name.as_str())
    }

    /// Whether `root/<name>` is a task folder (holds code.js, config.json or graph.json).
    pub fn has_folder(&self, name: &TaskName) -> bool {
        is_task_folder(&self.folder(name))
    }

    /// The task folders, sorted by name. Hidden entries (`.sequential`), directories without
    /// task files (storage data only) and names that are not valid task names are skipped.
    pub fn list(&self) -> Result<Vec<TaskName>> {
        let entries = match fs::read_dir(&self.root) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(user(
                    format!(
                        "cannot read the tasks directory {}: {e}",
                        files::show(&self.root)
                    ),
                    "set SEQUENTIAL_TASKS_DIR to a readable directory, or run `sequential-ecosystem init`",
                ));
            }
        };
        let mut names = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("reading {}", files::show(&self.root)))?;
            let file_name = entry.file_name();
            let Some(raw) = file_name.to_str() else {
                continue;
            };
            if raw.starts_with('.') || !is_task_folder(&entry.path()) {
                continue;
            }
            match TaskName::new(raw) {
                Ok(name) => names.push(name),
                Err(_) => tracing::warn!(
                    folder = %files::show(&entry.path()),
                    "skipping a folder whose name is not a valid task name ({})",
                    TaskName::RULE
                ),
            }
        }
        names.sort();
        Ok(names)
    }

    /// Reads a task folder. Malformed `config.json`, `meta.json` or `graph.json` is an error
    /// naming the file, line and column.
    pub fn read(&self, name: &TaskName) -> Result<TaskFolder> {
        let dir = self.folder(name);
        if !is_task_folder(&dir) {
            return Err(not_found(name, &self.root));
        }
        let code_path = dir.join(CODE);
        let code = if code_path.exists() {
            let bytes = files::read_bytes(&code_path)?;
            Some(String::from_utf8(bytes).map_err(|e| {
                user(
                    format!(
                        "{} is not UTF-8 text (invalid byte at offset {})",
                        files::show(&code_path),
                        e.utf8_error().valid_up_to()
                    ),
                    "save the file as UTF-8",
                )
            })?)
        } else {
            None
        };
        let config_path = dir.join(CONFIG);
        let (config, description, inputs) = if config_path.exists() {
            let bytes = files::read_bytes(&config_path)?;
            let config: Value = files::parse_json(&config_path, &bytes)?;
            if !config.is_object() {
                return Err(user(
                    format!("{} must hold a JSON object", files::show(&config_path)),
                    r#"for example {"name": "hello", "description": "…", "inputs": []}"#,
                ));
            }
            let shape: ConfigShape = files::parse_json(&config_path, &bytes)?;
            if let Some(n) = &shape.name
                && n != name.as_str()
            {
                tracing::warn!(
                    "{} says name {n:?}; the folder name {name:?} is used",
                    files::show(&config_path)
                );
            }
            (config, shape.description, inputs_of(shape.inputs))
        } else {
            (Value::Object(Default::default()), None, Vec::new())
        };
        let meta_path = dir.join(META);
        let meta = if meta_path.exists() {
            Some(files::read_json::<Meta>(&meta_path)?)
        } else {
            None
        };
        let graph_path = dir.join(GRAPH);
        let graph = if graph_path.exists() {
            Some(files::read_json::<Value>(&graph_path)?)
        } else {
            None
        };
        Ok(TaskFolder {
            name: name.clone(),
            dir,
            code,
            config,
            description,
            inputs,
            meta,
            graph,
        })
    }
}

/// The error for a task that has no folder.
pub fn not_found(name: &TaskName, root: &Path) -> anyhow::Error {
    UserError::new(format!(
        "task {:?} not found (no task folder {}, and no stored version)",
        name.as_str(),
        files::show(&root.join(name.as_str()))
    ))
    .hint("`sequential-ecosystem list` shows the tasks that exist")
    .into()
}

fn is_task_folder(dir: &Path) -> bool {
    dir.is_dir() && [CODE, CONFIG, GRAPH].iter().any(|f| dir.join(f).exists())
}

/// Parses `--inputs a,b:number` into input specs.
pub fn parse_inputs(raw: &str) -> Result<Vec<InputSpec>> {
    let mut specs: Vec<InputSpec> = Vec::new();
    for part in raw.split(',') {
        let part = part.trim();
        let (name, ty) = match part.split_once(':') {
            Some((n, t)) => (n.trim(), t.trim()),
            None => (part, "string"),
        };
        let ident = name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '$')
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if !ident {
            return Err(user(
                format!(
                    "invalid input name {name:?} in --inputs {raw:?}: expected a JavaScript identifier (letters, digits, '_', '$', not starting with a digit)"
                ),
                "for example --inputs userId,items:array",
            ));
        }
        if !INPUT_TYPES.contains(&ty) {
            return Err(user(
                format!(
                    "invalid type {ty:?} for input {name:?}: expected one of {}",
                    INPUT_TYPES.join(", ")
                ),
                "for example --inputs userId:number",
            ));
        }
        if specs.iter().any(|s| s.name == name) {
            return Err(user(
                format!("input {name:?} is listed twice in --inputs {raw:?}"),
                "name each input once",
            ));
        }
        specs.push(InputSpec {
            name: name.to_string(),
            ty: ty.to_string(),
            description: format!("The {name} input"),
        });
    }
    Ok(specs)
}

/// What `create-task` writes.
#[derive(Debug, Clone)]
pub struct Scaffold {
    /// The task.
    pub name: TaskName,
    /// `config.description`.
    pub description: String,
    /// `config.inputs`.
    pub inputs: Vec<InputSpec>,
    /// Whether to write `graph.json` and per-state handlers.
    pub graph: bool,
}

impl Scaffold {
    /// The files to write, in order: (file name, content).
    pub fn files(&self, now: UnixMillis) -> Vec<(&'static str, String)> {
        let mut out = vec![
            (
                CODE,
                if self.graph {
                    self.graph_code()
                } else {
                    self.module_code()
                },
            ),
            (CONFIG, self.config_json()),
            (META, meta_json(now)),
        ];
        if self.graph {
            out.push((GRAPH, self.graph_json()));
        }
        out
    }

    /// Creates `tasks/<name>/` and its files. An existing folder is an error and nothing is
    /// overwritten; a failure part-way removes what this call created.
    pub fn create(&self, tasks: &TasksDir, now: UnixMillis) -> Result<Vec<PathBuf>> {
        fs::create_dir_all(tasks.root())
            .with_context(|| format!("creating {}", files::show(tasks.root())))?;
        let dir = tasks.folder(&self.name);
        if let Err(e) = fs::create_dir(&dir) {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                return Err(user(
                    format!(
                        "task {:?} already exists at {}; nothing was changed",
                        self.name.as_str(),
                        files::show(&dir)
                    ),
                    format!(
                        "choose another name, or remove it first with `sequential-ecosystem delete {}`",
                        self.name
                    ),
                ));
            }
            return Err(anyhow::Error::new(e).context(format!("creating {}", files::show(&dir))));
        }
        let mut written = Vec::new();
        for (file, content) in self.files(now) {
            let path = dir.join(file);
            if let Err(e) = files::write_new(&path, content.as_bytes()) {
                for p in &written {
                    let _ = fs::remove_file(p);
                }
                let _ = fs::remove_dir(&dir);
                return Err(e);
            }
            written.push(path);
        }
        let _ = sequential_support::fs::sync_dir(tasks.root());
        Ok(written)
    }

    fn one_line_description(&self) -> String {
        self.description.replace(['\n', '\r'], " ")
    }

    fn input_destructure(&self) -> Option<String> {
        if self.inputs.is_empty() {
            return None;
        }
        let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
        Some(names.join(", "))
    }

    fn inputs_comment(&self) -> String {
        if self.inputs.is_empty() {
            "none declared (add them to config.json)".to_string()
        } else {
            self.inputs
                .iter()
                .map(|i| format!("{} ({})", i.name, i.ty))
                .collect::<Vec<_>>()
                .join(", ")
        }
    }

    fn module_code(&self) -> String {
        let name = &self.name;
        let (take, result) = match self.input_destructure() {
            Some(list) => (
                format!("  const {{ {list} }} = input ?? {{}};\n"),
                format!("{{ task: \"{name}\", greeting, {list} }}"),
            ),
            None => (
                String::new(),
                format!("{{ task: \"{name}\", greeting, input }}"),
            ),
        };
        format!(
            r#"// {name}: {description}
// Inputs: {inputs}
//
// Module mode: the default export receives the run's input and a context (ctx.sleep,
// ctx.waitForEvent, ctx.now, ...). Every fetch() is a durable step: its response is recorded
// in the run's journal, so a resumed run replays it instead of fetching again.
export default async function (input, ctx) {{
{take}  // A data: URL answers offline; replace it with your API, e.g. https://api.example.com/...
  const response = await fetch('data:application/json,{{"greeting":"hello"}}');
  if (!response.ok) throw new Error(`greeting service answered ${{response.status}}`);
  const {{ greeting }} = await response.json();
  return {result};
}}
"#,
            description = self.one_line_description(),
            inputs = self.inputs_comment(),
        )
    }

    fn graph_code(&self) -> String {
        let name = &self.name;
        let (take, result) = match self.input_destructure() {
            Some(list) => (
                format!("  const {{ {list} }} = prev.input;\n"),
                format!("{{ message: `${{prev.greeting}} from {name}`, {list} }}"),
            ),
            None => (
                String::new(),
                format!("{{ message: `${{prev.greeting}} from {name}`, input: prev.input }}"),
            ),
        };
        format!(
            r#"// {name}: {description}
// Inputs: {inputs}
//
// State handlers for graph.json: one exported function per task state. A handler receives
// the previous state's output (the run input for the initial state) and ctx (ctx.state,
// ctx.attempt, ctx.results, ctx.run.input …), and returns this state's output. Every fetch()
// is a durable step, recorded in the run's journal. Check the graph with
// `sequential-ecosystem graph check <task>`, draw it with `graph show`.

export async function fetchGreeting(input, ctx) {{
  // A data: URL answers offline; replace it with your API, e.g. https://api.example.com/...
  const response = await fetch('data:application/json,{{"greeting":"hello"}}');
  if (!response.ok) throw new Error(`greeting service answered ${{response.status}}`);
  const {{ greeting }} = await response.json();
  return {{ greeting, input: input ?? {{}} }};
}}

export async function compose(prev, ctx) {{
{take}  return {result};
}}

// The error path: fetchGreeting's onError leads here once its retries are spent. The input is
// the error ({{ name, message }}); what this returns is the run's output.
export async function handleError(error, ctx) {{
  return {{ handled: true, error: {{ name: error.name, message: error.message }} }};
}}
"#,
            description = self.one_line_description(),
            inputs = self.inputs_comment(),
        )
    }

    fn config_json(&self) -> String {
        let inputs = if self.inputs.is_empty() {
            "[]".to_string()
        } else {
            let items: Vec<String> = self
                .inputs
                .iter()
                .map(|i| {
                    format!(
                        "    {{ \"name\": {}, \"type\": {}, \"description\": {} }}",
                        json_str(&i.name),
                        json_str(&i.ty),
                        json_str(&i.description)
                    )
                })
                .collect();
            format!("[\n{}\n  ]", items.join(",\n"))
        };
        format!(
            "{{\n  \"name\": {},\n  \"description\": {},\n  \"inputs\": {inputs}\n}}\n",
            json_str(self.name.as_str()),
            json_str(&self.description),
        )
    }

    fn graph_json(&self) -> String {
        format!(
            r#"{{
  "version": 1,
  "id": {id},
  "description": {description},
  "initial": "fetchGreeting",
  "states": {{
    "fetchGreeting": {{
      "description": "Fetch a greeting (a data: URL, so it works offline)",
      "retry": [{{ "errors": ["*"], "maxAttempts": 2, "interval": "1s" }}],
      "onError": "handleError",
      "onDone": "compose"
    }},
    "compose": {{
      "description": "Combine the greeting with the run input",
      "onDone": "done"
    }},
    "handleError": {{
      "description": "The error path: reached with the error once the retries are spent",
      "onDone": "done"
    }},
    "done": {{ "type": "final" }}
  }}
}}
"#,
            id = json_str(self.name.as_str()),
            description = json_str(&self.description),
        )
    }
}

fn meta_json(now: UnixMillis) -> String {
    let ts = crate::time::rfc3339(now);
    format!(
        "{{\n  \"created\": {ts},\n  \"updated\": {ts},\n  \"version\": {META_VERSION}\n}}\n",
        ts = json_str(&ts)
    )
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).expect("strings always serialize")
}
