//! Agent upgrades and their rollouts (migration 0007): one upgrade per selector, with how it
//! is rolled out and where its rollout stands, and the agent version each node was given
//! (`control::agent` decides both; the controller stores what changed with the rest of its
//! plan).
//!
//! The controller writes only an upgrade's rollout columns, and only while the row is the
//! upgrade it read (same version, same creation time): an upgrade replaced, paused or undone
//! by the operator meanwhile is not overwritten by a pass that read the old one.

use std::collections::BTreeMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use shoal_model::quantity::Amount;
use shoal_model::release::{self, Version};

use super::{labels_of, labels_text, query, to_i64, to_u64, Store, StoreError};
use crate::control::agent::{
    previous_version, AgentAssigned, AgentOutcome, AgentUpgrade, Strategy, UpgradeRollout,
};
use crate::control::rollout::State;

/// Why an upgrade was not stored or changed. Every case leaves the store as it was.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error(
        "agent {version} is not released: add it first with `shoal agent-release add FILE \
         --version {version}` (one per architecture)"
    )]
    NotReleased { version: String },
    #[error("no agent upgrade for {0} (`shoal rollout status --agent` lists them)")]
    NoUpgrade(String),
    #[error(
        "the agent upgrade for {who} has no earlier version to go back to: its nodes ran \
         {version} already, or versions the hub does not know (`shoal agent upgrade --to V` \
         picks one)"
    )]
    NothingToUndo { who: String, version: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What `shoal agent upgrade` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpgradeRequest<'a> {
    pub selector: &'a BTreeMap<String, String>,
    pub version: &'a Version,
    pub strategy: Strategy,
    /// Every node at once, no canary, no waves.
    pub immediate: bool,
}

fn state_columns(state: State) -> (&'static str, i64) {
    match state {
        State::Progressing => ("progressing", 0),
        State::Complete => ("complete", 0),
        State::Halted { failed } | State::RolledBack { failed, .. } => {
            ("halted", i64::from(failed))
        }
    }
}

fn outcome_columns(outcome: &AgentOutcome) -> (&'static str, Option<&str>) {
    match outcome {
        AgentOutcome::Updating => ("updating", None),
        AgentOutcome::Done => ("done", None),
        AgentOutcome::Failed(why) => ("failed", Some(why)),
    }
}

fn undecodable(what: &'static str, reason: impl ToString) -> StoreError {
    StoreError::Decode {
        what,
        reason: reason.to_string(),
    }
}

impl Store {
    /// Sets the agent version the nodes `request.selector` picks should run, replacing the
    /// upgrade of the same selector and starting its rollout. The version must be released,
    /// for some architecture. Records the version most of those nodes run now, where `undo`
    /// goes.
    pub fn set_agent_upgrade(
        &self,
        request: &UpgradeRequest<'_>,
        now_ms: u64,
    ) -> Result<(), UpgradeError> {
        let mut conn = self.conn();
        let failed = query("storing an agent upgrade");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let text = request.version.to_string();
        let released: i64 = tx
            .query_row(
                "SELECT count(*) FROM agent_releases WHERE version = ?1",
                [&text],
                |row| row.get(0),
            )
            .map_err(failed)?;
        if released == 0 {
            return Err(UpgradeError::NotReleased { version: text });
        }
        let nodes = Store::read_nodes(&tx, None)?;
        let facts: Vec<_> = nodes.iter().map(|n| n.effective_facts()).collect();
        let previous = previous_version(
            request.selector,
            request.version,
            facts.iter().map(|f| (&f.labels, f.agent_version.as_str())),
        );
        insert(&tx, request, previous.as_ref(), now_ms)?;
        tx.commit().map_err(failed)?;
        Ok(())
    }

    /// Removes the upgrade of exactly `selector`; whether there was one.
    pub fn cancel_agent_upgrade(
        &self,
        selector: &BTreeMap<String, String>,
    ) -> Result<bool, StoreError> {
        let removed = self
            .conn()
            .execute(
                "DELETE FROM agent_upgrades WHERE selector = ?1",
                [labels_text(selector)?],
            )
            .map_err(query("removing an agent upgrade"))?;
        Ok(removed > 0)
    }

