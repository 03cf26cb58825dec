//! `shoal describe node NAME` and `shoal describe workload NAME`: everything the hub knows
//! about one object, in kubectl-describe sections.

use std::collections::BTreeMap;
use std::process::ExitCode;

use shoal_model::api::{EventInfo, Instance, NodeDetail, NodeInfo, WorkloadDetail};
use shoal_model::manifest::{Container, PlacementMode, Probe, Volume, VolumeSource, Workload};
use shoal_model::node::NodeFacts;
use shoal_model::quantity::{format_bytes, format_duration, format_millicpu, Amount};
use shoal_model::table;
use shoal_model::wire::{ContainerState, ExitInfo, Health, NodeUsage, Severity};

use super::client::{segment, Client, HubArgs};
use super::output::{self, age, age_or_none, NONE};

/// Show everything the hub knows about a node or a workload
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to describe
    #[arg(value_enum)]
    pub kind: Kind,
    /// Its name
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    #[value(alias = "nodes", alias = "no")]
    Node,
    #[value(alias = "workloads", alias = "wl")]
    Workload,
}

/// Events shown, the newest ones.
pub const MAX_EVENTS: usize = 20;

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    let text = match args.kind {
        Kind::Node => {
            let detail: NodeDetail =
                client.get(&format!("/v1/nodes/{}", segment(&args.name)), &[])?;
            describe_node(&detail, shoal_model::clock::wall_ms())
        }
        Kind::Workload => {
            let detail: WorkloadDetail =
                client.get(&format!("/v1/workloads/{}", segment(&args.name)), &[])?;
            describe_workload(&detail, shoal_model::clock::wall_ms())
        }
    };
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// One line of a section: a `Key: value` field (the value may span lines), or a `Key:` header
/// with an indented body below.
enum Row {
    Field(&'static str, String),
    Block(&'static str, String),
}

/// Rows whose values line up, indented by `indent` spaces.
fn section(indent: usize, rows: &[Row]) -> String {
    let width = rows
        .iter()
        .filter_map(|r| match r {
            Row::Field(key, _) => Some(key.len() + 1),
            Row::Block(..) => None,
        })
        .max()
        .unwrap_or(0)
        + 2;
    let pad = " ".repeat(indent);
    let mut out = String::new();
    for row in rows {
        match row {
            Row::Field(key, value) => {
                let label = format!("{key}:");
                for (i, line) in value
                    .lines()
                    .chain(value.is_empty().then_some(""))
                    .enumerate()
                {
                    let lead = if i == 0 { label.as_str() } else { "" };
                    let text = format!("{pad}{lead:width$}{line}");
                    out.push_str(text.trim_end());
                    out.push('\n');
                }
            }
            Row::Block(key, body) => {
                out.push_str(&format!("{pad}{key}:\n"));
                out.push_str(&indent_lines(body, indent + 2));
            }
        }
    }
    out
}

fn indent_lines(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    text.lines()
        .map(|l| format!("{pad}{l}").trim_end().to_string() + "\n")
        .collect()
}

/// A header with an indented body, or `Key: <none>` when the body is empty.
fn block_or_none(key: &'static str, body: String) -> Row {
    if body.is_empty() {
        Row::Field(key, NONE.to_string())
    } else {
        Row::Block(key, body)
    }
}

/// One `k=v` per line, or `<none>`.
fn label_lines(labels: &BTreeMap<String, String>) -> String {
    if labels.is_empty() {
        NONE.to_string()
    } else {
        labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn when(ms: u64, now_ms: u64) -> String {
    format!("{} ({} ago)", output::utc(ms), age(ms, now_ms))
}

fn when_or_none(ms: Option<u64>, now_ms: u64) -> String {
    ms.map_or_else(|| NONE.to_string(), |ms| when(ms, now_ms))
}

/// Everything about one node.
pub fn describe_node(detail: &NodeDetail, now_ms: u64) -> String {
    let node = &detail.node;
    let mut rows = vec![
        Row::Field("Name", node.name.clone()),
        Row::Field("Status", node.status.clone()),
        Row::Field("Schedulable", node.schedulable.clone()),
        Row::Field("Labels", label_lines(&node.labels)),
        Row::Field("Created", when(node.created_ms, now_ms)),
        Row::Field("Last Seen", when_or_none(node.last_seen_ms, now_ms)),
    ];
    if node.offline_since_ms.is_some() {
        rows.push(Row::Field(
            "Offline Since",
            when_or_none(node.offline_since_ms, now_ms),
        ));
    }
    rows.push(Row::Field("Generation", generation(node)));
    rows.push(match &node.facts {
        Some(facts) => Row::Block("Facts", facts_section(facts)),
        None => Row::Field("Facts", format!("{NONE} (the agent has not connected yet)")),
    });
    rows.push(match &detail.usage {
        Some(usage) => Row::Block("Usage", usage_section(usage)),
        None => Row::Field("Usage", NONE.to_string()),
    });
    rows.push(Row::Field(
        "Workloads",
        if node.workloads.is_empty() {
            NONE.to_string()
        } else {
            node.workloads.join(", ")
        },
    ));
    rows.push(block_or_none(
        "Containers",
        containers_table(&detail.instances, By::Node, now_ms),
    ));
    rows.push(block_or_none(
        "Events",
        events_table(&detail.events, By::Node, now_ms),
    ));
    section(0, &rows)
}

fn generation(node: &NodeInfo) -> String {
    let mut text = format!(
        "desired {}, observed {}",
        node.desired_generation, node.observed_generation
    );
    if node.observed_generation < node.desired_generation {
        text.push_str(" (the node has not applied the newest desired state yet)");
    }
    text
}

fn facts_section(facts: &NodeFacts) -> String {
    let or_none = |s: &str| {
        if s.is_empty() {
            NONE.to_string()
        } else {
            s.to_string()
        }
    };
    let capacity = &facts.capacity;
    section(
        0,
        &[
            Row::Field("Arch", or_none(&facts.arch)),
            Row::Field("OS", or_none(&facts.os)),
            Row::Field("Kernel", or_none(&facts.kernel)),
            Row::Field("Cgroup", format!("v{}", facts.cgroup_version)),
            Row::Field(
                "Capacity",
                format!(
                    "memory {}, cpu {}, pids {}",
                    format_bytes(capacity.memory_bytes),
                    format_millicpu(capacity.cpu_millis),
                    capacity.pids
                ),
            ),
            Row::Field("Agent", or_none(&facts.agent_version)),
        ],
    )
}

fn usage_section(usage: &NodeUsage) -> String {
    section(
        0,
        &[
            Row::Field(
                "Memory",
                share(usage.memory_used_bytes, usage.memory_total_bytes),
            ),
            Row::Field("CPU", format_millicpu(usage.cpu_millis_used)),
            Row::Field(
                "Disk",
                share(usage.disk_used_bytes, usage.disk_budget_bytes),
            ),
        ],
    )
}

/// `200Mi of 1Gi (19%)`, or only the used part when there is no total.
fn share(used: u64, total: u64) -> String {
    if total == 0 {
        format_bytes(used)
    } else {
        let percent = u128::from(used) * 100 / u128::from(total);
        format!(
            "{} of {} ({percent}%)",
            format_bytes(used),
            format_bytes(total)
        )
    }
}

/// Everything about one workload.
pub fn describe_workload(detail: &WorkloadDetail, now_ms: u64) -> String {
    let info = &detail.workload;
    let rows = vec![
        Row::Field("Name", info.name.clone()),
        Row::Field("Labels", label_lines(&detail.spec.labels)),
        Row::Field("Revision", info.revision.to_string()),
        Row::Field("Updated", when(info.updated_ms, now_ms)),
        Row::Block(
            "Status",
            section(
                0,
                &[
                    Row::Field("Ready", format!("{}/{}", info.ready, info.wanted)),
                    Row::Field("Placed", format!("{}/{}", info.placed, info.wanted)),
                    Row::Field("Summary", info.summary.clone()),
                ],
            ),
        ),
        Row::Block("Spec", spec_section(&detail.spec)),
        block_or_none("Placed On", reasons(&detail.placed_on)),
        block_or_none("Not Placed", reasons(&detail.not_placed)),
        block_or_none(
            "Containers",
            containers_table(&detail.instances, By::Workload, now_ms),
        ),
        block_or_none("Events", events_table(&detail.events, By::Workload, now_ms)),
    ];
    section(0, &rows)
}

/// `node   reason`, aligned, one per line.
fn reasons(map: &BTreeMap<String, String>) -> String {
    let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0) + 3;
    map.iter()
        .map(|(node, reason)| format!("{node:width$}{reason}").trim_end().to_string() + "\n")
        .collect()
}

fn spec_section(workload: &Workload) -> String {
    let spec = &workload.spec;
    let placement = &spec.placement;
    let mut where_ = match placement.mode {
        PlacementMode::Every => "every matching node".to_string(),
        PlacementMode::Replicas(1) => "1 replica".to_string(),
        PlacementMode::Replicas(n) => format!("{n} replicas"),
    };
    let mut filters: Vec<String> = placement
        .node_selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    filters.extend(placement.constraints.iter().map(|c| c.source.clone()));
    if !filters.is_empty() {
        where_.push_str(&format!(" ({})", filters.join(", ")));
    }
    if let Some(spread) = &placement.spread {
        where_.push_str(&format!(", spread over {spread}"));
    }
    if !placement.with.is_empty() {
        where_.push_str(&format!(", with {}", placement.with.join(", ")));
    }
    if !placement.not_with.is_empty() {
        where_.push_str(&format!(", not with {}", placement.not_with.join(", ")));
    }
    let rollout = &spec.rollout;
    let max_unavailable = match rollout.max_unavailable {
        Amount::Count(n) => n.to_string(),
        Amount::Percent(p) => format!("{p}%"),
    };
    let mut containers = String::new();
    for c in &spec.containers {
        let mut fields = vec![Row::Field("Image", c.image.to_string())];
        let command: Vec<&str> = c
            .command
            .iter()
            .chain(&c.args)
            .map(String::as_str)
            .collect();
        if !command.is_empty() {
            fields.push(Row::Field("Command", command.join(" ")));
        }
        let r = c.resources;
        let limits: Vec<String> = [
            r.memory.map(|m| format!("memory {}", format_bytes(m))),
            r.cpu_millis.map(|m| format!("cpu {}", format_millicpu(m))),
            r.pids.map(|p| format!("pids {p}")),
        ]
        .into_iter()
        .flatten()
        .collect();
        fields.push(Row::Field(
            "Limits",
            if limits.is_empty() {
                NONE.to_string()
            } else {
                limits.join(", ")
            },
        ));
        if let Some(health) = &c.health {
            let probe = match &health.probe {
                Probe::Exec(command) => format!("exec {}", command.join(" ")),
                Probe::Http { port, path } => format!("http :{port}{path}"),
                Probe::Tcp { port } => format!("tcp :{port}"),
            };
            fields.push(Row::Field(
                "Health",
                format!(
                    "{probe} every {}, timeout {}, {} retries",
                    format_duration(health.interval),
                    format_duration(health.timeout),
                    health.retries
                ),
            ));
        }
        fields.extend(security_rows(c, &spec.volumes));
        containers.push_str(&format!("{}:\n", c.name));
        containers.push_str(&section(2, &fields));
    }
    section(
        0,
        &[
            Row::Field("Placement", where_),
            Row::Field(
                "Rollout",
                format!(
                    "max unavailable {max_unavailable}, canary {}, healthy for {}, auto rollback {}, \
                     progress deadline {}, failure threshold {}",
                    rollout.canary,
                    format_duration(rollout.healthy_for),
                    if rollout.auto_rollback { "on" } else { "off" },
                    format_duration(rollout.progress_deadline),
                    rollout.failure_threshold
                ),
            ),
            Row::Field("Restart Policy", spec.restart_policy.as_str().to_string()),
            Row::Field("Network", spec.network.as_str().to_string()),
            block_or_none("Containers", containers),
        ],
    )
}

/// What `privileged: true` gives a container (see the agent's `runtime/spec.rs`).
const PRIVILEGED: &str =
    "yes (all capabilities, all devices, /proc and /sys writable, no seccomp, no-new-privileges off)";

/// What the manifest changes about a container's access to its host, each on its own row:
/// nothing at all for a container that keeps the defaults.
fn security_rows(c: &Container, volumes: &[Volume]) -> Vec<Row> {
    let mut rows = Vec::new();
    if c.privileged {
        rows.push(Row::Field("Privileged", PRIVILEGED.to_string()));
    }
    let caps = &c.capabilities;
    let changes: Vec<String> = [("add", &caps.add), ("drop", &caps.drop)]
        .into_iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(how, names)| format!("{how} {}", names.join(", ")))
        .collect();
    if !changes.is_empty() {
        let mut text = changes.join("; ");
        if c.privileged {
            text.push_str(" (no effect: privileged has them all)");
        }
        rows.push(Row::Field("Capabilities", text));
    }
    if !c.devices.is_empty() {
        rows.push(Row::Field("Devices", c.devices.join(", ")));
    }
    if c.read_only_rootfs {
        rows.push(Row::Field("Root FS", "read-only".to_string()));
    }
    let host_paths: Vec<String> = c
        .mounts
        .iter()
        .filter_map(|m| {
            let volume = volumes.iter().find(|v| v.name == m.volume)?;
            let VolumeSource::HostPath(host) = &volume.source else {
                return None;
            };
            let access = if m.read_only {
                "read-only"
            } else {
                "read-write"
            };
            Some(format!("{host} at {} ({access})", m.path))
        })
        .collect();
    if !host_paths.is_empty() {
        rows.push(Row::Field("Host Paths", host_paths.join("\n")));
    }
    rows
}

/// What a table row is keyed by: describing a node lists its workloads, describing a workload
/// lists its nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum By {
    Node,
    Workload,
}

/// One row per container of each instance; empty when there are no instances.
pub fn containers_table(instances: &[Instance], by: By, now_ms: u64) -> String {
    if instances.is_empty() {
        return String::new();
    }
    let first = match by {
        By::Node => "WORKLOAD",
        By::Workload => "NODE",
    };
    let headers = [
        first,
        "REVISION",
        "CONTAINER",
        "STATE",
        "HEALTH",
        "RESTARTS",
        "OOM",
        "LAST-EXIT",
        "AGE",
        "MESSAGE",
    ];
    let mut rows = Vec::new();
    for instance in instances {
        let key = match by {
            By::Node => instance.workload.clone(),
            By::Workload => instance.node.clone(),
        };
        if instance.containers.is_empty() {
            rows.push(vec![
                key.clone(),
                instance.revision.to_string(),
                NONE.to_string(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                String::new(),
                "no container reported yet".to_string(),
            ]);
        }
        for c in &instance.containers {
            rows.push(vec![
                key.clone(),
                instance.revision.to_string(),
                c.name.clone(),
                state_name(c.state).to_string(),
                health_name(c.health).to_string(),
                c.restarts.to_string(),
                c.oom_kills.to_string(),
                last_exit(c.last_exit, now_ms),
                age_or_none(c.started_at_ms, now_ms),
                c.message.clone().unwrap_or_default(),
            ]);
        }
    }
    table::render(&headers, &rows)
}

fn state_name(state: ContainerState) -> &'static str {
    match state {
        ContainerState::Pending => "Pending",
        ContainerState::Pulling => "Pulling",
        ContainerState::Creating => "Creating",
        ContainerState::Running => "Running",
        ContainerState::Exited => "Exited",
        ContainerState::Failed => "Failed",
        ContainerState::BackOff => "BackOff",
        ContainerState::Stopped => "Stopped",
    }
}

fn health_name(health: Health) -> &'static str {
    match health {
        Health::Unknown => "-",
        Health::Starting => "Starting",
        Health::Healthy => "Healthy",
        Health::Unhealthy => "Unhealthy",
    }
}

