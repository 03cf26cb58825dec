//! The agent driven by a hub over MQTT: a real `shoal-agent run` with `[hub]`, a real
//! Mosquitto 2.0 on a free loopback port, and this test playing the hub with
//! `mosquitto_pub`/`mosquitto_sub` and the shared wire types. Secure as a hub's link is: the
//! broker speaks TLS only and every desired state is signed with a key the agent trusts.
//! Needs the Debian packages `mosquitto`, `mosquitto-clients` and `openssl`.

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use shoal_model::clock::wall_ms;
use shoal_model::manifest::parse_manifest;
use shoal_model::wire::signing::SigningKey;
use shoal_model::wire::{
    self, ContainerState, DesiredState, DesiredWorkload, Envelope, EventReason, Limits, Message,
    NodeStatus, Presence, RpcRequest, RpcRequestBody, RpcResponse, RpcResponseBody,
};
use shoal_tests::agent::{busybox_archive, cell, shell_workload, Agent, Row};

const PREFIX: &str = "shoal/v1";
const HUB_USER: &str = "hub";
const HUB_PASSWORD: &str = "hub-secret";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

fn signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// Polls `check` until it returns `Some`, for at most `timeout`.
fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            eprintln!("[{what}: {} ms]", start.elapsed().as_millis());
            return value;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------------------
// The broker

/// How the hub side reaches a broker: its port, and whether it needs the hub's password.
#[derive(Clone, Debug)]
struct Endpoint {
    dir: PathBuf,
    port: u16,
    auth: bool,
    /// The CA of the broker's certificate, when it listens with TLS.
    ca: Option<PathBuf>,
}

/// A Mosquitto on a loopback port, with a password file when it has users.
#[derive(Debug)]
struct Mosquitto {
    endpoint: Endpoint,
    users: Vec<(String, String)>,
    /// Where the CA, the broker's certificate and key are, for a TLS listener.
    tls: Option<PathBuf>,
    child: Option<Child>,
}

impl std::ops::Deref for Mosquitto {
    type Target = Endpoint;

    fn deref(&self) -> &Endpoint {
        &self.endpoint
    }
}

impl Mosquitto {
    /// Starts a broker that listens with TLS only, as the hub's does, with a certificate for
    /// 127.0.0.1 signed by a fresh CA (`ca.pem`); anonymous clients are allowed when `users`
    /// is empty.
    fn start(name: &str, users: &[(&str, &str)]) -> Mosquitto {
        Mosquitto::start_with(name, users, Some(Mosquitto::certificates(name)))
    }

