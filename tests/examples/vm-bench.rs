//! The figures of `bench/vm`: the static x86_64 device agent (`cross/build x86_64`) inside
//! the 512 MiB cgroup v2 test VM (`shoal_tests::vm`, TCG) and the same binary on this host,
//! in the same run, measured the same way on both:
//!
//! - the agent's RSS, idle (3 s after the last change), with 0 containers and with COUNT;
//! - create-to-running, the median of RUNS: from `shoal-agent apply` of a one-container
//!   workload until `shoal-agent ps` shows it Running, timed inside the node by one shell
//!   script (clock: `/proc/uptime`, 10 ms steps; `ps` polled every 20 ms).
//!
//! Prints a table and `RESULT` lines. Root; run through `bench/vm`.
//!
//!     vm-bench [COUNT [RUNS]]      (default 20 5)

use std::process::Command;
use std::time::{Duration, Instant};

use shoal_tests::agent::{Agent, BUSYBOX};
use shoal_tests::vm::{device_agent, Arch, Vm, AGENT, SOCKET};

/// How long one node may take to run what it is given, before the bench gives up.
const DEADLINE_SECONDS: u32 = 300;

/// The node a figure is measured on: the host's agent, or the VM's.
enum Node {
    Host(Agent),
    Vm(Box<Vm>),
}

