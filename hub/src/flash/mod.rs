//! `shoal flash`: writes the static agent, a bootstrap file and a first-boot hook into the
//! FAT boot partition of a disk image, in user space: no mount, no loop device, no root for
//! an image file.
//!
//! 1. The partition table is read and checked (`table`): every partition inside the image,
//!    none overlapping. The boot partition is the first FAT one.
//! 2. The image's architecture comes from `--arch`, or from the ELF header of a binary in
//!    its root file system (`/bin/sh`, ..., read with `ext4-view`); the agent binary must be
//!    a static ELF of that architecture.
//! 3. The boot partition is opened with `fatfs` through a copy-on-write [`Overlay`]: every
//!    change stays in memory, so any refusal (no room, a `cmdline.txt` it cannot extend, ...)
//!    leaves the image byte for byte as it was.
//! 4. Only then are the changed blocks written: into the image, into a copy (`--out`), or
//!    with the whole image onto a block device (`--device`, refused while mounted, read back
//!    and compared after writing).
//!
//! Written into the partition's top folder: `shoal-agent`, `shoal-bootstrap.env`
//! (`shoal_model::bootstrap`), `shoal-firstboot.sh`, `shoal-agent.service`; `cmdline.txt` gets the memory cgroup
//! arguments, and either `user-data` (cloud-init images) or `cmdline.txt` (the others) the
//! hook.

pub use shoal_model::elf;
pub mod cloud_init;
pub mod files;
mod overlay;
pub mod table;

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use fatfs::{FileSystem, FsOptions};
use shoal_model::bootstrap::Bootstrap;

pub use elf::Arch;
pub use overlay::Overlay;
use table::{Kind, Partition, SECTOR};

/// Binaries of the root file system whose ELF header tells the image's architecture.
const ARCH_PROBES: [&str; 5] = [
    "/bin/sh",
    "/usr/bin/env",
    "/bin/busybox",
    "/sbin/init",
    "/lib/systemd/systemd",
];
/// Room kept free in the boot partition beyond what is written (directory entries, the
/// board's own updates).
const SPARE: u64 = 256 * 1024;

/// Where the flashed image goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// The image file itself.
    InPlace,
    /// A new image file; the source is left as it is.
    Out(PathBuf),
    /// A block device (an SD card), written whole.
    Device(PathBuf),
}

/// What to write.
#[derive(Debug)]
pub struct Request<'a> {
    pub image: &'a Path,
    pub target: Target,
    /// The agent binary, static, for the image's architecture.
    pub agent: AgentSource,
    pub arch: Option<Arch>,
    pub bootstrap: &'a Bootstrap,
}

/// Where the agent binary comes from.
#[derive(Clone, Debug)]
pub enum AgentSource {
    /// `--agent PATH`.
    File(PathBuf),
    /// `--agent-dir DIR`: `DIR/<target triple>/shoal-agent`, as `cross/build` writes them.
    Dir(PathBuf),
}

/// What was done.
#[derive(Debug)]
pub struct Report {
    pub arch: Arch,
    /// Whether the architecture was read from the image (not given).
    pub detected: Option<String>,
    pub boot: Partition,
    pub agent: PathBuf,
    pub files: Vec<String>,
    /// The hook used: `user-data` or `cmdline.txt`.
    pub hook: &'static str,
    pub changed_bytes: u64,
    pub written_to: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum FlashError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{image}: {reason}; nothing was changed")]
    Image { image: PathBuf, reason: String },
    #[error("{0}; nothing was changed")]
    Refused(String),
    #[error("{device}: {reason}")]
    Verify { device: PathBuf, reason: String },
}

fn read_failed(path: &Path) -> impl Fn(std::io::Error) -> FlashError + '_ {
    move |source| FlashError::Read {
        path: path.to_owned(),
        source,
    }
}

fn write_failed(path: &Path) -> impl Fn(std::io::Error) -> FlashError + '_ {
    move |source| FlashError::Write {
        path: path.to_owned(),
        source,
    }
}

