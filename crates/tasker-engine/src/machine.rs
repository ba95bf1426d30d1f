//! What [`Machine`](sequential_flow_graph::Machine) needs from where I/O and the VM are allowed:
//! [`FileLog`], an NDJSON file with one record per line, appended under an exclusive lock and
//! fsynced before an append returns, read under a shared lock (several processes may open the
//! same file: one writes at a time, the others follow with `Machine::sync`); and
//! [`StoreLog`], the same log kept in a `StorageAdapter` as the journal of a run (`store:NAME`
//! on the command line: any process that opens the same storage follows it);
//! [`js_definition`], a definition written in JavaScript as coremachine's README writes it,
//! whose guards and actions run deterministically in fetch-vm; and [`Source`], a definition's
//! text as `fsm init` keeps it beside its log.
//!
//! ```
//! use sequential_tasker_engine::flow_graph::{Definition, Machine};
//! use sequential_tasker_engine::machine::FileLog;
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("cube.ndjson");
//! let def = Definition::from_json(r#"{"initial": "idle", "context": {"counter": 0},
//!   "states": {"idle": {"on": {"START": {"target": "running",
//!       "action": {"assign": {"counter": "$.payload"}}}}},
//!     "running": {"on": {"STOP": "idle"}}}}"#)?;
//! let mut m = Machine::open(def.clone(), FileLog::open(&path)?)?;
//! m.action("START", json!(5))?;
//! // another process (here: another machine) opening the file reaches the same state
//! let again = Machine::open(def, FileLog::open(&path)?)?;
//! assert_eq!((again.state(), again.context()), ("running", &json!({"counter": 5})));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sequential_adaptor::{
    Created, Fence, JournalRecord, NewRun, NewTaskVersion, RunId, RunStatus, StorageAdapter,
    TaskName, VersionSel,
};
use serde::{Deserialize, Serialize};

use sequential_fetch_vm::{Error as VmError, Evaluator, Limits};
use sequential_flow_graph::machine::{LogEntry, Transition};
use sequential_flow_graph::{Definition, Error, MachineLog, Result};
use sequential_support::fs::LockFile;
use serde_json::{Value, json};

/// A machine log in an NDJSON file (see the module docs). A torn last line (a writer killed
/// mid-write) is skipped when read and cut off before the next append.
#[derive(Debug, Clone)]
pub struct FileLog {
    path: PathBuf,
    /// The last seq read and the offset just past its line: a reader that asks for what
    /// follows it (a follower's `sync`) reads only the new bytes. The file only grows past a
    /// whole line (a torn tail is cut, never a whole record), so the offset stays valid.
    read_to: Arc<std::sync::Mutex<(u64, u64)>>,
}

