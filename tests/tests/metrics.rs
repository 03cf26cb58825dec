//! What Prometheus and a service manager see of a real hub with a real agent: `/healthz` and
//! `/readyz` without the token, `/metrics` only with it, and the fleet's figures in it (the
//! node, the workload, its container's memory and restarts, the hub's own counters).

use std::time::Duration;

use shoal_tests::agent::shell_workload;
use shoal_tests::hub::{ready, Hub};

const CONVERGE: Duration = Duration::from_secs(60);

/// The value of the sample line `series` (name and labels exactly), if scraped.
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn probes_answer_without_the_token_and_metrics_show_the_fleet_only_with_it() {
    let hub = Hub::start("metrics");
    assert_eq!(hub.api_text("/healthz", false), (200, "ok\n".to_string()));
    hub.wait_for("/readyz saying ready", CONVERGE, || {
        (hub.api_text("/readyz", false) == (200, "ready\n".to_string())).then_some(())
    });
    let (code, body) = hub.api_text("/metrics", false);
    assert_eq!(code, 401, "{body}");

    let mut agent = hub.agent("metrics-gw", "role=gateway");
    agent.start();
    agent.import_busybox();
    hub.wait_node_online("metrics-gw");
    hub.apply(
        "web",
        &shell_workload(
            "web",
            "echo web; while true; do sleep 1; done",
            "  placement: { mode: every }\n  rollout: { healthyFor: 1s }\n",
            "",
        ),
    );
    hub.wait_for("web ready", CONVERGE, || {
        hub.workload("web").filter(|w| ready(w, 1))
    });
    let container = "{node=\"metrics-gw\",workload=\"web\",container=\"main\"}";
    let text = hub.wait_for("the container's figures in /metrics", CONVERGE, || {
        let (code, text) = hub.api_text("/metrics", true);
        assert_eq!(code, 200, "{text}");
        let complete = "shoal_rollout_state{workload=\"web\",state=\"complete\"}";
        value(&text, &format!("shoal_container_memory_bytes{container}"))
            .filter(|m| *m > 0.0 && value(&text, complete) == Some(1.0))
            .map(|_| text)
    });
    let sample = std::env::temp_dir().join("shoal-metrics-sample.txt");
    std::fs::write(&sample, &text).expect("write the sample");
    eprintln!("[a /metrics sample: {}]", sample.display());
    for (series, expected) in [
        ("shoal_nodes{state=\"ready\"}", 1.0),
        ("shoal_node_online{node=\"metrics-gw\"}", 1.0),
        ("shoal_workload_wanted_nodes{workload=\"web\"}", 1.0),
        ("shoal_workload_ready_nodes{workload=\"web\"}", 1.0),
        ("shoal_workload_revision{workload=\"web\"}", 1.0),
        (
            "shoal_rollout_state{workload=\"web\",state=\"complete\"}",
            1.0,
        ),
        (&format!("shoal_container_running{container}"), 1.0),
        (&format!("shoal_container_restarts_total{container}"), 0.0),
    ] {
        assert_eq!(value(&text, series), Some(expected), "{series} in:\n{text}");
    }
    let statuses = value(&text, "shoal_mqtt_messages_total{channel=\"status\"}");
    assert!(statuses.is_some_and(|n| n >= 1.0), "{text}");
    let applies = value(
        &text,
        "shoal_api_request_duration_seconds_count{route=\"/v1/apply\",code=\"200\"}",
    );
    assert_eq!(applies, Some(1.0), "{text}");
    let memory = value(&text, "shoal_node_memory_total_bytes{node=\"metrics-gw\"}");
    assert!(memory.is_some_and(|m| m > 0.0), "{text}");

    hub.ok(&["delete", "workload", "web"]);
    agent.wait_for("nothing left running", CONVERGE, |rows| rows.is_empty());
}

#[test]
fn with_log_format_json_every_log_line_of_the_hub_is_a_json_object() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = std::env::temp_dir().join(format!("shoal-hub-json-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut hub = Command::new(shoal_tests::binary("shoal"))
        .args(["--log-format", "json", "serve", "--insecure", "--data-dir"])
        .env("SHOAL_CONFIG", dir.join("cli-config.toml"))
        .arg(&dir)
        .args([
            "--listen-api",
            "127.0.0.1:0",
            "--listen-mqtt",
            "127.0.0.1:0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the hub");
    let stderr = hub.stderr.take().expect("stderr");
    let mut lines = Vec::new();
    for line in BufReader::new(stderr).lines().take(40) {
        let line = line.expect("a log line");
        let serving = line.contains("hub serving");
        lines.push(line);
        if serving {
            break;
        }
    }
    let _ = hub.kill();
    let _ = hub.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        lines.last().is_some_and(|l| l.contains("hub serving")),
        "{lines:#?}"
    );
    for line in &lines {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            value["level"].is_string() && value["fields"].is_object(),
            "{line}"
        );
    }
}
