//! The agent's durable state: one SQLite file in the data dir holding the desired state it
//! last accepted, the containers it runs, its bounded event log and the outbox of messages
//! for the hub. It is what lets the agent heal itself with no link to the hub.
//!
//! Flash wear matters on devices: the database runs in WAL mode with `synchronous=NORMAL`
//! (a power cut can lose the last transactions, never corrupt the file), and callers batch
//! their writes instead of writing on every tick. What the agent accepts and answers for is
//! the exception: a desired state (the local `apply` says it is created, the hub's status says
//! it runs) and the hub keys it trusts are committed with `synchronous=FULL`, so the WAL is
//! on the disk before the agent acts on them. Without that, a power cut within the kernel's
//! writeback delay (30 s) after an apply brought the device back on the previous generation
//! (seen in the VM test, `tests/tests/vm.rs`); records of containers, events and the outbox
//! are rebuilt, re-sent or reported again, so losing their last seconds loses nothing
//! acknowledged.
//!
//! # A full disk
//!
//! The agent must come up and run what it last accepted also when the data disk is full (an
//! SD card that filled up, then a power cut). Reading needs no free space, with one catch:
//! SQLite's default VFS keeps WAL mode's index in a shared-memory file (`agent.db-shm`) that
//! the first connection truncates and extends again by writing to it, and on a full disk that
//! fails with "disk I/O error" (`SQLITE_IOERR_SHMSIZE`) before a single row is read (after a
//! clean stop the file is gone and needs 32 KiB anew; after a crash, whoever filled the disk
//! may take the space its truncation frees). When that happens, [`Store::open`] opens the file
//! again through SQLite's `unix-excl` VFS: the process takes an exclusive lock on the database
//! and the WAL index lives in its heap, with no `-shm` file at all; every later connection of
//! the process to that file (the hub link's) does the same and shares that index. Until the
//! agent restarts, no other process can open the database then (`selftest` and `enroll` say
//! so); otherwise other processes may read it beside the agent, as WAL allows. The file format
//! is the same either way.
//!
//! Writes on a full disk fail with SQLite's `SQLITE_FULL` and change nothing (each is one
//! transaction); [`StateError`] says the disk is full and what to do. [`disk`] keeps a
//! reserve on the data disk that the agent gives up when the disk fills, so that its own
//! writes (the event saying so, statuses for the hub, a delete) still fit.

pub mod disk;
mod migrations;
mod outbox;
mod records;
mod trials;

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
pub use trials::TrialRecord;

/// The database file's name inside the data dir.
pub const DB_FILE: &str = "agent.db";

/// How long a statement waits for another connection's lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// SQLite's VFS that keeps the WAL index in the heap instead of a `-shm` file (see the module
/// doc: opening then needs no free space).
const EXCLUSIVE_VFS: &str = "unix-excl";

/// The database files this process opened through [`EXCLUSIVE_VFS`]: every later connection
/// of the process to one of them must use it too (one WAL index per file and process).
static EXCLUSIVE: std::sync::Mutex<std::collections::BTreeSet<PathBuf>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// What went wrong with the agent's database. Every message names the file and says why in
/// words an operator can act on (a full disk, another process holding the file, damage).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot create the data dir {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the database {path}: {}", explain(.cause))]
    Open {
        path: PathBuf,
        cause: rusqlite::Error,
    },
    #[error("cannot set {setting} on the database {path}: {}", explain(.cause))]
    Configure {
        path: PathBuf,
        setting: &'static str,
        cause: rusqlite::Error,
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
    #[error(
        "migration {version} ({name}) failed on {path}: {}; the database stays at version {}",
        explain(.cause),
        version - 1
    )]
    Migrate {
        path: PathBuf,
        version: u32,
        name: &'static str,
        cause: rusqlite::Error,
    },
    #[error("cannot encode the {what}: {reason}")]
    Encode { what: &'static str, reason: String },
    /// A stored postcard row (see `shoal_model::wire::stored`) that cannot be read or written.
    #[error("the agent database's {table} row {row}: {cause}")]
    Row {
        table: &'static str,
        row: String,
        cause: shoal_model::wire::stored::RecordError,
    },
    /// A statement failed; `action` says what it was for (`save the desired state`).
    #[error("cannot {action} in {path}: {}", explain(.cause))]
    Query {
        path: PathBuf,
        action: &'static str,
        cause: rusqlite::Error,
    },
}

impl StateError {
    /// The error of a write refused because the disk is full, before trying it.
    pub fn disk_full(path: &Path, action: &'static str) -> StateError {
        StateError::Query {
            path: path.to_owned(),
            action,
            cause: rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            ),
        }
    }

    /// The SQLite error behind it, when there is one.
    fn cause(&self) -> Option<&rusqlite::Error> {
        match self {
            StateError::Open { cause, .. }
            | StateError::Configure { cause, .. }
            | StateError::Migrate { cause, .. }
            | StateError::Query { cause, .. } => Some(cause),
            _ => None,
        }
    }

    /// Whether another process holds the database (a running agent).
    pub fn is_busy(&self) -> bool {
        matches!(
            self.cause().and_then(rusqlite::Error::sqlite_error_code),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }

    /// Whether the default VFS could not set up WAL's shared-memory file for lack of space
    /// (or any write failed for lack of space while opening).
    fn needs_room_for_shared_memory(&self) -> bool {
        use rusqlite::ffi;
        match self.cause() {
            Some(rusqlite::Error::SqliteFailure(error, _)) => {
                error.code == rusqlite::ErrorCode::DiskFull
                    || matches!(
                        error.extended_code,
                        ffi::SQLITE_IOERR_SHMSIZE
                            | ffi::SQLITE_IOERR_SHMOPEN
                            | ffi::SQLITE_IOERR_SHMMAP
                    )
            }
            _ => false,
        }
    }

    /// Whether it failed because the disk holding the database is full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StateError::CreateDir { source, .. } => {
                source.kind() == std::io::ErrorKind::StorageFull
            }
            other => other.cause().is_some_and(is_disk_full),
        }
    }
}

