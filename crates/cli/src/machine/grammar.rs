//! The clap grammar of the machine commands (shared by both binaries).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const MACHINE_AFTER_HELP: &str = "\
Examples:
  sequential-machine run \"npm install\"          # runs it, captures the changes as a layer
  sequential-machine run \"npm install\"          # same instruction, same state: cache hit
  sequential-machine history
  sequential-machine checkout HEAD~1
  sequential-machine status --json
  sequential-machine cat HEAD package.json

Refs: HEAD, HEAD~n, a tag, a full state id (64 hex) or a unique prefix of at least 7 chars.
Store: --dir, else SEQUENTIAL_MACHINE_DIR, else ./.sequential-machine. Work dir: --work, else
SEQUENTIAL_MACHINE_WORK, else <dir>/work. The same commands are `sequential-ecosystem machine …`.
Exit codes: 0 ok; run/exec/batch: the command's own exit code when it fails; 1 verify found
damage, an I/O error or a damaged object; 2 usage error, unknown ref, uncommitted changes, a
directory that is not a store.";

/// The `sequential-machine` binary's grammar.
#[derive(Debug, Parser)]
#[command(
    name = "sequential-machine",
    version,
    about = "Run commands in a work dir and capture their changes as content-addressed layers; the same command from the same state is a cache hit",
    after_help = MACHINE_AFTER_HELP
)]
pub struct MachineCli {
    /// Print machine-readable JSON on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,

    #[command(flatten)]
    pub args: MachineArgs,
}

/// Store location and the subcommand (shared by both binaries).
#[derive(Debug, Args)]
pub struct MachineArgs {
    /// The store directory [env: SEQUENTIAL_MACHINE_DIR; default: .sequential-machine].
    #[arg(long, global = true, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The work directory [env: SEQUENTIAL_MACHINE_WORK; default: <dir>/work].
    #[arg(long, global = true, value_name = "DIR")]
    pub work: Option<PathBuf>,

    #[command(subcommand)]
    pub cmd: MachineCmd,
}

/// The layer store's commands.
#[derive(Debug, Subcommand)]
pub enum MachineCmd {
    /// Run a command with `sh -c` in the work dir and capture what it changed as a layer (or
    /// reuse the cached layer of the same command on the same state).
    #[command(after_help = "\
Examples:
  sequential-machine run \"echo hello > greeting.txt\"
  sequential-machine run \"make build\" --json        # {hash, short, cached, instruction, parent}
  sequential-machine run \"make test\" --capture-failed

The command's exit code is passed through; a failing command creates no layer (unless
--capture-failed). Uncommitted changes in the work dir are captured into the layer too.")]
    Run {
        /// The shell command.
        instruction: String,
        /// Capture a layer even when the command fails (the exit code is still passed through).
        #[arg(long)]
        capture_failed: bool,
        /// Extra environment variable for the command (part of the cache key); repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
    },

    /// Run a command in the work dir without capturing anything.
    #[command(after_help = "\
Examples:
  sequential-machine exec \"ls -la\"
  sequential-machine exec \"cat out/log.txt\" --json    # {code, stdout, stderr}

The command's exit code is passed through.")]
    Exec {
        /// The shell command.
        instruction: String,
        /// Extra environment variable for the command; repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
    },

    /// `run` each command in order; stop at the first failure.
    #[command(after_help = "\
Examples:
  sequential-machine batch \"mkdir -p src\" \"echo 'fn main() {}' > src/main.rs\"
  sequential-machine batch -f steps.txt        # one command per line; # comments, blank lines skipped

Exit code: 0, or the exit code of the failing command (the steps before it are kept).")]
    Batch {
        /// The commands.
        #[arg(required_unless_present = "file", conflicts_with = "file")]
        instructions: Vec<String>,
        /// Read the commands from FILE (one per line), or - for stdin.
        #[arg(long, short = 'f', value_name = "FILE|-")]
        file: Option<String>,
        /// Extra environment variable for the commands (part of the cache key); repeatable.
        #[arg(long = "env", value_name = "KEY=VALUE")]
        env: Vec<String>,
    },

    /// Uncommitted changes of the work dir vs head.
    #[command(after_help = "\
Examples:
  sequential-machine status
  sequential-machine status --json     # {added, modified, deleted, clean}")]
    Status,

    /// Layers from head to the root.
    #[command(after_help = "\
Examples:
  sequential-machine history
  sequential-machine history --json    # [{hash, short, instruction, parent, parentShort, time}]")]
    History,

    /// Print the current state id.
    #[command(after_help = "\
Examples:
  sequential-machine head
  sequential-machine head --json       # {hash, short}; null for an empty store")]
    Head,

    /// Make the work dir equal to a state and move head there (only differing paths are written).
    #[command(after_help = "\
Examples:
  sequential-machine checkout HEAD~2
  sequential-machine checkout 1a2b3c4d5e6f
  sequential-machine checkout release --force    # discard uncommitted changes

