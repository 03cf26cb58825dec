//! Why a workload runs where it runs, as data: a dashboard, a metric or a rollout branches on
//! these enums; operators read them through their `Display` impls, at the edge (the API's
//! views), in the wording the module documentation lists.

use std::collections::BTreeMap;
use std::fmt;

use shoal_model::fit::{Mismatch, Resource};
use shoal_model::manifest::RescheduleAfter;
use shoal_model::quantity::format_bytes;

use super::fit::{age, plural, reschedule_text, Unfit};

/// Why one workload runs where it runs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadReasons {
    /// `replicas`, or the number of eligible nodes for `every`.
    pub wanted: usize,
    pub placed: usize,
    /// One line, kubectl-like: `3/3 placed`, `1/2 placed: only 1 node matches (2 nodeSelector)`.
    pub summary: Summary,
    /// Why each node that does not run it does not: node id -> reason.
    pub not_placed: BTreeMap<String, NotPlaced>,
    /// Why the nodes that run it were chosen or kept: node id -> reason.
    pub placed_on: BTreeMap<String, PlacedOn>,
}

/// The count of a workload's copies, and what kept it short.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub placed: usize,
    pub wanted: usize,
    /// `None` when every wanted copy is placed (and an `every` workload matches a node).
    pub short: Option<Short>,
}

/// What kept a workload short of its copies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Short {
    /// The fleet has no nodes.
    NoNodes,
    /// Too few nodes match: each node that does not, counted once under the first rule it
    /// fails (as `kubectl describe` counts them), the most frequent rule first.
    Unmatched(Vec<(Rule, usize)>),
}

/// A kind of placement rule, as the summary counts them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    NodeSelector,
    Constraint,
    Cordoned,
    Drained,
    /// Offline for at least `rescheduleAfter`.
    Offline,
    With,
    NotWith,
    /// `memory`, `cpu` or `pids`.
    Insufficient(Resource),
    Gone,
}

/// Why a workload is not on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NotPlaced {
    /// The node fails these rules (never empty).
    Unfit(Vec<Unfit>),
    /// A copy ran there and was dropped: `replicas` is met by the others.
    Removed { placed: usize, wanted: usize },
    /// The node could run it, but `replicas` is met elsewhere. `spread`: how many copies the
    /// node's spread value already has, when some.
    NotChosen {
        placed: usize,
        wanted: usize,
        spread: Option<Spread>,
    },
}

/// The copies of a workload on the nodes with one value of its `spread` label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spread {
    pub key: String,
    /// `None`: the nodes without the label, counted as one value.
    pub value: Option<String>,
    pub count: usize,
}

/// Why a workload is on a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PlacedOn {
    /// It ran there and stays.
    Kept(Vec<Note>),
    /// Newly placed there.
    New(Vec<Note>),
}

/// A detail of why a node was chosen or kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    /// A new replica went to an online node.
    Online,
    /// A new replica went to an offline node (no online node could take it).
    Offline,
    /// A new `every` copy on an offline node.
    OnReconnect,
    /// Kept on a node offline for `offline_ms`: `every` workloads never move.
    OfflineEvery {
        offline_ms: u64,
    },
    /// Kept on a node offline for `offline_ms`, less than `rescheduleAfter`.
    OfflineWithin {
        offline_ms: u64,
        after: RescheduleAfter,
    },
    Cordoned,
    /// Kept on a drained node: `every` copies stay.
    DrainedEveryStays,
    /// The copies of the node's spread value before this one.
    Spread(Spread),
    /// The workloads placed on the node before this one.
    Workloads(usize),
    /// The node's free memory before this one.
    FreeMemory(u64),
}

impl Unfit {
    /// The kind of rule, counted in the summary.
    pub fn rule(&self) -> Rule {
        match self {
            Unfit::Mismatch(Mismatch::Selector { .. }) => Rule::NodeSelector,
            Unfit::Mismatch(Mismatch::Constraint { .. }) => Rule::Constraint,
            Unfit::Cordoned => Rule::Cordoned,
            Unfit::Drained => Rule::Drained,
            Unfit::Lost { .. } => Rule::Offline,
            Unfit::With { .. } => Rule::With,
            Unfit::NotWith(_) | Unfit::ExcludedBy { .. } => Rule::NotWith,
            Unfit::Insufficient(shortfall) => Rule::Insufficient(shortfall.resource),
            Unfit::Gone => Rule::Gone,
        }
    }
}

