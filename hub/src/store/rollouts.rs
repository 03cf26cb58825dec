//! The rollout tables (migration 0004): what each node was given of each workload, and each
//! workload's rollout. Read into the snapshot, written as differences by `save_plan`.

use std::collections::{BTreeMap, BTreeSet};

use rusqlite::{params, Connection};
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
             changed_ms FROM rollouts",
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
            ))
        })
        .map_err(failed)?;
    let mut out = BTreeMap::new();
    for row in rows {
        let (workload, revision, stable, state, count, to, started, changed) =
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
             (workload, revision, stable, state, failed, rolled_back_to, started_ms, changed_ms) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                w,
                to_i64(r.revision),
                r.stable.map(to_i64),
                state,
                count,
                to,
                to_i64(r.started_ms),
                to_i64(r.changed_ms)
            ],
        )
        .map_err(failed)?;
    }
    Ok(())
}

impl Store {
    /// `workload`'s rollout and what each node was given of it, when it has one.
    pub fn rollout(&self, workload: &str) -> Result<Option<WorkloadRollout>, StoreError> {
        let conn = self.conn();
        let Some(rollout) = read_rollouts(&conn)?.remove(workload) else {
            return Ok(None);
        };
        let assigned = read_assigned(&conn)?.remove(workload).unwrap_or_default();
        Ok(Some((rollout, assigned)))
    }
}
