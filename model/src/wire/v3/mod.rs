//! Wire version 3, frozen: what this release sends to peers that read it, and the format of
//! the hub's `nodes.facts` rows.
//!
//! **What changed from version 2, and only that:**
//!
//! - node facts (in presence, and in the hub's `nodes.facts`) carry the wire versions the agent
//!   reads as a field of their own, [`NodeFacts::wire_versions`], after every version-2 field;
//! - a workload's rollout has two more settings, [`Rollout::progress_deadline`] and
//!   [`Rollout::failure_threshold`], after version 2's, and its [`Rollout::canary`] may be a
//!   percentage; so [`Workload`] (in the hub's
//!   `workloads` and `workload_revisions`), [`DesiredWorkload`] (in the agent's
//!   `desired_state`) and [`DesiredState`] (on the wire) are version 3's shapes. Both settings
//!   are the hub's alone (an agent acts on no rollout setting): converted to version 2 for an
//!   agent that reads nothing newer, they are left out, and that agent runs the same;
//! - a workload's status says when the node went back from a revision by itself
//!   ([`WorkloadStatus::rolled_back`]), and events have one more reason, `RolledBack`;
//! - a desired state may name the agent the node should run ([`AgentTarget`]: the signed
//!   release with its signed minimum if it has one, where to download it, the release keys
//!   and their endorsements), after its other fields; version 2 has no such field, so an agent that reads only version 2 is
//!   never sent one;
//! - a node's status says where the node is with such an upgrade ([`AgentUpdate`]), after
//!   its other fields, and events have one more reason, `AgentUpdateFailed`.
//!
//! The rest of this paragraph is about the first change. Version 2 had no such field, so
//! there the versions travel as the label `shoal.dev/wire-versions` (see
//! `crate::wire::WIRE_VERSIONS_LABEL`): that is how an agent announces version 3 to a hub it
//! does not know yet, whose release may read version 2 only.
//!
//! Every other shape of version 3 *is* version 2's, used from `v2`: version 2 is frozen, so
//! these are frozen too, and their version-3 bytes are their version-2 bytes (rpc
//! messages, containers' statuses, usage). The envelope is version 2's as well; only its version byte differs.
//!
//! Frozen like `v2`: nothing here may ever change (see the rule in `wire/mod.rs`);
//! `model/tests/golden.rs` holds its bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node as dn;
use crate::wire as dw;

// The other shapes (`v2::Envelope`, `v2::DesiredState`, `v2::NodeStatus`, `v2::RpcRequest`,
// `v2::RpcResponse`, `v2::Workload`, `v2::Event`, ...) are used from `v2` directly, each
// `Sealed` impl and stored row saying so.
pub use super::v2::{from_bytes, to_bytes, Capacity, Invalid};

/// The first byte of every version-3 message; also the format number of version-3 rows.
pub const VERSION: u8 = 3;

/// Version 2's node facts, and the wire versions the agent reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub arch: String,
    pub os: String,
    pub kernel: String,
    pub cgroup_version: u8,
    pub capacity: Capacity,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub wire_versions: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub node_id: String,
    pub online: bool,
    pub facts: NodeFacts,
}

// Both conversions go through version 2's, which hold the field mapping; only the labels and
// the wire versions are version 3's own.
impl From<&dn::NodeFacts> for NodeFacts {
    fn from(f: &dn::NodeFacts) -> Self {
        let v2::NodeFacts {
            arch,
            os,
            kernel,
            cgroup_version,
            capacity,
            agent_version,
            // Version 2's labels carry the wire versions; version 3 has a field for them.
            labels: _,
        } = v2::NodeFacts::from(f);
        NodeFacts {
            arch,
            os,
            kernel,
            cgroup_version,
            capacity,
            agent_version,
            labels: f.labels.clone(),
            wire_versions: f.wire_versions.clone(),
        }
    }
}

impl TryFrom<NodeFacts> for dn::NodeFacts {
    type Error = Invalid;

