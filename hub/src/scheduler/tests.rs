//! Table tests: each row is (workloads, nodes, current placement, now) -> the expected
//! placement and the reasons worth pinning. `check` also asserts, for every row, that the
//! order of the inputs does not matter and that deciding again from the decision changes
//! nothing (the scheduler is level-triggered: it runs on every change).

use std::path::Path;

use shoal_model::manifest::parse_manifest;
use shoal_model::node::Capacity;
use shoal_model::quantity::parse_bytes;

use super::*;

mod capacity;

const MIN: u64 = 60_000;
const DAY: u64 = 24 * 60 * MIN;
/// The wall clock of every row unless it says otherwise.
const NOW: u64 = 100 * DAY;

/// A workload from YAML: its `placement` as a flow mapping, one container without requests.
fn w(name: &str, placement: &str) -> Workload {
    wr(name, placement, "{}")
}

/// A workload from YAML, with its container's `resources` as a flow mapping.
fn wr(name: &str, placement: &str, resources: &str) -> Workload {
    let text = format!(
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  placement: {placement}\n  containers: [{{ name: c, image: busybox, resources: {resources} }}]\n"
    );
    let (mut workloads, diagnostics) = parse_manifest(Path::new("row.yaml"), &text);
    assert!(diagnostics.is_empty(), "{text}\n{diagnostics:?}");
    assert_eq!(workloads.len(), 1, "{text}");
    workloads.remove(0).workload
}

/// An online, schedulable arm64 node with 1Gi, 4 CPUs, 4096 pids and no labels.
fn node(id: &str) -> NodeView {
    NodeView {
        id: id.to_string(),
        facts: NodeFacts {
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
        },
        online: true,
        offline_since_ms: None,
        schedulable: Schedulable::Yes,
    }
}

trait NodeRow {
    fn label(self, key: &str, value: &str) -> Self;
    fn arch(self, arch: &str) -> Self;
    fn memory(self, memory: &str) -> Self;
    fn capacity(self, memory: &str, cpu_millis: u32, pids: u32) -> Self;
    /// Offline for `ms` at [`NOW`].
    fn offline_for(self, ms: u64) -> Self;
    fn cordoned(self) -> Self;
    fn drained(self) -> Self;
}

impl NodeRow for NodeView {
    fn label(mut self, key: &str, value: &str) -> Self {
        self.facts.labels.insert(key.into(), value.into());
        self
    }
    fn arch(mut self, arch: &str) -> Self {
        self.facts.arch = arch.into();
        self
    }
    fn memory(mut self, memory: &str) -> Self {
        self.facts.capacity.memory_bytes = parse_bytes(memory).expect("a memory size");
        self
    }
    fn capacity(mut self, memory: &str, cpu_millis: u32, pids: u32) -> Self {
        self.facts.capacity = Capacity {
            memory_bytes: parse_bytes(memory).expect("a memory size"),
            cpu_millis,
            pids,
        };
        self
    }
    fn offline_for(mut self, ms: u64) -> Self {
        self.online = false;
        self.offline_since_ms = Some(NOW - ms);
        self
    }
    fn cordoned(mut self) -> Self {
        self.schedulable = Schedulable::Cordoned;
        self
    }
    fn drained(mut self) -> Self {
        self.schedulable = Schedulable::Drained;
        self
    }
}

