//! Facts about the device the agent runs on that do not depend on the container runtime:
//! architecture and kernel. They end up in the node's presence message.

use std::path::Path;

/// Where Linux publishes the running kernel's release (what `uname -r` prints).
const KERNEL_RELEASE: &str = "/proc/sys/kernel/osrelease";

/// The OCI architecture name of this build (`amd64`, `arm64`, `armv7`), the name manifests use
/// in placement constraints.
pub fn oci_arch() -> &'static str {
    shoal_model::node::oci_arch(std::env::consts::ARCH)
}

/// The C library this binary is linked against, as the target triple names it (`musl`, `gnu`).
pub fn libc_flavour() -> &'static str {
    if cfg!(target_env = "musl") {
        "musl"
    } else if cfg!(target_env = "gnu") {
        "gnu"
    } else {
        "other"
    }
}

/// The running kernel's release, e.g. `6.1.0-26-amd64`.
pub fn kernel_release() -> std::io::Result<String> {
    read_kernel_release(Path::new(KERNEL_RELEASE))
}

fn read_kernel_release(path: &Path) -> std::io::Result<String> {
    Ok(std::fs::read_to_string(path)?.trim().to_owned())
}

/// What this node can give to workloads: total memory, CPUs and the kernel's pid limit.
pub fn capacity() -> shoal_model::node::Capacity {
    let memory_bytes = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| parse_mem_total(&text))
        .unwrap_or(0);
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let pids = std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(32_768);
    shoal_model::node::Capacity {
        memory_bytes,
        cpu_millis: u32::try_from(cpus.saturating_mul(1000)).unwrap_or(u32::MAX),
        pids,
    }
}

/// `MemTotal:  16323540 kB` in bytes.
fn parse_mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kib.checked_mul(1024)
}

/// Everything placement needs to know about this node.
pub fn facts(
    labels: std::collections::BTreeMap<String, String>,
    cgroup_version: u8,
) -> shoal_model::node::NodeFacts {
    shoal_model::node::NodeFacts {
        arch: oci_arch().to_string(),
        os: std::env::consts::OS.to_string(),
        kernel: kernel_release().unwrap_or_default(),
        cgroup_version,
        capacity: capacity(),
        agent_version: crate::version::version().to_string(),
        labels,
        wire_versions: shoal_model::wire::SUPPORTED_WIRE_VERSIONS.to_vec(),
    }
}

/// What this device tells the hub about itself when it enrolls with a claim token: the
/// name it proposes (`proposed`, else its host name), its machine id, its board's serial
/// number and its first network interface's MAC address, each as found (absent when not).
pub fn device_identity(proposed: Option<&str>) -> shoal_model::api::DeviceIdentity {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let name = proposed
        .map(str::to_owned)
        .or_else(|| read("/proc/sys/kernel/hostname"));
    let serial = read("/sys/firmware/devicetree/base/serial-number")
        .map(|s| s.trim_end_matches('\0').to_owned())
        .or_else(|| read("/proc/cpuinfo").and_then(|text| cpuinfo_serial(&text)))
        .or_else(|| read("/sys/class/dmi/id/product_serial"));
    shoal_model::api::DeviceIdentity {
        name: name.and_then(identity_item),
        machine_id: read("/etc/machine-id").and_then(identity_item),
        serial: serial.and_then(identity_item),
        mac: first_mac(Path::new("/sys/class/net")).and_then(identity_item),
    }
}

/// An identity item as sent: trimmed, non-empty, at most `MAX_IDENTITY_ITEM` bytes.
fn identity_item(text: String) -> Option<String> {
    let text = text.trim();
    (!text.is_empty() && text.len() <= shoal_model::api::MAX_IDENTITY_ITEM).then(|| text.to_owned())
}

/// `Serial : 10000000d3a1b2c4` of a Raspberry Pi's `/proc/cpuinfo`; none when all zeros.
fn cpuinfo_serial(cpuinfo: &str) -> Option<String> {
    let line = cpuinfo.lines().find(|l| l.starts_with("Serial"))?;
    let value = line.split_once(':')?.1.trim();
    (!value.is_empty() && value.bytes().any(|b| b != b'0')).then(|| value.to_owned())
}

/// The MAC address of the first interface (by name) under `net` that has a real one: not
/// loopback, not all zeros.
fn first_mac(net: &Path) -> Option<String> {
    let mut names: Vec<_> = std::fs::read_dir(net)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.file_name())
        .filter(|name| name != "lo")
        .collect();
    names.sort();
    names.into_iter().find_map(|name| {
        let mac = std::fs::read_to_string(net.join(name).join("address")).ok()?;
        let mac = mac.trim();
        (mac.len() == 17 && mac.bytes().any(|b| b != b'0' && b != b':')).then(|| mac.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_board_serial_and_a_mac_are_found_where_linux_keeps_them() {
        let cpuinfo = "processor\t: 0\nHardware\t: BCM2835\nSerial\t\t: 10000000d3a1b2c4\nModel\t: Raspberry Pi 4\n";
        assert_eq!(cpuinfo_serial(cpuinfo).as_deref(), Some("10000000d3a1b2c4"));
        assert_eq!(cpuinfo_serial("Serial\t: 0000000000000000\n"), None);
        assert_eq!(cpuinfo_serial("processor: 0\n"), None);
        let net = tempfile::tempdir().expect("dir");
        for (name, mac) in [
            ("lo", "00:00:00:00:00:00"),
            ("dummy0", "00:00:00:00:00:00"),
            ("wlan0", "dc:a6:32:00:00:02"),
            ("eth0", "dc:a6:32:00:00:01"),
        ] {
            std::fs::create_dir(net.path().join(name)).expect("iface");
            std::fs::write(net.path().join(name).join("address"), format!("{mac}\n"))
                .expect("address");
        }
        assert_eq!(first_mac(net.path()).as_deref(), Some("dc:a6:32:00:00:01"));
        let identity = device_identity(Some("  gw-7\n"));
        assert_eq!(identity.name.as_deref(), Some("gw-7"));
        assert_eq!(identity_item("x".repeat(200)), None);
    }

    #[test]
    fn memory_capacity_comes_from_meminfo() {
        assert_eq!(
            parse_mem_total("MemTotal:       16323540 kB\nMemFree: 1 kB\n"),
            Some(16_323_540 * 1024)
        );
        assert_eq!(parse_mem_total("nothing"), None);
        assert!(capacity().memory_bytes > 0);
        assert!(capacity().cpu_millis >= 1000);
    }

    #[test]
    fn this_build_has_an_oci_arch_name() {
        let arch = oci_arch();
        assert!(
            ["amd64", "arm64", "armv7"].contains(&arch),
            "unexpected arch {arch}"
        );
    }

    #[test]
    fn kernel_release_is_read_without_the_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("osrelease");
        std::fs::write(&file, "6.1.0-26-amd64\n").expect("write");
        assert_eq!(read_kernel_release(&file).expect("read"), "6.1.0-26-amd64");
    }

    #[test]
    fn the_running_kernel_release_is_readable() {
        assert!(!kernel_release().expect("kernel release").is_empty());
    }
}
