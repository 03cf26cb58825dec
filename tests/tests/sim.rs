//! The fleet simulator against a real hub (issue 16's regression test): 500 simulated nodes
//! enroll with one claim token, connect over TLS to the embedded broker, converge one `every`
//! workload (the crash-looping share never becomes ready, the slow share does later), and a
//! hub restart changes no node's generation and makes no node take a new desired state.
//! Bounded: the simulator stops by itself after its `--for`, and is told to stop sooner.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::agent::shell_workload;
use shoal_tests::binary;
use shoal_tests::hub::Hub;

const NODES: usize = 500;
/// Percent of nodes that crash-loop (never ready) and that start slowly (ready after 5 s).
const CRASH: usize = 4;
const SLOW: usize = 6;

fn nodes_online(hub: &Hub) -> usize {
    let text = hub.ok(&["get", "nodes", "-o", "json"]);
    let nodes: Value = serde_json::from_str(&text).expect("nodes as JSON");
    nodes
        .as_array()
        .expect("a list")
        .iter()
        .filter(|n| n["online"] == true)
        .count()
}

fn ready(hub: &Hub, workload: &str) -> usize {
    let text = hub.ok(&["get", "workloads", "-o", "json"]);
    let workloads: Value = serde_json::from_str(&text).expect("workloads as JSON");
    workloads
        .as_array()
        .expect("a list")
        .iter()
        .find(|w| w["name"] == workload)
        .and_then(|w| w["ready"].as_u64())
        .unwrap_or(0) as usize
}

fn generations(hub: &Hub) -> Vec<(String, i64)> {
    let db = rusqlite::Connection::open(hub.data_dir.join("hub.db")).expect("hub.db");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let mut statement = db
        .prepare("SELECT node, generation FROM node_desired ORDER BY node")
        .expect("query");
    statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
        .expect("rows")
        .collect::<Result<_, _>>()
        .expect("generations")
}

/// Polls `check` until it gives a value; on timeout, fails with the last thing it saw.
/// Polls `check` until it gives a value; on timeout, fails with the last thing it saw and the
/// end of the simulator's `log`.
fn wait<T>(
    what: &str,
    limit: Duration,
    log: &Path,
    mut check: impl FnMut() -> Result<T, String>,
) -> (T, Duration) {
    let start = Instant::now();
    loop {
        match check() {
            Ok(value) => return (value, start.elapsed()),
            Err(seen) => assert!(
                start.elapsed() < limit,
                "timed out after {limit:?} waiting for {what}; last seen: {seen}\n\
                 the simulator's log ends:\n{}",
                tail(log)
            ),
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tail(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// `Ok` when `got` is `want`, else what was seen.
fn expect<T: PartialEq + std::fmt::Debug>(got: T, want: T) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{got:?}, not {want:?}"))
    }
}

#[test]
fn five_hundred_simulated_nodes_converge_and_a_hub_restart_changes_no_generation() {
    let mut hub = Hub::start("sim");
    let out = hub.ok(&["token", "create", "--uses", &NODES.to_string()]);
    let claim = out
        .split_whitespace()
        .find(|w| w.starts_with("shoalc1."))
        .expect("a claim token")
        .to_string();
    let report = hub.root.join("sim-report.json");
    // A file, not a pipe nobody reads until the end: a full pipe would stall the simulator.
    let log = std::path::PathBuf::from(format!("/tmp/shoal-sim-test-{}.log", std::process::id()));
    let mut sim = Command::new(binary("shoal-sim"))
        .args([
            "--api",
            &hub.api,
            "--claim",
            &claim,
            "--nodes",
            &NODES.to_string(),
            "--for",
            "300s",
            "--mix",
            &format!("healthy={},crash={CRASH},slow={SLOW}", 100 - CRASH - SLOW),
            "--slow-start",
            "5s",
            "--report",
        ])
        .arg(&report)
        .stdin(Stdio::piped())
        .stderr(std::fs::File::create(&log).expect("the simulator's log"))
        .spawn()
        .expect("start shoal-sim");
    let ((), online_in) = wait(
        "every simulated node online",
        Duration::from_secs(120),
        &log,
        || expect(nodes_online(&hub), NODES),
    );
    eprintln!(
        "[{NODES} simulated nodes enrolled and online in {} ms]",
        online_in.as_millis()
    );

    let healthy = NODES * (100 - CRASH) / 100;
    let manifest = shell_workload(
        "everywhere",
        "sleep 1000",
        "  placement: { mode: every }\n",
        "",
    );
    hub.apply("everywhere", &manifest);
    let ((), converged) = wait(
        "the workload ready on every node that can run it",
        Duration::from_secs(60),
        &log,
        || expect(ready(&hub, "everywhere"), healthy),
    );
    eprintln!(
        "[apply → ready on {healthy} of {NODES} nodes (as the hub reports it): {} ms]",
        converged.as_millis()
    );
    // The crash-looping ones never become ready.
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(ready(&hub, "everywhere"), healthy);

    // A hub restart: every node reconnects, nothing is published again.
    let before = generations(&hub);
    assert_eq!(before.len(), NODES);
    hub.kill9();
    let restarted_ms = shoal_model::clock::wall_ms();
    hub.restart();
    let ((), back) = wait(
        "every node back after the hub restart",
        Duration::from_secs(120),
        &log,
        || {
            expect(
                (nodes_online(&hub), ready(&hub, "everywhere")),
                (NODES, healthy),
            )
        },
    );
    eprintln!(
        "[hub restart: {NODES} nodes reconnected and ready again in {} ms]",
        back.as_millis()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        generations(&hub),
        before,
        "a hub restart changed a generation"
    );

    let mut stdin = sim.stdin.take().expect("stdin");
    writeln!(stdin, "stop").expect("tell the simulator to stop");
    let output = sim.wait_with_output().expect("the simulator ends");
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    eprintln!("{stderr}");
    assert!(output.status.success(), "{stderr}");
    let report: Value =
        serde_json::from_slice(&std::fs::read(&report).expect("the report")).expect("JSON");
    let records = report["records"].as_array().expect("records");
    assert_eq!(records.len(), NODES);
    for r in records {
        let name = r["name"].as_str().unwrap_or_default();
        assert_eq!(
            r["refused"].as_array().map(Vec::len),
            Some(0),
            "{name}: {r}"
        );
        let accepted = r["accepted"].as_array().expect("accepted");
        assert!(!accepted.is_empty(), "{name} took no desired state");
        let after: Vec<&Value> = accepted
            .iter()
            .filter(|a| a[1].as_u64().unwrap_or(0) >= restarted_ms)
            .collect();
        assert!(
            after.is_empty(),
            "{name} took a new desired state after the hub restart: {after:?}"
        );
        let connects = r["connects"].as_array().map_or(0, Vec::len);
        assert!(
            connects >= 2,
            "{name} did not reconnect after the restart: {connects}"
        );
        let ran = r["running"].as_object().map_or(0, |m| m.len());
        match r["behaviour"].as_str() {
            Some("crash") => assert_eq!(ran, 0, "{name} crash-loops yet reported running"),
            _ => assert_eq!(ran, 1, "{name}: {r}"),
        }
    }
    hub.kill9();
}
