use std::collections::BTreeMap;
use std::path::Path;

use shoal_model::manifest::{parse_manifest, Workload};
use shoal_model::node::NodeFacts;
use shoal_model::wire::{Event, EventReason, NodeStatus, NodeUsage, Severity};

use super::*;

fn workload(name: &str, image: &str) -> Workload {
    let yaml = format!(
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  containers:\n    - {{ name: main, image: {image} }}\n"
    );
    let (mut loaded, diagnostics) = parse_manifest(Path::new("t.yaml"), &yaml);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    loaded.remove(0).workload
}

fn event(sequence: u64) -> Event {
    Event {
        sequence,
        at_ms: 1_000 + sequence,
        severity: Severity::Info,
        workload: Some("web".into()),
        container: None,
        reason: EventReason::Started,
        message: format!("event {sequence}"),
    }
}

fn status(sequence: u64, events: Vec<Event>) -> NodeStatus {
    NodeStatus {
        node_id: "a".into(),
        observed_generation: 0,
        sequence,
        sent_at_ms: 0,
        workloads: Vec::new(),
        usage: NodeUsage::default(),
        events,
        dropped_events: 0,
        agent_update: None,
    }
}

#[test]
fn applying_a_changed_workload_makes_a_new_revision_and_an_unchanged_one_does_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let first = store
        .apply(&[workload("web", "busybox:1")], 10, false)
        .expect("apply");
    assert_eq!((first[0].revision, first[0].previous.is_none()), (1, true));
    let same = store
        .apply(&[workload("web", "busybox:1")], 20, false)
        .expect("apply");
    assert_eq!(same[0].revision, 1);
    let changed = store
        .apply(&[workload("web", "busybox:2")], 30, false)
        .expect("apply");
    assert_eq!(changed[0].revision, 2);
    let stored = store.workload("web").expect("read").expect("stored");
    assert_eq!(
        (stored.revision, stored.created_ms, stored.updated_ms),
        (2, 10, 30)
    );
}

#[test]
fn a_dry_run_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let planned = store
        .apply(&[workload("web", "busybox:1")], 10, true)
        .expect("apply");
    assert_eq!(planned[0].revision, 1);
    assert!(store.workloads().expect("list").is_empty());
}

#[test]
fn everything_survives_reopening_the_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        store
            .apply(&[workload("web", "busybox:1")], 10, false)
            .expect("apply");
        store
            .add_node(
                "a",
                "$7$hash",
                &BTreeMap::from([("site".into(), "x".into())]),
                5,
            )
            .expect("add");
        let placement = Placement::from([("web".to_string(), ["a".to_string()].into())]);
        store.set_placement(&placement).expect("placement");
    }
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.workloads().expect("list").len(), 1);
    assert_eq!(store.node("a").expect("node").labels["site"], "x");
    assert_eq!(store.placement().expect("placement")["web"].len(), 1);
}

#[test]
fn a_node_name_can_be_registered_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.add_node("a", "h", &BTreeMap::new(), 1).expect("add");
    let again = store.add_node("a", "h2", &BTreeMap::new(), 2);
    assert!(matches!(again, Err(StoreError::NodeExists(_))), "{again:?}");
    assert_eq!(
        store.password_hash("a").expect("read").as_deref(),
        Some("h")
    );
}

#[test]
fn offline_since_is_kept_from_the_first_offline_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.add_node("a", "h", &BTreeMap::new(), 1).expect("add");
    let facts = NodeFacts::default();
    assert!(store
        .record_presence("a", true, &facts, 100)
        .expect("online"));
    assert!(store
        .record_presence("a", false, &facts, 200)
        .expect("offline"));
    assert!(!store
        .record_presence("a", false, &facts, 300)
        .expect("still offline"));
    let node = store.node("a").expect("node");
    assert_eq!((node.online, node.offline_since_ms), (false, Some(200)));
    store.record_presence("a", true, &facts, 400).expect("back");
    assert_eq!(store.node("a").expect("node").offline_since_ms, None);
}

