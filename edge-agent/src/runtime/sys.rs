//! The OS calls that neither the standard library nor rustix wraps safely: `fork` for the shim's
//! detach, signal dispositions, the interface-flags ioctl that brings loopback up, and the
//! `prctl` that installs a container's seccomp filter. Every `unsafe` block of the runtime lives
//! in this file. (`ioctl` takes the request as `c_ulong` on glibc and `c_int` on musl, hence the
//! `as _`.)

use std::io;
use std::os::fd::AsRawFd;

/// Which side of [`fork_single_threaded`] the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Parent,
    Child,
}

/// Number of threads of this process, from `/proc/self/status`.
pub fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .ok_or_else(|| io::Error::other("no Threads: line in /proc/self/status"))
}

/// `fork()`, refused unless the process has exactly one thread: a fork of a multi-threaded
/// process may inherit locks held by other threads (the musl deadlock this design avoids).
pub fn fork_single_threaded() -> io::Result<Forked> {
    let threads = thread_count()?;
    if threads != 1 {
        return Err(io::Error::other(format!(
            "refusing to fork a process with {threads} threads"
        )));
    }
    // SAFETY: the process has a single thread (checked above), so the child inherits no lock
    // held by another thread; both sides continue with ordinary Rust code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(Forked::Child),
        _ => Ok(Forked::Parent),
    }
}

extern "C" fn do_nothing(_signal: libc::c_int) {}

/// Makes SIGTERM, SIGINT and SIGHUP (a shim outlives the agent and its terminal) and SIGPIPE
/// (the agent reading a shim's readiness line may be gone) harmless for this process.
///
/// With a handler that does nothing, not `SIG_IGN`: ignored dispositions survive `execve`, so
/// the container's process would start with these signals ignored (libcontainer does not
/// reset them), and a shell could not even `trap` them. Handlers reset to the default on exec.
pub fn neutralize_termination_signals() -> io::Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGPIPE] {
        // SAFETY: `sigaction` is a plain C struct for which all-zero bytes are valid (empty
        // mask, no flags).
        let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
        action.sa_sigaction = do_nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        // SAFETY: the handler is async-signal-safe (it does nothing) and lives for the whole
        // program; `action` is fully initialised and outlives the call.
        if unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Sets `IFF_UP` on `lo` in the calling thread's network namespace.
pub fn bring_up_loopback() -> io::Result<()> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0")?;
    // SAFETY: `ifreq` is a plain C struct for which all-zero bytes are a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: the fd is a live socket owned by `socket`; SIOCGIFFLAGS reads the name and writes
    // the flags field of the `ifreq` we own, which outlives the call.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS filled `ifru_flags`, the union member we read and write.
    unsafe {
        request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
    }
    // SAFETY: as above; SIOCSIFFLAGS reads the name and flags of our `ifreq`.
    if unsafe { libc::ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS as _, &request) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Moves the calling thread into new namespaces of the given kinds.
pub fn unshare_thread(flags: rustix::thread::UnshareFlags) -> io::Result<()> {
    // SAFETY: only called on a dedicated thread that does nothing after this but set up the
    // namespaces and exit, so no code relies on the thread's previous namespaces or shared
    // file table; the flags never include CLONE_FILES/CLONE_FS/CLONE_NEWUSER.
    unsafe { rustix::thread::unshare_unsafe(flags) }.map_err(io::Error::from)
}

/// Installs a seccomp filter on the calling thread (and so on what it `execve`s): the process
/// must have `no_new_privileges` set or hold `CAP_SYS_ADMIN`, else `EACCES`.
pub fn install_seccomp_filter(program: &[libc::sock_filter]) -> io::Result<()> {
    let len = u16::try_from(program.len()).map_err(|_| {
        io::Error::other(format!(
            "the filter has {} instructions, more than a filter can hold",
            program.len()
        ))
    })?;
    let fprog = libc::sock_fprog {
        len,
        // The kernel only reads the program.
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `len` initialised instructions borrowed for the whole call; the
    // kernel copies (and validates) the program before returning and keeps no pointer to it.
    let result = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::c_ulong::from(libc::SECCOMP_MODE_FILTER),
            &fprog as *const libc::sock_fprog,
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
