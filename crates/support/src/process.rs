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
    return own_policy(libc::SCHED_BATCH);
    #[cfg(not(target_os = "linux"))]
    Ok(())
}

/// Puts the calling thread under Linux's `SCHED_IDLE` policy: it runs only when no other
/// thread of the machine wants a core (and keeps a sliver of time when they always do), so the
/// work it does that nobody waits for fills the cores' idle moments instead of taking turns with
/// the work that is waited for. A thread cannot leave that policy again without privileges.
/// Elsewhere than Linux it does nothing.
pub fn idle_scheduling() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    return own_policy(libc::SCHED_IDLE);
    #[cfg(not(target_os = "linux"))]
    Ok(())
}

/// Puts the calling thread under `policy`, one of the policies without a static priority.
#[cfg(target_os = "linux")]
fn own_policy(policy: libc::c_int) -> std::io::Result<()> {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid `sched_param` for SCHED_OTHER, SCHED_BATCH and SCHED_IDLE
    // (priority 0); pid 0 is the calling thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's policy (field 41 of `/proc/thread-self/stat`).
    #[cfg(target_os = "linux")]
    fn own_policy_now() -> u32 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        let rest = stat.rsplit_once(')').unwrap().1;
        rest.split_whitespace().nth(38).unwrap().parse().unwrap()
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_thread_sets_its_own_policy_which_the_threads_it_starts_inherit() {
        let mine = own_policy_now();
        let seen = std::thread::spawn(|| {
            batch_scheduling().unwrap();
            let batch = own_policy_now();
            idle_scheduling().unwrap();
            let idle = own_policy_now();
            let started = std::thread::spawn(own_policy_now).join().unwrap();
            (batch, idle, started)
        })
        .join()
        .unwrap();
        // 3 is SCHED_BATCH, 5 SCHED_IDLE
        assert_eq!(seen, (3, 5, 5));
        assert_eq!(own_policy_now(), mine, "other threads keep theirs");
    }

    #[test]
    fn this_process_lives_and_a_huge_pid_does_not() {
        assert!(!pid_is_dead(std::process::id() as i32));
        assert!(pid_is_dead(999_999_999));
        assert!(!pid_is_dead(0), "pid 0 is never judged dead");
        assert!(!hostname().is_empty());
    }
}