#[test]
fn a_hub_start_counts_every_node_offline_until_it_is_heard_from() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let facts = NodeFacts::default();
    for name in ["up", "down"] {
        store.add_node(name, "h", &BTreeMap::new(), 1).expect("add");
    }
    store
        .record_presence("up", true, &facts, 100)
        .expect("online");
    store
        .record_presence("down", false, &facts, 50)
        .expect("offline");
    store.mark_all_offline(500).expect("reset");
    let up = store.node("up").expect("node");
    let down = store.node("down").expect("node");
    assert_eq!((up.online, up.offline_since_ms), (false, Some(500)));
    assert_eq!((down.online, down.offline_since_ms), (false, Some(50)));
}

#[test]
fn events_are_stored_once_however_often_a_status_is_resent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.add_node("a", "h", &BTreeMap::new(), 1).expect("add");
    store
        .record_status("a", &status(1, vec![event(1), event(2)]), 10)
        .expect("status");
    store
        .record_status("a", &status(1, vec![event(1), event(2)]), 11)
        .expect("resent");
    store
        .record_status("a", &status(2, vec![event(3)]), 12)
        .expect("next");
    let events = store.events(Some("a"), None, 10).expect("events");
    let sequences: Vec<u64> = events.iter().map(|e| e.event.sequence).collect();
    assert_eq!(sequences, [1, 2, 3]);
    assert_eq!(store.statuses().expect("statuses")["a"].sequence, 2);
}

#[test]
fn an_older_status_does_not_replace_a_newer_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .record_status("a", &status(5, Vec::new()), 10)
        .expect("new");
    store
        .record_status("a", &status(3, vec![event(9)]), 11)
        .expect("old");
    assert_eq!(store.statuses().expect("statuses")["a"].sequence, 5);
    assert_eq!(store.events(Some("a"), None, 10).expect("events").len(), 1);
}

#[test]
fn a_refused_status_changes_nothing_but_one_hub_event_a_minute() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.add_node("a", "h", &BTreeMap::new(), 1).expect("add");
    store
        .record_status("a", &status(7, vec![event(7)]), 1_000)
        .expect("status");
    let mut absurd = status(u64::MAX, vec![event(8)]);
    absurd.workloads.push(shoal_model::wire::WorkloadStatus {
        name: "forged".into(),
        revision: 1,
        containers: Vec::new(),
        rolled_back: None,
    });
    let mut ahead = status(8, vec![event(9)]);
    ahead.observed_generation = 3;
    for (what, forged, now) in [
        ("an absurd sequence", &absurd, 2_000),
        ("a generation never published", &ahead, 3_000),
        (
            "an absurd sequence, later",
            &absurd,
            2_000 + REFUSAL_EVENT_EVERY_MS,
        ),
    ] {
        let admission = store.record_status("a", forged, now).expect("record");
        assert!(
            matches!(admission, Admission::Refused(_)),
            "{what}: {admission:?}"
        );
    }
    let kept = &store.statuses().expect("statuses")["a"];
    assert_eq!((kept.sequence, kept.workloads.len()), (7, 0));
    assert_eq!(store.node("a").expect("node").last_seen_ms, Some(1_000));
    let events = store.events(Some("a"), None, 10).expect("events");
    let shown: Vec<(EventReason, u64)> = events
        .iter()
        .map(|e| (e.event.reason, e.event.at_ms))
        .collect();
    assert_eq!(
        shown,
        [
            (EventReason::Started, 1_007),
            (EventReason::StatusRefused, 2_000),
            (EventReason::StatusRefused, 2_000 + REFUSAL_EVENT_EVERY_MS),
        ],
        "the node's events of refused statuses are not kept; the refusals, once a minute"
    );
    assert!(
        events[1].event.message.contains("18446744073709551615"),
        "{:?}",
        events[1]
    );

    // A generation the hub did publish is fine.
    store
        .save_node_desired(
            &NodeDesired {
                node: "a".into(),
                generation: 3,
                digest: "d".into(),
                payload: Vec::new(),
                signing_keys: Vec::new(),
            },
            4_000,
        )
        .expect("publish");
    assert_eq!(
        store.record_status("a", &ahead, 5_000).expect("record"),
        Admission::Newest
    );
}

