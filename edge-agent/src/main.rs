//! `shoal-agent`, the Shoal edge agent: one static binary per device that will receive desired
//! state from the hub, keep it in SQLite and run containers through libcontainer.
//!
//! The agent lives in the library (`src/lib.rs`); this file only calls its command line.

use std::process::ExitCode;

fn main() -> ExitCode {
    shoal_agent::main()
}
