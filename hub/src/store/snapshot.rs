//! The controller's two store calls: everything a decision reads, in one read transaction,
//! and everything a decision writes, in one write transaction. Every table is read once per
//! snapshot (no query per node), so a pass costs the same few queries for ten nodes or ten
//! thousand.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, TransactionBehavior};
use shoal_model::wire::NodeStatus;

use super::rollouts::{self, Assignments, Revisions};
use super::{
    query, security, to_i64, to_u64, NodeDesired, Published, Store, StoreError, StoredKey,
    StoredNode, StoredWorkload,
};
use super::{releases, upgrades};
use crate::control::agent::{AgentAssigned, AgentFleet, AgentUpgrade};
use crate::control::rollout::Rollout;
use crate::scheduler::Placement;

/// What the store holds that decisions depend on, read in one transaction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub workloads: Vec<StoredWorkload>,
    pub nodes: Vec<StoredNode>,
    pub placement: Placement,
    /// The desired state last published per node, without its payload.
    pub published: BTreeMap<String, Published>,
    /// The newest status per node that reported one (without its events).
    pub statuses: BTreeMap<String, NodeStatus>,
    pub keys: Vec<StoredKey>,
    /// What each node was given of each workload.
    pub assigned: Assignments,
    /// Every workload's rollout.
    pub rollouts: BTreeMap<String, Rollout>,
    /// The specs of older revisions that nodes run or a rollout would go back to.
    pub revisions: Revisions,
    /// Agent upgrades, releases and the release keys' endorsements (no download source:
    /// that is the hub's configuration, set by the controller).
    pub agent: AgentFleet,
}

/// What one pass of the controller stores, in one transaction.
#[derive(Clone, Copy, Debug)]
pub struct PlanWrite<'a> {
    /// The placement the pass read, and the one it decided: only the difference is written.
    pub placement: (&'a Placement, &'a Placement),
    /// New desired states, signed and encoded.
    pub desired: &'a [NodeDesired],
    /// The id of the next signing key, to make active.
    pub promote: Option<&'a str>,
    /// What each node was given, as read and as decided: only the difference is written.
    pub assigned: (&'a Assignments, &'a Assignments),
    /// The rollouts as read and as decided.
    pub rollouts: (&'a BTreeMap<String, Rollout>, &'a BTreeMap<String, Rollout>),
    /// The agent versions nodes were given, as read and as decided.
    pub agent_assigned: (
        &'a BTreeMap<String, AgentAssigned>,
        &'a BTreeMap<String, AgentAssigned>,
    ),
    /// The agent upgrades as read and as decided: their rollouts' changes are written.
    pub agent_upgrades: (&'a [AgentUpgrade], &'a [AgentUpgrade]),
}

