//! Integration tests of sequential-adaptor-sqlite: the conformance suite on a file and in
//! memory, refusal of foreign and newer files, the factory's URLs, and claims across processes.

mod bad_input;
mod conformance_file;
mod conformance_memory;
mod factory;
mod group_commit;
mod long_journal;
mod migration;
mod processes;
mod stamp;
