//! The hub's SQLite store: workloads and their revisions, nodes (credentials, labels, facts,
//! presence), the placement, the desired state published per node, and what nodes report.
//!
//! One connection behind a mutex: the hub's writes are small and rare next to SQLite's speed,
//! and one writer keeps every change a single transaction. WAL mode, so a `kill -9` loses at
//! most the transaction in flight.
//!
//! Every postcard blob is written through `shoal_model::wire::stored` with its format number
//! in the column beside it (`spec_format`, `facts_format`, `payload_format`; migration 0003
//! labelled the rows release 0.1.0 wrote as format 2). A row in a format this hub cannot read
//! fails the read with [`StoreError::Row`], naming the table, the row and the format: it is
//! never skipped, never dropped.

mod claims;
#[cfg(test)]
mod released;
mod releases;
mod rollouts;
mod security;
mod snapshot;
#[cfg(test)]
mod tests;
mod upgrades;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use shoal_model::manifest::Workload;
use shoal_model::node::NodeFacts;
use shoal_model::wire::stored::{self, RecordError, Row};
use shoal_model::wire::{Event, EventReason, NodeStatus, Severity};

use crate::admission::{self, Admission, Claim, Kept};
use crate::scheduler::{Placement, Schedulable};

pub use claims::{ClaimError, StoredClaim};
pub use releases::{ReleaseAdded, ReleaseError, ReleaseRotation, StoredRelease};
pub use rollouts::{Assignments, RevisionHistory, Revisions, RolloutError};
pub use security::{key_ring, signing_key, EnrollError, KeyState, StoredKey};
pub use snapshot::{PlanWrite, Snapshot};
pub use upgrades::{UpgradeError, UpgradeRequest};

/// The schema, one entry per version (`PRAGMA user_version`).
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_initial.sql"),
    include_str!("migrations/0002_security.sql"),
    include_str!("migrations/0003_formats.sql"),
    include_str!("migrations/0004_rollouts.sql"),
    include_str!("migrations/0005_claims.sql"),
    include_str!("migrations/0006_agent_releases.sql"),
    include_str!("migrations/0007_agent_upgrades.sql"),
    include_str!("migrations/0008_release_minimum.sql"),
    include_str!("migrations/0009_release_key_bridge.sql"),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the hub database {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the hub database {path} has schema version {found}, newer than this hub knows ({supported}): run a newer `shoal`")]
    NewerSchema {
        path: PathBuf,
        found: usize,
        supported: usize,
    },
    #[error("hub database error while {what}: {source}")]
    Query {
        what: &'static str,
        source: rusqlite::Error,
    },
    #[error("the hub database holds a {what} it cannot read ({reason}); it was written by another version of `shoal`")]
    Decode { what: &'static str, reason: String },
    /// A stored postcard row (see `shoal_model::wire::stored`) that cannot be read or written.
    #[error("the hub database's {table} row `{row}`: {cause}")]
    Row {
        table: &'static str,
        row: String,
        cause: RecordError,
    },
    #[error("node `{0}` is already registered (`shoal get nodes` lists them)")]
    NodeExists(String),
    #[error("no node `{0}` (`shoal get nodes` lists them)")]
    NoNode(String),
}

/// A workload as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredWorkload {
    pub workload: Workload,
    pub revision: u64,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// What applying one workload did (or would do).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Applied {
    pub name: String,
    /// The revision before; `None` for a new workload.
    pub previous: Option<(u64, Workload)>,
    /// The revision after.
    pub revision: u64,
}

/// A node as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredNode {
    pub name: String,
    /// The hub's labels, laid over the agent's.
    pub labels: BTreeMap<String, String>,
    pub schedulable: Schedulable,
    pub created_ms: u64,
    pub facts: Option<NodeFacts>,
    pub online: bool,
    pub last_seen_ms: Option<u64>,
    pub offline_since_ms: Option<u64>,
    /// Whether the node has used its enrollment token (it has credentials).
    pub enrolled: bool,
}

