//! The hub with real agents: `shoal serve` (embedded broker, or Mosquitto configured by
//! `shoal broker-config`), real `shoal-agent run` processes with real containers, and what an
//! operator sees through `shoal get`, `describe`, `logs` and `shoal-agent ps`. Attacks on the
//! broker use Mosquitto's own clients with a node's real credentials.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_model::wire::{self, Event, EventReason, Limits, NodeStatus, NodeUsage, Severity};
use shoal_tests::agent::{cell, shell_workload, Agent, Row};
use shoal_tests::hub::{free_port, Hub};

const CONVERGE: Duration = Duration::from_secs(60);

fn running(rows: &[Row], workload: &str) -> bool {
    cell(rows, workload, "main", "STATE") == "Running"
}

fn has(rows: &[Row], workload: &str) -> bool {
    rows.iter()
        .any(|r| r.get("WORKLOAD").map(String::as_str) == Some(workload))
}

/// Starts a registered agent and imports the test image into it.
fn started(hub: &Hub, name: &str, labels: &str) -> Agent {
    let mut agent = hub.agent(name, labels);
    agent.start();
    agent.import_busybox();
    hub.wait_for(&format!("node {name} online"), CONVERGE, || {
        hub.node(name).filter(|n| n["online"] == true)
    });
    agent
}

/// `shoal apply -f FILE` of manifest text.
fn apply(hub: &Hub, name: &str, manifest: &str) -> String {
    let file = hub.root.join(format!("{name}.yaml"));
    std::fs::write(&file, manifest).expect("write manifest");
    hub.ok(&["apply", "-f", &file.display().to_string()])
}

/// Deletes every workload through the hub and waits until the agents run nothing.
fn clean_up(hub: &Hub, agents: &[&Agent]) {
    for workload in hub.get("workloads") {
        let name = workload["name"].as_str().unwrap_or_default().to_string();
        hub.ok(&["delete", "workload", &name]);
    }
    for agent in agents {
        agent.wait_for("nothing left running", CONVERGE, |rows| rows.is_empty());
    }
}

fn ready(workload: &Value, revision: u64) -> bool {
    workload["revision"] == revision
        && workload["ready"] == workload["wanted"]
        && workload["wanted"] != 0
}

#[test]
fn apply_places_by_labels_updates_converge_logs_flow_and_delete_removes() {
    let hub = Hub::start("place");
    let gateway = started(&hub, "place-gw", "role=gateway");
    let sensor = started(&hub, "place-sensor", "role=sensor");

    let v1 = shell_workload(
        "gw-app",
        "echo gw-app v1; while true; do sleep 1; done",
        "  placement: { mode: every, nodeSelector: { role: gateway } }\n",
        "",
    );
    let start = Instant::now();
    let out = apply(&hub, "gw-app", &v1);
    assert!(out.contains("workload/gw-app created"), "{out}");
    gateway.wait_for("gw-app running on the gateway", CONVERGE, |rows| {
        running(rows, "gw-app")
    });
    eprintln!(
        "[apply to running through the hub: {} ms]",
        start.elapsed().as_millis()
    );
    let info = hub.wait_for("gw-app ready in get workloads", CONVERGE, || {
        hub.workload("gw-app").filter(|w| ready(w, 1))
    });
    assert_eq!(info["nodes"], serde_json::json!(["place-gw"]));
    assert!(
        !has(&sensor.ps(), "gw-app"),
        "the sensor must not run gw-app"
    );
    let describe = hub.ok(&["describe", "workload", "gw-app"]);
    assert!(
        describe.contains("place-sensor") && describe.contains("role=gateway"),
        "describe says why the sensor does not run it:\n{describe}"
    );

    // Logs come from the device through the hub.
    let logs = hub.wait_for("gw-app's log through the hub", CONVERGE, || {
        let out = hub.cli(&["logs", "gw-app", "--tail", "5"]);
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (out.status.success() && text.contains("gw-app v1")).then_some(text)
    });
    assert!(logs.contains("gw-app v1"), "{logs}");

    // An update converges to the new revision.
    let v2 = v1.replace("gw-app v1", "gw-app v2");
    let out = apply(&hub, "gw-app", &v2);
    assert!(out.contains("configured"), "{out}");
    hub.wait_for("gw-app revision 2 ready", CONVERGE, || {
        hub.workload("gw-app").filter(|w| ready(w, 2))
    });
    hub.wait_for("the v2 log line", CONVERGE, || {
        let out = hub.cli(&["logs", "gw-app", "--tail", "5"]);
        String::from_utf8_lossy(&out.stdout)
            .contains("gw-app v2")
            .then_some(())
    });

    // Relabelling moves an `every` workload.
    hub.ok(&["node", "label", "place-sensor", "role=gateway"]);
    sensor.wait_for("gw-app follows the new label", CONVERGE, |rows| {
        running(rows, "gw-app")
    });

    // Delete removes it everywhere.
    let out = hub.ok(&["delete", "workload", "gw-app"]);
    assert!(out.contains("gw-app"), "{out}");
    gateway.wait_for("gw-app gone from the gateway", CONVERGE, |rows| {
        !has(rows, "gw-app")
    });
    sensor.wait_for("gw-app gone from the sensor", CONVERGE, |rows| {
        !has(rows, "gw-app")
    });
    assert!(hub.workload("gw-app").is_none());
    clean_up(&hub, &[&gateway, &sensor]);
}

