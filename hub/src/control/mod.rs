//! The hub's decisions as one pure function: [`decide`]`(&Fleet, now) -> Plan`. Where every
//! workload runs, what each node is sent and with which generation, and when the next signing
//! key takes over, each with a structured reason ([`plan`]).
//!
//! `server/controller.rs` is its shell: it reads a [`Fleet`] from the store in one
//! transaction, calls [`decide`], signs the new desired states, stores the [`Plan`] in one
//! transaction, and publishes. Everything that needs a rule lives here, so a rollout, a
//! dashboard or a simulator of ten thousand nodes can run the same decisions without a broker
//! or a database.
//!
//! **Invariants.** No IO, no clock (the time is the `now_ms` argument), no logging. The order
//! of the fleet's lists does not matter. Deciding again on the fleet a plan leaves behind (its
//! placement, desired states and promotion stored, what it publishes retained) moves nothing:
//! the controller runs on every change, report and tick, and a settled fleet costs no writes
//! and no messages.
//!
//! # Rules
//!
//! **Placement** is [`scheduler::schedule`] over every stored workload and node (the hub's
//! labels laid over the agent's), from the stored placement; its rules are in `scheduler`.
//!
//! **Desired states.** Every registered node, enrolled or not, has one: the workloads placed on
//! it ([`desired::per_node`]) and the keys the hub announces. A node gets a new one, at the
//! generation after its published one (1 for its first), exactly when the digest of that list
//! and those keys differs from the published digest ([`desired::digest`]): a generation only
//! grows, and grows only when what the node should run or trust changed, or when the node can
//! no longer read the one published (below).
//!
//! **Wire versions.** Each new desired state is written in the newest wire version the node's
//! agent reads ([`wire::version_for`] its announced `wire_versions`; release 0.1.0 announced
//! none and reads version 2). A node that starts reading a newer version keeps its published
//! state until something changes: nothing is republished for an upgrade. A node that no longer
//! reads the version its state was published in (its agent went back to an older release) gets
//! the same state again at the next generation in a version it reads
//! ([`DesiredReason::Rewritten`]): same workloads, so it restarts nothing. A node that reads
//! none of the versions this hub writes gets nothing ([`Unreadable`]) until the hub is upgraded.
//!
//! **What the broker retains.** When the shell knows what the broker retains
//! ([`Fleet::retained`], the first pass after the hub starts), a node whose published
//! generation the broker does not hold is published again as stored: same generation, same
//! bytes, so its agent restarts nothing.
//!
//! **Keys.** The active key signs; during a rotation the next key is announced beside it. A
//! node *has* the keys when its published desired state announces them and its newest status
//! reports at least that generation. Once every enrolled node has both, the next key is
//! promoted in the same pass: it signs this pass's desired states, which announce it alone
//! (every node trusts it already). With no enrolled node the promotion is immediate; a node
//! that never reports holds the rotation until `shoal key rotate --finish`. With no active
//! key nothing is signed, so no desired state is issued.

pub mod agent;
pub mod plan;
pub mod rollout;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use shoal_model::node::NodeFacts;
use shoal_model::wire::{self, NodeStatus};

use crate::desired;
use crate::scheduler::{self, NodeView, Placement};
use crate::store::{
    Assignments, KeyState, Published, Revisions, Snapshot, StoredKey, StoredNode, StoredWorkload,
};
use rollout::Rollout;

pub use plan::{DesiredReason, KeyPlan, NodePlan, Plan, Republish, Rotation, Unreadable};

