//! Findings of graph validation: an error or warning at a JSON pointer, saying what is valid.

use std::fmt;

/// How serious a [`Diagnostic`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The graph cannot run.
    Error,
    /// The graph runs, but something deserves a look (legacy keys, eventless cycles).
    Warning,
}

/// One finding of [`check`](crate::check): where (`pointer`), what, and what would be valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The JSON pointer of the offending value (`/states/charge/retry/1/errors`); `/` for the
    /// whole document.
    pub pointer: String,
    /// What is wrong, naming the offending input.
    pub message: String,
    /// What would have been valid, or the canonical rewrite of a legacy key.
    pub expected: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let level = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(
            f,
            "{level} at {}: {}; expected {}",
            self.pointer, self.message, self.expected
        )
    }
}

/// Everything [`check`](crate::check) found, errors first in document order, then warnings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// All findings.
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    /// The errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
    }

    /// The warnings.
    pub fn warnings(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Warning)
    }

    /// `true` when there is no error (warnings allowed).
    pub fn is_ok(&self) -> bool {
        self.errors().next().is_none()
    }
}

/// Collects diagnostics while a graph is read.
#[derive(Debug, Default)]
pub(crate) struct Sink {
    pub(crate) items: Vec<Diagnostic>,
}

impl Sink {
    pub(crate) fn error(
        &mut self,
        pointer: &crate::json::Ptr,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.push(Severity::Error, pointer, message, expected);
    }

    pub(crate) fn warn(
        &mut self,
        pointer: &crate::json::Ptr,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.push(Severity::Warning, pointer, message, expected);
    }

    fn push(
        &mut self,
        severity: Severity,
        pointer: &crate::json::Ptr,
        message: impl Into<String>,
        expected: impl Into<String>,
    ) {
        self.items.push(Diagnostic {
            severity,
            pointer: pointer.to_string(),
            message: message.into(),
            expected: expected.into(),
        });
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.items.iter().any(|d| d.severity == Severity::Error)
    }
}
