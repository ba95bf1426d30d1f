#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

#[cfg(all(feature = "jemalloc", not(target_env = "msvc")))]
pub mod alloc;
pub mod duration;
pub mod env;
pub mod fs;
pub mod process;
pub mod time;
