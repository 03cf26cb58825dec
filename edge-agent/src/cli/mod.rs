//! The command line: one enum of commands, one module per command. Only commands that work
//! are listed; `run` (the agent daemon) and the local inspection commands come with the
//! runtime.

mod selftest;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The Shoal edge agent: runs this device's share of the fleet's workloads.
#[derive(Debug, Parser)]
#[command(name = "shoal-agent", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check fleet manifests (a file, or a folder of them) without applying anything
    Validate(validate::Args),
    /// Check that this device can run the agent: arch, kernel, cgroups, privileges, database
    Selftest(selftest::Args),
}

/// Runs one command; `Ok` carries the exit code of a command that ran to its end (a failed
/// validation or self-test is `ExitCode::FAILURE`, not an error).
pub fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate(args) => validate::run(&args),
        Command::Selftest(args) => selftest::run(&args),
    }
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
