//! A newer revision on trial: the node decides for itself whether a workload's new revision
//! works here, and goes back to the previous one when it does not, with or without a hub.
//!
//! Invariant, as for the rest of `reconcile`: no IO, no clock, no state of its own.
//!
//! # Rules
//!
//! - **What is tried.** When the hub's desired state gives a workload a revision other than
//!   the one the node runs, with a different spec and `autoRollback` on, that revision is on
//!   trial, and what ran before is kept as where to go back to. A new workload has nothing to
//!   go back to and is not tried; neither is one whose spec did not change (an undo to the
//!   spec that runs).
//! - **Failed** by the rule the hub counts nodes by (`shoal_model::rollout::readiness`): a
//!   container of the revision failed to start, exited with an error, restarted
//!   `MAX_RESTARTS` times or became unhealthy; or the revision was not running and healthy
//!   for `healthyFor` within `progressDeadline` of its trial starting. Then the node runs the
//!   previous revision again, at once, and reports the failed one
//!   (`WorkloadStatus::rolled_back`, and a `rolled-back` event).
//! - **Proven**: running and healthy for `healthyFor` without a break. The trial ends.
//! - **Not tried again**: a revision that failed stays failed as long as the hub's desired
//!   state names it, whatever the generation (a state that changes another workload does not
//!   bring it back); a different revision of the workload (the hub's rollback, an undo, a
//!   fix) ends the trial, and is tried from what the node runs.
//! - **Time** is the agent's monotonic clock: a trial's deadline runs from the moment the
//!   trial started or the agent started, whichever is later (a device's wall clock may jump
//!   when it first syncs; an agent restart gives a trial its whole deadline again, which errs
//!   on the side of keeping what the hub sent).

use shoal_model::quantity::millis;
use std::collections::BTreeMap;

use shoal_model::manifest::Workload;
use shoal_model::rollout::{readiness, Failure, Readiness};
use shoal_model::wire::{DesiredWorkload, WorkloadStatus};

/// One workload's newer revision on trial.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Trial {
    /// The revision on trial.
    pub revision: u64,
    /// What ran before it: where a rollback goes.
    pub previous: DesiredWorkload,
    /// Monotonic ms since the trial runs.
    pub since_ms: u64,
    /// Since when the revision has been ready without a break.
    pub ready_since_ms: Option<u64>,
    /// Set once the revision failed and the node went back to `previous`.
    pub failed: Option<Failure>,
}

/// The trials once `next` (the hub's desired workloads) replaces what the node runs
/// (`running`: the desired workloads as run, rollbacks included), at `now_ms`.
pub fn begin(
    running: &[DesiredWorkload],
    trials: &BTreeMap<String, Trial>,
    next: &[DesiredWorkload],
    now_ms: u64,
) -> BTreeMap<String, Trial> {
    let mut out = BTreeMap::new();
    for d in next {
        let name = &d.workload.name;
        if let Some(t) = trials.get(name).filter(|t| t.revision == d.revision) {
            out.insert(name.clone(), t.clone());
            continue;
        }
        let Some(current) = running.iter().find(|r| &r.workload.name == name) else {
            continue;
        };
        if current.revision != d.revision
            && current.workload != d.workload
            && d.workload.spec.rollout.auto_rollback
        {
            out.insert(
                name.clone(),
                Trial {
                    revision: d.revision,
                    previous: current.clone(),
                    since_ms: now_ms,
                    ready_since_ms: None,
                    failed: None,
                },
            );
        }
    }
    out
}

/// What the node runs: `accepted`, with every workload whose revision failed its trial at
/// the revision it went back to.
pub fn running(
    accepted: &[DesiredWorkload],
    trials: &BTreeMap<String, Trial>,
) -> Vec<DesiredWorkload> {
    accepted
        .iter()
        .map(|d| match trials.get(&d.workload.name) {
            Some(t) if t.failed.is_some() && t.revision == d.revision => t.previous.clone(),
            _ => d.clone(),
        })
        .collect()
}

/// Where a trial stands after [`judge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Still on trial; judge again at `wake_ms` at the latest.
    Pending {
        ready_since_ms: Option<u64>,
        wake_ms: u64,
    },
    Proven,
    Failed(Failure),
}

