//! Giving memory back after a burst of parked sessions.
//!
//! A thousand runs that start at once hold a thousand JavaScript runtimes until their calls
//! have been out for `park_after`; parking frees them, but glibc's allocator keeps most of the
//! freed pages in its arenas, so the process stays at its peak. A quarter of a second after the
//! first of a burst of parks, one `malloc_trim(0)` (on the blocking pool) hands the free pages
//! back to the system. Elsewhere than glibc this does nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Whether a trim is scheduled (one for every burst of parks).
static SCHEDULED: AtomicBool = AtomicBool::new(false);

/// How long after the first park of a burst the trim runs, so the whole burst is freed first.
const DELAY: Duration = Duration::from_millis(250);

/// Schedules one trim after a park, unless one is already scheduled.
pub(crate) fn release_after_park() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) || SCHEDULED.swap(true, Ordering::AcqRel)
    {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        SCHEDULED.store(false, Ordering::Release);
        return;
    };
    rt.spawn(async {
        tokio::time::sleep(DELAY).await;
        SCHEDULED.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(trim).await;
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks and shrinks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