impl FileLog {
    /// Opens the log at `path`, creating an empty one (and its directory) when missing.
    pub fn open(path: impl AsRef<Path>) -> Result<FileLog> {
        let path = path.as_ref().to_path_buf();
        let dir = sequential_support::fs::parent(&path).to_path_buf();
        sequential_support::fs::ensure_dir(&dir)
            .map_err(|e| io("creating the log's directory", &dir, e))?;
        let created = !path.exists();
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("opening machine log", &path, e))?;
        if created {
            sequential_support::fs::sync_dir(&dir)
                .map_err(|e| io("syncing the log's directory", &dir, e))?;
        }
        Ok(FileLog {
            path,
            read_to: Arc::default(),
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn lock(&self, exclusive: bool) -> Result<LockFile> {
        LockFile::existing(&self.path, exclusive)
            .map_err(|e| io("locking machine log", &self.path, e))?
            .ok_or_else(|| Error::Log {
                context: format!("machine log {}", self.path.display()),
                source: "the file was removed".into(),
            })
    }
}

/// The entries of a log file's text, and the length of its whole lines (a torn last line
/// without its newline is not counted).
fn parse(path: &Path, bytes: &[u8]) -> Result<(Vec<LogEntry>, usize)> {
    let whole = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for (n, line) in bytes[..whole].split(|b| *b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let entry: LogEntry = serde_json::from_slice(line).map_err(|e| Error::Log {
            context: format!("machine log {} line {}", path.display(), n + 1),
            source: Box::new(e),
        })?;
        out.push(entry);
    }
    Ok((out, whole))
}

fn read_all(path: &Path, mut file: &File) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    file.seek(SeekFrom::Start(0))
        .and_then(|_| file.read_to_end(&mut bytes))
        .map_err(|e| io("reading machine log", path, e))?;
    Ok(bytes)
}

/// The last whole entry of a log file, the length of its whole lines and the file's length,
/// reading only its tail (the whole file when the last line is longer than the window).
fn last_entry(path: &Path, mut file: &File) -> Result<(Option<LogEntry>, u64, u64)> {
    const WINDOW: u64 = 64 * 1024;
    let len = file
        .metadata()
        .map_err(|e| io("reading machine log", path, e))?
        .len();
    let start = len.saturating_sub(WINDOW);
    let mut tail = Vec::with_capacity((len - start) as usize);
    file.seek(SeekFrom::Start(start))
        .and_then(|_| file.read_to_end(&mut tail))
        .map_err(|e| io("reading machine log", path, e))?;
    let whole_in_tail = tail.iter().rposition(|b| *b == b'\n').map(|i| i + 1);
    if let Some(end) = whole_in_tail {
        let body = &tail[..end - 1];
        let line_start = body.iter().rposition(|b| *b == b'\n').map(|i| i + 1);
        let line = &body[line_start.unwrap_or(0)..];
        if (line_start.is_some() || start == 0) && !line.iter().all(u8::is_ascii_whitespace) {
            let entry: LogEntry = serde_json::from_slice(line).map_err(|e| Error::Log {
                context: format!("machine log {} (its last line)", path.display()),
                source: Box::new(e),
            })?;
            return Ok((Some(entry), start + end as u64, len));
        }
    } else if start == 0 {
        return Ok((None, 0, len)); // empty, or one torn line
    }
    // a last line longer than the window, or blank lines: read it all
    let bytes = read_all(path, file)?;
    let (entries, whole) = parse(path, &bytes)?;
    Ok((entries.into_iter().last(), whole as u64, len))
}

fn io(what: &str, path: &Path, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::Log {
        context: format!("{what} {}", path.display()),
        source: Box::new(e),
    }
}

impl MachineLog for FileLog {
    fn append(&self, entry: &LogEntry) -> Result<()> {
        let lock = self.lock(true)?;
        let mut file = lock.file();
        let (last, whole, len) = last_entry(&self.path, file)?;
        let next = last.map_or(1, |e| e.seq + 1);
        if entry.seq != next {
            return Err(Error::Conflict {
                what: format!(
                    "append of seq {} to {}, whose next seq is {next} (another writer appended first; sync and retry)",
                    entry.seq,
                    self.path.display()
                ),
            });
        }
        let mut line =
            serde_json::to_vec(entry).map_err(|e| io("encoding a record for", &self.path, e))?;
        line.push(b'\n');
        (|| {
            if whole < len {
                file.set_len(whole)?; // a torn last line is cut off
            }
            file.seek(SeekFrom::Start(whole))?;
            file.write_all(&line)?;
            file.sync_data()
        })()
        .map_err(|e| io("appending to machine log", &self.path, e))
    }

    fn read_after(&self, after: u64) -> Result<Vec<LogEntry>> {
        let lock = self.lock(false)?;
        let mut file = lock.file();
        let (seen, offset) = *self.read_to.lock().unwrap_or_else(|p| p.into_inner());
        let len = file
            .metadata()
            .map_err(|e| io("reading machine log", &self.path, e))?
            .len();
        // (a file shorter than the offset was replaced: read it whole)
        let from = if seen == after && after > 0 && offset <= len {
            offset
        } else {
            0
        };
        let mut bytes = Vec::new();
        file.seek(SeekFrom::Start(from))
            .and_then(|_| file.read_to_end(&mut bytes))
            .map_err(|e| io("reading machine log", &self.path, e))?;
        let (entries, whole) = parse(&self.path, &bytes)?;
        if let Some(last) = entries.last() {
            *self.read_to.lock().unwrap_or_else(|p| p.into_inner()) =
                (last.seq, from + whole as u64);
        }
        Ok(entries.into_iter().filter(|e| e.seq > after).collect())
    }
}

/// How a machine definition is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// JSON: guards as `when` predicates, actions as `assign` templates.
    Json,
    /// A JavaScript module calling `createMachine({...})` (see [`js_definition`]).
    Js,
}

