//! Rollouts on a real fleet: a hub and six real agents, each in its own network namespace,
//! with real containers. What is asserted is what an operator sees: `shoal rollout status`'s
//! JSON (each node's revision, when it was given it, when it was done or failed), the hub's
//! workload readiness, and the containers' PIDs on the devices.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_tests::fleet::{report, Fleet, CONVERGE};
use shoal_tests::rollout::{
    self, most_at_once, nodes, status, wait_running_everywhere, wait_state,
};

const NODES: [&str; 6] = ["roll-a", "roll-b", "roll-c", "roll-d", "roll-e", "roll-f"];
const ROLLOUT: &str = "{ canary: 1, maxUnavailable: 2, healthyFor: 2s }";

/// `app` for [`NODES`]: a canary, then waves of two, each healthy for 2 s.
fn app(version: &str) -> String {
    rollout::app(version, ROLLOUT)
}

#[test]
fn a_revision_goes_to_the_canary_then_in_waves_and_a_bad_one_stops_at_the_canary() {
    let list: Vec<(&str, &str)> = NODES.iter().map(|n| (*n, "")).collect();
    let mut fleet = Fleet::start("rollout", &list);

    // Revision 1 is new: every node gets it at once.
    fleet.apply("app", &app("v1"));
    let (first, _) = wait_state(&fleet, "app", 1, "complete");
    assert_eq!(nodes(&first).len(), NODES.len(), "{first}");

    // Revision 2: the canary alone, then waves of at most two.
    let start = Instant::now();
    fleet.apply("app", &app("v2"));
    let (done, took) = wait_state(&fleet, "app", 2, "complete");
    report(
        "rollout of revision 2 over 6 nodes (canary 1, waves of 2, healthyFor 2s)",
        took,
    );
    eprintln!(
        "[rollout status]\n{}",
        fleet.hub.ok(&["rollout", "status", "app"])
    );
    let parts = nodes(&done);
    assert!(
        parts.values().all(|(r, _, o, _)| *r == 2 && o == "done"),
        "{done}"
    );
    let (canary, (_, canary_since, _, canary_done)) = parts
        .iter()
        .min_by_key(|(_, (_, since, ..))| *since)
        .expect("a canary");
    assert_eq!(canary, NODES[0], "the canary is the first node by name");
    for (node, (_, since, ..)) in parts.iter().filter(|(n, _)| *n != canary) {
        assert!(
            since >= canary_done,
            "{node} was given revision 2 before the canary was done: {done}"
        );
    }
    assert!(canary_done - canary_since >= 2_000, "healthyFor 2s: {done}");
    let waves: BTreeMap<String, _> = parts
        .iter()
        .filter(|(n, _)| *n != canary)
        .map(|(n, p)| (n.clone(), p.clone()))
        .collect();
    assert_eq!(
        most_at_once(&waves, 2),
        2,
        "waves of maxUnavailable 2: {done}"
    );
    assert!(start.elapsed() >= Duration::from_secs(4 * 2));
    let before: BTreeMap<&str, _> = NODES.iter().map(|n| (*n, fleet.pids(n))).collect();

    // A bad revision: the canary fails, goes back to revision 2, and no other node is touched.
    fleet.apply("app", &app("bad"));
    let (rolled, took) = wait_state(&fleet, "app", 3, "rolled-back");
    report("failing canary to rolled back", took);
    assert_eq!(rolled["stable"], 2, "{rolled}");
    let out = fleet.hub.cli(&["rollout", "status", "app"]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("[rollout status]\n{text}");
    assert_eq!(out.status.code(), Some(1), "a rolled-back rollout exits 1");
    assert!(
        text.contains("rolled back to revision 2 after 1 failed node"),
        "{text}"
    );
    let parts = nodes(&rolled);
    for node in &NODES[1..] {
        let (revision, since, ..) = &parts[*node];
        assert_eq!(*revision, 2, "{node}: {rolled}");
        assert_eq!(
            *since,
            done_since(&done, node),
            "{node} was given something: {rolled}"
        );
        assert_eq!(
            fleet.pids(node),
            before[node],
            "{node} restarted a container"
        );
    }
    wait_running_everywhere(&fleet, "app", 2, NODES.len());

    // A node offline before its turn is deferred: the rollout completes on the others, and the
    // node gets the revision when it is back.
    let offline = NODES[5];
    fleet.cut(offline);
    fleet.wait_online(offline, false, CONVERGE);
    fleet.apply("app", &app("v4"));
    let (deferred, _) = wait_state(&fleet, "app", 4, "complete");
    assert_eq!(nodes(&deferred)[offline].0, 2, "deferred: {deferred}");
    fleet.restore(offline);
    let (_, took) = fleet.wait_for("the returning node on revision 4", CONVERGE, || {
        let s = status(&fleet, "app");
        let parts = nodes(&s);
        (parts[offline].0 == 4 && parts[offline].2 == "done").then_some(())
    });
    report("returning node to done with revision 4", took);
    fleet.clean_up();
}

/// When `node` was given its revision in rollout status `status`.
fn done_since(status: &Value, node: &str) -> u64 {
    nodes(status)[node].1
}

/// `shoal apply -f FILE --wait` of `manifest`: its exit code and output.
fn apply_wait(fleet: &Fleet, name: &str, manifest: &str) -> (Option<i32>, String) {
    let file = fleet.hub.root.join(format!("{name}-wait.yaml"));
    std::fs::write(&file, manifest).expect("write the manifest");
    let out = fleet
        .hub
        .cli(&["apply", "-f", file.to_str().expect("utf-8 path"), "--wait"]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

const SLOW: [&str; 4] = ["slow-a", "slow-b", "slow-c", "slow-d"];

/// `app` for [`SLOW`]: one node at a time, each healthy for 3 s.
fn slow(version: &str) -> String {
    rollout::app(version, "{ maxUnavailable: 1, healthyFor: 3s }")
}

#[test]
fn a_rollout_survives_a_hub_kill_and_pause_undo_history_and_apply_wait_do_what_they_say() {
    let list: Vec<(&str, &str)> = SLOW.iter().map(|n| (*n, "")).collect();
    let mut fleet = Fleet::start("slowroll", &list);
    let (code, text) = apply_wait(&fleet, "app", &slow("v1"));
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("workload/app revision 1: complete"), "{text}");

    // Mid-rollout, the hub dies with SIGKILL: it comes back at the same point, and no node is
    // given the revision twice.
    fleet.apply("app", &slow("v2"));
    let (mid, _) = fleet.wait_for("two nodes on revision 2", CONVERGE, || {
        let s = status(&fleet, "app");
        let on = nodes(&s).values().filter(|(r, ..)| *r == 2).count();
        (s["revision"] == 2 && on >= 2).then_some(s)
    });
    fleet.hub.kill9();
    fleet.hub.restart();
    let (done, took) = wait_state(&fleet, "app", 2, "complete");
    report("hub restart to the rollout of revision 2 complete", took);
    for (node, (revision, since, ..)) in nodes(&mid).iter().filter(|(_, p)| p.0 == 2) {
        assert_eq!(
            (nodes(&done)[node].0, nodes(&done)[node].1),
            (*revision, *since),
            "{node} was given revision 2 again after the restart: {done}"
        );
    }
    assert_eq!(most_at_once(&nodes(&done), 2), 1, "one at a time: {done}");

    // Paused, the rollout gives the revision to nobody new; resumed, it completes.
    fleet.apply("app", &slow("v3"));
    fleet.hub.ok(&["rollout", "pause", "app"]);
    std::thread::sleep(Duration::from_secs(6));
    let paused = status(&fleet, "app");
    let on = nodes(&paused).values().filter(|(r, ..)| *r == 3).count();
    assert!(
        on <= 1,
        "paused, yet {on} nodes were given revision 3: {paused}"
    );
    fleet.hub.ok(&["rollout", "resume", "app"]);
    wait_state(&fleet, "app", 3, "complete");

    // Undo: revision 4 with revision 2's spec, on every node at once.
    let said = fleet.hub.ok(&["rollout", "undo", "app"]);
    assert!(
        said.contains("revision 4 (the spec of revision 2)"),
        "{said}"
    );
    let (undone, took) = wait_state(&fleet, "app", 4, "complete");
    report("rollout undo to every node done", took);
    let sinces: Vec<u64> = nodes(&undone)
        .values()
        .map(|(_, since, ..)| *since)
        .collect();
    let spread = sinces.iter().max().unwrap_or(&0) - sinces.iter().min().unwrap_or(&0);
    assert!(
        spread < 1_000,
        "undo gives every node the revision at once: {undone}"
    );
    assert!(
        logs_say(&fleet, "app v2"),
        "revision 4 runs revision 2's spec"
    );

    eprintln!(
        "[rollout history]\n{}",
        fleet.hub.ok(&["rollout", "history", "app"])
    );
    let history: Vec<Value> =
        serde_json::from_str(&fleet.hub.ok(&["rollout", "history", "app", "-o", "json"]))
            .expect("history as JSON");
    let rows: Vec<(u64, String, bool)> = history
        .iter()
        .map(|h| {
            (
                h["revision"].as_u64().expect("revision"),
                h["state"].as_str().unwrap_or("").to_string(),
                h["immediate"] == true,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (1, "complete".to_string(), false),
            (2, "complete".to_string(), false),
            (3, "complete".to_string(), false),
            (4, "complete".to_string(), true),
        ]
    );

    // apply --wait of a crashing revision exits 1 and says it rolled back.
    let (code, text) = apply_wait(&fleet, "app", &slow("bad"));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("rolled back to revision 4"), "{text}");
    fleet.clean_up();
}

/// Whether the first node's log of `app` says `text`.
fn logs_say(fleet: &Fleet, text: &str) -> bool {
    let out = fleet
        .hub
        .cli(&["logs", "app", "--node", SLOW[0], "--tail", "20"]);
    String::from_utf8_lossy(&out.stdout).contains(text)
}

const CUT: [&str; 3] = ["cut-a", "cut-b", "cut-c"];

/// `app` for [`CUT`]: one node at a time; healthy for 20 s, longer than `late-bad` runs.
fn cut_app(version: &str) -> String {
    rollout::app(version, "{ canary: 1, maxUnavailable: 1, healthyFor: 20s }")
}

#[test]
fn a_node_cut_off_with_a_bad_revision_rolls_back_by_itself_and_the_hub_learns_it_on_reconnect() {
    let list: Vec<(&str, &str)> = CUT.iter().map(|n| (*n, "")).collect();
    let mut fleet = Fleet::start("rollcut", &list);
    fleet.apply("app", &cut_app("v1"));
    wait_state(&fleet, "app", 1, "complete");
    let before: BTreeMap<&str, _> = CUT.iter().map(|n| (*n, fleet.pids(n))).collect();

    // Revision 2 runs for 5 s, then exits 1. The canary gets it, runs it, and is cut off.
    let canary = CUT[0];
    fleet.apply("app", &cut_app("late-bad"));
    fleet.wait_for("the canary running revision 2", CONVERGE, || {
        let instances = fleet.hub.api_json("/v1/workloads/app")["instances"].clone();
        instances.as_array()?.iter().find(|i| {
            i["node"] == canary && i["revision"] == 2 && i["containers"][0]["state"] == "Running"
        })?;
        Some(())
    });
    fleet.cut(canary);

    // Offline, the node goes back to revision 1 by itself, and keeps it.
    let agent = fleet.agent(canary);
    let (_, took) = fleet.wait_for("the cut-off canary back on revision 1", CONVERGE, || {
        let status = agent.status();
        let app = status.workloads.iter().find(|w| w.name == "app")?;
        (app.revision == 1
            && app.containers.first()?.state == shoal_model::wire::ContainerState::Running)
            .then_some(())
    });
    report(
        "bad revision on a cut-off node to running the previous one",
        took,
    );
    let failure: String = agent
        .database()
        .query_row(
            "SELECT failure FROM trials WHERE workload = 'app'",
            [],
            |r| r.get(0),
        )
        .expect("the failed trial is stored");
    assert_eq!(failure, "crashed");
    let rolled_back: Vec<_> = agent
        .events_after(0)
        .into_iter()
        .filter(|(reason, ..)| reason == "rolled-back")
        .collect();
    assert_eq!(rolled_back.len(), 1, "{rolled_back:?}");
    assert!(
        rolled_back[0]
            .2
            .contains("rolled back from revision 2 to 1"),
        "{rolled_back:?}"
    );
    let still = status(&fleet, "app");
    assert_eq!(
        still["state"], "progressing",
        "the hub does not know yet: {still}"
    );

    // Back online: the hub learns that the node failed the revision, and rolls it back
    // everywhere it went (the canary only); the canary restarts nothing for that.
    let pid_offline = fleet.pids(canary);
    fleet.restore(canary);
    let (rolled, took) = wait_state(&fleet, "app", 2, "rolled-back");
    report("reconnect to the hub knowing the node rolled back", took);
    let parts = nodes(&rolled);
    assert_eq!(parts[canary].0, 1, "{rolled}");
    let failed = rollout::status(&fleet, "app");
    let out = fleet.hub.cli(&["rollout", "status", "app"]);
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!("[rollout status]\n{text}");
    assert!(
        text.contains("rolled back to revision 1 after 1 failed node"),
        "{text}"
    );
    assert!(
        fleet
            .hub_events(canary)
            .iter()
            .any(|e| e["reason"] == "RolledBack"),
        "the hub has the node's rolled-back event: {:?}",
        fleet.hub_events(canary)
    );
    assert_eq!(failed["failed"], 1, "{failed}");
    wait_running_everywhere(&fleet, "app", 1, CUT.len());
    assert_eq!(
        fleet.pids(canary),
        pid_offline,
        "the canary restarted nothing on reconnect"
    );
    for node in &CUT[1..] {
        assert_eq!(fleet.pids(node), before[node], "{node} was touched");
    }
    fleet.clean_up();
}
