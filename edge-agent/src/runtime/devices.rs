//! A container's device allow-list on cgroup v2, as a `BPF_PROG_TYPE_CGROUP_DEVICE` program.
//!
//! cgroup v1 has the devices controller (`devices.allow`/`devices.deny`, which libcgroups
//! writes); cgroup v2 has none: the kernel asks an eBPF program attached to the cgroup at
//! every open and mknod of a device node. libcgroups can build one only through libbpf
//! (a C library the static device build would have to carry), so the agent assembles the few
//! instructions itself, as it builds its seccomp filter without libseccomp, and the shim
//! loads and attaches them with the bpf(2) calls in `sys.rs`.
//!
//! The rules are the OCI spec's `linux.resources.devices` (deny all, then allow each listed
//! device) followed by the defaults libcgroups adds on v1, so both hierarchies allow the same:
//! `/dev/null`, `zero`, `full`, `tty`, `random`, `urandom`, the console, ptys and
//! `/dev/net/tun`, and `mknod` of any node (creating a node grants nothing: opening it is
//! checked). As on v1, the last rule that matches decides; no rule matching denies.
//!
//! Pure: rules in, instructions out. The program reads `struct bpf_cgroup_dev_ctx`
//! (`access_type` = access << 16 | type, `major`, `minor`, three u32) and returns 1 to allow.

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

/// `BPF_DEVCG_DEV_*`: the device type in the low 16 bits of `access_type`.
const DEV_BLOCK: i32 = 1;
const DEV_CHAR: i32 = 2;
/// `BPF_DEVCG_ACC_*`: the access asked for, in the high 16 bits.
const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;

/// One eBPF instruction (`struct bpf_insn`): opcode, destination and source registers (4
/// bits each), offset and immediate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Insn {
    pub code: u8,
    pub dst: u8,
    pub src: u8,
    pub off: i16,
    pub imm: i32,
}

impl Insn {
    /// The 8 bytes the kernel reads (little-endian fields; registers: dst low nibble).
    pub fn to_bytes(self) -> [u8; 8] {
        let [o0, o1] = self.off.to_ne_bytes();
        let [i0, i1, i2, i3] = self.imm.to_ne_bytes();
        let regs = if cfg!(target_endian = "little") {
            (self.src << 4) | (self.dst & 0x0f)
        } else {
            (self.dst << 4) | (self.src & 0x0f)
        };
        [self.code, regs, o0, o1, i0, i1, i2, i3]
    }
}

// Opcodes: class | operation | source.
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
const ALU32_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const JMP_JNE_K: u8 = 0x55; // BPF_JMP | BPF_JNE | BPF_K
const JMP_JNE_X: u8 = 0x5d; // BPF_JMP | BPF_JNE | BPF_X
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        dst,
        src,
        off,
        imm,
    }
}

/// One rule as the program checks it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// `None`: any type (`a`).
    pub block: Option<bool>,
    /// `None`: any number (`*`).
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// `ACC_*` bits the rule covers.
    pub access: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DeviceProgramError {
    #[error("device rule {rule}: unknown access '{access}' (use r, w and m)")]
    Access { rule: String, access: char },
    #[error("device rule {rule}: {what} {value} is out of range")]
    Number {
        rule: String,
        what: &'static str,
        value: i64,
    },
    #[error("device rule {rule}: pipes ('p') cannot be listed")]
    Fifo { rule: String },
    #[error("{0} device rules make a program longer than the kernel accepts")]
    TooLong(usize),
}