#[test]
fn a_hub_killed_with_sigkill_loses_no_workload_and_restarts_no_container() {
    let mut hub = Hub::start("crash");
    let agent = started(&hub, "crash-a", "");
    apply(
        &hub,
        "steady",
        &shell_workload("steady", "while true; do sleep 1; done", "", ""),
    );
    let rows = agent.wait_for("steady running", CONVERGE, |rows| running(rows, "steady"));
    let pid = cell(&rows, "steady", "main", "PID");
    let before = hub.wait_for("steady ready", CONVERGE, || {
        hub.workload("steady").filter(|w| ready(w, 1))
    });
    let generation = hub.node("crash-a").expect("node")["desired_generation"].clone();

    hub.kill9();
    let start = Instant::now();
    hub.restart();
    hub.wait_for(
        "the agent back online after the hub restart",
        CONVERGE,
        || hub.node("crash-a").filter(|n| n["online"] == true),
    );
    // Let the controller run its first passes (republishing what the broker lost).
    std::thread::sleep(Duration::from_secs(3));
    eprintln!(
        "[hub restart to agent online: {} ms]",
        start.elapsed().as_millis()
    );

    let after = hub.workload("steady").expect("steady survives the crash");
    assert_eq!(after["revision"], before["revision"]);
    assert_eq!(
        hub.node("crash-a").expect("node")["desired_generation"],
        generation
    );
    let rows = agent.ps();
    assert!(running(&rows, "steady"));
    assert_eq!(
        cell(&rows, "steady", "main", "PID"),
        pid,
        "the container was restarted"
    );
    assert_eq!(cell(&rows, "steady", "main", "RESTARTS"), "0");
    clean_up(&hub, &[&agent]);
}

// ---- the broker's access rules, attacked with Mosquitto's own clients ----

fn mosquitto_sub(port: u16, user: &str, password: &str, topic: &str, wait_s: u32) -> Output {
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv311"])
        .args([
            "-u", user, "-P", password, "-i", user, "-q", "1", "-C", "5", "-v",
        ])
        .args(["-W", &wait_s.to_string(), "-t", topic])
        .output()
        .expect("run mosquitto_sub (apt-get install mosquitto-clients)")
}

fn mosquitto_pub(port: u16, user: &str, password: &str, topic: &str, file: &Path) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv311"])
        .args([
            "-u", user, "-P", password, "-i", user, "-q", "1", "-t", topic, "-f",
        ])
        .arg(file)
        .output()
        .expect("run mosquitto_pub (apt-get install mosquitto-clients)")
}

/// A valid status of `node` carrying one event with `message`, encoded for the wire. Its
/// sequence numbers are far above what a real agent reaches in a test, so the hub never takes
/// it for a repeat of one of the agent's own.
fn status_payload(node: &str, message: &str) -> Vec<u8> {
    const FAR: u64 = 1_000_000;
    let status = NodeStatus {
        node_id: node.into(),
        observed_generation: 0,
        sequence: FAR,
        sent_at_ms: 1,
        workloads: Vec::new(),
        usage: NodeUsage::default(),
        events: vec![Event {
            sequence: FAR,
            at_ms: 1,
            severity: Severity::Warning,
            workload: None,
            container: None,
            reason: EventReason::AgentStarted,
            message: message.into(),
        }],
        dropped_events: 0,
    };
    wire::encode(node, &status, &Limits::default()).expect("encode a status")
}

