//! What released hubs stored, read by this one. Each `tests/fixtures/VERSION/hub.db` was
//! written by release VERSION's own `shoal serve`, with enrolled agents running real
//! containers (`tests/fixtures/make VERSION`; see the README beside it). A copy is opened here
//! with today's code, as a hub upgraded in place opens its data dir.
//!
//! When one of these tests fails, this hub cannot read what a release stored, or would publish
//! new desired states where nothing changed: add a migration or a conversion (and keep the
//! desired-state digest stable). Never edit or regenerate a fixture to make a test pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use shoal_model::manifest::{self, Workload};
use shoal_model::wire::{self, signing, DesiredState};

use super::*;
use crate::desired;

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
    wire_version: u8,
    hub_schema: usize,
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

/// `PRAGMA user_version` from the file's header (bytes 60..64), without opening it.
fn header_user_version(path: &Path) -> usize {
    let bytes = std::fs::read(path).expect("read fixture");
    let field: [u8; 4] = bytes
        .get(60..64)
        .and_then(|b| b.try_into().ok())
        .expect("an SQLite header");
    u32::from_be_bytes(field) as usize
}

/// A copy of release `version`'s hub.db, opened as the hub opens its data dir (which
/// migrates it).
fn open_release(version: &str) -> (tempfile::TempDir, Store) {
    let fixture = fixtures().join(version).join("hub.db");
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::copy(&fixture, dir.path().join("hub.db")).unwrap_or_else(|e| {
        panic!("release {version} has no hub.db fixture ({e}): run `tests/fixtures/make {version}`")
    });
    let store = Store::open(dir.path()).unwrap_or_else(|e| {
        panic!(
            "{} no longer opens: {}; {WHAT_TO_DO}",
            fixture.display(),
            chain(&e)
        )
    });
    (dir, store)
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
fn read<T>(version: &str, what: &str, result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|e| {
        panic!(
            "{version}/hub.db: cannot read {what}: {}; {WHAT_TO_DO}",
            chain(&e)
        )
    })
}

/// Every stored revision of every workload, the deleted ones included, decoded.
fn revisions(version: &str, store: &Store) -> BTreeMap<(String, u64), Workload> {
    let rows: Vec<(String, i64, i64, Vec<u8>)> = {
        let conn = store.conn();
        let mut statement = conn
            .prepare(
                "SELECT name, revision, spec_format, spec FROM workload_revisions \
                 ORDER BY name, revision",
            )
            .expect("prepare");
        let rows = statement
            .query_map([], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
            })
            .expect("query");
        rows.collect::<Result<_, _>>().expect("rows")
    };
    rows.into_iter()
        .map(|(name, revision, format, spec)| {
            let decoded = read_row(
                "workload_revisions",
                &name,
                stored::read_workload(format, &spec),
            );
            let workload = read(version, "a workload revision", decoded);
            ((name, to_u64(revision)), workload)
        })
        .collect()
}

/// The one workload of a manifest in the fixture's copy of the scenario it was made from.
fn manifest(version: &str, file: &str) -> Workload {
    let path = fixtures().join(version).join("scenario").join(file);
    let loaded = manifest::load(&path);
    assert!(loaded.is_ok(), "{}: {}", path.display(), loaded.report());
    assert_eq!(loaded.workloads.len(), 1, "{}", path.display());
    loaded.workloads[0].workload.clone()
}

/// A node's published desired state, decoded and checked as its agent checks it.
fn published(version: &str, stored: &NodeDesired, keys: &[StoredKey]) -> DesiredState {
    let (envelope, state) = wire::decode::<DesiredState>(&stored.payload, &wire::Limits::default())
        .unwrap_or_else(|e| {
            panic!(
                "{version}/hub.db: the desired state published for {} does not decode: {e}; \
                     a wire format changed: keep reading the previous version",
                stored.node
            )
        });
    let trusted: Vec<_> = keys.iter().map(|k| k.public).collect();
    signing::verify(&envelope, &trusted).unwrap_or_else(|e| {
        panic!(
            "{version}/hub.db: the desired state of {} no longer verifies with the stored keys: {e}",
            stored.node
        )
    });
    assert_eq!(state.node_id, stored.node);
    assert_eq!(state.generation, stored.generation);
    state
}

