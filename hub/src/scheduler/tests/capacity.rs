//! The hub never sends a node what its agent would refuse: whatever the fleet, the workloads
//! and the placement they start from, every node's share of a decision passes the agent's own
//! checks — [`fit::overcommitted`] for the desired state as a whole (the agent refuses the
//! state otherwise) and [`fit::mismatches`] for each workload (`shoal-agent apply` would skip
//! it) — and so does the decision taken again from it.

use std::collections::BTreeSet;

use proptest::prelude::*;
use shoal_model::fit;

use super::*;

/// A container's requests: memory in Mi (at least the manifest minimum), CPU in millicores,
/// pids; `None` asks for nothing.
type Requests = (Option<u64>, Option<u32>, Option<u32>);

#[derive(Clone, Debug)]
struct WorkloadRow {
    /// `None`: `mode: every`.
    replicas: Option<u32>,
    /// `nodeSelector: { role: a }`.
    selector: bool,
    containers: Vec<Requests>,
}

#[derive(Clone, Debug)]
struct NodeRow {
    /// Mi, millicores, pids; 0 is unknown.
    capacity: (u64, u32, u32),
    role_a: bool,
    online: bool,
}

fn workload(i: usize, row: &WorkloadRow) -> Workload {
    let mode = match row.replicas {
        Some(n) => format!("replicas: {n}"),
        None => "mode: every".to_string(),
    };
    let selector = if row.selector {
        ", nodeSelector: { role: a }"
    } else {
        ""
    };
    let containers: Vec<String> = row
        .containers
        .iter()
        .enumerate()
        .map(|(c, (memory, cpu, pids))| {
            let mut resources = Vec::new();
            if let Some(mi) = memory {
                resources.push(format!("memory: {mi}Mi"));
            }
            if let Some(m) = cpu {
                resources.push(format!("cpu: {m}m"));
            }
            if let Some(n) = pids {
                resources.push(format!("pids: {n}"));
            }
            format!(
                "{{ name: c{c}, image: busybox, resources: {{ {} }} }}",
                resources.join(", ")
            )
        })
        .collect();
    let text = format!(
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: w{i} }}\nspec:\n  placement: {{ {mode}{selector} }}\n  containers: [{}]\n",
        containers.join(", ")
    );
    let (mut workloads, diagnostics) = parse_manifest(Path::new("row.yaml"), &text);
    assert!(diagnostics.is_empty(), "{text}\n{diagnostics:?}");
    workloads.remove(0).workload
}

fn view(i: usize, row: &NodeRow) -> NodeView {
    let mut view = node(&format!("n{i}"));
    view.facts.capacity = Capacity {
        memory_bytes: row.capacity.0 << 20,
        cpu_millis: row.capacity.1,
        pids: row.capacity.2,
    };
    if row.role_a {
        view.facts.labels.insert("role".into(), "a".into());
    }
    if !row.online {
        view.online = false;
        view.offline_since_ms = Some(NOW - MIN);
    }
    view
}

fn requests() -> impl Strategy<Value = Requests> {
    (
        proptest::option::of(4u64..1024),
        proptest::option::of(1u32..3000),
        proptest::option::of(1u32..300),
    )
}

fn workload_row() -> impl Strategy<Value = WorkloadRow> {
    (
        proptest::option::of(1u32..4),
        any::<bool>(),
        proptest::collection::vec(requests(), 1..3),
    )
        .prop_map(|(replicas, selector, containers)| WorkloadRow {
            replicas,
            selector,
            containers,
        })
}

fn node_row() -> impl Strategy<Value = NodeRow> {
    (
        prop_oneof![Just(0u64), 64u64..4096],
        prop_oneof![Just(0u32), 500u32..4000],
        prop_oneof![Just(0u32), 16u32..600],
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(memory, cpu, pids, role_a, online)| NodeRow {
            capacity: (memory, cpu, pids),
            role_a,
            online,
        })
}

/// Every node's share of `placement` passes the agent's checks.
fn agent_takes(
    workloads: &[Workload],
    nodes: &[NodeView],
    placement: &Placement,
) -> Result<(), TestCaseError> {
    for node in nodes {
        let share: Vec<&Workload> = workloads
            .iter()
            .filter(|w| {
                placement
                    .get(&w.name)
                    .is_some_and(|on| on.contains(&node.id))
            })
            .collect();
        let refused = fit::overcommitted(share.iter().map(|w| w.requested()), node.facts.capacity);
        prop_assert!(
            refused.is_empty(),
            "{} would refuse {:?}: {refused:?}",
            node.id,
            share.iter().map(|w| &w.name).collect::<Vec<_>>()
        );
        for w in share {
            let skipped = fit::mismatches(&w.spec.placement, &node.facts);
            prop_assert!(
                skipped.is_empty(),
                "{} would skip {}: {skipped:?}",
                node.id,
                w.name
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_hub_never_sends_a_node_what_its_agent_would_refuse(
        workload_rows in proptest::collection::vec(workload_row(), 0..6),
        node_rows in proptest::collection::vec(node_row(), 1..5),
        current_bits in proptest::collection::vec(any::<bool>(), 30),
    ) {
        let workloads: Vec<Workload> =
            workload_rows.iter().enumerate().map(|(i, row)| workload(i, row)).collect();
        let nodes: Vec<NodeView> =
            node_rows.iter().enumerate().map(|(i, row)| view(i, row)).collect();
        // Any placement to start from, even one that overcommits nodes (their capacity shrank,
        // a request grew): the decision must still fit.
        let mut current = Placement::new();
        for (i, w) in workloads.iter().enumerate() {
            let on: BTreeSet<String> = nodes
                .iter()
                .enumerate()
                .filter(|(j, _)| current_bits[(i * nodes.len() + j) % current_bits.len()])
                .map(|(_, n)| n.id.clone())
                .collect();
            if !on.is_empty() {
                current.insert(w.name.clone(), on);
            }
        }
        let decision = schedule(&workloads, &nodes, &current, NOW);
        agent_takes(&workloads, &nodes, &decision.placement)?;
        let again = schedule(&workloads, &nodes, &decision.placement, NOW);
        agent_takes(&workloads, &nodes, &again.placement)?;
    }
}