impl StoredNode {
    /// The wire versions its agent announced: empty before it connected, and for agents of
    /// release 0.1.0 (see `wire::version_for`).
    pub fn wire_versions(&self) -> &[u8] {
        self.facts.as_ref().map_or(&[], |f| &f.wire_versions)
    }

    /// The facts placement matches against: the agent's report with the hub's labels on top.
    pub fn effective_facts(&self) -> NodeFacts {
        let mut facts = self.facts.clone().unwrap_or_default();
        for (key, value) in &self.labels {
            facts.labels.insert(key.clone(), value.clone());
        }
        facts
    }
}

/// The desired state last published for a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeDesired {
    pub node: String,
    pub generation: u64,
    /// Hash of the workloads it lists, to tell whether a new one differs.
    pub digest: String,
    /// The encoded envelope, as published.
    pub payload: Vec<u8>,
    /// Ids of the signing keys the state announces (see `security`).
    pub signing_keys: Vec<String>,
}

/// What a node's published desired state says, without its payload: what decisions compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Published {
    pub generation: u64,
    /// Hash of the workloads it lists and the keys it announces.
    pub digest: String,
    /// Ids of the signing keys it announces.
    pub signing_keys: Vec<String>,
    /// The wire version it was published in (the first byte of its payload).
    pub wire_version: u8,
}

/// One stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub node: String,
    pub event: Event,
}

#[derive(Debug)]
pub struct Store {
    conn: Mutex<Connection>,
    path: PathBuf,
}

/// One workload by name (`?1`), through the primary key: `?1 IS NULL OR name = ?1` in one
/// statement would scan the table, and a node's every status looks its node up.
const WORKLOAD_NAMED: &str = "SELECT name, revision, spec_format, spec, created_at, updated_at \
     FROM workloads WHERE name = ?1";
/// Every workload, by name (`?1` is NULL).
const WORKLOADS_ALL: &str = "SELECT name, revision, spec_format, spec, created_at, updated_at \
     FROM workloads WHERE ?1 IS NULL ORDER BY name";
/// One node by name (`?1`), through the primary key (see [`WORKLOAD_NAMED`]): found with
/// `shoal-sim`, the scan made each status cost a pass over every node, 10,000 nodes' statuses
/// 10^8 rows.
const NODE_NAMED: &str = "SELECT name, labels, schedulable, created_at, facts, online, last_seen, \
     offline_since, password_hash != '', facts_format FROM nodes WHERE name = ?1";
/// Every node, by name (`?1` is NULL).
const NODES_ALL: &str = "SELECT name, labels, schedulable, created_at, facts, online, last_seen, \
     offline_since, password_hash != '', facts_format FROM nodes WHERE ?1 IS NULL ORDER BY name";

