//! Integration tests of sequential-fetch-vm: every scenario runs hot and cold.

mod data;
mod durations;
mod errors;
mod evaluator;
mod external;
mod harness;
mod isolation;
mod module;
mod pool;
mod script;
