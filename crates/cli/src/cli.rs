//! The command-line grammar (clap derive); each subcommand's behaviour lives in `commands/`.

use clap::{Args, Parser, Subcommand, ValueEnum};

const ROOT_AFTER_HELP: &str = "\
Examples:
  sequential-ecosystem init
  sequential-ecosystem create-task hello --inputs name --description \"Greets someone\"
  sequential-ecosystem list --json
  DATABASE_URL=sqlite:./sequential.db sequential-ecosystem sync-tasks
  sequential-ecosystem run order-flow --verbose
  sequential-ecosystem run approval --input '{\"item\": \"laptop\"}' --json
  sequential-ecosystem history order-flow
  sequential-ecosystem machine run \"npm install\"     # also the binary `sequential-machine`

Storage: DATABASE_URL (folder:PATH or a plain path, sqlite:PATH or a path ending in .db,
.sqlite or .sqlite3, sqlite::memory:,
postgres://USER@HOST/DB — alias SUPABASE_DB_URL; see `migrate --help`) wins over
\"adaptor\" in .sequentialrc.json, which wins over folder storage under SEQUENTIAL_TASKS_DIR
(default ./tasks). Runs: TASK_TIMEOUT (ms a run may be active; waits do not count),
TASK_FETCH_TIMEOUT (ms per fetch attempt, default 300000), TASK_MAX_RETRIES (default 3),
TASK_CPU_SLICE_MS (JavaScript time between host calls, default 1000); each also engine.<name>
in .sequentialrc.json. A .env file in the working directory is read (set variables win).
Logs: RUST_LOG=debug or DEBUG=1 (stderr). Progress: on a terminal only (NO_PROGRESS=1: off).

Exit codes: 0 ok, 1 a run failed, 2 usage or configuration error, 3 a run is waiting or paused.";

/// Durable JavaScript tasks: scaffold and store tasks, run them, inspect and control runs.
#[derive(Debug, Parser)]
#[command(name = "sequential-ecosystem", version, about, after_help = ROOT_AFTER_HELP)]
pub struct Cli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    /// Send run, resume, signal, cancel, kill, rerun, show, history and list to the host API
    /// at URL (`sequential-ecosystem serve`) instead of the configured storage; the token, if
    /// the server needs one, comes from SEQUENTIAL_API_TOKEN.
    #[arg(long, global = true, value_name = "URL", env = "SEQUENTIAL_REMOTE")]
    pub remote: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
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
  sequential-ecosystem config set engine.timeout 600000     # TASK_TIMEOUT
  sequential-ecosystem config set defaults.userId john      # input userId when a run omits it
  sequential-ecosystem config get engine.timeout")]
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
  sequential-ecosystem sync-tasks --adaptor postgres://postgres@127.0.0.1:5432/app --runs

Identical content is stored once: running it twice creates nothing new and says so.
--adaptor NAME|URL: `folder` (the folder default), `sqlite` (DATABASE_URL if it is SQLite,
else sqlite:./sequential.db), or any storage URL.
--runs (PostgreSQL targets): also copy the runs of the configured storage, with their journals
and signals, keeping their ids; a run copied before is copied again only if it changed.")]
    SyncTasks(SyncTasksArgs),

    /// Create or upgrade the storage's schema (PostgreSQL tables; folder and SQLite storage are
    /// brought up to date whenever they are opened).
    #[command(after_help = "\
Examples:
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/app sequential-ecosystem migrate
  sequential-ecosystem migrate --adaptor 'postgres://app@db.internal/app?schema=jobs' --json

Safe to run from many processes at once: each step is applied once, under an advisory lock.
Commands that write (run, worker, sync-tasks…) migrate too; commands that only read never
create anything and ask for `migrate` on an empty database. A schema written by a newer
sequential-ecosystem is refused and left untouched.")]
    Migrate {
        /// Storage to migrate: a URL or `postgres` (DATABASE_URL's); default: the configured storage.
        #[arg(long, value_name = "NAME|URL")]
        adaptor: Option<String>,
    },

    /// Run a task: store its folder as a task version, start a run and drive it here until it
    /// ends, waits or pauses.
    #[command(after_help = "\
Examples:
  sequential-ecosystem run order-flow --verbose
  sequential-ecosystem run order-flow --input '{\"customerId\": 7}' --json
  sequential-ecosystem run order-flow --input @input.json --save=result.json
  sequential-ecosystem run approval --detach          # prints the queued run's id
  sequential-ecosystem run nap                        # keeps going through timers due within 60s
  sequential-ecosystem run nap --wait 0               # exit 3 at the first wait
  sequential-ecosystem run approval --wait 10m        # …and waits up to 10m for `signal`
  sequential-ecosystem run order-flow --dry-run       # compile and check; run nothing

--input: JSON, or @FILE; default {}. Inputs declared in config.json must be present (or have a
\"default\", or a defaults.<input> in .sequentialrc.json). --verbose prints each journal record on stderr as it is written. --save writes the
run (status, output or error, journal) as JSON to FILE (default ./<task>-<run>.json).
Exit codes: 0 succeeded (the output is printed), 1 failed or cancelled, 2 usage or configuration
error, 3 waiting or paused (stderr says for what and how to continue).")]
    Run(RunArgs),

    /// Continue a waiting, queued or (with --retry) paused run here until it ends, waits or pauses.
    #[command(after_help = "\
Examples:
  sequential-ecosystem resume 0190c3e2-7a4b-7c00-8000-000000000000
  sequential-ecosystem resume 0190c3e2-7a4b-7c00-8000-000000000000 --retry   # a paused run
  sequential-ecosystem resume 0190c3e2-7a4b-7c00-8000-000000000000 --wait 1m

Exit codes as for `run`. A finished run cannot be resumed (exit 2): use `rerun`.")]
    Resume(ResumeArgs),

    /// Deliver an event to a run (`ctx.waitForEvent(name)` receives its payload).
    #[command(after_help = "\
Examples:
  sequential-ecosystem signal 0190c3e2-7a4b-7c00-8000-000000000000 approved '{\"by\": \"ann\"}'
  sequential-ecosystem signal 0190c3e2-7a4b-7c00-8000-000000000000 approved @decision.json

The event is stored before this command returns; `resume` (or a worker) continues the run.
Events sent before the run waits for them are kept, in order.")]
    Signal {
        /// The run id.
        run: String,
        /// The event name.
        event: String,
        /// The payload: JSON, or @FILE (default null).
        payload: Option<String>,
    },

    /// Cancel a run (and its child runs): a run being driven is asked to stop, and killed after
    /// the grace period.
    #[command(after_help = "\
Examples:
  sequential-ecosystem cancel 0190c3e2-7a4b-7c00-8000-000000000000
  sequential-ecosystem cancel 0190c3e2-7a4b-7c00-8000-000000000000 --grace 30s")]
    Cancel {
        /// The run id.
        run: String,
        /// How long a worker driving the run gets to stop (250ms, 2s, 5m …).
        #[arg(long, value_name = "DUR", default_value = "10s")]
        grace: String,
    },

    /// End a run (and its child runs) as cancelled at once, whoever is driving it.
    #[command(
        after_help = "Example:\n  sequential-ecosystem kill 0190c3e2-7a4b-7c00-8000-000000000000"
    )]
    Kill {
        /// The run id.
        run: String,
    },

    /// Start a new run of the same task version and input whose journal copies the first N
    /// records of another run, and drive it (records after N are performed again).
    #[command(after_help = "\
