//! `shoal rollout status W [-o json|yaml] [--watch]`: where a workload's rollout stands, and
//! each node's part in it; `shoal rollout history W`, `pause W`, `resume W` and
//! `undo W [--to-revision N]`.

use std::process::ExitCode;
use std::time::Duration;

use shoal_model::api::{Done, RevisionInfo, RolloutInfo};
use shoal_model::quantity::format_duration;
use shoal_model::table;

use super::client::{segment, Client, HubArgs};
use super::output::{self, age, Format, NONE};

/// Follow how the hub rolls new revisions out
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Where a workload's rollout stands: its revision, state and each node's outcome
    Status {
        /// The workload
        workload: String,
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
    /// Give the revision to no new node until `resume` (nodes updating finish)
    Pause {
        /// The workload
        workload: String,
    },
    /// Go on with a paused rollout
    Resume {
        /// The workload
        workload: String,
    },
    /// Go back to an earlier revision on every node at once, with no canary and no waves
    Undo {
        /// The workload
        workload: String,
        /// The revision to go back to (default: the last one healthy everywhere)
        #[arg(long, value_name = "N")]
        to_revision: Option<u64>,
    },
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    match &args.command {
        Command::Status {
            workload,
            output,
            watch,
        } => loop {
            let info: RolloutInfo =
                client.get(&format!("/v1/rollouts/{}", segment(workload)), &[])?;
            let text = match output {
                None | Some(Format::Wide) => render(&info, shoal_model::clock::wall_ms()),
                Some(Format::Json) => output::json(&serde_json::to_value(&info)?),
                Some(Format::Yaml) => output::yaml(&serde_json::to_value(&info)?),
            };
            print!("{text}");
            if !watch || info.state != "progressing" {
                return Ok(exit_code(&info));
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
        Command::Pause { workload } => act(&client, workload, "pause"),
        Command::Resume { workload } => act(&client, workload, "resume"),
        Command::Undo {
            workload,
            to_revision,
        } => {
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

fn act(client: &Client, workload: &str, action: &str) -> anyhow::Result<ExitCode> {
    let done: Done = client.post_empty(&format!("/v1/rollouts/{}/{action}", segment(workload)))?;
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
}