/// Flashes as `request` says; changes nothing unless everything checked out.
pub fn flash(request: &Request<'_>) -> Result<Report, FlashError> {
    let image = request.image;
    let bad = |reason: String| FlashError::Image {
        image: image.to_owned(),
        reason,
    };
    let mut file = File::open(image).map_err(read_failed(image))?;
    let len = file.metadata().map_err(read_failed(image))?.len();
    let mut head = Vec::new();
    (&mut file)
        .take(2 * SECTOR + 1024 * 128)
        .read_to_end(&mut head)
        .map_err(read_failed(image))?;
    let partitions = table::read(&head, len).map_err(|e| bad(e.to_string()))?;
    let boot = *partitions
        .iter()
        .find(|p| p.kind == Kind::Fat)
        .ok_or_else(|| bad("it has no FAT boot partition".into()))?;
    let root = partitions.iter().find(|p| p.kind == Kind::Linux).copied();

    // The architecture, and where the device mounts its boot partition.
    let root_fs = root.map(|p| open_ext4(image, p));
    let (arch, detected) = match (request.arch, &root_fs) {
        (Some(arch), _) => (arch, None),
        (None, Some(Ok(fs))) => {
            let (arch, probe) = detect_arch(fs).map_err(bad)?;
            (arch, Some(probe))
        }
        (None, Some(Err(reason))) => {
            return Err(bad(format!(
                "cannot tell its architecture: its root file system cannot be read ({reason}); pass --arch"
            )))
        }
        (None, None) => {
            return Err(bad(
                "cannot tell its architecture: it has no Linux root partition; pass --arch".into(),
            ))
        }
    };
    let device_boot = match &root_fs {
        Some(Ok(fs)) if fs.exists("/boot/firmware").unwrap_or(false) => "/boot/firmware",
        _ => "/boot",
    };

    // The agent.
    let agent_path = match &request.agent {
        AgentSource::File(path) => path.clone(),
        AgentSource::Dir(dir) => dir.join(arch.triple()).join("shoal-agent"),
    };
    let agent = std::fs::read(&agent_path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            FlashError::Refused(format!(
                "no agent binary at {} (build it with `cross/build {}`, or pass --agent PATH)",
                agent_path.display(),
                arch.as_str()
            ))
        } else {
            read_failed(&agent_path)(e)
        }
    })?;
    let elf = elf::read(&agent)
        .map_err(|e| FlashError::Refused(format!("the agent {}: {e}", agent_path.display())))?;
    if elf.arch != arch {
        return Err(FlashError::Refused(format!(
            "the agent {} is built for {}, but the image is {}: use `cross/build {}`'s agent",
            agent_path.display(),
            elf.arch.as_str(),
            arch.as_str(),
            arch.as_str()
        )));
    }
    if elf.dynamic {
        return Err(FlashError::Refused(format!(
            "the agent {} is dynamically linked and would not start on the device: use a static build (`cross/build {}`)",
            agent_path.display(),
            arch.as_str()
        )));
    }

    // The boot partition, changed in memory only.
    let source = File::open(image).map_err(read_failed(image))?;
    let mut overlay = Overlay::new(source, boot.start, boot.len);
    let (files, hook) = {
        let fs = FileSystem::new(&mut overlay, FsOptions::new()).map_err(|e| {
            bad(format!(
                "partition {} is not a FAT file system it can read ({e})",
                boot.number
            ))
        })?;
        let outcome = write_boot(&fs, &agent, request.bootstrap, device_boot)
            .map_err(|reason| bad(format!("partition {}: {reason}", boot.number)))?;
        fs.unmount()
            .map_err(|e| bad(format!("partition {}: {e}", boot.number)))?;
        outcome
    };
    let changed: Vec<(u64, Vec<u8>)> = overlay
        .dirty()
        .map(|(at, bytes)| (boot.start + at, bytes.to_vec()))
        .collect();
    let changed_bytes = changed.iter().map(|(_, b)| b.len() as u64).sum();

    let written_to = match &request.target {
        Target::InPlace => {
            write_blocks(image, &changed)?;
            image.to_owned()
        }
        Target::Out(out) => {
            let partial = out.with_extension("partial");
            std::fs::copy(image, &partial).map_err(write_failed(&partial))?;
            write_blocks(&partial, &changed)?;
            std::fs::rename(&partial, out).map_err(write_failed(out))?;
            out.clone()
        }
        Target::Device(device) => {
            write_device(image, len, device, &changed)?;
            device.clone()
        }
    };
    Ok(Report {
        arch,
        detected,
        boot,
        agent: agent_path,
        files,
        hook,
        changed_bytes,
        written_to,
    })
}

/// A Linux root partition of `image`, read with `ext4-view`.
fn open_ext4(image: &Path, partition: Partition) -> Result<ext4_view::Ext4, String> {
    let file = File::open(image).map_err(|e| e.to_string())?;
    ext4_view::Ext4::load(Box::new(Region {
        file,
        start: partition.start,
        len: partition.len,
    }))
    .map_err(|e| e.to_string())
}

