//! Progress reporting for long captures and checkouts (the CLI draws a bar from it).

/// What is being counted.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Reading, hashing and storing files during a capture.
    Capturing,
    /// Writing files during a checkout, cache hit or rebuild.
    Writing,
}

/// Receives progress from a [`crate::Store`] (set with [`crate::Store::with_progress`]).
/// Called from worker threads, at most every few hundred files and once at the end.
pub trait Progress: Send + Sync {
    /// `done` of `total` files processed in `phase` (`bytes` of content so far).
    fn update(&self, phase: Phase, done: u64, total: u64, bytes: u64);
}

/// Counts files and bytes on several threads and reports every `EVERY` files.
pub(crate) struct Counter<'a> {
    sink: Option<&'a dyn Progress>,
    phase: Phase,
    total: u64,
    done: std::sync::atomic::AtomicU64,
    bytes: std::sync::atomic::AtomicU64,
}

const EVERY: u64 = 256;

impl<'a> Counter<'a> {
    pub(crate) fn new(sink: Option<&'a dyn Progress>, phase: Phase, total: usize) -> Counter<'a> {
        Counter {
            sink,
            phase,
            total: total as u64,
            done: 0.into(),
            bytes: 0.into(),
        }
    }

    pub(crate) fn add(&self, bytes: u64) {
        let Some(p) = self.sink else { return };
        use std::sync::atomic::Ordering::Relaxed;
        let b = self.bytes.fetch_add(bytes, Relaxed) + bytes;
        let d = self.done.fetch_add(1, Relaxed) + 1;
        if d.is_multiple_of(EVERY) || d == self.total {
            p.update(self.phase, d, self.total, b);
        }
    }
}
