//! The outbox: statuses for the hub, oldest first, each removed only once the broker has
//! acknowledged it, so nothing is lost while the link is down. Bounded by
//! `meta.outbox_max_rows`: past it the oldest rows go first, and the events they carried are
//! counted in `meta.outbox_dropped_events` for the next status to report.
//!
//! The status reporter's cursor (the sequence of the newest status and of the newest event it
//! put in a status) lives in `meta` and moves in the same transaction as the rows it writes:
//! after a crash either both are there or neither.

use rusqlite::{params, OptionalExtension};

use super::records::to_i64;
use super::{StateError, Store};

/// Where the status reporter stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportCursor {
    /// The sequence of the newest status put in the outbox (0 before the first).
    pub sequence: u64,
    /// The sequence of the newest event put in a status.
    pub last_event: u64,
    /// Events lost at the outbox bound that no status has reported yet.
    pub dropped_events: u64,
}

/// A message to append to the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxMessage {
    pub topic: String,
    /// The bytes to publish, already encoded and checked against the wire limits.
    pub payload: Vec<u8>,
    /// What the hub would miss if this message were dropped: the events it carries plus the
    /// losses it reports.
    pub events: u64,
}

/// A message waiting in the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutboxRow {
    /// Grows with every message appended, across restarts.
    pub id: u64,
    pub topic: String,
    pub payload: Vec<u8>,
}

const SEQUENCE: &str = "status_sequence";
const LAST_EVENT: &str = "status_last_event";
const DROPPED: &str = "outbox_dropped_events";

impl Store {
    /// The reporter's cursor as last stored.
    pub fn report_cursor(&self) -> Result<ReportCursor, StateError> {
        Ok(ReportCursor {
            sequence: self.meta_u64(SEQUENCE)?,
            last_event: self.meta_u64(LAST_EVENT)?,
            dropped_events: self.meta_u64(DROPPED)?,
        })
    }

