//! Deleting workloads under load, with real containers: many at once of every kind (exiting
//! on SIGTERM, ignoring it, crash-looping), grace periods on delete, and a soak of repeated
//! apply/delete cycles. What an operator would notice is asserted: how long a delete takes,
//! how many events it writes to flash, what it leaves behind, and the agent's memory.
//!
//! The defect these guard against: a container a worker was stopping looked "starting" to the
//! planner, so each event planned one more stop of it on a worker of its own; the stops caused
//! exits, the exits events, the events more stops. Deletes took minutes, wrote events without
//! bound, grew the agent past 2.9 GiB and 500 threads, and left containers behind.

use std::time::{Duration, Instant};

use shoal_tests::agent::{row, shell_workload, Agent, Row};

/// Exits as soon as it gets SIGTERM.
const EXITS_ON_TERM: &str = "trap 'exit 0' TERM; while true; do sleep 1; done";
/// Ignores SIGTERM: only the SIGKILL at the end of its grace period stops it.
const IGNORES_TERM: &str = "trap '' TERM; while true; do sleep 1; done";
/// Exits with a failure at once: `always` restarts it with a growing backoff.
const CRASHES: &str = "echo crashing; exit 3";

fn started(name: &str) -> Agent {
    let mut agent = Agent::new(name, "");
    agent.start();
    agent.import_busybox();
    agent
}

fn state(rows: &[Row], workload: &str) -> String {
    row(rows, workload, "main")
        .map(|r| r["STATE"].clone())
        .unwrap_or_default()
}

/// `count` workloads of each kind, in one folder of manifests, applied at once; returns
/// their names.
fn apply_mix(agent: &Agent, prefix: &str, count: usize, grace: &str) -> Vec<String> {
    apply_kinds(
        agent,
        prefix,
        &[
            ("term", EXITS_ON_TERM, count),
            ("stubborn", IGNORES_TERM, count),
            ("crash", CRASHES, count),
        ],
        grace,
    )
}

