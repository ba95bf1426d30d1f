//! The allocator of the project's binaries (feature `jemalloc`): a binary that links this
//! crate with the feature on allocates with jemalloc, in Rust and in the C code linked in
//! (QuickJS and SQLite call `malloc`, which jemalloc then provides), and a background thread
//! hands freed pages back to the system a second after they fell idle.
//!
//! The feature is for binaries (`sequential-ecosystem`, `sequential-machine`,
//! `sequential-bench`); a library that turned it on would choose every embedder's allocator.
//!
//! Why: an engine worker makes and frees a JavaScript context, JSON values and SQLite pages at
//! every step, and glibc's allocator was a tenth of its CPU; with jemalloc the engine CPU per
//! 10-step run fell about 7% (docs/benchmarks.md). At jemalloc's defaults, though, a worker
//! that had held 1,000 sessions kept their freed pages (300 MiB resident instead of 70):
//! hence [`malloc_conf`]. `MALLOC_CONF` in the environment still overrides it.

/// The process's allocator.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's built-in options, read once as the process starts: freed pages are purged
/// after one second, by one background thread (a process gone idle would otherwise keep them
/// until it next allocates), with no lazily-purged ("muzzy") stage in between.
#[unsafe(no_mangle)]
#[used]
#[allow(non_upper_case_globals)] // the name jemalloc looks for
pub static malloc_conf: Conf = Conf(
    c"background_thread:true,max_background_threads:1,dirty_decay_ms:1000,muzzy_decay_ms:0"
        .as_ptr(),
);

/// A C string pointer that may live in a `static`.
#[derive(Debug)]
#[repr(transparent)]
pub struct Conf(*const std::ffi::c_char);

// SAFETY: it points at a `'static`, immutable C string literal.
unsafe impl Sync for Conf {}
