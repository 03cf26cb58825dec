//! Where each workload runs: a pure function from (workloads, nodes, current placement, now)
//! to a [`Decision`] — the new placement and, for every workload and node, why.
//!
//! **Invariants.** No IO, no clock (the time is the `now_ms` argument), no logging. Same inputs
//! give the same output: every collection is a `BTreeMap`/`BTreeSet`, ties end on names and
//! node ids, and the order of the input slices does not matter.
//!
//! # Rules
//!
//! **Eligibility.** A node can run a workload when all of these hold; otherwise its entry in
//! [`WorkloadReasons::not_placed`] lists every rule it fails, `; `-separated:
//! - `nodeSelector`: the node carries every label with the same value;
//! - every `constraints` entry [matches](shoal_model::manifest::constraint::Constraint::matches);
//! - it is schedulable (see *cordon and drain*), and for `replicas` it is not *lost* (below);
//! - `with: [X]`: X is placed on the node; `notWith: [X]`: X is not placed on the node. A
//!   workload naming itself is ignored there (copies are one per node anyway). `with` a
//!   workload that does not exist matches no node;
//! - anti-affinity is symmetric for *new* copies, as in Kubernetes: a workload is not newly
//!   placed on a node running a workload whose `notWith` names it. A copy already running is
//!   not evicted that way: the workload that declared `notWith` is the one that moves;
//! - resources: the workload's total requests ([`Workload::requested`]: memory, CPU, pids; an
//!   absent request counts as 0) fit in the node's capacity minus the requests of the other
//!   workloads placed on it. A capacity of 0 means *unknown* and sets no limit on that
//!   resource. This is [`shoal_model::fit::shortfalls`], the rule the agent refuses a desired
//!   state by, so copies already running are checked too and the hub never sends a node more
//!   than it has (a kept copy leaves a node only when its requests grew or the node's
//!   capacity shrank); `tests::capacity` checks the two against each other.
//!
//! **Cordon and drain.** A [`Schedulable::Cordoned`] node keeps what it runs and gets nothing
//! new — `every` workloads included (unlike Kubernetes, where DaemonSets tolerate a cordon: a
//! cordon here is the operator's "leave this device alone"). A [`Schedulable::Drained`] node
//! is cordoned and also loses its `replicas` copies; its `every` copies stay, as `kubectl
//! drain` leaves DaemonSets.
//!
//! **`mode: every`** runs on every eligible node, online or offline (an offline node runs
//! autonomously and receives its desired state on reconnect). It never moves: a node is never
//! *lost* for it. It leaves a node only when the node stops being eligible (relabelled,
//! constraint no longer met, a `notWith` workload arrived, node removed from the fleet).
//!
//! **`replicas: n`**
//! 1. Current copies are kept while their node is eligible and not *lost*: offline with
//!    `now - offline_since >= rescheduleAfter` (`never`: never lost). A node offline with no
//!    `offline_since` counts as offline since `now`. A lost node is not chosen for new copies
//!    either.
//! 2. More kept copies than `n` (replicas reduced): the surplus is dropped one at a time,
//!    first from offline nodes, then cordoned ones, then from the `spread` value holding the
//!    most copies, then the highest node id.
//! 3. Missing copies go to new nodes, one at a time, picking the smallest of: online before
//!    offline; then the `spread` label value with the fewest copies of this workload (a node
//!    without the label counts as one more value, "no label": spread is a preference, not a
//!    filter — add `label.KEY exists` to the constraints to require the label); then the node
//!    with the fewest workloads; then the most free memory (unknown capacity ranks last);
//!    then the node id.
//! 4. Kept copies are never moved to improve spread or balance: only a rule above moves them.
//!    A lost node that comes back gets its copy again only if the count is short (the
//!    copy it ran is stopped because its desired state no longer lists the workload).
//!
//! **Order and the placement so far.** Workloads are decided one at a time: a workload named in
//! another's `with`/`notWith` is decided before it; among workloads that are ready, and to
//! break a cycle (the first by name among those on a cycle goes next), name order decides.
//! While deciding a workload, the *placement so far* is the decision for the workloads already
//! decided and, for the others, their current copies on nodes that still pass the node-local
//! rules (selector, constraints, drain, lost). Affinity and resources are evaluated against
//! it, so a workload decided early never takes the room of a copy that will be kept. This is
//! conservative: a copy dropped later in the pass (surplus, affinity, room) still held its
//! room for the workloads decided before it; the next pass (the hub reschedules on every
//! change) can use that room.
//!
//! **Reasons** are data ([`WorkloadReasons`], [`NotPlaced`], [`PlacedOn`], [`Summary`]), for a
//! dashboard or a rollout to branch on; their `Display` wording follows. Selector, constraint
//! and capacity wording is [`shoal_model::fit`]'s, which the agent shows too (`nodeSelector
//! role=gateway (node has role=sensor)`, ``constraint `arch in (arm64)` (arch is amd64)``); the other
//! reasons read `cordoned`, `drained`, `offline for 12m, rescheduleAfter 10m`, `with X (not
//! placed here)`, `notWith X (placed here)`, `X (placed here) has notWith W`, `insufficient
//! memory: requests 256Mi, 100Mi free of 512Mi`, `not chosen: replicas already met (2/2);
//! spread site=a already has 1 replica`, `removed: replicas already met (2/2)`. The summary
//! counts each node that does not match once, under the first rule it fails.
//!
//! **Inputs.** `current` is the previous decision, not what nodes report running. Workloads
//! absent from `workloads` are dropped; nodes absent from `nodes` have left the fleet and lose
//! their copies. Duplicate names or ids: the first wins. The placement lists only workloads
//! placed somewhere (as a store of (workload, node) rows reads it back, so a settled fleet
//! decides `placement == current`); the reasons have an entry for every workload.

