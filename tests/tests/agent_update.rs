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