impl Rule {
    /// The rule an OCI device cgroup entry means.
    pub fn from_oci(entry: &LinuxDeviceCgroup) -> Result<Rule, DeviceProgramError> {
        let text = || entry.to_string();
        let block = match entry.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(true),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(false),
            LinuxDeviceType::P => return Err(DeviceProgramError::Fifo { rule: text() }),
        };
        let number =
            |what, value: Option<i64>| match value {
                None => Ok(None),
                Some(n) if n < 0 => Ok(None),
                Some(n) => i32::try_from(n).map(|n| Some(n as u32)).map_err(|_| {
                    DeviceProgramError::Number {
                        rule: text(),
                        what,
                        value: n,
                    }
                }),
            };
        let mut access = 0;
        match entry.access().as_deref() {
            None | Some("") => access = ACC_ALL,
            Some(letters) => {
                for letter in letters.chars() {
                    access |= match letter {
                        'r' => ACC_READ,
                        'w' => ACC_WRITE,
                        'm' => ACC_MKNOD,
                        other => {
                            return Err(DeviceProgramError::Access {
                                rule: text(),
                                access: other,
                            })
                        }
                    };
                }
            }
        }
        Ok(Rule {
            allow: entry.allow(),
            block,
            major: number("major", entry.major())?,
            minor: number("minor", entry.minor())?,
            access,
        })
    }

    fn chr(major: u32, minor: Option<u32>, access: u8) -> Rule {
        Rule {
            allow: true,
            block: Some(false),
            major: Some(major),
            minor,
            access,
        }
    }
}

/// What every container may use beside its own list, as libcgroups allows on v1: the
/// default device nodes it creates (null, zero, full, tty, urandom, random), mknod of any
/// character or block node, the console, ptys, ptmx and the tun device.
pub fn default_rules() -> Vec<Rule> {
    let all = ACC_ALL;
    vec![
        Rule::chr(1, Some(3), all),
        Rule::chr(1, Some(5), all),
        Rule::chr(1, Some(7), all),
        Rule::chr(5, Some(0), all),
        Rule::chr(1, Some(9), all),
        Rule::chr(1, Some(8), all),
        Rule {
            allow: true,
            block: Some(false),
            major: None,
            minor: None,
            access: ACC_MKNOD,
        },
        Rule {
            allow: true,
            block: Some(true),
            major: None,
            minor: None,
            access: ACC_MKNOD,
        },
        Rule::chr(5, Some(1), all),
        Rule::chr(136, None, all),
        Rule::chr(5, Some(2), all),
        Rule::chr(10, Some(200), all),
    ]
}

