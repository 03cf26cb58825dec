//! Agent upgrades: which agent each node should run (`shoal agent upgrade --to V [-l SEL]`),
//! rolled out over the nodes an upgrade picks in waves ([`roll`]), named in each node's
//! desired state, and where each node is with it ([`progress`]). Pure: the time is an
//! argument, every decision is data.
//!
//! # Rules
//!
//! - **Which upgrade**: the newest upgrade whose selector the node's labels (the hub's laid
//!   over the agent's) all match; an empty selector matches every node. A newer upgrade of a
//!   wider selector therefore wins over an older one of a narrower selector, as the last
//!   command an operator typed should.
//! - **Which release**: the version a node was *given* ([`AgentAssigned`]), for the node's
//!   architecture (from its facts). A node of an architecture the version was not released
//!   for is blocked: it takes no part in the rollout, and [`progress`] says so.
//! - **Who gets a target**: a node an upgrade picks, whose agent reads wire version 3 (older
//!   agents cannot update themselves), when the hub has release keys and knows the URL its API
//!   is reached at. The target stays in the node's desired state once the node runs the
//!   version, so the node's generation does not change again for it. A node no upgrade picks
//!   (the upgrade was cancelled) gets none, and keeps the agent it runs.
//! - **Waves** ([`roll`]), the rule workload rollouts follow too ([`rollout::Waves`]): the
//!   first `canary` nodes (by name, online ones; default 1) get the version alone; when they
//!   are done, at most `max_unavailable` (default 25%) are updating at once. A node is
//!   *updating* from when it is given the version until it is done or failed.
//! - **Done**: the node runs the version and its launcher has kept it (the new agent proved
//!   itself on probation). A node that runs the version already (flashed with it) is done
//!   without being given it.
//! - **Failed**: the node reports the update failed (a refused download, a revert by its
//!   launcher), or is not done within `progress_deadline` (default 10 minutes) of being given
//!   it while it was online. A node offline before its turn is deferred: it gets the version
//!   when it is back, and does not hold the rollout up.
//! - **Halt**: at `failure_threshold` failed nodes (default 1; a count or a percentage, at
//!   least 1) nobody new is given the version. Failed nodes went back to their previous agent
//!   by themselves (their launcher reverts); the rest keep what they run.
//! - **Complete**: every node the upgrade picks that is online runs the version; a node that
//!   joins or comes back later gets it directly.
//! - **Pause** (`shoal rollout pause --agent`): nobody new is given the version; nodes
//!   updating finish, and failures still halt. **Undo** (`shoal rollout undo --agent`) is an
//!   upgrade back to the version most of its nodes ran before ([`previous_version`]), given
//!   to every node at once.

use std::collections::BTreeMap;

use shoal_model::elf::Arch;
use shoal_model::endpoint::ApiUrl;
use shoal_model::quantity::{format_duration, Amount};
use shoal_model::release::{AgentTarget, Version};
use shoal_model::wire::signing::PublicKey;
use shoal_model::wire::{AgentUpdateState, NodeStatus};

use super::rollout::{self, State, Waves};
use crate::store::StoredRelease;

/// How an upgrade rolls out (`shoal agent upgrade --canary … --max-unavailable …`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strategy {
    pub canary: Amount,
    pub max_unavailable: Amount,
    pub failure_threshold: Amount,
    pub progress_deadline_ms: u64,
}

/// Default [`Strategy::progress_deadline_ms`]: well past the launcher's probation (up within
/// 120 s, then stable for 60 s) and a download over a slow link.
pub const DEFAULT_PROGRESS_DEADLINE_MS: u64 = 600_000;

impl Default for Strategy {
    fn default() -> Self {
        Strategy {
            canary: Amount::Count(1),
            max_unavailable: Amount::Percent(25),
            failure_threshold: Amount::Count(1),
            progress_deadline_ms: DEFAULT_PROGRESS_DEADLINE_MS,
        }
    }
}

/// Where an upgrade's rollout stands. Its `state` is never `RolledBack`: each failed node's
/// launcher reverts it by itself, and `undo` is an upgrade of its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpgradeRollout {
    pub state: State,
    /// Wall-clock ms of the last change of `state`.
    pub changed_ms: u64,
    /// Paused by the operator: nobody new is given the version.
    pub paused: bool,
    /// Every node at once, with no canary and no waves (an undo, or `--all-at-once`).
    pub immediate: bool,
}

impl UpgradeRollout {
    /// A rollout that starts at `now_ms`.
    pub fn start(now_ms: u64, immediate: bool) -> UpgradeRollout {
        UpgradeRollout {
            state: State::Progressing,
            changed_ms: now_ms,
            paused: false,
            immediate,
        }
    }
}

