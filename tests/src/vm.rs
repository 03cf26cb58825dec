//! A virtual machine like a small board: Debian's kernel under `qemu-system-x86_64` or
//! `qemu-system-aarch64` (TCG; [`Arch`]), 512 MiB, 2 vCPUs, cgroup v2 alone, with the static
//! device build of `shoal-agent` for that architecture on an ext4 data disk. The kernel and
//! initramfs come from `cross/vm/build-image ARCH` (cached outside the clone); the agent from
//! `cross/build ARCH` (cached in the cross target dir, which `cross/ci-check` then finds built).
//!
//! ```text
//!  test ── shoal serve on 10.X.Y.1 ── veth svmPIDah ═══ svmPIDan ── bridge br0 ── tap0 ── VM eth0 10.X.Y.2
//!                                    (root namespace)  (namespace svmPIDa, made by the test)
//! ```
//!
//! The test drives the VM through a shell on a virtio console (hvc0, a Unix socket here),
//! which needs no network, so it keeps working with the link cut and across a reset; the
//! serial port is the kernel's console, kept in `console.log` and printed when the VM does
//! not come up in time. A reset through QMP (`system_reset`) is the power cut: the guest loses
//! its page cache, its tmpfs run dir and every process; the disk keeps what was flushed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use crate::agent::{busybox_archive, parse_table, Row, BUSYBOX};
use crate::fleet::{free_subnet, ip};
use crate::images::{busybox_layer_of, Image, OciLayout};
use crate::{clean_cargo_env, workspace};

/// What the VM's shell on hvc0 prints when it starts reading commands (cross/vm/init).
const SHELL_BANNER: &str = "@@shoal-vm-shell@@";

/// How long a VM may take from `qemu` to "ready" (about 4 s idle here, x86_64 or aarch64;
/// TCG on a loaded two-core machine is several times slower).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(120);

/// The guest's architecture: which Debian kernel and busybox, which QEMU, which agent build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arch {
    X86_64,
    Aarch64,
}

impl Arch {
    /// Debian's name, which OCI platforms use too (`amd64`, `arm64`).
    pub fn debian(self) -> &'static str {
        match self {
            Arch::X86_64 => "amd64",
            Arch::Aarch64 => "arm64",
        }
    }

    /// The kernel's name (`uname -m`), which `cross/build` takes.
    pub fn machine(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64",
            Arch::Aarch64 => "aarch64",
        }
    }

    fn triple(self) -> &'static str {
        match self {
            Arch::X86_64 => "x86_64-unknown-linux-musl",
            Arch::Aarch64 => "aarch64-unknown-linux-musl",
        }
    }

    /// The QEMU binary and the Debian package that has it.
    fn qemu(self) -> (&'static str, &'static str) {
        match self {
            Arch::X86_64 => ("qemu-system-x86_64", "qemu-system-x86"),
            Arch::Aarch64 => ("qemu-system-aarch64", "qemu-system-arm"),
        }
    }

    /// The machine and CPU: a PC, or the generic `virt` board with a Cortex-A53 (the core
    /// of a Raspberry Pi 3 and many gateways; `max` emulates pointer authentication and
    /// more, which costs TCG time and no board needs).
    ///
    /// Both vCPUs run in one host thread (`thread=single`), not one thread each: with
    /// multi-threaded TCG (QEMU 7.2, Debian 12's) a CI run once froze the x86_64 guest with
    /// both CPUs in soft lockups, one in a shim and one in youki's intermediate process while
    /// containers started (the signature of a cross-CPU call, such as a TLB shootdown, that
    /// never completes). One thread takes one host core of two, and the guest stays SMP.
    fn machine_args(self) -> &'static [&'static str] {
        match self {
            Arch::X86_64 => &["-accel", "tcg,thread=single", "-cpu", "max"],
            Arch::Aarch64 => &[
                "-M",
                "virt",
                "-accel",
                "tcg,thread=single",
                "-cpu",
                "cortex-a53",
            ],
        }
    }

    /// The serial port the kernel's console is on (the PC's 16550, the virt board's PL011).
    fn serial_console(self) -> &'static str {
        match self {
            Arch::X86_64 => "ttyS0",
            Arch::Aarch64 => "ttyAMA0",
        }
    }

    fn index(self) -> usize {
        match self {
            Arch::X86_64 => 0,
            Arch::Aarch64 => 1,
        }
    }
}

