//! The reconcile decision: from what should run (desired state) and what runs (observed), the
//! actions that bring the second closer to the first, with the reason for each.
//!
//! Invariant: this module does no IO, reads no clock and keeps no state. The supervisor calls
//! [`plan`] on every event and tick with the current time; calling it twice with the same
//! inputs gives the same plan, so a lost action is simply planned again (level-triggered).

pub mod placement;
pub mod trial;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use shoal_model::manifest::{Container, RestartPolicy, Workload};
use shoal_model::wire::{identity, DesiredWorkload, Health};

/// First delay before restarting a container that stopped.
pub const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest delay between restarts of a crash-looping container.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);
/// A run at least this long resets the backoff: the container is not crash-looping.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);
/// First delay before retrying a failed image pull; it doubles up to [`BACKOFF_CAP`].
pub const PULL_RETRY_BASE: Duration = Duration::from_secs(5);
/// First delay before retrying a stop or removal that failed; it doubles up to [`BACKOFF_CAP`].
pub const ACTION_RETRY_BASE: Duration = Duration::from_secs(1);

/// What the agent sees of one container it manages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObservedContainer {
    pub workload: String,
    pub name: String,
    /// [`spec_hash`] of the workload and container it was created from.
    pub spec_hash: String,
    pub run: Run,
    /// Restarts since the container was created for its current spec, for display.
    pub restarts: u32,
    /// Consecutive short runs (see [`next_crash_streak`]); drives the backoff.
    pub crash_streak: u32,
    pub health: Health,
    /// A worker is carrying out actions on it: nothing more is planned for it until the
    /// worker reports (whatever its run state says).
    pub busy: bool,
    /// The last action on it failed: it is left alone until then, so a failing stop or
    /// removal is retried with backoff rather than on every event.
    pub retry_at_ms: Option<u64>,
    /// The stop grace period of the spec it was started from: what a stop uses once its
    /// workload is no longer desired (and its spec gone).
    pub stop_grace: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Run {
    /// Created or starting, not yet confirmed running.
    Starting {
        since_ms: u64,
    },
    Running {
        since_ms: u64,
    },
    /// A stop was requested and the container has not exited yet.
    Stopping {
        since_ms: u64,
    },
    Exited {
        started_ms: u64,
        exited_ms: u64,
        exit: Exit,
    },
}

/// How a container's main process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal(i32),
    OomKilled,
}

impl Exit {
    /// Whether `on-failure` counts this as a failure: anything but exit status 0.
    pub fn is_failure(self) -> bool {
        self != Exit::Code(0)
    }
}

/// The state of an image in the local store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ImageState {
    Present,
    Pulling,
    /// The last pull failed, `attempts` in a row; `reason` says why, for `ps` and the hub
    /// (the plan does not look at it).
    Failed {
        at_ms: u64,
        attempts: u32,
        reason: String,
    },
}

/// Everything the agent observed, as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Observed {
    pub containers: Vec<ObservedContainer>,
    /// Workloads whose shared namespaces and volumes exist, with the [`pod_hash`] they were
    /// set up for.
    pub pods: BTreeMap<String, String>,
    /// Images by reference as written in the manifest.
    pub images: BTreeMap<String, ImageState>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    PullImage {
        image: String,
    },
    /// Create the workload's shared namespaces and volumes.
    EnsurePod {
        workload: String,
    },
    Start {
        workload: String,
        container: String,
    },
    Stop {
        workload: String,
        container: String,
        grace: Duration,
        reason: StopReason,
    },
    /// Forget an exited container (delete its runtime state), before it is started anew or
    /// because it is no longer wanted.
    Remove {
        workload: String,
        container: String,
    },
    RemovePod {
        workload: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// Its health check failed `retries` times in a row.
    Unhealthy,
    /// The desired spec changed: it is replaced.
    Outdated,
    /// Its workload or container is no longer desired here.
    Unwanted,
}

/// The actions to take now, and when to plan again at the latest (for backoffs that expire
/// with no other event).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub wake_at_ms: Option<u64>,
}

impl Plan {
    fn wake_at(&mut self, at_ms: u64) {
        self.wake_at_ms = Some(self.wake_at_ms.map_or(at_ms, |w| w.min(at_ms)));
    }
}

