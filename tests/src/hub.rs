//! A real `shoal serve` in a temporary data dir on free loopback ports, driven through the
//! `shoal` CLI the way an operator would. It can be killed with SIGKILL and restarted on the
//! same ports and data.
//!
//! Secure defaults throughout: the broker speaks MQTT over TLS with the hub's CA, agents join
//! with `shoal node add` and `shoal-agent enroll`, and every desired state is signed. A hub
//! on a bridge address ([`Hub::start_on`]) also serves its API over HTTPS there.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::agent::Agent;
use crate::binary;

/// The `[hub]` settings of test agents: a 5 s keep-alive and a 10 s heartbeat.
pub const DEFAULT_HUB_SETTINGS: &str = "keep_alive = \"5s\"\nheartbeat = \"10s\"";

#[derive(Debug)]
pub struct Hub {
    pub root: PathBuf,
    pub data_dir: PathBuf,
    /// The API's URL: `http://127.0.0.1:PORT`, or `https://ADDRESS:PORT` off loopback.
    pub api: String,
    /// The address the embedded broker listens on: loopback unless [`Hub::start_on`] says
    /// otherwise.
    pub mqtt_host: String,
    /// The host agents dial to reach the embedded broker (`--advertise`).
    pub broker_host: String,
    pub mqtt_port: u16,
    /// `--broker URL` for an external broker; `None` runs the embedded one.
    pub broker: Option<String>,
    /// The `shoal` that [`Hub::restart`] serves with and the CLI runs: this tree's unless a
    /// test sets another (a released one, for an upgrade in place).
    pub binary: PathBuf,
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
        Hub::start_inner(name, broker, "127.0.0.1", "127.0.0.1", binary("shoal"))
    }

    /// Starts a hub with the embedded broker, served by `shoal` (another build of it, such as
    /// a released one), whose CLI the hub's commands then use too.
    pub fn start_binary(name: &str, shoal: PathBuf) -> Hub {
        Hub::start_inner(name, None, "127.0.0.1", "127.0.0.1", shoal)
    }

    /// Starts a hub whose embedded broker listens on `listen_host` (`--listen-mqtt`) and tells
    /// agents to dial `broker_host` (`--advertise`): an address of this machine, such as a
    /// bridge's, that agents in their own network namespaces reach. The API listens on
    /// `broker_host` too (HTTPS, since it is not loopback), where those agents enroll.
    pub fn start_on(name: &str, listen_host: &str, broker_host: &str) -> Hub {
        Hub::start_inner(name, None, listen_host, broker_host, binary("shoal"))
    }

    fn start_inner(
        name: &str,
        broker: Option<String>,
        mqtt_host: &str,
        broker_host: &str,
        binary: PathBuf,
    ) -> Hub {
        let root = std::env::temp_dir().join(format!("shoal-hub-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("hub dir");
        let api = if broker_host == "127.0.0.1" {
            format!("http://127.0.0.1:{}", free_port())
        } else {
            format!("https://{broker_host}:{}", free_port())
        };
        let mut hub = Hub {
            data_dir: root.join("data"),
            root,
            api,
            mqtt_host: mqtt_host.to_string(),
            broker_host: broker_host.to_string(),
            mqtt_port: free_port(),
            broker,
            binary,
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
            .unwrap_or_else(|| format!("mqtts://{}:{}", self.broker_host, self.mqtt_port))
    }

    /// The hub's CA certificate (created at first start).
    pub fn ca_path(&self) -> PathBuf {
        self.data_dir.join("tls/ca.crt")
    }

    /// `host:port` of the API.
    fn api_address(&self) -> &str {
        self.api
            .trim_start_matches("http://")
            .trim_start_matches("https://")
    }

    /// (Re)starts `shoal serve` on the same ports and data, and waits until it answers.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "the hub is already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("hub log");
        let mut command = Command::new(&self.binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .arg("--listen-mqtt")
            .arg(format!("{}:{}", self.mqtt_host, self.mqtt_port))
            .arg("--listen-api")
            .arg(self.api_address());
        if let Some(broker) = &self.broker {
            command.arg("--broker").arg(broker);
        } else if self.broker_host != self.mqtt_host {
            command.arg("--advertise").arg(self.broker_url());
        }
        let child = command
            // The context `shoal serve` writes goes here, not into the CLI config of whoever
            // runs the tests.
            .env("SHOAL_CONFIG", self.root.join("cli-config.toml"))
            .env(
                "SHOAL_LOG",
                "debug,rmqtt=info,rmqtt_net=info,rmqtt_retainer=info,rustls=info",
            )
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
        Command::new(&self.binary)
            .args(args)
            .arg("--hub")
            .arg(&self.api)
            .arg("--ca")
            .arg(self.ca_path())
            .env("SHOAL_TOKEN", self.token_if_any())
            .output()
            .expect("run shoal")
    }

    /// Runs a `shoal` CLI command against this hub with `input` on its stdin.
    pub fn cli_stdin(&self, args: &[&str], input: &str) -> Output {
        use std::io::Write;
        let mut child = Command::new(&self.binary)
            .args(args)
            .arg("--hub")
            .arg(&self.api)
            .arg("--ca")
            .arg(self.ca_path())
            .env("SHOAL_TOKEN", self.token_if_any())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run shoal");
        child
            .stdin
            .take()
            .expect("a piped stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait for shoal")
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

    /// Waits until node `name` is online, for at most a minute; returns its entry.
    pub fn wait_node_online(&self, name: &str) -> Value {
        self.wait_for(
            &format!("node {name} online"),
            Duration::from_secs(60),
            || self.node(name).filter(|n| n["online"] == true),
        )
    }

    /// `shoal apply -f FILE` of manifest text (written to `ROOT/NAME.yaml` first, as an
    /// operator would); its output.
    pub fn apply(&self, name: &str, manifest: &str) -> String {
        let file = self.root.join(format!("{name}.yaml"));
        std::fs::write(&file, manifest).expect("write manifest");
        self.ok(&["apply", "-f", &file.display().to_string()])
    }

    /// Registers a node with `shoal node add` and returns its one-time enrollment token.
    pub fn add_node(&self, name: &str, labels: &str) -> String {
        let mut args = vec!["node", "add", name];
        if !labels.is_empty() {
            args.extend(["--labels", labels]);
        }
        let out = self.ok(&args);
        out.split_whitespace()
            .find(|word| word.starts_with("shoal1."))
            .unwrap_or_else(|| panic!("`shoal node add` printed no token:\n{out}"))
            .to_string()
    }

    /// Registers and enrolls a node over the API, as a device would, without an agent: its
    /// MQTT password (for tests that play a stolen device).
    pub fn enroll(&self, name: &str, labels: &str) -> String {
        let token = self.add_node(name, labels);
        let answer = self
            .enroll_with(&token)
            .unwrap_or_else(|e| panic!("enroll {name}: {e}"));
        answer["password"]
            .as_str()
            .unwrap_or_else(|| panic!("no password in {answer}"))
            .to_string()
    }

    /// `POST /v1/enroll` with `token`: the answer, or the hub's error text.
    pub fn enroll_with(&self, token: &str) -> Result<Value, String> {
        let body = serde_json::json!({ "token": token }).to_string();
        let mut answer = self
            .http()
            .post(format!("{}/v1/enroll", self.api))
            .header("content-type", "application/json")
            .send(body.as_bytes())
            .map_err(|e| e.to_string())?;
        let status = answer.status();
        let text = answer
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("{status}: {text}"));
        }
        serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))
    }

    /// An agent with `hub_settings` in its `[hub]` table, not enrolled yet.
    pub fn unenrolled_agent(name: &str, hub_settings: &str) -> Agent {
        Agent::new(name, &format!("[hub]\n{hub_settings}\n"))
    }

    /// `shoal-agent enroll` for `agent` with `token`, started through `wrapper` (e.g.
    /// `nsenter --net=... --`), as an operator would on the device: with the device's own
    /// `shoal-agent` ([`Agent::binary`]).
    pub fn enroll_agent(&self, agent: &Agent, token: &str, wrapper: &[String]) {
        let out = self.try_enroll_agent(agent, token, wrapper, &[]);
        assert!(
            out.status.success(),
            "shoal-agent enroll failed: {}{}\nhub log tail:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail(&self.log(), 30)
        );
    }

    /// `shoal-agent enroll` as [`Hub::enroll_agent`] runs it, with `extra` arguments (such
    /// as `--name N`), whatever its outcome.
    pub fn try_enroll_agent(
        &self,
        agent: &Agent,
        token: &str,
        wrapper: &[String],
        extra: &[&str],
    ) -> Output {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(&agent.binary);
                command
            }
            None => Command::new(&agent.binary),
        };
        command
            .arg("enroll")
            .arg("--hub")
            .arg(&self.api)
            .arg("--token")
            .arg(token)
            .arg("--config")
            .arg(&agent.config)
            .args(extra)
            .output()
            .expect("run shoal-agent enroll")
    }

    /// An agent registered with and enrolled in this hub (not started), with a 5 s
    /// keep-alive and a 10 s heartbeat.
    pub fn agent(&self, name: &str, labels: &str) -> Agent {
        self.agent_with(name, labels, DEFAULT_HUB_SETTINGS)
    }

    /// Like [`Hub::agent`], with `top_level` lines (such as `insecure_registries = [...]`)
    /// at the top of its agent.toml.
    pub fn agent_configured(&self, name: &str, labels: &str, top_level: &str) -> Agent {
        let token = self.add_node(name, labels);
        let agent = Agent::new(
            name,
            &format!("{top_level}\n[hub]\n{DEFAULT_HUB_SETTINGS}\n"),
        );
        self.enroll_agent(&agent, &token, &[]);
        agent
    }

    /// Like [`Hub::agent`], with `hub_settings` (lines such as `keep_alive = "4s"`) in its
    /// `[hub]` table instead of the defaults above; settings left out take the agent's
    /// defaults (keep-alive 30 s, heartbeat 60 s).
    pub fn agent_with(&self, name: &str, labels: &str, hub_settings: &str) -> Agent {
        let token = self.add_node(name, labels);
        let agent = Hub::unenrolled_agent(name, hub_settings);
        self.enroll_agent(&agent, &token, &[]);
        agent
    }

    /// An HTTP client that trusts the hub's CA.
    /// `GET path` as node `node` with `password` (HTTP Basic), from byte `from` on when given
    /// (`Range: bytes=N-`): the status, the body and the `Content-Range` header.
    pub fn get_as_node(
        &self,
        path: &str,
        node: &str,
        password: &str,
        from: Option<u64>,
    ) -> (u16, Vec<u8>, Option<String>) {
        use base64::Engine as _;
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("{node}:{password}"));
        let mut request = self
            .http()
            .get(format!("{}{path}", self.api))
            .header("Authorization", format!("Basic {credentials}"));
        if let Some(from) = from {
            request = request.header("Range", format!("bytes={from}-"));
        }
        let mut answer = request
            .call()
            .unwrap_or_else(|e| panic!("GET {path} as {node}: {e}"));
        let range = answer
            .headers()
            .get("content-range")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let status = answer.status().as_u16();
        let body = answer
            .body_mut()
            .with_config()
            .limit(128 << 20)
            .read_to_vec()
            .unwrap_or_else(|e| panic!("GET {path} as {node}: {e}"));
        (status, body, range)
    }

    fn http(&self) -> ureq::Agent {
        let pem = std::fs::read(self.ca_path()).expect("the hub's CA");
        let ca = ureq::tls::Certificate::from_pem(&pem).expect("a PEM certificate");
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .tls_config(
                ureq::tls::TlsConfig::builder()
                    .root_certs(ureq::tls::RootCerts::Specific(std::sync::Arc::new(vec![
                        ca,
                    ])))
                    .build(),
            )
            .build()
            .into()
    }

    /// The process id of the running `shoal serve`.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `GET path` on the hub's HTTP API (the JSON the CLI renders), for views the CLI prints
    /// only as text (`describe`'s events).
    pub fn api_json(&self, path: &str) -> Value {
        let mut answer = self
            .http()
            .get(format!("{}{path}", self.api))
            .header("Authorization", format!("Bearer {}", self.token()))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let status = answer.status();
        let body = answer
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        assert!(status.is_success(), "GET {path}: {status}\n{body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// `GET path` on the hub's HTTP API as text, with the bearer token or without: the status
    /// and the body.
    pub fn api_text(&self, path: &str, with_token: bool) -> (u16, String) {
        let mut request = self.http().get(format!("{}{path}", self.api));
        if with_token {
            request = request.header("Authorization", format!("Bearer {}", self.token()));
        }
        let mut answer = request.call().unwrap_or_else(|e| panic!("GET {path}: {e}"));
        let body = answer
            .body_mut()
            .read_to_string()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        (answer.status().as_u16(), body)
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
        // Kept when the test failed, for the hub's log and database.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// Whether a `shoal get workloads -o json` entry is at `revision` and ready on every node
/// it should run on.
pub fn ready(workload: &Value, revision: u64) -> bool {
    workload["revision"] == revision
        && workload["ready"] == workload["wanted"]
        && workload["wanted"] != 0
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