/// A machine definition's text and how it is written: what `fsm init` keeps beside a log so
/// that every later command (in any process) replays the log with the same definition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Source {
    /// JSON or JavaScript.
    pub format: Format,
    /// The definition's text.
    pub text: String,
}

impl Source {
    /// Reads a definition file: `.json` is JSON, `.js` and `.mjs` are JavaScript.
    pub fn read(path: &Path) -> Result<Source> {
        let format = match path.extension().and_then(|e| e.to_str()) {
            Some("json") => Format::Json,
            Some("js" | "mjs") => Format::Js,
            _ => {
                return Err(Error::Invalid {
                    input: format!("definition file {}", path.display()),
                    expected: "a .json or .js file".into(),
                });
            }
        };
        let text = std::fs::read_to_string(path).map_err(|e| io("reading definition", path, e))?;
        Ok(Source { format, text })
    }

    /// The definition, validated.
    pub fn definition(&self) -> Result<Definition> {
        let def = match self.format {
            Format::Json => Definition::from_json(&self.text)?,
            Format::Js => js_definition(&self.text)?,
        };
        def.validate()?;
        Ok(def)
    }
}

impl FileLog {
    /// Where [`FileLog::save_source`] keeps the definition: `<log>.definition.json`.
    pub fn source_path(&self) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(".definition.json");
        PathBuf::from(p)
    }

    /// Keeps the definition beside the log (written once, atomically and fsynced; a second
    /// call is a [`Error::Conflict`]).
    pub fn save_source(&self, source: &Source) -> Result<()> {
        let path = self.source_path();
        if path.exists() {
            return Err(Error::Conflict {
                what: format!("{} already exists", path.display()),
            });
        }
        let bytes = serde_json::to_vec_pretty(source).map_err(|e| io("encoding", &path, e))?;
        sequential_support::fs::write_atomic(&path, &bytes)
            .map_err(|e| io("writing definition", &path, e))
    }

    /// The definition kept beside the log, if any.
    pub fn load_source(&self) -> Result<Option<Source>> {
        let path = self.source_path();
        let Some(bytes) = sequential_support::fs::read_opt(&path)
            .map_err(|e| io("reading definition", &path, e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| io("reading definition", &path, e))
    }
}

/// The journal record kind of one machine event in a [`StoreLog`].
pub const STORE_RECORD_KIND: &str = "machine.event";

/// A machine log kept in a [`StorageAdapter`], as the journal of one run.
///
/// `store:NAME` is task `fsm-NAME` (its one version holds the definition: `code` is its text,
/// `config` says `{"machine": {"name", "format"}}`) and one run of it (idempotency key
/// `machine:NAME`) in status `paused`, which no worker claims. Machine record `seq` n is the
/// n-th journal record of kind [`STORE_RECORD_KIND`], with data `{event, payload, state,
/// context_hash, writer}`; records of other kinds (the engine's, should someone resume or
/// cancel the holding run by hand) are skipped. The adapter's append contract does the rest:
/// records are durable when `append` returns, and a record at a journal seq another writer
/// already used is refused (`Conflict`), so two processes never both extend the log from the
/// same point.
///
/// The constructors are async; the [`MachineLog`] methods block on the runtime they were
/// called in, so call them from a blocking thread (`tokio::task::spawn_blocking`) or from a
/// thread outside the runtime.
#[derive(Debug, Clone)]
pub struct StoreLog {
    store: Arc<dyn StorageAdapter>,
    name: String,
    run: RunId,
    rt: tokio::runtime::Handle,
    writer: String,
    /// Machine records read so far and the journal's next seq.
    read_to: Arc<std::sync::Mutex<(u64, u64)>>,
}

impl StoreLog {
    /// The task that holds machine `name`: `fsm-<name>`.
    pub fn task_name(name: &str) -> Result<TaskName> {
        TaskName::new(format!("fsm-{name}")).map_err(|_| Error::Invalid {
            input: format!("machine name {name:?}"),
            expected: "1-60 characters of ASCII letters, digits, '-' and '_'".into(),
        })
    }

