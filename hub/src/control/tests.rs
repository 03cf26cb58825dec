//! Table tests: each row is (fleet, now) -> the expected placement, new generations,
//! republished generations, rotation and reasons. `check` also asserts, for every row, that
//! the order of the fleet's lists does not matter and that deciding again on the fleet the
//! plan leaves behind moves nothing (the controller runs on every change, report and tick).

use std::collections::BTreeMap;
use std::path::Path;

use shoal_model::manifest::parse_manifest;
use shoal_model::node::{Capacity, NodeFacts};
use shoal_model::wire::signing::PublicKey;
use shoal_model::wire::{NodeStatus, NodeUsage};

use super::*;
use crate::scheduler::{NotPlaced, Note, PlacedOn, Rule, Schedulable, Short, Summary, Unfit};
use crate::store::{KeyState, StoredKey};

const MIN: u64 = 60_000;
const DAY: u64 = 24 * 60 * MIN;
/// The wall clock of every row unless it says otherwise.
const NOW: u64 = 100 * DAY;

/// A workload at `revision`: its `placement` and its container's `resources` as flow mappings.
fn workload(name: &str, revision: u64, placement: &str, resources: &str) -> StoredWorkload {
    let text = format!(
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  placement: {placement}\n  containers: [{{ name: c, image: busybox, resources: {resources}, env: {{ REVISION: \"{revision}\" }} }}]\n"
    );
    let (mut loaded, diagnostics) = parse_manifest(Path::new("row.yaml"), &text);
    assert!(diagnostics.is_empty(), "{text}\n{diagnostics:?}");
    StoredWorkload {
        workload: loaded.remove(0).workload,
        revision,
        created_ms: 0,
        updated_ms: 0,
    }
}

fn w(name: &str, placement: &str) -> StoredWorkload {
    workload(name, 1, placement, "{}")
}

/// An enrolled, online, schedulable node with 1Gi and no labels.
fn node(name: &str) -> StoredNode {
    StoredNode {
        name: name.to_string(),
        labels: BTreeMap::new(),
        schedulable: Schedulable::Yes,
        created_ms: 0,
        facts: Some(NodeFacts {
            arch: "arm64".into(),
            os: "linux".into(),
            kernel: "6.1.0".into(),
            cgroup_version: 2,
            capacity: Capacity {
                memory_bytes: 1 << 30,
                cpu_millis: 4000,
                pids: 4096,
            },
            agent_version: "0.1.0".into(),
            labels: BTreeMap::new(),
            wire_versions: Vec::new(),
        }),
        online: true,
        last_seen_ms: Some(NOW),
        offline_since_ms: None,
        enrolled: true,
    }
}

trait NodeRow {
    /// A label the agent reports.
    fn label(self, key: &str, value: &str) -> Self;
    /// Offline for `ms` at [`NOW`].
    fn offline_for(self, ms: u64) -> Self;
    fn not_enrolled(self) -> Self;
    /// The wire versions its agent announces (none: release 0.1.0).
    fn reads(self, versions: &[u8]) -> Self;
}

impl NodeRow for StoredNode {
    fn label(mut self, key: &str, value: &str) -> Self {
        if let Some(facts) = &mut self.facts {
            facts.labels.insert(key.into(), value.into());
        }
        self
    }
    fn offline_for(mut self, ms: u64) -> Self {
        self.online = false;
        self.offline_since_ms = Some(NOW - ms);
        self
    }
    fn not_enrolled(mut self) -> Self {
        self.enrolled = false;
        self
    }
    fn reads(mut self, versions: &[u8]) -> Self {
        if let Some(facts) = &mut self.facts {
            facts.wire_versions = versions.to_vec();
        }
        self
    }
}

fn key(seed: u8, state: KeyState) -> StoredKey {
    let public = PublicKey([seed; 32]);
    StoredKey {
        id: public.id().to_string(),
        public,
        pkcs8: None,
        state,
        created_ms: u64::from(seed),
        changed_ms: u64::from(seed),
    }
}

fn id(seed: u8) -> String {
    PublicKey([seed; 32]).id().to_string()
}

fn status(node: &str, observed_generation: u64) -> NodeStatus {
    NodeStatus {
        node_id: node.to_string(),
        observed_generation,
        sequence: 1,
        sent_at_ms: NOW,
        workloads: Vec::new(),
        usage: NodeUsage::default(),
        events: Vec::new(),
        dropped_events: 0,
    }
}

/// A fleet with one active key (seed 1).
fn fleet(workloads: Vec<StoredWorkload>, nodes: Vec<StoredNode>) -> Fleet {
    Fleet {
        workloads,
        nodes,
        keys: vec![key(1, KeyState::Active)],
        ..Fleet::default()
    }
}

/// What the controller leaves behind after storing and publishing `plan`: the placement, the
/// new desired states and the promotion stored; the broker retains what was published.
fn after(fleet: &Fleet, plan: &Plan) -> Fleet {
    let mut next = fleet.clone();
    next.placement = plan.placement.placement.clone();
    for desired in &plan.desired {
        next.published.insert(
            desired.state.node_id.clone(),
            Published {
                generation: desired.state.generation,
                digest: desired.digest.clone(),
                signing_keys: desired
                    .state
                    .signing_keys
                    .iter()
                    .map(|k| k.id().to_string())
                    .collect(),
                wire_version: desired.wire_version,
            },
        );
    }
    if let Some(promoted) = plan.promote() {
        for key in &mut next.keys {
            match key.state {
                KeyState::Active => key.state = KeyState::Retired,
                KeyState::Next if key.id == promoted => key.state = KeyState::Active,
                _ => {}
            }
        }
    }
    if let Some(retained) = &mut next.retained {
        for (node, published) in &next.published {
            retained.insert(node.clone(), published.generation);
        }
    }
    next
}

/// `fleet` after the controller settled it and every node reported the newest generation.
fn settled(mut fleet: Fleet) -> Fleet {
    for _ in 0..3 {
        let plan = decide(&fleet, NOW);
        fleet = after(&fleet, &plan);
        fleet.statuses = fleet
            .published
            .iter()
            .map(|(node, p)| (node.clone(), status(node, p.generation)))
            .collect();
    }
    fleet
}

/// (workload, node ids)
type Nodes<'a> = &'a [(&'a str, &'a [&'a str])];

#[derive(Default)]
struct Case<'a> {
    fleet: Fleet,
    /// [`NOW`] when `None`.
    now: Option<u64>,
    /// The whole expected placement.
    placed: Nodes<'a>,
    /// Every node that gets a new desired state, with its generation.
    issued: &'a [(&'a str, u64)],
    /// Every node whose stored desired state is published again, with its generation.
    republished: &'a [(&'a str, u64)],
    rotation: Rotation,
    /// Why selected nodes get a new desired state.
    why: Vec<(&'a str, DesiredReason)>,
    /// Why selected workloads are not on selected nodes.
    why_not: Vec<(&'a str, &'a str, NotPlaced)>,
    /// Why selected workloads are on selected nodes.
    why_on: Vec<(&'a str, &'a str, PlacedOn)>,
    /// Selected workloads' summaries.
    summary: Vec<(&'a str, Summary)>,
    /// The wire version of selected nodes' new desired states.
    wire: &'a [(&'a str, u8)],
    /// Every node that reads none of the hub's wire versions.
    unreadable: &'a [&'a str],
}

fn placement(rows: Nodes<'_>) -> Placement {
    rows.iter()
        .filter(|(_, nodes)| !nodes.is_empty())
        .map(|(w, nodes)| {
            (
                (*w).to_string(),
                nodes.iter().map(|n| (*n).to_string()).collect(),
            )
        })
        .collect()
}

fn check(case: Case<'_>) {
    let now = case.now.unwrap_or(NOW);
    let fleet = &case.fleet;
    let plan = decide(fleet, now);
    assert_eq!(
        plan.placement.placement,
        placement(case.placed),
        "placement; reasons: {:#?}",
        plan.placement.reasons
    );
    assert_eq!(
        plan.placement_changed,
        plan.placement.placement != fleet.placement
    );
    let issued: Vec<(&str, u64)> = plan
        .desired
        .iter()
        .map(|d| (d.state.node_id.as_str(), d.state.generation))
        .collect();
    assert_eq!(issued, case.issued, "new generations: {:#?}", plan.desired);
    let republished: Vec<(&str, u64)> = plan
        .republish
        .iter()
        .map(|r| (r.node.as_str(), r.generation))
        .collect();
    assert_eq!(republished, case.republished, "republished");
    assert_eq!(plan.keys.rotation, case.rotation, "rotation");
    for (node, expected) in &case.why {
        let desired = plan.desired.iter().find(|d| d.state.node_id == *node);
        assert_eq!(desired.map(|d| &d.reason), Some(expected), "why {node}");
    }
    let reasons = |w: &str| {
        plan.placement
            .reasons
            .get(w)
            .unwrap_or_else(|| panic!("no reasons for {w}"))
    };
    for (w, node, expected) in &case.why_not {
        assert_eq!(
            reasons(w).not_placed.get(*node),
            Some(expected),
            "why {w} is not on {node}"
        );
    }
    for (w, node, expected) in &case.why_on {
        assert_eq!(
            reasons(w).placed_on.get(*node),
            Some(expected),
            "why {w} is on {node}"
        );
    }
    for (w, expected) in &case.summary {
        assert_eq!(&reasons(w).summary, expected, "summary of {w}");
    }
    for (node, expected) in case.wire {
        let desired = plan.desired.iter().find(|d| d.state.node_id == *node);
        assert_eq!(
            desired.map(|d| d.wire_version),
            Some(*expected),
            "wire of {node}"
        );
    }
    let unreadable: Vec<&str> = plan.unreadable.iter().map(|u| u.node.as_str()).collect();
    assert_eq!(unreadable, case.unreadable, "unreadable nodes");
    // Every new desired state lists what is placed on its node, in name order, and announces
    // the plan's keys, signer first.
    for desired in &plan.desired {
        let node = &desired.state.node_id;
        let listed: Vec<&str> = desired
            .state
            .workloads
            .iter()
            .map(|d| d.workload.name.as_str())
            .collect();
        let placed: Vec<&str> = plan
            .placement
            .placement
            .iter()
            .filter(|(_, nodes)| nodes.contains(node))
            .map(|(w, _)| w.as_str())
            .collect();
        assert_eq!(listed, placed, "the workloads of {node}");
        assert_eq!(desired.state.signing_keys, plan.keys.announced);
        assert_eq!(
            plan.keys.announced.first().map(|k| k.id().to_string()),
            plan.keys.signer,
            "the signer is announced first"
        );
    }

    let mut reordered = fleet.clone();
    reordered.workloads.reverse();
    reordered.nodes.reverse();
    reordered.keys.reverse();
    assert_eq!(
        decide(&reordered, now),
        plan,
        "the order of the fleet's lists changed the plan"
    );
    let again = decide(&after(fleet, &plan), now);
    assert!(
        again.is_settled(),
        "deciding again on what the plan leaves behind moved something: {again:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// desired states and generations

#[test]
fn a_new_workload_is_placed_and_published_with_the_next_generation() {
    let mut fleet = settled(fleet(Vec::new(), vec![node("a"), node("b")]));
    assert_eq!(fleet.published["a"].generation, 1, "an empty list first");
    fleet.workloads.push(w("web", "{ replicas: 1 }"));
    check(Case {
        fleet,
        placed: &[("web", &["a"])],
        issued: &[("a", 2)],
        why: vec![(
            "a",
            DesiredReason::Changed {
                previous: 1,
                added: vec!["web".into()],
                removed: Vec::new(),
                keys: None,
            },
        )],
        why_on: vec![(
            "web",
            "a",
            PlacedOn::New(vec![
                Note::Online,
                Note::Workloads(0),
                Note::FreeMemory(1 << 30),
            ]),
        )],
        ..Case::default()
    });
}

#[test]
fn every_node_gets_its_first_desired_state_even_an_empty_one() {
    check(Case {
        fleet: fleet(
            vec![w(
                "reader",
                "{ mode: every, nodeSelector: { role: gateway } }",
            )],
            vec![
                node("g").label("role", "gateway"),
                node("s"),
                node("new").not_enrolled(),
            ],
        ),
        placed: &[("reader", &["g"])],
        issued: &[("g", 1), ("new", 1), ("s", 1)],
        why: vec![("s", DesiredReason::First)],
        ..Case::default()
    });
}

#[test]
fn nothing_changed_issues_no_generation() {
    let fleet = settled(fleet(
        vec![w("web", "{ replicas: 2 }"), w("reader", "{ mode: every }")],
        vec![node("a"), node("b"), node("c")],
    ));
    check(Case {
        placed: &[("reader", &["a", "b", "c"]), ("web", &["a", "b"])],
        fleet,
        ..Case::default()
    });
}

#[test]
fn a_new_revision_raises_the_generation_of_the_nodes_that_run_it_only() {
    let mut fleet = settled(fleet(
        vec![w("web", "{ replicas: 1 }"), w("reader", "{ mode: every }")],
        vec![node("a"), node("b")],
    ));
    let a = fleet.published["a"].generation;
    fleet.workloads[0] = workload("web", 2, "{ replicas: 1 }", "{}");
    check(Case {
        fleet,
        placed: &[("reader", &["a", "b"]), ("web", &["a"])],
        issued: &[("a", a + 1)],
        why: vec![(
            "a",
            DesiredReason::Changed {
                previous: a,
                added: Vec::new(),
                removed: Vec::new(),
                keys: None,
            },
        )],
        ..Case::default()
    });
}

#[test]
fn a_restarted_hub_republishes_only_what_the_broker_lost_at_the_same_generation() {
    let mut fleet = settled(fleet(
        vec![w("reader", "{ mode: every }")],
        vec![node("a"), node("b"), node("c"), node("d")],
    ));
    fleet.workloads[0] = workload("reader", 2, "{ mode: every }", "{}");
    let mut fleet = settled(fleet);
    let generation = fleet.published["a"].generation;
    assert_eq!(generation, 2);
    // The broker kept a's, lost b's, holds an older one for c and a cleared one for d.
    fleet.retained = Some(BTreeMap::from([
        ("a".to_string(), generation),
        ("c".to_string(), generation - 1),
        ("d".to_string(), 0),
    ]));
    check(Case {
        fleet,
        placed: &[("reader", &["a", "b", "c", "d"])],
        republished: &[("b", generation), ("c", generation), ("d", generation)],
        ..Case::default()
    });
}

#[test]
fn a_restarted_hub_with_a_changed_workload_issues_a_new_generation_instead_of_republishing() {
    let mut fleet = settled(fleet(
        vec![w("reader", "{ mode: every }")],
        vec![node("a"), node("b")],
    ));
    let generation = fleet.published["a"].generation;
    fleet.retained = Some(BTreeMap::new());
    fleet.workloads[0] = workload("reader", 2, "{ mode: every }", "{}");
    check(Case {
        fleet,
        placed: &[("reader", &["a", "b"])],
        issued: &[("a", generation + 1), ("b", generation + 1)],
        ..Case::default()
    });
}

#[test]
fn a_removed_workload_leaves_its_nodes_with_a_new_generation() {
    let mut fleet = settled(fleet(
        vec![w("web", "{ replicas: 1 }"), w("reader", "{ mode: every }")],
        vec![node("a"), node("b")],
    ));
    let generation = fleet.published["a"].generation;
    fleet.workloads.remove(0);
    check(Case {
        fleet,
        placed: &[("reader", &["a", "b"])],
        issued: &[("a", generation + 1)],
        why: vec![(
            "a",
            DesiredReason::Changed {
                previous: generation,
                added: Vec::new(),
                removed: vec!["web".into()],
                keys: None,
            },
        )],
        ..Case::default()
    });
}

#[test]
fn with_no_active_key_nothing_is_issued() {
    let mut fleet = fleet(vec![w("web", "{ replicas: 1 }")], vec![node("a")]);
    fleet.keys.clear();
    check(Case {
        fleet,
        placed: &[("web", &["a"])],
        ..Case::default()
    });
}

// ---------------------------------------------------------------------------------------
// presence

#[test]
fn an_offline_node_keeps_its_workloads_and_its_generation() {
    let mut fleet = settled(fleet(
        vec![
            w("web", "{ replicas: 1, rescheduleAfter: 1h }"),
            w("reader", "{ mode: every }"),
        ],
        vec![node("a"), node("b")],
    ));
    fleet.nodes[0] = node("a").offline_for(30 * MIN);
    check(Case {
        fleet,
        placed: &[("reader", &["a", "b"]), ("web", &["a"])],
        why_on: vec![
            (
                "web",
                "a",
                PlacedOn::Kept(vec![Note::OfflineWithin {
                    offline_ms: 30 * MIN,
                    after: shoal_model::manifest::RescheduleAfter::After(
                        std::time::Duration::from_secs(3600),
                    ),
                }]),
            ),
            (
                "reader",
                "a",
                PlacedOn::Kept(vec![Note::OfflineEvery {
                    offline_ms: 30 * MIN,
                }]),
            ),
        ],
        ..Case::default()
    });
}

#[test]
fn a_node_lost_past_reschedule_after_hands_its_replica_on() {
    let mut fleet = settled(fleet(
        vec![w("web", "{ replicas: 1, rescheduleAfter: 10m }")],
        vec![node("a"), node("b")],
    ));
    let (a, b) = (
        fleet.published["a"].generation,
        fleet.published["b"].generation,
    );
    fleet.nodes[0] = node("a").offline_for(11 * MIN);
    check(Case {
        fleet,
        placed: &[("web", &["b"])],
        issued: &[("a", a + 1), ("b", b + 1)],
        why_not: vec![(
            "web",
            "a",
            NotPlaced::Unfit(vec![Unfit::Lost {
                offline_ms: 11 * MIN,
                after: shoal_model::manifest::RescheduleAfter::After(
                    std::time::Duration::from_secs(600),
                ),
            }]),
        )],
        ..Case::default()
    });
}

// ---------------------------------------------------------------------------------------
// placement reasons

#[test]
fn unplaceable_workloads_say_why_as_data() {
    check(Case {
        fleet: fleet(
            vec![
                w("gw", "{ replicas: 2, nodeSelector: { role: gateway } }"),
                workload("big", 1, "{ replicas: 1 }", "{ memory: 2Gi }"),
            ],
            vec![
                node("g").label("role", "gateway"),
                node("s").label("role", "sensor"),
            ],
        ),
        placed: &[("gw", &["g"])],
        issued: &[("g", 1), ("s", 1)],
        why_not: vec![
            (
                "gw",
                "s",
                NotPlaced::Unfit(vec![Unfit::Selector {
                    key: "role".into(),
                    wanted: "gateway".into(),
                    actual: Some("sensor".into()),
                }]),
            ),
            (
                "big",
                "g",
                NotPlaced::Unfit(vec![Unfit::Insufficient {
                    resource: "memory",
                    requested: "2Gi".into(),
                    free: "1Gi".into(),
                    capacity: "1Gi".into(),
                }]),
            ),
        ],
        summary: vec![
            (
                "gw",
                Summary {
                    placed: 1,
                    wanted: 2,
                    short: Some(Short::Unmatched(vec![(Rule::NodeSelector, 1)])),
                },
            ),
            (
                "big",
                Summary {
                    placed: 0,
                    wanted: 1,
                    short: Some(Short::Unmatched(vec![(Rule::Insufficient("memory"), 2)])),
                },
            ),
        ],
        ..Case::default()
    });
}

#[test]
fn a_fleet_with_no_nodes_says_so() {
    check(Case {
        fleet: fleet(vec![w("web", "{ replicas: 1 }")], Vec::new()),
        summary: vec![(
            "web",
            Summary {
                placed: 0,
                wanted: 1,
                short: Some(Short::NoNodes),
            },
        )],
        ..Case::default()
    });
}

// ---------------------------------------------------------------------------------------
// key rotation

/// A settled fleet of `nodes` in which a rotation to key 2 started and every node got a
/// desired state announcing both keys; the nodes in `reported` accepted it.
fn rotating(nodes: Vec<StoredNode>, reported: &[&str]) -> Fleet {
    let mut fleet = settled(fleet(vec![w("reader", "{ mode: every }")], nodes));
    fleet.keys.push(key(2, KeyState::Next));
    let plan = decide(&fleet, NOW);
    assert!(plan.promote().is_none() || reported.len() == fleet.nodes.len());
    fleet = after(&fleet, &plan);
    for node in reported {
        let generation = fleet.published[*node].generation;
        fleet
            .statuses
            .insert(node.to_string(), status(node, generation));
    }
    fleet
}

#[test]
fn starting_a_rotation_announces_the_next_key_beside_the_active_one() {
    let mut fleet = settled(fleet(vec![w("reader", "{ mode: every }")], vec![node("a")]));
    let generation = fleet.published["a"].generation;
    fleet.keys.push(key(2, KeyState::Next));
    check(Case {
        fleet,
        placed: &[("reader", &["a"])],
        issued: &[("a", generation + 1)],
        rotation: Rotation::Waiting {
            next: id(2),
            confirmed: Vec::new(),
            waiting: vec!["a".into()],
        },
        why: vec![(
            "a",
            DesiredReason::Changed {
                previous: generation,
                added: Vec::new(),
                removed: Vec::new(),
                keys: Some(vec![id(1), id(2)]),
            },
        )],
        ..Case::default()
    });
}

#[test]
fn the_rotation_waits_for_every_enrolled_node_to_have_the_next_key() {
    let fleet = rotating(vec![node("a"), node("b"), node("c").not_enrolled()], &["a"]);
    check(Case {
        fleet,
        placed: &[("reader", &["a", "b", "c"])],
        rotation: Rotation::Waiting {
            next: id(2),
            confirmed: vec!["a".into()],
            waiting: vec!["b".into()],
        },
        ..Case::default()
    });
}

// ---------------------------------------------------------------------------------------
// wire versions

#[test]
fn each_node_is_written_the_newest_wire_version_its_agent_reads() {
    let nodes = vec![
        node("a").reads(&[2, 3]),
        node("b"),
        node("c").reads(&[3, 4]),
        node("d").reads(&[2]),
    ];
    check(Case {
        fleet: fleet(vec![w("web", "{ mode: every }")], nodes),
        placed: &[("web", &["a", "b", "c", "d"])],
        issued: &[("a", 1), ("b", 1), ("c", 1), ("d", 1)],
        wire: &[("a", 3), ("b", 2), ("c", 3), ("d", 2)],
        ..Case::default()
    });
}

#[test]
fn a_node_that_reads_none_of_the_hubs_versions_gets_nothing_and_is_named() {
    let nodes = vec![node("a").reads(&[4, 5]), node("b").reads(&[2, 3])];
    check(Case {
        fleet: fleet(vec![w("web", "{ mode: every }")], nodes),
        placed: &[("web", &["a", "b"])],
        issued: &[("b", 1)],
        unreadable: &["a"],
        ..Case::default()
    });
    let text = Unreadable {
        node: "a".into(),
        announced: vec![4, 5],
    }
    .to_string();
    assert_eq!(
        text,
        "node `a` reads wire versions 4, 5 and this hub writes 2, 3: nothing can be sent to it \
         until the hub is upgraded"
    );
}

#[test]
fn an_agent_that_starts_reading_a_newer_version_is_sent_nothing_new() {
    let mut fleet = settled(fleet(vec![w("web", "{ mode: every }")], vec![node("a")]));
    assert_eq!(fleet.published["a"].wire_version, 2);
    fleet.nodes[0] = node("a").reads(&[2, 3]);
    check(Case {
        fleet,
        placed: &[("web", &["a"])],
        ..Case::default()
    });
}

#[test]
fn an_agent_that_went_back_to_an_older_release_gets_the_same_state_in_a_version_it_reads() {
    let nodes = vec![node("a").reads(&[2, 3]), node("b").reads(&[2, 3])];
    let mut fleet = settled(fleet(vec![w("web", "{ mode: every }")], nodes));
    assert_eq!(fleet.published["a"].wire_version, 3);
    let generation = fleet.published["a"].generation;
    fleet.nodes[0] = node("a");
    check(Case {
        fleet: fleet.clone(),
        placed: &[("web", &["a", "b"])],
        issued: &[("a", generation + 1)],
        wire: &[("a", 2)],
        why: vec![(
            "a",
            DesiredReason::Rewritten {
                previous: generation,
                from: 3,
                to: 2,
            },
        )],
        ..Case::default()
    });
    let plan = decide(&fleet, NOW);
    assert_eq!(
        plan.desired[0].state.workloads,
        desired::per_node(&fleet.workloads, &plan.placement.placement, &["a".into()])["a"],
        "the same workloads, so the agent restarts nothing"
    );
    assert_eq!(plan.desired[0].digest, fleet.published["a"].digest);
}

#[test]
fn the_next_key_is_promoted_once_every_enrolled_node_has_it() {
    let fleet = rotating(
        vec![node("a"), node("b"), node("c").not_enrolled()],
        &["a", "b"],
    );
    let generation = fleet.published["a"].generation;
    let plan = decide(&fleet, NOW);
    assert_eq!(plan.keys.signer, Some(id(2)), "the next key signs at once");
    assert_eq!(plan.keys.announced, vec![PublicKey([2; 32])]);
    check(Case {
        fleet,
        placed: &[("reader", &["a", "b", "c"])],
        issued: &[
            ("a", generation + 1),
            ("b", generation + 1),
            ("c", generation + 1),
        ],
        rotation: Rotation::Promote {
            next: id(2),
            retired: Some(id(1)),
            confirmed: vec!["a".into(), "b".into()],
        },
        why: vec![(
            "a",
            DesiredReason::Changed {
                previous: generation,
                added: Vec::new(),
                removed: Vec::new(),
                keys: Some(vec![id(2)]),
            },
        )],
        ..Case::default()
    });
}

#[test]
fn a_node_that_reported_an_older_generation_holds_the_rotation() {
    let mut fleet = rotating(vec![node("a"), node("b")], &["a", "b"]);
    let generation = fleet.published["b"].generation;
    fleet
        .statuses
        .insert("b".into(), status("b", generation - 1));
    check(Case {
        fleet,
        placed: &[("reader", &["a", "b"])],
        rotation: Rotation::Waiting {
            next: id(2),
            confirmed: vec!["a".into()],
            waiting: vec!["b".into()],
        },
        ..Case::default()
    });
}

#[test]
fn reasons_read_as_operators_expect() {
    let rows: Vec<(String, &str)> = vec![
        (DesiredReason::First.to_string(), "its first desired state"),
        (
            DesiredReason::Changed {
                previous: 4,
                added: vec!["web".into(), "db".into()],
                removed: vec!["old".into()],
                keys: None,
            }
            .to_string(),
            "changed since generation 4: adds web, db; removes old",
        ),
        (
            DesiredReason::Changed {
                previous: 4,
                added: Vec::new(),
                removed: Vec::new(),
                keys: None,
            }
            .to_string(),
            "changed since generation 4: a workload it runs has a new revision",
        ),
        (
            Republish {
                node: "a".into(),
                generation: 4,
                retained: None,
            }
            .to_string(),
            "the broker lost generation 4 of node a's desired state",
        ),
        (
            Rotation::Waiting {
                next: "k2".into(),
                confirmed: Vec::new(),
                waiting: (1..=7).map(|i| format!("n{i}")).collect(),
            }
            .to_string(),
            "the rotation to key k2 waits for 7 nodes to accept it: n1, n2, n3, n4, n5 and 2 more",
        ),
        (
            Rotation::Promote {
                next: "k2".into(),
                retired: Some("k1".into()),
                confirmed: Vec::new(),
            }
            .to_string(),
            "every enrolled node has the next signing key k2: it signs from now on, and k1 is retired",
        ),
    ];
    for (shown, expected) in rows {
        assert_eq!(shown, expected);
    }
}
