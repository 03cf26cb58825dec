//! Which cgroup hierarchy the device has and which controllers it offers. Resource limits,
//! OOM detection and usage reports all depend on it, and boards differ: most run cgroup v2,
//! some still v1 or the v1/v2 hybrid, and Raspberry Pi OS often boots without the memory
//! controller.

use std::fmt;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupSetup, DEFAULT_CGROUP_ROOT};
use libcgroups::v1::ControllerType;

/// The controller the agent cannot do without: memory limits and OOM detection.
pub const MEMORY: &str = "memory";

/// The cgroup layout of a device, as libcgroups detects it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hierarchy {
    /// Pure cgroup v2.
    Unified,
    /// cgroup v1 controllers plus an empty v2 hierarchy (systemd's "hybrid").
    Hybrid,
    /// Pure cgroup v1.
    Legacy,
}

impl Hierarchy {
    /// 1 or 2, as presence messages report it.
    pub fn version(self) -> u8 {
        match self {
            Hierarchy::Unified => 2,
            Hierarchy::Hybrid | Hierarchy::Legacy => 1,
        }
    }
}

impl fmt::Display for Hierarchy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let layout = match self {
            Hierarchy::Unified => "unified",
            Hierarchy::Hybrid => "hybrid",
            Hierarchy::Legacy => "legacy",
        };
        write!(f, "v{} ({layout})", self.version())
    }
}

impl From<CgroupSetup> for Hierarchy {
    fn from(setup: CgroupSetup) -> Self {
        match setup {
            CgroupSetup::Unified => Hierarchy::Unified,
            CgroupSetup::Hybrid => Hierarchy::Hybrid,
            CgroupSetup::Legacy => Hierarchy::Legacy,
        }
    }
}

/// What the device offers: its hierarchy and the controllers the agent can use there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupFacts {
    pub hierarchy: Hierarchy,
    /// Controller names, sorted: `cpu`, `memory`, `pids`, ...
    pub controllers: Vec<String>,
}

impl CgroupFacts {
    pub fn has(&self, controller: &str) -> bool {
        self.controllers.iter().any(|c| c == controller)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot tell which cgroup hierarchy is mounted at {root}: is cgroupfs mounted?")]
    Setup {
        root: PathBuf,
        #[source]
        source: libcgroups::common::GetCgroupSetupError,
    },
    #[error("cannot read the cgroup v2 controllers from {path}")]
    V2Controllers {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list the cgroup v1 controllers")]
    V1Controllers {
        #[source]
        source: libcgroups::v1::util::V1MountPointError,
    },
}

/// Detects the hierarchy with libcgroups, then lists controllers: for v2 the root's
/// `cgroup.controllers`, for v1 the controllers libcgroups finds mounted.
pub fn detect() -> Result<CgroupFacts, CgroupError> {
    let root = Path::new(DEFAULT_CGROUP_ROOT);
    let setup = libcgroups::common::get_cgroup_setup().map_err(|source| CgroupError::Setup {
        root: root.to_owned(),
        source,
    })?;
    tracing::debug!(%setup, "cgroup setup detected");
    let hierarchy = Hierarchy::from(setup);
    let mut controllers = match hierarchy {
        Hierarchy::Unified => {
            let path = root.join("cgroup.controllers");
            let text = std::fs::read_to_string(&path)
                .map_err(|source| CgroupError::V2Controllers { path, source })?;
            parse_v2_controllers(&text)
        }
        Hierarchy::Hybrid | Hierarchy::Legacy => {
            libcgroups::v1::util::list_supported_mount_points()
                .map_err(|source| CgroupError::V1Controllers { source })?
                .into_keys()
                .map(|controller| controller.to_string())
                .collect()
        }
    };
    controllers.sort();
    controllers.dedup();
    Ok(CgroupFacts {
        hierarchy,
        controllers,
    })
}

/// `cgroup.controllers` holds one line of space-separated names.
fn parse_v2_controllers(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_owned).collect()
}

/// What is wrong with a device's cgroups for running workloads, if anything, with the fix.
pub fn missing_essentials(facts: &CgroupFacts) -> Option<String> {
    if facts.has(MEMORY) {
        return None;
    }
    Some(format!(
        "the memory controller is missing ({} controllers: {}), so memory limits and OOM \
         detection cannot work; enable it on the kernel command line (on a Raspberry Pi add \
         `cgroup_enable=memory cgroup_memory=1` to /boot/firmware/cmdline.txt, or \
         /boot/cmdline.txt on older images) and reboot",
        facts.hierarchy,
        if facts.controllers.is_empty() {
            "none".to_owned()
        } else {
            facts.controllers.join(" ")
        }
    ))
}

/// The cgroup v2 root, where a pure v2 hierarchy is mounted.
const V2_ROOT: &str = DEFAULT_CGROUP_ROOT;

/// The hierarchy the device has, as libcgroups detects it.
pub fn hierarchy() -> Result<Hierarchy, CgroupError> {
    libcgroups::common::get_cgroup_setup()
        .map(Hierarchy::from)
        .map_err(|source| CgroupError::Setup {
            root: PathBuf::from(DEFAULT_CGROUP_ROOT),
            source,
        })
}

/// The directory of an OCI `cgroupsPath` in a pure v2 hierarchy.
pub fn v2_dir(cgroups_path: &str) -> PathBuf {
    Path::new(V2_ROOT).join(cgroups_path.trim_start_matches('/'))
}

/// Resource usage of one container, from its cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Memory in use minus the page cache the kernel can drop at once (inactive file pages),
    /// as `docker stats` reports it.
    pub memory_bytes: u64,
    /// CPU time used by all its processes since it started.
    pub cpu_usage_ns: u64,
    /// Processes the kernel killed for lack of memory in this cgroup.
    pub oom_kills: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    #[error(transparent)]
    Hierarchy(#[from] CgroupError),
    #[error("cannot find where the cgroup v1 {controller} controller is mounted")]
    Mount {
        controller: &'static str,
        #[source]
        source: libcgroups::v1::util::V1MountPointError,
    },
    #[error("cannot read {path}: has the container exited?")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} has no `{key}` entry: is this kernel too old for the agent?")]
    Missing { path: PathBuf, key: &'static str },
}

/// A container's cgroup (its OCI `cgroupsPath`) in the hierarchy the device has.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerCgroup {
    hierarchy: Hierarchy,
    /// Relative to the root of each hierarchy, without leading `/`.
    relative: PathBuf,
}

impl ContainerCgroup {
    pub fn new(hierarchy: Hierarchy, cgroups_path: &str) -> Self {
        ContainerCgroup {
            hierarchy,
            relative: PathBuf::from(cgroups_path.trim_start_matches('/')),
        }
    }

