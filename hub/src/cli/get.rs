//! `shoal get nodes|workloads [NAME] [-o wide|json|yaml] [--watch]`: kubectl-style listings
//! of what the hub knows.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;
use shoal_model::api::{NodeDetail, NodeInfo, WorkloadDetail, WorkloadInfo};
use shoal_model::quantity::format_bytes;
use shoal_model::table;
use shoal_model::wire::{AgentUpdate, AgentUpdateState};

use super::client::{segment, Client, HubArgs};
use super::output::{self, age, age_or_none, Format, NONE};

/// List nodes or workloads
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to list
    #[arg(value_enum)]
    pub kind: Kind,
    /// Only this one
    pub name: Option<String>,
    /// Output format (default: a table)
    #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
    pub output: Option<Format>,
    /// Print again whenever something but the ages changes (polls every second), until Ctrl-C
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// Add a LABELS column to the node table
    #[arg(long)]
    pub show_labels: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    #[value(alias = "node", alias = "no")]
    Nodes,
    #[value(alias = "workload", alias = "wl")]
    Workloads,
}

/// What the hub answered.
#[derive(Clone, Debug, PartialEq)]
pub enum Listing {
    Nodes(Vec<NodeInfo>),
    Workloads(Vec<WorkloadInfo>),
}

/// How to print a listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct View {
    pub format: Option<Format>,
    pub show_labels: bool,
    /// One object was asked for by name: JSON and YAML print it alone, not in a list.
    pub single: bool,
}

const WATCH_EVERY: Duration = Duration::from_secs(1);

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    let view = View {
        format: args.output,
        show_labels: args.show_labels,
        single: args.name.is_some(),
    };
    let mut shown: Option<String> = None;
    loop {
        let listing = fetch(&client, args.kind, args.name.as_deref())?;
        // Ages move every second; compare what is printed with a clock frozen at 0.
        let key = render(&listing, view, 0);
        if shown.as_ref() != Some(&key) {
            let mut stdout = std::io::stdout().lock();
            if shown.is_some() {
                write!(stdout, "{}", separator(view.format))?;
            }
            if view.format.is_none_or(|f| f == Format::Wide) && listing.is_empty() {
                eprintln!("{}", empty_hint(args.kind));
            } else {
                write!(
                    stdout,
                    "{}",
                    render(&listing, view, shoal_model::clock::wall_ms())
                )?;
            }
            stdout.flush()?;
            shown = Some(key);
        }
        if !args.watch {
            return Ok(ExitCode::SUCCESS);
        }
        std::thread::sleep(WATCH_EVERY);
    }
}

fn fetch(client: &Client, kind: Kind, name: Option<&str>) -> anyhow::Result<Listing> {
    Ok(match (kind, name) {
        (Kind::Nodes, None) => Listing::Nodes(client.get("/v1/nodes", &[])?),
        (Kind::Nodes, Some(name)) => {
            let detail: NodeDetail = client.get(&format!("/v1/nodes/{}", segment(name)), &[])?;
            Listing::Nodes(vec![detail.node])
        }
        (Kind::Workloads, None) => Listing::Workloads(client.get("/v1/workloads", &[])?),
        (Kind::Workloads, Some(name)) => {
            let detail: WorkloadDetail =
                client.get(&format!("/v1/workloads/{}", segment(name)), &[])?;
            Listing::Workloads(vec![detail.workload])
        }
    })
}

impl Listing {
    fn is_empty(&self) -> bool {
        match self {
            Listing::Nodes(n) => n.is_empty(),
            Listing::Workloads(w) => w.is_empty(),
        }
    }
}

/// What to say on stderr instead of an empty table.
pub fn empty_hint(kind: Kind) -> &'static str {
    match kind {
        Kind::Nodes => "no nodes yet: enroll one with `shoal node add NAME`",
        Kind::Workloads => "no workloads yet: apply some with `shoal apply -f DIR`",
    }
}

/// What a watch prints between two outputs.
fn separator(format: Option<Format>) -> &'static str {
    match format {
        None | Some(Format::Wide) => "\n",
        Some(Format::Json) => "",
        Some(Format::Yaml) => "---\n",
    }
}

/// The listing as a table, JSON or YAML; `now_ms` is only used for ages.
pub fn render(listing: &Listing, view: View, now_ms: u64) -> String {
    let wide = view.format == Some(Format::Wide);
    match view.format {
        None | Some(Format::Wide) => match listing {
            Listing::Nodes(nodes) => nodes_table(nodes, wide, view.show_labels, now_ms),
            Listing::Workloads(workloads) => workloads_table(workloads, wide, now_ms),
        },
        Some(Format::Json) => output::json(&to_value(listing, view.single)),
        Some(Format::Yaml) => output::yaml(&to_value(listing, view.single)),
    }
}