/// Where the agent keeps its data inside the VM (the ext4 disk) and its run dir (tmpfs).
pub const DATA_MOUNT: &str = "/var/lib/shoal";
pub const AGENT: &str = "/var/lib/shoal/bin/shoal-agent";
pub const CONFIG: &str = "/var/lib/shoal/agent.toml";
pub const SOCKET: &str = "/run/shoal/agent.sock";
/// The test image inside the VM, imported with `shoal-agent images import`.
pub const BUSYBOX_ARCHIVE: &str = "/var/lib/shoal/images/busybox.tar";

/// The kernel, initramfs and busybox directory of `arch`, built (or found cached) once per
/// test process.
pub fn image(arch: Arch) -> &'static Path {
    static IMAGES: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    IMAGES[arch.index()].get_or_init(|| {
        let start = Instant::now();
        let script = workspace().join("cross/vm/build-image");
        let out = Command::new(&script)
            .arg(arch.debian())
            .stderr(Stdio::inherit())
            .output()
            .expect("run cross/vm/build-image");
        assert!(
            out.status.success(),
            "cross/vm/build-image {} failed",
            arch.debian()
        );
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        eprintln!(
            "[vm image {}: {} ms]\n{}",
            dir.display(),
            start.elapsed().as_millis(),
            std::fs::read_to_string(dir.join("info")).unwrap_or_default()
        );
        dir
    })
}

/// The static `shoal-agent` for `arch` (`cross/build ARCH`, the `device` profile), built once
/// per test process from this tree, into the target dir `cross/ci-check` builds in too (CI
/// exports one `CARGO_TARGET_DIR` for both, so the second finds the build done).
pub fn device_agent(arch: Arch) -> &'static Path {
    static AGENT_BINARIES: [OnceLock<PathBuf>; 2] = [OnceLock::new(), OnceLock::new()];
    AGENT_BINARIES[arch.index()].get_or_init(|| {
        let start = Instant::now();
        let mut command = Command::new(workspace().join("cross/build"));
        clean_cargo_env(&mut command);
        let status = command
            .arg(arch.machine())
            .stdout(Stdio::null())
            .status()
            .expect("run cross/build");
        assert!(status.success(), "cross/build {} failed", arch.machine());
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
            || PathBuf::from("/var/cache/shoal/cross-target"),
            PathBuf::from,
        );
        let binary = target.join(format!("dist/{}/shoal-agent", arch.triple()));
        assert!(binary.exists(), "cross/build made no {}", binary.display());
        eprintln!(
            "[device agent {}: {} ms]",
            binary.display(),
            start.elapsed().as_millis()
        );
        binary
    })
}

