//! The OCI runtime spec (`config.json`) of one container, built from its manifest, the image's
//! process defaults and facts the caller looked up. Pure: no IO, so every rule is table-tested.
//!
//! Defaults follow Docker's hardening: its default capability set, `no_new_privileges`, its
//! masked and read-only `/proc` and `/sys` paths, a device cgroup that allows only the listed
//! devices, `RLIMIT_NOFILE` 1024:1024, and its default seccomp profile. `privileged: true`
//! lifts all of it. The seccomp profile is not an OCI `linux.seccomp` section (libcontainer
//! would need the C libseccomp for it, which the static builds leave out) but the annotation
//! [`seccomp::ANNOTATION`]: the shim builds the filter itself ([`super::seccomp`]).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDeviceBuilder,
    LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType, LinuxMemoryBuilder,
    LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType, LinuxPidsBuilder,
    LinuxResourcesBuilder, Mount, MountBuilder, PosixRlimitBuilder, PosixRlimitType,
    ProcessBuilder, RootBuilder, Spec, SpecBuilder, UserBuilder,
};
use shoal_model::manifest::{Container, NetworkMode, User, Workload};

use super::seccomp;

/// `PATH` when neither the image nor the manifest sets one (Docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// CFS period for CPU limits: 100 ms, so 1 millicore is a quota of 100 µs.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Soft and hard `RLIMIT_NOFILE` of container processes.
pub const NOFILE_LIMIT: u64 = 1024;

/// Docker's default capabilities.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];

/// Every capability with its number; `ALL` and `privileged` mean those the kernel knows
/// (number <= `/proc/sys/kernel/cap_last_cap`) and the agent holds in its bounding set.
const ALL_CAPABILITIES: [(&str, u8); 41] = [
    ("CHOWN", 0),
    ("DAC_OVERRIDE", 1),
    ("DAC_READ_SEARCH", 2),
    ("FOWNER", 3),
    ("FSETID", 4),
    ("KILL", 5),
    ("SETGID", 6),
    ("SETUID", 7),
    ("SETPCAP", 8),
    ("LINUX_IMMUTABLE", 9),
    ("NET_BIND_SERVICE", 10),
    ("NET_BROADCAST", 11),
    ("NET_ADMIN", 12),
    ("NET_RAW", 13),
    ("IPC_LOCK", 14),
    ("IPC_OWNER", 15),
    ("SYS_MODULE", 16),
    ("SYS_RAWIO", 17),
    ("SYS_CHROOT", 18),
    ("SYS_PTRACE", 19),
    ("SYS_PACCT", 20),
    ("SYS_ADMIN", 21),
    ("SYS_BOOT", 22),
    ("SYS_NICE", 23),
    ("SYS_RESOURCE", 24),
    ("SYS_TIME", 25),
    ("SYS_TTY_CONFIG", 26),
    ("MKNOD", 27),
    ("LEASE", 28),
    ("AUDIT_WRITE", 29),
    ("AUDIT_CONTROL", 30),
    ("SETFCAP", 31),
    ("MAC_OVERRIDE", 32),
    ("MAC_ADMIN", 33),
    ("SYSLOG", 34),
    ("WAKE_ALARM", 35),
    ("BLOCK_SUSPEND", 36),
    ("AUDIT_READ", 37),
    ("PERFMON", 38),
    ("BPF", 39),
    ("CHECKPOINT_RESTORE", 40),
];

/// Docker's masked paths: read as empty (files) or an empty read-only tmpfs (dirs).
pub const MASKED_PATHS: [&str; 12] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/interrupts",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Docker's read-only paths.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the image says about its process (the `config` of an OCI image config), in the
/// runtime's own terms so that it does not depend on the image store.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProcessDefaults {
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    /// `KEY=value` entries.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    /// Numeric; the image store resolves user names against the image's `/etc/passwd`.
    pub user: Option<User>,
}

/// Host paths the container needs, prepared by the caller.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ContainerPaths {
    /// The mounted overlay rootfs.
    pub rootfs: PathBuf,
    /// The workload's IPC namespace file, shared by its containers.
    pub ipc_ns: PathBuf,
    /// The workload's network namespace file (only for `network: isolated`).
    pub net_ns: Option<PathBuf>,
    /// Host directory of each volume of the workload that the container mounts.
    pub volumes: BTreeMap<String, PathBuf>,
    /// Bind-mounted read-only onto `/etc/hosts` and `/etc/resolv.conf`.
    pub hosts: Option<PathBuf>,
    pub resolv_conf: Option<PathBuf>,
}

/// A device node of the host, as the caller found it with `stat`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostDevice {
    pub path: String,
    pub kind: DeviceKind,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Char,
    Block,
}