fn assert_acl_holds(hub: &Hub, port: u16, a: (&str, &str), b: (&str, &str)) {
    let (a_name, a_password) = a;
    let (b_name, b_password) = b;
    let a_desired = format!("shoal/v1/node/{a_name}/desired");
    // The node itself reads its retained desired state...
    let own = mosquitto_sub(port, a_name, a_password, &a_desired, 3);
    assert!(
        String::from_utf8_lossy(&own.stdout).contains(&a_desired),
        "node {a_name} must read its own desired state: {own:?}"
    );
    // ...another node's credentials do not, by name or by wildcard (a wildcard may bring B
    // its own topics, as Mosquitto's pattern ACL allows, but never A's).
    let a_topics = format!("shoal/v1/node/{a_name}/");
    for topic in [a_desired.as_str(), "shoal/v1/node/+/desired", "#"] {
        let stolen = mosquitto_sub(port, b_name, b_password, topic, 2);
        let seen = String::from_utf8_lossy(&stolen.stdout);
        assert!(
            !seen.contains(&a_topics),
            "node {b_name} read {a_name}'s messages through `{topic}`: {seen:?}"
        );
    }
    // A wrong password is refused.
    let refused = mosquitto_sub(port, a_name, "not-the-password", &a_desired, 2);
    assert!(
        !refused.status.success() && refused.stdout.is_empty(),
        "{refused:?}"
    );

    // A status forged by B on A's topic never reaches the hub; A's own does (the control).
    let forged = hub.root.join("forged.bin");
    std::fs::write(&forged, status_payload(a_name, "forged-by-b")).expect("write payload");
    let _ = mosquitto_pub(
        port,
        b_name,
        b_password,
        &format!("shoal/v1/node/{a_name}/status"),
        &forged,
    );
    let genuine = hub.root.join("genuine.bin");
    std::fs::write(&genuine, status_payload(a_name, "sent-by-a")).expect("write payload");
    let sent = mosquitto_pub(
        port,
        a_name,
        a_password,
        &format!("shoal/v1/node/{a_name}/status"),
        &genuine,
    );
    assert!(sent.status.success(), "{sent:?}");
    let describe = hub.wait_for("A's own status event at the hub", CONVERGE, || {
        let text = hub.ok(&["describe", "node", a_name]);
        text.contains("sent-by-a").then_some(text)
    });
    assert!(
        !describe.contains("forged-by-b"),
        "a forged status reached the hub:\n{describe}"
    );
}

#[test]
fn a_nodes_credentials_reach_only_its_own_topics_on_the_embedded_broker() {
    let hub = Hub::start("acl");
    let a = hub.add_node("acl-a", "");
    let b = hub.add_node("acl-b", "");
    hub.wait_for("a's desired state published", CONVERGE, || {
        hub.node("acl-a").filter(|n| n["desired_generation"] != 0)
    });
    assert_acl_holds(&hub, hub.mqtt_port, ("acl-a", &a), ("acl-b", &b));
}

#[test]
fn a_payload_over_the_size_limit_is_refused_without_wedging_the_hub_or_the_agents() {
    let hub = Hub::start("oversize");
    let agent = started(&hub, "oversize-a", "");
    let intruder = hub.add_node("oversize-c", "");
    let big = hub.root.join("big.bin");
    std::fs::write(&big, vec![b'x'; 3 << 20]).expect("write 3 MiB");
    let start = Instant::now();
    let out = mosquitto_pub(
        hub.mqtt_port,
        "oversize-c",
        &intruder,
        "shoal/v1/node/oversize-c/status",
        &big,
    );
    eprintln!(
        "[oversized publish refused after {} ms: {:?}]",
        start.elapsed().as_millis(),
        out.status
    );
    // The hub and the agent keep working: a new workload still converges.
    apply(
        &hub,
        "after-big",
        &shell_workload("after-big", "while true; do sleep 1; done", "", ""),
    );
    agent.wait_for(
        "a workload applied after the oversized message",
        CONVERGE,
        |rows| running(rows, "after-big"),
    );
    // And the node that sent it can still send a proper message.
    let small = hub.root.join("small.bin");
    std::fs::write(&small, status_payload("oversize-c", "small-again")).expect("write payload");
    let again = mosquitto_pub(
        hub.mqtt_port,
        "oversize-c",
        &intruder,
        "shoal/v1/node/oversize-c/status",
        &small,
    );
    assert!(again.status.success(), "{again:?}");
    hub.wait_for("the small status at the hub", CONVERGE, || {
        hub.ok(&["describe", "node", "oversize-c"])
            .contains("small-again")
            .then_some(())
    });
    clean_up(&hub, &[&agent]);
}

// ---- an external broker ----

