//! `GET /metrics`: the fleet as Prometheus sees it, in the text exposition format (version
//! 0.0.4), from what the hub already has: the nodes and their newest statuses, the workloads,
//! the rollouts, and what the hub counted (messages from the broker, API requests). The agents
//! expose nothing on the network; their figures reach Prometheus through the hub.
//!
//! [`render`] is pure: figures in, text out. The format is written here rather than through a
//! client library: it is a few lines of text per series, and the hub has no registry of live
//! metrics to keep (every figure is read from the store on each scrape).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use shoal_model::api::{NodeInfo, WorkloadInfo};
use shoal_model::wire::{ContainerState, NodeStatus};

use crate::control::rollout::{Assigned, Outcome, Rollout, State};
use crate::counters::{Snapshot, LATENCY_BUCKETS};

/// The content type of the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What one scrape shows.
#[derive(Clone, Copy, Debug)]
pub struct Figures<'a> {
    pub nodes: &'a [NodeInfo],
    pub workloads: &'a [WorkloadInfo],
    pub statuses: &'a BTreeMap<String, NodeStatus>,
    pub rollouts: &'a BTreeMap<String, (Rollout, BTreeMap<String, Assigned>)>,
    pub counters: &'a Snapshot,
    /// A series per container too.
    pub containers: bool,
    pub now_ms: u64,
}

