//! Processes the agent does not parent (shims and container inits), handled through pidfds so
//! a signal never reaches a process that reused a PID.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use rustix::event::{poll, PollFd, PollFlags};
use rustix::process::{pidfd_open, pidfd_send_signal, Pid, PidfdFlags, Signal};

use super::state::ProcessIdentity;

/// A pidfd for `who`, `None` when that process is gone. The identity is checked after the
/// pidfd is open, so the pidfd cannot refer to a process that reused the PID.
pub fn open(who: ProcessIdentity) -> io::Result<Option<OwnedFd>> {
    let Some(pid) = Pid::from_raw(who.pid) else {
        return Ok(None);
    };
    let fd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(rustix::io::Errno::SRCH) => return Ok(None),
        Err(err) => return Err(err.into()),
    };
    Ok(who.is_alive().then_some(fd))
}

/// Waits until `fd` is readable (a pidfd: its process exited) or `timeout` passes; `true` when
/// readable. `None` waits forever.
pub fn wait_readable<Fd: AsFd>(fd: Fd, timeout: Option<Duration>) -> io::Result<bool> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let left = deadline.map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let timespec = left
            .map(rustix::event::Timespec::try_from)
            .transpose()
            .map_err(|_| io::Error::other("timeout out of range"))?;
        let mut fds = [PollFd::new(&fd, PollFlags::IN)];
        match poll(&mut fds, timespec.as_ref()) {
            Ok(0) => return Ok(false),
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => continue,
            Err(err) => return Err(err.into()),
        }
    }
}

/// Sends `signal` through a pidfd; a process that already exited is not an error.
pub fn signal<Fd: AsFd>(fd: Fd, signal: Signal) -> io::Result<()> {
    match pidfd_send_signal(fd, signal) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(err) => Err(err.into()),
    }
}
