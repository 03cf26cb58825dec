//! The fleet under real failures: a hub with its embedded broker and several real agents, each
//! in its own network namespace with real containers (see `shoal_tests::fleet`). Links are
//! cut, processes killed with SIGKILL, nodes power-cut; every test asserts what an operator
//! sees through `shoal get ... -o json`, the hub's JSON behind `shoal describe`, and
//! `shoal-agent ps`, and prints its timings as `[what: N ms]`.
//!
//! Fleets run one at a time (the harness holds a process-wide lock), so the file is as fast
//! with `--test-threads=1` as without.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::agent::{cell, shell_workload, Row};
use shoal_tests::fleet::{now_ms, report, Fleet, CONVERGE};

/// A container that runs until stopped (at once on SIGTERM, so moves and deletes are quick).
const FOREVER: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";

/// Runs until stopped and allocates 64 MiB on SIGUSR1: past a 16 MiB limit, an OOM kill.
const HOG: &str = "hog() { a=$(busybox head -c 67108864 /dev/zero | busybox tr '\\0' x); }; trap hog USR1; trap 'exit 0' TERM; while true; do sleep 1; done";

/// Says its name and version in its log, then runs until stopped.
fn versioned(name: &str, version: u32) -> String {
    format!("echo {name} v{version}; {FOREVER}")
}

fn running(rows: &[Row], workload: &str) -> bool {
    cell(rows, workload, "main", "STATE") == "Running"
}

fn has(rows: &[Row], workload: &str) -> bool {
    rows.iter()
        .any(|r| r.get("WORKLOAD").map(String::as_str) == Some(workload))
}

/// `shoal get workloads -o json` shows `revision` ready on every node it wants.
fn ready(workload: &Value, revision: u64) -> bool {
    workload["revision"] == revision
        && workload["ready"] == workload["wanted"]
        && workload["wanted"] != 0
}

