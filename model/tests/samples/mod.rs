//! Fully populated values of every type that crosses the wire or is stored, for the golden
//! tests: every field set, every enum variant used at least once. Built as struct literals,
//! not parsed, so a change in the manifest parser does not move a golden value.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_model::manifest::constraint::{Attribute, Comparison, Constraint, Key, Test, Value};
use shoal_model::manifest::image::ImageRef;
use shoal_model::manifest::{
    Capabilities, Container, HealthCheck, Mount, NetworkMode, Placement, PlacementMode, Probe,
    RescheduleAfter, Resources, RestartPolicy, Rollout, User, Volume, VolumeSource, Workload,
    WorkloadSpec,
};
use shoal_model::node::{Capacity, NodeFacts};
use shoal_model::quantity::Amount;
use shoal_model::wire::signing::PublicKey;
use shoal_model::wire::{
    ContainerState, ContainerStatus, DesiredState, DesiredWorkload, Envelope, Event, EventReason,
    ExitInfo, Health, ImageSummary, Limits, NodeStatus, NodeUsage, Presence, RpcRequest,
    RpcRequestBody, RpcResponse, RpcResponseBody, Severity, WorkloadStatus,
};

pub const NODE: &str = "gw-7";

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect()
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_string()).collect()
}

fn constraint(source: &str, key: Key, test: Test) -> Constraint {
    Constraint {
        source: source.into(),
        key,
        test,
    }
}

/// Every constraint key, test, comparison and value kind.
pub fn constraints() -> Vec<Constraint> {
    use Attribute::*;
    let attr = Key::Attribute;
    vec![
        constraint(
            "arch in (arm64, armv7)",
            attr(Arch),
            Test::In(vec![
                Value::Text("arm64".into()),
                Value::Text("armv7".into()),
            ]),
        ),
        constraint(
            "os notin (windows)",
            attr(Os),
            Test::NotIn(vec![Value::Text("windows".into())]),
        ),
        constraint(
            "kernel >= 5.10",
            attr(Kernel),
            Test::Compare(Comparison::Ge, Value::Version(vec![5, 10])),
        ),
        constraint(
            "cgroup == 2",
            attr(Cgroup),
            Test::Compare(Comparison::Eq, Value::Number(2)),
        ),
        constraint(
            "memory > 256Mi",
            attr(Memory),
            Test::Compare(Comparison::Gt, Value::Number(256 << 20)),
        ),
        constraint(
            "cpu <= 4",
            attr(Cpu),
            Test::Compare(Comparison::Le, Value::Number(4000)),
        ),
        constraint(
            "pids < 100000",
            attr(Pids),
            Test::Compare(Comparison::Lt, Value::Number(100_000)),
        ),
        constraint(
            "agentVersion != 0.0.9",
            attr(AgentVersion),
            Test::Compare(Comparison::Ne, Value::Version(vec![0, 0, 9])),
        ),
        constraint("label.gpu exists", Key::Label("gpu".into()), Test::Exists),
        constraint(
            "label.shoal.dev/lab missing",
            Key::Label("shoal.dev/lab".into()),
            Test::Missing,
        ),
    ]
}

/// A container with every field set and an exec probe.
pub fn reader() -> Container {
    Container {
        name: "reader".into(),
        image: ImageRef {
            registry: Some("registry.local:5000".into()),
            repository: "plant/sensor-reader".into(),
            tag: Some("1.4.2".into()),
            digest: Some(format!("sha256:{}", "ab".repeat(32))),
        },
        command: strings(&["/bin/reader"]),
        args: strings(&["--port", "/dev/ttyUSB0", "--rate=10"]),
        env: map(&[("LOG_LEVEL", "debug"), ("SITE", "plant-1")]),
        working_dir: Some("/var/lib/reader".into()),
        user: Some(User {
            uid: 1000,
            gid: Some(20),
        }),
        resources: Resources {
            memory: Some(64 << 20),
            cpu_millis: Some(250),
            pids: Some(64),
        },
        devices: strings(&["/dev/ttyUSB0"]),
        mounts: vec![
            Mount {
                volume: "data".into(),
                path: "/data".into(),
                read_only: false,
            },
            Mount {
                volume: "config".into(),
                path: "/etc/reader".into(),
                read_only: true,
            },
        ],
        health: Some(HealthCheck {
            probe: Probe::Exec(strings(&["/bin/reader", "--check"])),
            interval: Duration::from_secs(15),
            timeout: Duration::from_millis(1_500),
            retries: 3,
            start_period: Duration::new(20, 250_000_000),
        }),
        read_only_rootfs: true,
        capabilities: Capabilities {
            add: strings(&["CAP_NET_ADMIN", "CAP_SYS_TIME"]),
            drop: strings(&["CAP_MKNOD"]),
        },
        privileged: false,
    }
}

