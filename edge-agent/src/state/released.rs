//! What released agents stored, read by this one. Each `tests/fixtures/VERSION/agent-*.db`
//! was written by release VERSION's own binaries running real containers
//! (`tests/fixtures/make VERSION`; see the README beside them). A copy is opened here with
//! today's code, as an agent upgraded in place opens its data dir.
//!
//! When one of these tests fails, this agent cannot read what a release stored, or would
//! restart its containers: add a migration or a conversion (and keep container identity
//! stable). Never edit or regenerate a fixture to make a test pass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use shoal_model::manifest::{self, Workload};
use shoal_model::wire::{self, ExitInfo, NodeStatus};

use super::migrations::latest_version;
use super::*;
use crate::reconcile::spec_hash;

const WHAT_TO_DO: &str = "a stored format changed: add a migration or a conversion that reads \
     what the release wrote, do not edit or regenerate the fixture";

fn fixtures() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures");
    dir.canonicalize().unwrap_or(dir)
}

/// One entry of RELEASES.toml.
#[derive(Debug, serde::Deserialize)]
struct Release {
    version: String,
    agent_schema: u32,
}

#[derive(Debug, serde::Deserialize)]
struct Releases {
    release: Vec<Release>,
}

fn releases() -> Vec<Release> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../RELEASES.toml");
    let text = std::fs::read_to_string(&path).expect("RELEASES.toml at the workspace root");
    let releases: Releases = toml::from_str(&text).expect("RELEASES.toml parses");
    assert!(
        !releases.release.is_empty(),
        "RELEASES.toml lists no release"
    );
    releases.release
}

/// The agent databases release `version` left in its fixture dir.
fn agent_fixtures(version: &str) -> Vec<PathBuf> {
    let dir = fixtures().join(version);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| {
            panic!(
                "release {version} has no fixtures in {} ({e}): run `tests/fixtures/make {version}`",
                dir.display()
            )
        })
        .map(|entry| entry.expect("fixture dir entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("agent-") && n.ends_with(".db"))
        })
        .collect();
    files.sort();
    files
}

/// `PRAGMA user_version` from the file's header (bytes 60..64), without opening it.
fn header_user_version(path: &Path) -> u32 {
    let bytes = std::fs::read(path).expect("read fixture");
    let field: [u8; 4] = bytes
        .get(60..64)
        .and_then(|b| b.try_into().ok())
        .expect("an SQLite header");
    u32::from_be_bytes(field)
}

/// A copy of `fixture` opened as the agent opens its data dir (which migrates it).
fn open_copy(fixture: &Path) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(fixture, dir.path().join(DB_FILE)).expect("copy fixture");
    let store = Store::open(dir.path()).unwrap_or_else(|e| {
        panic!(
            "{} no longer opens: {}; {WHAT_TO_DO}",
            fixture.display(),
            chain(&e)
        )
    });
    (dir, store)
}

fn open_release(version: &str, file: &str) -> (tempfile::TempDir, Store) {
    open_copy(&fixtures().join(version).join(file))
}

fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

/// `what` read from a released database, or a failure that says what to do.
fn read<T>(fixture: &str, what: &str, result: Result<T, StateError>) -> T {
    result.unwrap_or_else(|e| panic!("{fixture}: cannot read {what}: {}; {WHAT_TO_DO}", chain(&e)))
}

/// The one workload of a manifest in the fixture's copy of the scenario it was made from.
fn manifest(version: &str, file: &str) -> Workload {
    let path = fixtures().join(version).join("scenario").join(file);
    let loaded = manifest::load(&path);
    assert!(loaded.is_ok(), "{}: {}", path.display(), loaded.report());
    assert_eq!(loaded.workloads.len(), 1, "{}", path.display());
    loaded.workloads[0].workload.clone()
}

fn names_and_revisions(desired: &[wire::DesiredWorkload]) -> Vec<(&str, u64)> {
    desired
        .iter()
        .map(|d| (d.workload.name.as_str(), d.revision))
        .collect()
}