/// The rules of a spec's device cgroup entries followed by [`default_rules`].
pub fn rules_for(entries: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>, DeviceProgramError> {
    let mut rules = entries
        .iter()
        .map(Rule::from_oci)
        .collect::<Result<Vec<_>, _>>()?;
    rules.extend(default_rules());
    Ok(rules)
}

/// Whether `rules` allow everything (a privileged container): no program is needed then.
/// True when the last rule matching every access allows, and only allows follow it.
pub fn allows_everything(rules: &[Rule]) -> bool {
    let matches_all = |r: &Rule| {
        r.block.is_none() && r.major.is_none() && r.minor.is_none() && r.access == ACC_ALL
    };
    rules
        .iter()
        .rposition(matches_all)
        .is_some_and(|at| rules[at..].iter().all(|r| r.allow))
}

/// Registers the program uses: the context in r1 (reused as scratch), type r2, access r3,
/// major r4, minor r5, verdict r0.
const CTX: u8 = 1;
const TYPE: u8 = 2;
const ACCESS: u8 = 3;
const MAJOR: u8 = 4;
const MINOR: u8 = 5;

/// The program for `rules`: the last matching rule decides, none matching denies.
pub fn program(rules: &[Rule]) -> Result<Vec<Insn>, DeviceProgramError> {
    let mut out = vec![
        insn(LDX_MEM_W, TYPE, CTX, 0, 0),
        insn(ALU32_AND_K, TYPE, 0, 0, 0xffff),
        insn(LDX_MEM_W, ACCESS, CTX, 0, 0),
        insn(ALU32_RSH_K, ACCESS, 0, 0, 16),
        insn(LDX_MEM_W, MAJOR, CTX, 4, 0),
        insn(LDX_MEM_W, MINOR, CTX, 8, 0),
    ];
    for rule in rules.iter().rev() {
        let mut checks = Vec::new();
        if let Some(block) = rule.block {
            checks.push(insn(
                JMP_JNE_K,
                TYPE,
                0,
                0,
                if block { DEV_BLOCK } else { DEV_CHAR },
            ));
        }
        if rule.access != ACC_ALL {
            // Every access asked for must be one the rule covers: (access & rule) == access.
            checks.push(insn(ALU32_MOV_X, CTX, ACCESS, 0, 0));
            checks.push(insn(ALU32_AND_K, CTX, 0, 0, i32::from(rule.access)));
            checks.push(insn(JMP_JNE_X, CTX, ACCESS, 0, 0));
        }
        if let Some(major) = rule.major {
            checks.push(insn(JMP_JNE_K, MAJOR, 0, 0, major as i32));
        }
        if let Some(minor) = rule.minor {
            checks.push(insn(JMP_JNE_K, MINOR, 0, 0, minor as i32));
        }
        // Each failed check jumps past the rest of the rule: its checks and the verdict (2).
        let len = checks.len();
        for (i, check) in checks.iter_mut().enumerate() {
            if check.code == JMP_JNE_K || check.code == JMP_JNE_X {
                check.off = i16::try_from(len - i - 1 + 2)
                    .map_err(|_| DeviceProgramError::TooLong(rules.len()))?;
            }
        }
        let matches_all = checks.is_empty();
        out.extend(checks);
        out.push(insn(ALU32_MOV_K, 0, 0, 0, i32::from(rule.allow)));
        out.push(insn(JMP_EXIT, 0, 0, 0, 0));
        if matches_all {
            // Nothing after a rule that matches every access can run, and the verifier
            // refuses a program with unreachable instructions.
            return finish(out, rules.len());
        }
    }
    out.push(insn(ALU32_MOV_K, 0, 0, 0, 0));
    out.push(insn(JMP_EXIT, 0, 0, 0, 0));
    finish(out, rules.len())
}

fn finish(out: Vec<Insn>, rules: usize) -> Result<Vec<Insn>, DeviceProgramError> {
    // BPF_MAXINSNS for unprivileged loaders; far above what a device list needs.
    if out.len() > 4096 {
        return Err(DeviceProgramError::TooLong(rules));
    }
    Ok(out)
}

/// What a program decides for one access, computed by running its instructions: the tests'
/// interpreter for exactly the opcodes [`program`] emits.
#[cfg(test)]
pub fn run(program: &[Insn], block: bool, access: u8, major: u32, minor: u32) -> u32 {
    let ctx = [
        u32::from(access) << 16 | if block { 1 } else { 2 },
        major,
        minor,
    ];
    let mut reg = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = program[pc];
        let (d, s) = (usize::from(i.dst), usize::from(i.src));
        pc += 1;
        match i.code {
            LDX_MEM_W => reg[d] = u64::from(ctx[(i.off / 4) as usize]),
            ALU32_AND_K => reg[d] = (reg[d] as u32 & i.imm as u32).into(),
            ALU32_RSH_K => reg[d] = ((reg[d] as u32) >> i.imm).into(),
            ALU32_MOV_K => reg[d] = u64::from(i.imm as u32),
            ALU32_MOV_X => reg[d] = u64::from(reg[s] as u32),
            JMP_JNE_K => {
                if reg[d] != i64::from(i.imm) as u64 {
                    pc += i.off as usize;
                }
            }
            JMP_JNE_X => {
                if reg[d] != reg[s] {
                    pc += i.off as usize;
                }
            }
            JMP_EXIT => return reg[0] as u32,
            other => panic!("unexpected opcode {other:#x}"),
        }
    }
}

#[cfg(test)]
#[path = "devices_tests.rs"]
mod tests;
