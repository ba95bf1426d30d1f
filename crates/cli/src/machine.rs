//! `sequential-machine <cmd>` / `sequential-ecosystem machine <cmd>`: the layer store's commands
//! (run a command and capture its changes as a layer, cache hits, checkout, tags, read-only views).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sequential_layer_store::{
    BatchOutcome, CheckoutOptions, CheckoutOutcome, DiffReport, Error as StoreError, ExecOutcome,
    GcReport, HistoryEntry, InspectReport, LsEntry, Output as Streams, Phase,
    Progress as StoreProgress, ResetMode, ResetOutcome, RunOptions, RunOutcome, StatusReport,
    Store, TagInfo, VerifyReport,
};
use serde::Serialize;

use crate::error::{EXIT_RUN_FAILED, Reported, UserError};
use crate::output::{Output, Render, table};

/// Store directory when neither `--dir` nor `SEQUENTIAL_MACHINE_DIR` is given.
pub const DEFAULT_DIR: &str = ".sequential-machine";

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
    fn read_only(&self) -> bool {
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

/// Where the store and the work dir are: flag, else environment, else default.
pub fn locations(dir: Option<PathBuf>, work: Option<PathBuf>) -> (PathBuf, PathBuf) {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let dir = dir
        .or_else(|| env("SEQUENTIAL_MACHINE_DIR"))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DIR));
    let work = work
        .or_else(|| env("SEQUENTIAL_MACHINE_WORK"))
        .unwrap_or_else(|| dir.join("work"));
    (dir, work)
}