/// Each event as `sequence reason workload/container`.
fn event_lines(events: &[wire::Event]) -> Vec<String> {
    events
        .iter()
        .map(|e| {
            format!(
                "{} {} {}/{}",
                e.sequence,
                e.reason.as_str(),
                e.workload.as_deref().unwrap_or("-"),
                e.container.as_deref().unwrap_or("-")
            )
        })
        .collect()
}

#[test]
fn every_released_agent_database_opens_at_todays_schema_and_decodes() {
    let latest = latest_version(MIGRATIONS);
    for release in releases() {
        let files = agent_fixtures(&release.version);
        assert!(
            !files.is_empty(),
            "release {} has no agent-*.db fixture: run `tests/fixtures/make {}`",
            release.version,
            release.version
        );
        assert!(
            latest >= release.agent_schema,
            "this agent's schema ({latest}) is older than release {}'s ({})",
            release.version,
            release.agent_schema
        );
        for file in files {
            let name = file.display().to_string();
            assert_eq!(
                header_user_version(&file),
                release.agent_schema,
                "{name}: its schema version is not the agent_schema RELEASES.toml records for {}",
                release.version
            );
            let (_dir, store) = open_copy(&file);
            assert_eq!(
                store.migrated(),
                Migrated {
                    from: release.agent_schema,
                    to: latest
                },
                "{name}"
            );
            assert!(
                read(&name, "the integrity check", store.integrity_problems()).is_empty(),
                "{name}: damaged after migrating"
            );
            for source in [Source::Local, Source::Hub] {
                read(&name, "the desired state", store.latest_desired(source));
            }
            read(&name, "the containers", store.containers());
            read(&name, "the events", store.recent_events(u32::MAX));
            read(&name, "the trusted hub keys", store.trusted_keys());
            read(&name, "the report cursor", store.report_cursor());
            for row in read(&name, "the outbox", store.outbox_after(0, u32::MAX)) {
                if let Err(e) = wire::decode::<NodeStatus>(&row.payload, &wire::Limits::default()) {
                    panic!("{name}: outbox message {} does not decode: {e}; a wire format changed: keep reading the previous version", row.id);
                }
            }
        }
    }
}

#[test]
fn the_desired_states_release_0_1_0_stored_are_labelled_format_2_by_the_migration() {
    for file in agent_fixtures("0.1.0") {
        let name = file.display().to_string();
        let (_dir, store) = open_copy(&file);
        let formats: Vec<(i64, i64)> = {
            let mut statement = store
                .conn
                .prepare(
                    "SELECT payload_format, count(*) FROM desired_state GROUP BY payload_format",
                )
                .expect("prepare");
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .expect("query");
            rows.collect::<Result<_, _>>().expect("rows")
        };
        assert!(
            matches!(formats.as_slice(), [(2, n)] if *n > 0),
            "{name}: desired_state.payload_format should be 2 in every row, found (format, rows) {formats:?}"
        );
        for row in read(&name, "the outbox", store.outbox_after(0, u32::MAX)) {
            assert_eq!(
                row.payload.first(),
                Some(&2),
                "{name}: outbox row {} is a wire version 2 message",
                row.id
            );
        }
    }
}

#[test]
fn stored_containers_keep_their_identity_so_an_upgraded_agent_restarts_nothing() {
    for release in releases() {
        for file in agent_fixtures(&release.version) {
            let name = file.display().to_string();
            let (_dir, store) = open_copy(&file);
            let mut desired: BTreeMap<String, Workload> = BTreeMap::new();
            for source in [Source::Local, Source::Hub] {
                if let Some((_, list)) =
                    read(&name, "the desired state", store.latest_desired(source))
                {
                    desired.extend(
                        list.into_iter()
                            .map(|d| (d.workload.name.clone(), d.workload)),
                    );
                }
            }
            for record in read(&name, "the containers", store.containers()) {
                let Some(workload) = desired.get(&record.workload) else {
                    continue;
                };
                let container = workload
                    .spec
                    .containers
                    .iter()
                    .find(|c| c.name == record.name)
                    .unwrap_or_else(|| {
                        panic!("{name}: {} is not in its desired workload", record.id)
                    });
                assert_eq!(
                    spec_hash(workload, container),
                    record.spec_hash,
                    "{name}: an agent upgraded from {} would replace container {}: the spec hash of \
                     its stored desired state changed; keep container identity stable (reconcile::spec_hash)",
                    release.version,
                    record.id
                );
            }
        }
    }
}

