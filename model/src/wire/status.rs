//! Node status: what an agent observes, sent on change and as a slow heartbeat.
//!
//! The serde derives that some of these types keep are for the hub's JSON API only; the wire
//! and the databases use the frozen `v2` shapes.

use serde::{Deserialize, Serialize};

use super::envelope::sealed::Sealed;
use super::{check_name, check_optional_name, v2, v3, Message, MessageKind, WireError};
use crate::rollout::Failure;

/// What one agent observes on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeStatus {
    pub node_id: String,
    /// The newest desired-state generation the agent has accepted.
    pub observed_generation: u64,
    /// Increases by one with every status the agent sends, across restarts: the hub keeps the
    /// newest and takes only the events of older ones (duplicates, replays from the agent's
    /// offline buffer that were already delivered); it refuses numbers no agent reaches and
    /// takes numbers far below the newest as a fresh start (see the hub's `admission`).
    pub sequence: u64,
    /// The agent's clock when it sent this status, in ms since the Unix epoch. Informative only:
    /// device clocks drift and jump.
    pub sent_at_ms: u64,
    /// One entry per workload the agent runs or is starting.
    pub workloads: Vec<WorkloadStatus>,
    pub usage: NodeUsage,
    /// Events since the previous status, oldest first.
    pub events: Vec<Event>,
    /// Events the agent had to drop because its buffer was full, since the previous status.
    pub dropped_events: u64,
    /// Where the node is with the agent upgrade its desired state names, while it is not
    /// running that version (once it runs it, its presence says so). Added in wire version 3;
    /// left out for a hub that reads version 2.
    pub agent_update: Option<AgentUpdate>,
}

/// The agent upgrade a node is on: the version the hub asked for, and how far it got.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentUpdate {
    pub version: String,
    pub state: AgentUpdateState,
}

/// How far a node got with an agent upgrade. Variants are append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "state")]
pub enum AgentUpdateState {
    /// Downloading the binary: `received` of `size` bytes so far.
    Downloading { received: u64, size: u64 },
    /// Verified and handed to the launcher, which is starting it on probation.
    Switching,
    /// It failed here, and the node runs its previous agent; it is not tried again until the
    /// hub names another version.
    Failed { reason: String },
}

/// The longest failure reason a status may carry.
pub const MAX_UPDATE_REASON_CHARS: usize = 1024;

/// One workload as the agent sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkloadStatus {
    pub name: String,
    /// The hub's revision of the workload that these containers run.
    pub revision: u64,
    pub containers: Vec<ContainerStatus>,
    /// Set when the node went back from a newer revision of the workload on its own (the
    /// newer one failed there, see `shoal_model::rollout`): `revision` above is then the one
    /// it went back to. Added in wire version 3; left out for a hub that reads version 2.
    pub rolled_back: Option<RolledBack>,
}

/// A revision that failed on the node, which went back to the previous one by itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RolledBack {
    /// The revision that failed.
    pub revision: u64,
    pub failure: Failure,
}

/// One container as the agent sees it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub state: ContainerState,
    pub health: Health,
    /// Restarts since the workload revision was first started on this node.
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    /// OOM kills seen in the container's cgroup since the revision was first started.
    pub oom_kills: u32,
    /// Agent clock, ms since the Unix epoch.
    pub started_at_ms: Option<u64>,
    pub pid: Option<u32>,
    /// Current memory use of the container's cgroup.
    pub memory_bytes: Option<u64>,
    /// Total CPU time used by the container's cgroup.
    pub cpu_usage_ns: Option<u64>,
    /// Why the container is in its state, in words, when there is something to say.
    pub message: Option<String>,
}

/// Where a container is in its life. Variants are append-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContainerState {
    /// Accepted, waiting for its turn.
    Pending,
    Pulling,
    Creating,
    Running,
    /// Ended and, by its restart policy, stays ended.
    Exited,
    /// Could not be pulled, created or started.
    Failed,
    /// Waiting before the next restart.
    BackOff,
    /// Stopped on purpose (removed from desired state, or being replaced).
    Stopped,
}

