//! A real `shoal serve` in a temporary data dir on free loopback ports, driven through the
//! `shoal` CLI the way an operator would. It can be killed with SIGKILL and restarted on the
//! same ports and data.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agent::Agent;
use crate::binary;

#[derive(Debug)]
pub struct Hub {
    pub root: PathBuf,
    pub data_dir: PathBuf,
    pub api: String,
    /// The address the embedded broker listens on: loopback unless [`Hub::start_on`] says
    /// otherwise.
    pub mqtt_host: String,
    /// The host agents dial to reach the embedded broker (`--advertise`).
    pub broker_host: String,
    pub mqtt_port: u16,
    /// `--broker URL` for an external broker; `None` runs the embedded one.
    pub broker: Option<String>,
    child: Option<Child>,
}

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Hub {
    /// Starts a hub with the embedded broker.
    pub fn start(name: &str) -> Hub {
        Hub::start_with_broker(name, None)
    }

    /// Starts a hub; with `broker` it uses that external broker instead of the embedded one.
    pub fn start_with_broker(name: &str, broker: Option<String>) -> Hub {
        Hub::start_inner(name, broker, "127.0.0.1", "127.0.0.1")
    }

    /// Starts a hub whose embedded broker listens on `listen_host` (`--listen-mqtt`) and tells
    /// agents to dial `broker_host` (`--advertise`): an address of this machine, such as a
    /// bridge's, that agents in their own network namespaces reach. The API for the CLI stays
    /// on loopback.
    pub fn start_on(name: &str, listen_host: &str, broker_host: &str) -> Hub {
        Hub::start_inner(name, None, listen_host, broker_host)
    }

    fn start_inner(name: &str, broker: Option<String>, mqtt_host: &str, broker_host: &str) -> Hub {
        let root = std::env::temp_dir().join(format!("shoal-hub-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("hub dir");
        let mut hub = Hub {
            data_dir: root.join("data"),
            root,
            api: format!("http://127.0.0.1:{}", free_port()),
            mqtt_host: mqtt_host.to_string(),
            broker_host: broker_host.to_string(),
            mqtt_port: free_port(),
            broker,
            child: None,
        };
        hub.restart();
        hub
    }

    pub fn log_path(&self) -> PathBuf {
        self.root.join("hub.log")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The broker URL agents use.
    pub fn broker_url(&self) -> String {
        self.broker
            .clone()
            .unwrap_or_else(|| format!("mqtt://{}:{}", self.broker_host, self.mqtt_port))
    }

    /// (Re)starts `shoal serve` on the same ports and data, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the hub is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("hub log");
        let mut command = Command::new(binary("shoal"));
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-mqtt")
            .arg(format!("{}:{}", self.mqtt_host, self.mqtt_port))
            .arg("--listen-api")
            .arg(self.api.trim_start_matches("http://"));
        if let Some(broker) = &self.broker {
            command.arg("--broker").arg(broker);
        } else if self.broker_host != self.mqtt_host {
            command.arg("--advertise").arg(self.broker_url());
        }
        let child = command
            .env("SHOAL_LOG", "debug")
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start shoal serve");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if self.data_dir.join("api-token").exists()
                && self.cli(&["get", "nodes"]).status.success()
            {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("the hub exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "the hub did not answer within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash or power cut would.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("api-token"))
            .expect("the hub's api-token")
            .trim()
            .to_string()
    }

    /// Runs a `shoal` CLI command against this hub.
    pub fn cli(&self, args: &[&str]) -> Output {
        Command::new(binary("shoal"))
            .args(args)
            .arg("--hub")
            .arg(&self.api)
            .env("SHOAL_TOKEN", self.token_if_any())
            .output()
            .expect("run shoal")
    }

    fn token_if_any(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("api-token"))
            .map(|t| t.trim().to_string())
            .unwrap_or_default()
    }

    /// Runs a CLI command that must succeed, and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "`shoal {}` failed: {}{}\nhub log tail:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 40)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `shoal get KIND -o json`.
    pub fn get(&self, kind: &str) -> Vec<Value> {
        let text = self.ok(&["get", kind, "-o", "json"]);
        match serde_json::from_str(&text) {
            Ok(Value::Array(items)) => items,
            other => panic!("`shoal get {kind} -o json` printed {other:?}: {text}"),
        }
    }

    /// The `shoal get workloads -o json` entry of `name`.
    pub fn workload(&self, name: &str) -> Option<Value> {
        self.get("workloads")
            .into_iter()
            .find(|w| w["name"] == name)
    }

    /// The `shoal get nodes -o json` entry of `name`.
    pub fn node(&self, name: &str) -> Option<Value> {
        self.get("nodes").into_iter().find(|n| n["name"] == name)
    }

    /// Registers a node with `shoal node add` and returns its password.
    pub fn add_node(&self, name: &str, labels: &str) -> String {
        let mut args = vec!["node", "add", name];
        if !labels.is_empty() {
            args.extend(["--labels", labels]);
        }
        let out = self.ok(&args);
        out.lines()
            .find_map(|line| {
                line.trim()
                    .strip_prefix("password = \"")
                    .and_then(|rest| rest.strip_suffix('"'))
            })
            .unwrap_or_else(|| panic!("`shoal node add` printed no password line:\n{out}"))
            .to_string()
    }

    /// An agent registered with this hub (not started): `[hub]` config with its credentials.
    pub fn agent(&self, name: &str, labels: &str) -> Agent {
        let password = self.add_node(name, labels);
        Agent::new(
            name,
            &format!(
                "[hub]\nbroker = \"{}\"\npassword = \"{password}\"\nkeep_alive = \"5s\"\nheartbeat = \"10s\"\n",
                self.broker_url()
            ),
        )
    }

    /// Like [`Hub::agent`], with `hub_settings` (lines such as `keep_alive = "4s"`) in its
    /// `[hub]` table instead of the defaults above; settings left out take the agent's
    /// defaults (keep-alive 30 s, heartbeat 60 s).
    pub fn agent_with(&self, name: &str, labels: &str, hub_settings: &str) -> Agent {
        let password = self.add_node(name, labels);
        Agent::new(
            name,
            &format!(
                "[hub]\nbroker = \"{}\"\npassword = \"{password}\"\n{hub_settings}\n",
                self.broker_url()
            ),
        )
    }

    /// The process id of the running `shoal serve`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `GET path` on the hub's HTTP API (the JSON the CLI renders), for views the CLI prints
    /// only as text (`describe`'s events).
    pub fn api_json(&self, path: &str) -> Value {
        use std::io::{Read, Write};
        let address = self.api.trim_start_matches("http://");
        let mut stream = std::net::TcpStream::connect(address).expect("connect to the hub's API");
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .expect("read timeout");
        // HTTP/1.0: the answer is not chunked and the connection closes after it.
        write!(
            stream,
            "GET {path} HTTP/1.0\r\nHost: {address}\r\nAuthorization: Bearer {}\r\n\r\n",
            self.token()
        )
        .expect("send the request");
        let mut answer = String::new();
        stream.read_to_string(&mut answer).expect("read the answer");
        let (head, body) = answer
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("GET {path}: no HTTP answer: {answer:?}"));
        assert!(
            head.starts_with("HTTP/1.0 200") || head.starts_with("HTTP/1.1 200"),
            "GET {path}: {head}\n{body}"
        );
        serde_json::from_str(body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Polls `check` until it returns `Some`, for at most `timeout`; panics with `what` and
    /// the hub's log otherwise.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut() -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = check() {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "timed out after {timeout:?} waiting for {what}\nhub log tail:\n{}",
                tail(&self.log(), 60)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
