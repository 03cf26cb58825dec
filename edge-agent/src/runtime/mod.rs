//! The container runtime of the agent: the effects edge that the supervisor calls to run
//! containers, built on libcontainer (youki) and cgroups.
//!
//! # One shim process per container
//!
//! The agent never calls libcontainer to create a container itself. For each container it
//! spawns `shoal-agent shim run ...` (its own binary, hidden subcommand), which forks once so it
//! is no longer the agent's child, creates and starts the container through libcontainer,
//! reports `started PID` on a pipe, then stays as the container's parent: it copies the output
//! into size-capped log files, waits for the exit, reads the cgroup's OOM-kill counter, writes
//! `exit.json`, deletes the container and exits. Why a process and not a thread, a subreaper
//! or pidfds held by the agent:
//!
//! - **musl deadlock.** libcontainer forks through raw `clone3`, which skips libc's fork
//!   handling; in a multi-threaded static musl process the child can block on the malloc lock
//!   another thread held. A freshly exec'd shim has one thread when it forks.
//! - **cwd race.** libcontainer `chdir`s the whole process around its notify socket, so
//!   concurrent creates in one process break each other. Shims are separate processes.
//! - **Agent restarts.** Whoever parents the container init gets its exit status, and only
//!   while alive. With the agent as parent (or subreaper), `kill -9` of the agent loses the
//!   status, the output pipes and any container still in `Created` (which then hangs in
//!   `accept()`); pidfds die with the agent too. The shim outlives the agent: containers keep
//!   running and logging, and a restarted agent re-adopts them by reading the state dirs
//!   ([`Runtime::list`]). A subreaper agent would still have to be alive to reap.
//! - **Cost.** One small, mostly sleeping process per container (poll on three fds), and one
//!   exec per start: create+start+wait+delete of `true` stays at crun's level (`bench/runtime`).
//!
//! `exec` into a container and the deletion of a container whose shim died use the same
//! binary as short-lived helpers (`shim exec`, `shim delete`), for the same reasons.
//!
//! # Layout
//!
//! Under the run dir (`/run/shoal`, tmpfs, so a reboot clears it): `containers/<id>/` is both
//! the OCI bundle (`config.json`, `rootfs/` = overlay, `upper/`, `work/`, `hosts`,
//! `resolv.conf`) and the state dir (`meta.json` by the agent, `shim.json` and `exit.json` by
//! the shim, `shim.log`); `libcontainer/` is libcontainer's root; `pods/<workload>/{ipc,net}`
//! are the pods' namespace files. Under the data dir: `volumes/<workload>/<volume>` (named
//! volumes, kept across updates and deletes). Logs: `<log dir>/<id>/container.log{,.1}`, kept
//! after [`Runtime::remove`].
//!
//! Invariants: every call into libcontainer happens in a shim process ([`shim`]); every
//! `unsafe` block is in [`sys`]; the spec is built by a pure function ([`spec::build`]), and so
//! is the seccomp filter ([`seccomp::filter`]), which every container process and every exec'd
//! process gets unless the container is privileged.

// A library inside the binary crate: its API is complete for the supervisor, the local API and
// the CLI, which need not use every part of it.

pub mod cgroup;
pub mod devices;
pub mod logs;
pub mod pod;
pub mod process;
pub mod rootfs;
pub mod seccomp;
pub mod shim;
pub mod spec;
pub mod state;
pub mod sys;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use libcontainer::syscall::syscall::create_syscall;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::Signal;
use shoal_model::manifest::{Container, NetworkMode, VolumeSource, Workload};

use cgroup::{ContainerCgroup, Hierarchy, Usage};
pub use shim::ExecResult;
pub use spec::ProcessDefaults;
use spec::{ContainerPaths, DeviceKind, HostDevice, HostFacts};
use state::{ContainerMeta, RunDir, ShimRecord, EXIT_FILE, META_FILE, SHIM_FILE};
pub use state::{ExitRecord, ExitStatus};

/// Whether the agent holds the privileges that creating containers needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Privileges {
    /// Root in the initial user namespace: containers can be created.
    Root,
    /// Not root, or root inside a user namespace: libcontainer would need rootless mode,
    /// which the agent does not use.
    Rootless,
}

/// Asks libcontainer, through its syscall layer, whether it would need rootless mode here.
pub fn privileges() -> std::io::Result<Privileges> {
    let syscall = create_syscall();
    if libcontainer::utils::rootless_required(syscall.as_ref())? {
        Ok(Privileges::Rootless)
    } else {
        Ok(Privileges::Root)
    }
}

/// Default run dir: tmpfs on devices, so a reboot clears containers' state.
pub const DEFAULT_RUN_DIR: &str = "/run/shoal";
/// Default cap of one log file (a container keeps at most two).
pub const DEFAULT_LOG_MAX_BYTES: u64 = 1 << 20;
/// Output captured from an exec, per stream.
pub const EXEC_OUTPUT_MAX_BYTES: usize = 64 * 1024;

