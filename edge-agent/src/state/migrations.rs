//! Schema migrations keyed on SQLite's `PRAGMA user_version`: migration `i` (counting from 1)
//! brings a database from version `i - 1` to `i`. Each runs in its own immediate transaction
//! together with the version bump, so a crash or a failing migration leaves the previous
//! version intact, and two processes opening the same file cannot both apply it.
//!
//! Migrations are append-only: never edit one that has shipped, add the next.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use super::StateError;

/// One step of the schema.
#[derive(Clone, Copy, Debug)]
pub struct Migration {
    /// What it does, for error messages.
    pub name: &'static str,
    pub sql: &'static str,
}

/// The agent's schema, oldest first.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "initial agent state",
        sql: include_str!("migrations/0001_initial.sql"),
    },
    Migration {
        name: "supervisor records",
        sql: include_str!("migrations/0002_supervisor.sql"),
    },
    Migration {
        name: "hub outbox",
        sql: include_str!("migrations/0003_hub_outbox.sql"),
    },
    Migration {
        name: "hub signing keys",
        sql: include_str!("migrations/0004_hub_keys.sql"),
    },
    Migration {
        name: "stop grace periods",
        sql: include_str!("migrations/0005_stop_grace.sql"),
    },
    Migration {
        name: "stored formats",
        sql: include_str!("migrations/0006_formats.sql"),
    },
    Migration {
        name: "revisions on trial",
        sql: include_str!("migrations/0007_trials.sql"),
    },
];

/// The schema version this binary writes.
pub fn latest_version(migrations: &[Migration]) -> u32 {
    // A schema with more than u32::MAX migrations cannot be written down.
    u32::try_from(migrations.len()).unwrap_or(u32::MAX)
}

/// The versions a database went through when it was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Migrated {
    pub from: u32,
    pub to: u32,
}

/// Brings the database up to the newest version in `migrations`, refusing one that is newer
/// than that (written by a newer agent: downgrading it could lose data).
pub fn migrate(
    conn: &mut Connection,
    path: &Path,
    migrations: &[Migration],
) -> Result<Migrated, StateError> {
    let latest = latest_version(migrations);
    let from = user_version(conn, path)?;
    check_not_newer(from, latest, path)?;
    for (index, migration) in migrations.iter().enumerate().skip(from as usize) {
        let version = latest_version(&migrations[..=index]);
        let failed = |cause| StateError::Migrate {
            path: path.to_owned(),
            version,
            name: migration.name,
            cause,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        // Another process may have migrated while this one waited for the lock.
        let current = user_version(&tx, path)?;
        check_not_newer(current, latest, path)?;
        if current >= version {
            continue;
        }
        tx.execute_batch(migration.sql).map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(path = %path.display(), version, name = migration.name, "database migrated");
    }
    Ok(Migrated {
        from,
        to: user_version(conn, path)?,
    })
}

fn check_not_newer(found: u32, supported: u32, path: &Path) -> Result<(), StateError> {
    if found > supported {
        return Err(StateError::NewerSchema {
            path: path.to_owned(),
            found,
            supported,
        });
    }
    Ok(())
}

pub fn user_version(conn: &Connection, path: &Path) -> Result<u32, StateError> {
    conn.pragma_query_value(None, "user_version", |row| row.get::<_, u32>(0))
        .map_err(|cause| StateError::Query {
            path: path.to_owned(),
            action: "read the schema version",
            cause,
        })
}
