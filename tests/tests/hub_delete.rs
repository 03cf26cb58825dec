//! Deleting many workloads through the hub, with a real hub, a real enrolled agent and real
//! containers: the agent converges at once, stays small, and the next apply is not delayed.
//! (Before the one-worker-per-container fix, 20 deletes through the hub left the agent at
//! 85–178 MiB and delayed the next apply by 100 s.)

use std::time::{Duration, Instant};

use shoal_tests::agent::{cell, row, shell_workload, Row};
use shoal_tests::hub::Hub;

const CONVERGE: Duration = Duration::from_secs(60);

fn running(rows: &[Row], workload: &str) -> bool {
    cell(rows, workload, "main", "STATE") == "Running"
}

#[test]
fn twenty_deletes_through_the_hub_converge_in_seconds_and_the_next_apply_is_not_delayed() {
    let hub = Hub::start("hubdel");
    let mut agent = hub.agent("hubdel-gw", "role=gateway");
    agent.start();
    agent.import_busybox();
    hub.wait_for("the node online", CONVERGE, || {
        hub.node("hubdel-gw").filter(|n| n["online"] == true)
    });
    let baseline = agent.rss_kib();

    let dir = hub.root.join("many");
    std::fs::create_dir_all(&dir).expect("manifest dir");
    let names: Vec<String> = (0..20).map(|i| format!("many-{i}")).collect();
    for (i, name) in names.iter().enumerate() {
        // Half exit on SIGTERM, half ignore it (killed after their 2 s grace period).
        let script = if i % 2 == 0 {
            "trap 'exit 0' TERM; while true; do sleep 1; done"
        } else {
            "trap '' TERM; while true; do sleep 1; done"
        };
        std::fs::write(
            dir.join(format!("{name}.yaml")),
            shell_workload(name, script, "  stopGracePeriod: 2s\n", ""),
        )
        .expect("write manifest");
    }
    hub.ok(&["apply", "-f", &dir.display().to_string()]);
    agent.wait_for("twenty running", CONVERGE, |rows| {
        names.iter().all(|n| running(rows, n))
    });
    let before = agent.events_recorded();

    let start = Instant::now();
    for name in &names {
        hub.ok(&["delete", "workload", name]);
    }
    agent.wait_for("twenty gone", CONVERGE, |rows| {
        names.iter().all(|n| row(rows, n, "main").is_none())
    });
    let deleted_in = start.elapsed();
    let events = agent.events_recorded() - before;
    let rss = agent.rss_kib();
    eprintln!(
        "[20 deletes through the hub: {deleted_in:?}, {events} events, agent RSS {baseline} KiB before, {rss} KiB after]"
    );
    // One grace period plus the hub's round trips, not minutes.
    assert!(deleted_in < Duration::from_secs(15), "took {deleted_in:?}");
    // A new generation per delete (20 of them), then exited and removed per container.
    assert!(events <= 20 * 5, "{events} events for 20 deletes");
    assert!(
        rss < baseline + 8 * 1024,
        "the agent grew from {baseline} KiB to {rss} KiB"
    );

    let start = Instant::now();
    let next = shell_workload(
        "next",
        "trap 'exit 0' TERM; while true; do sleep 1; done",
        "",
        "",
    );
    let file = hub.root.join("next.yaml");
    std::fs::write(&file, next).expect("write manifest");
    hub.ok(&["apply", "-f", &file.display().to_string()]);
    agent.wait_for("the next workload running", CONVERGE, |rows| {
        running(rows, "next")
    });
    let next_in = start.elapsed();
    eprintln!("[the next apply ran after {next_in:?}]");
    assert!(
        next_in < Duration::from_secs(5),
        "the next apply took {next_in:?}"
    );
    hub.ok(&["delete", "workload", "next"]);
    agent.wait_for("nothing left", CONVERGE, |rows| rows.is_empty());
}
