//! The rules a node must pass to run a workload, and how a failure reads to an operator.
//! Selectors, constraints and capacity are the agent's rules too, so they live in
//! [`shoal_model::fit`] with their wording; the rest (cordon, drain, lost, affinity) only the
//! hub can judge.

use shoal_model::quantity::millis;
use std::fmt;
use std::time::Duration;

use shoal_model::fit::{self, Demand, Mismatch, Shortfall};
use shoal_model::manifest::{PlacementMode, RescheduleAfter, Resources, Workload};
use shoal_model::node::Capacity;
use shoal_model::quantity::format_duration;

use super::{NodeView, Schedulable};

/// One rule a node fails for a workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unfit {
    /// A `nodeSelector` label or a constraint the node does not meet.
    Mismatch(Mismatch),
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
    Insufficient(Shortfall),
    /// The node ran the workload but is no longer in the fleet.
    Gone,
}

impl fmt::Display for Unfit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unfit::Mismatch(mismatch) => mismatch.fmt(f),
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
            Unfit::Insufficient(shortfall) => shortfall.fmt(f),
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
    let mut unfit: Vec<Unfit> = fit::mismatches(placement, &node.facts)
        .into_iter()
        .map(Unfit::Mismatch)
        .collect();
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
    pub demand: Demand,
    pub workloads: usize,
}

impl Used {
    pub(super) fn add(&mut self, r: Resources) {
        self.demand = self.demand.plus(Demand::from(r));
        self.workloads += 1;
    }

    pub(super) fn remove(&mut self, r: Resources) {
        self.demand = self.demand.minus(Demand::from(r));
        self.workloads = self.workloads.saturating_sub(1);
    }

    /// Free memory for ranking nodes; 0 when the capacity is unknown (ranks such nodes last).
    pub(super) fn free_memory(&self, capacity: Capacity) -> u64 {
        capacity.memory_bytes.saturating_sub(self.demand.memory)
    }
}

/// The resources `requested` does not find on a node of `capacity` where `used` is taken:
/// [`fit::shortfalls`], the rule the agent refuses a desired state by.
pub(super) fn resources(requested: Resources, capacity: Capacity, used: Used) -> Vec<Unfit> {
    fit::shortfalls(Demand::from(requested), used.demand, capacity)
        .into_iter()
        .map(Unfit::Insufficient)
        .collect()
}

/// How long `node` has been offline at `now_ms` (0 when online; a node offline with no
/// `offline_since_ms` counts as offline since now).
pub(super) fn offline_for(node: &NodeView, now_ms: u64) -> u64 {
    match (node.online, node.offline_since_ms) {
        (true, _) | (false, None) => 0,
        (false, Some(since)) => now_ms.saturating_sub(since),
    }
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
