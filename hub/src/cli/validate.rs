//! `shoal validate -f FILE|DIR`.

use std::path::Path;
use std::process::ExitCode;

use shoal_model::manifest;

pub fn run(path: &Path) -> ExitCode {
    let loaded = manifest::load(path);
    if loaded.is_ok() {
        eprint!("{}", loaded.hub_warning_report());
        print!("{}", loaded.report());
        ExitCode::SUCCESS
    } else {
        eprint!("{}", loaded.report());
        ExitCode::FAILURE
    }
}
