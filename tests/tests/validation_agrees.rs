//! The hub's CLI and the agent validate manifests with the same rules: a file the hub accepts
//! is accepted by the agent and the other way round, with the same diagnostics.

use std::process::{Command, Output};

use shoal_tests::{binary, workspace};

fn run(bin: &str, path: &str) -> Output {
    let path = workspace().join(path);
    Command::new(binary(bin))
        .arg("validate")
        .arg("-f")
        .arg(&path)
        .output()
        .expect("run validate")
}

#[test]
fn hub_and_agent_accept_the_examples_alike() {
    let hub = run("shoal", "manifests");
    let agent = run("shoal-agent", "manifests");
    assert_eq!(
        hub.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&hub.stderr)
    );
    assert_eq!(
        agent.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&agent.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&hub.stdout),
        String::from_utf8_lossy(&agent.stdout)
    );
}

#[test]
fn hub_and_agent_refuse_an_invalid_manifest_with_the_same_diagnostics() {
    let hub = run("shoal", "model/tests/invalid/many-problems.yaml");
    let agent = run("shoal-agent", "model/tests/invalid/many-problems.yaml");
    assert_eq!(hub.status.code(), Some(1));
    assert_eq!(agent.status.code(), Some(1));
    let hub_err = String::from_utf8_lossy(&hub.stderr);
    assert!(
        hub_err.contains("spec.containers[0].capabilities.add[0]"),
        "{hub_err}"
    );
    assert_eq!(hub_err, String::from_utf8_lossy(&agent.stderr));
}
