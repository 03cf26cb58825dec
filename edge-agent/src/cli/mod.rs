//! The command line: one enum of commands, one module per command. Only commands that work
//! are listed.

mod enroll;
mod local;
mod run;
mod selftest;
mod shim;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Shoal edge agent: runs this device's share of the fleet's workloads.
#[derive(Debug, Parser)]
#[command(name = "shoal-agent", version, propagate_version = true)]
pub struct Cli {
    /// How the log on stderr is written: `text`, or `json` (one object per line)
    #[arg(long, global = true, value_name = "FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the agent: keep this device's workloads running, also with no hub or network
    Run(run::Args),
    /// Start the agent the way the systemd unit does: run the agent binary the data dir names,
    /// try a new one on probation, and go back to the one before if it fails
    Launch(crate::launch::Args),
    /// Stage a new agent binary for `launch` to try on probation (no hub needed)
    Update {
        /// The new `shoal-agent` binary, built for this device's architecture
        #[arg(long, value_name = "FILE")]
        binary: PathBuf,
        /// Its version, as MAJOR.MINOR.PATCH (`--version` is this agent's own)
        #[arg(long = "as", value_name = "VERSION")]
        as_version: String,
        /// The agent's configuration file (it names the data dir)
        #[arg(long, value_name = "FILE", default_value = crate::config::DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Join a hub with the one-time token from `shoal node add`
    Enroll(enroll::Args),
    /// Make the workloads in a manifest file or folder run on this device (no hub needed)
    Apply {
        #[command(flatten)]
        args: local::ApplyArgs,
        #[command(flatten)]
        socket: local::Socket,
    },
    /// List this device's containers: state, health, restarts, last exit, uptime, memory, CPU
    Ps {
        #[command(flatten)]
        socket: local::Socket,
    },
    /// Print a container's log
    Logs {
        #[command(flatten)]
        args: local::LogsArgs,
        #[command(flatten)]
        socket: local::Socket,
    },
    /// Stop and remove a workload applied with `apply`
    Delete {
        /// The workload's name
        workload: String,
        #[command(flatten)]
        socket: local::Socket,
    },
    /// Manage the local image store
    Images {
        #[command(subcommand)]
        command: local::ImagesCommand,
        #[command(flatten)]
        socket: local::Socket,
    },
    /// Check fleet manifests (a file, or a folder of them) without applying anything
    Validate(validate::Args),
    /// Check that this device can run the agent: arch, kernel, cgroups, privileges, database
    Selftest(selftest::Args),
    /// Internal: the runtime's per-container shim and helpers (spawned by the agent itself)
    #[command(hide = true)]
    Shim(shim::Args),
}

/// The `shoal-agent` binary: parses the command line, starts telemetry, runs the command and
/// turns its outcome into an exit code.
pub fn main() -> ExitCode {
    let args = Cli::parse();
    crate::telemetry::init(args.log_format == "json");
    match run(args.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one command; `Ok` carries the exit code of a command that ran to its end (a failed
/// validation or self-test is `ExitCode::FAILURE`, not an error).
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run(args) => run::run(&args),
        Command::Launch(args) => crate::launch::run(&args),
        Command::Update {
            binary,
            as_version,
            config,
        } => update(&binary, &as_version, &config),
        Command::Enroll(args) => enroll::run(&args),
        Command::Apply { args, socket } => local::apply(&socket, &args),
        Command::Ps { socket } => local::ps(&socket),
        Command::Logs { args, socket } => local::logs(&socket, &args),
        Command::Delete { workload, socket } => local::delete(&socket, &workload),
        Command::Images { command, socket } => local::images(&socket, &command),
        Command::Validate(args) => validate::run(&args),
        Command::Selftest(args) => selftest::run(&args),
        Command::Shim(args) => shim::run(args),
    }
}

/// `shoal-agent update`: stages the binary for the launcher.
fn update(binary: &Path, version: &str, config: &Path) -> anyhow::Result<ExitCode> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let config = crate::config::load(config, hostname.trim())?;
    println!(
        "{}",
        crate::launch::stage(&config.data_dir, binary, version)?
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn selftest_defaults_to_the_system_data_dir() {
        let cli = Cli::try_parse_from(["shoal-agent", "selftest"]).expect("parse");
        let Command::Selftest(args) = cli.command else {
            panic!("not selftest: {cli:?}");
        };
        assert_eq!(args.data_dir, std::path::Path::new("/var/lib/shoal"));
    }

    #[test]
    fn validate_needs_a_file_or_folder() {
        assert!(Cli::try_parse_from(["shoal-agent", "validate"]).is_err());
        let cli =
            Cli::try_parse_from(["shoal-agent", "validate", "-f", "manifests"]).expect("parse");
        assert!(matches!(cli.command, Command::Validate(_)));
    }
}
