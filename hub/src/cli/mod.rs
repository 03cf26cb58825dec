//! The `shoal` command line. Each subcommand is one variant of [`Command`]; `--help` lists
//! only commands that work in this build.

mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "shoal", version, about = "Shoal: containers for fleets of edge devices, healed offline", long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check fleet manifests without a hub: print every problem, or one line per workload
    Validate {
        /// A manifest file, or a folder of .yaml/.yml files
        #[arg(short = 'f', long = "filename", value_name = "FILE|DIR")]
        path: PathBuf,
    },
}

/// Parses the command line and runs the command; the exit code is 0 on success, 1 when the
/// command found problems, 2 for a usage error (from clap).
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Validate { path } => validate::run(&path),
    }
}