/// The busybox test image for a VM of `arch`, as an OCI archive, built once per test process.
/// x86_64: the host's busybox ([`busybox_archive`]). aarch64: a multi-arch index of the
/// host's amd64 busybox and the guest's arm64 one (Debian's busybox-static of that
/// architecture, from the VM image), so the agent has to pick its own platform; a wrong pick
/// could not run there.
pub fn guest_busybox_archive(arch: Arch) -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    match arch {
        Arch::X86_64 => busybox_archive(),
        Arch::Aarch64 => ARCHIVE.get_or_init(|| {
            let busybox = std::fs::read(image(arch).join("busybox"))
                .expect("the VM image's busybox (cross/vm/build-image)");
            let dir = std::env::temp_dir().join(format!(
                "shoal-vm-image-{}-{}",
                arch.debian(),
                std::process::id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let mut layout = OciLayout::create(&dir.join("layout"));
            let guest = Image::new(vec![busybox_layer_of(busybox)])
                .platform(arch.debian(), Some("v8"))
                .cmd(&["/bin/sh"]);
            let host = Image::new(vec![crate::images::busybox_layer()])
                .platform("amd64", None)
                .cmd(&["/bin/sh"]);
            let manifests = [layout.add_image(&host), layout.add_image(&guest)];
            let index = layout.add_index(&manifests);
            layout.tag(BUSYBOX, &index);
            let archive = dir.join("busybox.tar");
            layout.to_tar(&archive);
            archive
        }),
    }
}

/// The test's network namespace with a bridge joining the VM's tap device and a veth whose
/// other end, in the root namespace, holds the hub's address.
#[derive(Debug)]
pub struct Link {
    pub namespace: String,
    /// The veth end in the root namespace.
    pub host_side: String,
    /// `10.X.Y`: the host end is `.1`, the VM `.2`.
    pub subnet: String,
}

impl Link {
    fn create() -> Link {
        // One at a time, so that each VM of this process gets its own name and a subnet the
        // previous one's route already marks as taken.
        static CREATING: Mutex<u32> = Mutex::new(0);
        let mut made = CREATING.lock().unwrap_or_else(|e| e.into_inner());
        *made += 1;
        let tag = format!(
            "svm{}{}",
            std::process::id(),
            char::from(b'a' + (*made % 26) as u8)
        );
        let namespace = tag.clone();
        let host_side = format!("{tag}h");
        let inside = format!("{tag}n");
        let subnet = free_subnet();
        let link = Link {
            namespace: namespace.clone(),
            host_side: host_side.clone(),
            subnet: subnet.clone(),
        };
        link.remove();
        ip(&["netns", "add", &namespace]);
        let ns = |args: &[&str]| {
            let mut all = vec!["-n", namespace.as_str()];
            all.extend_from_slice(args);
            ip(&all);
        };
        ip(&[
            "link", "add", &host_side, "type", "veth", "peer", "name", &inside,
        ]);
        ip(&["link", "set", &inside, "netns", &namespace]);
        ip(&["addr", "add", &format!("{subnet}.1/24"), "dev", &host_side]);
        ip(&["link", "set", &host_side, "up"]);
        ns(&["link", "add", "br0", "type", "bridge"]);
        ns(&["tuntap", "add", "dev", "tap0", "mode", "tap"]);
        ns(&["link", "set", "tap0", "master", "br0"]);
        ns(&["link", "set", &inside, "master", "br0"]);
        for dev in ["lo", "br0", "tap0", inside.as_str()] {
            ns(&["link", "set", dev, "up"]);
        }
        link
    }

    pub fn host_address(&self) -> String {
        format!("{}.1", self.subnet)
    }

    pub fn vm_address(&self) -> String {
        format!("{}.2", self.subnet)
    }

    /// Cuts the VM off the hub (its tap device down), as a pulled cable would.
    pub fn cut(&self) {
        ip(&["-n", &self.namespace, "link", "set", "tap0", "down"]);
    }

    pub fn restore(&self) {
        ip(&["-n", &self.namespace, "link", "set", "tap0", "up"]);
    }

    fn remove(&self) {
        for args in [
            vec!["netns", "del", self.namespace.as_str()],
            vec!["link", "del", self.host_side.as_str()],
        ] {
            let _ = Command::new("ip")
                .args(&args)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.remove();
    }
}

/// What the shell on hvc0 has printed so far, filled by a reader thread.
#[derive(Clone, Debug, Default)]
struct Transcript(Arc<Mutex<Vec<u8>>>);

impl Transcript {
    fn len(&self) -> usize {
        self.0.lock().map_or(0, |b| b.len())
    }

    fn since(&self, offset: usize) -> String {
        self.0.lock().map_or_else(
            |_| String::new(),
            |b| String::from_utf8_lossy(b.get(offset..).unwrap_or_default()).into_owned(),
        )
    }
}

/// Where a file given to [`Vm::boot_with`] goes on the data disk, relative to [`DATA_MOUNT`].
pub type DiskFile<'a> = (&'a Path, &'a str);

/// One VM, its disk, its link and the QEMU process. Dropped: QEMU killed, the namespace and
/// veth removed, the directory deleted unless the test panicked (then it is kept and named).
#[derive(Debug)]
pub struct Vm {
    pub name: String,
    pub arch: Arch,
    pub dir: PathBuf,
    pub link: Link,
    qemu: Option<Child>,
    shell: Option<UnixStream>,
    transcript: Transcript,
    commands: u64,
    boots: usize,
    /// How long each boot took, QEMU start (or reset) to "ready".
    pub boot_times: Vec<Duration>,
    /// One VM at a time per test process: two TCG guests of 2 vCPUs each on a 2-core machine
    /// starve each other's kernels (RCU stalls, soft lockups, a shell that answers in minutes).
    _serial: MutexGuard<'static, ()>,
}

/// Held by the VM that runs; see [`Vm::_serial`].
static SERIAL: Mutex<()> = Mutex::new(());

impl Vm {
    /// An x86_64 VM: [`Vm::boot_with`] with no extra files.
    pub fn boot(name: &str) -> Vm {
        Vm::boot_with(Arch::X86_64, name, &[])
    }

    /// Makes the data disk (the device agent of `arch`, `agent.toml` for node `name`, the
    /// busybox test image at [`BUSYBOX_ARCHIVE`], and `files`) and boots the VM.
    pub fn boot_with(arch: Arch, name: &str, files: &[DiskFile]) -> Vm {
        // A test that panicked while holding the lock poisons it; its VM is gone anyway.
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let image = image(arch).to_path_buf();
        let agent = device_agent(arch).to_path_buf();
        let dir = std::env::temp_dir().join(format!("shoal-vm-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let stage = dir.join("disk");
        for sub in ["bin", "images"] {
            std::fs::create_dir_all(stage.join(sub)).expect("the disk's staging dir");
        }
        std::fs::copy(&agent, stage.join("bin/shoal-agent")).expect("copy the device agent");
        std::fs::copy(
            guest_busybox_archive(arch),
            stage.join("images/busybox.tar"),
        )
        .expect("copy the test image");
        for (from, to) in files {
            let to = stage.join(to);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).expect("a dir on the disk's staging dir");
            }
            std::fs::copy(from, &to)
                .unwrap_or_else(|e| panic!("copy {} to the disk: {e}", from.display()));
        }
        std::fs::write(
            stage.join("agent.toml"),
            format!(
                "node_name = \"{name}\"\ndata_dir = \"{DATA_MOUNT}/data\"\nrun_dir = \"/run/shoal\"\n[logs]\nmax_bytes = \"64Ki\"\n"
            ),
        )
        .expect("write agent.toml");
        let disk = dir.join("disk.img");
        let file = std::fs::File::create(&disk).expect("create disk.img");
        file.set_len(512 << 20).expect("size disk.img");
        let out = Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "shoal-data", "-d"])
            .arg(&stage)
            .arg(&disk)
            .output()
            .expect("run mkfs.ext4 (apt-get install e2fsprogs)");
        assert!(
            out.status.success(),
            "mkfs.ext4 failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&stage);

        let link = Link::create();
        let mut vm = Vm {
            name: name.to_string(),
            arch,
            dir,
            link,
            qemu: None,
            shell: None,
            transcript: Transcript::default(),
            commands: 0,
            boots: 0,
            boot_times: Vec::new(),
            _serial: serial,
        };
        vm.start_qemu(&image, &disk);
        vm
    }

    fn start_qemu(&mut self, image: &Path, disk: &Path) {
        let append = format!(
            "console={} panic=-1 quiet cgroup_no_v1=all systemd.unified_cgroup_hierarchy=1 \
             shoal.ip={}/24",
            self.arch.serial_console(),
            self.link.vm_address()
        );
        let console = self.dir.join("console.log");
        let start = Instant::now();
        let (qemu, package) = self.arch.qemu();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.link.namespace, qemu])
            .args(self.arch.machine_args())
            .args(["-m", "512", "-smp", "2"])
            // No -no-reboot: it would make `system_reset` (the power cut) end QEMU.
            .args(["-nographic", "-nodefaults", "-display", "none"])
            .arg("-kernel")
            .arg(image.join("vmlinuz"))
            .arg("-initrd")
            .arg(image.join("initrd.gz"))
            .args(["-append", &append])
            .arg("-drive")
            .arg(format!(
                "file={},format=raw,if=virtio,cache=writeback",
                disk.display()
            ))
            .args(["-netdev", "tap,id=net0,ifname=tap0,script=no,downscript=no"])
            // No option ROM: iPXE would only slow the boot.
            .args(["-device", "virtio-net-pci,netdev=net0,romfile="])
            .arg("-serial")
            .arg(format!("file:{}", console.display()))
            .arg("-chardev")
            .arg(format!(
                "socket,id=shell,path={},server=on,wait=off",
                self.dir.join("shell.sock").display()
            ))
            .args(["-device", "virtio-serial-pci"])
            .args(["-device", "virtconsole,chardev=shell"])
            .arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                self.dir.join("qmp.sock").display()
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.join("qemu.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("start {qemu} (apt-get install {package}): {e}"));
        self.qemu = Some(child);
        // Connected at once: QEMU drops what the serial port prints while no one listens.
        self.connect_shell(start);
        self.wait_ready(start);
        self.wait_shell();
    }

    /// The console so far (kernel messages, the init's lines).
    pub fn console(&self) -> String {
        std::fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// Waits for one more "shoal-vm: ready" line on the console than boots so far.
    fn wait_ready(&mut self, start: Instant) {
        loop {
            let readies = self.console().matches("shoal-vm: ready").count();
            if readies > self.boots {
                self.boots = readies;
                self.boot_times.push(start.elapsed());
                eprintln!(
                    "[vm {} boot {}: {} ms]",
                    self.name,
                    self.boots,
                    start.elapsed().as_millis()
                );
                return;
            }
            if let Some(Ok(Some(status))) = self.qemu.as_mut().map(Child::try_wait) {
                panic!(
                    "qemu exited with {status}:\n{}\nconsole:\n{}",
                    std::fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default(),
                    self.console()
                );
            }
            assert!(
                start.elapsed() < BOOT_TIMEOUT,
                "the VM was not ready within {BOOT_TIMEOUT:?}; console:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn connect_shell(&mut self, start: Instant) {
        let path = self.dir.join("shell.sock");
        let stream = loop {
            match UnixStream::connect(&path) {
                Ok(stream) => break stream,
                Err(e) => assert!(
                    start.elapsed() < Duration::from_secs(20),
                    "cannot connect to {}: {e}; qemu says:\n{}",
                    path.display(),
                    std::fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default()
                ),
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        {
            let mut reader = stream.try_clone().expect("clone the shell socket");
            let transcript = self.transcript.clone();
            let log = self.dir.join("shell.log");
            std::thread::spawn(move || {
                let mut log = std::fs::File::create(log).ok();
                let mut buf = [0u8; 4096];
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    if let Some(log) = log.as_mut() {
                        let _ = log.write_all(&buf[..n]);
                    }
                    if let Ok(mut all) = transcript.0.lock() {
                        all.extend_from_slice(&buf[..n]);
                    }
                }
            });
            self.shell = Some(stream);
        }
    }

    fn wait_shell(&mut self) {
        // The shell prints a banner once it reads commands (sent earlier, they could be cut
        // by its change of terminal mode): one per boot.
        let start = Instant::now();
        while self.transcript.since(0).matches(SHELL_BANNER).count() < self.boots {
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "the VM's shell on hvc0 did not start; console:\n{}",
                self.console()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The first command after the banner may sit in the pipe until more input comes: ask
        // until one is answered.
        while self.try_run("true", Duration::from_secs(2)).is_none() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the VM's shell on hvc0 does not answer; console:\n{}",
                self.console()
            );
        }
    }

    /// Runs `script` in the VM's shell (stdin from /dev/null, stderr with stdout) and returns
    /// its exit status and output, or `None` when it did not finish within `timeout`.
    pub fn try_run(&mut self, script: &str, timeout: Duration) -> Option<(i32, String)> {
        self.commands += 1;
        let marker = format!("@@shoal-vm-done-{}@@", self.commands);
        let offset = self.transcript.len();
        let line = format!("{marker} {}\n", base64(script.as_bytes()));
        let shell = self.shell.as_mut().expect("the shell is connected");
        shell
            .write_all(line.as_bytes())
            .expect("write to the VM shell");
        let start = Instant::now();
        loop {
            let text = self.transcript.since(offset);
            let needle = format!("{marker} ");
            if let Some(at) = text.find(&needle) {
                let rest = &text[at + needle.len()..];
                if let Some(end) = rest.find('\n') {
                    let status = rest[..end].trim().parse().unwrap_or(-1);
                    return Some((status, text[..at].to_string()));
                }
            }
            if start.elapsed() > timeout {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs `script` in the VM, which must exit 0 within a minute; returns its output.
    pub fn sh(&mut self, script: &str) -> String {
        self.sh_for(script, Duration::from_secs(60))
    }

    /// As [`Vm::sh`], within `timeout`.
    pub fn sh_for(&mut self, script: &str, timeout: Duration) -> String {
        match self.try_run(script, timeout) {
            Some((0, out)) => out,
            Some((status, out)) => panic!(
                "in the VM, `{script}` exited {status}:\n{out}\nagent log:\n{}",
                self.agent_log_tail()
            ),
            None => panic!(
                "in the VM, `{script}` did not finish within {timeout:?}; console:\n{}",
                self.console()
            ),
        }
    }

    /// Runs a local `shoal-agent` CLI command in the VM, which must succeed.
    pub fn agent(&mut self, args: &str) -> String {
        self.sh(&format!("{AGENT} {args} --socket {SOCKET}"))
    }

    /// Starts `shoal-agent run` in the VM (detached, logging to the data disk) and waits until
    /// it answers. With `at_boot` the VM's init also starts it at every boot, as a service
    /// manager would.
    pub fn start_agent(&mut self, at_boot: bool) {
        let args = format!("run --config {CONFIG}");
        if at_boot {
            // Synced: a service manager's unit file is not written just before a power cut.
            self.sh(&format!("echo '{args}' > {DATA_MOUNT}/autostart && sync"));
        }
        self.sh(&format!(
            "SHOAL_LOG=debug setsid {AGENT} {args} </dev/null >>{DATA_MOUNT}/agent.log 2>&1 &"
        ));
        self.wait_agent();
    }

    /// Waits until the agent answers on its socket.
    pub fn wait_agent(&mut self) {
        let start = Instant::now();
        loop {
            if let Some((0, _)) = self.try_run(
                &format!("{AGENT} ps --socket {SOCKET} >/dev/null"),
                Duration::from_secs(20),
            ) {
                eprintln!("[vm agent answering: {} ms]", start.elapsed().as_millis());
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the agent in the VM does not answer; its log:\n{}",
                self.agent_log_tail()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The agent's PID in the VM, if it runs.
    pub fn agent_pid(&mut self) -> Option<u32> {
        let out = self.try_run(
            "for p in /proc/[0-9]*; do [ \"$(cat $p/cmdline 2>/dev/null | tr '\\0' ' ')\" = \
             \"/var/lib/shoal/bin/shoal-agent run --config /var/lib/shoal/agent.toml \" ] && \
             echo ${p#/proc/}; done; true",
            Duration::from_secs(20),
        )?;
        out.1.lines().find_map(|l| l.trim().parse().ok())
    }

    /// The agent's resident memory in the VM, KiB.
    pub fn agent_rss_kib(&mut self) -> u64 {
        let pid = self.agent_pid().expect("the agent runs in the VM");
        let status = self.sh(&format!("cat /proc/{pid}/status"));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in {status}"))
    }

    /// `kill -9` of the agent (its shims and containers go on).
    pub fn kill9_agent(&mut self) {
        let pid = self.agent_pid().expect("the agent runs in the VM");
        self.sh(&format!("kill -9 {pid}"));
        let start = Instant::now();
        while self.agent_pid().is_some() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the agent survived kill -9"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Imports the busybox test image into the agent.
    pub fn import_busybox(&mut self) {
        self.agent(&format!("images import {BUSYBOX_ARCHIVE}"));
    }

    /// Writes `manifest` into the VM and applies it with the local CLI.
    pub fn apply(&mut self, name: &str, manifest: &str) -> String {
        let path = format!("/tmp/{name}.yaml");
        self.write(&path, manifest);
        self.agent(&format!("apply -f {path}"))
    }

    /// Writes `text` to `path` inside the VM.
    pub fn write(&mut self, path: &str, text: &str) {
        let delimiter = "SHOAL_VM_EOF";
        assert!(!text.contains(delimiter));
        self.sh(&format!(
            "cat > {path} <<'{delimiter}'\n{text}\n{delimiter}"
        ));
    }

    /// `shoal-agent ps` in the VM, parsed.
    pub fn ps(&mut self) -> Vec<Row> {
        parse_table(&self.agent("ps"))
    }

    /// Polls `ps` until `done` holds, for at most `timeout`.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Row]) -> bool,
    ) -> Vec<Row> {
        let start = Instant::now();
        loop {
            let rows = self.ps();
            if done(&rows) {
                eprintln!("[vm {what}: {} ms]", start.elapsed().as_millis());
                return rows;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting in the VM for {what}; last ps:\n{rows:?}\nagent log:\n{}",
                    self.agent_log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The last 80 lines of the agent's log in the VM.
    pub fn agent_log_tail(&mut self) -> String {
        self.try_run(
            &format!("tail -n 80 {DATA_MOUNT}/agent.log"),
            Duration::from_secs(20),
        )
        .map(|(_, out)| out)
        .unwrap_or_else(|| "(the VM shell does not answer)".into())
    }

    /// The whole agent log in the VM.
    pub fn agent_log(&mut self) -> String {
        self.sh(&format!("cat {DATA_MOUNT}/agent.log"))
    }

    /// A power cut: QEMU's `system_reset` (no shutdown, no sync), then the boot that follows,
    /// until the VM's shell answers again.
    pub fn power_cut(&mut self) {
        let start = Instant::now();
        let answer = self.qmp("system_reset");
        assert!(answer.contains("\"return\""), "system_reset: {answer}");
        self.wait_ready(start);
        self.wait_shell();
    }

    /// Runs one QMP command and returns its answer line.
    fn qmp(&self, command: &str) -> String {
        let stream = UnixStream::connect(self.dir.join("qmp.sock")).expect("connect to QMP");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("QMP timeout");
        let mut writer = stream.try_clone().expect("clone the QMP socket");
        let mut reader = BufReader::new(stream);
        let mut line = String::new();
        reader.read_line(&mut line).expect("the QMP greeting");
        let mut answer = |execute: &str| -> String {
            writeln!(writer, "{{\"execute\": \"{execute}\"}}").expect("send to QMP");
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).expect("a QMP answer");
                // Asynchronous events (RESET, ...) may come before the answer.
                if line.contains("\"return\"") || line.contains("\"error\"") || line.is_empty() {
                    return line;
                }
            }
        };
        let capabilities = answer("qmp_capabilities");
        assert!(capabilities.contains("\"return\""), "QMP: {capabilities}");
        answer(command)
    }

    /// Runs a command on the host inside the VM's network namespace.
    pub fn in_namespace(&self, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.link.namespace, program]);
        command
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        if let Some(mut child) = self.qemu.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!(
                "vm {}: console, shell transcript and disk kept in {}",
                self.name,
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Standard base64 with padding, for the VM shell's command lines.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        // (input, expected), from RFC 4648's test vectors.
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (input, expected) in cases {
            assert_eq!(super::base64(input.as_bytes()), expected, "{input:?}");
        }
    }
}
