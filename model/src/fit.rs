//! The rules both sides apply to decide whether a workload may run on a node, written once:
//! the hub's scheduler places by them (`hub/src/scheduler/fit.rs`) and the agent refuses by
//! them (`shoal-agent apply` skipping another node's workloads, and a desired state whose
//! requests exceed the node), so the hub never sends a node what its agent would refuse. Each
//! failure is data ([`Mismatch`], [`Shortfall`]), worded by its `Display` at the edge.
//!
//! - **Node-local placement** ([`mismatches`]): the node carries every `nodeSelector` label
//!   with the same value, and meets every `constraints` entry.
//! - **Capacity** ([`shortfalls`], [`overcommitted`] for a whole desired state): for memory, CPU and pids, what is already placed on the
//!   node plus what is asked fits in the node's capacity. A workload asks for the sum of its
//!   containers' requests (an absent request counts as 0, and asks for nothing); a capacity
//!   of 0 is unknown and limits nothing (an agent that cannot read its memory size still runs
//!   what it is given).

use std::fmt;

use crate::manifest::{Placement, Resources};
use crate::node::{Capacity, NodeFacts};
use crate::quantity::{format_bytes, format_millicpu};

/// A node-local placement rule a node does not meet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// `nodeSelector: {key: wanted}`, and the node's label is `actual` (`None`: it has none).
    Selector {
        key: String,
        wanted: String,
        actual: Option<String>,
    },
    /// A constraint (its source text) and what the node has for its key.
    Constraint { source: String, actual: String },
}

/// `nodeSelector role=gateway (node has role=sensor)`,
/// ``constraint `arch in (arm64)` (arch is amd64)``.
impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mismatch::Selector {
                key,
                wanted,
                actual: Some(actual),
            } => write!(f, "nodeSelector {key}={wanted} (node has {key}={actual})"),
            Mismatch::Selector {
                key,
                wanted,
                actual: None,
            } => write!(f, "nodeSelector {key}={wanted} (node has no label {key})"),
            Mismatch::Constraint { source, actual } => {
                write!(f, "constraint `{source}` ({actual})")
            }
        }
    }
}

/// Every selector label and constraint of `placement` that `node` does not meet, selectors
/// first (in key order), then constraints (in manifest order). Empty: the node may run it.
pub fn mismatches(placement: &Placement, node: &NodeFacts) -> Vec<Mismatch> {
    let labels = &node.labels;
    let selectors = placement
        .node_selector
        .iter()
        .filter(|(key, wanted)| labels.get(*key) != Some(*wanted))
        .map(|(key, wanted)| Mismatch::Selector {
            key: key.clone(),
            wanted: wanted.clone(),
            actual: labels.get(key).cloned(),
        });
    let constraints = placement
        .constraints
        .iter()
        .filter(|c| !c.matches(node))
        .map(|c| Mismatch::Constraint {
            source: c.to_string(),
            actual: c.describe_actual(node),
        });
    selectors.chain(constraints).collect()
}

/// What a node's capacity limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Memory,
    Cpu,
    Pids,
}

impl Resource {
    pub const ALL: [Resource; 3] = [Resource::Memory, Resource::Cpu, Resource::Pids];

    /// An amount of this resource as manifests write it: `256Mi`, `500m`, `64`.
    pub fn format(self, amount: u64) -> String {
        match self {
            Resource::Memory => format_bytes(amount),
            Resource::Cpu => format_millicpu(u32::try_from(amount).unwrap_or(u32::MAX)),
            Resource::Pids => amount.to_string(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Resource::Memory => "memory",
            Resource::Cpu => "cpu",
            Resource::Pids => "pids",
        })
    }
}

/// Requests added up: of one workload, or of all those placed on a node. Saturating, so a
/// hostile manifest cannot wrap a sum around to something that fits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Demand {
    pub memory: u64,
    pub cpu_millis: u64,
    pub pids: u64,
}

impl Demand {
    /// The sum of `requests` (a workload's [`crate::manifest::Workload::requested`] each).
    pub fn total(requests: impl IntoIterator<Item = Resources>) -> Demand {
        requests
            .into_iter()
            .fold(Demand::default(), |sum, r| sum.plus(Demand::from(r)))
    }

    pub fn plus(self, other: Demand) -> Demand {
        Demand {
            memory: self.memory.saturating_add(other.memory),
            cpu_millis: self.cpu_millis.saturating_add(other.cpu_millis),
            pids: self.pids.saturating_add(other.pids),
        }
    }

    pub fn minus(self, other: Demand) -> Demand {
        Demand {
            memory: self.memory.saturating_sub(other.memory),
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            pids: self.pids.saturating_sub(other.pids),
        }
    }

    pub fn get(&self, resource: Resource) -> u64 {
        match resource {
            Resource::Memory => self.memory,
            Resource::Cpu => self.cpu_millis,
            Resource::Pids => self.pids,
        }
    }
}

impl From<Resources> for Demand {
    fn from(r: Resources) -> Demand {
        Demand {
            memory: r.memory.unwrap_or(0),
            cpu_millis: u64::from(r.cpu_millis.unwrap_or(0)),
            pids: u64::from(r.pids.unwrap_or(0)),
        }
    }
}

fn capacity_of(capacity: Capacity, resource: Resource) -> u64 {
    match resource {
        Resource::Memory => capacity.memory_bytes,
        Resource::Cpu => u64::from(capacity.cpu_millis),
        Resource::Pids => u64::from(capacity.pids),
    }
}

/// A resource a request does not find on a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortfall {
    pub resource: Resource,
    pub requested: u64,
    /// Capacity minus what is already placed there.
    pub free: u64,
    pub capacity: u64,
}

/// `insufficient memory: requests 256Mi, 100Mi free of 512Mi`.
impl fmt::Display for Shortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let amount = |n| self.resource.format(n);
        write!(
            f,
            "insufficient {}: requests {}, {} free of {}",
            self.resource,
            amount(self.requested),
            amount(self.free),
            amount(self.capacity)
        )
    }
}

/// The resources `requested` does not find on a node of `capacity` where `used` is already
/// placed; empty when it fits. See the module documentation for the rule.
pub fn shortfalls(requested: Demand, used: Demand, capacity: Capacity) -> Vec<Shortfall> {
    Resource::ALL
        .into_iter()
        .filter_map(|resource| {
            let (requested, used) = (requested.get(resource), used.get(resource));
            let capacity = capacity_of(capacity, resource);
            let fits =
                capacity == 0 || requested == 0 || used.saturating_add(requested) <= capacity;
            (!fits).then(|| Shortfall {
                resource,
                requested,
                free: capacity.saturating_sub(used),
                capacity,
            })
        })
        .collect()
}

/// What a node refuses to run as a whole: the resources `requests` (every workload of a
/// desired state) add up to beyond the node's capacity. Empty when the node takes them all.
pub fn overcommitted(
    requests: impl IntoIterator<Item = Resources>,
    capacity: Capacity,
) -> Vec<Shortfall> {
    shortfalls(Demand::total(requests), Demand::default(), capacity)
}

#[cfg(test)]
mod tests;