fn nodes_of(workload: &Value) -> Vec<String> {
    let mut nodes: Vec<String> = workload["nodes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|n| n.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    nodes.sort();
    nodes
}

/// Nodes whose `shoal-agent ps` shows `workload` running.
fn running_on(fleet: &Fleet, workload: &str) -> Vec<String> {
    fleet
        .nodes
        .iter()
        .filter(|n| running(&n.agent.ps(), workload))
        .map(|n| n.name.clone())
        .collect()
}

/// A PID snapshot of the given workloads' containers on `node`.
fn pids_of(fleet: &Fleet, node: &str, workloads: &[&str]) -> BTreeMap<String, String> {
    only(&fleet.pids(node), workloads)
}

/// The entries of a PID snapshot that belong to `workloads`.
fn only(pids: &BTreeMap<String, String>, workloads: &[&str]) -> BTreeMap<String, String> {
    pids.iter()
        .filter(|(key, _)| workloads.iter().any(|w| key.starts_with(&format!("{w}/"))))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// A workload on every node (matching `selector`), each revision given to every node at
/// once: these tests are about failures, not rollouts (`tests/rollout.rs` is).
fn every(name: &str, selector: &str, script: &str) -> String {
    shell_workload(
        name,
        script,
        &format!(
            "  placement: {{ mode: every{selector} }}\n  rollout: {{ maxUnavailable: 100%, healthyFor: 0s }}\n"
        ),
        "",
    )
}

// ---- helpers for logs, events and PIDs ----

/// The bytes of a log written so far: what comes after it is "since now".
fn offset(log: &str) -> usize {
    log.len()
}

fn since(log: &str, offset: usize) -> &str {
    log.get(offset..).unwrap_or("")
}

/// The events an agent logged (`shoal::event` lines), as `WORKLOAD/CONTAINER message`.
fn logged_events(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.split_once(" shoal::event: "))
        .map(|(_, rest)| {
            let text = rest.rsplit_once(" reason=").map_or(rest, |(text, _)| text);
            text.trim().to_string()
        })
        .collect()
}

/// An event of the hub's JSON in the words the agent logged it.
fn event_text(event: &Value) -> String {
    let at = match (event["workload"].as_str(), event["container"].as_str()) {
        (Some(w), Some(c)) => format!("{w}/{c}"),
        (Some(w), None) => w.to_string(),
        _ => String::new(),
    };
    format!("{at} {}", event["message"].as_str().unwrap_or_default())
        .trim()
        .to_string()
}

fn sequence(event: &Value) -> u64 {
    event["sequence"].as_u64().unwrap_or(0)
}

/// The newest event sequence number the hub has from `node` (0 before any).
fn last_sequence(fleet: &Fleet, node: &str) -> u64 {
    fleet
        .hub_events(node)
        .iter()
        .map(sequence)
        .max()
        .unwrap_or(0)
}

/// The sequence numbers of the statuses the hub received from `node`, in arrival order, from
/// the hub's debug log (`status node=N sequence=S events=E`).
fn statuses_received(hub_log: &str, node: &str) -> Vec<u64> {
    let needle = format!(" status node={node} sequence=");
    hub_log
        .lines()
        .filter_map(|line| line.split_once(&needle))
        .filter_map(|(_, rest)| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Seconds since midnight of a log line's RFC 3339 timestamp.
fn timestamp(line: &str) -> Option<f64> {
    let time = line.get(11..26)?;
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let m: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    Some(h * 3600.0 + m * 60.0 + s)
}

/// Connection attempts in an agent's log: successful ones (with their time) and failed ones.
/// The agent logs `connected to the hub's broker` on every CONNACK, a warning for a failed
/// attempt at most once a minute and a debug line (`reconnect failed`) for the others.
fn connection_attempts(log: &str) -> (Vec<f64>, usize) {
    let mut connected = Vec::new();
    let mut failed = 0;
    for line in log.lines() {
        if line.contains("connected to the hub's broker") {
            connected.extend(timestamp(line));
        } else if line.contains("cannot reach the hub's broker")
            || line.contains("reconnect failed")
        {
            failed += 1;
        }
    }
    (connected, failed)
}

/// `shoal get workloads -o json` shows every one of `names` ready at `revision`.
fn all_ready(fleet: &Fleet, names: &[&str], revision: u64) -> Option<()> {
    let workloads = fleet.hub.get("workloads");
    names
        .iter()
        .all(|name| {
            workloads
                .iter()
                .any(|w| w["name"] == *name && ready(w, revision))
        })
        .then_some(())
}

/// What the node's containers of `workload` printed.
fn logs(fleet: &Fleet, node: &str, workload: &str) -> String {
    fleet.agent(node).ok(&["logs", workload])
}

fn kill(signal: &str, pid: &str) {
    let status = std::process::Command::new("kill")
        .args([signal, pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// The PID of `workload`'s main container on `node`, which must be running.
fn pid(fleet: &Fleet, node: &str, workload: &str) -> String {
    let rows = fleet.ps(node);
    assert!(
        running(&rows, workload),
        "{workload} is not running on {node}: {rows:?}"
    );
    cell(&rows, workload, "main", "PID")
}

// ---- the scenarios ----

#[test]
fn placement_follows_labels_and_relabelling_moves_workloads() {
    let mut fleet = Fleet::start(
        "place",
        &[
            ("place-a", "role=gateway,site=north"),
            ("place-b", "role=gateway,site=south"),
            ("place-c", "role=sensor,site=north"),
        ],
    );
    let start = Instant::now();
    fleet.apply(
        "gw",
        &every("gw", ", nodeSelector: { role: gateway }", FOREVER),
    );
    fleet.apply(
        "pair",
        &shell_workload(
            "pair",
            FOREVER,
            "  placement: { replicas: 2, spread: site }\n",
            "",
        ),
    );
    let (gw, _) = fleet.wait_for("gw ready on the two gateways", CONVERGE, || {
        fleet.hub.workload("gw").filter(|w| ready(w, 1))
    });
    let (pair, _) = fleet.wait_for("pair ready on two nodes", CONVERGE, || {
        fleet.hub.workload("pair").filter(|w| ready(w, 1))
    });
    report("apply to ready on every matching node", start.elapsed());
    assert_eq!(nodes_of(&gw), ["place-a", "place-b"]);
    assert_eq!(running_on(&fleet, "gw"), ["place-a", "place-b"]);

    // Two replicas spread over `site`: one in the north, one in the south.
    let pair_nodes = nodes_of(&pair);
    assert_eq!(pair_nodes.len(), 2, "{pair}");
    let sites: Vec<String> = pair_nodes
        .iter()
        .map(|n| {
            fleet.hub_node(n)["labels"]["site"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    assert_ne!(sites[0], sites[1], "both replicas on one site: {pair}");
    assert_eq!(running_on(&fleet, "pair"), pair_nodes);

    // Relabelling moves `gw`: c becomes a gateway, a stops being one; b is left alone.
    let b_before = pids_of(&fleet, "place-b", &["gw", "pair"]);
    let pair_before: Vec<_> = pair_nodes
        .iter()
        .map(|n| pids_of(&fleet, n, &["pair"]))
        .collect();
    let start = Instant::now();
    fleet.hub.ok(&["node", "label", "place-c", "role=gateway"]);
    fleet.hub.ok(&["node", "label", "place-a", "role=sensor"]);
    let (gw, took) = fleet.wait_for("gw to follow the labels", CONVERGE, || {
        fleet
            .hub
            .workload("gw")
            .filter(|w| nodes_of(w) == ["place-b", "place-c"] && ready(w, 1))
    });
    fleet.wait_for("gw stopped on place-a", CONVERGE, || {
        (!has(&fleet.ps("place-a"), "gw")).then_some(())
    });
    report("relabel to moved", start.elapsed());
    report("relabel to ready on the new node", took);
    assert_eq!(gw["wanted"], 2);
    assert_eq!(running_on(&fleet, "gw"), ["place-b", "place-c"]);
    assert_eq!(
        pids_of(&fleet, "place-b", &["gw", "pair"]),
        b_before,
        "a node whose labels did not change restarted containers"
    );
    for (node, before) in pair_nodes.iter().zip(&pair_before) {
        assert_eq!(
            &pids_of(&fleet, node, &["pair"]),
            before,
            "relabelling restarted pair on {node}"
        );
    }
    fleet.clean_up();
}

#[test]
fn a_partitioned_node_heals_itself_and_reports_everything_when_the_link_returns() {
    let mut fleet = Fleet::start(
        "part",
        &[("part-a", "hog=allowed"), ("part-b", ""), ("part-c", "")],
    );
    let keep_alive = fleet.settings.keep_alive;
    fleet.apply("calm", &every("calm", "", FOREVER));
    fleet.apply("victim", &every("victim", "", FOREVER));
    fleet.apply("moving", &every("moving", "", &versioned("moving", 1)));
    fleet.apply(
        "hog",
        &shell_workload(
            "hog",
            HOG,
            "  placement: { mode: every, nodeSelector: { hog: allowed } }\n",
            "      resources: { memory: 16Mi }\n",
        ),
    );
    let all = ["calm", "victim", "moving", "hog"];
    fleet.wait_for("every workload ready", CONVERGE, || {
        all_ready(&fleet, &all, 1)
    });
    let before: BTreeMap<&str, _> = ["part-a", "part-b", "part-c"]
        .iter()
        .map(|n| (*n, fleet.pids(n)))
        .collect();
    let last_before_cut = last_sequence(&fleet, "part-a");
    let a_log = offset(&fleet.agent("part-a").log());

    // The cut: the hub notices within twice the keep-alive; A's containers keep running.
    fleet.cut("part-a");
    let took = fleet.wait_online("part-a", false, CONVERGE);
    report("cut to offline at the hub", took);
    assert!(
        took <= keep_alive * 2,
        "the hub took {took:?} to show part-a offline, more than twice the keep-alive ({keep_alive:?})"
    );
    assert_eq!(
        fleet.pids("part-a"),
        before["part-a"],
        "part-a's containers must keep running through the cut"
    );

    // A container killed while cut is restarted by A alone.
    let victim = pid(&fleet, "part-a", "victim");
    let start = Instant::now();
    kill("-9", &victim);
    let (rows, _) = fleet.wait_for("victim restarted on part-a while cut", CONVERGE, || {
        let rows = fleet.ps("part-a");
        (running(&rows, "victim") && cell(&rows, "victim", "main", "PID") != victim).then_some(rows)
    });
    report(
        "self-heal of a killed container while offline",
        start.elapsed(),
    );
    assert_eq!(cell(&rows, "victim", "main", "RESTARTS"), "1");
    assert_eq!(cell(&rows, "victim", "main", "LAST EXIT"), "SIGKILL");

    // An OOM kill while cut is handled by A alone.
    let start = Instant::now();
    kill("-USR1", &pid(&fleet, "part-a", "hog"));
    let (rows, _) = fleet.wait_for("hog OOM-killed and restarted on part-a", CONVERGE, || {
        let rows = fleet.ps("part-a");
        (running(&rows, "hog") && cell(&rows, "hog", "main", "RESTARTS").contains("1 OOM"))
            .then_some(rows)
    });
    report("self-heal of an OOM kill while offline", start.elapsed());
    assert_eq!(
        cell(&rows, "hog", "main", "LAST EXIT"),
        "OOMKilled",
        "{rows:?}"
    );

    // An update while A is cut: B and C take it, A keeps what it runs.
    fleet.apply("moving", &every("moving", "", &versioned("moving", 2)));
    let (info, took) = fleet.wait_for("moving v2 on the nodes that are online", CONVERGE, || {
        fleet
            .hub
            .workload("moving")
            .filter(|w| w["revision"] == 2 && w["ready"] == 2)
    });
    report("update to ready on the online nodes", took);
    assert_eq!(info["wanted"], 3, "the cut node still counts: {info}");
    for node in ["part-b", "part-c"] {
        assert!(logs(&fleet, node, "moving").contains("moving v2"));
    }
    assert_eq!(
        pid(&fleet, "part-a", "moving"),
        before["part-a"]["moving/main"],
        "part-a cannot have the update yet"
    );
    let during_cut = fleet.pids("part-a");
    let updated: BTreeMap<&str, _> = ["part-b", "part-c"]
        .iter()
        .map(|n| (*n, fleet.pids(n)))
        .collect();
    let cut_events = logged_events(since(&fleet.agent("part-a").log(), a_log));
    assert!(
        cut_events.iter().any(|e| e.starts_with("victim/main"))
            && cut_events.iter().any(|e| e.starts_with("hog/main")),
        "part-a logged no events for what happened while cut: {cut_events:?}"
    );

    // The link returns: the update reaches A, and everything A saw while cut reaches the hub.
    let hub_log = offset(&fleet.hub.log());
    fleet.restore("part-a");
    let start = Instant::now();
    report(
        "restore to online at the hub",
        fleet.wait_online("part-a", true, CONVERGE),
    );
    fleet.wait_for("moving v2 everywhere", CONVERGE, || {
        all_ready(&fleet, &["moving"], 2)
    });
    report(
        "restore to reconverged (update applied on A)",
        start.elapsed(),
    );
    assert!(logs(&fleet, "part-a", "moving").contains("moving v2"));
    fleet.wait_for("every workload ready again", CONVERGE, || {
        all_ready(&fleet, &["calm", "victim", "hog"], 1)
    });

    let (events, _) = fleet.wait_for("the cut period's events at the hub", CONVERGE, || {
        let events: Vec<Value> = fleet
            .hub_events("part-a")
            .into_iter()
            .filter(|e| sequence(e) > last_before_cut)
            .collect();
        (events.len() >= cut_events.len()).then_some(events)
    });
    let sequences: Vec<u64> = events.iter().map(sequence).collect();
    let expected: Vec<u64> = (last_before_cut + 1..).take(events.len()).collect();
    assert_eq!(
        sequences, expected,
        "events lost or out of order at the hub (newest 20 shown)"
    );
    let texts: Vec<String> = events.iter().map(event_text).collect();
    assert_eq!(
        texts[..cut_events.len()],
        cut_events[..],
        "the hub's events from the cut period differ from what part-a logged"
    );
    let received = statuses_received(since(&fleet.hub.log(), hub_log), "part-a");
    assert!(
        !received.is_empty() && received.windows(2).all(|w| w[0] < w[1]),
        "statuses from part-a arrived out of order: {received:?}"
    );
    let describe = fleet.hub.ok(&["describe", "node", "part-a"]);
    assert!(
        describe.contains("OOM") && describe.contains("victim/main"),
        "describe node shows the cut period's events:\n{describe}"
    );
    eprintln!(
        "[events from the cut period delivered: {}, statuses after reconnect: {}]",
        cut_events.len(),
        received.len()
    );

    // Reconnecting restarted nothing that was already right.
    let mut a_expected = during_cut;
    a_expected.remove("moving/main");
    let mut a_now = fleet.pids("part-a");
    a_now.remove("moving/main");
    assert_eq!(
        a_now, a_expected,
        "the reconnect restarted containers on part-a"
    );
    for node in ["part-b", "part-c"] {
        assert_eq!(
            fleet.pids(node),
            updated[node],
            "{node} restarted containers"
        );
        assert_eq!(
            pids_of(&fleet, node, &["calm", "victim"]),
            only(&before[node], &["calm", "victim"]),
            "{node}'s containers restarted during the partition"
        );
    }
    fleet.clean_up();
}

#[test]
fn a_node_power_cut_while_offline_runs_every_workload_again_from_sqlite_alone() {
    let mut fleet = Fleet::start(
        "reboot",
        &[("reboot-a", ""), ("reboot-b", ""), ("reboot-c", "")],
    );
    fleet.apply("one", &every("one", "", FOREVER));
    fleet.apply(
        "two",
        &shell_workload(
            "two",
            FOREVER,
            "  placement: { mode: every }\n  restartPolicy: on-failure\n",
            "",
        ),
    );
    // A named volume survives the reboot: each boot appends a line.
    let boots =
        format!("echo boot >> /data/boots; echo boots=$(busybox wc -l < /data/boots); {FOREVER}");
    fleet.apply(
        "keeper",
        &shell_workload(
            "keeper",
            &boots,
            "  placement: { mode: every }\n  volumes:\n    - { name: data }\n",
            "      mounts: [{ volume: data, path: /data }]\n",
        ),
    );
    let all = ["one", "two", "keeper"];
    fleet.wait_for("every workload ready", CONVERGE, || {
        all_ready(&fleet, &all, 1)
    });
    let before = fleet.pids("reboot-a");
    let others: BTreeMap<&str, _> = ["reboot-b", "reboot-c"]
        .iter()
        .map(|n| (*n, fleet.pids(n)))
        .collect();
    let generation = fleet.hub_node("reboot-a")["desired_generation"].clone();

    fleet.cut("reboot-a");
    report(
        "cut to offline at the hub",
        fleet.wait_online("reboot-a", false, CONVERGE),
    );
    // The power cut, and the reboot with the link still down.
    fleet.power_cut("reboot-a");
    let boot_log = offset(&fleet.agent("reboot-a").log());
    let start = Instant::now();
    fleet.start_agent("reboot-a");
    let (after, took) =
        fleet.wait_for("every workload running again on reboot-a", CONVERGE, || {
            let pids = fleet.pids("reboot-a");
            all.iter()
                .all(|w| pids.contains_key(&format!("{w}/main")))
                .then_some(pids)
        });
    report(
        "offline reboot to all running (agent answering to all running)",
        took,
    );
    report("offline reboot to all running", start.elapsed());
    for (key, pid) in &after {
        assert_ne!(
            Some(pid),
            before.get(key),
            "{key}: the same process after a power cut?"
        );
    }
    assert!(
        logs(&fleet, "reboot-a", "keeper").contains("boots=2"),
        "the named volume survived the power cut"
    );
    assert_eq!(
        fleet.hub_node("reboot-a")["online"],
        false,
        "the link is still down"
    );
    let (connected, _) = connection_attempts(since(&fleet.agent("reboot-a").log(), boot_log));
    assert!(
        connected.is_empty(),
        "the agent reached the hub while its link was down"
    );

    // The link returns: nothing restarts, and the hub sees the node converged.
    fleet.restore("reboot-a");
    let start = Instant::now();
    fleet.wait_online("reboot-a", true, CONVERGE);
    fleet.wait_for("every workload ready after the reconnect", CONVERGE, || {
        all_ready(&fleet, &all, 1)
    });
    report("reconnect to reconverged", start.elapsed());
    let node = fleet.hub_node("reboot-a");
    assert_eq!(
        node["desired_generation"], generation,
        "no new generation for a reboot"
    );
    assert_eq!(node["observed_generation"], generation);
    assert_eq!(
        fleet.pids("reboot-a"),
        after,
        "the reconnect restarted containers"
    );
    for (node, pids) in &others {
        assert_eq!(&fleet.pids(node), pids, "{node} restarted containers");
    }
    fleet.clean_up();
}

#[test]
fn a_hub_killed_during_a_rollout_loses_nothing_and_restarts_nothing_already_right() {
    let mut fleet = Fleet::start(
        "hubcrash",
        &[("hubcrash-a", ""), ("hubcrash-b", ""), ("hubcrash-c", "")],
    );
    fleet.apply("steady", &every("steady", "", FOREVER));
    fleet.apply("app", &every("app", "", &versioned("app", 1)));
    fleet.wait_for("both ready", CONVERGE, || {
        all_ready(&fleet, &["steady", "app"], 1)
    });
    let nodes = ["hubcrash-a", "hubcrash-b", "hubcrash-c"];
    let before: BTreeMap<&str, _> = nodes.iter().map(|n| (*n, fleet.pids(n))).collect();
    let workloads_before = fleet.hub.get("workloads").len();

    // The rollout of app v2 is under way: a and b have it, c (cut) does not yet.
    fleet.cut("hubcrash-c");
    fleet.wait_online("hubcrash-c", false, CONVERGE);
    fleet.apply("app", &every("app", "", &versioned("app", 2)));
    fleet.wait_for("app v2 on a and b", CONVERGE, || {
        fleet
            .hub
            .workload("app")
            .filter(|w| w["revision"] == 2 && w["ready"] == 2)
    });
    let mid: BTreeMap<&str, _> = nodes.iter().map(|n| (*n, fleet.pids(n))).collect();
    let generations: BTreeMap<&str, Value> = nodes
        .iter()
        .map(|n| (*n, fleet.hub_node(n)["desired_generation"].clone()))
        .collect();
    fleet.hub.kill9();
    let crashed = Instant::now();
    // The agents keep running on their own.
    std::thread::sleep(fleet.settings.keep_alive);
    for node in nodes {
        assert_eq!(
            fleet.pids(node),
            mid[node],
            "{node} changed something without its hub"
        );
    }
    let restarted_ms = now_ms();
    let start = Instant::now();
    fleet.hub.restart();
    report("hub restart to answering", start.elapsed());
    fleet.restore("hubcrash-c");
    for node in nodes {
        fleet.wait_heard_from(node, restarted_ms, CONVERGE);
    }
    report("hub restart to every node online", start.elapsed());
    fleet.wait_for("the rollout finished after the crash", CONVERGE, || {
        all_ready(&fleet, &["app"], 2).and_then(|()| all_ready(&fleet, &["steady"], 1))
    });
    report(
        "hub restart to reconverged (rollout finished)",
        start.elapsed(),
    );
    report("hub down for", start.duration_since(crashed));

    assert_eq!(
        fleet.hub.get("workloads").len(),
        workloads_before,
        "workloads lost"
    );
    assert!(logs(&fleet, "hubcrash-c", "app").contains("app v2"));
    for node in ["hubcrash-a", "hubcrash-b"] {
        assert_eq!(
            fleet.pids(node),
            mid[node],
            "{node} was already right and must restart nothing"
        );
        assert_eq!(
            fleet.hub_node(node)["desired_generation"],
            generations[node],
            "{node} got a new generation for the same workloads"
        );
    }
    let c = fleet.pids("hubcrash-c");
    assert_eq!(c["steady/main"], before["hubcrash-c"]["steady/main"]);
    assert_ne!(
        c["app/main"], before["hubcrash-c"]["app/main"],
        "c took the update"
    );
    fleet.clean_up();
}

#[test]
fn a_herd_of_agents_reconnects_to_a_restarted_hub_with_jitter_and_without_a_storm() {
    const AGENTS: usize = 20;
    let names: Vec<String> = (0..AGENTS).map(|i| format!("herd-{i:02}")).collect();
    let nodes: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "")).collect();
    let mut fleet = Fleet::start("herd", &nodes);
    fleet.apply("steady", &every("steady", "", FOREVER));
    fleet.wait_for("steady ready on every node", CONVERGE, || {
        all_ready(&fleet, &["steady"], 1)
    });
    let before: Vec<_> = names.iter().map(|n| fleet.pids(n)).collect();
    let offsets: Vec<usize> = names
        .iter()
        .map(|n| offset(&fleet.agent(n).log()))
        .collect();

    fleet.hub.kill9();
    let down = Duration::from_secs(3);
    std::thread::sleep(down);
    let restarted_ms = now_ms();
    let start = Instant::now();
    fleet.hub.restart();
    let (_, took) = fleet.wait_for("every agent reconnected", CONVERGE, || {
        names
            .iter()
            .zip(&offsets)
            .all(|(name, at)| {
                let log = fleet.agent(name).log();
                !connection_attempts(since(&log, *at)).0.is_empty()
            })
            .then_some(())
    });
    report("hub restart to every agent reconnected", took);
    for name in &names {
        fleet.wait_heard_from(name, restarted_ms, CONVERGE);
    }
    report("hub restart to every node online", start.elapsed());
    fleet.wait_for("steady ready everywhere", CONVERGE, || {
        all_ready(&fleet, &["steady"], 1)
    });
    report("hub restart to reconverged (20 agents)", start.elapsed());
    // Give a late second connection (a storm's signature) the time to show in the logs.
    std::thread::sleep(fleet.settings.keep_alive);

    let mut reconnects = Vec::new();
    let mut attempts = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let log = fleet.agent(name).log();
        let (connected, failed) = connection_attempts(since(&log, offsets[i]));
        assert_eq!(
            connected.len(),
            1,
            "{name} connected {} times after the restart: one reconnect expected",
            connected.len()
        );
        reconnects.extend(connected.first().copied());
        attempts.push(failed + connected.len());
        assert_eq!(fleet.pids(name), before[i], "{name} restarted containers");
    }
    let most = attempts.iter().max().copied().unwrap_or(0);
    let total: usize = attempts.iter().sum();
    let first = reconnects.iter().copied().fold(f64::MAX, f64::min);
    let last = reconnects.iter().copied().fold(f64::MIN, f64::max);
    let each: Vec<String> = attempts.iter().map(usize::to_string).collect();
    eprintln!(
        "[connection attempts per agent over a {} s hub outage: {}; most {most}, total {total}]",
        down.as_secs(),
        each.join(" ")
    );
    report(
        "reconnects spread over",
        Duration::from_secs_f64((last - first).max(0.0)),
    );
    // Capped exponential backoff from 0.5 s: about five attempts in a few seconds, not a
    // tight loop (which would make hundreds).
    assert!(most <= 12, "a reconnect storm: {attempts:?}");
    // Full jitter: the reconnects do not all land together.
    assert!(
        last - first >= 0.5,
        "all {AGENTS} agents reconnected within {:.3} s: no jitter",
        last - first
    );
    fleet.clean_up();
}

#[test]
fn a_replica_moves_off_a_node_offline_past_reschedule_after_and_the_surplus_stops_on_return() {
    let mut fleet = Fleet::start(
        "failover",
        &[("failover-a", ""), ("failover-b", ""), ("failover-c", "")],
    );
    fleet.apply(
        "rep",
        &shell_workload(
            "rep",
            FOREVER,
            "  placement: { replicas: 2, rescheduleAfter: 10s }\n",
            "",
        ),
    );
    let (rep, _) = fleet.wait_for("rep ready on two nodes", CONVERGE, || {
        fleet.hub.workload("rep").filter(|w| ready(w, 1))
    });
    let placed = nodes_of(&rep);
    assert_eq!(placed.len(), 2, "{rep}");
    let (lost, kept) = (placed[0].clone(), placed[1].clone());
    let spare = ["failover-a", "failover-b", "failover-c"]
        .into_iter()
        .find(|n| !placed.iter().any(|p| p == n))
        .expect("a third node")
        .to_string();
    let kept_pid = pid(&fleet, &kept, "rep");
    let lost_pid = pid(&fleet, &lost, "rep");

    fleet.cut(&lost);
    let start = Instant::now();
    report(
        "cut to offline at the hub",
        fleet.wait_online(&lost, false, CONVERGE),
    );
    assert_eq!(
        nodes_of(&fleet.hub.workload("rep").expect("rep")),
        placed,
        "moved before rescheduleAfter"
    );
    let (_, _) = fleet.wait_for("rep moved to the spare node", CONVERGE, || {
        fleet
            .hub
            .workload("rep")
            .filter(|w| nodes_of(w) == sorted(&[&kept, &spare]) && ready(w, 1))
    });
    let moved = start.elapsed();
    report("cut to replica running elsewhere", moved);
    assert!(
        moved >= Duration::from_secs(10),
        "moved after {moved:?}, before rescheduleAfter (10s)"
    );
    // The lost node still runs its copy on its own: it cannot know yet.
    assert_eq!(pid(&fleet, &lost, "rep"), lost_pid);
    let spare_pid = pid(&fleet, &spare, "rep");

    fleet.restore(&lost);
    let start = Instant::now();
    fleet.wait_online(&lost, true, CONVERGE);
    fleet.wait_for(
        "the surplus copy stopped on the returning node",
        CONVERGE,
        || (!has(&fleet.ps(&lost), "rep")).then_some(()),
    );
    report("reconnect to surplus stopped", start.elapsed());
    let (rep, _) = fleet.wait_for("rep ready on two nodes again", CONVERGE, || {
        fleet.hub.workload("rep").filter(|w| ready(w, 1))
    });
    assert_eq!(rep["ready"], 2, "{rep}");
    assert_eq!(running_on(&fleet, "rep"), sorted(&[&kept, &spare]));
    assert_eq!(
        pid(&fleet, &kept, "rep"),
        kept_pid,
        "the kept copy restarted"
    );
    assert_eq!(
        pid(&fleet, &spare, "rep"),
        spare_pid,
        "the new copy restarted"
    );
    fleet.clean_up();
}

fn sorted(names: &[&String]) -> Vec<String> {
    let mut names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    names.sort();
    names
}

#[test]
fn a_flapping_link_restarts_no_container_and_the_node_converges() {
    let mut fleet = Fleet::start("flap", &[("flap-a", ""), ("flap-b", ""), ("flap-c", "")]);
    fleet.apply("steady", &every("steady", "", FOREVER));
    fleet.apply("moving", &every("moving", "", &versioned("moving", 1)));
    fleet.wait_for("both ready", CONVERGE, || {
        all_ready(&fleet, &["steady", "moving"], 1)
    });
    let before = fleet.pids("flap-a");
    let log = offset(&fleet.agent("flap-a").log());
    let hub_log = offset(&fleet.hub.log());

    // Down and up every 2 s for 30 s; an update lands in the middle.
    let start = Instant::now();
    let mut toggles = 0;
    while start.elapsed() < Duration::from_secs(30) {
        if toggles % 2 == 0 {
            fleet.cut("flap-a");
        } else {
            fleet.restore("flap-a");
        }
        toggles += 1;
        if toggles == 7 {
            fleet.apply("moving", &every("moving", "", &versioned("moving", 2)));
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    fleet.restore("flap-a");
    let settled = Instant::now();
    fleet.wait_online("flap-a", true, CONVERGE);
    fleet.wait_for("moving v2 everywhere", CONVERGE, || {
        all_ready(&fleet, &["moving"], 2).and_then(|()| all_ready(&fleet, &["steady"], 1))
    });
    report("link stable to reconverged", settled.elapsed());
    assert!(logs(&fleet, "flap-a", "moving").contains("moving v2"));
    let rows = fleet.ps("flap-a");
    assert_eq!(
        pid(&fleet, "flap-a", "steady"),
        before["steady/main"],
        "the flapping link restarted steady"
    );
    assert_eq!(cell(&rows, "steady", "main", "RESTARTS"), "0");
    assert_eq!(cell(&rows, "moving", "main", "RESTARTS"), "0");
    let (connected, failed) = connection_attempts(since(&fleet.agent("flap-a").log(), log));
    let offline = since(&fleet.hub.log(), hub_log)
        .matches("presence node=flap-a online=false")
        .count();
    eprintln!(
        "[flapping for 30 s ({toggles} toggles): {} reconnects, {failed} failed attempts, shown offline {offline} times]",
        connected.len()
    );
    fleet.clean_up();
}

#[test]
fn reconnecting_restarts_nothing_that_is_already_right() {
    let mut fleet = Fleet::start(
        "rejoin",
        &[("rejoin-a", ""), ("rejoin-b", ""), ("rejoin-c", "")],
    );
    let keep_alive = fleet.settings.keep_alive;
    fleet.apply("steady", &every("steady", "", FOREVER));
    fleet.apply(
        "single",
        &shell_workload(
            "single",
            FOREVER,
            "  placement: { replicas: 1, rescheduleAfter: never }\n",
            "",
        ),
    );
    fleet.wait_for("both ready", CONVERGE, || {
        all_ready(&fleet, &["steady", "single"], 1)
    });
    let nodes = ["rejoin-a", "rejoin-b", "rejoin-c"];
    let before: BTreeMap<&str, _> = nodes.iter().map(|n| (*n, fleet.pids(n))).collect();
    let last: BTreeMap<&str, u64> = nodes
        .iter()
        .map(|n| (*n, last_sequence(&fleet, n)))
        .collect();

    // A: a cut long enough for the broker to drop the connection and publish its will.
    fleet.cut("rejoin-a");
    fleet.wait_online("rejoin-a", false, CONVERGE);
    std::thread::sleep(keep_alive);
    fleet.restore("rejoin-a");
    let start = Instant::now();
    fleet.wait_online("rejoin-a", true, CONVERGE);
    report("a node's reconnect to online", start.elapsed());
    // B: its agent killed and restarted while the hub is up (it re-adopts its containers).
    fleet.kill_agent("rejoin-b");
    let start = Instant::now();
    fleet.start_agent("rejoin-b");
    fleet.wait_for("rejoin-b online after its agent restart", CONVERGE, || {
        (fleet.hub_node("rejoin-b")["online"] == true).then_some(())
    });
    report("agent restart to online", start.elapsed());
    // And the hub itself restarts under everyone.
    fleet.hub.kill9();
    let restarted_ms = now_ms();
    let start = Instant::now();
    fleet.hub.restart();
    for node in nodes {
        fleet.wait_heard_from(node, restarted_ms, CONVERGE);
    }
    fleet.wait_for("both ready after everything", CONVERGE, || {
        all_ready(&fleet, &["steady", "single"], 1)
    });
    report("hub restart to reconverged", start.elapsed());
    // Let heartbeats and any late decision arrive before looking.
    std::thread::sleep(Duration::from_secs(2));

    for node in nodes {
        assert_eq!(
            fleet.pids(node),
            before[node],
            "{node} restarted containers"
        );
        let rows = fleet.ps(node);
        for row in &rows {
            assert_eq!(
                row.get("RESTARTS").map(String::as_str),
                Some("0"),
                "{node}: {row:?}"
            );
        }
        let restarts: Vec<String> = fleet
            .hub_events(node)
            .iter()
            .filter(|e| sequence(e) > last[node])
            .filter(|e| {
                matches!(
                    e["reason"].as_str(),
                    Some("Stopped" | "Started" | "Created" | "Exited" | "Removed")
                )
            })
            .map(event_text)
            .collect();
        assert!(
            restarts.is_empty(),
            "{node} reported container changes after reconnecting: {restarts:?}"
        );
    }
    fleet.clean_up();
}

/// After a restart the embedded broker knows no one: a node that does not come back (cut, or
/// powered off, while the hub was down) sends no presence and leaves no last will, and must
/// not stay `online` on the strength of what the hub stored before it went down.
#[test]
fn after_a_hub_restart_a_node_that_does_not_come_back_shows_offline() {
    let mut fleet = Fleet::start(
        "stale",
        &[("stale-a", ""), ("stale-b", ""), ("stale-c", "")],
    );
    let keep_alive = fleet.settings.keep_alive;
    fleet.hub.kill9();
    fleet.cut("stale-a");
    let restarted_ms = now_ms();
    let start = Instant::now();
    fleet.hub.restart();
    for node in ["stale-b", "stale-c"] {
        fleet.wait_heard_from(node, restarted_ms, CONVERGE);
    }
    // Twice the keep-alive after the restart: by then a node that is there has said so.
    let deadline = Instant::now() + keep_alive * 2;
    while fleet.hub_node("stale-a")["online"] != false {
        assert!(
            Instant::now() < deadline,
            "{:?} after the hub restarted, it still shows stale-a online although stale-a has \
             not reached it since (cut while the hub was down): `shoal get nodes -o wide`:\n{}\n{}",
            start.elapsed(),
            fleet.hub.ok(&["get", "nodes", "-o", "wide"]),
            fleet.hub_node("stale-a")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    report(
        "hub restart to the missing node shown offline",
        start.elapsed(),
    );
    fleet.clean_up();
}

/// `shoal serve --listen-mqtt ADDR` with one address other than loopback: the hub's own MQTT
/// client dials that address (it once dialled 127.0.0.1 and never saw a node).
#[test]
fn the_hubs_broker_can_listen_on_the_bridge_address_alone() {
    let settings = shoal_tests::fleet::Settings {
        broker_on_bridge_only: true,
        ..Default::default()
    };
    let mut fleet = Fleet::start_with("bridgeonly", &[("bridgeonly-a", "")], settings);
    fleet.apply("hello", &every("hello", "", FOREVER));
    fleet.wait_for("hello ready", CONVERGE, || all_ready(&fleet, &["hello"], 1));
    fleet.clean_up();
}