/// One `shoal agent upgrade`: the nodes it picks, the version they should run, and how it is
/// rolled out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentUpgrade {
    /// Labels a node must all have; empty: every node. One upgrade per selector.
    pub selector: BTreeMap<String, String>,
    pub version: Version,
    pub created_ms: u64,
    pub strategy: Strategy,
    /// The version most of the nodes it picked ran when it was set: where `undo` goes.
    pub previous: Option<Version>,
    pub rollout: UpgradeRollout,
}

/// What a node was given of the agent, and how it went there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentAssigned {
    pub version: Version,
    /// Wall-clock ms when the node was given the version.
    pub since_ms: u64,
    pub outcome: AgentOutcome,
    /// Wall-clock ms of the last change of `outcome`.
    pub outcome_ms: u64,
}

/// Where a node is with the version it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentOutcome {
    Updating,
    Done,
    Failed(String),
}

/// The release keys nodes should trust, endorsed by each key the hub holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseTrust {
    pub keys: Vec<PublicKey>,
    pub endorsements: Vec<Vec<u8>>,
}

/// What decisions about agent upgrades read.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgentFleet {
    /// In any order.
    pub upgrades: Vec<AgentUpgrade>,
    pub releases: Vec<StoredRelease>,
    pub trust: Option<ReleaseTrust>,
    /// The hub's API as nodes reach it: where they download binaries.
    pub source: Option<ApiUrl>,
    /// What each node was given, as stored.
    pub assigned: BTreeMap<String, AgentAssigned>,
}

impl AgentFleet {
    /// Whether `version` was released for `arch` (as a node's facts name it).
    fn released(&self, version: &Version, arch: &str) -> bool {
        Arch::parse(arch).is_ok_and(|arch| {
            self.releases
                .iter()
                .any(|r| &r.release.version == version && r.release.arch == arch)
        })
    }
}

/// The upgrade that decides for a node with `labels`: the newest whose selector matches.
pub fn upgrade_for<'a>(
    upgrades: &'a [AgentUpgrade],
    labels: &BTreeMap<String, String>,
) -> Option<&'a AgentUpgrade> {
    upgrades.iter().filter(|u| picks(u, labels)).max_by(|a, b| {
        a.created_ms
            .cmp(&b.created_ms)
            // Same instant: the narrower selector, then by text, so the pick is total.
            .then(a.selector.len().cmp(&b.selector.len()))
            .then(b.selector.cmp(&a.selector))
    })
}

/// How an operator reads `selector`: `every node`, or `the nodes with k=v,k2=v2`.
pub fn selector_text(selector: &BTreeMap<String, String>) -> String {
    if selector.is_empty() {
        "every node".to_string()
    } else {
        let pairs: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("the nodes with {}", pairs.join(","))
    }
}

fn picks(upgrade: &AgentUpgrade, labels: &BTreeMap<String, String>) -> bool {
    upgrade
        .selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
}

/// The version an upgrade of `selector` goes back to when undone: the one most of the nodes
/// it picks run (`nodes`: labels and running version), the newest of a tie; none when no
/// picked node runs a version that parses, or all run `version` already.
pub fn previous_version<'a>(
    selector: &BTreeMap<String, String>,
    version: &Version,
    nodes: impl IntoIterator<Item = (&'a BTreeMap<String, String>, &'a str)>,
) -> Option<Version> {
    let mut counts: BTreeMap<Version, usize> = BTreeMap::new();
    for (labels, running) in nodes {
        if selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            if let Ok(v) = Version::parse(running) {
                *counts.entry(v).or_default() += 1;
            }
        }
    }
    counts.remove(version);
    counts
        .into_iter()
        .max_by(|(va, a), (vb, b)| a.cmp(b).then(va.cmp(vb)))
        .map(|(v, _)| v)
}

/// Why a node gets no target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoTarget {
    /// No upgrade picks the node, or it was not given a version yet.
    NotPicked,
    /// The version has no release for the node's architecture.
    NoRelease { version: Version, arch: String },
    /// The hub has no release key, or does not know where nodes reach its API.
    NotReady(&'static str),
}

