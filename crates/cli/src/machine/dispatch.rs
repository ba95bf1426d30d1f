//! Runs a parsed machine command against the layer-store library.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context, Result};
use sequential_layer_store::{
    CheckoutOptions, Error as StoreError, Output as Streams, ResetMode, RunOptions, Store,
};

use super::DEFAULT_DIR;
use super::grammar::{MachineArgs, MachineCmd};
use super::render::{Cat, Head, History, Ls, Progress, Tags, Untagged};
use crate::error::{EXIT_RUN_FAILED, Reported, UserError};
use crate::output::Output;

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
            if json
                && let Err(StoreError::CommandFailed {
                    instruction,
                    code,
                    stdout_tail,
                    stderr_tail,
                }) = &r
            {
                // the JSON document says what failed; stderr says it in words
                out.print(&Failed {
                    instruction: instruction.clone(),
                    exit_code: *code,
                    stdout_tail: stdout_tail.clone(),
                    stderr_tail: stderr_tail.clone(),
                })?;
            }
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
                out.print(&Cat::new(target, path, bytes))
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

/// What `run --json` prints for a command that failed (no layer was created unless
/// `--capture-failed`).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Failed {
    instruction: String,
    exit_code: i32,
    /// The end of the command's stdout (at most 4 KiB).
    stdout_tail: Option<String>,
    /// The end of the command's stderr (at most 4 KiB).
    stderr_tail: Option<String>,
}

impl crate::output::Render for Failed {
    fn text(&self) -> String {
        String::new()
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
fn store_error(e: StoreError) -> anyhow::Error {
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
