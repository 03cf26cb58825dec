//! What a simulated node does, as pure functions of its behaviour, what it was asked to run
//! and how long ago: no clock is read here, no IO is done.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use shoal_model::wire::{
    ContainerState, ContainerStatus, DesiredWorkload, ExitInfo, Health, WorkloadStatus,
};

/// How one simulated node behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    /// Every container runs as soon as it is asked for.
    Healthy,
    /// Containers are `Creating` for the slow-start time, then run.
    Slow,
    /// Containers never stay up: `BackOff`, one more restart every [`CRASH_EVERY`].
    Crash,
    /// Containers run, and their health checks fail.
    Unhealthy,
    /// Healthy, but the link drops for [`Timing::flap_down`] every [`Timing::flap_every`].
    Flap,
    /// Healthy, but the node goes offline once, for [`Timing::offline_for`], a third of the way
    /// into the run.
    Offline,
}

/// How often a crash-looping container restarts (as the agent's first backoff steps do).
pub const CRASH_EVERY: Duration = Duration::from_secs(10);

impl Behaviour {
    pub const ALL: [Behaviour; 6] = [
        Behaviour::Healthy,
        Behaviour::Slow,
        Behaviour::Crash,
        Behaviour::Unhealthy,
        Behaviour::Flap,
        Behaviour::Offline,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Behaviour::Healthy => "healthy",
            Behaviour::Slow => "slow",
            Behaviour::Crash => "crash",
            Behaviour::Unhealthy => "unhealthy",
            Behaviour::Flap => "flap",
            Behaviour::Offline => "offline",
        }
    }

    fn parse(text: &str) -> Option<Behaviour> {
        Behaviour::ALL.into_iter().find(|b| b.as_str() == text)
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shares of each behaviour in the fleet, in percent, summing to 100.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix(Vec<(Behaviour, u32)>);

impl Mix {
    /// `healthy=80,crash=10,slow=10`: every share a whole percentage, together 100.
    pub fn parse(text: &str) -> Result<Mix, String> {
        let mut shares: Vec<(Behaviour, u32)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, share) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}`: write BEHAVIOUR=PERCENT, e.g. crash=10"))?;
            let behaviour = Behaviour::parse(name.trim()).ok_or_else(|| {
                let names: Vec<&str> = Behaviour::ALL.iter().map(|b| b.as_str()).collect();
                format!("`{name}` is no behaviour: one of {}", names.join(", "))
            })?;
            let share: u32 = share
                .trim()
                .parse()
                .map_err(|_| format!("`{part}`: the share is a whole percentage, 0 to 100"))?;
            if shares.iter().any(|(b, _)| *b == behaviour) {
                return Err(format!("`{name}` is given twice"));
            }
            shares.push((behaviour, share));
        }
        let total: u32 = shares.iter().map(|(_, s)| s).sum();
        if total != 100 {
            return Err(format!("the shares add up to {total}%, not 100%"));
        }
        shares.sort();
        Ok(Mix(shares))
    }

    /// The behaviour of node `index` of `nodes`: exactly `share%` of the nodes (rounded down,
    /// the rest healthy-first), spread over the fleet rather than in blocks.
    pub fn of(&self, index: usize, nodes: usize) -> Behaviour {
        // Rank the node in a fixed permutation of 0..nodes, then cut the ranks by share.
        let rank = spread(index, nodes);
        let mut from = 0usize;
        for (behaviour, share) in &self.0 {
            let count = nodes * *share as usize / 100;
            if rank < from + count {
                return *behaviour;
            }
            from += count;
        }
        self.0[0].0
    }

    /// How many of `nodes` behave as `behaviour`.
    pub fn count(&self, behaviour: Behaviour, nodes: usize) -> usize {
        (0..nodes)
            .filter(|i| self.of(*i, nodes) == behaviour)
            .count()
    }
}

/// A bijection of `0..n` that scatters neighbours (multiplication by a number prime to n).
fn spread(index: usize, n: usize) -> usize {
    if n <= 1 {
        return 0;
    }
    let mut step = 7919 % n;
    while step == 0 || gcd(step, n) != 1 {
        step += 1;
    }
    (index * step) % n
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The times behaviours are made of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timing {
    pub slow_start: Duration,
    pub flap_every: Duration,
    pub flap_down: Duration,
    pub offline_for: Duration,
}

/// What the node reports for `desired`, each workload revision first seen `since` ago
/// (`first_seen`: elapsed time per workload name).
pub fn statuses(
    behaviour: Behaviour,
    timing: &Timing,
    desired: &[DesiredWorkload],
    since: &BTreeMap<String, Duration>,
    started_at_ms: u64,
) -> Vec<WorkloadStatus> {
    desired
        .iter()
        .map(|d| {
            let age = since
                .get(&d.workload.name)
                .copied()
                .unwrap_or(Duration::ZERO);
            let containers = d
                .workload
                .spec
                .containers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let (state, health, restarts, last_exit) = match behaviour {
                        Behaviour::Slow if age < timing.slow_start => {
                            (ContainerState::Creating, Health::Unknown, 0, None)
                        }
                        Behaviour::Crash => {
                            let restarts = (age.as_secs() / CRASH_EVERY.as_secs()) as u32;
                            let exit = ExitInfo {
                                code: Some(1),
                                signal: None,
                                oom_killed: false,
                                at_ms: started_at_ms,
                            };
                            (
                                ContainerState::BackOff,
                                Health::Unknown,
                                restarts,
                                Some(exit),
                            )
                        }
                        Behaviour::Unhealthy => {
                            (ContainerState::Running, Health::Unhealthy, 0, None)
                        }
                        _ => (ContainerState::Running, healthy(c), 0, None),
                    };
                    let running = state == ContainerState::Running;
                    ContainerStatus {
                        name: c.name.clone(),
                        state,
                        health,
                        restarts,
                        last_exit,
                        oom_kills: 0,
                        started_at_ms: running.then_some(started_at_ms),
                        // A plausible pid per container, stable for the revision.
                        pid: running.then_some(1000 + i as u32),
                        memory_bytes: running.then_some(4 << 20),
                        cpu_usage_ns: running.then_some(age.as_nanos() as u64 / 100),
                        message: None,
                    }
                })
                .collect();
            WorkloadStatus {
                name: d.workload.name.clone(),
                revision: d.revision,
                containers,
                rolled_back: None,
            }
        })
        .collect()
}

fn healthy(c: &shoal_model::manifest::Container) -> Health {
    if c.health.is_some() {
        Health::Healthy
    } else {
        Health::Unknown
    }
}

/// Whether the link of a node behaving as `behaviour` is up `elapsed` into a run of `run`.
pub fn link_up(behaviour: Behaviour, timing: &Timing, elapsed: Duration, run: Duration) -> bool {
    match behaviour {
        Behaviour::Flap => {
            let every = timing.flap_every.as_millis().max(1);
            let into = elapsed.as_millis() % every;
            elapsed < timing.flap_every || into >= timing.flap_down.as_millis()
        }
        Behaviour::Offline => {
            let from = run / 3;
            !(elapsed >= from && elapsed < from + timing.offline_for)
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mix_is_parsed_checked_and_gives_each_behaviour_its_share_spread_out() {
        let mix = Mix::parse("healthy=80, crash=10,slow=10").expect("mix");
        assert_eq!(mix.count(Behaviour::Crash, 1000), 100);
        assert_eq!(mix.count(Behaviour::Slow, 1000), 100);
        assert_eq!(mix.count(Behaviour::Healthy, 1000), 800);
        // Not in one block: the first 100 nodes hold some of each.
        let first: Vec<Behaviour> = (0..100).map(|i| mix.of(i, 1000)).collect();
        assert!(first.contains(&Behaviour::Crash) && first.contains(&Behaviour::Healthy));
        for (text, needle) in [
            ("healthy=90", "add up to 90%"),
            ("healthy=90,sick=10", "`sick` is no behaviour"),
            ("healthy=90,crash", "write BEHAVIOUR=PERCENT"),
            ("healthy=50,healthy=50", "given twice"),
            ("healthy=-1", "whole percentage"),
        ] {
            let error = Mix::parse(text).expect_err(text);
            assert!(error.contains(needle), "{text}: {error}");
        }
    }

    fn workload(name: &str) -> DesiredWorkload {
        let text = format!(
            "apiVersion: shoal/v1\nkind: Workload\nmetadata:\n  name: {name}\nspec:\n  containers:\n    - name: main\n      image: busybox:1\n"
        );
        let (mut loaded, problems) =
            shoal_model::manifest::parse_manifest(std::path::Path::new("w.yaml"), &text);
        assert!(problems.is_empty(), "{problems:?}");
        let workload = loaded.remove(0).workload;
        DesiredWorkload {
            workload,
            revision: 3,
        }
    }

    #[test]
    fn each_behaviour_reports_what_its_containers_would() {
        let timing = Timing {
            slow_start: Duration::from_secs(5),
            flap_every: Duration::from_secs(20),
            flap_down: Duration::from_secs(2),
            offline_for: Duration::from_secs(10),
        };
        let desired = [workload("web")];
        let at = |secs: u64| BTreeMap::from([("web".to_string(), Duration::from_secs(secs))]);
        let state = |b: Behaviour, secs: u64| {
            let s = statuses(b, &timing, &desired, &at(secs), 7);
            assert_eq!((s[0].name.as_str(), s[0].revision), ("web", 3));
            let c = &s[0].containers[0];
            (c.state, c.health, c.restarts)
        };
        assert_eq!(state(Behaviour::Healthy, 0).0, ContainerState::Running);
        assert_eq!(state(Behaviour::Slow, 4).0, ContainerState::Creating);
        assert_eq!(state(Behaviour::Slow, 5).0, ContainerState::Running);
        assert_eq!(
            state(Behaviour::Crash, 25),
            (ContainerState::BackOff, Health::Unknown, 2)
        );
        assert_eq!(state(Behaviour::Unhealthy, 1).1, Health::Unhealthy);

        let run = Duration::from_secs(90);
        let up = |b: Behaviour, secs: u64| link_up(b, &timing, Duration::from_secs(secs), run);
        assert!(up(Behaviour::Flap, 5) && !up(Behaviour::Flap, 41) && up(Behaviour::Flap, 43));
        assert!(
            up(Behaviour::Offline, 29) && !up(Behaviour::Offline, 35) && up(Behaviour::Offline, 40)
        );
        assert!(up(Behaviour::Healthy, 35));
    }
}
