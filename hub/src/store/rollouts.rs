//! The rollout tables (migration 0004): what each node was given of each workload, and each
//! workload's rollout. Read into the snapshot, written as differences by `save_plan`.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection, OptionalExtension};
use shoal_model::manifest::Workload;
use shoal_model::wire::stored;

use super::{query, read_row, to_i64, to_u64, Store, StoreError};
use crate::control::rollout::{Assigned, Failure, Outcome, Rollout, State};

/// Per workload, per node.
pub type Assignments = BTreeMap<String, BTreeMap<String, Assigned>>;

/// A workload's rollout and what each node was given of it.
pub type WorkloadRollout = (Rollout, BTreeMap<String, Assigned>);

/// Old revisions' specs by (workload, revision).
pub type Revisions = BTreeMap<(String, u64), Workload>;

fn outcome_text(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Updating => "updating",
        Outcome::Done => "done",
        Outcome::Failed(Failure::Crashed) => "failed-crashed",
        Outcome::Failed(Failure::Restarting) => "failed-restarting",
        Outcome::Failed(Failure::Unhealthy) => "failed-unhealthy",
        Outcome::Failed(Failure::Deadline) => "failed-deadline",
    }
}

fn outcome_of(text: &str) -> Option<Outcome> {
    Some(match text {
        "updating" => Outcome::Updating,
        "done" => Outcome::Done,
        "failed-crashed" => Outcome::Failed(Failure::Crashed),
        "failed-restarting" => Outcome::Failed(Failure::Restarting),
        "failed-unhealthy" => Outcome::Failed(Failure::Unhealthy),
        "failed-deadline" => Outcome::Failed(Failure::Deadline),
        _ => return None,
    })
}

/// `(state, failed, rolled_back_to)` columns.
fn state_columns(state: State) -> (&'static str, i64, Option<i64>) {
    match state {
        State::Progressing => ("progressing", 0, None),
        State::Complete => ("complete", 0, None),
        State::Halted { failed } => ("halted", i64::from(failed), None),
        State::RolledBack { failed, to } => ("rolled-back", i64::from(failed), Some(to_i64(to))),
    }
}

fn state_of(text: &str, failed: i64, to: Option<i64>) -> Option<State> {
    let failed = u32::try_from(failed).ok()?;
    Some(match (text, to) {
        ("progressing", _) => State::Progressing,
        ("complete", _) => State::Complete,
        ("halted", _) => State::Halted { failed },
        ("rolled-back", Some(to)) => State::RolledBack {
            failed,
            to: to_u64(to),
        },
        _ => return None,
    })
}

fn undecodable(what: &'static str, reason: String) -> StoreError {
    StoreError::Decode { what, reason }
}

pub(super) fn read_assigned(conn: &Connection) -> Result<Assignments, StoreError> {
    let failed = query("reading what each node was given");
    let mut statement = conn
        .prepare(
            "SELECT workload, node, revision, since_ms, ready_since_ms, outcome, outcome_ms \
             FROM workload_nodes",
        )
        .map_err(failed)?;
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, String>(5)?,
                r.get::<_, i64>(6)?,
            ))
        })
        .map_err(failed)?;
    let mut out = Assignments::new();
    for row in rows {
        let (workload, node, revision, since, ready, outcome, outcome_ms) = row.map_err(failed)?;
        let outcome = outcome_of(&outcome).ok_or_else(|| {
            undecodable(
                "workload_nodes row",
                format!("{workload} on {node}: outcome `{outcome}`"),
            )
        })?;
        out.entry(workload).or_default().insert(
            node,
            Assigned {
                revision: to_u64(revision),
                since_ms: to_u64(since),
                ready_since_ms: ready.map(to_u64),
                outcome,
                outcome_ms: to_u64(outcome_ms),
            },
        );
    }
    Ok(out)
}