/// Decides what to do now. Actions come in a safe order per workload: stops and removals
/// first, then pulls, the pod, and starts.
pub fn plan(desired: &[DesiredWorkload], observed: &Observed, now_ms: u64) -> Plan {
    let mut plan = Plan::default();
    let wanted: BTreeMap<&str, &Workload> = desired
        .iter()
        .map(|d| (d.workload.name.as_str(), &d.workload))
        .collect();

    // Containers that are no longer wanted, or whose pod must be rebuilt.
    let mut pods_in_use: BTreeSet<&str> = BTreeSet::new();
    for c in &observed.containers {
        if held(c, now_ms, &mut plan) {
            // A worker is on it, or its last action failed and waits for its retry: one
            // action at a time per container, whatever else happens meanwhile.
            pods_in_use.insert(&c.workload);
            continue;
        }
        let workload = wanted.get(c.workload.as_str());
        let still_wanted =
            workload.is_some_and(|w| w.spec.containers.iter().any(|x| x.name == c.name));
        let pod_stale = workload.is_some_and(|w| {
            observed
                .pods
                .get(&w.name)
                .is_some_and(|h| *h != pod_hash(w))
        });
        if still_wanted && !pod_stale {
            pods_in_use.insert(&c.workload);
            continue;
        }
        // The workload's newest spec when it is still desired; else the spec it ran with.
        let grace = workload.map_or(c.stop_grace, |w| w.spec.stop_grace_period);
        // The pod goes only once every container of it is gone.
        pods_in_use.insert(&c.workload);
        match c.run {
            Run::Exited { .. } => plan.actions.push(Action::Remove {
                workload: c.workload.clone(),
                container: c.name.clone(),
            }),
            Run::Stopping { .. } => {}
            Run::Starting { .. } | Run::Running { .. } => {
                let reason = if pod_stale {
                    StopReason::Outdated
                } else {
                    StopReason::Unwanted
                };
                plan.actions.push(Action::Stop {
                    workload: c.workload.clone(),
                    container: c.name.clone(),
                    grace,
                    reason,
                });
            }
        }
    }
    for (pod, hash) in &observed.pods {
        let stale = wanted
            .get(pod.as_str())
            .is_none_or(|w| pod_hash(w) != *hash);
        if stale && !pods_in_use.contains(pod.as_str()) {
            plan.actions.push(Action::RemovePod {
                workload: pod.clone(),
            });
        }
    }

    for w in wanted.values() {
        plan_workload(w, observed, now_ms, &mut plan);
    }
    plan
}

fn plan_workload(w: &Workload, observed: &Observed, now_ms: u64, plan: &mut Plan) {
    let pod = observed.pods.get(&w.name);
    if pod.is_some_and(|h| *h != pod_hash(w)) {
        // The old pod is being taken down above; start anew once it is gone.
        return;
    }
    let mut pod_ensured = pod.is_some();
    for container in &w.spec.containers {
        let seen = observed
            .containers
            .iter()
            .find(|c| c.workload == w.name && c.name == container.name);
        let start = match seen {
            None => true,
            Some(c) => match plan_existing(w, container, c, now_ms, plan) {
                Next::StartNow => true,
                Next::Nothing => false,
            },
        };
        if !start {
            continue;
        }
        let image = container.image.to_string();
        match observed.images.get(&image) {
            Some(ImageState::Present) => {
                if !pod_ensured {
                    plan.actions.push(Action::EnsurePod {
                        workload: w.name.clone(),
                    });
                    pod_ensured = true;
                }
                plan.actions.push(Action::Start {
                    workload: w.name.clone(),
                    container: container.name.clone(),
                });
            }
            Some(ImageState::Pulling) => {}
            Some(ImageState::Failed {
                at_ms, attempts, ..
            }) => {
                let retry_at = at_ms.saturating_add(
                    backoff(PULL_RETRY_BASE, attempts.saturating_sub(1)).as_millis() as u64,
                );
                if now_ms >= retry_at {
                    push_pull(plan, image);
                } else {
                    plan.wake_at(retry_at);
                }
            }
            None => push_pull(plan, image),
        }
    }
}

