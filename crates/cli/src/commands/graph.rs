//! `graph check <task>` (static validation with JSON pointers) and `graph show <task>` (the
//! graph as Mermaid, Graphviz dot or JSON; with `--run`, the states a run visited and the one
//! it is in).

use std::collections::BTreeSet;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};
use sequential_adaptor::{RunId, TaskName, VersionSel};
use sequential_tasker_engine::flow_graph::{self, Diagnostic, Graph, Record, Report, SubGraph};
use serde::Serialize;
use serde_json::Value;

use super::Ctx;
use crate::error::user;
use crate::files;
use crate::output::Render;
use crate::runs;
use crate::tasks::{self, CODE, GRAPH};

/// `graph` arguments.
#[derive(Debug, Args)]
pub struct GraphArgs {
    #[command(subcommand)]
    pub action: GraphAction,
}

/// `graph` subcommands.
#[derive(Debug, Subcommand)]
pub enum GraphAction {
    /// Validate a task's graph.json: every error and warning at its JSON pointer, handlers
    /// checked against code.js's exports (exit 2 when there is an error).
    #[command(after_help = "\
Examples:
  sequential-ecosystem graph check order-graph
  sequential-ecosystem graph check order-graph --json

Reads the task folder (tasks/<name>/graph.json and code.js), or the latest stored version when
there is no folder. Warnings (legacy keys with their canonical rewrite, eventless cycles) leave
the exit code 0.")]
    Check {
        /// The task name.
        task: String,
    },
    /// Draw a task's graph: Mermaid (default), Graphviz dot or JSON; with --run, the states the
    /// run visited and the one it is in are marked.
    #[command(after_help = "\
Examples:
  sequential-ecosystem graph show order-graph
  sequential-ecosystem graph show order-graph --format dot | dot -Tsvg > graph.svg
  sequential-ecosystem graph show order-graph --run 0190c3e2-7a4b-7c00-8000-000000000000 --format json

With --run the graph is the one the run is pinned to. Map iterators are drawn once (`each[]`),
parallel branches each (`enrich#0`, `enrich#1`).")]
    Show {
        /// The task name.
        task: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Mermaid)]
        format: Format,
        /// Mark the states this run visited and the one it is in.
        #[arg(long, value_name = "RUN")]
        run: Option<String>,
    },
}

/// What `graph show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A Mermaid `stateDiagram-v2`.
    Mermaid,
    /// Graphviz `digraph`.
    Dot,
    /// The states and transitions as JSON.
    Json,
}

pub async fn run(ctx: &Ctx, args: GraphArgs) -> Result<()> {
    match args.action {
        GraphAction::Check { task } => check(ctx, &task).await,
        GraphAction::Show { task, format, run } => show(ctx, &task, format, run.as_deref()).await,
    }
}

// ------------------------------------------------------------------------------ sources

/// A task's code and graph.json text, and where they were read.
struct Source {
    code: String,
    graph: String,
    /// `tasks/x/graph.json`, or `stored task x v3`.
    origin: String,
}

async fn source(ctx: &Ctx, name: &TaskName) -> Result<Source> {
    if ctx.tasks.has_folder(name) {
        let dir = ctx.tasks.folder(name);
        let path = dir.join(GRAPH);
        if !path.exists() {
            return Err(no_graph(name, &files::show(&path)));
        }
        let graph = String::from_utf8_lossy(&files::read_bytes(&path)?).into_owned();
        let code_path = dir.join(CODE);
        let code = if code_path.exists() {
            String::from_utf8_lossy(&files::read_bytes(&code_path)?).into_owned()
        } else {
            String::new()
        };
        return Ok(Source {
            code,
            graph,
            origin: files::show(&path),
        });
    }
    let (_, storage) = ctx.existing_storage().await?;
    let Some(storage) = storage else {
        return Err(tasks::not_found(name, ctx.tasks.root()));
    };
    let v = super::latest_version(storage.adapter.as_ref(), name)
        .await?
        .ok_or_else(|| tasks::not_found(name, ctx.tasks.root()))?;
    let origin = format!("stored task {name} v{}", v.version);
    let graph = v.graph.ok_or_else(|| no_graph(name, &origin))?;
    Ok(Source {
        code: v.code,
        graph: graph.to_string(),
        origin,
    })
}

