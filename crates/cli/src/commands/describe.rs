//! `describe <name>`: one task's files, description, inputs, stored version and sync state.

use anyhow::Result;
use serde::Serialize;

use super::{Ctx, SyncState};
use crate::files;
use crate::output::Render;
use crate::tasks::{self, InputSpec, Meta, config_summary};
use crate::time::rfc3339;

#[derive(Serialize)]
struct DescribeOutput {
    name: String,
    description: Option<String>,
    inputs: Vec<InputSpec>,
    /// The input defaults of `.sequentialrc.json` (`defaults.<input>`) a run of this task gets
    /// when it does not give the input.
    defaults: serde_json::Map<String, serde_json::Value>,
    /// The folder, when the task has one.
    folder: Option<String>,
    /// The files present in the folder.
    files: Vec<String>,
    meta: Option<Meta>,
    has_graph: bool,
    storage: String,
    stored: Option<Stored>,
    state: SyncState,
}

#[derive(Serialize)]
struct Stored {
    version: u32,
    hash: String,
    created_at: String,
}

impl Render for DescribeOutput {
    fn text(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![("task", self.name.clone())];
        rows.push((
            "description",
            self.description.clone().unwrap_or_else(|| "-".into()),
        ));
        rows.push((
            "folder",
            match &self.folder {
                Some(f) => format!("{f} ({})", self.files.join(", ")),
                None => "- (stored only)".into(),
            },
        ));
        if self.inputs.is_empty() {
            rows.push(("inputs", "-".into()));
        }
        for (i, input) in self.inputs.iter().enumerate() {
            let mut line = format!("{} ({})", input.name, input.ty);
            if !input.description.is_empty() {
                line.push_str(&format!(" - {}", input.description));
            }
            if let Some(v) = self.defaults.get(&input.name) {
                line.push_str(&format!(
                    " [default {v} from defaults.{} in .sequentialrc.json]",
                    input.name
                ));
            }
            rows.push((if i == 0 { "inputs" } else { "" }, line));
        }
        let undeclared: Vec<String> = self
            .defaults
            .iter()
            .filter(|(k, _)| !self.inputs.iter().any(|i| &i.name == *k))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !undeclared.is_empty() {
            rows.push((
                "defaults",
                format!("{} (.sequentialrc.json)", undeclared.join(", ")),
            ));
        }
        if let Some(created) = self.meta.as_ref().and_then(|m| m.created.clone()) {
            rows.push(("created", created));
        }
        rows.push(("graph", if self.has_graph { "yes" } else { "no" }.into()));
        rows.push((
            "stored",
            match &self.stored {
                Some(s) => format!(
                    "v{} (sha256 {}…, {}) in {}",
                    s.version,
                    &s.hash[..s.hash.len().min(12)],
                    s.created_at,
                    self.storage
                ),
                None => format!("no version in {}", self.storage),
            },
        ));
        let state = match (&self.state, &self.stored) {
            (SyncState::InSync, Some(s)) => format!("in sync with v{}", s.version),
            (SyncState::Modified, Some(s)) => format!(
                "modified since v{} (`sequential-ecosystem sync-tasks --task {}` stores it)",
                s.version, self.name
            ),
            (SyncState::NotStored, _) => format!(
                "not stored (`sequential-ecosystem sync-tasks --task {}` stores it)",
                self.name
            ),
            (other, _) => other.label().to_string(),
        };
        rows.push(("state", state));
        rows.iter()
            .map(|(k, v)| {
                if k.is_empty() {
                    format!("{:13}{v}\n", "")
                } else {
                    format!("{:13}{v}\n", format!("{k}:"))
                }
            })
            .collect()
    }
}

pub async fn run(ctx: &Ctx, raw: &str) -> Result<()> {
    let name = tasks::task_name(raw)?;
    let folder = if ctx.tasks.has_folder(&name) {
        Some(ctx.tasks.read(&name)?)
    } else {
        None
    };
    let (choice, storage) = ctx.existing_storage().await?;
    let stored = match &storage {
        Some(s) => super::latest_version(s.adapter.as_ref(), &name).await?,
        None => None,
    };
    if folder.is_none() && stored.is_none() {
        return Err(tasks::not_found(&name, ctx.tasks.root()));
    }
    let state = SyncState::of(folder.as_ref(), stored.as_ref().map(|v| v.hash.as_str()));
    let (description, inputs) = match (&folder, &stored) {
        (Some(f), _) => (f.description.clone(), f.inputs.clone()),
        (None, Some(v)) => config_summary(&v.config),
        (None, None) => (None, Vec::new()),
    };
    let files_present = folder
        .as_ref()
        .map(|f| {
            [tasks::CODE, tasks::CONFIG, tasks::META, tasks::GRAPH]
                .into_iter()
                .filter(|file| f.dir.join(file).exists())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let declared: Vec<String> = inputs.iter().map(|i| i.name.clone()).collect();
    let defaults = ctx.rc()?.input_defaults(&declared);
    ctx.out.print(&DescribeOutput {
        name: name.to_string(),
        description,
        inputs,
        defaults,
        folder: folder.as_ref().map(|f| files::show(&f.dir)),
        files: files_present,
        meta: folder.as_ref().and_then(|f| f.meta.clone()),
        has_graph: folder
            .as_ref()
            .map_or(stored.as_ref().is_some_and(|v| v.graph.is_some()), |f| {
                f.graph.is_some()
            }),
        storage: choice.url,
        stored: stored.map(|v| Stored {
            version: v.version,
            hash: v.hash,
            created_at: rfc3339(v.created_at),
        }),
        state,
    })
}