Examples:
  sequential-ecosystem rerun 0190c3e2-7a4b-7c00-8000-000000000000 --from-seq 0    # from scratch
  sequential-ecosystem rerun 0190c3e2-7a4b-7c00-8000-000000000000 --from-seq 4 --verbose
  sequential-ecosystem rerun 0190c3e2-7a4b-7c00-8000-000000000000 --redrive       # graph run: from the state that failed
  sequential-ecosystem rerun 0190c3e2-7a4b-7c00-8000-000000000000 --from-state charge

`show <run> --journal` lists the seqs (and a graph run's states). A graph run is cut between
transitions, never inside one. Exit codes as for `run`.")]
    Rerun(RerunArgs),

    /// Show a run: status, input, output or error, what it waits for; with --journal every record.
    #[command(after_help = "\
Examples:
  sequential-ecosystem show 0190c3e2-7a4b-7c00-8000-000000000000
  sequential-ecosystem show order-flow 0190c3e2-7a4b-7c00-8000-000000000000 --journal
  sequential-ecosystem show 0190c3e2-7a4b-7c00-8000-000000000000 --follow   # until it settles")]
    Show(ShowArgs),

    /// List a task's runs, newest first.
    #[command(after_help = "\
Examples:
  sequential-ecosystem history order-flow
  sequential-ecosystem history order-flow --limit 5 --json")]
    History {
        /// The task name.
        task: String,
        /// At most this many runs.
        #[arg(long, value_name = "N", default_value_t = 20)]
        limit: usize,
    },

    /// Claim and drive runs from the configured storage until Ctrl-C or SIGTERM. Several workers
    /// (processes) share one store through leases.
    #[command(after_help = "\
Examples:
  sequential-ecosystem worker
  DATABASE_URL=sqlite:./sequential.db sequential-ecosystem worker --concurrency 32

The first Ctrl-C (or SIGTERM) stops claiming and lets the steps in flight finish (at most
--grace), then releases the runs still in hand; a second one releases them at once. Either way
another worker continues those runs immediately, not after their leases expire.

On Linux the worker's threads run under SCHED_BATCH (--scheduling batch): the same priority and
share of the CPU, but a thread handed work does not preempt the one that handed it over, which
saves a switch at every step (9% less CPU per run in the engine benchmark). The thread that
frees finished runs' JavaScript contexts runs under SCHED_IDLE then: its work fills the moments
the cores would idle while every run waits for a commit or a response (about 5% more runs per
second). --scheduling normal leaves every thread under the default policy.")]
    Worker {
        /// Runs driven at once.
        #[arg(long, value_name = "N", default_value_t = 16)]
        concurrency: usize,
        /// How long a stopping worker lets the steps in flight finish (250ms, 2s, 1m).
        #[arg(long, value_name = "DUR", default_value = "10s")]
        grace: String,
        /// Linux scheduling policy of the worker's threads (ignored elsewhere).
        #[arg(long, value_enum, value_name = "POLICY", default_value_t = Scheduling::Batch)]
        scheduling: Scheduling,
    },

    /// Serve the host API (HTTP, `/api/v1`) over the configured storage, with an embedded worker.
    #[command(after_help = "\
Examples:
  sequential-ecosystem serve                                  # http://127.0.0.1:8080/api/v1
  sequential-ecosystem serve --bind 127.0.0.1:0               # any free port (printed on stdout)
  SEQUENTIAL_API_TOKEN=$(openssl rand -hex 32) sequential-ecosystem serve --bind 0.0.0.0:8080
  curl -s localhost:8080/api/v1/tasks/hello/runs -H 'content-type: application/json' \\
       -d '{\"input\": {\"name\": \"Ada\"}}'

The first line on stdout is `listening on http://ADDR`. Binding anything but loopback needs a
token (SEQUENTIAL_API_TOKEN or --token-file): every request then carries
`Authorization: Bearer <token>`. SIGTERM or Ctrl-C stops accepting requests and lets the steps
in flight finish (--grace); a second signal releases the runs in hand at once. The API is
described in docs/host-api.md.")]
    Serve {
        /// Address to listen on (`127.0.0.1:0`: any free port).
        #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
        bind: String,
        /// Runs the embedded worker drives at once.
        #[arg(long, value_name = "N", default_value_t = 16)]
        concurrency: usize,
        /// Serve the API only; runs are driven by `worker` processes elsewhere.
        #[arg(long)]
        no_worker: bool,
        /// A file whose first line is the API token (instead of SEQUENTIAL_API_TOKEN).
        #[arg(long, value_name = "FILE")]
        token_file: Option<std::path::PathBuf>,
        /// How long a stopping server lets the steps in flight finish (250ms, 2s, 1m).
        #[arg(long, value_name = "DUR", default_value = "10s")]
        grace: String,
    },

    /// Delete finished runs (succeeded, failed, cancelled) that ended before a cut-off.
    #[command(after_help = "\
Examples:
  sequential-ecosystem prune                   # runs that ended more than 30 days ago
  sequential-ecosystem prune --older-than 12h --json")]
    Prune {
        /// Age of the runs to delete (250ms, 2s, 5m, 1h, 7d).
        #[arg(long, value_name = "DUR", default_value = "30d")]
        older_than: String,
    },

    /// sequential-flow's external mode: run JS until its first fetch, hand the request out
    /// (you perform it), resume with the response; tasks are kept in a task store with a TTL.
    #[command(after_help = "\
Examples:
  sequential-ecosystem vm execute --code task.js --id t1     # paused: prints fetchRequest
  sequential-ecosystem vm resume --task t1 --response '{\"data\": {\"id\": 1, \"name\": \"Alice\"}}'
  sequential-ecosystem vm get t1
  sequential-ecosystem vm list
  sequential-ecosystem vm delete t1

The task store is .sequential-flow.db in the working directory unless --store or
SEQUENTIAL_FLOW_STORE names another (a folder, sqlite:, postgres://, redis://, memory:).
Tasks expire after their TTL (2h unless --ttl says otherwise). See docs/sequential-flow.md.")]
    Vm {
        #[command(subcommand)]
        action: VmAction,
    },

    /// The layer store (also the binary `sequential-machine`): run commands in a work dir,
    /// capture their changes as content-addressed layers, cache hits, checkout, tags.
    #[command(after_help = "\
Examples:
  sequential-ecosystem machine run \"npm install\"      # captures the changes as a layer
  sequential-ecosystem machine run \"npm install\"      # same command, same state: cache hit
  sequential-ecosystem machine history
  sequential-ecosystem machine checkout HEAD~1 --json

`sequential-machine --help` describes refs, the store location (SEQUENTIAL_MACHINE_DIR,
SEQUENTIAL_MACHINE_WORK) and exit codes.")]
    Machine(crate::machine::MachineArgs),

    /// Graph tasks (a graph.json beside code.js): check a graph, or draw it (with a run's
    /// visited and current states marked).
    #[command(after_help = "\
Examples:
  sequential-ecosystem graph check order-graph
  sequential-ecosystem graph show order-graph --format mermaid
  sequential-ecosystem graph show order-graph --run 0190c3e2-7a4b-7c00-8000-000000000000

`run`, `show --journal`, `signal`, `cancel`, `rerun` and `worker` work for graph tasks as for
any other. docs/graphs.md describes the state types.")]
    Graph(crate::commands::graph::GraphArgs),

    /// Append-only state machines (coremachine done right): create a log with its definition,
    /// send events, read the state, the accepted events and the history, fork, follow.
    #[command(after_help = "\
Examples:
  sequential-ecosystem fsm init cube.ndjson --definition cube.js
  sequential-ecosystem fsm send cube.ndjson START 1
  sequential-ecosystem fsm state cube.ndjson --json
  sequential-ecosystem fsm follow cube.ndjson --after 0     # in another terminal

A log is a file path or store:NAME (in the configured storage). docs/fsm.md walks through
coremachine's Quick Start in JavaScript, JSON and Rust.")]
    Fsm(crate::commands::fsm::FsmArgs),
}

/// `run` arguments.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The task name (a folder under the tasks directory, or a stored task).
    pub task: String,
    /// The run input: JSON, or @FILE (default {}).
    #[arg(long, value_name = "JSON|@FILE")]
    pub input: Option<String>,
    /// Same key and input → the existing run (no second run is started).
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Only create the queued run and print its id (a worker or `resume` drives it).
    #[arg(long, conflicts_with_all = ["wait", "dry_run", "save"])]
    pub detach: bool,
    /// Keep going for up to DUR (250ms, 2s, 5m, 1h, 7d): through timers that fire within it,
    /// and waiting for events (a `signal` from elsewhere) and child runs. Without it: through
    /// timers due within 60s only; --wait 0 stops (exit 3) at the first wait.
    #[arg(long, value_name = "DUR")]
    pub wait: Option<String>,
    /// Compile the code (a syntax error: exit 2 with file:line:column), check the config, graph
    /// and input, and print what would run; run, store and start nothing.
    #[arg(long, conflicts_with_all = ["wait", "save"])]
    pub dry_run: bool,
    /// Write the run (status, output or error, journal) as JSON to FILE (default
    /// ./<task>-<run>.json).
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true, default_missing_value = "")]
    pub save: Option<String>,
    /// Print each journal record on stderr as it is written (with --json: add the journal).
    #[arg(long, short)]
    pub verbose: bool,
}