    /// Pauses or resumes the upgrade of exactly `selector`. Returns whether that changed
    /// anything; `who` names the selector in the error.
    pub fn pause_agent_upgrade(
        &self,
        selector: &BTreeMap<String, String>,
        paused: bool,
        who: &str,
    ) -> Result<bool, UpgradeError> {
        let conn = self.conn();
        let failed = query("pausing an agent upgrade");
        let key = labels_text(selector)?;
        let current: Option<bool> = conn
            .query_row(
                "SELECT paused FROM agent_upgrades WHERE selector = ?1",
                [&key],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed)?;
        match current {
            None => Err(UpgradeError::NoUpgrade(who.to_string())),
            Some(p) if p == paused => Ok(false),
            Some(_) => {
                conn.execute(
                    "UPDATE agent_upgrades SET paused = ?2 WHERE selector = ?1",
                    params![key, paused],
                )
                .map_err(failed)?;
                Ok(true)
            }
        }
    }

    /// Undoes the upgrade of exactly `selector`: an upgrade of the same selector back to the
    /// version recorded when it was set, given to every node at once. Returns that version.
    pub fn undo_agent_upgrade(
        &self,
        selector: &BTreeMap<String, String>,
        who: &str,
        now_ms: u64,
    ) -> Result<Version, UpgradeError> {
        let mut conn = self.conn();
        let failed = query("undoing an agent upgrade");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let upgrade = read_upgrades(&tx)?
            .into_iter()
            .find(|u| &u.selector == selector)
            .ok_or_else(|| UpgradeError::NoUpgrade(who.to_string()))?;
        let Some(back) = upgrade.previous.clone() else {
            return Err(UpgradeError::NothingToUndo {
                who: who.to_string(),
                version: upgrade.version.to_string(),
            });
        };
        let released: i64 = tx
            .query_row(
                "SELECT count(*) FROM agent_releases WHERE version = ?1",
                [back.to_string()],
                |row| row.get(0),
            )
            .map_err(failed)?;
        if released == 0 {
            return Err(UpgradeError::NotReleased {
                version: back.to_string(),
            });
        }
        let request = UpgradeRequest {
            selector,
            version: &back,
            strategy: upgrade.strategy,
            immediate: true,
        };
        // Undoing the undo goes forward again.
        insert(&tx, &request, Some(&upgrade.version), now_ms)?;
        tx.commit().map_err(failed)?;
        Ok(back)
    }

    /// Every agent upgrade, newest first.
    pub fn agent_upgrades(&self) -> Result<Vec<AgentUpgrade>, StoreError> {
        read_upgrades(&self.conn())
    }

    /// The agent version each node was given.
    pub fn agent_assigned(&self) -> Result<BTreeMap<String, AgentAssigned>, StoreError> {
        read_assigned(&self.conn())
    }
}

fn insert(
    conn: &Connection,
    request: &UpgradeRequest<'_>,
    previous: Option<&Version>,
    now_ms: u64,
) -> Result<(), StoreError> {
    let s = request.strategy;
    conn.execute(
        "INSERT OR REPLACE INTO agent_upgrades \
         (selector, version, created_at, canary, max_unavailable, failure_threshold, \
          progress_deadline_ms, previous, state, failed, changed_ms, paused, immediate) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'progressing', 0, ?3, 0, ?9)",
        params![
            labels_text(request.selector)?,
            request.version.to_string(),
            to_i64(now_ms),
            s.canary.to_string(),
            s.max_unavailable.to_string(),
            s.failure_threshold.to_string(),
            to_i64(s.progress_deadline_ms.max(1)),
            previous.map(ToString::to_string),
            request.immediate
        ],
    )
    .map_err(query("storing an agent upgrade"))?;
    Ok(())
}

/// Every upgrade, newest first (then by selector, so the order is total).
pub(super) fn read_upgrades(conn: &Connection) -> Result<Vec<AgentUpgrade>, StoreError> {
    let failed = query("reading agent upgrades");
    let mut statement = conn
        .prepare(
            "SELECT selector, version, created_at, canary, max_unavailable, failure_threshold, \
                    progress_deadline_ms, previous, state, failed, changed_ms, paused, immediate \
             FROM agent_upgrades ORDER BY created_at DESC, selector",
        )
        .map_err(failed)?;
    let mut rows = statement.query([]).map_err(failed)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(failed)? {
        let text = |i: usize| row.get::<_, String>(i).map_err(failed);
        let number = |i: usize| row.get::<_, i64>(i).map_err(failed);
        let version = |t: &str| {
            release::parse_version(t).map_err(|e| undecodable("agent upgrade version", e))
        };
        let amount = |i: usize| -> Result<Amount, StoreError> {
            Amount::parse(&text(i)?).map_err(|e| undecodable("agent upgrade strategy", e))
        };
        let state = match text(8)?.as_str() {
            "progressing" => State::Progressing,
            "complete" => State::Complete,
            "halted" => State::Halted {
                failed: u32::try_from(number(9)?).unwrap_or(0),
            },
            other => return Err(undecodable("agent upgrade state", other)),
        };
        let previous = row.get::<_, Option<String>>(7).map_err(failed)?;
        out.push(AgentUpgrade {
            selector: labels_of(&text(0)?, "agent upgrade selector")?,
            version: version(&text(1)?)?,
            created_ms: to_u64(number(2)?),
            strategy: Strategy {
                canary: amount(3)?,
                max_unavailable: amount(4)?,
                failure_threshold: amount(5)?,
                progress_deadline_ms: to_u64(number(6)?),
            },
            previous: previous.as_deref().map(version).transpose()?,
            rollout: UpgradeRollout {
                state,
                changed_ms: to_u64(number(10)?),
                paused: number(11)? != 0,
                immediate: number(12)? != 0,
            },
        });
    }
    Ok(out)
}

