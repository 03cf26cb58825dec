//! `shoal`: the hub daemon and the CLI that talks to it. Parsing and dispatch live in `cli`.

use std::process::ExitCode;

fn main() -> ExitCode {
    shoal_hub::cli::main()
}
