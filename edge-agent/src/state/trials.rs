//! The hub's workloads whose newer revision is on trial on this node (`reconcile::trial`):
//! what a rollback goes back to, kept beside the desired state it belongs to, so that a node
//! that lost power during a trial still knows where to go back to, and one that went back
//! still runs the previous revision after a reboot, with no hub.

use rusqlite::params;
use shoal_model::rollout::Failure;
use shoal_model::wire::stored;
use shoal_model::wire::DesiredWorkload;

use super::records::to_i64;
use super::{StateError, Store};

/// One workload's revision on trial, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrialRecord {
    pub workload: String,
    /// The revision on trial.
    pub revision: u64,
    /// The desired workload it replaced: where a rollback goes.
    pub previous: DesiredWorkload,
    /// Set once the revision failed here and the node went back to `previous`.
    pub failed: Option<Failure>,
}

/// Replaces every trial row by `trials`, inside the transaction `tx` that stores the desired
/// state they belong to; `failed` words a failed statement.
pub(super) fn replace(
    tx: &rusqlite::Transaction<'_>,
    trials: &[TrialRecord],
    failed: impl Fn(rusqlite::Error) -> StateError,
) -> Result<(), StateError> {
    tx.execute("DELETE FROM trials", []).map_err(&failed)?;
    for t in trials {
        let row = stored::write_desired(std::slice::from_ref(&t.previous)).map_err(|cause| {
            StateError::Row {
                table: "trials",
                row: t.workload.clone(),
                cause,
            }
        })?;
        tx.execute(
            "INSERT INTO trials (workload, revision, previous_format, previous, failure) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                t.workload,
                to_i64(t.revision),
                row.format,
                row.bytes,
                t.failed.map(Failure::as_str)
            ],
        )
        .map_err(&failed)?;
    }
    Ok(())
}

impl Store {
    /// Every revision on trial.
    pub fn trials(&self) -> Result<Vec<TrialRecord>, StateError> {
        let failed = |cause| self.query_failed("read the revisions on trial", cause);
        let mut statement = self
            .conn
            .prepare(
                "SELECT workload, revision, previous_format, previous, failure FROM trials \
                 ORDER BY workload",
            )
            .map_err(failed)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                    row.get::<_, Option<String>>(4)?,
                ))
            })
            .map_err(failed)?;
        let mut trials = Vec::new();
        for row in rows {
            let (workload, revision, format, previous, failure) = row.map_err(failed)?;
            let invalid = |reason: String| StateError::Row {
                table: "trials",
                row: workload.clone(),
                cause: stored::RecordError::Invalid {
                    format: u8::try_from(format).unwrap_or(0),
                    reason,
                },
            };
            let mut previous =
                stored::read_desired(format, &previous).map_err(|cause| StateError::Row {
                    table: "trials",
                    row: workload.clone(),
                    cause,
                })?;
            let previous = match (previous.pop(), previous.is_empty()) {
                (Some(p), true) => p,
                _ => return Err(invalid("it holds not exactly one previous workload".into())),
            };
            let failed = match failure {
                None => None,
                Some(name) => Some(
                    Failure::from_name(&name)
                        .ok_or_else(|| invalid(format!("unknown failure `{name}`")))?,
                ),
            };
            trials.push(TrialRecord {
                workload,
                revision: u64::try_from(revision).unwrap_or(0),
                previous,
                failed,
            });
        }
        Ok(trials)
    }

    /// Records that `workload`'s `revision` failed here and the node went back, on the disk
    /// before it returns: after a power cut the node must still run the previous revision.
    pub fn fail_trial(
        &self,
        workload: &str,
        revision: u64,
        failure: Failure,
        now_ms: u64,
    ) -> Result<(), StateError> {
        let _durable = self.durable()?;
        self.conn
            .execute(
                "UPDATE trials SET failure = ?3, failed_at = ?4 WHERE workload = ?1 AND revision = ?2",
                params![workload, to_i64(revision), failure.as_str(), to_i64(now_ms)],
            )
            .map_err(|cause| self.query_failed("record a failed revision", cause))?;
        Ok(())
    }

    /// Forgets the trial of `workload`'s `revision`: it proved itself.
    pub fn end_trial(&self, workload: &str, revision: u64) -> Result<(), StateError> {
        self.conn
            .execute(
                "DELETE FROM trials WHERE workload = ?1 AND revision = ?2",
                params![workload, to_i64(revision)],
            )
            .map_err(|cause| self.query_failed("end a revision's trial", cause))?;
        Ok(())
    }
}
