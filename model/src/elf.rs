//! What an ELF executable is built for (pure, on its first bytes): the architecture of an
//! image (from a binary in its root file system) and of an agent binary, and whether that
//! binary is static (no `PT_INTERP`: a board without the same C library can run it).

/// The architectures Shoal builds agents for, named as `cross/build` and `--arch` name them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
    Armv7,
}

impl Arch {
    pub fn as_str(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
            Arch::Armv7 => "armv7",
        }
    }

    /// The target triple `cross/build` writes this architecture's agent under.
    pub fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
            Arch::Armv7 => "armv7-unknown-linux-musleabihf",
        }
    }

    pub fn parse(text: &str) -> Result<Arch, String> {
        match text {
            "x86_64" | "amd64" => Ok(Arch::X86_64),
            "aarch64" | "arm64" => Ok(Arch::Aarch64),
            "armv7" | "armhf" | "arm" => Ok(Arch::Armv7),
            other => Err(format!(
                "unknown architecture `{other}`: use x86_64, aarch64 or armv7"
            )),
        }
    }
}

/// An ELF header's architecture and whether it asks for an interpreter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Elf {
    pub arch: Arch,
    pub dynamic: bool,
}

/// Reads an ELF file's header and program headers from `bytes` (its start is enough when
/// the program headers follow the header, as linkers put them).
pub fn read(bytes: &[u8]) -> Result<Elf, String> {
    if bytes.len() < 52 || &bytes[..4] != b"\x7fELF" {
        return Err("not an ELF executable".into());
    }
    let wide = match bytes[4] {
        1 => false,
        2 => true,
        other => return Err(format!("unknown ELF class {other}")),
    };
    if bytes[5] != 1 {
        return Err("a big-endian ELF file: Shoal builds only little-endian agents".into());
    }
    let u16_at = |at: usize| -> Option<u16> {
        Some(u16::from_le_bytes(
            bytes.get(at..at.checked_add(2)?)?.try_into().ok()?,
        ))
    };
    let u32_at = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(
            bytes.get(at..at.checked_add(4)?)?.try_into().ok()?,
        ))
    };
    let u64_at = |at: usize| -> Option<u64> {
        Some(u64::from_le_bytes(
            bytes.get(at..at.checked_add(8)?)?.try_into().ok()?,
        ))
    };
    let machine = u16_at(18).ok_or("a cut-off ELF header")?;
    let arch = match (machine, wide) {
        (62, true) => Arch::X86_64,
        (183, true) => Arch::Aarch64,
        (40, false) => Arch::Armv7,
        (other, _) => {
            return Err(format!(
                "an ELF file for machine {other} ({}-bit), not x86_64, aarch64 or armv7",
                if wide { 64 } else { 32 }
            ))
        }
    };
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(32), u16_at(54), u16_at(56))
    } else {
        (u32_at(28).map(u64::from), u16_at(42), u16_at(44))
    };
    let (phoff, phentsize, phnum) = match (phoff, phentsize, phnum) {
        (Some(o), Some(s), Some(n)) => (o, usize::from(s), usize::from(n)),
        _ => return Err("a cut-off ELF header".into()),
    };
    let mut dynamic = false;
    for i in 0..phnum.min(64) {
        let at = usize::try_from(phoff)
            .ok()
            .and_then(|o| o.checked_add(i.checked_mul(phentsize)?));
        let kind = at
            .and_then(u32_at)
            .ok_or("its program headers are cut off")?;
        if kind == 3 {
            dynamic = true;
        }
    }
    Ok(Elf { arch, dynamic })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_and_static_busybox_are_read_and_garbage_is_refused() {
        let me = std::fs::read(std::env::current_exe().expect("exe")).expect("read");
        let elf = read(&me).expect("this test binary");
        assert_eq!(
            elf.arch.as_str(),
            std::env::consts::ARCH.replace("arm", "armv7")
        );
        if let Ok(busybox) = std::fs::read("/bin/busybox") {
            let elf = read(&busybox).expect("busybox");
            assert!(!elf.dynamic, "busybox-static has no interpreter");
        }
        assert_eq!(read(b"#!/bin/sh\n"), Err("not an ELF executable".into()));
        let mut cut = me[..64].to_vec();
        cut[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(read(&cut).is_err());
        assert_eq!(Arch::parse("arm64"), Ok(Arch::Aarch64));
        assert!(Arch::parse("mips").is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_are_an_elf_or_a_reason(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256)) {
            let mut bytes = bytes;
            if bytes.len() > 4 { bytes[..4].copy_from_slice(b"\x7fELF"); }
            let _ = read(&bytes);
        }
    }
}