pub(super) fn read_rollouts(conn: &Connection) -> Result<BTreeMap<String, Rollout>, StoreError> {
    let failed = query("reading rollouts");
    let mut statement = conn
        .prepare(
            "SELECT workload, revision, stable, state, failed, rolled_back_to, started_ms, \
             changed_ms, paused, immediate FROM rollouts",
        )
        .map_err(failed)?;
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Option<i64>>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                (r.get::<_, bool>(8)?, r.get::<_, bool>(9)?),
            ))
        })
        .map_err(failed)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (workload, revision, stable, state, count, to, started, changed, (paused, immediate)) =
            row.map_err(failed)?;
        let state = state_of(&state, count, to)
            .ok_or_else(|| undecodable("rollouts row", format!("{workload}: state `{state}`")))?;
        out.insert(
            workload,
            Rollout {
                revision: to_u64(revision),
                stable: stable.map(to_u64),
                state,
                started_ms: to_u64(started),
                changed_ms: to_u64(changed),
                paused,
                immediate,
            },
        );
    }
    Ok(out)
}

/// The specs of the revisions nodes were given or a rollout would go back to.
pub(super) fn read_revisions(conn: &Connection) -> Result<Revisions, StoreError> {
    let failed = query("reading the revisions nodes run");
    let mut statement = conn
        .prepare(
            "SELECT r.name, r.revision, r.spec_format, r.spec FROM workload_revisions r \
             WHERE EXISTS (SELECT 1 FROM workload_nodes n \
                           WHERE n.workload = r.name AND n.revision = r.revision) \
                OR EXISTS (SELECT 1 FROM rollouts o \
                           WHERE o.workload = r.name AND o.stable = r.revision)",
        )
        .map_err(failed)?;
    let rows = statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })
        .map_err(failed)?;
    let mut out = Revisions::new();
    for row in rows {
        let (name, revision, format, spec) = row.map_err(failed)?;
        let key = format!("{name} revision {revision}");
        let workload = read_row(
            "workload_revisions",
            &key,
            stored::read_workload(format, &spec),
        )?;
        out.insert((name, to_u64(revision)), workload);
    }
    Ok(out)
}

/// Writes the rows of `after` that differ from `before` and removes those gone.
pub(super) fn save_assigned(
    conn: &Connection,
    before: &Assignments,
    after: &Assignments,
) -> Result<(), StoreError> {
    let failed = query("saving what each node was given");
    let flat = |a: &Assignments| -> BTreeSet<(String, String)> {
        a.iter()
            .flat_map(|(w, nodes)| nodes.keys().map(move |n| (w.clone(), n.clone())))
            .collect()
    };
    let get = |a: &'_ Assignments, w: &str, n: &str| a.get(w).and_then(|m| m.get(n)).cloned();
    for (w, n) in flat(before).difference(&flat(after)) {
        conn.execute(
            "DELETE FROM workload_nodes WHERE workload = ?1 AND node = ?2",
            params![w, n],
        )
        .map_err(failed)?;
    }
    let mut upsert = conn
        .prepare(
            "INSERT OR REPLACE INTO workload_nodes \
             (workload, node, revision, since_ms, ready_since_ms, outcome, outcome_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(failed)?;
    for (w, nodes) in after {
        for (n, a) in nodes {
            if get(before, w, n).as_ref() == Some(a) {
                continue;
            }
            upsert
                .execute(params![
                    w,
                    n,
                    to_i64(a.revision),
                    to_i64(a.since_ms),
                    a.ready_since_ms.map(to_i64),
                    outcome_text(a.outcome),
                    to_i64(a.outcome_ms)
                ])
                .map_err(failed)?;
        }
    }
    Ok(())
}

/// Writes the rollouts of `after` that differ from `before` and removes those gone.
pub(super) fn save_rollouts(
    conn: &Connection,
    before: &BTreeMap<String, Rollout>,
    after: &BTreeMap<String, Rollout>,
) -> Result<(), StoreError> {
    let failed = query("saving rollouts");
    for gone in before.keys().filter(|w| !after.contains_key(*w)) {
        conn.execute("DELETE FROM rollouts WHERE workload = ?1", [gone])
            .map_err(failed)?;
    }
    for (w, r) in after.iter().filter(|(w, r)| before.get(*w) != Some(r)) {
        let (state, count, to) = state_columns(r.state);
        conn.execute(
            "INSERT OR REPLACE INTO rollouts \
             (workload, revision, stable, state, failed, rolled_back_to, started_ms, changed_ms, \
              paused, immediate) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                w,
                to_i64(r.revision),
                r.stable.map(to_i64),
                state,
                count,
                to,
                to_i64(r.started_ms),
                to_i64(r.changed_ms),
                r.paused,
                r.immediate
            ],
        )
        .map_err(failed)?;
        conn.execute(
            "INSERT OR REPLACE INTO rollout_history \
             (workload, revision, state, failed, started_ms, changed_ms, immediate) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                w,
                to_i64(r.revision),
                state,
                count,
                to_i64(r.started_ms),
                to_i64(r.changed_ms),
                r.immediate
            ],
        )
        .map_err(failed)?;
    }
    Ok(())
}