impl Store {
    /// Opens (creating and migrating) `hub.db` in `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        let path = data_dir.join("hub.db");
        let open_failed = |source| StoreError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(&path).map_err(open_failed)?;
        // It holds password hashes and the hub's private signing keys: owner only, also for
        // the WAL and shared-memory files SQLite creates with the database's mode.
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| StoreError::Open {
                path: path.clone(),
                source: rusqlite::Error::InvalidPath(PathBuf::from(format!(
                    "{}: cannot make it private: {e}",
                    path.display()
                ))),
            })?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_failed)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_failed)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_failed)?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .map_err(open_failed)?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(open_failed)?;
        let found: usize = tx
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_failed)?;
        if found > MIGRATIONS.len() {
            return Err(StoreError::NewerSchema {
                path,
                found,
                supported: MIGRATIONS.len(),
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(found) {
            tx.execute_batch(sql).map_err(open_failed)?;
            tx.pragma_update(None, "user_version", index + 1)
                .map_err(open_failed)?;
        }
        tx.commit().map_err(open_failed)?;
        Ok(Store {
            conn: Mutex::new(conn),
            path,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite consistent (transactions roll back).
        self.conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- workloads ----

    pub fn workloads(&self) -> Result<Vec<StoredWorkload>, StoreError> {
        self.workloads_named(None)
    }

    pub fn workload(&self, name: &str) -> Result<Option<StoredWorkload>, StoreError> {
        Ok(self.workloads_named(Some(name))?.pop())
    }

    /// Every workload, or only the one named: one query either way.
    fn workloads_named(&self, name: Option<&str>) -> Result<Vec<StoredWorkload>, StoreError> {
        Self::read_workloads(&self.conn(), name)
    }

    fn read_workloads(
        conn: &Connection,
        name: Option<&str>,
    ) -> Result<Vec<StoredWorkload>, StoreError> {
        let sql = if name.is_some() {
            WORKLOAD_NAMED
        } else {
            WORKLOADS_ALL
        };
        let mut statement = conn.prepare(sql).map_err(query("listing workloads"))?;
        let rows = statement
            .query_map([name], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                ))
            })
            .map_err(query("listing workloads"))?;
        let mut out = Vec::new();
        for row in rows {
            let (name, revision, format, spec, created, updated) =
                row.map_err(query("listing workloads"))?;
            out.push(StoredWorkload {
                workload: read_row("workloads", &name, stored::read_workload(format, &spec))?,
                revision: to_u64(revision),
                created_ms: to_u64(created),
                updated_ms: to_u64(updated),
            });
        }
        Ok(out)
    }

    /// Stores every workload that changed, each as a new revision, in one transaction; with
    /// `dry_run` only says what would change.
    pub fn apply(
        &self,
        workloads: &[Workload],
        now_ms: u64,
        dry_run: bool,
    ) -> Result<Vec<Applied>, StoreError> {
        let mut conn = self.conn();
        let failed = query("applying workloads");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let mut out = Vec::new();
        for workload in workloads {
            let existing: Option<(i64, i64, Vec<u8>)> = tx
                .query_row(
                    "SELECT revision, spec_format, spec FROM workloads WHERE name = ?1",
                    [&workload.name],
                    |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)),
                )
                .optional()
                .map_err(failed)?;
            let previous = match existing {
                Some((revision, format, spec)) => {
                    let read = stored::read_workload(format, &spec);
                    Some((
                        to_u64(revision),
                        read_row("workloads", &workload.name, read)?,
                    ))
                }
                None => None,
            };
            let revision = match &previous {
                Some((revision, old)) if old == workload => *revision,
                Some((revision, _)) => revision + 1,
                None => 1,
            };
            let changed = previous.as_ref().is_none_or(|(r, _)| *r != revision);
            if changed && !dry_run {
                let spec = write_row(
                    "workloads",
                    &workload.name,
                    stored::write_workload(workload),
                )?;
                tx.execute(
                    "INSERT INTO workloads (name, revision, spec_format, spec, created_at, updated_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?5) \
                     ON CONFLICT (name) DO UPDATE SET revision = ?2, spec_format = ?3, spec = ?4, updated_at = ?5",
                    params![workload.name, to_i64(revision), spec.format, spec.bytes, to_i64(now_ms)],
                )
                .map_err(failed)?;
                tx.execute(
                    "INSERT OR REPLACE INTO workload_revisions (name, revision, spec_format, spec, created_at) \
                     VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![workload.name, to_i64(revision), spec.format, spec.bytes, to_i64(now_ms)],
                )
                .map_err(failed)?;
            }
            out.push(Applied {
                name: workload.name.clone(),
                previous,
                revision,
            });
        }
        if !dry_run {
            tx.commit().map_err(failed)?;
        }
        Ok(out)
    }

    /// Removes a workload and its placement; says whether it existed. Its revisions stay.
    pub fn delete_workload(&self, name: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let failed = query("deleting a workload");
        let tx = conn.transaction().map_err(failed)?;
        let removed = tx
            .execute("DELETE FROM workloads WHERE name = ?1", [name])
            .map_err(failed)?;
        tx.execute("DELETE FROM placement WHERE workload = ?1", [name])
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(removed > 0)
    }

    // ---- nodes ----

    pub fn add_node(
        &self,
        name: &str,
        password_hash: &str,
        labels: &BTreeMap<String, String>,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let conn = self.conn();
        let labels = labels_text(labels)?;
        let result = conn.execute(
            "INSERT INTO nodes (name, password_hash, labels, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![name, password_hash, labels, to_i64(now_ms)],
        );
        match result {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StoreError::NodeExists(name.to_string()))
            }
            Err(source) => Err(StoreError::Query {
                what: "adding a node",
                source,
            }),
        }
    }

    /// The stored password hash of a node, for the broker's authentication.
    pub fn password_hash(&self, name: &str) -> Result<Option<String>, StoreError> {
        self.conn()
            .query_row(
                "SELECT password_hash FROM nodes WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()
            .map_err(query("reading a node's credentials"))
    }

    /// Every node's name and password hash (for `shoal broker-config`).
    pub fn password_hashes(&self) -> Result<Vec<(String, String)>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare("SELECT name, password_hash FROM nodes ORDER BY name")
            .map_err(query("listing credentials"))?;
        let rows = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(query("listing credentials"))?;
        rows.collect::<Result<_, _>>()
            .map_err(query("listing credentials"))
    }

    pub fn nodes(&self) -> Result<Vec<StoredNode>, StoreError> {
        self.nodes_named(None)
    }

    pub fn node(&self, name: &str) -> Result<StoredNode, StoreError> {
        self.nodes_named(Some(name))?
            .pop()
            .ok_or_else(|| StoreError::NoNode(name.to_string()))
    }

    /// Every node, or only the one named: one query either way (the MQTT client looks up the
    /// sender of every status and presence message).
    fn nodes_named(&self, name: Option<&str>) -> Result<Vec<StoredNode>, StoreError> {
        Self::read_nodes(&self.conn(), name)
    }

    fn read_nodes(conn: &Connection, name: Option<&str>) -> Result<Vec<StoredNode>, StoreError> {
        let sql = if name.is_some() {
            NODE_NAMED
        } else {
            NODES_ALL
        };
        let mut statement = conn.prepare(sql).map_err(query("listing nodes"))?;
        let rows = statement
            .query_map([name], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, Option<Vec<u8>>>(4)?,
                    row.get::<_, bool>(5)?,
                    row.get::<_, Option<i64>>(6)?,
                    row.get::<_, Option<i64>>(7)?,
                    row.get::<_, bool>(8)?,
                    row.get::<_, i64>(9)?,
                ))
            })
            .map_err(query("listing nodes"))?;
        let mut out = Vec::new();
        for row in rows {
            let (
                name,
                labels,
                schedulable,
                created,
                facts,
                online,
                last_seen,
                offline_since,
                enrolled,
                facts_format,
            ) = row.map_err(query("listing nodes"))?;
            let facts = facts
                .map(|f| read_row("nodes", &name, stored::read_facts(facts_format, &f)))
                .transpose()?;
            out.push(StoredNode {
                name,
                labels: labels_of(&labels, "label set")?,
                schedulable: match schedulable.as_str() {
                    "cordoned" => Schedulable::Cordoned,
                    "drained" => Schedulable::Drained,
                    _ => Schedulable::Yes,
                },
                created_ms: to_u64(created),
                facts,
                online,
                last_seen_ms: last_seen.map(to_u64),
                offline_since_ms: offline_since.map(to_u64),
                enrolled,
            });
        }
        Ok(out)
    }

    /// Sets and removes hub labels of a node.
    pub fn label_node(
        &self,
        name: &str,
        set: &BTreeMap<String, String>,
        remove: &[String],
    ) -> Result<(), StoreError> {
        let mut labels = self.node(name)?.labels;
        for key in remove {
            labels.remove(key);
        }
        labels.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
        let labels = labels_text(&labels)?;
        self.conn()
            .execute(
                "UPDATE nodes SET labels = ?2 WHERE name = ?1",
                params![name, labels],
            )
            .map_err(query("labelling a node"))?;
        Ok(())
    }

    pub fn set_schedulable(&self, name: &str, schedulable: Schedulable) -> Result<(), StoreError> {
        let value = match schedulable {
            Schedulable::Yes => "yes",
            Schedulable::Cordoned => "cordoned",
            Schedulable::Drained => "drained",
        };
        let changed = self
            .conn()
            .execute(
                "UPDATE nodes SET schedulable = ?2 WHERE name = ?1",
                params![name, value],
            )
            .map_err(query("cordoning a node"))?;
        if changed == 0 {
            return Err(StoreError::NoNode(name.to_string()));
        }
        Ok(())
    }

    /// Records a node's presence; says whether anything placement depends on changed (online
    /// state or facts). `offline_since` is kept from the first offline report on.
    pub fn record_presence(
        &self,
        name: &str,
        online: bool,
        facts: &NodeFacts,
        now_ms: u64,
    ) -> Result<bool, StoreError> {
        let Ok(before) = self.node(name) else {
            return Ok(false);
        };
        let offline_since = if online {
            None
        } else {
            Some(before.offline_since_ms.unwrap_or(now_ms))
        };
        let facts_row = write_row("nodes", name, stored::write_facts(facts))?;
        self.conn()
            .execute(
                "UPDATE nodes SET online = ?2, facts_format = ?3, facts = ?4, last_seen = ?5, offline_since = ?6 \
                 WHERE name = ?1",
                params![
                    name,
                    online,
                    facts_row.format,
                    facts_row.bytes,
                    to_i64(now_ms),
                    offline_since.map(to_i64)
                ],
            )
            .map_err(query("recording presence"))?;
        Ok(before.online != online || before.facts.as_ref() != Some(facts))
    }

    /// Marks every node offline, keeping the time a node already offline went offline (the
    /// others count from `now_ms`). Called when the hub starts.
    pub fn mark_all_offline(&self, now_ms: u64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "UPDATE nodes SET online = 0, offline_since = COALESCE(offline_since, ?1)",
                [to_i64(now_ms)],
            )
            .map_err(query("resetting presence"))?;
        Ok(())
    }

    // ---- placement and desired state ----

    pub fn placement(&self) -> Result<Placement, StoreError> {
        Self::read_placement(&self.conn())
    }

    fn read_placement(conn: &Connection) -> Result<Placement, StoreError> {
        let mut statement = conn
            .prepare("SELECT workload, node FROM placement")
            .map_err(query("reading the placement"))?;
        let rows = statement
            .query_map([], |row| Ok((row.get::<_, String>(0)?, row.get(1)?)))
            .map_err(query("reading the placement"))?;
        let mut placement = Placement::new();
        for row in rows {
            let (workload, node) = row.map_err(query("reading the placement"))?;
            placement.entry(workload).or_default().insert(node);
        }
        Ok(placement)
    }

    pub fn set_placement(&self, placement: &Placement) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let failed = query("saving the placement");
        let tx = conn.transaction().map_err(failed)?;
        tx.execute("DELETE FROM placement", []).map_err(failed)?;
        for (workload, nodes) in placement {
            for node in nodes {
                tx.execute(
                    "INSERT INTO placement (workload, node) VALUES (?1, ?2)",
                    params![workload, node],
                )
                .map_err(failed)?;
            }
        }
        tx.commit().map_err(failed)
    }

    pub fn node_desired(&self) -> Result<BTreeMap<String, NodeDesired>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare("SELECT node, generation, digest, payload, signing_keys FROM node_desired")
            .map_err(query("reading desired states"))?;
        let rows = statement
            .query_map([], |row| {
                Ok(NodeDesired {
                    node: row.get(0)?,
                    generation: to_u64(row.get(1)?),
                    digest: row.get(2)?,
                    payload: row.get(3)?,
                    signing_keys: row
                        .get::<_, String>(4)?
                        .split(',')
                        .filter(|id| !id.is_empty())
                        .map(str::to_string)
                        .collect(),
                })
            })
            .map_err(query("reading desired states"))?;
        rows.map(|r| r.map(|d| (d.node.clone(), d)))
            .collect::<Result<_, _>>()
            .map_err(query("reading desired states"))
    }

    pub fn save_node_desired(&self, desired: &NodeDesired, now_ms: u64) -> Result<(), StoreError> {
        self.conn()
            .execute(
                "INSERT OR REPLACE INTO node_desired (node, generation, digest, payload, updated_at, signing_keys) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    desired.node,
                    to_i64(desired.generation),
                    desired.digest,
                    desired.payload,
                    to_i64(now_ms),
                    desired.signing_keys.join(",")
                ],
            )
            .map_err(query("saving a desired state"))?;
        Ok(())
    }

    // ---- what nodes report ----

    /// Stores a node's status, as [`admission::admit`] decides: kept as the newest (with its
    /// events, once each however often the status is resent), only its events (an older
    /// status), or nothing (refused: then a `status-refused` event of the hub's own says so,
    /// at most one per node every [`REFUSAL_EVENT_EVERY_MS`]). Marks the node seen unless the
    /// status was refused.
    pub fn record_status(
        &self,
        name: &str,
        status: &NodeStatus,
        now_ms: u64,
    ) -> Result<Admission, StoreError> {
        let mut conn = self.conn();
        let failed = query("recording a status");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let kept = tx
            .query_row(
                "SELECT sequence, received_at FROM node_status WHERE node = ?1",
                [name],
                |row| {
                    Ok(Kept {
                        sequence: to_u64(row.get(0)?),
                        received_at_ms: to_u64(row.get(1)?),
                    })
                },
            )
            .optional()
            .map_err(failed)?;
        let published: i64 = tx
            .query_row(
                "SELECT generation FROM node_desired WHERE node = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed)?
            .unwrap_or(0);
        let claim = Claim {
            sequence: status.sequence,
            observed_generation: status.observed_generation,
            published_generation: to_u64(published),
        };
        let admission = admission::admit(kept, claim, now_ms);
        if let Admission::Refused(refusal) = admission {
            record_refusal(&tx, name, &refusal.to_string(), now_ms)?;
            tx.commit().map_err(failed)?;
            return Ok(admission);
        }
        for event in &status.events {
            let row = format!("{name}#{}", event.sequence);
            let payload = write_row("events", &row, stored::write_event(event))?;
            tx.execute(
                "INSERT OR IGNORE INTO events (node, sequence, workload, at, payload_format, payload) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    name,
                    to_i64(event.sequence),
                    event.workload,
                    to_i64(event.at_ms),
                    payload.format,
                    payload.bytes
                ],
            )
            .map_err(failed)?;
        }
        if admission != Admission::Older {
            let mut snapshot = status.clone();
            snapshot.events.clear();
            let payload = write_row("node_status", name, stored::write_status(&snapshot))?;
            tx.execute(
                "INSERT OR REPLACE INTO node_status (node, sequence, payload_format, payload, received_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    name,
                    to_i64(status.sequence),
                    payload.format,
                    payload.bytes,
                    to_i64(now_ms)
                ],
            )
            .map_err(failed)?;
        }
        tx.execute(
            "UPDATE nodes SET last_seen = ?2 WHERE name = ?1",
            params![name, to_i64(now_ms)],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(admission)
    }

    /// The newest status of every node that reported one.
    pub fn statuses(&self) -> Result<BTreeMap<String, NodeStatus>, StoreError> {
        Self::read_statuses(&self.conn())
    }

    fn read_statuses(conn: &Connection) -> Result<BTreeMap<String, NodeStatus>, StoreError> {
        let mut statement = conn
            .prepare("SELECT node, payload_format, payload FROM node_status")
            .map_err(query("reading statuses"))?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, Vec<u8>>(2)?,
                ))
            })
            .map_err(query("reading statuses"))?;
        let mut out = BTreeMap::new();
        for row in rows {
            let (node, format, payload) = row.map_err(query("reading statuses"))?;
            let status = read_row("node_status", &node, stored::read_status(format, &payload))?;
            out.insert(node, status);
        }
        Ok(out)
    }

    /// The newest `limit` events of a node and/or a workload, oldest first.
    pub fn events(
        &self,
        node: Option<&str>,
        workload: Option<&str>,
        limit: u32,
    ) -> Result<Vec<StoredEvent>, StoreError> {
        let conn = self.conn();
        let mut statement = conn
            .prepare(
                "SELECT node, sequence, payload_format, payload FROM events \
                 WHERE (?1 IS NULL OR node = ?1) AND (?2 IS NULL OR workload = ?2) \
                 ORDER BY at DESC, id DESC LIMIT ?3",
            )
            .map_err(query("reading events"))?;
        let rows = statement
            .query_map(params![node, workload, limit], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, i64>(1)?,
                    row.get::<_, i64>(2)?,
                    row.get::<_, Vec<u8>>(3)?,
                ))
            })
            .map_err(query("reading events"))?;
        let mut out = Vec::new();
        for row in rows {
            let (node, sequence, format, payload) = row.map_err(query("reading events"))?;
            let read = stored::read_event(format, &payload);
            let event = read_row("events", &format!("{node}#{sequence}"), read)?;
            out.push(StoredEvent { node, event });
        }
        out.reverse();
        Ok(out)
    }
}

