//! Status reports for the hub: when one is due (pure), and what one carries.
//!
//! A status is emitted when the node's state changed (containers, health, restarts, messages:
//! everything but times and usage figures) or new events were recorded, at most once per
//! [`COALESCE`], and otherwise every heartbeat. One exception keeps apply-to-running short:
//! a container that became ready (running, and healthy when it has a check) is reported at
//! once even within a window, unless the status before was itself sent early that way, so
//! a burst still costs at most two outbox writes per window. Each emitted status carries the
//! events recorded since the previous one, in order, by event sequence; when they do not fit the
//! status size limit they are spread over several consecutive statuses. Emitted statuses go
//! into the SQLite outbox together with the reporter's cursor; the MQTT transport publishes
//! them. Nothing is written between emissions.

use shoal_model::quantity::millis;
use std::sync::Arc;
use std::time::Duration;

use shoal_model::clock::wall_ms;
use shoal_model::wire::{self, Event, Limits, NodeStatus, NodeUsage, WireError};
use tokio::sync::Notify;

use super::Supervisor;
use crate::state::{OutboxMessage, ReportCursor, StateError};

/// The shortest time between two status emissions: changes in between are coalesced (but
/// for a container that became ready, see [`next_report`]). Long enough that a burst of
/// transitions (pulling, creating, running) costs one outbox write rather than one each.
pub const COALESCE: Duration = Duration::from_millis(250);

/// The most events read from the log for one emission; more wait for the next ([`COALESCE`] later).
const EVENTS_PER_EMISSION: u32 = 1000;

/// Room kept free in a message for what estimating its size does not count exactly: the
/// length prefixes of the event list and of the payload, and the sequence numbers.
const SLACK: usize = 64;

/// Appended to an event message that had to be shortened to fit a status.
const SHORTENED: &str = " [shortened to fit the status size limit]";

/// What the supervisor needs to report to the hub.
#[derive(Debug)]
pub struct HubMode {
    /// The broker, for messages (`this node is managed by the hub at ...`).
    pub broker: String,
    /// Where statuses are published: `{prefix}/node/{id}/status`.
    pub status_topic: String,
    /// A status at least this often, changed or not.
    pub heartbeat: Duration,
    /// Notified whenever statuses are added to the outbox.
    pub outbox_ready: Arc<Notify>,
    /// The hub keys to trust when the database has none yet (from `[hub] signing_key`).
    pub signing_keys: Vec<shoal_model::wire::signing::PublicKey>,
    /// How to reach the hub's API for agent updates; `None`: this node does not update
    /// itself (no password to authenticate with).
    pub update: Option<crate::update::Access>,
    /// The folder of `hub-wire` ([`HUB_WIRE_FILE`]), where the wire version the hub writes
    /// is remembered across agent restarts; `None`: not remembered.
    pub data_dir: Option<std::path::PathBuf>,
}

/// The file in the data dir holding the wire version the hub last wrote a verified desired
/// state in (its digits and a newline), so that a restarted agent's first statuses (which
/// carry what happened at start: a reverted update, a rollback) are written in the version
/// the hub reads, not the oldest. A hint only: a missing, unreadable or unsupported one
/// means the oldest version, as before it existed, and the next desired state corrects it.
pub const HUB_WIRE_FILE: &str = "hub-wire";

/// The wire version `text` (a `hub-wire` file) names, if this build speaks it. Pure.
pub(crate) fn remembered_wire(text: &str) -> Option<u8> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|v| wire::SUPPORTED_WIRE_VERSIONS.contains(v))
}

/// The supervisor's reporting state in hub mode.
#[derive(Debug)]
pub(super) struct Reporter {
    pub(super) mode: HubMode,
    cursor: ReportCursor,
    pub(super) last: Option<Reported>,
    /// Monotonic ms of the last failure to write the outbox that was logged.
    last_error_ms: Option<u64>,
    /// The wire version statuses are written in: the hub's, as its newest desired state that
    /// verified was written (a hub writes only versions it reads), and the oldest this build
    /// speaks until one arrives (a hub of release 0.1.0 reads version 2 only).
    pub(super) hub_wire: u8,
}

