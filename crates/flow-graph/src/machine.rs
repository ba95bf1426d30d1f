//! `Machine`: the append-only state machine of the seed coremachine, done right. An event is
//! validated, then appended to a log, then applied; a rejected event appends nothing; history
//! is read through a cursor and forked into a new log, never truncated.

use std::sync::mpsc;

use serde::Serialize;
use serde_json::{Value, json};

use crate::error::{Error, Result};

mod definition;
mod log;

pub use definition::{Definition, Transition};
pub use log::{LogEntry, MachineLog, MemoryLog, context_hash};

/// Where a machine stands after record `seq` (0: the initial state, before any record).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MachineState {
    /// The last record applied (0 before the first).
    pub seq: u64,
    /// The state.
    pub state: String,
    /// The context.
    pub context: Value,
}

/// One change, as [`Machine::subscribe`] delivers it: `{seq, event, payload, state, context}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// The record's seq.
    pub seq: u64,
    /// The event.
    pub event: String,
    /// Its payload.
    pub payload: Value,
    /// The state after it.
    pub state: String,
    /// The context after it.
    pub context: Value,
}

/// An event that passed validation: the record to append and the state it leads to.
#[derive(Debug, Clone, PartialEq)]
pub struct Prepared {
    /// The record to append.
    pub entry: LogEntry,
    /// The context after it.
    pub context: Value,
}

/// A state machine over a log (see the crate docs for an example).
#[derive(Debug)]
pub struct Machine<L: MachineLog> {
    def: Definition,
    log: L,
    /// `history[n]` is the machine after record n (0: initial).
    history: Vec<MachineState>,
    subscribers: Vec<mpsc::Sender<Change>>,
}

impl<L: MachineLog> Machine<L> {
    /// Opens a machine on `log`: validates the definition, then replays every record (each
    /// must be accepted by the definition and give the recorded state and context hash, or
    /// the error is [`Error::Diverged`]).
    pub fn open(def: Definition, log: L) -> Result<Machine<L>> {
        def.validate()?;
        let initial = MachineState {
            seq: 0,
            state: def.initial.clone(),
            context: def.context.clone(),
        };
        let mut m = Machine {
            def,
            log,
            history: vec![initial],
            subscribers: Vec::new(),
        };
        m.sync()?;
        Ok(m)
    }

    /// The current state's name.
    pub fn state(&self) -> &str {
        &self.current().state
    }

    /// The current context.
    pub fn context(&self) -> &Value {
        &self.current().context
    }

    /// The last record applied (0 when none).
    pub fn seq(&self) -> u64 {
        self.current().seq
    }

    /// The current state, context and seq.
    pub fn current(&self) -> &MachineState {
        self.history
            .last()
            .expect("history starts with the initial state")
    }

    /// `true` when the log holds no record.
    pub fn is_empty(&self) -> bool {
        self.seq() == 0
    }

    /// The events the current state accepts, in definition order (a guard may still reject
    /// one, depending on its payload).
    pub fn available_actions(&self) -> Vec<&str> {
        self.def.events(self.state())
    }

    /// The definition.
    pub fn definition(&self) -> &Definition {
        &self.def
    }

    /// The log.
    pub fn log(&self) -> &L {
        &self.log
    }

    /// Validates `event` with `payload` against the current state without appending: the
    /// record it would append, or [`Error::Rejected`] listing the accepted events.
    pub fn prepare(&self, event: &str, payload: Value) -> Result<Prepared> {
        let cur = self.current();
        let (context, state) = step(&self.def, cur, event, &payload)?;
        Ok(Prepared {
            entry: LogEntry {
                seq: cur.seq + 1,
                event: event.to_string(),
                payload,
                state,
                context_hash: context_hash(&context),
            },
            context,
        })
    }

    /// Sends an event: validates, appends to the log, then applies, and returns the new state
    /// and context. A rejected event (no transition, a failed guard, a failing action) is
    /// [`Error::Rejected`] and appends nothing; a lost race with another writer is
    /// [`Error::Conflict`] (call [`Machine::sync`] and send again).
    pub fn action(&mut self, event: &str, payload: Value) -> Result<&MachineState> {
        let p = self.prepare(event, payload)?;
        self.log.append(&p.entry)?;
        self.apply(p.entry, p.context);
        Ok(self.current())
    }