    /// Creates machine `name` with `source` as its definition; an existing one is a
    /// [`Error::Conflict`] and is left as it was.
    pub async fn create(
        store: Arc<dyn StorageAdapter>,
        name: &str,
        source: &Source,
    ) -> Result<StoreLog> {
        let task = Self::task_name(name)?;
        let ctx = || format!("creating machine store:{name}");
        match store.get_task_version(&task, VersionSel::Latest).await {
            Ok(_) => {
                return Err(Error::Conflict {
                    what: format!("machine store:{name} already exists (task {task})"),
                });
            }
            Err(sequential_adaptor::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(ctx(), e)),
        }
        let put = store
            .put_task_version(NewTaskVersion {
                task: task.clone(),
                code: source.text.clone(),
                graph: None,
                config: json!({ "machine": { "name": name, "format": source.format } }),
            })
            .await
            .map_err(|e| store_err(ctx(), e))?;
        let run = Self::run_of(&store, name, &task, put.version.version).await?;
        Ok(StoreLog::with(store, name, run))
    }

    /// Opens machine `name` and reads its definition; a name never created is an
    /// [`Error::Invalid`] saying so.
    pub async fn open(store: Arc<dyn StorageAdapter>, name: &str) -> Result<(StoreLog, Source)> {
        let task = Self::task_name(name)?;
        let version = match store.get_task_version(&task, VersionSel::Latest).await {
            Ok(v) => v,
            Err(sequential_adaptor::Error::NotFound { .. }) => {
                return Err(Error::Invalid {
                    input: format!("machine store:{name} (no task {task} in the storage)"),
                    expected: format!(
                        "a machine created with `fsm init store:{name} --definition FILE`"
                    ),
                });
            }
            Err(e) => return Err(store_err(format!("opening machine store:{name}"), e)),
        };
        let format: Format = serde_json::from_value(version.config["machine"]["format"].clone())
            .map_err(|_| Error::Invalid {
                input: format!("task {task} (its config.json is not a machine's)"),
                expected: format!("a machine created with `fsm init store:{name}`"),
            })?;
        let source = Source {
            format,
            text: version.code.clone(),
        };
        let run = Self::run_of(&store, name, &task, version.version).await?;
        Ok((StoreLog::with(store, name, run), source))
    }

    /// The run whose journal is the log (created, and parked as `paused`, on first use).
    async fn run_of(
        store: &Arc<dyn StorageAdapter>,
        name: &str,
        task: &TaskName,
        version: u32,
    ) -> Result<RunId> {
        let ctx = || format!("opening the run of machine store:{name}");
        let new = NewRun {
            task: task.clone(),
            version,
            input: json!({ "machine": name }),
            idempotency_key: Some(format!("machine:{name}")),
            parent: None,
        };
        let run = match store
            .create_run(new)
            .await
            .map_err(|e| store_err(ctx(), e))?
        {
            Created::Created(r) | Created::Existing(r) => r,
        };
        if run.status == RunStatus::Queued {
            let mut parked = run.clone();
            parked.status = RunStatus::Paused;
            parked.waiting_for = Some("machine events (fsm send)".into());
            store
                .update_run(&parked)
                .await
                .map_err(|e| store_err(ctx(), e))?;
        }
        Ok(run.id)
    }

    fn with(store: Arc<dyn StorageAdapter>, name: &str, run: RunId) -> StoreLog {
        let mut id = [0u8; 8];
        // a writer id only tells two writers' records apart; without randomness, the time
        let writer = match getrandom::fill(&mut id) {
            Ok(()) => hex::encode(id),
            Err(_) => format!("{:x}", sequential_adaptor::now_millis()),
        };
        StoreLog {
            store,
            name: name.to_string(),
            run,
            rt: tokio::runtime::Handle::current(),
            writer,
            read_to: Arc::default(),
        }
    }

    /// The machine's name (`store:NAME`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The run whose journal holds the log.
    pub fn run(&self) -> RunId {
        self.run
    }
}

fn store_err(context: String, e: sequential_adaptor::Error) -> Error {
    Error::Log {
        context,
        source: Box::new(e),
    }
}

