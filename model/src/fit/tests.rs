use std::collections::BTreeMap;

use proptest::prelude::*;

use super::*;
use crate::manifest::constraint::Constraint;
use crate::manifest::{PlacementMode, RescheduleAfter, DEFAULT_RESCHEDULE_AFTER};

fn node() -> NodeFacts {
    NodeFacts {
        arch: "amd64".into(),
        os: "linux".into(),
        kernel: "6.1.0".into(),
        cgroup_version: 1,
        capacity: Capacity {
            memory_bytes: 1 << 30,
            cpu_millis: 2000,
            pids: 4096,
        },
        agent_version: "0.1.0".into(),
        labels: [("role".to_string(), "gateway".to_string())].into(),
        wire_versions: Vec::new(),
    }
}

fn placement(selector: &[(&str, &str)], constraints: &[&str]) -> Placement {
    Placement {
        mode: PlacementMode::Every,
        node_selector: selector
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<BTreeMap<_, _>>(),
        constraints: constraints
            .iter()
            .map(|c| Constraint::parse(c).expect("a valid constraint"))
            .collect(),
        spread: None,
        with: Vec::new(),
        not_with: Vec::new(),
        reschedule_after: RescheduleAfter::After(DEFAULT_RESCHEDULE_AFTER),
    }
}

/// (nodeSelector, constraints, every mismatch as worded)
type PlacementRow<'a> = (&'a [(&'a str, &'a str)], &'a [&'a str], &'a [&'a str]);

#[test]
fn selectors_and_constraints_a_node_does_not_meet_are_listed_and_worded_once() {
    let cases: [PlacementRow; 6] = [
        (&[], &[], &[]),
        (
            &[("role", "gateway")],
            &["memory >= 512Mi", "arch in (amd64)"],
            &[],
        ),
        (
            &[("role", "camera")],
            &[],
            &["nodeSelector role=camera (node has role=gateway)"],
        ),
        (
            &[("site", "a"), ("role", "gateway")],
            &["arch in (arm64)", "memory >= 2Gi"],
            &[
                "nodeSelector site=a (node has no label site)",
                "constraint `arch in (arm64)` (arch is amd64)",
                "constraint `memory >= 2Gi` (memory is 1Gi)",
            ],
        ),
        (
            &[("zone", "b"), ("role", "sensor")],
            &["label.gpu exists"],
            &[
                "nodeSelector role=sensor (node has role=gateway)",
                "nodeSelector zone=b (node has no label zone)",
                "constraint `label.gpu exists` (no label gpu)",
            ],
        ),
        (&[], &["label.role == gateway"], &[]),
    ];
    for (selector, constraints, expected) in cases {
        let found: Vec<String> = mismatches(&placement(selector, constraints), &node())
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, expected, "{selector:?} {constraints:?}");
    }
    assert_eq!(
        mismatches(&placement(&[("role", "camera")], &[]), &node()),
        [Mismatch::Selector {
            key: "role".into(),
            wanted: "camera".into(),
            actual: Some("gateway".into()),
        }]
    );
}

fn demand(memory: u64, cpu_millis: u64, pids: u64) -> Demand {
    Demand {
        memory,
        cpu_millis,
        pids,
    }
}

#[test]
fn a_request_fits_what_the_node_has_left_and_an_unknown_capacity_limits_nothing() {
    const MI: u64 = 1 << 20;
    let capacity = Capacity {
        memory_bytes: 512 * MI,
        cpu_millis: 1000,
        pids: 100,
    };
    // (requested, used, capacity, every shortfall as worded)
    let cases: [(Demand, Demand, Capacity, &[&str]); 9] = [
        (demand(0, 0, 0), demand(0, 0, 0), capacity, &[]),
        (demand(512 * MI, 1000, 100), demand(0, 0, 0), capacity, &[]),
        (
            demand(256 * MI, 500, 50),
            demand(256 * MI, 500, 50),
            capacity,
            &[],
        ),
        (
            demand(256 * MI, 0, 0),
            demand(412 * MI, 0, 0),
            capacity,
            &["insufficient memory: requests 256Mi, 100Mi free of 512Mi"],
        ),
        (
            demand(1, 1001, 101),
            demand(0, 0, 0),
            capacity,
            &[
                "insufficient cpu: requests 1001m, 1 free of 1",
                "insufficient pids: requests 101, 100 free of 100",
            ],
        ),
        // Asking for nothing fits, even on a node already over its capacity.
        (demand(0, 0, 0), demand(600 * MI, 2000, 200), capacity, &[]),
        (
            demand(1, 0, 0),
            demand(600 * MI, 0, 0),
            capacity,
            &["insufficient memory: requests 1, 0 free of 512Mi"],
        ),
        // A capacity of 0 is unknown.
        (
            demand(u64::MAX, u64::MAX, u64::MAX),
            demand(0, 0, 0),
            Capacity::default(),
            &[],
        ),
        // Sums saturate rather than wrap.
        (
            demand(0, 0, u64::MAX),
            demand(0, 0, u64::MAX),
            capacity,
            &["insufficient pids: requests 18446744073709551615, 0 free of 100"],
        ),
    ];
    for (requested, used, capacity, expected) in cases {
        let found: Vec<String> = shortfalls(requested, used, capacity)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(found, expected, "{requested:?} on {used:?} of {capacity:?}");
    }
}

#[test]
fn demands_add_up_every_request_and_absent_ones_count_as_nothing() {
    let requests = [
        Resources {
            memory: Some(64 << 20),
            cpu_millis: None,
            pids: Some(10),
        },
        Resources {
            memory: Some(u64::MAX),
            cpu_millis: Some(250),
            pids: None,
        },
        Resources::default(),
    ];
    assert_eq!(Demand::total(requests), demand(u64::MAX, 250, 10));
    assert_eq!(Demand::total([]), Demand::default());
    assert_eq!(
        demand(5, 5, 5).minus(demand(7, 1, 5)),
        demand(0, 4, 0),
        "subtraction stops at 0"
    );
}

proptest! {
    /// The hub places workloads one by one, each against what it placed before; the agent
    /// checks the total. Whatever the order, a node the first accepts passes the second.
    #[test]
    fn what_fits_one_by_one_fits_as_a_whole(
        capacity in (0u64..4096, 0u32..4000, 0u32..200),
        requests in proptest::collection::vec(
            (proptest::option::of(0u64..2048), proptest::option::of(0u32..2000), proptest::option::of(0u32..100)),
            0..8,
        ),
    ) {
        let capacity = Capacity { memory_bytes: capacity.0, cpu_millis: capacity.1, pids: capacity.2 };
        let mut used = Demand::default();
        let mut placed = Vec::new();
        for (memory, cpu_millis, pids) in requests {
            let request = Resources { memory, cpu_millis, pids };
            if shortfalls(Demand::from(request), used, capacity).is_empty() {
                used = used.plus(Demand::from(request));
                placed.push(request);
            }
        }
        prop_assert_eq!(shortfalls(Demand::total(placed), Demand::default(), capacity), vec![]);
    }
}