#[test]
fn the_0_1_0_hub_managed_agent_reads_back_its_desired_state_keys_containers_and_events() {
    let file = "0.1.0/agent-hub.db";
    let (_dir, store) = open_release("0.1.0", "agent-hub.db");

    let (generation, desired) = read(file, "the desired state", store.latest_desired(Source::Hub))
        .expect("a desired state from the hub");
    assert_eq!(generation, 5, "{WHAT_TO_DO}");
    assert_eq!(
        names_and_revisions(&desired),
        [("hello", 2), ("once", 1), ("web", 2)],
        "{WHAT_TO_DO}"
    );
    for (d, manifest_file) in desired.iter().zip([
        "hub-update/hello.yaml",
        "hub/once.yaml",
        "hub-update/web.yaml",
    ]) {
        assert_eq!(
            d.workload,
            manifest("0.1.0", manifest_file),
            "{file}: workload {} reads back unlike the manifest it came from; {WHAT_TO_DO}",
            d.workload.name
        );
    }
    assert_eq!(
        read(
            file,
            "the desired state",
            store.latest_desired(Source::Local)
        ),
        None
    );

    assert_eq!(
        read(file, "the trusted hub keys", store.trusted_keys())
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["ed25519:e8420510c9b44da7edba28422e979f6b9acc3dd4bb339ba7256d459fc6deb2cf"],
        "the hub's active key after the rotation (hub.db); {WHAT_TO_DO}"
    );

    let running = |id: &str, workload: &str, name: &str, spec_hash: &str| ContainerRecord {
        id: id.into(),
        workload: workload.into(),
        name: name.into(),
        image: "localhost/busybox:fixture".into(),
        spec_hash: spec_hash.into(),
        restarts: 0,
        crash_streak: 0,
        oom_kills: 0,
        last_exit: None,
        // 0.1.0 did not keep it: the default period applies.
        stop_grace: None,
    };
    let mut containers = read(file, "the containers", store.containers());
    containers.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        containers,
        [
            running("hello.hello", "hello", "hello", "8dfcc88c08e38761"),
            ContainerRecord {
                crash_streak: 1,
                last_exit: Some(ExitInfo {
                    code: Some(3),
                    signal: None,
                    oom_killed: false,
                    at_ms: 1_796_163_705_185,
                }),
                ..running("once.main", "once", "main", "634ec7232fc32c7b")
            },
            running("web.server", "web", "server", "c9afc911d51ec463"),
            running("web.writer", "web", "writer", "ed71551a2dfd19c0"),
        ],
        "{WHAT_TO_DO}"
    );

    let events = read(file, "the events", store.recent_events(u32::MAX));
    assert_eq!(
        event_lines(&events),
        [
            "1 agent-started -/-",
            "2 desired-state-accepted -/-",
            "3 desired-state-accepted -/-",
            "4 started web/server",
            "5 started hello/hello",
            "6 started web/writer",
            "7 started once/main",
            "8 exited once/main",
            "9 healthy web/server",
            "10 healthy web/writer",
            "11 desired-state-accepted -/-",
            "12 exited hello/hello",
            "13 started hello/hello",
            "14 desired-state-accepted -/-",
            "15 desired-state-accepted -/-",
        ],
        "{WHAT_TO_DO}"
    );
    assert_eq!(
        events[7],
        wire::Event {
            sequence: 8,
            at_ms: 1_796_163_705_368,
            severity: wire::Severity::Info,
            workload: Some("once".into()),
            container: Some("main".into()),
            reason: wire::EventReason::Exited,
            message: "exited with status 3".into(),
        },
        "{WHAT_TO_DO}"
    );
    assert_eq!(
        read(file, "the last event", store.last_event_sequence()),
        15
    );
    assert_eq!(
        read(file, "the report cursor", store.report_cursor()),
        ReportCursor {
            sequence: 13,
            last_event: 15,
            dropped_events: 0
        },
        "{WHAT_TO_DO}"
    );
}