/// Whether `c` must be left alone now: a worker is busy on it, or a failed action's retry is
/// not due yet (then the plan wakes at the retry).
fn held(c: &ObservedContainer, now_ms: u64, plan: &mut Plan) -> bool {
    if c.busy {
        return true;
    }
    match c.retry_at_ms {
        Some(at) if at > now_ms => {
            plan.wake_at(at);
            true
        }
        _ => false,
    }
}

fn push_pull(plan: &mut Plan, image: String) {
    let action = Action::PullImage { image };
    if !plan.actions.contains(&action) {
        plan.actions.push(action);
    }
}

enum Next {
    StartNow,
    Nothing,
}

/// What to do with a container that exists: keep it, stop it, or (once exited) start it again.
fn plan_existing(
    w: &Workload,
    container: &Container,
    c: &ObservedContainer,
    now_ms: u64,
    plan: &mut Plan,
) -> Next {
    if held(c, now_ms, plan) {
        return Next::Nothing;
    }
    let outdated = c.spec_hash != spec_hash(w, container);
    let stop = |reason| Action::Stop {
        workload: c.workload.clone(),
        container: c.name.clone(),
        grace: w.spec.stop_grace_period,
        reason,
    };
    match c.run {
        Run::Starting { .. } | Run::Stopping { .. } => Next::Nothing,
        Run::Running { .. } if outdated => {
            plan.actions.push(stop(StopReason::Outdated));
            Next::Nothing
        }
        Run::Running { .. } if c.health == Health::Unhealthy => {
            plan.actions.push(stop(StopReason::Unhealthy));
            Next::Nothing
        }
        Run::Running { .. } => Next::Nothing,
        Run::Exited {
            exit, exited_ms, ..
        } => {
            let replace = outdated;
            let restart = match w.spec.restart_policy {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => exit.is_failure(),
                RestartPolicy::Never => false,
            };
            if !replace && !restart {
                return Next::Nothing;
            }
            let due = if replace {
                now_ms
            } else {
                exited_ms.saturating_add(
                    backoff(BACKOFF_BASE, c.crash_streak.saturating_sub(1)).as_millis() as u64,
                )
            };
            if now_ms >= due {
                plan.actions.push(Action::Remove {
                    workload: c.workload.clone(),
                    container: c.name.clone(),
                });
                Next::StartNow
            } else {
                plan.wake_at(due);
                Next::Nothing
            }
        }
    }
}

/// `base * 2^step`, capped at [`BACKOFF_CAP`].
pub fn backoff(base: Duration, step: u32) -> Duration {
    let factor = 1u32.checked_shl(step.min(20)).unwrap_or(u32::MAX);
    base.saturating_mul(factor).min(BACKOFF_CAP)
}

/// The crash streak after a run from `started_ms` to `exited_ms`: a long run resets it.
pub fn next_crash_streak(previous: u32, started_ms: u64, exited_ms: u64) -> u32 {
    if exited_ms.saturating_sub(started_ms) >= BACKOFF_RESET_AFTER.as_millis() as u64 {
        1
    } else {
        previous.saturating_add(1)
    }
}

/// A stable fingerprint of everything that shapes one container: when it changes, the
/// container is replaced. Covers the container and the workload fields it depends on.
///
/// FNV-1a (64 bit, 16 hex digits) of the container's canonical identity,
/// `shoal_model::wire::identity::container`. Identity v1, frozen: every container release
/// 0.1.0 started keeps its hash, so an upgraded agent restarts nothing. A field added to
/// `Container` (or to the workload fields above) later takes part only when it is not at its
/// default, as tagged entries after the v1 bytes (the rule in `identity`): adding an optional
/// field restarts nothing, setting it restarts exactly the containers that use it.
pub fn spec_hash(w: &Workload, container: &Container) -> String {
    fingerprint(&identity::container(w, container))
}

/// A stable fingerprint of what the workload's shared namespaces depend on: FNV-1a of the
/// pod's canonical identity, `shoal_model::wire::identity::pod`, under the same rule as
/// [`spec_hash`] (identity v1 frozen; later fields only when not at their default).
pub fn pod_hash(w: &Workload) -> String {
    fingerprint(&identity::pod(w))
}

/// FNV-1a over canonical identity bytes.
fn fingerprint(bytes: &[u8]) -> String {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    });
    format!("{hash:016x}")
}

#[cfg(test)]
mod tests;
