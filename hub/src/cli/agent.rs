//! `shoal agent upgrade|status`: which agent version the fleet's nodes run.
//!
//! `shoal agent upgrade --to V [-l k=v,...]` makes the nodes the selector picks (every node
//! without `-l`) download release V for their architecture (`shoal agent-release add`), try
//! it on probation under their launcher, and keep it if it proves itself; a node where it
//! fails goes back by itself and reports why. The hub gives the version to a canary first,
//! then in waves, and halts at the failure threshold (`shoal rollout status --agent`
//! follows it; `pause`, `resume` and `undo` act on it). The newest upgrade that picks a node
//! decides its version. `--cancel` removes the upgrade of exactly that selector.

use std::process::ExitCode;

use shoal_model::api::{AgentNodeInfo, AgentUpgradeRequest, AgentUpgradeStatus, Done};

use super::client::{Client, HubArgs};
use super::node::parse_label_set;
use super::output::{self, Format};

/// The fleet's agents: upgrade them over the air, and follow where each node is
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Make nodes run another agent release (every node, or those with the labels of -l)
    Upgrade {
        /// The released version to run (`shoal agent-release list`)
        #[arg(
            long,
            value_name = "VERSION",
            required_unless_present = "cancel",
            conflicts_with = "cancel"
        )]
        to: Option<String>,
        /// Only the nodes with all these labels, as k=v,k2=v2
        #[arg(short = 'l', long = "selector", value_name = "SELECTOR")]
        selector: Option<String>,
        /// Cancel the upgrade of exactly this selector instead (nodes keep what they run)
        #[arg(long)]
        cancel: bool,
        /// Nodes updated first, alone, before the waves: a count or a percentage [default: 1]
        #[arg(long, value_name = "N|P%", conflicts_with = "cancel")]
        canary: Option<String>,
        /// Nodes updating at once after the canaries: a count or a percentage [default: 25%]
        #[arg(long, value_name = "N|P%", conflicts_with = "cancel")]
        max_unavailable: Option<String>,
        /// Failed nodes that halt the rollout: a count or a percentage [default: 1]
        #[arg(long, value_name = "N|P%", conflicts_with = "cancel")]
        failure_threshold: Option<String>,
        /// How long a node has to run the version, proven, once given it [default: 10m]
        #[arg(long, value_name = "DURATION", conflicts_with = "cancel")]
        progress_deadline: Option<String>,
        /// Every node at once: no canary, no waves
        #[arg(long, conflicts_with_all = ["cancel", "canary", "max_unavailable"])]
        all_at_once: bool,
    },
    /// The upgrades, and per node: the agent it runs, the one it should, and how far it got
    Status {
        /// Output format (default: a table)
        #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
        output: Option<Format>,
    },
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    match &args.command {
        Command::Upgrade {
            to,
            selector,
            cancel,
            canary,
            max_unavailable,
            failure_threshold,
            progress_deadline,
            all_at_once,
        } => {
            let selector = parse_label_set(selector.as_deref().unwrap_or(""))
                .map_err(|e| anyhow::anyhow!(e.replace("--labels", "--selector")))?;
            let done: Done = if *cancel {
                let text: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                let text = text.join(",");
                let path = if text.is_empty() {
                    "/v1/agent-upgrades".to_string()
                } else {
                    format!(
                        "/v1/agent-upgrades?selector={}",
                        super::client::segment(&text)
                    )
                };
                client.delete(&path)?
            } else {
                client.post(
                    "/v1/agent-upgrades",
                    &AgentUpgradeRequest {
                        version: to.clone(),
                        selector,
                        canary: canary.clone(),
                        max_unavailable: max_unavailable.clone(),
                        failure_threshold: failure_threshold.clone(),
                        progress_deadline: progress_deadline.clone(),
                        immediate: *all_at_once,
                    },
                )?
            };
            println!("{}", done.message);
        }
        Command::Status { output } => {
            let status: AgentUpgradeStatus = client.get("/v1/agent-upgrades", &[])?;
            match output {
                None | Some(Format::Wide) => print!("{}", table(&status)),
                Some(Format::Yaml) => print!("{}", output::yaml(&serde_json::to_value(&status)?)),
                Some(_) => print!("{}", output::json(&serde_json::to_value(&status)?)),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line per node: name, architecture, running and target versions, state and detail.
pub fn table(status: &AgentUpgradeStatus) -> String {
    let rows: Vec<Vec<String>> = status
        .nodes
        .iter()
        .map(|n: &AgentNodeInfo| {
            vec![
                n.node.clone(),
                n.arch.clone(),
                n.running.clone(),
                n.target.clone().unwrap_or_else(|| "-".into()),
                n.state.clone(),
                n.detail.clone().unwrap_or_default(),
            ]
        })
        .collect();
    shoal_model::table::render(
        &["NODE", "ARCH", "AGENT", "TARGET", "STATE", "DETAIL"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_each_node_with_its_versions_and_state() {
        let status = AgentUpgradeStatus {
            upgrades: Vec::new(),
            nodes: vec![AgentNodeInfo {
                node: "gw-1".into(),
                arch: "aarch64".into(),
                running: "0.1.0".into(),
                target: Some("0.2.0".into()),
                selector: Some(Default::default()),
                state: "failed".into(),
                detail: Some("it did not come up within 120s".into()),
            }],
        };
        let text = table(&status);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for want in ["gw-1", "aarch64", "0.1.0", "0.2.0", "failed", "within 120s"] {
            assert!(lines[1].contains(want), "{want} in {text}");
        }
    }
}