impl Reporter {
    pub(super) fn new(mode: HubMode, cursor: ReportCursor) -> Reporter {
        let remembered = mode
            .data_dir
            .as_ref()
            .and_then(|dir| std::fs::read_to_string(dir.join(HUB_WIRE_FILE)).ok())
            .and_then(|text| remembered_wire(&text));
        Reporter {
            mode,
            cursor,
            last: None,
            last_error_ms: None,
            hub_wire: remembered.unwrap_or(wire::OLDEST_WIRE_VERSION),
        }
    }
}

/// The last emitted status, as compared, and when it was emitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Reported {
    /// `None` when the emission failed: anything differs from it.
    pub(crate) status: Option<NodeStatus>,
    /// Monotonic ms.
    pub(crate) at_ms: u64,
    /// It was sent within the window of the one before, because a container became ready.
    pub(crate) early: bool,
}

/// When the next status is due, in monotonic ms (at or before `now_ms`: now): a change at
/// the end of the last status's coalescing window, or at once when a container became ready
/// and the last status was not already sent early; no change at the heartbeat. Pure.
pub(crate) fn next_report(
    last: Option<&Reported>,
    current: &NodeStatus,
    events_waiting: bool,
    now_ms: u64,
    heartbeat: Duration,
) -> u64 {
    let Some(last) = last else {
        return now_ms;
    };
    let changed = events_waiting
        || last
            .status
            .as_ref()
            .is_none_or(|status| !same_report(status, current));
    if changed {
        let window_end = last.at_ms.saturating_add(millis(COALESCE));
        let ready_now = !last.early
            && last
                .status
                .as_ref()
                .is_some_and(|status| newly_ready(status, current));
        if ready_now {
            now_ms
        } else {
            now_ms.max(window_end)
        }
    } else {
        last.at_ms.saturating_add(millis(heartbeat))
    }
}

/// Whether `current` has a container ready (running, and healthy when it has a health
/// check) that was not ready, or not there, in `last`. Pure.
pub(crate) fn newly_ready(last: &NodeStatus, current: &NodeStatus) -> bool {
    let ready = |c: &wire::ContainerStatus| {
        c.state == wire::ContainerState::Running
            && matches!(c.health, wire::Health::Unknown | wire::Health::Healthy)
    };
    current.workloads.iter().any(|w| {
        w.containers.iter().filter(|c| ready(c)).any(|c| {
            !last.workloads.iter().any(|before| {
                before.name == w.name
                    && before.revision == w.revision
                    && before
                        .containers
                        .iter()
                        .any(|b| b.name == c.name && ready(b) && b.started_at_ms == c.started_at_ms)
            })
        })
    })
}

/// Whether two statuses tell the hub the same thing: equal but for their sequence, send
/// time, events and usage figures (node and per container), which change all the time.
pub(crate) fn same_report(a: &NodeStatus, b: &NodeStatus) -> bool {
    comparable(a) == comparable(b)
}

/// The status without what [`same_report`] ignores.
pub(crate) fn comparable(status: &NodeStatus) -> NodeStatus {
    let mut status = status.clone();
    status.sequence = 0;
    status.sent_at_ms = 0;
    status.usage = NodeUsage::default();
    status.events.clear();
    status.dropped_events = 0;
    for workload in &mut status.workloads {
        for container in &mut workload.containers {
            container.memory_bytes = None;
            container.cpu_usage_ns = None;
        }
    }
    status
}

/// Events lost from the bounded log before a status could carry them, and the sequence of
/// the newest event accounted for, given the cursor (`after`), the events read after it and
/// the newest sequence ever recorded. Pure.
pub(crate) fn window(after: u64, events: &[Event], newest: u64) -> (u64, u64) {
    match (events.first(), events.last()) {
        (Some(first), Some(last)) => (
            first.sequence.saturating_sub(after).saturating_sub(1),
            last.sequence.max(after),
        ),
        _ => (newest.saturating_sub(after), newest.max(after)),
    }
}

/// One status ready for the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Packed {
    pub(crate) status: NodeStatus,
    pub(crate) bytes: Vec<u8>,
}