/// Runs one machine command (blocking).
pub fn run(args: MachineArgs, json: bool) -> Result<()> {
    let out = Output::new(json);
    let (dir, work) = locations(args.dir, args.work);
    if args.cmd.read_only() && !dir.join("FORMAT").exists() {
        let empty =
            !dir.exists() || std::fs::read_dir(&dir).is_ok_and(|mut rd| rd.next().is_none());
        if empty {
            return Err(UserError::new(format!(
                "no layer store at {}: nothing has been captured yet",
                dir.display()
            ))
            .hint(
                "`sequential-machine run \"<command>\"` creates it; --dir or SEQUENTIAL_MACHINE_DIR choose another store",
            )
            .into());
        }
    }
    if matches!(args.cmd, MachineCmd::Status) && dir.join("FORMAT").exists() && !work.exists() {
        return Err(store_error(StoreError::WorkDirMissing { path: work }));
    }
    let progress = Progress::new();
    let store = Store::open(&dir, &work).map_err(store_error)?;
    let store = match progress.sink() {
        Some(sink) => store.with_progress(sink),
        None => store,
    };
    // As text the command's streams are the terminal's; with --json its output is captured into
    // the JSON document, so stdout stays one document.
    let streams = if json {
        Streams::Capture
    } else {
        Streams::Inherit
    };
    match args.cmd {
        MachineCmd::Run {
            instruction,
            capture_failed,
            env,
        } => {
            let opts = run_options(&env, streams, capture_failed)?;
            let r = store.run(&instruction, &opts);
            progress.finish();
            out.print(&r.map_err(store_error)?)
        }
        MachineCmd::Exec { instruction, env } => {
            let opts = run_options(&env, streams, false)?;
            let r = store.exec(&instruction, &opts).map_err(store_error)?;
            if json {
                out.print(&r)?;
            }
            if r.code != 0 {
                return Err(Reported(exit_byte(r.code)).into());
            }
            Ok(())
        }
        MachineCmd::Batch {
            instructions,
            file,
            env,
        } => {
            let list = match file {
                Some(f) => read_batch_file(&f)?,
                None => instructions,
            };
            let opts = run_options(&env, streams, false)?;
            let r = store.batch(&list, &opts);
            progress.finish();
            let r = r.map_err(store_error)?;
            out.print(&r)?;
            if let Some(f) = &r.failed {
                return Err(UserError::new(format!(
                    "step {} of the batch, {:?}, failed with exit code {}; no layer was created for it",
                    f.index + 1,
                    f.instruction,
                    f.code
                ))
                .hint(format!(
                    "the {} step(s) before it were captured; fix the command and run the batch again (finished steps are cache hits)",
                    r.results.len()
                ))
                .with_code(exit_byte(f.code))
                .into());
            }
            Ok(())
        }
        MachineCmd::Status => out.print(&store.status().map_err(store_error)?),
        MachineCmd::History => out.print(&History(store.history().map_err(store_error)?)),
        MachineCmd::Head => {
            let h = store.head().map_err(store_error)?;
            out.print(&Head {
                hash: h.map(|s| s.hex()),
                short: h.map(|s| s.short()),
            })
        }
        MachineCmd::Checkout { target, force } => {
            let r = store.checkout(&target, CheckoutOptions { force });
            progress.finish();
            out.print(&r.map_err(store_error)?)
        }
        MachineCmd::Diff { a, b } => out.print(&store.diff(&a, b.as_deref()).map_err(store_error)?),
        MachineCmd::Tag { name, target } => {
            out.print(&store.tag(&name, target.as_deref()).map_err(store_error)?)
        }
        MachineCmd::Tags => out.print(&Tags(store.tags().map_err(store_error)?)),
        MachineCmd::Untag { name } => {
            store.untag(&name).map_err(store_error)?;
            out.print(&Untagged { untagged: name })
        }
        MachineCmd::Inspect { target } => out.print(&store.inspect(&target).map_err(store_error)?),
        MachineCmd::Rebuild => {
            let r = store.rebuild();
            progress.finish();
            out.print(&r.map_err(store_error)?)
        }
        MachineCmd::Reset { hard, yes } => {
            if !yes && std::io::stdin().is_terminal() && !confirm(&store, hard)? {
                return Err(UserError::new("reset cancelled; nothing was changed")
                    .hint("--yes skips the question")
                    .into());
            }
            let mode = if hard {
                ResetMode::Hard
            } else {
                ResetMode::Soft
            };
            out.print(&store.reset(mode).map_err(store_error)?)
        }
        MachineCmd::Checkpoint { name } => {
            out.print(&store.checkpoint(&name).map_err(store_error)?)
        }
        MachineCmd::Checkpoints => out.print(&Tags(store.checkpoints().map_err(store_error)?)),
        MachineCmd::Restore { name, force } => {
            let r = store.restore(&name, CheckoutOptions { force });
            progress.finish();
            out.print(&r.map_err(store_error)?)
        }
        MachineCmd::Gc => {
            progress.start("collecting unreachable objects".into());
            let r = store.gc();
            progress.finish();
            out.print(&r.map_err(store_error)?)
        }
        MachineCmd::Ls { target, path } => out.print(&Ls {
            entries: store.ls(&target, &path).map_err(store_error)?,
        }),
        MachineCmd::Cat { target, path } => {
            let bytes = store.cat(&target, &path).map_err(store_error)?;
            if json {
                let (text, base64) = match String::from_utf8(bytes.clone()) {
                    Ok(t) => (Some(t), None),
                    Err(_) => (None, Some(base64(&bytes))),
                };
                out.print(&Cat {
                    r#ref: target,
                    path,
                    size: bytes.len() as u64,
                    text,
                    base64,
                })
            } else {
                let mut stdout = std::io::stdout().lock();
                match stdout.write_all(&bytes).and_then(|()| stdout.flush()) {
                    Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                        Err(e).context("writing to stdout")
                    }
                    _ => Ok(()),
                }
            }
        }
        MachineCmd::Verify => {
            progress.start("verifying every state and object".into());
            let r = store.verify();
            progress.finish();
            let r = r.map_err(store_error)?;
            out.print(&r)?;
            if !r.ok {
                eprintln!(
                    "error: the store {} is damaged ({} problem(s))",
                    store.dir().display(),
                    r.errors.len()
                );
                eprintln!(
                    "hint: the errors name the damaged objects; states that do not use them still check out"
                );
                return Err(Reported(EXIT_RUN_FAILED).into());
            }
            Ok(())
        }
    }
}