impl StoreLog {
    /// The machine records after `after` (numbered 1, 2 … in journal order; records of other
    /// kinds are skipped), the number of machine records, and the journal's next seq.
    fn scan(&self, after: u64) -> Result<(Vec<LogEntry>, u64, u64)> {
        let (seen, next) = *self.read_to.lock().unwrap_or_else(|p| p.into_inner());
        // continue from where the last read ended when it is not past `after`
        let (mut count, mut next, mut cursor) = if seen <= after && next > 0 {
            (seen, next, Some(next - 1))
        } else {
            (0, 0, None)
        };
        let mut out = Vec::new();
        loop {
            let page = self
                .rt
                .block_on(self.store.read_journal(self.run, cursor, 1000))
                .map_err(|e| store_err(format!("reading machine store:{}", self.name), e))?;
            let Some(last) = page.last() else { break };
            cursor = Some(last.seq);
            next = last.seq + 1;
            for r in page {
                if r.kind != STORE_RECORD_KIND {
                    continue; // an engine record (the holding run resumed or cancelled by hand)
                }
                count += 1;
                if count > after {
                    let field = |k: &str| r.data[k].as_str().unwrap_or_default().to_string();
                    out.push(LogEntry {
                        seq: count,
                        event: field("event"),
                        payload: r.data["payload"].clone(),
                        state: field("state"),
                        context_hash: field("context_hash"),
                    });
                }
            }
        }
        *self.read_to.lock().unwrap_or_else(|p| p.into_inner()) = (count, next);
        Ok((out, count, next))
    }
}

impl MachineLog for StoreLog {
    fn append(&self, entry: &LogEntry) -> Result<()> {
        let seen = self.read_to.lock().unwrap_or_else(|p| p.into_inner()).0;
        let (_, count, next) = self.scan(seen)?;
        if entry.seq != count + 1 {
            return Err(Error::Conflict {
                what: format!(
                    "append of seq {} to machine store:{}, whose next seq is {} (another writer appended first; sync and retry)",
                    entry.seq,
                    self.name,
                    count + 1
                ),
            });
        }
        let record = JournalRecord {
            run: self.run,
            seq: next,
            kind: STORE_RECORD_KIND.into(),
            at: sequential_adaptor::now_millis(),
            data: json!({
                "event": entry.event,
                "payload": entry.payload,
                "state": entry.state,
                "context_hash": entry.context_hash,
                "writer": self.writer,
            }),
        };
        let res = self
            .rt
            .block_on(self.store.append(self.run, &[record], Fence::None));
        match res {
            Ok(()) => {
                *self.read_to.lock().unwrap_or_else(|p| p.into_inner()) = (entry.seq, next + 1);
                Ok(())
            }
            Err(
                sequential_adaptor::Error::Conflict { .. }
                | sequential_adaptor::Error::Invalid { .. },
            ) => Err(Error::Conflict {
                what: format!(
                    "append of seq {} to machine store:{}: another writer appended first (sync and retry)",
                    entry.seq, self.name
                ),
            }),
            Err(e) => Err(store_err(
                format!("appending seq {} to machine store:{}", entry.seq, self.name),
                e,
            )),
        }
    }

    fn read_after(&self, after: u64) -> Result<Vec<LogEntry>> {
        Ok(self.scan(after)?.0)
    }

    fn last_seq(&self) -> Result<u64> {
        let seen = self.read_to.lock().unwrap_or_else(|p| p.into_inner()).0;
        Ok(self.scan(seen)?.1)
    }
}

