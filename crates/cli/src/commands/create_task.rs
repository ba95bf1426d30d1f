//! `create-task`: scaffold `tasks/<name>/` with a working example in each file.

use anyhow::Result;
use sequential_adaptor::now_millis;
use serde::Serialize;

use super::Ctx;
use crate::cli::CreateTaskArgs;
use crate::files;
use crate::output::Render;
use crate::tasks::{self, Scaffold};

#[derive(Serialize)]
struct CreateOutput {
    task: String,
    folder: String,
    files: Vec<String>,
    with_graph: bool,
    /// What to do next, as a command line.
    next: String,
}

impl Render for CreateOutput {
    fn text(&self) -> String {
        let mut s = format!("created task {} in {}/\n", self.task, self.folder);
        for f in &self.files {
            s.push_str(&format!("  {f}\n"));
        }
        s.push_str(&format!("next: {}\n", self.next));
        s
    }
}

pub async fn run(ctx: &Ctx, args: CreateTaskArgs) -> Result<()> {
    let name = tasks::task_name(&args.name)?;
    let inputs = match &args.inputs {
        Some(raw) if !raw.trim().is_empty() => tasks::parse_inputs(raw)?,
        _ => Vec::new(),
    };
    let description = args
        .description
        .clone()
        .unwrap_or_else(|| format!("The {name} task"));
    let scaffold = Scaffold {
        name: name.clone(),
        description,
        inputs,
        graph: args.with_graph,
    };
    let folder = files::show(&ctx.tasks.folder(&name));
    let next = if args.with_graph {
        format!(
            "`sequential-ecosystem graph check {name}` then `sequential-ecosystem run {name}` (it runs as is), then edit {folder}/code.js and graph.json"
        )
    } else if scaffold.inputs.is_empty() {
        format!("`sequential-ecosystem run {name}` (it runs as is), then edit {folder}/code.js")
    } else {
        let example: Vec<String> = scaffold
            .inputs
            .iter()
            .map(|i| {
                let v = match i.ty.as_str() {
                    "number" | "integer" => "1",
                    "boolean" => "true",
                    "array" => "[]",
                    "object" => "{}",
                    _ => "\"…\"",
                };
                format!("\"{}\": {v}", i.name)
            })
            .collect();
        format!(
            "`sequential-ecosystem run {name} --input '{{{}}}'`, then edit {folder}/code.js",
            example.join(", ")
        )
    };
    let written = scaffold.create(&ctx.tasks, now_millis())?;
    ctx.out.print(&CreateOutput {
        task: name.to_string(),
        folder,
        files: written.iter().map(|p| files::show(p)).collect(),
        with_graph: args.with_graph,
        next,
    })
}
