//! Agent releases for update tests and benches: this tree's static x86_64 agent re-marked as
//! another version (the same code, another version string, as the issue asks for), versions
//! next to this build's, and `shoal agent status` read back.

use std::collections::BTreeMap;

use std::time::Duration;

use serde_json::Value;

use crate::agent::shell_workload;
use crate::fleet::{Fleet, Settings, CONVERGE};
use crate::hub::Hub;
use crate::vm::{device_agent, Arch};

/// `bytes` written to `dir/name`.
pub fn file(dir: &std::path::Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

/// `path` as the text a CLI argument takes.
pub fn text(path: &std::path::Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// The static x86_64 agent (`cross/build x86_64`) with its version mark saying `version`
/// (which must be as long as this build's, so the binary keeps its size and layout).
pub fn release_bytes(version: &str) -> Vec<u8> {
    let built = device_agent(Arch::X86_64);
    let mut bytes = std::fs::read(built).expect("the static agent");
    let own = env!("CARGO_PKG_VERSION");
    assert_eq!(version.len(), own.len(), "a mark keeps its length");
    let mut mark = shoal_model::release::VERSION_MARK.to_vec();
    mark.extend_from_slice(own.as_bytes());
    mark.push(0);
    let at: Vec<usize> = bytes
        .windows(mark.len())
        .enumerate()
        .filter(|(_, w)| *w == mark.as_slice())
        .map(|(i, _)| i)
        .collect();
    assert_eq!(
        at.len(),
        1,
        "the static agent carries its version mark once"
    );
    let start = at[0] + shoal_model::release::VERSION_MARK.len();
    bytes[start..start + own.len()].copy_from_slice(version.as_bytes());
    bytes
}

/// A version as long as this build's, `bump` higher in its last digit (modulo 10).
pub fn next_version(bump: u8) -> String {
    let own = env!("CARGO_PKG_VERSION");
    let (head, last) = own.split_at(own.len() - 1);
    let digit = last.parse::<u8>().expect("the version ends with a digit");
    format!("{head}{}", (digit + bump) % 10)
}

/// `shoal agent status`: per node, the version it runs, its state and the detail.
pub fn agent_status(hub: &Hub) -> BTreeMap<String, (String, String, String)> {
    let text = hub.ok(&["agent", "status", "-o", "json"]);
    let value: Value = serde_json::from_str(&text).expect("agent status is JSON");
    value["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            let s = |k: &str| n[k].as_str().unwrap_or_default().to_string();
            (s("node"), (s("running"), s("state"), s("detail")))
        })
        .collect()
}

/// A fleet started by launchers (probation: ready within 20 s, then up 3 s) with one
/// container on every node; returns it and each node's container pid.
pub fn fleet_with_a_container(
    tag: &str,
    nodes: &[(&str, &str)],
) -> (Fleet, BTreeMap<String, String>) {
    let settings = Settings {
        launch: Some((Duration::from_secs(20), Duration::from_secs(3))),
        ..Settings::default()
    };
    let fleet = Fleet::start_with(tag, nodes, settings);
    let manifest = shell_workload(
        "steady",
        "while true; do sleep 1; done",
        "  placement: { mode: every }\n",
        "",
    );
    fleet.apply("steady", &manifest);
    fleet.wait_for("steady running everywhere", CONVERGE, || {
        nodes
            .iter()
            .all(|(n, _)| fleet.pids(n).contains_key("steady/main"))
            .then_some(())
    });
    let pids = nodes
        .iter()
        .map(|(n, _)| ((*n).to_string(), fleet.pids(n)["steady/main"].clone()))
        .collect();
    (fleet, pids)
}
