//! Reading rollouts as an operator does: `GET /v1/rollouts/W`, the JSON behind
//! `shoal rollout status W`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::agent::shell_workload;
use crate::fleet::{Fleet, CONVERGE};

/// Workload `app` on every node, rolled out by `rollout` (a flow mapping), saying `version` in
/// its log and running until stopped; a version of `bad` exits 1 at once, one of `late-bad`
/// after running for 5 s.
pub fn app(version: &str, rollout: &str) -> String {
    let script = match version {
        "bad" => "echo app bad; exit 1".to_string(),
        "late-bad" => "echo app late-bad; sleep 5; exit 1".to_string(),
        _ => format!("echo app {version}; trap 'exit 0' TERM; while true; do sleep 1; done"),
    };
    shell_workload(
        "app",
        &script,
        &format!("  placement: {{ mode: every }}\n  rollout: {rollout}\n"),
        "",
    )
}

/// Waits until the hub hears from `count` nodes that `workload` runs at `revision` on each.
pub fn wait_running_everywhere(fleet: &Fleet, workload: &str, revision: u64, count: usize) {
    fleet.wait_for(
        &format!("every node running {workload} revision {revision}"),
        CONVERGE,
        || {
            let instances =
                fleet.hub.api_json(&format!("/v1/workloads/{workload}"))["instances"].clone();
            let instances = instances.as_array()?;
            (instances.len() == count
                && instances
                    .iter()
                    .all(|i| i["revision"] == revision && i["containers"][0]["state"] == "Running"))
            .then_some(())
        },
    );
}

/// `workload`'s rollout status.
pub fn status(fleet: &Fleet, workload: &str) -> Value {
    fleet.hub.api_json(&format!("/v1/rollouts/{workload}"))
}

/// Each node's part in the rollout: (revision, since, outcome, outcome time).
pub fn nodes(status: &Value) -> BTreeMap<String, (u64, u64, String, u64)> {
    status["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .map(|n| {
            (
                n["node"].as_str().expect("node").to_string(),
                (
                    n["revision"].as_u64().expect("revision"),
                    n["since_ms"].as_u64().expect("since"),
                    n["outcome"].as_str().expect("outcome").to_string(),
                    n["outcome_ms"].as_u64().expect("outcome time"),
                ),
            )
        })
        .collect()
}

/// Waits until the rollout of `workload`'s `revision` is in `state` (`complete`, `halted`,
/// `rolled-back`); returns the status and how long it took.
pub fn wait_state(fleet: &Fleet, workload: &str, revision: u64, state: &str) -> (Value, Duration) {
    fleet.wait_for(
        &format!("the rollout of {workload} revision {revision} {state}"),
        CONVERGE * 2,
        || {
            let s = status(fleet, workload);
            (s["revision"] == revision && s["state"] == state).then_some(s)
        },
    )
}

/// The most nodes updating at one time, from when each was given `revision` to when it was
/// done: the largest overlap of those intervals.
pub fn most_at_once(nodes: &BTreeMap<String, (u64, u64, String, u64)>, revision: u64) -> usize {
    let mut edges: Vec<(u64, i32)> = nodes
        .values()
        .filter(|(r, ..)| *r == revision)
        .flat_map(|(_, since, _, done)| [(*since, 1), (*done, -1)])
        .collect();
    // An interval that ends when another begins does not overlap it.
    edges.sort_by_key(|(at, delta)| (*at, *delta));
    let (mut now, mut most) = (0i32, 0i32);
    for (_, delta) in edges {
        now += delta;
        most = most.max(now);
    }
    usize::try_from(most).unwrap_or(0)
}
