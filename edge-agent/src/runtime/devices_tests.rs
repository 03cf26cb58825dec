use oci_spec::runtime::{LinuxDeviceCgroupBuilder, LinuxDeviceType};

use super::*;

fn entry(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut builder = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(major) = major {
        builder = builder.major(major);
    }
    if let Some(minor) = minor {
        builder = builder.minor(minor);
    }
    builder.build().expect("a device rule")
}

/// The spec.rs shape for a container that lists `/dev/null` (c 1:3) and maybe a disk (b 254:0).
fn listing(disk: bool) -> Vec<LinuxDeviceCgroup> {
    let mut entries = vec![
        entry(false, LinuxDeviceType::A, None, None, "rwm"),
        entry(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
    ];
    if disk {
        entries.push(entry(true, LinuxDeviceType::B, Some(254), Some(0), "rwm"));
    }
    entries
}

const R: u8 = ACC_READ;
const W: u8 = ACC_WRITE;
const M: u8 = ACC_MKNOD;

#[test]
fn a_container_opens_what_it_lists_and_the_defaults_and_only_creates_other_nodes() {
    // (lists the disk, block?, access, major, minor, allowed)
    let cases = [
        (false, false, R | W, 1, 3, true),   // /dev/null, listed
        (false, false, R, 1, 9, true),       // /dev/urandom, a default
        (false, false, R | W, 136, 4, true), // a pty
        (false, false, R | W, 5, 1, true),   // the console
        (false, true, R, 254, 0, false),     // the disk, not listed
        (false, true, W, 254, 0, false),
        (false, true, M, 254, 0, true), // mknod alone grants nothing
        (false, true, R | M, 254, 0, false),
        (false, false, R, 4, 1, false),    // tty1
        (false, false, R, 10, 229, false), // /dev/fuse
        (true, true, R | W, 254, 0, true), // the disk, listed
        (true, true, R, 254, 1, false),    // its partition is another device
        (true, false, R, 254, 0, false),   // a char device of the same numbers
    ];
    for (disk, block, access, major, minor, allowed) in cases {
        let rules = rules_for(&listing(disk)).expect("rules");
        let prog = program(&rules).expect("program");
        assert_eq!(
            run(&prog, block, access, major, minor) == 1,
            allowed,
            "disk listed {disk}, {} {major}:{minor} access {access}",
            if block { "b" } else { "c" }
        );
    }
}

#[test]
fn a_rule_covers_only_the_accesses_it_names() {
    let entries = [
        entry(false, LinuxDeviceType::A, None, None, "rwm"),
        entry(true, LinuxDeviceType::C, Some(1), Some(3), "r"),
    ];
    let rules: Vec<Rule> = entries
        .iter()
        .map(|e| Rule::from_oci(e).expect("rule"))
        .collect();
    let prog = program(&rules).expect("program");
    // (access, allowed)
    for (access, allowed) in [(R, true), (W, false), (R | W, false), (M, false)] {
        assert_eq!(
            run(&prog, false, access, 1, 3) == 1,
            allowed,
            "access {access}"
        );
    }
}

#[test]
fn the_last_matching_rule_decides_and_no_rule_denies() {
    let entries = [
        entry(true, LinuxDeviceType::B, None, None, "rwm"),
        entry(false, LinuxDeviceType::B, Some(8), None, "rwm"),
    ];
    let rules: Vec<Rule> = entries
        .iter()
        .map(|e| Rule::from_oci(e).expect("rule"))
        .collect();
    let prog = program(&rules).expect("program");
    assert_eq!(run(&prog, true, R, 7, 0), 1, "b *:* allows a loop device");
    assert_eq!(run(&prog, true, R, 8, 1), 0, "b 8:* denies sda1 after it");
    assert_eq!(
        run(&prog, false, R, 1, 3),
        0,
        "nothing matches a char device"
    );
    assert_eq!(run(&program(&[]).expect("empty"), false, R, 1, 3), 0);
}

#[test]
fn only_a_final_allow_all_allows_everything() {
    let rules = |entries: &[LinuxDeviceCgroup]| -> Vec<Rule> {
        entries
            .iter()
            .map(|e| Rule::from_oci(e).expect("rule"))
            .collect()
    };
    let all = entry(true, LinuxDeviceType::A, None, None, "rwm");
    let none = entry(false, LinuxDeviceType::A, None, None, "rwm");
    assert!(allows_everything(&rules(std::slice::from_ref(&all))));
    assert!(allows_everything(&rules(&[none.clone(), all.clone()])));
    assert!(!allows_everything(&rules(&[all.clone(), none.clone()])));
    assert!(!allows_everything(&rules(&listing(true))));
    let mut privileged = rules(&[all]);
    privileged.extend(default_rules());
    assert!(allows_everything(&privileged), "the defaults only allow");
}

#[test]
fn rules_the_program_cannot_express_are_refused_with_the_rule() {
    let fifo = entry(true, LinuxDeviceType::P, None, None, "rwm");
    assert!(matches!(
        Rule::from_oci(&fifo),
        Err(DeviceProgramError::Fifo { .. })
    ));
    let huge = entry(true, LinuxDeviceType::C, Some(1 << 40), None, "rwm");
    let err = Rule::from_oci(&huge).expect_err("out of range");
    assert!(err.to_string().contains("major 1099511627776"), "{err}");
    let wildcard = entry(true, LinuxDeviceType::C, Some(-1), Some(-1), "");
    let rule = Rule::from_oci(&wildcard).expect("-1 means any");
    assert_eq!((rule.major, rule.minor, rule.access), (None, None, ACC_ALL));
}

#[test]
fn instructions_are_encoded_as_the_kernel_reads_them() {
    // r2 = *(u32 *)(r1 + 4): opcode, src 1 and dst 2 (little-endian nibbles), offset 4.
    let load = insn(LDX_MEM_W, 2, 1, 4, 0);
    if cfg!(target_endian = "little") {
        assert_eq!(load.to_bytes(), [0x61, 0x12, 4, 0, 0, 0, 0, 0]);
    }
    let exit = insn(JMP_EXIT, 0, 0, 0, 0);
    assert_eq!(exit.to_bytes(), [0x95, 0, 0, 0, 0, 0, 0, 0]);
    let prog = program(&rules_for(&listing(false)).expect("rules")).expect("program");
    assert_eq!(prog.last(), Some(&exit), "ends with exit");
    assert!(prog.len() < 200, "{} instructions", prog.len());
}

/// Every instruction of `prog` is reachable from the first and no jump leaves the program,
/// as the kernel's verifier demands.
fn assert_verifiable(prog: &[Insn]) {
    let mut seen = vec![false; prog.len()];
    let mut todo = vec![0usize];
    while let Some(pc) = todo.pop() {
        assert!(pc < prog.len(), "a jump past the end: {prog:?}");
        if std::mem::replace(&mut seen[pc], true) {
            continue;
        }
        match prog[pc].code {
            JMP_EXIT => {}
            JMP_JNE_K | JMP_JNE_X => {
                todo.push(pc + 1);
                todo.push(pc + 1 + prog[pc].off as usize);
            }
            _ => todo.push(pc + 1),
        }
    }
    let unreachable: Vec<usize> = (0..prog.len()).filter(|i| !seen[*i]).collect();
    assert!(
        unreachable.is_empty(),
        "unreachable instructions {unreachable:?}"
    );
}

#[test]
fn programs_have_no_unreachable_instructions() {
    let all = entry(true, LinuxDeviceType::A, None, None, "rwm");
    let none = entry(false, LinuxDeviceType::A, None, None, "rwm");
    let sets = [
        listing(false),
        listing(true),
        vec![none.clone()],
        vec![none, all.clone()],
        vec![all],
        vec![],
    ];
    for entries in sets {
        let prog = program(&rules_for(&entries).expect("rules")).expect("program");
        assert_verifiable(&prog);
        let bare: Vec<Rule> = entries
            .iter()
            .map(|e| Rule::from_oci(e).expect("rule"))
            .collect();
        assert_verifiable(&program(&bare).expect("program"));
    }
}