#[test]
fn statuses_numbered_far_below_a_far_off_one_are_the_nodes_own_and_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store.add_node("a", "h", &BTreeMap::new(), 1).expect("add");
    store
        .record_status("a", &status(7, Vec::new()), 1_000)
        .expect("status");
    assert_eq!(
        store
            .record_status(
                "a",
                &status(1_000_000_000, vec![event(1_000_000_000)]),
                2_000
            )
            .expect("far-off"),
        Admission::Newest,
        "possible for an agent, so taken"
    );
    assert_eq!(
        store
            .record_status("a", &status(8, vec![event(8)]), 3_000)
            .expect("real"),
        Admission::Restarted {
            previous: 1_000_000_000
        }
    );
    assert_eq!(
        store
            .record_status("a", &status(9, Vec::new()), 4_000)
            .expect("real"),
        Admission::Newest
    );
    assert_eq!(store.statuses().expect("statuses")["a"].sequence, 9);
    let sequences: Vec<u64> = store
        .events(Some("a"), None, 10)
        .expect("events")
        .iter()
        .map(|e| e.event.sequence)
        .collect();
    assert_eq!(sequences, [8, 1_000_000_000]);
}

// ---- enrollment and signing keys ----

#[test]
fn a_token_enrolls_once_before_it_expires_and_refusals_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .issue_token("gw", &BTreeMap::new(), "good", 10_000, 1_000)
        .expect("issue");
    assert!(!store.node("gw").expect("registered").enrolled);
    let refusals: [(&str, &str, u64); 2] =
        [("wrong secret", "bad", 2_000), ("expired", "good", 10_001)];
    for (what, secret, now) in refusals {
        let error = store.enroll("gw", secret, "$7$hash", now).expect_err(what);
        assert!(
            matches!(
                (what, &error),
                ("wrong secret", EnrollError::WrongToken(_))
                    | ("expired", EnrollError::Expired { .. })
            ),
            "{what}: {error}"
        );
        assert_eq!(
            store.password_hash("gw").expect("read"),
            Some(String::new()),
            "{what}"
        );
        assert_eq!(
            store.token_expiry("gw").expect("read"),
            Some(10_000),
            "{what}"
        );
    }
    store
        .enroll("gw", "good", "$7$hash", 9_000)
        .expect("enroll");
    assert!(store.node("gw").expect("node").enrolled);
    assert_eq!(
        store.token_expiry("gw").expect("read"),
        None,
        "the token is used up"
    );
    assert!(matches!(
        store.enroll("gw", "good", "$7$other", 9_001),
        Err(EnrollError::NoToken(_))
    ));
    assert_eq!(
        store.password_hash("gw").expect("read").as_deref(),
        Some("$7$hash")
    );
}

#[test]
fn enrolling_again_forgets_the_old_status_and_removal_forgets_everything() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .issue_token("a", &BTreeMap::new(), "t1", 10_000, 1)
        .expect("issue");
    store.enroll("a", "t1", "$7$one", 2).expect("enroll");
    store
        .record_status("a", &status(40, vec![event(40)]), 3)
        .expect("status");
    // A new token for the same node keeps it working until the token is used.
    store
        .issue_token("a", &BTreeMap::new(), "t2", 10_000, 4)
        .expect("reissue");
    assert_eq!(
        store.password_hash("a").expect("read").as_deref(),
        Some("$7$one")
    );
    store.enroll("a", "t2", "$7$two", 5).expect("re-enroll");
    assert!(store.statuses().expect("statuses").is_empty());
    assert!(store
        .events(Some("a"), None, 10)
        .expect("events")
        .is_empty());
    // A wiped device counts from 1 again, and is heard.
    store
        .record_status("a", &status(1, vec![event(1)]), 6)
        .expect("status");
    assert_eq!(store.statuses().expect("statuses")["a"].sequence, 1);

    assert!(store.remove_node("a").expect("remove"));
    assert!(!store.remove_node("a").expect("again"));
    assert!(store.nodes().expect("nodes").is_empty());
    assert!(store.statuses().expect("statuses").is_empty());
    assert_eq!(store.password_hash("a").expect("read"), None);
}

