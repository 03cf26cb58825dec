//! The files `shoal flash` writes into the boot partition, and its edit of the board's
//! `cmdline.txt` (the memory cgroup, the kernel-command-line hook); pure. Cloud-init's
//! `user-data` is edited in `cloud_init`.

/// Kernel arguments that turn the memory controller on (off by default on Raspberry Pi
/// kernels; containers get no memory limit without it).
pub const CGROUP_ARGS: [&str; 2] = ["cgroup_enable=memory", "cgroup_memory=1"];
/// Shoal's files, in the boot partition's top folder. Not in a folder of their own: `fatfs`
/// 0.3 writes a new folder's `.` and `..` entries in a way `fsck.vfat` rejects on FAT32.
pub const AGENT: &str = "shoal-agent";
pub const BOOTSTRAP: &str = "shoal-bootstrap.env";
pub const FIRSTBOOT_FILE: &str = "shoal-firstboot.sh";
pub const UNIT_FILE: &str = "shoal-agent.service";

/// The kernel-command-line hook: systemd runs the script once, then reboots.
pub fn hook_args(boot: &str) -> String {
    format!(
        "systemd.run={boot}/{FIRSTBOOT_FILE} systemd.run_success_action=reboot systemd.unit=kernel-command-line.target"
    )
}

/// `cmdline.txt` with the memory cgroup arguments and, with `hook`, the first-boot hook
/// (at most once each: flashing again changes nothing more). Refuses a file that is not one
/// line, or that already runs another first-boot script.
pub fn cmdline(text: &str, hook: Option<&str>) -> Result<String, String> {
    let line = text.trim_end_matches(['\n', '\r']);
    if line.contains('\n') || text.len() > 4096 {
        return Err("cmdline.txt is not one line of kernel arguments".into());
    }
    let mut words: Vec<String> = line.split_whitespace().map(str::to_string).collect();
    for arg in CGROUP_ARGS {
        if !words.iter().any(|w| w == arg) {
            words.push(arg.to_string());
        }
    }
    if let Some(boot) = hook {
        let ours = hook_args(boot);
        let ours_first = ours.split(' ').next().unwrap_or_default();
        if let Some(other) = words
            .iter()
            .find(|w| w.starts_with("systemd.run=") && *w != ours_first)
        {
            return Err(format!(
                "cmdline.txt already runs a first-boot script (`{other}`): boot the image once first, or remove it"
            ));
        }
        if !words.iter().any(|w| w == ours_first) {
            words.extend(ours.split(' ').map(str::to_string));
        }
    }
    Ok(format!("{}\n", words.join(" ")))
}

/// The first-boot script: installs the agent and its unit from the boot partition; the unit
/// enrolls (with the bootstrap) and runs the agent. `SHOAL_ROOT` installs into another root
/// (a mounted image, in tests). Running it again changes nothing more.
pub const FIRSTBOOT: &str = r#"#!/bin/sh
# Shoal first boot, written by `shoal flash`: installs the agent and its systemd unit from
# the boot partition; the unit enrolls the device with shoal-bootstrap.env (`shoal-agent enroll
# --bootstrap`, which retries until the network is up) and runs the agent. Running this
# again changes nothing more. SHOAL_ROOT=DIR installs into another root instead of /.
set -eu
boot=$(cd "$(dirname "$0")" && pwd)
root=${SHOAL_ROOT:-}
device_boot=${boot#"$root"}
# Only tools a busybox root has too (no `install`): a copy, then a rename over the old one;
# none when the same agent is installed already (no second copy's room needed).
agent="$root/usr/local/bin/shoal-agent"
if ! cmp -s "$boot/shoal-agent" "$agent"; then
    mkdir -p "$root/usr/local/bin"
    cp "$boot/shoal-agent" "$agent.new"
    chmod 0755 "$agent.new"
    mv -f "$agent.new" "$agent"
fi
mkdir -p "$root/etc/systemd/system/multi-user.target.wants"
sed "s|@BOOTSTRAP@|$device_boot/shoal-bootstrap.env|" "$boot/shoal-agent.service" \
    > "$root/etc/systemd/system/shoal-agent.service"
ln -sf ../shoal-agent.service "$root/etc/systemd/system/multi-user.target.wants/shoal-agent.service"
# The kernel-command-line hook has done its work: the next boot is a normal one. (Edited
# only when it holds the hook: `sed -i` writes a new file even when nothing matches.)
if [ -f "$boot/cmdline.txt" ] && grep -q 'systemd.run=[^ ]*/shoal-firstboot.sh' "$boot/cmdline.txt"; then
    sed -i 's| systemd.run=[^ ]*/shoal-firstboot.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target||' "$boot/cmdline.txt"
fi
# On disk before anything else writes: FAT has no journal, and the enrollment's fsyncs on the
# boot partition would otherwise write the freed clusters of the old cmdline.txt before its
# new folder entry, which a power cut then leaves pointing at free clusters (the board's
# firmware reads cmdline.txt).
sync
# Under cloud-init the system is up already: start the agent now.
if [ -z "$root" ] && [ -d /run/systemd/system ] && ! grep -q 'systemd.run=' /proc/cmdline; then
    systemctl daemon-reload
    systemctl start --no-block shoal-agent.service
fi
echo "shoal: agent installed; shoal-agent.service enrolls and runs it"
"#;

/// The agent's unit as the first-boot script installs it (`@BOOTSTRAP@` filled in there).
pub const UNIT: &str = "[Unit]
Description=Shoal edge agent
Documentation=https://github.com/shoal-edge/shoal
Wants=network-online.target
After=network-online.target

[Service]
# Enrolls once with the bootstrap (waiting for the network), then does nothing.
ExecStartPre=/usr/local/bin/shoal-agent enroll --bootstrap @BOOTSTRAP@
# Runs the agent; tries an updated agent on probation, reverting one that fails.
ExecStart=/usr/local/bin/shoal-agent launch
# Stopping or restarting the agent leaves the containers running.
KillMode=process
Restart=always
RestartSec=5
TimeoutStartSec=infinity
StateDirectory=shoal

[Install]
WantedBy=multi-user.target
";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline_gets_the_memory_cgroup_and_the_hook_once() {
        let pi = "console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 fsck.repair=yes rootwait\n";
        let once = cmdline(pi, Some("/boot/firmware")).expect("edit");
        assert_eq!(
            once,
            "console=serial0,115200 console=tty1 root=PARTUUID=1234-02 rootfstype=ext4 fsck.repair=yes rootwait cgroup_enable=memory cgroup_memory=1 systemd.run=/boot/firmware/shoal-firstboot.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n"
        );
        assert_eq!(cmdline(&once, Some("/boot/firmware")), Ok(once.clone()));
        let plain = cmdline("root=/dev/sda2 cgroup_memory=1", None).expect("edit");
        assert_eq!(
            plain,
            "root=/dev/sda2 cgroup_memory=1 cgroup_enable=memory\n"
        );
        let imager = "root=/dev/sda2 systemd.run=/boot/firstrun.sh";
        assert!(cmdline(imager, Some("/boot"))
            .expect_err("another hook")
            .contains("firstrun.sh"));
        assert!(cmdline("a\nb\n", None).is_err());
    }
}
