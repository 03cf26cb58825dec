//! The hub with real agents: `shoal serve` (embedded broker, or Mosquitto configured by
//! `shoal broker-config`), real `shoal-agent run` processes with real containers, and what an
//! operator sees through `shoal get`, `describe`, `logs` and `shoal-agent ps`. Attacks on the
//! broker use Mosquitto's own clients with a node's real credentials.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use shoal_model::wire::{self, Event, EventReason, Limits, NodeStatus, NodeUsage, Severity};
use shoal_tests::agent::{cell, image_workload, shell_workload, Agent, Row};
use shoal_tests::hub::{free_port, ready, Hub};
use shoal_tests::images::UnpullableImages;

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
    hub.wait_node_online(name);
    agent
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
    let out = hub.apply("gw-app", &v1);
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
    let out = hub.apply("gw-app", &v2);
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
fn apply_stores_a_workload_with_a_rollout_and_warns_about_nothing_the_hub_enforces() {
    let hub = Hub::start("rollout-warning");
    let staged = shell_workload(
        "staged",
        "sleep 300",
        "  rollout: { maxUnavailable: 1 }\n",
        "",
    );
    let plain = shell_workload("plain", "sleep 300", "", "");
    let dir = hub.root.join("manifests");
    std::fs::create_dir_all(&dir).expect("manifest dir");
    std::fs::write(dir.join("plain.yaml"), plain).expect("write");
    std::fs::write(dir.join("staged.yaml"), staged).expect("write");
    for dry_run in [true, false] {
        let mut args = vec!["apply", "-f", dir.to_str().expect("utf-8 path")];
        if dry_run {
            args.push("--dry-run");
        }
        let out = hub.cli(&args);
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(out.status.success(), "{stdout}{stderr}");
        assert!(
            stdout.contains("workload/staged created") && stdout.contains("workload/plain created"),
            "{stdout}"
        );
        assert_eq!(stderr, "", "the hub enforces rollouts: no warning");
    }
    assert!(hub.workload("staged").is_some());
}

#[test]
fn diff_and_apply_read_stdin_and_diff_exits_0_unchanged_1_changed_2_on_error() {
    let mut hub = Hub::start("diff-stdin");
    let manifest = shell_workload("piped", "sleep 300", "", "");
    let code = |out: &Output| {
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };

    let (status, text) = code(&hub.cli_stdin(&["diff", "-f", "-"], &manifest));
    assert_eq!(status, Some(1), "a new workload is a change: {text}");
    assert!(text.contains("piped"), "{text}");

    let (status, text) = code(&hub.cli_stdin(&["apply", "-f", "-"], &manifest));
    assert_eq!(status, Some(0), "{text}");
    assert!(text.contains("workload/piped created"), "{text}");
    assert!(hub.workload("piped").is_some());

    let (status, text) = code(&hub.cli_stdin(&["diff", "-f", "-"], &manifest));
    assert_eq!((status, text.as_str()), (Some(0), ""), "nothing changes");

    let misspelled = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../model/tests/invalid/misspelled-field.yaml"),
    )
    .expect("fixture");
    for command in ["apply", "diff"] {
        let (status, text) = code(&hub.cli_stdin(&[command, "-f", "-"], &misspelled));
        let expected = if command == "diff" { 2 } else { 1 };
        assert_eq!(
            status,
            Some(expected),
            "`{command}` of a bad manifest: {text}"
        );
        assert!(
            text.contains("<stdin>:9:20: spec.containers[0].resources.memroy"),
            "problems in stdin are named `<stdin>` with their position: {text}"
        );
    }

    let (status, text) = code(&hub.cli(&["diff", "-f", "/nonexistent/shoal.yaml"]));
    assert_eq!(status, Some(2), "an unreadable file is an error: {text}");
    hub.kill9();
    let (status, text) = code(&hub.cli_stdin(&["diff", "-f", "-"], &manifest));
    assert_eq!(status, Some(2), "an unreachable hub is an error: {text}");
}

