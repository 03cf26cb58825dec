//! The order in which workloads are decided: a workload named in another's `with`/`notWith`
//! comes first, so affinity is evaluated against the new placement of what it names.

use std::collections::{BTreeMap, BTreeSet};

use shoal_model::manifest::Workload;

/// Every workload once: the first by name whose dependencies are all decided; when none is
/// (a cycle), the first by name among those on a cycle.
pub(super) fn decision_order<'a>(workloads: &BTreeMap<&'a str, &'a Workload>) -> Vec<&'a Workload> {
    let deps: BTreeMap<&str, BTreeSet<&str>> = workloads
        .iter()
        .map(|(name, w)| {
            let placement = &w.spec.placement;
            let named = placement
                .with
                .iter()
                .chain(&placement.not_with)
                .map(String::as_str)
                .filter(|d| d != name && workloads.contains_key(d))
                .collect();
            (*name, named)
        })
        .collect();
    let deps_of = |name: &str| deps.get(name).into_iter().flatten().copied();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    let mut order = Vec::with_capacity(workloads.len());
    while order.len() < workloads.len() {
        let next = {
            let mut undecided = workloads.iter().filter(|(name, _)| !done.contains(*name));
            let ready = undecided
                .clone()
                .find(|(name, _)| deps_of(name).all(|d| done.contains(d)));
            ready
                .or_else(|| {
                    undecided
                        .clone()
                        .find(|(name, _)| on_cycle(name, &deps_of, &done))
                })
                .or_else(|| undecided.next())
        };
        let Some((name, w)) = next else { break };
        done.insert(name);
        order.push(*w);
    }
    order
}

/// Whether `start` can reach itself through undecided dependencies.
fn on_cycle<'a, I>(start: &'a str, deps_of: &impl Fn(&'a str) -> I, done: &BTreeSet<&str>) -> bool
where
    I: Iterator<Item = &'a str>,
{
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut stack: Vec<&str> = deps_of(start).filter(|d| !done.contains(d)).collect();
    while let Some(name) = stack.pop() {
        if name == start {
            return true;
        }
        if seen.insert(name) {
            stack.extend(deps_of(name).filter(|d| !done.contains(d)));
        }
    }
    false
}
