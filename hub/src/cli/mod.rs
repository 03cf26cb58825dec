//! The `shoal` command line. Each subcommand is one variant of [`Command`]; `--help` lists
//! only commands that work in this build.

pub mod agent;
pub mod agent_release;
pub mod apply;
mod backup;
pub mod broker_config;
pub mod client;
pub mod config;
mod context;
pub mod delete;
pub mod describe;
pub mod flash;
pub mod get;
pub mod key;
pub mod logs;
pub mod node;
pub mod output;
pub mod rollout;
mod serve;
pub mod token;
mod up;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "shoal", version, about = "Shoal: containers for fleets of edge devices, healed offline", long_about = None)]
struct Cli {
    /// How the log on stderr is written: `text`, or `json` (one object per line)
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    #[command(flatten)]
    hub: client::HubArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the hub: embedded MQTT broker, store, scheduler and the API for this CLI
    Serve(serve::Args),
    /// Run a hub and a local agent in one go (single-box gateways, quickstart)
    Up(up::Args),
    Apply(apply::Args),
    Diff(apply::DiffArgs),
    Get(get::Args),
    Describe(describe::Args),
    Delete(delete::Args),
    Logs(logs::Args),
    Rollout(rollout::Args),
    Node(node::Args),
    Key(key::Args),
    Token(token::Args),
    AgentRelease(agent_release::Args),
    Agent(agent::Args),
    Flash(flash::Args),
    BrokerConfig(broker_config::Args),
    Context(context::Args),
    /// Copy what the hub cannot lose (its store, CA, keys and tokens) into one file, while it
    /// runs
    Backup(backup::BackupArgs),
    /// Restore a backup into a new data dir; enrolled agents reconnect without enrolling again
    Restore(backup::RestoreArgs),
    /// Write the demo image (localhost/shoal-demo:latest, built from busybox-static) as an
    /// OCI tarball, for `shoal-agent images import`
    DemoImage {
        /// The tarball to write
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// The static busybox the image is built from
        #[arg(long, value_name = "FILE", default_value = "/bin/busybox")]
        busybox: PathBuf,
    },
    /// Check fleet manifests without a hub: print every problem, or one line per workload
    Validate {
        /// A manifest file, or a folder of .yaml/.yml files
        #[arg(short = 'f', long = "filename", value_name = "FILE|DIR")]
        path: PathBuf,
    },
}

/// Parses the command line and runs the command; the exit code is 0 on success, 1 when the
/// command found problems, 2 for a usage error (from clap). `shoal diff` follows `kubectl
/// diff`: 0 when nothing would change, 1 when something would, 2 for any error.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let error_code = match cli.command {
        Command::Diff(_) => ExitCode::from(2),
        _ => ExitCode::FAILURE,
    };
    crate::telemetry::write_json(cli.log_format == "json");
    let result = match cli.command {
        Command::Serve(args) => serve::run(&args, cli.hub.context.as_deref()),
        Command::Up(args) => up::run(&args, cli.hub.context.as_deref()),
        Command::Apply(args) => apply::run(&args, &cli.hub),
        Command::Diff(args) => apply::run_diff(&args, &cli.hub),
        Command::Get(args) => get::run(&args, &cli.hub),
        Command::Describe(args) => describe::run(&args, &cli.hub),
        Command::Delete(args) => delete::run(&args, &cli.hub),
        Command::Logs(args) => logs::run(&args, &cli.hub),
        Command::Rollout(args) => rollout::run(&args, &cli.hub),
        Command::Node(args) => node::run(&args, &cli.hub),
        Command::Key(args) => key::run(&args, &cli.hub),
        Command::Token(args) => token::run(&args, &cli.hub),
        Command::AgentRelease(args) => agent_release::run(&args, &cli.hub),
        Command::Agent(args) => agent::run(&args, &cli.hub),
        Command::Flash(args) => flash::run(&args, &cli.hub),
        Command::BrokerConfig(args) => broker_config::run(&args, &cli.hub),
        Command::Context(args) => context::run(&args, &cli.hub),
        Command::Backup(args) => backup::run_backup(&args),
        Command::Restore(args) => backup::run_restore(&args),
        Command::DemoImage { out, busybox } => crate::demo::write_image(&busybox, &out).map(|()| {
            println!(
                "wrote {} ({}) from {}",
                out.display(),
                crate::demo::IMAGE,
                busybox.display()
            );
            ExitCode::SUCCESS
        }),
        Command::Validate { path } => Ok(validate::run(&path)),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            error_code
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::Cli;

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
