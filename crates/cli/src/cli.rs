//! The command-line grammar (clap derive); each subcommand's behaviour lives in `commands/`.

use clap::{Args, Parser, Subcommand};

const ROOT_AFTER_HELP: &str = "\
Examples:
  sequential-ecosystem init
  sequential-ecosystem create-task hello --inputs name --description \"Greets someone\"
  sequential-ecosystem list --json
  DATABASE_URL=sqlite:./sequential.db sequential-ecosystem sync-tasks

Storage: DATABASE_URL (folder:PATH or a plain path, sqlite:PATH, sqlite::memory:) wins over
\"adaptor\" in .sequentialrc.json, which wins over folder storage under SEQUENTIAL_TASKS_DIR
(default ./tasks). Logs: RUST_LOG=debug or DEBUG=1 (stderr).

Exit codes: 0 ok, 1 a run failed, 2 usage or configuration error, 3 a run is waiting.";

/// Durable JavaScript tasks: scaffold, inspect and store task versions.
#[derive(Debug, Parser)]
#[command(name = "sequential-ecosystem", version, about, after_help = ROOT_AFTER_HELP)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands. `run`, `worker`, `vm`, `machine` and `serve` come later.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create `tasks/` and `.sequentialrc.json` in the current directory (idempotent).
    #[command(after_help = "Example:\n  sequential-ecosystem init")]
    Init,

    /// Scaffold a new task folder `tasks/<name>/` with a working example in each file.
    #[command(after_help = "\
Examples:
  sequential-ecosystem create-task hello
  sequential-ecosystem create-task order-flow --with-graph --inputs orderId:number,note \\
      --description \"Charges and notifies\"

Task names: 1-64 characters of ASCII letters, digits, '-' and '_', starting with a letter or
digit. An existing task is never overwritten.")]
    CreateTask(CreateTaskArgs),

    /// List task folders and the version stored for each (if any).
    #[command(
        after_help = "Examples:\n  sequential-ecosystem list\n  sequential-ecosystem list --json"
    )]
    List,

    /// Show one task: files, description, inputs, stored version and whether the folder changed since.
    #[command(after_help = "Example:\n  sequential-ecosystem describe hello --json")]
    Describe {
        /// The task name.
        name: String,
    },

    /// Delete a task from storage (versions and runs) and remove its folder.
    #[command(after_help = "\
Examples:
  sequential-ecosystem delete hello
  sequential-ecosystem delete hello --force   # even with active runs")]
    Delete {
        /// The task name.
        name: String,
        /// Delete even when the task has active (queued, running, waiting…) runs.
        #[arg(long)]
        force: bool,
    },

    /// Read or change `.sequentialrc.json` (dotted keys).
    #[command(after_help = "\
Examples:
  sequential-ecosystem config show
  sequential-ecosystem config set adaptor sqlite:./sequential.db
  sequential-ecosystem config set defaults.timeout 600000
  sequential-ecosystem config get defaults.timeout")]
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },

    /// Store every task folder (or one) as a task version in a storage backend.
    #[command(after_help = "\
Examples:
  sequential-ecosystem sync-tasks
  sequential-ecosystem sync-tasks --adaptor sqlite --task hello
  sequential-ecosystem sync-tasks --adaptor sqlite:/var/lib/seq/db.sqlite --json

Identical content is stored once: running it twice creates nothing new and says so.
--adaptor NAME|URL: `folder` (the folder default), `sqlite` (DATABASE_URL if it is SQLite,
else sqlite:./sequential.db), or any storage URL.")]
    SyncTasks(SyncTasksArgs),
}

/// `create-task` arguments.
#[derive(Debug, Args)]
pub struct CreateTaskArgs {
    /// The task name (becomes the folder name).
    pub name: String,
    /// Also write `graph.json` (an explicit state graph) and per-state handlers in `code.js`.
    #[arg(long)]
    pub with_graph: bool,
    /// Comma-separated input names, each optionally `name:type`
    /// (string, number, integer, boolean, object, array, any).
    #[arg(long, value_name = "a,b:number")]
    pub inputs: Option<String>,
    /// A one-line description, stored in config.json.
    #[arg(long, value_name = "TEXT")]
    pub description: Option<String>,
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print `.sequentialrc.json` and the storage it selects.
    #[command(after_help = "Example:\n  sequential-ecosystem config show --json")]
    Show,
    /// Print one value.
    #[command(after_help = "Example:\n  sequential-ecosystem config get defaults.timeout")]
    Get {
        /// Dotted key, e.g. `defaults.timeout`.
        key: String,
    },
    /// Set one value (parsed as JSON when it parses, else stored as a string).
    #[command(after_help = "\
Examples:
  sequential-ecosystem config set adaptor sqlite:./sequential.db
  sequential-ecosystem config set defaults.maxRetries 5
  sequential-ecosystem config set owner '{\"team\": \"payments\"}'")]
    Set {
        /// Dotted key, e.g. `defaults.timeout`.
        key: String,
        /// The value.
        value: String,
    },
}

/// `sync-tasks` arguments.
#[derive(Debug, Args)]
pub struct SyncTasksArgs {
    /// Target storage: `folder`, `sqlite`, or a URL; default: the configured storage.
    #[arg(long, value_name = "NAME|URL")]
    pub adaptor: Option<String>,
    /// Only this task.
    #[arg(long, value_name = "NAME")]
    pub task: Option<String>,
}