    /// A fresh CA and a server certificate for 127.0.0.1, in their own dir.
    fn certificates(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("shoal-mqtt-{name}-{}-tls", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("certificate dir");
        make_ca(&dir, "ca");
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .current_dir(&dir)
                .args(args)
                .output()
                .expect("openssl (apt-get install openssl)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n").expect("san");
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ]);
        dir
    }

    fn start_with(name: &str, users: &[(&str, &str)], tls: Option<PathBuf>) -> Mosquitto {
        let dir = std::env::temp_dir().join(format!("shoal-mqtt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("broker dir");
        let mut broker = Mosquitto {
            endpoint: Endpoint {
                dir,
                port: free_port(),
                auth: !users.is_empty(),
                ca: tls.as_ref().map(|d| d.join("ca.pem")),
            },
            tls,
            users: users
                .iter()
                .map(|(u, p)| (u.to_string(), p.to_string()))
                .collect(),
            child: None,
        };
        broker.write_users(users);
        broker.restart();
        broker
    }

    fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("mosquitto.log")).unwrap_or_default()
    }

    /// Writes the password file with exactly these users (read again on SIGHUP).
    fn write_users(&self, users: &[(&str, &str)]) {
        let file = self.dir.join("passwd");
        let _ = std::fs::remove_file(&file);
        std::fs::write(&file, "").expect("password file");
        for (user, password) in users {
            let out = Command::new("mosquitto_passwd")
                .args(["-b"])
                .arg(&file)
                .args([user, password])
                .output()
                .expect("mosquitto_passwd");
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }

    /// Starts the broker process (again) on the same port, and waits until it listens.
    fn restart(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        let auth = if self.users.is_empty() {
            "allow_anonymous true\n".to_string()
        } else {
            format!(
                "allow_anonymous false\npassword_file {}\n",
                self.dir.join("passwd").display()
            )
        };
        let tls = self.tls.as_ref().map_or(String::new(), |d| {
            format!(
                "cafile {}\ncertfile {}\nkeyfile {}\n",
                d.join("ca.pem").display(),
                d.join("server.pem").display(),
                d.join("server.key").display()
            )
        });
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\n{tls}{auth}persistence false\nuser root\nlog_dest file {}\nlog_type all\nconnection_messages true\n",
                self.port,
                self.dir.join("mosquitto.log").display()
            ),
        )
        .expect("broker config");
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (apt-get install mosquitto)");
        self.child = Some(child);
        wait_until("the broker listening", Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", self.port))
                .ok()
                .map(|_| ())
        });
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().expect("the broker runs").id()
    }

    /// SIGKILL: the broker is gone at once, with every session and queued message.
    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Endpoint {
    /// Publishes `payload` as the hub (QoS 1).
    fn publish(&self, topic: &str, payload: &[u8], retain: bool) {
        let file = self.dir.join(format!("payload-{}", wall_ms()));
        std::fs::write(&file, payload).expect("payload file");
        let mut command = Command::new("mosquitto_pub");
        command
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-q",
                "1",
                "-t",
                topic,
            ])
            .arg("-f")
            .arg(&file);
        if retain {
            command.arg("-r");
        }
        self.credentials(&mut command);
        let out = command.output().expect("mosquitto_pub");
        let _ = std::fs::remove_file(&file);
        assert!(
            out.status.success(),
            "mosquitto_pub to {topic}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn credentials(&self, command: &mut Command) {
        if self.auth {
            command.args(["-u", HUB_USER, "-P", HUB_PASSWORD]);
        }
        if let Some(ca) = &self.ca {
            command.arg("--cafile").arg(ca);
        }
    }

    /// A subscriber recording every message on `filters`.
    fn watch(&self, filters: &[&str]) -> Watch {
        let mut command = Command::new("mosquitto_sub");
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-q",
            "1",
            "-F",
            "%r %t %x",
        ]);
        for filter in filters {
            command.args(["-t", filter]);
        }
        self.credentials(&mut command);
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .stdin(Stdio::null())
            .spawn()
            .expect("mosquitto_sub");
        let stdout = child.stdout.take().expect("stdout");
        let messages = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&messages);
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let mut parts = line.splitn(3, ' ');
                let (Some(retained), Some(topic), Some(hex)) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    continue;
                };
                sink.lock().expect("lock").push(Msg {
                    retained: retained == "1",
                    topic: topic.to_string(),
                    payload: unhex(hex),
                });
            }
        });
        Watch { child, messages }
    }

    /// The retained message on `topic`, read by a fresh subscriber.
    fn retained(&self, topic: &str) -> Option<Msg> {
        let mut command = Command::new("mosquitto_sub");
        command.args([
            "-h",
            "127.0.0.1",
            "-p",
            &self.port.to_string(),
            "-t",
            topic,
            "-C",
            "1",
            "-W",
            "3",
            "--retained-only",
            "-F",
            "%r %t %x",
        ]);
        self.credentials(&mut command);
        let out = command.output().expect("mosquitto_sub");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.trim().splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(retained), Some(topic), Some(hex)) => Some(Msg {
                retained: retained == "1",
                topic: topic.to_string(),
                payload: unhex(hex),
            }),
            _ => None,
        }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
            if let Some(tls) = &self.tls {
                let _ = std::fs::remove_dir_all(tls);
            }
        } else {
            eprintln!("broker log tail:\n{}", tail(&self.log(), 40));
        }
    }
}

