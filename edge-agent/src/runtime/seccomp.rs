//! The default seccomp filter of containers, without libseccomp: a classic-BPF program built by
//! a pure function ([`filter`]) from the target architecture and the container's effective
//! capabilities, and installed by [`SeccompExecutor`] in the container's init process.
//!
//! # Where it is installed
//!
//! libcontainer's own seccomp support needs the C libseccomp, which the static builds leave
//! out, so its init process ignores `linux.seccomp`. Instead, every container start and every
//! exec into a container (health checks) runs through [`SeccompExecutor`]: libcontainer calls
//! it in the init process after capabilities are dropped and `no_new_privileges` is set, just
//! before `execve`; it installs the filter with `prctl(PR_SET_SECCOMP)` and hands over to
//! libcontainer's default executor. The filter is computed in the shim, before libcontainer
//! forks, from the bundle's `config.json`: its process capabilities, and the annotation
//! [`ANNOTATION`] that [`super::spec::build`] writes (`unconfined` for `privileged: true`, as
//! Docker does, `default` otherwise; a missing annotation means `default`).
//!
//! # Policy: Docker's default profile, as a denylist
//!
//! Docker's profile (`profiles/seccomp/default.json` of moby, as of Docker 25) is an
//! allowlist; this filter denies, with `EPERM`, the syscalls of this architecture that Docker's
//! profile leaves out, and allows everything else. So syscalls newer than this list are
//! allowed where Docker would refuse them; so are a few harmless ones Docker's list lacks
//! (`fchmodat2`, `mseal`, and on arm the old `nice`, `sigaction`, `sigpending`,
//! `sigsuspend`). The list ([`NATIVE`]`.rules`):
//!
//! - Always denied (no capability unlocks them in Docker either): `kexec_load`,
//!   `kexec_file_load`, `swapon`, `swapoff`, `keyctl`, `add_key`, `request_key` (the keyring is
//!   not namespaced), `userfaultfd`, `pivot_root`, `move_pages`, `migrate_pages`,
//!   `io_uring_setup`, `io_uring_enter`, `io_uring_register` (io_uring runs operations that
//!   seccomp never sees; blocked since Docker 25), obsolete or unimplemented calls (`uselib`,
//!   `ustat`, `sysfs`, `_sysctl`, `nfsservctl`, `vserver`, `afs_syscall`, `tuxcall`,
//!   `security`, `getpmsg`, `putpmsg`, `bdflush`, `pciconfig_*`), `socket(AF_VSOCK, ...)`,
//!   and `personality` with any persona other than Docker's five (`0`, `PER_LINUX32`,
//!   `UNAME26`, both, and the query `0xffffffff`).
//! - Allowed when the container has a capability, as in Docker: `CAP_SYS_ADMIN`: `mount`,
//!   `umount2`, `mount_setattr`, `move_mount`, `open_tree`, `fsopen`, `fsmount`, `fsconfig`,
//!   `fspick`, `unshare`, `setns`, `clone` with namespace flags, `clone3` (refused with
//!   `ENOSYS`, so that libcs fall back to `clone`), `quotactl`, `quotactl_fd`,
//!   `lookup_dcookie`, `fanotify_init`, `sethostname`, `setdomainname`, `bpf`,
//!   `perf_event_open`, `syslog`; `CAP_BPF`: `bpf`; `CAP_PERFMON`: `perf_event_open`;
//!   `CAP_SYSLOG`: `syslog`; `CAP_SYS_BOOT`: `reboot`; `CAP_SYS_MODULE`: `init_module`,
//!   `finit_module`, `delete_module`; `CAP_SYS_TIME`: `settimeofday`, `clock_settime`
//!   (`clock_settime64`); `CAP_SYS_PTRACE`: `kcmp`, `pidfd_getfd`, `process_madvise`;
//!   `CAP_SYS_NICE`: `mbind`, `set_mempolicy`, `get_mempolicy`, `set_mempolicy_home_node`;
//!   `CAP_SYS_RAWIO`: `iopl`, `ioperm`; `CAP_SYS_PACCT`: `acct`; `CAP_DAC_READ_SEARCH`:
//!   `open_by_handle_at`; `CAP_SYS_CHROOT`: `chroot`; `CAP_SYS_TTY_CONFIG`: `vhangup`.
//! - Allowed although one might expect otherwise, as in Docker: `ptrace`, `process_vm_readv`,
//!   `process_vm_writev` (since Linux 4.8 seccomp re-checks a traced process's syscalls),
//!   `adjtimex` and `clock_adjtime` (reading the clock's state; the kernel wants `CAP_SYS_TIME`
//!   to change it), `name_to_handle_at`.
//!
//! A syscall this architecture does not have is left out (`#[cfg(target_arch)]`); numbers
//! missing from `libc` for a target come from the kernel's tables ([`extra`]).
//!
//! # The program
//!
//! `seccomp_data.arch` must be this build's `AUDIT_ARCH`, else the process is killed
//! (`SECCOMP_RET_KILL_PROCESS`; kernels before 4.14 kill the thread): the syscall numbers are
//! this architecture's. So are x32 calls on x86_64 (number with bit 30 set). This also means
//! that 32-bit binaries on a 64-bit device (armhf images on arm64, i386 on x86_64), which
//! Docker's profile allows, are killed at their first syscall. Then one `JEQ` per denied
//! syscall (minus those the capabilities unlock) jumps to its verdict; everything else falls
//! through to `SECCOMP_RET_ALLOW`. Allowed syscalls depend on the number only, so Linux 5.11+
//! caches their verdict and skips the program for them.