/// Where the runtime keeps things and what it allows.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// The agent's data dir; named volumes live in `volumes/` under it.
    pub data_dir: PathBuf,
    /// State of running containers; tmpfs.
    pub run_dir: PathBuf,
    /// Container logs, kept after containers are removed.
    pub log_dir: PathBuf,
    /// The binary run as `<shim_binary> shim ...`: normally the agent itself.
    pub shim_binary: PathBuf,
    /// `hostPath` volumes must be under one of these.
    pub allowed_host_paths: Vec<PathBuf>,
    pub log_max_bytes: u64,
    /// How long a shim may take to report that its container started.
    pub start_timeout: Duration,
    /// The cgroup (relative to each hierarchy's root) holding this agent's workloads.
    pub cgroup_parent: String,
}

impl RuntimeConfig {
    /// Defaults for an agent with this data dir.
    pub fn new(data_dir: PathBuf) -> Self {
        RuntimeConfig {
            log_dir: data_dir.join("logs"),
            data_dir,
            run_dir: PathBuf::from(DEFAULT_RUN_DIR),
            shim_binary: PathBuf::from("/proc/self/exe"),
            allowed_host_paths: Vec::new(),
            log_max_bytes: DEFAULT_LOG_MAX_BYTES,
            start_timeout: Duration::from_secs(60),
            cgroup_parent: "shoal".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("cannot {what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Cgroup(#[from] cgroup::CgroupError),
    #[error(transparent)]
    Usage(#[from] cgroup::UsageError),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Pod(#[from] pod::PodError),
    #[error("`{workload}.{container}` is not a valid container id; names must be DNS labels")]
    BadId { workload: String, container: String },
    #[error("container {id} already exists: stop and remove it first")]
    AlreadyExists { id: String },
    #[error("there is no container {id}")]
    NotFound { id: String },
    #[error("container {id} is not running")]
    NotRunning { id: String },
    #[error("workload volume `{volume}` is not declared in workload `{workload}`")]
    UnknownVolume { workload: String, volume: String },
    #[error(
        "host path {path} is not under an allowed host path ({allowed}); add it to the agent's \
         allowed host paths if containers may use it"
    )]
    HostPathNotAllowed { path: PathBuf, allowed: String },
    #[error("host path {path} does not exist on this device; create it first")]
    HostPathMissing { path: PathBuf },
    #[error("{path} is not a device node on this device")]
    NotADevice { path: String },
    #[error("cannot start the shim {binary}: {source}")]
    SpawnShim {
        binary: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("container {id} did not start: {message}")]
    StartFailed { id: String, message: String },
    #[error("container {id} did not report running within {timeout:?}; see {log}")]
    StartTimeout {
        id: String,
        timeout: Duration,
        log: PathBuf,
    },
    #[error("the rootfs of {id} is still mounted; not deleting its bundle")]
    StillMounted { id: String },
    #[error("cannot clean up container {id}: {message}")]
    Cleanup { id: String, message: String },
    #[error("exec in {id} failed: {message}")]
    Exec { id: String, message: String },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RuntimeError {
    let path = path.to_owned();
    move |source| RuntimeError::Io { what, path, source }
}

/// The container id for a workload's container: `<workload>.<container>`. Both are DNS labels
/// (no `.`), so the id is unambiguous, and valid for libcontainer.
pub fn container_id(workload: &str, container: &str) -> Result<String, RuntimeError> {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    if ok(workload) && ok(container) {
        Ok(format!("{workload}.{container}"))
    } else {
        Err(RuntimeError::BadId {
            workload: workload.to_owned(),
            container: container.to_owned(),
        })
    }
}

/// Checks a `hostPath` (already canonical: symlinks resolved) against the allow-list (also
/// canonical): it must be one of them or below one, by whole path components.
pub fn check_host_path(path: &Path, allowed: &[PathBuf]) -> Result<(), RuntimeError> {
    if allowed.iter().any(|root| path.starts_with(root)) {
        Ok(())
    } else {
        Err(RuntimeError::HostPathNotAllowed {
            path: path.to_owned(),
            allowed: if allowed.is_empty() {
                "none are configured".to_owned()
            } else {
                allowed
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
    }
}

/// A started container.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Started {
    pub pid: i32,
    pub started_ms: u64,
}

/// What a container is doing, as the state dirs tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContainerState {
    /// Its shim is creating it (seen only by an agent that restarted meanwhile).
    Starting,
    Running {
        pid: i32,
    },
    Exited(ExitRecord),
}

/// One container known to the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRecord {
    pub id: String,
    pub workload: String,
    pub container: String,
    pub state: ContainerState,
    pub started_ms: u64,
}

/// Output and outcome of [`Runtime::exec`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub result: ExecResult,
    /// At most [`EXEC_OUTPUT_MAX_BYTES`] each.
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The container runtime. Blocking methods, callable from several threads at once.
#[derive(Debug)]
pub struct Runtime {
    config: RuntimeConfig,
    run: RunDir,
    hierarchy: Hierarchy,
    host: HostFacts,
    allowed_host_paths: Vec<PathBuf>,
    /// Containers this instance is starting or removing: `list` does not report them
    /// half-made or half-gone, and a second start or removal of one is refused.
    in_flux: Mutex<HashSet<String>>,
}

/// Removes an id from [`Runtime::in_flux`] when a start or removal ends, however it ends.
struct InFlux<'a> {
    runtime: &'a Runtime,
    id: String,
}

impl<'a> InFlux<'a> {
    /// Marks `id` as being started or removed; `None` when it already is.
    fn enter(runtime: &'a Runtime, id: &str) -> Option<InFlux<'a>> {
        let mut ids = runtime.in_flux.lock().ok()?;
        ids.insert(id.to_owned()).then(|| InFlux {
            runtime,
            id: id.to_owned(),
        })
    }
}

impl Drop for InFlux<'_> {
    fn drop(&mut self) {
        if let Ok(mut ids) = self.runtime.in_flux.lock() {
            ids.remove(&self.id);
        }
    }
}

impl Runtime {
    /// Creates the dirs it needs and detects the cgroup hierarchy. Existing containers (from a
    /// previous agent) are left alone: see [`Runtime::list`].
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        let run = RunDir::new(config.run_dir.clone());
        for dir in [
            run.containers(),
            run.libcontainer_root(),
            config.log_dir.clone(),
            config.data_dir.join("volumes"),
        ] {
            std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
        }
        let facts = cgroup::detect()?;
        let hierarchy = facts.hierarchy;
        let cap_last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(40);
        let bounding_set = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let hex = status.lines().find_map(|l| l.strip_prefix("CapBnd:"))?;
                u64::from_str_radix(hex.trim(), 16).ok()
            })
            .unwrap_or(u64::MAX);
        let host = HostFacts {
            cgroup_v2: hierarchy == Hierarchy::Unified,
            // v1: the devices controller; v2: the shim's eBPF device program.
            device_cgroup: true,
            swap_limit: cgroup::swap_limit_supported(hierarchy),
            cap_last_cap,
            bounding_set,
        };
        let allowed_host_paths = config
            .allowed_host_paths
            .iter()
            .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
            .collect();
        Ok(Runtime {
            config,
            run,
            hierarchy,
            host,
            allowed_host_paths,
            in_flux: Mutex::new(HashSet::new()),
        })
    }

    /// Where a named volume of a workload lives.
    pub fn volume_dir(&self, workload: &str, volume: &str) -> PathBuf {
        self.config
            .data_dir
            .join("volumes")
            .join(workload)
            .join(volume)
    }

    /// Creates the workload's shared namespaces (IPC; network with loopback up when
    /// `isolated`) and its named-volume dirs, and records `tag` (what the caller made the pod
    /// for, e.g. a hash of its spec; see [`Runtime::pods`]). Idempotent.
    pub fn ensure_pod(&self, workload: &Workload, tag: &str) -> Result<(), RuntimeError> {
        let mut kinds = vec![pod::Kind::Ipc];
        if workload.spec.network == NetworkMode::Isolated {
            kinds.push(pod::Kind::Net);
        }
        let dir = self.run.pod(&workload.name);
        pod::ensure(&dir, &kinds)?;
        for volume in &workload.spec.volumes {
            if volume.source == VolumeSource::Named {
                let dir = self.volume_dir(&workload.name, &volume.name);
                std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
            }
        }
        let tag_file = dir.join(pod::TAG_FILE);
        std::fs::write(&tag_file, tag).map_err(io_err("write", &tag_file))?;
        tracing::debug!(workload = %workload.name, "pod ready");
        Ok(())
    }

    /// Pods that exist, with the tag given to [`Runtime::ensure_pod`].
    pub fn pods(&self) -> Result<Vec<(String, String)>, RuntimeError> {
        let root = self.run.pods();
        let entries = match std::fs::read_dir(&root) {
            Ok(entries) => entries,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(err) => return Err(io_err("list", &root)(err)),
        };
        let mut pods = Vec::new();
        for entry in entries.flatten() {
            let dir = entry.path();
            if !pod::is_namespace_file(&dir.join(pod::Kind::Ipc.file_name())) {
                continue;
            }
            let tag = std::fs::read_to_string(dir.join(pod::TAG_FILE)).unwrap_or_default();
            pods.push((entry.file_name().to_string_lossy().into_owned(), tag));
        }
        pods.sort();
        Ok(pods)
    }

    /// The workload's network namespace file when it has one (`network: isolated`), e.g. for
    /// HTTP and TCP health checks from a thread that enters it.
    pub fn netns(&self, workload: &str) -> Option<PathBuf> {
        let path = self.run.pod(workload).join(pod::Kind::Net.file_name());
        pod::is_namespace_file(&path).then_some(path)
    }

    /// Removes the workload's namespaces and its empty parent cgroups. Named volumes are kept:
    /// they survive updates and deletes of the workload (delete them by hand).
    pub fn remove_pod(&self, workload: &str) -> Result<(), RuntimeError> {
        pod::remove(&self.run.pod(workload))?;
        let parent = format!("{}/{workload}", self.config.cgroup_parent);
        for root in self.cgroup_roots() {
            let _ = std::fs::remove_dir(root.join(&parent));
        }
        Ok(())
    }

    fn cgroup_roots(&self) -> Vec<PathBuf> {
        match self.hierarchy {
            Hierarchy::Unified => vec![PathBuf::from(libcgroups::common::DEFAULT_CGROUP_ROOT)],
            Hierarchy::Hybrid | Hierarchy::Legacy => {
                libcgroups::v1::util::list_subsystem_mount_points().unwrap_or_default()
            }
        }
    }

    /// Creates and starts a container: overlay rootfs from `layers` (bottom first), spec,
    /// shim. Returns once the container's process runs, or with the error that prevented it
    /// (the shim's message when libcontainer refused).
    pub fn start(
        &self,
        workload: &Workload,
        container: &Container,
        layers: &[PathBuf],
        defaults: &ProcessDefaults,
    ) -> Result<Started, RuntimeError> {
        let id = container_id(&workload.name, &container.name)?;
        let Some(_guard) = InFlux::enter(self, &id) else {
            return Err(RuntimeError::AlreadyExists { id });
        };
        let dir = self.run.container(&id);
        match std::fs::create_dir(&dir) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(RuntimeError::AlreadyExists { id })
            }
            Err(err) => return Err(io_err("create", &dir)(err)),
        }
        let result = self.start_in(&id, &dir, workload, container, layers, defaults);
        if result.is_err() {
            if let Err(err) = self.cleanup_bundle(&id, &dir) {
                tracing::warn!(%err, id, "cleanup after a failed start");
            }
        }
        result
    }

    fn start_in(
        &self,
        id: &str,
        dir: &Path,
        workload: &Workload,
        container: &Container,
        layers: &[PathBuf],
        defaults: &ProcessDefaults,
    ) -> Result<Started, RuntimeError> {
        let log_dir = self.config.log_dir.join(id);
        std::fs::create_dir_all(&log_dir).map_err(io_err("create", &log_dir))?;
        let meta = ContainerMeta {
            id: id.to_owned(),
            workload: workload.name.clone(),
            container: container.name.clone(),
            cgroups_path: spec::cgroups_path(
                &self.config.cgroup_parent,
                &workload.name,
                &container.name,
            ),
            log: log_dir.join(state::CONTAINER_LOG),
        };
        state::write_atomic(dir, META_FILE, &meta)
            .map_err(io_err("write", &dir.join(META_FILE)))?;
        // A leftover libcontainer state of the same id (a shim killed mid-way) blocks creation.
        if self.run.libcontainer_root().join(id).exists() {
            self.delete_leftovers(id)?;
        }

        let volumes = self.prepare_volumes(workload, container)?;
        let devices = container
            .devices
            .iter()
            .map(|path| lookup_device(path))
            .collect::<Result<Vec<_>, _>>()?;
        let hosts = dir.join("hosts");
        std::fs::write(&hosts, hosts_file(workload)).map_err(io_err("write", &hosts))?;
        let resolv_conf = dir.join("resolv.conf");
        let resolv_conf = match std::fs::copy("/etc/resolv.conf", &resolv_conf) {
            Ok(_) => Some(resolv_conf),
            Err(_) => None,
        };
        let pod_dir = self.run.pod(&workload.name);
        let paths = ContainerPaths {
            rootfs: rootfs::mount_overlay(dir, layers)?,
            ipc_ns: pod_dir.join(pod::Kind::Ipc.file_name()),
            net_ns: (workload.spec.network == NetworkMode::Isolated)
                .then(|| pod_dir.join(pod::Kind::Net.file_name())),
            volumes,
            hosts: Some(hosts),
            resolv_conf,
        };
        for ns in std::iter::once(&paths.ipc_ns).chain(paths.net_ns.as_ref()) {
            if !pod::is_namespace_file(ns) {
                return Err(RuntimeError::StartFailed {
                    id: id.to_owned(),
                    message: format!(
                        "the pod's namespace {} is missing: call ensure_pod first",
                        ns.display()
                    ),
                });
            }
        }
        let spec = spec::build(&spec::SpecInput {
            workload,
            container,
            defaults,
            paths: &paths,
            host: &self.host,
            devices: &devices,
            cgroups_path: &meta.cgroups_path,
        })?;
        let config = dir.join(state::CONFIG_FILE);
        spec.save(&config)
            .map_err(|e| io_err("write", &config)(io::Error::other(e)))?;
        let pid = self.spawn_shim(id, dir, &meta.log)?;
        let started_ms = state::read::<ShimRecord>(dir, SHIM_FILE)
            .ok()
            .flatten()
            .map_or_else(shoal_model::clock::wall_ms, |r| r.started_ms);
        tracing::info!(id, pid, "container started");
        Ok(Started { pid, started_ms })
    }

    fn prepare_volumes(
        &self,
        workload: &Workload,
        container: &Container,
    ) -> Result<BTreeMap<String, PathBuf>, RuntimeError> {
        let mut volumes = BTreeMap::new();
        for mount in &container.mounts {
            let volume = workload
                .spec
                .volumes
                .iter()
                .find(|v| v.name == mount.volume)
                .ok_or_else(|| RuntimeError::UnknownVolume {
                    workload: workload.name.clone(),
                    volume: mount.volume.clone(),
                })?;
            let dir = match &volume.source {
                VolumeSource::Named => {
                    let dir = self.volume_dir(&workload.name, &volume.name);
                    std::fs::create_dir_all(&dir).map_err(io_err("create", &dir))?;
                    dir
                }
                VolumeSource::HostPath(path) => {
                    let path = Path::new(path);
                    let canonical =
                        std::fs::canonicalize(path).map_err(|_| RuntimeError::HostPathMissing {
                            path: path.to_owned(),
                        })?;
                    check_host_path(&canonical, &self.allowed_host_paths)?;
                    canonical
                }
            };
            volumes.insert(volume.name.clone(), dir);
        }
        Ok(volumes)
    }

    /// Spawns the shim and waits for its readiness line.
    fn spawn_shim(&self, id: &str, dir: &Path, log: &Path) -> Result<i32, RuntimeError> {
        let shim_log = dir.join(state::SHIM_LOG);
        let stderr = std::fs::File::create(&shim_log).map_err(io_err("create", &shim_log))?;
        let mut child = Command::new(&self.config.shim_binary)
            .arg("shim")
            .arg("run")
            .arg("--id")
            .arg(id)
            .arg("--bundle")
            .arg(dir)
            .arg("--state")
            .arg(dir)
            .arg("--root")
            .arg(self.run.libcontainer_root())
            .arg("--log")
            .arg(log)
            .arg("--log-max-bytes")
            .arg(self.config.log_max_bytes.to_string())
            .current_dir("/")
            .env(crate::telemetry::FILTER_ENV, shim_log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .map_err(|source| RuntimeError::SpawnShim {
                binary: self.config.shim_binary.clone(),
                source,
            })?;
        let stdout = child.stdout.take();
        let line = match stdout {
            Some(stdout) => read_line_until(OwnedFd::from(stdout), self.config.start_timeout),
            None => Ok(None),
        };
        // The first shim process exits right after its fork.
        let _ = child.wait();
        let line = match line {
            Ok(Some(line)) => line,
            Ok(None) => {
                self.kill_stuck_shim(id, dir);
                return Err(RuntimeError::StartTimeout {
                    id: id.to_owned(),
                    timeout: self.config.start_timeout,
                    log: shim_log,
                });
            }
            Err(err) => return Err(io_err("read the readiness of the shim of", dir)(err)),
        };
        shim::parse_readiness(&line).map_err(|message| RuntimeError::StartFailed {
            id: id.to_owned(),
            message,
        })
    }

    /// A shim that never reported: kill it and whatever it created.
    fn kill_stuck_shim(&self, id: &str, dir: &Path) {
        if let Ok(Some(record)) = state::read::<ShimRecord>(dir, SHIM_FILE) {
            if let Ok(Some(fd)) = process::open(record.shim) {
                let _ = process::signal(&fd, Signal::KILL);
                let _ = process::wait_readable(&fd, Some(Duration::from_secs(5)));
            }
        }
        if let Err(err) = self.delete_leftovers(id) {
            tracing::warn!(%err, id, "cannot delete what a stuck shim left");
        }
    }

    /// Runs `shim delete` for a container whose shim is gone but whose libcontainer state
    /// (and maybe processes and cgroup) remain.
    fn delete_leftovers(&self, id: &str) -> Result<(), RuntimeError> {
        if !self.run.libcontainer_root().join(id).exists() {
            return Ok(());
        }
        let output = Command::new(&self.config.shim_binary)
            .args(["shim", "delete", "--id", id, "--root"])
            .arg(self.run.libcontainer_root())
            .current_dir("/")
            .env(crate::telemetry::FILTER_ENV, shim_log_filter())
            .stdin(Stdio::null())
            .output()
            .map_err(|source| RuntimeError::SpawnShim {
                binary: self.config.shim_binary.clone(),
                source,
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(RuntimeError::Cleanup {
                id: id.to_owned(),
                message: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
            })
        }
    }

    fn record_of(&self, id: &str) -> Result<(PathBuf, ContainerMeta), RuntimeError> {
        let dir = self.run.container(id);
        let meta = state::read::<ContainerMeta>(&dir, META_FILE)
            .map_err(io_err("read", &dir.join(META_FILE)))?
            .ok_or_else(|| RuntimeError::NotFound { id: id.to_owned() })?;
        Ok((dir, meta))
    }

    /// Stops a container: SIGTERM to its init, SIGKILL after `grace`, and returns once it has
    /// exited and its shim recorded how. Stopping an exited container returns its exit.
    pub fn stop(&self, id: &str, grace: Duration) -> Result<ExitRecord, RuntimeError> {
        let (dir, _meta) = self.record_of(id)?;
        if let Some(exit) = read_exit(&dir)? {
            return Ok(exit);
        }
        let record = state::read::<ShimRecord>(&dir, SHIM_FILE)
            .map_err(io_err("read", &dir.join(SHIM_FILE)))?;
        let shim_fd = match record {
            Some(record) => {
                process::open(record.shim).map_err(io_err("open a pidfd for the shim of", &dir))?
            }
            None => None,
        };
        if let Some(init) = record.and_then(|r| r.init) {
            if let Some(fd) = process::open(init).map_err(io_err("open a pidfd for", &dir))? {
                process::signal(&fd, Signal::TERM).map_err(io_err("signal", &dir))?;
                let exited =
                    process::wait_readable(&fd, Some(grace)).map_err(io_err("wait for", &dir))?;
                if !exited {
                    tracing::info!(id, ?grace, "container ignored SIGTERM; killing it");
                    process::signal(&fd, Signal::KILL).map_err(io_err("signal", &dir))?;
                    process::wait_readable(&fd, Some(Duration::from_secs(10)))
                        .map_err(io_err("wait for", &dir))?;
                }
            }
        }
        if let Some(fd) = shim_fd {
            // The shim drains output, deletes the container, writes exit.json, exits.
            process::wait_readable(&fd, Some(Duration::from_secs(15)))
                .map_err(io_err("wait for the shim of", &dir))?;
        }
        match read_exit(&dir)? {
            Some(exit) => Ok(exit),
            None => self.reap_dead_shim(id, &dir),
        }
    }

    /// Cleans up after a shim that died without writing `exit.json`: kills the container if it
    /// still runs, deletes what libcontainer left, records an unknown exit.
    fn reap_dead_shim(&self, id: &str, dir: &Path) -> Result<ExitRecord, RuntimeError> {
        let record = state::read::<ShimRecord>(dir, SHIM_FILE).ok().flatten();
        if let Some(shim) = record.map(|r| r.shim) {
            if shim.is_alive() {
                return Err(RuntimeError::Cleanup {
                    id: id.to_owned(),
                    message: "its shim is still running; try again".to_owned(),
                });
            }
        }
        tracing::warn!(id, "the container's shim died; cleaning up");
        if let Some(init) = record.and_then(|r| r.init) {
            if let Ok(Some(fd)) = process::open(init) {
                let _ = process::signal(&fd, Signal::KILL);
                let _ = process::wait_readable(&fd, Some(Duration::from_secs(5)));
            }
        }
        let oom_killed = shim::read_oom(dir);
        self.delete_leftovers(id)?;
        let exit = ExitRecord {
            status: ExitStatus::Unknown,
            oom_killed,
            started_ms: record.map_or(0, |r| r.started_ms),
            exited_ms: shoal_model::clock::wall_ms(),
        };
        state::write_atomic(dir, EXIT_FILE, &exit)
            .map_err(io_err("write", &dir.join(EXIT_FILE)))?;
        Ok(exit)
    }

    /// Forgets a container: stops it if needed (no grace), deletes what is left of it,
    /// unmounts its rootfs and deletes its bundle. Its logs are kept.
    pub fn remove(&self, id: &str) -> Result<(), RuntimeError> {
        let Some(_guard) = InFlux::enter(self, id) else {
            return Err(RuntimeError::Cleanup {
                id: id.to_owned(),
                message: "it is already being started or removed; try again".to_owned(),
            });
        };
        let dir = self.run.container(id);
        if !dir.exists() {
            return self.delete_leftovers(id);
        }
        if state::read::<ContainerMeta>(&dir, META_FILE)
            .ok()
            .flatten()
            .is_some()
        {
            self.stop(id, Duration::ZERO)?;
        }
        self.delete_leftovers(id)?;
        self.cleanup_bundle(id, &dir)?;
        tracing::info!(id, "container removed");
        Ok(())
    }

    fn cleanup_bundle(&self, id: &str, dir: &Path) -> Result<(), RuntimeError> {
        let rootfs_dir = dir.join(state::ROOTFS_DIR);
        rootfs::unmount_overlay(&rootfs_dir)?;
        if rootfs::is_mounted(&rootfs_dir) {
            return Err(RuntimeError::StillMounted { id: id.to_owned() });
        }
        match std::fs::remove_dir_all(dir) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io_err("delete", dir)(err)),
        }
    }

    /// Every container with a state dir: how a restarted agent re-adopts its containers.
    /// Containers whose shim died without recording an exit are cleaned up and reported as
    /// exited with [`ExitStatus::Unknown`].
    pub fn list(&self) -> Result<Vec<ContainerRecord>, RuntimeError> {
        let containers = self.run.containers();
        let entries = std::fs::read_dir(&containers).map_err(io_err("list", &containers))?;
        let in_flux = self.in_flux.lock().map(|s| s.clone()).unwrap_or_default();
        let mut records = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("list", &containers))?;
            let id = entry.file_name().to_string_lossy().into_owned();
            if in_flux.contains(&id) || !entry.path().is_dir() {
                continue;
            }
            match self.inspect(&id) {
                Ok(Some(record)) => records.push(record),
                Ok(None) => {}
                Err(err) => tracing::warn!(%err, id, "cannot inspect a container"),
            }
        }
        records.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(records)
    }

    /// The record of one container, `None` when it has no state dir.
    pub fn inspect(&self, id: &str) -> Result<Option<ContainerRecord>, RuntimeError> {
        let dir = self.run.container(id);
        if !dir.is_dir() {
            return Ok(None);
        }
        let meta = state::read::<ContainerMeta>(&dir, META_FILE).ok().flatten();
        let (workload, container) = match &meta {
            Some(meta) => (meta.workload.clone(), meta.container.clone()),
            None => match id.split_once('.') {
                Some((w, c)) => (w.to_owned(), c.to_owned()),
                None => (id.to_owned(), String::new()),
            },
        };
        let record = state::read::<ShimRecord>(&dir, SHIM_FILE).ok().flatten();
        let started_ms = record.map_or(0, |r| r.started_ms);
        let state = if let Some(exit) = read_exit(&dir)? {
            ContainerState::Exited(exit)
        } else {
            match record {
                Some(r) if r.shim.is_alive() => match r.init {
                    Some(init) => ContainerState::Running { pid: init.pid },
                    None => ContainerState::Starting,
                },
                Some(_) => ContainerState::Exited(self.reap_dead_shim(id, &dir)?),
                None => ContainerState::Exited(ExitRecord {
                    status: ExitStatus::Unknown,
                    oom_killed: false,
                    started_ms: 0,
                    exited_ms: 0,
                }),
            }
        };
        Ok(Some(ContainerRecord {
            id: id.to_owned(),
            workload,
            container,
            state,
            started_ms,
        }))
    }

    /// A pidfd of the container's shim: readable once the container has exited and its exit
    /// is recorded (then [`Runtime::inspect`] tells how). Wrap it in `tokio::io::unix::AsyncFd`
    /// to await exits without polling (the supervisor does). `None` when the shim is already
    /// gone.
    pub fn exit_fd(&self, id: &str) -> Result<Option<OwnedFd>, RuntimeError> {
        let (dir, _) = self.record_of(id)?;
        let record = state::read::<ShimRecord>(&dir, SHIM_FILE)
            .map_err(io_err("read", &dir.join(SHIM_FILE)))?;
        match record {
            Some(record) => {
                process::open(record.shim).map_err(io_err("open a pidfd for the shim of", &dir))
            }
            None => Ok(None),
        }
    }

    /// Memory, CPU and OOM kills of a running container, from its cgroup.
    pub fn stats(&self, id: &str) -> Result<Usage, RuntimeError> {
        let (_, meta) = self.record_of(id)?;
        let cgroup = ContainerCgroup::new(self.hierarchy, &meta.cgroups_path);
        cgroup.usage().map_err(|err| match err {
            cgroup::UsageError::Read { .. } => RuntimeError::NotRunning { id: id.to_owned() },
            other => other.into(),
        })
    }

    /// The container's log file (`container.log`; the older half is [`logs::rotated`] of it).
    /// Read with [`logs::tail`] and [`logs::LogFollower`].
    pub fn log_path(&self, id: &str) -> PathBuf {
        self.config.log_dir.join(id).join(state::CONTAINER_LOG)
    }

    /// Runs `command` inside the running container (its namespaces, cgroup, user and
    /// capabilities), killing it after `timeout`. Output is capped at
    /// [`EXEC_OUTPUT_MAX_BYTES`] per stream.
    pub fn exec(
        &self,
        id: &str,
        command: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput, RuntimeError> {
        let (dir, _) = self.record_of(id)?;
        if command.is_empty() {
            return Err(RuntimeError::Exec {
                id: id.to_owned(),
                message: "the command is empty".to_owned(),
            });
        }
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result_path = dir.join(format!(".exec-{}-{n}.json", std::process::id()));
        let mut child = Command::new(&self.config.shim_binary)
            .args(["shim", "exec", "--id", id, "--root"])
            .arg(self.run.libcontainer_root())
            .arg("--result")
            .arg(&result_path)
            .arg("--timeout-ms")
            .arg(timeout.as_millis().to_string())
            .arg("--")
            .args(command)
            .current_dir("/")
            .env(crate::telemetry::FILTER_ENV, shim_log_filter())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| RuntimeError::SpawnShim {
                binary: self.config.shim_binary.clone(),
                source,
            })?;
        let pidfd = rustix::process::Pid::from_raw(child.id() as i32).and_then(|pid| {
            rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
        });
        let (Some(stdout), Some(stderr), Some(pidfd)) =
            (child.stdout.take(), child.stderr.take(), pidfd)
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(RuntimeError::Exec {
                id: id.to_owned(),
                message: "cannot set up the exec helper's pipes".to_owned(),
            });
        };
        // The helper enforces the timeout itself; this is the backstop should it hang.
        let deadline = Instant::now() + timeout + Duration::from_secs(10);
        let captured = capture(
            OwnedFd::from(stdout),
            OwnedFd::from(stderr),
            &pidfd,
            deadline,
        );
        let finished = process::wait_readable(&pidfd, Some(Duration::ZERO)).unwrap_or(false);
        if !finished {
            let _ = child.kill();
        }
        let _ = child.wait();
        let result = state::read::<ExecResult>(
            &dir,
            &result_path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let _ = std::fs::remove_file(&result_path);
        let (stdout, stderr) = captured.map_err(io_err("read the output of exec in", &dir))?;
        let result = match result {
            Ok(Some(result)) => result,
            _ if !finished => ExecResult::TimedOut,
            _ => ExecResult::Failed(String::from_utf8_lossy(&stderr).trim().to_owned()),
        };
        if let ExecResult::Failed(message) = result {
            return Err(RuntimeError::Exec {
                id: id.to_owned(),
                message,
            });
        }
        Ok(ExecOutput {
            result,
            stdout,
            stderr,
        })
    }
}