/// A self-signed CA in `dir`: `{name}.pem` and `{name}.key`.
fn make_ca(dir: &Path, name: &str) {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.pem"),
        ])
        .args(["-subj", &format!("/CN=shoal test {name}")])
        .output()
        .expect("openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn unhex(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2)
        .filter_map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[derive(Clone, Debug)]
struct Msg {
    retained: bool,
    topic: String,
    payload: Vec<u8>,
}

/// A running `mosquitto_sub` and what it received, in order.
#[derive(Debug)]
struct Watch {
    child: Child,
    messages: Arc<Mutex<Vec<Msg>>>,
}

impl Watch {
    fn messages(&self) -> Vec<Msg> {
        self.messages.lock().expect("lock").clone()
    }

    fn on(&self, suffix: &str) -> Vec<Msg> {
        self.messages()
            .into_iter()
            .filter(|m| m.topic.ends_with(suffix))
            .collect()
    }

    fn statuses(&self) -> Vec<NodeStatus> {
        self.on("/status")
            .iter()
            .map(|m| decode(&m.payload))
            .collect()
    }

    fn responses(&self, id: u64) -> Vec<RpcResponseBody> {
        self.on("/rpc/resp")
            .iter()
            .map(|m| decode::<RpcResponse>(&m.payload))
            .filter(|r| r.id == id)
            .map(|r| r.body)
            .collect()
    }

    fn wait<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut check: impl FnMut(&Watch) -> Option<T>,
    ) -> T {
        wait_until(what, timeout, || check(self))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn decode<M: Message>(payload: &[u8]) -> M {
    wire::decode::<M>(payload, &Limits::default())
        .expect("the agent publishes valid messages")
        .1
}

// ---------------------------------------------------------------------------------------
// Playing the hub

fn topic(node: &str, channel: &str) -> String {
    format!("{PREFIX}/node/{node}/{channel}")
}

fn hub_config(broker: &Mosquitto, password: Option<&str>) -> String {
    let password = password.map_or(String::new(), |p| format!("password = \"{p}\"\n"));
    format!(
        "[hub]\nbroker = \"{}\"\nca_file = \"{}\"\n{password}keep_alive = \"2s\"\nheartbeat = \"2s\"\nsigning_keys = [\"{}\"]\n",
        broker.url(),
        broker.ca.as_ref().expect("a TLS broker").display(),
        hub_key().public()
    )
}

/// The key this test's "hub" signs desired states with; agents trust it from their config.
fn hub_key() -> &'static SigningKey {
    static KEY: OnceLock<SigningKey> = OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("a key").0)
}

/// `state` encoded as the hub sends it: signed by `key`.
fn signed(key: &SigningKey, state: &DesiredState) -> Vec<u8> {
    let mut envelope = Envelope::seal(&state.node_id, state).expect("seal");
    key.sign(&mut envelope);
    envelope.encode(&Limits::default()).expect("encodes")
}

/// Workloads from (name, shell script, extra spec) rows, as the hub would send them.
fn workloads(rows: &[(&str, &str, &str)]) -> Vec<DesiredWorkload> {
    rows.iter()
        .map(|(name, script, spec)| {
            let spec = format!("  stopGracePeriod: 1s\n{spec}");
            let text = shell_workload(name, script, &spec, "");
            let (mut loaded, diagnostics) = parse_manifest(Path::new("hub.yaml"), &text);
            assert!(diagnostics.is_empty(), "{diagnostics:?}");
            DesiredWorkload {
                workload: loaded.remove(0).workload,
                revision: 1,
            }
        })
        .collect()
}

fn send_desired(broker: &Endpoint, node: &str, generation: u64, workloads: Vec<DesiredWorkload>) {
    let state = DesiredState {
        node_id: node.into(),
        generation,
        workloads,
        signing_keys: Vec::new(),
        agent: None,
    };
    broker.publish(&topic(node, "desired"), &signed(hub_key(), &state), true);
}

fn send_request(broker: &Endpoint, node: &str, id: u64, body: RpcRequestBody) {
    let bytes = wire::encode(node, &RpcRequest { id, body }, &Limits::default()).expect("encodes");
    broker.publish(&topic(node, "rpc/req"), &bytes, false);
}

/// Empties the node's desired state when the test ends (passing or not), so the agent stops
/// its containers before the harness tears it down. Declared after the broker and the agent,
/// so it is dropped before them.
struct EmptyOnDrop {
    broker: Endpoint,
    socket: PathBuf,
    node: &'static str,
}

