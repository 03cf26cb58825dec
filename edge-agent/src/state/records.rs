//! What the supervisor keeps in the database: accepted desired states, one record per
//! container (restarts, crash streak, last exit), and the bounded event log (whose row ids
//! are the events' sequence numbers).
//!
//! Written on changes only (an apply, a start, an exit), never per tick.
//!
//! A desired state's workloads are written through `shoal_model::wire::stored`, with their
//! format number in `payload_format` (migration 0006 labelled the rows written before as
//! format 2). One this agent cannot read fails with [`StateError::Row`] naming the row and
//! its format; the agent refuses to start rather than run an empty desired state.

use rusqlite::{params, OptionalExtension};
use shoal_model::wire::signing::PublicKey;
use shoal_model::wire::stored;
use shoal_model::wire::{DesiredWorkload, Event, EventReason, ExitInfo, Severity};

use super::trials::{self, TrialRecord};
use super::{StateError, Store};

fn replace_keys(
    tx: &rusqlite::Transaction<'_>,
    keys: &[PublicKey],
    now_ms: u64,
) -> Result<(), rusqlite::Error> {
    tx.execute("DELETE FROM hub_keys", [])?;
    for key in keys {
        tx.execute(
            "INSERT OR IGNORE INTO hub_keys (public, trusted_at) VALUES (?1, ?2)",
            params![key.to_string(), i64::try_from(now_ms).unwrap_or(i64::MAX)],
        )?;
    }
    Ok(())
}

/// Where a desired state came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// `shoal-agent apply` on the device (no `[hub]` in agent.toml).
    Local,
    /// The hub's desired state, received over MQTT (with `[hub]`).
    Hub,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Local => "local",
            Source::Hub => "hub",
        }
    }
}

/// Desired states kept per source, newest first: the older ones are there to roll back to.
const DESIRED_KEPT: i64 = 5;

/// What the agent remembers of a container between runs of the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerRecord {
    pub id: String,
    pub workload: String,
    pub name: String,
    pub image: String,
    pub spec_hash: String,
    pub restarts: u32,
    pub crash_streak: u32,
    pub oom_kills: u32,
    pub last_exit: Option<ExitInfo>,
    /// The stop grace period of the spec it was started from; `None` in records written
    /// before it was kept (the default period applies).
    pub stop_grace: Option<std::time::Duration>,
}

