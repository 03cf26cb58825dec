//! Rotating the hub's release key (`shoal key rotate --release`, issue 15), through a real hub
//! and agents in network namespaces started by their launchers:
//!
//! - a node that already runs its target takes the new key set at once (the old key's bridge
//!   endorses it), and only nodes with a target get a new desired state;
//! - a node with no target during the rotation still trusts only the old key, and takes the
//!   new one with its next upgrade, to a release signed by the new key alone;
//! - every stored release is signed again with the new key; containers are never touched.

use std::time::Duration;

use shoal_tests::fleet::{Fleet, CONVERGE};
use shoal_tests::release::{
    agent_status, file, fleet_with_a_container, next_version, release_bytes, text,
};

fn launch_good(fleet: &Fleet, node: &str) -> Option<String> {
    let path = fleet.agent(node).root.join("data/bin/launch.json");
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    if state.get("trial").is_some() {
        return None;
    }
    state["good"].as_str().map(str::to_string)
}

/// The release keys `node` trusts, as its agent keeps them.
fn trusted(fleet: &Fleet, node: &str) -> String {
    std::fs::read_to_string(fleet.agent(node).root.join("data/release-keys")).unwrap_or_default()
}

/// The hub's release keys as `shoal key list` shows them: (id, state).
fn release_lines(listed: &str) -> Vec<(String, String)> {
    listed
        .lines()
        .filter_map(|l| {
            let cells: Vec<&str> = l.split_whitespace().collect();
            (cells.get(2) == Some(&"release")).then(|| (cells[0].to_string(), cells[1].to_string()))
        })
        .collect()
}

fn generation(db: &rusqlite::Connection, node: &str) -> i64 {
    db.query_row(
        "SELECT generation FROM node_desired WHERE node = ?1",
        [node],
        |row| row.get(0),
    )
    .expect("the node's desired state")
}

#[test]
fn a_release_key_rotation_reaches_nodes_with_and_without_a_target_and_new_releases_install() {
    let dir = tempfile::tempdir().expect("dir");
    let first = next_version(1);
    let second = next_version(2);
    let (fleet, pids) =
        fleet_with_a_container("relkey", &[("rk-on", "case=on"), ("rk-off", "case=off")]);
    let hub = &fleet.hub;

    // rk-on upgrades to `first` and proves it; rk-off has no target.
    let first_file = file(dir.path(), "first", &release_bytes(&first));
    hub.ok(&[
        "agent-release",
        "add",
        text(&first_file),
        "--version",
        &first,
    ]);
    hub.ok(&["agent", "upgrade", "--to", &first, "-l", "case=on"]);
    fleet.wait_for("rk-on on the first release, proven", CONVERGE, || {
        (agent_status(hub)["rk-on"].0 == first
            && launch_good(&fleet, "rk-on").is_some_and(|g| g.ends_with(&first)))
        .then_some(())
    });

    let listed = hub.ok(&["key", "list"]);
    let before = release_lines(&listed);
    assert_eq!(before.len(), 1, "{listed}");
    let (old_id, old_state) = before[0].clone();
    assert_eq!(old_state, "active", "{listed}");
    let db = rusqlite::Connection::open(hub.data_dir.join("hub.db")).expect("hub.db");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let public = |state: &str| -> String {
        db.query_row(
            "SELECT public FROM release_keys WHERE state = ?1 ORDER BY changed_at DESC",
            [state],
            |row| row.get(0),
        )
        .expect("a release key")
    };
    let old = public("active");
    for node in ["rk-on", "rk-off"] {
        assert_eq!(
            trusted(&fleet, node)
                .lines()
                .filter(|l| l.starts_with("ed25519:"))
                .collect::<Vec<_>>(),
            [old.as_str()],
            "{node}"
        );
    }
    let off_generation = generation(&db, "rk-off");
    let on_generation = generation(&db, "rk-on");

    // The rotation: one step; the state keys are not touched.
    let refused = hub.cli(&["key", "rotate", "--release", "--finish"]);
    assert!(!refused.status.success(), "{refused:?}");
    let rotated = hub.ok(&["key", "rotate", "--release"]);
    let after = release_lines(&rotated);
    assert_eq!(after.len(), 2, "{rotated}");
    assert!(
        after.contains(&(old_id.clone(), "retired".to_string())),
        "{rotated}"
    );
    let new_id = after
        .iter()
        .find(|(_, state)| state == "active")
        .map(|(id, _)| id.clone())
        .expect("a new active release key");
    assert_ne!(new_id, old_id);
    let state_keys: Vec<&str> = rotated.lines().filter(|l| l.contains(" state ")).collect();
    assert_eq!(state_keys.len(), 1, "{rotated}");
    let new = public("active");
    let pkcs8: Option<Vec<u8>> = db
        .query_row(
            "SELECT pkcs8 FROM release_keys WHERE public = ?1",
            [&old],
            |row| row.get(0),
        )
        .expect("the old key's row");
    assert!(pkcs8.is_none(), "the old private half is erased");

    // rk-on, which runs its target, takes the new key alone; rk-off keeps the old one.
    let (_, took) = fleet.wait_for("rk-on trusts the new release key", CONVERGE, || {
        let keys = trusted(&fleet, "rk-on");
        (keys.contains(&new) && !keys.contains(&old)).then_some(())
    });
    eprintln!(
        "[rk-on took the new release key {} ms after the rotation]",
        took.as_millis()
    );
    assert!(generation(&db, "rk-on") > on_generation);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        generation(&db, "rk-off"),
        off_generation,
        "a node with no target is not sent a new state"
    );
    assert!(trusted(&fleet, "rk-off").contains(&old));
    assert!(!trusted(&fleet, "rk-off").contains(&new));

    // A release added after the rotation is signed by the new key alone; both nodes install
    // it (rk-off through the bridge), and the first release was signed again too.
    let second_file = file(dir.path(), "second", &release_bytes(&second));
    hub.ok(&[
        "agent-release",
        "add",
        text(&second_file),
        "--version",
        &second,
    ]);
    let signatures: Vec<Vec<u8>> = db
        .prepare("SELECT signature FROM agent_releases")
        .and_then(|mut s| s.query_map([], |row| row.get(0))?.collect())
        .expect("signatures");
    assert_eq!(signatures.len(), 2);
    for signature in &signatures {
        assert_eq!(
            shoal_model::hex::encode(&signature[..8]),
            new_id,
            "every release is signed by the new key"
        );
    }
    hub.ok(&["agent", "upgrade", "--to", &second, "--all-at-once"]);
    fleet.wait_for(
        "both nodes on the second release, proven",
        CONVERGE * 2,
        || {
            let status = agent_status(hub);
            ["rk-on", "rk-off"]
                .iter()
                .all(|n| {
                    status[*n].0 == second
                        && launch_good(&fleet, n).is_some_and(|g| g.ends_with(&second))
                })
                .then_some(())
        },
    );
    for node in ["rk-on", "rk-off"] {
        let keys = trusted(&fleet, node);
        assert!(
            keys.contains(&new) && !keys.contains(&old),
            "{node}: {keys}"
        );
    }
    for (node, pid) in &pids {
        assert_eq!(
            &fleet.pids(node)["steady/main"],
            pid,
            "{node}'s container restarted"
        );
    }
}