/// (workload, node ids)
type Nodes<'a> = &'a [(&'a str, &'a [&'a str])];
/// (workload, node, reason)
type Why<'a> = &'a [(&'a str, &'a str, &'a str)];

#[derive(Default)]
struct Case<'a> {
    workloads: Vec<Workload>,
    nodes: Vec<NodeView>,
    current: Nodes<'a>,
    /// [`NOW`] when `None`.
    now: Option<u64>,
    /// The whole expected placement (workload -> node ids).
    placed: Nodes<'a>,
    /// Selected entries of `not_placed`.
    why_not: Why<'a>,
    /// Selected entries of `placed_on`.
    why: Why<'a>,
    /// (workload, summary)
    summary: &'a [(&'a str, &'a str)],
}

/// Rows may list a workload placed nowhere (`("w", &[])`) for readability; a placement
/// does not.
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
    let current = placement(case.current);
    let decision = schedule(&case.workloads, &case.nodes, &current, now);
    assert_eq!(
        decision.placement,
        placement(case.placed),
        "placement; reasons: {:#?}",
        decision.reasons
    );
    let reasons = |w: &str| {
        decision
            .reasons
            .get(w)
            .unwrap_or_else(|| panic!("no reasons for {w}"))
    };
    for (w, node, expected) in case.why_not {
        assert_eq!(
            reasons(w)
                .not_placed
                .get(*node)
                .map(ToString::to_string)
                .as_deref(),
            Some(*expected),
            "why {w} is not on {node}; all: {:#?}",
            reasons(w)
        );
    }
    for (w, node, expected) in case.why {
        assert_eq!(
            reasons(w)
                .placed_on
                .get(*node)
                .map(ToString::to_string)
                .as_deref(),
            Some(*expected),
            "why {w} is on {node}; all: {:#?}",
            reasons(w)
        );
    }
    for (w, expected) in case.summary {
        assert_eq!(reasons(w).summary.to_string(), *expected, "summary of {w}");
    }
    // Every workload is explained on every node: placed_on where it runs, not_placed elsewhere.
    let names: BTreeSet<&str> = case.workloads.iter().map(|w| w.name.as_str()).collect();
    assert_eq!(
        decision
            .reasons
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        names
    );
    for (name, r) in &decision.reasons {
        let on: BTreeSet<&str> = r.placed_on.keys().map(String::as_str).collect();
        let runs: BTreeSet<&str> = decision
            .placement
            .get(name)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        assert_eq!(on, runs, "placed_on of {name}");
        assert_eq!(r.placed, runs.len(), "{r:#?}");
        for node in &case.nodes {
            let explained =
                r.placed_on.contains_key(&node.id) != r.not_placed.contains_key(&node.id);
            assert!(explained, "{name} on {}: {r:#?}", node.id);
        }
    }

    let mut workloads = case.workloads.clone();
    workloads.reverse();
    let mut nodes = case.nodes.clone();
    nodes.reverse();
    assert_eq!(
        schedule(&workloads, &nodes, &current, now),
        decision,
        "the order of the inputs changed the decision"
    );
    assert_eq!(
        schedule(&case.workloads, &case.nodes, &decision.placement, now).placement,
        decision.placement,
        "deciding again from the decision moved something"
    );
}

// ---------------------------------------------------------------------------------------
// every

#[test]
fn every_runs_on_each_matching_node() {
    check(Case {
        workloads: vec![w(
            "reader",
            "{ mode: every, nodeSelector: { role: gateway } }",
        )],
        nodes: vec![
            node("g1").label("role", "gateway"),
            node("g2").label("role", "gateway"),
            node("s1").label("role", "sensor"),
            node("x1"),
        ],
        placed: &[("reader", &["g1", "g2"])],
        why: &[("reader", "g1", "new")],
        why_not: &[
            (
                "reader",
                "s1",
                "nodeSelector role=gateway (node has role=sensor)",
            ),
            (
                "reader",
                "x1",
                "nodeSelector role=gateway (node has no label role)",
            ),
        ],
        summary: &[("reader", "2/2 placed")],
        ..Case::default()
    });
}

#[test]
fn every_goes_to_offline_nodes_too() {
    check(Case {
        workloads: vec![w("reader", "{ mode: every }")],
        nodes: vec![node("n1").offline_for(3 * DAY), node("n2")],
        placed: &[("reader", &["n1", "n2"])],
        why: &[("reader", "n1", "new: offline, gets it on reconnect")],
        summary: &[("reader", "2/2 placed")],
        ..Case::default()
    });
}

#[test]
fn every_workloads_never_move_when_offline() {
    check(Case {
        workloads: vec![w("reader", "{ mode: every }")],
        nodes: vec![node("n1").offline_for(2 * DAY + 3 * 60 * MIN), node("n2")],
        current: &[("reader", &["n1", "n2"])],
        placed: &[("reader", &["n1", "n2"])],
        why: &[
            (
                "reader",
                "n1",
                "kept: offline for 2d3h, every workloads never move",
            ),
            ("reader", "n2", "kept"),
        ],
        ..Case::default()
    });
}

#[test]
fn relabelled_node_loses_every_workload() {
    check(Case {
        workloads: vec![w(
            "reader",
            "{ mode: every, nodeSelector: { role: gateway } }",
        )],
        nodes: vec![
            node("g1").label("role", "gateway"),
            node("g2").label("role", "sensor"),
        ],
        current: &[("reader", &["g1", "g2"])],
        placed: &[("reader", &["g1"])],
        why_not: &[(
            "reader",
            "g2",
            "nodeSelector role=gateway (node has role=sensor)",
        )],
        summary: &[("reader", "1/1 placed")],
        ..Case::default()
    });
}

// ---------------------------------------------------------------------------------------
// replicas: offline nodes and rescheduleAfter

#[test]
fn offline_node_keeps_its_workloads() {
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 1 }")],
        nodes: vec![node("n1").offline_for(3 * MIN), node("n2")],
        current: &[("bridge", &["n1"])],
        placed: &[("bridge", &["n1"])],
        why: &[("bridge", "n1", "kept: offline for 3m, rescheduleAfter 10m")],
        why_not: &[("bridge", "n2", "not chosen: replicas already met (1/1)")],
        summary: &[("bridge", "1/1 placed")],
        ..Case::default()
    });
}