/// A container with an HTTP probe, a user without a group, and partial resources.
pub fn web() -> Container {
    Container {
        name: "web".into(),
        image: ImageRef {
            registry: None,
            repository: "library/nginx".into(),
            tag: Some("1.27".into()),
            digest: None,
        },
        command: Vec::new(),
        args: Vec::new(),
        env: BTreeMap::new(),
        working_dir: None,
        user: Some(User {
            uid: 101,
            gid: None,
        }),
        resources: Resources {
            memory: Some(32 << 20),
            cpu_millis: None,
            pids: None,
        },
        devices: Vec::new(),
        mounts: vec![Mount {
            volume: "data".into(),
            path: "/usr/share/nginx/html".into(),
            read_only: true,
        }],
        health: Some(HealthCheck {
            probe: Probe::Http {
                port: 8080,
                path: "/healthz".into(),
            },
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(2),
            retries: 5,
            start_period: Duration::ZERO,
        }),
        read_only_rootfs: false,
        capabilities: Capabilities::default(),
        privileged: false,
    }
}

/// A privileged container with a TCP probe and nothing else set.
pub fn probe() -> Container {
    Container {
        name: "probe".into(),
        image: ImageRef {
            registry: None,
            repository: "library/busybox".into(),
            tag: None,
            digest: Some(format!("sha256:{}", "0f".repeat(32))),
        },
        command: strings(&["/bin/sh", "-c"]),
        args: strings(&["nc -lk -p 7000 -e cat"]),
        env: map(&[("EMPTY", "")]),
        working_dir: None,
        user: None,
        resources: Resources::default(),
        devices: Vec::new(),
        mounts: Vec::new(),
        health: Some(HealthCheck {
            probe: Probe::Tcp { port: 7000 },
            interval: Duration::from_secs(30),
            timeout: Duration::from_secs(5),
            retries: 1,
            start_period: Duration::from_secs(60),
        }),
        read_only_rootfs: false,
        capabilities: Capabilities::default(),
        privileged: true,
    }
}

/// A replicated, isolated workload with every placement field and both volume kinds.
pub fn sensor_workload() -> Workload {
    Workload {
        name: "sensor-reader".into(),
        labels: map(&[("app", "sensor"), ("shoal.dev/tier", "edge")]),
        spec: WorkloadSpec {
            placement: Placement {
                mode: PlacementMode::Replicas(3),
                node_selector: map(&[("role", "gateway"), ("site", "plant-1")]),
                constraints: constraints(),
                spread: Some("rack".into()),
                with: strings(&["broker"]),
                not_with: strings(&["noisy", "batch"]),
                reschedule_after: RescheduleAfter::After(Duration::from_secs(90)),
            },
            rollout: Rollout {
                max_unavailable: Amount::Count(2),
                canary: Amount::Count(1),
                healthy_for: Duration::from_secs(45),
                auto_rollback: false,
                // Version 3's settings at their defaults: what a version-2 value reads as.
                ..Rollout::default()
            },
            restart_policy: RestartPolicy::OnFailure,
            network: NetworkMode::Isolated,
            stop_grace_period: Duration::from_millis(2_500),
            volumes: vec![
                Volume {
                    name: "data".into(),
                    source: VolumeSource::Named,
                },
                Volume {
                    name: "config".into(),
                    source: VolumeSource::HostPath("/etc/plant/reader".into()),
                },
            ],
            containers: vec![reader(), web(), probe()],
        },
    }
}

/// A daemon-set workload with the other variant of every enum.
pub fn agent_workload() -> Workload {
    let mut container = probe();
    container.name = "logger".into();
    container.health = None;
    container.privileged = false;
    Workload {
        name: "log-shipper".into(),
        labels: BTreeMap::new(),
        spec: WorkloadSpec {
            placement: Placement {
                mode: PlacementMode::Every,
                node_selector: BTreeMap::new(),
                constraints: Vec::new(),
                spread: None,
                with: Vec::new(),
                not_with: Vec::new(),
                reschedule_after: RescheduleAfter::Never,
            },
            rollout: Rollout {
                max_unavailable: Amount::Percent(25),
                canary: Amount::Count(0),
                healthy_for: Duration::from_secs(30),
                auto_rollback: true,
                ..Rollout::default()
            },
            restart_policy: RestartPolicy::Never,
            network: NetworkMode::Host,
            stop_grace_period: Duration::from_secs(10),
            volumes: Vec::new(),
            containers: vec![container],
        },
    }
}