/// The result of a container's health check. Variants are append-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Health {
    /// No health check, or none has run yet.
    Unknown,
    /// Within the start period.
    Starting,
    Healthy,
    Unhealthy,
}

/// How a container process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// The exit status, when the process exited.
    pub code: Option<i32>,
    /// The signal, when a signal killed the process.
    pub signal: Option<i32>,
    pub oom_killed: bool,
    /// Agent clock, ms since the Unix epoch.
    pub at_ms: u64,
}

/// How it ended, as both CLIs show it and the agent's events say it: `OOMKilled` (the kernel's
/// OOM killer, whatever the signal), `SIGKILL` (a signal, by name when it is a common one),
/// `signal 40`, `code 3`, or `ended` when neither is known.
impl std::fmt::Display for ExitInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.oom_killed, self.signal, self.code) {
            (true, _, _) => f.write_str("OOMKilled"),
            (false, Some(signal), _) => match signal_name(signal) {
                Some(name) => f.write_str(name),
                None => write!(f, "signal {signal}"),
            },
            (false, None, Some(code)) => write!(f, "code {code}"),
            (false, None, None) => f.write_str("ended"),
        }
    }
}

fn signal_name(signal: i32) -> Option<&'static str> {
    Some(match signal {
        1 => "SIGHUP",
        2 => "SIGINT",
        3 => "SIGQUIT",
        4 => "SIGILL",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        13 => "SIGPIPE",
        14 => "SIGALRM",
        15 => "SIGTERM",
        _ => return None,
    })
}

/// Resource use of the whole node.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    /// Average CPU use since the previous status, in millicores (1000 = one core busy).
    pub cpu_millis_used: u32,
    /// Space the agent's data dir uses: images, volumes, state, logs.
    pub disk_used_bytes: u64,
    /// Space the agent is allowed to use for its data dir.
    pub disk_budget_bytes: u64,
}

/// Something that happened on the node, for operators (`shoal events`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Increases with every event the agent records, across restarts.
    pub sequence: u64,
    /// Agent clock, ms since the Unix epoch.
    pub at_ms: u64,
    pub severity: Severity,
    pub workload: Option<String>,
    pub container: Option<String>,
    pub reason: EventReason,
    pub message: String,
}

/// Variants are append-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

/// Why an event was recorded: a closed set the hub can count and filter on; the event's
/// message says the rest. Variants are append-only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventReason {
    AgentStarted,
    DesiredStateAccepted,
    /// Bad signature, another node's id, a replayed generation, or a workload the node refuses.
    DesiredStateRejected,
    /// A workload asks for more than the node's capacity.
    CapacityExceeded,
    /// A host path outside the allowed list, a device that does not exist.
    WorkloadRefused,
    ImagePulling,
    ImagePulled,
    ImagePullFailed,
    /// A layer that escapes the rootfs, a digest that does not match.
    ImageRejected,
    DiskBudgetExceeded,
    Created,
    CreateFailed,
    Started,
    /// Found running after an agent restart and taken over without a restart.
    Adopted,
    Exited,
    OomKilled,
    BackOff,
    Healthy,
    Unhealthy,
    Stopped,
    Removed,
    /// Recorded by the hub, not the agent: a status from the node that it refused (a sequence
    /// number or a desired-state generation no genuine agent can have).
    StatusRefused,
    /// The node went back to a workload's previous revision on its own, because the new one
    /// failed there (see `WorkloadStatus::rolled_back`). Added in wire version 3; a version-2
    /// reader gets it as `DesiredStateRejected`, with the same message.
    RolledBack,
    /// An agent upgrade failed on the node (download, verification, or the new agent did not
    /// come up healthy and the launcher went back to the previous one). Added in wire version
    /// 3; a version-2 reader gets it as `AgentStarted`, with the same message.
    AgentUpdateFailed,
}