/// What each node was given.
pub(super) fn read_assigned(
    conn: &Connection,
) -> Result<BTreeMap<String, AgentAssigned>, StoreError> {
    let failed = query("reading the agent versions nodes were given");
    let mut statement = conn
        .prepare("SELECT node, version, since_ms, outcome, reason, outcome_ms FROM agent_nodes")
        .map_err(failed)?;
    let mut rows = statement.query([]).map_err(failed)?;
    let mut out = BTreeMap::new();
    while let Some(row) = rows.next().map_err(failed)? {
        let node: String = row.get(0).map_err(failed)?;
        let version: String = row.get(1).map_err(failed)?;
        let outcome: String = row.get(3).map_err(failed)?;
        let reason: Option<String> = row.get(4).map_err(failed)?;
        let outcome = match outcome.as_str() {
            "updating" => AgentOutcome::Updating,
            "done" => AgentOutcome::Done,
            "failed" => AgentOutcome::Failed(reason.unwrap_or_default()),
            other => return Err(undecodable("agent node outcome", other)),
        };
        out.insert(
            node,
            AgentAssigned {
                version: release::parse_version(&version)
                    .map_err(|e| undecodable("agent node version", e))?,
                since_ms: to_u64(row.get(2).map_err(failed)?),
                outcome,
                outcome_ms: to_u64(row.get(5).map_err(failed)?),
            },
        );
    }
    Ok(out)
}