use std::collections::HashSet;
use std::fmt;
use std::io::Write;

use libc::sock_filter;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{
    Executor, ExecutorError, ExecutorSetEnvsError, ExecutorValidationError,
};
use oci_spec::runtime::{Capability, Spec};

/// The `config.json` annotation that names the container's seccomp profile.
pub const ANNOTATION: &str = "dev.shoal.seccomp";

/// Which filter a container gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Profile {
    /// Docker's default, adjusted to the container's capabilities.
    Default,
    /// No filter (`privileged: true`).
    Unconfined,
}

impl Profile {
    /// The value of [`ANNOTATION`] for this profile.
    pub fn annotation(self) -> &'static str {
        match self {
            Profile::Default => "default",
            Profile::Unconfined => "unconfined",
        }
    }

    /// The profile a `config.json` asks for; `Default` without the annotation.
    pub fn of(spec: &Spec) -> Result<Profile, SeccompError> {
        let value = spec.annotations().as_ref().and_then(|a| a.get(ANNOTATION));
        match value.map(String::as_str) {
            None => Ok(Profile::Default),
            Some(v) if v == Profile::Default.annotation() => Ok(Profile::Default),
            Some(v) if v == Profile::Unconfined.annotation() => Ok(Profile::Unconfined),
            Some(other) => Err(SeccompError::UnknownProfile {
                value: other.to_owned(),
            }),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SeccompError {
    #[error(
        "config.json asks for seccomp profile `{value}` (annotation {ANNOTATION}), which this \
         agent does not know; remove the container so that this agent recreates it"
    )]
    UnknownProfile { value: String },
}

/// What happens to a denied syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denial {
    /// Always refused with this errno.
    Errno(i32),
    /// Refused with `EPERM` when the low 32 bits of argument `arg` have a bit of `mask` set.
    FlagsSet { arg: u8, mask: u32 },
    /// Refused with `EPERM` when the low 32 bits of argument `arg` (an `int`) equal `value`.
    Equals { arg: u8, value: u32 },
    /// Refused with `EPERM` unless the low 32 bits of argument `arg` (an `unsigned int`) are
    /// one of `values`.
    NotOneOf { arg: u8, values: &'static [u32] },
}

/// One denied syscall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub name: &'static str,
    pub nr: u32,
    /// Allowed after all when the container has any of these.
    pub unlocked_by: &'static [Capability],
    pub denial: Denial,
}

/// An architecture's facts for the filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arch {
    pub name: &'static str,
    /// `AUDIT_ARCH_*` of `<linux/audit.h>`, as in `seccomp_data.arch`.
    pub audit_arch: u32,
    /// Syscall numbers with this bit set are refused (x86_64's x32 ABI).
    pub x32_bit: Option<u32>,
    pub rules: &'static [Rule],
}

/// This build's architecture.
#[cfg(target_arch = "x86_64")]
pub const NATIVE: Arch = Arch {
    name: "x86_64",
    // EM_X86_64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
    audit_arch: 0xc000_003e,
    x32_bit: Some(0x4000_0000),
    rules: RULES,
};