fn to_value(listing: &Listing, single: bool) -> Value {
    fn value<T: Serialize>(items: &[T], single: bool) -> Value {
        let result = match items {
            [one] if single => serde_json::to_value(one),
            all => serde_json::to_value(all),
        };
        result.unwrap_or(Value::Null)
    }
    match listing {
        Listing::Nodes(nodes) => value(nodes, single),
        Listing::Workloads(workloads) => value(workloads, single),
    }
}

/// `NAME STATUS [LABELS] AGE ARCH WORKLOADS`, and with `wide`
/// `KERNEL CGROUP AGENT UPDATE LAST-SEEN MEMORY` (UPDATE: the agent upgrade the node last
/// reported on, `shoal agent status` has the rest).
pub fn nodes_table(nodes: &[NodeInfo], wide: bool, show_labels: bool, now_ms: u64) -> String {
    let mut headers = vec!["NAME", "STATUS"];
    if show_labels {
        headers.push("LABELS");
    }
    headers.extend(["AGE", "ARCH", "WORKLOADS"]);
    if wide {
        headers.extend(["KERNEL", "CGROUP", "AGENT", "UPDATE", "LAST-SEEN", "MEMORY"]);
    }
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            let facts = n.facts.as_ref();
            let fact = |f: fn(&shoal_model::node::NodeFacts) -> String| {
                facts
                    .map(f)
                    .filter(|s| !s.is_empty())
                    .unwrap_or_else(|| NONE.to_string())
            };
            let mut row = vec![n.name.clone(), n.status.clone()];
            if show_labels {
                row.push(output::labels(&n.labels));
            }
            row.extend([
                age(n.created_ms, now_ms),
                fact(|f| f.arch.clone()),
                n.workloads.len().to_string(),
            ]);
            if wide {
                row.extend([
                    fact(|f| f.kernel.clone()),
                    fact(|f| format!("v{}", f.cgroup_version)),
                    fact(|f| f.agent_version.clone()),
                    n.agent_update
                        .as_ref()
                        .map_or_else(|| NONE.to_string(), update_text),
                    age_or_none(n.last_seen_ms, now_ms),
                    fact(|f| format_bytes(f.capacity.memory_bytes)),
                ]);
            }
            row
        })
        .collect();
    table::render(&headers, &rows)
}

/// `0.2.0 downloading 45%`, `0.2.0 switching`, `0.2.0 failed`.
fn update_text(update: &AgentUpdate) -> String {
    let state = match &update.state {
        AgentUpdateState::Downloading { received, size } => format!(
            "downloading {}%",
            received
                .saturating_mul(100)
                .checked_div(*size)
                .unwrap_or(0)
                .min(100)
        ),
        AgentUpdateState::Switching => "switching".to_string(),
        AgentUpdateState::Failed { .. } => "failed".to_string(),
    };
    format!("{} {state}", update.version)
}

