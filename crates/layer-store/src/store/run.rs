//! `run`, `exec` and `batch`: commands in the work dir, captured as layers, and the cache keys.

use super::Store;
use super::refs::parse_digest;
use crate::error::{Error, IoContext, Result};
use crate::id::{CacheKey, Digest, LayerId, StateId};
use crate::index::{self, Index, Sink};
use crate::materialize::apply_to_work;
use crate::model::{BatchFailure, BatchOutcome, ExecOutcome, KeyRecord, RunOutcome, StateRecord};
use crate::objects::PackWriter;
use crate::tree::{self, Entry, Kind};
use sequential_support::fs::{read_opt, write_atomic};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How the command's standard streams are wired.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Output {
    /// Inherit the caller's stdin/stdout/stderr (the CLI).
    #[default]
    Inherit,
    /// Capture stdout and stderr into the outcome; stdin is empty.
    Capture,
    /// Discard both; stdin is empty.
    Null,
}

/// Options of `run`, `exec` and `batch`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Extra environment variables for the command; they are part of the cache key.
    pub env: Vec<(String, String)>,
    /// Capture a layer even when the command fails (its exit code is still reported as an error).
    pub capture_failed: bool,
    /// Where the command's output goes.
    pub output: Output,
}

impl Store {
    fn command(&self, instruction: &str, opts: &RunOptions) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(instruction).current_dir(&self.work);
        die_with_parent(&mut c);
        for (k, v) in &opts.env {
            c.env(k, v);
        }
        match opts.output {
            Output::Inherit => {}
            Output::Capture => {
                c.stdin(Stdio::null())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped());
            }
            Output::Null => {
                c.stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null());
            }
        }
        c
    }

    fn execute(&self, instruction: &str, opts: &RunOptions) -> Result<ExecOutcome> {
        if !self.work.is_dir() {
            return Err(Error::WorkDirMissing {
                path: self.work.clone(),
            });
        }
        use std::os::unix::process::ExitStatusExt;
        let code_of = |st: std::process::ExitStatus| {
            st.code().unwrap_or_else(|| 128 + st.signal().unwrap_or(0))
        };
        let mut cmd = self.command(instruction, opts);
        if opts.output != Output::Capture {
            // `status` keeps the wiring chosen in `command` (inherited or null streams).
            let st = cmd.status().at(Path::new("sh"))?;
            return Ok(ExecOutcome {
                code: code_of(st),
                stdout: None,
                stderr: None,
            });
        }
        let out = cmd.output().at(Path::new("sh"))?;
        Ok(ExecOutcome {
            code: code_of(out.status),
            stdout: Some(String::from_utf8_lossy(&out.stdout).into_owned()),
            stderr: Some(String::from_utf8_lossy(&out.stderr).into_owned()),
        })
    }

    /// Runs `instruction` with `sh -c` in the work dir without capturing anything.
    pub fn exec(&self, instruction: &str, opts: &RunOptions) -> Result<ExecOutcome> {
        self.execute(instruction, opts)
    }

    fn key_path(&self, k: CacheKey) -> PathBuf {
        self.dir.join("keys").join(k.hex())
    }

    fn read_key(&self, k: CacheKey) -> Result<Option<(LayerId, StateId)>> {
        let p = self.key_path(k);
        let Some(b) = read_opt(&p)? else {
            return Ok(None);
        };
        let r: KeyRecord = serde_json::from_slice(&b).map_err(|e| Error::Corrupt {
            id: k.hex(),
            location: p.clone(),
            reason: format!("bad key record: {e}"),
        })?;
        let layer = parse_digest(&r.layer, &p)?;
        let state = parse_digest(&r.state, &p)?;
        if !self.state_path(StateId(state)).exists() {
            return Ok(None);
        }
        Ok(Some((LayerId(layer), StateId(state))))
    }

    /// Runs `instruction` with `sh -c` in the work dir and captures its changes as a layer on top
    /// of head, or — when the same instruction already ran on the same state with the same
    /// environment and the work dir is clean — moves head to the cached state and makes the work
    /// dir equal to it without running anything. A failing command creates no layer and returns
    /// [`Error::CommandFailed`] with its exit code. Uncommitted changes present before the run
    /// are captured into the layer too, and such a run is not recorded in the cache.
    pub fn run(&self, instruction: &str, opts: &RunOptions) -> Result<RunOutcome> {
        let seen = self.head()?;
        let _lock = self.lock()?;
        let head = self.head()?;
        if head != seen
            && let Some((_, state)) =
                self.read_key(CacheKey::compute(instruction, seen, &opts.env))?
            && Some(state) == head
        {
            // A concurrent twin ran the same instruction on the same state while we waited.
            return Ok(outcome(state, true, instruction, seen, None));
        }
        let key = CacheKey::compute(instruction, head, &opts.env);
        let (base, idx) = self.base_and_index(head)?;
        // Contents found before the command (uncommitted changes) go to the same pack.
        let pack = PackWriter::new(self.objects.dir())?;
        let sink = Sink {
            objects: &self.objects,
            pack: &pack,
            progress: self.progress.as_deref(),
        };
        let (fresh, before) = self.prescan(&idx, head, base.as_deref(), Some(sink))?;
        let dirty = !before.clean;
        let current = fresh.as_ref().unwrap_or(&idx);
        if !dirty && let Some((_, state)) = self.read_key(key)? {
            let target = self.manifest(Some(state))?;
            let (mut new_idx, _) = apply_to_work(
                &self.work,
                &self.dir,
                &self.objects,
                current,
                &target,
                self.progress.as_deref(),
            )?;
            self.set_head(Some(state))?;
            new_idx.base = Some(Some(state));
            new_idx.save(&self.index_path())?;
            tracing::debug!(state = %state, "cache hit");
            return Ok(outcome(state, true, instruction, head, None));
        }
        if let Some(f) = &fresh {
            f.save(&self.index_path())?;
        }
        let ran = self.execute(instruction, opts)?;
        if ran.code != 0 && !opts.capture_failed {
            return Err(failed(instruction, &ran));
        }
        let base = match base {
            Some(b) => b,
            None => idx.manifest(),
        };
        let key = (!dirty && ran.code == 0).then_some(key);
        let state = self.capture(head, &base, instruction, key, pack, current)?;
        if ran.code != 0 {
            return Err(failed(instruction, &ran));
        }
        Ok(outcome(state, false, instruction, head, Some(ran)))
    }

    /// Captures the work dir as a layer on `head` and moves head; records `key` when given.
    fn capture(
        &self,
        head: Option<StateId>,
        base: &[Entry],
        instruction: &str,
        key: Option<CacheKey>,
        pack: PackWriter,
        before: &Index,
    ) -> Result<StateId> {
        let time = index::fs_now(&self.dir)?;
        let scan = index::scan(
            &self.work,
            before,
            Some(Sink {
                objects: &self.objects,
                pack: &pack,
                progress: self.progress.as_deref(),
            }),
        )?;
        let tree_now: Vec<Entry> = scan.entries[1..].iter().map(|e| e.entry.clone()).collect();
        let changes = tree::changeset(base, &tree_now);
        let layer_bytes = tree::encode_changeset(&changes);
        let layer = LayerId(Digest::of(&layer_bytes));
        let manifest_bytes = tree::encode_manifest(&tree_now);
        let manifest = Digest::of(&manifest_bytes);
        pack.add(layer.0, &layer_bytes)?;
        // What this layer cost: every object stored by this run (contents, chunks, changeset).
        let compressed = pack.stored_bytes();
        pack.add(manifest, &manifest_bytes)?;
        pack.finish()?;
        self.objects.refresh()?;
        let state = StateId::chain(head, layer);
        if !self.state_path(state).exists() {
            let size = changes
                .iter()
                .filter(|e| e.kind == Kind::File)
                .map(|e| e.size)
                .sum();
            let rec = StateRecord {
                version: 1,
                id: state.hex(),
                parent: head.map(|h| h.hex()),
                layer: layer.hex(),
                manifest: manifest.hex(),
                instruction: instruction.into(),
                time_ms: now_ms(),
                size,
                files: changes.len() as u64,
                compressed_size: compressed,
            };
            write_atomic(
                &self.state_path(state),
                &serde_json::to_vec_pretty(&rec).expect("serializable"),
            )?;
        }
        if let Some(k) = key {
            let rec = KeyRecord {
                version: 1,
                layer: layer.hex(),
                state: state.hex(),
            };
            write_atomic(
                &self.key_path(k),
                &serde_json::to_vec(&rec).expect("serializable"),
            )?;
        }
        self.set_head(Some(state))?;
        Index {
            time,
            base: Some(Some(state)),
            entries: scan.entries,
        }
        .save(&self.index_path())?;
        Ok(state)
    }

    /// Runs each instruction in order; stops at the first failure (reported in `failed`).
    pub fn batch<S: AsRef<str>>(
        &self,
        instructions: &[S],
        opts: &RunOptions,
    ) -> Result<BatchOutcome> {
        let mut results = Vec::new();
        for (index, i) in instructions.iter().enumerate() {
            match self.run(i.as_ref(), opts) {
                Ok(r) => results.push(r),
                Err(Error::CommandFailed {
                    instruction, code, ..
                }) => {
                    return Ok(BatchOutcome {
                        results,
                        failed: Some(BatchFailure {
                            index,
                            instruction,
                            code,
                        }),
                    });
                }
                Err(e) => return Err(e),
            }
        }
        Ok(BatchOutcome {
            results,
            failed: None,
        })
    }

    pub(crate) fn key_records(&self) -> Result<Vec<(PathBuf, Option<StateId>)>> {
        let d = self.dir.join("keys");
        let mut v = Vec::new();
        for e in fs::read_dir(&d).at(&d)? {
            let e = e.at(&d)?;
            if e.file_name().to_string_lossy().starts_with('.') {
                continue;
            }
            let p = e.path();
            let state = read_opt(&p)?
                .and_then(|b| serde_json::from_slice::<KeyRecord>(&b).ok())
                .and_then(|r| Digest::parse(&r.state))
                .map(StateId);
            v.push((p, state));
        }
        Ok(v)
    }
}