/// The image's architecture from the first binary of [`ARCH_PROBES`] it has.
fn detect_arch(fs: &ext4_view::Ext4) -> Result<(Arch, String), String> {
    for probe in ARCH_PROBES {
        let Ok(file) = fs.open(probe) else { continue };
        let mut head = vec![0u8; 4096];
        let mut file = file;
        let mut filled = 0;
        while filled < head.len() {
            match file.read_bytes(&mut head[filled..]) {
                Ok(0) | Err(_) => break,
                Ok(n) => filled += n,
            }
        }
        head.truncate(filled);
        if let Ok(elf) = elf::read(&head) {
            return Ok((elf.arch, probe.to_string()));
        }
    }
    Err(format!(
        "cannot tell its architecture: none of {} in its root file system is an ELF binary of x86_64, aarch64 or armv7; pass --arch",
        ARCH_PROBES.join(", ")
    ))
}

/// A partition of a file, for `ext4-view`.
struct Region {
    file: File,
    start: u64,
    len: u64,
}

impl ext4_view::Ext4Read for Region {
    fn read(
        &mut self,
        start_byte: u64,
        dst: &mut [u8],
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync + 'static>> {
        let end = start_byte.checked_add(dst.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return Err("a read beyond the partition's end".into());
        }
        self.file.seek(SeekFrom::Start(self.start + start_byte))?;
        self.file.read_exact(dst)?;
        Ok(())
    }
}

type Fat<'a> = FileSystem<&'a mut Overlay<File>>;

/// Writes Shoal's files and edits the board's; returns the files written and the hook.
fn write_boot(
    fs: &Fat<'_>,
    agent: &[u8],
    bootstrap: &Bootstrap,
    device_boot: &str,
) -> Result<(Vec<String>, &'static str), String> {
    let root = fs.root_dir();
    let read = |name: &str| -> Result<Option<String>, String> {
        match root.open_file(name) {
            Ok(mut file) => {
                let mut text = String::new();
                (&mut file)
                    .take(1 << 20)
                    .read_to_string(&mut text)
                    .map_err(|e| format!("cannot read {name}: {e}"))?;
                Ok(Some(text))
            }
            Err(_) => Ok(None),
        }
    };
    let user_data = read("user-data")?;
    let cmdline = read("cmdline.txt")?;
    let (user_data, cmdline, hook) = match (&user_data, &cmdline) {
        (Some(text), cmdline) => (
            Some(cloud_init::user_data(text)?),
            cmdline.as_deref().map(|c| files::cmdline(c, None)).transpose()?,
            "user-data",
        ),
        (None, Some(text)) => (None, Some(files::cmdline(text, Some(device_boot))?), "cmdline.txt"),
        (None, None) => {
            return Err(
                "it has neither cmdline.txt nor user-data: this is not a boot partition the first-boot hook knows (a Raspberry Pi's, or one cloud-init reads)"
                    .into(),
            )
        }
    };
    let bootstrap = bootstrap.render();
    let mut writes: Vec<(String, &[u8])> = vec![
        (files::AGENT.to_string(), agent),
        (files::BOOTSTRAP.to_string(), bootstrap.as_bytes()),
        (
            files::FIRSTBOOT_FILE.to_string(),
            files::FIRSTBOOT.as_bytes(),
        ),
        (files::UNIT_FILE.to_string(), files::UNIT.as_bytes()),
    ];
    if let Some(text) = &cmdline {
        writes.push(("cmdline.txt".into(), text.as_bytes()));
    }
    if let Some(text) = &user_data {
        writes.push(("user-data".into(), text.as_bytes()));
    }

    // Room: what is written, in clusters, against what is free plus what it replaces.
    let stats = fs
        .stats()
        .map_err(|e| format!("cannot read its free space: {e}"))?;
    let cluster = u64::from(stats.cluster_size());
    let clusters = |n: u64| n.div_ceil(cluster.max(1)) * cluster;
    let needed: u64 = writes
        .iter()
        .map(|(_, b)| clusters(b.len() as u64))
        .sum::<u64>()
        + SPARE;
    let mut freed = 0;
    for (name, _) in &writes {
        if let Ok(file) = root.open_file(name) {
            let mut file = file;
            freed += clusters(file.seek(SeekFrom::End(0)).unwrap_or(0));
        }
    }
    let free = u64::from(stats.free_clusters()) * cluster + freed;
    if free < needed {
        return Err(format!(
            "too little room in the boot partition: {} KiB free, {} KiB needed for the agent and its files",
            free / 1024,
            needed / 1024
        ));
    }

    let mut written = Vec::new();
    for (name, bytes) in &writes {
        let mut file = root
            .create_file(name)
            .map_err(|e| format!("cannot create {name}: {e}"))?;
        file.truncate()
            .and_then(|()| file.write_all(bytes))
            .and_then(|()| file.flush())
            .map_err(|e| format!("cannot write {name}: {e}"))?;
        written.push(name.clone());
    }
    Ok((written, hook))
}

