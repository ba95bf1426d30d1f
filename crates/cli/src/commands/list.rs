//! `list`: task folders, with description, inputs and the version stored for each.

use anyhow::Result;
use serde::Serialize;

use sequential_adaptor::TaskName;

use super::{Ctx, SyncState};
use crate::files;
use crate::output::{Render, table};
use crate::tasks::{TaskFolder, config_summary};

/// What `list` prints.
#[derive(Serialize)]
pub(crate) struct ListOutput {
    tasks_dir: String,
    storage: String,
    tasks: Vec<Entry>,
}

#[derive(Serialize)]
struct Entry {
    name: String,
    description: Option<String>,
    inputs: Vec<String>,
    /// The folder, when the task has one.
    folder: Option<String>,
    /// The latest version in storage, when one is stored.
    stored_version: Option<u32>,
    state: SyncState,
}

impl Render for ListOutput {
    fn text(&self) -> String {
        if self.tasks.is_empty() {
            return format!(
                "no tasks in {}/ (storage {})\nnext: sequential-ecosystem create-task <name>\n",
                self.tasks_dir, self.storage
            );
        }
        let mut rows = vec![vec![
            "NAME".to_string(),
            "VERSION".to_string(),
            "STATE".to_string(),
            "INPUTS".to_string(),
            "DESCRIPTION".to_string(),
        ]];
        for t in &self.tasks {
            rows.push(vec![
                t.name.clone(),
                t.stored_version
                    .map_or("-".to_string(), |v| format!("v{v}")),
                t.state.label().to_string(),
                if t.inputs.is_empty() {
                    "-".to_string()
                } else {
                    t.inputs.join(",")
                },
                t.description.clone().unwrap_or_default(),
            ]);
        }
        let mut s = table(&rows);
        s.push_str(&format!("storage: {}\n", self.storage));
        s
    }
}

/// Every task folder, read first: a malformed config.json is reported before storage is
/// opened.
pub(crate) fn folders(ctx: &Ctx) -> Result<Vec<TaskFolder>> {
    ctx.tasks
        .list()?
        .iter()
        .map(|name| ctx.tasks.read(name))
        .collect()
}

pub async fn run(ctx: &Ctx) -> Result<()> {
    let folders = folders(ctx)?;
    let (choice, storage) = ctx.existing_storage().await?;
    let summaries = match &storage {
        Some(s) => s.adapter.list_tasks().await?,
        None => Vec::new(),
    };
    let mut stored = Vec::new();
    for summary in &summaries {
        // the config matters only for a task without a folder
        let config = match &storage {
            Some(s) if !folders.iter().any(|f| f.name == summary.name) => {
                super::latest_version(s.adapter.as_ref(), &summary.name)
                    .await?
                    .map(|v| v.config)
            }
            _ => None,
        };
        stored.push(StoredTask {
            name: summary.name.clone(),
            version: summary.latest_version,
            hash: summary.latest_hash.clone(),
            config,
        });
    }
    ctx.out
        .print(&ListOutput::new(ctx, &folders, &stored, choice.url))
}

/// A task's latest stored version, as `list` shows it.
pub(crate) struct StoredTask {
    pub(crate) name: TaskName,
    pub(crate) version: u32,
    pub(crate) hash: String,
    /// Its config (for the description and inputs of a task without a folder).
    pub(crate) config: Option<serde_json::Value>,
}

impl ListOutput {
    /// The task folders and the stored tasks of `storage`, by name.
    pub(crate) fn new(
        ctx: &Ctx,
        folders: &[TaskFolder],
        stored: &[StoredTask],
        storage: String,
    ) -> Self {
        let mut tasks = Vec::new();
        for folder in folders {
            let s = stored.iter().find(|s| s.name == folder.name);
            tasks.push(Entry {
                name: folder.name.to_string(),
                description: folder.description.clone(),
                inputs: folder.inputs.iter().map(|i| i.name.clone()).collect(),
                folder: Some(files::show(&folder.dir)),
                stored_version: s.map(|s| s.version),
                state: SyncState::of(Some(folder), s.map(|s| s.hash.as_str())),
            });
        }
        for s in stored {
            if folders.iter().any(|f| f.name == s.name) {
                continue;
            }
            let (description, inputs) = s.config.as_ref().map(config_summary).unwrap_or_default();
            tasks.push(Entry {
                name: s.name.to_string(),
                description,
                inputs: inputs.into_iter().map(|i| i.name).collect(),
                folder: None,
                stored_version: Some(s.version),
                state: SyncState::StoredOnly,
            });
        }
        tasks.sort_by(|a, b| a.name.cmp(&b.name));
        ListOutput {
            tasks_dir: files::show(ctx.tasks.root()),
            storage,
            tasks,
        }
    }
}
