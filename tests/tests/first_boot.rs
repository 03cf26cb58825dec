//! A flashed image's first boot, simulated: the image's partitions mounted from a loop device
//! (as root), its first-boot hook run into the mounted root, and the agent it installed
//! enrolled with the bootstrap (`shoal-agent enroll --bootstrap`, as the installed unit's
//! `ExecStartPre` does) from inside a network namespace that stands for the device, against a
//! real hub; then the fleet's `every` workload runs there. A reboot (everything killed, the
//! hook and the unit's commands run again) enrolls nothing twice. Loop device, mounts,
//! namespace and bridge are removed however the test ends.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use shoal_tests::agent::{cell, shell_workload, Agent};
use shoal_tests::fleet::{free_subnet, ip};
use shoal_tests::hub::{Hub, DEFAULT_HUB_SETTINGS};
use shoal_tests::image::{self, Shape};
use shoal_tests::run;

/// What the test set up, taken down on drop (also when it panics).
#[derive(Default)]
struct Rig {
    bridge: Option<String>,
    netns: Option<String>,
    loop_devices: Vec<String>,
    mounts: Vec<PathBuf>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        for mount in self.mounts.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(mount).status();
        }
        for device in &self.loop_devices {
            let _ = Command::new("losetup").arg("-d").arg(device).status();
        }
        if let Some(netns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", netns]).status();
        }
        if let Some(bridge) = &self.bridge {
            let _ = Command::new("ip").args(["link", "del", bridge]).status();
        }
    }
}