#[test]
fn every_released_hub_database_opens_at_todays_schema_and_decodes() {
    for release in releases() {
        let version = release.version.as_str();
        let fixture = fixtures().join(version).join("hub.db");
        assert_eq!(
            header_user_version(&fixture),
            release.hub_schema,
            "{}: its schema version is not the hub_schema RELEASES.toml records for {version}",
            fixture.display()
        );
        assert!(
            MIGRATIONS.len() >= release.hub_schema,
            "this hub's schema ({}) is older than release {version}'s ({})",
            MIGRATIONS.len(),
            release.hub_schema
        );
        assert!(
            wire::WIRE_VERSION >= release.wire_version,
            "this build's wire version is older than release {version}'s"
        );
        let (_dir, store) = open_release(version);
        let found: usize = store
            .conn()
            .pragma_query_value(None, "user_version", |row| row.get(0))
            .expect("user_version");
        assert_eq!(found, MIGRATIONS.len(), "{version}/hub.db was not migrated");

        read(version, "the workloads", store.workloads());
        revisions(version, &store);
        read(version, "the nodes", store.nodes());
        read(version, "the credentials", store.password_hashes());
        read(version, "the placement", store.placement());
        read(version, "the statuses", store.statuses());
        read(version, "the events", store.events(None, None, u32::MAX));
        let keys = read(version, "the signing keys", store.signing_keys());
        read(version, "the key ring", key_ring(&keys)).expect("an active signing key");
        for stored in read(version, "the desired states", store.node_desired()).values() {
            published(version, stored, &keys);
        }
    }
}

#[test]
fn the_rows_release_0_1_0_wrote_are_labelled_format_2_by_the_migration() {
    let (_dir, store) = open_release("0.1.0");
    let columns = [
        ("workloads", "spec_format"),
        ("workload_revisions", "spec_format"),
        ("nodes", "facts_format"),
        ("node_status", "payload_format"),
        ("events", "payload_format"),
    ];
    for (table, column) in columns {
        let formats: Vec<(i64, i64)> = {
            let conn = store.conn();
            let mut statement = conn
                .prepare(&format!(
                    "SELECT {column}, count(*) FROM {table} GROUP BY {column}"
                ))
                .expect("prepare");
            let rows = statement
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
                .expect("query");
            rows.collect::<Result<_, _>>().expect("rows")
        };
        assert!(
            matches!(formats.as_slice(), [(2, n)] if *n > 0),
            "0.1.0/hub.db: {table}.{column} should be 2 in every row, found (format, rows) {formats:?}"
        );
    }
    for (node, stored) in read("0.1.0", "the desired states", store.node_desired()) {
        assert_eq!(
            stored.payload.first(),
            Some(&2),
            "0.1.0/hub.db: the desired state of {node} is a wire version 2 message"
        );
    }
}

#[test]
fn a_hub_upgraded_on_a_released_database_publishes_nothing_new() {
    for release in releases() {
        let version = release.version.as_str();
        let (_dir, store) = open_release(version);
        let workloads = read(version, "the workloads", store.workloads());
        let placement = read(version, "the placement", store.placement());
        let names: Vec<String> = read(version, "the nodes", store.nodes())
            .into_iter()
            .map(|n| n.name)
            .collect();
        let (_, announced) = read(
            version,
            "the key ring",
            key_ring(&read(version, "the signing keys", store.signing_keys())),
        )
        .expect("an active signing key");
        let published = read(version, "the fleet's snapshot", store.snapshot()).published;
        for (node, list) in desired::per_node(&workloads, &placement, &names) {
            let previous = published.get(&node);
            assert!(
                desired::next(&node, list, &announced, None, previous).is_none(),
                "{version}/hub.db: an upgraded hub would publish a new generation to {node} though \
                 nothing changed: the desired-state digest of what it stored changed; keep the \
                 digest stable (hub/src/desired.rs) or convert the stored digests"
            );
        }
    }
}

