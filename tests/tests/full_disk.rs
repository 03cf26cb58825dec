//! A full data disk, as an SD card fills up: the agent keeps its workloads, says the disk is
//! full (`ps`, its events, the hub's `describe`), frees space with its own commands, comes up
//! again after a crash or a power cut on the still-full disk and runs everything it accepted,
//! and recovers by itself once there is room. The data dir is a small tmpfs of its own.

use std::time::{Duration, Instant};

use shoal_tests::agent::{cell, filler_image, shell_workload, Agent, Row, SmallDisk};
use shoal_tests::hub::Hub;

const FULL: &str = "the data disk is full";
const SPACE_AGAIN: &str = "the data disk has space again";
const CONVERGE: Duration = Duration::from_secs(60);

fn running(rows: &[Row], workload: &str) -> bool {
    cell(rows, workload, "main", "STATE") == "Running"
}

fn pid(rows: &[Row], workload: &str) -> String {
    cell(rows, workload, "main", "PID")
}

/// Polls `ps` (the whole text) until `done` holds.
fn wait_for_ps(agent: &Agent, what: &str, timeout: Duration, done: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let out = agent.ok(&["ps"]);
        if done(&out) {
            eprintln!("[{what}: {} ms]", start.elapsed().as_millis());
            return;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; ps:\n{out}\nagent log:\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// How many lines of the agent's shims' logs contain `text`.
fn shim_log_lines(agent: &Agent, text: &str) -> usize {
    let dir = agent.root.join("run/containers");
    std::fs::read_dir(&dir)
        .expect("containers dir")
        .flatten()
        .map(|entry| {
            std::fs::read_to_string(entry.path().join("shim.log"))
                .unwrap_or_default()
                .lines()
                .filter(|l| l.contains(text))
                .count()
        })
        .sum()
}

/// How many events about the disk's condition the agent logged.
fn logged(agent: &Agent, what: &str) -> usize {
    agent
        .log()
        .lines()
        .filter(|l| l.contains("shoal::event") && l.contains(what))
        .count()
}

#[test]
fn on_a_full_data_disk_the_agent_keeps_running_frees_space_survives_a_power_cut_and_recovers() {
    let mut agent = Agent::new("e2e-full-disk", "");
    let disk = SmallDisk::mount(&agent.root.join("data"), 64);
    agent.start();
    agent.import_busybox();
    for name in ["localhost/spare-a:1", "localhost/spare-b:1"] {
        let archive = filler_image(&agent.root, name, 1 << 20);
        agent.ok(&["images", "import", &archive.display().to_string()]);
    }
    let chatty =
        "while true; do yes tick-tick-tick-tick-tick-tick-tick-tick | head -n 50; sleep 0.05; done";
    agent.apply("one", &shell_workload("one", chatty, "", ""));
    agent.apply(
        "two",
        &shell_workload("two", "sleep 300", "  stopGracePeriod: 1s\n", ""),
    );
    let before = agent.wait_for("both running", Duration::from_secs(20), |rows| {
        running(rows, "one") && running(rows, "two")
    });

    disk.fill();
    wait_for_ps(
        &agent,
        "ps says the disk is full",
        Duration::from_secs(10),
        |ps| ps.contains(FULL),
    );
    let rows = agent.ps();
    assert_eq!(
        pid(&rows, "one"),
        pid(&before, "one"),
        "workloads keep running"
    );
    assert_eq!(logged(&agent, FULL), 1, "reported once, not per tick");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(logged(&agent, FULL), 1, "still once after a few ticks");

    // To the last byte, the agent's reserve included: what it refuses, it says why.
    disk.fill();
    let manifest = agent.root.join("three.yaml");
    std::fs::write(&manifest, shell_workload("three", "sleep 300", "", "")).expect("write");
    let out = agent.cli(&["apply", "-f", &manifest.display().to_string()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let db = disk.path.join("agent.db");
    assert!(
        err.contains(&format!(
            "nothing was applied: cannot save the desired state in {}: the disk is full (no space left on device); free space, e.g. `shoal-agent images prune`",
            db.display()
        )),
        "{err}"
    );

    // The agent's own commands free space, with no byte free to start with.
    let removed = agent.ok(&["images", "rm", "localhost/spare-a:1"]);
    assert!(
        removed.starts_with("removed localhost/spare-a:1; freed "),
        "{removed}"
    );
    assert!(disk.free_bytes() >= 1 << 20, "{removed}");
    disk.fill();
    let pruned = agent.ok(&["images", "prune"]);
    assert!(pruned.starts_with("removed 1 images"), "{pruned}");
    assert!(disk.free_bytes() >= 1 << 20, "{pruned}");
    let images = agent.ok(&["images", "ls"]);
    assert!(!images.contains("spare"), "{images}");
    agent.ok(&["delete", "two"]);
    agent.wait_for("two gone", Duration::from_secs(20), |rows| {
        cell(rows, "two", "main", "STATE").is_empty()
    });

    // A container writing all the while: its log writes fail, and its shim says so once per
    // streak of failures, not once per write (the shim's log is in the run dir, in memory).
    disk.fill();
    std::thread::sleep(Duration::from_secs(3));
    let failures = shim_log_lines(&agent, "cannot write the container log");
    eprintln!("[shim log lines about failed log writes: {failures}]");
    assert!((1..10).contains(&failures), "{failures} complaints");

    // kill -9 on the full disk: the containers are re-adopted.
    agent.kill9();
    agent.start();
    let adopted = agent.wait_for("one re-adopted", Duration::from_secs(20), |rows| {
        running(rows, "one")
    });
    assert_eq!(pid(&adopted, "one"), pid(&before, "one"));
    wait_for_ps(&agent, "ps still says full", Duration::from_secs(5), |ps| {
        ps.contains(FULL)
    });

    // A power cut on the still-full disk: everything accepted runs again from SQLite.
    disk.fill();
    agent.power_cut(&[pid(&adopted, "one")]);
    let start = Instant::now();
    agent.start();
    let after = agent.wait_for("one running again", Duration::from_secs(30), |rows| {
        running(rows, "one")
    });
    eprintln!(
        "[power cut on a full disk to all running: {} ms]",
        start.elapsed().as_millis()
    );
    assert_ne!(pid(&after, "one"), pid(&before, "one"), "a new container");
    assert!(cell(&after, "two", "main", "STATE").is_empty(), "{after:?}");
    wait_for_ps(
        &agent,
        "ps says full after the reboot",
        Duration::from_secs(5),
        |ps| ps.contains(FULL),
    );

    // Room again: the agent notices by itself, and new applies work.
    disk.unfill();
    wait_for_ps(
        &agent,
        "the condition cleared",
        Duration::from_secs(10),
        |ps| !ps.contains(FULL),
    );
    assert_eq!(logged(&agent, SPACE_AGAIN), 1);
    agent.apply("three", &shell_workload("three", "sleep 300", "", ""));
    agent.wait_for("three running", Duration::from_secs(20), |rows| {
        running(rows, "one") && running(rows, "three")
    });

    // Stopped cleanly (SQLite then deletes its -shm file), the disk fills while the agent is
    // away, and it starts again: there is no room for a new -shm file, so the agent keeps its
    // database to itself, in its own memory, and runs as before.
    let stopped = agent.terminate();
    eprintln!("[SIGTERM to exit: {} ms]", stopped.as_millis());
    assert!(!disk.path.join("agent.db-shm").exists());
    disk.fill();
    agent.start();
    let rows = agent.wait_for("both re-adopted", Duration::from_secs(20), |rows| {
        running(rows, "one") && running(rows, "three")
    });
    assert_eq!(pid(&rows, "one"), pid(&after, "one"), "not restarted");
    wait_for_ps(
        &agent,
        "ps says full after a clean restart",
        Duration::from_secs(5),
        |ps| ps.contains(FULL),
    );
    assert!(
        agent.log().contains("keeps the database to itself"),
        "{}",
        agent.log_tail()
    );
    let selftest = std::process::Command::new(shoal_tests::binary("shoal-agent"))
        .args(["selftest", "--data-dir"])
        .arg(&disk.path)
        .output()
        .expect("run selftest");
    let text = String::from_utf8_lossy(&selftest.stdout);
    assert!(
        text.contains("is in use by a running `shoal-agent run`"),
        "{text}"
    );
    disk.unfill();
    wait_for_ps(
        &agent,
        "the condition cleared again",
        Duration::from_secs(10),
        |ps| !ps.contains(FULL),
    );
    agent.apply("four", &shell_workload("four", "sleep 300", "", ""));
    agent.wait_for("four running", Duration::from_secs(20), |rows| {
        running(rows, "four")
    });
    assert_eq!(
        logged(&agent, FULL),
        4,
        "once when it filled, once per start on the full disk"
    );
    assert_eq!(logged(&agent, SPACE_AGAIN), 2);

    // Nothing stored was lost or damaged.
    agent.delete_all();
    agent.kill9();
    let selftest = std::process::Command::new(shoal_tests::binary("shoal-agent"))
        .args(["selftest", "--data-dir"])
        .arg(&disk.path)
        .output()
        .expect("run selftest");
    let text = String::from_utf8_lossy(&selftest.stdout);
    assert!(text.contains("integrity ok"), "{text}");
}

#[test]
fn the_hub_hears_once_that_a_nodes_data_disk_filled_and_once_that_it_has_space_again() {
    let hub = Hub::start("full-disk-hub");
    let name = "full-disk-node";
    let token = hub.add_node(name, "");
    let mut agent = Hub::unenrolled_agent(name, "keep_alive = \"5s\"\nheartbeat = \"10s\"");
    let disk = SmallDisk::mount(&agent.root.join("data"), 64);
    hub.enroll_agent(&agent, &token, &[]);
    agent.start();
    agent.import_busybox();
    hub.wait_for("node online", CONVERGE, || {
        hub.node(name).filter(|n| n["online"] == true)
    });
    let file = hub.root.join("steady.yaml");
    std::fs::write(&file, shell_workload("steady", "sleep 300", "", "")).expect("write");
    hub.ok(&["apply", "-f", &file.display().to_string()]);
    agent.wait_for("steady running", CONVERGE, |rows| running(rows, "steady"));

    disk.fill();
    let describe = hub.wait_for("the full disk at the hub", CONVERGE, || {
        let text = hub.ok(&["describe", "node", name]);
        text.contains(FULL).then_some(text)
    });
    assert!(
        describe.contains("shoal-agent images prune"),
        "the hub sees what to do:\n{describe}"
    );

    // A new desired state while not even the agent's reserve is left: not stored, so not
    // run, until there is room again; then taken without a new delivery from the hub.
    disk.fill();
    let file = hub.root.join("later.yaml");
    std::fs::write(&file, shell_workload("later", "sleep 300", "", "")).expect("write");
    hub.ok(&["apply", "-f", &file.display().to_string()]);
    let start = Instant::now();
    while !agent.log().contains("cannot store desired generation") {
        assert!(
            start.elapsed() < CONVERGE,
            "the agent did not get the new desired state:\n{}",
            agent.log_tail()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        agent
            .log()
            .contains("it is taken once the disk has space again"),
        "{}",
        agent.log_tail()
    );
    assert!(cell(&agent.ps(), "later", "main", "STATE").is_empty());
    disk.unfill();
    agent.wait_for("later running once there is room", CONVERGE, |rows| {
        running(rows, "later") && running(rows, "steady")
    });
    let describe = hub.wait_for("space again at the hub", CONVERGE, || {
        let text = hub.ok(&["describe", "node", name]);
        text.contains(SPACE_AGAIN).then_some(text)
    });
    assert_eq!(describe.matches(FULL).count(), 1, "{describe}");
    assert_eq!(describe.matches(SPACE_AGAIN).count(), 1, "{describe}");

    for workload in hub.get("workloads") {
        let name = workload["name"].as_str().unwrap_or_default().to_string();
        hub.ok(&["delete", "workload", &name]);
    }
    agent.wait_for("nothing left running", CONVERGE, |rows| rows.is_empty());
    drop(disk);
}