fn no_graph(name: &TaskName, origin: &str) -> anyhow::Error {
    user(
        format!("task {name} has no graph.json ({origin}): it is an implicit task"),
        format!(
            "write one (docs/graphs.md), or scaffold a graph task to start from: `sequential-ecosystem create-task {name}-flow --with-graph`"
        ),
    )
}

// ------------------------------------------------------------------------------ check

#[derive(Serialize)]
struct CheckOutput {
    task: String,
    file: String,
    ok: bool,
    errors: Vec<Finding>,
    warnings: Vec<Finding>,
}

#[derive(Serialize)]
struct Finding {
    pointer: String,
    message: String,
    expected: String,
}

impl From<&Diagnostic> for Finding {
    fn from(d: &Diagnostic) -> Self {
        Finding {
            pointer: d.pointer.clone(),
            message: d.message.clone(),
            expected: d.expected.clone(),
        }
    }
}

impl Render for CheckOutput {
    fn text(&self) -> String {
        let mut s = if self.ok {
            format!("{}: ok", self.file)
        } else {
            format!("{}: {}", self.file, count(self.errors.len(), "error"))
        };
        if !self.warnings.is_empty() {
            s.push_str(&format!(", {}", count(self.warnings.len(), "warning")));
        }
        s.push('\n');
        for (level, list) in [("error", &self.errors), ("warning", &self.warnings)] {
            for f in list.iter() {
                s.push_str(&format!(
                    "{level:<7} {}: {}\n        expected: {}\n",
                    f.pointer, f.message, f.expected
                ));
            }
        }
        s
    }
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

async fn check(ctx: &Ctx, raw: &str) -> Result<()> {
    let name = tasks::task_name(raw)?;
    let src = source(ctx, &name).await?;
    let report = sequential_tasker_engine::graph::check(&src.code, &src.graph);
    let out = CheckOutput {
        task: name.to_string(),
        file: src.origin.clone(),
        ok: report.is_ok(),
        errors: report.errors().map(Finding::from).collect(),
        warnings: report.warnings().map(Finding::from).collect(),
    };
    ctx.out.print(&out)?;
    if !out.ok {
        return Err(user(
            format!(
                "the graph of task {name} ({}) has {}; it cannot run",
                src.origin,
                count(out.errors.len(), "error")
            ),
            "each error names its JSON pointer and what would be valid; docs/graphs.md describes every state type",
        ));
    }
    Ok(())
}

/// Refuses a task folder whose graph.json would fail its run (`run`, `run --dry-run`): the
/// errors of `graph check`, before anything is stored.
pub(crate) fn refuse_invalid(name: &TaskName, code: &str, graph: &Value, file: &str) -> Result<()> {
    let report: Report = sequential_tasker_engine::graph::check(code, &graph.to_string());
    if report.is_ok() {
        return Ok(());
    }
    let mut what = format!(
        "task {name}: {file} has {}",
        count(report.errors().count(), "error")
    );
    for e in report.errors().take(5) {
        what.push_str(&format!("\n  {e}"));
    }
    Err(user(
        what,
        format!(
            "`sequential-ecosystem graph check {name}` lists every error with its JSON pointer"
        ),
    ))
}

// ------------------------------------------------------------------------------ show

/// One state as `graph show` draws it.
#[derive(Serialize)]
struct Node {
    /// The state's path with map items collapsed (`each[]/fetchOne`).
    path: String,
    name: String,
    #[serde(rename = "type")]
    ty: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    handler: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<String>,
    initial: bool,
    edges: Vec<EdgeOut>,
    /// Branches of a parallel state, or the iterator of a map state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    regions: Vec<Vec<Node>>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    visited: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    current: bool,
}

#[derive(Serialize)]
struct EdgeOut {
    via: String,
    to: String,
}

#[derive(Serialize)]
struct RunMarks {
    id: String,
    status: String,
    visited: Vec<String>,
    current: Vec<String>,
}

#[derive(Serialize)]
struct ShowOutput {
    task: String,
    initial: String,
    states: Vec<Node>,
    #[serde(skip_serializing_if = "Option::is_none")]
    run: Option<RunMarks>,
    #[serde(skip)]
    format: Option<Format>,
}

impl Render for ShowOutput {
    fn text(&self) -> String {
        match self.format {
            Some(Format::Dot) => dot(self),
            _ => mermaid(self),
        }
    }
}

async fn show(ctx: &Ctx, raw: &str, format: Format, run: Option<&str>) -> Result<()> {
    let name = tasks::task_name(raw)?;
    // the folder's text keeps the states in document order
    let (graph_text, marks) = match run {
        None => (source(ctx, &name).await?.graph, None),
        Some(raw_run) => {
            let id = runs::run_id(raw_run)?;
            let (graph, marks) = pinned(ctx, &name, id).await?;
            (graph.to_string(), marks)
        }
    };
    let graph = Graph::parse(&graph_text)
        .map_err(|e| {
            user(
                format!("the graph of task {name} is invalid: {e}"),
                format!("`sequential-ecosystem graph check {name}` lists every error"),
            )
        })?
        .graph;
    let (visited, current) = marks
        .as_ref()
        .map(|m| {
            (
                m.visited.iter().cloned().collect::<BTreeSet<_>>(),
                m.current.iter().cloned().collect::<BTreeSet<_>>(),
            )
        })
        .unwrap_or_default();
    let states = nodes(graph.main(), "", &visited, &current);
    let out = ShowOutput {
        task: name.to_string(),
        initial: graph.main().initial().to_string(),
        states,
        run: marks,
        format: Some(format),
    };
    // `--format json` (or --json) prints the document
    crate::output::Output::new(format == Format::Json || ctx.json).print(&out)
}

/// The graph run `id` is pinned to, and the states it visited and is in.
async fn pinned(ctx: &Ctx, name: &TaskName, id: RunId) -> Result<(Value, Option<RunMarks>)> {
    let (choice, storage) = ctx.existing_storage().await?;
    let Some(storage) = storage else {
        return Err(runs::run_not_found(id, &choice.url));
    };
    let run = runs::get_run(&storage, id).await?;
    if &run.task != name {
        return Err(user(
            format!("run {id} is a run of task {}, not of {name}", run.task),
            format!("`sequential-ecosystem graph show {} --run {id}`", run.task),
        ));
    }
    let v = storage
        .adapter
        .get_task_version(&run.task, VersionSel::Exact(run.version))
        .await?;
    let Some(graph_value) = v.graph.clone() else {
        return Err(no_graph(
            name,
            &format!("stored task {name} v{}", v.version),
        ));
    };
    let graph = Graph::parse(&graph_value.to_string())
        .map_err(|e| {
            user(
                format!("the graph run {id} is pinned to is invalid: {e}"),
                "start a new run",
            )
        })?
        .graph;
    let journal = runs::journal(&storage.adapter, id).await?;
    let marks = run_marks(&graph, &run, &journal)?;
    Ok((graph_value, Some(marks)))
}

/// The states run `run` visited (its `state.entered` records) and the ones it is in.
fn run_marks(
    graph: &Graph,
    run: &sequential_adaptor::Run,
    journal: &[sequential_adaptor::JournalRecord],
) -> Result<RunMarks> {
    let id = run.id;
    let records: Vec<Record> = journal
        .iter()
        .filter_map(|r| Record::from_parts(&r.kind, &r.data).ok().flatten())
        .collect();
    let mut visited = BTreeSet::new();
    for r in &records {
        if r.kind().as_str() == "state.entered"
            && let Some(p) = &r.path
        {
            visited.insert(collapse(p));
        }
    }
    let snapshot = flow_graph::fold(graph, &records).map_err(|e| {
        user(
            format!("the journal of run {id} does not fit its graph: {e}"),
            "start a new run",
        )
    })?;
    let current: BTreeSet<String> = snapshot
        .current_states()
        .iter()
        .map(|p| collapse(p))
        .collect();
    let status = match snapshot.status {
        flow_graph::RunStatus::Running => run.status.to_string(),
        s => s.as_str().to_string(),
    };
    Ok(RunMarks {
        id: id.to_string(),
        status,
        visited: visited.into_iter().collect(),
        current: current.into_iter().collect(),
    })
}

/// A stored graph as `graph show` draws it, for the host API's `GET /tasks/:name/graph`:
/// Mermaid or dot text, or the JSON document; with a run (and its journal), the states it
/// visited and is in are marked. The error is the message of an invalid graph or journal.
pub(crate) fn render_stored(
    task: &TaskName,
    graph_value: &Value,
    run: Option<(
        &sequential_adaptor::Run,
        &[sequential_adaptor::JournalRecord],
    )>,
    format: Format,
) -> std::result::Result<String, String> {
    let graph = Graph::parse(&graph_value.to_string())
        .map_err(|e| format!("the stored graph of task {task} is invalid: {e}"))?
        .graph;
    let marks = run
        .map(|(run, journal)| run_marks(&graph, run, journal))
        .transpose()
        .map_err(|e| e.to_string())?;
    let (visited, current) = marks
        .as_ref()
        .map(|m| {
            (
                m.visited.iter().cloned().collect::<BTreeSet<_>>(),
                m.current.iter().cloned().collect::<BTreeSet<_>>(),
            )
        })
        .unwrap_or_default();
    let out = ShowOutput {
        task: task.to_string(),
        initial: graph.main().initial().to_string(),
        states: nodes(graph.main(), "", &visited, &current),
        run: marks,
        format: Some(format),
    };
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(&out).expect("the graph serializes"),
        _ => out.text(),
    })
}

