//! The one error type of flow-graph: each variant names the offending input and what is valid.

use crate::diag::Diagnostic;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong. Every message names the input and what would have been valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A graph.json (or a machine definition) failed validation; one entry per problem, each at
    /// a JSON pointer.
    #[error("{}", list(.errors))]
    Graph {
        /// The errors, in document order.
        errors: Vec<Diagnostic>,
    },
    /// Bad input that is not a graph document: a selector, a predicate, a stored record, a fact.
    #[error("invalid {input}: expected {expected}")]
    Invalid {
        /// The offending input, quoted as given.
        input: String,
        /// What would have been valid.
        expected: String,
    },
    /// A journal record does not follow from the records before it (a damaged journal, or a
    /// journal of another graph).
    #[error("journal record {index} ({kind}) does not fit the journal before it: {problem}")]
    Journal {
        /// 0-based position among the graph records.
        index: usize,
        /// The record's kind.
        kind: String,
        /// What does not fit.
        problem: String,
    },
    /// A fact arrived for a run that has ended (an event sent to a finished run).
    #[error("{fact} cannot be applied: the run has {status}; expected a running run")]
    RunEnded {
        /// The fact, described.
        fact: String,
        /// `succeeded`, `failed` or `cancelled`.
        status: String,
    },
    /// A machine event the current state does not accept (no transition, a failed guard or a
    /// failing action). Nothing was appended.
    #[error("event {event:?} rejected in state {state:?}: {reason}; accepted: {}", accepted_list(.accepted))]
    Rejected {
        /// The event sent.
        event: String,
        /// The machine's state.
        state: String,
        /// Why it was rejected.
        reason: String,
        /// The events the current state accepts, in definition order.
        accepted: Vec<String>,
    },
    /// A machine log that the definition does not reproduce (another definition wrote it).
    #[error("machine log diverges from the definition at seq {seq}: {problem}")]
    Diverged {
        /// The first record that does not replay.
        seq: u64,
        /// What differs (both values named).
        problem: String,
    },
    /// An append lost a race: another writer appended first.
    #[error("conflict: {what}")]
    Conflict {
        /// What conflicts with what.
        what: String,
    },
    /// A machine log implementation failed (I/O of a file or database log).
    #[error("{context}: {source}")]
    Log {
        /// What the log was doing.
        context: String,
        /// The underlying error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    pub(crate) fn invalid(input: impl Into<String>, expected: impl Into<String>) -> Error {
        Error::Invalid {
            input: input.into(),
            expected: expected.into(),
        }
    }
}

fn list(errors: &[Diagnostic]) -> String {
    let mut s = format!(
        "invalid graph: {} error{}",
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
    }
    s
}

fn accepted_list(accepted: &[String]) -> String {
    if accepted.is_empty() {
        "none (the state has no transitions)".to_string()
    } else {
        accepted.join(", ")
    }
}
