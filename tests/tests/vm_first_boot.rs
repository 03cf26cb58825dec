//! A flashed image's first boot on a device, for real: `cross/sample-image`'s
//! Raspberry-Pi-OS-shaped card, flashed by `shoal flash` with a claim token, is the x86_64
//! VM's second disk (`/dev/vdb`). In the VM the card's root is mounted and its FAT boot
//! partition with `mount -t vfat` at `/boot/firmware` (this build machine's kernel has no
//! vfat, so `first_boot.rs` copies the files out with mtools instead), and the card boots as
//! its own root would: the kernel-command-line hook (`/boot/firmware/shoal-firstboot.sh`)
//! and then the installed unit's `ExecStartPre` and `ExecStart` command lines, run by
//! `chroot` into the card (the VM has no systemd). The device enrolls with the claim token
//! against a real hub on the host, shows in `shoal get nodes` with the token's labels, runs the
//! fleet's `every` workload, and the used token is gone from the FAT partition. A power cut
//! (QMP `system_reset`), the hook and the unit's commands again: the same one node, the
//! token's use counted once, the workload back. After the VM is off, the host reads the boot
//! partition with mtools and `fsck.vfat`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use shoal_tests::agent::{cell, shell_workload, Row};
use shoal_tests::hub::Hub;
use shoal_tests::image::{self, Shape};
use shoal_tests::vm::{device_agent, Arch, Vm, BUSYBOX_ARCHIVE};

/// Under TCG a container start takes a second or more; give each wait room.
const WAIT: Duration = Duration::from_secs(90);

/// Where the card's root is mounted in the VM; its boot partition is at `CARD/boot/firmware`.
const CARD: &str = "/mnt/card";

/// The agent's output (the unit's commands), on the VM's data disk, for failures.
const LOG: &str = "/var/lib/shoal/agent.log";

fn running(rows: &[Row]) -> bool {
    cell(rows, "fleet", "main", "STATE") == "Running"
}

