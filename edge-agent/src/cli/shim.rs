//! `shoal-agent shim ...`: the hidden helper commands the runtime runs as separate processes
//! (see `runtime` for why). Not for people: the runtime spawns them with the right arguments.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::runtime::shim;

#[derive(Debug, Parser)]
pub struct Args {
    #[command(subcommand)]
    pub command: ShimCommand,
}

#[derive(Debug, Subcommand)]
pub enum ShimCommand {
    /// Create, start and parent one container until it exits
    Run {
        #[arg(long)]
        id: String,
        #[arg(long)]
        bundle: PathBuf,
        /// The container's state dir
        #[arg(long)]
        state: PathBuf,
        /// libcontainer's root path
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        log: PathBuf,
        #[arg(long, default_value_t = crate::runtime::DEFAULT_LOG_MAX_BYTES)]
        log_max_bytes: u64,
    },
    /// Run a command inside a running container
    Exec {
        #[arg(long)]
        id: String,
        #[arg(long)]
        root: PathBuf,
        /// Where to write the result as JSON
        #[arg(long)]
        result: PathBuf,
        #[arg(long)]
        timeout_ms: u64,
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Delete what is left of a container whose shim died
    Delete {
        #[arg(long)]
        id: String,
        #[arg(long)]
        root: PathBuf,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let code = match args.command {
        ShimCommand::Run {
            id,
            bundle,
            state,
            root,
            log,
            log_max_bytes,
        } => shim::run(&shim::RunArgs {
            id,
            bundle,
            state,
            root,
            log,
            log_max_bytes,
        }),
        ShimCommand::Exec {
            id,
            root,
            result,
            timeout_ms,
            command,
        } => shim::exec(&shim::ExecArgs {
            id,
            root,
            result,
            timeout: Duration::from_millis(timeout_ms),
            command,
        }),
        ShimCommand::Delete { id, root } => shim::delete(&root, &id),
    };
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}
