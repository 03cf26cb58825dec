//! The README's "Run a fleet" block, run as written: extracted from README.md between
//! `<!-- ci:run-a-fleet -->` and the end of the code block after it (as `.ci/run` extracts the
//! test command), run with `bash -euo pipefail` as root, then checked from outside (the node
//! online, hello running on it, sensor-reader placed), then the README's own clean-up block.
//!
//! The block uses the machine's real paths (`/var/lib/shoal`, `/etc/shoal/agent.toml`,
//! `/var/log`, `/run`, `~/.config/shoal`) and ports (7440, 8883). So that it neither disturbs
//! nor depends on this machine, it runs in a network namespace of its own with only loopback
//! and a private mount namespace where those paths are bind mounts of a temporary dir, with
//! HOME there too.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The whole block: a hub and an agent start, an image is built and imported, two workloads
/// are applied and hello runs.
const BLOCK_TIMEOUT: Duration = Duration::from_secs(180);
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The code block after `marker` in `text`.
fn block(text: &str, marker: &str) -> String {
    let mut lines = text.lines().skip_while(|l| l.trim() != marker).skip(1);
    let fence = lines.next().unwrap_or_default();
    assert!(
        fence.starts_with("```"),
        "README.md has no code block right after {marker}"
    );
    let body: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    assert!(!body.is_empty(), "the block after {marker} is empty");
    body.join("\n") + "\n"
}

/// The paths the block writes, each a bind mount of a dir under the test's root.
const MOUNTS: [(&str, &str); 5] = [
    ("etc", "/etc/shoal"),
    ("lib", "/var/lib/shoal"),
    ("lib-agent", "/var/lib/shoal-agent"),
    ("log", "/var/log"),
    ("run", "/run"),
];

/// The namespaces and dirs of one run; everything is removed on drop, whatever happened.
struct Sandbox {
    root: PathBuf,
    netns: String,
    /// Mount points this test had to create on the host (removed again if still empty).
    created: Vec<PathBuf>,
}

impl Sandbox {
    fn new() -> Sandbox {
        let pid = std::process::id();
        let root = std::env::temp_dir().join(format!("shoal-readme-{pid}"));
        let _ = std::fs::remove_dir_all(&root);
        for (dir, _) in MOUNTS {
            std::fs::create_dir_all(root.join(dir)).expect("sandbox dir");
        }
        std::fs::create_dir_all(root.join("home")).expect("home");
        let mut created = Vec::new();
        for (_, target) in MOUNTS {
            let target = Path::new(target);
            if !target.exists() {
                std::fs::create_dir_all(target).expect("mount point");
                created.push(target.to_path_buf());
            }
        }
        let netns = format!("shoal-readme-{pid}");
        let _ = Command::new("ip").args(["netns", "del", &netns]).output();
        shoal_tests::fleet::ip(&["netns", "add", &netns]);
        shoal_tests::fleet::ip(&["-n", &netns, "link", "set", "lo", "up"]);
        Sandbox {
            root,
            netns,
            created,
        }
    }