/// `resume` arguments.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// The run id.
    pub run: String,
    /// Also continue a paused run: perform the call whose retries were spent again.
    #[arg(long)]
    pub retry: bool,
    /// Keep going for up to DUR through timers, events and child runs.
    #[arg(long, value_name = "DUR")]
    pub wait: Option<String>,
    /// Print each new journal record on stderr (with --json: add the journal).
    #[arg(long, short)]
    pub verbose: bool,
}

/// `rerun` arguments.
#[derive(Debug, Args)]
pub struct RerunArgs {
    /// The run to copy.
    pub run: String,
    /// How many journal records to keep (0 = start over).
    #[arg(long, value_name = "N", required_unless_present_any = ["from_state", "redrive"], conflicts_with_all = ["from_state", "redrive"])]
    pub from_seq: Option<u64>,
    /// Graph runs: keep the journal up to the last entry of this state (its path, as
    /// `show --journal` prints it); the new run enters it again with fresh retries.
    #[arg(long, value_name = "STATE", conflicts_with = "redrive")]
    pub from_state: Option<String>,
    /// Graph runs: copy a failed run up to the entry of the state that failed, and run it
    /// again from there with fresh retries (the failed run is left as it is; to continue it
    /// under its own id instead, `POST /api/v1/runs/ID/_redrive` on `serve`).
    #[arg(long)]
    pub redrive: bool,
    /// Only create the new run and print its id.
    #[arg(long, conflicts_with = "wait")]
    pub detach: bool,
    /// Keep going for up to DUR through timers, events and child runs.
    #[arg(long, value_name = "DUR")]
    pub wait: Option<String>,
    /// Print each journal record on stderr (with --json: add the journal).
    #[arg(long, short)]
    pub verbose: bool,
}