/// A run's state path as the diagram names it: map items collapsed (`each[3]/x` → `each[]/x`).
fn collapse(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut skip = false;
    for c in path.chars() {
        match c {
            '[' => {
                out.push('[');
                skip = true;
            }
            ']' => {
                out.push(']');
                skip = false;
            }
            _ if skip => {}
            c => out.push(c),
        }
    }
    out
}

fn nodes(
    g: &SubGraph,
    prefix: &str,
    visited: &BTreeSet<String>,
    current: &BTreeSet<String>,
) -> Vec<Node> {
    g.states()
        .iter()
        .map(|s| {
            let path = format!("{prefix}{}", s.name());
            let regions = match s.type_name() {
                "parallel" => s
                    .subgraphs()
                    .iter()
                    .enumerate()
                    .map(|(b, sub)| nodes(sub, &format!("{path}#{b}/"), visited, current))
                    .collect(),
                "map" => s
                    .subgraphs()
                    .iter()
                    .map(|sub| nodes(sub, &format!("{path}[]/"), visited, current))
                    .collect(),
                _ => Vec::new(),
            };
            let handler = match s.type_name() {
                "task" if s.child_task().is_none() => {
                    Some(s.handler().unwrap_or(s.name()).to_string())
                }
                _ => s.handler().map(str::to_string),
            };
            Node {
                visited: visited.contains(&path),
                current: current.contains(&path),
                name: s.name().to_string(),
                ty: s.type_name(),
                handler,
                task: s.child_task().map(str::to_string),
                initial: s.name() == g.initial(),
                edges: s
                    .edges()
                    .iter()
                    .map(|e| EdgeOut {
                        via: e.via.clone(),
                        to: format!("{prefix}{}", e.target),
                    })
                    .collect(),
                regions,
                path,
            }
        })
        .collect()
}