    /// `bash -euo pipefail -c SCRIPT` in the checkout, as root with the built binaries on
    /// PATH, inside the namespaces; its output goes to `log`.
    fn bash(&self, script: &str, log: &Path) -> Command {
        let mut mounts = String::new();
        for (dir, target) in MOUNTS {
            mounts.push_str(&format!(
                "mount --bind '{}' '{target}' && ",
                self.root.join(dir).display()
            ));
        }
        let bin = shoal_tests::binary("shoal");
        let bin_dir = bin.parent().expect("binary dir");
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let file = std::fs::File::create(log).expect("log file");
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.netns))
            .args([
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "bash",
                "-c",
            ])
            .arg(format!("{mounts}exec bash -euo pipefail -c \"$1\""))
            .arg("bash")
            .arg(script)
            .current_dir(shoal_tests::workspace())
            .env("HOME", self.root.join("home"))
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log fd"))
            .stderr(file);
        for name in [
            "XDG_CONFIG_HOME",
            "SHOAL_CONFIG",
            "SHOAL_CONTEXT",
            "SHOAL_HUB",
            "SHOAL_TOKEN",
            "SHOAL_CA",
            "SHOAL_LOG",
        ] {
            command.env_remove(name);
        }
        command
    }

    /// Runs `script` to its end within `timeout`; its output, and whether it succeeded.
    fn run(&self, name: &str, script: &str, timeout: Duration) -> (bool, String) {
        let log = self.root.join(format!("{name}.out"));
        let mut child = self.bash(script, &log).spawn().expect("start bash");
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for bash") {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let output = std::fs::read_to_string(&log).unwrap_or_default();
        match status {
            Some(status) => (status.success(), output),
            None => (false, format!("{output}\n[timed out after {timeout:?}]")),
        }
    }

    /// `shoal ARGS -o json` against the block's hub, from outside its mount namespace (the
    /// token is in the dir bound to /var/lib/shoal).
    fn get(&self, kind: &str) -> Vec<Value> {
        let token = std::fs::read_to_string(self.root.join("lib/api-token")).expect("api-token");
        let out = Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg(shoal_tests::binary("shoal"))
            .args(["get", kind, "-o", "json", "--hub", "http://127.0.0.1:7440"])
            .args(["--token", token.trim()])
            .output()
            .expect("run shoal");
        assert!(out.status.success(), "shoal get {kind}: {out:?}");
        match serde_json::from_slice(&out.stdout) {
            Ok(Value::Array(items)) => items,
            other => panic!("shoal get {kind} -o json printed {other:?}"),
        }
    }

    /// The processes in the network namespace: the hub, the agent and their children.
    fn pids(&self) -> Vec<String> {
        let out = Command::new("ip")
            .args(["netns", "pids", &self.netns])
            .output()
            .expect("ip netns pids");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .map(str::to_string)
            .collect()
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        for name in ["shoal-hub.log", "shoal-agent.log"] {
            let log = std::fs::read_to_string(self.root.join("log").join(name)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            text.push_str(&format!("--- {name} (last lines)\n"));
            for line in tail.into_iter().rev() {
                text.push_str(line);
                text.push('\n');
            }
        }
        text
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        // What the block started and the clean-up did not stop, by process id.
        for pid in self.pids() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        // Containers have network namespaces of their own: found by their cgroups.
        for pid in workload_processes() {
            let _ = Command::new("kill").args(["-KILL", &pid]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .output();
        for dir in &self.created {
            let _ = std::fs::remove_dir(dir);
        }
        for subsystem in std::fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            // Only if empty: another agent named gw-1 may be using it.
            let _ = std::fs::remove_dir(subsystem.path().join("shoal/gw-1"));
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// The processes in the cgroups of the block's workloads on gw-1.
fn workload_processes() -> Vec<String> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|p| {
            let cgroup = std::fs::read_to_string(p.path().join("cgroup")).unwrap_or_default();
            cgroup.contains("/shoal/gw-1/hello/") || cgroup.contains("/shoal/gw-1/sensor-reader/")
        })
        .map(|p| p.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn the_readme_run_a_fleet_block_runs_as_written_and_its_fleet_comes_up() {
    let readme =
        std::fs::read_to_string(shoal_tests::workspace().join("README.md")).expect("README.md");
    let fleet = block(&readme, "<!-- ci:run-a-fleet -->");
    let cleanup = block(&readme, "<!-- ci:run-a-fleet-cleanup -->");
    let sandbox = Sandbox::new();

    let started = Instant::now();
    let (ok, output) = sandbox.run("run-a-fleet", &fleet, BLOCK_TIMEOUT);
    assert!(
        ok,
        "the README's Run a fleet block failed:\n{output}\n{}",
        sandbox.logs()
    );
    eprintln!(
        "[README Run a fleet block: {:.1} s]\n{output}",
        started.elapsed().as_secs_f64()
    );
    assert!(
        output.contains("context: local (in ") && output.contains("hub:     http://127.0.0.1:7440"),
        "the block did not use the context `shoal serve` wrote:\n{output}"
    );

    assert!(
        sandbox.root.join("home/hub.backup").is_file(),
        "the block's `shoal backup` wrote nothing"
    );
    let nodes = sandbox.get("nodes");
    let gw = nodes
        .iter()
        .find(|n| n["name"] == "gw-1")
        .unwrap_or_else(|| panic!("no gw-1 in {nodes:?}"));
    assert_eq!(gw["online"], true, "{gw}");
    assert_eq!(gw["labels"]["site"], "plant-2", "{gw}");
    let workloads = sandbox.get("workloads");
    let workload = |name: &str| {
        workloads
            .iter()
            .find(|w| w["name"] == name)
            .unwrap_or_else(|| panic!("no workload {name} in {workloads:?}"))
            .clone()
    };
    let hello = workload("hello");
    assert_eq!(
        (hello["wanted"].as_u64(), hello["ready"].as_u64()),
        (Some(1), Some(1)),
        "{hello}"
    );
    assert_eq!(hello["nodes"], serde_json::json!(["gw-1"]), "{hello}");
    let sensor = workload("sensor-reader");
    assert_eq!(
        sensor["placed"].as_u64(),
        Some(1),
        "sensor-reader is not placed: {sensor}"
    );
    assert_eq!(sensor["nodes"], serde_json::json!(["gw-1"]), "{sensor}");
    let ps = Command::new(shoal_tests::binary("shoal-agent"))
        .args(["ps", "--socket"])
        .arg(sandbox.root.join("run/shoal-agent/agent.sock"))
        .output()
        .expect("shoal-agent ps");
    let rows = shoal_tests::agent::parse_table(&String::from_utf8_lossy(&ps.stdout));
    assert_eq!(
        shoal_tests::agent::cell(&rows, "hello", "hello", "STATE"),
        "Running",
        "{ps:?}"
    );

    let (ok, output) = sandbox.run("run-a-fleet-cleanup", &cleanup, CLEANUP_TIMEOUT);
    assert!(
        ok,
        "the README's clean-up block failed:\n{output}\n{}",
        sandbox.logs()
    );
    // The hub and the agent stop; no container of gw-1 is left.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !sandbox.pids().is_empty() {
        assert!(
            Instant::now() < deadline,
            "still running in the namespace after the clean-up block: {:?}\n{}",
            sandbox.pids(),
            sandbox.logs()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut left: Vec<String> = workload_processes()
        .into_iter()
        .map(|pid| format!("process {pid}"))
        .collect();
    for subsystem in std::fs::read_dir("/sys/fs/cgroup")
        .expect("cgroup fs")
        .flatten()
    {
        for workload in ["hello", "sensor-reader"] {
            let dir = subsystem.path().join("shoal/gw-1").join(workload);
            if dir.exists() {
                left.push(format!("cgroup {}", dir.display()));
            }
        }
    }
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_block_is_the_code_after_its_marker() {
    let text = "intro\n<!-- m -->\n```sh\na\nb\n```\n```sh\nc\n```\n";
    assert_eq!(block(text, "<!-- m -->"), "a\nb\n");
}