impl EventReason {
    /// Every reason, in declaration order.
    pub const ALL: [EventReason; 24] = [
        EventReason::AgentStarted,
        EventReason::DesiredStateAccepted,
        EventReason::DesiredStateRejected,
        EventReason::CapacityExceeded,
        EventReason::WorkloadRefused,
        EventReason::ImagePulling,
        EventReason::ImagePulled,
        EventReason::ImagePullFailed,
        EventReason::ImageRejected,
        EventReason::DiskBudgetExceeded,
        EventReason::Created,
        EventReason::CreateFailed,
        EventReason::Started,
        EventReason::Adopted,
        EventReason::Exited,
        EventReason::OomKilled,
        EventReason::BackOff,
        EventReason::Healthy,
        EventReason::Unhealthy,
        EventReason::Stopped,
        EventReason::Removed,
        EventReason::StatusRefused,
        EventReason::RolledBack,
        EventReason::AgentUpdateFailed,
    ];

    /// A stable name, for storage and display (`oom-killed`).
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::AgentStarted => "agent-started",
            EventReason::DesiredStateAccepted => "desired-state-accepted",
            EventReason::DesiredStateRejected => "desired-state-rejected",
            EventReason::CapacityExceeded => "capacity-exceeded",
            EventReason::WorkloadRefused => "workload-refused",
            EventReason::ImagePulling => "image-pulling",
            EventReason::ImagePulled => "image-pulled",
            EventReason::ImagePullFailed => "image-pull-failed",
            EventReason::ImageRejected => "image-rejected",
            EventReason::DiskBudgetExceeded => "disk-budget-exceeded",
            EventReason::Created => "created",
            EventReason::CreateFailed => "create-failed",
            EventReason::Started => "started",
            EventReason::Adopted => "adopted",
            EventReason::Exited => "exited",
            EventReason::OomKilled => "oom-killed",
            EventReason::BackOff => "back-off",
            EventReason::Healthy => "healthy",
            EventReason::Unhealthy => "unhealthy",
            EventReason::Stopped => "stopped",
            EventReason::Removed => "removed",
            EventReason::StatusRefused => "status-refused",
            EventReason::RolledBack => "rolled-back",
            EventReason::AgentUpdateFailed => "agent-update-failed",
        }
    }

    /// Whether only the hub records events of this reason (about a node, in its own
    /// database): an agent never reports one, and a status carrying one is refused.
    pub fn is_recorded_by_hub(self) -> bool {
        self == EventReason::StatusRefused
    }

    /// The reason with this [`EventReason::as_str`] name.
    pub fn from_name(name: &str) -> Option<EventReason> {
        EventReason::ALL.into_iter().find(|r| r.as_str() == name)
    }
}

/// Refuses an event only the hub records (`status-refused`): an agent cannot report one, and
/// wire version 2 readers of release 0.1.0 could not read it.
pub(super) fn check_reported_by_agent(
    kind: MessageKind,
    events: &[Event],
) -> Result<(), WireError> {
    match events
        .iter()
        .find(|e| e.reason == EventReason::StatusRefused)
    {
        Some(event) => Err(WireError::Invalid {
            kind,
            reason: format!(
                "event {} is a `{}` event, which only the hub records",
                event.sequence,
                event.reason.as_str()
            ),
        }),
        None => Ok(()),
    }
}

impl Sealed for NodeStatus {
    type V2 = v2::NodeStatus;
    /// Workloads that went back by themselves, and the `rolled-back` event.
    type V3 = v3::NodeStatus;

    fn to_v3(&self) -> v3::NodeStatus {
        self.into()
    }

    fn from_v3(frozen: v3::NodeStatus) -> Result<Self, v2::Invalid> {
        frozen.try_into()
    }

    fn to_v2(&self) -> v2::NodeStatus {
        self.into()
    }

    fn from_v2(frozen: v2::NodeStatus) -> Result<Self, v2::Invalid> {
        Ok(frozen.into())
    }
}

impl Message for NodeStatus {
    const KIND: MessageKind = MessageKind::Status;

    fn node_id(&self) -> Option<&str> {
        Some(&self.node_id)
    }

    fn generation(&self) -> u64 {
        self.sequence
    }

