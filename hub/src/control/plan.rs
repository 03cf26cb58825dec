//! What one pass decided, and why, as data. A dashboard, a metric or a rollout branches on
//! these enums; the `Display` impls are their wording for logs and the CLI, used at the edge.

use std::collections::BTreeMap;
use std::fmt;

use shoal_model::wire::signing::PublicKey;
use shoal_model::wire::{DesiredState, SUPPORTED_WIRE_VERSIONS};

use super::agent;
use super::rollout::Rollout;
use crate::scheduler::Decision;
use crate::store::{Assignments, KeyState, StoredKey};

/// Everything one pass decided: what to store, sign and publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Where every workload runs, with the scheduler's reasons for every workload and node.
    pub placement: Decision,
    /// Whether the placement differs from the stored one (then it is stored).
    pub placement_changed: bool,
    /// New desired states, in node order: to sign with [`KeyPlan::signer`], store, then publish.
    pub desired: Vec<NodePlan>,
    /// Stored desired states to publish again unchanged: the broker lost them.
    pub republish: Vec<Republish>,
    /// Nodes that read none of the wire versions this hub writes: they get nothing.
    pub unreadable: Vec<Unreadable>,
    pub keys: KeyPlan,
    /// What each node is given of each workload now (`control::rollout`).
    pub assigned: Assignments,
    /// Every workload's rollout now.
    pub rollouts: BTreeMap<String, Rollout>,
    /// Whether `assigned` or `rollouts` differ from the stored ones (then they are stored).
    pub rollouts_changed: bool,
    /// When the next pass is due with no report: a rollout gate opens, or a deadline passes.
    pub wake_ms: Option<u64>,
    /// What every node was given of the agent, after this pass's step of the agent upgrades.
    pub agent_assigned: BTreeMap<String, agent::AgentAssigned>,
    /// Every agent upgrade, with its rollout's state after this pass.
    pub agent_upgrades: Vec<agent::AgentUpgrade>,
    /// Whether either differs from what is stored.
    pub agent_changed: bool,
}

impl Plan {
    /// The next key to make active, when this pass promotes it.
    pub fn promote(&self) -> Option<&str> {
        match &self.keys.rotation {
            Rotation::Promote { next, .. } => Some(next),
            Rotation::Idle | Rotation::Waiting { .. } => None,
        }
    }

    /// Whether the plan changes nothing: no write, no message.
    pub fn is_settled(&self) -> bool {
        !self.placement_changed
            && !self.rollouts_changed
            && !self.agent_changed
            && self.desired.is_empty()
            && self.republish.is_empty()
            && self.promote().is_none()
    }
}

/// A new desired state for one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodePlan {
    pub state: DesiredState,
    /// Its digest, stored to tell whether the next one differs.
    pub digest: String,
    pub reason: DesiredReason,
    /// The wire version to write it in: the newest the node reads (`wire::version_for`).
    pub wire_version: u8,
}

/// A node whose agent announced only wire versions this hub does not write (an agent newer
/// than the hub by more than one version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unreadable {
    pub node: String,
    /// The versions its agent reads.
    pub announced: Vec<u8>,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |versions: &[u8]| {
            versions
                .iter()
                .map(u8::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        };
        write!(
            f,
            "node `{}` reads wire versions {} and this hub writes {}: nothing can be sent to it \
             until the hub is upgraded",
            self.node,
            list(&self.announced),
            list(SUPPORTED_WIRE_VERSIONS)
        )
    }
}

/// Why a node gets a new desired state.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DesiredReason {
    /// It has none yet.
    First,
    /// What it should run, or the keys it should trust, changed since generation `previous`.
    /// With nothing `added` or `removed` and the same keys, a workload it runs has a new
    /// revision, or the agent it should run changed (`shoal agent upgrade`).
    Changed {
        previous: u64,
        /// Workloads newly placed on it, by name.
        added: Vec<String>,
        /// Workloads no longer placed on it, by name.
        removed: Vec<String>,
        /// The ids of the keys announced now, when they differ from the published ones.
        keys: Option<Vec<String>>,
    },
    /// Nothing changed, but generation `previous` is in wire version `from`, which the node
    /// no longer reads (its agent went back to an older release): the same state again, in
    /// `to`.
    Rewritten { previous: u64, from: u8, to: u8 },
}

