//! A fleet on one machine: a real `shoal serve` (embedded broker) and N real agents, each agent
//! in a network namespace of its own, with real containers.
//!
//! ```text
//!   root namespace                                   namespace shoal-PID-N-NODE (one per node)
//!   shoal serve ── broker on 10.X.Y.1:PORT ── bridge sfPIDbN ── veth sfPIDvNxI ═══ eth0 10.X.Y.(I+2)
//!               └─ API on 127.0.0.1 (for the CLI)                                   shoal-agent run
//!                                                                                    └ shims, containers
//! ```
//!
//! Agents start with `nsenter --net=/run/netns/NS`: only the network namespace differs, as on a
//! device (the same mount namespace, so `shoal-agent ps` reaches the agent's socket and the
//! agent's mounts are visible for clean-up; `ip netns exec` would also give each agent a mount
//! namespace of its own, which a device does not have). Containers with `network: host` share
//! their agent's namespace, so cutting a node's link cuts its containers too.
//!
//! A node's link is cut by taking `eth0` down inside its namespace ([`Fleet::cut`]): packets
//! in both directions are lost and the hub learns of it only through the broker's keep-alive,
//! as with a real partition. Any process can be killed with SIGKILL and restarted: the hub
//! ([`Hub::kill9`], [`Hub::restart`]), an agent ([`Fleet::kill_agent`],
//! [`Fleet::start_agent`]), or a whole node ([`Fleet::power_cut`]: the agent, every shim and
//! container, its mounts, cgroups and run dir, as a reboot leaves them).
//!
//! Fleets run one at a time in a test process ([`Fleet::start`] takes a process-wide lock:
//! cargo runs the tests of a file in parallel threads, and two fleets would fight over two
//! cores). Names are unique per process and fleet (pid + sequence), interface names stay within
//! 15 characters, and addresses are private (10.0.0.0/8), used only inside namespaces made
//! here and on the bridge made here. Dropping a fleet (also when a test panics) kills every
//! process it started and deletes its namespaces, veths, bridge and cgroups; a node's data
//! dir is kept when the test failed.

use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agent::{
    kill_until_gone, node_cgroups, processes_in, remove_cgroups, unmount_under, Agent, Row,
};
use crate::binary;
use crate::hub::{tail, Hub};

/// How long anything in a fleet may take to converge.
pub const CONVERGE: Duration = Duration::from_secs(60);

/// One fleet at a time per test process.
static SERIAL: Mutex<()> = Mutex::new(());
/// Fleets started by this process, for unique names.
static FLEETS: AtomicU32 = AtomicU32::new(0);

/// How agents talk to the hub (their `[hub]` settings).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// MQTT keep-alive: a dead link is noticed after about 1.5 to 2 times this.
    pub keep_alive: Duration,
    /// A status at least this often; `None` keeps the agent's default (60 s).
    pub heartbeat: Option<Duration>,
    /// The embedded broker listens on the bridge's address alone (`--listen-mqtt
    /// 10.X.Y.1:PORT`, the default) rather than on every address (`0.0.0.0:PORT`; agents dial
    /// the bridge's address either way).
    pub broker_on_bridge_only: bool,
    /// Start each agent as its unit does, through `shoal-agent launch` with these probation
    /// bounds (`--up-within`, `--stable-for`), instead of `shoal-agent run`.
    pub launch: Option<(Duration, Duration)>,
}

impl Default for Settings {
    /// 4 s keep-alive and 10 s heartbeat: quick to notice a cut, quiet enough for two cores.
    /// (The embedded broker, rmqtt, waits keep-alive + 3 s for keep-alives under 6 s, so a
    /// 4 s keep-alive is noticed within 7 s, under twice the keep-alive.)
    fn default() -> Settings {
        Settings {
            keep_alive: Duration::from_secs(4),
            heartbeat: Some(Duration::from_secs(10)),
            broker_on_bridge_only: true,
            launch: None,
        }
    }
}