/// Workloads of the given kinds (name, script, how many), applied at once as one folder.
fn apply_kinds(
    agent: &Agent,
    prefix: &str,
    kinds: &[(&str, &str, usize)],
    grace: &str,
) -> Vec<String> {
    let dir = agent.root.join(format!("manifests-{prefix}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("manifest dir");
    let mut names = Vec::new();
    for &(kind, script, count) in kinds {
        for i in 0..count {
            let name = format!("{prefix}-{kind}-{i}");
            let spec = format!("  stopGracePeriod: {grace}\n  restartPolicy: always\n");
            std::fs::write(
                dir.join(format!("{name}.yaml")),
                shell_workload(&name, script, &spec, ""),
            )
            .expect("write manifest");
            names.push(name);
        }
    }
    agent.ok(&["apply", "-f", &dir.display().to_string()]);
    names
}

/// Waits until every long-running workload of `names` runs and every crash-looping one has
/// crashed at least once.
fn wait_until_all_ran(agent: &Agent, names: &[String]) {
    agent.wait_for("every workload ran", Duration::from_secs(90), |rows| {
        names.iter().all(|n| {
            let s = state(rows, n);
            if n.contains("-crash-") {
                !s.is_empty() && s != "Starting" && s != "Pulling"
            } else {
                s == "Running"
            }
        })
    });
}

/// Deletes every workload of `names` in quick succession, as a script would, and returns how
/// long until `ps` shows none of them.
fn delete_all_and_time(agent: &Agent, names: &[String]) -> Duration {
    let start = Instant::now();
    for name in names {
        agent.ok(&["delete", name]);
    }
    agent.wait_for("every workload gone", Duration::from_secs(120), |rows| {
        names.iter().all(|n| row(rows, n, "main").is_none())
    });
    start.elapsed()
}

#[test]
fn deleting_many_workloads_of_every_kind_at_once_takes_one_grace_period_and_leaves_nothing() {
    let node = "e2e-mass-delete";
    let agent = started(node);
    let names = apply_mix(&agent, "mass", 10, "3s");
    wait_until_all_ran(&agent, &names);
    let before = agent.events_recorded();
    let log_before = agent.log().len();

    let took = delete_all_and_time(&agent, &names);
    eprintln!("[deleting {} workloads took {took:?}]", names.len());
    // Every stop runs at once on its own worker: the stubborn ones all end with their 3 s
    // grace period. 30 CLI round trips, the stops and the removals fit well within 15 s.
    assert!(
        took < Duration::from_secs(15),
        "deleting {} workloads took {took:?}\n{}",
        names.len(),
        agent.log_tail()
    );
    agent.assert_nothing_left();

    // What a delete of one container may record: stopped/exited, removed, and the odd
    // crash-loop restart or exit that raced with the delete. Nothing per loop iteration.
    let events = agent.events_after(before);
    let per_workload = events.len() as f64 / names.len() as f64;
    eprintln!(
        "[{} events for {} deletes: {per_workload:.1} each]",
        events.len(),
        names.len()
    );
    assert!(
        events.len() <= names.len() * 5,
        "{} events for {} deletes:\n{events:#?}",
        events.len(),
        names.len()
    );
    let failures: Vec<_> = events
        .iter()
        .filter(|(_, _, message)| message.contains("failed"))
        .collect();
    assert!(
        failures.is_empty(),
        "failures while deleting: {failures:#?}"
    );
    for name in &names {
        let removed = events
            .iter()
            .filter(|(reason, at, _)| reason == "removed" && at == &format!("{name}/main"))
            .count();
        assert_eq!(removed, 1, "{name} removed once: {events:#?}");
    }
    // One removal per container, not several racing ones.
    let log = agent.log();
    for noise in ["shim died", "Directory not empty", "there is no container"] {
        assert!(
            !log.contains(noise),
            "the agent's log has `{noise}`:\n{}",
            agent.log_tail()
        );
    }
    let since_delete = log.get(log_before..).unwrap_or_default();
    for name in &names {
        let id = format!("\"{name}.main\"");
        let removals = since_delete
            .lines()
            .filter(|l| l.contains("container removed") && l.contains(&id))
            .count();
        // A crash-looping one may have been in a restart (a removal too) when deleted.
        let expected = if name.contains("-crash-") {
            1..=2
        } else {
            1..=1
        };
        assert!(
            expected.contains(&removals),
            "{name}: {removals} `container removed` lines since the delete"
        );
    }
    // Workers are capped at 64 (idle ones linger for 10 s), plus the loop, the API and
    // the probes' threads; the delete loop had over 500.
    let threads = agent.threads();
    assert!(
        threads <= 64 + 16,
        "the agent has {threads} threads after {} deletes",
        names.len()
    );
}

#[test]
fn fifty_workloads_that_ignore_sigterm_are_all_deleted_within_one_default_grace_period() {
    let node = "e2e-stubborn-delete";
    let agent = started(node);
    let names = apply_kinds(&agent, "st", &[("stubborn", IGNORES_TERM, 50)], "10s");
    wait_until_all_ran(&agent, &names);
    let before = agent.events_recorded();
    let took = delete_all_and_time(&agent, &names);
    let events = agent.events_recorded() - before;
    eprintln!("[deleting 50 workloads that ignore SIGTERM took {took:?}, {events} events]");
    // They are killed together at the end of one 10 s period; the loop took 4.5 minutes.
    assert!(took < Duration::from_secs(20), "took {took:?}");
    // Exited and removed for each.
    assert!(events <= 50 * 3, "{events} events for 50 deletes");
    agent.assert_nothing_left();
}

#[test]
fn a_delete_honours_the_stop_grace_period_of_the_deleted_workload() {
    let agent = started("e2e-delete-grace");
    // Below and above the 10 s default: a deleted workload's spec is gone, and its period
    // must still be the one it was started with.
    for (name, grace) in [("short", "2s"), ("long", "13s")] {
        let spec = format!("  stopGracePeriod: {grace}\n");
        agent.apply(name, &shell_workload(name, IGNORES_TERM, &spec, ""));
    }
    agent.wait_for("both running", Duration::from_secs(30), |rows| {
        state(rows, "short") == "Running" && state(rows, "long") == "Running"
    });
    let start = Instant::now();
    agent.ok(&["delete", "short"]);
    agent.ok(&["delete", "long"]);
    let mut gone: [Option<Duration>; 2] = [None, None];
    while gone.iter().any(Option::is_none) && start.elapsed() < Duration::from_secs(40) {
        let rows = agent.ps();
        for (i, name) in ["short", "long"].iter().enumerate() {
            if gone[i].is_none() && row(&rows, name, "main").is_none() {
                gone[i] = Some(start.elapsed());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let [Some(short), Some(long)] = gone else {
        panic!("not deleted within 40 s: {gone:?}\n{}", agent.log_tail());
    };
    eprintln!("[grace 2s: gone after {short:?}; grace 13s: gone after {long:?}]");
    assert!(
        short >= Duration::from_secs(2) && short < Duration::from_secs(6),
        "a 2 s grace period took {short:?}"
    );
    assert!(
        long >= Duration::from_secs(13) && long < Duration::from_secs(17),
        "a 13 s grace period took {long:?}"
    );
}

/// How much the agent may grow over the soak above its RSS before the first workload. The
/// test runs the debug build, which starts at about 24 MiB (the release agent idles at about
/// 12 MiB, `bench/agent-rss`); what legitimately grows is SQLite's page cache (at most 2 MiB
/// per connection by default) and memory the allocator keeps after the busiest moment (30
/// workers at once). 8 MiB covers both; the delete loop grew the agent by gigabytes.
const SOAK_GROWTH_BOUND_KIB: u64 = 8 * 1024;
/// Growth allowed over the second half of the soak, once caches are warm: a real leak of one
/// container record, task or buffer per cycle would show here.
const SETTLED_GROWTH_BOUND_KIB: u64 = 2 * 1024;

#[test]
fn repeated_apply_and_delete_cycles_keep_memory_and_events_bounded_and_the_database_sound() {
    let node = "e2e-soak";
    let agent = started(node);
    // About 3 s a cycle; SOAK_CYCLES=50 for a longer run by hand.
    let cycles: usize = std::env::var("SOAK_CYCLES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10)
        .max(2);
    let baseline = agent.rss_kib();
    let mut rss = Vec::new();
    let mut events_per_cycle = Vec::new();
    let soak_start = Instant::now();
    for cycle in 0..cycles {
        let before = agent.events_recorded();
        let names = apply_mix(&agent, &format!("s{cycle}"), 4, "2s");
        wait_until_all_ran(&agent, &names);
        delete_all_and_time(&agent, &names);
        agent.assert_nothing_left();
        events_per_cycle.push(agent.events_recorded() - before);
        rss.push(agent.rss_kib());
    }
    eprintln!(
        "[soak: {cycles} cycles of 12 workloads in {:?}; agent RSS KiB {baseline} before, \
         then per cycle {rss:?}; events per cycle {events_per_cycle:?}]",
        soak_start.elapsed()
    );
    let peak = rss.iter().copied().max().unwrap_or(0);
    assert!(
        peak < baseline + SOAK_GROWTH_BOUND_KIB,
        "the agent grew from {baseline} KiB to {peak} KiB (bound {SOAK_GROWTH_BOUND_KIB} KiB \
         of growth): {rss:?}"
    );
    let settled = rss[cycles - 1].saturating_sub(rss[cycles / 2]);
    assert!(
        settled < SETTLED_GROWTH_BOUND_KIB,
        "the agent kept growing once warm: {rss:?}"
    );
    // Events follow the transitions (pull, create, start, exits, removal: about ten per
    // workload and cycle, more for a crash loop that restarted meanwhile), not the loop.
    for (cycle, events) in events_per_cycle.iter().enumerate() {
        assert!(
            *events <= 12 * 12,
            "cycle {cycle} wrote {events} events for 12 workloads: {events_per_cycle:?}"
        );
    }
    let db = agent.database();
    let check: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity check");
    assert_eq!(check, "ok");
}

#[test]
fn an_agent_stopped_during_a_long_stop_exits_at_once_and_the_next_one_finishes_the_delete() {
    let mut agent = started("e2e-delete-term");
    agent.apply(
        "slow",
        &shell_workload("slow", IGNORES_TERM, "  stopGracePeriod: 6s\n", ""),
    );
    agent.wait_for("slow running", Duration::from_secs(20), |rows| {
        state(rows, "slow") == "Running"
    });
    agent.ok(&["delete", "slow"]);
    std::thread::sleep(Duration::from_millis(500));
    // A worker is waiting out the 6 s grace period: the agent does not wait for it.
    let took = agent.terminate();
    eprintln!("[SIGTERM during a stop: the agent exited after {took:?}]");
    assert!(
        took < Duration::from_secs(3),
        "the agent took {took:?} to stop"
    );
    agent.start();
    agent.wait_for(
        "slow deleted by the next agent",
        Duration::from_secs(20),
        |rows| row(rows, "slow", "main").is_none(),
    );
    agent.assert_nothing_left();
}
