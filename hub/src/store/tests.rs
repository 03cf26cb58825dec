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
        observed_generation: 1,
        sequence,
        sent_at_ms: 0,
        workloads: Vec::new(),
        usage: NodeUsage::default(),
        events,
        dropped_events: 0,
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