impl Settings {
    fn hub_lines(&self) -> String {
        let mut lines = format!("keep_alive = \"{}s\"\n", self.keep_alive.as_secs());
        if let Some(heartbeat) = self.heartbeat {
            lines.push_str(&format!("heartbeat = \"{}s\"\n", heartbeat.as_secs()));
        }
        lines
    }
}

/// The bridge in the root namespace that every node's veth is plugged into; the hub's broker
/// listens on its address. Deleted on drop.
#[derive(Debug)]
pub struct Bridge {
    pub name: String,
    /// The first three octets of its /24, such as `10.213.7`.
    pub subnet: String,
    /// The bridge's own address: `SUBNET.1`.
    pub address: String,
}

impl Bridge {
    fn create(name: String) -> Bridge {
        let subnet = free_subnet();
        let bridge = Bridge {
            address: format!("{subnet}.1"),
            name,
            subnet,
        };
        ip(&["link", "add", &bridge.name, "type", "bridge"]);
        // A fixed MAC: otherwise the bridge takes the lowest MAC of its ports and changes it
        // when a node's veth joins, and a node that already cached the hub's address (it
        // enrolled before the next node joined) sends to the old MAC until its ARP entry
        // expires: its connections time out for a minute.
        let octets: Vec<u8> = bridge
            .subnet
            .split('.')
            .filter_map(|o| o.parse().ok())
            .collect();
        let mac = format!(
            "02:5e:00:{:02x}:{:02x}:{:02x}",
            octets.first().copied().unwrap_or(0),
            octets.get(1).copied().unwrap_or(0),
            octets.get(2).copied().unwrap_or(0)
        );
        ip(&["link", "set", &bridge.name, "address", &mac]);
        ip(&[
            "addr",
            "add",
            &format!("{}/24", bridge.address),
            "dev",
            &bridge.name,
        ]);
        ip(&["link", "set", &bridge.name, "up"]);
        bridge
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        ip_quiet(&["link", "del", &self.name]);
    }
}

/// One device: a network namespace with a veth onto the bridge, and its agent.
#[derive(Debug)]
pub struct Node {
    pub name: String,
    /// The network namespace (`/run/netns/NETNS`).
    pub netns: String,
    /// The veth end in the root namespace, on the bridge (its counters are the node's traffic).
    pub veth: String,
    /// The node's address on the bridge.
    pub address: String,
    pub agent: Agent,
    /// Started through `shoal-agent launch` with these bounds (see [`Settings::launch`]).
    pub launch: Option<(Duration, Duration)>,
}

impl Node {
    /// A namespace with `eth0` at `address` on `bridge`, and a registered agent (not started).
    fn create(hub: &Hub, bridge: &Bridge, spec: NodeSpec<'_>, settings: &Settings) -> Node {
        let NodeSpec {
            name,
            labels,
            netns,
            veth,
            address,
        } = spec;
        let token = hub.add_node(name, labels);
        let agent = Hub::unenrolled_agent(name, &settings.hub_lines());
        ip_quiet(&["netns", "del", &netns]);
        ip(&["netns", "add", &netns]);
        // From here on the namespace is deleted on drop, also if a later step panics.
        let node = Node {
            name: name.to_string(),
            netns,
            veth,
            address,
            agent,
            launch: None,
        };
        ip(&[
            "link",
            "add",
            &node.veth,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &node.netns,
        ]);
        ip(&["link", "set", &node.veth, "master", &bridge.name]);
        ip(&["link", "set", &node.veth, "up"]);
        let cidr = format!("{}/24", node.address);
        ip(&["-n", &node.netns, "addr", "add", &cidr, "dev", "eth0"]);
        ip(&["-n", &node.netns, "link", "set", "lo", "up"]);
        ip(&["-n", &node.netns, "link", "set", "eth0", "up"]);
        // Enrolled from inside its namespace, over HTTPS to the hub's bridge address.
        let wrapper = [
            "nsenter".to_string(),
            format!("--net=/run/netns/{}", node.netns),
            "--".to_string(),
        ];
        hub.enroll_agent(&node.agent, &token, &wrapper);
        node
    }

