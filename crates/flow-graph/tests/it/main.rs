//! flow-graph tests in one binary: static validation (one test per S16 rule), the E1/E2
//! traces of GRAPHS.md §3, every state type through the stepping function, data-driven cases
//! under `tests/data/`, and the Machine. Every run goes through `harness::Sim`, which asserts
//! fold(journal) == snapshot after each step.

mod check;
mod data;
mod e1;
mod e2;
mod harness;
mod machine;
mod redrive;
mod retry;
mod states;