    fn try_from(f: NodeFacts) -> Result<Self, Invalid> {
        dw::check_wire_versions(&f.wire_versions).map_err(Invalid)?;
        if f.labels.contains_key(dw::WIRE_VERSIONS_LABEL) {
            return Err(Invalid(format!(
                "the label `{}` is reserved for version 2, which has no field for the wire \
                 versions",
                dw::WIRE_VERSIONS_LABEL
            )));
        }
        let older = v2::NodeFacts {
            arch: f.arch,
            os: f.os,
            kernel: f.kernel,
            cgroup_version: f.cgroup_version,
            capacity: f.capacity,
            agent_version: f.agent_version,
            labels: f.labels,
        };
        // Without the label (refused above), version 2's conversion reads no wire versions.
        let facts: dn::NodeFacts = older.try_into()?;
        Ok(dn::NodeFacts {
            wire_versions: f.wire_versions,
            ..facts
        })
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

// ---- workloads: version 3 adds two rollout settings ------------------------------------
//
// `spec.rollout.progressDeadline` and `spec.rollout.failureThreshold`, after version 2's
// rollout fields. Everything around them is version 2's shape; the conversions go through
// version 2's, so they check what those check.

use crate::manifest as domain;
use crate::quantity as dq;

use super::v2;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: WorkloadSpec,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    pub placement: v2::Placement,
    pub rollout: Rollout,
    pub restart_policy: v2::RestartPolicy,
    pub network: v2::NetworkMode,
    pub stop_grace_period: v2::Duration,
    pub volumes: Vec<v2::Volume>,
    pub containers: Vec<v2::Container>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub max_unavailable: v2::Amount,
    /// A count or a percentage (version 2: a count).
    pub canary: v2::Amount,
    pub healthy_for: v2::Duration,
    pub auto_rollback: bool,
    pub progress_deadline: v2::Duration,
    pub failure_threshold: v2::Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredWorkload {
    pub workload: Workload,
    pub revision: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DesiredState {
    pub node_id: String,
    pub generation: u64,
    pub workloads: Vec<DesiredWorkload>,
    pub signing_keys: Vec<v2::PublicKey>,
    pub agent: Option<AgentTarget>,
}

/// The agent a node should run (`crate::release::AgentTarget`); its release as the fields of
/// the signed statement, in text where the statement has text.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentTarget {
    pub version: String,
    pub arch: String,
    pub sha256: [u8; 32],
    pub size: u64,
    pub signature: Vec<u8>,
    pub source: String,
    pub release_keys: Vec<v2::PublicKey>,
    pub endorsements: Vec<Vec<u8>>,
    /// The release's signed minimum (`shoal-agent-release/2`), when it has one.
    pub minimum: Option<String>,
}

impl From<&crate::release::AgentTarget> for AgentTarget {
    fn from(t: &crate::release::AgentTarget) -> Self {
        AgentTarget {
            version: t.release.version.to_string(),
            arch: t.release.arch.as_str().to_string(),
            sha256: t.release.sha256,
            size: t.release.size,
            signature: t.signature.clone(),
            source: t.source.to_string(),
            release_keys: t.release_keys.iter().map(Into::into).collect(),
            endorsements: t.endorsements.clone(),
            minimum: t.release.minimum.as_ref().map(ToString::to_string),
        }
    }
}

impl TryFrom<AgentTarget> for crate::release::AgentTarget {
    type Error = Invalid;

    fn try_from(t: AgentTarget) -> Result<Self, Invalid> {
        let bad =
            |what: &str, e: &dyn std::fmt::Display| Invalid(format!("agent target {what}: {e}"));
        let version = crate::release::parse_version(&t.version).map_err(|e| bad("version", &e))?;
        let arch = crate::elf::Arch::parse(&t.arch).map_err(|_| {
            let shown: String = t.arch.chars().take(32).collect();
            Invalid(format!(
                "agent target arch `{shown}` is not one Shoal builds agents for"
            ))
        })?;
        if t.size == 0 || t.size > crate::release::MAX_AGENT_BYTES {
            return Err(Invalid(format!(
                "agent target size {} is outside 1 to {} bytes",
                t.size,
                crate::release::MAX_AGENT_BYTES
            )));
        }
        let source = t.source.parse().map_err(|e| bad("source", &e))?;
        let minimum = t
            .minimum
            .as_deref()
            .map(crate::release::parse_version)
            .transpose()
            .map_err(|e| bad("minimum", &e))?;
        let release = crate::release::AgentRelease {
            version,
            arch,
            sha256: t.sha256,
            size: t.size,
            minimum: None,
        }
        .with_minimum(minimum)
        .map_err(|e| bad("minimum", &e))?;
        Ok(crate::release::AgentTarget {
            release,
            signature: t.signature,
            source,
            release_keys: t.release_keys.into_iter().map(Into::into).collect(),
            endorsements: t.endorsements,
        })
    }
}

impl From<&domain::Workload> for Workload {
    fn from(w: &domain::Workload) -> Self {
        let v2::Workload { name, labels, spec } = v2::Workload::from(w);
        let r = &w.spec.rollout;
        Workload {
            name,
            labels,
            spec: WorkloadSpec {
                placement: spec.placement,
                rollout: Rollout {
                    max_unavailable: spec.rollout.max_unavailable,
                    canary: r.canary.into(),
                    healthy_for: spec.rollout.healthy_for,
                    auto_rollback: spec.rollout.auto_rollback,
                    progress_deadline: (&r.progress_deadline).into(),
                    failure_threshold: r.failure_threshold.into(),
                },
                restart_policy: spec.restart_policy,
                network: spec.network,
                stop_grace_period: spec.stop_grace_period,
                volumes: spec.volumes,
                containers: spec.containers,
            },
        }
    }
}

impl TryFrom<Workload> for domain::Workload {
    type Error = Invalid;

    fn try_from(w: Workload) -> Result<Self, Invalid> {
        let Workload { name, labels, spec } = w;
        let Rollout {
            max_unavailable,
            canary,
            healthy_for,
            auto_rollback,
            progress_deadline,
            failure_threshold,
        } = spec.rollout;
        let older = v2::Workload {
            name,
            labels,
            spec: v2::WorkloadSpec {
                placement: spec.placement,
                rollout: v2::Rollout {
                    max_unavailable,
                    // Set below: version 2's is a count.
                    canary: 0,
                    healthy_for,
                    auto_rollback,
                },
                restart_policy: spec.restart_policy,
                network: spec.network,
                stop_grace_period: spec.stop_grace_period,
                volumes: spec.volumes,
                containers: spec.containers,
            },
        };
        let mut workload: domain::Workload = older.try_into()?;
        let rollout = &mut workload.spec.rollout;
        rollout.canary = match canary {
            v2::Amount::Count(n) => dq::Amount::Count(n),
            v2::Amount::Percent(p) if p <= 100 => dq::Amount::Percent(p),
            v2::Amount::Percent(p) => {
                return Err(Invalid(format!("canary is {p}%, more than 100%")))
            }
        };
        rollout.progress_deadline = progress_deadline.try_into()?;
        if rollout.progress_deadline.is_zero() {
            return Err(Invalid("progressDeadline is 0s".into()));
        }
        rollout.failure_threshold = match failure_threshold {
            v2::Amount::Count(n) if n >= 1 => dq::Amount::Count(n),
            v2::Amount::Percent(p) if (1..=100).contains(&p) => dq::Amount::Percent(p),
            other => {
                return Err(Invalid(format!(
                    "failureThreshold is {other:?}: it must be at least 1, or 1% to 100%"
                )))
            }
        };
        Ok(workload)
    }
}

impl From<&crate::wire::DesiredWorkload> for DesiredWorkload {
    fn from(d: &crate::wire::DesiredWorkload) -> Self {
        DesiredWorkload {
            workload: (&d.workload).into(),
            revision: d.revision,
        }
    }
}

impl TryFrom<DesiredWorkload> for crate::wire::DesiredWorkload {
    type Error = Invalid;

    fn try_from(d: DesiredWorkload) -> Result<Self, Invalid> {
        Ok(crate::wire::DesiredWorkload {
            workload: d.workload.try_into()?,
            revision: d.revision,
        })
    }
}

impl From<&crate::wire::DesiredState> for DesiredState {
    fn from(d: &crate::wire::DesiredState) -> Self {
        DesiredState {
            node_id: d.node_id.clone(),
            generation: d.generation,
            workloads: d.workloads.iter().map(Into::into).collect(),
            signing_keys: d.signing_keys.iter().map(Into::into).collect(),
            agent: d.agent.as_ref().map(Into::into),
        }
    }
}

impl TryFrom<DesiredState> for crate::wire::DesiredState {
    type Error = Invalid;

    fn try_from(d: DesiredState) -> Result<Self, Invalid> {
        Ok(crate::wire::DesiredState {
            node_id: d.node_id,
            generation: d.generation,
            workloads: d
                .workloads
                .into_iter()
                .map(TryInto::try_into)
                .collect::<Result<_, _>>()?,
            signing_keys: d.signing_keys.into_iter().map(Into::into).collect(),
            agent: d.agent.map(TryInto::try_into).transpose()?,
        })
    }
}

// ---- statuses: version 3 tells a rollback on the node ----------------------------------
//
// A workload's status says when the node went back from a newer revision by itself
// (`rolled_back`, after version 2's fields), and events have one more reason, `RolledBack`,
// appended after version 2's. The containers, the usage and every other field are version
// 2's; the conversions go through version 2's.

use crate::rollout as dr;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub node_id: String,
    pub observed_generation: u64,
    pub sequence: u64,
    pub sent_at_ms: u64,
    pub workloads: Vec<WorkloadStatus>,
    pub usage: v2::NodeUsage,
    pub events: Vec<Event>,
    pub dropped_events: u64,
    pub agent_update: Option<AgentUpdate>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentUpdate {
    pub version: String,
    pub state: AgentUpdateState,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AgentUpdateState {
    Downloading { received: u64, size: u64 },
    Switching,
    Failed { reason: String },
}

impl From<&dw::AgentUpdate> for AgentUpdate {
    fn from(u: &dw::AgentUpdate) -> Self {
        AgentUpdate {
            version: u.version.clone(),
            state: match &u.state {
                dw::AgentUpdateState::Downloading { received, size } => {
                    AgentUpdateState::Downloading {
                        received: *received,
                        size: *size,
                    }
                }
                dw::AgentUpdateState::Switching => AgentUpdateState::Switching,
                dw::AgentUpdateState::Failed { reason } => AgentUpdateState::Failed {
                    reason: reason.clone(),
                },
            },
        }
    }
}

impl TryFrom<AgentUpdate> for dw::AgentUpdate {
    type Error = Invalid;

    fn try_from(u: AgentUpdate) -> Result<Self, Invalid> {
        crate::release::parse_version(&u.version)
            .map_err(|e| Invalid(format!("agent update version: {e}")))?;
        let state = match u.state {
            AgentUpdateState::Downloading { received, size } => {
                if received > size || size > crate::release::MAX_AGENT_BYTES {
                    return Err(Invalid(format!(
                        "agent update downloading {received} of {size} bytes"
                    )));
                }
                dw::AgentUpdateState::Downloading { received, size }
            }
            AgentUpdateState::Switching => dw::AgentUpdateState::Switching,
            AgentUpdateState::Failed { reason } => {
                if reason.chars().count() > dw::MAX_UPDATE_REASON_CHARS {
                    return Err(Invalid(format!(
                        "agent update failure reason longer than {} characters",
                        dw::MAX_UPDATE_REASON_CHARS
                    )));
                }
                dw::AgentUpdateState::Failed { reason }
            }
        };
        Ok(dw::AgentUpdate {
            version: u.version,
            state,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadStatus {
    pub name: String,
    pub revision: u64,
    pub containers: Vec<v2::ContainerStatus>,
    pub rolled_back: Option<RolledBack>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RolledBack {
    pub revision: u64,
    pub failure: Failure,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Failure {
    Crashed,
    Restarting,
    Unhealthy,
    Deadline,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub sequence: u64,
    pub at_ms: u64,
    pub severity: v2::Severity,
    pub workload: Option<String>,
    pub container: Option<String>,
    pub reason: EventReason,
    pub message: String,
}

/// Version 2's reasons, in their places, then `RolledBack`.
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
    StatusRefused,
    RolledBack,
    AgentUpdateFailed,
}

impl From<&dw::NodeStatus> for NodeStatus {
    fn from(s: &dw::NodeStatus) -> Self {
        NodeStatus {
            node_id: s.node_id.clone(),
            observed_generation: s.observed_generation,
            sequence: s.sequence,
            sent_at_ms: s.sent_at_ms,
            workloads: s.workloads.iter().map(Into::into).collect(),
            usage: (&s.usage).into(),
            events: s.events.iter().map(Into::into).collect(),
            dropped_events: s.dropped_events,
            agent_update: s.agent_update.as_ref().map(Into::into),
        }
    }
}

impl TryFrom<NodeStatus> for dw::NodeStatus {
    type Error = Invalid;

    fn try_from(s: NodeStatus) -> Result<Self, Invalid> {
        Ok(dw::NodeStatus {
            node_id: s.node_id,
            observed_generation: s.observed_generation,
            sequence: s.sequence,
            sent_at_ms: s.sent_at_ms,
            workloads: s.workloads.into_iter().map(Into::into).collect(),
            usage: s.usage.into(),
            events: s.events.into_iter().map(Into::into).collect(),
            dropped_events: s.dropped_events,
            agent_update: s.agent_update.map(TryInto::try_into).transpose()?,
        })
    }
}

impl From<&dw::WorkloadStatus> for WorkloadStatus {
    fn from(w: &dw::WorkloadStatus) -> Self {
        let v2::WorkloadStatus {
            name,
            revision,
            containers,
        } = w.into();
        WorkloadStatus {
            name,
            revision,
            containers,
            rolled_back: w.rolled_back.map(|r| RolledBack {
                revision: r.revision,
                failure: match r.failure {
                    dr::Failure::Crashed => Failure::Crashed,
                    dr::Failure::Restarting => Failure::Restarting,
                    dr::Failure::Unhealthy => Failure::Unhealthy,
                    dr::Failure::Deadline => Failure::Deadline,
                },
            }),
        }
    }
}

impl From<WorkloadStatus> for dw::WorkloadStatus {
    fn from(w: WorkloadStatus) -> Self {
        let older: dw::WorkloadStatus = v2::WorkloadStatus {
            name: w.name,
            revision: w.revision,
            containers: w.containers,
        }
        .into();
        dw::WorkloadStatus {
            rolled_back: w.rolled_back.map(|r| dw::RolledBack {
                revision: r.revision,
                failure: match r.failure {
                    Failure::Crashed => dr::Failure::Crashed,
                    Failure::Restarting => dr::Failure::Restarting,
                    Failure::Unhealthy => dr::Failure::Unhealthy,
                    Failure::Deadline => dr::Failure::Deadline,
                },
            }),
            ..older
        }
    }
}

impl From<&dw::Event> for Event {
    fn from(e: &dw::Event) -> Self {
        let v2::Event {
            sequence,
            at_ms,
            severity,
            workload,
            container,
            reason,
            message,
        } = e.into();
        Event {
            sequence,
            at_ms,
            severity,
            workload,
            container,
            // Version 2 has neither `RolledBack` nor `AgentUpdateFailed`; every other reason
            // is in the same place.
            reason: match e.reason {
                dw::EventReason::RolledBack => EventReason::RolledBack,
                dw::EventReason::AgentUpdateFailed => EventReason::AgentUpdateFailed,
                _ => EventReason::from(reason),
            },
            message,
        }
    }
}

impl From<Event> for dw::Event {
    fn from(e: Event) -> Self {
        let own = match e.reason {
            EventReason::RolledBack => Some(dw::EventReason::RolledBack),
            EventReason::AgentUpdateFailed => Some(dw::EventReason::AgentUpdateFailed),
            _ => None,
        };
        let older: dw::Event = v2::Event {
            sequence: e.sequence,
            at_ms: e.at_ms,
            severity: e.severity,
            workload: e.workload,
            container: e.container,
            reason: e.reason.older(),
            message: e.message,
        }
        .into();
        dw::Event {
            reason: own.unwrap_or(older.reason),
            ..older
        }
    }
}

impl From<v2::EventReason> for EventReason {
    fn from(r: v2::EventReason) -> Self {
        use v2::EventReason as V;
        match r {
            V::AgentStarted => EventReason::AgentStarted,
            V::DesiredStateAccepted => EventReason::DesiredStateAccepted,
            V::DesiredStateRejected => EventReason::DesiredStateRejected,
            V::CapacityExceeded => EventReason::CapacityExceeded,
            V::WorkloadRefused => EventReason::WorkloadRefused,
            V::ImagePulling => EventReason::ImagePulling,
            V::ImagePulled => EventReason::ImagePulled,
            V::ImagePullFailed => EventReason::ImagePullFailed,
            V::ImageRejected => EventReason::ImageRejected,
            V::DiskBudgetExceeded => EventReason::DiskBudgetExceeded,
            V::Created => EventReason::Created,
            V::CreateFailed => EventReason::CreateFailed,
            V::Started => EventReason::Started,
            V::Adopted => EventReason::Adopted,
            V::Exited => EventReason::Exited,
            V::OomKilled => EventReason::OomKilled,
            V::BackOff => EventReason::BackOff,
            V::Healthy => EventReason::Healthy,
            V::Unhealthy => EventReason::Unhealthy,
            V::Stopped => EventReason::Stopped,
            V::Removed => EventReason::Removed,
            V::StatusRefused => EventReason::StatusRefused,
        }
    }
}

impl EventReason {
    /// Version 2's reason in the same place; `RolledBack` and `AgentUpdateFailed`, which
    /// version 2 lacks, as `DesiredStateRejected` and `AgentStarted` (the conversion from
    /// version 3 puts them back).
    fn older(self) -> v2::EventReason {
        use v2::EventReason as V;
        match self {
            EventReason::AgentStarted | EventReason::AgentUpdateFailed => V::AgentStarted,
            EventReason::DesiredStateAccepted => V::DesiredStateAccepted,
            EventReason::DesiredStateRejected | EventReason::RolledBack => V::DesiredStateRejected,
            EventReason::CapacityExceeded => V::CapacityExceeded,
            EventReason::WorkloadRefused => V::WorkloadRefused,
            EventReason::ImagePulling => V::ImagePulling,
            EventReason::ImagePulled => V::ImagePulled,
            EventReason::ImagePullFailed => V::ImagePullFailed,
            EventReason::ImageRejected => V::ImageRejected,
            EventReason::DiskBudgetExceeded => V::DiskBudgetExceeded,
            EventReason::Created => V::Created,
            EventReason::CreateFailed => V::CreateFailed,
            EventReason::Started => V::Started,
            EventReason::Adopted => V::Adopted,
            EventReason::Exited => V::Exited,
            EventReason::OomKilled => V::OomKilled,
            EventReason::BackOff => V::BackOff,
            EventReason::Healthy => V::Healthy,
            EventReason::Unhealthy => V::Unhealthy,
            EventReason::Stopped => V::Stopped,
            EventReason::Removed => V::Removed,
            EventReason::StatusRefused => V::StatusRefused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> AgentTarget {
        AgentTarget {
            version: "0.2.0".into(),
            arch: "aarch64".into(),
            sha256: [1; 32],
            size: 1000,
            signature: vec![2; 72],
            source: "https://hub.example:7440".into(),
            release_keys: vec![v2::PublicKey([3; 32])],
            endorsements: vec![vec![4; 72]],
            minimum: Some("0.1.0".into()),
        }
    }

    #[test]
    fn a_hostile_agent_target_is_refused_naming_what_is_wrong() {
        let read: Result<crate::release::AgentTarget, Invalid> = target().try_into();
        let read = read.expect("a sound target");
        assert_eq!(AgentTarget::from(&read), target(), "it reads back whole");
        type Spoil = fn(&mut AgentTarget);
        let cases: [(Spoil, &str); 8] = [
            (|t| t.version = "latest".into(), "agent target version"),
            (|t| t.arch = "mips".into(), "arch `mips`"),
            (|t| t.arch = "x".repeat(5000), "is not one Shoal builds"),
            (|t| t.size = 0, "size 0"),
            (|t| t.size = u64::MAX, "outside 1 to"),
            (|t| t.source = "ftp://hub".into(), "agent target source"),
            (
                |t| t.minimum = Some("x".repeat(5000)),
                "agent target minimum",
            ),
            (|t| t.minimum = Some("0.3.0".into()), "at most its version"),
        ];
        for (spoil, expected) in cases {
            let mut hostile = target();
            spoil(&mut hostile);
            let error: Invalid =
                crate::release::AgentTarget::try_from(hostile).expect_err(expected);
            assert!(
                error.0.contains(expected),
                "{} should mention {expected}",
                error.0
            );
            assert!(error.0.len() < 300, "the error stays short: {}", error.0);
        }
    }

    #[test]
    fn a_hostile_agent_update_in_a_status_is_refused() {
        let update = |version: &str, state| AgentUpdate {
            version: version.into(),
            state,
        };
        let sound = update(
            "0.2.0",
            AgentUpdateState::Downloading {
                received: 5,
                size: 10,
            },
        );
        assert!(dw::AgentUpdate::try_from(sound).is_ok());
        let hostile = [
            update(
                "0.2.0",
                AgentUpdateState::Downloading {
                    received: 11,
                    size: 10,
                },
            ),
            update(
                "0.2.0",
                AgentUpdateState::Downloading {
                    received: 0,
                    size: u64::MAX,
                },
            ),
            update(
                "0.2.0",
                AgentUpdateState::Failed {
                    reason: "x".repeat(dw::MAX_UPDATE_REASON_CHARS + 1),
                },
            ),
            update("not a version", AgentUpdateState::Switching),
        ];
        for h in hostile {
            let shown = format!("{h:?}");
            assert!(
                dw::AgentUpdate::try_from(h).is_err(),
                "{}",
                &shown[..shown.len().min(80)]
            );
        }
    }
}
