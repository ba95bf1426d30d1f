//! Integration tests of the layer store: real files, real `sh` commands, real child processes.

mod bad_input;
mod correctness;
mod layers;
mod process;
mod semantics;
mod util;