    /// Applies the records other writers appended since the last one seen, returning them as
    /// changes (which subscribers also receive).
    pub fn sync(&mut self) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        for entry in self.log.read_after(self.seq())? {
            let cur = self.current();
            let diverged = |problem: String| Error::Diverged {
                seq: entry.seq,
                problem,
            };
            if entry.seq != cur.seq + 1 {
                return Err(diverged(format!(
                    "expected seq {}, found {}",
                    cur.seq + 1,
                    entry.seq
                )));
            }
            let (context, state) = step(&self.def, cur, &entry.event, &entry.payload)
                .map_err(|e| diverged(e.to_string()))?;
            if state != entry.state {
                return Err(diverged(format!(
                    "the definition leads to state {state:?}, the log recorded {:?}",
                    entry.state
                )));
            }
            let hash = context_hash(&context);
            if hash != entry.context_hash {
                return Err(diverged(format!(
                    "the definition gives context hash {hash}, the log recorded {}",
                    entry.context_hash
                )));
            }
            changes.push(self.apply(entry, context));
        }
        Ok(changes)
    }

    /// A channel that receives every change from now on (made here or found by
    /// [`Machine::sync`]).
    pub fn subscribe(&mut self) -> mpsc::Receiver<Change> {
        let (tx, rx) = mpsc::channel();
        self.subscribers.push(tx);
        rx
    }

    /// A read-only cursor over the history, at the current record.
    pub fn cursor(&self) -> Cursor<'_> {
        Cursor {
            history: &self.history,
            pos: self.history.len() - 1,
        }
    }

    /// A new machine on `into` (which must be empty) holding records 1..=`at` of this one.
    /// This machine and its log are unchanged: history is never truncated in place.
    pub fn fork<M: MachineLog>(&self, at: u64, into: M) -> Result<Machine<M>> {
        if at > self.seq() {
            return Err(Error::invalid(
                format!("fork at seq {at}"),
                format!("a seq from 0 to {}", self.seq()),
            ));
        }
        let existing = into.last_seq()?;
        if existing != 0 {
            return Err(Error::Conflict {
                what: format!(
                    "the log to fork into already holds {existing} records; expected an empty log"
                ),
            });
        }
        for e in self
            .log
            .read_after(0)?
            .into_iter()
            .take_while(|e| e.seq <= at)
        {
            into.append(&e)?;
        }
        Machine::open(self.def.clone(), into)
    }

    fn apply(&mut self, entry: LogEntry, context: Value) -> Change {
        let change = Change {
            seq: entry.seq,
            event: entry.event,
            payload: entry.payload,
            state: entry.state,
            context,
        };
        self.history.push(MachineState {
            seq: change.seq,
            state: change.state.clone(),
            context: change.context.clone(),
        });
        self.subscribers
            .retain(|tx| tx.send(change.clone()).is_ok());
        change
    }
}

/// The transition of `event` from `cur`: the next context and state, or why it is rejected.
fn step(
    def: &Definition,
    cur: &MachineState,
    event: &str,
    payload: &Value,
) -> Result<(Value, String)> {
    let accepted = || {
        def.events(&cur.state)
            .into_iter()
            .map(String::from)
            .collect()
    };
    let reject = |reason: String| Error::Rejected {
        event: event.to_string(),
        state: cur.state.clone(),
        reason,
        accepted: accepted(),
    };
    let Some(t) = def
        .transitions(&cur.state)
        .and_then(|on| on.iter().find(|(e, _)| e == event))
        .map(|(_, t)| t)
    else {
        return Err(reject(format!(
            "state {:?} has no transition for it",
            cur.state
        )));
    };
    let scope =
        || json!({"context": cur.context, "payload": payload, "event": event, "state": cur.state});
    if !t.admits(&cur.context, payload, scope) {
        return Err(reject("its guard does not hold for this payload".into()));
    }
    let next = t
        .apply(&cur.context, payload, scope)
        .map_err(|e| reject(format!("its action failed: {e}")))?;
    Ok((next, t.target().to_string()))
}

/// A read-only view of a machine's history that moves without changing the machine.
#[derive(Debug, Clone)]
pub struct Cursor<'m> {
    history: &'m [MachineState],
    pos: usize,
}

impl<'m> Cursor<'m> {
    /// Where the cursor is.
    pub fn current(&self) -> &'m MachineState {
        &self.history[self.pos]
    }

    /// One record back; `None` (staying put) at the initial state.
    pub fn backward(&mut self) -> Option<&'m MachineState> {
        self.pos = self.pos.checked_sub(1)?;
        Some(self.current())
    }

    /// One record forward; `None` (staying put) at the newest.
    pub fn forward(&mut self) -> Option<&'m MachineState> {
        if self.pos + 1 >= self.history.len() {
            return None;
        }
        self.pos += 1;
        Some(self.current())
    }

    /// Moves to the machine after record `seq` (0: the initial state).
    pub fn at(&mut self, seq: u64) -> Result<&'m MachineState> {
        let last = self.history.len() as u64 - 1;
        if seq > last {
            return Err(Error::invalid(
                format!("seq {seq}"),
                format!("a seq from 0 to {last}"),
            ));
        }
        self.pos = seq as usize;
        Ok(self.current())
    }
}