impl Store {
    /// Reads everything a decision depends on, in one read transaction.
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let mut conn = self.conn();
        let failed = query("reading the fleet");
        let tx = conn.transaction().map_err(failed)?;
        let snapshot = Snapshot {
            workloads: Self::read_workloads(&tx, None)?,
            nodes: Self::read_nodes(&tx, None)?,
            placement: Self::read_placement(&tx)?,
            published: read_published(&tx)?,
            statuses: Self::read_statuses(&tx)?,
            keys: Self::read_signing_keys(&tx)?,
            assigned: rollouts::read_assigned(&tx)?,
            rollouts: rollouts::read_rollouts(&tx)?,
            revisions: rollouts::read_revisions(&tx)?,
            agent: Self::read_agent_fleet(&tx)?,
        };
        tx.commit().map_err(failed)?;
        Ok(snapshot)
    }

    /// Agent upgrades, and what a target needs (releases, signed endorsements) only when
    /// there is an upgrade: a fleet without one costs no signing per pass.
    fn read_agent_fleet(conn: &Connection) -> Result<AgentFleet, StoreError> {
        let upgrades = upgrades::read_upgrades(conn)?;
        if upgrades.is_empty() {
            return Ok(AgentFleet::default());
        }
        Ok(AgentFleet {
            upgrades,
            releases: releases::read_releases(conn)?,
            trust: releases::read_trust(conn)?,
            source: None,
            assigned: upgrades::read_assigned(conn)?,
        })
    }

    /// Stores one pass's decisions in one transaction: the placement's changes, the new
    /// desired states of nodes still registered (a node removed since the snapshot gets none),
    /// and the promotion of the next key if it is still next. Returns the nodes whose desired
    /// state was stored: only those are published.
    pub fn save_plan(
        &self,
        write: PlanWrite<'_>,
        now_ms: u64,
    ) -> Result<BTreeSet<String>, StoreError> {
        let mut conn = self.conn();
        let failed = query("saving the controller's decisions");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let (before, after) = write.placement;
        save_placement_changes(&tx, before, after)?;
        let mut saved = BTreeSet::new();
        {
            let mut statement = tx
                .prepare(
                    "INSERT OR REPLACE INTO node_desired (node, generation, digest, payload, updated_at, signing_keys) \
                     SELECT ?1, ?2, ?3, ?4, ?5, ?6 WHERE EXISTS (SELECT 1 FROM nodes WHERE name = ?1)",
                )
                .map_err(failed)?;
            for desired in write.desired {
                let written = statement
                    .execute(params![
                        desired.node,
                        to_i64(desired.generation),
                        desired.digest,
                        desired.payload,
                        to_i64(now_ms),
                        desired.signing_keys.join(",")
                    ])
                    .map_err(failed)?;
                if written > 0 {
                    saved.insert(desired.node.clone());
                }
            }
        }
        if let Some(next) = write.promote {
            security::promote(&tx, next, now_ms)?;
        }
        rollouts::save_assigned(&tx, write.assigned.0, write.assigned.1)?;
        rollouts::save_rollouts(&tx, write.rollouts.0, write.rollouts.1)?;
        upgrades::save(&tx, write.agent_assigned, write.agent_upgrades)?;
        tx.commit().map_err(failed)?;
        Ok(saved)
    }
}

/// Every node's published desired state, without the payloads.
fn read_published(conn: &Connection) -> Result<BTreeMap<String, Published>, StoreError> {
    let failed = query("reading desired states");
    let mut statement = conn
        .prepare(
            "SELECT node, generation, digest, signing_keys, substr(payload, 1, 1) \
             FROM node_desired",
        )
        .map_err(failed)?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                Published {
                    generation: to_u64(row.get(1)?),
                    digest: row.get(2)?,
                    signing_keys: split_ids(&row.get::<_, String>(3)?),
                    // An empty payload (never stored) reads as version 0, which no node reads.
                    wire_version: row.get::<_, Vec<u8>>(4)?.first().copied().unwrap_or(0),
                },
            ))
        })
        .map_err(failed)?;
    rows.collect::<Result<_, _>>().map_err(failed)
}

/// The key ids of a `signing_keys` column (comma separated).
pub(super) fn split_ids(ids: &str) -> Vec<String> {
    ids.split(',')
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .collect()
}

/// Writes the rows of `after` missing from `before` and removes those gone: a settled fleet's
/// pass writes nothing, and a change writes only its own rows.
fn save_placement_changes(
    conn: &Connection,
    before: &Placement,
    after: &Placement,
) -> Result<(), StoreError> {
    if before == after {
        return Ok(());
    }
    let failed = query("saving the placement");
    let pairs = |p: &Placement| -> BTreeSet<(String, String)> {
        p.iter()
            .flat_map(|(w, nodes)| nodes.iter().map(move |n| (w.clone(), n.clone())))
            .collect()
    };
    let (before, after) = (pairs(before), pairs(after));
    let mut remove = conn
        .prepare("DELETE FROM placement WHERE workload = ?1 AND node = ?2")
        .map_err(failed)?;
    for (workload, node) in before.difference(&after) {
        remove.execute(params![workload, node]).map_err(failed)?;
    }
    let mut add = conn
        .prepare("INSERT OR IGNORE INTO placement (workload, node) VALUES (?1, ?2)")
        .map_err(failed)?;
    for (workload, node) in after.difference(&before) {
        add.execute(params![workload, node]).map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
