//! Fleet manifests: parsing YAML with positions, decoding into typed workloads, validation
//! that reports every problem with file, line, column and field path.

pub mod constraint;
pub mod image;
pub mod names;
mod types;

pub use types::*;