#[test]
fn the_0_1_0_standalone_agent_reads_back_its_local_desired_state_containers_and_events() {
    let file = "0.1.0/agent-local.db";
    let (_dir, store) = open_release("0.1.0", "agent-local.db");

    let (generation, desired) = read(
        file,
        "the desired state",
        store.latest_desired(Source::Local),
    )
    .expect("a local desired state");
    assert_eq!(generation, 3, "{WHAT_TO_DO}");
    assert_eq!(
        names_and_revisions(&desired),
        [("crashy", 1), ("logger", 2)],
        "{WHAT_TO_DO}"
    );
    for (d, manifest_file) in desired
        .iter()
        .zip(["local/crashy.yaml", "local-update/logger.yaml"])
    {
        assert_eq!(
            d.workload,
            manifest("0.1.0", manifest_file),
            "{file}: workload {} reads back unlike the manifest it came from; {WHAT_TO_DO}",
            d.workload.name
        );
    }
    assert_eq!(
        read(file, "the desired state", store.latest_desired(Source::Hub)),
        None
    );
    assert_eq!(read(file, "the trusted hub keys", store.trusted_keys()), []);

    let mut containers = read(file, "the containers", store.containers());
    containers.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        containers,
        [
            ContainerRecord {
                id: "crashy.main".into(),
                workload: "crashy".into(),
                name: "main".into(),
                image: "localhost/busybox:fixture".into(),
                spec_hash: "8f4930fe9d5618e7".into(),
                restarts: 3,
                crash_streak: 4,
                oom_kills: 0,
                last_exit: Some(ExitInfo {
                    code: Some(2),
                    signal: None,
                    oom_killed: false,
                    at_ms: 1_796_163_739_697,
                }),
                stop_grace: None,
            },
            ContainerRecord {
                id: "logger.main".into(),
                workload: "logger".into(),
                name: "main".into(),
                image: "localhost/busybox:fixture".into(),
                spec_hash: "67b332a9ec47eb17".into(),
                restarts: 0,
                crash_streak: 0,
                oom_kills: 0,
                last_exit: None,
                stop_grace: None,
            },
        ],
        "{WHAT_TO_DO}"
    );

    let events = read(file, "the events", store.recent_events(u32::MAX));
    assert_eq!(
        event_lines(&events),
        [
            "1 agent-started -/-",
            "2 desired-state-accepted -/-",
            "3 started crashy/main",
            "4 started oneshot/main",
            "5 started logger/main",
            "6 exited oneshot/main",
            "7 exited crashy/main",
            "8 started crashy/main",
            "9 exited crashy/main",
            "10 started crashy/main",
            "11 desired-state-accepted -/-",
            "12 exited crashy/main",
            "13 started crashy/main",
            "14 exited crashy/main",
            "15 exited logger/main",
            "16 started logger/main",
            "17 desired-state-accepted -/-",
            "18 removed oneshot/main",
            "19 stopped oneshot/main",
        ],
        "{WHAT_TO_DO}"
    );
    assert_eq!(
        events[16].message, "generation 3: oneshot: deleted",
        "{WHAT_TO_DO}"
    );
    assert_eq!(events[18].severity, wire::Severity::Warning, "{WHAT_TO_DO}");
    assert_eq!(
        read(file, "the report cursor", store.report_cursor()),
        ReportCursor::default(),
        "a standalone agent reports nothing; {WHAT_TO_DO}"
    );
}
