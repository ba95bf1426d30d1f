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
}

impl Render for CreateOutput {
    fn text(&self) -> String {
        let mut s = format!("created task {} in {}/\n", self.task, self.folder);
        for f in &self.files {
            s.push_str(&format!("  {f}\n"));
        }
        s.push_str(&format!(
            "next: edit {}/code.js, then `sequential-ecosystem sync-tasks --task {}`\n",
            self.folder, self.task
        ));
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
    let written = scaffold.create(&ctx.tasks, now_millis())?;
    ctx.out.print(&CreateOutput {
        task: name.to_string(),
        folder: files::show(&ctx.tasks.folder(&name)),
        files: written.iter().map(|p| files::show(p)).collect(),
        with_graph: args.with_graph,
    })
}
