//! The rules a node must pass to run a workload, and how a failure reads to an operator.
//! Selector and constraint wording is the agent's (`edge-agent/src/reconcile/placement.rs`),
//! seen from the hub: "node has" rather than "this node has".

use std::fmt;
use std::time::Duration;

use shoal_model::manifest::{PlacementMode, RescheduleAfter, Resources, Workload};
use shoal_model::node::Capacity;
use shoal_model::quantity::{format_bytes, format_duration, format_millicpu};

use super::{NodeView, Schedulable};

/// One rule a node fails for a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unfit {
    Selector {
        key: String,
        wanted: String,
        actual: Option<String>,
    },
    Constraint {
        source: String,
        actual: String,
    },
    Cordoned,
    Drained,
    /// Offline for at least `rescheduleAfter`.
    Lost {
        offline_ms: u64,
        after: RescheduleAfter,
    },
    With {
        workload: String,
        /// Whether a workload of that name exists at all.
        exists: bool,
    },
    NotWith(String),
    /// `by`, placed on the node, has `notWith: [workload]`.
    ExcludedBy {
        by: String,
        workload: String,
    },
    Insufficient {
        resource: &'static str,
        requested: String,
        free: String,
        capacity: String,
    },
    /// The node ran the workload but is no longer in the fleet.
    Gone,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Selector {
                key,
                wanted,
                actual: Some(actual),
            } => write!(f, "nodeSelector {key}={wanted} (node has {key}={actual})"),
            Unfit::Selector {
                key,
                wanted,
                actual: None,
            } => write!(f, "nodeSelector {key}={wanted} (node has no label {key})"),
            Unfit::Constraint { source, actual } => write!(f, "constraint `{source}` ({actual})"),
            Unfit::Cordoned => f.write_str("cordoned"),
            Unfit::Drained => f.write_str("drained"),
            Unfit::Lost { offline_ms, after } => write!(
                f,
                "offline for {}, rescheduleAfter {}",
                age(*offline_ms),
                reschedule_text(*after)
            ),
            Unfit::With {
                workload,
                exists: true,
            } => write!(f, "with {workload} (not placed here)"),
            Unfit::With {
                workload,
                exists: false,
            } => write!(f, "with {workload} (no such workload)"),
            Unfit::NotWith(workload) => write!(f, "notWith {workload} (placed here)"),
            Unfit::ExcludedBy { by, workload } => {
                write!(f, "{by} (placed here) has notWith {workload}")
            }
            Unfit::Insufficient {
                resource,
                requested,
                free,
                capacity,
            } => write!(
                f,
                "insufficient {resource}: requests {requested}, {free} free of {capacity}"
            ),
            Unfit::Gone => f.write_str("node is no longer in the fleet"),
        }
    }
}

/// The rules that depend on the node alone: selector, constraints, cordon/drain, lost.
/// `runs_here`: the workload runs on the node now (cordoned nodes keep what they run).
pub(super) fn node_local(
    w: &Workload,
    node: &NodeView,
    runs_here: bool,
    now_ms: u64,
) -> Vec<Unfit> {
    let placement = &w.spec.placement;
    let labels = &node.facts.labels;
    let mut unfit: Vec<Unfit> = placement
        .node_selector
        .iter()
        .filter(|(key, value)| labels.get(*key) != Some(*value))
        .map(|(key, value)| Unfit::Selector {
            key: key.clone(),
            wanted: value.clone(),
            actual: labels.get(key).cloned(),
        })
        .collect();
    unfit.extend(
        placement
            .constraints
            .iter()
            .filter(|c| !c.matches(&node.facts))
            .map(|c| Unfit::Constraint {
                source: c.to_string(),
                actual: c.describe_actual(&node.facts),
            }),
    );
    let replicas = matches!(placement.mode, PlacementMode::Replicas(_));
    match node.schedulable {
        Schedulable::Yes => {}
        Schedulable::Cordoned if !runs_here => unfit.push(Unfit::Cordoned),
        Schedulable::Cordoned => {}
        Schedulable::Drained if !runs_here || replicas => unfit.push(Unfit::Drained),
        Schedulable::Drained => {}
    }
    if replicas && !node.online {
        let offline_ms = offline_for(node, now_ms);
        if let RescheduleAfter::After(after) = placement.reschedule_after {
            if offline_ms >= millis(after) {
                unfit.push(Unfit::Lost {
                    offline_ms,
                    after: placement.reschedule_after,
                });
            }
        }
    }
    unfit
}