/// Reads a machine definition written in JavaScript, as the coremachine README writes it:
///
/// ```js
/// import { createMachine } from "coremachine";   // accepted and ignored
/// export default createMachine({
///   initial: "idle",
///   context: { running: false, counter: 0 },
///   states: {
///     idle: { on: { START: { target: "running", action: (ctx, counter) => { ctx.running = true; ctx.counter = counter; } } } },
///     running: { on: { STOP: { target: "idle", guard: (ctx) => ctx.running, action: (ctx) => { ctx.running = false; } } } },
///   },
/// });
/// ```
///
/// `createMachine` is a global; the machine is the last one it made (or the default export).
/// `on.EVENT` is `{target, guard?, action?}` or a target name. `action(context, payload)`
/// changes the context it is given (or returns a new one); `guard(context, payload)` returns
/// whether the event is accepted; a `null` payload reaches them as `undefined`. Both run in
/// a fetch-vm [`Evaluator`] and must be deterministic: a host call (`fetch`, `Date.now()`,
/// `Math.random()` …) rejects the event. The module is evaluated once per definition (clones
/// of the definition share it), so its module-level variables persist from one guard or action
/// to the next: they are not part of the machine's state, which is the context alone.
pub fn js_definition(code: &str) -> Result<Definition> {
    let module = Arc::new(
        Evaluator::new(&js_module(code)?, &Limits::default())
            .map_err(|e| js_failure(e.to_string()))?,
    );
    let shape = run_js(&module, json!({ "op": "shape" }))?;
    let invalid = |what: String| {
        Error::Invalid {
        input: what,
        expected: "createMachine({ initial: \"state\", context: {…}, states: { state: { on: { EVENT: { target, guard?, action? } } } } })".into(),
    }
    };
    let initial = shape["initial"]
        .as_str()
        .ok_or_else(|| invalid(format!("initial {}", shape["initial"])))?;
    let mut def = Definition::new(initial, shape["context"].clone());
    let Some(states) = shape["states"].as_array() else {
        return Err(invalid(format!("states {}", shape["states"])));
    };
    for st in states {
        let name = st["name"].as_str().unwrap_or_default().to_string();
        def = def.state(name.clone());
        for t in st["on"].as_array().into_iter().flatten() {
            let event = t["event"].as_str().unwrap_or_default().to_string();
            let target = t["target"].as_str().ok_or_else(|| {
                invalid(format!("the target of {name}.on.{event}: {}", t["target"]))
            })?;
            let mut tr = Transition::to(target);
            if t["guard"] == true {
                let (m, s, e) = (module.clone(), name.clone(), event.clone());
                tr = tr.guard(move |ctx, payload| {
                    let call = json!({ "op": "guard", "state": s, "event": e, "context": ctx, "payload": payload });
                    run_js(&m, call).is_ok_and(|v| v == true)
                });
            }
            if t["action"] == true {
                let (m, s, e) = (module.clone(), name.clone(), event.clone());
                tr = tr.action(move |ctx, payload| {
                    let call = json!({ "op": "action", "state": s, "event": e, "context": ctx, "payload": payload });
                    *ctx = run_js(&m, call).map_err(|e| e.to_string())?;
                    Ok(())
                });
            }
            def = def.on(name.clone(), event, tr);
        }
    }
    Ok(def)
}

/// The definition module plus an entry that reports its shape or runs one guard or action.
fn js_module(code: &str) -> Result<String> {
    let mut lines: Vec<String> = Vec::new();
    for line in code.lines() {
        let t = line.trim_start();
        if t.starts_with("import ") {
            if t.contains("\"coremachine\"") || t.contains("'coremachine'") {
                lines.push(String::new()); // accepted and ignored (keeps line numbers)
                continue;
            }
            return Err(Error::Invalid {
                input: format!("`{}` in a machine definition", t.trim_end()),
                expected: "no imports but `import { createMachine } from \"coremachine\"` (createMachine is a global)".into(),
            });
        }
        lines.push(line.to_string());
    }
    let mut source = lines.join("\n");
    let exports = crate::graph::exports(&source);
    if let Some(at) = exports.default_at {
        let binding = format!("const {} =", crate::graph::DEFAULT_BINDING);
        source.replace_range(at..at + binding.len(), &binding);
    }
    let default = if exports.default_at.is_some() {
        crate::graph::DEFAULT_BINDING
    } else {
        "undefined"
    };
    Ok(format!(
        "let __sqDef; const createMachine = (d) => (__sqDef = d, d); {source}\n;{JS_ENTRY_HEAD}  const m = __sqDef !== undefined ? __sqDef : {default};\n{JS_ENTRY_TAIL}"
    ))
}

const JS_ENTRY_HEAD: &str = "export default async function (__sqIn) {\n";

