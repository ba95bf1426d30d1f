//! `sync-tasks`: store each task folder as a task version in a storage backend (idempotent);
//! with `--runs`, also copy the configured storage's runs, journals and signals into a
//! PostgreSQL target, keeping their ids.

use std::collections::HashMap;

use anyhow::{Context, Result};
use sequential_adaptor::{
    Fence, NewTaskVersion, Order, Page, RunFilter, StorageAdapter, TaskName, VersionSel,
};
use sequential_adaptor_postgres::{Imported, PostgresStore};
use serde::Serialize;

use super::Ctx;
use crate::cli::SyncTasksArgs;
use crate::error::user;
use crate::files;
use crate::output::Render;
use crate::storage::{self, Opened};
use crate::tasks::{self, TaskFolder};

#[derive(Serialize)]
struct SyncOutput {
    storage: String,
    tasks: Vec<Synced>,
    created: usize,
    unchanged: usize,
    /// With `--runs`: what was copied.
    #[serde(skip_serializing_if = "Option::is_none")]
    runs: Option<RunsCopied>,
}

/// What `--runs` copied.
#[derive(Serialize, Default)]
struct RunsCopied {
    /// The storage the runs came from (the configured one).
    from: String,
    /// Runs the target did not have.
    created: usize,
    /// Runs the target had at a lower revision.
    updated: usize,
    /// Runs the target had already.
    unchanged: usize,
    /// Journal records copied.
    records: u64,
    /// Signals copied.
    signals: u64,
}

impl RunsCopied {
    fn text(&self) -> String {
        let total = self.created + self.updated + self.unchanged;
        if self.created + self.updated == 0 && self.records == 0 && self.signals == 0 {
            return format!(
                "runs from {}: nothing new ({total} already copied)\n",
                self.from
            );
        }
        format!(
            "runs from {}: {} copied, {} updated, {} unchanged; {} journal records, {} signals\n",
            self.from, self.created, self.updated, self.unchanged, self.records, self.signals
        )
    }
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
        let runs = self.runs.as_ref().map(RunsCopied::text).unwrap_or_default();
        if self.tasks.is_empty() && self.runs.is_some() {
            return runs;
        }
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
        s.push_str(&runs);
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
    if versions.is_empty() && !args.runs {
        // Nothing to store: check the setting, but do not create the storage.
        let choice = crate::storage::choose(&ctx.env, &ctx.rc()?, args.adaptor.as_deref())?;
        return ctx.out.print(&SyncOutput {
            storage: choice.url,
            tasks: Vec::new(),
            created: 0,
            unchanged: 0,
            runs: None,
        });
    }
    let storage = ctx.storage(args.adaptor.as_deref()).await?;
    let mut out = SyncOutput {
        storage: storage.choice.url.clone(),
        tasks: Vec::new(),
        created: 0,
        unchanged: 0,
        runs: None,
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
    if args.runs {
        out.runs = Some(copy_runs(ctx, &storage).await?);
    }
    ctx.out.print(&out)
}

/// Copies every run of the configured storage (with its task version, journal and signals)
/// into the PostgreSQL storage `target`, keeping ids; what the target has already is skipped.
async fn copy_runs(ctx: &Ctx, target: &Opened) -> Result<RunsCopied> {
    let to = target.choice.connect_url();
    if !storage::is_postgres(to) {
        return Err(user(
            format!(
                "--runs copies runs into PostgreSQL storage; {} is {} storage",
                target.choice.url,
                target.adapter.scheme()
            ),
            "name the database: --adaptor postgres://USER@HOST:PORT/DATABASE",
        ));
    }
    let (choice, source) = ctx.existing_storage().await?;
    if choice.connect_url() == to {
        return Err(user(
            format!(
                "--runs would copy {} onto itself (it is also the configured storage, from {})",
                choice.url,
                choice.source.describe()
            ),
            "run it with DATABASE_URL (or .sequentialrc.json) naming the storage to copy from",
        ));
    }
    let mut copied = RunsCopied {
        from: choice.url.clone(),
        ..RunsCopied::default()
    };
    let Some(source) = source else {
        return Ok(copied);
    };
    let source = &*source.adapter;
    let pg = PostgresStore::open(to)
        .await
        .with_context(|| format!("opening {}", target.choice.url))?;
    // source (task, version) → the target's number for the same content
    let mut versions: HashMap<(TaskName, u32), u32> = HashMap::new();
    let mut page = Page {
        after: None,
        limit: 200,
        order: Order::OldestFirst,
    };
    loop {
        let listed = source
            .list_runs(&RunFilter::default(), page)
            .await
            .with_context(|| format!("listing the runs of {}", copied.from))?;
        for mut run in listed.runs {
            let key = (run.task.clone(), run.version);
            let number = match versions.get(&key) {
                Some(n) => *n,
                None => {
                    let v = source
                        .get_task_version(&run.task, VersionSel::Exact(run.version))
                        .await
                        .with_context(|| format!("reading the version run {} pins", run.id))?;
                    let new = NewTaskVersion {
                        task: v.task,
                        code: v.code,
                        graph: v.graph,
                        config: v.config,
                    };
                    let n = pg.put_task_version(new).await?.version.version;
                    versions.insert(key, n);
                    n
                }
            };
            run.version = number;
            let id = run.id;
            match pg
                .import_run(&run)
                .await
                .with_context(|| format!("copying run {id}"))?
            {
                Imported::Created => copied.created += 1,
                Imported::Updated => copied.updated += 1,
                Imported::Unchanged => copied.unchanged += 1,
            }
            let mut have = pg.journal_len(id).await?;
            loop {
                let batch = source.read_journal(id, have.checked_sub(1), 500).await?;
                if batch.is_empty() {
                    break;
                }
                pg.append(id, &batch, Fence::None)
                    .await
                    .with_context(|| format!("copying the journal of run {id}"))?;
                have += batch.len() as u64;
                copied.records += batch.len() as u64;
            }
            let stored = pg.read_signals(id, None).await?.len() as u64;
            let missing = source.read_signals(id, stored.checked_sub(1)).await?;
            copied.signals += pg.import_signals(id, &missing).await?;
        }
        match listed.next {
            Some(after) => page.after = Some(after),
            None => break,
        }
    }
    tracing::debug!(
        created = copied.created,
        updated = copied.updated,
        records = copied.records,
        "copied runs"
    );
    Ok(copied)
}