Refuses (exit 2, listing them) when the work dir has uncommitted changes, unless --force.")]
    Checkout {
        /// The state: HEAD, HEAD~n, a tag, a state id or a unique prefix (>= 7 chars).
        #[arg(value_name = "REF")]
        target: String,
        /// Discard uncommitted changes and untracked files.
        #[arg(long)]
        force: bool,
    },

    /// Paths that differ between two states (from manifests; nothing is extracted).
    #[command(after_help = "\
Examples:
  sequential-machine diff HEAD~1              # HEAD~1 → HEAD
  sequential-machine diff v1 v2 --json        # {added, modified, deleted}")]
    Diff {
        /// The first state.
        a: String,
        /// The second state (default HEAD).
        b: Option<String>,
    },

    /// Name a state (default HEAD).
    #[command(after_help = "\
Examples:
  sequential-machine tag deps-installed
  sequential-machine tag v1 1a2b3c4d5e6f

A tag name may not look like a hash prefix (7+ hex chars).")]
    Tag {
        /// The tag name.
        name: String,
        /// The state (default HEAD).
        #[arg(value_name = "REF")]
        target: Option<String>,
    },

    /// List the tags (checkpoints as checkpoint/<name>).
    #[command(after_help = "\
Examples:
  sequential-machine tags
  sequential-machine tags --json      # [{name, hash, short}]")]
    Tags,

    /// Remove a tag.
    #[command(after_help = "Example:\n  sequential-machine untag deps-installed")]
    Untag {
        /// The tag name.
        name: String,
    },

    /// Details of a state and its layer.
    #[command(after_help = "\
Examples:
  sequential-machine inspect HEAD
  sequential-machine inspect v1 --json   # {hash, short, instruction, parent, time, size, files, compressed_size, layer}")]
    Inspect {
        /// The state.
        #[arg(value_name = "REF")]
        target: String,
    },

    /// Rematerialize the work dir from the layers of head (recreates it when deleted).
    #[command(after_help = "\
Examples:
  rm -rf .sequential-machine/work && sequential-machine rebuild
  sequential-machine rebuild --json     # {hash, short, written, removed}")]
    Rebuild,

    /// Forget every state, tag, checkpoint and cached layer; with --hard also empty the work dir.
    #[command(after_help = "\
Examples:
  sequential-machine reset            # asks for confirmation on a terminal
  sequential-machine reset --hard --yes

Without a terminal on stdin it does not ask.")]
    Reset {
        /// Also empty the work dir.
        #[arg(long)]
        hard: bool,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },

    /// Tag head as a checkpoint (the tag checkpoint/<name>).
    #[command(after_help = "Example:\n  sequential-machine checkpoint before-upgrade")]
    Checkpoint {
        /// The checkpoint name.
        name: String,
    },

    /// List the checkpoints.
    #[command(after_help = "Example:\n  sequential-machine checkpoints --json")]
    Checkpoints,

    /// Check out a checkpoint.
    #[command(after_help = "\
Examples:
  sequential-machine restore before-upgrade
  sequential-machine restore before-upgrade --force")]
    Restore {
        /// The checkpoint name.
        name: String,
        /// Discard uncommitted changes.
        #[arg(long)]
        force: bool,
    },

    /// Remove objects and states unreachable from head, tags, checkpoints and cache keys.
    #[command(after_help = "Example:\n  sequential-machine gc --json")]
    Gc,

    /// List a directory of any state without checking it out.
    #[command(after_help = "\
Examples:
  sequential-machine ls HEAD
  sequential-machine ls HEAD~1 src --json    # [{name, kind, mode, size, target?, content?}]")]
    Ls {
        /// The state.
        #[arg(value_name = "REF")]
        target: String,
        /// The directory (default: the root).
        #[arg(default_value = "")]
        path: String,
    },

    /// Print a file of any state without checking it out.
    #[command(after_help = "\
Examples:
  sequential-machine cat HEAD greeting.txt
  sequential-machine cat v1 package.json --json    # {ref, path, size, text | base64}")]
    Cat {
        /// The state.
        #[arg(value_name = "REF")]
        target: String,
        /// The file.
        path: String,
    },

    /// Read every state and object and check it against its hash.
    #[command(after_help = "\
Examples:
  sequential-machine verify
  sequential-machine verify --json    # {ok, states, objects, errors, warnings}

Exit 1 when it finds damage (each error names the object or file).")]
    Verify,
}

impl MachineCmd {
    /// Commands that only read: they do not create a missing store.
    pub(super) fn read_only(&self) -> bool {
        matches!(
            self,
            MachineCmd::Status
                | MachineCmd::History
                | MachineCmd::Head
                | MachineCmd::Diff { .. }
                | MachineCmd::Tags
                | MachineCmd::Inspect { .. }
                | MachineCmd::Checkpoints
                | MachineCmd::Ls { .. }
                | MachineCmd::Cat { .. }
                | MachineCmd::Verify
        )
    }
}
