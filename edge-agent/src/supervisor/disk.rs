//! The data disk's condition as the supervisor reports it: sampled on every step (at most
//! once a second, see [`crate::state::disk`]), one event when the disk fills and one when it
//! has space again (stored as soon as the disk lets them), and the condition in the status
//! that `shoal-agent ps` and the hub's `Status` request see, also before its event is stored.

use shoal_model::clock::wall_ms;
use shoal_model::wire::{Event as WireEvent, Severity};

use super::Supervisor;
use crate::state::disk;

impl Supervisor {
    /// Samples the data disk when due and records what changed.
    pub(super) fn watch_disk(&mut self) {
        let sampled = self.disk.watch(self.now(), wall_ms());
        for event in sampled.retry {
            self.record_disk_event(event);
        }
        let Some(event) = sampled.change else {
            return;
        };
        let space_again = event.severity != Severity::Error;
        if space_again {
            tracing::info!(target: "shoal::event", reason = event.reason.as_str(), " {}", event.message);
        } else {
            tracing::error!(target: "shoal::event", reason = event.reason.as_str(), " {}", event.message);
        }
        self.record_disk_event(event);
        if space_again {
            if let Some((envelope, state)) = self.waiting_for_space.take() {
                self.desired_from_hub(&envelope, state);
            }
        }
    }

    /// Stores a change event, or keeps it for the next sample when even it does not fit.
    fn record_disk_event(&mut self, event: WireEvent) {
        match self.store.record_event(&event) {
            Ok(sequence) => self.last_event.set(sequence),
            Err(e) => {
                tracing::debug!(error = %e, "the disk event is kept for the next sample");
                self.disk.defer(event);
            }
        }
    }

    /// Adds the event saying the disk is full to `events` (the newest ones, oldest first)
    /// while it is and they do not say so already.
    pub(super) fn add_disk_condition(&self, events: &mut Vec<WireEvent>) {
        if let Some(full) = self.disk.full_event() {
            if disk::condition(events).is_none() {
                events.push(full.clone());
            }
        }
    }
}