/// A Mermaid id for a state path.
fn mermaid_id(path: &str) -> String {
    path.chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => c,
            '#' => 'b',
            '[' => 'i',
            _ => '_',
        })
        .collect()
}

fn mermaid(out: &ShowOutput) -> String {
    let mut s = String::from("stateDiagram-v2\n");
    let mut visited = Vec::new();
    let mut current = Vec::new();
    mermaid_region(&out.states, 1, &mut s, &mut visited, &mut current);
    if out.run.is_some() {
        s.push_str("    classDef visited fill:#d4edda,stroke:#28a745\n");
        s.push_str("    classDef current fill:#fff3cd,stroke:#e67e22,stroke-width:3px\n");
        if !visited.is_empty() {
            s.push_str(&format!("    class {} visited\n", visited.join(",")));
        }
        if !current.is_empty() {
            s.push_str(&format!("    class {} current\n", current.join(",")));
        }
    }
    s
}

fn mermaid_region(
    nodes: &[Node],
    depth: usize,
    s: &mut String,
    visited: &mut Vec<String>,
    current: &mut Vec<String>,
) {
    let pad = "    ".repeat(depth);
    for n in nodes {
        let id = mermaid_id(&n.path);
        if id != n.name || !n.regions.is_empty() {
            let label = match n.ty {
                "parallel" | "map" => format!("{} ({})", n.name, n.ty),
                _ => n.name.clone(),
            };
            s.push_str(&format!("{pad}state \"{label}\" as {id}\n"));
        }
        if n.current {
            current.push(id.clone());
        } else if n.visited {
            visited.push(id.clone());
        }
        if !n.regions.is_empty() {
            s.push_str(&format!("{pad}state {id} {{\n"));
            for (i, region) in n.regions.iter().enumerate() {
                if i > 0 {
                    s.push_str(&format!("{pad}    --\n"));
                }
                mermaid_region(region, depth + 1, s, visited, current);
            }
            s.push_str(&format!("{pad}}}\n"));
        }
    }
    for n in nodes {
        let id = mermaid_id(&n.path);
        if n.initial {
            s.push_str(&format!("{pad}[*] --> {id}\n"));
        }
        for e in &n.edges {
            s.push_str(&format!(
                "{pad}{id} --> {} : {}\n",
                mermaid_id(&e.to),
                e.via
            ));
        }
        if matches!(n.ty, "final" | "fail") {
            s.push_str(&format!("{pad}{id} --> [*]\n"));
        }
    }
}