#[test]
fn replicas_move_after_reschedule_after() {
    for offline in [12 * MIN, 10 * MIN] {
        check(Case {
            workloads: vec![w("bridge", "{ replicas: 2, rescheduleAfter: 10m }")],
            nodes: vec![node("n1").offline_for(offline), node("n2"), node("n3")],
            current: &[("bridge", &["n1", "n2"])],
            placed: &[("bridge", &["n2", "n3"])],
            why: &[
                ("bridge", "n2", "kept"),
                ("bridge", "n3", "new: online, 0 workloads, 1Gi free"),
            ],
            summary: &[("bridge", "2/2 placed")],
            ..Case::default()
        });
    }
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 1, rescheduleAfter: 10m }")],
        nodes: vec![node("n1").offline_for(12 * MIN), node("n2")],
        current: &[("bridge", &["n1"])],
        placed: &[("bridge", &["n2"])],
        why_not: &[("bridge", "n1", "offline for 12m, rescheduleAfter 10m")],
        ..Case::default()
    });
}

#[test]
fn never_means_replicas_stay_on_offline_nodes() {
    check(Case {
        workloads: vec![w("db", "{ replicas: 1, rescheduleAfter: never }")],
        nodes: vec![node("n1").offline_for(30 * DAY), node("n2")],
        current: &[("db", &["n1"])],
        placed: &[("db", &["n1"])],
        why: &[("db", "n1", "kept: offline for 30d, rescheduleAfter never")],
        ..Case::default()
    });
}

#[test]
fn offline_nodes_are_chosen_last_and_lost_ones_never() {
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 3, rescheduleAfter: 10m }")],
        nodes: vec![
            node("n1").offline_for(MIN),
            node("n2").offline_for(20 * MIN),
            node("n3"),
        ],
        placed: &[("bridge", &["n1", "n3"])],
        why: &[
            ("bridge", "n1", "new: offline, 0 workloads, 1Gi free"),
            ("bridge", "n3", "new: online, 0 workloads, 1Gi free"),
        ],
        why_not: &[("bridge", "n2", "offline for 20m, rescheduleAfter 10m")],
        summary: &[("bridge", "2/3 placed: only 2 nodes match (1 offline)")],
        ..Case::default()
    });
}

#[test]
fn returning_node_does_not_get_surplus_copy() {
    // The copy moved from n1 to n2 while n1 was lost; n1 is back.
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 1, rescheduleAfter: 10m }")],
        nodes: vec![node("n1"), node("n2")],
        current: &[("bridge", &["n2"])],
        placed: &[("bridge", &["n2"])],
        why_not: &[("bridge", "n1", "not chosen: replicas already met (1/1)")],
        ..Case::default()
    });
}

#[test]
fn node_that_left_the_fleet_loses_its_copies_and_deleted_workloads_vanish() {
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 1 }")],
        nodes: vec![node("n1")],
        current: &[("bridge", &["gone"]), ("deleted", &["n1"])],
        placed: &[("bridge", &["n1"])],
        why_not: &[("bridge", "gone", "node is no longer in the fleet")],
        ..Case::default()
    });
}

// ---------------------------------------------------------------------------------------
// replicas: choosing and dropping

#[test]
fn new_copies_go_to_the_least_busy_node() {
    check(Case {
        workloads: vec![
            w("a", "{ replicas: 1 }"),
            w("b", "{ replicas: 1 }"),
            wr("c", "{ replicas: 1 }", "{ memory: 100Mi }"),
            w("web", "{ replicas: 2 }"),
        ],
        nodes: vec![node("n1"), node("n2"), node("n3").memory("2Gi")],
        current: &[("a", &["n1"]), ("b", &["n1"]), ("c", &["n2"])],
        placed: &[
            ("a", &["n1"]),
            ("b", &["n1"]),
            ("c", &["n2"]),
            ("web", &["n2", "n3"]),
        ],
        why: &[
            ("web", "n3", "new: online, 0 workloads, 2Gi free"),
            ("web", "n2", "new: online, 1 workload, 924Mi free"),
        ],
        why_not: &[("web", "n1", "not chosen: replicas already met (2/2)")],
        ..Case::default()
    });
}

