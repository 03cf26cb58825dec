use std::collections::{BTreeSet, HashSet};
use std::str::FromStr;

use oci_spec::runtime::{LinuxCapabilitiesBuilder, ProcessBuilder, SpecBuilder};

use super::*;

/// What the kernel does with a syscall, decoded from the filter's return value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verdict {
    Allow,
    Errno(i32),
    Kill,
}

/// A `struct seccomp_data` as the kernel lays it out, in the machine's byte order.
fn seccomp_data(arch: u32, nr: u32, args: [u64; 6]) -> Vec<u8> {
    let mut data = Vec::with_capacity(64);
    data.extend_from_slice(&nr.to_ne_bytes());
    data.extend_from_slice(&arch.to_ne_bytes());
    data.extend_from_slice(&0x1234_u64.to_ne_bytes());
    for arg in args {
        data.extend_from_slice(&arg.to_ne_bytes());
    }
    data
}

/// A classic-BPF interpreter for the instructions a seccomp filter may use. Panics on anything
/// the kernel's checker would refuse: a jump or load out of range, falling off the end.
fn run(program: &[sock_filter], data: &[u8]) -> u32 {
    let mut acc: u32 = 0;
    let mut pc = 0usize;
    loop {
        let insn = program
            .get(pc)
            .unwrap_or_else(|| panic!("pc {pc} is past the program's end"));
        let code = u32::from(insn.code);
        let k = insn.k;
        let taken = |cond: bool| 1 + usize::from(if cond { insn.jt } else { insn.jf });
        pc += match code {
            c if c == libc::BPF_LD | libc::BPF_W | libc::BPF_ABS => {
                let at = k as usize;
                assert!(at.is_multiple_of(4) && at + 4 <= data.len(), "load at {at}");
                acc = u32::from_ne_bytes(data[at..at + 4].try_into().expect("4 bytes"));
                1
            }
            c if c == libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K => taken(acc == k),
            c if c == libc::BPF_JMP | libc::BPF_JSET | libc::BPF_K => taken(acc & k != 0),
            c if c == libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K => taken(acc >= k),
            c if c == libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K => taken(acc > k),
            c if c == libc::BPF_RET | libc::BPF_K => return k,
            other => panic!("instruction {other:#x} at {pc} is not supported"),
        };
    }
}

fn verdict(program: &[sock_filter], arch: u32, nr: u32, args: [u64; 6]) -> Verdict {
    let result = run(program, &seccomp_data(arch, nr, args));
    match result & libc::SECCOMP_RET_ACTION_FULL {
        libc::SECCOMP_RET_ALLOW => Verdict::Allow,
        libc::SECCOMP_RET_ERRNO => Verdict::Errno((result & libc::SECCOMP_RET_DATA) as i32),
        libc::SECCOMP_RET_KILL_PROCESS => Verdict::Kill,
        other => panic!("unexpected action {other:#x}"),
    }
}

/// Docker's default capabilities plus `added`.
fn caps(added: &[Capability]) -> HashSet<Capability> {
    super::super::spec::DEFAULT_CAPABILITIES
        .iter()
        .map(|name| Capability::from_str(name).expect("a capability"))
        .chain(added.iter().copied())
        .collect()
}

fn sys(nr: libc::c_long) -> u32 {
    nr as u32
}

const NO_ARGS: [u64; 6] = [0; 6];
const ALLOW: Verdict = Verdict::Allow;
const EPERM: Verdict = Verdict::Errno(libc::EPERM);
const NONE: &[Capability] = &[];
const ADMIN: &[Capability] = &[Capability::SysAdmin];

