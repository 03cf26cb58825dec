//! Shoal's shared vocabulary: fleet manifests and their validation, the wire protocol between
//! hub and agents, and topic names. Every serde shape that crosses a process boundary lives
//! here, and nothing in this crate does network or container IO.
//!
//! So does every rule both binaries apply, written once: where the hub is ([`endpoint`]),
//! whether a workload fits a node ([`fit`]), hex and SHA-256 ([`hex`], and the CA fingerprint
//! in [`api`]), whether a revision proved itself or failed on a node ([`rollout`]), the wall clock ([`clock`]), and how both CLIs print a table ([`table`]).

pub mod api;
pub mod backoff;
pub mod bootstrap;
pub mod clock;
pub mod elf;
pub mod endpoint;
pub mod fit;
pub mod hex;
pub mod manifest;
pub mod node;
pub mod quantity;
pub mod release;
pub mod rollout;
pub mod table;
pub mod topic;
pub mod wire;
