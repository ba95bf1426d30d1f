//! External mode: the seed's `execute`/`resume` JSON contract.

/// Runs an `execute` request document; returns the response document.
pub fn execute_json(req: &str) -> String {
    req.to_owned()
}

/// Runs a `resume` request document; returns the response document.
pub fn resume_json(req: &str) -> String {
    req.to_owned()
}