/// This build's architecture.
#[cfg(target_arch = "aarch64")]
pub const NATIVE: Arch = Arch {
    name: "aarch64",
    // EM_AARCH64 | __AUDIT_ARCH_64BIT | __AUDIT_ARCH_LE
    audit_arch: 0xc000_00b7,
    x32_bit: None,
    rules: RULES,
};

/// This build's architecture.
#[cfg(target_arch = "arm")]
pub const NATIVE: Arch = Arch {
    name: "arm",
    // EM_ARM | __AUDIT_ARCH_LE
    audit_arch: 0x4000_0028,
    x32_bit: None,
    rules: RULES,
};

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64", target_arch = "arm")))]
compile_error!(
    "the seccomp filter knows x86_64, aarch64 and arm: add this architecture's AUDIT_ARCH and \
     syscalls to runtime/seccomp.rs"
);

/// Syscall numbers that this `libc` does not define for every target (from the kernel's
/// `asm-generic/unistd.h` and `arch/arm/tools/syscall.tbl`).
mod extra {
    #[cfg(target_arch = "aarch64")]
    pub const SYS_KEXEC_FILE_LOAD: libc::c_long = 294;
    #[cfg(target_arch = "arm")]
    pub const SYS_MIGRATE_PAGES: libc::c_long = 400;
    #[cfg(target_arch = "arm")]
    pub const SYS_KEXEC_FILE_LOAD: libc::c_long = 401;
    #[cfg(target_arch = "arm")]
    pub const SYS_CLOCK_SETTIME64: libc::c_long = 404;
}

/// `CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER |
/// CLONE_NEWPID | CLONE_NEWNET`: Docker's mask for `clone` without `CAP_SYS_ADMIN`.
pub const CLONE_NAMESPACES: u32 = 0x7e02_0000;
/// `AF_VSOCK`: Docker refuses such sockets.
const AF_VSOCK: u32 = 40;
/// The personas Docker allows: Linux, `PER_LINUX32`, `UNAME26`, both, and the query.
const PERSONAS: &[u32] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

const EPERM: Denial = Denial::Errno(libc::EPERM);

const fn rule(
    name: &'static str,
    nr: libc::c_long,
    unlocked_by: &'static [Capability],
    denial: Denial,
) -> Rule {
    Rule {
        name,
        nr: nr as u32,
        unlocked_by,
        denial,
    }
}

use Capability as Cap;