#[test]
fn the_database_with_the_private_keys_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    store
        .issue_token("gw", &BTreeMap::new(), "t", 10, 1)
        .expect("a write, so the WAL exists");
    for name in ["hub.db", "hub.db-wal"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .expect(name)
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}");
    }
}

#[test]
fn a_rotation_promotes_the_next_key_and_erases_the_old_private_key() {
    use shoal_model::wire::signing::SigningKey;
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    assert!(key_ring(&store.signing_keys().expect("keys"))
        .expect("ring")
        .is_none());
    let (first, first_pkcs8) = SigningKey::generate().expect("key");
    store
        .add_signing_key(first.public(), &first_pkcs8, KeyState::Active, 1)
        .expect("active");
    let (again, again_pkcs8) = SigningKey::generate().expect("key");
    assert!(
        store
            .add_signing_key(again.public(), &again_pkcs8, KeyState::Active, 2)
            .is_err(),
        "one active key at a time"
    );
    let (next, next_pkcs8) = SigningKey::generate().expect("key");
    store
        .add_signing_key(next.public(), &next_pkcs8, KeyState::Next, 3)
        .expect("next");
    let (signing, announced) = key_ring(&store.signing_keys().expect("keys"))
        .expect("ring")
        .expect("an active key");
    assert_eq!(signing.public(), first.public());
    assert_eq!(announced, vec![first.public(), next.public()]);

    assert!(store.promote_next_key(4).expect("promote"));
    assert!(!store.promote_next_key(5).expect("nothing to promote"));
    let keys = store.signing_keys().expect("keys");
    let (signing, announced) = key_ring(&keys).expect("ring").expect("an active key");
    assert_eq!(signing.public(), next.public());
    assert_eq!(announced, vec![next.public()]);
    let retired = keys
        .iter()
        .find(|k| k.public == first.public())
        .expect("kept for the record");
    assert_eq!(
        (retired.state, retired.pkcs8.as_ref()),
        (KeyState::Retired, None)
    );
}

/// A store holding one workload, one node with facts, its status and one event.
fn filled() -> (tempfile::TempDir, Store, Workload, NodeFacts, NodeStatus) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let web = workload("web", "busybox:1");
    store
        .apply(std::slice::from_ref(&web), 10, false)
        .expect("apply");
    store.add_node("a", "h", &BTreeMap::new(), 1).expect("add");
    let facts = NodeFacts {
        arch: "arm64".into(),
        agent_version: "0.2.0".into(),
        ..NodeFacts::default()
    };
    store
        .record_presence("a", true, &facts, 20)
        .expect("presence");
    let status = status(4, vec![event(9)]);
    store.record_status("a", &status, 30).expect("status");
    (dir, store, web, facts, status)
}

/// `(format, bytes)` of every postcard row of `table`, by its key.
fn raw_rows(store: &Store, sql: &str) -> Vec<(String, i64, Vec<u8>)> {
    let conn = store.conn();
    let mut statement = conn.prepare(sql).expect("prepare");
    let rows = statement
        .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
        .expect("query");
    rows.collect::<Result<_, _>>().expect("rows")
}

