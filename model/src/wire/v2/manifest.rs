//! Wire version 2 of a workload: frozen copies of `crate::manifest::Workload` and everything
//! in it, as release 0.1.0 put them on the wire and in both databases.
//!
//! Frozen: see the module above. Field order, field types and variant order are the format.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Invalid;
use crate::manifest::{self as domain, constraint as dc, image as di};
use crate::quantity as dq;

/// `std::time::Duration` as serde encodes it: whole seconds, then nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Duration {
    pub secs: u64,
    pub nanos: u32,
}

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
    pub stop_grace_period: Duration,
    pub volumes: Vec<Volume>,
    pub containers: Vec<Container>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub mode: PlacementMode,
    pub node_selector: BTreeMap<String, String>,
    pub constraints: Vec<Constraint>,
    pub spread: Option<String>,
    pub with: Vec<String>,
    pub not_with: Vec<String>,
    pub reschedule_after: RescheduleAfter,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlacementMode {
    Every,
    Replicas(u32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RescheduleAfter {
    After(Duration),
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rollout {
    pub max_unavailable: Amount,
    pub canary: u32,
    pub healthy_for: Duration,
    pub auto_rollback: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Amount {
    Count(u32),
    Percent(u8),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RestartPolicy {
    Always,
    OnFailure,
    Never,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    Host,
    Isolated,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Volume {
    pub name: String,
    pub source: VolumeSource,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VolumeSource {
    Named,
    HostPath(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Container {
    pub name: String,
    pub image: ImageRef,
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<String>,
    pub user: Option<User>,
    pub resources: Resources,
    pub devices: Vec<String>,
    pub mounts: Vec<Mount>,
    pub health: Option<HealthCheck>,
    pub read_only_rootfs: bool,
    pub capabilities: Capabilities,
    pub privileged: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRef {
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub uid: u32,
    pub gid: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resources {
    pub memory: Option<u64>,
    pub cpu_millis: Option<u32>,
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
    pub retries: u32,
    pub start_period: Duration,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Probe {
    Exec(Vec<String>),
    Http { port: u16, path: String },
    Tcp { port: u16 },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capabilities {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Constraint {
    pub source: String,
    pub key: Key,
    pub test: Test,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Key {
    Attribute(Attribute),
    Label(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Attribute {
    Arch,
    Os,
    Kernel,
    Cgroup,
    Memory,
    Cpu,
    Pids,
    AgentVersion,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Test {
    In(Vec<Value>),
    NotIn(Vec<Value>),
    Compare(Comparison, Value),
    Exists,
    Missing,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    Eq,
    Ne,
    Ge,
    Le,
    Gt,
    Lt,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Value {
    Text(String),
    Version(Vec<u64>),
    Number(u64),
}

// ---- domain -> v2 ----------------------------------------------------------------------

fn list<'a, D: 'a, V: From<&'a D>>(items: &'a [D]) -> Vec<V> {
    items.iter().map(V::from).collect()
}

impl From<&std::time::Duration> for Duration {
    fn from(d: &std::time::Duration) -> Self {
        Duration {
            secs: d.as_secs(),
            nanos: d.subsec_nanos(),
        }
    }
}

impl From<&domain::Workload> for Workload {
    fn from(w: &domain::Workload) -> Self {
        Workload {
            name: w.name.clone(),
            labels: w.labels.clone(),
            spec: (&w.spec).into(),
        }
    }
}

impl From<&domain::WorkloadSpec> for WorkloadSpec {
    fn from(s: &domain::WorkloadSpec) -> Self {
        WorkloadSpec {
            placement: (&s.placement).into(),
            rollout: (&s.rollout).into(),
            restart_policy: (&s.restart_policy).into(),
            network: (&s.network).into(),
            stop_grace_period: (&s.stop_grace_period).into(),
            volumes: list(&s.volumes),
            containers: list(&s.containers),
        }
    }
}

impl From<&domain::Placement> for Placement {
    fn from(p: &domain::Placement) -> Self {
        Placement {
            mode: match p.mode {
                domain::PlacementMode::Every => PlacementMode::Every,
                domain::PlacementMode::Replicas(n) => PlacementMode::Replicas(n),
            },
            node_selector: p.node_selector.clone(),
            constraints: list(&p.constraints),
            spread: p.spread.clone(),
            with: p.with.clone(),
            not_with: p.not_with.clone(),
            reschedule_after: match &p.reschedule_after {
                domain::RescheduleAfter::After(d) => RescheduleAfter::After(d.into()),
                domain::RescheduleAfter::Never => RescheduleAfter::Never,
            },
        }
    }
}

impl From<dq::Amount> for Amount {
    fn from(a: dq::Amount) -> Self {
        match a {
            dq::Amount::Count(n) => Amount::Count(n),
            dq::Amount::Percent(p) => Amount::Percent(p),
        }
    }
}

impl From<&domain::Rollout> for Rollout {
    fn from(r: &domain::Rollout) -> Self {
        Rollout {
            max_unavailable: r.max_unavailable.into(),
            // A percentage is version 3's: version 2 (an agent of release 0.1.0, which acts on
            // no rollout setting) reads no canary, and identity v1 holds 0 for it too (the
            // digest takes the percentage as a later field).
            canary: match r.canary {
                dq::Amount::Count(n) => n,
                dq::Amount::Percent(_) => 0,
            },
            healthy_for: (&r.healthy_for).into(),
            auto_rollback: r.auto_rollback,
        }
    }
}

impl From<&domain::RestartPolicy> for RestartPolicy {
    fn from(r: &domain::RestartPolicy) -> Self {
        match r {
            domain::RestartPolicy::Always => RestartPolicy::Always,
            domain::RestartPolicy::OnFailure => RestartPolicy::OnFailure,
            domain::RestartPolicy::Never => RestartPolicy::Never,
        }
    }
}

impl From<&domain::NetworkMode> for NetworkMode {
    fn from(n: &domain::NetworkMode) -> Self {
        match n {
            domain::NetworkMode::Host => NetworkMode::Host,
            domain::NetworkMode::Isolated => NetworkMode::Isolated,
        }
    }
}

impl From<&domain::Volume> for Volume {
    fn from(v: &domain::Volume) -> Self {
        Volume {
            name: v.name.clone(),
            source: match &v.source {
                domain::VolumeSource::Named => VolumeSource::Named,
                domain::VolumeSource::HostPath(p) => VolumeSource::HostPath(p.clone()),
            },
        }
    }
}

impl From<&domain::Container> for Container {
    fn from(c: &domain::Container) -> Self {
        Container {
            name: c.name.clone(),
            image: (&c.image).into(),
            command: c.command.clone(),
            args: c.args.clone(),
            env: c.env.clone(),
            working_dir: c.working_dir.clone(),
            user: c.user.map(|u| User {
                uid: u.uid,
                gid: u.gid,
            }),
            resources: Resources {
                memory: c.resources.memory,
                cpu_millis: c.resources.cpu_millis,
                pids: c.resources.pids,
            },
            devices: c.devices.clone(),
            mounts: c
                .mounts
                .iter()
                .map(|m| Mount {
                    volume: m.volume.clone(),
                    path: m.path.clone(),
                    read_only: m.read_only,
                })
                .collect(),
            health: c.health.as_ref().map(HealthCheck::from),
            read_only_rootfs: c.read_only_rootfs,
            capabilities: Capabilities {
                add: c.capabilities.add.clone(),
                drop: c.capabilities.drop.clone(),
            },
            privileged: c.privileged,
        }
    }
}

impl From<&di::ImageRef> for ImageRef {
    fn from(i: &di::ImageRef) -> Self {
        ImageRef {
            registry: i.registry.clone(),
            repository: i.repository.clone(),
            tag: i.tag.clone(),
            digest: i.digest.clone(),
        }
    }
}

impl From<&domain::HealthCheck> for HealthCheck {
    fn from(h: &domain::HealthCheck) -> Self {
        HealthCheck {
            probe: match &h.probe {
                domain::Probe::Exec(command) => Probe::Exec(command.clone()),
                domain::Probe::Http { port, path } => Probe::Http {
                    port: *port,
                    path: path.clone(),
                },
                domain::Probe::Tcp { port } => Probe::Tcp { port: *port },
            },
            interval: (&h.interval).into(),
            timeout: (&h.timeout).into(),
            retries: h.retries,
            start_period: (&h.start_period).into(),
        }
    }
}

impl From<&dc::Constraint> for Constraint {
    fn from(c: &dc::Constraint) -> Self {
        Constraint {
            source: c.source.clone(),
            key: match &c.key {
                dc::Key::Attribute(a) => Key::Attribute(a.into()),
                dc::Key::Label(l) => Key::Label(l.clone()),
            },
            test: match &c.test {
                dc::Test::In(values) => Test::In(list(values)),
                dc::Test::NotIn(values) => Test::NotIn(list(values)),
                dc::Test::Compare(op, value) => Test::Compare(op.into(), value.into()),
                dc::Test::Exists => Test::Exists,
                dc::Test::Missing => Test::Missing,
            },
        }
    }
}

impl From<&dc::Attribute> for Attribute {
    fn from(a: &dc::Attribute) -> Self {
        match a {
            dc::Attribute::Arch => Attribute::Arch,
            dc::Attribute::Os => Attribute::Os,
            dc::Attribute::Kernel => Attribute::Kernel,
            dc::Attribute::Cgroup => Attribute::Cgroup,
            dc::Attribute::Memory => Attribute::Memory,
            dc::Attribute::Cpu => Attribute::Cpu,
            dc::Attribute::Pids => Attribute::Pids,
            dc::Attribute::AgentVersion => Attribute::AgentVersion,
        }
    }
}

impl From<&dc::Comparison> for Comparison {
    fn from(c: &dc::Comparison) -> Self {
        match c {
            dc::Comparison::Eq => Comparison::Eq,
            dc::Comparison::Ne => Comparison::Ne,
            dc::Comparison::Ge => Comparison::Ge,
            dc::Comparison::Le => Comparison::Le,
            dc::Comparison::Gt => Comparison::Gt,
            dc::Comparison::Lt => Comparison::Lt,
        }
    }
}

impl From<&dc::Value> for Value {
    fn from(v: &dc::Value) -> Self {
        match v {
            dc::Value::Text(t) => Value::Text(t.clone()),
            dc::Value::Version(parts) => Value::Version(parts.clone()),
            dc::Value::Number(n) => Value::Number(*n),
        }
    }
}

// ---- v2 -> domain ----------------------------------------------------------------------

fn try_list<V, D: TryFrom<V, Error = Invalid>>(items: Vec<V>) -> Result<Vec<D>, Invalid> {
    items.into_iter().map(D::try_from).collect()
}

impl TryFrom<Duration> for std::time::Duration {
    type Error = Invalid;

    /// As serde reads a `Duration`: nanoseconds beyond a second carry into the seconds, and a
    /// total that does not fit is refused (where `Duration::new` would panic).
    fn try_from(d: Duration) -> Result<Self, Invalid> {
        d.secs
            .checked_add(u64::from(d.nanos / 1_000_000_000))
            .map(|_| std::time::Duration::new(d.secs, d.nanos))
            .ok_or_else(|| Invalid(format!("the duration of {} s overflows", d.secs)))
    }
}

impl TryFrom<Workload> for domain::Workload {
    type Error = Invalid;

    fn try_from(w: Workload) -> Result<Self, Invalid> {
        Ok(domain::Workload {
            name: w.name,
            labels: w.labels,
            spec: w.spec.try_into()?,
        })
    }
}

impl TryFrom<WorkloadSpec> for domain::WorkloadSpec {
    type Error = Invalid;

    fn try_from(s: WorkloadSpec) -> Result<Self, Invalid> {
        Ok(domain::WorkloadSpec {
            placement: s.placement.try_into()?,
            rollout: s.rollout.try_into()?,
            restart_policy: s.restart_policy.into(),
            network: s.network.into(),
            stop_grace_period: s.stop_grace_period.try_into()?,
            volumes: s.volumes.into_iter().map(Into::into).collect(),
            containers: try_list(s.containers)?,
        })
    }
}

impl TryFrom<Placement> for domain::Placement {
    type Error = Invalid;

    fn try_from(p: Placement) -> Result<Self, Invalid> {
        Ok(domain::Placement {
            mode: match p.mode {
                PlacementMode::Every => domain::PlacementMode::Every,
                PlacementMode::Replicas(n) => domain::PlacementMode::Replicas(n),
            },
            node_selector: p.node_selector,
            constraints: p.constraints.into_iter().map(Into::into).collect(),
            spread: p.spread,
            with: p.with,
            not_with: p.not_with,
            reschedule_after: match p.reschedule_after {
                RescheduleAfter::After(d) => domain::RescheduleAfter::After(d.try_into()?),
                RescheduleAfter::Never => domain::RescheduleAfter::Never,
            },
        })
    }
}

impl TryFrom<Rollout> for domain::Rollout {
    type Error = Invalid;

    fn try_from(r: Rollout) -> Result<Self, Invalid> {
        Ok(domain::Rollout {
            max_unavailable: match r.max_unavailable {
                Amount::Count(n) => dq::Amount::Count(n),
                Amount::Percent(p) if p <= 100 => dq::Amount::Percent(p),
                Amount::Percent(p) => {
                    return Err(Invalid(format!("maxUnavailable is {p}%, more than 100%")))
                }
            },
            canary: dq::Amount::Count(r.canary),
            healthy_for: r.healthy_for.try_into()?,
            auto_rollback: r.auto_rollback,
            // Version 2 has neither: the defaults, which is how every hub before version 3
            // rolled out (not at all) comes closest to.
            progress_deadline: domain::DEFAULT_PROGRESS_DEADLINE,
            failure_threshold: domain::DEFAULT_FAILURE_THRESHOLD,
        })
    }
}

impl From<RestartPolicy> for domain::RestartPolicy {
    fn from(r: RestartPolicy) -> Self {
        match r {
            RestartPolicy::Always => domain::RestartPolicy::Always,
            RestartPolicy::OnFailure => domain::RestartPolicy::OnFailure,
            RestartPolicy::Never => domain::RestartPolicy::Never,
        }
    }
}

impl From<NetworkMode> for domain::NetworkMode {
    fn from(n: NetworkMode) -> Self {
        match n {
            NetworkMode::Host => domain::NetworkMode::Host,
            NetworkMode::Isolated => domain::NetworkMode::Isolated,
        }
    }
}

impl From<Volume> for domain::Volume {
    fn from(v: Volume) -> Self {
        domain::Volume {
            name: v.name,
            source: match v.source {
                VolumeSource::Named => domain::VolumeSource::Named,
                VolumeSource::HostPath(p) => domain::VolumeSource::HostPath(p),
            },
        }
    }
}

impl TryFrom<Container> for domain::Container {
    type Error = Invalid;

    fn try_from(c: Container) -> Result<Self, Invalid> {
        Ok(domain::Container {
            name: c.name,
            image: c.image.into(),
            command: c.command,
            args: c.args,
            env: c.env,
            working_dir: c.working_dir,
            user: c.user.map(|u| domain::User {
                uid: u.uid,
                gid: u.gid,
            }),
            resources: domain::Resources {
                memory: c.resources.memory,
                cpu_millis: c.resources.cpu_millis,
                pids: c.resources.pids,
            },
            devices: c.devices,
            mounts: c
                .mounts
                .into_iter()
                .map(|m| domain::Mount {
                    volume: m.volume,
                    path: m.path,
                    read_only: m.read_only,
                })
                .collect(),
            health: c.health.map(TryInto::try_into).transpose()?,
            read_only_rootfs: c.read_only_rootfs,
            capabilities: domain::Capabilities {
                add: c.capabilities.add,
                drop: c.capabilities.drop,
            },
            privileged: c.privileged,
        })
    }
}

impl From<ImageRef> for di::ImageRef {
    fn from(i: ImageRef) -> Self {
        di::ImageRef {
            registry: i.registry,
            repository: i.repository,
            tag: i.tag,
            digest: i.digest,
        }
    }
}

impl TryFrom<HealthCheck> for domain::HealthCheck {
    type Error = Invalid;

    fn try_from(h: HealthCheck) -> Result<Self, Invalid> {
        Ok(domain::HealthCheck {
            probe: match h.probe {
                Probe::Exec(command) => domain::Probe::Exec(command),
                Probe::Http { port, path } => domain::Probe::Http { port, path },
                Probe::Tcp { port } => domain::Probe::Tcp { port },
            },
            interval: h.interval.try_into()?,
            timeout: h.timeout.try_into()?,
            retries: h.retries,
            start_period: h.start_period.try_into()?,
        })
    }
}

impl From<Constraint> for dc::Constraint {
    fn from(c: Constraint) -> Self {
        dc::Constraint {
            source: c.source,
            key: match c.key {
                Key::Attribute(a) => dc::Key::Attribute(a.into()),
                Key::Label(l) => dc::Key::Label(l),
            },
            test: match c.test {
                Test::In(values) => dc::Test::In(values.into_iter().map(Into::into).collect()),
                Test::NotIn(values) => {
                    dc::Test::NotIn(values.into_iter().map(Into::into).collect())
                }
                Test::Compare(op, value) => dc::Test::Compare(op.into(), value.into()),
                Test::Exists => dc::Test::Exists,
                Test::Missing => dc::Test::Missing,
            },
        }
    }
}

impl From<Attribute> for dc::Attribute {
    fn from(a: Attribute) -> Self {
        match a {
            Attribute::Arch => dc::Attribute::Arch,
            Attribute::Os => dc::Attribute::Os,
            Attribute::Kernel => dc::Attribute::Kernel,
            Attribute::Cgroup => dc::Attribute::Cgroup,
            Attribute::Memory => dc::Attribute::Memory,
            Attribute::Cpu => dc::Attribute::Cpu,
            Attribute::Pids => dc::Attribute::Pids,
            Attribute::AgentVersion => dc::Attribute::AgentVersion,
        }
    }
}

impl From<Comparison> for dc::Comparison {
    fn from(c: Comparison) -> Self {
        match c {
            Comparison::Eq => dc::Comparison::Eq,
            Comparison::Ne => dc::Comparison::Ne,
            Comparison::Ge => dc::Comparison::Ge,
            Comparison::Le => dc::Comparison::Le,
            Comparison::Gt => dc::Comparison::Gt,
            Comparison::Lt => dc::Comparison::Lt,
        }
    }
}

impl From<Value> for dc::Value {
    fn from(v: Value) -> Self {
        match v {
            Value::Text(t) => dc::Value::Text(t),
            Value::Version(parts) => dc::Value::Version(parts),
            Value::Number(n) => dc::Value::Number(n),
        }
    }
}