/// Whether SQLite failed for lack of space (`SQLITE_FULL`: a write got ENOSPC).
fn is_disk_full(error: &rusqlite::Error) -> bool {
    error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull)
}

/// What a SQLite error means for the operator, and what to do about it.
fn explain(error: &rusqlite::Error) -> String {
    use rusqlite::ErrorCode;
    match error.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "the disk is full (no space left on device); free space, \
             e.g. `shoal-agent images prune`"
            .into(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            "another process holds the database (a running `shoal-agent run` keeps it to \
             itself): stop that process first, or use another data dir"
                .into()
        }
        Some(ErrorCode::ReadOnly) => format!(
            "the database cannot be written ({error}): check the file's permissions and that \
             its filesystem is mounted read-write"
        ),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => format!(
            "the file is damaged or not an agent database ({error}): restore a backup, or move \
             it away to start with an empty state"
        ),
        Some(ErrorCode::SystemIoFailure) => {
            format!("the storage failed ({error}): check the device (`dmesg`) and its free space")
        }
        _ => error.to_string(),
    }
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
        let exclusive = || EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner());
        if !exclusive().contains(path) {
            match Self::open_with(path, migrations, None) {
                Err(e) if e.needs_room_for_shared_memory() => {
                    tracing::warn!(
                        path = %path.display(),
                        error = %e,
                        "no room on the disk for the database's shared memory: this agent keeps \
                         the database to itself (in its own memory) until it restarts"
                    );
                    exclusive().insert(path.to_owned());
                }
                opened => return opened,
            }
        }
        Self::open_with(path, migrations, Some(EXCLUSIVE_VFS))
    }

    fn open_with(
        path: &Path,
        migrations: &[migrations::Migration],
        vfs: Option<&str>,
    ) -> Result<Self, StateError> {
        tracing::debug!(path = %path.display(), vfs, "opening database");
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = match vfs {
            Some(vfs) => Connection::open_with_flags_and_vfs(path, flags, vfs),
            None => Connection::open_with_flags(path, flags),
        }
        .map_err(|cause| StateError::Open {
            path: path.to_owned(),
            cause,
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

    /// The data dir the database is in.
    pub fn data_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("/"))
    }

    /// The schema versions the database went through when it was opened.
    pub fn migrated(&self) -> Migrated {
        self.migrated
    }

    /// The journal mode in force (`wal` once opened).
    pub fn journal_mode(&self) -> Result<String, StateError> {
        self.conn
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .map_err(|cause| self.query_failed("read the journal mode", cause))
    }

    /// Runs SQLite's `PRAGMA integrity_check`: an empty list means the file is sound,
    /// otherwise each entry describes one problem.
    pub fn integrity_problems(&self) -> Result<Vec<String>, StateError> {
        let failed = |cause| self.query_failed("run the integrity check", cause);
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

    /// The error of a statement run to `action` (`save the desired state`).
    fn query_failed(&self, action: &'static str, cause: rusqlite::Error) -> StateError {
        StateError::Query {
            path: self.path.clone(),
            action,
            cause,
        }
    }
}

/// While alive, the store's connection commits with `synchronous=FULL`; dropped, it is back
/// to `NORMAL`.
pub(crate) struct Durable<'a> {
    conn: &'a Connection,
}

impl Store {
    /// Makes the transactions until the guard is dropped durable at commit: WAL mode with
    /// `synchronous=FULL` syncs the WAL before a commit returns, `NORMAL` only at checkpoints.
    pub(crate) fn durable(&self) -> Result<Durable<'_>, StateError> {
        self.conn
            .pragma_update(None, "synchronous", "FULL")
            .map_err(|cause| StateError::Configure {
                path: self.path.clone(),
                setting: "synchronous",
                cause,
            })?;
        Ok(Durable { conn: &self.conn })
    }
}

impl Drop for Durable<'_> {
    fn drop(&mut self) {
        if let Err(e) = self.conn.pragma_update(None, "synchronous", "NORMAL") {
            tracing::warn!(error = %e, "cannot set synchronous=NORMAL again; commits stay synced");
        }
    }
}

/// Per-connection settings: WAL with `synchronous=NORMAL` for few flash writes, a busy
/// timeout for the rare second connection, and enforced foreign keys.
fn configure(conn: &Connection, path: &Path) -> Result<(), StateError> {
    let failed = |setting| {
        move |cause| StateError::Configure {
            path: path.to_owned(),
            setting,
            cause,
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