/// `code 1, 3m ago`, `SIGKILL, 3m ago`, `OOMKilled, 3m ago`, or `<none>`.
pub fn last_exit(exit: Option<ExitInfo>, now_ms: u64) -> String {
    let Some(exit) = exit else {
        return NONE.to_string();
    };
    format!("{exit}, {} ago", age(exit.at_ms, now_ms))
}

/// The newest [`MAX_EVENTS`] events, newest last; empty when there are none.
pub fn events_table(events: &[EventInfo], by: By, now_ms: u64) -> String {
    if events.is_empty() {
        return String::new();
    }
    let newest = &events[events.len().saturating_sub(MAX_EVENTS)..];
    let rows: Vec<Vec<String>> = newest
        .iter()
        .map(|e| {
            let ev = &e.event;
            let object = match (by, &ev.workload, &ev.container) {
                (By::Node, Some(w), Some(c)) => format!("{w}/{c}"),
                (By::Node, Some(w), None) => w.clone(),
                (By::Node, None, _) => e.node.clone(),
                (By::Workload, _, Some(c)) => format!("{}/{c}", e.node),
                (By::Workload, _, None) => e.node.clone(),
            };
            vec![
                age(ev.at_ms, now_ms),
                severity_name(ev.severity).to_string(),
                ev.reason.as_str().to_string(),
                object,
                ev.message.clone(),
            ]
        })
        .collect();
    table::render(&["AGE", "SEVERITY", "REASON", "OBJECT", "MESSAGE"], &rows)
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "Info",
        Severity::Warning => "Warning",
        Severity::Error => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::api::WorkloadInfo;
    use shoal_model::manifest::parse_manifest;
    use shoal_model::node::Capacity;
    use shoal_model::wire::{ContainerStatus, Event, EventReason};

    const NOW: u64 = 1_714_557_600_000; // 2024-05-01T10:00:00Z
    const MIN: u64 = 60_000;

    fn container(name: &str, state: ContainerState) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            state,
            health: Health::Healthy,
            restarts: 2,
            last_exit: Some(ExitInfo {
                code: None,
                signal: None,
                oom_killed: true,
                at_ms: NOW - 3 * MIN,
            }),
            oom_kills: 1,
            started_at_ms: Some(NOW - 2 * MIN),
            pid: Some(42),
            memory_bytes: None,
            cpu_usage_ns: None,
            message: None,
        }
    }

    fn event(n: u64, workload: Option<&str>, container: Option<&str>) -> EventInfo {
        EventInfo {
            node: "gw-1".into(),
            event: Event {
                sequence: n,
                at_ms: NOW - 10 * MIN + n * 1_000,
                severity: Severity::Warning,
                workload: workload.map(Into::into),
                container: container.map(Into::into),
                reason: EventReason::OomKilled,
                message: format!("event {n}"),
            },
        }
    }

    fn node_info() -> NodeInfo {
        NodeInfo {
            name: "gw-1".into(),
            online: true,
            status: "Ready".into(),
            schedulable: "yes".into(),
            labels: [
                ("role".to_string(), "gateway".to_string()),
                ("site".to_string(), "north".to_string()),
            ]
            .into(),
            facts: Some(NodeFacts {
                arch: "arm64".into(),
                os: "linux".into(),
                kernel: "6.1.0".into(),
                cgroup_version: 2,
                capacity: Capacity {
                    memory_bytes: 1 << 30,
                    cpu_millis: 4000,
                    pids: 4096,
                },
                agent_version: "0.1.0".into(),
                labels: BTreeMap::new(),
                wire_versions: Vec::new(),
            }),
            created_ms: NOW - 3 * 86_400_000,
            last_seen_ms: Some(NOW - 5_000),
            offline_since_ms: None,
            desired_generation: 4,
            observed_generation: 3,
            workloads: vec!["web".into()],
            agent_update: None,
        }
    }

    #[test]
    fn a_node_description_has_every_section() {
        let detail = NodeDetail {
            node: node_info(),
            instances: vec![Instance {
                node: "gw-1".into(),
                workload: "web".into(),
                revision: 3,
                containers: vec![container("server", ContainerState::Running)],
                reported_ms: NOW,
            }],
            usage: Some(NodeUsage {
                memory_used_bytes: 200 << 20,
                memory_total_bytes: 1 << 30,
                cpu_millis_used: 250,
                disk_used_bytes: 1 << 30,
                disk_budget_bytes: 0,
            }),
            events: vec![event(1, None, None), event(2, Some("web"), Some("server"))],
        };
        assert_eq!(
            describe_node(&detail, NOW),
            "\
Name:         gw-1
Status:       Ready
Schedulable:  yes
Labels:       role=gateway
              site=north
Created:      2024-04-28T10:00:00Z (3d ago)
Last Seen:    2024-05-01T09:59:55Z (5s ago)
Generation:   desired 4, observed 3 (the node has not applied the newest desired state yet)
Facts:
  Arch:      arm64
  OS:        linux
  Kernel:    6.1.0
  Cgroup:    v2
  Capacity:  memory 1Gi, cpu 4, pids 4096
  Agent:     0.1.0
Usage:
  Memory:  200Mi of 1Gi (19%)
  CPU:     250m
  Disk:    1Gi
Workloads:    web
Containers:
  WORKLOAD   REVISION   CONTAINER   STATE     HEALTH    RESTARTS   OOM   LAST-EXIT           AGE   MESSAGE
  web        3          server      Running   Healthy   2          1     OOMKilled, 3m ago   2m
Events:
  AGE     SEVERITY   REASON       OBJECT       MESSAGE
  9m59s   Warning    oom-killed   gw-1         event 1
  9m58s   Warning    oom-killed   web/server   event 2
"
        );
    }

    #[test]
    fn a_node_that_never_connected_says_so() {
        let mut node = node_info();
        node.facts = None;
        node.last_seen_ms = None;
        node.observed_generation = 4;
        node.offline_since_ms = Some(NOW - MIN);
        let text = describe_node(
            &NodeDetail {
                node,
                instances: vec![],
                usage: None,
                events: vec![],
            },
            NOW,
        );
        for line in [
            "Last Seen:      <none>\n",
            "Offline Since:  2024-05-01T09:59:00Z (60s ago)\n",
            "Generation:     desired 4, observed 4\n",
            "Facts:          <none> (the agent has not connected yet)\n",
            "Usage:          <none>\n",
            "Containers:     <none>\n",
            "Events:         <none>\n",
        ] {
            assert!(text.contains(line), "{text}\nshould contain {line}");
        }
    }

    fn workload_detail() -> WorkloadDetail {
        let text = "\
apiVersion: shoal/v1
kind: Workload
metadata:
  name: web
  labels: { app: web }
spec:
  placement:
    replicas: 2
    nodeSelector: { role: gateway }
    constraints: [\"memory >= 256Mi\"]
    spread: site
  containers:
    - name: server
      image: registry.example:5000/web:2
      command: [\"/bin/web\", \"--port\", \"8080\"]
      resources: { memory: 64Mi, cpu: 0.25 }
      health:
        http: { port: 8080, path: /healthz }
        interval: 10s
";
        let (mut workloads, problems) = parse_manifest(std::path::Path::new("web.yaml"), text);
        assert_eq!(problems, vec![]);
        let spec = workloads.remove(0).workload;
        WorkloadDetail {
            workload: WorkloadInfo {
                name: "web".into(),
                revision: 3,
                mode: "replicas: 2".into(),
                wanted: 2,
                placed: 1,
                ready: 1,
                nodes: vec!["gw-1".into()],
                summary: "1/2 placed: only 1 node matches".into(),
                updated_ms: NOW - 150_000,
            },
            spec,
            placed_on: [("gw-1".to_string(), "matches role=gateway".to_string())].into(),
            not_placed: [
                ("cam-2".to_string(), "lacks label role=gateway".to_string()),
                ("gw-10".to_string(), "offline".to_string()),
            ]
            .into(),
            instances: vec![Instance {
                node: "gw-1".into(),
                workload: "web".into(),
                revision: 3,
                containers: vec![ContainerStatus {
                    last_exit: None,
                    health: Health::Unknown,
                    message: Some("back-off 20s restarting".into()),
                    ..container("server", ContainerState::BackOff)
                }],
                reported_ms: NOW,
            }],
            events: (1..=25)
                .map(|n| event(n, Some("web"), Some("server")))
                .collect(),
        }
    }

    #[test]
    fn a_workload_description_has_status_spec_placement_containers_and_events() {
        let text = describe_workload(&workload_detail(), NOW);
        let expected_start = "\
Name:      web
Labels:    app=web
Revision:  3
Updated:   2024-05-01T09:57:30Z (2m30s ago)
Status:
  Ready:    1/2
  Placed:   1/2
  Summary:  1/2 placed: only 1 node matches
Spec:
  Placement:       2 replicas (role=gateway, memory >= 256Mi), spread over site
  Rollout:         max unavailable 25%, canary 0, healthy for 30s, auto rollback on, progress deadline 10m, failure threshold 1
  Restart Policy:  always
  Network:         host
  Containers:
    server:
      Image:    registry.example:5000/web:2
      Command:  /bin/web --port 8080
      Limits:   memory 64Mi, cpu 250m
      Health:   http :8080/healthz every 10s, timeout 2s, 3 retries
Placed On:
";
        assert!(text.starts_with(expected_start), "{text}");
        let expected_rest = "\
Placed On:
  gw-1   matches role=gateway
Not Placed:
  cam-2   lacks label role=gateway
  gw-10   offline
Containers:
  NODE   REVISION   CONTAINER   STATE     HEALTH   RESTARTS   OOM   LAST-EXIT   AGE   MESSAGE
  gw-1   3          server      BackOff   -        2          1     <none>      2m    back-off 20s restarting
Events:
  AGE     SEVERITY   REASON       OBJECT        MESSAGE
  9m54s   Warning    oom-killed   gw-1/server   event 6
";
        assert!(text.contains(expected_rest), "{text}");
        assert!(
            text.ends_with("  9m35s   Warning    oom-killed   gw-1/server   event 25\n"),
            "{text}"
        );
        assert_eq!(
            text.matches("oom-killed").count(),
            MAX_EVENTS,
            "only the newest events"
        );
    }

    #[test]
    fn an_unplaced_workload_says_none_where_there_is_nothing() {
        let mut detail = workload_detail();
        detail.placed_on.clear();
        detail.instances.clear();
        detail.events.clear();
        let text = describe_workload(&detail, NOW);
        for line in [
            "Placed On:   <none>\n",
            "Containers:  <none>\n",
            "Events:      <none>\n",
        ] {
            assert!(text.contains(line), "{text}\nshould contain {line}");
        }
    }

    /// The body of the `Containers:` block in the spec section (unindented) of a workload with
    /// one container, `app`, whose manifest has `extra` lines, and `volumes` (a YAML list).
    fn container_block(volumes: &str, extra: &[&str]) -> String {
        let mut text = format!(
            "\
apiVersion: shoal/v1
kind: Workload
metadata: {{ name: app }}
spec:
  volumes: {volumes}
  containers:
    - name: app
      image: registry.example:5000/app:1
"
        );
        for line in extra {
            text.push_str(&format!("      {line}\n"));
        }
        let (mut workloads, problems) = parse_manifest(std::path::Path::new("app.yaml"), &text);
        assert_eq!(problems, vec![], "{text}");
        let spec = spec_section(&workloads.remove(0).workload);
        let at = spec.find("Containers:\n").expect("a containers block");
        spec[at + "Containers:\n".len()..]
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("  ").unwrap_or(l)))
            .collect()
    }

    #[test]
    fn containers_show_privileges_capabilities_devices_and_host_paths_only_when_set() {
        let cases: &[(&str, &str, &[&str], &str)] = &[
            (
                "unprivileged_without_extras_shows_no_security_rows",
                "[]",
                &[],
                "\
app:
  Image:   registry.example:5000/app:1
  Limits:  <none>
",
            ),
            (
                "privileged_says_what_it_lifts",
                "[]",
                &["privileged: true"],
                "\
app:
  Image:       registry.example:5000/app:1
  Limits:      <none>
  Privileged:  yes (all capabilities, all devices, /proc and /sys writable, no seccomp, no-new-privileges off)
",
            ),
            (
                "added_and_dropped_capabilities",
                "[]",
                &["capabilities: { add: [net_bind_service, SYS_TIME], drop: [ALL] }"],
                "\
app:
  Image:         registry.example:5000/app:1
  Limits:        <none>
  Capabilities:  add CAP_NET_BIND_SERVICE, CAP_SYS_TIME; drop ALL
",
            ),
            (
                "capabilities_of_a_privileged_container_have_no_effect",
                "[]",
                &["privileged: true", "capabilities: { drop: [ALL] }"],
                "\
app:
  Image:         registry.example:5000/app:1
  Limits:        <none>
  Privileged:    yes (all capabilities, all devices, /proc and /sys writable, no seccomp, no-new-privileges off)
  Capabilities:  drop ALL (no effect: privileged has them all)
",
            ),
            (
                "devices_and_a_read_only_rootfs",
                "[]",
                &["devices: [/dev/ttyUSB0, /dev/i2c-1]", "readOnlyRootfs: true"],
                "\
app:
  Image:    registry.example:5000/app:1
  Limits:   <none>
  Devices:  /dev/ttyUSB0, /dev/i2c-1
  Root FS:  read-only
",
            ),
            (
                "host_path_mounts_but_not_named_volumes",
                "[{ name: data }, { name: logs, hostPath: /var/log/app }, { name: conf, hostPath: /etc/app }]",
                &["mounts: [{ volume: data, path: /data }, { volume: logs, path: /logs }, { volume: conf, path: /etc/app, readOnly: true }]"],
                "\
app:
  Image:       registry.example:5000/app:1
  Limits:      <none>
  Host Paths:  /var/log/app at /logs (read-write)
               /etc/app at /etc/app (read-only)
",
            ),
        ];
        for (name, volumes, extra, expected) in cases {
            assert_eq!(container_block(volumes, extra), *expected, "{name}");
        }
    }

    #[test]
    fn last_exits_name_the_cause() {
        let exit = |code, signal, oom_killed| {
            Some(ExitInfo {
                code,
                signal,
                oom_killed,
                at_ms: NOW - 3 * MIN,
            })
        };
        let cases = [
            ("no_exit_yet", None, "<none>"),
            ("exit_code", exit(Some(1), None, false), "code 1, 3m ago"),
            (
                "known_signal",
                exit(None, Some(9), false),
                "SIGKILL, 3m ago",
            ),
            (
                "unknown_signal",
                exit(None, Some(40), false),
                "signal 40, 3m ago",
            ),
            (
                "oom_kill_wins_over_the_signal",
                exit(None, Some(9), true),
                "OOMKilled, 3m ago",
            ),
            (
                "neither_code_nor_signal",
                exit(None, None, false),
                "ended, 3m ago",
            ),
        ];
        for (name, exit, expected) in cases {
            assert_eq!(last_exit(exit, NOW), expected, "{name}");
        }
    }

    #[test]
    fn instances_without_containers_still_show_up() {
        let instances = [Instance {
            node: "gw-1".into(),
            workload: "web".into(),
            revision: 0,
            containers: vec![],
            reported_ms: NOW,
        }];
        let text = containers_table(&instances, By::Workload, NOW);
        assert!(
            text.lines()
                .nth(1)
                .is_some_and(|l| l.starts_with("gw-1   0          <none>")
                    && l.ends_with("no container reported yet")),
            "{text}"
        );
    }
}
