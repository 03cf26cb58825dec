//! A real `shoal-agent run` in a temporary data dir, driven through its CLI the way an
//! operator would: `apply`, `ps`, `logs`, `delete`, `images import`. It can be killed with
//! SIGKILL and restarted, or put through a simulated power cut.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shoal_model::wire::{
    self, Limits, NodeStatus, RpcRequest, RpcRequestBody, RpcResponse, RpcResponseBody,
};

use crate::binary;
use crate::images::{busybox_layer, Image, OciLayout};

/// The reference the test image is imported under.
pub const BUSYBOX: &str = "localhost/busybox:test";

/// An OCI archive of the busybox test image, built once per test process.
pub fn busybox_archive() -> &'static Path {
    static ARCHIVE: OnceLock<PathBuf> = OnceLock::new();
    ARCHIVE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("shoal-test-image-{}", std::process::id()));
        let layout_dir = dir.join("layout");
        std::fs::create_dir_all(&layout_dir).expect("image dir");
        let mut layout = OciLayout::create(&layout_dir);
        let image = Image::new(vec![busybox_layer()]).cmd(&["/bin/sh"]);
        let descriptor = layout.add_image(&image);
        layout.tag(BUSYBOX, &descriptor);
        let archive = dir.join("busybox.tar");
        layout.to_tar(&archive);
        archive
    })
}

/// One row of `shoal-agent ps`, by column name.
pub type Row = BTreeMap<String, String>;

#[derive(Debug)]
pub struct Agent {
    /// The node's name (`node_name` in agent.toml), which also names its cgroups.
    pub name: String,
    pub root: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    /// The `shoal-agent` that [`Agent::start`] runs and whose CLI talks to it: this tree's,
    /// unless [`Agent::install`] put another one in place.
    pub binary: PathBuf,
    child: Option<Child>,
}