mod fit;
mod order;
mod reasons;

#[cfg(test)]
mod tests;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use shoal_model::manifest::{PlacementMode, Workload};
use shoal_model::node::NodeFacts;

pub use fit::Unfit;
use fit::Used;
pub use reasons::{NotPlaced, Note, PlacedOn, Rule, Short, Spread, Summary, WorkloadReasons};

/// Workload name -> ids of the nodes that run it (never an empty set in a [`Decision`]).
pub type Placement = BTreeMap<String, BTreeSet<String>>;

/// Whether a node takes new work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedulable {
    #[default]
    Yes,
    /// Keeps what it runs, gets nothing new.
    Cordoned,
    /// Cordoned, and its `replicas` copies move elsewhere (`every` copies stay).
    Drained,
}

/// What the scheduler knows about one node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeView {
    pub id: String,
    pub facts: NodeFacts,
    pub online: bool,
    /// Wall-clock ms since when it is offline (`None` when online).
    pub offline_since_ms: Option<u64>,
    pub schedulable: Schedulable,
}

/// The scheduler's answer: where everything runs, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub placement: Placement,
    pub reasons: BTreeMap<String, WorkloadReasons>,
}

/// Decides where every workload runs. See the module documentation for the rules.
pub fn schedule(
    workloads: &[Workload],
    nodes: &[NodeView],
    current: &Placement,
    now_ms: u64,
) -> Decision {
    let mut fleet: BTreeMap<&str, &NodeView> = BTreeMap::new();
    for node in nodes {
        fleet.entry(node.id.as_str()).or_insert(node);
    }
    let mut by_name: BTreeMap<&str, &Workload> = BTreeMap::new();
    for w in workloads {
        by_name.entry(w.name.as_str()).or_insert(w);
    }
    let mut run = Run::new(fleet, &by_name, current, now_ms);
    let mut decision = Decision::default();
    for w in order::decision_order(&by_name) {
        let (placed, reasons) = run.decide(w);
        if !placed.is_empty() {
            decision.placement.insert(
                w.name.clone(),
                placed.iter().map(|id| (*id).to_string()).collect(),
            );
        }
        decision.reasons.insert(w.name.clone(), reasons);
    }
    decision
}

