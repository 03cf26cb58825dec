//! Disk images shaped like a Raspberry Pi OS card, built by `cross/sample-image` with Debian's
//! own tools (sfdisk, mkfs.vfat, mcopy, mkfs.ext4 -d), and read back with mtools, for `shoal
//! flash`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::run;

/// Sizes in MiB, and what goes in.
#[derive(Clone, Debug)]
pub struct Shape {
    /// `dos` (MBR) or `gpt`.
    pub label: &'static str,
    pub boot_mib: u64,
    pub root_mib: u64,
    /// Files of the boot partition: (name, text).
    pub boot_files: Vec<(&'static str, String)>,
}

/// The first sector of the boot partition.
pub const BOOT_START: u64 = 2048;

/// A Raspberry Pi OS `cmdline.txt` (the one `cross/sample-image` writes unless `--bare`).
pub const CMDLINE: &str = "console=serial0,115200 console=tty1 root=PARTUUID=5e3da3da-02 rootfstype=ext4 fsck.repair=yes rootwait quiet\n";

impl Shape {
    /// MBR, a 64 MiB FAT32 boot partition with cmdline.txt and config.txt, a 32 MiB ext4 root.
    pub fn pi() -> Shape {
        Shape {
            label: "dos",
            boot_mib: 64,
            root_mib: 32,
            boot_files: vec![
                ("cmdline.txt", CMDLINE.to_string()),
                ("config.txt", "arm_64bit=1\n[all]\n".to_string()),
            ],
        }
    }
}

/// Builds `dir/NAME.img` of `shape` with `cross/sample-image` (the script the README's
/// "Provision devices" uses): the root holds a minimal Debian-like tree whose `/bin/sh` is
/// `busybox` (the host's static one, so its ELF names this machine's architecture).
pub fn build(dir: &Path, name: &str, shape: &Shape) -> PathBuf {
    let image = dir.join(format!("{name}.img"));
    let mut command = Command::new(crate::workspace().join("cross/sample-image"));
    command
        .arg(&image)
        .args(["--label", shape.label])
        .arg("--boot-mib")
        .arg(shape.boot_mib.to_string())
        .arg("--root-mib")
        .arg(shape.root_mib.to_string())
        .arg("--bare");
    let mut texts = Vec::new();
    for (file, text) in &shape.boot_files {
        let path = dir.join(format!("{name}.{file}"));
        std::fs::write(&path, text).expect("boot file");
        command
            .arg("--boot-file")
            .arg(format!("{file}={}", path.display()));
        texts.push(path);
    }
    run(&mut command);
    for path in texts {
        let _ = std::fs::remove_file(path);
    }
    image
}

/// mtools' name for the boot partition of `image`: `IMAGE@@OFFSET`.
pub fn boot_of(image: &Path) -> String {
    format!("{}@@{}", image.display(), BOOT_START * 512)
}

/// `mtype` of a file in the boot partition.
pub fn mtype(image: &Path, file: &str) -> String {
    run(Command::new("mtype")
        .arg("-i")
        .arg(boot_of(image))
        .arg(format!("::/{file}")))
}

/// `mcopy` of a file in the boot partition out to `to`.
pub fn mcopy_out(image: &Path, file: &str, to: &Path) {
    run(Command::new("mcopy")
        .arg("-n")
        .arg("-i")
        .arg(boot_of(image))
        .arg(format!("::/{file}"))
        .arg(to));
}

/// `mdir -b` of a folder of the boot partition: one path per line.
pub fn mdir(image: &Path, folder: &str) -> String {
    run(Command::new("mdir")
        .arg("-b")
        .arg("-i")
        .arg(boot_of(image))
        .arg(format!("::/{folder}")))
}

/// `fsck.vfat -n` of the boot partition (copied out): whether dosfstools finds it sound.
pub fn fsck_boot(image: &Path, boot_mib: u64) -> String {
    let part = image.with_extension("fsck");
    run(Command::new("dd")
        .arg(format!("if={}", image.display()))
        .arg(format!("of={}", part.display()))
        .args(["bs=512", "status=none"])
        .arg(format!("skip={BOOT_START}"))
        .arg(format!("count={}", boot_mib * 2048)));
    let out = run(Command::new("fsck.vfat").arg("-n").arg(&part));
    let _ = std::fs::remove_file(&part);
    out
}

/// The SHA-256 of a file, in hex.
pub fn sha256(path: &Path) -> String {
    run(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}