/// Splits `status` and `events` into consecutive statuses (sequences from `first_sequence`)
/// whose encodings fit `limits.status`: each carries the node's whole state and the next
/// events in order; the first reports `dropped`. An event too big for a status of its own
/// has its message shortened. Returns the statuses and the events that could not be sent
/// at all (counted as dropped by the caller; only when the node's state alone is too big).
/// Pure.
pub(crate) fn pack(
    (version, node): (u8, &str),
    status: &NodeStatus,
    events: Vec<Event>,
    dropped: u64,
    first_sequence: u64,
    limits: &Limits,
) -> (Vec<Packed>, u64) {
    let node = (version, node);
    let limit = limits.status;
    let mut base = status.clone();
    base.events.clear();
    base.dropped_events = dropped;
    base.sequence = first_sequence;
    let mut base_len = encoded_len(node, &base);
    if base_len + SLACK > limit {
        shrink(&mut base, node, limit);
        base_len = encoded_len(node, &base);
    }
    let mut out = Vec::new();
    let mut current = base.clone();
    let mut size = base_len;
    let mut unsent = 0u64;
    for mut event in events {
        let mut len = wire::status_event_len(&event);
        if size + len + SLACK > limit {
            if !current.events.is_empty() {
                let next = next_status(&base, &current);
                unsent += finish(
                    node,
                    std::mem::replace(&mut current, next),
                    limits,
                    &mut out,
                );
                size = encoded_len(node, &current);
            }
            if size + len + SLACK > limit {
                shorten(&mut event, (size + len + SLACK).saturating_sub(limit));
                len = wire::status_event_len(&event);
            }
        }
        size += len;
        current.events.push(event);
    }
    unsent += finish(node, current, limits, &mut out);
    (out, unsent)
}

/// The status after `current`: the same state, the next sequence, no events, nothing dropped.
fn next_status(base: &NodeStatus, current: &NodeStatus) -> NodeStatus {
    let mut next = base.clone();
    next.sequence = current.sequence.saturating_add(1);
    next.dropped_events = 0;
    next
}

/// Encodes `status` into `out`; returns how many events were lost because it did not fit
/// after all (never, unless the size estimate is wrong).
fn finish(
    (version, node): (u8, &str),
    status: NodeStatus,
    limits: &Limits,
    out: &mut Vec<Packed>,
) -> u64 {
    match wire::encode_in(version, node, &status, limits) {
        Ok(bytes) => {
            out.push(Packed { status, bytes });
            0
        }
        Err(e) => {
            tracing::error!(error = %e, sequence = status.sequence, "a status does not fit its size limit; its events are reported as dropped");
            status.events.len() as u64 + status.dropped_events
        }
    }
}

/// Makes a node state too big for one status fit, keeping what matters most: first the
/// containers' messages go, then whole workloads from the end.
fn shrink(status: &mut NodeStatus, node: (u8, &str), limit: usize) {
    tracing::error!(
        workloads = status.workloads.len(),
        "the node's state is too big for one status: leaving out container messages and, if need be, workloads"
    );
    for workload in &mut status.workloads {
        for container in &mut workload.containers {
            container.message = None;
        }
    }
    while encoded_len(node, status) + SLACK > limit && status.workloads.pop().is_some() {}
}

/// Cuts `excess` bytes (and room for a marker) off the event's message.
fn shorten(event: &mut Event, excess: usize) {
    let keep = event
        .message
        .len()
        .saturating_sub(excess + SHORTENED.len() + 8);
    let mut cut = keep;
    while !event.message.is_char_boundary(cut) {
        cut -= 1;
    }
    event.message.truncate(cut);
    event.message.push_str(SHORTENED);
}

/// The size of `status` on the wire, whatever the limit.
fn encoded_len((version, node): (u8, &str), status: &NodeStatus) -> usize {
    let unlimited = Limits {
        status: usize::MAX,
        ..Limits::default()
    };
    match wire::encode_in(version, node, status, &unlimited) {
        Ok(bytes) => bytes.len(),
        Err(WireError::TooLarge { size, .. }) => size,
        // Not encodable at all (a bad name): let `finish` report it.
        Err(_) => 0,
    }
}

