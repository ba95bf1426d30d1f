//! The `sequential-ecosystem` binary (everything lives in the library, see `lib.rs`).

fn main() -> std::process::ExitCode {
    sequential_ecosystem::main_ecosystem()
}
