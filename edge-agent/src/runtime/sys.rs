//! The OS calls that neither the standard library nor rustix wraps safely: `fork` for the shim's
//! detach, signal dispositions, the interface-flags ioctl that brings loopback up, the
//! `prctl` that installs a container's seccomp filter, and the `bpf` calls that load and
//! attach its device program on cgroup v2, and registering a descriptor with tokio's reactor
//! (to await a shim's exit without a thread or a poll). Every `unsafe` block of the runtime lives
//! in this file. (`ioctl` takes the request as `c_ulong` on glibc and `c_int` on musl, hence the
//! `as _`.)

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// Which side of [`fork_single_threaded`] the caller is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forked {
    Parent,
    Child,
}

/// Waits until `fd` is readable (a pidfd: its process exited; a pipe: its writer closed)
/// through tokio's reactor, with no thread of its own. Must be awaited inside a tokio runtime.
pub async fn readable(fd: OwnedFd) -> io::Result<()> {
    // SAFETY: an `OwnedFd` is a valid open descriptor; the `AsyncFd` takes it by value, so it
    // stays open and is the same descriptor until the `AsyncFd` drops it, and
    // `OwnedFd::as_raw_fd` always returns it.
    let fd = unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)?;
    fd.readable().await.map(|_| ())
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

/// `bpf(2)` commands, program and attach types, flags (`include/uapi/linux/bpf.h`).
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
const BPF_F_ALLOW_MULTI: u32 = 2;

/// The `BPF_PROG_LOAD` member of `union bpf_attr`, up to `expected_attach_type`: the kernel
/// takes a prefix of the union and zero-fills the rest.
#[repr(C)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The `BPF_PROG_ATTACH` member of `union bpf_attr`.
#[repr(C)]
struct ProgAttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// Loads a `BPF_PROG_TYPE_CGROUP_DEVICE` program (instructions as the kernel reads them, 8
/// bytes each). A program the verifier refuses fails with the verifier's log.
pub fn load_device_program(instructions: &[[u8; 8]]) -> io::Result<OwnedFd> {
    let insn_cnt = u32::try_from(instructions.len())
        .map_err(|_| io::Error::other("the device program is too long"))?;
    let license = b"Apache-2.0\0";
    let mut name = [0u8; 16];
    name[..11].copy_from_slice(b"shoal_devcg");
    let load = |log: &mut [u8]| -> io::Result<OwnedFd> {
        let attr = ProgLoadAttr {
            prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
            insn_cnt,
            insns: instructions.as_ptr() as u64,
            license: license.as_ptr() as u64,
            log_level: u32::from(!log.is_empty()),
            log_size: u32::try_from(log.len()).unwrap_or(u32::MAX),
            log_buf: log.as_mut_ptr() as u64,
            kern_version: 0,
            prog_flags: 0,
            prog_name: name,
            prog_ifindex: 0,
            expected_attach_type: BPF_CGROUP_DEVICE,
        };
        // SAFETY: `attr` is a fully initialised prefix of `union bpf_attr` whose pointers
        // (instructions, licence, log) point at memory borrowed for the whole call, with the
        // lengths given; the kernel copies the program and writes at most `log_size` bytes of
        // log. It returns a new file descriptor or -1.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &attr as *const ProgLoadAttr,
                std::mem::size_of::<ProgLoadAttr>(),
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = libc::c_int::try_from(fd).map_err(|_| io::Error::other("bpf returned no fd"))?;
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    };
    load(&mut []).or_else(|first| {
        // Again with the verifier's log, to say why.
        let mut log = vec![0u8; 64 * 1024];
        match load(&mut log) {
            Ok(fd) => Ok(fd),
            Err(_) => {
                let end = log.iter().position(|b| *b == 0).unwrap_or(log.len());
                Err(io::Error::new(
                    first.kind(),
                    format!(
                        "{first}; the verifier says: {}",
                        String::from_utf8_lossy(&log[..end]).trim()
                    ),
                ))
            }
        }
    })
}

/// Attaches a device program to a cgroup (an open directory of the cgroup v2 hierarchy),
/// beside any others (`BPF_F_ALLOW_MULTI`: every program attached must allow).
pub fn attach_device_program(cgroup: BorrowedFd<'_>, program: BorrowedFd<'_>) -> io::Result<()> {
    let fd = |fd: BorrowedFd<'_>| {
        u32::try_from(fd.as_raw_fd()).map_err(|_| io::Error::other("a negative descriptor"))
    };
    let attr = ProgAttachAttr {
        target_fd: fd(cgroup)?,
        attach_bpf_fd: fd(program)?,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    // SAFETY: `attr` is a fully initialised prefix of `union bpf_attr` naming two descriptors
    // borrowed for the call; the kernel only reads it.
    let result = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_ATTACH,
            &attr as *const ProgAttachAttr,
            std::mem::size_of::<ProgAttachAttr>(),
        )
    };
    if result != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the process `command` starts receive SIGKILL when the thread that spawned it dies
/// (`PR_SET_PDEATHSIG`), and exit at once if that already happened: the launcher's child agent
/// must never outlive its launcher, or a restarted launcher would start a second agent on the
/// same data. (Its containers are not affected: the flag is not inherited across fork.)
pub fn die_with_parent(command: &mut std::process::Command) {
    use std::os::unix::process::CommandExt as _;
    let parent = std::process::id();
    // SAFETY: the closure runs in the child between fork and exec and calls only
    // async-signal-safe functions (`prctl`, `getppid`, `_exit`); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(io::Error::last_os_error());
            }
            if u32::try_from(libc::getppid()).ok() != Some(parent) {
                libc::_exit(1);
            }
            Ok(())
        });
    }
}
