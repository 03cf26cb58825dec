//! `shoal validate -f FILE|DIR`.

use std::path::Path;
use std::process::ExitCode;

use shoal_model::manifest;

pub fn run(path: &Path) -> ExitCode {
    let loaded = manifest::load(path);
    let files = plural(loaded.files, "file");
    if loaded.is_ok() {
        for w in &loaded.workloads {
            println!("{}", w.workload.summary());
        }
        println!(
            "{} valid in {files}",
            plural(loaded.workloads.len(), "workload")
        );
        ExitCode::SUCCESS
    } else {
        for d in &loaded.diagnostics {
            eprintln!("{d}");
        }
        eprintln!("{} in {files}", plural(loaded.diagnostics.len(), "problem"));
        ExitCode::FAILURE
    }
}

fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}
