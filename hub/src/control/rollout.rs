//! Rollouts: which revision of each workload each node is given, one step per pass.
//!
//! A workload's nodes do not all get a new revision at once. [`step`] decides, from what each
//! node was given ([`Assigned`]), what it reports, and the workload's `spec.rollout`, which
//! nodes get the new revision now, which are done, which failed, and whether the rollout
//! goes on, halts or rolls back. Pure: the time is an argument, and every decision is data.
//!
//! # Rules
//!
//! - **Who has nothing to lose gets the new revision at once**: a node that runs no revision
//!   of the workload yet, when there is no revision healthy everywhere to keep it on (a new
//!   workload). Otherwise a node new to the workload gets the stable revision first and joins
//!   the rollout like the others.
//! - **Canary**: the first `canary` nodes (a count, or a percentage of the workload's nodes
//!   rounded up; by name, online ones) get the new revision alone; the waves start when
//!   every canary is done.
//! - **Waves**: then at most `maxUnavailable` nodes (a count, or a percentage of the
//!   workload's nodes rounded up; at least 1) are updating at once. A node *is updating* from
//!   the moment it is given the revision until it is done or failed.
//! - **Done**: the node reports every container of the new revision running, and healthy
//!   where the container has a health check, without a break for `healthyFor`.
//! - **Failed**: a container of the new revision failed to start, exited with an error,
//!   restarted [`MAX_RESTARTS`] times, or became unhealthy (the rule of
//!   `shoal_model::rollout`, which the agent judges by too); or the node went back from the
//!   revision by itself (`WorkloadStatus::rolled_back`, for the reason it reports); or the
//!   node was not done within `progressDeadline` (default 10 minutes) of getting the revision
//!   (a node that went silent included; one offline since before it got the revision is
//!   deferred instead).
//! - **Deferred**: a node offline before its turn is skipped, and gets the revision when it
//!   is back; it does not hold the rollout up.
//! - **Halt**: at `failureThreshold` failed nodes (a count, or a percentage of the workload's
//!   nodes rounded up; default 1, and never fewer than 1) the rollout stops giving the revision to
//!   anyone. With `autoRollback`, every node that got it goes back to the stable revision at
//!   once, with no canary and no waves; without, they stay as they are.
//! - **Stable**: the revision every node ran healthy before this rollout began: the previous
//!   rollout's revision if it completed, or the stable revision before that.
//! - A rollout that completed leaves the workload's nodes on its revision; a node that joins
//!   later, or comes back, gets it directly.
//! - **Pause** (`shoal rollout pause`): nobody new is given the revision; nodes already
//!   updating finish, and failures still halt. **Undo** (`shoal rollout undo`) is a new
//!   revision with an older spec, rolled out *immediately*: every node at once, no canary.

use shoal_model::quantity::millis;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use shoal_model::manifest::Workload;
use shoal_model::quantity::Amount;
use shoal_model::wire::WorkloadStatus;

// The rule a node's report is judged by, the agent's own (it rolls back by the same).
pub use shoal_model::rollout::{readiness, Failure, Readiness, MAX_RESTARTS};

/// The revision of one workload a node was given, and how it is going there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assigned {
    pub revision: u64,
    /// Wall-clock ms when the node was given this revision.
    pub since_ms: u64,
    /// Since when the node has reported this revision ready without a break.
    pub ready_since_ms: Option<u64>,
    pub outcome: Outcome,
    /// Wall-clock ms of the last change of `outcome`.
    pub outcome_ms: u64,
}

/// Where a node is with the revision it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    Updating,
    Done,
    Failed(Failure),
}

/// A workload's rollout: the revision it brings, and where it stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollout {
    pub revision: u64,
    /// The revision healthy everywhere before it: where a rollback goes.
    pub stable: Option<u64>,
    pub state: State,
    pub started_ms: u64,
    /// Wall-clock ms of the last change of `state`.
    pub changed_ms: u64,
    /// Paused by the operator (`shoal rollout pause`): nobody new is given the revision.
    pub paused: bool,
    /// Every node at once, with no canary and no waves (`shoal rollout undo`).
    pub immediate: bool,
}

/// Where a rollout stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Progressing,
    /// Every node that is online and placed runs the revision, done.
    Complete,
    /// Stopped at `failed` nodes; the nodes keep what they have.
    Halted {
        failed: u32,
    },
    /// Stopped at `failed` nodes; every node that got the revision went back to `to`.
    RolledBack {
        failed: u32,
        to: u64,
    },
}

impl State {
    /// Whether the rollout gives its revision to no one any more.
    pub fn stopped(self) -> bool {
        matches!(self, State::Halted { .. } | State::RolledBack { .. })
    }
}

