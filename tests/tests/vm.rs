//! The agent where most devices run it: a 512 MiB virtual machine with cgroup v2 alone (this
//! build machine is cgroup v1), running the static device build. Each test boots one VM
//! (`shoal_tests::vm`); TCG is slow, so each plays several scenarios in that one VM.

use std::time::{Duration, Instant};

use shoal_tests::agent::{cell, shell_workload, Row};
use shoal_tests::hub::{ready, Hub};
use shoal_tests::vm::{Vm, AGENT, CONFIG};

/// Under TCG a container start takes a second or more; give each wait room.
const WAIT: Duration = Duration::from_secs(90);

fn running(rows: &[Row], workload: &str) -> bool {
    cell(rows, workload, "main", "STATE") == "Running"
}

fn pid(rows: &[Row], workload: &str) -> String {
    cell(rows, workload, "main", "PID")
}

/// The container's cgroup directory in the VM (`/sys/fs/cgroup/shoal/NODE/WORKLOAD/main`).
fn cgroup(node: &str, workload: &str) -> String {
    format!("/sys/fs/cgroup/shoal/{node}/{workload}/main")
}

/// The value of `key` in a flat-keyed cgroup file.
fn key(text: &str, key: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

#[test]
fn on_cgroup_v2_memory_pids_cpu_and_device_limits_hold_health_checks_restart_and_kill9_readopts() {
    let node = "vm-v2";
    let mut vm = Vm::boot(node);

    // The VM is what most boards are: cgroup v2 alone, and 512 MiB.
    let controllers = vm.sh("cat /sys/fs/cgroup/cgroup.controllers");
    for controller in ["cpu", "memory", "pids"] {
        assert!(controllers.contains(controller), "{controllers}");
    }
    let mounts = vm.sh("cat /proc/mounts");
    assert!(!mounts.contains(" cgroup "), "no v1 hierarchy: {mounts}");
    let memory = key(
        &vm.sh("cat /proc/meminfo | tr -s ' ' | sed 's/ kB//; s/://'"),
        "MemTotal",
    );
    assert!(memory < 512 * 1024, "MemTotal {memory} kB");
    let selftest = vm.sh(&format!("{AGENT} selftest --data-dir /tmp/selftest"));
    assert!(selftest.contains("v2 (unified)"), "{selftest}");

    vm.start_agent(false);
    vm.import_busybox();
    let idle = vm.agent_rss_kib();
    let free = vm.sh("free -k | awk '/Mem:/ { print $4 }'");
    eprintln!(
        "[vm agent RSS with 0 containers: {idle} KiB; free memory {} KiB]",
        free.trim()
    );

    // Memory: past its limit the container is OOM-killed, and memory.events says so.
    let hog = "a=$(busybox head -c 67108864 /dev/zero | busybox tr '\\0' x); sleep 300";
    vm.apply(
        "hog",
        &shell_workload("hog", hog, "", "      resources: { memory: 16Mi }\n"),
    );
    let child = "sh -c 'a=$(busybox head -c 67108864 /dev/zero | busybox tr \\\\0 x)'; \
                 echo \"child killed: $?\"; exec sleep 300";
    vm.apply(
        "hogchild",
        &shell_workload("hogchild", child, "", "      resources: { memory: 16Mi }\n"),
    );
    // Pids: a shell forking until the kernel refuses, against a limit of 16; the container's
    // own shell then goes on (`exec`, since it could not fork either).
    let bomb = "sh -c 'while :; do sleep 300 & done'; echo \"forks refused: $?\"; exec sleep 300";
    vm.apply(
        "bomb",
        &shell_workload("bomb", bomb, "", "      resources: { pids: 16 }\n"),
    );
    // CPU: a busy loop held to a fifth of a CPU.
    vm.apply(
        "spin",
        &shell_workload(
            "spin",
            "while :; do :; done",
            "",
            "      resources: { cpu: 200m }\n",
        ),
    );
    // A failing health check restarts its container; a passing one keeps it.
    let failing =
        "      health: { exec: [\"/bin/false\"], interval: 2s, timeout: 2s, retries: 2 }\n";
    vm.apply(
        "sick",
        &shell_workload("sick", "sleep 300", "  stopGracePeriod: 1s\n", failing),
    );
    let passing =
        "      health: { exec: [\"/bin/true\"], interval: 2s, timeout: 2s, retries: 2 }\n";
    vm.apply("well", &shell_workload("well", "sleep 300", "", passing));

    let rows = vm.wait_for(
        "an OOM kill, a health restart, the rest running",
        WAIT,
        |rows| {
            cell(rows, "hog", "main", "RESTARTS").contains("OOM")
                && cell(rows, "sick", "main", "RESTARTS")
                    .parse::<u32>()
                    .unwrap_or(0)
                    >= 1
                && running(rows, "bomb")
                && running(rows, "spin")
                && cell(rows, "well", "main", "HEALTH") == "Healthy"
        },
    );
    assert_eq!(
        cell(&rows, "hog", "main", "LAST EXIT"),
        "OOMKilled",
        "{rows:?}"
    );
    assert_eq!(
        cell(&rows, "sick", "main", "LAST EXIT"),
        "SIGKILL",
        "killed after its grace period: {rows:?}"
    );

    // A child killed for memory leaves its container running, and memory.events counts it.
    let child_cgroup = cgroup(node, "hogchild");
    assert_eq!(
        vm.sh(&format!("cat {child_cgroup}/memory.max")).trim(),
        "16777216"
    );
    let start = Instant::now();
    while !vm.agent("logs hogchild").contains("child killed") {
        assert!(start.elapsed() < WAIT, "the child was not killed");
        std::thread::sleep(Duration::from_millis(300));
    }
    let child_log = vm.agent("logs hogchild");
    assert!(
        child_log.contains("child killed: 137"),
        "SIGKILL for the child: {child_log}"
    );
    let events = vm.sh(&format!("cat {child_cgroup}/memory.events"));
    assert!(key(&events, "oom_kill") >= 1, "memory.events: {events}");

    let bomb_cgroup = cgroup(node, "bomb");
    assert_eq!(vm.sh(&format!("cat {bomb_cgroup}/pids.max")).trim(), "16");
    let current: u64 = vm
        .sh(&format!("cat {bomb_cgroup}/pids.current"))
        .trim()
        .parse()
        .expect("pids.current");
    assert!(current <= 16, "pids.current {current}");
    let pid_events = vm.sh(&format!("cat {bomb_cgroup}/pids.events"));
    assert!(key(&pid_events, "max") >= 1, "forks refused: {pid_events}");
    let bomb_log = vm.agent("logs bomb");
    assert!(
        bomb_log.contains("forks refused: 2"),
        "the forking shell stopped at the limit: {bomb_log}"
    );

    let spin_cgroup = cgroup(node, "spin");
    assert_eq!(
        vm.sh(&format!("cat {spin_cgroup}/cpu.max")).trim(),
        "20000 100000"
    );
    let usage = |vm: &mut Vm| key(&vm.sh(&format!("cat {spin_cgroup}/cpu.stat")), "usage_usec");
    let (before, start) = (usage(&mut vm), Instant::now());
    std::thread::sleep(Duration::from_secs(5));
    let (after, took) = (usage(&mut vm), start.elapsed());
    let share = (after - before) as f64 / took.as_micros() as f64;
    eprintln!("[vm cpu share of a 200m container: {:.0}%]", share * 100.0);
    assert!(
        share > 0.01 && share < 0.3,
        "a 200m quota used {share:.2} of a CPU"
    );

    // Devices on v2, through the agent's eBPF program: a container that lists /dev/null but not
    // the disk may create the disk's node (CAP_MKNOD), not open it (EPERM, the device
    // cgroup's answer); one that lists the disk reads it, also through a node it made in the
    // same /dev (so no mount option is what refuses the first).
    let numbers = vm.sh("stat -c '%t %T' /dev/vda");
    let (major, minor) = numbers
        .split_once(' ')
        .map(|(a, b)| {
            let hex = |t: &str| u32::from_str_radix(t.trim(), 16).expect("hex device number");
            (hex(a), hex(b))
        })
        .expect("major and minor");
    let probe = format!(
        "mknod /dev/disk b {major} {minor} && echo made; \
         if head -c 1 /dev/disk >/dev/null; then echo disk opened; else echo disk refused; fi; \
         head -c 1 /dev/null && echo null opened; sleep 300"
    );
    vm.apply(
        "nodisk",
        &shell_workload(
            "nodisk",
            &probe,
            "",
            "      devices: [\"/dev/null\"]\n      capabilities: { add: [MKNOD] }\n",
        ),
    );
    vm.apply(
        "disk",
        &shell_workload(
            "disk",
            &format!(
                "head -c 512 /dev/vda | wc -c; mknod /dev/disk b {major} {minor}; \
                 head -c 512 /dev/disk | wc -c; sleep 300"
            ),
            "",
            "      devices: [\"/dev/vda\"]\n      capabilities: { add: [MKNOD] }\n",
        ),
    );
    vm.wait_for("both device probes running", WAIT, |rows| {
        running(rows, "nodisk") && running(rows, "disk")
    });
    let start = Instant::now();
    let (refused, read) = loop {
        let refused = vm.agent("logs nodisk");
        let read = vm.agent("logs disk");
        if refused.contains("null opened") && read.lines().count() >= 2 {
            break (refused, read);
        }
        assert!(
            start.elapsed() < WAIT,
            "no probe output: {refused:?} {read:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    };
    assert!(refused.contains("made"), "mknod is allowed: {refused}");
    assert!(
        refused.contains("disk refused") && refused.contains("Operation not permitted"),
        "the unlisted disk cannot be opened: {refused}"
    );
    assert_eq!(read.trim(), "512\n512", "the listed disk is read");

    // kill -9 of the agent: it re-adopts every container, same processes, nothing restarted.
    let before = vm.ps();
    eprintln!(
        "[vm agent RSS with {} containers: {} KiB]",
        before.len(),
        vm.agent_rss_kib()
    );
    vm.kill9_agent();
    let start = Instant::now();
    vm.start_agent(false);
    let after = vm.wait_for("every container re-adopted", WAIT, |rows| {
        ["bomb", "spin", "well"].iter().all(|w| running(rows, w))
    });
    eprintln!(
        "[vm agent restart to re-adopted: {} ms]",
        start.elapsed().as_millis()
    );
    for workload in ["bomb", "spin", "well"] {
        assert_eq!(
            pid(&after, workload),
            pid(&before, workload),
            "{workload}: {after:?}"
        );
        assert_eq!(
            cell(&after, workload, "main", "RESTARTS"),
            cell(&before, workload, "main", "RESTARTS"),
            "{workload}"
        );
    }
    assert!(
        vm.agent_log().contains("re-adopted"),
        "the adoption is logged"
    );

    // Deleting removes every container and its cgroup, the fork loop's dozen processes too.
    for workload in [
        "hog", "hogchild", "bomb", "spin", "sick", "well", "nodisk", "disk",
    ] {
        vm.agent(&format!("delete {workload}"));
    }
    vm.wait_for("nothing left", WAIT, |rows| rows.is_empty());
    let start = Instant::now();
    loop {
        let left = vm.sh(&format!(
            "find /sys/fs/cgroup/shoal/{node} -mindepth 1 -type d; \
             ps | grep '[s]leep 300' || true"
        ));
        if left.trim().is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "left behind after the deletes:\n{left}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn a_vm_enrolled_with_the_hub_runs_its_workload_through_kill9_and_a_power_cut_with_no_network() {
    let node = "vm-fleet";
    let mut vm = Vm::boot(node);
    let address = vm.link.host_address();
    let hub = Hub::start_on(node, &address, &address);

    // Enrolled from inside the VM, over the tap link, as an operator would on the device.
    let token = hub.add_node(node, "site=vm");
    vm.sh(&format!(
        "cat >> {CONFIG} <<'EOF'\n[hub]\nkeep_alive = \"5s\"\nheartbeat = \"10s\"\nEOF"
    ));
    let enrolled = vm.sh(&format!(
        "{AGENT} enroll --hub {} --token {token} --config {CONFIG}",
        hub.api
    ));
    eprintln!("{enrolled}");
    vm.start_agent(true);
    vm.import_busybox();
    hub.wait_node_online(node);

    let manifest = shell_workload(
        "fleet-app",
        "echo fleet-app up; sleep 300",
        "  placement: { mode: every, nodeSelector: { site: vm } }\n",
        "      resources: { memory: 32Mi, cpu: 250m }\n",
    );
    let start = Instant::now();
    hub.apply("fleet-app", &manifest);
    let first = vm.wait_for("the fleet workload running", WAIT, |rows| {
        running(rows, "fleet-app")
    });
    hub.wait_for("the hub to see it ready", WAIT, || {
        hub.workload("fleet-app").filter(|w| ready(w, 1))
    });
    eprintln!(
        "[vm apply through the hub to ready: {} ms]",
        start.elapsed().as_millis()
    );
    assert_eq!(
        vm.sh(&format!(
            "cat {}/memory.max {}/cpu.max",
            cgroup(node, "fleet-app"),
            cgroup(node, "fleet-app")
        )),
        "33554432\n25000 100000\n"
    );

    // kill -9 of the agent: the container goes on and is re-adopted; the node comes back.
    vm.kill9_agent();
    vm.start_agent(true);
    let adopted = vm.wait_for("the workload re-adopted", WAIT, |rows| {
        running(rows, "fleet-app")
    });
    assert_eq!(
        pid(&adopted, "fleet-app"),
        pid(&first, "fleet-app"),
        "{adopted:?}"
    );
    assert_eq!(cell(&adopted, "fleet-app", "main", "RESTARTS"), "0");

    // A power cut with the link down, right after a second workload started: the VM boots,
    // its init starts the agent, and both run again from SQLite alone. What the agent
    // accepted and acted on must be on the disk, not in the page cache the reset drops.
    let late = shell_workload(
        "late-app",
        "sleep 300",
        "  placement: { mode: every, nodeSelector: { site: vm } }\n",
        "",
    );
    hub.apply("late-app", &late);
    vm.wait_for("the second workload running", WAIT, |rows| {
        running(rows, "late-app")
    });
    vm.link.cut();
    vm.power_cut();
    vm.wait_agent();
    let rebooted = vm.wait_for("both workloads back after the power cut", WAIT, |rows| {
        running(rows, "fleet-app") && running(rows, "late-app")
    });
    let reached = vm.try_run(
        &format!("nc -z -w 2 {address} {}", hub.mqtt_port),
        Duration::from_secs(30),
    );
    assert!(
        matches!(reached, Some((status, _)) if status != 0),
        "the hub must be out of reach: {reached:?}"
    );
    let console = vm.console();
    assert_eq!(
        console.matches("shoal-vm: agent started").count(),
        1,
        "the VM's init started the agent at the second boot: {console}"
    );

    // The link back: the node reconnects and nothing restarts.
    vm.link.restore();
    let start = Instant::now();
    hub.wait_for("the node online after the power cut", WAIT, || {
        hub.node(node).filter(|n| n["online"] == true)
    });
    eprintln!(
        "[vm link restored to node online: {} ms]",
        start.elapsed().as_millis()
    );
    hub.wait_for("the hub to see it ready again", WAIT, || {
        hub.workload("fleet-app").filter(|w| ready(w, 1))
    });
    let after = vm.ps();
    assert_eq!(
        pid(&after, "fleet-app"),
        pid(&rebooted, "fleet-app"),
        "{after:?}"
    );
    assert_eq!(
        cell(&after, "fleet-app", "main", "RESTARTS"),
        cell(&rebooted, "fleet-app", "main", "RESTARTS"),
        "reconnecting restarts nothing"
    );
    let boots: Vec<u128> = vm.boot_times.iter().map(Duration::as_millis).collect();
    eprintln!("[vm boots: {boots:?} ms]");
}
