//! `sync-tasks`: store each task folder as a task version in a storage backend (idempotent).

use anyhow::{Context, Result};
use serde::Serialize;

use super::Ctx;
use crate::cli::SyncTasksArgs;
use crate::files;
use crate::output::Render;
use crate::tasks::{self, TaskFolder};

#[derive(Serialize)]
struct SyncOutput {
    storage: String,
    tasks: Vec<Synced>,
    created: usize,
    unchanged: usize,
}

#[derive(Serialize)]
struct Synced {
    name: String,
    version: u32,
    hash: String,
    /// `created` or `unchanged`.
    status: &'static str,
}

impl Render for SyncOutput {
    fn text(&self) -> String {
        if self.tasks.is_empty() {
            return "no task folders to sync\nnext: sequential-ecosystem create-task <name>\n"
                .to_string();
        }
        let width = self.tasks.iter().map(|t| t.name.len()).max().unwrap_or(0);
        let mut s = String::new();
        for t in &self.tasks {
            s.push_str(&format!("{:width$}  {} v{}\n", t.name, t.status, t.version));
        }
        let n = self.tasks.len();
        let tasks = if n == 1 { "task" } else { "tasks" };
        if self.created == 0 {
            s.push_str(&format!(
                "nothing new: {n} {tasks} already stored in {}\n",
                self.storage
            ));
        } else {
            s.push_str(&format!(
                "synced {n} {tasks} to {}: {} created, {} unchanged\n",
                self.storage, self.created, self.unchanged
            ));
        }
        s
    }
}

pub async fn run(ctx: &Ctx, args: SyncTasksArgs) -> Result<()> {
    let names = match &args.task {
        Some(raw) => {
            let name = tasks::task_name(raw)?;
            if !ctx.tasks.has_folder(&name) {
                return Err(tasks::not_found(&name, ctx.tasks.root()));
            }
            vec![name]
        }
        None => ctx.tasks.list()?,
    };
    // Read and check every folder before storing anything.
    let folders: Vec<TaskFolder> = names
        .iter()
        .map(|n| ctx.tasks.read(n))
        .collect::<Result<_>>()?;
    let versions = folders
        .iter()
        .map(TaskFolder::to_new_version)
        .collect::<Result<Vec<_>>>()?;
    for (folder, version) in folders.iter().zip(&versions) {
        // a version whose runs could only fail is not stored (nor is anything else)
        crate::runs::check_retry(
            &version.config,
            &files::show(&folder.dir.join(tasks::CONFIG)),
        )?;
    }
    if versions.is_empty() {
        // Nothing to store: check the setting, but do not create the storage.
        let choice = crate::storage::choose(&ctx.env, &ctx.rc()?, args.adaptor.as_deref())?;
        return ctx.out.print(&SyncOutput {
            storage: choice.url,
            tasks: Vec::new(),
            created: 0,
            unchanged: 0,
        });
    }
    let storage = ctx.storage(args.adaptor.as_deref()).await?;
    let mut out = SyncOutput {
        storage: storage.choice.url.clone(),
        tasks: Vec::new(),
        created: 0,
        unchanged: 0,
    };
    for (folder, new) in folders.iter().zip(versions) {
        let put = storage
            .adapter
            .put_task_version(new)
            .await
            .with_context(|| format!("storing {} in {}", files::show(&folder.dir), out.storage))?;
        if put.created {
            out.created += 1;
        } else {
            out.unchanged += 1;
        }
        tracing::debug!(task = %folder.name, version = put.version.version, created = put.created, "stored");
        out.tasks.push(Synced {
            name: folder.name.to_string(),
            version: put.version.version,
            hash: put.version.hash,
            status: if put.created { "created" } else { "unchanged" },
        });
    }
    ctx.out.print(&out)
}
