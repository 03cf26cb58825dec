//! The shell around `reconcile::trial`: the hub's revisions on trial loaded from and kept in
//! the store, judged on every step, and a failed one rolled back at once (stored first, on
//! the disk, then run), with an event that says so.

use std::collections::BTreeMap;

use shoal_model::clock::wall_ms;
use shoal_model::wire::{DesiredWorkload, EventReason, Severity};

use super::Supervisor;
use crate::reconcile::trial::{self, Trial, Verdict};
use crate::state::{StateError, Store, TrialRecord};

/// The stored trials that belong to `accepted` (the hub's desired state as stored), each
/// starting its deadline now (see `reconcile::trial`: monotonic time, 0 at agent start).
pub(super) fn load(
    store: &Store,
    accepted: &[DesiredWorkload],
) -> Result<BTreeMap<String, Trial>, StateError> {
    Ok(store
        .trials()?
        .into_iter()
        .filter(|r| {
            accepted
                .iter()
                .any(|d| d.workload.name == r.workload && d.revision == r.revision)
        })
        .map(|r| {
            (
                r.workload,
                Trial {
                    revision: r.revision,
                    previous: r.previous,
                    since_ms: 0,
                    ready_since_ms: None,
                    failed: r.failed,
                },
            )
        })
        .collect())
}

/// `trials` as the store keeps them.
pub(super) fn records(trials: &BTreeMap<String, Trial>) -> Vec<TrialRecord> {
    trials
        .iter()
        .map(|(workload, t)| TrialRecord {
            workload: workload.clone(),
            revision: t.revision,
            previous: t.previous.clone(),
            failed: t.failed,
        })
        .collect()
}

impl Supervisor {
    /// Judges every revision on trial from the node's status now: a proven one ends its
    /// trial, a failed one is rolled back. Returns when to judge again at the latest.
    pub(super) fn judge_trials(&mut self) -> Option<u64> {
        let now = self.now();
        let mut wake: Option<u64> = None;
        let names: Vec<String> = self.trials.keys().cloned().collect();
        for name in names {
            let Some(t) = self.trials.get(&name).filter(|t| t.failed.is_none()) else {
                continue;
            };
            let Some(d) = self
                .desired
                .iter()
                .find(|d| d.workload.name == name && d.revision == t.revision)
            else {
                continue;
            };
            let report = self.workload_status(d, false);
            match trial::judge(t, &d.workload, &report, now) {
                Verdict::Pending {
                    ready_since_ms,
                    wake_ms,
                } => {
                    if let Some(t) = self.trials.get_mut(&name) {
                        t.ready_since_ms = ready_since_ms;
                    }
                    wake = Some(wake.map_or(wake_ms, |w| w.min(wake_ms)));
                }
                Verdict::Proven => {
                    let revision = t.revision;
                    self.trials.remove(&name);
                    if let Err(e) = self.store.end_trial(&name, revision) {
                        tracing::warn!(error = %e, workload = %name, "cannot end a revision's trial");
                    }
                    tracing::info!(workload = %name, revision, "the revision proved itself on this node");
                }
                Verdict::Failed(failure) => self.roll_back(&name, failure),
            }
        }
        wake
    }

    /// Goes back from `name`'s revision on trial to the one before, for `failure`.
    fn roll_back(&mut self, name: &str, failure: shoal_model::rollout::Failure) {
        let Some(t) = self.trials.get_mut(name) else {
            return;
        };
        t.failed = Some(failure);
        let (revision, previous) = (t.revision, t.previous.revision);
        // Stored first, on the disk: after a power cut the node runs the previous revision.
        // When that cannot be stored, the node goes back all the same (keeping a failing
        // revision is the worse choice); after a restart the revision is tried again.
        let stored = match self.store.fail_trial(name, revision, failure, wall_ms()) {
            Ok(()) => String::new(),
            Err(e) => format!(" (not stored: {e}; it is tried again after an agent restart)"),
        };
        self.desired = trial::running(&self.accepted, &self.trials);
        self.note(
            Severity::Warning,
            Some(name),
            None,
            EventReason::RolledBack,
            format!(
                "rolled back from revision {revision} to {previous}: revision {revision} failed \
                 here ({failure}); it is not tried again until the hub sends another revision{stored}"
            ),
        );
    }
}