/// Requests of the workloads placed on a node, and how many they are.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Used {
    pub memory: u64,
    pub cpu_millis: u64,
    pub pids: u64,
    pub workloads: usize,
}

impl Used {
    pub(super) fn add(&mut self, r: Resources) {
        self.memory = self.memory.saturating_add(r.memory.unwrap_or(0));
        self.cpu_millis = self
            .cpu_millis
            .saturating_add(u64::from(r.cpu_millis.unwrap_or(0)));
        self.pids = self.pids.saturating_add(u64::from(r.pids.unwrap_or(0)));
        self.workloads += 1;
    }

    pub(super) fn remove(&mut self, r: Resources) {
        self.memory = self.memory.saturating_sub(r.memory.unwrap_or(0));
        self.cpu_millis = self
            .cpu_millis
            .saturating_sub(u64::from(r.cpu_millis.unwrap_or(0)));
        self.pids = self.pids.saturating_sub(u64::from(r.pids.unwrap_or(0)));
        self.workloads = self.workloads.saturating_sub(1);
    }

    /// Free memory for ranking nodes; 0 when the capacity is unknown (ranks such nodes last).
    pub(super) fn free_memory(&self, capacity: Capacity) -> u64 {
        capacity.memory_bytes.saturating_sub(self.memory)
    }
}

/// The resources `requested` does not find on a node of `capacity` where `used` is taken.
/// A capacity of 0 is unknown and limits nothing.
pub(super) fn resources(requested: Resources, capacity: Capacity, used: Used) -> Vec<Unfit> {
    let memory = Dimension {
        resource: "memory",
        requested: requested.memory.unwrap_or(0),
        used: used.memory,
        capacity: capacity.memory_bytes,
        format: format_bytes,
    };
    let cpu = Dimension {
        resource: "cpu",
        requested: u64::from(requested.cpu_millis.unwrap_or(0)),
        used: used.cpu_millis,
        capacity: u64::from(capacity.cpu_millis),
        format: |m| format_millicpu(u32::try_from(m).unwrap_or(u32::MAX)),
    };
    let pids = Dimension {
        resource: "pids",
        requested: u64::from(requested.pids.unwrap_or(0)),
        used: used.pids,
        capacity: u64::from(capacity.pids),
        format: |n| n.to_string(),
    };
    [memory, cpu, pids]
        .into_iter()
        .filter_map(Dimension::shortfall)
        .collect()
}

struct Dimension {
    resource: &'static str,
    requested: u64,
    used: u64,
    capacity: u64,
    format: fn(u64) -> String,
}

impl Dimension {
    fn shortfall(self) -> Option<Unfit> {
        let fits = self.capacity == 0
            || self.requested == 0
            || self.used.saturating_add(self.requested) <= self.capacity;
        (!fits).then(|| Unfit::Insufficient {
            resource: self.resource,
            requested: (self.format)(self.requested),
            free: (self.format)(self.capacity.saturating_sub(self.used)),
            capacity: (self.format)(self.capacity),
        })
    }
}

/// How long `node` has been offline at `now_ms` (0 when online; a node offline with no
/// `offline_since_ms` counts as offline since now).
pub(super) fn offline_for(node: &NodeView, now_ms: u64) -> u64 {
    match (node.online, node.offline_since_ms) {
        (true, _) | (false, None) => 0,
        (false, Some(since)) => now_ms.saturating_sub(since),
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An age as operators read it: `45s`, `12m3s`, `3h12m`, `2d4h` (two units at most).
pub(super) fn age(ms: u64) -> String {
    const MINUTE: u64 = 60_000;
    const HOUR: u64 = 60 * MINUTE;
    const DAY: u64 = 24 * HOUR;
    let unit = match ms {
        ms if ms < HOUR => 1_000,
        ms if ms < DAY => MINUTE,
        _ => HOUR,
    };
    format_duration(Duration::from_millis(ms - ms % unit))
}

pub(super) fn reschedule_text(after: RescheduleAfter) -> String {
    match after {
        RescheduleAfter::After(d) => format_duration(d),
        RescheduleAfter::Never => "never".into(),
    }
}

/// `1 replica`, `2 replicas`, `0 replicas`.
pub(super) fn plural(count: usize, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}