impl Drop for EmptyOnDrop {
    fn drop(&mut self) {
        if std::panic::catch_unwind(|| send_desired(&self.broker, self.node, 1 << 40, Vec::new()))
            .is_err()
        {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            let out = Command::new(shoal_tests::binary("shoal-agent"))
                .arg("ps")
                .arg("--socket")
                .arg(&self.socket)
                .output()
                .expect("shoal-agent ps");
            let rows = shoal_tests::agent::parse_table(&String::from_utf8_lossy(&out.stdout));
            if !out.status.success() || rows.is_empty() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn running(rows: &[Row], workload: &str) -> bool {
    cell(rows, workload, "main", "STATE") == "Running"
}

fn pid(rows: &[Row], workload: &str) -> String {
    cell(rows, workload, "main", "PID")
}

fn container_state(status: &NodeStatus, workload: &str) -> Option<ContainerState> {
    status
        .workloads
        .iter()
        .find(|w| w.name == workload)
        .and_then(|w| w.containers.first())
        .map(|c| c.state)
}

fn log_text(chunks: &[RpcResponseBody]) -> (String, bool) {
    let mut text = Vec::new();
    let mut eof = false;
    for chunk in chunks {
        if let RpcResponseBody::LogChunk { data, eof: last } = chunk {
            text.extend_from_slice(data);
            eof |= *last;
        }
    }
    (String::from_utf8_lossy(&text).into_owned(), eof)
}

// ---------------------------------------------------------------------------------------

#[test]
fn a_hub_over_mqtt_drives_the_agent_and_gets_its_answers() {
    let node = "mqtt-drive";
    let broker = Mosquitto::start(node, &[]);
    let watch = broker.watch(&[&format!("{PREFIX}/node/{node}/#")]);
    let mut agent = Agent::new(node, &hub_config(&broker, None));
    agent.start();
    agent.import_busybox();
    let cleanup = EmptyOnDrop {
        broker: broker.endpoint.clone(),
        socket: agent.socket.clone(),
        node,
    };

    // Presence: online, retained, with the node's facts.
    let presence: Presence = watch.wait("presence online", Duration::from_secs(20), |w| {
        w.on("/presence")
            .last()
            .map(|m| decode::<Presence>(&m.payload))
    });
    assert!(presence.online);
    assert_eq!(presence.node_id, node);
    assert!(!presence.facts.agent_version.is_empty() && !presence.facts.arch.is_empty());
    let retained = broker
        .retained(&topic(node, "presence"))
        .expect("a retained presence");
    assert!(retained.retained && decode::<Presence>(&retained.payload).online);

    // Generation 1: two workloads run.
    let web = ("web", "echo hello from web; exec sleep 300", "");
    let side_v1 = ("side", "exec sleep 300", "");
    send_desired(&broker, node, 1, workloads(&[web, side_v1]));
    let before = agent.wait_for("web and side running", Duration::from_secs(30), |rows| {
        running(rows, "web") && running(rows, "side")
    });
    watch.wait("a status for generation 1", Duration::from_secs(10), |w| {
        w.statuses().into_iter().find(|s| {
            s.observed_generation == 1
                && container_state(s, "web") == Some(ContainerState::Running)
                && container_state(s, "side") == Some(ContainerState::Running)
        })
    });

    // Generation 2 changes `side` only: `web` keeps its process.
    let side_v2 = ("side", "while true; do echo tick; sleep 0.2; done", "");
    send_desired(&broker, node, 2, workloads(&[web, side_v2]));
    let after = agent.wait_for("side replaced", Duration::from_secs(30), |rows| {
        running(rows, "side") && pid(rows, "side") != pid(&before, "side")
    });
    assert_eq!(
        pid(&after, "web"),
        pid(&before, "web"),
        "web was not restarted"
    );
    assert_eq!(cell(&after, "web", "main", "RESTARTS"), "0");

    // Refused, each with a warning event, and nothing changes: an older generation (a
    // replay), another node's state, an unsigned state, one signed by a key the node does not
    // trust, and bytes that do not decode.
    send_desired(&broker, node, 1, workloads(&[web, side_v1]));
    let theirs = DesiredState {
        node_id: "someone-else".into(),
        generation: 9,
        workloads: Vec::new(),
        signing_keys: Vec::new(),
        agent: None,
    };
    broker.publish(&topic(node, "desired"), &signed(hub_key(), &theirs), false);
    let takeover = DesiredState {
        node_id: node.into(),
        generation: 50,
        workloads: workloads(&[("evil", "exec sleep 300", "")]),
        signing_keys: Vec::new(),
        agent: None,
    };
    let unsigned = wire::encode(node, &takeover, &Limits::default()).expect("encodes");
    broker.publish(&topic(node, "desired"), &unsigned, false);
    let (stranger, _) = SigningKey::generate().expect("a key");
    broker.publish(
        &topic(node, "desired"),
        &signed(&stranger, &takeover),
        false,
    );
    broker.publish(&topic(node, "desired"), b"\x02garbage", false);
    let expected = [
        "generation 2 is already accepted, so this is an old state replayed",
        "`someone-else`",
        "it is not signed",
        "which this node does not trust",
        "cannot read the desired state",
    ];
    let refused = watch.wait("five refusals reported", Duration::from_secs(15), |w| {
        let refused: Vec<String> = w
            .statuses()
            .iter()
            .flat_map(|s| s.events.clone())
            .filter(|e| e.reason == EventReason::DesiredStateRejected)
            .map(|e| e.message)
            .collect();
        (refused.len() >= expected.len()).then_some(refused)
    });
    for (message, expected) in refused.iter().zip(expected) {
        assert!(message.contains(expected), "{expected:?} in {refused:?}");
    }
    std::thread::sleep(Duration::from_secs(1));
    let rows = agent.ps();
    assert_eq!(rows.len(), 2, "still running generation 2: {rows:?}");
    assert_eq!(
        pid(&rows, "side"),
        pid(&after, "side"),
        "side stays at generation 2"
    );
    let newest = watch.statuses().pop().expect("statuses");
    assert_eq!(newest.observed_generation, 2);

    // Local changes are refused: the hub owns this node.
    let file = agent.root.join("local.yaml");
    std::fs::write(&file, shell_workload("local", "sleep 1", "", "")).expect("write");
    let out = agent.cli(&["apply", "-f", &file.display().to_string()]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("managed by the hub"), "{stderr}");

    // RPC: status, a log, a refused local-only request.
    send_request(&broker, node, 11, RpcRequestBody::Status);
    let status = watch.wait("the status answer", Duration::from_secs(10), |w| {
        w.responses(11).into_iter().find_map(|b| match b {
            RpcResponseBody::Status(status) => Some(status),
            _ => None,
        })
    });
    assert_eq!(status.node_id, node);
    assert_eq!(
        container_state(&status, "web"),
        Some(ContainerState::Running)
    );
    send_request(
        &broker,
        node,
        12,
        RpcRequestBody::Logs {
            workload: "web".into(),
            container: None,
            tail: None,
            follow: false,
        },
    );
    let (text, _) = watch.wait("the log answer", Duration::from_secs(10), |w| {
        let (text, eof) = log_text(&w.responses(12));
        eof.then_some((text, eof))
    });
    assert_eq!(text, "hello from web\n");
    let archive = busybox_archive().display().to_string();
    send_request(
        &broker,
        node,
        13,
        RpcRequestBody::ImportImage { path: archive },
    );
    let refusal = watch.wait("the refusal", Duration::from_secs(10), |w| {
        w.responses(13).into_iter().find_map(|b| match b {
            RpcResponseBody::Error { message } => Some(message),
            _ => None,
        })
    });
    assert!(
        refusal.contains("only allowed from the device's local CLI"),
        "{refusal}"
    );

    // A followed log streams until the hub cancels it.
    send_request(
        &broker,
        node,
        14,
        RpcRequestBody::Logs {
            workload: "side".into(),
            container: None,
            tail: Some(0),
            follow: true,
        },
    );
    watch.wait("followed ticks", Duration::from_secs(10), |w| {
        (log_text(&w.responses(14)).0.matches("tick").count() >= 3).then_some(())
    });
    send_request(&broker, node, 15, RpcRequestBody::Cancel { id: 14 });
    let done = watch.wait("the cancel answer", Duration::from_secs(10), |w| {
        w.responses(15).into_iter().next()
    });
    assert_eq!(
        done,
        RpcResponseBody::Done {
            message: "cancelled request 14".into()
        }
    );
    std::thread::sleep(Duration::from_millis(500));
    let settled = watch.responses(14).len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        watch.responses(14).len(),
        settled,
        "no chunks after the cancel"
    );

    // The agent dies abruptly: the broker announces it offline with the last will.
    agent.kill9();
    let will = watch.wait("the last will", Duration::from_secs(10), |w| {
        w.on("/presence")
            .last()
            .map(|m| decode::<Presence>(&m.payload))
            .filter(|p| !p.online)
    });
    assert_eq!(will.node_id, node);
    let retained = broker
        .retained(&topic(node, "presence"))
        .expect("a retained presence");
    assert!(!decode::<Presence>(&retained.payload).online);

    // Back up: online again, containers re-adopted, not restarted.
    agent.start();
    watch.wait("presence online again", Duration::from_secs(20), |w| {
        w.on("/presence")
            .last()
            .map(|m| decode::<Presence>(&m.payload))
            .filter(|p| p.online)
    });
    let readopted = agent.wait_for("web re-adopted", Duration::from_secs(20), |rows| {
        running(rows, "web")
    });
    assert_eq!(pid(&readopted, "web"), pid(&before, "web"));
    drop(cleanup);
}

#[test]
fn statuses_buffered_while_the_broker_is_down_arrive_in_order_with_every_event() {
    let node = "mqtt-outage";
    let node_password = "node-secret";
    let mut broker = Mosquitto::start(node, &[(HUB_USER, HUB_PASSWORD), (node, node_password)]);
    let status_topic = topic(node, "status");
    let marker_topic = format!("test/{node}/marker");
    let first = broker.watch(&[&status_topic]);
    let mut agent = Agent::new(node, &hub_config(&broker, Some(node_password)));
    agent.start();
    agent.import_busybox();
    let cleanup = EmptyOnDrop {
        broker: broker.endpoint.clone(),
        socket: agent.socket.clone(),
        node,
    };
    send_desired(
        &broker,
        node,
        1,
        workloads(&[
            ("steady", "exec sleep 300", ""),
            ("flaky", "sleep 1; exit 3", ""),
        ]),
    );
    let rows = agent.wait_for("steady running", Duration::from_secs(30), |rows| {
        running(rows, "steady")
    });
    let steady_pid: u32 = pid(&rows, "steady").parse().expect("a pid");
    first.wait("a status for generation 1", Duration::from_secs(10), |w| {
        w.statuses()
            .into_iter()
            .find(|s| s.observed_generation == 1)
    });

    // The broker hangs: the agent notices the dead link within about twice the keep-alive.
    let hung = Instant::now();
    signal(broker.pid(), "-STOP");
    // Statuses made from now on cannot have been acknowledged by this broker.
    let outage_ms = wall_ms() + 1;
    wait_until("the dead link noticed", Duration::from_secs(15), || {
        agent
            .log()
            .contains("lost the link to the hub's broker")
            .then_some(())
    });
    assert!(
        hung.elapsed() <= Duration::from_secs(2 * 2 + 3),
        "noticed after {:?}",
        hung.elapsed()
    );
    broker.kill9();

    // Offline: a container is killed and restarted, the flaky one keeps crashing; all of it
    // is recorded and buffered.
    signal(steady_pid, "-9");
    agent.wait_for("steady restarted", Duration::from_secs(20), |rows| {
        running(rows, "steady") && pid(rows, "steady") != steady_pid.to_string()
    });
    std::thread::sleep(Duration::from_secs(3));
    drop(first);

    // The broker comes back on the same port, with no session (no persistence). The hub
    // subscribes first; only then may the agent in (its user is added and the broker reloaded).
    broker.write_users(&[(HUB_USER, HUB_PASSWORD)]);
    broker.restart();
    let second = broker.watch(&[&status_topic, &marker_topic]);
    second.wait("the hub subscribed again", Duration::from_secs(10), |w| {
        broker.publish(&marker_topic, b"here", false);
        (!w.on("/marker").is_empty()).then_some(())
    });
    let reconnect_ms = wall_ms();
    broker.write_users(&[(HUB_USER, HUB_PASSWORD), (node, node_password)]);
    signal(broker.pid(), "-HUP");

    let statuses = second.wait(
        "the buffered statuses and a fresh one",
        Duration::from_secs(60),
        |w| {
            let statuses = w.statuses();
            statuses
                .iter()
                .any(|s| s.sent_at_ms > reconnect_ms)
                .then_some(statuses)
        },
    );

    // Duplicates (resent after a lost acknowledgement) are allowed; the hub drops them.
    let mut seen = BTreeMap::new();
    let mut delivered = Vec::new();
    for status in statuses {
        if let Some(earlier) = seen.get(&status.sequence) {
            assert_eq!(earlier, &status, "a resent status is identical");
            continue;
        }
        seen.insert(status.sequence, status.clone());
        delivered.push(status);
    }
    let offline: Vec<&NodeStatus> = delivered
        .iter()
        .filter(|s| s.sent_at_ms >= outage_ms && s.sent_at_ms < reconnect_ms)
        .collect();
    assert!(
        offline.len() >= 3,
        "statuses made during the outage: {}",
        offline.len()
    );
    // Everything made since the outage began arrives, in order, nothing missing.
    let since: Vec<&NodeStatus> = delivered
        .iter()
        .filter(|s| s.sent_at_ms >= outage_ms)
        .collect();
    for pair in since.windows(2) {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence + 1,
            "statuses in order with none missing"
        );
    }
    let events: Vec<&wire::Event> = since.iter().flat_map(|s| s.events.iter()).collect();
    for pair in events.windows(2) {
        assert_eq!(
            pair[1].sequence,
            pair[0].sequence + 1,
            "events in order with none missing: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    assert!(since.iter().all(|s| s.dropped_events == 0));
    eprintln!(
        "[{} statuses since the outage began, {} made offline, {} events]",
        since.len(),
        offline.len(),
        events.len()
    );
    // The restarted broker had no session for the agent: it subscribed again and resent
    // from its outbox.
    let fresh_sessions = agent.log().matches("session_present=false").count();
    assert!(
        fresh_sessions >= 2,
        "{fresh_sessions} connections without a session"
    );
    let killed = events
        .iter()
        .position(|e| {
            e.workload.as_deref() == Some("steady")
                && e.reason == EventReason::Exited
                && e.message == "exited (SIGKILL)"
        })
        .expect("the kill during the outage is reported");
    assert!(
        events[killed..]
            .iter()
            .any(|e| e.workload.as_deref() == Some("steady") && e.reason == EventReason::Started),
        "and the restart after it"
    );
    let crashes = events
        .iter()
        .filter(|e| e.workload.as_deref() == Some("flaky") && e.reason == EventReason::Exited)
        .count();
    assert!(crashes >= 2, "flaky's crashes: {crashes}");
    drop(cleanup);
}

#[test]
fn the_agent_reaches_a_tls_broker_that_its_ca_file_vouches_for_and_no_other() {
    let node = "mqtt-tls";
    let broker = Mosquitto::start(node, &[]);
    let ca = broker.ca.clone().expect("a CA");
    let watch = broker.watch(&[&format!("{PREFIX}/node/+/presence")]);
    let tls_config = |ca: &Path| {
        format!(
            "[hub]\nbroker = \"{}\"\nca_file = \"{}\"\nkeep_alive = \"2s\"\nsigning_keys = [\"{}\"]\n",
            broker.url(),
            ca.display(),
            hub_key().public()
        )
    };
    let mut agent = Agent::new(node, &tls_config(&ca));
    agent.start();
    let presence = watch.wait("presence over TLS", Duration::from_secs(20), |w| {
        w.on(&format!("/{node}/presence"))
            .last()
            .map(|m| decode::<Presence>(&m.payload))
    });
    assert!(presence.online);
    send_desired(&broker, node, 3, Vec::new());
    wait_until(
        "generation 3 accepted over TLS",
        Duration::from_secs(10),
        || {
            agent
                .log()
                .contains("generation 3 from the hub: no workload changes")
                .then_some(())
        },
    );

    // An agent trusting another CA refuses the broker, and says what to check.
    let stranger = "mqtt-tls-stranger";
    let other = std::env::temp_dir().join(format!("shoal-mqtt-{stranger}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&other);
    std::fs::create_dir_all(&other).expect("dir");
    make_ca(&other, "other");
    let mut doubter = Agent::new(stranger, &tls_config(&other.join("other.pem")));
    doubter.start();
    wait_until(
        "the stranger's TLS refusal",
        Duration::from_secs(10),
        || doubter.log().contains("check hub.ca_file").then_some(()),
    );
    assert!(
        watch.on(&format!("/{stranger}/presence")).is_empty(),
        "it never connected"
    );
    let _ = std::fs::remove_dir_all(&other);
}