/// A command exit code as a process exit code (a code that would read as success becomes 1).
fn exit_byte(code: i32) -> u8 {
    match u8::try_from(code) {
        Ok(0) | Err(_) => 1,
        Ok(c) => c,
    }
}

fn run_options(env: &[String], output: Streams, capture_failed: bool) -> Result<RunOptions> {
    Ok(RunOptions {
        env: parse_env(env)?,
        capture_failed,
        output,
    })
}

fn parse_env(pairs: &[String]) -> Result<Vec<(String, String)>> {
    pairs
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(
                UserError::new(format!("invalid --env {p:?}: expected KEY=VALUE"))
                    .hint("e.g. --env NODE_ENV=production")
                    .into(),
            ),
        })
        .collect()
}

fn read_batch_file(f: &str) -> Result<Vec<String>> {
    let text = if f == "-" {
        std::io::read_to_string(std::io::stdin()).context("reading the commands from stdin")?
    } else {
        std::fs::read_to_string(f).map_err(|e| {
            UserError::new(format!("cannot read the batch file {f:?}: {e}"))
                .hint("-f takes a file with one command per line (or - for stdin)")
        })?
    };
    let list: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if list.is_empty() {
        return Err(
            UserError::new(format!("the batch file {f:?} holds no command"))
                .hint("one command per line; lines starting with # are comments")
                .into(),
        );
    }
    Ok(list)
}

fn confirm(store: &Store, hard: bool) -> Result<bool> {
    let states = store.history().map(|h| h.len()).unwrap_or(0);
    eprint!(
        "This forgets every state ({states} in the current history), tag and cached layer of {}{}. Continue? [y/N] ",
        store.dir().display(),
        if hard {
            format!(" and empties {}", store.work().display())
        } else {
            String::new()
        }
    );
    let _ = std::io::stderr().flush();
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// A layer-store error as the user sees it: the library's sentence (it names the input) plus a
/// hint; the library's exit code (2 bad input, refused checkout, unusable store; the command's
/// own code for a failing command; 1 I/O errors and damaged objects).
pub fn store_error(e: StoreError) -> anyhow::Error {
    let hint = match &e {
        StoreError::CommandFailed { code, .. } => {
            return UserError::new(e.to_string())
                .hint("fix the command and run it again; --capture-failed keeps the changes of a failing command")
                .with_code(exit_byte(*code))
                .into();
        }
        StoreError::UnknownRef { .. } | StoreError::AmbiguousRef { .. } => {
            "`sequential-machine history` and `sequential-machine tags` list the states".to_string()
        }
        StoreError::Dirty { .. } => {
            "capture them with `sequential-machine run`, or pass --force to discard them".into()
        }
        StoreError::WorkDirMissing { .. } => {
            "`sequential-machine rebuild` recreates the work dir from the layers".into()
        }
        StoreError::UnsupportedFormat { .. } => {
            "use the sequential-machine that wrote this store, or a newer one".into()
        }
        StoreError::NotAStore { .. } => {
            "point --dir (or SEQUENTIAL_MACHINE_DIR) at a layer store or at an empty or missing directory".into()
        }
        StoreError::Invalid { .. } => "`sequential-machine <command> --help` shows what is valid".into(),
        StoreError::Corrupt { .. } | StoreError::MissingObject { .. } => {
            "`sequential-machine verify` lists every damaged object".into()
        }
        StoreError::Uncapturable { .. } => {
            "remove or replace that path in the work dir (sockets, fifos and devices cannot be captured)".into()
        }
        _ => "check that the store and work directories exist and are writable".into(),
    };
    let code = exit_byte(e.exit_code());
    UserError::new(e.to_string())
        .hint(hint)
        .with_code(code)
        .into()
}

/// Progress on stderr (terminal only, not with NO_PROGRESS): a bar of files captured or written,
/// fed by the store, and a spinner for `gc` and `verify`.
struct Progress {
    on: bool,
    spinner: ProgressBar,
    files: ProgressBar,
}

impl Progress {
    fn new() -> Self {
        let on = std::io::stderr().is_terminal()
            && std::env::var_os("NO_PROGRESS").is_none_or(|v| v.is_empty() || v == "0");
        let bar = || {
            if on {
                ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr())
            } else {
                ProgressBar::hidden()
            }
        };
        Progress {
            on,
            spinner: bar(),
            files: bar(),
        }
    }

    /// What the store reports to (`None` when nothing is drawn).
    fn sink(&self) -> Option<Arc<dyn StoreProgress>> {
        self.on.then(|| {
            self.files.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} files, {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            Arc::new(FileBar(self.files.clone())) as Arc<dyn StoreProgress>
        })
    }

    fn start(&self, msg: String) {
        if self.on {
            self.spinner.set_style(
                ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            self.spinner.set_message(msg);
            self.spinner.enable_steady_tick(Duration::from_millis(100));
        }
    }

    fn finish(&self) {
        self.spinner.finish_and_clear();
        self.files.finish_and_clear();
    }
}

/// The store's progress reports drawn as a bar.
struct FileBar(ProgressBar);

impl StoreProgress for FileBar {
    fn update(&self, phase: Phase, done: u64, total: u64, bytes: u64) {
        let what = match phase {
            Phase::Capturing => "capturing",
            Phase::Writing => "writing",
            _ => "working",
        };
        self.0.set_length(total);
        self.0.set_position(done);
        self.0
            .set_message(format!("{what} {}", indicatif::HumanBytes(bytes)));
    }
}

/// Standard base64 with padding (for binary `cat --json`).
fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        s.push(A[(n >> 18) as usize & 63] as char);
        s.push(A[(n >> 12) as usize & 63] as char);
        s.push(if c.len() > 1 {
            A[(n >> 6) as usize & 63] as char
        } else {
            '='
        });
        s.push(if c.len() > 2 {
            A[n as usize & 63] as char
        } else {
            '='
        });
    }
    s
}