    /// `shoal-agent run` (or `launch`) inside the node's network namespace.
    fn start(&mut self) {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.netns))
            .arg("--")
            .arg(binary("shoal-agent"));
        match self.launch {
            None => self.agent.start_with(command),
            Some((up_within, stable_for)) => {
                let up = format!("{}s", up_within.as_secs());
                let stable = format!("{}s", stable_for.as_secs());
                self.agent.launch_with(
                    command,
                    &["--up-within", up.as_str(), "--stable-for", stable.as_str()],
                );
            }
        }
    }

    /// Every process of this node: in its network namespace (agent, shims, host-network
    /// containers) or in its cgroups (isolated containers too).
    fn processes(&self) -> Vec<u32> {
        let mut pids: Vec<u32> = Command::new("ip")
            .args(["netns", "pids", &self.netns])
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        pids.extend(processes_in(&node_cgroups(&self.name)));
        let me = std::process::id();
        pids.retain(|p| *p != me);
        pids
    }

    /// SIGKILLs every process of the node (the agent first), waits until they are gone, and
    /// removes its cgroups: what a power cut leaves.
    fn kill_everything(&mut self) {
        self.agent.kill9();
        kill_until_gone(|| self.processes());
        remove_cgroups(&self.name);
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill_everything();
        unmount_under(&self.agent.root);
        // Deleting the namespace deletes its veth pair too.
        ip_quiet(&["netns", "del", &self.netns]);
        ip_quiet(&["link", "del", &self.veth]);
    }
}

struct NodeSpec<'a> {
    name: &'a str,
    labels: &'a str,
    netns: String,
    veth: String,
    address: String,
}

/// A hub and its nodes. Fields drop in order: nodes (agents, containers, namespaces), the
/// hub, the bridge, and last the lock that lets the next fleet start.
#[derive(Debug)]
pub struct Fleet {
    pub nodes: Vec<Node>,
    pub hub: Hub,
    pub bridge: Bridge,
    pub settings: Settings,
    _serial: MutexGuard<'static, ()>,
}

impl Fleet {
    /// A fleet with the default [`Settings`]: `nodes` are (name, hub labels `k=v,k2=v2`).
    pub fn start(tag: &str, nodes: &[(&str, &str)]) -> Fleet {
        Fleet::start_with(tag, nodes, Settings::default())
    }

    /// Starts the hub on a new bridge and one agent per node in its own namespace, imports the
    /// test image into every agent, and waits until the hub shows every node online.
    pub fn start_with(tag: &str, nodes: &[(&str, &str)], settings: Settings) -> Fleet {
        // A test that panicked while holding the lock poisons it; its fleet is gone anyway.
        let serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let pid = std::process::id();
        let n = FLEETS.fetch_add(1, Ordering::Relaxed);
        let start = Instant::now();
        let bridge = Bridge::create(format!("sf{pid}b{n}"));
        let listen = if settings.broker_on_bridge_only {
            bridge.address.as_str()
        } else {
            "0.0.0.0"
        };
        let hub = Hub::start_on(tag, listen, &bridge.address);
        let mut fleet = Fleet {
            nodes: Vec::new(),
            hub,
            bridge,
            settings,
            _serial: serial,
        };
        for (i, (name, labels)) in nodes.iter().enumerate() {
            let spec = NodeSpec {
                name,
                labels,
                netns: format!("shoal-{pid}-{n}-{name}"),
                veth: format!("sf{pid}v{n}x{i}"),
                address: format!("{}.{}", fleet.bridge.subnet, i + 2),
            };
            assert!(
                spec.veth.len() <= 15,
                "interface name {} too long",
                spec.veth
            );
            let mut node = Node::create(&fleet.hub, &fleet.bridge, spec, &fleet.settings);
            node.launch = fleet.settings.launch;
            fleet.nodes.push(node);
        }
        // Start and fill the agents a few at a time: quicker, and two cores stay usable.
        for chunk in fleet.nodes.chunks_mut(4) {
            std::thread::scope(|scope| {
                for node in chunk.iter_mut() {
                    scope.spawn(move || {
                        node.start();
                        node.agent.import_busybox();
                    });
                }
            });
        }
        let names: Vec<String> = fleet.nodes.iter().map(|n| n.name.clone()).collect();
        fleet.wait_for("every node online", CONVERGE, || {
            let nodes = fleet.hub.get("nodes");
            names
                .iter()
                .all(|name| {
                    nodes
                        .iter()
                        .any(|n| n["name"] == name.as_str() && n["online"] == true)
                })
                .then_some(())
        });
        report(
            &format!("fleet {tag} of {} nodes up", fleet.nodes.len()),
            start.elapsed(),
        );
        fleet
    }