/// `mosquitto -c conf` in the background; killed on drop.
struct Mosquitto(std::process::Child);

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn the_same_agent_works_against_mosquitto_configured_by_shoal_broker_config() {
    let port = free_port();
    let hub = Hub::start_with_broker("mosq", Some(format!("mqtt://127.0.0.1:{port}")));
    let mut agent = hub.agent("mosq-a", "");
    // The attacks use two nodes with no agent running: a client with a node's id would take
    // over that agent's session.
    let b = hub.add_node("mosq-b", "");
    let c = hub.add_node("mosq-c", "");
    let dir = hub.root.join("mosquitto");
    std::fs::create_dir_all(&dir).expect("mosquitto dir");
    hub.ok(&[
        "broker-config",
        "mosquitto",
        "--port",
        &port.to_string(),
        "--out",
        &dir.display().to_string(),
    ]);
    // Mosquitto started as root drops to the `mosquitto` user before reading its files.
    let chown = Command::new("chown")
        .args(["-R", "mosquitto"])
        .arg(&dir)
        .status()
        .expect("chown");
    assert!(chown.success());
    let log = std::fs::File::create(hub.root.join("mosquitto.log")).expect("log");
    let _broker = Mosquitto(
        Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .expect("start mosquitto"),
    );
    agent.start();
    agent.import_busybox();
    hub.wait_for("mosq-a online through mosquitto", CONVERGE, || {
        hub.node("mosq-a").filter(|n| n["online"] == true)
    });
    apply(
        &hub,
        "via-mosquitto",
        &shell_workload("via-mosquitto", "while true; do sleep 1; done", "", ""),
    );
    agent.wait_for("running through mosquitto", CONVERGE, |rows| {
        running(rows, "via-mosquitto")
    });
    hub.wait_for("ready through mosquitto", CONVERGE, || {
        hub.workload("via-mosquitto").filter(|w| ready(w, 1))
    });
    assert_acl_holds(&hub, port, ("mosq-c", &c), ("mosq-b", &b));
    clean_up(&hub, &[&agent]);
}

// ---- the quickstart ----

/// `shoal up --demo` in the background, stopped with SIGTERM on drop.
struct Up(std::process::Child);

impl Drop for Up {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[test]
fn shoal_up_demo_brings_hello_to_running_and_get_workloads_shows_it() {
    let root = std::env::temp_dir().join(format!("shoal-up-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).expect("demo dir");
    let api = format!("127.0.0.1:{}", free_port());
    let start = Instant::now();
    let mut up = Up(Command::new(shoal_tests::binary("shoal"))
        .current_dir(&root)
        .args(["up", "--demo", "--node", "up-demo", "--listen-api", &api])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null())
        .spawn()
        .expect("start shoal up --demo"));
    let stdout = up.0.stdout.take().expect("stdout");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let mut seen = String::new();
    loop {
        match lines.next() {
            Some(Ok(line)) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("workload/hello is running") {
                    break;
                }
            }
            _ => {
                let mut stderr = String::new();
                if let Some(mut err) = up.0.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut err, &mut stderr);
                }
                panic!("`shoal up --demo` ended before hello ran:\n{seen}{stderr}");
            }
        }
        assert!(
            start.elapsed() < CONVERGE,
            "no running line within {CONVERGE:?}:\n{seen}"
        );
    }
    eprintln!(
        "[shoal up --demo to hello running: {} ms]",
        start.elapsed().as_millis()
    );
    // The CLI finds the token in ./.shoal, as the README says.
    let shoal = |args: &[&str]| {
        Command::new(shoal_tests::binary("shoal"))
            .current_dir(&root)
            .args(args)
            .args(["--hub", &format!("http://{api}")])
            .env_remove("SHOAL_TOKEN")
            .output()
            .expect("run shoal")
    };
    let table = shoal(&["get", "workloads"]);
    let text = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(table.status.success(), "{table:?}");
    let hello = text
        .lines()
        .find(|l| l.starts_with("hello "))
        .unwrap_or_else(|| panic!("no hello row:\n{text}"));
    assert!(hello.contains("1/1"), "hello is not ready:\n{text}");
    let logs = shoal(&["logs", "hello", "--tail", "2"]);
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("hello from"),
        "{logs:?}"
    );
    // Leave nothing running: delete through the hub and wait for the agent to stop it.
    assert!(shoal(&["delete", "workload", "hello"]).status.success());
    let socket = root.join(".shoal/agent/run/agent.sock");
    let deadline = Instant::now() + CONVERGE;
    loop {
        let ps = Command::new(shoal_tests::binary("shoal-agent"))
            .args(["ps", "--socket"])
            .arg(&socket)
            .output()
            .expect("shoal-agent ps");
        if shoal_tests::agent::parse_table(&String::from_utf8_lossy(&ps.stdout)).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "hello was not removed: {ps:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(up);
    shoal_tests::agent::unmount_under(&root);
    let _ = std::fs::remove_dir_all(&root);
}
