//! `--help` works for every command and shows an example; usage errors exit 2.

use crate::util::Sandbox;

#[test]
fn help_of_every_command_has_an_example() {
    let sb = Sandbox::new();
    let commands: [&[&str]; 26] = [
        &[],
        &["init"],
        &["create-task"],
        &["list"],
        &["describe"],
        &["delete"],
        &["config"],
        &["config", "show"],
        &["config", "get"],
        &["config", "set"],
        &["sync-tasks"],
        &["run"],
        &["resume"],
        &["signal"],
        &["cancel"],
        &["kill"],
        &["rerun"],
        &["show"],
        &["history"],
        &["worker"],
        &["prune"],
        &["vm"],
        &["vm", "execute"],
        &["vm", "resume"],
        &["machine"],
        &["machine", "run"],
    ];
    for command in commands {
        let mut args = command.to_vec();
        args.push("--help");
        sb.run(&args)
            .ok()
            .stdout_has("Usage: sequential-ecosystem")
            .stdout_has("Example")
            .stdout_has("sequential-ecosystem ");
    }
    assert!(sb.ls(".").is_empty(), "--help must not create files");
}

#[test]
fn unknown_command_is_a_usage_error_with_exit_2() {
    let sb = Sandbox::new();
    sb.run(&["frobnicate"]).code(2).stderr_has("error:");
}

#[test]
fn missing_argument_is_a_usage_error_with_exit_2() {
    let sb = Sandbox::new();
    sb.run(&["create-task"]).code(2).stderr_has("<NAME>");
    sb.run(&["config", "set", "only-key"]).code(2);
}

#[test]
fn version_prints_the_package_version() {
    let sb = Sandbox::new();
    sb.run(&["--version"])
        .ok()
        .stdout_has(env!("CARGO_PKG_VERSION"));
}
