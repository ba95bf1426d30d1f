//! One module per subcommand; [`run`] dispatches and builds the shared [`Ctx`].

mod config;
pub(crate) mod control;
mod create_task;
mod delete;
mod describe;
pub(crate) mod fsm;
pub(crate) mod graph;
mod init;
pub(crate) mod inspect;
pub(crate) mod list;
mod migrate;
pub(crate) mod run;
mod sync_tasks;
mod vm;
mod worker;

use anyhow::Result;
use sequential_adaptor::{StorageAdapter, TaskName, VersionSel};

use crate::cli::{Cli, Command};
pub use crate::ctx::Ctx;
use crate::output::Output;
use crate::storage::Env;
use crate::tasks::{TaskFolder, TasksDir};

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> Result<()> {
    let env = Env::from_process();
    let ctx = Ctx {
        tasks: TasksDir::new(env.tasks_dir.clone()),
        env,
        out: Output::new(cli.json),
        json: cli.json,
    };
    if let Some(url) = cli.remote.as_deref().filter(|u| !u.trim().is_empty()) {
        return crate::remote::run(&ctx, url, cli.command).await;
    }
    match cli.command {
        Command::Init => init::run(&ctx).await,
        Command::CreateTask(args) => create_task::run(&ctx, args).await,
        Command::List => list::run(&ctx).await,
        Command::Describe { name } => describe::run(&ctx, &name).await,
        Command::Delete { name, force } => delete::run(&ctx, &name, force).await,
        Command::Config { action } => config::run(&ctx, action).await,
        Command::SyncTasks(args) => sync_tasks::run(&ctx, args).await,
        Command::Migrate { adaptor } => migrate::run(&ctx, adaptor.as_deref()).await,
        Command::Run(args) => run::run(&ctx, args).await,
        Command::Resume(args) => control::resume(&ctx, args).await,
        Command::Signal {
            run,
            event,
            payload,
        } => control::signal(&ctx, &run, &event, payload.as_deref()).await,
        Command::Cancel { run, grace } => control::cancel(&ctx, &run, &grace).await,
        Command::Kill { run } => control::kill(&ctx, &run).await,
        Command::Rerun(args) => control::rerun(&ctx, args).await,
        Command::Show(args) => inspect::show(&ctx, args).await,
        Command::History { task, limit } => inspect::history(&ctx, &task, limit).await,
        Command::Worker {
            concurrency, grace, ..
        } => worker::worker(&ctx, concurrency, &grace).await,
        Command::Serve {
            bind,
            concurrency,
            no_worker,
            token_file,
            grace,
        } => {
            let args = crate::serve::ServeArgs {
                bind,
                concurrency,
                no_worker,
                token_file,
                grace,
            };
            crate::serve::serve(&ctx, args).await
        }
        Command::Prune { older_than } => worker::prune(&ctx, &older_than).await,
        Command::Vm { action } => vm::run(&ctx, action).await,
        Command::Graph(args) => graph::run(&ctx, args).await,
        Command::Fsm(args) => fsm::run(&ctx, args).await,
        Command::Machine(args) => {
            let json = ctx.json;
            tokio::task::spawn_blocking(move || crate::machine::run(args, json))
                .await
                .map_err(|e| anyhow::anyhow!("the machine command panicked: {e}"))?
        }
    }
}

/// How a task folder relates to the latest stored version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyncState {
    /// The folder's content is the latest stored version.
    InSync,
    /// The folder differs from the latest stored version.
    Modified,
    /// A folder exists, no version is stored.
    NotStored,
    /// A version is stored, there is no folder.
    StoredOnly,
    /// The folder has no code.js, so it cannot be stored.
    Incomplete,
}

impl SyncState {
    /// For text output.
    pub fn label(self) -> &'static str {
        match self {
            SyncState::InSync => "in sync",
            SyncState::Modified => "modified",
            SyncState::NotStored => "not stored",
            SyncState::StoredOnly => "stored only",
            SyncState::Incomplete => "no code.js",
        }
    }

    /// Compares a folder (if any) with the latest stored version's hash (if any).
    pub fn of(folder: Option<&TaskFolder>, stored_hash: Option<&str>) -> Self {
        match (folder, stored_hash) {
            (None, _) => SyncState::StoredOnly,
            (Some(f), hash) => match (f.to_new_version(), hash) {
                (Err(_), _) => SyncState::Incomplete,
                (Ok(_), None) => SyncState::NotStored,
                (Ok(v), Some(h)) if v.content_hash() == h => SyncState::InSync,
                (Ok(_), Some(_)) => SyncState::Modified,
            },
        }
    }
}

/// The latest stored version of a task, `None` when the storage has none.
pub async fn latest_version(
    adapter: &dyn StorageAdapter,
    name: &TaskName,
) -> Result<Option<sequential_adaptor::TaskVersion>> {
    match adapter.get_task_version(name, VersionSel::Latest).await {
        Ok(v) => Ok(Some(v)),
        Err(sequential_adaptor::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