/// What decisions read: the stored fleet, and what the broker retains when that is known.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fleet {
    /// Every workload at its current revision.
    pub workloads: Vec<StoredWorkload>,
    /// Every registered node: facts, hub labels, presence, cordon, enrollment.
    pub nodes: Vec<StoredNode>,
    /// The stored placement (the previous decision).
    pub placement: Placement,
    /// The desired state last published per node.
    pub published: BTreeMap<String, Published>,
    /// The newest status per node that reported one.
    pub statuses: BTreeMap<String, NodeStatus>,
    /// The hub's signing keys (their private halves are not used here).
    pub keys: Vec<StoredKey>,
    /// The generation of the desired state the broker retains per node (absent: none), when
    /// known; `None`: not compared.
    pub retained: Option<BTreeMap<String, u64>>,
    /// What each node was given of each workload.
    pub assigned: Assignments,
    /// Every workload's rollout.
    pub rollouts: BTreeMap<String, Rollout>,
    /// The specs of older revisions that nodes run or a rollout would go back to.
    pub revisions: Revisions,
    /// Agent upgrades, releases and release keys; the shell sets where nodes download from.
    pub agent: agent::AgentFleet,
}

impl Fleet {
    pub fn new(snapshot: Snapshot, retained: Option<BTreeMap<String, u64>>) -> Fleet {
        let Snapshot {
            workloads,
            nodes,
            placement,
            published,
            statuses,
            keys,
            assigned,
            rollouts,
            revisions,
            agent,
        } = snapshot;
        Fleet {
            agent,
            workloads,
            nodes,
            placement,
            published,
            statuses,
            keys,
            retained,
            assigned,
            rollouts,
            revisions,
        }
    }

    /// The nodes by name (the first of a name wins).
    fn nodes_by_name(&self) -> BTreeMap<&str, &StoredNode> {
        let mut nodes = BTreeMap::new();
        for node in &self.nodes {
            nodes.entry(node.name.as_str()).or_insert(node);
        }
        nodes
    }
}