/// What [`step`] reads for one workload.
#[derive(Clone, Copy, Debug)]
pub struct Input<'a> {
    /// The workload at its current revision, the one being rolled out.
    pub workload: &'a Workload,
    pub revision: u64,
    /// The nodes the workload is placed on.
    pub targets: &'a BTreeSet<String>,
    /// Which nodes are online (absent: offline).
    pub online: &'a BTreeSet<String>,
    /// When each node was last heard from (wall-clock ms; absent: never).
    pub seen: &'a BTreeMap<String, u64>,
    /// What each node was given, as stored.
    pub assigned: &'a BTreeMap<String, Assigned>,
    pub rollout: Option<&'a Rollout>,
    /// Each node's newest report of this workload.
    pub reports: &'a BTreeMap<String, &'a WorkloadStatus>,
    pub now_ms: u64,
}

/// What [`step`] decided for one workload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Step {
    /// What every target node is given now.
    pub assigned: BTreeMap<String, Assigned>,
    pub rollout: Rollout,
    /// When a gate opens or a deadline passes with no report: the next pass is due then.
    pub wake_ms: Option<u64>,
}

/// One step of `input`'s rollout. See the module documentation for the rules.
pub fn step(input: Input<'_>) -> Step {
    let now = input.now_ms;
    let spec = &input.workload.spec.rollout;
    let mut rollout = match input.rollout {
        Some(r) if r.revision == input.revision => r.clone(),
        previous => Rollout {
            revision: input.revision,
            stable: stable_before(previous, input.assigned, input.revision),
            state: State::Progressing,
            started_ms: now,
            changed_ms: now,
            paused: false,
            immediate: false,
        },
    };
    let target = rollout.revision;
    // A node new to the workload starts on the stable revision while the new one is not
    // proven; on the new one when there is nothing to keep it on.
    let entry = match (rollout.state, rollout.stable) {
        (State::Complete, _) | (_, None) => target,
        (_, Some(stable)) => stable,
    };
    let mut assigned: BTreeMap<String, Assigned> = BTreeMap::new();
    for node in input.targets {
        let mut a = input
            .assigned
            .get(node)
            .cloned()
            .unwrap_or_else(|| given(entry, now));
        let report = input.reports.get(node).copied();
        // A node offline since before it was given the revision has not received it: it is
        // deferred, not failed.
        let received = input.online.contains(node)
            || input.seen.get(node).is_some_and(|seen| *seen >= a.since_ms);
        observe(&mut a, input.workload, (target, received), report, now);
        assigned.insert(node.clone(), a);
    }

    let on_target =
        |a: &Assigned, outcome: fn(Outcome) -> bool| a.revision == target && outcome(a.outcome);
    let failed = assigned
        .values()
        .filter(|a| on_target(a, |o| matches!(o, Outcome::Failed(_))))
        .count();
    let threshold = at_most(spec.failure_threshold, input.targets.len());
    if rollout.state == State::Progressing && failed >= threshold {
        let failed = u32::try_from(failed).unwrap_or(u32::MAX);
        rollout.state = match (spec.auto_rollback, rollout.stable) {
            (true, Some(to)) => State::RolledBack { failed, to },
            _ => State::Halted { failed },
        };
        rollout.changed_ms = now;
    }

    match rollout.state {
        State::RolledBack { to, .. } => {
            for a in assigned.values_mut().filter(|a| a.revision == target) {
                *a = given(to, now);
            }
        }
        State::Halted { .. } => {}
        State::Complete => {
            let online = |n: &String| input.online.contains(n);
            for (_, a) in assigned
                .iter_mut()
                .filter(|(n, a)| a.revision != target && online(n))
            {
                *a = given(target, now);
            }
        }
        State::Progressing => {
            let done = assigned
                .values()
                .filter(|a| on_target(a, |o| o == Outcome::Done))
                .count();
            let updating = assigned
                .values()
                .filter(|a| on_target(a, |o| o == Outcome::Updating))
                .count();
            let waves = Waves {
                canary: spec.canary,
                max_unavailable: spec.max_unavailable,
                paused: rollout.paused,
                immediate: rollout.immediate,
            };
            let mut slots = waves
                .limit(input.targets.len(), done)
                .saturating_sub(updating);
            for (node, a) in assigned.iter_mut() {
                if slots == 0 {
                    break;
                }
                if a.revision != target && input.online.contains(node) {
                    *a = given(target, now);
                    slots -= 1;
                }
            }
            // Failed nodes below the threshold are as finished as done ones.
            let all_done = assigned.iter().all(|(node, a)| {
                (a.revision == target && a.outcome != Outcome::Updating)
                    || !input.online.contains(node)
            });
            if all_done {
                rollout.state = State::Complete;
                rollout.changed_ms = now;
            }
        }
    }

    let healthy_for = millis(spec.healthy_for);
    let deadline = millis(spec.progress_deadline);
    let wake_ms = assigned
        .values()
        .filter(|a| a.outcome == Outcome::Updating)
        .flat_map(|a| {
            let gate = a.ready_since_ms.map(|r| r.saturating_add(healthy_for));
            [gate, Some(a.since_ms.saturating_add(deadline))]
        })
        .flatten()
        .filter(|at| *at > now)
        .min();
    Step {
        assigned,
        rollout,
        wake_ms,
    }
}

