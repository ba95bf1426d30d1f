//! `fsm init | send | state | actions | history | fork | follow`: the append-only Machine (the
//! seed coremachine done right) from a shell. A log is a file (fsynced NDJSON, the definition
//! kept beside it in `<log>.definition.json`) or `store:NAME` in the configured storage (a
//! run's journal); every command replays the log with its definition, so several processes can
//! share one log: one appends at a time, the others follow.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use sequential_adaptor::StorageAdapter;
use sequential_tasker_engine::flow_graph::machine::{Change, LogEntry, MachineState};
use sequential_tasker_engine::flow_graph::{self, Definition, Machine, MachineLog};
use sequential_tasker_engine::machine::{FileLog, Source, StoreLog};
use serde::Serialize;
use serde_json::Value;

use super::Ctx;
use crate::error::{EXIT_RUN_FAILED, EXIT_USAGE, Reported, UserError, user};
use crate::files;
use crate::output::{Output, Render, table};
use crate::runs;

const LOG_HELP: &str =
    "A file path (NDJSON, created by `fsm init`) or store:NAME (in the configured storage)";

/// `fsm` arguments.
#[derive(Debug, Args)]
pub struct FsmArgs {
    #[command(subcommand)]
    pub action: FsmAction,
}

/// `fsm` subcommands.
#[derive(Debug, Subcommand)]
pub enum FsmAction {
    /// Create a machine log with its definition (JSON or a JavaScript createMachine module).
    #[command(after_help = "\
Examples:
  sequential-ecosystem fsm init cube.ndjson --definition cube.js
  sequential-ecosystem fsm init store:cube --definition cube.json --json

cube.js is written as coremachine's README writes it:
  createMachine({ initial: \"idle\", context: { counter: 0 },
    states: { idle: { on: { START: { target: \"running\", action: (ctx, n) => { ctx.counter = n; } } } },
              running: { on: { STOP: \"idle\" } } } });
(`import { createMachine } from \"coremachine\"` is accepted and ignored.) A .json definition writes
guards as predicates and actions as {\"assign\": {...}} templates; docs/fsm.md shows both.
The definition is checked first (initial and every target must name a state): a bad one
creates nothing. A file log keeps the definition in <log>.definition.json.")]
    Init {
        #[arg(help = LOG_HELP)]
        log: String,
        /// The definition: a .json or .js file.
        #[arg(long, value_name = "FILE")]
        definition: PathBuf,
    },
    /// Send an event (with an optional JSON payload): validated, appended, applied.
    #[command(after_help = "\
Examples:
  sequential-ecosystem fsm send cube.ndjson START 1
  sequential-ecosystem fsm send cube.ndjson INCREMENT
  sequential-ecosystem fsm send store:cube STOP '{\"final\": 3}' --json

Prints the new {seq, state, context}. An event the current state does not accept (no
transition, a failing guard or action) appends nothing and exits 2 with
{error, event, state, accepted: [...]} (on stdout with --json, on stderr otherwise).")]
    Send {
        #[arg(help = LOG_HELP)]
        log: String,
        /// The event's name.
        event: String,
        /// The payload: JSON, or @FILE (default: none, which an action sees as undefined).
        payload: Option<String>,
    },
    /// The current state and context.
    #[command(after_help = "\
Examples:
  sequential-ecosystem fsm state cube.ndjson
  sequential-ecosystem fsm state store:cube --json     # {\"seq\": 3, \"state\": \"idle\", \"context\": {...}}")]
    State {
        #[arg(help = LOG_HELP)]
        log: String,
    },
    /// The events the current state accepts, in definition order.
    #[command(after_help = "\
Examples:
  sequential-ecosystem fsm actions cube.ndjson
  sequential-ecosystem fsm actions cube.ndjson --json  # {\"state\": \"running\", \"accepted\": [\"INCREMENT\", \"STOP\"]}

A guard may still refuse one of them, depending on the payload.")]
    Actions {
        #[arg(help = LOG_HELP)]
        log: String,
    },
    /// Every record with the state and context after it; with --at, the machine after one
    /// record (read-only: nothing moves, nothing is cut).
    #[command(after_help = "\
Examples:
  sequential-ecosystem fsm history cube.ndjson
  sequential-ecosystem fsm history cube.ndjson --at 1 --json   # {\"seq\": 1, \"state\": ..., \"context\": ...}

Seq 0 is the initial state, before any record.")]
    History {
        #[arg(help = LOG_HELP)]
        log: String,
        /// Show the machine after this record (0: the initial state).
        #[arg(long, value_name = "SEQ")]
        at: Option<u64>,
    },
    /// Copy records 1..=SEQ (and the definition) into a new log; the original is unchanged.
    #[command(after_help = "\
Examples:
  sequential-ecosystem fsm fork cube.ndjson --at 2 cube-retry.ndjson
  sequential-ecosystem fsm fork store:cube --at 0 store:cube-fresh --json

History is never truncated in place: to go back, fork and continue on the new log.
The new log must not exist yet.")]
    Fork {
        #[arg(help = LOG_HELP)]
        log: String,
        /// The last record to copy (0: none, the initial state).
        #[arg(long, value_name = "SEQ")]
        at: u64,
        /// The new log: a file path or store:NAME.
        new_log: String,
    },
    /// Print each change as one NDJSON line {seq, event, payload, state, context}, including
    /// changes other processes make.
    #[command(after_help = "\
Examples:
  sequential-ecosystem fsm follow cube.ndjson                       # new changes, until Ctrl-C
  sequential-ecosystem fsm follow cube.ndjson --after 0 --count 3   # the first three changes
  sequential-ecosystem fsm follow store:cube --count 1 --timeout 30s

Without --after it starts at the current record. With --count it exits 0 after N lines; with
--timeout it stops after DUR (250ms, 2s, 5m), exiting 1 when --count was given and not
reached. Lines are NDJSON with or without --json.")]
    Follow {
        #[arg(help = LOG_HELP)]
        log: String,
        /// Start after this record (0: from the first).
        #[arg(long, value_name = "SEQ")]
        after: Option<u64>,
        /// Exit after this many changes.
        #[arg(long, value_name = "N")]
        count: Option<u64>,
        /// Stop after this long (250ms, 2s, 5m).
        #[arg(long, value_name = "DUR")]
        timeout: Option<String>,
    },
}

pub async fn run(ctx: &Ctx, args: FsmArgs) -> Result<()> {
    let action = args.action;
    let (first, second) = match &action {
        FsmAction::Fork { log, new_log, .. } => (log.as_str(), Some(new_log.as_str())),
        FsmAction::Init { log, .. }
        | FsmAction::Send { log, .. }
        | FsmAction::State { log }
        | FsmAction::Actions { log }
        | FsmAction::History { log, .. }
        | FsmAction::Follow { log, .. } => (log.as_str(), None),
    };
    let any_store =
        Target::parse(first).is_store() || second.is_some_and(|l| Target::parse(l).is_store());
    let creates = matches!(action, FsmAction::Init { .. } | FsmAction::Fork { .. });
    let store = if !any_store {
        None
    } else if creates {
        Some(ctx.storage(None).await?.adapter)
    } else {
        // read-only and send: never create a storage location
        let (choice, opened) = ctx.existing_storage().await?;
        let Some(opened) = opened else {
            return Err(user(
                format!(
                    "no machine {first}: the configured storage ({}) does not exist yet",
                    choice.url
                ),
                format!("create it with `sequential-ecosystem fsm init {first} --definition FILE`"),
            ));
        };
        Some(opened.adapter)
    };
    let env = Env {
        store,
        rt: tokio::runtime::Handle::current(),
        out: ctx.out,
        json: ctx.json,
    };
    tokio::task::spawn_blocking(move || env.run(action))
        .await
        .map_err(|e| anyhow::anyhow!("the fsm command panicked: {e}"))?
}

/// What a `<log>` argument names.
enum Target {
    File(PathBuf),
    Store(String),
}

impl Target {
    fn parse(raw: &str) -> Target {
        match raw.strip_prefix("store:") {
            Some(name) => Target::Store(name.to_string()),
            None => Target::File(PathBuf::from(raw)),
        }
    }

    fn is_store(&self) -> bool {
        matches!(self, Target::Store(_))
    }
}

/// A file log or a storage log.
#[derive(Debug)]
enum AnyLog {
    File(FileLog),
    Store(StoreLog),
}

impl MachineLog for AnyLog {
    fn append(&self, entry: &LogEntry) -> flow_graph::Result<()> {
        match self {
            AnyLog::File(l) => l.append(entry),
            AnyLog::Store(l) => l.append(entry),
        }
    }

    fn read_after(&self, after: u64) -> flow_graph::Result<Vec<LogEntry>> {
        match self {
            AnyLog::File(l) => l.read_after(after),
            AnyLog::Store(l) => l.read_after(after),
        }
    }

    fn last_seq(&self) -> flow_graph::Result<u64> {
        match self {
            AnyLog::File(l) => l.last_seq(),
            AnyLog::Store(l) => l.last_seq(),
        }
    }
}

/// What the blocking half of a command has: the storage (for store: logs), the runtime to
/// reach it, and the output.
struct Env {
    store: Option<Arc<dyn StorageAdapter>>,
    rt: tokio::runtime::Handle,
    out: Output,
    json: bool,
}

impl Env {
    fn run(self, action: FsmAction) -> Result<()> {
        match action {
            FsmAction::Init { log, definition } => self.init(&log, &definition),
            FsmAction::Send {
                log,
                event,
                payload,
            } => self.send(&log, &event, payload.as_deref()),
            FsmAction::State { log } => {
                let m = self.open(&log)?;
                self.out.print(&StateOut::of(m.current()))
            }
            FsmAction::Actions { log } => {
                let m = self.open(&log)?;
                self.out.print(&ActionsOut {
                    state: m.state().to_string(),
                    accepted: m
                        .available_actions()
                        .into_iter()
                        .map(String::from)
                        .collect(),
                })
            }
            FsmAction::History { log, at } => self.history(&log, at),
            FsmAction::Fork { log, at, new_log } => self.fork(&log, at, &new_log),
            FsmAction::Follow {
                log,
                after,
                count,
                timeout,
            } => self.follow(&log, after, count, timeout.as_deref()),
        }
    }

    fn store(&self) -> Arc<dyn StorageAdapter> {
        self.store
            .clone()
            .expect("the storage is opened for every store: log")
    }

    /// Opens an existing log with the definition kept beside it.
    fn open(&self, raw: &str) -> Result<Machine<AnyLog>> {
        let (log, source) = match Target::parse(raw) {
            Target::File(path) => {
                if !path.is_file() {
                    return Err(user(
                        format!("no machine log at {}", files::show(&path)),
                        format!(
                            "create one with `sequential-ecosystem fsm init {raw} --definition FILE` (FILE: .json or .js)"
                        ),
                    ));
                }
                let log = FileLog::open(&path).map_err(machine_err)?;
                let Some(source) = log.load_source().map_err(machine_err)? else {
                    return Err(user(
                        format!(
                            "{} has no definition beside it ({} is missing)",
                            files::show(&path),
                            files::show(&log.source_path())
                        ),
                        "a machine log is made with `sequential-ecosystem fsm init LOG --definition FILE`",
                    ));
                };
                (AnyLog::File(log), source)
            }
            Target::Store(name) => {
                let (log, source) = self
                    .rt
                    .block_on(StoreLog::open(self.store(), &name))
                    .map_err(machine_err)?;
                (AnyLog::Store(log), source)
            }
        };
        let def = source
            .definition()
            .map_err(machine_err)
            .with_context(|| format!("the definition of {raw}"))?;
        Machine::open(def, log)
            .map_err(machine_err)
            .with_context(|| format!("replaying {raw}"))
    }

    /// Creates an empty log holding `source`; an existing log is refused, untouched.
    fn create(&self, raw: &str, source: &Source) -> Result<AnyLog> {
        Ok(match Target::parse(raw) {
            Target::File(path) => {
                let log = FileLog::open(&path).map_err(machine_err)?;
                if log.last_seq().map_err(machine_err)? != 0 || log.source_path().exists() {
                    return Err(user(
                        format!("{} is already a machine log", files::show(&path)),
                        "pick a new path (or `fsm fork` it to start over from a record)",
                    ));
                }
                log.save_source(source).map_err(machine_err)?;
                AnyLog::File(log)
            }
            Target::Store(name) => AnyLog::Store(
                self.rt
                    .block_on(StoreLog::create(self.store(), &name, source))
                    .map_err(machine_err)?,
            ),
        })
    }

    fn init(&self, raw: &str, definition: &Path) -> Result<()> {
        let source = Source::read(definition).map_err(machine_err)?;
        // checked before anything is created
        let def: Definition = source
            .definition()
            .map_err(machine_err)
            .with_context(|| format!("definition {}", files::show(definition)))?;
        let log = self.create(raw, &source)?;
        let m = Machine::open(def, log).map_err(machine_err)?;
        self.out.print(&StateOut::of(m.current()))
    }

    fn send(&self, raw: &str, event: &str, payload: Option<&str>) -> Result<()> {
        let payload = match payload {
            Some(p) => runs::read_json_arg("PAYLOAD", p)?,
            None => Value::Null,
        };
        let mut m = self.open(raw)?;
        // another process may append between our replay and our append: catch up and retry
        for _ in 0..20 {
            match m.action(event, payload.clone()) {
                Ok(_) => return self.out.print(&StateOut::of(m.current())),
                Err(flow_graph::Error::Conflict { .. }) => {
                    m.sync().map_err(machine_err)?;
                }
                Err(flow_graph::Error::Rejected {
                    event,
                    state,
                    reason,
                    accepted,
                }) => return self.rejected(&event, &state, &reason, accepted),
                Err(e) => return Err(machine_err(e)),
            }
        }
        Err(user(
            format!("{raw}: other writers kept appending first; event {event} was not sent"),
            "send it again",
        ))
    }

    fn rejected(
        &self,
        event: &str,
        state: &str,
        reason: &str,
        accepted: Vec<String>,
    ) -> Result<()> {
        let error = format!("event {event:?} rejected in state {state:?}: {reason}");
        if self.json {
            #[derive(Serialize)]
            struct Rejected<'a> {
                error: &'a str,
                event: &'a str,
                state: &'a str,
                accepted: &'a [String],
            }
            let doc = serde_json::to_string_pretty(&Rejected {
                error: &error,
                event,
                state,
                accepted: &accepted,
            })?;
            println!("{doc}");
            return Err(Reported(EXIT_USAGE).into());
        }
        let hint = if accepted.is_empty() {
            format!("state {state} accepts no event")
        } else {
            format!("state {state} accepts: {}", accepted.join(", "))
        };
        Err(UserError::new(error).hint(hint).into())
    }

    fn history(&self, raw: &str, at: Option<u64>) -> Result<()> {
        let m = self.open(raw)?;
        if let Some(at) = at {
            let mut cursor = m.cursor();
            let st = cursor.at(at).map_err(|e| {
                user(
                    format!("--at {at}: {e}"),
                    format!("{raw} holds records 1 to {}", m.seq()),
                )
            })?;
            return self.out.print(&StateOut::of(st));
        }
        let changes = changes_after(&m, 0)?;
        self.out.print(&HistoryOut(changes))
    }

    fn fork(&self, raw: &str, at: u64, new_raw: &str) -> Result<()> {
        let m = self.open(raw)?;
        if at > m.seq() {
            return Err(user(
                format!("--at {at}: {raw} holds records 1 to {}", m.seq()),
                format!("a seq from 0 to {}", m.seq()),
            ));
        }
        let source = match m.log() {
            AnyLog::File(l) => l.load_source().map_err(machine_err)?,
            AnyLog::Store(l) => Some(
                self.rt
                    .block_on(StoreLog::open(self.store(), l.name()))
                    .map_err(machine_err)?
                    .1,
            ),
        }
        .context("the definition of the log being forked")?;
        let into = self.create(new_raw, &source)?;
        let forked = m.fork(at, into).map_err(machine_err)?;
        self.out.print(&ForkOut {
            from: raw.to_string(),
            at,
            log: new_raw.to_string(),
            seq: forked.seq(),
            state: forked.state().to_string(),
            context: forked.context().clone(),
        })
    }

    fn follow(
        &self,
        raw: &str,
        after: Option<u64>,
        count: Option<u64>,
        timeout: Option<&str>,
    ) -> Result<()> {
        let timeout = timeout
            .map(|t| {
                sequential_support::duration::parse(t).map_err(|e| {
                    user(
                        format!("--timeout {t:?}: {e}"),
                        "a duration such as 250ms, 2s, 5m or 1h",
                    )
                })
            })
            .transpose()?;
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut m = self.open(raw)?;
        let start = after.unwrap_or(m.seq());
        let mut seen = 0u64;
        let mut emit = |c: &Change| -> Result<bool> {
            if c.seq <= start {
                return Ok(false);
            }
            let line = serde_json::to_string(c)?; // {seq, event, payload, state, context}
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(true);
                }
                return Err(e).context("writing to stdout");
            }
            seen += 1;
            Ok(count.is_some_and(|n| seen >= n))
        };
        for c in changes_after(&m, start.min(m.seq()))? {
            if emit(&c)? {
                return Ok(());
            }
        }
        if count == Some(0) {
            return Ok(());
        }
        loop {
            for c in m.sync().map_err(machine_err)? {
                if emit(&c)? {
                    return Ok(());
                }
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return match count {
                    Some(n) => Err(UserError::new(format!(
                        "fsm follow {raw}: {seen} of {n} changes within --timeout"
                    ))
                    .hint("wait longer (--timeout), or check that something sends events")
                    .with_code(EXIT_RUN_FAILED)
                    .into()),
                    None => Ok(()),
                };
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// The records after `after` with the state and context each led to.
fn changes_after(m: &Machine<AnyLog>, after: u64) -> Result<Vec<Change>> {
    let mut cursor = m.cursor();
    let mut out = Vec::new();
    for e in m.log().read_after(after).map_err(machine_err)? {
        if e.seq > m.seq() {
            break; // appended since the replay; the next sync reports it
        }
        let st = cursor.at(e.seq).map_err(machine_err)?;
        out.push(Change {
            seq: e.seq,
            event: e.event,
            payload: e.payload,
            state: st.state.clone(),
            context: st.context.clone(),
        });
    }
    Ok(out)
}

/// A machine error for the user: bad input (exit 2) names what would be valid.
fn machine_err(e: flow_graph::Error) -> anyhow::Error {
    let hint = match &e {
        flow_graph::Error::Graph { .. } | flow_graph::Error::Invalid { .. } => {
            "docs/fsm.md shows a definition in JSON and in JavaScript"
        }
        flow_graph::Error::Diverged { .. } => {
            "the log was written with another definition; fork it or start a new log"
        }
        flow_graph::Error::Conflict { .. } => "read the current state again and retry",
        _ => "run again with DEBUG=1 for details",
    };
    UserError::new(e.to_string()).hint(hint).into()
}

/// `{seq, state, context}`.
#[derive(Debug, Serialize)]
struct StateOut {
    seq: u64,
    state: String,
    context: Value,
}

impl StateOut {
    fn of(st: &MachineState) -> StateOut {
        StateOut {
            seq: st.seq,
            state: st.state.clone(),
            context: st.context.clone(),
        }
    }
}

impl Render for StateOut {
    fn text(&self) -> String {
        format!("{} {} (seq {})\n", self.state, self.context, self.seq)
    }
}

#[derive(Debug, Serialize)]
struct ActionsOut {
    state: String,
    accepted: Vec<String>,
}

impl Render for ActionsOut {
    fn text(&self) -> String {
        if self.accepted.is_empty() {
            return format!("{}: accepts no event\n", self.state);
        }
        format!("{}: {}\n", self.state, self.accepted.join(", "))
    }
}

#[derive(Debug, Serialize)]
#[serde(transparent)]
struct HistoryOut(Vec<Change>);

impl Render for HistoryOut {
    fn text(&self) -> String {
        let mut rows = vec![vec![
            "SEQ".to_string(),
            "EVENT".into(),
            "PAYLOAD".into(),
            "STATE".into(),
            "CONTEXT".into(),
        ]];
        for c in &self.0 {
            rows.push(vec![
                c.seq.to_string(),
                c.event.clone(),
                c.payload.to_string(),
                c.state.clone(),
                c.context.to_string(),
            ]);
        }
        if self.0.is_empty() {
            return "no records (the machine is in its initial state)\n".into();
        }
        table(&rows)
    }
}

#[derive(Debug, Serialize)]
struct ForkOut {
    from: String,
    at: u64,
    log: String,
    seq: u64,
    state: String,
    context: Value,
}

impl Render for ForkOut {
    fn text(&self) -> String {
        format!(
            "forked {} at seq {} into {}: {} {}\n",
            self.from, self.at, self.log, self.state, self.context
        )
    }
}
