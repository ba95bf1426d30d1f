//! Re-launching the running test binary as a child process.
//!
//! A multi-process test is one `#[test]` function with two roles. Run normally, it is the
//! parent: it starts [`relaunch`]`(test, VAR, value)`, which runs this same binary with only
//! that test selected and `VAR=value` in the environment. In the child, [`role`]`(VAR)` returns
//! the value and the test does the child's part instead.
//!
//! ```no_run
//! use sequential_test_support::child;
//! # fn child_part(_: &str) {}
//! // #[test]
//! fn appends_survive_sigkill() {
//!     if let Some(path) = child::role("CRASH_CHILD") {
//!         return child_part(&path);
//!     }
//!     let mut c = child::relaunch(child::test_path(module_path!(), "appends_survive_sigkill"),
//!         "CRASH_CHILD", "/tmp/db")
//!         .stdout(std::process::Stdio::piped())
//!         .spawn()
//!         .unwrap();
//!     c.kill().unwrap();
//! }
//! ```

use std::process::Command;

/// The value of `var` when this process is a child started by [`relaunch`] with it.
pub fn role(var: &str) -> Option<String> {
    std::env::var(var).ok()
}

/// The libtest name of test `name` in the module whose `module_path!()` is `module`
/// (`it::crash` + `kills` → `crash::kills`: the test binary's crate name is not part of it).
pub fn test_path(module: &str, name: &str) -> String {
    match module.split_once("::") {
        Some((_, rest)) => format!("{rest}::{name}"),
        None => name.to_string(),
    }
}

/// A command that runs this test binary with only test `test` (its full libtest path) and
/// `var=value` set, its output not captured. Add stdio and spawn it.
pub fn relaunch(test: impl AsRef<str>, var: &str, value: &str) -> Command {
    let exe = std::env::current_exe().expect("the path of the running test binary");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test.as_ref(), "--nocapture", "--test-threads=1"])
        .env(var, value);
    cmd
}

/// The scheduling policy of every thread of process `pid`, with the thread's name (field 41 of
/// Linux's `/proc/PID/task/*/stat`: 0 is SCHED_OTHER, 3 SCHED_BATCH, 5 SCHED_IDLE); threads
/// that end while they are read are left out.
///
/// # Panics
/// When `/proc/PID/task` cannot be read (no such process, or not Linux).
pub fn thread_policies(pid: u32) -> Vec<(String, u32)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap_or_else(|e| panic!("reading /proc/{pid}/task: {e}"));
    let mut out = Vec::new();
    for task in tasks {
        let Ok(stat) = std::fs::read_to_string(task.unwrap().path().join("stat")) else {
            continue; // the thread ended meanwhile
        };
        let (head, rest) = stat.rsplit_once(')').unwrap();
        let name = head.split_once('(').unwrap().1.to_string();
        let policy = rest.split_whitespace().nth(38).unwrap().parse().unwrap();
        out.push((name, policy));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn test_paths_drop_the_crate_name() {
        assert_eq!(test_path("it::crash", "kills"), "crash::kills");
        assert_eq!(test_path("it", "kills"), "kills");
        assert_eq!(test_path("it::a::b", "c"), "a::b::c");
    }

    #[test]
    fn a_relaunched_child_sees_its_role() {
        if let Some(v) = role("TEST_SUPPORT_CHILD") {
            println!("child says {v}");
            return;
        }
        let out = relaunch(
            test_path(module_path!(), "a_relaunched_child_sees_its_role"),
            "TEST_SUPPORT_CHILD",
            "hello",
        )
        .output()
        .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}");
        assert!(stdout.contains("child says hello"), "{stdout}");
    }
}
