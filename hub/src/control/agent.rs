//! Agent upgrades: which agent each node should run (`shoal agent upgrade --to V [-l SEL]`),
//! named in its desired state, and where each node is with it. Pure.
//!
//! # Rules
//!
//! - **Which upgrade**: the newest upgrade whose selector the node's labels (the hub's laid
//!   over the agent's) all match; an empty selector matches every node. A newer upgrade of a
//!   wider selector therefore wins over an older one of a narrower selector, as the last
//!   command an operator typed should.
//! - **Which release**: the upgrade's version for the node's architecture (from its facts).
//!   A node of an architecture the version was not released for gets no target, and
//!   [`progress`] says so.
//! - **Who gets a target**: a node whose agent reads wire version 3 (older agents cannot
//!   update themselves), when the hub has release keys and knows the URL its API is reached
//!   at. The target stays in the node's desired state once the node runs the version, so the
//!   node's generation does not change again for it.
//! - **Progress** ([`progress`]): the node runs the version and its launcher has kept it
//!   (`updated`); or it reports how far it got (`downloading`, `switching` until the new
//!   agent is proven, `failed` with its reason); or it is waiting for its desired state to
//!   reach it.

use std::collections::BTreeMap;

use shoal_model::elf::Arch;
use shoal_model::endpoint::ApiUrl;
use shoal_model::release::{AgentTarget, Version};
use shoal_model::wire::signing::PublicKey;
use shoal_model::wire::{AgentUpdateState, NodeStatus};

use crate::store::StoredRelease;

/// One `shoal agent upgrade`: the nodes it picks, and the version they should run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentUpgrade {
    /// Labels a node must all have; empty: every node.
    pub selector: BTreeMap<String, String>,
    pub version: Version,
    pub created_ms: u64,
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
    /// Newest first (any order is sorted here).
    pub upgrades: Vec<AgentUpgrade>,
    pub releases: Vec<StoredRelease>,
    pub trust: Option<ReleaseTrust>,
    /// The hub's API as nodes reach it: where they download binaries.
    pub source: Option<ApiUrl>,
}

/// The upgrade that decides for a node with `labels`: the newest whose selector matches.
pub fn upgrade_for<'a>(
    upgrades: &'a [AgentUpgrade],
    labels: &BTreeMap<String, String>,
) -> Option<&'a AgentUpgrade> {
    upgrades
        .iter()
        .filter(|u| u.selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .max_by(|a, b| {
            a.created_ms
                .cmp(&b.created_ms)
                // Same instant: the narrower selector, then by text, so the pick is total.
                .then(a.selector.len().cmp(&b.selector.len()))
                .then(b.selector.cmp(&a.selector))
        })
}

/// Why a node picked by an upgrade gets no target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NoTarget {
    /// No upgrade picks the node.
    NotPicked,
    /// The version has no release for the node's architecture.
    NoRelease { version: Version, arch: String },
    /// The hub has no release key, or does not know where nodes reach its API.
    NotReady(&'static str),
}

/// The agent target of a node with `labels` and architecture `arch` (as its facts say it).
pub fn target(
    fleet: &AgentFleet,
    labels: &BTreeMap<String, String>,
    arch: &str,
) -> Result<AgentTarget, NoTarget> {
    let upgrade = upgrade_for(&fleet.upgrades, labels).ok_or(NoTarget::NotPicked)?;
    let no_release = || NoTarget::NoRelease {
        version: upgrade.version.clone(),
        arch: arch.to_string(),
    };
    let arch = Arch::parse(arch).map_err(|_| no_release())?;
    let stored = fleet
        .releases
        .iter()
        .find(|r| r.release.version == upgrade.version && r.release.arch == arch)
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

/// Where one node is with the agent upgrade that picks it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Progress {
    /// No upgrade picks it.
    None,
    /// It runs the version.
    Updated,
    /// It cannot get it: no release for its architecture, or its agent cannot update itself.
    Blocked(String),
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
            Progress::Waiting => "waiting",
            Progress::Downloading { .. } => "downloading",
            Progress::Switching => "switching",
            Progress::Failed(_) => "failed",
        }
    }

    /// What to say beside the state, if anything.
    pub fn detail(&self) -> Option<String> {
        match self {
            Progress::Blocked(why) | Progress::Failed(why) => Some(why.clone()),
            Progress::Downloading { received, size } => Some(format!("{received} of {size} bytes")),
            _ => None,
        }
    }
}