/// The denylist of this architecture; see the module docs.
const RULES: &[Rule] = &[
    // Never allowed.
    rule("kexec_load", libc::SYS_kexec_load, &[], EPERM),
    #[cfg(target_arch = "x86_64")]
    rule("kexec_file_load", libc::SYS_kexec_file_load, &[], EPERM),
    #[cfg(not(target_arch = "x86_64"))]
    rule("kexec_file_load", extra::SYS_KEXEC_FILE_LOAD, &[], EPERM),
    rule("swapon", libc::SYS_swapon, &[], EPERM),
    rule("swapoff", libc::SYS_swapoff, &[], EPERM),
    rule("keyctl", libc::SYS_keyctl, &[], EPERM),
    rule("add_key", libc::SYS_add_key, &[], EPERM),
    rule("request_key", libc::SYS_request_key, &[], EPERM),
    rule("userfaultfd", libc::SYS_userfaultfd, &[], EPERM),
    rule("pivot_root", libc::SYS_pivot_root, &[], EPERM),
    rule("move_pages", libc::SYS_move_pages, &[], EPERM),
    #[cfg(not(target_arch = "arm"))]
    rule("migrate_pages", libc::SYS_migrate_pages, &[], EPERM),
    #[cfg(target_arch = "arm")]
    rule("migrate_pages", extra::SYS_MIGRATE_PAGES, &[], EPERM),
    rule("io_uring_setup", libc::SYS_io_uring_setup, &[], EPERM),
    rule("io_uring_enter", libc::SYS_io_uring_enter, &[], EPERM),
    rule("io_uring_register", libc::SYS_io_uring_register, &[], EPERM),
    rule("nfsservctl", libc::SYS_nfsservctl, &[], EPERM),
    #[cfg(not(target_arch = "aarch64"))]
    rule("uselib", libc::SYS_uselib, &[], EPERM),
    #[cfg(not(target_arch = "aarch64"))]
    rule("ustat", libc::SYS_ustat, &[], EPERM),
    #[cfg(not(target_arch = "aarch64"))]
    rule("sysfs", libc::SYS_sysfs, &[], EPERM),
    #[cfg(not(target_arch = "aarch64"))]
    rule("_sysctl", libc::SYS__sysctl, &[], EPERM),
    #[cfg(not(target_arch = "aarch64"))]
    rule("vserver", libc::SYS_vserver, &[], EPERM),
    #[cfg(target_arch = "x86_64")]
    rule("afs_syscall", libc::SYS_afs_syscall, &[], EPERM),
    #[cfg(target_arch = "x86_64")]
    rule("tuxcall", libc::SYS_tuxcall, &[], EPERM),
    #[cfg(target_arch = "x86_64")]
    rule("security", libc::SYS_security, &[], EPERM),
    #[cfg(target_arch = "x86_64")]
    rule("getpmsg", libc::SYS_getpmsg, &[], EPERM),
    #[cfg(target_arch = "x86_64")]
    rule("putpmsg", libc::SYS_putpmsg, &[], EPERM),
    #[cfg(target_arch = "arm")]
    rule("bdflush", libc::SYS_bdflush, &[], EPERM),
    #[cfg(target_arch = "arm")]
    rule("pciconfig_iobase", libc::SYS_pciconfig_iobase, &[], EPERM),
    #[cfg(target_arch = "arm")]
    rule("pciconfig_read", libc::SYS_pciconfig_read, &[], EPERM),
    #[cfg(target_arch = "arm")]
    rule("pciconfig_write", libc::SYS_pciconfig_write, &[], EPERM),
    rule(
        "socket",
        libc::SYS_socket,
        &[],
        Denial::Equals {
            arg: 0,
            value: AF_VSOCK,
        },
    ),
    rule(
        "personality",
        libc::SYS_personality,
        &[],
        Denial::NotOneOf {
            arg: 0,
            values: PERSONAS,
        },
    ),
    // CAP_SYS_ADMIN, and the capabilities split out of it.
    rule("mount", libc::SYS_mount, &[Cap::SysAdmin], EPERM),
    rule("umount2", libc::SYS_umount2, &[Cap::SysAdmin], EPERM),
    rule(
        "mount_setattr",
        libc::SYS_mount_setattr,
        &[Cap::SysAdmin],
        EPERM,
    ),
    rule("move_mount", libc::SYS_move_mount, &[Cap::SysAdmin], EPERM),
    rule("open_tree", libc::SYS_open_tree, &[Cap::SysAdmin], EPERM),
    rule("fsopen", libc::SYS_fsopen, &[Cap::SysAdmin], EPERM),
    rule("fsmount", libc::SYS_fsmount, &[Cap::SysAdmin], EPERM),
    rule("fsconfig", libc::SYS_fsconfig, &[Cap::SysAdmin], EPERM),
    rule("fspick", libc::SYS_fspick, &[Cap::SysAdmin], EPERM),
    rule("unshare", libc::SYS_unshare, &[Cap::SysAdmin], EPERM),
    rule("setns", libc::SYS_setns, &[Cap::SysAdmin], EPERM),
    rule(
        "clone",
        libc::SYS_clone,
        &[Cap::SysAdmin],
        Denial::FlagsSet {
            arg: 0,
            mask: CLONE_NAMESPACES,
        },
    ),
    rule(
        "clone3",
        libc::SYS_clone3,
        &[Cap::SysAdmin],
        Denial::Errno(libc::ENOSYS),
    ),
    rule("quotactl", libc::SYS_quotactl, &[Cap::SysAdmin], EPERM),
    rule(
        "quotactl_fd",
        libc::SYS_quotactl_fd,
        &[Cap::SysAdmin],
        EPERM,
    ),
    rule(
        "lookup_dcookie",
        libc::SYS_lookup_dcookie,
        &[Cap::SysAdmin],
        EPERM,
    ),
    rule(
        "fanotify_init",
        libc::SYS_fanotify_init,
        &[Cap::SysAdmin],
        EPERM,
    ),
    rule(
        "sethostname",
        libc::SYS_sethostname,
        &[Cap::SysAdmin],
        EPERM,
    ),
    rule(
        "setdomainname",
        libc::SYS_setdomainname,
        &[Cap::SysAdmin],
        EPERM,
    ),
    rule("bpf", libc::SYS_bpf, &[Cap::SysAdmin, Cap::Bpf], EPERM),
    rule(
        "perf_event_open",
        libc::SYS_perf_event_open,
        &[Cap::SysAdmin, Cap::Perfmon],
        EPERM,
    ),
    rule(
        "syslog",
        libc::SYS_syslog,
        &[Cap::SysAdmin, Cap::Syslog],
        EPERM,
    ),
    // One capability each.
    rule("reboot", libc::SYS_reboot, &[Cap::SysBoot], EPERM),
    rule(
        "init_module",
        libc::SYS_init_module,
        &[Cap::SysModule],
        EPERM,
    ),
    rule(
        "finit_module",
        libc::SYS_finit_module,
        &[Cap::SysModule],
        EPERM,
    ),
    rule(
        "delete_module",
        libc::SYS_delete_module,
        &[Cap::SysModule],
        EPERM,
    ),
    rule(
        "settimeofday",
        libc::SYS_settimeofday,
        &[Cap::SysTime],
        EPERM,
    ),
    rule(
        "clock_settime",
        libc::SYS_clock_settime,
        &[Cap::SysTime],
        EPERM,
    ),
    #[cfg(target_arch = "arm")]
    rule(
        "clock_settime64",
        extra::SYS_CLOCK_SETTIME64,
        &[Cap::SysTime],
        EPERM,
    ),
    rule("kcmp", libc::SYS_kcmp, &[Cap::SysPtrace], EPERM),
    rule(
        "pidfd_getfd",
        libc::SYS_pidfd_getfd,
        &[Cap::SysPtrace],
        EPERM,
    ),
    rule(
        "process_madvise",
        libc::SYS_process_madvise,
        &[Cap::SysPtrace],
        EPERM,
    ),
    rule("mbind", libc::SYS_mbind, &[Cap::SysNice], EPERM),
    rule(
        "set_mempolicy",
        libc::SYS_set_mempolicy,
        &[Cap::SysNice],
        EPERM,
    ),
    rule(
        "get_mempolicy",
        libc::SYS_get_mempolicy,
        &[Cap::SysNice],
        EPERM,
    ),
    rule(
        "set_mempolicy_home_node",
        libc::SYS_set_mempolicy_home_node,
        &[Cap::SysNice],
        EPERM,
    ),
    #[cfg(target_arch = "x86_64")]
    rule("iopl", libc::SYS_iopl, &[Cap::SysRawio], EPERM),
    #[cfg(target_arch = "x86_64")]
    rule("ioperm", libc::SYS_ioperm, &[Cap::SysRawio], EPERM),
    rule("acct", libc::SYS_acct, &[Cap::SysPacct], EPERM),
    rule(
        "open_by_handle_at",
        libc::SYS_open_by_handle_at,
        &[Cap::DacReadSearch],
        EPERM,
    ),
    rule("chroot", libc::SYS_chroot, &[Cap::SysChroot], EPERM),
    rule("vhangup", libc::SYS_vhangup, &[Cap::SysTtyConfig], EPERM),
];

