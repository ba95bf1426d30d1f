//! This host's name and whether a process is still alive.

/// This host's name (`localhost` when the system has none).
pub fn hostname() -> String {
    let name = gethostname::gethostname()
        .to_string_lossy()
        .trim()
        .to_string();
    if name.is_empty() {
        "localhost".into()
    } else {
        name
    }
}

/// `true` when no process with `pid` exists on this host.
pub fn pid_is_dead(pid: i32) -> bool {
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists; it sends nothing.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_lives_and_a_huge_pid_does_not() {
        assert!(!pid_is_dead(std::process::id() as i32));
        assert!(pid_is_dead(999_999_999));
        assert!(!pid_is_dead(0), "pid 0 is never judged dead");
        assert!(!hostname().is_empty());
    }
}