/// Judges `trial` of `workload` (at the revision on trial) from its `report` at `now_ms`.
pub fn judge(trial: &Trial, workload: &Workload, report: &WorkloadStatus, now_ms: u64) -> Verdict {
    let rollout = &workload.spec.rollout;
    let deadline = trial
        .since_ms
        .saturating_add(millis(rollout.progress_deadline));
    let ready_since_ms = match readiness(workload, report) {
        Readiness::Failing(failure) => return Verdict::Failed(failure),
        Readiness::Ready => {
            let since = trial.ready_since_ms.unwrap_or(now_ms);
            let proven_at = since.saturating_add(millis(rollout.healthy_for));
            if now_ms >= proven_at {
                return Verdict::Proven;
            }
            Some(since)
        }
        Readiness::NotYet => None,
    };
    if now_ms >= deadline {
        return Verdict::Failed(Failure::Deadline);
    }
    let gate = ready_since_ms.map(|r| r.saturating_add(millis(rollout.healthy_for)));
    Verdict::Pending {
        ready_since_ms,
        wake_ms: gate.map_or(deadline, |g| g.min(deadline)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::wire::{ContainerState, ContainerStatus, ExitInfo, Health};

    fn workload(image_tag: &str, auto_rollback: bool) -> Workload {
        let yaml = format!(
            "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: web }}\nspec:\n  \
             rollout: {{ healthyFor: 10s, progressDeadline: 60s, autoRollback: {auto_rollback} }}\n  \
             containers:\n    - name: app\n      image: busybox:{image_tag}\n"
        );
        let (mut workloads, diagnostics) =
            shoal_model::manifest::parse_manifest(std::path::Path::new("web.yaml"), &yaml);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        workloads.remove(0).workload
    }

    fn desired(revision: u64, tag: &str) -> DesiredWorkload {
        DesiredWorkload {
            workload: workload(tag, true),
            revision,
        }
    }

    fn report(
        revision: u64,
        state: ContainerState,
        restarts: u32,
        exit: Option<i32>,
    ) -> WorkloadStatus {
        WorkloadStatus {
            name: "web".into(),
            revision,
            containers: vec![ContainerStatus {
                name: "app".into(),
                state,
                health: Health::Unknown,
                restarts,
                last_exit: exit.map(|code| ExitInfo {
                    code: Some(code),
                    signal: None,
                    oom_killed: false,
                    at_ms: 0,
                }),
                oom_kills: 0,
                started_at_ms: None,
                pid: None,
                memory_bytes: None,
                cpu_usage_ns: None,
                message: None,
            }],
            rolled_back: None,
        }
    }

    fn trials_after(
        running: &[DesiredWorkload],
        next: &[DesiredWorkload],
    ) -> BTreeMap<String, Trial> {
        begin(running, &BTreeMap::new(), next, 100)
    }

    #[test]
    fn a_changed_revision_is_tried_from_what_runs_and_a_new_workload_is_not() {
        let trials = trials_after(&[desired(1, "1")], &[desired(2, "2")]);
        let t = &trials["web"];
        assert_eq!((t.revision, t.previous.revision, t.since_ms), (2, 1, 100));
        assert!(
            trials_after(&[], &[desired(1, "1")]).is_empty(),
            "nothing to go back to"
        );
        assert!(
            trials_after(&[desired(1, "1")], &[desired(2, "1")]).is_empty(),
            "the same spec under a new revision changes nothing that runs"
        );
        let mut off = desired(2, "2");
        off.workload = workload("2", false);
        assert!(
            trials_after(&[desired(1, "1")], &[off]).is_empty(),
            "autoRollback off"
        );
    }

    #[test]
    fn a_trial_is_kept_while_its_revision_is_desired_and_ends_with_another() {
        let mut trials = trials_after(&[desired(1, "1")], &[desired(2, "2")]);
        trials.get_mut("web").expect("on trial").failed = Some(Failure::Crashed);
        let run = running(&[desired(2, "2")], &trials);
        assert_eq!(run, vec![desired(1, "1")], "runs the previous revision");
        // A newer generation naming the same revision: still failed, not tried again.
        let again = begin(&run, &trials, &[desired(2, "2")], 500);
        assert_eq!(again, trials);
        // The hub's rollback to revision 3 with revision 1's spec: no trial, runs it.
        let back = begin(&run, &trials, &[desired(3, "1")], 500);
        assert!(back.is_empty());
        // A fix: tried from what runs (revision 1), not from the failed one.
        let fix = begin(&run, &trials, &[desired(4, "4")], 500);
        assert_eq!(fix["web"].previous, desired(1, "1"));
        assert_eq!(fix["web"].failed, None);
        // Gone from the desired state: no trial.
        assert!(begin(&run, &trials, &[], 500).is_empty());
    }

    #[test]
    fn a_trial_fails_by_the_hubs_rule_or_its_deadline_and_is_proven_after_healthy_for() {
        let trial = trials_after(&[desired(1, "1")], &[desired(2, "2")])
            .remove("web")
            .expect("trial");
        let w = workload("2", true);
        let verdict = |t: &Trial, r: &WorkloadStatus, now| judge(t, &w, r, now);
        let crashed = report(2, ContainerState::BackOff, 1, Some(1));
        assert_eq!(
            verdict(&trial, &crashed, 200),
            Verdict::Failed(Failure::Crashed)
        );
        let restarting = report(2, ContainerState::Running, 3, Some(0));
        assert_eq!(
            verdict(&trial, &restarting, 200),
            Verdict::Failed(Failure::Restarting)
        );
        let pulling = report(2, ContainerState::Pulling, 0, None);
        assert_eq!(
            verdict(&trial, &pulling, 200),
            Verdict::Pending {
                ready_since_ms: None,
                wake_ms: 60_100
            }
        );
        assert_eq!(
            verdict(&trial, &pulling, 60_100),
            Verdict::Failed(Failure::Deadline)
        );
        let running = report(2, ContainerState::Running, 0, None);
        assert_eq!(
            verdict(&trial, &running, 1_000),
            Verdict::Pending {
                ready_since_ms: Some(1_000),
                wake_ms: 11_000
            }
        );
        let ready = Trial {
            ready_since_ms: Some(1_000),
            ..trial.clone()
        };
        assert_eq!(
            verdict(&ready, &running, 10_999),
            Verdict::Pending {
                ready_since_ms: Some(1_000),
                wake_ms: 11_000
            }
        );
        assert_eq!(verdict(&ready, &running, 11_000), Verdict::Proven);
        // Ready too late to be proven within the deadline.
        let late = Trial {
            ready_since_ms: Some(55_000),
            ..trial
        };
        assert_eq!(
            verdict(&late, &running, 60_100),
            Verdict::Failed(Failure::Deadline)
        );
    }
}