/// What the device's kernel and cgroups offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub cgroup_v2: bool,
    /// The device list is enforced: v1's devices controller, v2's eBPF device program
    /// (`runtime::devices`, attached by the shim).
    pub device_cgroup: bool,
    /// Swap is accounted per cgroup, so a limit can forbid it.
    pub swap_limit: bool,
    /// `/proc/sys/kernel/cap_last_cap`.
    pub cap_last_cap: u8,
    /// The agent's bounding set (`CapBnd` in `/proc/self/status`), bit N for capability N: a
    /// container cannot get a capability outside it (libcontainer's `capset` fails), e.g.
    /// when the agent itself runs in a container without `CAP_SYS_RESOURCE`.
    pub bounding_set: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpecError {
    #[error(
        "container `{container}` has nothing to run: the image has no entrypoint or cmd; set \
         `command` in the manifest"
    )]
    NoCommand { container: String },
    #[error("container `{container}`: working dir `{dir}` must be an absolute path")]
    RelativeWorkingDir { container: String, dir: String },
    #[error("container `{container}`: mount path `{path}` must be an absolute path")]
    RelativeMountPath { container: String, path: String },
    #[error(
        "container `{container}` mounts volume `{volume}`, which was not prepared on the host"
    )]
    VolumeNotPrepared { container: String, volume: String },
    #[error(
        "container `{container}`: `{name}` is not a capability; use names such as NET_ADMIN \
         or CAP_NET_ADMIN, or ALL"
    )]
    UnknownCapability { container: String, name: String },
    #[error("device `{path}` was not looked up on the host")]
    DeviceNotFound { path: String },
    #[error("cannot build the OCI spec: {0}")]
    Oci(String),
}

impl From<oci_spec::OciSpecError> for SpecError {
    fn from(err: oci_spec::OciSpecError) -> Self {
        SpecError::Oci(err.to_string())
    }
}

/// Everything [`build`] needs.
#[derive(Clone, Copy, Debug)]
pub struct SpecInput<'a> {
    pub workload: &'a Workload,
    pub container: &'a Container,
    pub defaults: &'a ProcessDefaults,
    pub paths: &'a ContainerPaths,
    pub host: &'a HostFacts,
    /// The host devices named in `container.devices`, looked up.
    pub devices: &'a [HostDevice],
    /// The container's cgroup, from [`cgroups_path`].
    pub cgroups_path: &'a str,
}

/// The container's cgroup, one per container: containers sharing one would kill each other
/// when one is deleted. `parent` is per agent (`shoal/NODE`), so that several agents on one
/// host (`shoal up` beside a fleet agent, test fleets) never share a workload's cgroup. Valid
/// on v1 (one dir per controller) and v2.
pub fn cgroups_path(parent: &str, workload: &str, container: &str) -> String {
    format!("/{parent}/{workload}/{container}")
}

/// The process arguments with Docker's rules: `command` replaces the entrypoint and then
/// drops the image's cmd; `args` replaces the cmd.
pub fn process_args(container: &Container, defaults: &ProcessDefaults) -> Vec<String> {
    let entrypoint = if container.command.is_empty() {
        &defaults.entrypoint
    } else {
        &container.command
    };
    let cmd: &[String] = if !container.args.is_empty() {
        &container.args
    } else if !container.command.is_empty() {
        &[]
    } else {
        &defaults.cmd
    };
    entrypoint.iter().chain(cmd).cloned().collect()
}

/// The environment: the image's, then the manifest's (winning per key), plus `PATH` and
/// `HOSTNAME` when missing. Sorted by key for a stable `config.json`.
pub fn process_env(
    container: &Container,
    defaults: &ProcessDefaults,
    hostname: &str,
) -> Vec<String> {
    let mut env: BTreeMap<String, String> = BTreeMap::new();
    for entry in &defaults.env {
        let (key, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        env.insert(key.to_owned(), value.to_owned());
    }
    for (key, value) in &container.env {
        env.insert(key.clone(), value.clone());
    }
    env.entry("PATH".to_owned())
        .or_insert_with(|| DEFAULT_PATH.to_owned());
    env.entry("HOSTNAME".to_owned())
        .or_insert_with(|| hostname.to_owned());
    env.into_iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The capability set: privileged ⇒ all; otherwise Docker's defaults, minus `drop` (`ALL`
/// drops everything first), plus `add` (`ALL` adds everything). Without an enforcing device
/// cgroup, `MKNOD` is dropped unless added explicitly: it would let a container create and
/// open any device node.
pub fn capabilities(
    container: &Container,
    host: &HostFacts,
) -> Result<BTreeSet<&'static str>, SpecError> {
    let known = || {
        ALL_CAPABILITIES
            .iter()
            .filter(|(_, n)| *n <= host.cap_last_cap && host.bounding_set >> n & 1 == 1)
            .map(|(name, _)| *name)
    };
    if container.privileged {
        return Ok(known().collect());
    }
    let lookup = |name: &str| -> Result<Option<&'static str>, SpecError> {
        let upper = name.trim().to_ascii_uppercase();
        let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
        if bare == "ALL" {
            return Ok(None);
        }
        ALL_CAPABILITIES
            .iter()
            .find(|(n, _)| *n == bare)
            .map(|(n, _)| Some(*n))
            .ok_or_else(|| SpecError::UnknownCapability {
                container: container.name.clone(),
                name: name.to_owned(),
            })
    };
    let mut set: BTreeSet<&'static str> = DEFAULT_CAPABILITIES.into_iter().collect();
    if !host.device_cgroup {
        set.remove("MKNOD");
    }
    for name in &container.capabilities.drop {
        match lookup(name)? {
            None => set.clear(),
            Some(cap) => {
                set.remove(cap);
            }
        }
    }
    for name in &container.capabilities.add {
        match lookup(name)? {
            None => set.extend(known()),
            Some(cap) => {
                set.insert(cap);
            }
        }
    }
    Ok(set)
}