    fn check(&self) -> Result<(), WireError> {
        const KIND: MessageKind = MessageKind::Status;
        check_name(KIND, "node id", &self.node_id)?;
        for workload in &self.workloads {
            check_name(KIND, "workload name", &workload.name)?;
            for container in &workload.containers {
                check_name(KIND, "container name", &container.name)?;
            }
        }
        for event in &self.events {
            check_optional_name(KIND, "event workload", event.workload.as_deref())?;
            check_optional_name(KIND, "event container", event.container.as_deref())?;
        }
        check_reported_by_agent(KIND, &self.events)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> NodeStatus {
        NodeStatus {
            node_id: "node-1".into(),
            observed_generation: 4,
            sequence: 10,
            sent_at_ms: 0,
            workloads: vec![WorkloadStatus {
                name: "sensor-reader".into(),
                revision: 2,
                containers: vec![container("reader")],
                rolled_back: None,
            }],
            usage: NodeUsage::default(),
            events: vec![event(Some("sensor-reader"), Some("reader"))],
            dropped_events: 0,
            agent_update: None,
        }
    }

    fn container(name: &str) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state: ContainerState::Running,
            health: Health::Healthy,
            restarts: 0,
            last_exit: None,
            oom_kills: 0,
            started_at_ms: Some(1),
            pid: Some(42),
            memory_bytes: Some(1 << 20),
            cpu_usage_ns: Some(5),
            message: None,
        }
    }

    fn event(workload: Option<&str>, container: Option<&str>) -> Event {
        Event {
            sequence: 1,
            at_ms: 2,
            severity: Severity::Info,
            workload: workload.map(Into::into),
            container: container.map(Into::into),
            reason: EventReason::Started,
            message: "started".into(),
        }
    }

    type Edit = fn(&mut NodeStatus);

    fn check(edit: Edit) -> Result<(), String> {
        let mut status = status();
        edit(&mut status);
        status.check().map_err(|e| e.to_string())
    }

    #[test]
    fn status_checks_accept_valid_names_and_events_without_a_workload() {
        assert_eq!(check(|_| {}), Ok(()));
        assert_eq!(check(|s| s.events.push(event(None, None))), Ok(()));
    }

    #[test]
    fn status_checks_reject_names_that_are_not_dns_labels() {
        let cases: [(Edit, &str); 4] = [
            (|s| s.node_id = "#".into(), "node id `#`"),
            (
                |s| s.workloads[0].name = "a/b".into(),
                "workload name `a/b`",
            ),
            (
                |s| s.workloads[0].containers[0].name = String::new(),
                "container name ``",
            ),
            (
                |s| s.events[0].container = Some("X".into()),
                "event container `X`",
            ),
        ];
        for (edit, expected) in cases {
            let error = check(edit).expect_err(expected);
            assert!(error.starts_with("invalid status: "), "{error}");
            assert!(
                error.contains(expected),
                "{error} should mention {expected}"
            );
        }
    }

    #[test]
    fn a_status_cannot_carry_an_event_only_the_hub_records() {
        let error =
            check(|s| s.events[0].reason = EventReason::StatusRefused).expect_err("status-refused");
        assert!(error.contains("only the hub records"), "{error}");
    }

    #[test]
    fn the_status_sequence_is_the_envelope_generation() {
        assert_eq!(Message::generation(&status()), 10);
    }

    #[test]
    fn an_exit_reads_the_same_in_both_clis_and_in_events() {
        let exit = |code, signal, oom_killed| ExitInfo {
            code,
            signal,
            oom_killed,
            at_ms: 0,
        };
        let cases = [
            (exit(Some(3), None, false), "code 3"),
            (exit(Some(0), None, false), "code 0"),
            (exit(Some(-1), None, false), "code -1"),
            (exit(None, Some(9), false), "SIGKILL"),
            (exit(None, Some(15), false), "SIGTERM"),
            (exit(Some(137), Some(9), false), "SIGKILL"),
            (exit(None, Some(40), false), "signal 40"),
            (exit(None, Some(9), true), "OOMKilled"),
            (exit(Some(137), None, true), "OOMKilled"),
            (exit(None, None, false), "ended"),
        ];
        for (exit, expected) in cases {
            assert_eq!(exit.to_string(), expected, "{exit:?}");
        }
    }
}