const JS_ENTRY_TAIL: &str = r#"  if (m === null || typeof m !== "object") {
    throw new TypeError("the module defines no machine: call createMachine({ initial, context, states })");
  }
  const states = m.states && typeof m.states === "object" ? m.states : {};
  const entry = (t) => (typeof t === "string" ? { target: t } : t || {});
  if (__sqIn.op === "shape") {
    return {
      initial: m.initial,
      context: m.context === undefined ? {} : m.context,
      states: Object.keys(states).map((name) => ({
        name,
        on: Object.keys((states[name] && states[name].on) || {}).map((event) => {
          const t = entry(states[name].on[event]);
          return { event, target: t.target, guard: typeof t.guard === "function", action: typeof t.action === "function" };
        }),
      })),
    };
  }
  const t = entry(((states[__sqIn.state] || {}).on || {})[__sqIn.event]);
  const payload = __sqIn.payload === null ? undefined : __sqIn.payload;
  const context = __sqIn.context;
  if (__sqIn.op === "guard") return !!(await t.guard(context, payload));
  const r = await t.action(context, payload);
  return r !== undefined && r !== null && typeof r === "object" ? r : context;
}
"#;

fn js_failure(what: String) -> Error {
    Error::Invalid {
        input: format!("the machine definition: {what}"),
        expected: "guards and actions that compute from (context, payload) alone, without fetch, timers, Date.now() or Math.random()".into(),
    }
}

/// Runs the definition module's entry with `input` to its end in its evaluator (one realm per
/// definition, loaded once); a host call is an error (guards and actions are deterministic).
fn run_js(module: &Evaluator, input: Value) -> Result<Value> {
    module.call(&input).map_err(|e| match e {
        VmError::HostCall { kind, call } => js_failure(format!(
            "it made a host call ({kind}) while {}: {call}",
            input["op"].as_str().unwrap_or("running")
        )),
        other => js_failure(other.to_string()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry(seq: u64) -> LogEntry {
        LogEntry {
            seq,
            event: "E".into(),
            payload: json!(seq),
            state: "s".into(),
            context_hash: "h".into(),
        }
    }

    #[test]
    fn appends_are_dense_and_a_torn_tail_is_skipped_then_cut() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m/log.ndjson");
        let log = FileLog::open(&path).unwrap();
        log.append(&entry(1)).unwrap();
        let err = log.append(&entry(3)).unwrap_err().to_string();
        assert!(err.contains("next seq is 2"), "{err}");
        // a writer killed mid-line
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"seq\": 2, \"ev")
            .unwrap();
        assert_eq!(log.read_after(0).unwrap(), [entry(1)]);
        log.append(&entry(2)).unwrap();
        assert_eq!(log.read_after(0).unwrap(), [entry(1), entry(2)]);
        assert_eq!(log.read_after(1).unwrap(), [entry(2)]);
        assert_eq!(log.last_seq().unwrap(), 2);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        // a last line longer than the tail window that appends read
        let mut big = entry(3);
        big.payload = json!("x".repeat(100_000));
        log.append(&big).unwrap();
        log.append(&entry(4)).unwrap();
        assert!(log.append(&entry(4)).is_err());
        assert_eq!(log.read_after(2).unwrap(), [big, entry(4)]);
    }

    #[test]
    fn a_follower_reads_only_what_was_appended_since_its_last_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.ndjson");
        let writer = FileLog::open(&path).unwrap();
        let reader = FileLog::open(&path).unwrap();
        writer.append(&entry(1)).unwrap();
        assert_eq!(reader.read_after(0).unwrap(), [entry(1)]);
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(*reader.read_to.lock().unwrap(), (1, len));
        writer.append(&entry(2)).unwrap();
        writer.append(&entry(3)).unwrap();
        assert_eq!(reader.read_after(1).unwrap(), [entry(2), entry(3)]);
        assert_eq!(reader.read_after(3).unwrap(), []);
        // asking for something else reads the whole file
        assert_eq!(reader.read_after(1).unwrap(), [entry(2), entry(3)]);
    }
}

/// docs/fsm.md, whose Rust example (the coremachine Quick Start) runs as a doc test.
#[cfg(doctest)]
#[doc = include_str!("../../../docs/fsm.md")]
pub struct FsmGuide;
