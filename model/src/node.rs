//! What the fleet knows about a node: the facts an agent reports in its presence message and
//! that placement constraints are evaluated against.
//!
//! Domain types: their serde derives are for JSON only; presence and the hub's database carry
//! them through `crate::wire`'s frozen shapes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Facts about one node, reported by its agent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    /// OCI architecture name: `amd64`, `arm64`, `arm` (with `variant` `v7`), ...
    pub arch: String,
    /// `linux`.
    pub os: String,
    /// Kernel release, as `uname -r` prints it.
    pub kernel: String,
    /// 1 or 2.
    pub cgroup_version: u8,
    pub capacity: Capacity,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    /// The wire versions the agent reads, oldest first. Empty for an agent of release 0.1.0,
    /// which announced none and reads version 2 only (see `wire::readable_by`).
    #[serde(default)]
    pub wire_versions: Vec<u8>,
}

/// What a node can give to workloads.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub memory_bytes: u64,
    pub cpu_millis: u32,
    pub pids: u32,
}

/// Maps Rust's `std::env::consts::ARCH` (and the armv7 target) onto OCI architecture names,
/// which are the names manifests use (`arch in (arm64, armv7)`).
pub fn oci_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "armv7",
        "x86" => "386",
        other => other,
    }
}
