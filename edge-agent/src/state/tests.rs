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
    "trials",
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
fn accepted_desired_states_and_keys_commit_with_full_sync_and_the_rest_with_normal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let synchronous = |store: &Store| -> i64 {
        store
            .conn
            .pragma_query_value(None, "synchronous", |row| row.get(0))
            .expect("synchronous")
    };
    {
        let _durable = store.durable().expect("durable");
        assert_eq!(synchronous(&store), 2, "2 is FULL");
    }
    assert_eq!(synchronous(&store), 1, "back to NORMAL");
    store
        .save_desired(Source::Hub, 7, &[], &[], &[], 1)
        .expect("save");
    store.forget_hub_generation().expect("forget");
    store.set_trusted_keys(&[], 1).expect("keys");
    assert_eq!(synchronous(&store), 1, "NORMAL between durable commits");
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

fn container(id: &str) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        workload: "app".into(),
        name: "main".into(),
        image: "busybox".into(),
        spec_hash: "h".into(),
        restarts: 2,
        crash_streak: 0,
        oom_kills: 0,
        last_exit: None,
        stop_grace: None,
    }
}

fn event(message: &str) -> shoal_model::wire::Event {
    shoal_model::wire::Event {
        sequence: 0,
        at_ms: 1,
        severity: shoal_model::wire::Severity::Info,
        workload: None,
        container: None,
        reason: shoal_model::wire::EventReason::Started,
        message: message.into(),
    }
}

const FULL: &str =
    "the disk is full (no space left on device); free space, e.g. `shoal-agent images prune`";

#[test]
fn on_a_full_disk_the_database_opens_reads_all_it_holds_and_refuses_writes_saying_why() {
    let disk = crate::testing::SmallDisk::mount(2);
    let data = disk.path().join("data");
    let path = data.join(DB_FILE);
    {
        let store = Store::open(&data).expect("open");
        store
            .save_desired(Source::Local, 3, &[], &[], &[], 1)
            .expect("desired");
        store
            .save_container(&container("app.main"), 1)
            .expect("container");
        store.record_event(&event("before")).expect("event");
    }
    disk.fill();

    // The root of "disk I/O error" on restart: SQLite's default VFS must write its -shm file.
    let default_vfs = Connection::open(&path).expect("open with the default VFS");
    let err = default_vfs
        .query_row("SELECT count(*) FROM containers", [], |row| {
            row.get::<_, i64>(0)
        })
        .expect_err("the default VFS needs space for its shared memory");
    assert_eq!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::SystemIoFailure),
        "{err}"
    );
    drop(default_vfs);

    let store = Store::open(&data).expect("opens on a full disk");
    assert!(
        EXCLUSIVE.lock().expect("lock").contains(&path),
        "with no room for the -shm file, the WAL index is in this process"
    );
    // The hub link's connection shares it.
    let second = Store::open(&data).expect("a second connection of the agent");
    assert_eq!(
        store.latest_desired(Source::Local).expect("read"),
        Some((3, vec![]))
    );
    assert_eq!(store.containers().expect("read"), [container("app.main")]);
    assert_eq!(store.recent_events(10).expect("read")[0].message, "before");
    let err = store
        .save_desired(Source::Local, 4, &[], &[], &[], 2)
        .expect_err("no room");
    assert!(err.is_disk_full(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot save the desired state in {}: {FULL}",
            path.display()
        )
    );
    let err = store
        .save_container(&container("app.side"), 2)
        .expect_err("no room");
    assert_eq!(
        err.to_string(),
        format!(
            "cannot save a container record in {}: {FULL}",
            path.display()
        )
    );
    assert!(store.record_event(&event("during")).is_err());
    let cursor = store.report_cursor().expect("cursor");
    assert!(store
        .push_outbox(
            &[OutboxMessage {
                topic: "t".into(),
                payload: vec![1],
                events: 1
            }],
            9,
            9,
            (0, 0),
            2
        )
        .is_err());

    // Nothing stored changed, and with room again writes work.
    assert_eq!(
        store.latest_desired(Source::Local).expect("read"),
        Some((3, vec![]))
    );
    assert_eq!(store.containers().expect("read"), [container("app.main")]);
    assert_eq!(store.report_cursor().expect("cursor"), cursor);
    assert_eq!(store.outbox_len().expect("outbox"), 0);
    disk.unfill();
    store
        .save_desired(Source::Local, 4, &[], &[], &[], 3)
        .expect("room again");
    assert_eq!(
        store.latest_desired(Source::Local).expect("read"),
        Some((4, vec![]))
    );
    assert_eq!(
        second.latest_desired(Source::Local).expect("read"),
        Some((4, vec![])),
        "both connections see one database"
    );
    assert!(store.integrity_problems().expect("check").is_empty());
}

