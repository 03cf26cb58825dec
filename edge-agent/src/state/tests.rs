//! Component tests on real SQLite files in a temporary directory.

use super::migrations::{latest_version, Migration};
use super::*;

const TABLES: &[&str] = &[
    "containers",
    "desired_state",
    "events",
    "hub_keys",
    "meta",
    "outbox",
];

fn tables(store: &Store) -> Vec<String> {
    let mut statement = store
        .conn
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
        .expect("prepare");
    statement
        .query_map([], |row| row.get(0))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn count(store: &Store, table: &str) -> i64 {
    store
        .conn
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |row| {
            row.get(0)
        })
        .expect("count")
}

fn set_user_version(path: &Path, version: u32) {
    let conn = Connection::open(path).expect("open raw");
    conn.pragma_update(None, "user_version", version)
        .expect("set user_version");
}

fn raw_user_version(path: &Path) -> u32 {
    let conn = Connection::open(path).expect("open raw");
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .expect("user_version")
}

#[test]
fn an_empty_data_dir_gets_every_table_at_the_latest_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("nested/data");

    let store = Store::open(&data_dir).expect("open");

    let latest = latest_version(MIGRATIONS);
    assert_eq!(
        store.migrated(),
        Migrated {
            from: 0,
            to: latest
        }
    );
    assert_eq!(store.path(), data_dir.join(DB_FILE));
    assert_eq!(tables(&store), TABLES);
    assert_eq!(raw_user_version(&data_dir.join(DB_FILE)), latest);
    assert!(store
        .integrity_problems()
        .expect("integrity check")
        .is_empty());
}

#[test]
fn the_database_runs_in_wal_mode_with_normal_sync_and_a_busy_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");

    assert_eq!(store.journal_mode().expect("journal mode"), "wal");
    let synchronous: i64 = store
        .conn
        .pragma_query_value(None, "synchronous", |row| row.get(0))
        .expect("synchronous");
    assert_eq!(synchronous, 1, "1 is NORMAL");
    let timeout: i64 = store
        .conn
        .pragma_query_value(None, "busy_timeout", |row| row.get(0))
        .expect("busy_timeout");
    assert_eq!(timeout, 5000);
}

#[test]
fn reopening_a_migrated_database_keeps_its_rows_and_version() {
    let dir = tempfile::tempdir().expect("tempdir");
    let latest = latest_version(MIGRATIONS);
    {
        let store = Store::open(dir.path()).expect("first open");
        store
            .conn
            .execute(
                "INSERT INTO desired_state (generation, source, payload, received_at) \
                 VALUES (7, 'hub', x'00ff', 1700000000000)",
                [],
            )
            .expect("insert");
    }

    let store = Store::open(dir.path()).expect("second open");

    assert_eq!(
        store.migrated(),
        Migrated {
            from: latest,
            to: latest
        }
    );
    assert_eq!(count(&store, "desired_state"), 1);
    assert_eq!(tables(&store), TABLES);
}

#[test]
fn a_database_from_a_newer_agent_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB_FILE);
    drop(Store::open(dir.path()).expect("create"));
    let newer = latest_version(MIGRATIONS) + 1;
    set_user_version(&path, newer);

    let err = Store::open(dir.path()).expect_err("a newer schema must be refused");

    assert!(
        matches!(err, StateError::NewerSchema { found, supported, .. }
            if found == newer && supported == newer - 1),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&format!("schema version {newer}")),
        "{message}"
    );
    assert!(
        message.contains("newer shoal-agent") || message.contains("newer agent"),
        "{message}"
    );
    assert_eq!(raw_user_version(&path), newer);
}

#[test]
fn a_failing_migration_leaves_the_previous_version_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB_FILE);
    let migrations = [
        Migration {
            name: "first",
            sql: "CREATE TABLE a (x INTEGER) STRICT;",
        },
        Migration {
            name: "broken second",
            sql: "CREATE TABLE b (x INTEGER) STRICT; INSERT INTO no_such_table VALUES (1);",
        },
    ];

    let err = Store::open_file(&path, &migrations).expect_err("second migration fails");

    assert!(
        matches!(
            err,
            StateError::Migrate {
                version: 2,
                name: "broken second",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("stays at version 1"), "{err}");
    assert_eq!(raw_user_version(&path), 1);
    let store = Store::open_file(&path, &migrations[..1]).expect("reopen at version 1");
    assert_eq!(tables(&store), ["a"], "table b was rolled back");
}

#[test]
fn migrations_apply_only_the_steps_a_database_is_missing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(DB_FILE);
    let migrations = [
        Migration {
            name: "first",
            sql: "CREATE TABLE a (x INTEGER) STRICT;",
        },
        Migration {
            name: "second",
            sql: "CREATE TABLE b (x INTEGER) STRICT;",
        },
    ];
    drop(Store::open_file(&path, &migrations[..1]).expect("at version 1"));

    let store = Store::open_file(&path, &migrations).expect("to version 2");

    assert_eq!(store.migrated(), Migrated { from: 1, to: 2 });
    assert_eq!(tables(&store), ["a", "b"]);
}

#[test]
fn events_and_outbox_keep_only_their_newest_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .conn
        .execute_batch(
            "UPDATE meta SET value = '3' WHERE key IN ('events_max_rows', 'outbox_max_rows');",
        )
        .expect("shrink bounds");

    for i in 0..5 {
        store
            .conn
            .execute(
                "INSERT INTO events (at, severity, reason, message) VALUES (?1, 'info', 'Test', 'event')",
                [i],
            )
            .expect("insert event");
        store
            .conn
            .execute(
                "INSERT INTO outbox (topic, payload, created_at) VALUES ('t', x'01', ?1)",
                [i],
            )
            .expect("insert outbox");
    }

    for table in ["events", "outbox"] {
        assert_eq!(count(&store, table), 3, "{table}");
        let oldest: i64 = store
            .conn
            .query_row(&format!("SELECT min(id) FROM {table}"), [], |row| {
                row.get(0)
            })
            .expect("min id");
        assert_eq!(oldest, 3, "{table} kept the newest rows");
    }
}

#[test]
fn an_unwritable_data_dir_is_reported_with_its_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").expect("write");

    let err = Store::open(&file.join("data")).expect_err("a file is in the way");

    assert!(matches!(err, StateError::CreateDir { .. }), "{err:?}");
    assert!(err.to_string().contains("not-a-dir"), "{err}");
}