/// One revision of a workload and how its rollout went (`shoal rollout history`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisionHistory {
    pub revision: u64,
    pub created_ms: u64,
    /// The rollout's state column (`progressing`, `complete`, `halted`, `rolled-back`), when
    /// it had one: revisions from before rollouts, or replaced before a pass, have none.
    pub state: Option<String>,
    pub failed: u32,
    pub immediate: bool,
    pub changed_ms: Option<u64>,
}

/// Why `shoal rollout pause|resume|undo` could not be done.
#[derive(Debug, thiserror::Error)]
pub enum RolloutError {
    #[error("no workload `{0}` (`shoal get workloads` lists them)")]
    NoWorkload(String),
    #[error("workload `{0}` has no rollout yet: the hub has not acted on it")]
    NoRollout(String),
    #[error("workload `{workload}` has no revision {revision} (`shoal rollout history {workload}` lists them)")]
    NoRevision { workload: String, revision: u64 },
    #[error("workload `{workload}` has no earlier revision to go back to")]
    NothingToUndo { workload: String },
    #[error("revision {revision} is the one workload `{workload}` is at already")]
    SameRevision { workload: String, revision: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Pauses or resumes `workload`'s rollout. Returns whether that changed anything.
    pub fn pause_rollout(
        &self,
        workload: &str,
        paused: bool,
        now_ms: u64,
    ) -> Result<bool, RolloutError> {
        let conn = self.conn();
        let failed = query("pausing a rollout");
        let exists: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM workloads WHERE name = ?1)",
                [workload],
                |r| r.get(0),
            )
            .map_err(failed)?;
        if !exists {
            return Err(RolloutError::NoWorkload(workload.to_string()));
        }
        let changed = conn
            .execute(
                "UPDATE rollouts SET paused = ?2, changed_ms = ?3 WHERE workload = ?1 AND paused != ?2",
                params![workload, paused, to_i64(now_ms)],
            )
            .map_err(failed)?;
        if changed == 0 {
            let any: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM rollouts WHERE workload = ?1)",
                    [workload],
                    |r| r.get(0),
                )
                .map_err(failed)?;
            if !any {
                return Err(RolloutError::NoRollout(workload.to_string()));
            }
        }
        Ok(changed > 0)
    }

    /// Goes back to revision `to` (the rollout's stable revision, or the one before the
    /// current, when `None`): a new revision with that spec, rolled out to every node at once.
    /// Returns the new revision and the one it copies.
    pub fn undo_rollout(
        &self,
        workload: &str,
        to: Option<u64>,
        now_ms: u64,
    ) -> Result<(u64, u64), RolloutError> {
        let mut conn = self.conn();
        let failed = query("undoing a rollout");
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(failed)?;
        let current: Option<i64> = tx
            .query_row(
                "SELECT revision FROM workloads WHERE name = ?1",
                [workload],
                |r| r.get(0),
            )
            .optional()
            .map_err(failed)?;
        let current =
            to_u64(current.ok_or_else(|| RolloutError::NoWorkload(workload.to_string()))?);
        let rollout = read_rollouts(&tx)?.remove(workload);
        let target = match to {
            Some(to) => to,
            None => rollout
                .as_ref()
                .and_then(|r| r.stable)
                .or_else(|| current.checked_sub(1).filter(|r| *r >= 1))
                .ok_or_else(|| RolloutError::NothingToUndo {
                    workload: workload.to_string(),
                })?,
        };
        if target == current {
            return Err(RolloutError::SameRevision {
                workload: workload.to_string(),
                revision: target,
            });
        }
        let spec: Option<(i64, Vec<u8>)> = tx
            .query_row(
                "SELECT spec_format, spec FROM workload_revisions WHERE name = ?1 AND revision = ?2",
                params![workload, to_i64(target)],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(failed)?;
        let (format, bytes) = spec.ok_or_else(|| RolloutError::NoRevision {
            workload: workload.to_string(),
            revision: target,
        })?;
        let key = format!("{workload} revision {target}");
        // Read it, so a row this hub cannot read is refused here and not copied blindly.
        read_row(
            "workload_revisions",
            &key,
            stored::read_workload(format, &bytes),
        )?;
        let next = current.saturating_add(1);
        tx.execute(
            "UPDATE workloads SET revision = ?2, spec_format = ?3, spec = ?4, updated_at = ?5 WHERE name = ?1",
            params![workload, to_i64(next), format, bytes, to_i64(now_ms)],
        )
        .map_err(failed)?;
        tx.execute(
            "INSERT OR REPLACE INTO workload_revisions (name, revision, spec_format, spec, created_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![workload, to_i64(next), format, bytes, to_i64(now_ms)],
        )
        .map_err(failed)?;
        let undo = Rollout {
            revision: next,
            stable: rollout.as_ref().and_then(|r| r.stable),
            state: State::Progressing,
            started_ms: now_ms,
            changed_ms: now_ms,
            paused: false,
            immediate: true,
        };
        let before = rollout
            .map(|r| (workload.to_string(), r))
            .into_iter()
            .collect();
        let after = [(workload.to_string(), undo)].into_iter().collect();
        save_rollouts(&tx, &before, &after)?;
        tx.commit().map_err(failed)?;
        Ok((next, target))
    }

    /// Every revision of `workload`, oldest first, with how its rollout went.
    pub fn rollout_history(&self, workload: &str) -> Result<Vec<RevisionHistory>, StoreError> {
        let conn = self.conn();
        let failed = query("reading a rollout history");
        let mut statement = conn
            .prepare(
                "SELECT r.revision, r.created_at, h.state, h.failed, h.immediate, h.changed_ms \
                 FROM workload_revisions r LEFT JOIN rollout_history h \
                   ON h.workload = r.name AND h.revision = r.revision \
                 WHERE r.name = ?1 ORDER BY r.revision",
            )
            .map_err(failed)?;
        let rows = statement
            .query_map([workload], |r| {
                Ok(RevisionHistory {
                    revision: to_u64(r.get(0)?),
                    created_ms: to_u64(r.get(1)?),
                    state: r.get(2)?,
                    failed: u32::try_from(r.get::<_, Option<i64>>(3)?.unwrap_or(0)).unwrap_or(0),
                    immediate: r.get::<_, Option<bool>>(4)?.unwrap_or(false),
                    changed_ms: r.get::<_, Option<i64>>(5)?.map(to_u64),
                })
            })
            .map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)
    }

    /// `workload`'s rollout and what each node was given of it, when it has one.
    /// Every workload's rollout with what its nodes were given, from one read.
    pub fn rollouts(&self) -> Result<BTreeMap<String, WorkloadRollout>, StoreError> {
        let conn = self.conn();
        let mut assigned = read_assigned(&conn)?;
        Ok(read_rollouts(&conn)?
            .into_iter()
            .map(|(workload, rollout)| {
                let nodes = assigned.remove(&workload).unwrap_or_default();
                (workload, (rollout, nodes))
            })
            .collect())
    }

    pub fn rollout(&self, workload: &str) -> Result<Option<WorkloadRollout>, StoreError> {
        let conn = self.conn();
        let Some(rollout) = read_rollouts(&conn)?.remove(workload) else {
            return Ok(None);
        };
        let assigned = read_assigned(&conn)?.remove(workload).unwrap_or_default();
        Ok(Some((rollout, assigned)))
    }
}