/// (syscall, its first argument, capabilities added to Docker's defaults, verdict)
type Case = (libc::c_long, u64, &'static [Capability], Verdict);

fn check(cases: &[Case]) {
    for &(nr, arg0, added, expected) in cases {
        let program = filter(&NATIVE, &caps(added));
        let name = NATIVE
            .rules
            .iter()
            .find(|r| r.nr == sys(nr))
            .map_or("an unlisted syscall", |r| r.name);
        assert_eq!(
            verdict(&program, NATIVE.audit_arch, sys(nr), [arg0, 0, 0, 0, 0, 0]),
            expected,
            "{name} (nr {nr}, arg {arg0:#x}) with {added:?} added"
        );
    }
}

#[test]
fn ordinary_syscalls_are_allowed() {
    let thread = (libc::CLONE_VM | libc::CLONE_FS | libc::CLONE_FILES | libc::CLONE_THREAD) as u64;
    check(&[
        (libc::SYS_read, 0, NONE, ALLOW),
        (libc::SYS_write, 0, NONE, ALLOW),
        (libc::SYS_execve, 0, NONE, ALLOW),
        (libc::SYS_socket, libc::AF_INET as u64, NONE, ALLOW),
        (libc::SYS_socket, libc::AF_UNIX as u64, NONE, ALLOW),
        (libc::SYS_clone, libc::SIGCHLD as u64, NONE, ALLOW),
        (libc::SYS_clone, thread, NONE, ALLOW),
        // As in Docker.
        (libc::SYS_ptrace, 0, NONE, ALLOW),
        (libc::SYS_process_vm_readv, 0, NONE, ALLOW),
        (libc::SYS_adjtimex, 0, NONE, ALLOW),
        (libc::SYS_name_to_handle_at, 0, NONE, ALLOW),
        (libc::SYS_seccomp, 0, NONE, ALLOW),
        // SYS_CHROOT is one of Docker's default capabilities.
        (libc::SYS_chroot, 0, NONE, ALLOW),
    ]);
}

#[test]
fn dockers_blocked_syscalls_are_refused_with_eperm() {
    check(&[
        (libc::SYS_mount, 0, NONE, EPERM),
        (libc::SYS_umount2, 0, NONE, EPERM),
        (libc::SYS_unshare, 0, NONE, EPERM),
        (libc::SYS_setns, 0, NONE, EPERM),
        (libc::SYS_reboot, 0, NONE, EPERM),
        (libc::SYS_init_module, 0, NONE, EPERM),
        (libc::SYS_clock_settime, 0, NONE, EPERM),
        (libc::SYS_settimeofday, 0, NONE, EPERM),
        (libc::SYS_kcmp, 0, NONE, EPERM),
        (libc::SYS_mbind, 0, NONE, EPERM),
        (libc::SYS_syslog, 0, NONE, EPERM),
        (libc::SYS_acct, 0, NONE, EPERM),
        (libc::SYS_open_by_handle_at, 0, NONE, EPERM),
        (libc::SYS_bpf, 0, NONE, EPERM),
        (libc::SYS_perf_event_open, 0, NONE, EPERM),
        (libc::SYS_keyctl, 0, NONE, EPERM),
        (libc::SYS_swapon, 0, NONE, EPERM),
        (libc::SYS_kexec_load, 0, NONE, EPERM),
        (libc::SYS_userfaultfd, 0, NONE, EPERM),
        (libc::SYS_io_uring_setup, 0, NONE, EPERM),
        // AF_VSOCK
        (libc::SYS_socket, 40, NONE, EPERM),
    ]);
}

#[test]
fn namespaces_need_sys_admin_and_clone3_says_enosys_so_libc_falls_back() {
    let new_user = libc::CLONE_NEWUSER as u64;
    let new_net_and_fork = (libc::CLONE_NEWNET | libc::SIGCHLD) as u64;
    check(&[
        (libc::SYS_clone, new_user, NONE, EPERM),
        (libc::SYS_clone, new_net_and_fork, NONE, EPERM),
        (libc::SYS_clone3, 0, NONE, Verdict::Errno(libc::ENOSYS)),
        (libc::SYS_clone, new_user, ADMIN, ALLOW),
        (libc::SYS_clone3, 0, ADMIN, ALLOW),
        (libc::SYS_unshare, 0, ADMIN, ALLOW),
        (libc::SYS_setns, 0, ADMIN, ALLOW),
    ]);
}

#[test]
fn capabilities_unlock_what_docker_unlocks_and_nothing_else() {
    use Capability as C;
    check(&[
        (libc::SYS_mount, 0, ADMIN, ALLOW),
        (libc::SYS_umount2, 0, ADMIN, ALLOW),
        (libc::SYS_fsopen, 0, ADMIN, ALLOW),
        (libc::SYS_syslog, 0, ADMIN, ALLOW),
        (libc::SYS_syslog, 0, &[C::Syslog], ALLOW),
        (libc::SYS_bpf, 0, &[C::Bpf], ALLOW),
        (libc::SYS_perf_event_open, 0, &[C::Perfmon], ALLOW),
        (libc::SYS_reboot, 0, &[C::SysBoot], ALLOW),
        (libc::SYS_finit_module, 0, &[C::SysModule], ALLOW),
        (libc::SYS_clock_settime, 0, &[C::SysTime], ALLOW),
        (libc::SYS_kcmp, 0, &[C::SysPtrace], ALLOW),
        (libc::SYS_mbind, 0, &[C::SysNice], ALLOW),
        (libc::SYS_acct, 0, &[C::SysPacct], ALLOW),
        (libc::SYS_open_by_handle_at, 0, &[C::DacReadSearch], ALLOW),
        (libc::SYS_vhangup, 0, &[C::SysTtyConfig], ALLOW),
        // A capability unlocks its own syscalls only.
        (libc::SYS_reboot, 0, ADMIN, EPERM),
        (libc::SYS_mount, 0, &[C::SysBoot], EPERM),
        // Never unlocked, as in Docker.
        (libc::SYS_swapon, 0, ADMIN, EPERM),
        (libc::SYS_pivot_root, 0, ADMIN, EPERM),
        (libc::SYS_keyctl, 0, ADMIN, EPERM),
        (libc::SYS_kexec_load, 0, &[C::SysBoot], EPERM),
        (libc::SYS_io_uring_setup, 0, ADMIN, EPERM),
    ]);
}

#[cfg(target_arch = "x86_64")]
#[test]
fn port_io_needs_sys_rawio_on_x86_64() {
    check(&[
        (libc::SYS_iopl, 0, NONE, EPERM),
        (libc::SYS_ioperm, 0, NONE, EPERM),
        (libc::SYS_iopl, 0, &[Capability::SysRawio], ALLOW),
    ]);
}

#[test]
fn personality_allows_dockers_personas_only() {
    check(&[
        // PER_LINUX, PER_LINUX32, UNAME26, both, the query.
        (libc::SYS_personality, 0, NONE, ALLOW),
        (libc::SYS_personality, 0x8, NONE, ALLOW),
        (libc::SYS_personality, 0x2_0000, NONE, ALLOW),
        (libc::SYS_personality, 0x2_0008, NONE, ALLOW),
        (libc::SYS_personality, 0xffff_ffff, NONE, ALLOW),
        // The kernel takes an unsigned int: -1 is the query too.
        (libc::SYS_personality, u64::MAX, NONE, ALLOW),
        // ADDR_NO_RANDOMIZE, READ_IMPLIES_EXEC, whatever the capabilities.
        (libc::SYS_personality, 0x4_0000, NONE, EPERM),
        (libc::SYS_personality, 0x40_0000, NONE, EPERM),
        (libc::SYS_personality, 0x4_0000, ADMIN, EPERM),
    ]);
}

#[test]
fn another_architecture_is_killed() {
    let program = filter(&NATIVE, &caps(NONE));
    // i386 on x86_64, arm on aarch64, aarch64 on arm: none of these numbers mean the same.
    for arch in [0x4000_0003_u32, 0x4000_0028, 0xc000_00b7, 0xc000_003e] {
        if arch == NATIVE.audit_arch {
            continue;
        }
        for nr in [sys(libc::SYS_read), sys(libc::SYS_mount)] {
            assert_eq!(
                verdict(&program, arch, nr, NO_ARGS),
                Verdict::Kill,
                "arch {arch:#x} nr {nr}"
            );
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn x32_syscalls_are_killed_on_x86_64() {
    let program = filter(&NATIVE, &caps(ADMIN));
    let x32 = |nr: libc::c_long| sys(nr) | 0x4000_0000;
    for nr in [x32(libc::SYS_read), x32(libc::SYS_mount)] {
        assert_eq!(
            verdict(&program, NATIVE.audit_arch, nr, NO_ARGS),
            Verdict::Kill
        );
    }
}

#[test]
fn every_rule_is_a_distinct_syscall_and_the_program_fits() {
    let mut names = BTreeSet::new();
    let mut numbers = BTreeSet::new();
    for rule in NATIVE.rules {
        assert!(names.insert(rule.name), "{} listed twice", rule.name);
        assert!(numbers.insert(rule.nr), "{} shares its number", rule.name);
        // Each listed syscall is refused without capabilities, whatever its arguments.
        let args = match rule.denial {
            Denial::Errno(_) => NO_ARGS,
            Denial::FlagsSet { mask, .. } => [u64::from(mask), 0, 0, 0, 0, 0],
            Denial::Equals { value, .. } => [u64::from(value), 0, 0, 0, 0, 0],
            Denial::NotOneOf { .. } => [0x0bad, 0, 0, 0, 0, 0],
        };
        let program = filter(&NATIVE, &HashSet::new());
        assert!(
            matches!(
                verdict(&program, NATIVE.audit_arch, rule.nr, args),
                Verdict::Errno(_)
            ),
            "{}",
            rule.name
        );
    }
    // BPF_MAXINSNS is 4096.
    let longest = filter(&NATIVE, &HashSet::new());
    assert!(longest.len() < 4096, "{}", longest.len());
    let all = filter(
        &NATIVE,
        &NATIVE
            .rules
            .iter()
            .flat_map(|r| r.unlocked_by.iter().copied())
            .collect(),
    );
    assert!(all.len() < longest.len(), "capabilities remove rules");
}

fn spec(annotation: Option<&str>, effective: &[Capability]) -> Spec {
    let caps: oci_spec::runtime::Capabilities = effective.iter().copied().collect();
    let process = ProcessBuilder::default()
        .args(vec!["sh".to_owned()])
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .bounding(caps.clone())
                .effective(caps.clone())
                .permitted(caps)
                .build()
                .expect("caps"),
        )
        .build()
        .expect("process");
    let mut builder = SpecBuilder::default().process(process);
    if let Some(value) = annotation {
        builder = builder.annotations(
            [(ANNOTATION.to_owned(), value.to_owned())]
                .into_iter()
                .collect::<std::collections::HashMap<_, _>>(),
        );
    }
    builder.build().expect("spec")
}

#[test]
fn the_spec_names_the_profile_and_its_effective_capabilities_shape_the_filter() {
    let admin = [Capability::SysAdmin];
    let mount = sys(libc::SYS_mount);
    // (annotation, effective capabilities, mount's verdict; None: no filter)
    let cases: [(Option<&str>, &[Capability], Option<Verdict>); 5] = [
        (Some("default"), &[], Some(EPERM)),
        (Some("default"), &admin, Some(Verdict::Allow)),
        (None, &[], Some(EPERM)),
        (Some("unconfined"), &[], None),
        (Some("unconfined"), &admin, None),
    ];
    for (annotation, effective, expected) in cases {
        let program = filter_for(&spec(annotation, effective)).expect("known profile");
        assert_eq!(
            program.map(|p| verdict(&p, NATIVE.audit_arch, mount, NO_ARGS)),
            expected,
            "{annotation:?} {effective:?}"
        );
    }
    let err = filter_for(&spec(Some("strict"), &[])).expect_err("unknown profile");
    assert_eq!(
        err,
        SeccompError::UnknownProfile {
            value: "strict".into()
        }
    );
    assert!(err.to_string().contains(ANNOTATION), "{err}");
}