/// Decides everything for one pass. See the module documentation for the rules.
pub fn decide(fleet: &Fleet, now_ms: u64) -> Plan {
    let nodes = fleet.nodes_by_name();
    let views: Vec<NodeView> = nodes
        .values()
        .map(|n| NodeView {
            id: n.name.clone(),
            facts: n.effective_facts(),
            online: n.online,
            offline_since_ms: n.offline_since_ms,
            schedulable: n.schedulable,
        })
        .collect();
    let specs: Vec<_> = fleet.workloads.iter().map(|w| w.workload.clone()).collect();
    let placement = scheduler::schedule(&specs, &views, &fleet.placement, now_ms);
    let keys = KeyPlan::new(&fleet.keys, rotation(fleet));
    // With no key nothing is sent, so nobody is given anything: rollouts wait as they are.
    let rolled = if keys.signer.is_some() {
        roll(fleet, &placement.placement, &nodes, now_ms)
    } else {
        Rolled {
            assigned: fleet.assigned.clone(),
            rollouts: fleet.rollouts.clone(),
            wake_ms: None,
        }
    };
    let agent_facts: Vec<(&StoredNode, NodeFacts)> = if fleet.agent.upgrades.is_empty() {
        Vec::new()
    } else {
        nodes.values().map(|n| (*n, n.effective_facts())).collect()
    };
    let agent_nodes: Vec<agent::AgentNode<'_>> = agent_facts
        .iter()
        .map(|(n, facts)| agent::AgentNode {
            name: &n.name,
            labels: &facts.labels,
            arch: &facts.arch,
            running: &facts.agent_version,
            reads_v3: wire::version_for(n.wire_versions()).is_some_and(|v| v >= 3),
            online: n.online,
            last_seen_ms: n.last_seen_ms,
            status: fleet.statuses.get(&n.name),
        })
        .collect();
    // As for workloads: with no key nothing is sent, so nobody is given a version.
    let agent = if keys.signer.is_some() && !fleet.agent.upgrades.is_empty() {
        agent::roll(&fleet.agent, &agent_nodes, now_ms)
    } else {
        agent::AgentRolled {
            assigned: fleet.agent.assigned.clone(),
            upgrades: fleet.agent.upgrades.clone(),
            wake_ms: None,
        }
    };
    let mut plan = Plan {
        placement_changed: placement.placement != fleet.placement,
        placement,
        desired: Vec::new(),
        republish: Vec::new(),
        unreadable: Vec::new(),
        keys,
        rollouts_changed: rolled.assigned != fleet.assigned || rolled.rollouts != fleet.rollouts,
        assigned: rolled.assigned,
        rollouts: rolled.rollouts,
        wake_ms: earliest(rolled.wake_ms, agent.wake_ms),
        agent_changed: agent.assigned != fleet.agent.assigned
            || !same_upgrades(&agent.upgrades, &fleet.agent.upgrades),
        agent_assigned: agent.assigned,
        agent_upgrades: agent.upgrades,
    };
    if plan.keys.signer.is_none() {
        return plan;
    }
    let names: Vec<String> = nodes.keys().map(|n| (*n).to_string()).collect();
    let announced_ids: Vec<String> = plan
        .keys
        .announced
        .iter()
        .map(|k| k.id().to_string())
        .collect();
    let lists = desired::per_node_given(
        &fleet.workloads,
        &plan.placement.placement,
        &names,
        &plan.assigned,
        &fleet.revisions,
    );
    for (node, list) in lists {
        let previous = fleet.published.get(&node);
        let announced = nodes
            .get(node.as_str())
            .map(|n| n.wire_versions().to_vec())
            .unwrap_or_default();
        let Some(wire_version) = wire::version_for(&announced) else {
            plan.unreadable.push(Unreadable { node, announced });
            continue;
        };
        let reads = |version: u8| wire::read_by(&announced).contains(&version);
        // Version 2 has no agent target: an agent that reads only it is sent none.
        let target = nodes
            .get(node.as_str())
            .filter(|_| wire_version >= 3 && !fleet.agent.upgrades.is_empty())
            .and_then(|n| {
                let facts = n.effective_facts();
                agent::target_of(
                    &fleet.agent,
                    &plan.agent_assigned,
                    &n.name,
                    &facts.labels,
                    &facts.arch,
                )
                .ok()
            });
        let digest = desired::digest(&list, &plan.keys.announced, target.as_ref());
        let unchanged = previous.filter(|p| p.digest == digest);
        match (unchanged, previous) {
            (Some(published), _) if !reads(published.wire_version) => {
                let (state, digest) =
                    desired::after(&node, list, &plan.keys.announced, target, previous, digest);
                plan.desired.push(NodePlan {
                    state,
                    digest,
                    reason: DesiredReason::Rewritten {
                        previous: published.generation,
                        from: published.wire_version,
                        to: wire_version,
                    },
                    wire_version,
                });
            }
            (Some(published), _) => {
                let Some(retained) = &fleet.retained else {
                    continue;
                };
                let holds = retained.get(&node).copied().filter(|g| *g != 0);
                if holds != Some(published.generation) {
                    plan.republish.push(Republish {
                        node,
                        generation: published.generation,
                        retained: holds,
                    });
                }
            }
            (None, previous) => {
                let (state, digest) =
                    desired::after(&node, list, &plan.keys.announced, target, previous, digest);
                let reason = why_new(
                    &node,
                    previous,
                    &fleet.placement,
                    &plan.placement.placement,
                    &announced_ids,
                );
                plan.desired.push(NodePlan {
                    state,
                    digest,
                    reason,
                    wire_version,
                });
            }
        }
    }
    plan
}

