//! The rollout figures of `bench/rollout`: a hub and N real agents (20 by default), each in its
//! own network namespace with real containers. A workload on every node is rolled out with the
//! default waves (canary 1, maxUnavailable 25%) and healthyFor 0 s, then 5 s; then a revision
//! that crashes at once, from its apply to every node running the old revision again.
//! Prints `RESULT` lines. Root; run through `bench/rollout`.

use std::time::Instant;

use shoal_tests::fleet::Fleet;
use shoal_tests::rollout::{self, most_at_once, nodes, wait_running_everywhere, wait_state};

/// `app` with a canary, then waves of 25%, each node healthy for `healthy_for`.
fn app(version: &str, healthy_for: &str) -> String {
    rollout::app(
        version,
        &format!("{{ canary: 1, maxUnavailable: 25%, healthyFor: {healthy_for} }}"),
    )
}

fn main() {
    let count: usize = std::env::args()
        .nth(1)
        .map_or(20, |n| n.parse().expect("usage: rollout-bench [NODES]"));
    let names: Vec<String> = (0..count).map(|i| format!("rb-{i:02}")).collect();
    let list: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "")).collect();
    let mut fleet = Fleet::start("rollbench", &list);
    let mut results = Vec::new();

    fleet.apply("app", &app("v1", "0s"));
    let started = Instant::now();
    wait_state(&fleet, "app", 1, "complete");
    results.push(("rollout_new_workload", started.elapsed()));

    for (revision, healthy_for, name) in [
        (2, "0s", "rollout_healthy_for_0s"),
        (3, "5s", "rollout_healthy_for_5s"),
    ] {
        let started = Instant::now();
        fleet.apply("app", &app(&format!("v{revision}"), healthy_for));
        let (done, took) = wait_state(&fleet, "app", revision, "complete");
        let most = most_at_once(&nodes(&done), revision);
        println!(
            "{name}: {count} nodes in {} ms, at most {most} updating at once",
            took.as_millis()
        );
        results.push((name, started.elapsed()));
    }

    let started = Instant::now();
    fleet.apply("app", &app("bad", "5s"));
    wait_state(&fleet, "app", 4, "rolled-back");
    let rolled_back = started.elapsed();
    wait_running_everywhere(&fleet, "app", 3, count);
    results.push(("failing_canary_to_rolled_back", rolled_back));
    results.push((
        "failing_canary_to_every_node_on_the_old_revision",
        started.elapsed(),
    ));
    fleet.clean_up();

    println!("nodes: {count}");
    for (name, took) in results {
        println!("RESULT {name}={} ms", took.as_millis());
    }
}
