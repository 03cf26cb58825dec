//! Agent self-update (issue 15): releases on a real hub (`shoal agent-release`), checked,
//! signed with the hub's release key and kept across a restart; and the device-side guard
//! (`shoal-agent launch`): a new binary tried on probation beside real containers, kept when
//! it proves itself, reverted when it exits at start, hangs, or takes its launcher down.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::agent::{cell, parse_table, shell_workload, Agent, Row};
use shoal_tests::hub::Hub;
use shoal_tests::release::{
    agent_status, file, fleet_with_a_container, next_version, release_bytes, text,
};

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

/// `bytes` with the version mark of agent `version` appended, as every agent binary carries
/// one (`shoal_model::release::VERSION_MARK`).
fn marked(bytes: &[u8], version: &str) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out.extend_from_slice(shoal_model::release::VERSION_MARK);
    out.extend_from_slice(version.as_bytes());
    out.push(0);
    out
}

#[test]
fn agent_releases_are_checked_signed_kept_across_a_restart_and_removed() {
    let mut hub = Hub::start("agent-release");
    let dir = tempfile::tempdir().expect("dir");
    // A static executable standing in for the agent, marked as agent 0.2.0.
    let busybox = marked(
        &std::fs::read(BUSYBOX).expect("busybox-static is installed"),
        "0.2.0",
    );
    let agent = file(dir.path(), "agent-0.2.0", &busybox);

    let out = hub.ok(&["agent-release", "add", text(&agent), "--version", "0.2.0"]);
    assert!(out.contains("agent 0.2.0 for x86_64 added"), "{out}");
    let out = hub.ok(&["agent-release", "add", text(&agent), "--version", "0.2.0"]);
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
    // The version must be the one the binary says it is.
    let error = refused(
        &hub,
        &["agent-release", "add", BUSYBOX, "--version", "0.3.0"],
    );
    assert!(error.contains("no agent version mark"), "{error}");
    let error = refused(
        &hub,
        &["agent-release", "add", text(&agent), "--version", "0.3.0"],
    );
    assert!(
        error.contains("says it is agent 0.2.0, not 0.3.0"),
        "{error}"
    );
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
    // `shoal key list` shows it once, as the release key, beside the state key.
    let keys = hub.ok(&["key", "list"]);
    let lines: Vec<&str> = keys.lines().filter(|l| l.contains(&release_key)).collect();
    assert_eq!(lines.len(), 1, "{keys}");
    assert!(
        lines[0]
            .split_whitespace()
            .take(3)
            .eq([release_key.as_str(), "active", "release"]),
        "{keys}"
    );

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

/// Probation bounds short enough for a test: ready within 8 s, then up for 3 s.
const LAUNCH: [&str; 4] = ["--up-within", "8s", "--stable-for", "3s"];

/// A static x86_64 program from C source (`cc -static`), standing in for a broken agent.
fn static_program(dir: &Path, name: &str, source: &str) -> PathBuf {
    let c = dir.join(format!("{name}.c"));
    std::fs::write(&c, source).expect("write source");
    let out = dir.join(name);
    let status = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(&out)
        .arg(&c)
        .status()
        .expect("run cc (.ci/setup installs gcc and libc6-dev)");
    assert!(status.success(), "cc failed for {name}");
    out
}

fn launch_state(agent: &Agent) -> Value {
    let path = agent.root.join("data/bin/launch.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("launch.json is JSON")
}

/// `ps`, or `None` while no agent answers (between two binaries).
fn try_ps(agent: &Agent) -> Option<Vec<Row>> {
    let out = agent.cli(&["ps"]);
    out.status
        .success()
        .then(|| parse_table(&String::from_utf8_lossy(&out.stdout)))
}

/// Waits until `done` holds for the launch state and an agent answers `ps` again.
fn wait_launch(
    agent: &Agent,
    what: &str,
    timeout: Duration,
    done: impl Fn(&Value) -> bool,
) -> (Value, Vec<Row>) {
    let start = Instant::now();
    loop {
        let state = launch_state(agent);
        if done(&state) {
            if let Some(rows) = try_ps(agent) {
                eprintln!("[{what}: {} ms]", start.elapsed().as_millis());
                return (state, rows);
            }
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; launch.json: {state}\nagent log:\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `shoal-agent update` for this agent: its stdout.
fn update(agent: &Agent, binary: &Path, version: &str) -> String {
    let out = Command::new(&agent.binary)
        .args(["update", "--binary"])
        .arg(binary)
        .args(["--as", version, "--config"])
        .arg(&agent.config)
        .output()
        .expect("run shoal-agent update");
    assert!(
        out.status.success(),
        "shoal-agent update failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An agent started by its launcher, with one running container; returns it and the
/// container's pid.
fn launched_with_a_container(name: &str) -> (Agent, String) {
    let mut agent = Agent::new(name, "");
    agent.launch(&LAUNCH);
    agent.import_busybox();
    agent.apply(
        "steady",
        &shell_workload("steady", "while true; do sleep 1; done", "", ""),
    );
    let rows = agent.wait_for("steady running", Duration::from_secs(20), |rows| {
        cell(rows, "steady", "main", "STATE") == "Running"
    });
    let pid = cell(&rows, "steady", "main", "PID");
    (agent, pid)
}

/// The same container, not restarted.
fn untouched(rows: &[Row], pid: &str) {
    assert_eq!(cell(rows, "steady", "main", "PID"), pid, "{rows:?}");
    assert_eq!(cell(rows, "steady", "main", "RESTARTS"), "0", "{rows:?}");
    assert_eq!(cell(rows, "steady", "main", "STATE"), "Running", "{rows:?}");
}

/// Processes whose executable is `binary`.
fn running_binary(binary: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|exe| exe == binary))
        .collect()
}

#[test]
fn a_new_agent_binary_that_proves_itself_replaces_the_old_one_and_no_container_restarts() {
    let (agent, pid) = launched_with_a_container("update-good");
    let dir = tempfile::tempdir().expect("dir");
    let next = dir.path().join("shoal-agent-next");
    std::fs::copy(&agent.binary, &next).expect("copy the agent");
    let out = update(&agent, &next, "9.9.9");
    assert!(out.contains("switches to it now"), "{out}");
    let staged = agent.root.join("data/bin/shoal-agent-9.9.9");
    let (state, rows) = wait_launch(&agent, "9.9.9 proven", Duration::from_secs(40), |s| {
        s["good"].as_str() == staged.to_str() && s.get("trial").is_none()
    });
    untouched(&rows, &pid);
    assert!(state.get("failed").is_none(), "{state}");
    assert_eq!(
        running_binary(&staged).len(),
        1,
        "the new binary runs the agent"
    );
}

#[test]
fn a_new_agent_that_exits_at_start_is_reverted_at_once_and_one_that_hangs_within_the_bound() {
    let (agent, pid) = launched_with_a_container("update-bad");
    let dir = tempfile::tempdir().expect("dir");

    let crash = static_program(dir.path(), "crash", "int main(void) { return 3; }\n");
    update(&agent, &crash, "9.9.1");
    let (state, rows) = wait_launch(&agent, "the crash reverted", Duration::from_secs(20), |s| {
        s["failed"]["version"] == "9.9.1"
    });
    let reason = state["failed"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("exited (code 3) before it became ready"),
        "{state}"
    );
    // The agent that came back says so in an event (for the hub), once.
    let said: Vec<String> = agent
        .events_after(0)
        .into_iter()
        .filter(|(_, _, message)| message.contains("update to agent 9.9.1 was reverted"))
        .map(|(_, _, message)| message)
        .collect();
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("exited (code 3)"), "{said:?}");
    assert!(
        state.get("trial").is_none() && state.get("good").is_none(),
        "{state}"
    );
    untouched(&rows, &pid);
    assert!(
        !agent.root.join("data/bin/shoal-agent-9.9.1").exists(),
        "a failed binary is removed"
    );

    let hang = static_program(
        dir.path(),
        "hang",
        "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
    );
    let start = Instant::now();
    update(&agent, &hang, "9.9.2");
    let (state, rows) = wait_launch(&agent, "the hang reverted", Duration::from_secs(40), |s| {
        s["failed"]["version"] == "9.9.2"
    });
    let took = start.elapsed();
    let reason = state["failed"]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("did not become ready") && reason.contains("within 8 s"),
        "{state}"
    );
    assert!(
        took >= Duration::from_secs(8),
        "reverted before the bound: {took:?}"
    );
    assert!(
        took < Duration::from_secs(8 + 15 + 10),
        "reverted too late: {took:?}"
    );
    untouched(&rows, &pid);
}

#[test]
fn a_launcher_killed_during_probation_takes_the_trial_down_and_the_next_start_still_reverts() {
    let (mut agent, pid) = launched_with_a_container("update-kill9");
    let dir = tempfile::tempdir().expect("dir");
    let hang = static_program(
        dir.path(),
        "hang",
        "#include <unistd.h>\nint main(void) { for (;;) pause(); }\n",
    );
    update(&agent, &hang, "9.9.3");
    let staged = agent.root.join("data/bin/shoal-agent-9.9.3");
    let start = Instant::now();
    while running_binary(&staged).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the trial never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(launch_state(&agent)["trial"]["attempts"], 1);

    // kill -9 of the launcher mid-switch: its child dies with it, so a restarted launcher
    // never finds two agents on one data dir.
    agent.kill9();
    let start = Instant::now();
    while !running_binary(&staged).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the trial outlived its launcher"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // systemd starts the launcher again: the second attempt, then the revert.
    agent.launch(&LAUNCH);
    let (state, rows) = wait_launch(
        &agent,
        "reverted after the restart",
        Duration::from_secs(40),
        |s| s["failed"]["version"] == "9.9.3",
    );
    assert!(
        state["failed"]["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("did not become ready"),
        "{state}"
    );
    untouched(&rows, &pid);
}

#[test]
fn a_launch_state_that_cannot_be_read_still_runs_the_installed_agent() {
    let mut agent = Agent::new("update-garbled", "");
    let bin = agent.root.join("data/bin");
    std::fs::create_dir_all(&bin).expect("bin dir");
    std::fs::write(bin.join("launch.json"), b"{\"format\": 1, \"good\": ").expect("garble");
    // launch waits until the agent answers: the installed one runs its workloads anyway.
    agent.launch(&LAUNCH);
    assert!(
        agent.log().contains("cannot read the launch state"),
        "{}",
        agent.log_tail()
    );
}

// ---- over the air, through a real hub ----

/// The static agent of this tree (`cross/build x86_64`) with its version mark changed to
/// `version` (as long as its own), standing in for another release: the hub and the agents
/// read the version from that mark (`shoal_model::release::marked_version`).
fn release_of_this_agent(dir: &Path, version: &str) -> PathBuf {
    file(
        dir,
        &format!("shoal-agent-{version}"),
        &release_bytes(version),
    )
}

#[test]
fn a_fleet_upgrades_its_agents_through_the_hub_and_a_bad_or_forged_release_goes_nowhere() {
    use shoal_tests::fleet::CONVERGE;
    let dir = tempfile::tempdir().expect("dir");
    let good = next_version(1);
    let bad = next_version(2);
    let forged = next_version(3);
    let good_binary = release_of_this_agent(dir.path(), &good);
    let forged_binary = release_of_this_agent(dir.path(), &forged);
    // A program that exits at once, marked as a release of `bad`.
    let crash = static_program(dir.path(), "crash", "int main(void) { return 3; }\n");
    let bad_binary = file(
        dir.path(),
        "bad",
        &marked(&std::fs::read(&crash).expect("crash"), &bad),
    );

    let (fleet, by_node) = fleet_with_a_container(
        "ota",
        &[
            ("ota-a", "site=a"),
            ("ota-b", "site=a"),
            ("ota-c", "site=b"),
        ],
    );
    let nodes = ["ota-a", "ota-b", "ota-c"];
    let pids: Vec<String> = nodes.iter().map(|n| by_node[*n].clone()).collect();
    let hub = &fleet.hub;
    for (binary, version) in [
        (&good_binary, &good),
        (&bad_binary, &bad),
        (&forged_binary, &forged),
    ] {
        let out = hub.ok(&["agent-release", "add", text(binary), "--version", version]);
        assert!(out.contains("added"), "{out}");
    }

    // The binaries are for enrolled nodes, by their own credentials, from any byte on.
    let enrollment =
        std::fs::read_to_string(fleet.agent("ota-a").root.join("data/enrollment.toml"))
            .expect("ota-a's enrollment");
    let password = enrollment
        .lines()
        .find_map(|l| l.strip_prefix("password = "))
        .map(|p| p.trim_matches('"').to_string())
        .expect("a password in enrollment.toml");
    let bytes = std::fs::read(&good_binary).expect("the release");
    let path = format!(
        "/v1/agent-binaries/{}",
        shoal_model::hex::sha256_hex(&bytes)
    );
    let (status, body, range) = hub.get_as_node(&path, "ota-a", &password, Some(1000));
    assert_eq!(status, 206);
    assert!(
        body == bytes[1000..],
        "the rest of the binary, from byte 1000"
    );
    assert_eq!(
        range,
        Some(format!("bytes 1000-{}/{}", bytes.len() - 1, bytes.len()))
    );
    let (status, body, _) = hub.get_as_node(&path, "ota-a", &password, None);
    assert_eq!((status, body.len()), (200, bytes.len()));
    assert_eq!(hub.get_as_node(&path, "ota-a", "guessed", None).0, 401);
    assert_eq!(
        hub.get_as_node(&path, "ota-b", &password, None).0,
        401,
        "another node's name"
    );
    let unknown = format!("/v1/agent-binaries/{}", "0".repeat(64));
    assert_eq!(hub.get_as_node(&unknown, "ota-a", &password, None).0, 404);

    // 1. The good release on site a: both nodes switch, nothing restarts, site b stays.
    let out = hub.ok(&["agent", "upgrade", "--to", &good, "-l", "site=a"]);
    assert!(
        out.contains("the nodes with site=a should run agent"),
        "{out}"
    );
    let (_, took) = fleet.wait_for("site a on the new agent", CONVERGE, || {
        let status = agent_status(hub);
        ["ota-a", "ota-b"]
            .iter()
            .all(|n| status[*n] == (good.clone(), "updated".into(), String::new()))
            .then_some(())
    });
    eprintln!(
        "[{good} on 2 nodes through the hub: {} ms]",
        took.as_millis()
    );
    // Kept by each launcher once it proved itself.
    let (_, proven) = fleet.wait_for("site a's launchers keep the new agent", CONVERGE, || {
        ["ota-a", "ota-b"]
            .iter()
            .all(|n| {
                let state = launch_state(fleet.agent(n));
                state["good"]
                    .as_str()
                    .is_some_and(|g| g.ends_with(&format!("shoal-agent-{good}")))
                    && state.get("trial").is_none()
            })
            .then_some(())
    });
    eprintln!("[{good} proven on both: {} ms more]", proven.as_millis());
    // The canary first: ota-b was given the version only once ota-a was done with it.
    let given = |node: &str| -> (u64, String, u64) {
        let db = rusqlite::Connection::open(hub.data_dir.join("hub.db")).expect("hub.db");
        db.busy_timeout(Duration::from_secs(5)).expect("timeout");
        db.query_row(
            "SELECT since_ms, outcome, outcome_ms FROM agent_nodes WHERE node = ?1",
            [node],
            |row| {
                Ok((
                    row.get::<_, i64>(0)? as u64,
                    row.get(1)?,
                    row.get::<_, i64>(2)? as u64,
                ))
            },
        )
        .expect("the node's row")
    };
    // The hub marks a node done on its next pass after the node's report, so wait for it.
    let ((canary, wave), _) = fleet.wait_for("the hub marks both nodes done", CONVERGE, || {
        let (canary, wave) = (given("ota-a"), given("ota-b"));
        (canary.1 == "done" && wave.1 == "done").then_some((canary, wave))
    });
    assert!(
        wave.0 >= canary.2,
        "ota-b given at {} before the canary was done at {}",
        wave.0,
        canary.2
    );
    let rollout = hub.ok(&["rollout", "status", "--agent", "-l", "site=a"]);
    assert!(rollout.contains("State:     complete"), "{rollout}");
    assert!(rollout.contains("2 updated"), "{rollout}");
    let status = agent_status(hub);
    assert_eq!(status["ota-c"].1, "none", "{status:?}");
    assert_ne!(status["ota-c"].0, good, "{status:?}");
    for (node, pid) in nodes.iter().zip(&pids) {
        let rows = fleet.ps(node);
        untouched(&rows, pid);
    }
    let wide = hub.ok(&["get", "nodes", "-o", "wide"]);
    assert!(wide.contains(&good), "{wide}");

    // 2. A release that crashes at start: tried on the canary (ota-a, first by name),
    //    reverted by its launcher, reported; the rollout halts there, so ota-b never gets
    //    it, and every node keeps the good agent and its containers.
    hub.ok(&["agent", "upgrade", "--to", &bad, "-l", "site=a"]);
    fleet.wait_for("the bad release reverted on the canary", CONVERGE, || {
        let status = agent_status(hub);
        let (running, state, detail) = &status["ota-a"];
        (*running == good && state == "failed" && detail.contains("exited")).then_some(())
    });
    // The hub counts the failure on its next pass after the report.
    let (halted, _) = fleet.wait_for("the rollout halted at the canary", CONVERGE, || {
        let out = hub.cli(&["rollout", "status", "--agent", "-l", "site=a"]);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        text.contains("halted after 1 failed node(s)")
            .then_some((out.status.code(), text))
    });
    assert_eq!(halted.0, Some(1), "a halted rollout exits 1: {}", halted.1);
    let wide = hub.ok(&["get", "nodes", "-o", "wide"]);
    let row = wide
        .lines()
        .find(|l| l.starts_with("ota-a "))
        .unwrap_or_else(|| panic!("no ota-a in {wide}"));
    assert!(
        row.contains(&format!(" {good} ")) && row.contains(&format!("{bad} failed")),
        "the agent it runs and the update it reported: {wide}"
    );
    let status = agent_status(hub);
    assert_eq!(
        status["ota-b"],
        (
            good.clone(),
            "queued".to_string(),
            "the rollout halted after 1 failed node(s)".to_string()
        ),
        "{status:?}"
    );
    assert!(
        !fleet
            .agent("ota-b")
            .root
            .join(format!("data/bin/shoal-agent-{bad}"))
            .exists(),
        "ota-b never downloaded it"
    );
    for (node, pid) in nodes.iter().zip(&pids) {
        untouched(&fleet.ps(node), pid);
    }
    // The revert is told by the agent that starts after it, in its first status: written in
    // the wire version the hub reads (the agent remembers it across restarts), so with its
    // own reason.
    let events = fleet.hub_events("ota-a");
    let reverted = format!("after the update to agent {bad} was reverted: it exited");
    assert!(
        events.iter().any(|e| e["severity"] == "Warning"
            && e["reason"] == "AgentUpdateFailed"
            && e["message"].as_str().is_some_and(|m| m.contains(&reverted))),
        "{events:?}"
    );

    // Undo: back to the version most of site a ran when the upgrade was set, at once.
    let out = hub.ok(&["rollout", "undo", "--agent", "-l", "site=a"]);
    assert!(out.contains(&format!("go back to agent {good}")), "{out}");
    fleet.wait_for("site a's upgrade undone", CONVERGE, || {
        let rollout = hub.ok(&["rollout", "status", "--agent", "-l", "site=a"]);
        (rollout.contains("State:     complete") && rollout.contains("2 updated")).then_some(())
    });
    for (node, pid) in nodes.iter().zip(&pids) {
        untouched(&fleet.ps(node), pid);
    }

    // 3. A binary changed in the hub's database after it was signed: site b downloads it,
    //    finds it is not the release, and keeps its agent.
    let db = rusqlite::Connection::open(hub.data_dir.join("hub.db")).expect("hub.db");
    db.busy_timeout(Duration::from_secs(5)).expect("timeout");
    let digest: String = db
        .query_row(
            "SELECT sha256 FROM agent_releases WHERE version = ?1",
            [&forged],
            |row| row.get(0),
        )
        .expect("the forged release's row");
    let changed = db
        .execute(
            "UPDATE agent_binaries SET bytes = zeroblob(length(bytes)) WHERE sha256 = ?1",
            [&digest],
        )
        .expect("change the bytes");
    assert_eq!(changed, 1);
    hub.ok(&["agent", "upgrade", "--to", &forged, "-l", "site=b"]);
    fleet.wait_for("the changed binary refused on site b", CONVERGE, || {
        let (running, state, detail) = agent_status(hub)["ota-c"].clone();
        (running != forged && state == "failed" && detail.contains("not the release")).then_some(())
    });
    untouched(&fleet.ps("ota-c"), &pids[2]);
    let staged = fleet
        .agent("ota-c")
        .root
        .join(format!("data/bin/shoal-agent-{forged}"));
    assert!(!staged.exists(), "nothing unverified is staged");

    // 4. The good release fleet-wide: site b's node comes along, and all three run it with
    //    their containers untouched; the fleet-wide rollout completes.
    hub.ok(&["agent", "upgrade", "--to", &good]);
    fleet.wait_for("every node on the good release", CONVERGE, || {
        let status = agent_status(hub);
        nodes
            .iter()
            .all(|n| status[*n] == (good.clone(), "updated".into(), String::new()))
            .then_some(())
    });
    fleet.wait_for("the fleet-wide rollout complete", CONVERGE, || {
        // Site b's halted upgrade is still listed (exit code 1), so read stdout.
        let out = hub.cli(&["rollout", "status", "--agent"]);
        let rollout = String::from_utf8_lossy(&out.stdout);
        rollout
            .contains(&format!(
                "Agent:     {good} for every node\nState:     complete"
            ))
            .then_some(())
    });
    for (node, pid) in nodes.iter().zip(&pids) {
        untouched(&fleet.ps(node), pid);
    }
}
