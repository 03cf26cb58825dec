//! Wire version 2 of the envelope, the five messages and node facts: frozen copies of the
//! types in `crate::wire` and `crate::node`, as release 0.1.0 put them on the wire and in both
//! databases.
//!
//! Frozen: see the module above. Field order, field types and variant order are the format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::manifest::Workload;
use super::Invalid;
use crate::node as dn;
use crate::wire as dw;

// ---- node facts ------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub arch: String,
    pub os: String,
    pub kernel: String,
    pub cgroup_version: u8,
    pub capacity: Capacity,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    pub memory_bytes: u64,
    pub cpu_millis: u32,
    pub pids: u32,
}

// ---- envelope --------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MessageKind {
    Desired,
    Status,
    Presence,
    RpcRequest,
    RpcResponse,
}

/// On the wire: the version byte 2, then postcard of this struct.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub kind: MessageKind,
    pub node_id: String,
    pub generation: u64,
    pub payload: Vec<u8>,
    pub signature: Option<Vec<u8>>,
}

// ---- desired state ---------------------------------------------------------------------

/// An ed25519 public key: 32 bytes, no length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKey(pub [u8; 32]);

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub node_id: String,
    pub generation: u64,
    pub workloads: Vec<DesiredWorkload>,
    pub signing_keys: Vec<PublicKey>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredWorkload {
    pub workload: Workload,
    pub revision: u64,
}