/// The installed unit's command line after `key=`.
fn unit_command(unit: &str, key: &str) -> Vec<String> {
    unit.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in the unit:\n{unit}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_flashed_image_boots_enrolls_runs_the_fleet_workload_and_a_reboot_enrolls_nothing_twice() {
    let mut rig = Rig::default();
    let pid = std::process::id();

    // The network: a bridge where the hub listens, a namespace for the device with its link
    // down at first (devices boot before their network is up).
    let subnet = free_subnet();
    let bridge = format!("sfb{pid}");
    ip(&["link", "add", &bridge, "type", "bridge"]);
    rig.bridge = Some(bridge.clone());
    ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &bridge]);
    ip(&["link", "set", &bridge, "up"]);
    let netns = format!("sfd{pid}");
    ip(&["netns", "add", &netns]);
    rig.netns = Some(netns.clone());
    let veth = format!("vfb{pid}");
    ip(&[
        "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
    ]);
    ip(&["link", "set", &veth, "master", &bridge]);
    ip(&[
        "-n",
        &netns,
        "addr",
        "add",
        &format!("{subnet}.2/24"),
        "dev",
        "eth0",
    ]);
    ip(&["-n", &netns, "link", "set", "lo", "up"]);

    let hub_address = format!("{subnet}.1");
    let hub = Hub::start_on("firstboot", &hub_address, &hub_address);
    let out = hub.ok(&["token", "create", "--uses", "5", "--labels", "site=plant-1"]);
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("shoalc1."))
        .expect("a claim token")
        .to_string();

    // Flash a Pi-shaped image (as the operator: the hub advertises its bridge address).
    let dir = std::env::temp_dir().join(format!("shoal-firstboot-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let pi = image::build(&dir, "pi", &Shape::pi());
    let agent_binary = shoal_tests::vm::device_agent(shoal_tests::vm::Arch::X86_64);
    let started = std::time::Instant::now();
    hub.ok(&[
        "flash",
        &pi.display().to_string(),
        "--token",
        &token,
        "--agent",
        &agent_binary.display().to_string(),
    ]);
    eprintln!("flashed in {:?}", started.elapsed());

    // Mount it as the device would see it: root, and the boot partition at /boot/firmware.
    // One loop device per partition, at its offset (no udev here for partition nodes).
    let shape = Shape::pi();
    let mut attach = |start_sector: u64, mib: u64| -> String {
        let device = run(Command::new("losetup")
            .args(["--find", "--show", "--offset"])
            .arg((start_sector * 512).to_string())
            .arg("--sizelimit")
            .arg((mib << 20).to_string())
            .arg(&pi));
        let device = device.trim().to_string();
        rig.loop_devices.push(device.clone());
        device
    };
    let boot_device = attach(image::BOOT_START, shape.boot_mib);
    let root_device = attach(image::BOOT_START + shape.boot_mib * 2048, shape.root_mib);
    let root = dir.join("root");
    std::fs::create_dir_all(&root).expect("mount point");
    run(Command::new("mount").arg(&root_device).arg(&root));
    rig.mounts.push(root.clone());
    let boot = root.join("boot/firmware");
    // This machine's kernel has no vfat (no modules either): the boot partition's files are
    // copied by mtools onto a tmpfs at /boot/firmware. A board mounts the FAT partition there.
    let vfat = std::fs::read_to_string("/proc/filesystems")
        .unwrap_or_default()
        .contains("vfat");
    if vfat {
        run(Command::new("mount").arg(&boot_device).arg(&boot));
        rig.mounts.push(boot.clone());
    } else {
        run(Command::new("mount")
            .args(["-t", "tmpfs", "tmpfs"])
            .arg(&boot));
        rig.mounts.push(boot.clone());
        run(Command::new("mcopy")
            .args(["-s", "-n", "-i"])
            .arg(image::boot_of(&pi))
            .arg("::/*")
            .arg(&boot));
    }
    assert!(std::fs::read_to_string(boot.join("cmdline.txt"))
        .expect("cmdline")
        .contains("systemd.run="));

    // First boot: the hook installs the agent and its unit, and removes itself from cmdline.txt.
    let hook = |expect: &str| {
        let out = run(Command::new("sh")
            .arg(boot.join("shoal-firstboot.sh"))
            .env("SHOAL_ROOT", &root));
        assert!(out.contains(expect), "{out}");
    };
    hook("agent installed");
    let installed = root.join("usr/local/bin/shoal-agent");
    assert!(
        installed
            .metadata()
            .expect("installed agent")
            .permissions()
            .mode()
            & 0o111
            != 0
    );
    let unit =
        std::fs::read_to_string(root.join("etc/systemd/system/shoal-agent.service")).expect("unit");
    assert!(
        unit.contains("KillMode=process") && unit.contains("Restart=always"),
        "{unit}"
    );
    assert!(root
        .join("etc/systemd/system/multi-user.target.wants/shoal-agent.service")
        .exists());
    let cmdline = std::fs::read_to_string(boot.join("cmdline.txt")).expect("cmdline");
    assert!(
        !cmdline.contains("systemd.run=")
            && cmdline.contains("cgroup_enable=memory cgroup_memory=1"),
        "{cmdline}"
    );

    // The unit's commands, in the device's namespace, with the image's paths.
    let pre = unit_command(&unit, "ExecStartPre=");
    assert_eq!(
        pre[..3],
        ["/usr/local/bin/shoal-agent", "enroll", "--bootstrap"],
        "{pre:?}"
    );
    assert_eq!(pre[3], "/boot/firmware/shoal-bootstrap.env");
    let mut agent = Agent::unnamed("firstboot", &format!("[hub]\n{DEFAULT_HUB_SETTINGS}\n"));
    agent.binary = installed.clone();
    let config = agent.config.clone();
    let written = std::fs::read_to_string(boot.join("shoal-bootstrap.env")).expect("bootstrap");
    assert!(
        written.contains(&format!("SHOAL_TOKEN={token}")),
        "{written}"
    );
    let enroll = |link_up_after: Option<Duration>| {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{netns}"))
            .arg("--")
            .arg(root.join(pre[0].trim_start_matches('/')))
            .args(&pre[1..3])
            .arg(root.join(pre[3].trim_start_matches('/')))
            .arg("--config")
            .arg(&config);
        let child = command
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("enroll --bootstrap");
        if let Some(after) = link_up_after {
            std::thread::sleep(after);
            ip(&["link", "set", &veth, "up"]);
            ip(&["-n", &netns, "link", "set", "eth0", "up"]);
        }
        let out = child.wait_with_output().expect("enroll --bootstrap");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "enroll --bootstrap: {text}");
        text
    };
    let first = enroll(Some(Duration::from_secs(3)));
    assert!(
        first.contains("trying again"),
        "it waited for the network: {first}"
    );
    assert!(first.contains("enrolled as"), "{first}");
    let bootstrap = std::fs::read_to_string(boot.join("shoal-bootstrap.env")).expect("bootstrap");
    assert!(
        !bootstrap.contains("SHOAL_TOKEN"),
        "the used token is gone:\n{bootstrap}"
    );
    let name = agent.enrolled_name().expect("enrolled");

    let start = |agent: &mut Agent| {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{netns}"))
            .arg("--")
            .arg(&installed);
        agent.start_with(command);
    };
    start(&mut agent);
    agent.import_busybox();
    let node = hub.wait_node_online(&name);
    assert_eq!(node["labels"]["site"], "plant-1", "{node}");
    hub.apply(
        "fleet",
        &shell_workload(
            "fleet",
            "echo up; while true; do sleep 1; done",
            "  placement: { mode: every, nodeSelector: { site: plant-1 } }\n",
            "",
        ),
    );
    let running = |agent: &Agent| {
        agent.wait_for(
            "the fleet workload running",
            Duration::from_secs(60),
            |rows| cell(rows, "fleet", "main", "STATE") == "Running",
        );
    };
    running(&agent);
    eprintln!(
        "from `shoal flash` to the fleet workload running on the device: {:?}",
        started.elapsed()
    );

    // A reboot: everything killed, the hook and the unit's commands again.
    agent.kill_everything();
    hook("agent installed");
    let again = enroll(None);
    assert!(again.contains("already enrolled"), "{again}");
    start(&mut agent);
    running(&agent);
    let nodes = hub.get("nodes");
    assert_eq!(nodes.len(), 1, "one device, one node: {nodes:?}");
    let claims = hub.ok(&["token", "list", "-o", "json"]);
    assert!(claims.contains("\"used\": 1"), "{claims}");
    drop(agent);
    drop(rig);
    let _ = std::fs::remove_dir_all(&dir);
}
