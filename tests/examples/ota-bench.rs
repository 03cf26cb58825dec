//! The over-the-air figures of `bench/ota`: a hub and N real agents (20 by default), each in
//! its own network namespace behind `shoal-agent launch` with a container running, upgraded
//! to a release of this tree's static agent (the same code marked as another version):
//! first every node at once (`--all-at-once`), then with the default waves (a canary, then
//! 25% at a time). Probation is shortened to `--stable-for 3s` (the default is 60 s, which
//! would only add a minute per wave). Prints the time from `shoal agent upgrade` to every node
//! running the new agent, proven, and the bytes each node's link carried for its update
//! (both directions, counted on its veth), beside the same binary fetched by `curl` over the
//! same link (a plain HTTPS download, the floor). Every container must keep its PID. Prints
//! `RESULT` lines. Root; run through `bench/ota`.

use std::collections::BTreeMap;
use std::time::Duration;

use shoal_tests::agent::shell_workload;
use shoal_tests::fleet::{Fleet, Settings};
use shoal_tests::release::{agent_status, next_version, release_bytes};

/// How long the bench waits for one upgrade of the whole fleet.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(600);

/// Bytes through `veth` so far, both directions (its counters in the root namespace).
fn link_bytes(veth: &str) -> u64 {
    ["rx_bytes", "tx_bytes"]
        .iter()
        .map(|c| {
            std::fs::read_to_string(format!("/sys/class/net/{veth}/statistics/{c}"))
                .ok()
                .and_then(|t| t.trim().parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {c} counter for {veth}"))
        })
        .sum()
}

fn counters(fleet: &Fleet, names: &[String]) -> BTreeMap<String, u64> {
    names
        .iter()
        .map(|n| (n.clone(), link_bytes(&fleet.node(n).veth)))
        .collect()
}

/// Upgrades every node to `version` with `flags`; returns the time until each runs it,
/// proven, and the link bytes per node meanwhile.
fn upgrade(fleet: &Fleet, names: &[String], version: &str, flags: &[&str]) -> (Duration, Vec<u64>) {
    let before = counters(fleet, names);
    let mut args = vec!["agent", "upgrade", "--to", version];
    args.extend_from_slice(flags);
    fleet.hub.ok(&args);
    let (_, took) = fleet.wait_for(
        &format!("every node on agent {version}"),
        UPGRADE_TIMEOUT,
        || {
            let status = agent_status(&fleet.hub);
            let failed: Vec<_> = status.iter().filter(|(_, s)| s.1 == "failed").collect();
            assert!(failed.is_empty(), "failed: {failed:?}");
            names
                .iter()
                .all(|n| {
                    status
                        .get(n)
                        .is_some_and(|s| s.0 == version && s.1 == "updated")
                })
                .then_some(())
        },
    );
    let after = counters(fleet, names);
    let bytes = names.iter().map(|n| after[n] - before[n]).collect();
    (took, bytes)
}

fn mean(values: &[u64]) -> u64 {
    values.iter().sum::<u64>() / u64::try_from(values.len().max(1)).unwrap_or(1)
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(20, |n| n.parse().expect("usage: ota-bench [NODES]"));
    let names: Vec<String> = (0..count).map(|i| format!("ota-{i:02}")).collect();
    let list: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "")).collect();
    let settings = Settings {
        launch: Some((Duration::from_secs(60), Duration::from_secs(3))),
        ..Settings::default()
    };
    let mut fleet = Fleet::start_with("otabench", &list, settings);
    fleet.apply(
        "steady",
        &shell_workload(
            "steady",
            "while true; do sleep 1; done",
            "  placement: { mode: every }\n",
            "",
        ),
    );
    let (pids, _) = fleet.wait_for("steady running everywhere", UPGRADE_TIMEOUT, || {
        let pids: Vec<String> = names
            .iter()
            .filter_map(|n| fleet.pids(n).get("steady/main").cloned())
            .collect();
        (pids.len() == count).then_some(pids)
    });

    let dir = tempfile::tempdir().expect("dir");
    let versions = [next_version(1), next_version(2)];
    let mut size = 0;
    for version in &versions {
        let bytes = release_bytes(version);
        size = bytes.len() as u64;
        let path = dir.path().join(format!("shoal-agent-{version}"));
        std::fs::write(&path, &bytes).expect("write the release");
        fleet.hub.ok(&[
            "agent-release",
            "add",
            path.to_str().expect("utf-8"),
            "--version",
            version,
        ]);
    }

    let (at_once, at_once_bytes) = upgrade(&fleet, &names, &versions[0], &["--all-at-once"]);
    println!(
        "all at once: {count} nodes on {} in {} ms",
        versions[0],
        at_once.as_millis()
    );
    let (waves, waves_bytes) = upgrade(&fleet, &names, &versions[1], &[]);
    println!(
        "canary 1, then waves of 25%: {count} nodes on {} in {} ms",
        versions[1],
        waves.as_millis()
    );
    let restarted = names
        .iter()
        .zip(&pids)
        .filter(|(n, pid)| fleet.pids(n).get("steady/main") != Some(*pid))
        .count();
    assert_eq!(
        restarted, 0,
        "every container keeps its PID through both upgrades"
    );

    // The floor: the same binary by a plain HTTPS GET over the first node's link, with its
    // own credentials.
    let first = &names[0];
    let enrollment = std::fs::read_to_string(fleet.agent(first).root.join("data/enrollment.toml"))
        .expect("enrollment.toml");
    let password = enrollment
        .lines()
        .find_map(|l| l.strip_prefix("password = "))
        .map(|p| p.trim_matches('"').to_string())
        .expect("a password");
    let digest = shoal_model::hex::sha256_hex(&release_bytes(&versions[1]));
    let before = link_bytes(&fleet.node(first).veth);
    let curl = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &fleet.node(first).netns,
            "curl",
            "-sS",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{size_download}", "--cacert"])
        .arg(fleet.hub.ca_path())
        .args(["-u", &format!("{first}:{password}")])
        .arg(format!("{}/v1/agent-binaries/{digest}", fleet.hub.api))
        .output()
        .expect("run curl (apt-get install curl)");
    assert!(
        curl.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&curl.stderr)
    );
    let downloaded: u64 = String::from_utf8_lossy(&curl.stdout)
        .trim()
        .parse()
        .expect("curl's size_download");
    assert_eq!(downloaded, size, "curl got the whole binary");
    let curl_bytes = link_bytes(&fleet.node(first).veth) - before;
    fleet.clean_up();

    let per_update = mean(&at_once_bytes);
    let per_wave_update = mean(&waves_bytes);
    println!("nodes: {count}; release: {size} bytes; curl over the same link: {curl_bytes} bytes");
    println!(
        "per node and update: {per_update} bytes at once, {per_wave_update} in waves (max {} and {})",
        at_once_bytes.iter().max().unwrap_or(&0),
        waves_bytes.iter().max().unwrap_or(&0)
    );
    println!(
        "RESULT ota_{count}_all_at_once_ms={} ms",
        at_once.as_millis()
    );
    println!("RESULT ota_{count}_waves_ms={} ms", waves.as_millis());
    println!("RESULT ota_bytes_per_update={per_update} bytes");
    println!("RESULT ota_release_bytes={size} bytes");
    println!("RESULT curl_download_bytes={curl_bytes} bytes");
    println!(
        "RESULT ota_bytes_vs_curl={:.3} ratio",
        per_update as f64 / curl_bytes.max(1) as f64
    );
    println!("RESULT ota_restarts=0 containers");
}
