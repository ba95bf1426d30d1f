//! `sequential-ecosystem` and `sequential-machine`: the command lines of sequential-ecosystem —
//! scaffold task folders, store them as task versions, run them durably (in-process or by
//! workers), and inspect and control runs; `sequential-machine <cmd>` (also
//! `sequential-ecosystem machine <cmd>`) keeps a directory's history as content-addressed layers.
//!
//! Invariant: this package is the only place with `anyhow`, a tracing subscriber and stdout.
//! Which storage backends exist and what an unset `DATABASE_URL` means is decided in one
//! function, [`storage::open`]; everything else sees `Arc<dyn StorageAdapter>`.
//!
//! ```text
//! $ sequential-ecosystem init
//! $ sequential-ecosystem create-task hello --inputs name
//! $ sequential-ecosystem sync-tasks
//! hello  created v1
//! $ sequential-ecosystem run hello --input '{"name": "Ann"}' --verbose
//! ```
//!
//! Exit codes: 0 ok, 1 a run failed, 2 usage or configuration error (also every failure of the
//! task-management commands), 3 a run is waiting or paused. `sequential-machine run|exec|batch`
//! pass the command's exit code through.
#![warn(missing_docs)]

mod cli;
mod commands;
mod ctx;
mod error;
mod files;
mod machine;
mod machine_tool;
mod output;
mod progress;
mod rc;
mod remote;
mod runs;
mod serve;
mod signals;
mod storage;
mod tasks;
mod time;

pub use machine_tool::MachineTool;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

/// The `sequential-ecosystem` binary: parses the command line, runs the command, returns the
/// exit code.
pub fn main_ecosystem() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        // Usage errors exit 2, `--help` and `--version` exit 0 (clap's convention).
        Err(e) => e.exit(),
    };
    // before anything reads the environment (logging included), while one thread runs
    let dotenv = load_dotenv();
    init_tracing();
    if let Err(err) = dotenv {
        return ExitCode::from(error::report(&err));
    }
    // a worker's threads, the runtime's among them, inherit the policy of this one
    if let cli::Command::Worker {
        scheduling: cli::Scheduling::Batch,
        ..
    } = &cli.command
        && let Err(e) = sequential_tasker_engine::worker_scheduling()
    {
        tracing::warn!(error = %e, "cannot run the worker under SCHED_BATCH; it runs under the default policy");
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(error::EXIT_USAGE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => ExitCode::from(error::report(&err)),
    }
}

/// The `sequential-machine` binary: `sequential-ecosystem machine …` under its own name.
pub fn main_machine() -> ExitCode {
    let cli = match machine::MachineCli::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_tracing();
    match machine::run(cli.args, cli.json) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => ExitCode::from(error::report(&err)),
    }
}

/// The `.env` file of the working directory: each `NAME=value` line sets `NAME` unless the
/// environment already has it (set variables win). No file is not an error; a malformed one
/// is (exit 2, naming the file and line).
fn load_dotenv() -> anyhow::Result<()> {
    let path = std::path::Path::new(".env");
    match dotenvy::from_path(path) {
        Ok(()) => Ok(()),
        Err(dotenvy::Error::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(dotenvy::Error::LineParse(line, at)) => Err(error::user(
            format!(
                "cannot read .env in the working directory: line {:?} is not NAME=value (error at character {})",
                line,
                at + 1
            ),
            "each line of .env is NAME=value, # comment or empty; quote values with spaces",
        )),
        Err(e) => Err(error::user(
            format!("cannot read .env in the working directory: {e}"),
            "each line of .env is NAME=value, # comment or empty; remove or fix the file",
        )),
    }
}

/// Logs go to stderr so stdout stays clean for `--json`. `RUST_LOG` wins; `DEBUG=1` means
/// `debug`; otherwise only warnings.
fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() => EnvFilter::new(spec),
        _ if std::env::var("DEBUG").is_ok_and(|v| v == "1" || v == "true") => {
            EnvFilter::new("debug")
        }
        _ => EnvFilter::new("warn"),
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal() && !sequential_support::env::no_color())
        .with_target(false)
        .init();
}