fn dot(out: &ShowOutput) -> String {
    let mut s = format!(
        "digraph {} {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n  \"[start]\" [shape=point];\n",
        quote(&out.task)
    );
    dot_region(&out.states, "  ", &mut s, &mut 0);
    s.push_str("}\n");
    s
}

fn dot_region(nodes: &[Node], pad: &str, s: &mut String, clusters: &mut usize) {
    for n in nodes {
        let mut attrs = vec![format!("label={}", quote(&n.name))];
        match n.ty {
            "choice" => attrs.push("shape=diamond".into()),
            "final" => attrs.push("shape=doublecircle".into()),
            "fail" => attrs.push("shape=doubleoctagon".into()),
            "wait" => attrs.push("shape=ellipse".into()),
            _ => {}
        }
        if n.current {
            attrs.push("style=\"rounded,filled,bold\", fillcolor=\"#fff3cd\", penwidth=3".into());
        } else if n.visited {
            attrs.push("style=\"rounded,filled\", fillcolor=\"#d4edda\"".into());
        }
        s.push_str(&format!(
            "{pad}{} [{}];\n",
            quote(&n.path),
            attrs.join(", ")
        ));
        for region in &n.regions {
            *clusters += 1;
            s.push_str(&format!(
                "{pad}subgraph cluster_{clusters} {{\n{pad}  label={};\n",
                quote(&format!("{} ({})", n.name, n.ty))
            ));
            dot_region(region, &format!("{pad}  "), s, clusters);
            if let Some(first) = region.iter().find(|r| r.initial) {
                s.push_str(&format!(
                    "{pad}  {} -> {} [style=dashed];\n",
                    quote(&n.path),
                    quote(&first.path)
                ));
            }
            s.push_str(&format!("{pad}}}\n"));
        }
    }
    for n in nodes {
        if n.initial && !n.path.contains('/') {
            s.push_str(&format!("{pad}\"[start]\" -> {};\n", quote(&n.path)));
        }
        for e in &n.edges {
            s.push_str(&format!(
                "{pad}{} -> {} [label={}];\n",
                quote(&n.path),
                quote(&e.to),
                quote(&e.via)
            ));
        }
    }
}

fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

