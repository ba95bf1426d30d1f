//! `delete <name> [--force]`: delete the task from storage, then remove its folder.

use anyhow::{Context, Result};
use sequential_adaptor::DeleteMode;
use serde::Serialize;

use super::Ctx;
use crate::error::UserError;
use crate::files;
use crate::output::Render;
use crate::tasks;

#[derive(Serialize)]
struct DeleteOutput {
    task: String,
    storage: String,
    /// Whether storage held versions (and runs) of the task, now deleted.
    deleted_from_storage: bool,
    /// The folder removed, if the task had one.
    removed_folder: Option<String>,
}

impl Render for DeleteOutput {
    fn text(&self) -> String {
        let mut s = String::new();
        if self.deleted_from_storage {
            s.push_str(&format!(
                "deleted task {} (versions and runs) from {}\n",
                self.task, self.storage
            ));
        }
        if let Some(folder) = &self.removed_folder {
            s.push_str(&format!("removed {folder}/\n"));
        }
        s
    }
}

pub async fn run(ctx: &Ctx, raw: &str, force: bool) -> Result<()> {
    let name = tasks::task_name(raw)?;
    let dir = ctx.tasks.folder(&name);
    let had_folder = ctx.tasks.has_folder(&name);
    let (choice, storage) = ctx.existing_storage().await?;
    let mode = if force {
        DeleteMode::Force
    } else {
        DeleteMode::IfIdle
    };
    let result = match &storage {
        Some(s) => s.adapter.delete_task(&name, mode).await,
        None => Err(sequential_adaptor::Error::not_found(format!(
            "task `{name}`"
        ))),
    };
    let deleted_from_storage = match result {
        Ok(()) => true,
        Err(sequential_adaptor::Error::NotFound { .. }) => false,
        Err(e @ sequential_adaptor::Error::Conflict { .. }) => {
            return Err(UserError::new(format!(
                "cannot delete task {:?}: {e}; nothing was deleted",
                name.as_str()
            ))
            .hint(format!(
                "cancel its runs first, or pass --force to delete it with its runs: \
                 `sequential-ecosystem delete {name} --force`"
            ))
            .into());
        }
        Err(e) => return Err(anyhow::Error::new(e).context(format!("deleting task {name:?}"))),
    };
    if !had_folder && !deleted_from_storage {
        return Err(tasks::not_found(&name, ctx.tasks.root()));
    }
    let removed_folder = if had_folder && dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("removing {}", files::show(&dir)))?;
        Some(files::show(&dir))
    } else if had_folder {
        // Folder storage at the same place may already have removed the whole folder.
        Some(files::show(&dir))
    } else {
        None
    };
    ctx.out.print(&DeleteOutput {
        task: name.to_string(),
        storage: choice.url,
        deleted_from_storage,
        removed_folder,
    })
}