#[test]
fn a_hub_killed_with_sigkill_loses_no_workload_and_restarts_no_container() {
    let mut hub = Hub::start("crash");
    let agent = started(&hub, "crash-a", "");
    hub.apply(
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

#[test]
fn a_hub_restored_from_a_backup_onto_a_fresh_data_dir_gets_its_agents_back_without_enrolling_them_again(
) {
    let mut hub = Hub::start("backup");
    let agent = started(&hub, "backup-a", "site=plant-1");
    hub.apply(
        "steady",
        &shell_workload("steady", "while true; do sleep 1; done", "", ""),
    );
    let rows = agent.wait_for("steady running", CONVERGE, |rows| running(rows, "steady"));
    let pid = cell(&rows, "steady", "main", "PID");
    let before = hub.wait_for("steady ready", CONVERGE, || {
        hub.workload("steady").filter(|w| ready(w, 1))
    });
    let enrollment = std::fs::read(agent.root.join("data/enrollment.toml")).expect("enrolled");

    // Taken while the hub runs.
    let file = hub.root.join("hub.backup");
    let taken = hub.cli(&[
        "backup",
        &file.display().to_string(),
        "--data-dir",
        &hub.data_dir.display().to_string(),
    ]);
    assert!(taken.status.success(), "{taken:?}");
    assert!(
        String::from_utf8_lossy(&taken.stdout).contains("hub.db ("),
        "{taken:?}"
    );

    // The machine is lost: the old data dir is gone for good.
    hub.kill9();
    std::fs::remove_dir_all(&hub.data_dir).expect("remove the old data dir");
    let fresh = hub.root.join("restored");
    let fresh_text = fresh.display().to_string();
    let restored = hub.cli(&[
        "restore",
        &file.display().to_string(),
        "--data-dir",
        &fresh_text,
    ]);
    assert!(restored.status.success(), "{restored:?}");
    // Restoring again, over the restored dir, is refused and changes nothing.
    let again = hub.cli(&[
        "restore",
        &file.display().to_string(),
        "--data-dir",
        &fresh_text,
    ]);
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty"),
        "{again:?}"
    );
    // A damaged copy is refused, and writes nothing.
    let bytes = std::fs::read(&file).expect("backup");
    let damaged = hub.root.join("damaged.backup");
    std::fs::write(&damaged, &bytes[..bytes.len() * 2 / 3]).expect("write");
    let elsewhere = hub.root.join("elsewhere");
    let refused = hub.cli(&[
        "restore",
        &damaged.display().to_string(),
        "--data-dir",
        &elsewhere.display().to_string(),
    ]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("is damaged"),
        "{refused:?}"
    );
    assert!(!elsewhere.exists());

    hub.data_dir = fresh;
    let start = Instant::now();
    hub.restart();
    hub.wait_for(
        "the agent back online with the restored hub",
        CONVERGE,
        || hub.node("backup-a").filter(|n| n["online"] == true),
    );
    eprintln!(
        "[restored hub start to agent online: {} ms]",
        start.elapsed().as_millis()
    );
    let node = hub.node("backup-a").expect("node");
    assert_eq!(node["labels"]["site"], "plant-1");
    let after = hub.workload("steady").expect("steady survives the restore");
    assert_eq!(after["revision"], before["revision"]);
    assert_eq!(
        std::fs::read(agent.root.join("data/enrollment.toml")).expect("enrolled"),
        enrollment,
        "the agent was enrolled again"
    );
    // The restored hub signs with the same key: the agent accepts its states and keeps its
    // container.
    std::thread::sleep(Duration::from_secs(3));
    let rows = agent.ps();
    assert!(running(&rows, "steady"));
    assert_eq!(
        cell(&rows, "steady", "main", "PID"),
        pid,
        "the container was restarted"
    );
    clean_up(&hub, &[&agent]);
}

// ---- the broker's access rules, attacked with Mosquitto's own clients ----

/// `mosquitto_sub` over TLS, trusting `ca`.
fn mosquitto_sub(
    ca: &Path,
    port: u16,
    user: &str,
    password: &str,
    topic: &str,
    wait_s: u32,
) -> Output {
    Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv311"])
        .arg("--cafile")
        .arg(ca)
        .args([
            "-u", user, "-P", password, "-i", user, "-q", "1", "-C", "5", "-v",
        ])
        .args(["-W", &wait_s.to_string(), "-t", topic])
        .output()
        .expect("run mosquitto_sub (apt-get install mosquitto-clients)")
}

/// `mosquitto_pub` over TLS, trusting `ca`.
fn mosquitto_pub(
    ca: &Path,
    port: u16,
    user: &str,
    password: &str,
    topic: &str,
    file: &Path,
) -> Output {
    Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-V", "mqttv311"])
        .arg("--cafile")
        .arg(ca)
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
    status_numbered(node, 1_000_000, 0, message)
}

/// A valid status of `node` numbered `sequence` (its one event too), claiming desired-state
/// generation `observed_generation`, carrying one event with `message`, encoded for the wire.
fn status_numbered(node: &str, sequence: u64, observed_generation: u64, message: &str) -> Vec<u8> {
    let status = NodeStatus {
        node_id: node.into(),
        observed_generation,
        sequence,
        sent_at_ms: 1,
        workloads: Vec::new(),
        usage: NodeUsage::default(),
        events: vec![Event {
            sequence,
            at_ms: 1,
            severity: Severity::Warning,
            workload: None,
            container: None,
            reason: EventReason::AgentStarted,
            message: message.into(),
        }],
        dropped_events: 0,
        agent_update: None,
    };
    wire::encode(node, &status, &Limits::default()).expect("encode a status")
}

fn assert_acl_holds(hub: &Hub, port: u16, a: (&str, &str), b: (&str, &str)) {
    let (a_name, a_password) = a;
    let (b_name, b_password) = b;
    let a_desired = format!("shoal/v1/node/{a_name}/desired");
    // The node itself reads its retained desired state...
    let own = mosquitto_sub(&hub.ca_path(), port, a_name, a_password, &a_desired, 3);
    assert!(
        String::from_utf8_lossy(&own.stdout).contains(&a_desired),
        "node {a_name} must read its own desired state: {own:?}"
    );
    // ...another node's credentials do not, by name or by wildcard (a wildcard may bring B
    // its own topics, as Mosquitto's pattern ACL allows, but never A's).
    let a_topics = format!("shoal/v1/node/{a_name}/");
    for topic in [a_desired.as_str(), "shoal/v1/node/+/desired", "#"] {
        let stolen = mosquitto_sub(&hub.ca_path(), port, b_name, b_password, topic, 2);
        let seen = String::from_utf8_lossy(&stolen.stdout);
        assert!(
            !seen.contains(&a_topics),
            "node {b_name} read {a_name}'s messages through `{topic}`: {seen:?}"
        );
    }
    // A wrong password is refused.
    let refused = mosquitto_sub(
        &hub.ca_path(),
        port,
        a_name,
        "not-the-password",
        &a_desired,
        2,
    );
    assert!(
        !refused.status.success() && refused.stdout.is_empty(),
        "{refused:?}"
    );

    // A status forged by B on A's topic never reaches the hub; A's own does (the control).
    let forged = hub.root.join("forged.bin");
    std::fs::write(&forged, status_payload(a_name, "forged-by-b")).expect("write payload");
    let _ = mosquitto_pub(
        &hub.ca_path(),
        port,
        b_name,
        b_password,
        &format!("shoal/v1/node/{a_name}/status"),
        &forged,
    );
    let genuine = hub.root.join("genuine.bin");
    std::fs::write(&genuine, status_payload(a_name, "sent-by-a")).expect("write payload");
    let sent = mosquitto_pub(
        &hub.ca_path(),
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
    let a = hub.enroll("acl-a", "");
    let b = hub.enroll("acl-b", "");
    hub.wait_for("a's desired state published", CONVERGE, || {
        hub.node("acl-a").filter(|n| n["desired_generation"] != 0)
    });
    assert_acl_holds(&hub, hub.mqtt_port, ("acl-a", &a), ("acl-b", &b));
}

#[test]
fn a_payload_over_the_size_limit_is_refused_without_wedging_the_hub_or_the_agents() {
    let hub = Hub::start("oversize");
    let agent = started(&hub, "oversize-a", "");
    let intruder = hub.enroll("oversize-c", "");
    let big = hub.root.join("big.bin");
    std::fs::write(&big, vec![b'x'; 3 << 20]).expect("write 3 MiB");
    let start = Instant::now();
    let out = mosquitto_pub(
        &hub.ca_path(),
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
    hub.apply(
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
        &hub.ca_path(),
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
    let hub = Hub::start_with_broker("mosq", Some(format!("mqtts://127.0.0.1:{port}")));
    let mut agent = hub.agent("mosq-a", "");
    // The attacks use two nodes with no agent running: a client with a node's id would take
    // over that agent's session.
    let b = hub.enroll("mosq-b", "");
    let c = hub.enroll("mosq-c", "");
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
    hub.apply(
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
        .env("SHOAL_CONFIG", root.join("cli-config.toml"))
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
    // With --hub alone the CLI reads no config and finds the token in ./.shoal.
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
    // `shoal up` wrote the context `up`: no flags needed.
    let no_flags = Command::new(shoal_tests::binary("shoal"))
        .args(["get", "workloads", "hello"])
        .env("SHOAL_CONFIG", root.join("cli-config.toml"))
        .env_remove("SHOAL_HUB")
        .env_remove("SHOAL_TOKEN")
        .output()
        .expect("run shoal");
    assert!(
        no_flags.status.success() && String::from_utf8_lossy(&no_flags.stdout).contains("hello "),
        "{no_flags:?}\nconfig:\n{}",
        std::fs::read_to_string(root.join("cli-config.toml")).unwrap_or_default()
    );
    // Ready as soon as it runs: its first line may come a moment later.
    let deadline = Instant::now() + Duration::from_secs(10);
    let logs = loop {
        let logs = shoal(&["logs", "hello", "--tail", "2"]);
        if String::from_utf8_lossy(&logs.stdout).contains("hello from") || Instant::now() > deadline
        {
            break logs;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
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

// ---- enrollment, revocation, TLS and key rotation ----

#[test]
fn enrollment_tokens_work_once_before_they_expire_and_only_for_their_hub() {
    let hub = Hub::start("tokens");
    // Expired: a 1 s token, used 2 s later.
    let short = {
        let out = hub.ok(&["node", "add", "tok-late", "--ttl", "1s"]);
        out.split_whitespace()
            .find(|w| w.starts_with("shoal1."))
            .expect("a token")
            .to_string()
    };
    std::thread::sleep(Duration::from_secs(2));
    let expired = hub.enroll_with(&short).expect_err("an expired token");
    assert!(
        expired.contains("403") && expired.contains("expired"),
        "{expired}"
    );

    // A good token works once.
    let token = hub.add_node("tok-a", "");
    let first = hub.enroll_with(&token).expect("the first use");
    let password = first["password"].as_str().expect("a password").to_string();
    let again = hub.enroll_with(&token).expect_err("a second use");
    assert!(again.contains("a token works once"), "{again}");

    // A forged secret, and a token from another hub (another CA pin), are refused.
    let fresh = hub.add_node("tok-b", "");
    let mut parts: Vec<String> = fresh.split('.').map(str::to_string).collect();
    parts[2] = "A".repeat(parts[2].len());
    let forged = hub
        .enroll_with(&parts.join("."))
        .expect_err("a forged secret");
    assert!(forged.contains("wrong, or was already used"), "{forged}");
    parts = fresh.split('.').map(str::to_string).collect();
    parts[3] = "0".repeat(64);
    let foreign = hub
        .enroll_with(&parts.join("."))
        .expect_err("another hub's token");
    assert!(foreign.contains("another hub"), "{foreign}");
    // The real one still works after those attempts: they changed nothing.
    hub.enroll_with(&fresh).expect("tok-b's own token");

    // Nothing the refusals touched changed: tok-a's credentials still read its own topics,
    // and the refused enrollment of tok-late left it without any.
    hub.wait_for("tok-a's desired state", CONVERGE, || {
        hub.node("tok-a").filter(|n| n["desired_generation"] != 0)
    });
    let desired = "shoal/v1/node/tok-a/desired";
    let own = mosquitto_sub(
        &hub.ca_path(),
        hub.mqtt_port,
        "tok-a",
        &password,
        desired,
        3,
    );
    assert!(
        String::from_utf8_lossy(&own.stdout).contains(desired),
        "{own:?}"
    );

    // An agent given a token for a hub whose CA does not match refuses before sending it.
    let agent = Hub::unenrolled_agent("tok-c", "");
    let token = hub.add_node("tok-c", "");
    let mut pinned_elsewhere: Vec<&str> = token.split('.').collect();
    let zeros = "0".repeat(64);
    pinned_elsewhere[3] = &zeros;
    let out = Command::new(shoal_tests::binary("shoal-agent"))
        .args([
            "enroll",
            "--hub",
            &hub.api,
            "--token",
            &pinned_elsewhere.join("."),
        ])
        .arg("--config")
        .arg(&agent.config)
        .output()
        .expect("shoal-agent enroll");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("nothing was sent"),
        "{stderr}"
    );
    hub.enroll_agent(&agent, &token, &[]);
    let identity = std::fs::metadata(agent.root.join("data/enrollment.toml")).expect("identity");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&identity.permissions()) & 0o777,
        0o600
    );
}

#[test]
fn the_broker_speaks_only_tls_with_the_hubs_ca() {
    let hub = Hub::start("tls-only");
    let password = hub.enroll("tls-a", "");
    let desired = "shoal/v1/node/tls-a/desired";
    hub.wait_for("tls-a's desired state", CONVERGE, || {
        hub.node("tls-a").filter(|n| n["desired_generation"] != 0)
    });
    // Control: over TLS with the hub's CA the node reads its desired state.
    let own = mosquitto_sub(
        &hub.ca_path(),
        hub.mqtt_port,
        "tls-a",
        &password,
        desired,
        3,
    );
    assert!(
        String::from_utf8_lossy(&own.stdout).contains(desired),
        "{own:?}"
    );
    // Plain MQTT to the same port gets nothing.
    let plain = Command::new("mosquitto_sub")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &hub.mqtt_port.to_string(),
            "-V",
            "mqttv311",
        ])
        .args([
            "-u", "tls-a", "-P", &password, "-i", "tls-a", "-C", "1", "-W", "3",
        ])
        .args(["-t", desired])
        .output()
        .expect("mosquitto_sub");
    assert!(
        !plain.status.success() && plain.stdout.is_empty(),
        "{plain:?}"
    );
    // A client trusting another CA refuses the hub's certificate.
    let other = hub.root.join("other-ca.pem");
    let made = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=other", "-keyout"])
        .arg(hub.root.join("other-ca.key"))
        .arg("-out")
        .arg(&other)
        .output()
        .expect("openssl");
    assert!(made.status.success(), "{made:?}");
    let doubter = mosquitto_sub(&other, hub.mqtt_port, "tls-a", &password, desired, 3);
    assert!(
        !doubter.status.success() && doubter.stdout.is_empty(),
        "{doubter:?}"
    );
}

#[test]
fn a_removed_node_is_disconnected_at_once_and_its_credentials_stop_working() {
    let hub = Hub::start("remove");
    let agent = started(&hub, "rm-a", "");
    let enrollment =
        std::fs::read_to_string(agent.root.join("data/enrollment.toml")).expect("identity");
    let password = enrollment
        .lines()
        .find_map(|l| l.strip_prefix("password = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("a password line")
        .to_string();
    let desired = "shoal/v1/node/rm-a/desired";
    let before = mosquitto_sub(&hub.ca_path(), hub.mqtt_port, "rm-a", &password, desired, 3);
    assert!(
        String::from_utf8_lossy(&before.stdout).contains(desired),
        "{before:?}"
    );
    // The agent took its session back; wait until it is online again.
    hub.wait_for("rm-a online", CONVERGE, || {
        hub.node("rm-a").filter(|n| n["online"] == true)
    });

    let removed = Instant::now();
    let out = hub.ok(&["node", "remove", "rm-a"]);
    assert!(out.contains("its connection was closed"), "{out}");
    assert!(hub.node("rm-a").is_none(), "still listed");
    hub.wait_for("the agent's connection refused", CONVERGE, || {
        let log = agent.log();
        (log.contains("NotAuthorized") || log.contains("BadUserNamePassword")).then_some(())
    });
    eprintln!(
        "[removed node's connection refused after {} ms]",
        removed.elapsed().as_millis()
    );
    let after = mosquitto_sub(&hub.ca_path(), hub.mqtt_port, "rm-a", &password, desired, 3);
    assert!(
        !after.status.success() && after.stdout.is_empty(),
        "the removed node's password still works: {after:?}"
    );
    // A removed node cannot come back with its old token either.
    let again = hub.ok(&["get", "nodes"]);
    assert!(!again.contains("rm-a"), "{again}");
}

#[test]
fn a_key_rotation_reaches_every_node_before_the_new_key_signs() {
    let hub = Hub::start("rotate");
    let agent = started(&hub, "rot-a", "");
    hub.apply(
        "before-rotation",
        &shell_workload("before-rotation", "while true; do sleep 1; done", "", ""),
    );
    agent.wait_for("running before the rotation", CONVERGE, |rows| {
        running(rows, "before-rotation")
    });
    let old = hub.ok(&["key", "list"]);
    let old_id = old
        .lines()
        .find(|l| l.contains("active") && l.contains(" state "))
        .and_then(|l| l.split_whitespace().next())
        .expect("an active key")
        .to_string();
    hub.ok(&["key", "rotate"]);
    // A second rotation while one is under way is refused.
    let twice = hub.cli(&["key", "rotate"]);
    assert!(!twice.status.success(), "{twice:?}");
    let promoted = hub.wait_for("the next key promoted", CONVERGE, || {
        let list = hub.ok(&["key", "list"]);
        let active = list
            .lines()
            .find(|l| l.contains("active") && l.contains(" state "))
            .and_then(|l| l.split_whitespace().next())
            .map(str::to_string)?;
        (active != old_id).then_some(list)
    });
    assert!(
        promoted.lines().any(|l| l
            .split_whitespace()
            .take(2)
            .eq([old_id.as_str(), "retired"])),
        "{promoted}"
    );
    // The node verifies states signed with the new key: a change still converges.
    hub.apply(
        "after-rotation",
        &shell_workload("after-rotation", "while true; do sleep 1; done", "", ""),
    );
    agent.wait_for("running after the rotation", CONVERGE, |rows| {
        running(rows, "after-rotation") && running(rows, "before-rotation")
    });
    assert!(
        !agent.log().contains("does not trust"),
        "a state was refused during the rotation"
    );
    clean_up(&hub, &[&agent]);
}

/// libfaketime's preload library (Debian package libfaketime, pulled in by faketime).
fn libfaketime() -> std::path::PathBuf {
    let mut candidates: Vec<std::path::PathBuf> = std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("faketime/libfaketime.so.1"))
        .collect();
    candidates.extend(
        ["/usr/lib/faketime", "/usr/local/lib/faketime"]
            .iter()
            .map(|dir| Path::new(dir).join("libfaketime.so.1")),
    );
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .expect("libfaketime.so.1: install the Debian package faketime")
}

#[test]
fn an_agent_whose_clock_says_1970_connects_over_tls_and_runs_what_the_hub_signs() {
    let hub = Hub::start("clock");
    let mut agent = hub.agent("clock-a", "");
    // A device without a battery-backed clock: libfaketime (LD_PRELOAD, so the dynamically
    // linked test build) sets its wall clock to 1970-01-02; monotonic time stays real, as on
    // a device that just booted. Preloaded into the agent itself rather than through the
    // `faketime` wrapper, which forks: killing the wrapper left the agent running.
    let mut command = Command::new(shoal_tests::binary("shoal-agent"));
    command
        .env("LD_PRELOAD", libfaketime())
        .env("FAKETIME", "@1970-01-02 00:00:00")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
    agent.start_with(command);
    let pid = agent.pid().expect("the agent runs");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the agent's executable");
    assert!(
        exe.ends_with("shoal-agent"),
        "the process the harness holds is {}, not the agent",
        exe.display()
    );
    agent.import_busybox();
    hub.wait_for("clock-a online over TLS", CONVERGE, || {
        hub.node("clock-a").filter(|n| n["online"] == true)
    });
    hub.apply(
        "in-1970",
        &shell_workload("in-1970", "while true; do sleep 1; done", "", ""),
    );
    agent.wait_for("running with the clock in 1970", CONVERGE, |rows| {
        running(rows, "in-1970")
    });
    hub.wait_for("ready at the hub", CONVERGE, || {
        hub.workload("in-1970").filter(|w| ready(w, 1))
    });
    // The control: the agent's clock really said 1970 (its events carry its time stamps).
    let detail = hub.api_json("/v1/nodes/clock-a");
    let stamps: Vec<u64> = detail["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["at_ms"].as_u64())
        .collect();
    assert!(!stamps.is_empty(), "{detail}");
    assert!(
        stamps.iter().all(|&ms| ms < 365 * 24 * 3_600_000),
        "the agent's clock was not in 1970: {stamps:?}"
    );
    clean_up(&hub, &[&agent]);
    // Nothing outlives the test: the agent the harness stops is the one that ran.
    agent.kill9();
    let dir = agent.root.display().to_string();
    let left: Vec<String> = std::fs::read_dir("/proc")
        .expect("proc")
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&dir))
        .collect();
    assert!(left.is_empty(), "still running after the test: {left:?}");
}

#[test]
fn a_failed_pull_says_why_in_describe_workload() {
    let images = UnpullableImages::start();
    let hub = Hub::start("pull");
    let mut agent = hub.agent_configured("pull-a", "", &images.agent_config());
    agent.start();
    hub.wait_for("node pull-a online", CONVERGE, || {
        hub.node("pull-a").filter(|n| n["online"] == true)
    });
    hub.apply("foreign", &image_workload("foreign", &images.foreign));
    hub.apply("corrupt", &image_workload("corrupt", &images.corrupt));
    let foreign = format!("no image for linux/{}", shoal_tests::images::host_arch());
    for (workload, why) in [
        ("foreign", foreign.as_str()),
        ("corrupt", "digest mismatch"),
    ] {
        let text = hub.wait_for(
            &format!("why {workload} cannot be pulled, in describe workload"),
            CONVERGE,
            || {
                let text = hub.ok(&["describe", "workload", workload]);
                let (containers, events) = text.split_once("\nEvents:")?;
                (containers.contains(why) && events.contains(why)).then_some(text)
            },
        );
        eprintln!("[describe workload {workload}]\n{text}");
        let (_, events) = text.split_once("\nEvents:").expect("an events section");
        assert!(events.contains("image-pull-failed"), "{text}");
    }
    clean_up(&hub, &[&agent]);
}

/// The MQTT password `shoal-agent enroll` kept for `agent` (its `enrollment.toml`).
fn enrolled_password(agent: &Agent) -> String {
    let file = agent.root.join("data/enrollment.toml");
    let text = std::fs::read_to_string(&file).expect("the agent's enrollment.toml");
    let quoted = text
        .lines()
        .find_map(|l| l.strip_prefix("password = "))
        .unwrap_or_else(|| panic!("no password in {}", file.display()));
    serde_json::from_str(quoted).expect("a quoted password")
}

/// Publishes `payload` on `node`'s status topic with `password`, as something holding the
/// node's credentials would.
fn publish_status(hub: &Hub, node: &str, password: &str, payload: &[u8]) {
    let file = hub.root.join(format!("{node}-status.bin"));
    std::fs::write(&file, payload).expect("write payload");
    let sent = mosquitto_pub(
        &hub.ca_path(),
        hub.mqtt_port,
        node,
        password,
        &format!("shoal/v1/node/{node}/status"),
        &file,
    );
    assert!(sent.status.success(), "{sent:?}");
}

#[test]
fn a_status_numbered_far_off_does_not_silence_the_nodes_real_ones() {
    let hub = Hub::start("seq");
    let agent = started(&hub, "seq-a", "");
    let password = enrolled_password(&agent);
    hub.apply(
        "before",
        &shell_workload("before", "while true; do sleep 1; done", "", ""),
    );
    hub.wait_for("before ready", CONVERGE, || {
        hub.workload("before").filter(|w| ready(w, 1))
    });

    // A number no agent reaches is refused, and the hub says so.
    publish_status(
        &hub,
        "seq-a",
        &password,
        &status_numbered("seq-a", u64::MAX, 0, "absurd-sequence"),
    );
    let describe = hub.wait_for("the refusal in describe node", CONVERGE, || {
        let text = hub.ok(&["describe", "node", "seq-a"]);
        text.contains("status-refused").then_some(text)
    });
    assert!(
        !describe.contains("absurd-sequence") && describe.contains("18446744073709551615"),
        "{describe}"
    );

    // A number far off but possible gets through, with its empty workload list...
    publish_status(
        &hub,
        "seq-a",
        &password,
        &status_numbered("seq-a", 1_000_000_000, 0, "far-off-sequence"),
    );
    hub.wait_for("the far-off status taken", CONVERGE, || {
        hub.ok(&["describe", "node", "seq-a"])
            .contains("far-off-sequence")
            .then_some(())
    });
    // ...and the node's own statuses, numbered far below it, still land: a new workload
    // becomes ready and the old one is ready again.
    hub.apply(
        "after",
        &shell_workload("after", "while true; do sleep 1; done", "", ""),
    );
    hub.wait_for("after and before ready at the hub", CONVERGE, || {
        let after = hub.workload("after").filter(|w| ready(w, 1))?;
        hub.workload("before").filter(|w| ready(w, 1))?;
        Some(after)
    });
    assert!(
        hub.log().contains("numbered afresh"),
        "the hub did not log the restarted numbering"
    );
    clean_up(&hub, &[&agent]);
}

#[test]
fn a_status_claiming_a_generation_the_hub_never_published_is_refused() {
    let hub = Hub::start("gen");
    let password = hub.enroll("gen-b", "");
    let generation = hub.wait_for("gen-b's desired state published", CONVERGE, || {
        hub.node("gen-b")
            .and_then(|n| n["desired_generation"].as_u64())
            .filter(|&g| g != 0)
    });
    publish_status(
        &hub,
        "gen-b",
        &password,
        &status_numbered("gen-b", 1, generation + 1_000, "ahead-of-the-hub"),
    );
    let describe = hub.wait_for("the refusal in describe node", CONVERGE, || {
        let text = hub.ok(&["describe", "node", "gen-b"]);
        text.contains("status-refused").then_some(text)
    });
    assert!(
        !describe.contains("ahead-of-the-hub") && describe.contains("shoal-agent enroll"),
        "{describe}"
    );
    assert_eq!(hub.node("gen-b").expect("node")["observed_generation"], 0);
    // The generation the hub did publish is taken.
    publish_status(
        &hub,
        "gen-b",
        &password,
        &status_numbered("gen-b", 2, generation, "as-published"),
    );
    hub.wait_for("the genuine status taken", CONVERGE, || {
        hub.node("gen-b")
            .filter(|n| n["observed_generation"] == generation)
    });
}

/// A network namespace with only loopback, deleted on drop, with the processes started in it.
struct LoopbackOnly {
    name: String,
    children: Vec<std::process::Child>,
}

impl LoopbackOnly {
    fn new(name: &str) -> LoopbackOnly {
        let _ = Command::new("ip").args(["netns", "del", name]).output();
        shoal_tests::fleet::ip(&["netns", "add", name]);
        shoal_tests::fleet::ip(&["-n", name, "link", "set", "lo", "up"]);
        LoopbackOnly {
            name: name.to_string(),
            children: Vec::new(),
        }
    }

    /// `program args` inside the namespace, as a user with HOME `home` would run it in `cwd`:
    /// none of the CLI's environment variables set.
    fn command(&self, home: &Path, cwd: &Path, program: &Path) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--net=/run/netns/{}", self.name))
            .arg(program)
            .current_dir(cwd)
            .env("HOME", home);
        for name in [
            "XDG_CONFIG_HOME",
            "SHOAL_CONFIG",
            "SHOAL_CONTEXT",
            "SHOAL_HUB",
            "SHOAL_TOKEN",
            "SHOAL_CA",
        ] {
            command.env_remove(name);
        }
        command
    }
}

impl Drop for LoopbackOnly {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[test]
fn after_shoal_serve_the_cli_reaches_the_hub_over_https_with_no_flags_through_its_context() {
    let root = std::env::temp_dir().join(format!("shoal-context-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let (home, work, data) = (root.join("home"), root.join("work"), root.join("data"));
    let config_dir = home.join(".config/shoal");
    std::fs::create_dir_all(&config_dir).expect("config dir");
    std::fs::create_dir_all(&work).expect("work dir");
    let config = config_dir.join("config.toml");
    // Another hub's context, current until `shoal serve` starts: it must survive.
    std::fs::write(
        &config,
        "version = 1\ncurrent = \"elsewhere\"\n\n[contexts.elsewhere]\nhub = \"https://127.0.0.1:9\"\ntoken_file = \"elsewhere-token\"\n",
    )
    .expect("seed config");
    std::fs::write(config_dir.join("elsewhere-token"), "t\n").expect("token");
    let mut ns = LoopbackOnly::new(&format!("shoal-ctx-{}", std::process::id()));
    let shoal = shoal_tests::binary("shoal");
    let log = std::fs::File::create(root.join("hub.log")).expect("hub log");
    // Every address of a namespace with only loopback: the API serves HTTPS, as it does
    // beyond loopback, and nothing outside the namespace can reach it.
    let hub = ns
        .command(&home, &work, &shoal)
        .args(["serve", "--data-dir"])
        .arg(&data)
        .args([
            "--listen-api",
            "0.0.0.0:7440",
            "--listen-mqtt",
            "127.0.0.1:8883",
        ])
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .stdin(Stdio::null())
        .spawn()
        .expect("start shoal serve");
    ns.children.push(hub);
    let cli = |args: &[&str]| -> Output {
        ns.command(&home, &work, &shoal)
            .args(args)
            .output()
            .expect("run shoal")
    };
    let hub_log = || std::fs::read_to_string(root.join("hub.log")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(30);
    let nodes = loop {
        let out = cli(&["get", "nodes"]);
        if out.status.success() {
            break out;
        }
        assert!(
            Instant::now() < deadline,
            "`shoal get nodes` with no flags did not succeed within 30 s: {}\nconfig:\n{}\nhub log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(&config).unwrap_or_default(),
            hub_log()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        String::from_utf8_lossy(&nodes.stderr).contains("no nodes yet"),
        "{nodes:?}"
    );
    assert!(
        hub_log().contains("wrote the CLI context for this hub")
            && hub_log().contains(&config.display().to_string()),
        "serve does not say where it wrote the context:\n{}",
        hub_log()
    );
    assert!(!work.join(".shoal").exists());

    let show = String::from_utf8_lossy(&cli(&["context", "show"]).stdout).into_owned();
    let data = std::fs::canonicalize(&data).expect("data dir");
    for expected in [
        format!("context: local (in {})", config.display()),
        "hub:     https://127.0.0.1:7440".to_string(),
        format!("ca:      {}", data.join("tls/ca.crt").display()),
        format!(
            "token:   read from the first of {}",
            data.join("api-token").display()
        ),
    ] {
        assert!(show.contains(&expected), "no `{expected}` in:\n{show}");
    }
    let list = String::from_utf8_lossy(&cli(&["context", "list"]).stdout).into_owned();
    let row = |name: &str| {
        list.lines()
            .find(|l| l.split_whitespace().any(|w| w == name))
            .unwrap_or_else(|| panic!("no context {name} in:\n{list}"))
            .to_string()
    };
    assert!(row("local").starts_with('*'), "{list}");
    assert!(row("elsewhere").contains("https://127.0.0.1:9"), "{list}");

    // Another context made current: the CLI goes there; `--context` picks one for a command.
    assert!(cli(&["context", "use", "elsewhere"]).status.success());
    let refused = cli(&["get", "nodes"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("cannot reach the hub at https://127.0.0.1:9"),
        "{refused:?}"
    );
    assert!(cli(&["--context", "local", "get", "nodes"])
        .status
        .success());
    let unknown = cli(&["context", "use", "nowhere"]);
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains(&format!("no context `nowhere` in {}", config.display())),
        "{unknown:?}"
    );

    // A broken config names its file, line and column, and is not overwritten.
    std::fs::write(&config, "version = 1\ncurrent = local\n").expect("break config");
    let broken = cli(&["get", "nodes"]);
    assert!(!broken.status.success());
    assert!(
        String::from_utf8_lossy(&broken.stderr).contains(&format!("{}:2:11: ", config.display())),
        "{broken:?}"
    );
    assert!(cli(&["context", "use", "local"]).status.code() == Some(1));
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        "version = 1\ncurrent = local\n"
    );
    drop(ns);
    let _ = std::fs::remove_dir_all(&root);
}
