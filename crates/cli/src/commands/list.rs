//! `list`: task folders, with description, inputs and the version stored for each.

use anyhow::Result;
use serde::Serialize;

use super::{Ctx, SyncState, summary_of};
use crate::files;
use crate::output::{Render, table};
use crate::tasks::{TaskFolder, config_summary};

#[derive(Serialize)]
struct ListOutput {
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

pub async fn run(ctx: &Ctx) -> Result<()> {
    // Read every folder first: a malformed config.json is reported before storage is opened.
    let folders: Vec<TaskFolder> = ctx
        .tasks
        .list()?
        .iter()
        .map(|name| ctx.tasks.read(name))
        .collect::<Result<_>>()?;
    let (choice, storage) = ctx.existing_storage().await?;
    let summaries = match &storage {
        Some(s) => s.adapter.list_tasks().await?,
        None => Vec::new(),
    };

    let mut tasks = Vec::new();
    for folder in &folders {
        let stored = summary_of(&summaries, &folder.name);
        tasks.push(Entry {
            name: folder.name.to_string(),
            description: folder.description.clone(),
            inputs: folder.inputs.iter().map(|i| i.name.clone()).collect(),
            folder: Some(files::show(&folder.dir)),
            stored_version: stored.map(|s| s.latest_version),
            state: SyncState::of(Some(folder), stored.map(|s| s.latest_hash.as_str())),
        });
    }
    for summary in &summaries {
        if folders.iter().any(|f| f.name == summary.name) {
            continue;
        }
        let version = match &storage {
            Some(s) => super::latest_version(s.adapter.as_ref(), &summary.name).await?,
            None => None,
        };
        let (description, inputs) = version
            .as_ref()
            .map(|v| config_summary(&v.config))
            .unwrap_or_default();
        tasks.push(Entry {
            name: summary.name.to_string(),
            description,
            inputs: inputs.into_iter().map(|i| i.name).collect(),
            folder: None,
            stored_version: Some(summary.latest_version),
            state: SyncState::StoredOnly,
        });
    }
    tasks.sort_by(|a, b| a.name.cmp(&b.name));
    ctx.out.print(&ListOutput {
        tasks_dir: files::show(ctx.tasks.root()),
        storage: choice.url,
        tasks,
    })
}
