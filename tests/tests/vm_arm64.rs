//! The agent on arm64, where most boards are: a 512 MiB aarch64 virtual machine (QEMU's
//! `virt` board, a Cortex-A53, under TCG) with cgroup v2 alone, running the static aarch64
//! device build (`shoal_tests::vm` with [`Arch::Aarch64`]). Emulating another instruction set
//! is slow, so this is one bounded smoke test in one VM: the arm64 image imported (and the
//! amd64 one refused), a memory limit and its OOM kill reported up to the hub, and a workload
//! from the hub on the host placed by architecture, run, updated and deleted.

use std::time::{Duration, Instant};

use shoal_tests::agent::{busybox_archive, cell, shell_workload, Row};
use shoal_tests::hub::{ready, Hub};
use shoal_tests::vm::{Arch, Vm, AGENT, CONFIG, DATA_MOUNT, SOCKET};

/// A container start under aarch64 TCG takes a few seconds; give each wait room.
const WAIT: Duration = Duration::from_secs(180);

fn running(rows: &[Row], workload: &str) -> bool {
    cell(rows, workload, "main", "STATE") == "Running"
}

fn cgroup(node: &str, workload: &str) -> String {
    format!("/sys/fs/cgroup/shoal/{node}/{workload}/main")
}

/// A workload for the arm64 nodes only (the hub places it by the node's reported arch).
fn arm64_workload(name: &str, script: &str, resources: &str) -> String {
    shell_workload(
        name,
        script,
        "  placement: { mode: every, constraints: [\"arch in (arm64)\"] }\n",
        &format!("      resources: {resources}\n"),
    )
}

