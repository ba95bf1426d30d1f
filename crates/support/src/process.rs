//! This host's name, whether a process is still alive, and the scheduling policies of a
//! throughput process and of its background threads.

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

/// Puts the calling thread, and every thread it starts afterwards, under Linux's `SCHED_BATCH`
/// policy (same priority and share of the CPU, but a woken thread does not preempt the one
/// running): for a process whose threads hand work to one another at every step, as an engine
/// worker's do, each hand-over then costs one switch less. Call it before the threads are
/// started (a Tokio runtime's included). Elsewhere than Linux it does nothing.
///
/// Measured on the engine benchmark's worker (2 cores, four interleaved pairs): 9% less CPU per
/// ten-step run and 5% more runs per second (docs/benchmarks.md).
pub fn batch_scheduling() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param` for SCHED_BATCH (priority 0); pid 0 is the
        // calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Puts the calling thread under Linux's `SCHED_IDLE` policy: it runs only when no other
/// thread of the machine wants a core (and keeps a sliver of time when they always do), so the
/// work it does that nobody waits for fills the cores' idle moments instead of taking turns with
/// the work that is waited for. A thread cannot leave that policy again without privileges.
/// Elsewhere than Linux it does nothing.
pub fn idle_scheduling() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: `param` is a valid `sched_param` for SCHED_IDLE (priority 0); pid 0 is the
        // calling thread.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
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
