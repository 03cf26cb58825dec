//! The hub's desired state: whether to take it (a pure rule), and taking it: stored in SQLite
//! first, then made the state the loop converges to. Level-triggered: the newest generation
//! wins, whatever arrived in between.
//!
//! Nothing is taken unless its signature verifies with a hub key this node trusts; the keys a
//! verified state announces replace the trusted ones in the same transaction that stores it
//! (key rotation). No clock is involved: signatures and generations decide.

use shoal_model::clock::wall_ms;
pub(crate) use shoal_model::wire::desired_verdict::{judge, Verdict};
use shoal_model::wire::{DesiredState, DesiredWorkload, Envelope, EventReason, Severity};

use super::{trial, Supervisor};
use crate::reconcile;
use crate::state::Source;

/// One line per workload that `next` adds, changes or removes compared with `current`.
pub(crate) fn changes(current: &[DesiredWorkload], next: &[DesiredWorkload]) -> Vec<String> {
    let mut lines = Vec::new();
    for d in next {
        let name = &d.workload.name;
        match current.iter().find(|c| &c.workload.name == name) {
            None => lines.push(format!("{name}: created (revision {})", d.revision)),
            Some(c) if c.workload != d.workload || c.revision != d.revision => {
                lines.push(format!("{name}: configured (revision {})", d.revision))
            }
            Some(_) => {}
        }
    }
    for c in current {
        if !next.iter().any(|d| d.workload.name == c.workload.name) {
            lines.push(format!("{}: deleted", c.workload.name));
        }
    }
    lines
}

impl Supervisor {
    /// Takes a desired state from the hub: judged, checked against the node's capacity,
    /// stored, and only then converged to.
    pub(super) fn desired_from_hub(&mut self, envelope: &Envelope, state: DesiredState) {
        if self.hub.is_none() {
            tracing::warn!(
                generation = state.generation,
                "a desired state from the hub arrived but this agent has no [hub]: ignored"
            );
            return;
        }
        let verdict = judge(
            self.node_id(),
            self.generation,
            &self.trusted,
            envelope,
            &state,
        );
        if matches!(verdict, Verdict::Accept | Verdict::Ignore(_)) {
            self.hub_writes(envelope.version);
        }
        if matches!(verdict, Verdict::Accept | Verdict::Ignore(_)) {
            // Verified: its agent target counts, also when it is the state already taken
            // (redelivered at every reconnect, so a restarted agent learns its target again).
            if let Some(updater) = self.updater.as_mut() {
                updater.offer(state.agent.as_ref());
            }
        }
        match verdict {
            Verdict::Ignore(why) => {
                tracing::debug!("{why}");
                return;
            }
            Verdict::Reject(why) => {
                self.note(
                    Severity::Warning,
                    None,
                    None,
                    EventReason::DesiredStateRejected,
                    why,
                );
                return;
            }
            Verdict::Accept => {}
        }
        let generation = state.generation;
        if let Err(message) = self.fits(&state.workloads) {
            self.note(
                Severity::Warning,
                None,
                None,
                EventReason::CapacityExceeded,
                format!("refused desired generation {generation}: {message}"),
            );
            return;
        }
        let trials =
            reconcile::trial::begin(&self.desired, &self.trials, &state.workloads, self.now());
        if let Err(e) = self.store.save_desired(
            Source::Hub,
            generation,
            &state.workloads,
            &state.signing_keys,
            &trial::records(&trials),
            wall_ms(),
        ) {
            let retry = if e.is_disk_full() {
                self.waiting_for_space = Some((Box::new(envelope.clone()), state));
                "it is taken once the disk has space again"
            } else {
                "the next delivery is tried again"
            };
            self.note(
                Severity::Error,
                None,
                None,
                EventReason::DesiredStateRejected,
                format!(
                    "cannot store desired generation {generation} ({e}); generation {} keeps running and {retry}",
                    self.generation
                ),
            );
            return;
        }
        let lines = changes(&self.accepted, &state.workloads);
        let summary = if lines.is_empty() {
            "no workload changes".to_string()
        } else {
            lines.join("; ")
        };
        tracing::info!(
            generation,
            previous = self.generation,
            "accepted the hub's desired state"
        );
        self.desired = reconcile::trial::running(&state.workloads, &trials);
        self.accepted = state.workloads;
        self.trials = trials;
        self.generation = generation;
        if !state.signing_keys.is_empty() && state.signing_keys != self.trusted {
            let ids: Vec<String> = state
                .signing_keys
                .iter()
                .map(|k| k.id().to_string())
                .collect();
            tracing::info!(keys = ?ids, "the hub's signing keys changed");
            self.trusted = state.signing_keys;
        }
        self.note(
            Severity::Info,
            None,
            None,
            EventReason::DesiredStateAccepted,
            format!("generation {generation} from the hub: {summary}"),
        );
    }
}