/// `NAME MODE READY PLACED REVISION AGE`, and with `wide` `NODES SUMMARY`.
pub fn workloads_table(workloads: &[WorkloadInfo], wide: bool, now_ms: u64) -> String {
    let mut headers = vec!["NAME", "MODE", "READY", "PLACED", "REVISION", "AGE"];
    if wide {
        headers.extend(["NODES", "SUMMARY"]);
    }
    let rows: Vec<Vec<String>> = workloads
        .iter()
        .map(|w| {
            let mut row = vec![
                w.name.clone(),
                w.mode.clone(),
                format!("{}/{}", w.ready, w.wanted),
                w.placed.to_string(),
                w.revision.to_string(),
                age(w.updated_ms, now_ms),
            ];
            if wide {
                row.push(if w.nodes.is_empty() {
                    NONE.to_string()
                } else {
                    w.nodes.join(",")
                });
                row.push(w.summary.clone());
            }
            row
        })
        .collect();
    table::render(&headers, &rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::node::{Capacity, NodeFacts};

    const NOW: u64 = 1_000_000_000;

    fn node(name: &str, facts: bool) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            online: facts,
            status: if facts { "Ready" } else { "Unknown" }.into(),
            schedulable: "yes".into(),
            labels: [("role".to_string(), "gateway".to_string())].into(),
            facts: facts.then(|| NodeFacts {
                arch: "arm64".into(),
                os: "linux".into(),
                kernel: "6.1.0-rpi7".into(),
                cgroup_version: 2,
                capacity: Capacity {
                    memory_bytes: 1 << 30,
                    cpu_millis: 4000,
                    pids: 4096,
                },
                agent_version: "0.1.0".into(),
                labels: Default::default(),
                wire_versions: Vec::new(),
            }),
            created_ms: NOW - 3 * 86_400_000,
            last_seen_ms: facts.then_some(NOW - 5_000),
            offline_since_ms: None,
            desired_generation: 4,
            observed_generation: 4,
            workloads: if facts {
                vec!["sensor-reader".into(), "web".into()]
            } else {
                vec![]
            },
            agent_update: facts.then(|| AgentUpdate {
                version: "0.2.0".into(),
                state: AgentUpdateState::Downloading {
                    received: 45,
                    size: 100,
                },
            }),
        }
    }

    fn workload(name: &str) -> WorkloadInfo {
        WorkloadInfo {
            name: name.into(),
            revision: 3,
            mode: "replicas: 2".into(),
            wanted: 2,
            placed: 1,
            ready: 1,
            nodes: vec!["gw-1".into()],
            summary: "1/2 placed: only 1 node matches".into(),
            updated_ms: NOW - 150_000,
        }
    }

    #[test]
    fn node_tables_show_facts_or_none_before_the_first_connection() {
        let nodes = [node("gw-1", true), node("new-box", false)];
        let cases = [
            (
                "default",
                false,
                false,
                "NAME      STATUS    AGE   ARCH     WORKLOADS\n\
                 gw-1      Ready     3d    arm64    2\n\
                 new-box   Unknown   3d    <none>   0\n",
            ),
            (
                "show_labels_adds_a_column_after_status",
                false,
                true,
                "NAME      STATUS    LABELS         AGE   ARCH     WORKLOADS\n\
                 gw-1      Ready     role=gateway   3d    arm64    2\n\
                 new-box   Unknown   role=gateway   3d    <none>   0\n",
            ),
            (
                "wide_adds_kernel_cgroup_agent_update_last_seen_memory",
                true,
                false,
                "NAME      STATUS    AGE   ARCH     WORKLOADS   KERNEL       CGROUP   AGENT    UPDATE                  LAST-SEEN   MEMORY\n\
                 gw-1      Ready     3d    arm64    2           6.1.0-rpi7   v2       0.1.0    0.2.0 downloading 45%   5s          1Gi\n\
                 new-box   Unknown   3d    <none>   0           <none>       <none>   <none>   <none>                  <none>      <none>\n",
            ),
        ];
        for (name, wide, labels, expected) in cases {
            assert_eq!(nodes_table(&nodes, wide, labels, NOW), expected, "{name}");
        }
    }

    #[test]
    fn workload_tables_show_ready_over_wanted() {
        let mut every = workload("sensor-reader");
        every.mode = "every".into();
        every.nodes = vec![];
        every.summary = "no node matches role=gateway".into();
        let workloads = [workload("web"), every];
        assert_eq!(
            workloads_table(&workloads, false, NOW),
            "NAME            MODE          READY   PLACED   REVISION   AGE\n\
             web             replicas: 2   1/2     1        3          2m30s\n\
             sensor-reader   every         1/2     1        3          2m30s\n"
        );
        assert_eq!(
            workloads_table(&workloads[1..], true, NOW),
            "NAME            MODE    READY   PLACED   REVISION   AGE     NODES    SUMMARY\n\
             sensor-reader   every   1/2     1        3          2m30s   <none>   no node matches role=gateway\n"
        );
    }

    #[test]
    fn json_and_yaml_print_a_list_or_the_one_object_asked_for() {
        let listing = Listing::Workloads(vec![workload("web")]);
        let view = |format, single| View {
            format: Some(format),
            show_labels: false,
            single,
        };
        let list: Value =
            serde_json::from_str(&render(&listing, view(Format::Json, false), NOW)).expect("json");
        assert_eq!(list[0]["name"], "web");
        let one: Value =
            serde_json::from_str(&render(&listing, view(Format::Json, true), NOW)).expect("json");
        assert_eq!(one["summary"], "1/2 placed: only 1 node matches");
        let yaml = render(&listing, view(Format::Yaml, true), NOW);
        assert!(
            yaml.starts_with("mode: \"replicas: 2\"\nname: web\nnodes:\n  - gw-1\n"),
            "{yaml}"
        );
        assert!(render(&listing, view(Format::Yaml, false), NOW)
            .starts_with("- mode: \"replicas: 2\"\n  name: web\n"),);
    }

    #[test]
    fn a_watch_key_ignores_the_clock_but_not_the_data() {
        let view = View {
            format: Some(Format::Wide),
            show_labels: false,
            single: false,
        };
        let listing = Listing::Nodes(vec![node("gw-1", true)]);
        assert_eq!(render(&listing, view, 0), render(&listing, view, 0));
        assert_ne!(
            render(&listing, view, NOW),
            render(&listing, view, NOW + 60_000)
        );
        let mut changed = node("gw-1", true);
        changed.status = "NotReady".into();
        assert_ne!(
            render(&listing, view, 0),
            render(&Listing::Nodes(vec![changed]), view, 0)
        );
    }
}