impl Node {
    /// Runs `script` with `sh` on the node; it must succeed.
    fn sh(&mut self, script: &str) -> String {
        match self {
            Node::Host(_) => {
                let out = Command::new("sh")
                    .args(["-c", script])
                    .output()
                    .expect("run sh");
                assert!(
                    out.status.success(),
                    "on the host, `{script}` failed: {}{}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
                String::from_utf8_lossy(&out.stdout).into_owned()
            }
            Node::Vm(vm) => vm.sh_for(
                script,
                Duration::from_secs(u64::from(DEADLINE_SECONDS) + 60),
            ),
        }
    }

    /// The agent CLI as a shell command prefix, and `--socket PATH`.
    fn cli(&self) -> (String, String) {
        match self {
            Node::Host(agent) => (
                agent.binary.display().to_string(),
                format!("--socket {}", agent.socket.display()),
            ),
            Node::Vm(_) => (AGENT.to_string(), format!("--socket {SOCKET}")),
        }
    }

    /// A scratch dir on the node for manifests.
    fn scratch(&self) -> String {
        match self {
            Node::Host(agent) => agent.root.display().to_string(),
            Node::Vm(_) => "/tmp".to_string(),
        }
    }

    fn rss_kib(&mut self) -> u64 {
        match self {
            Node::Host(agent) => {
                let pid = agent.pid().expect("the host's agent runs");
                let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                    .expect("the agent's /proc status");
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                    .expect("VmRSS in /proc/PID/status")
            }
            Node::Vm(vm) => vm.agent_rss_kib(),
        }
    }
}

fn manifest(names: &[String]) -> String {
    names
        .iter()
        .map(|name| {
            format!(
                "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  \
                 containers: [{{ name: main, image: {BUSYBOX}, command: [/bin/sleep, '3600'] }}]\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A shell script that applies `file` and waits until `ps` shows `want` containers Running;
/// prints the centiseconds it took.
fn apply_and_wait(cli: &(String, String), file: &str, want: usize) -> String {
    let (agent, socket) = cli;
    format!(
        "now() {{ read -r up _ < /proc/uptime; echo \"${{up%.*}}${{up#*.}}\"; }}\n\
         t0=$(now)\n\
         {agent} apply -f {file} {socket} >/dev/null || exit 1\n\
         i=0\n\
         while [ \"$({agent} ps {socket} | grep -c ' Running ')\" -lt {want} ]; do\n\
           i=$((i + 1)); [ \"$i\" -lt {polls} ] || {{ echo 'not running in time' >&2; exit 1; }}\n\
           sleep 0.02\n\
         done\n\
         echo $(( $(now) - t0 ))",
        polls = DEADLINE_SECONDS * 50,
    )
}

struct Figures {
    rss_0: u64,
    rss_n: u64,
    create_to_running_ms: Vec<u64>,
    converge_n_ms: u64,
}

fn measure(node: &mut Node, count: usize, runs: usize) -> Figures {
    let cli = node.cli();
    let scratch = node.scratch();
    let settle = || std::thread::sleep(Duration::from_secs(3));
    settle();
    let rss_0 = node.rss_kib();

    // One container at a time, each a new workload.
    let mut create_to_running_ms = Vec::new();
    for run in 0..runs {
        let names = vec![format!("ctr-{run}")];
        let file = format!("{scratch}/ctr-{run}.yaml");
        node.sh(&format!("cat > {file} <<'EOF'\n{}\nEOF", manifest(&names)));
        let out = node.sh(&apply_and_wait(&cli, &file, run + 1));
        let centis: u64 = out.trim().parse().expect("centiseconds");
        create_to_running_ms.push(centis * 10);
    }

    // The rest of COUNT at once.
    let rest: Vec<String> = (runs..count.max(runs))
        .map(|i| format!("idle-{i}"))
        .collect();
    let file = format!("{scratch}/idle.yaml");
    node.sh(&format!("cat > {file} <<'EOF'\n{}\nEOF", manifest(&rest)));
    let out = node.sh(&apply_and_wait(&cli, &file, count.max(runs)));
    let converge_n_ms = out.trim().parse::<u64>().expect("centiseconds") * 10;
    settle();
    let rss_n = node.rss_kib();
    Figures {
        rss_0,
        rss_n,
        create_to_running_ms,
        converge_n_ms,
    }
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.get(sorted.len() / 2).copied().unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .map_or(20, |n| n.parse().expect("usage: vm-bench [COUNT [RUNS]]"));
    let runs: usize = args
        .next()
        .map_or(5, |n| n.parse().expect("usage: vm-bench [COUNT [RUNS]]"));
    assert!(runs >= 1 && count >= runs, "need COUNT >= RUNS >= 1");
    let started = Instant::now();
    let binary = device_agent(Arch::X86_64);

    let mut host_agent = Agent::new("vm-bench-host", "");
    host_agent.install(binary);
    host_agent.start();
    host_agent.import_busybox();
    let mut host = Node::Host(host_agent);
    let on_host = measure(&mut host, count, runs);
    // Its containers deleted, its processes and cgroups gone (the VM's go with the VM).
    drop(host);

    let mut vm = Vm::boot("vm-bench");
    vm.start_agent(false);
    vm.import_busybox();
    let boot_ms = vm.boot_times.first().map_or(0, Duration::as_millis);
    let mut guest = Node::Vm(Box::new(vm));
    let in_vm = measure(&mut guest, count, runs);
    drop(guest);

    println!(
        "static x86_64 agent {} ({} bytes); VM: 512 MiB, 2 vCPUs, TCG, cgroup v2, booted in {boot_ms} ms; \
         host: this machine (cgroup v1)",
        binary.display(),
        std::fs::metadata(binary).map_or(0, |m| m.len())
    );
    println!(
        "create-to-running: median of {runs} one-container applies (host {:?} ms, VM {:?} ms)",
        on_host.create_to_running_ms, in_vm.create_to_running_ms
    );
    println!(
        "{:<34} {:>10} {:>10} {:>8}",
        "figure", "host", "VM", "VM/host"
    );
    let rows = [
        (
            "agent RSS, 0 containers (KiB)".to_string(),
            "agent_rss_0".to_string(),
            on_host.rss_0,
            in_vm.rss_0,
            "KiB",
        ),
        (
            format!("agent RSS, {count} containers (KiB)"),
            format!("agent_rss_{count}"),
            on_host.rss_n,
            in_vm.rss_n,
            "KiB",
        ),
        (
            "create-to-running (ms)".to_string(),
            "create_to_running".to_string(),
            median(&on_host.create_to_running_ms),
            median(&in_vm.create_to_running_ms),
            "ms",
        ),
        (
            format!("apply {} more to all running (ms)", count - runs),
            format!("converge_{}", count - runs),
            on_host.converge_n_ms,
            in_vm.converge_n_ms,
            "ms",
        ),
    ];
    let ratio = |vm: u64, host: u64| {
        if host == 0 {
            0.0
        } else {
            vm as f64 / host as f64
        }
    };
    for (label, _, host, vm, _) in &rows {
        println!("{label:<34} {host:>10} {vm:>10} {:>8.2}", ratio(*vm, *host));
    }
    println!("(bench took {} s)", started.elapsed().as_secs());
    for (_, name, host, vm, unit) in &rows {
        println!("RESULT vm_{name}={vm} {unit}");
        println!("RESULT host_{name}={host} {unit}");
        println!("RESULT vm_{name}_ratio={:.2} x", ratio(*vm, *host));
    }
}