/// A stored desired state the broker does not retain as published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Republish {
    pub node: String,
    /// The stored (and republished) generation.
    pub generation: u64,
    /// The generation the broker holds instead; `None`: nothing.
    pub retained: Option<u64>,
}

/// Which key signs, which keys are announced, and where a rotation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPlan {
    /// The id of the key that signs this pass's desired states: the active key, or the next
    /// one when it is promoted. `None`: the hub has no active key, and nothing is signed.
    pub signer: Option<String>,
    /// What the desired states announce: the signer, then the next key during a rotation.
    pub announced: Vec<PublicKey>,
    pub rotation: Rotation,
}

impl KeyPlan {
    pub(super) fn new(keys: &[StoredKey], rotation: Rotation) -> KeyPlan {
        let with = |state: KeyState| {
            keys.iter()
                .filter(|k| k.state == state)
                .min_by(|a, b| a.id.cmp(&b.id))
        };
        let (active, next) = (with(KeyState::Active), with(KeyState::Next));
        let (signer, announced) = match (&rotation, active, next) {
            (Rotation::Promote { .. }, _, Some(next)) => (Some(next), vec![next]),
            (_, Some(active), next) => (
                Some(active),
                [Some(active), next].into_iter().flatten().collect(),
            ),
            (_, None, _) => (None, Vec::new()),
        };
        KeyPlan {
            signer: signer.map(|k| k.id.clone()),
            announced: announced.iter().map(|k| k.public).collect(),
            rotation,
        }
    }
}

/// Where a key rotation stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Rotation {
    /// No next key.
    #[default]
    Idle,
    /// Some enrolled nodes do not have the next key yet.
    Waiting {
        next: String,
        /// Enrolled nodes that have the active and the next key, by name.
        confirmed: Vec<String>,
        /// Enrolled nodes that do not yet, by name.
        waiting: Vec<String>,
    },
    /// Every enrolled node has the next key: it becomes active in this pass.
    Promote {
        next: String,
        /// The active key it replaces, if there was one.
        retired: Option<String>,
        confirmed: Vec<String>,
    },
}

/// Names, comma separated, at most `shown` of them and how many more.
fn names(names: &[String], shown: usize) -> String {
    let mut text = names
        .iter()
        .take(shown)
        .map(String::as_str)
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > shown {
        text.push_str(&format!(" and {} more", names.len() - shown));
    }
    text
}

impl fmt::Display for DesiredReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DesiredReason::First => f.write_str("its first desired state"),
            DesiredReason::Changed {
                previous,
                added,
                removed,
                keys,
            } => {
                write!(f, "changed since generation {previous}")?;
                let mut parts = Vec::new();
                if !added.is_empty() {
                    parts.push(format!("adds {}", names(added, 5)));
                }
                if !removed.is_empty() {
                    parts.push(format!("removes {}", names(removed, 5)));
                }
                if let Some(keys) = keys {
                    parts.push(format!("announces keys {}", names(keys, 5)));
                }
                if parts.is_empty() {
                    parts.push(
                        "a workload it runs has a new revision, or the agent it should run changed"
                            .into(),
                    );
                }
                write!(f, ": {}", parts.join("; "))
            }
            DesiredReason::Rewritten { previous, from, to } => write!(
                f,
                "generation {previous} is in wire version {from}, which the node no longer reads: \
                 the same state in version {to}"
            ),
        }
    }
}

impl fmt::Display for Republish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.retained {
            None => write!(
                f,
                "the broker lost generation {} of node {}'s desired state",
                self.generation, self.node
            ),
            Some(held) => write!(
                f,
                "the broker holds generation {held} of node {}'s desired state, not {}",
                self.node, self.generation
            ),
        }
    }
}

impl fmt::Display for Rotation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rotation::Idle => f.write_str("no key rotation under way"),
            Rotation::Waiting { next, waiting, .. } => write!(
                f,
                "the rotation to key {next} waits for {} to accept it: {}",
                if waiting.len() == 1 {
                    "1 node".to_string()
                } else {
                    format!("{} nodes", waiting.len())
                },
                names(waiting, 5)
            ),
            Rotation::Promote {
                next,
                retired: Some(retired),
                ..
            } => write!(
                f,
                "every enrolled node has the next signing key {next}: it signs from now on, and {retired} is retired"
            ),
            Rotation::Promote {
                next,
                retired: None,
                ..
            } => write!(
                f,
                "every enrolled node has the next signing key {next}: it signs from now on"
            ),
        }
    }
}