#[test]
fn spread_puts_replicas_on_different_sites() {
    let nodes = || {
        vec![
            node("a1").label("site", "a"),
            node("a2").label("site", "a"),
            node("b1").label("site", "b"),
        ]
    };
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 2, spread: site }")],
        nodes: nodes(),
        placed: &[("bridge", &["a1", "b1"])],
        why: &[(
            "bridge",
            "b1",
            "new: online, spread site=b had 0 replicas, 0 workloads, 1Gi free",
        )],
        why_not: &[(
            "bridge",
            "a2",
            "not chosen: replicas already met (2/2); spread site=a already has 1 replica",
        )],
        ..Case::default()
    });
    // A kept copy counts: the new one goes to the other site.
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 2, spread: site }")],
        nodes: nodes(),
        current: &[("bridge", &["a2"])],
        placed: &[("bridge", &["a2", "b1"])],
        ..Case::default()
    });
    // More replicas than sites: the sites take turns.
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 3, spread: site }")],
        nodes: nodes(),
        placed: &[("bridge", &["a1", "a2", "b1"])],
        why: &[(
            "bridge",
            "a2",
            "new: online, spread site=a had 1 replica, 0 workloads, 1Gi free",
        )],
        ..Case::default()
    });
}

#[test]
fn spread_counts_nodes_without_the_label_as_one_value() {
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 2, spread: site }")],
        nodes: vec![node("a1").label("site", "a"), node("u1"), node("u2")],
        placed: &[("bridge", &["a1", "u1"])],
        why_not: &[(
            "bridge",
            "u2",
            "not chosen: replicas already met (2/2); spread nodes with no label site already have 1 replica",
        )],
        ..Case::default()
    });
    // Requiring the label is a constraint.
    check(Case {
        workloads: vec![w(
            "bridge",
            "{ replicas: 2, spread: site, constraints: [\"label.site exists\"] }",
        )],
        nodes: vec![node("a1").label("site", "a"), node("u1")],
        placed: &[("bridge", &["a1"])],
        why_not: &[(
            "bridge",
            "u1",
            "constraint `label.site exists` (no label site)",
        )],
        summary: &[("bridge", "1/2 placed: only 1 node matches (1 constraint)")],
        ..Case::default()
    });
}

#[test]
fn reducing_replicas_drops_surplus_deterministically() {
    // Offline first, then the highest id.
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 2 }")],
        nodes: vec![
            node("n1"),
            node("n2").offline_for(MIN),
            node("n3"),
            node("n4"),
        ],
        current: &[("bridge", &["n1", "n2", "n3", "n4"])],
        placed: &[("bridge", &["n1", "n3"])],
        why_not: &[
            ("bridge", "n2", "removed: replicas already met (2/2)"),
            ("bridge", "n4", "removed: replicas already met (2/2)"),
        ],
        summary: &[("bridge", "2/2 placed")],
        ..Case::default()
    });
    // Cordoned before schedulable; from the most crowded spread value before the id.
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 2, spread: site }")],
        nodes: vec![
            node("a1").label("site", "a"),
            node("a2").label("site", "a"),
            node("b1").label("site", "b"),
            node("b2").label("site", "b").cordoned(),
        ],
        current: &[("bridge", &["a1", "a2", "b1", "b2"])],
        placed: &[("bridge", &["a1", "b1"])],
        ..Case::default()
    });
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 0 }")],
        nodes: vec![node("n1")],
        current: &[("bridge", &["n1"])],
        placed: &[("bridge", &[])],
        why_not: &[("bridge", "n1", "removed: replicas already met (0/0)")],
        summary: &[("bridge", "0/0 placed")],
        ..Case::default()
    });
}

#[test]
fn not_with_itself_means_one_copy_per_node() {
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 2, notWith: [bridge] }")],
        nodes: vec![node("n1"), node("n2")],
        current: &[("bridge", &["n2"])],
        placed: &[("bridge", &["n1", "n2"])],
        ..Case::default()
    });
}

// ---------------------------------------------------------------------------------------
// affinity

#[test]
fn not_with_keeps_apart() {
    check(Case {
        workloads: vec![
            w("bridge", "{ replicas: 2, notWith: [db] }"),
            w("db", "{ replicas: 1, nodeSelector: { storage: ssd } }"),
        ],
        nodes: vec![node("n1").label("storage", "ssd"), node("n2"), node("n3")],
        placed: &[("bridge", &["n2", "n3"]), ("db", &["n1"])],
        why_not: &[("bridge", "n1", "notWith db (placed here)")],
        ..Case::default()
    });
    // The workload that declares notWith is the one that moves.
    check(Case {
        workloads: vec![
            w("bridge", "{ replicas: 1, notWith: [db] }"),
            w("db", "{ replicas: 1 }"),
        ],
        nodes: vec![node("n1"), node("n2")],
        current: &[("bridge", &["n1"]), ("db", &["n1"])],
        placed: &[("bridge", &["n2"]), ("db", &["n1"])],
        why_not: &[("bridge", "n1", "notWith db (placed here)")],
        ..Case::default()
    });
}