/// A workload with `restart: always`, the remaining restart policy.
pub fn always_workload() -> Workload {
    let mut workload = agent_workload();
    workload.name = "heartbeat".into();
    workload.spec.restart_policy = RestartPolicy::Always;
    workload
}

pub fn signing_keys() -> Vec<PublicKey> {
    let mut next = [0u8; 32];
    for (i, b) in next.iter_mut().enumerate() {
        *b = i as u8;
    }
    vec![PublicKey([0xa5; 32]), PublicKey(next)]
}

pub fn desired() -> DesiredState {
    DesiredState {
        node_id: NODE.into(),
        generation: 300,
        workloads: vec![
            DesiredWorkload {
                workload: always_workload(),
                revision: 1,
            },
            DesiredWorkload {
                workload: agent_workload(),
                revision: 7,
            },
            DesiredWorkload {
                workload: sensor_workload(),
                revision: 129,
            },
        ],
        signing_keys: signing_keys(),
        agent: None,
    }
}

/// The desired state as the hub publishes and stores it: signed (a fixed signature: key id
/// and 64 bytes).
pub fn signed_desired_bytes() -> Vec<u8> {
    let state = desired();
    let mut envelope = Envelope::seal_in(2, NODE, &state).expect("the sample desired state seals");
    let mut signature = vec![0x11; 8];
    signature.extend_from_slice(&[0x5a; 64]);
    envelope.signature = Some(signature);
    envelope
        .encode(&Limits::default())
        .expect("the sample desired state encodes")
}

pub fn facts() -> NodeFacts {
    NodeFacts {
        arch: "arm64".into(),
        os: "linux".into(),
        kernel: "6.1.0-rpi7-rpi-v8".into(),
        cgroup_version: 2,
        capacity: Capacity {
            memory_bytes: 4 << 30,
            cpu_millis: 4000,
            pids: 32_768,
        },
        agent_version: "0.1.0".into(),
        labels: map(&[("role", "gateway"), ("shoal.dev/site", "plant-1")]),
        wire_versions: Vec::new(),
    }
}

pub fn presence() -> Presence {
    Presence {
        node_id: NODE.into(),
        online: true,
        facts: facts(),
    }
}

const STATES: [ContainerState; 8] = [
    ContainerState::Pending,
    ContainerState::Pulling,
    ContainerState::Creating,
    ContainerState::Running,
    ContainerState::Exited,
    ContainerState::Failed,
    ContainerState::BackOff,
    ContainerState::Stopped,
];

const HEALTHS: [Health; 4] = [
    Health::Unknown,
    Health::Starting,
    Health::Healthy,
    Health::Unhealthy,
];

const SEVERITIES: [Severity; 3] = [Severity::Info, Severity::Warning, Severity::Error];

/// One container in each state, cycling through health values; every other one fully set.
fn containers() -> Vec<ContainerStatus> {
    STATES
        .iter()
        .enumerate()
        .map(|(i, state)| {
            let full = i % 2 == 1;
            let n = i as u64;
            ContainerStatus {
                name: format!("c{i}"),
                state: *state,
                health: HEALTHS[i % HEALTHS.len()],
                restarts: i as u32 * 3,
                last_exit: full.then(|| ExitInfo {
                    code: (i % 4 == 1).then_some(137),
                    signal: (i % 4 == 3).then_some(9),
                    oom_killed: i == 3,
                    at_ms: 1_700_000_000_000 + n,
                }),
                oom_kills: u32::from(i == 3),
                started_at_ms: full.then_some(1_700_000_000_500 + n),
                pid: full.then_some(4_000 + i as u32),
                memory_bytes: full.then_some((n + 1) << 20),
                cpu_usage_ns: full.then_some(123_456_789 * (n + 1)),
                message: full.then(|| format!("message {i}")),
            }
        })
        .collect()
}

