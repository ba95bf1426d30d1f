//! The `sequential-machine` binary: the same code as `sequential-ecosystem machine`.

fn main() -> std::process::ExitCode {
    sequential_ecosystem::main_machine()
}