    /// Detects the hierarchy, then as [`ContainerCgroup::new`].
    pub fn detect(cgroups_path: &str) -> Result<Self, CgroupError> {
        let setup =
            libcgroups::common::get_cgroup_setup().map_err(|source| CgroupError::Setup {
                root: PathBuf::from(DEFAULT_CGROUP_ROOT),
                source,
            })?;
        Ok(Self::new(Hierarchy::from(setup), cgroups_path))
    }

    fn v1_dir(&self, controller: ControllerType) -> Result<PathBuf, UsageError> {
        let controller_name = match controller {
            ControllerType::Memory => "memory",
            ControllerType::CpuAcct => "cpuacct",
            _ => "other",
        };
        let mount =
            libcgroups::v1::util::get_subsystem_mount_point(&controller).map_err(|source| {
                UsageError::Mount {
                    controller: controller_name,
                    source,
                }
            })?;
        Ok(mount.join(&self.relative))
    }

    fn v2_dir(&self) -> PathBuf {
        Path::new(V2_ROOT).join(&self.relative)
    }

    /// The OOM-kill counter: `oom_kill` of `memory.oom_control` (v1) or `memory.events` (v2).
    /// Exit statuses do not tell: the kernel may kill a child of the init, not the init.
    pub fn oom_kills(&self) -> Result<u64, UsageError> {
        let path = match self.hierarchy {
            Hierarchy::Unified => self.v2_dir().join("memory.events"),
            Hierarchy::Hybrid | Hierarchy::Legacy => self
                .v1_dir(ControllerType::Memory)?
                .join("memory.oom_control"),
        };
        read_key(&path, "oom_kill")
    }

    pub fn usage(&self) -> Result<Usage, UsageError> {
        let oom_kills = self.oom_kills()?;
        match self.hierarchy {
            Hierarchy::Unified => {
                let dir = self.v2_dir();
                let current = read_number(&dir.join("memory.current"))?;
                let inactive = read_key(&dir.join("memory.stat"), "inactive_file")?;
                let usage_usec = read_key(&dir.join("cpu.stat"), "usage_usec")?;
                Ok(Usage {
                    memory_bytes: current.saturating_sub(inactive),
                    cpu_usage_ns: usage_usec.saturating_mul(1000),
                    oom_kills,
                })
            }
            Hierarchy::Hybrid | Hierarchy::Legacy => {
                let memory = self.v1_dir(ControllerType::Memory)?;
                let current = read_number(&memory.join("memory.usage_in_bytes"))?;
                let inactive = read_key(&memory.join("memory.stat"), "total_inactive_file")?;
                let cpu = self.v1_dir(ControllerType::CpuAcct)?;
                Ok(Usage {
                    memory_bytes: current.saturating_sub(inactive),
                    cpu_usage_ns: read_number(&cpu.join("cpuacct.usage"))?,
                    oom_kills,
                })
            }
        }
    }
}

/// Whether the kernel accounts swap per cgroup, so that a memory limit can also forbid swap:
/// v1 `memory.memsw.limit_in_bytes` at the memory root, v2 `memory.swap.max` in any
/// first-level cgroup.
pub fn swap_limit_supported(hierarchy: Hierarchy) -> bool {
    match hierarchy {
        Hierarchy::Unified => std::fs::read_dir(V2_ROOT).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|entry| entry.path().join("memory.swap.max").exists())
        }),
        Hierarchy::Hybrid | Hierarchy::Legacy => {
            libcgroups::v1::util::get_subsystem_mount_point(&ControllerType::Memory)
                .is_ok_and(|mount| mount.join("memory.memsw.limit_in_bytes").exists())
        }
    }
}

