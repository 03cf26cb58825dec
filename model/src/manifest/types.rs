//! The typed fleet manifest: what `shoal apply` stores and what travels to nodes inside
//! `DesiredState`. Built only through [`crate::manifest::parse_manifest`], which validates it.
//!
//! These are domain types: they change freely. Their serde derives are for JSON (the hub's
//! API, `-o json`) only; what is sent or stored goes through the frozen shapes of
//! `crate::wire` (see the rule in `wire/mod.rs`), never postcard of these.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::manifest::constraint::Constraint;
use crate::manifest::image::ImageRef;
use crate::quantity::Amount;

/// The only `apiVersion` this release understands.
pub const API_VERSION: &str = "shoal/v1";
/// The only `kind` this release understands.
pub const KIND_WORKLOAD: &str = "Workload";

/// A named, validated workload (`kind: Workload`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workload {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub spec: WorkloadSpec,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadSpec {
    pub placement: Placement,
    pub rollout: Rollout,
    pub restart_policy: RestartPolicy,
    pub network: NetworkMode,
    /// Time between SIGTERM and SIGKILL when a container is stopped.
    pub stop_grace_period: Duration,
    pub volumes: Vec<Volume>,
    pub containers: Vec<Container>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub mode: PlacementMode,
    /// Labels a node must carry, all of them, with these exact values.
    pub node_selector: BTreeMap<String, String>,
    pub constraints: Vec<Constraint>,
    /// Spread `replicas` across the values of this node label.
    pub spread: Option<String>,
    /// Run only on nodes that run all of these workloads (affinity).
    pub with: Vec<String>,
    /// Never run on a node that runs any of these workloads (anti-affinity).
    pub not_with: Vec<String>,
    /// When a `replicas` workload leaves a node that stays offline.
    pub reschedule_after: RescheduleAfter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementMode {
    /// One copy on every matching node (a daemon set).
    Every,
    /// This many copies on distinct matching nodes.
    Replicas(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RescheduleAfter {
    After(Duration),
    Never,
}

/// Default grace period before a `replicas` copy leaves an offline node.
pub const DEFAULT_RESCHEDULE_AFTER: Duration = Duration::from_secs(600);
/// Default time between SIGTERM and SIGKILL.
pub const DEFAULT_STOP_GRACE_PERIOD: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub max_unavailable: Amount,
    /// Nodes updated first, alone, before the rest of the fleet: a count, or a percentage of
    /// the workload's nodes rounded up (`canary: 10%`; a percentage added in wire version 3).
    /// In the hub's JSON a count is the number it always was, a percentage the text `10%`.
    #[serde(with = "canary_json")]
    pub canary: Amount,
    /// How long a node must report healthy before the rollout counts it as done.
    pub healthy_for: Duration,
    pub auto_rollback: bool,
    /// How long a node that was given a revision has to be done with it, or it counts as
    /// failed (a node that went silent too). Added in wire version 3.
    pub progress_deadline: Duration,
    /// Failed nodes that halt the rollout: a count, or a percentage of the workload's nodes
    /// (rounded up, at least 1). Added in wire version 3.
    pub failure_threshold: Amount,
}

/// Default `spec.rollout.progressDeadline`.
pub const DEFAULT_PROGRESS_DEADLINE: Duration = Duration::from_secs(600);
/// Default `spec.rollout.failureThreshold`: the first failed node halts the rollout.
pub const DEFAULT_FAILURE_THRESHOLD: Amount = Amount::Count(1);

impl Default for Rollout {
    fn default() -> Self {
        Rollout {
            max_unavailable: Amount::Percent(25),
            canary: Amount::Count(0),
            healthy_for: Duration::from_secs(30),
            auto_rollback: true,
            progress_deadline: DEFAULT_PROGRESS_DEADLINE,
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    #[default]
    Always,
    OnFailure,
    Never,
}

impl RestartPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            RestartPolicy::Always => "always",
            RestartPolicy::OnFailure => "on-failure",
            RestartPolicy::Never => "never",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// The node's network stack (the usual choice at the edge).
    #[default]
    Host,
    /// A private network namespace with loopback only.
    Isolated,
}

impl NetworkMode {
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Host => "host",
            NetworkMode::Isolated => "isolated",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub source: VolumeSource,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    /// Lives in the agent's data dir and survives updates of the workload.
    Named,
    /// A host directory; the agent allows only paths under its configured allow-list.
    HostPath(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    pub image: ImageRef,
    /// Replaces the image's entrypoint when not empty.
    pub command: Vec<String>,
    /// Replaces the image's cmd when not empty.
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub user: Option<User>,
    pub resources: Resources,
    /// Host device nodes made available in the container (`/dev/ttyUSB0`).
    pub devices: Vec<String>,
    pub mounts: Vec<Mount>,
    pub health: Option<HealthCheck>,
    pub read_only_rootfs: bool,
    pub capabilities: Capabilities,
    pub privileged: bool,
}

/// A numeric user and optional group (`1000` or `1000:1000`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: Option<u32>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    /// Memory limit in bytes.
    pub memory: Option<u64>,
    /// CPU limit in millicores (1000 = one core).
    pub cpu_millis: Option<u32>,
    /// Maximum number of processes.
    pub pids: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    pub volume: String,
    pub path: String,
    pub read_only: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    pub probe: Probe,
    pub interval: Duration,
    pub timeout: Duration,
    /// Consecutive failures before the container counts as unhealthy.
    pub retries: u32,
    /// Failures during this time after start do not count.
    pub start_period: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    /// Runs inside the container; healthy on exit status 0.
    Exec(Vec<String>),
    /// Healthy on a 2xx or 3xx answer.
    Http { port: u16, path: String },
    /// Healthy when the port accepts a connection.
    Tcp { port: u16 },
}

/// Capabilities added to or dropped from the default set, as `CAP_NAME`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

impl Placement {
    pub fn is_every(&self) -> bool {
        self.mode == PlacementMode::Every
    }
}

impl Workload {
    /// Total resources one copy of this workload asks of a node.
    pub fn requested(&self) -> Resources {
        let mut total = Resources::default();
        for c in &self.spec.containers {
            let r = c.resources;
            total.memory = sum(total.memory, r.memory, u64::saturating_add);
            total.cpu_millis = sum(total.cpu_millis, r.cpu_millis, u32::saturating_add);
            total.pids = sum(total.pids, r.pids, u32::saturating_add);
        }
        total
    }
}

fn sum<T>(a: Option<T>, b: Option<T>, add: fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(add(a, b)),
        (a, None) => a,
        (None, b) => b,
    }
}

/// `spec.rollout.canary` in the hub's JSON: a count as the number every earlier hub wrote, a
/// percentage as its text (`"10%"`), so a client of an earlier release reads every count.
mod canary_json {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use crate::quantity::Amount;

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Json {
        Count(u32),
        Text(String),
    }

    pub fn serialize<S: Serializer>(amount: &Amount, s: S) -> Result<S::Ok, S::Error> {
        match amount {
            Amount::Count(n) => Json::Count(*n),
            Amount::Percent(_) => Json::Text(amount.to_string()),
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Amount, D::Error> {
        match Json::deserialize(d)? {
            Json::Count(n) => Ok(Amount::Count(n)),
            Json::Text(text) => Amount::parse(&text).map_err(serde::de::Error::custom),
        }
    }
}
