//! `shoal-agent`, the Shoal edge agent: one static binary per device that will receive desired
//! state from the hub, keep it in SQLite and run containers through libcontainer.
//!
//! This file only wires things together: parse the command line, start telemetry, run the
//! command, turn its outcome into an exit code.

mod api;
mod cli;
mod config;
mod host;
mod image;
mod mqtt;
mod reconcile;
mod runtime;
mod state;
mod supervisor;
mod telemetry;
mod wiring;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    telemetry::init();
    match cli::run(args.command) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
