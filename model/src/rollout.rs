//! How a new revision of a workload proves itself on a node, or fails there: the one rule the
//! hub's rollout controller counts nodes by and the agent judges a revision by on its own
//! (rolling it back with no hub), so that the two never disagree on what failed.
//!
//! Pure: a report and the workload's spec in, a verdict out.

use std::fmt;

use crate::manifest::Workload;
use crate::wire::{ContainerState, Health, WorkloadStatus};

/// Restarts of a new revision's container that fail it on its node.
pub const MAX_RESTARTS: u32 = 3;

/// Why a revision failed on a node. Variants are append-only (the agent reports them, see
/// [`crate::wire::RolledBack`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Failure {
    /// A container could not be started, or exited with an error.
    Crashed,
    /// A container restarted [`MAX_RESTARTS`] times.
    Restarting,
    /// A container's health check failed.
    Unhealthy,
    /// Not done within `progressDeadline` (silent nodes included).
    Deadline,
}

/// What a node's report says of a revision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Readiness {
    /// Every container running, and healthy where it has a health check.
    Ready,
    NotYet,
    Failing(Failure),
}

/// Whether `report` (of `workload`'s revision) shows it ready, not yet, or failing.
pub fn readiness(workload: &Workload, report: &WorkloadStatus) -> Readiness {
    let containers = &workload.spec.containers;
    let mut ready = report.containers.len() == containers.len();
    for status in &report.containers {
        let checked = containers
            .iter()
            .find(|c| c.name == status.name)
            .is_some_and(|c| c.health.is_some());
        // Ended with an error, staying ended or waiting to restart: a revision that crashes
        // at once is not given the benefit of its restarts.
        let crashed = status.state == ContainerState::Failed
            || (matches!(
                status.state,
                ContainerState::Exited | ContainerState::BackOff
            ) && status.last_exit.is_some_and(|e| e.code != Some(0)));
        if crashed {
            return Readiness::Failing(Failure::Crashed);
        }
        if status.restarts >= MAX_RESTARTS {
            return Readiness::Failing(Failure::Restarting);
        }
        if status.health == Health::Unhealthy {
            return Readiness::Failing(Failure::Unhealthy);
        }
        ready &= status.state == ContainerState::Running
            && (!checked || status.health == Health::Healthy);
    }
    if ready {
        Readiness::Ready
    } else {
        Readiness::NotYet
    }
}

impl Failure {
    /// Every failure, in declaration order.
    pub const ALL: [Failure; 4] = [
        Failure::Crashed,
        Failure::Restarting,
        Failure::Unhealthy,
        Failure::Deadline,
    ];

    /// A stable name, for storage (`deadline`).
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Crashed => "crashed",
            Failure::Restarting => "restarting",
            Failure::Unhealthy => "unhealthy",
            Failure::Deadline => "deadline",
        }
    }

    /// The failure with this [`Failure::as_str`] name.
    pub fn from_name(name: &str) -> Option<Failure> {
        Failure::ALL.into_iter().find(|f| f.as_str() == name)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Crashed => f.write_str("a container failed to start or exited with an error"),
            Failure::Restarting => write!(f, "a container restarted {MAX_RESTARTS} times"),
            Failure::Unhealthy => f.write_str("a container failed its health check"),
            Failure::Deadline => f.write_str(
                "not running and healthy within its progressDeadline of getting the revision",
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_names_round_trip_and_are_distinct() {
        for failure in Failure::ALL {
            assert_eq!(Failure::from_name(failure.as_str()), Some(failure));
        }
        assert_eq!(Failure::from_name("bored"), None);
    }
}