/// Mounts the card as the device's root: its ext4 root, its FAT boot partition at
/// /boot/firmware with `mount -t vfat` and the kernel's defaults, and what a root needs from
/// the kernel (/proc, /sys with its cgroup2, /dev, /run and a /tmp). Returns the vfat line
/// of /proc/mounts.
fn mount_card(vm: &mut Vm) -> String {
    vm.sh(&format!(
        "set -e
i=0
while [ ! -b /dev/vdb2 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
mkdir -p {CARD}
mount -t ext4 /dev/vdb2 {CARD}
mount -t vfat /dev/vdb1 {CARD}/boot/firmware
mount -t proc proc {CARD}/proc
mount -o rbind /sys {CARD}/sys
mount -o rbind /dev {CARD}/dev
mount -o bind /run {CARD}/run
mount -t tmpfs tmp {CARD}/tmp
grep ' {CARD}/boot/firmware ' /proc/mounts"
    ))
}

/// The installed unit's command line after `key=`.
fn unit_command(unit: &str, key: &str) -> String {
    unit.lines()
        .find_map(|l| l.strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key} in the unit:\n{unit}"))
        .trim()
        .to_string()
}

/// One boot of the card: the kernel-command-line hook, then the unit's `ExecStartPre`
/// (enroll, to its end) and `ExecStart` (the agent, detached), each run by `chroot` into the
/// card as its own root. Returns the hook's and the enrollment's output.
fn boot_card(vm: &mut Vm) -> (String, String) {
    let hook = vm.sh(&format!(
        "chroot {CARD} /bin/sh /boot/firmware/shoal-firstboot.sh"
    ));
    let unit = vm.sh(&format!(
        "cat {CARD}/etc/systemd/system/shoal-agent.service"
    ));
    let pre = unit_command(&unit, "ExecStartPre=");
    assert_eq!(
        pre, "/usr/local/bin/shoal-agent enroll --bootstrap /boot/firmware/shoal-bootstrap.env",
        "{unit}"
    );
    let enrolled = vm.sh_for(&format!("chroot {CARD} {pre}"), WAIT);
    let start = unit_command(&unit, "ExecStart=");
    assert_eq!(start, "/usr/local/bin/shoal-agent launch", "{unit}");
    vm.sh(&format!(
        "SHOAL_LOG=debug setsid chroot {CARD} {start} </dev/null >>{LOG} 2>&1 &"
    ));
    vm.wait_agent();
    (hook, enrolled)
}

/// The bootstrap file as the VM's vfat mount reads it.
fn bootstrap_in_vm(vm: &mut Vm) -> String {
    vm.sh(&format!("cat {CARD}/boot/firmware/shoal-bootstrap.env"))
}

/// What `fsck.vfat -n` of the card's boot partition finds beyond the dirty bit: a FAT
/// mounted when the power was cut stays marked dirty (Linux keeps the mark through later clean
/// unmounts, for a board's boot-time fsck to clear), which is no damage.
fn fsck_problems(card: &Path, boot_mib: u64) -> Vec<String> {
    let part = card.with_extension("fsck");
    let copied = Command::new("dd")
        .arg(format!("if={}", card.display()))
        .arg(format!("of={}", part.display()))
        .args(["bs=512", "status=none"])
        .arg(format!("skip={}", image::BOOT_START))
        .arg(format!("count={}", boot_mib * 2048))
        .status()
        .expect("dd");
    assert!(copied.success(), "dd of the boot partition");
    let out = Command::new("fsck.vfat")
        .arg("-n")
        .arg(&part)
        .output()
        .expect("fsck.vfat (apt-get install dosfstools)");
    let _ = std::fs::remove_file(&part);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("[fsck.vfat -n of the boot partition the VM wrote]\n{text}");
    // The dirty bit is a byte of the boot sector, so the backup differs there too.
    let harmless = [
        "fsck.fat ",
        "There are differences between boot sector and its backup.",
        "This is mostly harmless. Differences: (offset:original/backup)",
        "  65:01/00",
        "  Not automatically fixing this.",
        "Dirty bit is set. Fs was not properly unmounted and some data may be corrupt.",
        " Automatically removing dirty bit.",
        "Leaving filesystem unchanged.",
        &format!("{}: ", part.display()),
    ];
    text.lines()
        .filter(|line| !line.is_empty() && !harmless.iter().any(|h| line.starts_with(h)))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_flashed_card_mounted_as_vfat_in_the_vm_enrolls_runs_the_fleet_workload_and_enrolls_once_across_a_power_cut(
) {
    let whole = Instant::now();
    let pid = std::process::id();
    let mut vm = Vm::create(Arch::X86_64, "vm-card", &[]);
    let address = vm.link.host_address();
    let hub = Hub::start_on("vmcard", &address, &address);
    let out = hub.ok(&["token", "create", "--uses", "5", "--labels", "site=vm-card"]);
    let token = out
        .split_whitespace()
        .find(|w| w.starts_with("shoalc1."))
        .expect("a claim token")
        .to_string();

    // The operator's side: a Pi-shaped card, flashed with the token and the x86_64 agent.
    let dir = std::env::temp_dir().join(format!("shoal-vm-card-{pid}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let shape = Shape::pi();
    let card = image::build(&dir, "card", &shape);
    let flashed = Instant::now();
    hub.ok(&[
        "flash",
        &card.display().to_string(),
        "--token",
        &token,
        "--agent",
        &device_agent(Arch::X86_64).display().to_string(),
    ]);
    eprintln!("[shoal flash: {} ms]", flashed.elapsed().as_millis());

    // The card in the device: the VM's second disk, its boot partition a real vfat mount.
    vm.attach_disk(&card);
    vm.start();
    let mounted = mount_card(&mut vm);
    assert!(
        mounted.starts_with(&format!("/dev/vdb1 {CARD}/boot/firmware vfat ")),
        "{mounted}"
    );
    let cmdline = vm.sh(&format!("cat {CARD}/boot/firmware/cmdline.txt"));
    assert!(
        cmdline.contains("systemd.run=/boot/firmware/shoal-firstboot.sh"),
        "{cmdline}"
    );
    assert!(
        bootstrap_in_vm(&mut vm).contains(&format!("SHOAL_TOKEN={token}")),
        "the flashed bootstrap holds the token"
    );

    // First boot.
    let (hook, first) = boot_card(&mut vm);
    assert!(hook.contains("agent installed"), "{hook}");
    let cmdline = vm.sh(&format!("cat {CARD}/boot/firmware/cmdline.txt"));
    assert!(
        !cmdline.contains("systemd.run=")
            && cmdline.contains("cgroup_enable=memory cgroup_memory=1"),
        "the hook took itself off the vfat cmdline.txt: {cmdline}"
    );
    let name = first
        .split("enrolled as `")
        .nth(1)
        .and_then(|rest| rest.split('`').next())
        .unwrap_or_else(|| panic!("no node name in: {first}"))
        .to_string();
    let bootstrap = bootstrap_in_vm(&mut vm);
    assert!(
        !bootstrap.contains("SHOAL_TOKEN") && bootstrap.contains("SHOAL_HUB"),
        "the used token is gone from the vfat mount:\n{bootstrap}"
    );

    let archive = format!(
        "/tmp/{}",
        BUSYBOX_ARCHIVE.rsplit('/').next().unwrap_or_default()
    );
    vm.sh(&format!(
        "cp {BUSYBOX_ARCHIVE} {CARD}{archive} && chroot {CARD} /usr/local/bin/shoal-agent images import {archive}"
    ));
    let node = hub.wait_node_online(&name);
    assert_eq!(node["labels"]["site"], "vm-card", "{node}");
    hub.apply(
        "fleet",
        &shell_workload(
            "fleet",
            "echo up; while true; do sleep 1; done",
            "  placement: { mode: every, nodeSelector: { site: vm-card } }\n",
            "",
        ),
    );
    let before = vm.wait_for("the fleet workload running", WAIT, running);
    eprintln!(
        "[from `shoal flash` to the fleet workload running in the VM: {} ms]",
        flashed.elapsed().as_millis()
    );
    // The agent's state is on the card's root, as on a device.
    vm.sh(&format!("test -f {CARD}/var/lib/shoal/enrollment.toml"));

    // A power cut: every process and mount gone, the card keeps what was written to it.
    vm.power_cut();
    mount_card(&mut vm);
    let bootstrap = bootstrap_in_vm(&mut vm);
    assert!(
        !bootstrap.contains("SHOAL_TOKEN"),
        "the token stays gone across the power cut:\n{bootstrap}"
    );
    let cmdline = vm.sh(&format!("cat {CARD}/boot/firmware/cmdline.txt"));
    assert!(
        cmdline.contains("root=PARTUUID=") && !cmdline.contains("systemd.run="),
        "the hook's edit of cmdline.txt survives the power cut whole: {cmdline}"
    );
    let (hook, again) = boot_card(&mut vm);
    assert!(hook.contains("agent installed"), "{hook}");
    assert!(again.contains("already enrolled"), "{again}");
    vm.sh(&format!(
        "cp {BUSYBOX_ARCHIVE} {CARD}{archive} && chroot {CARD} /usr/local/bin/shoal-agent images import {archive}"
    ));
    let after = vm.wait_for(
        "the fleet workload running after the power cut",
        WAIT,
        running,
    );
    assert_ne!(
        cell(&after, "fleet", "main", "PID"),
        cell(&before, "fleet", "main", "PID"),
        "a new container after the power cut"
    );
    hub.wait_for("the node online again", WAIT, || {
        hub.node(&name).filter(|n| n["online"] == true)
    });
    let nodes = hub.get("nodes");
    assert_eq!(nodes.len(), 1, "one device, one node: {nodes:?}");
    assert_eq!(nodes[0]["name"], name.as_str(), "{nodes:?}");
    let claims = hub.ok(&["token", "list", "-o", "json"]);
    assert!(claims.contains("\"used\": 1"), "{claims}");

    // Off: the boot partition unmounted, then the host reads the card the VM wrote.
    vm.sh(&format!("umount {CARD}/boot/firmware && sync"));
    vm.power_off();
    let bootstrap = image::mtype(&card, "shoal-bootstrap.env");
    assert!(
        !bootstrap.contains("SHOAL_TOKEN") && bootstrap.contains("SHOAL_HUB"),
        "mtools reads no token either:\n{bootstrap}"
    );
    let cmdline = image::mtype(&card, "cmdline.txt");
    assert!(!cmdline.contains("systemd.run="), "{cmdline}");
    let problems = fsck_problems(&card, shape.boot_mib);
    assert!(
        problems.is_empty(),
        "fsck.vfat finds the boot partition damaged: {problems:#?}"
    );
    drop(vm);
    let _ = std::fs::remove_dir_all(&dir);
    eprintln!("[vm first boot test: {} ms]", whole.elapsed().as_millis());
}