fn namespace(typ: LinuxNamespaceType, path: Option<&Path>) -> Result<LinuxNamespace, SpecError> {
    let mut builder = LinuxNamespaceBuilder::default().typ(typ);
    if let Some(path) = path {
        builder = builder.path(path.to_owned());
    }
    Ok(builder.build()?)
}

fn mount(destination: &str, typ: &str, source: &str, options: &[&str]) -> Result<Mount, SpecError> {
    Ok(MountBuilder::default()
        .destination(destination)
        .typ(typ)
        .source(source)
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()?)
}

fn bind(source: &Path, destination: &str, read_only: bool) -> Result<Mount, SpecError> {
    let mut options = vec!["rbind", "rprivate", "nosuid", "nodev"];
    if read_only {
        options.push("ro");
    }
    Ok(MountBuilder::default()
        .destination(destination)
        .typ("bind")
        .source(source.to_owned())
        .options(options.iter().map(|o| (*o).to_owned()).collect::<Vec<_>>())
        .build()?)
}

fn device_rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> Result<LinuxDeviceCgroup, SpecError> {
    let mut builder = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(major) = major {
        builder = builder.major(major);
    }
    if let Some(minor) = minor {
        builder = builder.minor(minor);
    }
    Ok(builder.build()?)
}

/// Builds the container's `config.json`.
pub fn build(input: &SpecInput<'_>) -> Result<Spec, SpecError> {
    let SpecInput {
        workload,
        container,
        defaults,
        paths,
        host,
        devices,
        cgroups_path,
    } = *input;
    let hostname = workload.name.as_str();

    // Process.
    let args = process_args(container, defaults);
    if args.is_empty() {
        return Err(SpecError::NoCommand {
            container: container.name.clone(),
        });
    }
    let cwd = container
        .working_dir
        .clone()
        .or_else(|| defaults.working_dir.clone())
        .filter(|dir| !dir.is_empty())
        .unwrap_or_else(|| "/".to_owned());
    if !cwd.starts_with('/') {
        return Err(SpecError::RelativeWorkingDir {
            container: container.name.clone(),
            dir: cwd,
        });
    }
    let user = container.user.or(defaults.user).unwrap_or(User {
        uid: 0,
        gid: Some(0),
    });
    let caps: oci_spec::runtime::Capabilities = capabilities(container, host)?
        .into_iter()
        .filter_map(|name| Capability::from_str(name).ok())
        .collect();
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(oci_spec::runtime::Capabilities::new())
        .ambient(oci_spec::runtime::Capabilities::new())
        .build()?;
    let process = ProcessBuilder::default()
        .terminal(false)
        .args(args)
        .env(process_env(container, defaults, hostname))
        .cwd(cwd)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid.unwrap_or(0))
                .build()?,
        )
        .capabilities(capabilities)
        .no_new_privileges(!container.privileged)
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .soft(NOFILE_LIMIT)
            .hard(NOFILE_LIMIT)
            .build()?])
        .build()?;

    // Namespaces: pid, mount and uts of its own; IPC of the pod; the pod's network namespace
    // when isolated, the host's otherwise; a cgroup namespace on v2 (as Docker does).
    let mut namespaces = vec![
        namespace(LinuxNamespaceType::Pid, None)?,
        namespace(LinuxNamespaceType::Mount, None)?,
        namespace(LinuxNamespaceType::Uts, None)?,
        namespace(LinuxNamespaceType::Ipc, Some(&paths.ipc_ns))?,
    ];
    if workload.spec.network == NetworkMode::Isolated {
        namespaces.push(namespace(
            LinuxNamespaceType::Network,
            paths.net_ns.as_deref(),
        )?);
    }
    if host.cgroup_v2 {
        namespaces.push(namespace(LinuxNamespaceType::Cgroup, None)?);
    }

    // Mounts.
    let rw = if container.privileged { "rw" } else { "ro" };
    let mut mounts = vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"])?,
        mount(
            "/dev",
            "tmpfs",
            "tmpfs",
            &["nosuid", "strictatime", "mode=755", "size=65536k"],
        )?,
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &[
                "nosuid",
                "noexec",
                "newinstance",
                "ptmxmode=0666",
                "mode=0620",
                "gid=5",
            ],
        )?,
        mount(
            "/dev/shm",
            "tmpfs",
            "shm",
            &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
        )?,
        mount(
            "/dev/mqueue",
            "mqueue",
            "mqueue",
            &["nosuid", "noexec", "nodev"],
        )?,
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", rw])?,
        mount(
            "/sys/fs/cgroup",
            "cgroup",
            "cgroup",
            &["nosuid", "noexec", "nodev", "relatime", rw],
        )?,
    ];
    if let Some(hosts) = &paths.hosts {
        mounts.push(bind(hosts, "/etc/hosts", true)?);
    }
    if let Some(resolv_conf) = &paths.resolv_conf {
        mounts.push(bind(resolv_conf, "/etc/resolv.conf", true)?);
    }
    for m in &container.mounts {
        if !m.path.starts_with('/') {
            return Err(SpecError::RelativeMountPath {
                container: container.name.clone(),
                path: m.path.clone(),
            });
        }
        let source = paths
            .volumes
            .get(&m.volume)
            .ok_or_else(|| SpecError::VolumeNotPrepared {
                container: container.name.clone(),
                volume: m.volume.clone(),
            })?;
        mounts.push(bind(source, &m.path, m.read_only)?);
    }

    // Resources.
    let mut resources = LinuxResourcesBuilder::default();
    if let Some(memory) = container.resources.memory {
        let limit = i64::try_from(memory).unwrap_or(i64::MAX);
        let mut builder = LinuxMemoryBuilder::default().limit(limit);
        if host.swap_limit {
            builder = builder.swap(limit);
        }
        resources = resources.memory(builder.build()?);
    }
    if let Some(millis) = container.resources.cpu_millis {
        resources = resources.cpu(
            LinuxCpuBuilder::default()
                .quota(i64::from(millis) * 100)
                .period(CPU_PERIOD_US)
                .build()?,
        );
    }
    if let Some(pids) = container.resources.pids {
        resources = resources.pids(LinuxPidsBuilder::default().limit(i64::from(pids)).build()?);
    }
    let mut device_rules = Vec::new();
    let mut device_nodes = Vec::new();
    if container.privileged {
        device_rules.push(device_rule(true, LinuxDeviceType::A, None, None, "rwm")?);
    } else {
        device_rules.push(device_rule(false, LinuxDeviceType::A, None, None, "rwm")?);
    }
    for path in &container.devices {
        let device = devices
            .iter()
            .find(|d| d.path == *path)
            .ok_or_else(|| SpecError::DeviceNotFound { path: path.clone() })?;
        let typ = match device.kind {
            DeviceKind::Char => LinuxDeviceType::C,
            DeviceKind::Block => LinuxDeviceType::B,
        };
        if !container.privileged {
            device_rules.push(device_rule(
                true,
                typ,
                Some(device.major),
                Some(device.minor),
                "rwm",
            )?);
        }
        device_nodes.push(
            LinuxDeviceBuilder::default()
                .path(PathBuf::from(&device.path))
                .typ(typ)
                .major(device.major)
                .minor(device.minor)
                .file_mode(device.mode & 0o7777)
                .uid(device.uid)
                .gid(device.gid)
                .build()?,
        );
    }
    let resources = resources.devices(device_rules).build()?;

    let mut linux = LinuxBuilder::default()
        .cgroups_path(PathBuf::from(cgroups_path))
        .namespaces(namespaces)
        .resources(resources)
        .devices(device_nodes);
    if container.privileged {
        linux = linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new());
    } else {
        linux = linux
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|p| (*p).to_owned())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|p| (*p).to_owned())
                    .collect::<Vec<_>>(),
            );
    }

    let seccomp = if container.privileged {
        seccomp::Profile::Unconfined
    } else {
        seccomp::Profile::Default
    };

    Ok(SpecBuilder::default()
        .version("1.0.2")
        .annotations(
            [(
                seccomp::ANNOTATION.to_owned(),
                seccomp.annotation().to_owned(),
            )]
            .into_iter()
            .collect::<std::collections::HashMap<_, _>>(),
        )
        .root(
            RootBuilder::default()
                .path(paths.rootfs.clone())
                .readonly(container.read_only_rootfs)
                .build()?,
        )
        .hostname(hostname)
        .mounts(mounts)
        .process(process)
        .linux(linux.build()?)
        .build()?)
}

#[cfg(test)]
#[path = "spec_tests.rs"]
mod tests;
