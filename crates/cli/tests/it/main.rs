//! Integration tests: the real `sequential-ecosystem` binary in a temporary directory.

mod bad_input;
mod cli_reference;
mod config;
mod console;
mod crash;
mod examples;
mod fsm;
mod graph;
mod help;
mod host_api_docs;
mod machine;
mod policy;
mod postgres;
mod remote;
mod run_bad_input;
mod runs;
mod serve;
mod serve_events;
mod serve_graph;
mod serve_postgres;
mod serve_signal;
mod sync;
mod tasks;
mod util;
mod vm;
mod worker;