/// The agent target naming `version` for a node of architecture `arch` (as its facts say).
pub fn target(fleet: &AgentFleet, version: &Version, arch: &str) -> Result<AgentTarget, NoTarget> {
    let no_release = || NoTarget::NoRelease {
        version: version.clone(),
        arch: arch.to_string(),
    };
    let arch = Arch::parse(arch).map_err(|_| no_release())?;
    let stored = fleet
        .releases
        .iter()
        .find(|r| &r.release.version == version && r.release.arch == arch)
        .ok_or_else(no_release)?;
    let trust = fleet
        .trust
        .as_ref()
        .ok_or(NoTarget::NotReady("the hub has no release key yet"))?;
    let source = fleet.source.clone().ok_or(NoTarget::NotReady(
        "the hub does not know the URL nodes reach its API at",
    ))?;
    Ok(AgentTarget {
        release: stored.release.clone(),
        signature: stored.signature.clone(),
        source,
        release_keys: trust.keys.clone(),
        endorsements: trust.endorsements.clone(),
    })
}

/// The target of node `node` with `labels`, architecture `arch`, after a [`roll`] that left
/// `assigned`: the version it was given, while an upgrade picks it.
pub fn target_of(
    fleet: &AgentFleet,
    assigned: &BTreeMap<String, AgentAssigned>,
    node: &str,
    labels: &BTreeMap<String, String>,
    arch: &str,
) -> Result<AgentTarget, NoTarget> {
    upgrade_for(&fleet.upgrades, labels).ok_or(NoTarget::NotPicked)?;
    let given = assigned.get(node).ok_or(NoTarget::NotPicked)?;
    target(fleet, &given.version, arch)
}

/// What [`roll`] and [`progress`] read of one node.
#[derive(Clone, Copy, Debug)]
pub struct AgentNode<'a> {
    pub name: &'a str,
    /// The hub's labels laid over the agent's.
    pub labels: &'a BTreeMap<String, String>,
    pub arch: &'a str,
    /// The version its agent runs (as its presence says).
    pub running: &'a str,
    /// Whether its agent reads wire version 3 (and so can update itself).
    pub reads_v3: bool,
    pub online: bool,
    /// Wall-clock ms it was last heard from; `None`: never.
    pub last_seen_ms: Option<u64>,
    /// Its newest status.
    pub status: Option<&'a NodeStatus>,
}

impl AgentNode<'_> {
    fn runs(&self, version: &Version) -> bool {
        Version::parse(self.running).is_ok_and(|v| &v == version)
    }

    /// What it reports of its update to `version`.
    fn reported(&self, version: &Version) -> Option<&AgentUpdateState> {
        let version = version.to_string();
        self.status
            .and_then(|s| s.agent_update.as_ref())
            .filter(|u| u.version == version)
            .map(|u| &u.state)
    }
}

/// What [`roll`] decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRolled {
    /// What every node was given (nodes no longer registered dropped).
    pub assigned: BTreeMap<String, AgentAssigned>,
    /// Every upgrade, with its rollout's new state.
    pub upgrades: Vec<AgentUpgrade>,
    /// When a deadline passes with no report: the next pass is due then.
    pub wake_ms: Option<u64>,
}