#[test]
fn new_copies_avoid_nodes_whose_workloads_exclude_them() {
    // db is decided before bridge (bridge names it) but must not land beside it.
    check(Case {
        workloads: vec![
            w("bridge", "{ replicas: 1, notWith: [db] }"),
            w("db", "{ replicas: 1 }"),
        ],
        nodes: vec![node("n1"), node("n2")],
        current: &[("bridge", &["n1"])],
        placed: &[("bridge", &["n1"]), ("db", &["n2"])],
        why_not: &[("db", "n1", "bridge (placed here) has notWith db")],
        ..Case::default()
    });
}

#[test]
fn with_keeps_together() {
    check(Case {
        workloads: vec![
            w("app", "{ replicas: 2, with: [mqtt] }"),
            w("mqtt", "{ replicas: 1 }"),
        ],
        nodes: vec![node("n1"), node("n2")],
        current: &[("mqtt", &["n2"])],
        placed: &[("app", &["n2"]), ("mqtt", &["n2"])],
        why_not: &[("app", "n1", "with mqtt (not placed here)")],
        summary: &[("app", "1/2 placed: only 1 node matches (1 with)")],
        ..Case::default()
    });
    // When its partner moves (n1 lost), it follows.
    check(Case {
        workloads: vec![
            w(
                "app",
                "{ replicas: 1, with: [mqtt], rescheduleAfter: never }",
            ),
            w("mqtt", "{ replicas: 1, rescheduleAfter: 10m }"),
        ],
        nodes: vec![node("n1").offline_for(15 * MIN), node("n2")],
        current: &[("app", &["n1"]), ("mqtt", &["n1"])],
        placed: &[("app", &["n2"]), ("mqtt", &["n2"])],
        why_not: &[("app", "n1", "with mqtt (not placed here)")],
        ..Case::default()
    });
}

#[test]
fn mutual_not_with_keeps_what_runs() {
    // A cycle: decided by name order, each against the other's current copy.
    check(Case {
        workloads: vec![
            w("a", "{ replicas: 1, notWith: [b] }"),
            w("b", "{ replicas: 1, notWith: [a] }"),
        ],
        nodes: vec![node("n1")],
        current: &[("b", &["n1"])],
        placed: &[("a", &[]), ("b", &["n1"])],
        why_not: &[("a", "n1", "notWith b (placed here)")],
        summary: &[("a", "0/1 placed: no node matches (1 notWith)")],
        ..Case::default()
    });
    check(Case {
        workloads: vec![
            w("a", "{ replicas: 1, notWith: [b] }"),
            w("b", "{ replicas: 1, notWith: [a] }"),
        ],
        nodes: vec![node("n1"), node("n2")],
        placed: &[("a", &["n1"]), ("b", &["n2"])],
        ..Case::default()
    });
}

#[test]
fn workloads_named_in_affinity_are_decided_first() {
    let all = [
        w("a", "{ replicas: 1, with: [b] }"),
        w("b", "{ replicas: 1, notWith: [c] }"),
        w("c", "{ replicas: 1 }"),
        w("d", "{ replicas: 1 }"),
        w("e", "{ replicas: 1, notWith: [y] }"),
        w("x", "{ replicas: 1, notWith: [y] }"),
        w("y", "{ replicas: 1, notWith: [x, ghost] }"),
    ];
    let by_name: BTreeMap<&str, &Workload> = all.iter().map(|w| (w.name.as_str(), w)).collect();
    let order: Vec<&str> = order::decision_order(&by_name)
        .iter()
        .map(|w| w.name.as_str())
        .collect();
    // e waits for y, which is on a cycle with x: x (first by name on the cycle) goes first.
    assert_eq!(order, ["c", "b", "a", "d", "x", "y", "e"]);
}

// ---------------------------------------------------------------------------------------
// resources