/// The earlier of two optional instants.
fn earliest(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Whether two lists hold the same upgrades, in any order.
fn same_upgrades(a: &[agent::AgentUpgrade], b: &[agent::AgentUpgrade]) -> bool {
    let sorted = |list: &[agent::AgentUpgrade]| {
        let mut list = list.to_vec();
        list.sort_by(|x, y| x.selector.cmp(&y.selector));
        list
    };
    sorted(a) == sorted(b)
}

/// Every workload's rollout step.
struct Rolled {
    assigned: Assignments,
    rollouts: BTreeMap<String, Rollout>,
    wake_ms: Option<u64>,
}

fn roll(
    fleet: &Fleet,
    placement: &Placement,
    nodes: &BTreeMap<&str, &StoredNode>,
    now_ms: u64,
) -> Rolled {
    let online: BTreeSet<String> = nodes
        .values()
        .filter(|n| n.online)
        .map(|n| n.name.clone())
        .collect();
    let seen: BTreeMap<String, u64> = nodes
        .values()
        .filter_map(|n| Some((n.name.clone(), n.last_seen_ms?)))
        .collect();
    let none = BTreeMap::new();
    let mut rolled = Rolled {
        assigned: Assignments::new(),
        rollouts: BTreeMap::new(),
        wake_ms: None,
    };
    let mut workloads: Vec<&StoredWorkload> = fleet.workloads.iter().collect();
    workloads.sort_by(|a, b| a.workload.name.cmp(&b.workload.name));
    workloads.dedup_by(|a, b| a.workload.name == b.workload.name);
    for stored in workloads {
        let name = &stored.workload.name;
        let empty = BTreeSet::new();
        let targets = placement.get(name).unwrap_or(&empty);
        let reports: BTreeMap<String, &shoal_model::wire::WorkloadStatus> = targets
            .iter()
            .filter_map(|node| {
                let status = fleet.statuses.get(node)?;
                let report = status.workloads.iter().find(|w| &w.name == name)?;
                Some((node.clone(), report))
            })
            .collect();
        let step = rollout::step(rollout::Input {
            workload: &stored.workload,
            revision: stored.revision,
            targets,
            online: &online,
            seen: &seen,
            assigned: fleet.assigned.get(name).unwrap_or(&none),
            rollout: fleet.rollouts.get(name),
            reports: &reports,
            now_ms,
        });
        if !step.assigned.is_empty() {
            rolled.assigned.insert(name.clone(), step.assigned);
        }
        rolled.rollouts.insert(name.clone(), step.rollout);
        rolled.wake_ms = earliest(rolled.wake_ms, step.wake_ms);
    }
    rolled
}

/// Where a rotation stands: which enrolled nodes have the active and the next key.
pub fn rotation(fleet: &Fleet) -> Rotation {
    let with = |state: KeyState| {
        fleet
            .keys
            .iter()
            .filter(|k| k.state == state)
            .min_by(|a, b| a.id.cmp(&b.id))
    };
    let Some(next) = with(KeyState::Next) else {
        return Rotation::Idle;
    };
    let active = with(KeyState::Active);
    let ids: Vec<&str> = active
        .into_iter()
        .chain([next])
        .map(|k| k.id.as_str())
        .collect();
    let (mut confirmed, mut waiting) = (Vec::new(), Vec::new());
    for node in fleet.nodes_by_name().values().filter(|n| n.enrolled) {
        if has_keys(fleet, &node.name, &ids) {
            confirmed.push(node.name.clone());
        } else {
            waiting.push(node.name.clone());
        }
    }
    if waiting.is_empty() {
        Rotation::Promote {
            next: next.id.clone(),
            retired: active.map(|k| k.id.clone()),
            confirmed,
        }
    } else {
        Rotation::Waiting {
            next: next.id.clone(),
            confirmed,
            waiting,
        }
    }
}

/// Whether `node` has accepted a desired state announcing every key of `ids`: its published
/// state announces them and its newest status reports at least that generation.
fn has_keys(fleet: &Fleet, node: &str, ids: &[&str]) -> bool {
    fleet.published.get(node).is_some_and(|published| {
        ids.iter()
            .all(|id| published.signing_keys.iter().any(|k| k == id))
            && fleet
                .statuses
                .get(node)
                .is_some_and(|s| s.observed_generation >= published.generation)
    })
}

/// Why `node` gets a new desired state: its first, or what changed since `previous`.
fn why_new(
    node: &str,
    previous: Option<&Published>,
    before: &Placement,
    after: &Placement,
    announced: &[String],
) -> DesiredReason {
    let Some(previous) = previous else {
        return DesiredReason::First;
    };
    let on = |placement: &Placement| -> BTreeSet<String> {
        placement
            .iter()
            .filter(|(_, nodes)| nodes.contains(node))
            .map(|(w, _)| w.clone())
            .collect()
    };
    let (before, after) = (on(before), on(after));
    DesiredReason::Changed {
        previous: previous.generation,
        added: after.difference(&before).cloned().collect(),
        removed: before.difference(&after).cloned().collect(),
        keys: (previous.signing_keys != announced).then(|| announced.to_vec()),
    }
}