// ------------------------------------------------------------------------------ journal

/// A graph record of a run's journal as `show --journal` prints it (`None`: not a graph record
/// this knows, printed as its JSON). The state's path leads; times are RFC 3339.
pub(crate) fn journal_text(kind: &str, data: &Value) -> Option<String> {
    let path = data["path"].as_str().unwrap_or("?");
    let num = |k: &str| {
        data[k]
            .as_u64()
            .map_or_else(|| "?".into(), |n| n.to_string())
    };
    let json = |k: &str| runs::short_json(&data[k], 80);
    let error = |v: &Value| {
        let msg = v["message"].as_str().unwrap_or_default();
        let name = v["name"].as_str().unwrap_or("Error");
        if msg.is_empty() {
            name.to_string()
        } else {
            format!(
                "{name}: {}",
                runs::short_json(&Value::String(msg.into()), 80).trim_matches('"')
            )
        }
    };
    let at = |k: &str| {
        data[k]
            .as_i64()
            .map_or_else(|| "?".into(), crate::time::rfc3339)
    };
    Some(match kind {
        "state.entered" => {
            let restart = data["restart"]
                .as_u64()
                .map_or(String::new(), |r| format!(" (restart {r})"));
            format!(
                "{path} attempt {}{restart} input {}",
                num("attempt"),
                json("input")
            )
        }
        "state.succeeded" => {
            let vars = data
                .get("vars")
                .filter(|v| !v.is_null())
                .map_or(String::new(), |v| {
                    format!(" vars {}", runs::short_json(v, 60))
                });
            format!("{path} → {}{vars}", json("output"))
        }
        "state.failed" => format!(
            "{path} attempt {} threw {}",
            num("attempt"),
            error(&data["error"])
        ),
        "retry.scheduled" => format!(
            "{path} attempt {} in {} (at {})",
            num("attempt"),
            runs::human_ms(data["delay_ms"].as_i64().unwrap_or(0)),
            at("fire_at")
        ),
        "timer.scheduled" => format!(
            "{path} timer {} fires at {}",
            data["timer"].as_str().unwrap_or("?"),
            at("fire_at")
        ),
        "timer.fired" | "timer.cancelled" => {
            format!("{path} timer {}", data["timer"].as_str().unwrap_or("?"))
        }
        "transition" => format!(
            "{} → {} ({})",
            data["path"]
                .as_str()
                .or(data["from"].as_str())
                .unwrap_or("?"),
            data["to"].as_str().unwrap_or("?"),
            data["via"].as_str().unwrap_or("?")
        ),
        "event.received" => format!(
            "event {:?} {}",
            data["name"].as_str().unwrap_or("?"),
            json("message")
        ),
        "event.consumed" => format!(
            "{path} {} event {:?}",
            if data["discarded"] == true {
                "discarded"
            } else {
                "took"
            },
            data["name"].as_str().unwrap_or("?")
        ),
        "item.started" => format!("{path}[{}] item {}", num("index"), json("item")),
        "item.succeeded" => format!("{path}[{}] → {}", num("index"), json("output")),
        "item.failed" => format!("{path}[{}] threw {}", num("index"), error(&data["error"])),
        "item.cancelled" => format!("{path}[{}] cancelled", num("index")),
        "branch.started" => format!("{path}#{} started", num("branch")),
        "branch.succeeded" => format!("{path}#{} → {}", num("branch"), json("output")),
        "branch.failed" => format!("{path}#{} threw {}", num("branch"), error(&data["error"])),
        "branch.cancelled" => format!("{path}#{} cancelled", num("branch")),
        "run.recovered" => format!(
            "taken over from {}",
            data["previous_owner"].as_str().unwrap_or("?")
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_items_collapse_to_the_iterator() {
        assert_eq!(collapse("each[12]/fetchOne"), "each[]/fetchOne");
        assert_eq!(collapse("fan#1/each[3]/x"), "fan#1/each[]/x");
        assert_eq!(collapse("charge"), "charge");
        assert_eq!(mermaid_id("fan#1/each[]/x"), "fanb1_eachi__x");
    }
}