#[test]
fn resources_count_what_is_already_placed() {
    check(Case {
        workloads: vec![
            wr("cache", "{ replicas: 1 }", "{ memory: 412Mi }"),
            wr("db", "{ replicas: 1 }", "{ memory: 256Mi }"),
            wr("web", "{ replicas: 2 }", "{ memory: 256Mi }"),
        ],
        nodes: vec![node("n1").memory("512Mi"), node("n2").memory("512Mi")],
        current: &[("cache", &["n2"]), ("db", &["n1"])],
        placed: &[("cache", &["n2"]), ("db", &["n1"]), ("web", &["n1"])],
        why: &[("web", "n1", "new: online, 1 workload, 256Mi free")],
        why_not: &[(
            "web",
            "n2",
            "insufficient memory: requests 256Mi, 100Mi free of 512Mi",
        )],
        summary: &[(
            "web",
            "1/2 placed: only 1 node matches (1 insufficient memory)",
        )],
        ..Case::default()
    });
    // `every` workloads count too: the first by name takes the room.
    check(Case {
        workloads: vec![
            wr("a", "{ mode: every }", "{ memory: 300Mi }"),
            wr("b", "{ mode: every }", "{ memory: 300Mi }"),
        ],
        nodes: vec![node("n1").memory("512Mi")],
        placed: &[("a", &["n1"]), ("b", &[])],
        why_not: &[(
            "b",
            "n1",
            "insufficient memory: requests 300Mi, 212Mi free of 512Mi",
        )],
        summary: &[("b", "0/0 placed: no node matches (1 insufficient memory)")],
        ..Case::default()
    });
}

#[test]
fn resources_reserve_the_room_of_copies_that_stay() {
    // "aaa" is decided first but does not take the room of "zzz", which stays.
    check(Case {
        workloads: vec![
            wr("aaa", "{ replicas: 1 }", "{ memory: 400Mi }"),
            wr("zzz", "{ replicas: 1 }", "{ memory: 400Mi }"),
        ],
        nodes: vec![node("n1").memory("512Mi"), node("n2").memory("512Mi")],
        current: &[("zzz", &["n1"])],
        placed: &[("aaa", &["n2"]), ("zzz", &["n1"])],
        ..Case::default()
    });
    // A copy that will leave its node (selector no longer met) reserves nothing there.
    check(Case {
        workloads: vec![
            wr("aaa", "{ replicas: 1 }", "{ memory: 400Mi }"),
            wr(
                "zzz",
                "{ replicas: 1, nodeSelector: { role: db } }",
                "{ memory: 400Mi }",
            ),
        ],
        nodes: vec![
            node("n1").memory("512Mi"),
            node("n2").memory("512Mi").label("role", "db"),
        ],
        current: &[("zzz", &["n1"])],
        placed: &[("aaa", &["n1"]), ("zzz", &["n2"])],
        ..Case::default()
    });
}

#[test]
fn kept_copy_that_no_longer_fits_moves() {
    // Both grew to 300Mi on a 512Mi node: the first by name moves, the other stays.
    check(Case {
        workloads: vec![
            wr("a", "{ replicas: 1 }", "{ memory: 300Mi }"),
            wr("b", "{ replicas: 1 }", "{ memory: 300Mi }"),
        ],
        nodes: vec![node("n1").memory("512Mi"), node("n2").memory("512Mi")],
        current: &[("a", &["n1"]), ("b", &["n1"])],
        placed: &[("a", &["n2"]), ("b", &["n1"])],
        why_not: &[(
            "a",
            "n1",
            "insufficient memory: requests 300Mi, 212Mi free of 512Mi",
        )],
        ..Case::default()
    });
}

#[test]
fn unknown_capacity_sets_no_limit() {
    check(Case {
        workloads: vec![wr(
            "big",
            "{ replicas: 1 }",
            "{ memory: 64Gi, cpu: 64, pids: 100000 }",
        )],
        nodes: vec![node("n1").capacity("0", 0, 0)],
        placed: &[("big", &["n1"])],
        why: &[("big", "n1", "new: online, 0 workloads")],
        ..Case::default()
    });
}

// ---------------------------------------------------------------------------------------
// cordon and drain

#[test]
fn cordoned_node_keeps_but_gets_nothing_new() {
    check(Case {
        workloads: vec![
            w("bridge", "{ replicas: 1 }"),
            w("new-bridge", "{ replicas: 1 }"),
            w("reader", "{ mode: every }"),
            w("new-reader", "{ mode: every }"),
        ],
        nodes: vec![node("c1").cordoned(), node("n2")],
        current: &[("bridge", &["c1"]), ("reader", &["c1", "n2"])],
        placed: &[
            ("bridge", &["c1"]),
            ("new-bridge", &["n2"]),
            ("new-reader", &["n2"]),
            ("reader", &["c1", "n2"]),
        ],
        why: &[
            ("bridge", "c1", "kept: cordoned"),
            ("reader", "c1", "kept: cordoned"),
        ],
        why_not: &[
            ("new-bridge", "c1", "cordoned"),
            ("new-reader", "c1", "cordoned"),
        ],
        ..Case::default()
    });
}

