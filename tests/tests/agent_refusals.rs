//! Agent self-update (issue 15), what a node refuses and what it survives, through a real hub
//! and agents in network namespaces started by their launchers:
//!
//! - a release whose signature was changed in the hub's database, a binary for another
//!   architecture served under a release signed for x86_64, and a target below the signed
//!   minimum of a release the node has proven: each refused before anything is staged, shown
//!   in `shoal agent status` and as an `AgentUpdateFailed` event on the hub, once; the node
//!   keeps its agent and its containers;
//! - the link cut in the middle of a download: the download resumes by a range once the link
//!   is back and the node ends on the new agent, its containers untouched.
//!
//! The helpers below are a small copy of `agent_update.rs`'s (that file is being changed at the
//! same time; moving them into `tests/src` is left for when both have settled).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::agent::{cell, Row};
use shoal_tests::fleet::{Fleet, CONVERGE};
use shoal_tests::hub::Hub;
use shoal_tests::release::{
    agent_status, file, fleet_with_a_container, next_version, release_bytes, text,
};

fn launch_state(fleet: &Fleet, node: &str) -> Value {
    let path = fleet.agent(node).root.join("data/bin/launch.json");
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

/// The same container, not restarted.
fn untouched(rows: &[Row], pid: &str) {
    assert_eq!(cell(rows, "steady", "main", "PID"), pid, "{rows:?}");
    assert_eq!(cell(rows, "steady", "main", "RESTARTS"), "0", "{rows:?}");
    assert_eq!(cell(rows, "steady", "main", "STATE"), "Running", "{rows:?}");
}

/// The hub's `AgentUpdateFailed` events of `node` whose message holds `needle`.
fn refusal_events(fleet: &Fleet, node: &str, needle: &str) -> Vec<String> {
    fleet
        .hub_events(node)
        .into_iter()
        .filter(|e| e["reason"] == "AgentUpdateFailed")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .filter(|m| m.contains(needle))
        .collect()
}

#[test]
fn forged_foreign_and_below_minimum_releases_are_refused_with_events_and_change_nothing() {
    let dir = tempfile::tempdir().expect("dir");
    let own = next_version(0);
    let floor = next_version(1);
    let good = next_version(2);
    let forged = next_version(3);
    let foreign = next_version(4);
    let (fleet, pids) = fleet_with_a_container(
        "refuse",
        &[
            ("ref-sig", "case=sig"),
            ("ref-arch", "case=arch"),
            ("ref-min", "case=min"),
        ],
    );
    let hub = &fleet.hub;

    // The good release carries a minimum; the agent this fleet runs is released too (below it).
    let good_file = file(dir.path(), "good", &release_bytes(&good));
    let out = hub.ok(&[
        "agent-release",
        "add",
        text(&good_file),
        "--version",
        &good,
        "--minimum",
        &floor,
    ]);
    assert!(out.contains(&format!("minimum {floor}")), "{out}");
    let own_file = file(dir.path(), "own", &release_bytes(&own));
    hub.ok(&["agent-release", "add", text(&own_file), "--version", &own]);
    let forged_file = file(dir.path(), "forged", &release_bytes(&forged));
    hub.ok(&[
        "agent-release",
        "add",
        text(&forged_file),
        "--version",
        &forged,
    ]);
    // An aarch64 executable (the agent's ELF header says machine 183), released as such.
    let mut arm = release_bytes(&foreign);
    arm[18..20].copy_from_slice(&183u16.to_le_bytes());
    let arm_file = file(dir.path(), "arm", &arm);
    let out = hub.ok(&[
        "agent-release",
        "add",
        text(&arm_file),
        "--version",
        &foreign,
    ]);
    assert!(out.contains("for aarch64 added"), "{out}");
    let listed = hub.ok(&["agent-release", "list"]);
    assert!(listed.contains("MINIMUM"), "{listed}");
    let line = listed
        .lines()
        .find(|l| l.starts_with(&good))
        .expect("the good release listed");
    assert!(line.contains(&floor), "{listed}");

    let db = rusqlite::Connection::open(hub.data_dir.join("hub.db")).expect("hub.db");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    // 1. One bit of the forged release's signature changed.
    let mut signature: Vec<u8> = db
        .query_row(
            "SELECT signature FROM agent_releases WHERE version = ?1",
            [&forged],
            |row| row.get(0),
        )
        .expect("the forged release's signature");
    signature[20] ^= 1;
    let changed = db
        .execute(
            "UPDATE agent_releases SET signature = ?1 WHERE version = ?2",
            rusqlite::params![signature, forged],
        )
        .expect("change the signature");
    assert_eq!(changed, 1);
    // 2. The aarch64 bytes under a statement for x86_64, signed with the hub's own release
    //    key (a release key that signed the wrong file, or a hub that lists it wrongly).
    let pkcs8: Vec<u8> = db
        .query_row(
            "SELECT pkcs8 FROM release_keys WHERE state = 'active'",
            [],
            |row| row.get(0),
        )
        .expect("the release key");
    let key = shoal_model::wire::signing::SigningKey::from_pkcs8(&pkcs8).expect("key");
    let statement = shoal_model::release::AgentRelease {
        version: shoal_model::release::parse_version(&foreign).expect("v"),
        arch: shoal_model::elf::Arch::X86_64,
        sha256: shoal_model::hex::sha256(&arm),
        size: arm.len() as u64,
        minimum: None,
    };
    let changed = db
        .execute(
            "UPDATE agent_releases SET arch = 'x86_64', signature = ?1 WHERE version = ?2",
            rusqlite::params![statement.sign(&key), foreign],
        )
        .expect("relabel the release");
    assert_eq!(changed, 1);

    // The good release on ref-min; the forged and the foreign one on the others, at once.
    let start = Instant::now();
    hub.ok(&["agent", "upgrade", "--to", &good, "-l", "case=min"]);
    hub.ok(&["agent", "upgrade", "--to", &forged, "-l", "case=sig"]);
    hub.ok(&["agent", "upgrade", "--to", &foreign, "-l", "case=arch"]);
    let cases = [
        ("ref-sig", forged.clone(), "release signature"),
        ("ref-arch", foreign.clone(), "it is built for aarch64"),
    ];
    let mut took = BTreeMap::new();
    fleet.wait_for(
        "both refusals shown and recorded on the hub",
        CONVERGE,
        || {
            let status = agent_status(hub);
            for (node, version, needle) in &cases {
                let (running, state, detail) = &status[*node];
                if !took.contains_key(node)
                    && running == &own
                    && state == "failed"
                    && detail.contains(needle)
                    && refusal_events(&fleet, node, &format!("agent {version}"))
                        .iter()
                        .any(|m| m.contains(needle))
                {
                    took.insert(*node, start.elapsed());
                }
            }
            (took.len() == cases.len()).then_some(())
        },
    );
    for (node, elapsed) in &took {
        eprintln!(
            "[{node}: refusal status and event on the hub after {} ms]",
            elapsed.as_millis()
        );
    }

    // ref-min proves the good release; its launcher keeps it and the node keeps the floor.
    fleet.wait_for("ref-min on the good release, proven", CONVERGE, || {
        let state = launch_state(&fleet, "ref-min");
        let kept = state["good"]
            .as_str()
            .is_some_and(|g| g.ends_with(&format!("shoal-agent-{good}")))
            && state.get("trial").is_none();
        let floor_file = fleet.agent("ref-min").root.join("data/agent-floor");
        let floor_text = std::fs::read_to_string(floor_file).unwrap_or_default();
        (kept
            && agent_status(hub)["ref-min"].0 == good
            && floor_text.contains(&format!("minimum={floor}\nrelease={good}\n")))
        .then_some(())
    });
    eprintln!(
        "[ref-min: {good} proven, floor {floor} kept, {} ms after the upgrade]",
        start.elapsed().as_millis()
    );

    // 3. The hub asks ref-min to go back below the floor: refused, nothing downloaded.
    hub.ok(&["agent", "upgrade", "--to", &own, "-l", "case=min"]);
    let below = "below this node's minimum agent version";
    let (_, refused_in) = fleet.wait_for("the downgrade refused on ref-min", CONVERGE, || {
        let (running, state, detail) = agent_status(hub)["ref-min"].clone();
        (running == good
            && state == "failed"
            && detail.contains(below)
            && !refusal_events(&fleet, "ref-min", below).is_empty())
        .then_some(())
    });
    eprintln!(
        "[ref-min: downgrade below the floor refused, on the hub after {} ms]",
        refused_in.as_millis()
    );

    // Not tried again: a few status rounds later, still one event per refusal, nothing
    // fetched or staged, each agent still the one it was, each container untouched.
    std::thread::sleep(Duration::from_secs(12));
    assert_eq!(refusal_events(&fleet, "ref-min", below).len(), 1);
    assert_eq!(
        refusal_events(&fleet, "ref-sig", "release signature").len(),
        1
    );
    assert_eq!(
        refusal_events(&fleet, "ref-arch", "built for aarch64").len(),
        1
    );
    let status = agent_status(hub);
    assert_eq!(status["ref-min"].0, good, "{status:?}");
    assert_eq!(status["ref-sig"].0, own, "{status:?}");
    assert_eq!(status["ref-arch"].0, own, "{status:?}");
    let bin = |node: &str| fleet.agent(node).root.join("data/bin");
    for (node, version) in [
        ("ref-sig", &forged),
        ("ref-arch", &foreign),
        ("ref-min", &own),
    ] {
        for name in [
            format!("shoal-agent-{version}"),
            format!("shoal-agent-{version}.unverified"),
        ] {
            assert!(!bin(node).join(&name).exists(), "{node}: {name} is there");
        }
        let state = launch_state(&fleet, node);
        assert!(state.get("trial").is_none(), "{node}: {state}");
    }
    let log = hub.log();
    let downloads = |node: &str| {
        log.lines()
            .filter(|l| l.contains("agent binary download") && l.contains(node))
            .count()
    };
    assert_eq!(
        downloads("ref-sig"),
        0,
        "a forged release is not downloaded"
    );
    assert_eq!(
        downloads("ref-arch"),
        1,
        "the foreign bytes are fetched once, then refused"
    );
    for (node, pid) in &pids {
        untouched(&fleet.ps(node), pid);
    }
}

/// The offsets the hub logged for `node`'s downloads (`from=N` of "agent binary download").
fn download_offsets(hub: &Hub, node: &str) -> Vec<u64> {
    hub.log()
        .lines()
        .filter(|l| l.contains("agent binary download") && l.contains(node))
        .filter_map(|l| {
            let at = l.find("from=")? + 5;
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

fn tc(args: &[&str]) {
    let status = std::process::Command::new("tc")
        .args(args)
        .status()
        .expect("run tc (iproute2)");
    assert!(status.success(), "tc {}", args.join(" "));
}

#[test]
fn a_download_cut_off_midway_resumes_when_the_link_returns_and_the_node_ends_on_the_new_agent() {
    let dir = tempfile::tempdir().expect("dir");
    let next = next_version(5);
    let (fleet, pids) = fleet_with_a_container("cut", &[("cut-a", "")]);
    let hub = &fleet.hub;
    let bytes = release_bytes(&next);
    let size = bytes.len() as u64;
    let binary = file(dir.path(), "next", &bytes);
    hub.ok(&["agent-release", "add", text(&binary), "--version", &next]);

    // Slow what the hub sends the node (its veth's egress in the root namespace) so the
    // download takes several seconds: 8 Mbit/s by a token bucket (this kernel has no netem).
    let veth = fleet.node("cut-a").veth.clone();
    tc(&[
        "qdisc", "add", "dev", &veth, "root", "tbf", "rate", "8mbit", "burst", "32kbit", "latency",
        "400ms",
    ]);
    let part = fleet
        .agent("cut-a")
        .root
        .join(format!("data/bin/shoal-agent-{next}.unverified"));
    let start = Instant::now();
    hub.ok(&["agent", "upgrade", "--to", &next]);
    let size_now = || std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
    fleet.wait_for("the download under way (1 MiB in)", CONVERGE, || {
        (size_now() >= 1 << 20).then_some(())
    });
    fleet.cut("cut-a");
    let at_cut = size_now();
    assert!(
        at_cut < size,
        "the download ended before the cut: {at_cut} of {size}"
    );
    eprintln!(
        "[cut-a: cut {} ms after the upgrade, at {at_cut} of {size} bytes]",
        start.elapsed().as_millis()
    );
    // Longer than a stalled read is waited for (30 s): the connection is given up on.
    let cut_for = Duration::from_secs(35);
    std::thread::sleep(cut_for);
    let during = size_now();
    assert!(
        during >= at_cut && during < size,
        "the part file keeps its bytes and does not complete while cut: {during}"
    );
    fleet.restore("cut-a");
    let back = Instant::now();
    tc(&["qdisc", "del", "dev", &veth, "root"]);
    let (_, resumed) = fleet.wait_for("the download resumed by a range", CONVERGE, || {
        let offsets = download_offsets(hub, "cut-a");
        offsets
            .iter()
            .any(|from| *from >= at_cut.min(during))
            .then_some(offsets)
    });
    let offsets = download_offsets(hub, "cut-a");
    eprintln!(
        "[cut-a: resumed {} ms after the link came back; the hub saw downloads from {offsets:?}]",
        resumed.as_millis()
    );
    assert_eq!(offsets[0], 0, "{offsets:?}");
    assert!(offsets.len() >= 2 && offsets[1] > 0, "{offsets:?}");
    fleet.wait_for("cut-a on the new agent, proven", CONVERGE, || {
        let state = launch_state(&fleet, "cut-a");
        (agent_status(hub)["cut-a"] == (next.clone(), "updated".into(), String::new())
            && state["good"]
                .as_str()
                .is_some_and(|g| g.ends_with(&format!("shoal-agent-{next}")))
            && state.get("trial").is_none())
        .then_some(())
    });
    eprintln!(
        "[cut-a: on {next} and proven {} ms after the link came back, {} ms after the upgrade]",
        back.elapsed().as_millis(),
        start.elapsed().as_millis()
    );
    let staged = fleet
        .agent("cut-a")
        .root
        .join(format!("data/bin/shoal-agent-{next}"));
    assert_eq!(
        std::fs::read(&staged).expect("the new agent"),
        bytes,
        "the whole release"
    );
    assert!(!part.exists(), "the unverified file was renamed into place");
    untouched(&fleet.ps("cut-a"), &pids["cut-a"]);
}
