//! Harness for Shoal's end-to-end tests: the real binaries, run as users run them.
//!
//! `agent` drives one `shoal-agent run`, `hub` one `shoal serve` and the `shoal` CLI, `fleet`
//! a hub and several agents, each in its own network namespace, with real containers; `images`
//! builds the OCI images they run; `release` makes agent releases of this tree's agent;
//! `rollout` reads rollouts as `shoal rollout status` does;
//! `vm` boots a small cgroup v2 virtual machine that runs the static device agent.

pub mod agent;
pub mod fleet;
pub mod hub;
pub mod image;
pub mod images;
pub mod release;
pub mod rollout;
pub mod vm;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The workspace root.
/// Runs `command`, which must succeed, and returns its stdout; a failure panics with the
/// command and both its outputs.
pub fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Path of a workspace binary (`shoal`, `shoal-agent`), built once per test process with the
/// same cargo and target dir as the tests, so a test never runs a stale binary.
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| {
        let status = cargo()
            .current_dir(workspace())
            .args([
                "build",
                "--quiet",
                "--bin",
                "shoal",
                "--bin",
                "shoal-agent",
                "--bin",
                "shoal-sim",
            ])
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

/// `cargo` as a shell runs it, for a build started from inside a test: without the variables
/// cargo sets for the test process itself (`CARGO_MANIFEST_DIR`, `CARGO_PKG_*`, ...). Build
/// scripts track some of them (ring's reruns when `CARGO_MANIFEST_DIR` changes), so a build
/// that inherited them would rebuild ring and every crate above it, and the next ordinary
/// `cargo` run would rebuild them all again.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    clean_cargo_env(&mut command);
    command
}

/// Removes from `command`'s environment the variables cargo sets for the test process (see
/// [`cargo`]), for a script that runs cargo itself (`cross/build`).
pub fn clean_cargo_env(command: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        let set_by_cargo = key.starts_with("CARGO_PKG_")
            || key.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*key,
                "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "OUT_DIR"
            );
        if set_by_cargo {
            command.env_remove(&*key);
        }
    }
}