#[test]
fn drained_node_loses_replicas_keeps_every() {
    check(Case {
        workloads: vec![
            w("bridge", "{ replicas: 1 }"),
            w("new-reader", "{ mode: every }"),
            w("reader", "{ mode: every }"),
        ],
        nodes: vec![node("d1").drained(), node("n2")],
        current: &[("bridge", &["d1"]), ("reader", &["d1", "n2"])],
        placed: &[
            ("bridge", &["n2"]),
            ("new-reader", &["n2"]),
            ("reader", &["d1", "n2"]),
        ],
        why: &[("reader", "d1", "kept: drained, every workloads stay")],
        why_not: &[("bridge", "d1", "drained"), ("new-reader", "d1", "drained")],
        ..Case::default()
    });
}

// ---------------------------------------------------------------------------------------
// stability

#[test]
fn unrelated_node_added_does_not_shuffle() {
    // n1 is idle, first by id and has the most memory: still nothing moves to it.
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 2, spread: site }")],
        nodes: vec![
            node("n1").memory("8Gi").label("site", "c"),
            node("n2").label("site", "a"),
            node("n3").label("site", "a"),
        ],
        current: &[("bridge", &["n2", "n3"])],
        placed: &[("bridge", &["n2", "n3"])],
        why_not: &[("bridge", "n1", "not chosen: replicas already met (2/2)")],
        ..Case::default()
    });
}

#[test]
fn unrelated_workload_added_does_not_shuffle() {
    check(Case {
        workloads: vec![
            w("aaa-new", "{ replicas: 2 }"),
            w("bridge", "{ replicas: 1 }"),
            w("reader", "{ mode: every }"),
        ],
        nodes: vec![node("n1"), node("n2"), node("n3")],
        current: &[("bridge", &["n3"]), ("reader", &["n1", "n2", "n3"])],
        placed: &[
            ("aaa-new", &["n1", "n2"]),
            ("bridge", &["n3"]),
            ("reader", &["n1", "n2", "n3"]),
        ],
        ..Case::default()
    });
}

#[test]
fn label_change_on_another_node_does_not_shuffle() {
    // n3 gains the gateway role: bridge stays; the every workload adds n3 and nothing else.
    check(Case {
        workloads: vec![
            w("bridge", "{ replicas: 1, nodeSelector: { role: gateway } }"),
            w("reader", "{ mode: every, nodeSelector: { role: gateway } }"),
        ],
        nodes: vec![
            node("n1").label("role", "gateway"),
            node("n2").label("role", "gateway"),
            node("n3").label("role", "gateway"),
        ],
        current: &[("bridge", &["n2"]), ("reader", &["n1", "n2"])],
        placed: &[("bridge", &["n2"]), ("reader", &["n1", "n2", "n3"])],
        why: &[("reader", "n3", "new"), ("reader", "n1", "kept")],
        ..Case::default()
    });
}

// ---------------------------------------------------------------------------------------
// reasons

