#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod child;
#[cfg(feature = "http")]
pub mod http;
pub mod seed;
