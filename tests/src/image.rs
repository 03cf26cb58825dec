//! Disk images shaped like a Raspberry Pi OS card, built with Debian's own tools (sfdisk,
//! mkfs.vfat, mcopy, mkfs.ext4 -d), and read back with mtools, for `shoal flash`.

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

/// A Raspberry Pi OS `cmdline.txt`.
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

/// Builds `dir/NAME.img` of `shape`: the root holds a minimal Debian-like tree whose `/bin/sh`
/// is `busybox` (the host's static one, so its ELF names this machine's architecture).
pub fn build(dir: &Path, name: &str, shape: &Shape) -> PathBuf {
    let image = dir.join(format!("{name}.img"));
    let boot = dir.join(format!("{name}.boot"));
    let root = dir.join(format!("{name}.root"));
    let tree = dir.join(format!("{name}.tree"));
    let total = 1 + shape.boot_mib + shape.root_mib + 1;
    let _ = std::fs::remove_file(&image);
    run(Command::new("truncate")
        .arg("-s")
        .arg(format!("{total}M"))
        .arg(&image));
    let (boot_type, root_type) = match shape.label {
        "gpt" => ("U", "L"),
        _ => ("c", "83"),
    };
    let script = format!(
        "label: {}\nstart={BOOT_START}, size={}, type={boot_type}\nstart={}, size={}, type={root_type}\n",
        shape.label,
        shape.boot_mib * 2048,
        BOOT_START + shape.boot_mib * 2048,
        shape.root_mib * 2048,
    );
    let mut sfdisk = Command::new("sfdisk");
    sfdisk
        .arg("--quiet")
        .arg(&image)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = sfdisk.spawn().expect("sfdisk");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(script.as_bytes())
            .expect("sfdisk script");
    }
    let out = child.wait_with_output().expect("sfdisk");
    assert!(
        out.status.success(),
        "sfdisk: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let _ = std::fs::remove_file(&boot);
    run(Command::new("truncate")
        .arg("-s")
        .arg(format!("{}M", shape.boot_mib))
        .arg(&boot));
    let mut mkfs = Command::new("mkfs.vfat");
    if shape.boot_mib >= 64 {
        mkfs.args(["-F", "32", "-s", "1"]);
    }
    run(mkfs.arg("-n").arg("bootfs").arg(&boot));
    for (file, text) in &shape.boot_files {
        let path = dir.join(format!("{name}.{file}"));
        std::fs::write(&path, text).expect("boot file");
        run(Command::new("mcopy")
            .arg("-i")
            .arg(&boot)
            .arg(&path)
            .arg(format!("::/{file}")));
    }

    let _ = std::fs::remove_dir_all(&tree);
    for sub in [
        "bin",
        "etc/systemd/system",
        "boot/firmware",
        "usr/local/bin",
        "var/lib",
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
    ] {
        std::fs::create_dir_all(tree.join(sub)).expect("tree");
    }
    std::fs::copy("/bin/busybox", tree.join("bin/busybox"))
        .expect("busybox-static (apt-get install busybox-static)");
    std::os::unix::fs::symlink("busybox", tree.join("bin/sh")).expect("sh");
    std::fs::write(
        tree.join("etc/os-release"),
        "PRETTY_NAME=\"Test OS (Raspberry Pi OS shaped)\"\nID=debian\n",
    )
    .expect("os-release");
    std::fs::write(tree.join("etc/hostname"), "raspberrypi\n").expect("hostname");
    let _ = std::fs::remove_file(&root);
    run(Command::new("truncate")
        .arg("-s")
        .arg(format!("{}M", shape.root_mib))
        .arg(&root));
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", "rootfs", "-d"])
        .arg(&tree)
        .arg(&root));

    for (part, start) in [
        (&boot, BOOT_START),
        (&root, BOOT_START + shape.boot_mib * 2048),
    ] {
        run(Command::new("dd")
            .arg(format!("if={}", part.display()))
            .arg(format!("of={}", image.display()))
            .args(["bs=512", "conv=notrunc,sparse", "status=none"])
            .arg(format!("seek={start}")));
        let _ = std::fs::remove_file(part);
    }
    let _ = std::fs::remove_dir_all(&tree);
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
