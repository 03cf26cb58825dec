//! What a shim leaves on disk for the agent: the layout of the run dir and the two files a shim
//! writes, `shim.json` when its container runs and `exit.json` when it has exited. Both are
//! written atomically (temp file + rename), so a reader sees either nothing or a whole file.
//!
//! These JSON shapes cross a process boundary, but only between two copies of the same
//! binary (agent and shim), never between versions on the wire, which is why they live here
//! and not in `shoal-model`.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// File name of the agent's description of a container.
pub const META_FILE: &str = "meta.json";
/// File name of the shim's record of itself and its running container.
pub const SHIM_FILE: &str = "shim.json";
/// File name of the record of an exited container.
pub const EXIT_FILE: &str = "exit.json";
/// The shim's own diagnostics (its stderr).
pub const SHIM_LOG: &str = "shim.log";
/// The container's OCI config inside its bundle (the state dir).
pub const CONFIG_FILE: &str = "config.json";
/// The mount point of the container's overlay rootfs inside its bundle.
pub const ROOTFS_DIR: &str = "rootfs";
/// The container's output log; rotated to `container.log.1`.
pub const CONTAINER_LOG: &str = "container.log";

/// Paths under the run dir (`/run/shoal`, tmpfs on most devices, so a reboot clears it).
#[derive(Clone, Debug)]
pub struct RunDir {
    root: PathBuf,
}

impl RunDir {
    pub fn new(root: PathBuf) -> Self {
        RunDir { root }
    }

    /// One dir per container: the shim's state files and the OCI bundle (config.json, rootfs,
    /// overlay upper and work dirs).
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    pub fn container(&self, id: &str) -> PathBuf {
        self.containers().join(id)
    }

    /// libcontainer's own state (`--root` of runc terms).
    pub fn libcontainer_root(&self) -> PathBuf {
        self.root.join("libcontainer")
    }

    /// One dir per pod.
    pub fn pods(&self) -> PathBuf {
        self.root.join("pods")
    }

    /// The bind-mounted namespace files of a workload's pod.
    pub fn pod(&self, workload: &str) -> PathBuf {
        self.pods().join(workload)
    }
}

/// Identifies one process across PID reuse: its PID plus its start time in clock ticks after
/// boot (field 22 of `/proc/PID/stat`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessIdentity {
    pub pid: i32,
    pub start_ticks: u64,
}

impl ProcessIdentity {
    /// The identity of a live process, `None` when it does not exist (anymore).
    pub fn of(pid: i32) -> Option<ProcessIdentity> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        Some(ProcessIdentity {
            pid,
            start_ticks: parse_start_ticks(&stat)?,
        })
    }

    /// Whether this very process still exists (zombies included).
    pub fn is_alive(&self) -> bool {
        ProcessIdentity::of(self.pid).is_some_and(|now| now == *self)
    }
}

/// Field 22 of `/proc/PID/stat`; the command name (field 2) may contain spaces and
/// parentheses, so fields are counted after its closing parenthesis.
fn parse_start_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Written by the agent before it spawns the shim: what the container is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerMeta {
    pub id: String,
    pub workload: String,
    pub container: String,
    /// The container's cgroup, relative to the cgroup root (the OCI `cgroupsPath`).
    pub cgroups_path: String,
    pub log: PathBuf,
}

/// Written by the shim as soon as it runs (`init: None`), again once its container runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimRecord {
    pub shim: ProcessIdentity,
    /// The container's init process, a child of the shim.
    pub init: Option<ProcessIdentity>,
    pub started_ms: u64,
}

/// How the container's init ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
    /// The shim died before it could tell (killed, or the device lost power mid-way).
    Unknown,
}

/// Written by the shim when its container has exited and been deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub status: ExitStatus,
    /// The cgroup's OOM-kill counter was above zero: the kernel killed a process of the
    /// container for memory, maybe not the init itself.
    pub oom_killed: bool,
    pub started_ms: u64,
    pub exited_ms: u64,
}

/// Writes `value` as JSON to `dir/name` through a temp file and a rename.
pub fn write_atomic<T: Serialize>(dir: &Path, name: &str, value: &T) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = std::fs::File::create(&tmp)?;
    serde_json::to_writer(&mut file, value).map_err(io::Error::other)?;
    file.write_all(b"\n")?;
    // No fsync: the run dir is tmpfs on devices, and a reboot makes its content moot anyway.
    std::fs::rename(&tmp, dir.join(name))
}

/// Reads `dir/name`; `Ok(None)` when it does not exist.
pub fn read<T: for<'de> Deserialize<'de>>(dir: &Path, name: &str) -> io::Result<Option<T>> {
    match std::fs::read(dir.join(name)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|err| io::Error::new(io::ErrorKind::InvalidData, err)),
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_ticks_are_read_after_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (a (weird) name) S 1 42 42 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 \
                    123456 1000 10 18446744073709551615";
        assert_eq!(parse_start_ticks(stat), Some(123456));
        assert_eq!(parse_start_ticks("42 (x) S 1"), None);
    }

    #[test]
    fn this_process_has_an_identity_that_is_alive() {
        let me = ProcessIdentity::of(std::process::id() as i32).expect("own stat");
        assert!(me.is_alive());
        let other = ProcessIdentity {
            start_ticks: me.start_ticks + 1,
            ..me
        };
        assert!(!other.is_alive(), "a reused PID is another process");
    }

    #[test]
    fn records_round_trip_through_atomic_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exit = ExitRecord {
            status: ExitStatus::Signal(9),
            oom_killed: true,
            started_ms: 1,
            exited_ms: 2,
        };
        write_atomic(dir.path(), EXIT_FILE, &exit).expect("write");
        assert_eq!(
            read::<ExitRecord>(dir.path(), EXIT_FILE).expect("read"),
            Some(exit)
        );
        assert_eq!(
            read::<ExitRecord>(dir.path(), "missing").expect("read"),
            None
        );
    }
}