#[test]
fn an_arm64_vm_runs_the_arm64_image_reports_its_oom_kill_and_reconciles_a_workload_from_the_hub() {
    let node = "vm-arm64";
    let test_start = Instant::now();
    let amd64_only = busybox_archive();
    let mut vm = Vm::boot_with(
        Arch::Aarch64,
        node,
        &[(amd64_only, "images/busybox-amd64.tar")],
    );
    let booted = test_start.elapsed();

    // An arm64 board: aarch64, cgroup v2 alone, less than 512 MiB.
    assert_eq!(vm.sh("uname -m").trim(), "aarch64");
    let controllers = vm.sh("cat /sys/fs/cgroup/cgroup.controllers");
    for controller in ["cpu", "memory", "pids"] {
        assert!(controllers.contains(controller), "{controllers}");
    }
    assert!(
        !vm.sh("cat /proc/mounts").contains(" cgroup "),
        "no v1 hierarchy"
    );
    let memory: u64 = vm
        .sh("awk '/MemTotal/ { print $2 }' /proc/meminfo")
        .trim()
        .parse()
        .expect("MemTotal in kB");
    assert!(memory < 512 * 1024, "MemTotal {memory} kB");
    let selftest = vm.sh(&format!("{AGENT} selftest --data-dir /tmp/selftest"));
    assert!(
        selftest
            .lines()
            .any(|l| l.starts_with("ok") && l.contains(" arm64")),
        "the agent reports arm64: {selftest}"
    );
    assert!(selftest.contains("v2 (unified)"), "{selftest}");

    // Enrolled with a hub on the host, over the VM's tap link.
    let address = vm.link.host_address();
    let hub = Hub::start_on(node, &address, &address);
    let token = hub.add_node(node, "site=vm");
    vm.sh(&format!(
        "cat >> {CONFIG} <<'EOF'\n[hub]\nkeep_alive = \"5s\"\nheartbeat = \"10s\"\nEOF"
    ));
    vm.sh(&format!(
        "{AGENT} enroll --hub {} --token {token} --config {CONFIG}",
        hub.api
    ));
    let agent_start = Instant::now();
    vm.start_agent(false);
    let agent_up = agent_start.elapsed();
    let online = hub.wait_for("the node online with its facts", WAIT, || {
        hub.node(node)
            .filter(|n| n["online"] == true && n["facts"]["arch"].is_string())
    });
    assert_eq!(
        online["facts"]["arch"], "arm64",
        "the node's facts: {online}"
    );
    assert_eq!(online["facts"]["cgroup_version"], 2, "{online}");

    // The multi-arch test image: the agent takes its own platform's manifest. An amd64-only
    // image is refused at import, naming both platforms.
    let imported = vm.agent(&format!("images import {DATA_MOUNT}/images/busybox.tar"));
    eprintln!("{imported}");
    let refused = vm
        .try_run(
            &format!(
                "{AGENT} images import {DATA_MOUNT}/images/busybox-amd64.tar --socket {SOCKET}"
            ),
            Duration::from_secs(60),
        )
        .expect("the import of the amd64 image finishes");
    assert_ne!(refused.0, 0, "an amd64 image on arm64: {refused:?}");
    assert!(
        refused.1.contains("linux/amd64") && refused.1.contains("linux/arm64"),
        "the refusal names the platforms: {}",
        refused.1
    );

    // From the hub: an app placed by architecture, and a hog past its memory limit.
    let apply_start = Instant::now();
    hub.apply(
        "arm-app",
        &arm64_workload(
            "arm-app",
            "echo \"arm-app v1 on $(uname -m)\"; exec sleep 600",
            "{ memory: 32Mi, cpu: 250m }",
        ),
    );
    let hog = "a=$(busybox head -c 67108864 /dev/zero | busybox tr '\\0' x); sleep 600";
    hub.apply(
        "arm-hog",
        &arm64_workload("arm-hog", hog, "{ memory: 16Mi }"),
    );
    let rows = vm.wait_for("arm-app running and arm-hog OOM-killed", WAIT, |rows| {
        running(rows, "arm-app") && cell(rows, "arm-hog", "main", "RESTARTS").contains("OOM")
    });
    let first_run = apply_start.elapsed();
    assert_eq!(
        cell(&rows, "arm-hog", "main", "LAST EXIT"),
        "OOMKilled",
        "{rows:?}"
    );
    assert_eq!(
        vm.sh(&format!(
            "cat {0}/memory.max {0}/cpu.max",
            cgroup(node, "arm-app")
        )),
        "33554432\n25000 100000\n"
    );
    let logs = vm.agent("logs arm-app");
    assert!(logs.contains("arm-app v1 on aarch64"), "{logs}");
    hub.wait_for("the hub to see arm-app ready", WAIT, || {
        hub.workload("arm-app").filter(|w| ready(w, 1))
    });
    // The OOM kill is reported up: the hub's view of the hog says so.
    let described = hub.wait_for("the hub to show the hog's OOM kill", WAIT, || {
        let text = hub.ok(&["describe", "workload", "arm-hog"]);
        text.contains("OOMKilled").then_some(text)
    });
    assert!(described.contains(node), "{described}");

    // Reconciled from the hub: an update replaces the container, a delete removes the hog
    // and its cgroup.
    let update_start = Instant::now();
    hub.apply(
        "arm-app",
        &arm64_workload(
            "arm-app",
            "echo \"arm-app v2 on $(uname -m)\"; exec sleep 600",
            "{ memory: 32Mi, cpu: 250m }",
        ),
    );
    hub.ok(&["delete", "workload", "arm-hog"]);
    hub.wait_for("arm-app v2 ready", WAIT, || {
        hub.workload("arm-app").filter(|w| ready(w, 2))
    });
    let rows = vm.wait_for("the hog deleted, arm-app updated", WAIT, |rows| {
        running(rows, "arm-app")
            && !rows
                .iter()
                .any(|r| r.get("WORKLOAD").map(String::as_str) == Some("arm-hog"))
    });
    let updated = update_start.elapsed();
    let logs = vm.agent("logs arm-app");
    assert!(logs.contains("arm-app v2 on aarch64"), "{logs}");
    assert_eq!(cell(&rows, "arm-app", "main", "RESTARTS"), "0", "{rows:?}");
    let start = Instant::now();
    while vm
        .sh(&format!(
            "test -d {} && echo left || true",
            cgroup(node, "arm-hog")
        ))
        .contains("left")
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the hog's cgroup is left behind"
        );
        std::thread::sleep(Duration::from_millis(500));
    }

    let boot = vm.boot_times.first().map_or(0, Duration::as_millis);
    eprintln!(
        "[vm arm64: up in {} ms (image, agent build, disk and a {boot} ms boot), agent \
         answering {} ms, apply to running and OOM-killed {} ms, update and delete {} ms, \
         agent RSS {} KiB, whole test {} ms]",
        booted.as_millis(),
        agent_up.as_millis(),
        first_run.as_millis(),
        updated.as_millis(),
        vm.agent_rss_kib(),
        test_start.elapsed().as_millis()
    );
}