/// The log filter of shim processes: the agent's, but nothing from libcontainer. Much of its
/// code (namespaces, rootfs, capabilities, process) runs in the container's init before exec,
/// whose stderr is the container's: with `SHOAL_LOG=debug` every container log would start
/// with libcontainer's trace. Failures there come back to the shim as errors anyway.
fn shim_log_filter() -> String {
    let base = std::env::var(crate::telemetry::FILTER_ENV).unwrap_or_else(|_| "warn".to_owned());
    format!("{base},libcontainer=off,libcgroups=off")
}

fn read_exit(dir: &Path) -> Result<Option<ExitRecord>, RuntimeError> {
    state::read::<ExitRecord>(dir, EXIT_FILE).map_err(io_err("read", &dir.join(EXIT_FILE)))
}

/// Reads one line from `fd`, giving up after `timeout` (`Ok(None)`); EOF gives what was read.
fn read_line_until(fd: OwnedFd, timeout: Duration) -> io::Result<Option<String>> {
    let deadline = Instant::now() + timeout;
    let mut file = std::fs::File::from(fd);
    let mut line = Vec::new();
    let mut buf = [0u8; 512];
    loop {
        if !process::wait_readable(
            file.as_fd(),
            Some(deadline.saturating_duration_since(Instant::now())),
        )? {
            return Ok(None);
        }
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        };
        line.extend_from_slice(&buf[..n]);
        if n == 0 || line.contains(&b'\n') {
            let text = String::from_utf8_lossy(&line);
            return Ok(Some(text.lines().next().unwrap_or("").to_owned()));
        }
    }
}