#[test]
fn reasons_say_why_not_placed() {
    const NONE: Nodes<'static> = &[("w", &[])];
    // (workloads, node n1, current, placement, why `w` is not on n1)
    let rows: Vec<(Vec<Workload>, NodeView, Nodes<'_>, Nodes<'_>, &str)> = vec![
        (
            vec![w("w", "{ nodeSelector: { role: gateway } }")],
            node("n1").label("role", "sensor"),
            &[],
            NONE,
            "nodeSelector role=gateway (node has role=sensor)",
        ),
        (
            vec![w("w", "{ nodeSelector: { role: gateway } }")],
            node("n1"),
            &[],
            NONE,
            "nodeSelector role=gateway (node has no label role)",
        ),
        (
            vec![w("w", "{ constraints: [\"arch in (arm64)\"] }")],
            node("n1").arch("amd64"),
            &[],
            NONE,
            "constraint `arch in (arm64)` (arch is amd64)",
        ),
        (
            vec![w("w", "{ constraints: [\"memory >= 2Gi\"] }")],
            node("n1"),
            &[],
            NONE,
            "constraint `memory >= 2Gi` (memory is 1Gi)",
        ),
        (
            vec![w(
                "w",
                "{ nodeSelector: { site: a }, constraints: [\"arch in (arm64)\"] }",
            )],
            node("n1").arch("amd64"),
            &[],
            NONE,
            "nodeSelector site=a (node has no label site); constraint `arch in (arm64)` (arch is amd64)",
        ),
        (
            vec![w("w", "{ replicas: 1 }")],
            node("n1").cordoned(),
            &[],
            NONE,
            "cordoned",
        ),
        (
            vec![w("w", "{ replicas: 1 }")],
            node("n1").drained(),
            &[("w", &["n1"])],
            NONE,
            "drained",
        ),
        (
            vec![wr("w", "{ replicas: 1 }", "{ memory: 256Mi }")],
            node("n1").memory("100Mi"),
            &[],
            NONE,
            "insufficient memory: requests 256Mi, 100Mi free of 100Mi",
        ),
        (
            vec![wr("w", "{ replicas: 1 }", "{ cpu: 500m }")],
            node("n1").capacity("1Gi", 250, 4096),
            &[],
            NONE,
            "insufficient cpu: requests 500m, 250m free of 250m",
        ),
        (
            vec![
                wr("v", "{ replicas: 1 }", "{ pids: 4000 }"),
                wr("w", "{ replicas: 1 }", "{ pids: 200 }"),
            ],
            node("n1"),
            &[("v", &["n1"])],
            &[("v", &["n1"]), ("w", &[])],
            "insufficient pids: requests 200, 96 free of 4096",
        ),
        (
            vec![
                w("db-primary", "{ replicas: 1 }"),
                w("w", "{ notWith: [db-primary] }"),
            ],
            node("n1"),
            &[("db-primary", &["n1"])],
            &[("db-primary", &["n1"]), ("w", &[])],
            "notWith db-primary (placed here)",
        ),
        (
            vec![
                w("mqtt-bridge", "{ replicas: 0 }"),
                w("w", "{ with: [mqtt-bridge] }"),
            ],
            node("n1"),
            &[],
            &[("mqtt-bridge", &[]), ("w", &[])],
            "with mqtt-bridge (not placed here)",
        ),
        (
            vec![w("w", "{ with: [ghost] }")],
            node("n1"),
            &[],
            NONE,
            "with ghost (no such workload)",
        ),
        (
            vec![w("v", "{ notWith: [w] }"), w("w", "{ replicas: 1 }")],
            node("n1"),
            &[("v", &["n1"])],
            &[("v", &["n1"]), ("w", &[])],
            "v (placed here) has notWith w",
        ),
        (
            vec![w("w", "{ replicas: 1, rescheduleAfter: 10m }")],
            node("n1").offline_for(12 * MIN + 30_000),
            &[("w", &["n1"])],
            NONE,
            "offline for 12m30s, rescheduleAfter 10m",
        ),
        (
            vec![w("w", "{ replicas: 1, rescheduleAfter: 1h }")],
            node("n1").offline_for(DAY + 3 * 60 * MIN + 59 * MIN),
            &[],
            NONE,
            "offline for 1d3h, rescheduleAfter 1h",
        ),
    ];
    for (workloads, n1, current, placed, reason) in rows {
        check(Case {
            workloads,
            nodes: vec![n1],
            current,
            placed,
            why_not: &[("w", "n1", reason)],
            ..Case::default()
        });
    }
}

#[test]
fn reasons_say_why_placed() {
    check(Case {
        workloads: vec![
            w("bridge", "{ replicas: 2, spread: site }"),
            w("reader", "{ mode: every }"),
        ],
        nodes: vec![
            node("a1")
                .label("site", "a")
                .offline_for(2 * MIN)
                .cordoned(),
            node("b1").label("site", "b"),
        ],
        current: &[("bridge", &["a1"]), ("reader", &["a1"])],
        placed: &[("bridge", &["a1", "b1"]), ("reader", &["a1", "b1"])],
        why: &[
            (
                "bridge",
                "a1",
                "kept: offline for 2m, rescheduleAfter 10m, cordoned",
            ),
            (
                "bridge",
                "b1",
                // reader is decided after bridge (name order): b1 is still empty.
                "new: online, spread site=b had 0 replicas, 0 workloads, 1Gi free",
            ),
            (
                "reader",
                "a1",
                "kept: offline for 2m, every workloads never move, cordoned",
            ),
            ("reader", "b1", "new"),
        ],
        ..Case::default()
    });
}

#[test]
fn summary_says_what_kept_the_count_short() {
    check(Case {
        workloads: vec![w("bridge", "{ replicas: 2 }")],
        placed: &[("bridge", &[])],
        summary: &[("bridge", "0/2 placed: no nodes in the fleet")],
        ..Case::default()
    });
    check(Case {
        workloads: vec![
            w("bridge", "{ replicas: 3, nodeSelector: { role: gateway } }"),
            w("reader", "{ mode: every, nodeSelector: { role: camera } }"),
        ],
        nodes: vec![
            node("n1").label("role", "gateway"),
            node("n2").label("role", "gateway").cordoned(),
            node("n3"),
            node("n4").label("role", "sensor"),
        ],
        placed: &[("bridge", &["n1"]), ("reader", &[])],
        summary: &[
            (
                "bridge",
                "1/3 placed: only 1 node matches (2 nodeSelector, 1 cordoned)",
            ),
            ("reader", "0/0 placed: no node matches (4 nodeSelector)"),
        ],
        ..Case::default()
    });
}