impl Store {
    /// Stores a desired state and keeps only the newest few per source, on the disk before
    /// it returns (see [`Store::durable`]): the agent acts on it and answers for it next.
    ///
    /// With `trusted_keys` not empty, they replace the hub keys this node trusts, in the same
    /// transaction: a key rotation and the state that announced it are taken together or not
    /// at all. For the hub's, `trials` replace the revisions on trial in the same transaction
    /// (see [`TrialRecord`]).
    pub fn save_desired(
        &self,
        source: Source,
        generation: u64,
        workloads: &[DesiredWorkload],
        trusted_keys: &[PublicKey],
        trials: &[TrialRecord],
        now_ms: u64,
    ) -> Result<(), StateError> {
        let payload = stored::write_desired(workloads).map_err(|record| StateError::Row {
            table: "desired_state",
            row: format!("({} generation {generation})", source.as_str()),
            cause: record,
        })?;
        let failed = |cause| self.query_failed("save the desired state", cause);
        let _durable = self.durable()?;
        let tx = self.conn.unchecked_transaction().map_err(failed)?;
        tx.execute(
            "INSERT OR REPLACE INTO desired_state (generation, source, payload_format, payload, received_at) \
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                to_i64(generation),
                source.as_str(),
                payload.format,
                payload.bytes,
                to_i64(now_ms)
            ],
        )
        .map_err(failed)?;
        tx.execute(
            "DELETE FROM desired_state WHERE source = ?1 AND id NOT IN \
             (SELECT id FROM desired_state WHERE source = ?1 ORDER BY generation DESC LIMIT ?2)",
            params![source.as_str(), DESIRED_KEPT],
        )
        .map_err(failed)?;
        if !trusted_keys.is_empty() {
            replace_keys(&tx, trusted_keys, now_ms).map_err(failed)?;
        }
        // Only the hub's workloads are tried (see `reconcile::trial`).
        if source == Source::Hub {
            trials::replace(&tx, trials, failed)?;
        }
        tx.commit().map_err(failed)
    }

    /// Makes the hub's next desired state acceptable whatever its generation (after an
    /// enrollment: the hub may have forgotten this node), while the newest one stays what
    /// the node runs until then.
    pub fn forget_hub_generation(&self) -> Result<(), StateError> {
        let failed = |cause| self.query_failed("reset the hub's generation", cause);
        let _durable = self.durable()?;
        let tx = self.conn.unchecked_transaction().map_err(failed)?;
        tx.execute(
            "DELETE FROM desired_state WHERE source = 'hub' AND id NOT IN \
             (SELECT id FROM desired_state WHERE source = 'hub' ORDER BY generation DESC LIMIT 1)",
            [],
        )
        .map_err(failed)?;
        tx.execute(
            "UPDATE desired_state SET generation = 0 WHERE source = 'hub'",
            [],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)
    }

    /// The hub keys this node trusts.
    pub fn trusted_keys(&self) -> Result<Vec<PublicKey>, StateError> {
        let failed = |cause| self.query_failed("read the trusted hub keys", cause);
        let mut statement = self
            .conn
            .prepare("SELECT public FROM hub_keys ORDER BY public")
            .map_err(failed)?;
        let rows = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(failed)?;
        let mut keys = Vec::new();
        for row in rows {
            let text = row.map_err(failed)?;
            keys.push(
                text.parse()
                    .map_err(|e: shoal_model::wire::signing::SignatureError| {
                        StateError::Encode {
                            what: "trusted hub key",
                            reason: e.to_string(),
                        }
                    })?,
            );
        }
        Ok(keys)
    }

    /// Replaces the hub keys this node trusts (enrollment, or the configured seed).
    pub fn set_trusted_keys(&self, keys: &[PublicKey], now_ms: u64) -> Result<(), StateError> {
        let failed = |cause| self.query_failed("store the trusted hub keys", cause);
        let _durable = self.durable()?;
        let tx = self.conn.unchecked_transaction().map_err(failed)?;
        replace_keys(&tx, keys, now_ms).map_err(failed)?;
        tx.commit().map_err(failed)
    }

    /// The newest desired state from `source`, with its generation.
    pub fn latest_desired(
        &self,
        source: Source,
    ) -> Result<Option<(u64, Vec<DesiredWorkload>)>, StateError> {
        let row: Option<(i64, i64, i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT id, generation, payload_format, payload FROM desired_state WHERE source = ?1 \
                 ORDER BY generation DESC LIMIT 1",
                [source.as_str()],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .optional()
            .map_err(|cause| self.query_failed("read the desired state", cause))?;
        let Some((id, generation, format, payload)) = row else {
            return Ok(None);
        };
        let workloads =
            stored::read_desired(format, &payload).map_err(|record| StateError::Row {
                table: "desired_state",
                row: format!("{id} ({} generation {generation})", source.as_str()),
                cause: record,
            })?;
        Ok(Some((u64::try_from(generation).unwrap_or(0), workloads)))
    }

    /// Inserts or replaces a container's record.
    pub fn save_container(&self, record: &ContainerRecord, now_ms: u64) -> Result<(), StateError> {
        let exit = record.last_exit.as_ref();
        self.conn
            .execute(
                "INSERT INTO containers (id, workload, name, generation, image, spec_hash, state, restarts, \
                 crash_streak, oom_kills, last_exit_code, last_exit_signal, oom_killed, last_exit_at, created_at, updated_at, \
                 stop_grace_ms) \
                 VALUES (?1, ?2, ?3, 0, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14, ?15) \
                 ON CONFLICT (id) DO UPDATE SET image = ?4, spec_hash = ?5, state = ?6, restarts = ?7, \
                 crash_streak = ?8, oom_kills = ?9, last_exit_code = ?10, last_exit_signal = ?11, \
                 oom_killed = ?12, last_exit_at = ?13, updated_at = ?14, stop_grace_ms = ?15",
                params![
                    record.id,
                    record.workload,
                    record.name,
                    record.image,
                    record.spec_hash,
                    if exit.is_some() { "stopped" } else { "running" },
                    record.restarts,
                    record.crash_streak,
                    record.oom_kills,
                    exit.and_then(|e| e.code),
                    exit.and_then(|e| e.signal),
                    exit.is_some_and(|e| e.oom_killed),
                    exit.map(|e| to_i64(e.at_ms)),
                    to_i64(now_ms),
                    record
                        .stop_grace
                        .map(|g| i64::try_from(g.as_millis()).unwrap_or(i64::MAX)),
                ],
            )
            .map_err(|cause| self.query_failed("save a container record", cause))?;
        Ok(())
    }

    /// Every container record.
    pub fn containers(&self) -> Result<Vec<ContainerRecord>, StateError> {
        let failed = |cause| self.query_failed("read the container records", cause);
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, workload, name, image, spec_hash, restarts, crash_streak, oom_kills, \
                 last_exit_code, last_exit_signal, oom_killed, last_exit_at, stop_grace_ms \
                 FROM containers ORDER BY id",
            )
            .map_err(failed)?;
        let rows = statement
            .query_map([], |row| {
                let at: Option<i64> = row.get(11)?;
                Ok(ContainerRecord {
                    id: row.get(0)?,
                    workload: row.get(1)?,
                    name: row.get(2)?,
                    image: row.get(3)?,
                    spec_hash: row.get(4)?,
                    restarts: row.get(5)?,
                    crash_streak: row.get(6)?,
                    oom_kills: row.get(7)?,
                    last_exit: at.map(|at| ExitInfo {
                        code: row.get(8).ok().flatten(),
                        signal: row.get(9).ok().flatten(),
                        oom_killed: row.get(10).unwrap_or(false),
                        at_ms: u64::try_from(at).unwrap_or(0),
                    }),
                    stop_grace: row
                        .get::<_, Option<i64>>(12)?
                        .map(|ms| std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
                })
            })
            .map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)
    }

    pub fn delete_container(&self, id: &str) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM containers WHERE id = ?1", [id])
            .map_err(|cause| self.query_failed("delete a container record", cause))?;
        Ok(())
    }

    /// Appends to the bounded event log; returns the event's sequence number.
    pub fn record_event(&self, event: &Event) -> Result<u64, StateError> {
        self.conn
            .execute(
                "INSERT INTO events (at, severity, workload, container, reason, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    to_i64(event.at_ms),
                    severity_name(event.severity),
                    event.workload,
                    event.container,
                    event.reason.as_str(),
                    event.message,
                ],
            )
            .map_err(|cause| self.query_failed("record an event", cause))?;
        Ok(u64::try_from(self.conn.last_insert_rowid()).unwrap_or(0))
    }

    /// The newest `limit` events, oldest first, with their sequence numbers.
    pub fn recent_events(&self, limit: u32) -> Result<Vec<Event>, StateError> {
        self.query_events(
            "SELECT id, at, severity, workload, container, reason, message FROM \
             (SELECT * FROM events ORDER BY id DESC LIMIT ?1) ORDER BY id",
            params![limit],
        )
    }

    /// At most `limit` events with a sequence number above `after`, oldest first.
    pub fn events_after(&self, after: u64, limit: u32) -> Result<Vec<Event>, StateError> {
        self.query_events(
            "SELECT id, at, severity, workload, container, reason, message FROM events \
             WHERE id > ?1 ORDER BY id LIMIT ?2",
            params![to_i64(after), limit],
        )
    }

    /// The sequence number of the newest event ever recorded (0 before the first), also
    /// when the bound has removed it from the log.
    pub fn last_event_sequence(&self) -> Result<u64, StateError> {
        let last: Option<i64> = self
            .conn
            .query_row(
                "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(|cause| self.query_failed("read the last event sequence", cause))?;
        Ok(last.map_or(0, |seq| u64::try_from(seq).unwrap_or(0)))
    }

    fn query_events(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<Vec<Event>, StateError> {
        let failed = |cause| self.query_failed("read the events", cause);
        let mut statement = self.conn.prepare(sql).map_err(failed)?;
        let rows = statement
            .query_map(params, |row| {
                let severity: String = row.get(2)?;
                let reason: String = row.get(5)?;
                let reason = EventReason::from_name(&reason).ok_or_else(|| {
                    rusqlite::Error::FromSqlConversionFailure(
                        5,
                        rusqlite::types::Type::Text,
                        format!("unknown event reason `{reason}`").into(),
                    )
                })?;
                Ok(Event {
                    sequence: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                    at_ms: u64::try_from(row.get::<_, i64>(1)?).unwrap_or(0),
                    severity: match severity.as_str() {
                        "error" => Severity::Error,
                        "warning" => Severity::Warning,
                        _ => Severity::Info,
                    },
                    workload: row.get(3)?,
                    container: row.get(4)?,
                    reason,
                    message: row.get(6)?,
                })
            })
            .map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)
    }
}

fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Error => "error",
    }
}

/// SQLite integers are signed; our counters and times never reach 2^63.
pub(super) fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::manifest::parse_manifest;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        (dir, store)
    }

    fn workloads(names: &[&str]) -> Vec<DesiredWorkload> {
        names
            .iter()
            .map(|name| {
                let text = format!(
                    "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  containers: [{{ name: a, image: busybox }}]\n"
                );
                let (mut w, d) = parse_manifest(std::path::Path::new("t.yaml"), &text);
                assert!(d.is_empty(), "{d:?}");
                DesiredWorkload { workload: w.remove(0).workload, revision: 1 }
            })
            .collect()
    }

    #[test]
    fn the_newest_desired_state_survives_reopening_and_old_ones_are_trimmed() {
        let (dir, store) = store();
        assert_eq!(store.latest_desired(Source::Local).expect("read"), None);
        for generation in 1..=8 {
            let names = if generation % 2 == 0 {
                vec!["a", "b"]
            } else {
                vec!["a"]
            };
            store
                .save_desired(Source::Local, generation, &workloads(&names), &[], &[], 100)
                .expect("save");
        }
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let (generation, latest) = store
            .latest_desired(Source::Local)
            .expect("read")
            .expect("some");
        assert_eq!(generation, 8);
        assert_eq!(latest, workloads(&["a", "b"]));
        let kept: i64 = store
            .conn
            .query_row("SELECT count(*) FROM desired_state", [], |r| r.get(0))
            .expect("count");
        assert_eq!(kept, DESIRED_KEPT);
    }

    #[test]
    fn container_records_round_trip_and_update_in_place() {
        let (_dir, store) = store();
        let mut record = ContainerRecord {
            id: "app.main".into(),
            workload: "app".into(),
            name: "main".into(),
            image: "busybox".into(),
            spec_hash: "abc".into(),
            restarts: 0,
            crash_streak: 0,
            oom_kills: 0,
            last_exit: None,
            stop_grace: None,
        };
        store.save_container(&record, 1).expect("save");
        record.restarts = 3;
        record.crash_streak = 2;
        record.oom_kills = 1;
        record.stop_grace = Some(std::time::Duration::from_millis(2_500));
        record.last_exit = Some(ExitInfo {
            code: None,
            signal: Some(9),
            oom_killed: true,
            at_ms: 77,
        });
        store.save_container(&record, 2).expect("update");
        assert_eq!(store.containers().expect("read"), vec![record.clone()]);
        store.delete_container("app.main").expect("delete");
        assert_eq!(store.containers().expect("read"), vec![]);
    }

    #[test]
    fn events_are_read_back_in_order_with_their_reason() {
        let (_dir, store) = store();
        for (i, reason) in [
            EventReason::Started,
            EventReason::OomKilled,
            EventReason::BackOff,
        ]
        .into_iter()
        .enumerate()
        {
            let event = Event {
                sequence: 0,
                at_ms: i as u64,
                severity: Severity::Warning,
                workload: Some("app".into()),
                container: None,
                reason,
                message: format!("event {i}"),
            };
            store.record_event(&event).expect("record");
        }
        let events = store.recent_events(2).expect("read");
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].reason, EventReason::OomKilled);
        assert_eq!(events[1].message, "event 2");
        assert!(events[0].sequence < events[1].sequence);
        let after = store
            .events_after(events[0].sequence - 1, 10)
            .expect("after");
        assert_eq!(after, events, "the window starts after the given sequence");
        assert_eq!(store.events_after(0, 1).expect("first").len(), 1);
        assert_eq!(
            store.last_event_sequence().expect("last"),
            events[1].sequence
        );
    }

    #[test]
    fn a_desired_state_row_names_its_format_and_holds_the_stored_encoding() {
        let (_dir, store) = store();
        let written = workloads(&["a", "b"]);
        store
            .save_desired(Source::Hub, 4, &written, &[], &[], 1)
            .expect("save");
        let row: (i64, Vec<u8>) = store
            .conn
            .query_row(
                "SELECT payload_format, payload FROM desired_state",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("row");
        let expected = stored::write_desired(&written).expect("encodes");
        assert_eq!(row, (i64::from(expected.format), expected.bytes));
        assert_eq!(
            expected.format, 3,
            "desired workloads gained rollout settings in version 3"
        );
    }

    #[test]
    fn a_desired_state_in_a_format_this_agent_cannot_read_is_refused_and_kept() {
        let (_dir, store) = store();
        store
            .save_desired(Source::Hub, 4, &workloads(&["a"]), &[], &[], 1)
            .expect("save");
        store
            .conn
            .execute("UPDATE desired_state SET payload_format = 4", [])
            .expect("forge a newer row");
        let error = store.latest_desired(Source::Hub).expect_err("format 4");
        let text = error.to_string();
        assert!(
            matches!(
                error,
                StateError::Row {
                    table: "desired_state",
                    cause: stored::RecordError::UnknownFormat { format: 4 },
                    ..
                }
            ),
            "{text}"
        );
        for expected in [
            "desired_state row",
            "hub generation 4",
            "format 4",
            "written by a newer release; upgrade",
        ] {
            assert!(text.contains(expected), "{text} should mention {expected}");
        }
        let kept: i64 = store
            .conn
            .query_row("SELECT count(*) FROM desired_state", [], |r| r.get(0))
            .expect("count");
        assert_eq!(kept, 1, "the row it cannot read stays");
    }

    #[test]
    fn hub_and_local_desired_states_are_kept_apart() {
        let (_dir, store) = store();
        store
            .save_desired(Source::Local, 3, &workloads(&["local"]), &[], &[], 1)
            .expect("local");
        store
            .save_desired(Source::Hub, 2, &workloads(&["from-hub"]), &[], &[], 1)
            .expect("hub");
        assert_eq!(
            store.latest_desired(Source::Hub).expect("read"),
            Some((2, workloads(&["from-hub"])))
        );
        assert_eq!(
            store.latest_desired(Source::Local).expect("read"),
            Some((3, workloads(&["local"])))
        );
    }
}