/// Writes `blocks` (offset, bytes) into the file at `path`, and syncs it.
fn write_blocks(path: &Path, blocks: &[(u64, Vec<u8>)]) -> Result<(), FlashError> {
    let failed = write_failed(path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(&failed)?;
    for (at, bytes) in blocks {
        file.seek(SeekFrom::Start(*at)).map_err(&failed)?;
        file.write_all(bytes).map_err(&failed)?;
    }
    file.sync_all().map_err(&failed)
}

/// Writes the whole image, with `blocks` laid over it, onto `device`; then reads it back
/// and compares.
fn write_device(
    image: &Path,
    len: u64,
    device: &Path,
    blocks: &[(u64, Vec<u8>)],
) -> Result<(), FlashError> {
    if let Some(mount) = mounted(device).map_err(read_failed(Path::new("/proc/self/mountinfo")))? {
        return Err(FlashError::Refused(format!(
            "{} is mounted ({mount}): unmount it first",
            device.display()
        )));
    }
    let mut target = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(device)
        .map_err(write_failed(device))?;
    let size = target.seek(SeekFrom::End(0)).map_err(read_failed(device))?;
    if size < len {
        return Err(FlashError::Refused(format!(
            "{} holds {size} bytes, less than the image's {len}",
            device.display()
        )));
    }
    let expected = copy_with(image, len, blocks, |at, chunk| {
        target.seek(SeekFrom::Start(at))?;
        target.write_all(chunk)
    })
    .map_err(write_failed(device))?;
    target.sync_all().map_err(write_failed(device))?;
    drop(target);
    // Read back what is now on the device.
    let mut back = File::open(device).map_err(read_failed(device))?;
    let mut digest = sha2::Sha256::default();
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
        back.read_exact(&mut buf[..n])
            .map_err(read_failed(device))?;
        sha2::Digest::update(&mut digest, &buf[..n]);
        left -= n as u64;
    }
    let found: [u8; 32] = sha2::Digest::finalize(digest).into();
    if found != expected {
        return Err(FlashError::Verify {
            device: device.to_owned(),
            reason: "what was read back differs from what was written: the card may be failing"
                .into(),
        });
    }
    Ok(())
}

/// Streams the image with `blocks` laid over it through `write(offset, chunk)`; returns the
/// SHA-256 of what was streamed.
fn copy_with(
    image: &Path,
    len: u64,
    blocks: &[(u64, Vec<u8>)],
    mut write: impl FnMut(u64, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<[u8; 32]> {
    let mut source = File::open(image)?;
    let mut digest = sha2::Sha256::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < len {
        let n = usize::try_from((len - at).min(buf.len() as u64)).unwrap_or(buf.len());
        source.read_exact(&mut buf[..n])?;
        for (offset, bytes) in blocks {
            let (start, end) = (*offset, *offset + bytes.len() as u64);
            let (lo, hi) = (start.max(at), end.min(at + n as u64));
            if lo < hi {
                let dst = usize::try_from(lo - at).unwrap_or(0);
                let src = usize::try_from(lo - start).unwrap_or(0);
                let count = usize::try_from(hi - lo).unwrap_or(0);
                buf[dst..dst + count].copy_from_slice(&bytes[src..src + count]);
            }
        }
        write(at, &buf[..n])?;
        sha2::Digest::update(&mut digest, &buf[..n]);
        at += n as u64;
    }
    Ok(sha2::Digest::finalize(digest).into())
}

/// Where `device` or one of its partitions is mounted, if anywhere.
fn mounted(device: &Path) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::MetadataExt;
    let rdev = std::fs::metadata(device)?.rdev();
    let (major, minor) = (libc_major(rdev), libc_minor(rdev));
    let name = device
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let info = std::fs::read_to_string("/proc/self/mountinfo")?;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let (Some(ids), Some(point)) = (fields.get(2), fields.get(4)) else {
            continue;
        };
        let source = line
            .split(" - ")
            .nth(1)
            .and_then(|rest| rest.split(' ').nth(1))
            .unwrap_or_default();
        let same = ids
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse::<u64>().ok()?, b.parse::<u64>().ok()?)))
            .is_some_and(|(a, b)| a == major && b == minor);
        let partition = source
            .strip_prefix("/dev/")
            .and_then(|s| s.strip_prefix(name.as_str()))
            .is_some_and(|rest| {
                // sda1 after sda; loop0p1 and mmcblk0p1 after a name ending in a digit.
                let rest = if name.ends_with(|c: char| c.is_ascii_digit()) {
                    match rest.strip_prefix('p') {
                        Some(rest) => rest,
                        None => return false,
                    }
                } else {
                    rest
                };
                !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit())
            });
        if same || partition {
            return Ok(Some(format!("{source} on {point}")));
        }
    }
    Ok(None)
}