/// A node given `revision` at `now_ms`.
fn given(revision: u64, now_ms: u64) -> Assigned {
    Assigned {
        revision,
        since_ms: now_ms,
        ready_since_ms: None,
        outcome: Outcome::Updating,
        outcome_ms: now_ms,
    }
}

/// The revision to roll back to when a rollout of `revision` starts after `previous`.
fn stable_before(
    previous: Option<&Rollout>,
    assigned: &BTreeMap<String, Assigned>,
    revision: u64,
) -> Option<u64> {
    match previous {
        Some(p) if p.state == State::Complete => Some(p.revision),
        Some(Rollout {
            stable: Some(stable),
            ..
        }) => Some(*stable),
        // No stable revision on record (the first revision's rollout, or a workload from
        // before rollouts): the newest older revision some node is done with.
        _ => assigned
            .values()
            .filter(|a| a.revision < revision && a.outcome == Outcome::Done)
            .map(|a| a.revision)
            .max(),
    }
}

/// Updates what `a` shows from the node's `report`: ready since when, done, failed.
fn observe(
    a: &mut Assigned,
    workload: &Workload,
    (target, received): (u64, bool),
    report: Option<&WorkloadStatus>,
    now: u64,
) {
    // A node that went back from the revision by itself failed it, for the reason it gives.
    let rolled_back = report
        .and_then(|r| r.rolled_back)
        .filter(|r| r.revision == a.revision);
    let readiness = match rolled_back {
        Some(r) => Readiness::Failing(r.failure),
        None => report
            .filter(|r| r.revision == a.revision)
            .map_or(Readiness::NotYet, |r| readiness(workload, r)),
    };
    match readiness {
        Readiness::Ready => {
            a.ready_since_ms.get_or_insert(now);
        }
        Readiness::NotYet | Readiness::Failing(_) => a.ready_since_ms = None,
    }
    if a.outcome != Outcome::Updating {
        return;
    }
    // Only the revision being rolled out can fail; any other a node is given (the stable one,
    // on a rollback) is done once it runs.
    let outcome = match readiness {
        Readiness::Failing(failure) if a.revision == target => Some(Outcome::Failed(failure)),
        Readiness::Ready
            if a.revision != target
                || a.ready_since_ms.is_some_and(|r| {
                    now.saturating_sub(r) >= millis(workload.spec.rollout.healthy_for)
                }) =>
        {
            Some(Outcome::Done)
        }
        _ if a.revision == target
            && received
            && now.saturating_sub(a.since_ms)
                >= millis(workload.spec.rollout.progress_deadline) =>
        {
            Some(Outcome::Failed(Failure::Deadline))
        }
        _ => None,
    };
    if let Some(outcome) = outcome {
        a.outcome = outcome;
        a.outcome_ms = now;
    }
}

/// The wave rule every rollout shares (a workload's revision, an agent version): how many
/// of its nodes may be updating at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Waves {
    pub canary: Amount,
    pub max_unavailable: Amount,
    pub paused: bool,
    pub immediate: bool,
}

impl Waves {
    /// Of `total` nodes with `done` of them done: none while paused, all when immediate,
    /// the canaries not yet done, then `max_unavailable` (at least 1).
    pub fn limit(self, total: usize, done: usize) -> usize {
        let canaries = share(self.canary, total).min(total);
        if self.paused {
            0
        } else if self.immediate {
            total
        } else if done < canaries {
            canaries - done
        } else {
            at_most(self.max_unavailable, total)
        }
    }
}

/// `amount` of `total` nodes, rounded up, at least 1.
pub fn at_most(amount: Amount, total: usize) -> usize {
    share(amount, total).max(1)
}

/// `amount` of `total` nodes, rounded up (`10%` of 3 nodes is 1, `0%` none).
pub fn share(amount: Amount, total: usize) -> usize {
    match amount {
        Amount::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
        Amount::Percent(p) => total.saturating_mul(usize::from(p)).div_ceil(100),
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Updating => f.write_str("updating"),
            Outcome::Done => f.write_str("done"),
            Outcome::Failed(why) => write!(f, "failed: {why}"),
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Progressing => f.write_str("progressing"),
            State::Complete => f.write_str("complete"),
            State::Halted { failed } => write!(f, "halted after {failed} failed node(s)"),
            State::RolledBack { failed, to } => write!(
                f,
                "rolled back to revision {to} after {failed} failed node(s)"
            ),
        }
    }
}
