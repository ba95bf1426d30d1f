//! `sequential-machine <cmd>` / `sequential-ecosystem machine <cmd>`: the layer store's commands
//! (run a command and capture its changes as a layer, cache hits, checkout, tags, read-only views).
//!
//! `grammar` is the clap grammar, `dispatch` calls the layer-store library, `render` is what the
//! user sees (text, the `--json` shapes, progress on stderr).

mod dispatch;
mod grammar;
mod render;

pub use dispatch::{locations, run};
pub use grammar::{MachineArgs, MachineCli};

/// Store directory when neither `--dir` nor `SEQUENTIAL_MACHINE_DIR` is given.
pub const DEFAULT_DIR: &str = ".sequential-machine";