/// One `schedule` call in progress: the placement so far and what it uses on each node.
struct Run<'a> {
    fleet: BTreeMap<&'a str, &'a NodeView>,
    current: &'a Placement,
    now_ms: u64,
    /// Decided workloads: their decision; the others: their plausible current copies.
    so_far: BTreeMap<&'a str, BTreeSet<&'a str>>,
    /// Node id -> requests of the workloads placed on it so far.
    used: BTreeMap<&'a str, Used>,
    /// Workload -> the workloads whose `notWith` names it.
    excluded_by: BTreeMap<&'a str, Vec<&'a str>>,
    /// Every workload's name, to tell `with` a missing workload apart.
    names: BTreeSet<&'a str>,
}

impl<'a> Run<'a> {
    fn new(
        fleet: BTreeMap<&'a str, &'a NodeView>,
        workloads: &BTreeMap<&'a str, &'a Workload>,
        current: &'a Placement,
        now_ms: u64,
    ) -> Self {
        let mut run = Run {
            fleet,
            current,
            now_ms,
            so_far: BTreeMap::new(),
            used: BTreeMap::new(),
            excluded_by: BTreeMap::new(),
            names: workloads.keys().copied().collect(),
        };
        for (name, w) in workloads {
            for other in &w.spec.placement.not_with {
                if let Some((other, _)) = workloads.get_key_value(other.as_str()) {
                    if other != name {
                        run.excluded_by.entry(*other).or_default().push(*name);
                    }
                }
            }
            let plausible: BTreeSet<&'a str> = run
                .current_nodes(w)
                .filter(|node| fit::node_local(w, node, true, now_ms).is_empty())
                .map(|node| node.id.as_str())
                .collect();
            run.commit(w, plausible);
        }
        run
    }

    /// The known nodes that currently run `w`.
    fn current_nodes(&self, w: &Workload) -> impl Iterator<Item = &'a NodeView> + '_ {
        self.current
            .get(&w.name)
            .into_iter()
            .flatten()
            .filter_map(|id| self.fleet.get(id.as_str()).copied())
    }

    fn placed(&self, workload: &str, node: &str) -> bool {
        self.so_far
            .get(workload)
            .is_some_and(|nodes| nodes.contains(node))
    }

    fn used(&self, node: &str) -> Used {
        self.used.get(node).copied().unwrap_or_default()
    }

    /// Takes `w` out of the placement so far, before deciding it.
    fn release(&mut self, w: &Workload) {
        let requested = w.requested();
        for node in self.so_far.remove(w.name.as_str()).unwrap_or_default() {
            self.used.entry(node).or_default().remove(requested);
        }
    }

    fn commit(&mut self, w: &'a Workload, nodes: BTreeSet<&'a str>) {
        let requested = w.requested();
        for node in &nodes {
            self.used.entry(node).or_default().add(requested);
        }
        self.so_far.insert(w.name.as_str(), nodes);
    }

    /// Every rule `node` fails for `w`; empty when it may run there. `runs_here`: `w` runs
    /// there now (a kept copy rather than a new one).
    fn unfit(&self, w: &Workload, node: &NodeView, runs_here: bool) -> Vec<Unfit> {
        let placement = &w.spec.placement;
        let mut unfit = fit::node_local(w, node, runs_here, self.now_ms);
        for other in placement.with.iter().filter(|o| **o != w.name) {
            if !self.placed(other, &node.id) {
                unfit.push(Unfit::With {
                    workload: other.clone(),
                    exists: self.names.contains(other.as_str()),
                });
            }
        }
        for other in placement.not_with.iter().filter(|o| **o != w.name) {
            if self.placed(other, &node.id) {
                unfit.push(Unfit::NotWith(other.clone()));
            }
        }
        if !runs_here {
            let excluded_by = self.excluded_by.get(w.name.as_str()).into_iter().flatten();
            for by in excluded_by.filter(|by| !placement.not_with.iter().any(|o| o == *by)) {
                if self.placed(by, &node.id) {
                    unfit.push(Unfit::ExcludedBy {
                        by: (*by).to_string(),
                        workload: w.name.clone(),
                    });
                }
            }
        }
        unfit.extend(fit::resources(
            w.requested(),
            node.facts.capacity,
            self.used(&node.id),
        ));
        unfit
    }

