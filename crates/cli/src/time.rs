//! RFC 3339 timestamps (UTC, second precision) for `meta.json` and text output, from
//! `sequential-support`.

pub use sequential_support::time::rfc3339_seconds as rfc3339;