/// One event per reason an agent reports in version 2 (all but the hub's own
/// `status-refused` and version 3's `rolled-back` and `agent-update-failed`), cycling
/// through severities.
fn events() -> Vec<Event> {
    EventReason::ALL
        .iter()
        .filter(|reason| {
            !reason.is_recorded_by_hub()
                && !matches!(
                    **reason,
                    EventReason::RolledBack | EventReason::AgentUpdateFailed
                )
        })
        .enumerate()
        .map(|(i, reason)| Event {
            sequence: 1_000 + i as u64,
            at_ms: 1_700_000_001_000 + i as u64 * 7,
            severity: SEVERITIES[i % SEVERITIES.len()],
            workload: (i % 3 != 2).then(|| "sensor-reader".to_string()),
            container: (i % 3 == 0).then(|| "reader".to_string()),
            reason: *reason,
            message: format!("{} happened", reason.as_str()),
        })
        .collect()
}

pub fn status() -> NodeStatus {
    NodeStatus {
        node_id: NODE.into(),
        observed_generation: 300,
        sequence: 70_000,
        sent_at_ms: 1_700_000_002_000,
        workloads: vec![
            WorkloadStatus {
                name: "sensor-reader".into(),
                revision: 129,
                containers: containers(),
                rolled_back: None,
            },
            WorkloadStatus {
                name: "log-shipper".into(),
                revision: 7,
                containers: Vec::new(),
                rolled_back: None,
            },
        ],
        usage: NodeUsage {
            memory_used_bytes: 1 << 30,
            memory_total_bytes: 4 << 30,
            cpu_millis_used: 1_250,
            disk_used_bytes: 5 << 30,
            disk_budget_bytes: 16 << 30,
        },
        events: events(),
        dropped_events: 12,
        agent_update: None,
    }
}

/// Every request variant, in declaration order.
pub fn rpc_requests() -> Vec<RpcRequest> {
    let bodies = vec![
        RpcRequestBody::Logs {
            workload: "sensor-reader".into(),
            container: Some("reader".into()),
            tail: Some(200),
            follow: true,
        },
        RpcRequestBody::Exec {
            workload: "sensor-reader".into(),
            container: None,
            command: strings(&["ls", "-l", "/data"]),
        },
        RpcRequestBody::Diagnostics,
        RpcRequestBody::Ping,
        RpcRequestBody::Status,
        RpcRequestBody::Apply {
            workloads: vec![DesiredWorkload {
                workload: agent_workload(),
                revision: 2,
            }],
        },
        RpcRequestBody::DeleteWorkload {
            workload: "log-shipper".into(),
        },
        RpcRequestBody::ListImages,
        RpcRequestBody::ImportImage {
            path: "/tmp/busybox.tar".into(),
        },
        RpcRequestBody::RemoveImage {
            reference: "library/busybox:1.36".into(),
        },
        RpcRequestBody::PruneImages,
        RpcRequestBody::Cancel { id: 41 },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| RpcRequest {
            id: 1 << (i * 5),
            body,
        })
        .collect()
}

/// Every response variant, in declaration order.
pub fn rpc_responses() -> Vec<RpcResponse> {
    let mut small = status();
    small.workloads.truncate(1);
    small.workloads[0].containers.truncate(2);
    small.events.truncate(2);
    let bodies = vec![
        RpcResponseBody::LogChunk {
            data: b"line one\nline two\n".to_vec(),
            eof: true,
        },
        RpcResponseBody::ExecResult {
            exit_code: -1,
            stdout: b"total 0\n".to_vec(),
            stderr: b"ls: /nope: No such file\n".to_vec(),
        },
        RpcResponseBody::Diagnostics {
            text: "node gw-7\ndesired generation 300\n".into(),
        },
        RpcResponseBody::Pong,
        RpcResponseBody::Error {
            message: "no workload `x`: `shoal-agent ps` lists them".into(),
        },
        RpcResponseBody::Status(small),
        RpcResponseBody::Applied {
            generation: 9,
            changes: strings(&["+ log-shipper", "~ heartbeat"]),
        },
        RpcResponseBody::Images(vec![
            ImageSummary {
                reference: "library/busybox:1.36".into(),
                digest: format!("sha256:{}", "cd".repeat(32)),
                size_bytes: 1_234_567,
                in_use: 2,
            },
            ImageSummary {
                reference: "plant/sensor-reader:1.4.2".into(),
                digest: format!("sha256:{}", "ef".repeat(32)),
                size_bytes: 0,
                in_use: 0,
            },
        ]),
        RpcResponseBody::Done {
            message: "removed 2 images".into(),
        },
    ];
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| RpcResponse {
            id: u64::MAX - i as u64,
            body,
        })
        .collect()
}