/// `show` arguments.
#[derive(Debug, Args)]
pub struct ShowArgs {
    /// `<run>` or `<task> <run>`.
    #[arg(value_name = "[TASK] RUN", num_args = 1..=2, required = true)]
    pub args: Vec<String>,
    /// Also print every journal record.
    #[arg(long)]
    pub journal: bool,
    /// Print records as they are written until the run ends, pauses or waits for an event
    /// (through sleeps it keeps following while a worker drives the run).
    #[arg(long)]
    pub follow: bool,
}

/// `vm` subcommands.
#[derive(Debug, Subcommand)]
pub enum VmAction {
    /// Run code until it completes, fails or needs a fetch; saves the task in the task store
    /// and prints it as one JSON object.
    #[command(after_help = "\
Examples:
  sequential-ecosystem vm execute --code task.js --id task-1 --input '{\"userId\": 1}'
  echo 'fetch(\"https://api.example.com/x\").id' | sequential-ecosystem vm execute --code -
  sequential-ecosystem vm execute --code task.js --base-url https://api.example.com --ttl 30m
  sequential-ecosystem vm execute --code task.js --store memory:     # keep nothing

Prints {id, name?, code, status: paused|completed|error, fetchRequest?, pending?, vmState?,
result?, error?, errorInfo?, ttl, createdAt, updatedAt, expiresAt} (times in Unix ms).
Exit 0 for paused and completed, 1 for error, 2 for bad input or an unreachable store.")]
    Execute {
        /// The JavaScript file, or - for stdin.
        #[arg(long, value_name = "FILE|-")]
        code: String,
        /// The input: JSON or @FILE (default null).
        #[arg(long, value_name = "JSON|@FILE")]
        input: Option<String>,
        /// The task id (`id`, later `taskId`); a UUID v7 is generated when left out.
        #[arg(long)]
        id: Option<String>,
        /// The task's name, kept with it and echoed back.
        #[arg(long)]
        name: Option<String>,
        /// Resolves relative fetch URLs in `fetchRequest.url` (without it they are handed out
        /// as the code wrote them).
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
        #[command(flatten)]
        store: VmStoreArgs,
        /// How long the saved task lives (250ms, 90s, 30m, 2h, 7d; default 2h).
        #[arg(long, value_name = "DUR")]
        ttl: Option<String>,
    },
    /// Continue a paused task: `--task ID --response JSON` loads it from the task store, or
    /// a request {taskId, vmState?, originalCode?, fetchResponse, responses?} on stdin.
    #[command(after_help = "\
Examples:
  sequential-ecosystem vm resume --task task-1 --response '{\"data\": {\"id\": 1, \"name\": \"Alice\"}}'
  sequential-ecosystem vm resume --task task-1 --response @response.json --ttl 10m
  sequential-ecosystem vm resume < resume-request.json    # {taskId, vmState, originalCode, fetchResponse}

--response is the fetch's answer: {data, status?, statusText?, headers?} (status 200 when
left out). The stored task is replaced by the new state; its TTL starts again (the same
length unless --ttl says otherwise). Exit 0 for paused and completed, 1 for error, 2 for bad
input (unknown, expired or deleted task, edited vmState, another task's vmState).")]
    Resume {
        /// The stored task to continue (instead of a request on stdin).
        #[arg(long, value_name = "ID")]
        task: Option<String>,
        /// The paused fetch's response, with --task: JSON or @FILE.
        #[arg(long, value_name = "JSON|@FILE", requires = "task")]
        response: Option<String>,
        #[command(flatten)]
        store: VmStoreArgs,
        /// How long the saved task lives from now (default: the TTL it was saved with).
        #[arg(long, value_name = "DUR")]
        ttl: Option<String>,
    },
    /// Show one stored task (status, pending fetch, result or error, times).
    #[command(after_help = "\
Examples:
  sequential-ecosystem vm get task-1
  sequential-ecosystem vm get task-1 --json | jq .vmState

Exit 2 when the task is unknown, expired (says when) or deleted.")]
    Get {
        /// The task id.
        id: String,
        #[command(flatten)]
        store: VmStoreArgs,
    },
    /// Delete a stored task; a later resume of it says it was deleted.
    #[command(after_help = "\
Example:
  sequential-ecosystem vm delete task-1

Exit 2 when no live task has that id.")]
    Delete {
        /// The task id.
        id: String,
        #[command(flatten)]
        store: VmStoreArgs,
    },
    /// List the live stored tasks, most recently updated first (expired ones are purged).
    #[command(after_help = "\
Examples:
  sequential-ecosystem vm list
  sequential-ecosystem vm list --store redis://127.0.0.1:6379 --json")]
    List {
        #[command(flatten)]
        store: VmStoreArgs,
        /// At most this many tasks.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
}

/// `--store` of the `vm` commands.
#[derive(Debug, Args)]
pub struct VmStoreArgs {
    /// The task store: .sequential-flow.db (SQLite in the working directory, the default),
    /// a folder path, sqlite:PATH or any *.db path, postgres://USER@HOST/DB[?schema=NAME],
    /// redis://HOST[:PORT][/DB], or memory: (kept only while the command runs).
    #[arg(
        long,
        value_name = "URL",
        env = "SEQUENTIAL_FLOW_STORE",
        default_value = ".sequential-flow.db"
    )]
    pub store: String,
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
    #[command(after_help = "Example:\n  sequential-ecosystem config get engine.timeout")]
    Get {
        /// Dotted key, e.g. `engine.timeout` or `defaults.userId`.
        key: String,
    },
    /// Set one value (parsed as JSON when it parses, else stored as a string).
    #[command(after_help = "\
Examples:
  sequential-ecosystem config set adaptor sqlite:./sequential.db
  sequential-ecosystem config set engine.maxRetries 5
  sequential-ecosystem config set defaults.userId john
  sequential-ecosystem config set owner '{\"team\": \"payments\"}'")]
    Set {
        /// Dotted key, e.g. `engine.timeout` or `defaults.userId`.
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
    /// Also copy the configured storage's runs, journals and signals into the --adaptor
    /// storage (PostgreSQL), keeping their ids.
    #[arg(long, requires = "adaptor")]
    pub runs: bool,
}

/// The scheduling policy of a worker's threads (`worker --scheduling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Scheduling {
    /// SCHED_BATCH: a woken thread does not preempt the running one (and the context janitor
    /// works in idle time, SCHED_IDLE).
    Batch,
    /// The system's default policy (SCHED_OTHER).
    Normal,
}