    pub fn node(&self, name: &str) -> &Node {
        self.nodes
            .iter()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this fleet"))
    }

    fn node_mut(&mut self, name: &str) -> &mut Node {
        self.nodes
            .iter_mut()
            .find(|n| n.name == name)
            .unwrap_or_else(|| panic!("no node {name} in this fleet"))
    }

    pub fn agent(&self, name: &str) -> &Agent {
        &self.node(name).agent
    }

    /// Cuts the node's link: `eth0` down inside its namespace.
    pub fn cut(&self, name: &str) {
        ip(&["-n", &self.node(name).netns, "link", "set", "eth0", "down"]);
    }

    /// Restores the node's link.
    pub fn restore(&self, name: &str) {
        ip(&["-n", &self.node(name).netns, "link", "set", "eth0", "up"]);
    }

    /// SIGKILLs the node's agent (its containers keep running).
    pub fn kill_agent(&mut self, name: &str) {
        self.node_mut(name).agent.kill9();
    }

    /// Starts the node's agent in its namespace and waits until it answers `ps`.
    pub fn start_agent(&mut self, name: &str) {
        self.node_mut(name).start();
    }

    /// A power cut: SIGKILL to the agent, every shim and every container of the node; its
    /// mounts, cgroups and run dir (a tmpfs on a device) are gone, as after a reboot. The data
    /// dir (SQLite, images, volumes) stays.
    pub fn power_cut(&mut self, name: &str) {
        let node = self.node_mut(name);
        node.kill_everything();
        unmount_under(&node.agent.root);
        let run = node.agent.root.join("run");
        std::fs::remove_dir_all(&run)
            .unwrap_or_else(|e| panic!("cannot clear {}: {e}", run.display()));
    }

    /// `shoal apply -f FILE` of manifest text, through the hub.
    pub fn apply(&self, name: &str, manifest: &str) -> String {
        let file = self.hub.root.join(format!("{name}.yaml"));
        std::fs::write(&file, manifest).expect("write manifest");
        self.hub.ok(&["apply", "-f", &file.display().to_string()])
    }

    /// `shoal get nodes -o json`'s entry for the node.
    pub fn hub_node(&self, name: &str) -> Value {
        self.hub
            .node(name)
            .unwrap_or_else(|| panic!("the hub does not list node {name}"))
    }

    /// The node's events as the hub has them, oldest first (the JSON behind `shoal describe
    /// node`: its newest 20).
    pub fn hub_events(&self, name: &str) -> Vec<Value> {
        match self.hub.api_json(&format!("/v1/nodes/{name}"))["events"].take() {
            Value::Array(events) => events,
            other => panic!("node {name}'s events: {other:?}"),
        }
    }

    /// `shoal-agent ps` on the node.
    pub fn ps(&self, name: &str) -> Vec<Row> {
        self.agent(name).ps()
    }

    /// `WORKLOAD/CONTAINER -> PID` of the node's running containers.
    pub fn pids(&self, name: &str) -> BTreeMap<String, String> {
        self.ps(name)
            .into_iter()
            .filter(|r| r.get("STATE").map(String::as_str) == Some("Running"))
            .map(|r| {
                let key = format!(
                    "{}/{}",
                    r.get("WORKLOAD").cloned().unwrap_or_default(),
                    r.get("CONTAINER").cloned().unwrap_or_default()
                );
                (key, r.get("PID").cloned().unwrap_or_default())
            })
            .collect()
    }

