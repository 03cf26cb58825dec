//! Harness for Shoal's end-to-end tests: the real binaries, run as users run them.
//!
//! `agent` drives one `shoal-agent run`, `hub` one `shoal serve` and the `shoal` CLI, `fleet`
//! a hub and several agents, each in its own network namespace, with real containers; `images`
//! builds the OCI images they run.

pub mod agent;
pub mod fleet;
pub mod hub;
pub mod images;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of a workspace binary (`shoal`, `shoal-agent`), built once per test process with the
/// same cargo and target dir as the tests, so a test never runs a stale binary.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .current_dir(workspace())
            .args(["build", "--quiet", "--bin", "shoal", "--bin", "shoal-agent"])
            .status()
            .expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
        // Test executables live in <target>/<profile>/deps; binaries one level up.
        let exe = std::env::current_exe().expect("test executable path");
        exe.parent()
            .and_then(Path::parent)
            .expect("target profile dir")
            .to_path_buf()
    });
    dir.join(name)
}