impl Supervisor {
    /// Notes the wire version the hub wrote a desired state in that verified: the statuses
    /// after it are written in that version, the newest the hub reads.
    pub(super) fn hub_writes(&mut self, version: u8) {
        let Some(reporter) = &mut self.hub else {
            return;
        };
        if reporter.hub_wire != version {
            tracing::info!(
                from = reporter.hub_wire,
                to = version,
                "the hub writes wire version {version}: statuses follow"
            );
            reporter.hub_wire = version;
            if let Some(dir) = &reporter.mode.data_dir {
                let text = format!("{version}\n");
                if let Err(e) = crate::launch::write_atomic(dir, HUB_WIRE_FILE, text.as_bytes()) {
                    tracing::warn!(error = %e, "cannot remember the hub's wire version: the next start writes its first statuses in the oldest");
                }
            }
        }
    }

    /// In hub mode, emits a status into the outbox when one is due; returns how long the loop
    /// may sleep before the next one can be due.
    pub(super) fn report(&mut self) -> Duration {
        let now = self.now();
        let Some(reporter) = &self.hub else {
            return super::TICK;
        };
        let current = self.node_status(false);
        let waiting = self.last_event.get() > reporter.cursor.last_event;
        let due = next_report(
            reporter.last.as_ref(),
            &current,
            waiting,
            now,
            reporter.mode.heartbeat,
        );
        if due > now {
            return Duration::from_millis(due - now);
        }
        let early = reporter
            .last
            .as_ref()
            .is_some_and(|last| now < last.at_ms.saturating_add(millis(COALESCE)));
        self.emit(now, early);
        COALESCE
    }

    /// Puts the current status and the events since the previous one into the outbox.
    fn emit(&mut self, now: u64, early: bool) {
        let Some(reporter) = &self.hub else {
            return;
        };
        let cursor = reporter.cursor;
        let events = match self
            .store
            .events_after(cursor.last_event, EVENTS_PER_EMISSION)
        {
            Ok(events) => events,
            Err(e) => {
                self.emission_failed(now, &e);
                return;
            }
        };
        let (lost, last_event) = window(cursor.last_event, &events, self.last_event.get());
        let mut status = self.node_status(true);
        status.sent_at_ms = wall_ms();
        let (packed, unsent) = pack(
            (reporter.hub_wire, self.node_id()),
            &status,
            events,
            cursor.dropped_events.saturating_add(lost),
            cursor.sequence.saturating_add(1),
            &Limits::default(),
        );
        let topic = reporter.mode.status_topic.clone();
        let messages: Vec<OutboxMessage> = packed
            .iter()
            .map(|p| OutboxMessage {
                topic: topic.clone(),
                payload: p.bytes.clone(),
                events: p.status.events.len() as u64 + p.status.dropped_events,
            })
            .collect();
        let sequence = packed.last().map_or(cursor.sequence, |p| p.status.sequence);
        // The first message reports the stored losses; what no message could carry (only if
        // a message failed to encode) is counted for the next status instead.
        let result = self.store.push_outbox(
            &messages,
            sequence,
            last_event,
            (cursor.dropped_events, unsent),
            status.sent_at_ms,
        );
        let Some(reporter) = &mut self.hub else {
            return;
        };
        match result {
            Ok(cursor) => {
                tracing::debug!(
                    sequence,
                    messages = messages.len(),
                    last_event,
                    "status put in the outbox"
                );
                reporter.cursor = cursor;
                reporter.last = Some(Reported {
                    status: Some(comparable(&status)),
                    at_ms: now,
                    early,
                });
                reporter.mode.outbox_ready.notify_one();
            }
            Err(e) => self.emission_failed(now, &e),
        }
    }

    /// Logs a failed emission (at most once a minute) and has it retried a coalescing window later.
    fn emission_failed(&mut self, now: u64, error: &StateError) {
        let Some(reporter) = &mut self.hub else {
            return;
        };
        if reporter
            .last_error_ms
            .is_none_or(|at| now.saturating_sub(at) > 60_000)
        {
            tracing::error!(%error, "cannot put a status in the outbox; retrying every second");
            reporter.last_error_ms = Some(now);
        }
        reporter.last = Some(Reported {
            status: None,
            at_ms: now,
            early: false,
        });
    }
}