/// A command must not outlive the `run` that started it (and holds the writer lock): on Linux
/// it gets SIGKILL when the thread that spawned it dies, e.g. when the runner is `kill -9`ed.
fn die_with_parent(c: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid, _exit) between fork and exec.
        unsafe {
            c.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died before prctl took effect.
                if libc::getppid() as u32 != parent {
                    libc::_exit(137);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = c;
}

fn outcome(
    state: StateId,
    cached: bool,
    instruction: &str,
    parent: Option<StateId>,
    ran: Option<ExecOutcome>,
) -> RunOutcome {
    let (stdout, stderr) = ran.map(|r| (r.stdout, r.stderr)).unwrap_or((None, None));
    RunOutcome {
        hash: state.hex(),
        short: state.short(),
        cached,
        instruction: instruction.into(),
        parent: parent.map(|p| p.hex()),
        stdout,
        stderr,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The error of a command that exited with `ran.code`, with the tails of its captured output.
fn failed(instruction: &str, ran: &ExecOutcome) -> Error {
    Error::CommandFailed {
        instruction: instruction.into(),
        code: ran.code,
        stdout_tail: ran.stdout.as_deref().map(tail),
        stderr_tail: ran.stderr.as_deref().map(tail),
    }
}

/// The last [`crate::OUTPUT_TAIL`] bytes of `text` (cut at a character boundary).
fn tail(text: &str) -> String {
    let mut start = text.len().saturating_sub(crate::OUTPUT_TAIL);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}