#[test]
fn with_room_on_the_disk_other_connections_read_the_database_beside_the_agent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.record_event(&event("one")).expect("write");
    let reader = Connection::open_with_flags(
        dir.path().join(DB_FILE),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .expect("open read-only");
    let count: i64 = reader
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .expect("read beside the agent");
    assert_eq!(count, 1);
    assert!(!EXCLUSIVE
        .lock()
        .expect("lock")
        .contains(&dir.path().join(DB_FILE)));
}

#[test]
fn sqlite_errors_are_explained_in_words_an_operator_can_act_on() {
    use rusqlite::ffi;
    let path = Path::new("/var/lib/shoal/agent.db");
    let failed = |code| StateError::Query {
        path: path.to_owned(),
        action: "record an event",
        cause: rusqlite::Error::SqliteFailure(ffi::Error::new(code), None),
    };
    let cases = [
        (ffi::SQLITE_FULL, FULL),
        (ffi::SQLITE_BUSY, "another process holds the database"),
        (ffi::SQLITE_READONLY, "mounted read-write"),
        (ffi::SQLITE_CORRUPT, "restore a backup, or move it away"),
        (ffi::SQLITE_NOTADB, "restore a backup, or move it away"),
        (ffi::SQLITE_IOERR, "check the device"),
    ];
    for (code, words) in cases {
        let message = failed(code).to_string();
        assert!(
            message.starts_with("cannot record an event in /var/lib/shoal/agent.db: ")
                && message.contains(words),
            "{code}: {message}"
        );
    }
    assert!(failed(ffi::SQLITE_FULL).is_disk_full());
    assert!(!failed(ffi::SQLITE_BUSY).is_disk_full());
    assert!(failed(ffi::SQLITE_BUSY).is_busy());
    assert_eq!(
        StateError::disk_full(path, "save the desired state").to_string(),
        format!("cannot save the desired state in /var/lib/shoal/agent.db: {FULL}")
    );
}

#[test]
fn revisions_on_trial_are_replaced_with_the_hubs_desired_state_and_a_failure_survives_reopening() {
    use shoal_model::rollout::Failure;
    use shoal_model::wire::DesiredWorkload;

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let previous = |name: &str| {
        let text = format!(
            "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  containers: [{{ name: main, image: localhost/busybox:test }}]\n"
        );
        let (mut w, diagnostics) =
            shoal_model::manifest::parse_manifest(Path::new("t.yaml"), &text);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        DesiredWorkload {
            workload: w.remove(0).workload,
            revision: 1,
        }
    };
    let trial = |name: &str| crate::state::TrialRecord {
        workload: name.into(),
        revision: 2,
        previous: previous(name),
        failed: None,
    };
    store
        .save_desired(Source::Hub, 3, &[], &[], &[trial("web"), trial("db")], 1)
        .expect("save");
    store
        .fail_trial("web", 2, Failure::Restarting, 5)
        .expect("fail");
    // Another revision is not touched.
    store
        .fail_trial("db", 7, Failure::Crashed, 5)
        .expect("no row");
    drop(store);
    let store = Store::open(dir.path()).expect("reopen");
    let read = store.trials().expect("read");
    assert_eq!(
        read,
        vec![
            trial("db"),
            crate::state::TrialRecord {
                failed: Some(Failure::Restarting),
                ..trial("web")
            }
        ]
    );
    store.end_trial("db", 2).expect("end");
    assert_eq!(store.trials().expect("read").len(), 1);
    // The next hub state replaces them all; a local one leaves them alone.
    store
        .save_desired(Source::Local, 1, &[], &[], &[], 1)
        .expect("save local");
    assert_eq!(store.trials().expect("read").len(), 1);
    store
        .save_desired(Source::Hub, 4, &[], &[], &[], 1)
        .expect("save hub");
    assert!(store.trials().expect("read").is_empty());
    // A damaged row is refused with its table and workload, not dropped.
    store
        .save_desired(Source::Hub, 5, &[], &[], &[trial("web")], 1)
        .expect("save");
    store
        .conn
        .execute("UPDATE trials SET previous = x'00'", [])
        .expect("damage");
    let error = store.trials().expect_err("damaged").to_string();
    assert!(error.contains("trials row web"), "{error}");
}