/// The least time between two `status-refused` events of one node: a node that keeps sending
/// what the hub refuses must not flood the event log (the hub's log has every refusal).
pub const REFUSAL_EVENT_EVERY_MS: u64 = 60_000;

/// Records the hub's own `status-refused` event for `node`, unless it recorded one less than
/// [`REFUSAL_EVENT_EVERY_MS`] ago. The hub's events are numbered below zero, apart from the
/// node's own numbering (which starts at 1), and carry the hub's clock.
fn record_refusal(
    tx: &rusqlite::Transaction<'_>,
    node: &str,
    message: &str,
    now_ms: u64,
) -> Result<(), StoreError> {
    let failed = query("recording a refused status");
    let (lowest, last_at): (Option<i64>, Option<i64>) = tx
        .query_row(
            "SELECT MIN(sequence), MAX(at) FROM events WHERE node = ?1 AND sequence < 0",
            [node],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .map_err(failed)?;
    if last_at.is_some_and(|at| now_ms.saturating_sub(to_u64(at)) < REFUSAL_EVENT_EVERY_MS) {
        return Ok(());
    }
    let event = Event {
        sequence: 0,
        at_ms: now_ms,
        severity: Severity::Warning,
        workload: None,
        container: None,
        reason: EventReason::StatusRefused,
        message: message.to_string(),
    };
    let sequence = lowest.unwrap_or(0).min(0) - 1;
    let row = format!("{node}#{sequence}");
    let payload = write_row("events", &row, stored::write_event(&event))?;
    tx.execute(
        "INSERT INTO events (node, sequence, workload, at, payload_format, payload) \
         VALUES (?1, ?2, NULL, ?3, ?4, ?5)",
        params![
            node,
            sequence,
            to_i64(now_ms),
            payload.format,
            payload.bytes
        ],
    )
    .map_err(failed)?;
    Ok(())
}

/// A label set as the `labels` columns hold it (JSON).
fn labels_text(labels: &BTreeMap<String, String>) -> Result<String, StoreError> {
    serde_json::to_string(labels).map_err(|e| StoreError::Decode {
        what: "label set",
        reason: e.to_string(),
    })
}

/// A `labels` column's label set; `what` names whose it is.
fn labels_of(text: &str, what: &'static str) -> Result<BTreeMap<String, String>, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Decode {
        what,
        reason: e.to_string(),
    })
}

fn query(what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + Copy {
    move |source| StoreError::Query { what, source }
}

/// A stored row read in its format, or an error naming the table and the row.
fn read_row<T>(
    table: &'static str,
    row: &str,
    read: Result<T, RecordError>,
) -> Result<T, StoreError> {
    read.map_err(|cause| StoreError::Row {
        table,
        row: row.to_string(),
        cause,
    })
}

/// A row to store, in the current format.
fn write_row(
    table: &'static str,
    row: &str,
    written: Result<Row, RecordError>,
) -> Result<Row, StoreError> {
    read_row(table, row, written)
}

fn to_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn to_u64(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