#[test]
fn the_0_1_0_hub_reads_back_its_nodes_workloads_revisions_keys_and_desired_states() {
    let v = "0.1.0";
    let (_dir, store) = open_release(v);

    let nodes = read(v, "the nodes", store.nodes());
    let summary: Vec<(&str, &BTreeMap<String, String>, Schedulable, bool)> = nodes
        .iter()
        .map(|n| (n.name.as_str(), &n.labels, n.schedulable, n.enrolled))
        .collect();
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    assert_eq!(
        summary,
        [
            (
                "north-1",
                &labels(&[("site", "north"), ("tier", "gold")]),
                Schedulable::Yes,
                true
            ),
            (
                "south-1",
                &labels(&[("site", "south")]),
                Schedulable::Yes,
                true
            ),
            (
                "spare-1",
                &labels(&[("site", "east"), ("storage", "ssd")]),
                Schedulable::Cordoned,
                false
            ),
        ],
        "{WHAT_TO_DO}"
    );
    let north = &nodes[0];
    let facts = north.facts.as_ref().expect("north-1 reported its facts");
    assert_eq!(
        (facts.arch.as_str(), facts.agent_version.as_str()),
        ("amd64", "0.1.0"),
        "{WHAT_TO_DO}"
    );
    assert_eq!(
        facts.labels.get("role").map(String::as_str),
        Some("gateway"),
        "{WHAT_TO_DO}"
    );
    assert_eq!(
        (north.created_ms, north.last_seen_ms, north.online),
        (1_796_163_703_472, Some(1_796_163_744_334), false),
        "{WHAT_TO_DO}"
    );
    assert!(read(v, "a token", store.token_expiry("spare-1")).is_some());
    assert_eq!(read(v, "a token", store.token_expiry("north-1")), None);

    let workloads = read(v, "the workloads", store.workloads());
    let current: Vec<(&str, u64)> = workloads
        .iter()
        .map(|w| (w.workload.name.as_str(), w.revision))
        .collect();
    assert_eq!(
        current,
        [
            ("flaky", 1),
            ("hello", 2),
            ("once", 1),
            ("pending", 1),
            ("web", 2)
        ],
        "{WHAT_TO_DO}"
    );
    for stored in &workloads {
        let file = match (stored.workload.name.as_str(), stored.revision) {
            (name, 2) => format!("hub-update/{name}.yaml"),
            (name, _) => format!("hub/{name}.yaml"),
        };
        assert_eq!(
            stored.workload,
            manifest(v, &file),
            "{v}/hub.db: workload {} reads back unlike {file}; {WHAT_TO_DO}",
            stored.workload.name
        );
    }
    let hello = &workloads[1];
    assert_eq!(
        (hello.created_ms, hello.updated_ms),
        (1_796_163_704_892, 1_796_163_710_915)
    );

    let revisions = revisions(v, &store);
    let listed: Vec<(&str, u64)> = revisions
        .keys()
        .map(|(name, revision)| (name.as_str(), *revision))
        .collect();
    assert_eq!(
        listed,
        [
            ("flaky", 1),
            ("hello", 1),
            ("hello", 2),
            ("once", 1),
            ("pending", 1),
            ("retired", 1),
            ("web", 1),
            ("web", 2),
        ],
        "the deleted workload `retired` keeps its revision; {WHAT_TO_DO}"
    );
    for ((name, revision), workload) in &revisions {
        let dir = if *revision == 2 { "hub-update" } else { "hub" };
        assert_eq!(
            workload,
            &manifest(v, &format!("{dir}/{name}.yaml")),
            "{v}/hub.db: revision {revision} of {name} reads back unlike its manifest; {WHAT_TO_DO}"
        );
    }

    let placement = read(v, "the placement", store.placement());
    let on = |nodes: &[&str]| -> BTreeSet<String> { nodes.iter().map(|n| n.to_string()).collect() };
    assert_eq!(
        placement,
        Placement::from([
            ("flaky".to_string(), on(&["south-1"])),
            ("hello".to_string(), on(&["north-1", "south-1"])),
            ("once".to_string(), on(&["north-1"])),
            ("web".to_string(), on(&["north-1"])),
        ]),
        "{WHAT_TO_DO}"
    );

    let keys = read(v, "the signing keys", store.signing_keys());
    let listed: Vec<(&str, KeyState, bool)> = keys
        .iter()
        .map(|k| (k.id.as_str(), k.state, k.pkcs8.is_some()))
        .collect();
    assert_eq!(
        listed,
        [
            ("99656cfa510b7852", KeyState::Active, true),
            ("4e815a317f0daa12", KeyState::Retired, false),
        ],
        "after the rotation: the new key active, the old one retired without its private half; {WHAT_TO_DO}"
    );
    assert_eq!(
        keys[0].public.to_string(),
        "ed25519:e8420510c9b44da7edba28422e979f6b9acc3dd4bb339ba7256d459fc6deb2cf"
    );
    let (signing, announced) = read(v, "the key ring", key_ring(&keys)).expect("an active key");
    assert_eq!(signing.public(), keys[0].public, "{WHAT_TO_DO}");
    assert_eq!(announced, [keys[0].public]);

    let desired = read(v, "the desired states", store.node_desired());
    let generations: Vec<(&str, u64, &[String])> = desired
        .values()
        .map(|d| (d.node.as_str(), d.generation, d.signing_keys.as_slice()))
        .collect();
    let active = ["99656cfa510b7852".to_string()];
    assert_eq!(
        generations,
        [
            ("north-1", 5, &active[..]),
            ("south-1", 5, &active[..]),
            ("spare-1", 3, &active[..])
        ],
        "{WHAT_TO_DO}"
    );
    let north = published(v, &desired["north-1"], &keys);
    let listed: Vec<(&str, u64)> = north
        .workloads
        .iter()
        .map(|d| (d.workload.name.as_str(), d.revision))
        .collect();
    assert_eq!(listed, [("hello", 2), ("once", 1), ("web", 2)]);
    assert_eq!(north.signing_keys, [keys[0].public]);
    assert_eq!(
        signing::verify(
            &wire::decode::<DesiredState>(&desired["north-1"].payload, &wire::Limits::default())
                .expect("decodes")
                .0,
            &[keys[0].public]
        )
        .map(|id| id.to_string()),
        Ok("99656cfa510b7852".to_string()),
        "signed by the new key"
    );

    let statuses = read(v, "the statuses", store.statuses());
    let seen: Vec<(&str, u64, u64)> = statuses
        .values()
        .map(|s| (s.node_id.as_str(), s.sequence, s.observed_generation))
        .collect();
    assert_eq!(
        seen,
        [("north-1", 13, 5), ("south-1", 25, 5)],
        "{WHAT_TO_DO}"
    );
    let south = &statuses["south-1"];
    let running: Vec<(&str, u64)> = south
        .workloads
        .iter()
        .map(|w| (w.name.as_str(), w.revision))
        .collect();
    assert_eq!(running, [("flaky", 1), ("hello", 2)], "{WHAT_TO_DO}");

    let events = read(v, "the events", store.events(None, None, u32::MAX));
    assert_eq!(events.len(), 35, "{WHAT_TO_DO}");
    let north_events: Vec<String> = events
        .iter()
        .filter(|e| e.node == "north-1")
        .map(|e| {
            format!(
                "{} {} {}",
                e.event.sequence,
                e.event.reason.as_str(),
                e.event.workload.as_deref().unwrap_or("-")
            )
        })
        .collect();
    assert_eq!(
        north_events,
        [
            "1 agent-started -",
            "2 desired-state-accepted -",
            "3 desired-state-accepted -",
            "4 started web",
            "5 started hello",
            "6 started web",
            "7 started once",
            "8 exited once",
            "9 healthy web",
            "10 healthy web",
            "11 desired-state-accepted -",
            "12 exited hello",
            "13 started hello",
            "14 desired-state-accepted -",
            "15 desired-state-accepted -",
        ],
        "the same events as north-1's own agent-hub.db; {WHAT_TO_DO}"
    );
    let flaky = read(
        v,
        "the events",
        store.events(Some("south-1"), Some("flaky"), 100),
    );
    assert_eq!(flaky.len(), 11, "{WHAT_TO_DO}");
}