/// One step of every upgrade's rollout. See the module documentation for the rules.
pub fn roll(fleet: &AgentFleet, nodes: &[AgentNode<'_>], now_ms: u64) -> AgentRolled {
    let mut assigned: BTreeMap<String, AgentAssigned> = fleet
        .assigned
        .iter()
        .filter(|(name, _)| nodes.iter().any(|n| n.name == name.as_str()))
        .map(|(name, a)| (name.clone(), a.clone()))
        .collect();
    let mut upgrades = fleet.upgrades.clone();
    upgrades.sort_by(|a, b| a.selector.cmp(&b.selector));
    let mut wake_ms: Option<u64> = None;
    for upgrade in &mut upgrades {
        let version = upgrade.version.clone();
        let strategy = upgrade.strategy;
        // The nodes this upgrade decides for that can take part, by name.
        let mut eligible: Vec<&AgentNode<'_>> = nodes
            .iter()
            .filter(|n| {
                upgrade_for(&fleet.upgrades, n.labels)
                    .is_some_and(|u| u.selector == upgrade.selector)
            })
            .filter(|n| n.runs(&version) || (n.reads_v3 && fleet.released(&version, n.arch)))
            .collect();
        eligible.sort_by(|a, b| a.name.cmp(b.name));
        eligible.dedup_by(|a, b| a.name == b.name);
        for node in &eligible {
            let given = assigned.get(node.name).filter(|a| a.version == version);
            match given {
                None if node.runs(&version) => {
                    assigned.insert(
                        node.name.to_string(),
                        finished(&version, AgentOutcome::Done, now_ms),
                    );
                }
                Some(a) if a.outcome == AgentOutcome::Updating => {
                    let outcome = observe(a, node, strategy.progress_deadline_ms, now_ms);
                    if let Some(outcome) = outcome {
                        let a = assigned.get_mut(node.name).expect("given above");
                        a.outcome = outcome;
                        a.outcome_ms = now_ms;
                    }
                }
                _ => {}
            }
        }
        let on_target = |assigned: &BTreeMap<String, AgentAssigned>, name: &str| {
            assigned
                .get(name)
                .filter(|a| a.version == version)
                .map(|a| a.outcome.clone())
        };
        let count = |assigned: &BTreeMap<String, AgentAssigned>, f: fn(&AgentOutcome) -> bool| {
            eligible
                .iter()
                .filter(|n| on_target(assigned, n.name).is_some_and(|o| f(&o)))
                .count()
        };
        let total = eligible.len();
        let failed = count(&assigned, |o| matches!(o, AgentOutcome::Failed(_)));
        let rollout = &mut upgrade.rollout;
        if rollout.state == State::Progressing
            && failed >= rollout::at_most(strategy.failure_threshold, total)
        {
            rollout.state = State::Halted {
                failed: u32::try_from(failed).unwrap_or(u32::MAX),
            };
            rollout.changed_ms = now_ms;
        }
        let give = |assigned: &mut BTreeMap<String, AgentAssigned>, slots: usize| {
            let mut slots = slots;
            for node in &eligible {
                if slots == 0 {
                    break;
                }
                if node.online && on_target(assigned, node.name).is_none() {
                    assigned.insert(
                        node.name.to_string(),
                        finished(&version, AgentOutcome::Updating, now_ms),
                    );
                    slots -= 1;
                }
            }
        };
        match rollout.state {
            State::Halted { .. } | State::RolledBack { .. } => {}
            State::Complete => give(&mut assigned, usize::MAX),
            State::Progressing => {
                let done = count(&assigned, |o| *o == AgentOutcome::Done);
                let updating = count(&assigned, |o| *o == AgentOutcome::Updating);
                let waves = Waves {
                    canary: strategy.canary,
                    max_unavailable: strategy.max_unavailable,
                    paused: rollout.paused,
                    immediate: rollout.immediate,
                };
                give(
                    &mut assigned,
                    waves.limit(total, done).saturating_sub(updating),
                );
                // Failed nodes below the threshold are as finished as done ones.
                let all_done = eligible.iter().all(|n| {
                    on_target(&assigned, n.name).is_some_and(|o| o != AgentOutcome::Updating)
                        || !n.online
                });
                if all_done {
                    rollout.state = State::Complete;
                    rollout.changed_ms = now_ms;
                }
            }
        }
        let deadline = eligible
            .iter()
            .filter_map(|n| assigned.get(n.name))
            .filter(|a| a.version == version && a.outcome == AgentOutcome::Updating)
            .map(|a| a.since_ms.saturating_add(strategy.progress_deadline_ms))
            .filter(|at| *at > now_ms)
            .min();
        wake_ms = match (wake_ms, deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    AgentRolled {
        assigned,
        upgrades,
        wake_ms,
    }
}

/// `version` given at `now_ms`, with `outcome` so far.
fn finished(version: &Version, outcome: AgentOutcome, now_ms: u64) -> AgentAssigned {
    AgentAssigned {
        version: version.clone(),
        since_ms: now_ms,
        outcome,
        outcome_ms: now_ms,
    }
}

/// The outcome a node that is updating to `a.version` has come to, if any.
fn observe(
    a: &AgentAssigned,
    node: &AgentNode<'_>,
    deadline_ms: u64,
    now_ms: u64,
) -> Option<AgentOutcome> {
    let reported = node.reported(&a.version);
    if node.runs(&a.version) && reported != Some(&AgentUpdateState::Switching) {
        return Some(AgentOutcome::Done);
    }
    if let Some(AgentUpdateState::Failed { reason }) = reported {
        if !node.runs(&a.version) {
            return Some(AgentOutcome::Failed(reason.clone()));
        }
    }
    // A node offline since before it was given the version has not received it.
    let received = node.online || node.last_seen_ms.is_some_and(|seen| seen >= a.since_ms);
    (received && now_ms.saturating_sub(a.since_ms) >= deadline_ms).then(|| {
        AgentOutcome::Failed(format!(
            "not updated within {} of being given it",
            format_duration(std::time::Duration::from_millis(deadline_ms))
        ))
    })
}

/// Where one node is with the agent upgrade that picks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// No upgrade picks it.
    None,
    /// It runs the version.
    Updated,
    /// It cannot get it: no release for its architecture, or its agent cannot update itself.
    Blocked(String),
    /// Not given the version yet: why (its wave has not come, the rollout is paused or
    /// halted, the node is offline).
    Queued(String),
    /// Given, not reported on yet.
    Waiting,
    Downloading {
        received: u64,
        size: u64,
    },
    Switching,
    Failed(String),
}

impl Progress {
    pub fn as_str(&self) -> &'static str {
        match self {
            Progress::None => "none",
            Progress::Updated => "updated",
            Progress::Blocked(_) => "blocked",
            Progress::Queued(_) => "queued",
            Progress::Waiting => "waiting",
            Progress::Downloading { .. } => "downloading",
            Progress::Switching => "switching",
            Progress::Failed(_) => "failed",
        }
    }

    /// What to say beside the state, if anything.
    pub fn detail(&self) -> Option<String> {
        match self {
            Progress::Blocked(why) | Progress::Failed(why) | Progress::Queued(why) => {
                Some(why.clone())
            }
            Progress::Downloading { received, size } => Some(format!("{received} of {size} bytes")),
            _ => None,
        }
    }
}

/// Where `node` is with `upgrade`: from the version its agent runs, the wire versions it
/// reads, its architecture, what it was given, and its newest status.
pub fn progress(
    fleet: &AgentFleet,
    upgrade: Option<&AgentUpgrade>,
    node: &AgentNode<'_>,
) -> Progress {
    let Some(upgrade) = upgrade else {
        return Progress::None;
    };
    let version = &upgrade.version;
    let reported = node.reported(version);
    if node.runs(version) {
        // Running it, but on probation until its launcher has judged it.
        return if reported == Some(&AgentUpdateState::Switching) {
            Progress::Switching
        } else {
            Progress::Updated
        };
    }
    if !node.reads_v3 {
        return Progress::Blocked(format!(
            "agent {} cannot update itself: install {version} by hand (or flash it)",
            node.running
        ));
    }
    if !fleet.released(version, node.arch) {
        return Progress::Blocked(format!(
            "agent {version} has no release for {}: `shoal agent-release add FILE --version {version}`",
            node.arch
        ));
    }
    let given = fleet
        .assigned
        .get(node.name)
        .filter(|a| &a.version == version);
    let Some(given) = given else {
        let why = match upgrade.rollout.state {
            State::Halted { failed } | State::RolledBack { failed, .. } => {
                format!("the rollout halted after {failed} failed node(s)")
            }
            _ if !node.online => "offline: it gets the version when it is back".to_string(),
            _ if upgrade.rollout.paused => "the rollout is paused".to_string(),
            _ => "its wave has not come yet".to_string(),
        };
        return Progress::Queued(why);
    };
    match (reported, &given.outcome) {
        (Some(AgentUpdateState::Failed { reason }), _) => Progress::Failed(reason.clone()),
        (_, AgentOutcome::Failed(reason)) => Progress::Failed(reason.clone()),
        (Some(AgentUpdateState::Downloading { received, size }), _) => Progress::Downloading {
            received: *received,
            size: *size,
        },
        (Some(AgentUpdateState::Switching), _) => Progress::Switching,
        (None, _) => Progress::Waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::release::AgentRelease;
    use shoal_model::wire::AgentUpdate;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn version(text: &str) -> Version {
        Version::parse(text).expect("version")
    }

    fn upgrade(selector: &[(&str, &str)], to: &str, at: u64) -> AgentUpgrade {
        AgentUpgrade {
            selector: labels(selector),
            version: version(to),
            created_ms: at,
            strategy: Strategy::default(),
            previous: None,
            rollout: UpgradeRollout::start(at, false),
        }
    }

    fn release(to: &str, arch: Arch) -> StoredRelease {
        StoredRelease {
            release: AgentRelease {
                version: version(to),
                arch,
                sha256: [7; 32],
                size: 100,
                minimum: None,
            },
            signature: vec![1; 72],
            created_ms: 0,
        }
    }

    fn fleet(upgrades: Vec<AgentUpgrade>) -> AgentFleet {
        AgentFleet {
            upgrades,
            releases: vec![
                release("0.2.0", Arch::Aarch64),
                release("0.3.0", Arch::Aarch64),
            ],
            trust: Some(ReleaseTrust {
                keys: vec![PublicKey([3; 32])],
                endorsements: vec![vec![4; 72]],
            }),
            source: Some("https://hub.example:7440".parse().expect("url")),
            assigned: BTreeMap::new(),
        }
    }

    fn status(state: Option<AgentUpdateState>, to: &str) -> NodeStatus {
        NodeStatus {
            node_id: "n".into(),
            observed_generation: 1,
            sequence: 1,
            sent_at_ms: 0,
            workloads: Vec::new(),
            usage: Default::default(),
            events: Vec::new(),
            dropped_events: 0,
            agent_update: state.map(|state| AgentUpdate {
                version: to.into(),
                state,
            }),
        }
    }

    /// A node as `roll` and `progress` read it.
    struct N {
        name: String,
        labels: BTreeMap<String, String>,
        arch: &'static str,
        running: String,
        reads_v3: bool,
        online: bool,
        status: Option<NodeStatus>,
    }

    fn n(name: &str, running: &str) -> N {
        N {
            name: name.into(),
            labels: BTreeMap::new(),
            arch: "aarch64",
            running: running.into(),
            reads_v3: true,
            online: true,
            status: None,
        }
    }

    impl N {
        fn view(&self) -> AgentNode<'_> {
            AgentNode {
                name: &self.name,
                labels: &self.labels,
                arch: self.arch,
                running: &self.running,
                reads_v3: self.reads_v3,
                online: self.online,
                last_seen_ms: Some(0),
                status: self.status.as_ref(),
            }
        }
    }

    fn views(nodes: &[N]) -> Vec<AgentNode<'_>> {
        nodes.iter().map(N::view).collect()
    }

    #[test]
    fn the_newest_upgrade_that_matches_a_node_decides_which_upgrade_picks_it() {
        let upgrades = vec![
            upgrade(&[], "0.2.0", 1),
            upgrade(&[("site", "a")], "0.3.0", 2),
        ];
        let a = labels(&[("site", "a")]);
        let b = labels(&[("site", "b")]);
        let picked = |u: &[AgentUpgrade], l| upgrade_for(u, l).map(|u| u.version.to_string());
        assert_eq!(picked(&upgrades, &a).as_deref(), Some("0.3.0"));
        assert_eq!(picked(&upgrades, &b).as_deref(), Some("0.2.0"));
        // A later fleet-wide upgrade wins over the older narrower one.
        let later = vec![
            upgrade(&[("site", "a")], "0.3.0", 2),
            upgrade(&[], "0.2.0", 3),
        ];
        assert_eq!(picked(&later, &a).as_deref(), Some("0.2.0"));
        assert_eq!(picked(&[upgrade(&[("site", "c")], "0.3.0", 2)], &a), None);
    }

    #[test]
    fn a_target_names_the_release_of_the_version_given_for_the_nodes_architecture() {
        let mut fleet = fleet(vec![upgrade(&[], "0.3.0", 1)]);
        let none = BTreeMap::new();
        let no_labels = BTreeMap::new();
        assert_eq!(
            target_of(&fleet, &none, "a", &no_labels, "aarch64"),
            Err(NoTarget::NotPicked),
            "picked, but not given yet"
        );
        let given = BTreeMap::from([(
            "a".to_string(),
            finished(&version("0.3.0"), AgentOutcome::Updating, 5),
        )]);
        let t = target_of(&fleet, &given, "a", &no_labels, "arm64").expect("target");
        assert_eq!(t.release.version, version("0.3.0"));
        assert_eq!(t.release_keys, vec![PublicKey([3; 32])]);
        assert_eq!(t.source.to_string(), "https://hub.example:7440");
        assert!(matches!(
            target_of(&fleet, &given, "a", &no_labels, "x86_64"),
            Err(NoTarget::NoRelease { arch, .. }) if arch == "x86_64"
        ));
        fleet.trust = None;
        assert!(matches!(
            target_of(&fleet, &given, "a", &no_labels, "aarch64"),
            Err(NoTarget::NotReady(_))
        ));
        fleet.upgrades.clear();
        assert_eq!(
            target_of(&fleet, &given, "a", &no_labels, "aarch64"),
            Err(NoTarget::NotPicked),
            "cancelled: no target, whatever was given"
        );
    }

    #[test]
    fn the_version_to_undo_to_is_the_one_most_picked_nodes_run() {
        let a = labels(&[("site", "a")]);
        let b = labels(&[("site", "b")]);
        let nodes = [
            (&a, "0.1.0"),
            (&a, "0.1.0"),
            (&a, "0.2.0"),
            (&b, "0.0.9"),
            (&b, "0.0.9"),
            (&b, "0.0.9"),
            (&a, "not-a-version"),
        ];
        let to = version("0.3.0");
        assert_eq!(previous_version(&a, &to, nodes), Some(version("0.1.0")));
        assert_eq!(
            previous_version(&BTreeMap::new(), &to, nodes),
            Some(version("0.0.9"))
        );
        // A tie goes to the newer; the target itself does not count.
        let tie = [(&a, "0.1.0"), (&a, "0.2.0"), (&a, "0.3.0"), (&a, "0.3.0")];
        assert_eq!(previous_version(&a, &to, tie), Some(version("0.2.0")));
        assert_eq!(previous_version(&a, &to, [(&a, "0.3.0")]), None);
    }

    /// Rolls `fleet` over `nodes` at `now`, storing what it decided back into `fleet`.
    fn step(fleet: &mut AgentFleet, nodes: &[N], now: u64) -> AgentRolled {
        let rolled = roll(fleet, &views(nodes), now);
        fleet.assigned = rolled.assigned.clone();
        fleet.upgrades = rolled.upgrades.clone();
        rolled
    }

    fn given(fleet: &AgentFleet, to: &str) -> Vec<String> {
        fleet
            .assigned
            .iter()
            .filter(|(_, a)| a.version == version(to))
            .map(|(n, _)| n.clone())
            .collect()
    }

    fn proven(node: &mut N, to: &str) {
        node.running = to.into();
        node.status = None;
    }

    #[test]
    fn a_canary_goes_first_then_waves_of_max_unavailable_until_complete() {
        let mut fleet = fleet(vec![AgentUpgrade {
            strategy: Strategy {
                max_unavailable: Amount::Count(2),
                ..Strategy::default()
            },
            ..upgrade(&[], "0.3.0", 1)
        }]);
        let mut nodes: Vec<N> = ["a", "b", "c", "d", "e"]
            .iter()
            .map(|name| n(name, "0.2.0"))
            .collect();
        // One canary alone, by name.
        step(&mut fleet, &nodes, 10);
        assert_eq!(given(&fleet, "0.3.0"), ["a"]);
        // Downloading and on probation: still updating, nobody else is given it.
        nodes[0].status = Some(status(
            Some(AgentUpdateState::Downloading {
                received: 10,
                size: 100,
            }),
            "0.3.0",
        ));
        step(&mut fleet, &nodes, 20);
        nodes[0].running = "0.3.0".into();
        nodes[0].status = Some(status(Some(AgentUpdateState::Switching), "0.3.0"));
        step(&mut fleet, &nodes, 30);
        assert_eq!(given(&fleet, "0.3.0"), ["a"]);
        assert_eq!(
            progress(&fleet, fleet.upgrades.first(), &nodes[1].view()),
            Progress::Queued("its wave has not come yet".into())
        );
        // Proven: the waves start, two at a time.
        proven(&mut nodes[0], "0.3.0");
        step(&mut fleet, &nodes, 40);
        assert_eq!(given(&fleet, "0.3.0"), ["a", "b", "c"]);
        assert_eq!(fleet.assigned["a"].outcome, AgentOutcome::Done);
        proven(&mut nodes[1], "0.3.0");
        step(&mut fleet, &nodes, 50);
        assert_eq!(given(&fleet, "0.3.0"), ["a", "b", "c", "d"]);
        for node in &mut nodes[2..] {
            proven(node, "0.3.0");
        }
        step(&mut fleet, &nodes, 60);
        step(&mut fleet, &nodes, 70);
        assert_eq!(fleet.upgrades[0].rollout.state, State::Complete);
        assert_eq!(given(&fleet, "0.3.0").len(), 5);
        // A node that joins later gets it directly.
        nodes.push(n("f", "0.2.0"));
        step(&mut fleet, &nodes, 80);
        assert!(given(&fleet, "0.3.0").contains(&"f".to_string()));
        // Settled: the same fleet decides the same again.
        let again = roll(&fleet, &views(&nodes), 90);
        assert_eq!(again.assigned, fleet.assigned);
        assert_eq!(again.upgrades, fleet.upgrades);
    }

    #[test]
    fn a_failed_canary_halts_the_rollout_and_nobody_else_is_given_the_version() {
        let mut fleet = fleet(vec![upgrade(&[], "0.3.0", 1)]);
        let mut nodes: Vec<N> = ["a", "b", "c"].iter().map(|x| n(x, "0.2.0")).collect();
        step(&mut fleet, &nodes, 10);
        nodes[0].status = Some(status(
            Some(AgentUpdateState::Failed {
                reason: "the new agent exited at start".into(),
            }),
            "0.3.0",
        ));
        step(&mut fleet, &nodes, 20);
        assert_eq!(fleet.upgrades[0].rollout.state, State::Halted { failed: 1 });
        assert_eq!(given(&fleet, "0.3.0"), ["a"]);
        assert_eq!(
            progress(&fleet, fleet.upgrades.first(), &nodes[0].view()),
            Progress::Failed("the new agent exited at start".into())
        );
        assert_eq!(
            progress(&fleet, fleet.upgrades.first(), &nodes[1].view()),
            Progress::Queued("the rollout halted after 1 failed node(s)".into())
        );
        step(&mut fleet, &nodes, 30_000);
        assert_eq!(given(&fleet, "0.3.0"), ["a"], "halted stays halted");
    }

    #[test]
    fn a_node_silent_past_the_deadline_fails_and_an_offline_one_is_deferred() {
        let mut fleet = fleet(vec![AgentUpgrade {
            strategy: Strategy {
                canary: Amount::Count(0),
                max_unavailable: Amount::Percent(100),
                failure_threshold: Amount::Count(2),
                progress_deadline_ms: 1_000,
            },
            ..upgrade(&[], "0.3.0", 1)
        }]);
        let mut nodes: Vec<N> = ["a", "b"].iter().map(|x| n(x, "0.2.0")).collect();
        nodes[1].online = false;
        let rolled = step(&mut fleet, &nodes, 10);
        assert_eq!(given(&fleet, "0.3.0"), ["a"], "b is offline: deferred");
        assert_eq!(rolled.wake_ms, Some(1_010), "the deadline wakes a pass");
        assert_eq!(
            progress(&fleet, fleet.upgrades.first(), &nodes[1].view()),
            Progress::Queued("offline: it gets the version when it is back".into())
        );
        step(&mut fleet, &nodes, 1_010);
        assert!(matches!(
            &fleet.assigned["a"].outcome,
            AgentOutcome::Failed(why) if why.contains("within 1s")
        ));
        // One failure of a threshold of two: the rollout goes on, and is complete with b
        // offline; b gets the version when it is back.
        assert_eq!(fleet.upgrades[0].rollout.state, State::Complete);
        nodes[1].online = true;
        step(&mut fleet, &nodes, 2_000);
        assert_eq!(given(&fleet, "0.3.0"), ["a", "b"]);
    }

    #[test]
    fn paused_gives_no_one_new_immediate_gives_everyone_and_blocked_nodes_take_no_part() {
        let mut paused = upgrade(&[], "0.3.0", 1);
        paused.rollout.paused = true;
        let mut fleet = fleet(vec![paused]);
        let mut nodes: Vec<N> = ["a", "b", "c"].iter().map(|x| n(x, "0.2.0")).collect();
        // c is of an architecture with no release, d's agent reads version 2 only.
        nodes[2].arch = "x86_64";
        let mut d = n("d", "0.1.0");
        d.reads_v3 = false;
        nodes.push(d);
        step(&mut fleet, &nodes, 10);
        assert!(given(&fleet, "0.3.0").is_empty());
        assert_eq!(
            progress(&fleet, fleet.upgrades.first(), &nodes[0].view()),
            Progress::Queued("the rollout is paused".into())
        );
        fleet.upgrades[0].rollout.paused = false;
        fleet.upgrades[0].rollout.immediate = true;
        step(&mut fleet, &nodes, 20);
        assert_eq!(given(&fleet, "0.3.0"), ["a", "b"]);
        assert_eq!(
            progress(&fleet, fleet.upgrades.first(), &nodes[2].view()).as_str(),
            "blocked"
        );
        assert!(progress(&fleet, fleet.upgrades.first(), &nodes[3].view())
            .detail()
            .is_some_and(|d| d.contains("cannot update itself")));
    }

    #[test]
    fn progress_follows_the_running_version_what_was_given_and_what_the_node_reports() {
        let mut fleet = fleet(vec![upgrade(&[], "0.3.0", 1)]);
        let up = fleet.upgrades.first().cloned();
        let p = |fleet: &AgentFleet, node: &N| progress(fleet, up.as_ref(), &node.view());
        assert_eq!(
            progress(&fleet, None, &n("a", "0.1.0").view()),
            Progress::None
        );
        assert_eq!(p(&fleet, &n("a", "0.3.0")), Progress::Updated);
        let mut probation = n("a", "0.3.0");
        probation.status = Some(status(Some(AgentUpdateState::Switching), "0.3.0"));
        assert_eq!(p(&fleet, &probation), Progress::Switching);
        fleet.assigned.insert(
            "a".into(),
            finished(&version("0.3.0"), AgentOutcome::Updating, 1),
        );
        assert_eq!(p(&fleet, &n("a", "0.2.0")), Progress::Waiting);
        let mut downloading = n("a", "0.2.0");
        downloading.status = Some(status(
            Some(AgentUpdateState::Downloading {
                received: 5,
                size: 100,
            }),
            "0.3.0",
        ));
        assert_eq!(
            p(&fleet, &downloading).detail(),
            Some("5 of 100 bytes".to_string())
        );
        // A report about another version is not about this upgrade.
        let mut other = n("a", "0.2.0");
        other.status = Some(status(
            Some(AgentUpdateState::Failed {
                reason: "it did not come up".into(),
            }),
            "0.2.5",
        ));
        assert_eq!(p(&fleet, &other), Progress::Waiting);
    }
}
