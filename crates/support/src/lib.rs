#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod duration;
pub mod env;
pub mod fs;
pub mod process;
pub mod time;
