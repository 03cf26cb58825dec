//! Which cgroup hierarchy the device has and which controllers it offers. Resource limits,
//! OOM detection and usage reports all depend on it, and boards differ: most run cgroup v2,
//! some still v1 or the v1/v2 hybrid, and Raspberry Pi OS often boots without the memory
//! controller.

use std::fmt;
use std::path::{Path, PathBuf};

use libcgroups::common::{CgroupSetup, DEFAULT_CGROUP_ROOT};

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

#[cfg(test)]
mod tests {
    use super::*;

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
