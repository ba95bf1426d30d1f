//! Integration tests of sequential-adaptor-postgres, each in a schema of its own (created and
//! dropped by the test) so they run in parallel: the conformance suite with the SIGKILL case,
//! migrations under concurrent opens, the connection errors users meet, wake-ups through
//! LISTEN/NOTIFY, idempotent starts across processes, and appends of many runs sharing one
//! statement (group commit) while each is decided on its own.
//!
//! The server is `DATABASE_URL_TEST` or `postgres://postgres@127.0.0.1:5432/test`. Without one,
//! every test prints one skip line and passes — unless `REQUIRE_POSTGRES=1`, where that fails.

mod conformance;
mod errors;
mod group_commit;
mod import;
mod migrations;
mod notify;
mod plans;
mod pool;
mod processes;
mod support;