    fn decide(&mut self, w: &'a Workload) -> (BTreeSet<&'a str>, WorkloadReasons) {
        self.release(w);
        let mut reasons = WorkloadReasons::default();
        let runs: BTreeSet<&str> = self
            .current
            .get(&w.name)
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        for gone in runs.iter().filter(|id| !self.fleet.contains_key(**id)) {
            reasons
                .not_placed
                .insert((*gone).to_string(), NotPlaced::Unfit(vec![Unfit::Gone]));
        }
        let mut kept: Vec<&'a NodeView> = Vec::new();
        let mut fresh: Vec<&'a NodeView> = Vec::new();
        let mut unfit_nodes: BTreeMap<&str, Vec<Unfit>> = BTreeMap::new();
        for node in self.fleet.values().copied() {
            let runs_here = runs.contains(node.id.as_str());
            let unfit = self.unfit(w, node, runs_here);
            if !unfit.is_empty() {
                unfit_nodes.insert(node.id.as_str(), unfit);
            } else if runs_here {
                kept.push(node);
            } else {
                fresh.push(node);
            }
        }
        let placed = match w.spec.placement.mode {
            PlacementMode::Every => self.every(w, &kept, &fresh, &mut reasons),
            PlacementMode::Replicas(n) => {
                let wanted = usize::try_from(n).unwrap_or(usize::MAX);
                self.replicas(w, wanted, kept, fresh, &mut reasons)
            }
        };
        reasons.placed = placed.len();
        reasons.summary = Summary::new(
            reasons.placed,
            reasons.wanted,
            w.spec.placement.is_every(),
            self.fleet.is_empty(),
            unfit_nodes.values().map(Vec::as_slice),
        );
        for (id, unfit) in unfit_nodes {
            reasons
                .not_placed
                .insert(id.to_string(), NotPlaced::Unfit(unfit));
        }
        self.commit(w, placed.clone());
        (placed, reasons)
    }

