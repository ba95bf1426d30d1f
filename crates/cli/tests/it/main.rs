//! Integration tests: the real `sequential-ecosystem` binary in a temporary directory.

mod bad_input;
mod config;
mod help;
mod policy;
mod sync;
mod tasks;
mod util;