impl Agent {
    /// Writes a config for a fresh agent with its own data and run dirs; not started yet.
    pub fn new(name: &str, extra_config: &str) -> Agent {
        let root = std::env::temp_dir().join(format!("shoal-agent-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("agent dir");
        let config = root.join("agent.toml");
        let text = format!(
            "node_name = \"{name}\"\ndata_dir = \"{data}\"\nrun_dir = \"{run}\"\n{extra_config}\n[logs]\nmax_bytes = \"64Ki\"\n",
            data = root.join("data").display(),
            run = root.join("run").display(),
        );
        std::fs::write(&config, text).expect("write config");
        let socket = root.join("run/agent.sock");
        Agent {
            name: name.to_string(),
            root,
            config,
            socket,
            binary: binary("shoal-agent"),
            child: None,
        }
    }

    /// Like [`Agent::new`] with no `node_name` in agent.toml, as a device that a claim token
    /// enrolls has (the hub names it); `dir` names its directory, and [`Agent::name`] is set
    /// from its enrollment by [`Agent::enrolled_name`].
    pub fn unnamed(dir: &str, extra_config: &str) -> Agent {
        let mut agent = Agent::new(dir, extra_config);
        let text = std::fs::read_to_string(&agent.config).expect("read config");
        let text = text.replacen(&format!("node_name = \"{dir}\"\n"), "", 1);
        std::fs::write(&agent.config, text).expect("write config");
        agent.name = String::new();
        agent
    }

    /// The node name in the agent's `enrollment.toml` (the name its hub gave it), also kept
    /// as [`Agent::name`]; `None` before it enrolled.
    pub fn enrolled_name(&mut self) -> Option<String> {
        let text = std::fs::read_to_string(self.root.join("data/enrollment.toml")).ok()?;
        let line = text.lines().find(|l| l.starts_with("node_name = "))?;
        let name = line
            .trim_start_matches("node_name = ")
            .trim_matches('"')
            .to_string();
        self.name = name.clone();
        Some(name)
    }

    /// Installs `from` as this device's `shoal-agent` (`ROOT/bin/shoal-agent`), as a package
    /// manager does: copied beside it, then renamed over it, so processes still running the
    /// previous file (the agent, its shims) keep it. The next [`Agent::start`] runs the new one.
    pub fn install(&mut self, from: &Path) {
        let dir = self.root.join("bin");
        std::fs::create_dir_all(&dir).expect("the agent's bin dir");
        let installed = dir.join("shoal-agent");
        let partial = dir.join("shoal-agent.partial");
        std::fs::copy(from, &partial)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), partial.display()));
        std::fs::rename(&partial, &installed).expect("install shoal-agent");
        self.binary = installed;
    }

    /// Starts `shoal-agent run` and waits until it answers.
    pub fn start(&mut self) {
        self.start_with(Command::new(&self.binary));
    }

    /// Starts the agent through `command` (for example `unshare --net shoal-agent`), which gets
    /// `run --config ...` appended.
    pub fn start_with(&mut self, command: Command) {
        self.spawn_and_wait(command, &["run"]);
    }

    /// Starts the agent as its systemd unit does, through `shoal-agent launch ARGS...`
    /// (`--config ...` appended), and waits until the agent answers.
    pub fn launch(&mut self, args: &[&str]) {
        self.launch_with(Command::new(&self.binary), args);
    }

    /// As [`Agent::launch`], through `command` (for example `nsenter --net=... shoal-agent`).
    pub fn launch_with(&mut self, command: Command, args: &[&str]) {
        let mut all = vec!["launch"];
        all.extend(args);
        self.spawn_and_wait(command, &all);
    }

    fn spawn_and_wait(&mut self, mut command: Command, subcommand: &[&str]) {
        assert!(self.child.is_none(), "the agent is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("agent log");
        let child = command
            .args(subcommand)
            .arg("--config")
            .arg(&self.config)
            .env("SHOAL_LOG", "debug")
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start shoal-agent run");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.socket.exists() && self.cli(&["ps"]).status.success() {
                return;
            }
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("the agent exited with {status}:\n{}", self.log());
                }
            }
            assert!(
                Instant::now() < deadline,
                "the agent did not answer within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as an OOM killer or a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, as systemd stops a service; returns how long the agent took to exit (it
    /// must not wait for containers, which keep running).
    pub fn terminate(&mut self) -> Duration {
        let mut child = self.child.take().expect("the agent runs");
        let start = Instant::now();
        let pid = child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = start + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return start.elapsed();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the agent ignored SIGTERM for 60 s:\n{}", self.log_tail());
    }

    /// A power cut: the agent, every shim and container of this agent (`pids`: the
    /// containers' init processes, from `ps`) die at once, and the tmpfs run dir is gone.
    /// The data dir stays as it was, mounts included.
    pub fn power_cut(&mut self, pids: &[String]) {
        self.kill9();
        let root = format!("{}/", self.root.display());
        kill_until_gone(|| processes_mentioning(&root));
        for pid in pids {
            let _ = Command::new("kill").args(["-9", pid]).status();
        }
        let run = self.root.join("run");
        unmount_under(&run);
        std::fs::remove_dir_all(&run).expect("clear the run dir");
    }

    /// The process id of the running `shoal-agent run`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Whether the agent process was started and has not exited.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Runs a local CLI command against this agent.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(&self.binary)
            .args(args)
            .arg("--socket")
            .arg(&self.socket)
            .output()
            .expect("run shoal-agent")
    }

    /// Runs a CLI command that must succeed, and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "`shoal-agent {}` failed: {}{}\nagent log:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.log_tail()
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports the busybox test image.
    pub fn import_busybox(&self) {
        let archive = busybox_archive().display().to_string();
        self.ok(&["images", "import", &archive]);
    }

    /// Applies manifest text (written to a file first, as an operator would).
    pub fn apply(&self, name: &str, manifest: &str) -> String {
        let file = self.root.join(format!("{name}.yaml"));
        std::fs::write(&file, manifest).expect("write manifest");
        self.ok(&["apply", "-f", &file.display().to_string()])
    }

    /// The agent's status through its local API, as the hub's `Status` request gets it:
    /// containers with their messages, and the newest 20 events.
    pub fn status(&self) -> NodeStatus {
        let limits = Limits::default();
        let request = RpcRequest {
            id: 1,
            body: RpcRequestBody::Status,
        };
        let bytes = wire::encode("local", &request, &limits).expect("encode a status request");
        let mut stream = UnixStream::connect(&self.socket).expect("connect to the agent's socket");
        let len = u32::try_from(bytes.len()).expect("a small request");
        stream.write_all(&len.to_be_bytes()).expect("send");
        stream.write_all(&bytes).expect("send");
        let mut len = [0u8; 4];
        stream
            .read_exact(&mut len)
            .expect("read the answer's length");
        let mut answer = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut answer).expect("read the answer");
        match wire::decode::<RpcResponse>(&answer, &limits) {
            Ok((
                _,
                RpcResponse {
                    body: RpcResponseBody::Status(status),
                    ..
                },
            )) => status,
            other => panic!("the agent answered a status request with {other:?}"),
        }
    }

    /// `shoal-agent ps`, parsed.
    pub fn ps(&self) -> Vec<Row> {
        parse_table(&self.ok(&["ps"]))
    }

    /// Polls `ps` until `done` holds, for at most `timeout`; returns the rows that satisfied it.
    pub fn wait_for(
        &self,
        what: &str,
        timeout: Duration,
        done: impl Fn(&[Row]) -> bool,
    ) -> Vec<Row> {
        let start = Instant::now();
        loop {
            let rows = self.ps();
            if done(&rows) {
                eprintln!("[{what}: {} ms]", start.elapsed().as_millis());
                return rows;
            }
            if start.elapsed() > timeout {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; last ps:\n{}\nagent log:\n{}",
                    self.ok(&["ps"]),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("agent.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last 60 lines of the agent's log.
    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(60)..].join("\n")
    }

    /// Deletes every workload and waits until its containers are gone.
    pub fn delete_all(&self) {
        let Ok(out) = std::panic::catch_unwind(|| self.ps()) else {
            return;
        };
        let mut workloads: Vec<String> = out
            .iter()
            .filter_map(|r| r.get("WORKLOAD").cloned())
            .collect();
        workloads.dedup();
        for w in &workloads {
            // Refused in hub mode (workloads are deleted through the hub there): nothing would
            // go away by waiting, and `kill_everything` removes it all.
            if !self.cli(&["delete", w]).status.success() {
                return;
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let out = self.cli(&["ps"]);
            if !out.status.success()
                || parse_table(&String::from_utf8_lossy(&out.stdout)).is_empty()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if self.child.is_some() {
            self.delete_all();
        }
        // Whatever is left (a hub-managed node, a failed test): killed, as a power cut would.
        self.kill_everything();
        // Kept when the test failed, for its agent log and data.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

impl Agent {
    /// The agent's database, opened read-only beside the running agent (WAL allows it).
    pub fn database(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.root.join("data/agent.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open the agent's database")
    }

    /// How many events the agent has recorded so far (the newest event's sequence).
    pub fn events_recorded(&self) -> u64 {
        self.database()
            .query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_or(0, |n| u64::try_from(n).unwrap_or(0))
    }

    /// The events recorded after sequence `after`: (reason, workload/container, message).
    pub fn events_after(&self, after: u64) -> Vec<(String, String, String)> {
        let db = self.database();
        let mut statement = db
            .prepare(
                "SELECT reason, coalesce(workload, '') || '/' || coalesce(container, ''), message \
                 FROM events WHERE id > ?1 ORDER BY id",
            )
            .expect("query events");
        statement
            .query_map([i64::try_from(after).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .expect("read events")
            .collect::<Result<_, _>>()
            .expect("read events")
    }

    /// What is left of this agent's containers on the host: shim and container processes,
    /// mounts under its dirs, cgroup dirs under its node's parent, container state dirs.
    /// Empty when every workload is deleted and cleaned up.
    pub fn leftovers(&self, node_name: &str) -> Vec<String> {
        let mut left = Vec::new();
        let root = self.root.display().to_string();
        let agent_pid = self.pid().map(|p| p.to_string());
        for entry in std::fs::read_dir("/proc").expect("proc").flatten() {
            let pid = entry.file_name().to_string_lossy().to_string();
            if !pid.chars().all(|c| c.is_ascii_digit()) || Some(&pid) == agent_pid.as_ref() {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&root) && cmdline.contains(" shim") {
                left.push(format!("process {pid}: {cmdline}"));
            }
            let cgroup = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            if cgroup.contains(&format!("/shoal/{node_name}/")) {
                left.push(format!(
                    "process {pid} in {}",
                    cgroup.lines().next().unwrap_or("")
                ));
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
        left.extend(
            mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|p| p.starts_with(&root))
                .map(|p| format!("mount {p}")),
        );
        for subsystem in std::fs::read_dir("/sys/fs/cgroup")
            .expect("cgroup fs")
            .flatten()
        {
            let parent = subsystem.path().join("shoal").join(node_name);
            for child in std::fs::read_dir(&parent).into_iter().flatten().flatten() {
                if child.path().is_dir() {
                    left.push(format!("cgroup {}", child.path().display()));
                }
            }
        }
        for state in ["run/containers", "run/libcontainer"] {
            for child in std::fs::read_dir(self.root.join(state))
                .into_iter()
                .flatten()
                .flatten()
            {
                left.push(format!("state {}", child.path().display()));
            }
        }
        left
    }

    /// Waits for the host to be clean of this agent's containers (removal finishes just
    /// after `ps` stops listing them), then asserts it: see [`Agent::leftovers`].
    pub fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut left = self.leftovers(&self.name);
        while !left.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(200));
            left = self.leftovers(&self.name);
        }
        assert!(
            left.is_empty(),
            "left behind after every workload was deleted:\n{}\nagent log:\n{}",
            left.join("\n"),
            self.log_tail()
        );
    }

    /// The agent process's resident memory, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.pid().expect("the agent runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The agent process's thread count.
    pub fn threads(&self) -> u64 {
        let pid = self.pid().expect("the agent runs");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Threads:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// A small tmpfs mounted as an agent's data dir, to fill up the way an SD card fills;
/// unmounted when dropped (the agent's own drop unmounts it too, also after a panic).
#[derive(Debug)]
pub struct SmallDisk {
    pub path: PathBuf,
    filler: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB at `path` (created when missing).
    pub fn mount(path: &Path, mib: u32) -> SmallDisk {
        std::fs::create_dir_all(path).expect("mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
            ])
            .arg(path)
            .status()
            .expect("run mount");
        assert!(status.success(), "mounting a tmpfs at {}", path.display());
        SmallDisk {
            path: path.to_owned(),
            filler: path.join("filler"),
        }
    }

    /// Bytes an unprivileged writer could still write (`stat -f`).
    pub fn free_bytes(&self) -> u64 {
        let out = Command::new("stat")
            .args(["-f", "-c", "%a %S"])
            .arg(&self.path)
            .output()
            .expect("run stat");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text
            .split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0));
        fields.next().unwrap_or(0) * fields.next().unwrap_or(0)
    }

    /// Writes to a file until the disk is full, to the last byte. A running agent may free a
    /// little meanwhile (a log rotated, a WAL checkpointed), so it fills again until nothing is
    /// left, a bounded number of times.
    pub fn fill(&self) {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .expect("filler");
        for _ in 0..20 {
            for chunk in [1 << 20, 4096, 1] {
                let bytes = vec![0x5a_u8; chunk];
                while std::io::Write::write_all(&mut file, &bytes).is_ok() {}
            }
            if self.free_bytes() == 0 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        assert_eq!(self.free_bytes(), 0, "the disk is full");
    }

    /// Removes what [`SmallDisk::fill`] wrote.
    pub fn unfill(&self) {
        std::fs::remove_file(&self.filler).expect("remove the filler");
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// An OCI archive of an image named `name` holding `bytes` of incompressible data (so that
/// removing it frees about twice that: the blob and the unpacked layer).
pub fn filler_image(dir: &Path, name: &str, bytes: usize) -> PathBuf {
    use sha2::{Digest, Sha256};
    let mut data = Vec::with_capacity(bytes + 32);
    let mut block = Sha256::digest(name.as_bytes());
    while data.len() < bytes {
        data.extend_from_slice(&block);
        block = Sha256::digest(block);
    }
    data.truncate(bytes);
    let safe: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let layout_dir = dir.join(format!("{safe}.layout"));
    let mut layout = OciLayout::create(&layout_dir);
    let image = Image::new(vec![crate::images::Layer::new(vec![
        crate::images::Entry::file("filler.bin", data),
    ])]);
    let descriptor = layout.add_image(&image);
    layout.tag(name, &descriptor);
    let archive = dir.join(format!("{safe}.tar"));
    layout.to_tar(&archive);
    archive
}

impl Agent {
    /// SIGKILLs the agent, then every process that mentions its dirs (shims, helpers) or sits
    /// in its node's cgroups (containers), until none is left; removes those cgroups and
    /// unmounts everything under its dirs: what a power cut leaves, with the data dir kept.
    pub fn kill_everything(&mut self) {
        self.kill9();
        let root = format!("{}/", self.root.display());
        kill_until_gone(|| {
            let mut pids = processes_mentioning(&root);
            pids.extend(processes_in(&node_cgroups(&self.name)));
            pids
        });
        remove_cgroups(&self.name);
        unmount_under(&self.root);
    }
}

/// Every cgroup of node `node`'s workloads: `shoal/NODE` and everything under it, in every
/// hierarchy, deepest first.
pub fn node_cgroups(node: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") else {
        return Vec::new();
    };
    let mut roots: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| !p.is_symlink())
        .map(|p| p.join("shoal").join(node))
        .collect();
    roots.push(Path::new("/sys/fs/cgroup/shoal").join(node));
    roots.sort();
    roots.dedup();
    let mut cgroups = Vec::new();
    let mut stack: Vec<PathBuf> = roots.into_iter().filter(|d| d.is_dir()).collect();
    while let Some(dir) = stack.pop() {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    stack.push(entry.path());
                }
            }
        }
        cgroups.push(dir);
    }
    cgroups.sort_by_key(|c| std::cmp::Reverse(c.components().count()));
    cgroups
}

/// The processes in `cgroups` (their `cgroup.procs`), this test process excluded.
pub fn processes_in(cgroups: &[PathBuf]) -> Vec<u32> {
    let me = std::process::id();
    cgroups
        .iter()
        .flat_map(|c| {
            std::fs::read_to_string(c.join("cgroup.procs"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .filter(|p| *p != me)
        .collect()
}

/// Removes node `node`'s cgroups, deepest first (only empty ones can go).
pub fn remove_cgroups(node: &str) {
    for cgroup in node_cgroups(node) {
        let _ = std::fs::remove_dir(cgroup);
    }
}

/// The processes whose command line mentions `text`, this test process excluded.
pub fn processes_mentioning(text: &str) -> Vec<u32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(e.path().join("cmdline")).ok()?;
            (pid != me && String::from_utf8_lossy(&cmdline).contains(text)).then_some(pid)
        })
        .collect()
}

/// SIGKILLs the processes `find` returns until it returns none, for at most 10 s.
pub fn kill_until_gone(find: impl Fn() -> Vec<u32>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut pids = find();
        pids.sort_unstable();
        pids.dedup();
        if pids.is_empty() || Instant::now() > deadline {
            return;
        }
        let _ = Command::new("kill")
            .arg("-9")
            .args(pids.iter().map(u32::to_string))
            .stderr(Stdio::null())
            .status();
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Lazily unmounts everything mounted under `dir`, deepest first (leftovers of a failed test).
pub fn unmount_under(dir: &Path) {
    let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") else {
        return;
    };
    let prefix = dir.display().to_string();
    let mut points: Vec<&str> = mounts
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .filter(|p| p.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = Command::new("umount").args(["-l", point]).status();
    }
}

/// Parses a table whose columns are separated by two or more spaces.
pub fn parse_table(text: &str) -> Vec<Row> {
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let split = |line: &str| -> Vec<String> {
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect()
    };
    let columns = split(header);
    lines
        .map(split)
        .filter(|cells| cells.len() == columns.len())
        .map(|cells| columns.iter().cloned().zip(cells).collect())
        .collect()
}

/// The row for `workload`/`container`.
pub fn row<'a>(rows: &'a [Row], workload: &str, container: &str) -> Option<&'a Row> {
    rows.iter().find(|r| {
        r.get("WORKLOAD").map(String::as_str) == Some(workload)
            && r.get("CONTAINER").map(String::as_str) == Some(container)
    })
}

/// A cell of the row for `workload`/`container`, or "" when there is none.
pub fn cell(rows: &[Row], workload: &str, container: &str, column: &str) -> String {
    row(rows, workload, container)
        .and_then(|r| r.get(column))
        .cloned()
        .unwrap_or_default()
}

/// A one-container workload running `script` in busybox's shell.
pub fn shell_workload(name: &str, script: &str, extra_spec: &str, extra_container: &str) -> String {
    format!(
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n{extra_spec}  containers:\n    - name: main\n      image: {BUSYBOX}\n      command: [\"/bin/sh\", \"-c\", {script:?}]\n{extra_container}"
    )
}

/// A one-container workload whose container runs `image` (sleeping, if it ever starts).
pub fn image_workload(name: &str, image: &str) -> String {
    format!(
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  containers:\n    - name: main\n      image: {image}\n      command: [\"/bin/sh\", \"-c\", \"sleep 1000\"]\n"
    )
}
