//! The reserved `flow.*` error names (S5): catchable ones, and the terminal ones that are never
//! caught or retried. User error names may not start with `flow.`.

/// A task or child ran past its `timeout`.
pub const TIMEOUT: &str = "flow.Timeout";
/// A choice state with no matching choice and no `default`.
pub const NO_CHOICE_MATCHED: &str = "flow.NoChoiceMatched";
/// A handler outcome (or a legacy `onSuccess`/`onFail` choice) with no transition.
pub const NO_TRANSITION: &str = "flow.NoTransition";
/// Matches any branch failure of a parallel state (the error keeps the branch's own name).
pub const BRANCH_FAILED: &str = "flow.BranchFailed";
/// A map state had more failed items than it tolerates.
pub const TOLERATED_FAILURE_EXCEEDED: &str = "flow.ToleratedFailureExceeded";
/// A `task:` child run failed (the child's error is the cause).
pub const CHILD_FAILED: &str = "flow.ChildFailed";
/// A selector resolved to nothing.
pub const INPUT_TEMPLATE: &str = "flow.InputTemplate";
/// A value that cannot be journaled as JSON.
pub const NOT_SERIALIZABLE: &str = "flow.NotSerializable";
/// The run was cancelled (terminal).
pub const CANCELLED: &str = "flow.Cancelled";
/// Too many eventless steps or transitions (terminal).
pub const LOOP_LIMIT: &str = "flow.LoopLimit";

/// Every catchable reserved error.
pub const CATCHABLE: [&str; 8] = [
    TIMEOUT,
    NO_CHOICE_MATCHED,
    NO_TRANSITION,
    BRANCH_FAILED,
    TOLERATED_FAILURE_EXCEEDED,
    CHILD_FAILED,
    INPUT_TEMPLATE,
    NOT_SERIALIZABLE,
];

/// The terminal reserved errors: never caught, never retried.
pub const TERMINAL: [&str; 2] = [CANCELLED, LOOP_LIMIT];

/// `true` for `flow.Cancelled` and `flow.LoopLimit`.
pub fn is_terminal(name: &str) -> bool {
    TERMINAL.contains(&name)
}