/// Reads both pipes (keeping at most [`EXEC_OUTPUT_MAX_BYTES`] each) until both are at EOF,
/// or the helper exited and a short drain passed, or the deadline.
fn capture(
    stdout: OwnedFd,
    stderr: OwnedFd,
    helper: &OwnedFd,
    deadline: Instant,
) -> io::Result<(Vec<u8>, Vec<u8>)> {
    let fds = [stdout, stderr];
    let mut out: [Vec<u8>; 2] = [Vec::new(), Vec::new()];
    let mut open = [true, true];
    let mut helper_exited_at: Option<Instant> = None;
    let mut buf = [0u8; 16 * 1024];
    while open.iter().any(|o| *o) {
        let now = Instant::now();
        let mut until = deadline;
        if let Some(at) = helper_exited_at {
            until = until.min(at + Duration::from_millis(200));
        }
        if now >= until {
            break;
        }
        let timeout = rustix::event::Timespec::try_from(until - now).ok();
        let mut polled = [
            PollFd::new(
                &fds[0],
                if open[0] {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                },
            ),
            PollFd::new(
                &fds[1],
                if open[1] {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                },
            ),
            PollFd::new(
                helper,
                if helper_exited_at.is_none() {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                },
            ),
        ];
        match poll(&mut polled, timeout.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
        }
        let ready = [
            polled[0].revents(),
            polled[1].revents(),
            polled[2].revents(),
        ];
        if !ready[2].is_empty() && helper_exited_at.is_none() {
            helper_exited_at = Some(Instant::now());
        }
        for i in 0..2 {
            if !open[i] || ready[i].is_empty() {
                continue;
            }
            match rustix::io::read(&fds[i], &mut buf) {
                Ok(0) => open[i] = false,
                Ok(n) => {
                    let room = EXEC_OUTPUT_MAX_BYTES.saturating_sub(out[i].len());
                    out[i].extend_from_slice(&buf[..n.min(room)]);
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(err) => return Err(err.into()),
            }
        }
    }
    let [stdout, stderr] = out;
    Ok((stdout, stderr))
}

/// Looks up a host device node for the spec.
fn lookup_device(path: &str) -> Result<HostDevice, RuntimeError> {
    let meta = std::fs::metadata(path).map_err(|_| RuntimeError::NotADevice {
        path: path.to_owned(),
    })?;
    let kind = if meta.file_type().is_char_device() {
        DeviceKind::Char
    } else if meta.file_type().is_block_device() {
        DeviceKind::Block
    } else {
        return Err(RuntimeError::NotADevice {
            path: path.to_owned(),
        });
    };
    let rdev = meta.rdev();
    Ok(HostDevice {
        path: path.to_owned(),
        kind,
        major: i64::from(rustix::fs::major(rdev)),
        minor: i64::from(rustix::fs::minor(rdev)),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// `/etc/hosts` of a container: loopback names and the workload name (its hostname).
fn hosts_file(workload: &Workload) -> String {
    format!(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
        workload.name
    )
}