/// Where a node is with `upgrade`: from the version its agent runs, the wire versions it
/// reads, its architecture, and its newest status.
pub fn progress(
    fleet: &AgentFleet,
    upgrade: Option<&AgentUpgrade>,
    running: &str,
    reads_v3: bool,
    arch: &str,
    status: Option<&NodeStatus>,
) -> Progress {
    let Some(upgrade) = upgrade else {
        return Progress::None;
    };
    let version = upgrade.version.to_string();
    let reported = status
        .and_then(|s| s.agent_update.as_ref())
        .filter(|u| u.version == version)
        .map(|u| &u.state);
    if Version::parse(running).is_ok_and(|v| v == upgrade.version) {
        // Running it, but on probation until its launcher has judged it.
        return if reported == Some(&AgentUpdateState::Switching) {
            Progress::Switching
        } else {
            Progress::Updated
        };
    }
    if !reads_v3 {
        return Progress::Blocked(format!(
            "agent {running} cannot update itself: install {} by hand (or flash it)",
            upgrade.version
        ));
    }
    let released = Arch::parse(arch).is_ok_and(|arch| {
        fleet
            .releases
            .iter()
            .any(|r| r.release.version == upgrade.version && r.release.arch == arch)
    });
    if !released {
        return Progress::Blocked(format!(
            "agent {} has no release for {arch}: `shoal agent-release add FILE --version {}`",
            upgrade.version, upgrade.version
        ));
    }
    match reported {
        Some(AgentUpdateState::Downloading { received, size }) => Progress::Downloading {
            received: *received,
            size: *size,
        },
        Some(AgentUpdateState::Switching) => Progress::Switching,
        Some(AgentUpdateState::Failed { reason }) => Progress::Failed(reason.clone()),
        None => Progress::Waiting,
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

    fn upgrade(selector: &[(&str, &str)], version: &str, at: u64) -> AgentUpgrade {
        AgentUpgrade {
            selector: labels(selector),
            version: Version::parse(version).expect("version"),
            created_ms: at,
        }
    }

    fn release(version: &str, arch: Arch) -> StoredRelease {
        StoredRelease {
            release: AgentRelease {
                version: Version::parse(version).expect("version"),
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
        }
    }

    #[test]
    fn the_newest_upgrade_that_matches_a_node_decides_its_target() {
        let fleet = fleet(vec![
            upgrade(&[], "0.2.0", 1),
            upgrade(&[("site", "a")], "0.3.0", 2),
        ]);
        let a = labels(&[("site", "a")]);
        let b = labels(&[("site", "b")]);
        let got = |l: &BTreeMap<String, String>| {
            target(&fleet, l, "aarch64").map(|t| t.release.version.to_string())
        };
        assert_eq!(got(&a), Ok("0.3.0".to_string()));
        assert_eq!(got(&b), Ok("0.2.0".to_string()));
        // A later fleet-wide upgrade wins over the older narrower one.
        let later = AgentFleet {
            upgrades: vec![
                upgrade(&[("site", "a")], "0.3.0", 2),
                upgrade(&[], "0.2.0", 3),
            ],
            ..fleet.clone()
        };
        assert_eq!(
            target(&later, &a, "arm64").map(|t| t.release.version.to_string()),
            Ok("0.2.0".to_string())
        );
        let none = AgentFleet {
            upgrades: vec![upgrade(&[("site", "c")], "0.3.0", 2)],
            ..fleet.clone()
        };
        assert_eq!(target(&none, &a, "aarch64"), Err(NoTarget::NotPicked));
        assert!(matches!(
            target(&fleet, &a, "x86_64"),
            Err(NoTarget::NoRelease { arch, .. }) if arch == "x86_64"
        ));
        let keyless = AgentFleet {
            trust: None,
            ..fleet.clone()
        };
        assert!(matches!(
            target(&keyless, &a, "aarch64"),
            Err(NoTarget::NotReady(_))
        ));
        let t = target(&fleet, &a, "aarch64").expect("target");
        assert_eq!(t.release_keys, vec![PublicKey([3; 32])]);
        assert_eq!(t.source.to_string(), "https://hub.example:7440");
    }

    #[test]
    fn progress_follows_the_running_version_and_what_the_node_reports() {
        let fleet = fleet(vec![upgrade(&[], "0.3.0", 1)]);
        let up = fleet.upgrades.first();
        let status = |state: Option<AgentUpdateState>| NodeStatus {
            node_id: "n".into(),
            observed_generation: 1,
            sequence: 1,
            sent_at_ms: 0,
            workloads: Vec::new(),
            usage: Default::default(),
            events: Vec::new(),
            dropped_events: 0,
            agent_update: state.map(|state| AgentUpdate {
                version: "0.3.0".into(),
                state,
            }),
        };
        let p = |running: &str, v3: bool, arch: &str, s: Option<&NodeStatus>| {
            progress(&fleet, up, running, v3, arch, s)
        };
        assert_eq!(
            progress(&fleet, None, "0.1.0", true, "aarch64", None),
            Progress::None
        );
        assert_eq!(p("0.3.0", true, "aarch64", None), Progress::Updated);
        let probation = status(Some(AgentUpdateState::Switching));
        assert_eq!(
            p("0.3.0", true, "aarch64", Some(&probation)),
            Progress::Switching
        );
        assert_eq!(p("0.1.0", false, "aarch64", None).as_str(), "blocked");
        assert!(p("0.2.0", true, "armv7", None)
            .detail()
            .is_some_and(|d| d.contains("no release for armv7")));
        assert_eq!(p("0.2.0", true, "aarch64", None), Progress::Waiting);
        let downloading = status(Some(AgentUpdateState::Downloading {
            received: 5,
            size: 100,
        }));
        assert_eq!(
            p("0.2.0", true, "aarch64", Some(&downloading)).detail(),
            Some("5 of 100 bytes".to_string())
        );
        let failed = status(Some(AgentUpdateState::Failed {
            reason: "it did not come up".into(),
        }));
        assert_eq!(
            p("0.2.0", true, "aarch64", Some(&failed)),
            Progress::Failed("it did not come up".into())
        );
        // A report about another version is not about this upgrade.
        let mut other = failed.clone();
        if let Some(u) = other.agent_update.as_mut() {
            u.version = "0.2.5".into();
        }
        assert_eq!(p("0.2.0", true, "aarch64", Some(&other)), Progress::Waiting);
    }
}
