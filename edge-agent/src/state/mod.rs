//! The agent's durable state: one SQLite file in the data dir holding the desired state it
//! last accepted, the containers it runs, its bounded event log and the outbox of messages
//! for the hub. It is what lets the agent heal itself with no link to the hub.
//!
//! Flash wear matters on devices: the database runs in WAL mode with `synchronous=NORMAL`
//! (a power cut can lose the last transactions, never corrupt the file), and callers batch
//! their writes instead of writing on every tick.

mod migrations;
mod outbox;
mod records;

#[cfg(test)]
mod released;
#[cfg(test)]
mod tests;

use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

pub use migrations::{Migrated, MIGRATIONS};
pub use outbox::{OutboxMessage, ReportCursor};
pub use records::{ContainerRecord, Source};

/// The database file's name inside the data dir.
pub const DB_FILE: &str = "agent.db";

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the data dir {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database {path}")]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot set {setting} on the database {path}")]
    Configure {
        path: PathBuf,
        setting: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "the database {path} cannot use WAL journaling (SQLite chose {mode}): \
         put the data dir on a local filesystem"
    )]
    NoWal { path: PathBuf, mode: String },
    #[error(
        "the database {path} has schema version {found}, newer than the {supported} this \
         shoal-agent knows: it was written by a newer agent; run that version again, or move \
         the file away to start with an empty state"
    )]
    NewerSchema {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error("migration {version} ({name}) failed on {path}; the database stays at version {}", version - 1)]
    Migrate {
        path: PathBuf,
        version: u32,
        name: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("cannot encode the {what}: {reason}")]
    Encode { what: &'static str, reason: String },
    #[error("the stored {what} cannot be decoded ({reason}): it was written by another agent version or damaged")]
    Decode { what: &'static str, reason: String },
    #[error("cannot read {what} from {path}")]
    Query {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: rusqlite::Error,
    },
}

/// An open, configured and migrated agent database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    migrated: Migrated,
}

impl Store {
    /// Opens (creating if needed) `DB_FILE` in `data_dir` and migrates it to this binary's
    /// schema.
    pub fn open(data_dir: &Path) -> Result<Self, StateError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(|source| StateError::CreateDir {
                path: data_dir.to_owned(),
                source,
            })?;
        Self::open_file(&data_dir.join(DB_FILE), MIGRATIONS)
    }

    fn open_file(path: &Path, migrations: &[migrations::Migration]) -> Result<Self, StateError> {
        tracing::debug!(path = %path.display(), "opening database");
        let mut conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|source| StateError::Open {
            path: path.to_owned(),
            source,
        })?;
        configure(&conn, path)?;
        let migrated = migrations::migrate(&mut conn, path, migrations)?;
        Ok(Store {
            conn,
            path: path.to_owned(),
            migrated,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema versions the database went through when it was opened.
    pub fn migrated(&self) -> Migrated {
        self.migrated
    }

    /// The journal mode in force (`wal` once opened).
    pub fn journal_mode(&self) -> Result<String, StateError> {
        self.conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .map_err(|source| self.query_failed("the journal mode", source))
    }

    /// Runs SQLite's `PRAGMA integrity_check`: an empty list means the file is sound,
    /// otherwise each entry describes one problem.
    pub fn integrity_problems(&self) -> Result<Vec<String>, StateError> {
        let failed = |source| self.query_failed("the integrity check", source);
        let mut statement = self
            .conn
            .prepare("PRAGMA integrity_check")
            .map_err(failed)?;
        let lines = statement
            .query_map([], |row| row.get::<_, String>(0))
            .map_err(failed)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(failed)?;
        Ok(lines.into_iter().filter(|line| line != "ok").collect())
    }

    fn query_failed(&self, what: &'static str, source: rusqlite::Error) -> StateError {
        StateError::Query {
            path: self.path.clone(),
            what,
            source,
        }
    }
}

/// Per-connection settings: WAL with `synchronous=NORMAL` for few flash writes, a busy
/// timeout for the rare second connection, and enforced foreign keys.
fn configure(conn: &Connection, path: &Path) -> Result<(), StateError> {
    let failed = |setting| {
        move |source| StateError::Configure {
            path: path.to_owned(),
            setting,
            source,
        }
    };
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(failed("busy_timeout"))?;
    let mode: String = conn
        .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        .map_err(failed("journal_mode"))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StateError::NoWal {
            path: path.to_owned(),
            mode,
        });
    }
    conn.pragma_update(None, "synchronous", "NORMAL")
        .map_err(failed("synchronous"))?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(failed("foreign_keys"))?;
    Ok(())
}
