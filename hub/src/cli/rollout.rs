//! `shoal rollout status W [-o json|yaml] [--watch]`: where a workload's rollout stands, and
//! each node's part in it; `shoal rollout history W`, `pause W`, `resume W` and
//! `undo W [--to-revision N]`. With `--agent [-l SELECTOR]` instead of `W`, the same for an
//! agent upgrade (`shoal agent upgrade`): status, pause, resume and undo.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use shoal_model::api::{
    AgentNodeInfo, AgentUpgradeAction, AgentUpgradeInfo, AgentUpgradeStatus, Done, RevisionInfo,
    RolloutInfo,
};
use shoal_model::quantity::format_duration;
use shoal_model::table;

use super::client::{segment, Client, HubArgs};
use super::node::parse_label_set;
use super::output::{self, age, Format, NONE};
use crate::control::agent::selector_text;

/// Follow how the hub rolls new revisions out
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

/// What a rollout command acts on: a workload, or an agent upgrade (`--agent`).
#[derive(Debug, clap::Args)]
pub struct Subject {
    /// The workload
    #[arg(required_unless_present = "agent")]
    pub workload: Option<String>,
    /// The agent upgrade instead (`shoal agent upgrade`): the fleet-wide one, or -l's
    #[arg(long, conflicts_with = "workload")]
    pub agent: bool,
    /// With --agent: the upgrade of exactly these labels, as k=v,k2=v2 (for status: only it)
    #[arg(
        short = 'l',
        long = "selector",
        value_name = "SELECTOR",
        requires = "agent"
    )]
    pub selector: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Where a rollout stands: its revision (or agent version), state and each node's part
    Status {
        #[command(flatten)]
        subject: Subject,
        /// Output format (default: text)
        #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
        output: Option<Format>,
        /// Print again every second until the rollout completes, halts or rolls back
        #[arg(short = 'w', long)]
        watch: bool,
    },
    /// Every revision of a workload, and how its rollout went
    History {
        /// The workload
        workload: String,
        /// Output format (default: a table)
        #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
        output: Option<Format>,
    },
    /// Give the revision (or agent version) to no new node until `resume` (nodes updating finish)
    Pause {
        #[command(flatten)]
        subject: Subject,
    },
    /// Go on with a paused rollout
    Resume {
        #[command(flatten)]
        subject: Subject,
    },
    /// Go back to an earlier revision (or agent version) on every node at once, with no canary and no waves
    Undo {
        #[command(flatten)]
        subject: Subject,
        /// The revision to go back to (default: the last one healthy everywhere)
        #[arg(long, value_name = "N", conflicts_with = "agent")]
        to_revision: Option<u64>,
    },
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    match &args.command {
        Command::Status {
            subject,
            output,
            watch,
        } => loop {
            let (text, code, progressing) = match &subject.workload {
                Some(workload) => {
                    let info: RolloutInfo =
                        client.get(&format!("/v1/rollouts/{}", segment(workload)), &[])?;
                    let text = match output {
                        None | Some(Format::Wide) => render(&info, shoal_model::clock::wall_ms()),
                        Some(Format::Json) => output::json(&serde_json::to_value(&info)?),
                        Some(Format::Yaml) => output::yaml(&serde_json::to_value(&info)?),
                    };
                    (text, exit_code(&info), info.state == "progressing")
                }
                None => {
                    let selector = agent_selector(subject)?;
                    let status: AgentUpgradeStatus = client.get("/v1/agent-upgrades", &[])?;
                    let status = agent_rollouts(status, selector.as_ref())?;
                    let text = match output {
                        None | Some(Format::Wide) => {
                            render_agent(&status, shoal_model::clock::wall_ms())
                        }
                        Some(Format::Json) => output::json(&serde_json::to_value(&status)?),
                        Some(Format::Yaml) => output::yaml(&serde_json::to_value(&status)?),
                    };
                    let halted = status.upgrades.iter().any(|u| u.state == "halted");
                    let progressing = status.upgrades.iter().any(|u| u.state == "progressing");
                    let code = if halted {
                        ExitCode::from(1)
                    } else {
                        ExitCode::SUCCESS
                    };
                    (text, code, progressing)
                }
            };
            print!("{text}");
            if !watch || !progressing {
                return Ok(code);
            }
            println!();
            std::thread::sleep(Duration::from_secs(1));
        },
        Command::History { workload, output } => {
            let history: Vec<RevisionInfo> =
                client.get(&format!("/v1/rollouts/{}/history", segment(workload)), &[])?;
            let text = match output {
                None | Some(Format::Wide) => {
                    render_history(&history, shoal_model::clock::wall_ms())
                }
                Some(Format::Json) => output::json(&serde_json::to_value(&history)?),
                Some(Format::Yaml) => output::yaml(&serde_json::to_value(&history)?),
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Pause { subject } => act(&client, subject, "pause"),
        Command::Resume { subject } => act(&client, subject, "resume"),
        Command::Undo {
            subject,
            to_revision,
        } => {
            let Some(workload) = &subject.workload else {
                return act(&client, subject, "undo");
            };
            let mut path = format!("/v1/rollouts/{}/undo", segment(workload));
            if let Some(n) = to_revision {
                path.push_str(&format!("?to_revision={n}"));
            }
            let done: Done = client.post_empty(&path)?;
            println!("{}", done.message);
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The selector of `-l`, with `--agent`; `None` without `-l`.
fn agent_selector(subject: &Subject) -> anyhow::Result<Option<BTreeMap<String, String>>> {
    subject
        .selector
        .as_deref()
        .map(|text| {
            parse_label_set(text).map_err(|e| anyhow::anyhow!(e.replace("--labels", "--selector")))
        })
        .transpose()
}

/// The upgrades `selector` names (every one without it) and the nodes they pick.
pub fn agent_rollouts(
    status: AgentUpgradeStatus,
    selector: Option<&BTreeMap<String, String>>,
) -> anyhow::Result<AgentUpgradeStatus> {
    let AgentUpgradeStatus { upgrades, nodes } = status;
    let upgrades: Vec<AgentUpgradeInfo> = upgrades
        .into_iter()
        .filter(|u| selector.is_none_or(|s| &u.selector == s))
        .collect();
    if upgrades.is_empty() {
        anyhow::bail!(match selector {
            Some(s) => format!(
                "no agent upgrade for {} (`shoal rollout status --agent` lists them)",
                selector_text(s)
            ),
            None => "no agent upgrade: `shoal agent upgrade --to VERSION` starts one".to_string(),
        });
    }
    let nodes = nodes
        .into_iter()
        .filter(|n| {
            n.selector
                .as_ref()
                .is_some_and(|s| upgrades.iter().any(|u| &u.selector == s))
        })
        .collect();
    Ok(AgentUpgradeStatus { upgrades, nodes })
}

/// The text of `shoal rollout status --agent`: each upgrade, then its nodes.
pub fn render_agent(status: &AgentUpgradeStatus, now_ms: u64) -> String {
    let mut out = String::new();
    for (i, u) in status.upgrades.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let nodes: Vec<&AgentNodeInfo> = status
            .nodes
            .iter()
            .filter(|n| n.selector.as_ref() == Some(&u.selector))
            .collect();
        let state = match u.state.as_str() {
            "halted" => format!("halted after {} failed node(s)", u.failed),
            other if u.paused => format!("{other}, paused"),
            other => other.to_string(),
        };
        let settings = if u.immediate {
            "every node at once".to_string()
        } else {
            format!(
                "canary {}, maxUnavailable {}, failureThreshold {}, progressDeadline {}",
                u.canary, u.max_unavailable, u.failure_threshold, u.progress_deadline
            )
        };
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &nodes {
            *counts.entry(n.state.as_str()).or_default() += 1;
        }
        let counts: Vec<String> = counts.iter().map(|(s, c)| format!("{c} {s}")).collect();
        out.push_str(&format!(
            "Agent:     {} for {}\nState:     {state}\nStarted:   {} ago\nSettings:  {settings}\nUndo to:   {}\nNodes:     {}\n",
            u.version,
            selector_text(&u.selector),
            age(u.created_ms, now_ms),
            u.previous.as_deref().unwrap_or(NONE),
            if counts.is_empty() { NONE.to_string() } else { counts.join(", ") },
        ));
        let rows: Vec<Vec<String>> = nodes
            .iter()
            .map(|n| {
                vec![
                    n.node.clone(),
                    n.arch.clone(),
                    n.running.clone(),
                    n.state.clone(),
                    n.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        if !rows.is_empty() {
            out.push('\n');
            out.push_str(&table::render(
                &["NODE", "ARCH", "AGENT", "STATE", "DETAIL"],
                &rows,
            ));
        }
    }
    out
}

fn act(client: &Client, subject: &Subject, action: &str) -> anyhow::Result<ExitCode> {
    let done: Done = match &subject.workload {
        Some(workload) => {
            client.post_empty(&format!("/v1/rollouts/{}/{action}", segment(workload)))?
        }
        None => client.post(
            &format!("/v1/agent-upgrades/{action}"),
            &AgentUpgradeAction {
                selector: agent_selector(subject)?.unwrap_or_default(),
            },
        )?,
    };
    println!("{}", done.message);
    Ok(ExitCode::SUCCESS)
}

/// The table of `shoal rollout history`.
pub fn render_history(history: &[RevisionInfo], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = history
        .iter()
        .map(|h| {
            let mut outcome = h.state.clone().unwrap_or_else(|| NONE.to_string());
            if h.failed > 0 {
                outcome.push_str(&format!(" ({} failed)", h.failed));
            }
            if h.immediate {
                outcome.push_str(" (undo: all at once)");
            }
            vec![h.revision.to_string(), age(h.created_ms, now_ms), outcome]
        })
        .collect();
    table::render(&["REVISION", "APPLIED", "ROLLOUT"], &rows)
}

/// 0 while progressing or complete; 1 when the rollout halted or rolled back, so scripts
/// can tell.
fn exit_code(info: &RolloutInfo) -> ExitCode {
    match info.state.as_str() {
        "halted" | "rolled-back" => ExitCode::FAILURE,
        _ => ExitCode::SUCCESS,
    }
}

/// The text of `shoal rollout status`.
pub fn render(info: &RolloutInfo, now_ms: u64) -> String {
    let stable = info
        .stable
        .map_or_else(|| NONE.to_string(), |s| s.to_string());
    let healthy_for = format_duration(Duration::from_millis(info.healthy_for_ms));
    let mut out = format!(
        "Workload:  {}\nRevision:  {} (stable: {stable})\nState:     {}\nStarted:   {} ago\n\
         Settings:  canary {}, maxUnavailable {}, healthyFor {healthy_for}, autoRollback {}\n",
        info.workload,
        info.revision,
        info.reason,
        age(info.started_ms, now_ms),
        info.canary,
        info.max_unavailable,
        if info.auto_rollback { "on" } else { "off" },
    );
    let rows: Vec<Vec<String>> = info
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.node.clone(),
                n.revision.to_string(),
                n.outcome.clone(),
                age(n.since_ms, now_ms),
                n.ready_since_ms
                    .map_or_else(|| NONE.to_string(), |r| age(r, now_ms)),
                if n.online { "yes" } else { "no" }.to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        out.push('\n');
        out.push_str(&table::render(
            &[
                "NODE",
                "REVISION",
                "OUTCOME",
                "GIVEN",
                "READY FOR",
                "ONLINE",
            ],
            &rows,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use shoal_model::api::RolloutNode;

    use super::*;

    #[test]
    fn the_status_reads_as_an_operator_expects() {
        let info = RolloutInfo {
            workload: "app".into(),
            revision: 2,
            stable: Some(1),
            state: "progressing".into(),
            reason: "progressing".into(),
            failed: 0,
            started_ms: 10_000,
            changed_ms: 10_000,
            canary: "1".into(),
            max_unavailable: "2".into(),
            healthy_for_ms: 3_000,
            auto_rollback: true,
            nodes: vec![
                RolloutNode {
                    node: "a".into(),
                    revision: 2,
                    outcome: "done".into(),
                    since_ms: 10_000,
                    ready_since_ms: Some(12_000),
                    outcome_ms: 15_000,
                    online: true,
                },
                RolloutNode {
                    node: "b".into(),
                    revision: 1,
                    outcome: "done".into(),
                    since_ms: 1_000,
                    ready_since_ms: None,
                    outcome_ms: 1_000,
                    online: false,
                },
            ],
        };
        assert_eq!(
            render(&info, 20_000),
            "Workload:  app\n\
             Revision:  2 (stable: 1)\n\
             State:     progressing\n\
             Started:   10s ago\n\
             Settings:  canary 1, maxUnavailable 2, healthyFor 3s, autoRollback on\n\
             \n\
             NODE   REVISION   OUTCOME   GIVEN   READY FOR   ONLINE\n\
             a      2          done      10s     8s          yes\n\
             b      1          done      19s     <none>      no\n"
        );
        assert_eq!(exit_code(&info), ExitCode::SUCCESS);
    }

    fn agent_node(node: &str, selector: &BTreeMap<String, String>, state: &str) -> AgentNodeInfo {
        AgentNodeInfo {
            node: node.into(),
            arch: "aarch64".into(),
            running: "0.2.0".into(),
            target: Some("0.3.0".into()),
            selector: Some(selector.clone()),
            state: state.into(),
            detail: (state == "queued").then(|| "the rollout halted after 1 failed node(s)".into()),
        }
    }

    #[test]
    fn an_agent_rollout_reads_as_an_operator_expects_and_selects_by_exact_selector() {
        let site = BTreeMap::from([("site".to_string(), "a".to_string())]);
        let every = BTreeMap::new();
        let upgrade = |selector: &BTreeMap<String, String>, state: &str| AgentUpgradeInfo {
            selector: selector.clone(),
            version: "0.3.0".into(),
            created_ms: 10_000,
            canary: "1".into(),
            max_unavailable: "25%".into(),
            failure_threshold: "1".into(),
            progress_deadline: "10m".into(),
            previous: Some("0.2.0".into()),
            state: state.into(),
            failed: u32::from(state == "halted"),
            changed_ms: 12_000,
            paused: false,
            immediate: false,
        };
        let status = AgentUpgradeStatus {
            upgrades: vec![upgrade(&site, "halted"), upgrade(&every, "complete")],
            nodes: vec![
                agent_node("gw-1", &site, "failed"),
                agent_node("gw-2", &site, "queued"),
                agent_node("gw-3", &every, "updated"),
                AgentNodeInfo {
                    selector: None,
                    ..agent_node("gw-4", &every, "none")
                },
            ],
        };
        let only = agent_rollouts(status.clone(), Some(&site)).expect("site=a");
        assert_eq!(only.upgrades.len(), 1);
        assert_eq!(
            render_agent(&only, 20_000),
            "Agent:     0.3.0 for the nodes with site=a\n\
             State:     halted after 1 failed node(s)\n\
             Started:   10s ago\n\
             Settings:  canary 1, maxUnavailable 25%, failureThreshold 1, progressDeadline 10m\n\
             Undo to:   0.2.0\n\
             Nodes:     1 failed, 1 queued\n\
             \n\
             NODE   ARCH      AGENT   STATE    DETAIL\n\
             gw-1   aarch64   0.2.0   failed\n\
             gw-2   aarch64   0.2.0   queued   the rollout halted after 1 failed node(s)\n"
        );
        let all = agent_rollouts(status.clone(), None).expect("all");
        assert_eq!(all.upgrades.len(), 2);
        assert_eq!(all.nodes.len(), 3, "a node no upgrade picks is left out");
        let other = BTreeMap::from([("site".to_string(), "b".to_string())]);
        let missing = agent_rollouts(status, Some(&other)).expect_err("no such upgrade");
        assert!(missing.to_string().contains("site=b"), "{missing}");
    }
}