/// Writes what changed between `before` and `after`: the nodes' rows, and the rollout
/// columns of the upgrades still as they were read (see the module doc).
pub(super) fn save(
    conn: &Connection,
    assigned: (
        &BTreeMap<String, AgentAssigned>,
        &BTreeMap<String, AgentAssigned>,
    ),
    upgrades: (&[AgentUpgrade], &[AgentUpgrade]),
) -> Result<(), StoreError> {
    let failed = query("saving agent rollouts");
    let (before, after) = assigned;
    for gone in before.keys().filter(|n| !after.contains_key(*n)) {
        conn.execute("DELETE FROM agent_nodes WHERE node = ?1", [gone])
            .map_err(failed)?;
    }
    for (node, a) in after.iter().filter(|(n, a)| before.get(*n) != Some(a)) {
        let (outcome, reason) = outcome_columns(&a.outcome);
        conn.execute(
            "INSERT OR REPLACE INTO agent_nodes \
             (node, version, since_ms, outcome, reason, outcome_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                node,
                a.version.to_string(),
                to_i64(a.since_ms),
                outcome,
                reason,
                to_i64(a.outcome_ms)
            ],
        )
        .map_err(failed)?;
    }
    let (before, after) = upgrades;
    for u in after {
        let read = before.iter().find(|b| b.selector == u.selector);
        if read.map(|b| (b.rollout.state, b.rollout.changed_ms))
            == Some((u.rollout.state, u.rollout.changed_ms))
        {
            continue;
        }
        let (state, count) = state_columns(u.rollout.state);
        conn.execute(
            "UPDATE agent_upgrades SET state = ?4, failed = ?5, changed_ms = ?6 \
             WHERE selector = ?1 AND version = ?2 AND created_at = ?3",
            params![
                labels_text(&u.selector)?,
                u.version.to_string(),
                to_i64(u.created_ms),
                state,
                count,
                to_i64(u.rollout.changed_ms)
            ],
        )
        .map_err(failed)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::releases::tests::{elf, stored};
    use shoal_model::node::NodeFacts;

    fn v(text: &str) -> Version {
        release::parse_version(text).expect("version")
    }

    #[test]
    fn an_upgrade_keeps_its_strategy_and_rollout_and_undo_goes_back_to_what_nodes_ran() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        stored(&store, "0.2.0", &elf(183, 1)).expect("0.2.0");
        stored(&store, "0.3.0", &elf(183, 2)).expect("0.3.0");
        let site = BTreeMap::from([("site".to_string(), "a".to_string())]);
        for (name, running) in [("n1", "0.2.0"), ("n2", "0.2.0"), ("n3", "0.1.0")] {
            store.add_node(name, "h", &site, 1).expect("node");
            let facts = NodeFacts {
                agent_version: running.into(),
                ..NodeFacts::default()
            };
            store
                .record_presence(name, true, &facts, 2)
                .expect("presence");
        }
        let strategy = Strategy {
            canary: Amount::Percent(10),
            max_unavailable: Amount::Count(3),
            failure_threshold: Amount::Percent(20),
            progress_deadline_ms: 90_000,
        };
        let to = v("0.3.0");
        let request = UpgradeRequest {
            selector: &site,
            version: &to,
            strategy,
            immediate: false,
        };
        let unreleased = v("0.9.0");
        let refused = store
            .set_agent_upgrade(
                &UpgradeRequest {
                    version: &unreleased,
                    ..request.clone()
                },
                5,
            )
            .expect_err("not released");
        assert!(
            refused.to_string().contains("agent-release add"),
            "{refused}"
        );
        assert!(store.agent_upgrades().expect("read").is_empty());

        store.set_agent_upgrade(&request, 10).expect("set");
        let upgrades = store.agent_upgrades().expect("read");
        assert_eq!(upgrades.len(), 1);
        let u = &upgrades[0];
        assert_eq!((u.strategy, u.version.clone()), (strategy, to.clone()));
        assert_eq!(u.previous, Some(v("0.2.0")), "what most of its nodes run");
        assert_eq!(u.rollout, UpgradeRollout::start(10, false));

        // The controller's write: nodes given, the rollout halted.
        let mut after = u.clone();
        after.rollout.state = State::Halted { failed: 1 };
        after.rollout.changed_ms = 20;
        let given = BTreeMap::from([
            (
                "n1".to_string(),
                AgentAssigned {
                    version: to.clone(),
                    since_ms: 11,
                    outcome: AgentOutcome::Failed("it exited at start".into()),
                    outcome_ms: 19,
                },
            ),
            (
                "n2".to_string(),
                AgentAssigned {
                    version: to.clone(),
                    since_ms: 11,
                    outcome: AgentOutcome::Updating,
                    outcome_ms: 11,
                },
            ),
        ]);
        {
            let conn = store.conn();
            save(
                &conn,
                (&BTreeMap::new(), &given),
                (&upgrades, std::slice::from_ref(&after)),
            )
            .expect("save");
        }
        assert_eq!(store.agent_assigned().expect("assigned"), given);
        assert_eq!(store.agent_upgrades().expect("read")[0], after);

        // Paused by the operator meanwhile: a pass that read the upgrade before is not
        // written over it... and one of a replaced upgrade writes nothing.
        assert!(store
            .pause_agent_upgrade(&site, true, "site=a")
            .expect("pause"));
        assert!(!store
            .pause_agent_upgrade(&site, true, "site=a")
            .expect("again"));
        assert!(store.agent_upgrades().expect("read")[0].rollout.paused);
        let other = BTreeMap::from([("site".to_string(), "b".to_string())]);
        assert!(matches!(
            store.pause_agent_upgrade(&other, true, "site=b"),
            Err(UpgradeError::NoUpgrade(_))
        ));

        // Undo: back to 0.2.0 on every node at once; undoing that goes forward again.
        assert_eq!(
            store.undo_agent_upgrade(&site, "site=a", 30).expect("undo"),
            v("0.2.0")
        );
        let undone = &store.agent_upgrades().expect("read")[0];
        assert_eq!(undone.version, v("0.2.0"));
        assert_eq!(undone.previous, Some(to.clone()));
        assert_eq!(undone.rollout, UpgradeRollout::start(30, true));
        assert_eq!(undone.strategy, strategy);
        {
            let conn = store.conn();
            save(
                &conn,
                (&given, &given),
                (&upgrades, std::slice::from_ref(&after)),
            )
            .expect("a stale pass");
        }
        assert_eq!(
            store.agent_upgrades().expect("read")[0].rollout,
            UpgradeRollout::start(30, true),
            "a pass that read the replaced upgrade changes nothing"
        );
        assert_eq!(
            store.undo_agent_upgrade(&site, "site=a", 40).expect("redo"),
            to
        );
        assert!(store.cancel_agent_upgrade(&site).expect("cancel"));
        assert!(matches!(
            store.undo_agent_upgrade(&site, "site=a", 50),
            Err(UpgradeError::NoUpgrade(_))
        ));
    }
}