/// The text of one scrape.
pub fn render(f: &Figures<'_>) -> String {
    let mut out = Text::default();

    out.family(
        "shoal_nodes",
        "gauge",
        "Nodes by state: ready (online), not-ready (offline), unknown (never connected).",
    );
    for state in ["ready", "not-ready", "unknown"] {
        let count = f.nodes.iter().filter(|n| node_state(n) == state).count();
        out.sample("shoal_nodes", &[("state", state)], count as f64);
    }
    out.family(
        "shoal_node_online",
        "gauge",
        "1 while the node is connected to the broker.",
    );
    for n in f.nodes {
        out.sample(
            "shoal_node_online",
            &[("node", &n.name)],
            f64::from(u8::from(n.online)),
        );
    }
    out.family(
        "shoal_node_last_seen_age_seconds",
        "gauge",
        "Time since the hub last heard from the node.",
    );
    for n in f.nodes {
        if let Some(seen) = n.last_seen_ms {
            let age = f.now_ms.saturating_sub(seen) as f64 / 1000.0;
            out.sample(
                "shoal_node_last_seen_age_seconds",
                &[("node", &n.name)],
                age,
            );
        }
    }
    let usage = [
        (
            "shoal_node_memory_used_bytes",
            "Memory in use on the node.",
            0,
        ),
        ("shoal_node_memory_total_bytes", "The node's memory.", 1),
        (
            "shoal_node_cpu_millicores",
            "CPU in use on the node, in millicores, averaged since its previous status.",
            2,
        ),
        (
            "shoal_node_disk_used_bytes",
            "Space the agent's data dir uses.",
            3,
        ),
        (
            "shoal_node_disk_budget_bytes",
            "Space the agent may use.",
            4,
        ),
    ];
    for (name, help, i) in usage {
        out.family(name, "gauge", help);
        for (node, s) in f.statuses {
            let u = &s.usage;
            let value = [
                u.memory_used_bytes,
                u.memory_total_bytes,
                u64::from(u.cpu_millis_used),
                u.disk_used_bytes,
                u.disk_budget_bytes,
            ][i];
            out.sample(name, &[("node", node)], value as f64);
        }
    }

    out.family(
        "shoal_workload_wanted_nodes",
        "gauge",
        "Nodes the workload should run on.",
    );
    for w in f.workloads {
        out.sample(
            "shoal_workload_wanted_nodes",
            &[("workload", &w.name)],
            w.wanted as f64,
        );
    }
    out.family(
        "shoal_workload_placed_nodes",
        "gauge",
        "Nodes the workload is placed on.",
    );
    for w in f.workloads {
        out.sample(
            "shoal_workload_placed_nodes",
            &[("workload", &w.name)],
            w.placed as f64,
        );
    }
    out.family(
        "shoal_workload_ready_nodes",
        "gauge",
        "Nodes that report every container of the workload's current revision running.",
    );
    for w in f.workloads {
        out.sample(
            "shoal_workload_ready_nodes",
            &[("workload", &w.name)],
            w.ready as f64,
        );
    }
    out.family(
        "shoal_workload_revision",
        "gauge",
        "The workload's current revision.",
    );
    for w in f.workloads {
        out.sample(
            "shoal_workload_revision",
            &[("workload", &w.name)],
            w.revision as f64,
        );
    }

    out.family(
        "shoal_rollout_revision",
        "gauge",
        "The revision each workload's rollout brings.",
    );
    for (workload, (rollout, _)) in f.rollouts {
        out.sample(
            "shoal_rollout_revision",
            &[("workload", workload)],
            rollout.revision as f64,
        );
    }
    out.family(
        "shoal_rollout_state",
        "gauge",
        "1 for the state each workload's rollout is in.",
    );
    for (workload, (rollout, _)) in f.rollouts {
        let state = state_name(rollout.state);
        out.sample(
            "shoal_rollout_state",
            &[("workload", workload), ("state", state)],
            1.0,
        );
    }
    out.family(
        "shoal_rollout_nodes",
        "gauge",
        "Nodes given the rollout's revision, by outcome.",
    );
    for (workload, (rollout, assigned)) in f.rollouts {
        for outcome in ["updating", "done", "failed"] {
            let count = assigned
                .values()
                .filter(|a| a.revision == rollout.revision && outcome_name(a.outcome) == outcome)
                .count();
            out.sample(
                "shoal_rollout_nodes",
                &[("workload", workload), ("outcome", outcome)],
                count as f64,
            );
        }
    }

    if f.containers {
        type Pick = fn(&shoal_model::wire::ContainerStatus) -> Option<f64>;
        let series: [(&str, &str, &str, Pick); 5] = [
            (
                "shoal_container_running",
                "gauge",
                "1 while the container runs.",
                |c| Some(f64::from(u8::from(c.state == ContainerState::Running))),
            ),
            (
                "shoal_container_memory_bytes",
                "gauge",
                "Memory the container's cgroup uses.",
                |c| c.memory_bytes.map(|b| b as f64),
            ),
            (
                "shoal_container_cpu_seconds_total",
                "counter",
                "CPU time the container's cgroup used.",
                |c| c.cpu_usage_ns.map(|ns| ns as f64 / 1e9),
            ),
            (
                "shoal_container_restarts_total",
                "counter",
                "Restarts since the revision first started on the node.",
                |c| Some(f64::from(c.restarts)),
            ),
            (
                "shoal_container_oom_kills_total",
                "counter",
                "OOM kills since the revision first started on the node.",
                |c| Some(f64::from(c.oom_kills)),
            ),
        ];
        for (name, kind, help, pick) in series {
            out.family(name, kind, help);
            for (node, s) in f.statuses {
                for w in &s.workloads {
                    for c in &w.containers {
                        if let Some(value) = pick(c) {
                            let labels = [
                                ("node", node.as_str()),
                                ("workload", &w.name),
                                ("container", &c.name),
                            ];
                            out.sample(name, &labels, value);
                        }
                    }
                }
            }
        }
    }

    out.family(
        "shoal_mqtt_messages_total",
        "counter",
        "Messages the hub received from the broker, by channel.",
    );
    for (channel, (count, _, _)) in &f.counters.messages {
        out.sample(
            "shoal_mqtt_messages_total",
            &[("channel", channel)],
            *count as f64,
        );
    }
    out.family(
        "shoal_mqtt_received_bytes_total",
        "counter",
        "Bytes of those messages.",
    );
    for (channel, (_, bytes, _)) in &f.counters.messages {
        out.sample(
            "shoal_mqtt_received_bytes_total",
            &[("channel", channel)],
            *bytes as f64,
        );
    }
    out.family(
        "shoal_mqtt_dropped_total",
        "counter",
        "Messages the hub dropped: undecodable or refused.",
    );
    for (channel, (_, _, dropped)) in &f.counters.messages {
        out.sample(
            "shoal_mqtt_dropped_total",
            &[("channel", channel)],
            *dropped as f64,
        );
    }

    let name = "shoal_api_request_duration_seconds";
    out.family(
        name,
        "histogram",
        "API requests by route and status, and how long they took.",
    );
    for ((route, status), latency) in &f.counters.api {
        let code = status.to_string();
        let mut cumulative = 0u64;
        for (bound, count) in LATENCY_BUCKETS.iter().zip(latency.buckets) {
            cumulative += count;
            let le = bound.to_string();
            let labels = [("route", route.as_str()), ("code", &code), ("le", &le)];
            out.sample(&format!("{name}_bucket"), &labels, cumulative as f64);
        }
        let labels = [("route", route.as_str()), ("code", &code), ("le", "+Inf")];
        out.sample(&format!("{name}_bucket"), &labels, latency.count as f64);
        let labels = [("route", route.as_str()), ("code", &code)];
        out.sample(&format!("{name}_sum"), &labels, latency.sum_seconds);
        out.sample(&format!("{name}_count"), &labels, latency.count as f64);
    }
    out.0
}