impl Summary {
    /// The summary of a decided workload: short when fewer copies are placed than wanted, or
    /// when an `every` workload matches no node.
    pub(super) fn new<'u>(
        placed: usize,
        wanted: usize,
        every: bool,
        no_nodes: bool,
        unfit_nodes: impl Iterator<Item = &'u [Unfit]>,
    ) -> Summary {
        let short = placed < wanted || (every && wanted == 0);
        let short = match (short, no_nodes) {
            (false, _) => None,
            (true, true) => Some(Short::NoNodes),
            (true, false) => {
                let mut rules: BTreeMap<Rule, usize> = BTreeMap::new();
                for rule in unfit_nodes
                    .filter_map(|unfit| unfit.first())
                    .map(Unfit::rule)
                {
                    *rules.entry(rule).or_insert(0) += 1;
                }
                let mut rules: Vec<(Rule, usize)> = rules.into_iter().collect();
                // The wording decides ties, so the line reads the same however rules are declared.
                rules.sort_by_cached_key(|(rule, count)| {
                    (std::cmp::Reverse(*count), rule.to_string())
                });
                Some(Short::Unmatched(rules))
            }
        };
        Summary {
            placed,
            wanted,
            short,
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (placed, wanted) = (self.placed, self.wanted);
        write!(f, "{placed}/{wanted} placed")?;
        match &self.short {
            None => Ok(()),
            Some(Short::NoNodes) => f.write_str(": no nodes in the fleet"),
            Some(Short::Unmatched(rules)) => {
                match placed {
                    0 => f.write_str(": no node matches")?,
                    1 => f.write_str(": only 1 node matches")?,
                    n => write!(f, ": only {n} nodes match")?,
                }
                if rules.is_empty() {
                    return Ok(());
                }
                let rules: Vec<String> = rules
                    .iter()
                    .map(|(rule, count)| format!("{count} {rule}"))
                    .collect();
                write!(f, " ({})", rules.join(", "))
            }
        }
    }
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rule::NodeSelector => f.write_str("nodeSelector"),
            Rule::Constraint => f.write_str("constraint"),
            Rule::Cordoned => f.write_str("cordoned"),
            Rule::Drained => f.write_str("drained"),
            Rule::Offline => f.write_str("offline"),
            Rule::With => f.write_str("with"),
            Rule::NotWith => f.write_str("notWith"),
            Rule::Insufficient(resource) => write!(f, "insufficient {resource}"),
            Rule::Gone => f.write_str("gone"),
        }
    }
}

impl fmt::Display for NotPlaced {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NotPlaced::Unfit(unfit) => {
                for (i, rule) in unfit.iter().enumerate() {
                    if i > 0 {
                        f.write_str("; ")?;
                    }
                    write!(f, "{rule}")?;
                }
                Ok(())
            }
            NotPlaced::Removed { placed, wanted } => {
                write!(f, "removed: replicas already met ({placed}/{wanted})")
            }
            NotPlaced::NotChosen {
                placed,
                wanted,
                spread,
            } => {
                write!(f, "not chosen: replicas already met ({placed}/{wanted})")?;
                if let Some(spread) = spread {
                    let has = if spread.value.is_some() {
                        "has"
                    } else {
                        "have"
                    };
                    write!(
                        f,
                        "; spread {} already {has} {}",
                        spread.text(),
                        plural(spread.count, "replica")
                    )?;
                }
                Ok(())
            }
        }
    }
}

impl Spread {
    /// `site=a`, or `nodes with no label site`.
    fn text(&self) -> String {
        match &self.value {
            Some(value) => format!("{}={value}", self.key),
            None => format!("nodes with no label {}", self.key),
        }
    }
}

impl fmt::Display for PlacedOn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, notes) = match self {
            PlacedOn::Kept(notes) => ("kept", notes),
            PlacedOn::New(notes) => ("new", notes),
        };
        f.write_str(what)?;
        for (i, note) in notes.iter().enumerate() {
            f.write_str(if i == 0 { ": " } else { ", " })?;
            write!(f, "{note}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Note::Online => f.write_str("online"),
            Note::Offline => f.write_str("offline"),
            Note::OnReconnect => f.write_str("offline, gets it on reconnect"),
            Note::OfflineEvery { offline_ms } => write!(
                f,
                "offline for {}, every workloads never move",
                age(*offline_ms)
            ),
            Note::OfflineWithin { offline_ms, after } => write!(
                f,
                "offline for {}, rescheduleAfter {}",
                age(*offline_ms),
                reschedule_text(*after)
            ),
            Note::Cordoned => f.write_str("cordoned"),
            Note::DrainedEveryStays => f.write_str("drained, every workloads stay"),
            Note::Spread(spread) => write!(
                f,
                "spread {} had {}",
                spread.text(),
                plural(spread.count, "replica")
            ),
            Note::Workloads(count) => f.write_str(&plural(*count, "workload")),
            Note::FreeMemory(bytes) => write!(f, "{} free", format_bytes(*bytes)),
        }
    }
}