    /// Appends `messages` (oldest first) and moves the cursor to `sequence` and `last_event`,
    /// all in one transaction. `(reported, lost)`: how many of the stored dropped events these
    /// messages report, and how many more were lost on the way (they stay counted for the next
    /// status). Rows beyond the bound are dropped oldest first, and what they carried is added
    /// to the dropped count. Returns the cursor as stored.
    pub fn push_outbox(
        &self,
        messages: &[OutboxMessage],
        sequence: u64,
        last_event: u64,
        (reported, lost): (u64, u64),
        now_ms: u64,
    ) -> Result<ReportCursor, StateError> {
        let failed = |cause| self.query_failed("write the outbox", cause);
        let tx = self.conn.unchecked_transaction().map_err(failed)?;
        tx.execute(
            "UPDATE meta SET value = CAST(max(CAST(value AS INTEGER) - ?1, 0) + ?2 AS TEXT) WHERE key = ?3",
            params![to_i64(reported), to_i64(lost), DROPPED],
        )
        .map_err(failed)?;
        for message in messages {
            tx.execute(
                "INSERT INTO outbox (topic, payload, created_at, events) VALUES (?1, ?2, ?3, ?4)",
                params![
                    message.topic,
                    message.payload,
                    to_i64(now_ms),
                    to_i64(message.events)
                ],
            )
            .map_err(failed)?;
        }
        for (key, value) in [(SEQUENCE, sequence), (LAST_EVENT, last_event)] {
            tx.execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) \
                 ON CONFLICT (key) DO UPDATE SET value = ?2",
                params![key, value.to_string()],
            )
            .map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        self.report_cursor()
    }

    /// At most `limit` messages with an id above `after`, oldest first.
    pub fn outbox_after(&self, after: u64, limit: u32) -> Result<Vec<OutboxRow>, StateError> {
        let failed = |cause| self.query_failed("read the outbox", cause);
        let mut statement = self
            .conn
            .prepare("SELECT id, topic, payload FROM outbox WHERE id > ?1 ORDER BY id LIMIT ?2")
            .map_err(failed)?;
        let rows = statement
            .query_map(params![to_i64(after), limit], |row| {
                Ok(OutboxRow {
                    id: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                    topic: row.get(1)?,
                    payload: row.get(2)?,
                })
            })
            .map_err(failed)?;
        rows.collect::<Result<_, _>>().map_err(failed)
    }

    /// Removes a message the broker has acknowledged (nothing when the bound removed it).
    pub fn remove_outbox(&self, id: u64) -> Result<(), StateError> {
        self.conn
            .execute("DELETE FROM outbox WHERE id = ?1", [to_i64(id)])
            .map_err(|cause| self.query_failed("remove an outbox message", cause))?;
        Ok(())
    }

    /// How many messages wait in the outbox.
    pub fn outbox_len(&self) -> Result<u64, StateError> {
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM outbox", [], |row| row.get(0))
            .map_err(|cause| self.query_failed("count the outbox", cause))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    fn meta_u64(&self, key: &str) -> Result<u64, StateError> {
        let value: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| {
                row.get(0)
            })
            .optional()
            .map_err(|cause| self.query_failed("read the reporter's cursor", cause))?;
        Ok(value.and_then(|v| v.trim().parse().ok()).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(n: u64, events: u64) -> OutboxMessage {
        OutboxMessage {
            topic: "shoal/v1/node/n1/status".into(),
            payload: n.to_be_bytes().to_vec(),
            events,
        }
    }

    fn payloads(rows: &[OutboxRow]) -> Vec<u64> {
        rows.iter()
            .map(|r| u64::from_be_bytes(r.payload.clone().try_into().expect("8 bytes")))
            .collect()
    }

    fn bound(store: &Store, rows: u32) {
        store
            .conn
            .execute(
                "UPDATE meta SET value = ?1 WHERE key = 'outbox_max_rows'",
                [rows.to_string()],
            )
            .expect("set the bound");
    }

    #[test]
    fn messages_come_back_oldest_first_and_leave_once_acknowledged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(
            store.report_cursor().expect("cursor"),
            ReportCursor::default()
        );
        let cursor = store
            .push_outbox(&[message(1, 2), message(2, 0)], 2, 7, (0, 0), 100)
            .expect("push");
        assert_eq!(
            cursor,
            ReportCursor {
                sequence: 2,
                last_event: 7,
                dropped_events: 0
            }
        );
        store
            .push_outbox(&[message(3, 1)], 3, 8, (0, 0), 101)
            .expect("push");
        let rows = store.outbox_after(0, 10).expect("read");
        assert_eq!(payloads(&rows), [1, 2, 3]);
        assert_eq!(
            payloads(&store.outbox_after(rows[0].id, 1).expect("page")),
            [2]
        );
        store.remove_outbox(rows[0].id).expect("ack");
        store
            .remove_outbox(rows[0].id)
            .expect("a second ack is harmless");
        assert_eq!(payloads(&store.outbox_after(0, 10).expect("read")), [2, 3]);
        assert_eq!(store.outbox_len().expect("len"), 2);
    }

    #[test]
    fn at_the_bound_the_oldest_rows_go_first_and_their_events_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        bound(&store, 3);
        for n in 1..=5 {
            store
                .push_outbox(&[message(n, n * 10)], n, n, (0, 0), n)
                .expect("push");
        }
        assert_eq!(
            payloads(&store.outbox_after(0, 10).expect("read")),
            [3, 4, 5]
        );
        let cursor = store.report_cursor().expect("cursor");
        assert_eq!(
            cursor.dropped_events,
            10 + 20,
            "rows 1 and 2 carried 30 events"
        );
        assert_eq!(cursor.sequence, 5);

        // The next status reports the 30 and is itself counted if it is dropped in turn.
        let cursor = store
            .push_outbox(&[message(6, 30)], 6, 6, (30, 0), 6)
            .expect("push");
        assert_eq!(
            cursor.dropped_events, 30,
            "row 3 (30 events) was dropped for row 6"
        );
        assert_eq!(
            payloads(&store.outbox_after(0, 10).expect("read")),
            [4, 5, 6]
        );

        // Losses no message could carry stay counted.
        let cursor = store.push_outbox(&[], 6, 6, (30, 5), 7).expect("push");
        assert_eq!(cursor.dropped_events, 5);
    }

    #[test]
    fn a_batch_bigger_than_the_bound_keeps_its_newest_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        bound(&store, 2);
        let batch: Vec<_> = (1..=4).map(|n| message(n, 1)).collect();
        let cursor = store.push_outbox(&batch, 4, 4, (0, 0), 1).expect("push");
        assert_eq!(payloads(&store.outbox_after(0, 10).expect("read")), [3, 4]);
        assert_eq!(cursor.dropped_events, 2);
    }

    #[test]
    fn the_outbox_and_the_cursor_survive_reopening() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let store = Store::open(dir.path()).expect("open");
            bound(&store, 2);
            for n in 1..=3 {
                store
                    .push_outbox(&[message(n, 1)], n, n * 2, (0, 0), n)
                    .expect("push");
            }
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(payloads(&store.outbox_after(0, 10).expect("read")), [2, 3]);
        assert_eq!(
            store.report_cursor().expect("cursor"),
            ReportCursor {
                sequence: 3,
                last_event: 6,
                dropped_events: 1
            }
        );
        let next = store.outbox_after(0, 10).expect("read");
        assert!(next[0].id < next[1].id);
    }

    #[test]
    fn without_a_bound_nothing_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        store
            .conn
            .execute("DELETE FROM meta WHERE key = 'outbox_max_rows'", [])
            .expect("remove the bound");
        for n in 1..=5 {
            store
                .push_outbox(&[message(n, 1)], n, n, (0, 0), n)
                .expect("push");
        }
        assert_eq!(store.outbox_len().expect("len"), 5);
        assert_eq!(store.report_cursor().expect("cursor").dropped_events, 0);
    }
}