fn read_text(path: &Path) -> Result<String, UsageError> {
    std::fs::read_to_string(path).map_err(|source| UsageError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_number(path: &Path) -> Result<u64, UsageError> {
    let text = read_text(path)?;
    text.trim().parse().map_err(|_| UsageError::Missing {
        path: path.to_owned(),
        key: "number",
    })
}

fn read_key(path: &Path, key: &'static str) -> Result<u64, UsageError> {
    let text = read_text(path)?;
    flat_keyed(&text, key).ok_or_else(|| UsageError::Missing {
        path: path.to_owned(),
        key,
    })
}

/// The value of `key` in a cgroup "flat keyed" file (`key value` per line).
fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flat_keyed_files_give_the_value_of_the_exact_key() {
        let oom_control = "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n";
        let events = "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n";
        // (text, key, expected)
        let cases = [
            (oom_control, "oom_kill", Some(3)),
            (events, "oom_kill", Some(1)),
            (events, "oom", Some(2)),
            (events, "oom_group_kill", Some(0)),
            (events, "missing", None),
            ("oom_kill x\n", "oom_kill", None),
        ];
        for (text, key, expected) in cases {
            assert_eq!(flat_keyed(text, key), expected, "{key} in {text:?}");
        }
    }

    #[test]
    fn container_cgroups_are_found_under_each_hierarchy() {
        let v2 = ContainerCgroup::new(Hierarchy::Unified, "/shoal/w/c");
        assert_eq!(v2.v2_dir(), Path::new("/sys/fs/cgroup/shoal/w/c"));
    }

    fn facts(hierarchy: Hierarchy, controllers: &[&str]) -> CgroupFacts {
        CgroupFacts {
            hierarchy,
            controllers: controllers.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    #[test]
    fn v2_controllers_are_read_from_one_line() {
        assert_eq!(
            parse_v2_controllers("cpuset cpu io memory hugetlb pids rdma misc\n"),
            ["cpuset", "cpu", "io", "memory", "hugetlb", "pids", "rdma", "misc"]
        );
        assert!(parse_v2_controllers("\n").is_empty());
    }

    #[test]
    fn a_device_is_fit_only_with_the_memory_controller() {
        // (hierarchy, controllers, fit)
        let cases = [
            (Hierarchy::Unified, &["cpu", "memory", "pids"][..], true),
            (
                Hierarchy::Unified,
                &["cpuset", "cpu", "io", "pids"][..],
                false,
            ),
            (Hierarchy::Unified, &[][..], false),
            (Hierarchy::Hybrid, &["cpu", "cpuacct", "memory"][..], true),
            (Hierarchy::Legacy, &["cpu", "pids"][..], false),
        ];
        for (hierarchy, controllers, fit) in cases {
            let problem = missing_essentials(&facts(hierarchy, controllers));
            assert_eq!(
                problem.is_none(),
                fit,
                "{hierarchy} {controllers:?}: {problem:?}"
            );
        }
    }

    #[test]
    fn a_missing_memory_controller_names_the_raspberry_pi_fix() {
        let problem = missing_essentials(&facts(Hierarchy::Unified, &["cpu", "pids"]))
            .expect("memory is missing");
        assert!(problem.contains("cgroup_enable=memory"), "{problem}");
        assert!(
            problem.contains("v2 (unified) controllers: cpu pids"),
            "{problem}"
        );
    }

    #[test]
    fn hierarchies_report_their_cgroup_version() {
        assert_eq!(Hierarchy::Unified.version(), 2);
        assert_eq!(Hierarchy::Hybrid.version(), 1);
        assert_eq!(Hierarchy::Legacy.version(), 1);
    }

    #[test]
    fn this_machine_has_a_detectable_cgroup_hierarchy() {
        let facts = detect().expect("cgroups are mounted on the build machine");
        assert!(!facts.controllers.is_empty(), "{facts:?}");
    }
}