// Offsets in `struct seccomp_data { int nr; __u32 arch; __u64 instruction_pointer;
// __u64 args[6]; }`, whose fields are in the machine's byte order.
const NR: u32 = 0;
const ARCH: u32 = 4;
const ARGS: u32 = 16;

/// Offset of the low 32 bits of argument `arg`. Every argument the rules look at is an `int`
/// or is truncated to 32 bits by the kernel, so the high half never matters.
fn arg_low(arg: u8) -> u32 {
    ARGS + 8 * u32::from(arg) + if cfg!(target_endian = "little") { 0 } else { 4 }
}

fn load(offset: u32) -> sock_filter {
    statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset)
}

fn ret(action: u32) -> sock_filter {
    statement(libc::BPF_RET | libc::BPF_K, action)
}

fn statement(code: u32, k: u32) -> sock_filter {
    jump(code, k, 0, 0)
}

/// `if (A <op> k) skip jt else skip jf` for `op` a `BPF_J*` of `BPF_JMP`.
fn jump(code: u32, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter {
        // Every BPF_* opcode fits the 16-bit field.
        code: code as u16,
        jt,
        jf,
        k,
    }
}

fn jeq(k: u32, jt: u8, jf: u8) -> sock_filter {
    jump(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, k, jt, jf)
}

fn errno(errno: i32) -> u32 {
    libc::SECCOMP_RET_ERRNO | (errno as u32 & libc::SECCOMP_RET_DATA)
}