    /// Polls `check` until it returns `Some`, for at most `timeout`; returns its value and how
    /// long it took. Panics with `what`, the hub's log and the agents' log tails otherwise.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> (T, Duration) {
        let start = Instant::now();
        loop {
            if let Some(value) = check() {
                return (value, start.elapsed());
            }
            if start.elapsed() > timeout {
                let agents: String = self
                    .nodes
                    .iter()
                    .map(|n| format!("\n--- agent {} ---\n{}", n.name, tail(&n.agent.log(), 15)))
                    .collect();
                panic!(
                    "timed out after {timeout:?} waiting for {what}\n--- hub ---\n{}{agents}",
                    tail(&self.hub.log(), 40)
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until the hub shows the node online (or offline); returns how long it took.
    pub fn wait_online(&self, name: &str, online: bool, timeout: Duration) -> Duration {
        let what = if online { "online" } else { "offline" };
        self.wait_for(&format!("the hub to show {name} {what}"), timeout, || {
            (self.hub.node(name)?["online"] == online).then_some(())
        })
        .1
    }

    /// Waits until the hub shows the node online with word from it at or after `since_ms`
    /// (wall clock): after a hub restart, proof that the node reconnected rather than a
    /// presence remembered from before.
    pub fn wait_heard_from(&self, name: &str, since_ms: u64, timeout: Duration) -> Duration {
        self.wait_for(
            &format!("the hub to hear from {name} again"),
            timeout,
            || {
                let node = self.hub.node(name)?;
                let seen = node["last_seen_ms"].as_u64().unwrap_or(0);
                (node["online"] == true && seen >= since_ms).then_some(())
            },
        )
        .1
    }

    /// Deletes every workload through the hub (links restored first) and waits until every
    /// running agent runs nothing: agents in hub mode refuse a local delete.
    pub fn clean_up(&mut self) {
        for node in &self.nodes {
            ip_quiet(&["-n", &node.netns, "link", "set", "eth0", "up"]);
        }
        for workload in self.hub.get("workloads") {
            let name = workload["name"].as_str().unwrap_or_default().to_string();
            self.hub.ok(&["delete", "workload", &name]);
        }
        for i in 0..self.nodes.len() {
            if !self.nodes[i].agent.is_running() {
                continue;
            }
            let name = self.nodes[i].name.clone();
            self.wait_for(&format!("nothing left running on {name}"), CONVERGE, || {
                self.nodes[i].agent.ps().is_empty().then_some(())
            });
        }
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        // Everything stops before the hub's dir goes; the fields then drop in order.
        for node in &mut self.nodes {
            node.kill_everything();
        }
        self.hub.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.hub.root);
        }
    }
}

/// The wall clock in ms since the Unix epoch, as the hub's `*_ms` fields count.
pub use shoal_model::clock::wall_ms as now_ms;

/// Prints a timing the way every test here does: `[what: N ms]`.
pub fn report(what: &str, took: Duration) {
    eprintln!("[{what}: {} ms]", took.as_millis());
}

/// Runs `ip ARGS`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (apt-get install iproute2)");
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `ip ARGS` for clean-up: failures (already gone) are fine.
fn ip_quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// A private /24 (`10.X.Y`) that no interface or route of this machine uses yet, picked from
/// the process id so that parallel test processes start far apart.
pub fn free_subnet() -> String {
    let used = Command::new("ip")
        .args(["-4", "route", "show", "table", "all"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let pid = std::process::id();
    (0..250u32)
        .map(|i| {
            let k = (pid + i * 7) % (50 * 250);
            format!("10.{}.{}", 200 + k / 250, k % 250 + 1)
        })
        .find(|subnet| !used.contains(&format!("{subnet}.")))
        .expect("a free 10.x.y.0/24")
}