fn libc_major(dev: u64) -> u64 {
    ((dev >> 32) & 0xffff_f000) | ((dev >> 8) & 0x0000_0fff)
}

fn libc_minor(dev: u64) -> u64 {
    ((dev >> 12) & 0xffff_ff00) | (dev & 0x0000_00ff)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    /// An MBR image with one small FAT12 boot partition holding `cmdline.txt`.
    fn small_image() -> Vec<u8> {
        let sectors: u64 = 2000;
        let mut fat = Cursor::new(vec![0u8; (sectors * SECTOR) as usize]);
        fatfs::format_volume(&mut fat, fatfs::FormatVolumeOptions::new()).expect("format");
        {
            let fs = FileSystem::new(&mut fat, FsOptions::new()).expect("open");
            fs.root_dir()
                .create_file("cmdline.txt")
                .and_then(|mut f| f.write_all(b"root=/dev/mmcblk0p2 rootwait\n"))
                .expect("cmdline.txt");
            fs.unmount().expect("unmount");
        }
        let mut image = vec![0u8; 512];
        image[446 + 4] = 0x0c;
        image[446 + 8..446 + 12].copy_from_slice(&1u32.to_le_bytes());
        image[446 + 12..446 + 16].copy_from_slice(&(sectors as u32).to_le_bytes());
        image[510] = 0x55;
        image[511] = 0xAA;
        image.extend_from_slice(fat.get_ref());
        image
    }

    fn tiny_agent() -> Vec<u8> {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 62;
        elf
    }

    fn bootstrap() -> Bootstrap {
        Bootstrap {
            hub: "https://hub.example:7440".parse().expect("url"),
            token: None,
            labels: Default::default(),
        }
    }

    fn flash_bytes(dir: &Path, bytes: &[u8], agent: &[u8]) -> Result<Report, FlashError> {
        let image = dir.join("image.img");
        let agent_path = dir.join("agent");
        std::fs::write(&image, bytes).expect("image");
        std::fs::write(&agent_path, agent).expect("agent");
        flash(&Request {
            image: &image,
            target: Target::InPlace,
            agent: AgentSource::File(agent_path),
            arch: Some(Arch::X86_64),
            bootstrap: &bootstrap(),
        })
    }

    #[test]
    fn a_small_fat12_image_is_flashed_and_without_room_is_refused_unchanged() {
        let dir = tempfile::tempdir().expect("dir");
        let report = flash_bytes(dir.path(), &small_image(), &tiny_agent()).expect("flashed");
        assert_eq!(report.hook, "cmdline.txt");
        let mut big = tiny_agent();
        big.resize(1024 * 1024, 0);
        let before = small_image();
        let error = flash_bytes(dir.path(), &before, &big).expect_err("no room");
        assert!(error.to_string().contains("too little room"), "{error}");
        assert_eq!(
            std::fs::read(dir.path().join("image.img")).expect("image"),
            before
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]
        /// A damaged image (bytes changed anywhere) is flashed or refused, never a panic, and
        /// a refusal leaves it as it was.
        #[test]
        fn a_damaged_image_is_flashed_or_refused_unchanged(
            // Half of the edits land in the table, the boot sector, the FATs and the root
            // folder, where a FAT reader is most easily led astray.
            edits in proptest::collection::vec(
                (proptest::prop_oneof![0usize..(512 + 8192), 0usize..(2001 * 512)], proptest::num::u8::ANY),
                1..24,
            ),
        ) {
            let mut bytes = small_image();
            for (at, value) in edits {
                bytes[at] = value;
            }
            let dir = tempfile::tempdir().expect("dir");
            if let Err(error) = flash_bytes(dir.path(), &bytes, &tiny_agent()) {
                let now = std::fs::read(dir.path().join("image.img")).expect("image");
                proptest::prop_assert_eq!(now, bytes, "{}", error);
            }
        }
    }
}