// ---- output shapes ------------------------------------------------------------------------

/// A name or instruction on one line: control characters (newlines in file names) escaped.
fn printable(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn short(h: &str) -> &str {
    &h[..h.len().min(12)]
}

impl Render for RunOutcome {
    fn text(&self) -> String {
        let parent = self.parent.as_deref().map_or("the empty state", short);
        if self.cached {
            format!(
                "{}  cache hit: {:?} already ran on {parent}; head moved, nothing ran\n",
                self.short, self.instruction
            )
        } else {
            format!(
                "{}  captured {:?} on {parent}\n",
                self.short, self.instruction
            )
        }
    }
}

impl Render for ExecOutcome {
    fn text(&self) -> String {
        String::new()
    }
}

impl Render for BatchOutcome {
    fn text(&self) -> String {
        self.results.iter().map(Render::text).collect()
    }
}

fn change_lines(added: &[String], modified: &[String], deleted: &[String]) -> String {
    let mut s = String::new();
    for (mark, paths) in [("A", added), ("M", modified), ("D", deleted)] {
        for p in paths {
            s.push_str(&format!("{mark} {}\n", printable(p)));
        }
    }
    s
}

impl Render for StatusReport {
    fn text(&self) -> String {
        if self.clean {
            "clean: the work dir equals head\n".into()
        } else {
            change_lines(&self.added, &self.modified, &self.deleted)
        }
    }
}

impl Render for DiffReport {
    fn text(&self) -> String {
        if self.added.is_empty() && self.modified.is_empty() && self.deleted.is_empty() {
            "no differences\n".into()
        } else {
            change_lines(&self.added, &self.modified, &self.deleted)
        }
    }
}

/// `history`: a JSON array.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct History(Vec<HistoryEntry>);

impl Render for History {
    fn text(&self) -> String {
        if self.0.is_empty() {
            return "no states yet\n".into();
        }
        let rows: Vec<Vec<String>> = self
            .0
            .iter()
            .map(|h| vec![h.short.clone(), h.time.clone(), printable(&h.instruction)])
            .collect();
        table(&rows)
    }
}

/// `head`.
#[derive(Debug, Serialize)]
struct Head {
    hash: Option<String>,
    short: Option<String>,
}

impl Render for Head {
    fn text(&self) -> String {
        match &self.hash {
            Some(h) => format!("{h}\n"),
            None => "none (the store has no state yet)\n".into(),
        }
    }
}

impl Render for CheckoutOutcome {
    fn text(&self) -> String {
        format!(
            "HEAD is now {}: {} path(s) written, {} removed\n",
            self.short.as_deref().unwrap_or("the empty state"),
            self.written,
            self.removed
        )
    }
}

impl Render for TagInfo {
    fn text(&self) -> String {
        format!("{}  {}\n", self.short, self.name)
    }
}

/// `tags`, `checkpoints`: a JSON array.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Tags(Vec<TagInfo>);

impl Render for Tags {
    fn text(&self) -> String {
        if self.0.is_empty() {
            return "no tags\n".into();
        }
        self.0.iter().map(Render::text).collect()
    }
}

/// `untag`.
#[derive(Debug, Serialize)]
struct Untagged {
    untagged: String,
}

impl Render for Untagged {
    fn text(&self) -> String {
        format!("removed tag {}\n", self.untagged)
    }
}

impl Render for InspectReport {
    fn text(&self) -> String {
        table(&[
            vec!["state".into(), self.hash.clone()],
            vec!["layer".into(), self.layer.clone()],
            vec![
                "parent".into(),
                self.parent.clone().unwrap_or_else(|| "none".into()),
            ],
            vec!["instruction".into(), printable(&self.instruction)],
            vec!["time".into(), self.time.clone()],
            vec!["files".into(), self.files.to_string()],
            vec!["size".into(), format!("{} bytes", self.size)],
            vec![
                "stored".into(),
                format!("{} bytes (compressed)", self.compressed_size),
            ],
        ])
    }
}

impl Render for ResetOutcome {
    fn text(&self) -> String {
        format!(
            "forgot {} state(s){}\n",
            self.states_removed,
            if self.work_cleared {
                "; the work dir is empty"
            } else {
                "; the work dir was left as it is"
            }
        )
    }
}

impl Render for GcReport {
    fn text(&self) -> String {
        format!(
            "removed {} state(s) and {} object(s), kept {} object(s); packs {} → {} ({} → {} bytes)\n",
            self.states_removed,
            self.objects_removed,
            self.objects_kept,
            self.packs_before,
            self.packs_after,
            self.bytes_before,
            self.bytes_after
        )
    }
}

/// `ls`: a JSON array.
#[derive(Debug, Serialize)]
#[serde(transparent)]
struct Ls {
    entries: Vec<LsEntry>,
}

impl Render for Ls {
    fn text(&self) -> String {
        let rows: Vec<Vec<String>> = self
            .entries
            .iter()
            .map(|e| {
                let mut name = printable(&e.name);
                if e.kind == "dir" {
                    name.push('/');
                }
                if let Some(t) = &e.target {
                    name.push_str(&format!(" -> {}", printable(t)));
                }
                vec![
                    e.kind.clone(),
                    format!("{:04o}", e.mode),
                    e.size.to_string(),
                    name,
                ]
            })
            .collect();
        table(&rows)
    }
}

/// `cat --json`.
#[derive(Debug, Serialize)]
struct Cat {
    r#ref: String,
    path: String,
    size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base64: Option<String>,
}

impl Render for Cat {
    fn text(&self) -> String {
        self.text.clone().unwrap_or_default()
    }
}

impl Render for VerifyReport {
    fn text(&self) -> String {
        let mut s = format!(
            "{}: {} state(s), {} object(s) checked\n",
            if self.ok { "ok" } else { "DAMAGED" },
            self.states,
            self.objects
        );
        for e in &self.errors {
            s.push_str(&format!("error: {e}\n"));
        }
        for w in &self.warnings {
            s.push_str(&format!("warning: {w}\n"));
        }
        s
    }
}
