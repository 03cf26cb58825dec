//! The shim: the process that creates one container through libcontainer, parents it, copies
//! its output into the log and records how it ended. Also the two short-lived helpers that
//! must call libcontainer outside the agent: `exec` into a running container and `delete` of a
//! container whose shim is gone. See the module docs of [`super`] for why.
//!
//! Everything here runs in a freshly exec'd, single-threaded `shoal-agent shim ...` process,
//! never in the agent. Both the container and an exec'd process start through
//! [`SeccompExecutor`], so each gets the seccomp filter its `config.json` calls for.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use rustix::event::{poll, PollFd, PollFlags};
use rustix::pipe::{pipe_with, PipeFlags};
use rustix::process::{pidfd_open, waitid, Pid, PidfdFlags, Signal, WaitId, WaitIdOptions};
use serde::{Deserialize, Serialize};

use super::cgroup::{self, ContainerCgroup};
use super::devices;
use super::logs::RotatingLog;
use super::seccomp::{SeccompError, SeccompExecutor};
use super::state::{
    self, ContainerMeta, ExitRecord, ExitStatus, ProcessIdentity, ShimRecord, EXIT_FILE, META_FILE,
    SHIM_FILE,
};
use super::sys::{self, Forked};

/// How long the shim keeps reading output after its container's init exited: processes in the
/// container's pid namespace are gone by then, so only buffered output remains.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(500);

