//! Table tests: each row is (fleet, now) -> the expected placement, new generations,
//! republished generations, rotation and reasons. `check` also asserts, for every row, that
//! the order of the fleet's lists does not matter and that deciding again on the fleet the
//! plan leaves behind moves nothing (the controller runs on every change, report and tick).

use std::collections::BTreeMap;
use std::path::Path;

use shoal_model::fit::{Mismatch, Resource, Shortfall};
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
    rolled_out(name, revision, placement, resources, "{}")
}

/// As [`workload`], with its `spec.rollout` as a flow mapping.
fn rolled_out(
    name: &str,
    revision: u64,
    placement: &str,
    resources: &str,
    rollout: &str,
) -> StoredWorkload {
    let text = format!(
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  placement: {placement}\n  rollout: {rollout}\n  containers: [{{ name: c, image: busybox, resources: {resources}, env: {{ REVISION: \"{revision}\" }} }}]\n"
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

/// A revision every node gets at once (`maxUnavailable: 100%`).
fn at_once(name: &str, revision: u64, placement: &str) -> StoredWorkload {
    rolled_out(name, revision, placement, "{}", "{ maxUnavailable: 100% }")
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
        agent_update: None,
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
    next.assigned = plan.assigned.clone();
    next.rollouts = plan.rollouts.clone();
    next.agent.assigned = plan.agent_assigned.clone();
    next.agent.upgrades = plan.agent_upgrades.clone();
    // The store keeps every revision applied; the snapshot reads those nodes were given.
    for stored in &fleet.workloads {
        next.revisions.insert(
            (stored.workload.name.clone(), stored.revision),
            stored.workload.clone(),
        );
    }
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
    fleet.workloads[0] = at_once("reader", 2, "{ mode: every }");
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
    fleet.workloads[0] = at_once("reader", 2, "{ mode: every }");
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
                NotPlaced::Unfit(vec![Unfit::Mismatch(Mismatch::Selector {
                    key: "role".into(),
                    wanted: "gateway".into(),
                    actual: Some("sensor".into()),
                })]),
            ),
            (
                "big",
                "g",
                NotPlaced::Unfit(vec![Unfit::Insufficient(Shortfall {
                    resource: Resource::Memory,
                    requested: 2 << 30,
                    free: 1 << 30,
                    capacity: 1 << 30,
                })]),
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
                    short: Some(Short::Unmatched(vec![(
                        Rule::Insufficient(Resource::Memory),
                        2,
                    )])),
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
            "changed since generation 4: a workload it runs has a new revision, or the agent it should run changed",
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

// ---------------------------------------------------------------------------------------
// rollouts

use rollout::{Failure, Outcome, State};
use shoal_model::wire::{ContainerState, ContainerStatus, ExitInfo, Health, WorkloadStatus};

/// How the nodes run what they were given, in [`run_rollout`].
#[derive(Clone, Copy, PartialEq)]
enum Runs {
    /// Running, and healthy.
    Well,
    /// Exits with status 1 at once.
    Crashing,
    /// Reports nothing at all.
    Silent,
}

fn container(state: ContainerState, health: Health, exit: Option<i32>) -> ContainerStatus {
    ContainerStatus {
        name: "c".into(),
        state,
        health,
        restarts: 0,
        last_exit: exit.map(|code| ExitInfo {
            code: Some(code),
            signal: None,
            oom_killed: false,
            at_ms: NOW,
        }),
        oom_kills: 0,
        started_at_ms: Some(NOW),
        pid: Some(1),
        memory_bytes: None,
        cpu_usage_ns: None,
        message: None,
    }
}

/// What `node` reports of each workload it was given, running as `runs(revision)` says.
fn report_given(fleet: &Fleet, node: &str, runs: &dyn Fn(&str, u64) -> Runs) -> Option<NodeStatus> {
    let mut workloads = Vec::new();
    for (workload, nodes) in &fleet.assigned {
        let Some(a) = nodes.get(node) else { continue };
        let state = match runs(node, a.revision) {
            Runs::Well => container(ContainerState::Running, Health::Unknown, None),
            Runs::Crashing => container(ContainerState::Exited, Health::Unknown, Some(1)),
            Runs::Silent => return None,
        };
        workloads.push(WorkloadStatus {
            name: workload.clone(),
            revision: a.revision,
            containers: vec![state],
            rolled_back: None,
        });
    }
    Some(NodeStatus {
        workloads,
        ..status(node, 0)
    })
}

/// Runs passes a second apart from `start`, every node reporting what it was given after
/// each, until nothing changes or `passes` ran. Returns the fleet and, per pass, the nodes
/// updating to `revision` (given it, not yet done or failed).
fn run_rollout(
    mut fleet: Fleet,
    start: u64,
    passes: usize,
    revision: u64,
    runs: &dyn Fn(&str, u64) -> Runs,
) -> (Fleet, Vec<Vec<String>>) {
    let mut history = Vec::new();
    for i in 0..passes {
        let now = start + 1_000 * i as u64;
        let plan = decide(&fleet, now);
        fleet = after(&fleet, &plan);
        let names: Vec<String> = fleet.nodes.iter().map(|n| n.name.clone()).collect();
        for node in names {
            if !fleet.nodes.iter().any(|n| n.name == node && n.online) {
                continue;
            }
            if let Some(status) = report_given(&fleet, &node, runs) {
                fleet.statuses.insert(node, status);
            }
        }
        let updating: Vec<String> = fleet
            .assigned
            .values()
            .flat_map(|nodes| nodes.iter())
            .filter(|(_, a)| a.revision == revision && a.outcome == Outcome::Updating)
            .map(|(n, _)| n.clone())
            .collect();
        history.push(updating);
    }
    (fleet, history)
}

/// How nodes run in [`run_rollout`]: revision 2 as `runs` on `nodes`, everything else well.
fn revision_2<'a>(nodes: &'a [&'a str], runs: Runs) -> impl Fn(&str, u64) -> Runs + 'a {
    move |node, revision| {
        if revision == 2 && nodes.contains(&node) {
            runs
        } else {
            Runs::Well
        }
    }
}

const NODE_NAMES: [&str; 6] = ["a", "b", "c", "d", "e", "f"];

fn six_nodes() -> Vec<StoredNode> {
    NODE_NAMES.map(node).to_vec()
}

const CANARY_WAVES: &str = "{ canary: 1, maxUnavailable: 2, healthyFor: 3s }";

/// `app` at revision 1 done on every node of `nodes`, then revision 2 applied.
fn revision_2_applied(nodes: Vec<StoredNode>, rollout: &str) -> Fleet {
    let fleet = fleet(
        vec![rolled_out("app", 1, "{ mode: every }", "{}", rollout)],
        nodes,
    );
    let (mut fleet, _) = run_rollout(fleet, NOW, 10, 1, &|_, _| Runs::Well);
    assert!(
        fleet.assigned["app"]
            .values()
            .all(|a| a.revision == 1 && a.outcome == Outcome::Done),
        "revision 1 everywhere: {:#?}",
        fleet.assigned
    );
    assert_eq!(fleet.rollouts["app"].state, State::Complete);
    fleet.workloads[0] = rolled_out("app", 2, "{ mode: every }", "{}", rollout);
    fleet
}

#[test]
fn a_new_workload_goes_to_every_node_at_once_there_is_nothing_to_keep() {
    let fleet = fleet(
        vec![rolled_out("app", 1, "{ mode: every }", "{}", CANARY_WAVES)],
        six_nodes(),
    );
    let plan = decide(&fleet, NOW);
    assert_eq!(plan.desired.len(), 6);
    assert!(plan.assigned["app"].values().all(|a| a.revision == 1));
}

#[test]
fn a_new_revision_goes_to_the_canary_alone_then_in_waves_of_max_unavailable() {
    let fleet = revision_2_applied(six_nodes(), CANARY_WAVES);
    let (fleet, history) = run_rollout(fleet, NOW + MIN, 40, 2, &|_, _| Runs::Well);
    eprintln!("updating per pass: {history:?}");
    // The canary alone until it has been healthy for 3 s, then never more than 2 at once.
    let canary_passes = history
        .iter()
        .take_while(|u| u.len() <= 1 && !u.is_empty())
        .count();
    assert!(canary_passes >= 3, "{history:?}");
    assert_eq!(
        history[0],
        vec!["a".to_string()],
        "the canary is the first node by name"
    );
    assert!(history.iter().all(|u| u.len() <= 2), "{history:?}");
    assert!(
        history.iter().any(|u| u.len() == 2),
        "waves of two: {history:?}"
    );
    assert!(
        fleet.assigned["app"]
            .values()
            .all(|a| a.revision == 2 && a.outcome == Outcome::Done),
        "{:#?}",
        fleet.assigned
    );
    let rollout = &fleet.rollouts["app"];
    assert_eq!((rollout.state, rollout.stable), (State::Complete, Some(1)));
    // Settled: deciding again moves nothing.
    let now = NOW + MIN + 41_000;
    assert!(decide(&fleet, now).is_settled());
}

#[test]
fn a_canary_percentage_is_of_the_workloads_nodes_rounded_up() {
    // 34% of 6 nodes is 2.04: three canaries, updating together before any wave.
    let fleet = revision_2_applied(
        six_nodes(),
        "{ canary: 34%, maxUnavailable: 1, healthyFor: 3s }",
    );
    let (fleet, history) = run_rollout(fleet, NOW + MIN, 40, 2, &|_, _| Runs::Well);
    eprintln!("updating per pass: {history:?}");
    assert_eq!(history[0], vec!["a", "b", "c"], "{history:?}");
    let after_canaries: Vec<&Vec<String>> = history.iter().skip_while(|u| u.len() == 3).collect();
    assert!(after_canaries.iter().all(|u| u.len() <= 1), "{history:?}");
    assert_eq!(fleet.rollouts["app"].state, State::Complete);
}

#[test]
fn a_node_that_rolled_back_by_itself_failed_the_revision_for_the_reason_it_gives() {
    let fleet = revision_2_applied(six_nodes(), CANARY_WAVES);
    let (mut fleet, _) = run_rollout(fleet, NOW + MIN, 1, 2, &|_, _| Runs::Well);
    assert_eq!(fleet.assigned["app"]["a"].revision, 2, "the canary got it");
    // The canary reports revision 1 running: it went back from 2, whose containers restarted
    // too often there. Healthy, but it failed the revision all the same.
    let mut status = report_given(&fleet, "a", &|_, _| Runs::Well).expect("a status");
    status.workloads[0].revision = 1;
    status.workloads[0].rolled_back = Some(shoal_model::wire::RolledBack {
        revision: 2,
        failure: Failure::Restarting,
    });
    fleet.statuses.insert("a".into(), status);
    let plan = decide(&fleet, NOW + MIN + 1_000);
    assert_eq!(
        plan.rollouts["app"].state,
        State::RolledBack { failed: 1, to: 1 },
        "{:#?}",
        plan.rollouts
    );
    assert_eq!(plan.assigned["app"]["a"].revision, 1);
    assert!(plan.assigned["app"]
        .iter()
        .filter(|(n, _)| *n != "a")
        .all(|(_, a)| a.revision == 1 && a.since_ms == NOW));
}

#[test]
fn a_crashing_revision_halts_after_the_canary_and_the_canary_goes_back_to_the_stable_one() {
    let fleet = revision_2_applied(six_nodes(), CANARY_WAVES);
    let crashing = revision_2(&NODE_NAMES, Runs::Crashing);
    let (fleet, history) = run_rollout(fleet, NOW + MIN, 10, 2, &crashing);
    assert_eq!(history[0], vec!["a".to_string()]);
    assert!(history[1..].iter().all(Vec::is_empty), "{history:?}");
    assert_eq!(
        fleet.rollouts["app"].state,
        State::RolledBack { failed: 1, to: 1 }
    );
    for (node, a) in &fleet.assigned["app"] {
        assert_eq!(a.revision, 1, "{node} back on or still on revision 1");
        if node != "a" {
            assert_eq!(a.since_ms, NOW, "{node} was never touched");
        }
    }
    // What the nodes are sent: revision 1 everywhere, settled.
    let plan = decide(&fleet, NOW + 2 * MIN);
    assert!(plan.is_settled(), "{plan:#?}");
}

#[test]
fn without_auto_rollback_a_failing_revision_halts_and_the_nodes_keep_what_they_have() {
    let rollout = "{ canary: 1, maxUnavailable: 2, healthyFor: 3s, autoRollback: false }";
    let fleet = revision_2_applied(six_nodes(), rollout);
    let crashing = revision_2(&NODE_NAMES, Runs::Crashing);
    let (fleet, _) = run_rollout(fleet, NOW + MIN, 10, 2, &crashing);
    assert_eq!(fleet.rollouts["app"].state, State::Halted { failed: 1 });
    let a = &fleet.assigned["app"]["a"];
    assert_eq!(
        (a.revision, a.outcome),
        (2, Outcome::Failed(Failure::Crashed))
    );
    assert!(fleet.assigned["app"]
        .iter()
        .filter(|(n, _)| *n != "a")
        .all(|(_, a)| a.revision == 1));
}

#[test]
fn a_node_offline_before_its_wave_is_deferred_and_gets_the_revision_when_it_returns() {
    let mut fleet = revision_2_applied(six_nodes(), CANARY_WAVES);
    fleet.nodes[5].online = false; // f
    let (mut fleet, _) = run_rollout(fleet, NOW + MIN, 40, 2, &|_, _| Runs::Well);
    assert_eq!(fleet.rollouts["app"].state, State::Complete);
    assert_eq!(fleet.assigned["app"]["f"].revision, 1, "deferred");
    fleet.nodes[5].online = true;
    let (fleet, _) = run_rollout(fleet, NOW + 2 * MIN, 5, 2, &|_, _| Runs::Well);
    assert_eq!(fleet.assigned["app"]["f"].revision, 2, "given it on return");
}

#[test]
fn a_node_silent_past_the_progress_deadline_fails_the_rollout() {
    let fleet = revision_2_applied(six_nodes(), CANARY_WAVES);
    let silent = revision_2(&["a"], Runs::Silent);
    let (fleet, _) = run_rollout(fleet, NOW + MIN, 3, 2, &silent);
    assert_eq!(
        fleet.rollouts["app"].state,
        State::Progressing,
        "within the deadline"
    );
    let plan = decide(
        &fleet,
        NOW + MIN + shoal_model::manifest::DEFAULT_PROGRESS_DEADLINE.as_millis() as u64,
    );
    assert_eq!(
        plan.rollouts["app"].state,
        State::RolledBack { failed: 1, to: 1 }
    );
    assert_eq!(
        plan.assigned["app"]["a"].revision, 1,
        "the silent canary is sent revision 1 again"
    );
}

#[test]
fn the_next_pass_is_due_when_a_canary_has_been_healthy_for_healthy_for() {
    let fleet = revision_2_applied(six_nodes(), CANARY_WAVES);
    let (fleet, _) = run_rollout(fleet, NOW + MIN, 2, 2, &|_, _| Runs::Well);
    // The canary reported ready at the second pass (NOW + MIN + 1 s): its gate opens 3 s on.
    let plan = decide(&fleet, NOW + MIN + 1_500);
    assert_eq!(plan.wake_ms, Some(NOW + MIN + 1_000 + 3_000));
}

#[test]
fn failures_below_the_failure_threshold_let_the_rollout_complete() {
    let rollout = "{ maxUnavailable: 2, healthyFor: 1s, failureThreshold: 2 }";
    let fleet = revision_2_applied(six_nodes(), rollout);
    let one_bad = revision_2(&["c"], Runs::Crashing);
    let (fleet, _) = run_rollout(fleet, NOW + MIN, 30, 2, &one_bad);
    assert_eq!(fleet.rollouts["app"].state, State::Complete);
    assert_eq!(
        fleet.assigned["app"]["c"].outcome,
        Outcome::Failed(Failure::Crashed)
    );
    // 34% of six nodes rounds up to 3: two failed nodes pass, three halt it.
    let rollout = "{ maxUnavailable: 6, healthyFor: 1s, failureThreshold: 34% }";
    let bad = |count: usize| revision_2(&NODE_NAMES[..count], Runs::Crashing);
    let fleet = revision_2_applied(six_nodes(), rollout);
    let (fleet, _) = run_rollout(fleet, NOW + MIN, 30, 2, &bad(2));
    assert_eq!(fleet.rollouts["app"].state, State::Complete);
    let fleet = revision_2_applied(six_nodes(), rollout);
    let (fleet, _) = run_rollout(fleet, NOW + MIN, 30, 2, &bad(3));
    assert_eq!(
        fleet.rollouts["app"].state,
        State::RolledBack { failed: 3, to: 1 }
    );
}

#[test]
fn a_progress_deadline_set_in_the_manifest_is_the_one_that_fails_a_silent_node() {
    let rollout = "{ canary: 1, healthyFor: 1s, progressDeadline: 30s }";
    let fleet = revision_2_applied(six_nodes(), rollout);
    let silent = revision_2(&["a"], Runs::Silent);
    let (fleet, _) = run_rollout(fleet, NOW + MIN, 3, 2, &silent);
    assert_eq!(fleet.rollouts["app"].state, State::Progressing);
    let plan = decide(&fleet, NOW + MIN + 29_000);
    assert_eq!(plan.rollouts["app"].state, State::Progressing);
    assert_eq!(
        plan.wake_ms,
        Some(NOW + MIN + 30_000),
        "woken at the deadline"
    );
    let plan = decide(&fleet, NOW + MIN + 30_000);
    assert_eq!(
        plan.rollouts["app"].state,
        State::RolledBack { failed: 1, to: 1 }
    );
}

#[test]
fn with_no_signing_key_no_node_is_given_a_revision() {
    let mut fleet = fleet(vec![w("app", "{ mode: every }")], vec![node("a")]);
    fleet.keys.clear();
    let plan = decide(&fleet, NOW);
    assert!(plan.desired.is_empty());
    assert!(
        plan.assigned.is_empty() && plan.rollouts.is_empty(),
        "{plan:#?}"
    );
}

// ---- agent upgrades ----

fn agent_fleet(nodes: Vec<StoredNode>, selector: &[(&str, &str)]) -> Fleet {
    use crate::control::agent::{AgentFleet, AgentUpgrade, ReleaseTrust, Strategy, UpgradeRollout};
    use shoal_model::release::{AgentRelease, Version};
    let mut fleet = fleet(Vec::new(), nodes);
    fleet.agent = AgentFleet {
        upgrades: vec![AgentUpgrade {
            selector: selector
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect(),
            version: Version::new(0, 2, 0),
            created_ms: NOW - 1,
            // All at once, as before rollouts: this test is about the desired state.
            strategy: Strategy::default(),
            previous: None,
            rollout: UpgradeRollout::start(NOW - 1, true),
        }],
        releases: vec![crate::store::StoredRelease {
            release: AgentRelease {
                version: Version::new(0, 2, 0),
                arch: shoal_model::elf::Arch::Aarch64,
                sha256: [9; 32],
                size: 100,
                minimum: None,
            },
            signature: vec![1; 72],
            created_ms: 0,
        }],
        trust: Some(ReleaseTrust {
            keys: vec![key(1, KeyState::Active).public],
            endorsements: vec![vec![2; 72]],
        }),
        source: Some("https://hub.example:7440".parse().expect("url")),
        assigned: BTreeMap::new(),
    };
    fleet
}

#[test]
fn an_agent_upgrade_names_the_release_in_the_desired_state_of_the_nodes_it_picks_once() {
    let nodes = vec![
        node("a").reads(&[2, 3]).label("site", "one"),
        node("b").reads(&[2, 3]).label("site", "two"),
        // Release 0.1.0's agent reads version 2 only: it cannot update itself.
        node("c").label("site", "one"),
    ];
    let before = settled(fleet(Vec::new(), nodes.clone()));
    let mut fleet = agent_fleet(nodes, &[("site", "one")]);
    fleet.published = before.published.clone();
    fleet.statuses = before.statuses.clone();
    let plan = decide(&fleet, NOW);
    let given: BTreeMap<&str, Option<String>> = plan
        .desired
        .iter()
        .map(|d| {
            (
                d.state.node_id.as_str(),
                d.state
                    .agent
                    .as_ref()
                    .map(|t| t.release.version.to_string()),
            )
        })
        .collect();
    assert_eq!(
        given,
        BTreeMap::from([("a", Some("0.2.0".to_string()))]),
        "only the picked node that reads version 3 gets a new generation"
    );
    // Settled: deciding again on what the plan leaves publishes nothing.
    let next = after(&fleet, &plan);
    let again = decide(&next, NOW);
    assert!(again.desired.is_empty(), "{:?}", again.desired);
    // Without an upgrade the node gets a state without a target: back to its old digest.
    let mut cancelled = next.clone();
    cancelled.agent.upgrades.clear();
    let plan = decide(&cancelled, NOW);
    assert_eq!(plan.desired.len(), 1);
    assert_eq!(plan.desired[0].state.agent, None);
}

#[test]
fn an_agent_upgrade_reaches_a_canary_first_and_the_other_nodes_once_it_is_proven() {
    let nodes = vec![
        node("a").reads(&[2, 3]),
        node("b").reads(&[2, 3]),
        node("c").reads(&[2, 3]),
    ];
    let before = settled(fleet(Vec::new(), nodes.clone()));
    let mut fleet = agent_fleet(nodes, &[]);
    fleet.agent.upgrades[0].rollout = crate::control::agent::UpgradeRollout::start(NOW - 1, false);
    fleet.published = before.published.clone();
    fleet.statuses = before.statuses.clone();
    let targets = |plan: &Plan| -> Vec<String> {
        plan.desired
            .iter()
            .filter(|d| d.state.agent.is_some())
            .map(|d| d.state.node_id.clone())
            .collect()
    };
    let plan = decide(&fleet, NOW);
    assert_eq!(targets(&plan), ["a"], "the canary alone");
    assert!(plan.agent_changed);
    let mut next = after(&fleet, &plan);
    assert!(
        decide(&next, NOW + 1).is_settled(),
        "nothing more until it is proven"
    );
    // The canary runs the version, proven: the next wave (25% of 3, rounded up: one node).
    if let Some(facts) = next.nodes[0].facts.as_mut() {
        facts.agent_version = "0.2.0".into();
    }
    let plan = decide(&next, NOW + 2);
    assert_eq!(targets(&plan), ["b"]);
    next = after(&next, &plan);
    if let Some(facts) = next.nodes[1].facts.as_mut() {
        facts.agent_version = "0.2.0".into();
    }
    let plan = decide(&next, NOW + 3);
    assert_eq!(targets(&plan), ["c"]);
    next = after(&next, &plan);
    if let Some(facts) = next.nodes[2].facts.as_mut() {
        facts.agent_version = "0.2.0".into();
    }
    let plan = decide(&next, NOW + 4);
    assert!(plan.desired.is_empty(), "the targets stay as they are");
    assert_eq!(
        plan.agent_upgrades[0].rollout.state,
        crate::control::rollout::State::Complete
    );
    let next = after(&next, &plan);
    assert!(decide(&next, NOW + 5).is_settled());
}