#[test]
fn every_postcard_row_names_its_format_and_holds_the_stored_encoding() {
    let (_dir, store, web, facts, status) = filled();
    let workload_row = stored::write_workload(&web).expect("encodes");
    let mut snapshot = status.clone();
    snapshot.events.clear();
    let cases = [
        (
            "SELECT name, spec_format, spec FROM workloads",
            ("web", workload_row.clone()),
        ),
        (
            "SELECT name, spec_format, spec FROM workload_revisions",
            ("web", workload_row),
        ),
        (
            "SELECT name, facts_format, facts FROM nodes",
            ("a", stored::write_facts(&facts).expect("encodes")),
        ),
        (
            "SELECT node, payload_format, payload FROM node_status",
            ("a", stored::write_status(&snapshot).expect("encodes")),
        ),
        (
            "SELECT node, payload_format, payload FROM events",
            (
                "a",
                stored::write_event(&status.events[0]).expect("encodes"),
            ),
        ),
    ];
    for (sql, (key, row)) in cases {
        assert_eq!(
            raw_rows(&store, sql),
            vec![(key.to_string(), i64::from(row.format), row.bytes)],
            "{sql}"
        );
    }
}

#[test]
fn a_row_in_a_format_this_hub_cannot_read_is_refused_naming_its_table_row_and_format() {
    type Read = fn(&Store) -> Result<(), StoreError>;
    let cases: [(&str, Read, &str); 5] = [
        (
            "UPDATE workloads SET spec_format = 4",
            |s| s.workloads().map(drop),
            "workloads row `web`",
        ),
        (
            "UPDATE workloads SET spec_format = 4",
            |s| {
                s.apply(&[workload("web", "busybox:2")], 50, false)
                    .map(drop)
            },
            "workloads row `web`",
        ),
        (
            "UPDATE nodes SET facts_format = 4",
            |s| s.nodes().map(drop),
            "nodes row `a`",
        ),
        (
            "UPDATE node_status SET payload_format = 4",
            |s| s.statuses().map(drop),
            "node_status row `a`",
        ),
        (
            "UPDATE events SET payload_format = 4",
            |s| s.events(None, None, 10).map(drop),
            "events row `a#9`",
        ),
    ];
    for (newer, read, row) in cases {
        let (_dir, store, _, _, _) = filled();
        let count = |store: &Store| -> i64 {
            let conn = store.conn();
            let table = newer.split_whitespace().nth(1).expect("a table");
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .expect("count")
        };
        let before = count(&store);
        store.conn().execute(newer, []).expect("forge a newer row");
        let error = read(&store).expect_err(newer);
        let text = error.to_string();
        assert!(
            matches!(
                error,
                StoreError::Row {
                    cause: RecordError::UnknownFormat { format: 4 },
                    ..
                }
            ),
            "{text}"
        );
        for expected in [row, "format 4", "written by a newer release; upgrade"] {
            assert!(text.contains(expected), "{text} should mention {expected}");
        }
        assert_eq!(count(&store), before, "{newer}: the row must stay");
    }
}

#[test]
fn a_damaged_row_is_refused_not_dropped() {
    let (_dir, store, _, _, _) = filled();
    store
        .conn()
        .execute("UPDATE node_status SET payload = x'ff'", [])
        .expect("damage");
    let error = store.statuses().expect_err("damaged").to_string();
    assert!(error.contains("node_status row `a`"), "{error}");
    assert!(error.contains("damaged"), "{error}");
}

/// What SQLite's planner does for `sql` with `"gw-1"` bound: one line per step.
fn query_plan(conn: &Connection, sql: &str) -> Vec<String> {
    let mut statement = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
        .expect("explain");
    statement
        .query_map(["gw-1"], |row| row.get::<_, String>(3))
        .expect("plan")
        .collect::<Result<_, _>>()
        .expect("rows")
}

#[test]
fn looking_one_node_or_workload_up_searches_its_key_and_scans_no_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let conn = store.conn();
    for sql in [NODE_NAMED, WORKLOAD_NAMED] {
        let plan = query_plan(&conn, sql);
        assert!(
            !plan.is_empty() && plan.iter().all(|step| step.starts_with("SEARCH")),
            "{sql}: {plan:?}"
        );
    }
    // The other form, as a regression guard: the planner scans for it.
    let plan = query_plan(
        &conn,
        "SELECT name FROM nodes WHERE ?1 IS NULL OR name = ?1",
    );
    assert!(plan.iter().any(|step| step.starts_with("SCAN")), "{plan:?}");
}