    fn every(
        &self,
        w: &Workload,
        kept: &[&'a NodeView],
        fresh: &[&'a NodeView],
        reasons: &mut WorkloadReasons,
    ) -> BTreeSet<&'a str> {
        let mut placed = BTreeSet::new();
        for node in kept {
            let notes = self.kept_notes(w, node);
            reasons
                .placed_on
                .insert(node.id.clone(), PlacedOn::Kept(notes));
            placed.insert(node.id.as_str());
        }
        for node in fresh {
            let notes = if node.online {
                Vec::new()
            } else {
                vec![Note::OnReconnect]
            };
            reasons
                .placed_on
                .insert(node.id.clone(), PlacedOn::New(notes));
            placed.insert(node.id.as_str());
        }
        reasons.wanted = placed.len();
        placed
    }

    fn replicas(
        &self,
        w: &Workload,
        wanted: usize,
        mut kept: Vec<&'a NodeView>,
        mut fresh: Vec<&'a NodeView>,
        reasons: &mut WorkloadReasons,
    ) -> BTreeSet<&'a str> {
        reasons.wanted = wanted;
        let spread = w.spec.placement.spread.as_deref();
        let mut surplus = Vec::new();
        while kept.len() > wanted {
            let counts = spread_counts(spread, &kept);
            let drop = kept
                .iter()
                .enumerate()
                .max_by_key(|(_, node)| {
                    (
                        !node.online,
                        node.schedulable != Schedulable::Yes,
                        counts
                            .get(&spread_value(spread, node))
                            .copied()
                            .unwrap_or(0),
                        node.id.as_str(),
                    )
                })
                .map(|(i, _)| i);
            match drop {
                Some(i) => surplus.push(kept.remove(i)),
                None => break,
            }
        }
        for node in &kept {
            let notes = self.kept_notes(w, node);
            reasons
                .placed_on
                .insert(node.id.clone(), PlacedOn::Kept(notes));
        }
        let mut chosen = kept;
        while chosen.len() < wanted && !fresh.is_empty() {
            let counts = spread_counts(spread, &chosen);
            let best = fresh
                .iter()
                .enumerate()
                .min_by_key(|(_, node)| {
                    let used = self.used(&node.id);
                    (
                        !node.online,
                        counts
                            .get(&spread_value(spread, node))
                            .copied()
                            .unwrap_or(0),
                        used.workloads,
                        Reverse(used.free_memory(node.facts.capacity)),
                        node.id.as_str(),
                    )
                })
                .map(|(i, _)| i);
            let Some(i) = best else { break };
            let node = fresh.remove(i);
            let mut notes = vec![if node.online {
                Note::Online
            } else {
                Note::Offline
            }];
            if let Some(key) = spread {
                let value = spread_value(spread, node);
                let count = counts.get(&value).copied().unwrap_or(0);
                notes.push(Note::Spread(Spread {
                    key: key.to_string(),
                    value: value.map(str::to_string),
                    count,
                }));
            }
            let used = self.used(&node.id);
            notes.push(Note::Workloads(used.workloads));
            if node.facts.capacity.memory_bytes > 0 {
                notes.push(Note::FreeMemory(used.free_memory(node.facts.capacity)));
            }
            reasons
                .placed_on
                .insert(node.id.clone(), PlacedOn::New(notes));
            chosen.push(node);
        }
        let counts = spread_counts(spread, &chosen);
        let placed = chosen.len();
        for node in surplus {
            reasons
                .not_placed
                .insert(node.id.clone(), NotPlaced::Removed { placed, wanted });
        }
        for node in fresh {
            let spread = spread.and_then(|key| {
                let value = spread_value(Some(key), node);
                let count = counts.get(&value).copied().unwrap_or(0);
                (count > 0).then(|| Spread {
                    key: key.to_string(),
                    value: value.map(str::to_string),
                    count,
                })
            });
            reasons.not_placed.insert(
                node.id.clone(),
                NotPlaced::NotChosen {
                    placed,
                    wanted,
                    spread,
                },
            );
        }
        chosen.iter().map(|node| node.id.as_str()).collect()
    }

    /// Why a copy on a node that is not simply online and schedulable stays there.
    fn kept_notes(&self, w: &Workload, node: &NodeView) -> Vec<Note> {
        let mut notes = Vec::new();
        if !node.online {
            let offline_ms = fit::offline_for(node, self.now_ms);
            notes.push(match w.spec.placement.mode {
                PlacementMode::Every => Note::OfflineEvery { offline_ms },
                PlacementMode::Replicas(_) => Note::OfflineWithin {
                    offline_ms,
                    after: w.spec.placement.reschedule_after,
                },
            });
        }
        match node.schedulable {
            Schedulable::Yes => {}
            Schedulable::Cordoned => notes.push(Note::Cordoned),
            // Only `every` copies stay on a drained node.
            Schedulable::Drained => notes.push(Note::DrainedEveryStays),
        }
        notes
    }
}

/// The node's value of the spread label; `None` for a node without it (its own value).
fn spread_value<'n>(spread: Option<&str>, node: &'n NodeView) -> Option<&'n str> {
    spread.and_then(|key| node.facts.labels.get(key).map(String::as_str))
}

fn spread_counts<'n>(
    spread: Option<&str>,
    nodes: &[&'n NodeView],
) -> BTreeMap<Option<&'n str>, usize> {
    let mut counts = BTreeMap::new();
    for node in nodes {
        *counts.entry(spread_value(spread, node)).or_insert(0) += 1;
    }
    counts
}
