//! The snapshot reads back what was stored; a saved plan writes only what changed and skips
//! nodes removed since the snapshot.

use std::collections::BTreeMap;
use std::path::Path;

use shoal_model::manifest::parse_manifest;
use shoal_model::wire::signing::SigningKey;

use super::*;
use crate::store::KeyState;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    (dir, store)
}

fn placement(rows: &[(&str, &[&str])]) -> Placement {
    rows.iter()
        .map(|(w, nodes)| (w.to_string(), nodes.iter().map(|n| n.to_string()).collect()))
        .collect()
}

fn desired(node: &str, generation: u64) -> NodeDesired {
    NodeDesired {
        node: node.into(),
        generation,
        digest: format!("d{generation}"),
        payload: vec![1, 2, 3],
        signing_keys: vec!["k1".into(), "k2".into()],
    }
}

static NONE: Assignments = Assignments::new();
static NO_ROLLOUTS: BTreeMap<String, crate::control::rollout::Rollout> = BTreeMap::new();

#[test]
fn a_snapshot_holds_every_table_a_decision_reads() {
    let (_dir, store) = store();
    let (mut loaded, _) = parse_manifest(
        Path::new("t.yaml"),
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: { name: web }\nspec:\n  containers: [{ name: c, image: busybox }]\n",
    );
    store
        .apply(&[loaded.remove(0).workload], 1, false)
        .expect("apply");
    for node in ["a", "b"] {
        store
            .add_node(node, "h", &BTreeMap::new(), 1)
            .expect("add node");
    }
    let (key, pkcs8) = SigningKey::generate().expect("key");
    store
        .add_signing_key(key.public(), &pkcs8, KeyState::Active, 1)
        .expect("key");
    let before = placement(&[]);
    let after = placement(&[("web", &["a"])]);
    store
        .save_plan(
            PlanWrite {
                placement: (&before, &after),
                desired: &[desired("a", 3)],
                promote: None,
                assigned: (&NONE, &NONE),
                rollouts: (&NO_ROLLOUTS, &NO_ROLLOUTS),
                agent_assigned: (&BTreeMap::new(), &BTreeMap::new()),
                agent_upgrades: (&[], &[]),
            },
            5,
        )
        .expect("save");
    let snapshot = store.snapshot().expect("snapshot");
    assert_eq!(snapshot.workloads, store.workloads().expect("workloads"));
    assert_eq!(snapshot.nodes, store.nodes().expect("nodes"));
    assert_eq!(snapshot.placement, after);
    assert_eq!(
        snapshot.published,
        BTreeMap::from([(
            "a".to_string(),
            Published {
                generation: 3,
                digest: "d3".into(),
                signing_keys: vec!["k1".into(), "k2".into()],
                // The first byte of the stored payload.
                wire_version: 1,
            }
        )])
    );
    assert_eq!(snapshot.keys, store.signing_keys().expect("keys"));
    assert!(snapshot.statuses.is_empty());
}

#[test]
fn a_saved_plan_changes_only_the_placement_rows_that_differ() {
    let (_dir, store) = store();
    for node in ["a", "b", "c"] {
        store
            .add_node(node, "h", &BTreeMap::new(), 1)
            .expect("add node");
    }
    let first = placement(&[("web", &["a", "b"]), ("db", &["c"])]);
    let save = |before: &Placement, after: &Placement| {
        store
            .save_plan(
                PlanWrite {
                    placement: (before, after),
                    desired: &[],
                    promote: None,
                    assigned: (&NONE, &NONE),
                    rollouts: (&NO_ROLLOUTS, &NO_ROLLOUTS),
                    agent_assigned: (&BTreeMap::new(), &BTreeMap::new()),
                    agent_upgrades: (&[], &[]),
                },
                1,
            )
            .expect("save")
    };
    save(&Placement::new(), &first);
    assert_eq!(store.placement().expect("placement"), first);
    let second = placement(&[("web", &["b", "c"]), ("cache", &["a"])]);
    save(&first, &second);
    assert_eq!(store.placement().expect("placement"), second);
}

#[test]
fn a_node_removed_after_the_snapshot_gets_no_desired_state() {
    let (_dir, store) = store();
    for node in ["a", "b"] {
        store
            .add_node(node, "h", &BTreeMap::new(), 1)
            .expect("add node");
    }
    let _snapshot = store.snapshot().expect("snapshot");
    assert!(store.remove_node("b").expect("remove"));
    let none = Placement::new();
    let saved = store
        .save_plan(
            PlanWrite {
                placement: (&none, &none),
                desired: &[desired("a", 1), desired("b", 1)],
                promote: None,
                assigned: (&NONE, &NONE),
                rollouts: (&NO_ROLLOUTS, &NO_ROLLOUTS),
                agent_assigned: (&BTreeMap::new(), &BTreeMap::new()),
                agent_upgrades: (&[], &[]),
            },
            1,
        )
        .expect("save");
    assert_eq!(saved.into_iter().collect::<Vec<_>>(), ["a"]);
    let stored = store.node_desired().expect("desired");
    assert_eq!(stored.keys().collect::<Vec<_>>(), ["a"]);
}

#[test]
fn a_plan_promotes_the_next_key_only_while_it_is_still_next() {
    let (_dir, store) = store();
    let (active, pkcs8) = SigningKey::generate().expect("key");
    store
        .add_signing_key(active.public(), &pkcs8, KeyState::Active, 1)
        .expect("key");
    let (next, pkcs8) = SigningKey::generate().expect("key");
    store
        .add_signing_key(next.public(), &pkcs8, KeyState::Next, 2)
        .expect("key");
    let none = Placement::new();
    let next_id = next.public().id().to_string();
    let promote = |id: &str| {
        store
            .save_plan(
                PlanWrite {
                    placement: (&none, &none),
                    desired: &[],
                    promote: Some(id),
                    assigned: (&NONE, &NONE),
                    rollouts: (&NO_ROLLOUTS, &NO_ROLLOUTS),
                    agent_assigned: (&BTreeMap::new(), &BTreeMap::new()),
                    agent_upgrades: (&[], &[]),
                },
                3,
            )
            .expect("save");
    };
    promote(&next_id);
    let states = || -> Vec<(String, KeyState)> {
        store
            .signing_keys()
            .expect("keys")
            .into_iter()
            .map(|k| (k.id, k.state))
            .collect()
    };
    let promoted = states();
    assert!(promoted.contains(&(next_id.clone(), KeyState::Active)));
    assert!(promoted.contains(&(active.public().id().to_string(), KeyState::Retired)));
    // Promoting again (a plan decided before it was) changes nothing.
    promote(&next_id);
    assert_eq!(states(), promoted);
}