/// The node's state as `get nodes` words it (`Ready`, `NotReady`, `Unknown`, each maybe with
/// `,SchedulingDisabled`), as a label value.
fn node_state(n: &NodeInfo) -> &'static str {
    match n.status.split(',').next() {
        Some("Ready") => "ready",
        Some("Unknown") => "unknown",
        _ => "not-ready",
    }
}

fn state_name(state: State) -> &'static str {
    match state {
        State::Progressing => "progressing",
        State::Complete => "complete",
        State::Halted { .. } => "halted",
        State::RolledBack { .. } => "rolled-back",
    }
}

fn outcome_name(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Updating => "updating",
        Outcome::Done => "done",
        Outcome::Failed(_) => "failed",
    }
}

/// The exposition text being written.
#[derive(Default)]
struct Text(String);

impl Text {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {}", escape(help, false));
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (key, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{key}=\"{}\"", escape(value, true));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {}", number(value));
    }
}

/// A value as the format writes it: integers without a fraction.
fn number(value: f64) -> String {
    if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    }
}

/// Backslash and newline escaped (and, in a label value, the double quote), as the format
/// requires: names come from the outside (nodes, workloads), and must not break a line.
fn escape(text: &str, label: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if label => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::node::NodeFacts;
    use shoal_model::wire::{ContainerStatus, Health, NodeUsage, WorkloadStatus};

    fn node(name: &str, online: bool, facts: bool) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            online,
            status: match (online, facts) {
                (true, _) => "Ready",
                (false, true) => "NotReady",
                (false, false) => "Unknown",
            }
            .into(),
            schedulable: "yes".into(),
            labels: BTreeMap::new(),
            facts: facts.then(NodeFacts::default),
            created_ms: 0,
            last_seen_ms: Some(1_000),
            offline_since_ms: None,
            desired_generation: 1,
            observed_generation: 1,
            workloads: vec!["web".into()],
            agent_update: None,
        }
    }

    fn status() -> NodeStatus {
        NodeStatus {
            node_id: "gw-1".into(),
            observed_generation: 1,
            sequence: 1,
            sent_at_ms: 0,
            workloads: vec![WorkloadStatus {
                name: "web".into(),
                revision: 1,
                containers: vec![ContainerStatus {
                    name: "app".into(),
                    state: ContainerState::Running,
                    health: Health::Unknown,
                    restarts: 2,
                    last_exit: None,
                    oom_kills: 1,
                    started_at_ms: None,
                    pid: Some(9),
                    memory_bytes: Some(4096),
                    cpu_usage_ns: Some(1_500_000_000),
                    message: None,
                }],
                rolled_back: None,
            }],
            usage: NodeUsage {
                memory_used_bytes: 100,
                memory_total_bytes: 512,
                cpu_millis_used: 250,
                disk_used_bytes: 7,
                disk_budget_bytes: 9,
            },
            events: Vec::new(),
            dropped_events: 0,
            agent_update: None,
        }
    }

    fn scrape(containers: bool) -> String {
        let nodes = [
            node("gw-1", true, true),
            node("gw-2", false, true),
            node("new", false, false),
        ];
        let workloads = [WorkloadInfo {
            name: "web".into(),
            revision: 3,
            mode: "every".into(),
            wanted: 2,
            placed: 2,
            ready: 1,
            nodes: vec!["gw-1".into(), "gw-2".into()],
            summary: String::new(),
            updated_ms: 0,
        }];
        let statuses = BTreeMap::from([("gw-1".to_string(), status())]);
        let counters = crate::counters::Counters::default();
        counters.message(shoal_model::topic::Channel::Status, 10, true);
        counters.request("/v1/nodes", 200, std::time::Duration::from_millis(20));
        let snapshot = counters.snapshot();
        render(&Figures {
            nodes: &nodes,
            workloads: &workloads,
            statuses: &statuses,
            rollouts: &BTreeMap::new(),
            counters: &snapshot,
            containers,
            now_ms: 3_500,
        })
    }

    #[test]
    fn a_scrape_shows_nodes_workloads_containers_and_what_the_hub_counted() {
        let text = scrape(true);
        for line in [
            "shoal_nodes{state=\"ready\"} 1",
            "shoal_nodes{state=\"not-ready\"} 1",
            "shoal_nodes{state=\"unknown\"} 1",
            "shoal_node_online{node=\"gw-2\"} 0",
            "shoal_node_last_seen_age_seconds{node=\"gw-1\"} 2.5",
            "shoal_node_memory_total_bytes{node=\"gw-1\"} 512",
            "shoal_node_cpu_millicores{node=\"gw-1\"} 250",
            "shoal_workload_ready_nodes{workload=\"web\"} 1",
            "shoal_workload_wanted_nodes{workload=\"web\"} 2",
            "shoal_container_memory_bytes{node=\"gw-1\",workload=\"web\",container=\"app\"} 4096",
            "shoal_container_cpu_seconds_total{node=\"gw-1\",workload=\"web\",container=\"app\"} 1.5",
            "shoal_container_restarts_total{node=\"gw-1\",workload=\"web\",container=\"app\"} 2",
            "shoal_container_oom_kills_total{node=\"gw-1\",workload=\"web\",container=\"app\"} 1",
            "shoal_mqtt_messages_total{channel=\"status\"} 1",
            "shoal_api_request_duration_seconds_bucket{route=\"/v1/nodes\",code=\"200\",le=\"0.01\"} 0",
            "shoal_api_request_duration_seconds_bucket{route=\"/v1/nodes\",code=\"200\",le=\"0.025\"} 1",
            "shoal_api_request_duration_seconds_bucket{route=\"/v1/nodes\",code=\"200\",le=\"+Inf\"} 1",
            "shoal_api_request_duration_seconds_count{route=\"/v1/nodes\",code=\"200\"} 1",
        ] {
            assert!(text.lines().any(|l| l == line), "missing `{line}` in:\n{text}");
        }
        // Every sample's family is declared before it, once.
        let mut declared = std::collections::BTreeSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().expect("a name");
                assert!(declared.insert(name.to_string()), "{name} declared twice");
            } else if !line.starts_with('#') {
                let name = line.split(['{', ' ']).next().expect("a name");
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                    .unwrap_or(name);
                assert!(declared.contains(family), "{name} before its TYPE");
            }
        }
    }

    #[test]
    fn without_container_series_only_nodes_and_workloads_are_shown() {
        let text = scrape(false);
        assert!(!text.contains("shoal_container_"), "{text}");
        assert!(text.contains("shoal_workload_ready_nodes{workload=\"web\"} 1"));
    }

    #[test]
    fn label_values_are_escaped_so_no_name_breaks_a_line() {
        let mut out = Text::default();
        out.sample("m", &[("node", "a\"b\\c\nd")], 1.0);
        assert_eq!(out.0, "m{node=\"a\\\"b\\\\c\\nd\"} 1\n");
    }
}