/// What `shoal-agent shim run` needs.
#[derive(Clone, Debug)]
pub struct RunArgs {
    pub id: String,
    pub bundle: PathBuf,
    /// The container's state dir (holds meta.json; receives shim.json and exit.json).
    pub state: PathBuf,
    /// libcontainer's root path.
    pub root: PathBuf,
    pub log: PathBuf,
    pub log_max_bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ShimError {
    #[error("cannot {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("libcontainer could not {what}: {source}")]
    Libcontainer {
        what: &'static str,
        #[source]
        source: libcontainer::error::LibcontainerError,
    },
    #[error(transparent)]
    Seccomp(#[from] SeccompError),
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ShimError {
    move |source| ShimError::Io { what, source }
}

fn lc_err(what: &'static str) -> impl FnOnce(libcontainer::error::LibcontainerError) -> ShimError {
    move |source| ShimError::Libcontainer { what, source }
}

/// The readiness line a shim prints on its stdout: `started PID` or `error MESSAGE`.
pub fn readiness_line(result: &Result<i32, String>) -> String {
    match result {
        Ok(pid) => format!("started {pid}\n"),
        Err(message) => format!("error {}\n", message.replace('\n', " ")),
    }
}

/// Parses a readiness line; `Err` carries the shim's error message.
pub fn parse_readiness(line: &str) -> Result<i32, String> {
    let line = line.trim_end();
    if let Some(pid) = line.strip_prefix("started ") {
        return pid
            .trim()
            .parse()
            .map_err(|_| format!("the shim sent a bad readiness line: {line:?}"));
    }
    if let Some(message) = line.strip_prefix("error ") {
        return Err(message.to_owned());
    }
    Err(if line.is_empty() {
        "the shim exited without reporting; see its shim.log".to_owned()
    } else {
        format!("the shim sent a bad readiness line: {line:?}")
    })
}

/// `shoal-agent shim run`: returns the process exit code. The first process returns at once
/// (after a fork), so that the shim is re-parented away from the agent and outlives it.
pub fn run(args: &RunArgs) -> i32 {
    if let Err(err) = sys::neutralize_termination_signals() {
        report_readiness(&Err(format!(
            "cannot neutralize termination signals: {err}"
        )));
        return 1;
    }
    match sys::fork_single_threaded() {
        Ok(Forked::Parent) => return 0,
        Ok(Forked::Child) => {}
        Err(err) => {
            report_readiness(&Err(format!("cannot fork the shim: {err}")));
            return 1;
        }
    }
    if let Err(err) = rustix::process::setsid() {
        tracing::warn!(%err, "setsid failed");
    }
    let Some(me) = ProcessIdentity::of(std::process::id() as i32) else {
        report_readiness(&Err("cannot read the shim's own /proc entry".to_owned()));
        return 1;
    };
    let mut record = ShimRecord {
        shim: me,
        init: None,
        started_ms: 0,
    };
    if let Err(err) = state::write_atomic(&args.state, SHIM_FILE, &record) {
        report_readiness(&Err(format!("cannot write {SHIM_FILE}: {err}")));
        return 1;
    }

    let running = match create_and_start(args) {
        Ok(running) => running,
        Err(err) => {
            tracing::error!(%err, "container did not start");
            report_readiness(&Err(format!("{err}")));
            delete_container(&args.root, &args.id);
            return 1;
        }
    };
    record.init = Some(running.init);
    record.started_ms = shoal_model::clock::wall_ms();
    if let Err(err) = state::write_atomic(&args.state, SHIM_FILE, &record) {
        tracing::error!(%err, "cannot record the running container");
    }
    report_readiness(&Ok(running.init.pid));
    // Nothing else goes to the agent: detach stdout from its readiness pipe.
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        let _ = rustix::stdio::dup2_stdout(&null);
    }

    let status = supervise(args, &running);
    let oom_killed = read_oom(&args.state);
    delete_container(&args.root, &args.id);
    // Reap only after the delete: until then the zombie keeps the PID from being reused.
    let _ = waitid(WaitId::PidFd(running.pidfd.as_fd()), WaitIdOptions::EXITED);
    let exit = ExitRecord {
        status,
        oom_killed,
        started_ms: record.started_ms,
        exited_ms: shoal_model::clock::wall_ms(),
    };
    if let Err(err) = state::write_atomic(&args.state, EXIT_FILE, &exit) {
        tracing::error!(%err, "cannot write {EXIT_FILE}");
        return 1;
    }
    0
}

fn report_readiness(result: &Result<i32, String>) {
    let mut stdout = io::stdout().lock();
    let _ = stdout.write_all(readiness_line(result).as_bytes());
    let _ = stdout.flush();
}

struct Running {
    init: ProcessIdentity,
    pidfd: OwnedFd,
    stdout: OwnedFd,
    stderr: OwnedFd,
}

fn create_and_start(args: &RunArgs) -> Result<Running, ShimError> {
    let (stdout_r, stdout_w) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| io_err("create the stdout pipe")(e.into()))?;
    let (stderr_r, stderr_w) =
        pipe_with(PipeFlags::CLOEXEC).map_err(|e| io_err("create the stderr pipe")(e.into()))?;
    let null = File::open("/dev/null").map_err(io_err("open /dev/null"))?;
    let spec = oci_spec::runtime::Spec::load(args.bundle.join(state::CONFIG_FILE))
        .map_err(|e| io_err("read the container's config.json")(io::Error::other(e)))?;
    let mut container = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_executor(SeccompExecutor::for_spec(&spec)?)
        .with_root_path(&args.root)
        .map_err(lc_err("use its root path"))?
        .with_stdin(OwnedFd::from(null))
        .with_stdout(stdout_w)
        .with_stderr(stderr_w)
        .validate_id()
        .map_err(lc_err("accept the container id"))?
        .as_init(&args.bundle)
        .with_systemd(false)
        .with_detach(true)
        .build()
        .map_err(lc_err("create the container"))?;
    // Created, its init waiting to exec: the device list holds from its first instruction.
    if let Err(e) = enforce_devices(&spec) {
        let _ = container.delete(true);
        return Err(e);
    }
    container.start().map_err(lc_err("start the container"))?;
    let pid = container
        .pid()
        .ok_or_else(|| io_err("find the container's pid")(io::Error::other("no pid in state")))?
        .as_raw();
    let raw = Pid::from_raw(pid)
        .ok_or_else(|| io_err("use the container's pid")(io::Error::other("pid 0")))?;
    let pidfd = pidfd_open(raw, PidfdFlags::empty())
        .map_err(|e| io_err("open a pidfd for the container")(e.into()))?;
    let init = ProcessIdentity::of(pid).unwrap_or(ProcessIdentity {
        pid,
        start_ticks: 0,
    });
    Ok(Running {
        init,
        pidfd,
        stdout: stdout_r,
        stderr: stderr_r,
    })
}

/// On cgroup v2, attaches the container's device program (`runtime::devices`) to its
/// cgroup; v1's devices controller needs nothing here (libcgroups wrote its lists).
fn enforce_devices(spec: &oci_spec::runtime::Spec) -> Result<(), ShimError> {
    let hierarchy = cgroup::hierarchy()
        .map_err(|e| io_err("detect the cgroup hierarchy")(io::Error::other(e)))?;
    if hierarchy != cgroup::Hierarchy::Unified {
        return Ok(());
    }
    let Some(linux) = spec.linux() else {
        return Ok(());
    };
    let entries = linux
        .resources()
        .as_ref()
        .and_then(|r| r.devices().clone())
        .unwrap_or_default();
    let rules = devices::rules_for(&entries)
        .map_err(|e| io_err("build the device program")(io::Error::other(e)))?;
    if devices::allows_everything(&rules) {
        return Ok(());
    }
    let program: Vec<[u8; 8]> = devices::program(&rules)
        .map_err(|e| io_err("build the device program")(io::Error::other(e)))?
        .into_iter()
        .map(devices::Insn::to_bytes)
        .collect();
    let path = linux
        .cgroups_path()
        .as_ref()
        .map(|p| cgroup::v2_dir(&p.to_string_lossy()))
        .ok_or_else(|| io_err("find the container's cgroup")(io::Error::other("no cgroupsPath")))?;
    let dir = File::open(&path).map_err(io_err("open the container's cgroup"))?;
    let fd = sys::load_device_program(&program).map_err(io_err("load the device program"))?;
    sys::attach_device_program(dir.as_fd(), fd.as_fd()).map_err(io_err(
        "attach the device program to the container's cgroup",
    ))?;
    tracing::debug!(cgroup = %path.display(), instructions = program.len(), "device program attached");
    Ok(())
}

/// Copies output into the log until the init exits; returns how it ended.
fn supervise(args: &RunArgs, running: &Running) -> ExitStatus {
    let mut log = match RotatingLog::open(args.log.clone(), args.log_max_bytes) {
        Ok(log) => Some(log),
        Err(err) => {
            tracing::error!(%err, log = %args.log.display(), "cannot open the container log; output is dropped");
            None
        }
    };
    let mut open = [true, true];
    let mut buf = vec![0u8; 64 * 1024];
    let mut exited_at: Option<Instant> = None;
    // Said once per streak of failures (a full disk fails every write), not once per chunk:
    // this log is in the run dir, in memory.
    let mut log_failing = false;
    loop {
        let timeout = exited_at.map(|at| DRAIN_AFTER_EXIT.saturating_sub(at.elapsed()));
        if exited_at.is_some() && (open == [false, false] || timeout == Some(Duration::ZERO)) {
            break;
        }
        let timespec = timeout.and_then(|t| rustix::event::Timespec::try_from(t).ok());
        let mut fds = [
            PollFd::new(
                &running.stdout,
                if open[0] {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                },
            ),
            PollFd::new(
                &running.stderr,
                if open[1] {
                    PollFlags::IN
                } else {
                    PollFlags::empty()
                },
            ),
            PollFd::new(&running.pidfd, PollFlags::IN),
        ];
        match poll(&mut fds, timespec.as_ref()) {
            Ok(_) => {}
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => {
                tracing::error!(%err, "poll failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        }
        let ready = [fds[0].revents(), fds[1].revents(), fds[2].revents()];
        for (i, fd) in [&running.stdout, &running.stderr].into_iter().enumerate() {
            if !open[i] || ready[i].is_empty() {
                continue;
            }
            match rustix::io::read(fd, &mut buf) {
                Ok(0) => open[i] = false,
                Ok(n) => {
                    if let Some(log) = &mut log {
                        match log.write(&buf[..n]) {
                            Err(err) if !log_failing => {
                                tracing::error!(%err, "cannot write the container log; output is dropped until it can");
                                log_failing = true;
                            }
                            Ok(()) if log_failing => {
                                tracing::info!("the container log is written again");
                                log_failing = false;
                            }
                            _ => {}
                        }
                    }
                }
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(_) => open[i] = false,
            }
        }
        if exited_at.is_none() && !ready[2].is_empty() {
            exited_at = Some(Instant::now());
        }
    }
    // NOWAIT: keep the zombie (and so the PID) until libcontainer has deleted the container.
    match waitid(
        WaitId::PidFd(running.pidfd.as_fd()),
        WaitIdOptions::EXITED | WaitIdOptions::NOWAIT,
    ) {
        Ok(Some(status)) => {
            if let Some(code) = status.exit_status() {
                ExitStatus::Code(code)
            } else if let Some(signal) = status.terminating_signal() {
                ExitStatus::Signal(signal)
            } else {
                ExitStatus::Unknown
            }
        }
        Ok(None) => ExitStatus::Unknown,
        Err(err) => {
            tracing::error!(%err, "cannot read the container's exit status");
            ExitStatus::Unknown
        }
    }
}

/// Whether the container's cgroup counted an OOM kill (read before the cgroup is deleted).
pub fn read_oom(state_dir: &Path) -> bool {
    let meta = match state::read::<ContainerMeta>(state_dir, META_FILE) {
        Ok(Some(meta)) => meta,
        _ => return false,
    };
    match ContainerCgroup::detect(&meta.cgroups_path).map(|cg| cg.oom_kills()) {
        Ok(Ok(kills)) => kills > 0,
        Ok(Err(err)) => {
            tracing::warn!(%err, "cannot read the OOM-kill counter");
            false
        }
        Err(err) => {
            tracing::warn!(%err, "cannot detect the cgroup hierarchy");
            false
        }
    }
}

/// libcontainer-deletes the container (force: kills what is left), removing its cgroup and
/// libcontainer state. Logs failures; a missing container is fine.
pub fn delete_container(root: &Path, id: &str) {
    let dir = root.join(id);
    if !dir.exists() {
        return;
    }
    match Container::load(dir) {
        Ok(mut container) => {
            if let Err(err) = container.delete(true) {
                tracing::error!(%err, id, "cannot delete the container");
            }
        }
        Err(err) => tracing::error!(%err, id, "cannot load the container's state"),
    }
}

/// `shoal-agent shim delete`: cleans up after a shim that died.
pub fn delete(root: &Path, id: &str) -> i32 {
    delete_container(root, id);
    i32::from(root.join(id).exists())
}

/// What `shoal-agent shim exec` needs.
#[derive(Clone, Debug)]
pub struct ExecArgs {
    pub id: String,
    pub root: PathBuf,
    /// Where to write the [`ExecResult`] as JSON.
    pub result: PathBuf,
    pub timeout: Duration,
    pub command: Vec<String>,
}

/// How an exec ended, as the helper reports it to the agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecResult {
    Exited(ExitStatus),
    /// Killed after the timeout.
    TimedOut,
    /// Could not run at all (container not running, command missing, ...).
    Failed(String),
}

/// `shoal-agent shim exec`: runs `command` inside the running container with the helper's
/// stdout and stderr, waits up to the timeout (then SIGKILLs it), writes the result file.
pub fn exec(args: &ExecArgs) -> i32 {
    let result = exec_inner(args).unwrap_or_else(|err| ExecResult::Failed(err.to_string()));
    let dir = args.result.parent().unwrap_or(Path::new("/"));
    let name = args
        .result
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match state::write_atomic(dir, &name, &result) {
        Ok(()) => 0,
        Err(err) => {
            tracing::error!(%err, "cannot write the exec result");
            1
        }
    }
}

fn exec_inner(args: &ExecArgs) -> Result<ExecResult, ShimError> {
    // Rust starts with SIGPIPE ignored; the command must not inherit that.
    sys::neutralize_termination_signals().map_err(io_err("reset signal dispositions"))?;
    let container =
        Container::load(args.root.join(&args.id)).map_err(lc_err("load the container"))?;
    let spec = oci_spec::runtime::Spec::load(container.bundle().join(state::CONFIG_FILE))
        .map_err(|e| io_err("read the container's config.json")(io::Error::other(e)))?;
    let user = spec.process().as_ref().map(|p| p.user().clone());
    let stdout = io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(io_err("duplicate stdout"))?;
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .map_err(io_err("duplicate stderr"))?;
    let null = File::open("/dev/null").map_err(io_err("open /dev/null"))?;
    // From here on the helper's own diagnostics (libcontainer's warnings) must not mix with
    // the command's stderr; errors reach the agent through the result file.
    let devnull = File::options()
        .write(true)
        .open("/dev/null")
        .map_err(io_err("open /dev/null"))?;
    rustix::stdio::dup2_stderr(&devnull).map_err(|e| io_err("redirect stderr")(e.into()))?;
    // The exec'd process gets the container's filter (from the same config.json).
    let executor = SeccompExecutor::for_spec(&spec)?;
    let pid = ContainerBuilder::new(args.id.clone(), SyscallType::default())
        .with_executor(executor)
        .with_root_path(&args.root)
        .map_err(lc_err("use its root path"))?
        .with_stdin(OwnedFd::from(null))
        .with_stdout(stdout)
        .with_stderr(stderr)
        .validate_id()
        .map_err(lc_err("accept the container id"))?
        .as_tenant()
        .with_container_args(args.command.clone())
        .with_env(HashMap::new())
        .with_user(user.as_ref().map(|u| u.uid()))
        .with_group(user.as_ref().map(|u| u.gid()))
        .with_detach(false)
        .build()
        .map_err(lc_err("run the command in the container"))?;
    let raw = Pid::from_raw(pid.as_raw())
        .ok_or_else(|| io_err("use the exec'd pid")(io::Error::other("pid 0")))?;
    let pidfd = pidfd_open(raw, PidfdFlags::empty())
        .map_err(|e| io_err("open a pidfd for the exec'd process")(e.into()))?;
    let finished = super::process::wait_readable(&pidfd, Some(args.timeout))
        .map_err(io_err("wait for the exec'd process"))?;
    if !finished {
        super::process::signal(&pidfd, Signal::KILL).map_err(io_err("kill the exec'd process"))?;
    }
    let status = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED)
        .map_err(|e| io_err("reap the exec'd process")(e.into()))?;
    if !finished {
        return Ok(ExecResult::TimedOut);
    }
    Ok(ExecResult::Exited(match status {
        Some(s) if s.exit_status().is_some() => ExitStatus::Code(s.exit_status().unwrap_or(0)),
        Some(s) if s.terminating_signal().is_some() => {
            ExitStatus::Signal(s.terminating_signal().unwrap_or(0))
        }
        _ => ExitStatus::Unknown,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_lines_round_trip() {
        assert_eq!(parse_readiness(&readiness_line(&Ok(42))), Ok(42));
        let err = Err("libcontainer could not create the container:\nbad".to_owned());
        assert_eq!(
            parse_readiness(&readiness_line(&err)),
            Err("libcontainer could not create the container: bad".to_owned())
        );
        assert!(parse_readiness("").is_err_and(|e| e.contains("shim.log")));
        assert!(parse_readiness("started x\n").is_err());
    }
}