// ---- status ----------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub observed_generation: u64,
    pub sequence: u64,
    pub sent_at_ms: u64,
    pub workloads: Vec<WorkloadStatus>,
    pub usage: NodeUsage,
    pub events: Vec<Event>,
    pub dropped_events: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    pub name: String,
    pub revision: u64,
    pub containers: Vec<ContainerStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    pub name: String,
    pub state: ContainerState,
    pub health: Health,
    pub restarts: u32,
    pub last_exit: Option<ExitInfo>,
    pub oom_kills: u32,
    pub started_at_ms: Option<u64>,
    pub pid: Option<u32>,
    pub memory_bytes: Option<u64>,
    pub cpu_usage_ns: Option<u64>,
    pub message: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Pending,
    Pulling,
    Creating,
    Running,
    Exited,
    Failed,
    BackOff,
    Stopped,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Health {
    Unknown,
    Starting,
    Healthy,
    Unhealthy,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitInfo {
    pub code: Option<i32>,
    pub signal: Option<i32>,
    pub oom_killed: bool,
    pub at_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeUsage {
    pub memory_used_bytes: u64,
    pub memory_total_bytes: u64,
    pub cpu_millis_used: u32,
    pub disk_used_bytes: u64,
    pub disk_budget_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub sequence: u64,
    pub at_ms: u64,
    pub severity: Severity,
    pub workload: Option<String>,
    pub container: Option<String>,
    pub reason: EventReason,
    pub message: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Severity {
    Info,
    Warning,
    Error,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventReason {
    AgentStarted,
    DesiredStateAccepted,
    DesiredStateRejected,
    CapacityExceeded,
    WorkloadRefused,
    ImagePulling,
    ImagePulled,
    ImagePullFailed,
    ImageRejected,
    DiskBudgetExceeded,
    Created,
    CreateFailed,
    Started,
    Adopted,
    Exited,
    OomKilled,
    BackOff,
    Healthy,
    Unhealthy,
    Stopped,
    Removed,
    /// Appended after release 0.1.0, the one exception to "frozen" (see `v2/mod.rs`): the
    /// hub's own event, held only by the hub's database. Never on the wire: the status and
    /// rpc checks refuse it, so no 0.1.0 reader is ever given an index it cannot read.
    StatusRefused,
}

// ---- presence --------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub node_id: String,
    pub online: bool,
    pub facts: NodeFacts,
}

// ---- rpc -------------------------------------------------------------------------------

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcRequest {
    pub id: u64,
    pub body: RpcRequestBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcRequestBody {
    Logs {
        workload: String,
        container: Option<String>,
        tail: Option<u32>,
        follow: bool,
    },
    Exec {
        workload: String,
        container: Option<String>,
        command: Vec<String>,
    },
    Diagnostics,
    Ping,
    Status,
    Apply {
        workloads: Vec<DesiredWorkload>,
    },
    DeleteWorkload {
        workload: String,
    },
    ListImages,
    ImportImage {
        path: String,
    },
    RemoveImage {
        reference: String,
    },
    PruneImages,
    Cancel {
        id: u64,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RpcResponse {
    pub id: u64,
    pub body: RpcResponseBody,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcResponseBody {
    LogChunk {
        data: Vec<u8>,
        eof: bool,
    },
    ExecResult {
        exit_code: i32,
        stdout: Vec<u8>,
        stderr: Vec<u8>,
    },
    Diagnostics {
        text: String,
    },
    Pong,
    Error {
        message: String,
    },
    Status(NodeStatus),
    Applied {
        generation: u64,
        changes: Vec<String>,
    },
    Images(Vec<ImageSummary>),
    Done {
        message: String,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    pub reference: String,
    pub digest: String,
    pub size_bytes: u64,
    pub in_use: u32,
}

// ---- domain -> v2 ----------------------------------------------------------------------

fn list<'a, D: 'a, V: From<&'a D>>(items: &'a [D]) -> Vec<V> {
    items.iter().map(V::from).collect()
}

impl From<&dn::NodeFacts> for NodeFacts {
    fn from(f: &dn::NodeFacts) -> Self {
        NodeFacts {
            arch: f.arch.clone(),
            os: f.os.clone(),
            kernel: f.kernel.clone(),
            cgroup_version: f.cgroup_version,
            capacity: Capacity {
                memory_bytes: f.capacity.memory_bytes,
                cpu_millis: f.capacity.cpu_millis,
                pids: f.capacity.pids,
            },
            agent_version: f.agent_version.clone(),
            labels: dw::wire_versions_into_labels(&f.labels, &f.wire_versions),
        }
    }
}

impl From<dw::MessageKind> for MessageKind {
    fn from(k: dw::MessageKind) -> Self {
        match k {
            dw::MessageKind::Desired => MessageKind::Desired,
            dw::MessageKind::Status => MessageKind::Status,
            dw::MessageKind::Presence => MessageKind::Presence,
            dw::MessageKind::RpcRequest => MessageKind::RpcRequest,
            dw::MessageKind::RpcResponse => MessageKind::RpcResponse,
        }
    }
}

impl From<&dw::Envelope> for Envelope {
    fn from(e: &dw::Envelope) -> Self {
        Envelope {
            kind: e.kind.into(),
            node_id: e.node_id.clone(),
            generation: e.generation,
            payload: e.payload.clone(),
            signature: e.signature.clone(),
        }
    }
}

impl From<&dw::signing::PublicKey> for PublicKey {
    fn from(k: &dw::signing::PublicKey) -> Self {
        PublicKey(k.0)
    }
}

impl From<&dw::DesiredState> for DesiredState {
    fn from(d: &dw::DesiredState) -> Self {
        DesiredState {
            node_id: d.node_id.clone(),
            generation: d.generation,
            workloads: list(&d.workloads),
            signing_keys: list(&d.signing_keys),
        }
    }
}

impl From<&dw::DesiredWorkload> for DesiredWorkload {
    fn from(d: &dw::DesiredWorkload) -> Self {
        DesiredWorkload {
            workload: (&d.workload).into(),
            revision: d.revision,
        }
    }
}

impl From<&dw::NodeStatus> for NodeStatus {
    fn from(s: &dw::NodeStatus) -> Self {
        NodeStatus {
            node_id: s.node_id.clone(),
            observed_generation: s.observed_generation,
            sequence: s.sequence,
            sent_at_ms: s.sent_at_ms,
            workloads: list(&s.workloads),
            usage: (&s.usage).into(),
            events: list(&s.events),
            dropped_events: s.dropped_events,
        }
    }
}

impl From<&dw::WorkloadStatus> for WorkloadStatus {
    fn from(w: &dw::WorkloadStatus) -> Self {
        // `rolled_back` is version 3's: a version-2 hub runs no rollouts to tell.
        WorkloadStatus {
            name: w.name.clone(),
            revision: w.revision,
            containers: list(&w.containers),
        }
    }
}

impl From<&dw::ContainerStatus> for ContainerStatus {
    fn from(c: &dw::ContainerStatus) -> Self {
        ContainerStatus {
            name: c.name.clone(),
            state: c.state.into(),
            health: c.health.into(),
            restarts: c.restarts,
            last_exit: c.last_exit.as_ref().map(ExitInfo::from),
            oom_kills: c.oom_kills,
            started_at_ms: c.started_at_ms,
            pid: c.pid,
            memory_bytes: c.memory_bytes,
            cpu_usage_ns: c.cpu_usage_ns,
            message: c.message.clone(),
        }
    }
}

impl From<dw::ContainerState> for ContainerState {
    fn from(s: dw::ContainerState) -> Self {
        match s {
            dw::ContainerState::Pending => ContainerState::Pending,
            dw::ContainerState::Pulling => ContainerState::Pulling,
            dw::ContainerState::Creating => ContainerState::Creating,
            dw::ContainerState::Running => ContainerState::Running,
            dw::ContainerState::Exited => ContainerState::Exited,
            dw::ContainerState::Failed => ContainerState::Failed,
            dw::ContainerState::BackOff => ContainerState::BackOff,
            dw::ContainerState::Stopped => ContainerState::Stopped,
        }
    }
}

impl From<dw::Health> for Health {
    fn from(h: dw::Health) -> Self {
        match h {
            dw::Health::Unknown => Health::Unknown,
            dw::Health::Starting => Health::Starting,
            dw::Health::Healthy => Health::Healthy,
            dw::Health::Unhealthy => Health::Unhealthy,
        }
    }
}

impl From<&dw::ExitInfo> for ExitInfo {
    fn from(e: &dw::ExitInfo) -> Self {
        ExitInfo {
            code: e.code,
            signal: e.signal,
            oom_killed: e.oom_killed,
            at_ms: e.at_ms,
        }
    }
}

impl From<&dw::NodeUsage> for NodeUsage {
    fn from(u: &dw::NodeUsage) -> Self {
        NodeUsage {
            memory_used_bytes: u.memory_used_bytes,
            memory_total_bytes: u.memory_total_bytes,
            cpu_millis_used: u.cpu_millis_used,
            disk_used_bytes: u.disk_used_bytes,
            disk_budget_bytes: u.disk_budget_bytes,
        }
    }
}

impl From<&dw::Event> for Event {
    fn from(e: &dw::Event) -> Self {
        Event {
            sequence: e.sequence,
            at_ms: e.at_ms,
            severity: match e.severity {
                dw::Severity::Info => Severity::Info,
                dw::Severity::Warning => Severity::Warning,
                dw::Severity::Error => Severity::Error,
            },
            workload: e.workload.clone(),
            container: e.container.clone(),
            reason: e.reason.into(),
            message: e.message.clone(),
        }
    }
}

impl From<dw::EventReason> for EventReason {
    fn from(r: dw::EventReason) -> Self {
        use dw::EventReason as D;
        match r {
            D::AgentStarted => EventReason::AgentStarted,
            D::DesiredStateAccepted => EventReason::DesiredStateAccepted,
            D::DesiredStateRejected => EventReason::DesiredStateRejected,
            D::CapacityExceeded => EventReason::CapacityExceeded,
            D::WorkloadRefused => EventReason::WorkloadRefused,
            D::ImagePulling => EventReason::ImagePulling,
            D::ImagePulled => EventReason::ImagePulled,
            D::ImagePullFailed => EventReason::ImagePullFailed,
            D::ImageRejected => EventReason::ImageRejected,
            D::DiskBudgetExceeded => EventReason::DiskBudgetExceeded,
            D::Created => EventReason::Created,
            D::CreateFailed => EventReason::CreateFailed,
            D::Started => EventReason::Started,
            D::Adopted => EventReason::Adopted,
            D::Exited => EventReason::Exited,
            D::OomKilled => EventReason::OomKilled,
            D::BackOff => EventReason::BackOff,
            D::Healthy => EventReason::Healthy,
            D::Unhealthy => EventReason::Unhealthy,
            D::Stopped => EventReason::Stopped,
            D::Removed => EventReason::Removed,
            D::StatusRefused => EventReason::StatusRefused,
            // Version 3's: a version-2 reader learns that the node refused the revision, and
            // the message says it went back.
            D::RolledBack => EventReason::DesiredStateRejected,
            // Version 3's: a version-2 reader learns, with the message, that the agent
            // started again on its previous version.
            D::AgentUpdateFailed => EventReason::AgentStarted,
        }
    }
}

impl From<&dw::Presence> for Presence {
    fn from(p: &dw::Presence) -> Self {
        Presence {
            node_id: p.node_id.clone(),
            online: p.online,
            facts: (&p.facts).into(),
        }
    }
}

impl From<&dw::RpcRequest> for RpcRequest {
    fn from(r: &dw::RpcRequest) -> Self {
        use dw::RpcRequestBody as D;
        RpcRequest {
            id: r.id,
            body: match &r.body {
                D::Logs {
                    workload,
                    container,
                    tail,
                    follow,
                } => RpcRequestBody::Logs {
                    workload: workload.clone(),
                    container: container.clone(),
                    tail: *tail,
                    follow: *follow,
                },
                D::Exec {
                    workload,
                    container,
                    command,
                } => RpcRequestBody::Exec {
                    workload: workload.clone(),
                    container: container.clone(),
                    command: command.clone(),
                },
                D::Diagnostics => RpcRequestBody::Diagnostics,
                D::Ping => RpcRequestBody::Ping,
                D::Status => RpcRequestBody::Status,
                D::Apply { workloads } => RpcRequestBody::Apply {
                    workloads: list(workloads),
                },
                D::DeleteWorkload { workload } => RpcRequestBody::DeleteWorkload {
                    workload: workload.clone(),
                },
                D::ListImages => RpcRequestBody::ListImages,
                D::ImportImage { path } => RpcRequestBody::ImportImage { path: path.clone() },
                D::RemoveImage { reference } => RpcRequestBody::RemoveImage {
                    reference: reference.clone(),
                },
                D::PruneImages => RpcRequestBody::PruneImages,
                D::Cancel { id } => RpcRequestBody::Cancel { id: *id },
            },
        }
    }
}

impl From<&dw::RpcResponse> for RpcResponse {
    fn from(r: &dw::RpcResponse) -> Self {
        use dw::RpcResponseBody as D;
        RpcResponse {
            id: r.id,
            body: match &r.body {
                D::LogChunk { data, eof } => RpcResponseBody::LogChunk {
                    data: data.clone(),
                    eof: *eof,
                },
                D::ExecResult {
                    exit_code,
                    stdout,
                    stderr,
                } => RpcResponseBody::ExecResult {
                    exit_code: *exit_code,
                    stdout: stdout.clone(),
                    stderr: stderr.clone(),
                },
                D::Diagnostics { text } => RpcResponseBody::Diagnostics { text: text.clone() },
                D::Pong => RpcResponseBody::Pong,
                D::Error { message } => RpcResponseBody::Error {
                    message: message.clone(),
                },
                D::Status(status) => RpcResponseBody::Status(status.into()),
                D::Applied {
                    generation,
                    changes,
                } => RpcResponseBody::Applied {
                    generation: *generation,
                    changes: changes.clone(),
                },
                D::Images(images) => RpcResponseBody::Images(list(images)),
                D::Done { message } => RpcResponseBody::Done {
                    message: message.clone(),
                },
            },
        }
    }
}

impl From<&dw::ImageSummary> for ImageSummary {
    fn from(i: &dw::ImageSummary) -> Self {
        ImageSummary {
            reference: i.reference.clone(),
            digest: i.digest.clone(),
            size_bytes: i.size_bytes,
            in_use: i.in_use,
        }
    }
}

// ---- v2 -> domain ----------------------------------------------------------------------

fn try_list<V, D: TryFrom<V, Error = Invalid>>(items: Vec<V>) -> Result<Vec<D>, Invalid> {
    items.into_iter().map(D::try_from).collect()
}

fn convert<V, D: From<V>>(items: Vec<V>) -> Vec<D> {
    items.into_iter().map(D::from).collect()
}

/// Version 2 has no field for the wire versions an agent reads: they travel as the label
/// [`dw::WIRE_VERSIONS_LABEL`], which is taken out of the labels here.
impl TryFrom<NodeFacts> for dn::NodeFacts {
    type Error = Invalid;

    fn try_from(f: NodeFacts) -> Result<Self, Invalid> {
        let (labels, wire_versions) = dw::wire_versions_from_labels(f.labels).map_err(Invalid)?;
        Ok(dn::NodeFacts {
            arch: f.arch,
            os: f.os,
            kernel: f.kernel,
            cgroup_version: f.cgroup_version,
            capacity: dn::Capacity {
                memory_bytes: f.capacity.memory_bytes,
                cpu_millis: f.capacity.cpu_millis,
                pids: f.capacity.pids,
            },
            agent_version: f.agent_version,
            labels,
            wire_versions,
        })
    }
}

impl From<MessageKind> for dw::MessageKind {
    fn from(k: MessageKind) -> Self {
        match k {
            MessageKind::Desired => dw::MessageKind::Desired,
            MessageKind::Status => dw::MessageKind::Status,
            MessageKind::Presence => dw::MessageKind::Presence,
            MessageKind::RpcRequest => dw::MessageKind::RpcRequest,
            MessageKind::RpcResponse => dw::MessageKind::RpcResponse,
        }
    }
}

impl Envelope {
    /// The domain envelope, which remembers that it came in version 2.
    pub fn into_domain(self) -> dw::Envelope {
        dw::Envelope {
            version: super::VERSION,
            kind: self.kind.into(),
            node_id: self.node_id,
            generation: self.generation,
            payload: self.payload,
            signature: self.signature,
        }
    }
}

impl From<PublicKey> for dw::signing::PublicKey {
    fn from(k: PublicKey) -> Self {
        dw::signing::PublicKey(k.0)
    }
}

impl TryFrom<DesiredState> for dw::DesiredState {
    type Error = Invalid;

    fn try_from(d: DesiredState) -> Result<Self, Invalid> {
        Ok(dw::DesiredState {
            node_id: d.node_id,
            generation: d.generation,
            workloads: try_list(d.workloads)?,
            signing_keys: convert(d.signing_keys),
            // Version 2 has no agent target.
            agent: None,
        })
    }
}

impl TryFrom<DesiredWorkload> for dw::DesiredWorkload {
    type Error = Invalid;

    fn try_from(d: DesiredWorkload) -> Result<Self, Invalid> {
        Ok(dw::DesiredWorkload {
            workload: d.workload.try_into()?,
            revision: d.revision,
        })
    }
}

impl From<NodeStatus> for dw::NodeStatus {
    fn from(s: NodeStatus) -> Self {
        dw::NodeStatus {
            node_id: s.node_id,
            observed_generation: s.observed_generation,
            sequence: s.sequence,
            sent_at_ms: s.sent_at_ms,
            workloads: convert(s.workloads),
            usage: s.usage.into(),
            events: convert(s.events),
            dropped_events: s.dropped_events,
            // Version 2 has no agent upgrades.
            agent_update: None,
        }
    }
}

impl From<WorkloadStatus> for dw::WorkloadStatus {
    fn from(w: WorkloadStatus) -> Self {
        dw::WorkloadStatus {
            name: w.name,
            revision: w.revision,
            containers: convert(w.containers),
            rolled_back: None,
        }
    }
}

impl From<ContainerStatus> for dw::ContainerStatus {
    fn from(c: ContainerStatus) -> Self {
        dw::ContainerStatus {
            name: c.name,
            state: c.state.into(),
            health: c.health.into(),
            restarts: c.restarts,
            last_exit: c.last_exit.map(Into::into),
            oom_kills: c.oom_kills,
            started_at_ms: c.started_at_ms,
            pid: c.pid,
            memory_bytes: c.memory_bytes,
            cpu_usage_ns: c.cpu_usage_ns,
            message: c.message,
        }
    }
}

impl From<ContainerState> for dw::ContainerState {
    fn from(s: ContainerState) -> Self {
        match s {
            ContainerState::Pending => dw::ContainerState::Pending,
            ContainerState::Pulling => dw::ContainerState::Pulling,
            ContainerState::Creating => dw::ContainerState::Creating,
            ContainerState::Running => dw::ContainerState::Running,
            ContainerState::Exited => dw::ContainerState::Exited,
            ContainerState::Failed => dw::ContainerState::Failed,
            ContainerState::BackOff => dw::ContainerState::BackOff,
            ContainerState::Stopped => dw::ContainerState::Stopped,
        }
    }
}

impl From<Health> for dw::Health {
    fn from(h: Health) -> Self {
        match h {
            Health::Unknown => dw::Health::Unknown,
            Health::Starting => dw::Health::Starting,
            Health::Healthy => dw::Health::Healthy,
            Health::Unhealthy => dw::Health::Unhealthy,
        }
    }
}

impl From<ExitInfo> for dw::ExitInfo {
    fn from(e: ExitInfo) -> Self {
        dw::ExitInfo {
            code: e.code,
            signal: e.signal,
            oom_killed: e.oom_killed,
            at_ms: e.at_ms,
        }
    }
}

impl From<NodeUsage> for dw::NodeUsage {
    fn from(u: NodeUsage) -> Self {
        dw::NodeUsage {
            memory_used_bytes: u.memory_used_bytes,
            memory_total_bytes: u.memory_total_bytes,
            cpu_millis_used: u.cpu_millis_used,
            disk_used_bytes: u.disk_used_bytes,
            disk_budget_bytes: u.disk_budget_bytes,
        }
    }
}

impl From<Event> for dw::Event {
    fn from(e: Event) -> Self {
        dw::Event {
            sequence: e.sequence,
            at_ms: e.at_ms,
            severity: match e.severity {
                Severity::Info => dw::Severity::Info,
                Severity::Warning => dw::Severity::Warning,
                Severity::Error => dw::Severity::Error,
            },
            workload: e.workload,
            container: e.container,
            reason: e.reason.into(),
            message: e.message,
        }
    }
}

impl From<EventReason> for dw::EventReason {
    fn from(r: EventReason) -> Self {
        use dw::EventReason as D;
        match r {
            EventReason::AgentStarted => D::AgentStarted,
            EventReason::DesiredStateAccepted => D::DesiredStateAccepted,
            EventReason::DesiredStateRejected => D::DesiredStateRejected,
            EventReason::CapacityExceeded => D::CapacityExceeded,
            EventReason::WorkloadRefused => D::WorkloadRefused,
            EventReason::ImagePulling => D::ImagePulling,
            EventReason::ImagePulled => D::ImagePulled,
            EventReason::ImagePullFailed => D::ImagePullFailed,
            EventReason::ImageRejected => D::ImageRejected,
            EventReason::DiskBudgetExceeded => D::DiskBudgetExceeded,
            EventReason::Created => D::Created,
            EventReason::CreateFailed => D::CreateFailed,
            EventReason::Started => D::Started,
            EventReason::Adopted => D::Adopted,
            EventReason::Exited => D::Exited,
            EventReason::OomKilled => D::OomKilled,
            EventReason::BackOff => D::BackOff,
            EventReason::Healthy => D::Healthy,
            EventReason::Unhealthy => D::Unhealthy,
            EventReason::Stopped => D::Stopped,
            EventReason::Removed => D::Removed,
            EventReason::StatusRefused => D::StatusRefused,
        }
    }
}

impl TryFrom<Presence> for dw::Presence {
    type Error = Invalid;

    fn try_from(p: Presence) -> Result<Self, Invalid> {
        Ok(dw::Presence {
            node_id: p.node_id,
            online: p.online,
            facts: p.facts.try_into()?,
        })
    }
}

impl TryFrom<RpcRequest> for dw::RpcRequest {
    type Error = Invalid;

    fn try_from(r: RpcRequest) -> Result<Self, Invalid> {
        use dw::RpcRequestBody as D;
        Ok(dw::RpcRequest {
            id: r.id,
            body: match r.body {
                RpcRequestBody::Logs {
                    workload,
                    container,
                    tail,
                    follow,
                } => D::Logs {
                    workload,
                    container,
                    tail,
                    follow,
                },
                RpcRequestBody::Exec {
                    workload,
                    container,
                    command,
                } => D::Exec {
                    workload,
                    container,
                    command,
                },
                RpcRequestBody::Diagnostics => D::Diagnostics,
                RpcRequestBody::Ping => D::Ping,
                RpcRequestBody::Status => D::Status,
                RpcRequestBody::Apply { workloads } => D::Apply {
                    workloads: try_list(workloads)?,
                },
                RpcRequestBody::DeleteWorkload { workload } => D::DeleteWorkload { workload },
                RpcRequestBody::ListImages => D::ListImages,
                RpcRequestBody::ImportImage { path } => D::ImportImage { path },
                RpcRequestBody::RemoveImage { reference } => D::RemoveImage { reference },
                RpcRequestBody::PruneImages => D::PruneImages,
                RpcRequestBody::Cancel { id } => D::Cancel { id },
            },
        })
    }
}

impl From<RpcResponse> for dw::RpcResponse {
    fn from(r: RpcResponse) -> Self {
        use dw::RpcResponseBody as D;
        dw::RpcResponse {
            id: r.id,
            body: match r.body {
                RpcResponseBody::LogChunk { data, eof } => D::LogChunk { data, eof },
                RpcResponseBody::ExecResult {
                    exit_code,
                    stdout,
                    stderr,
                } => D::ExecResult {
                    exit_code,
                    stdout,
                    stderr,
                },
                RpcResponseBody::Diagnostics { text } => D::Diagnostics { text },
                RpcResponseBody::Pong => D::Pong,
                RpcResponseBody::Error { message } => D::Error { message },
                RpcResponseBody::Status(status) => D::Status(status.into()),
                RpcResponseBody::Applied {
                    generation,
                    changes,
                } => D::Applied {
                    generation,
                    changes,
                },
                RpcResponseBody::Images(images) => D::Images(convert(images)),
                RpcResponseBody::Done { message } => D::Done { message },
            },
        }
    }
}

impl From<ImageSummary> for dw::ImageSummary {
    fn from(i: ImageSummary) -> Self {
        dw::ImageSummary {
            reference: i.reference,
            digest: i.digest,
            size_bytes: i.size_bytes,
            in_use: i.in_use,
        }
    }
}