/// The instructions after a denied syscall's `JEQ`; each path ends in a return.
fn verdict(denial: Denial) -> Vec<sock_filter> {
    let allow = ret(libc::SECCOMP_RET_ALLOW);
    let eperm = ret(errno(libc::EPERM));
    match denial {
        Denial::Errno(code) => vec![ret(errno(code))],
        Denial::FlagsSet { arg, mask } => vec![
            load(arg_low(arg)),
            jump(libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K, mask, 0, 1),
            eperm,
            allow,
        ],
        Denial::Equals { arg, value } => {
            vec![load(arg_low(arg)), jeq(value, 0, 1), eperm, allow]
        }
        Denial::NotOneOf { arg, values } => {
            let n = u8::try_from(values.len()).expect("a rule lists a handful of values");
            let mut body = vec![load(arg_low(arg))];
            for i in 0..n {
                body.push(jeq(values[usize::from(i)], n - i, 0));
            }
            body.extend([eperm, allow]);
            body
        }
    }
}

/// The filter for a process of `arch` with the effective capabilities `caps`.
pub fn filter(arch: &Arch, caps: &HashSet<Capability>) -> Vec<sock_filter> {
    let kill = ret(libc::SECCOMP_RET_KILL_PROCESS);
    let mut program = vec![load(ARCH), jeq(arch.audit_arch, 1, 0), kill, load(NR)];
    if let Some(bit) = arch.x32_bit {
        program.push(jump(
            libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K,
            bit,
            0,
            1,
        ));
        program.push(kill);
    }
    for rule in arch.rules {
        if rule.unlocked_by.iter().any(|cap| caps.contains(cap)) {
            continue;
        }
        let verdict = verdict(rule.denial);
        let skip = u8::try_from(verdict.len()).expect("a verdict is a few instructions");
        program.push(jeq(rule.nr, 0, skip));
        program.extend(verdict);
    }
    program.push(ret(libc::SECCOMP_RET_ALLOW));
    program
}

/// The filter that the process of `spec` (a container's `config.json`) gets on this
/// architecture: `None` when unconfined.
pub fn filter_for(spec: &Spec) -> Result<Option<Vec<sock_filter>>, SeccompError> {
    if Profile::of(spec)? == Profile::Unconfined {
        return Ok(None);
    }
    let caps = spec
        .process()
        .as_ref()
        .and_then(|p| p.capabilities().as_ref())
        .and_then(|c| c.effective().clone())
        .unwrap_or_default();
    Ok(Some(filter(&NATIVE, &caps)))
}

/// libcontainer's default executor behind the container's seccomp filter.
///
/// It runs in the container's init process, whose stderr is the container's: it logs
/// nothing, and reports a failure on stderr (the container's log or the exec's output) as
/// well as to libcontainer.
#[derive(Clone)]
pub struct SeccompExecutor {
    filter: Option<Vec<sock_filter>>,
}

impl SeccompExecutor {
    /// Installs `filter` (none: unconfined) before executing the process.
    pub fn new(filter: Option<Vec<sock_filter>>) -> Self {
        SeccompExecutor { filter }
    }

    /// For the container whose `config.json` is `spec`.
    pub fn for_spec(spec: &Spec) -> Result<Self, SeccompError> {
        Ok(SeccompExecutor::new(filter_for(spec)?))
    }
}

impl fmt::Debug for SeccompExecutor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeccompExecutor")
            .field("instructions", &self.filter.as_ref().map(Vec::len))
            .finish()
    }
}

impl Executor for SeccompExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        if let Some(program) = &self.filter {
            if let Err(err) = super::sys::install_seccomp_filter(program) {
                let hint = if err.raw_os_error() == Some(libc::EACCES) {
                    " (the process has neither no_new_privileges nor CAP_SYS_ADMIN)"
                } else {
                    ""
                };
                let message = format!("cannot install the seccomp filter: {err}{hint}");
                let _ = writeln!(std::io::stderr(), "shoal: {message}");
                return Err(ExecutorError::Other(message));
            }
        }
        DefaultExecutor {}.exec(spec)
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        DefaultExecutor {}.validate(spec)
    }

    fn setup_envs(
        &self,
        envs: std::collections::HashMap<String, String>,
    ) -> Result<(), ExecutorSetEnvsError> {
        DefaultExecutor {}.setup_envs(envs)
    }
}

#[cfg(test)]
#[path = "seccomp_tests.rs"]
mod tests;
