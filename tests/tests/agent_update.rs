//! Agent self-update (issue 15): releases on a real hub (`shoal agent-release`), checked,
//! signed with the hub's release key and kept across a restart.

use std::path::{Path, PathBuf};

use serde_json::Value;
use shoal_tests::hub::Hub;

/// A static x86_64 executable: Debian's busybox-static (`.ci/setup` installs it).
const BUSYBOX: &str = "/bin/busybox";

fn releases(hub: &Hub) -> Vec<Value> {
    let text = hub.ok(&["agent-release", "list", "-o", "json"]);
    match serde_json::from_str(&text) {
        Ok(Value::Array(items)) => items,
        other => panic!("`shoal agent-release list -o json` printed {other:?}: {text}"),
    }
}

/// `shoal agent-release ARGS` that must fail: its stderr.
fn refused(hub: &Hub, args: &[&str]) -> String {
    let out = hub.cli(args);
    assert!(
        !out.status.success(),
        "`shoal {}` succeeded: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `bytes` written to `dir/name`.
fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

fn text(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

#[test]
fn agent_releases_are_checked_signed_kept_across_a_restart_and_removed() {
    let mut hub = Hub::start("agent-release");
    let dir = tempfile::tempdir().expect("dir");
    let busybox = std::fs::read(BUSYBOX).expect("busybox-static is installed");

    let out = hub.ok(&["agent-release", "add", BUSYBOX, "--version", "0.2.0"]);
    assert!(out.contains("agent 0.2.0 for x86_64 added"), "{out}");
    let out = hub.ok(&["agent-release", "add", BUSYBOX, "--version", "0.2.0"]);
    assert!(out.contains("nothing changed"), "{out}");

    // The same ELF header claiming aarch64 is that architecture's release.
    let mut arm = busybox.clone();
    arm[18..20].copy_from_slice(&183u16.to_le_bytes());
    let arm = file(dir.path(), "agent-arm64", &arm);
    let out = hub.ok(&["agent-release", "add", text(&arm), "--version", "0.2.0"]);
    assert!(out.contains("agent 0.2.0 for aarch64 added"), "{out}");

    // Refusals, each saying what is wrong; none changes the list.
    let mut other = busybox.clone();
    other.push(0);
    let other = file(dir.path(), "other", &other);
    let error = refused(
        &hub,
        &["agent-release", "add", text(&other), "--version", "0.2.0"],
    );
    assert!(
        error.contains("already released with other bytes"),
        "{error}"
    );
    let me = std::env::current_exe().expect("this test binary, linked dynamically");
    let error = refused(
        &hub,
        &["agent-release", "add", text(&me), "--version", "0.3.0"],
    );
    assert!(error.contains("dynamically linked x86_64"), "{error}");
    let script = file(dir.path(), "script", b"#!/bin/sh\necho agent\n");
    let error = refused(
        &hub,
        &["agent-release", "add", text(&script), "--version", "0.3.0"],
    );
    assert!(error.contains("not an agent binary"), "{error}");
    let error = refused(&hub, &["agent-release", "add", BUSYBOX, "--version", "v1"]);
    assert!(error.contains("MAJOR.MINOR.PATCH"), "{error}");
    let empty = file(dir.path(), "empty", b"");
    let error = refused(
        &hub,
        &["agent-release", "add", text(&empty), "--version", "0.3.0"],
    );
    assert!(error.contains("empty"), "{error}");

    let listed = releases(&hub);
    let archs: Vec<&str> = listed.iter().filter_map(|r| r["arch"].as_str()).collect();
    assert_eq!(archs, ["aarch64", "x86_64"], "{listed:?}");
    let digest = shoal_model::hex::sha256_hex(&busybox);
    assert_eq!(listed[1]["sha256"].as_str(), Some(digest.as_str()));
    assert_eq!(listed[1]["size"].as_u64(), Some(busybox.len() as u64));
    // Signed by the release key, which is not one of the desired-state keys.
    let release_key = listed[0]["key"].as_str().expect("key").to_string();
    assert_eq!(release_key.len(), 16, "{release_key}");
    let state_keys = hub.ok(&["key", "list"]);
    assert!(!state_keys.contains(&release_key), "{state_keys}");

    hub.kill9();
    hub.restart();
    let after = releases(&hub);
    assert_eq!(
        after, listed,
        "releases and their key survive a hub restart"
    );
    let table = hub.ok(&["agent-release", "list"]);
    assert!(table.starts_with("VERSION"), "{table}");

    let out = hub.ok(&["agent-release", "rm", "0.2.0", "--arch", "aarch64"]);
    assert!(out.contains("removed (1 release)"), "{out}");
    let error = refused(&hub, &["agent-release", "rm", "0.2.0", "--arch", "aarch64"]);
    assert!(
        error.contains("no release of agent 0.2.0 for aarch64"),
        "{error}"
    );
    assert_eq!(releases(&hub).len(), 1);
}
