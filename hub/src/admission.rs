//! Which statuses from a node the hub keeps: a pure decision on sequence numbers and
//! generations, taken for every status before anything of it is stored.
//!
//! An agent numbers its statuses 1, 2, 3, ... across restarts (the number is kept in its
//! database, in the same transaction as its outbox), and sends them oldest first. The hub keeps
//! the newest status of each node, so a redelivered or replayed older one must not overwrite
//! it. But the number is the node's word: a bug or a forged status can claim any value, and an
//! agent that lost its database starts again from 1 (enrolling again also starts afresh, but
//! the hub forgets the node's statuses then). Trusting the number blindly meant one absurd
//! status made the hub drop every real one after it. So:
//!
//! - A status numbered more than [`MAX_JUMP`] past the newest kept (past 0 for a node's first)
//!   is refused whole: an agent emits at most four statuses a second (its coalescing
//!   interval), so 2^32 is over 30 years of them, offline or not.
//! - A status claiming a desired-state generation the hub never published for the node is
//!   refused whole: an agent only accepts generations the hub signed for it. (It happens to a
//!   genuine agent when the hub's database was restored from an older backup: the agent then
//!   refuses the hub's desired states too, and enrolling it again mends both.)
//! - A status older than the newest kept is a redelivery or a replay from the agent's outbox
//!   when it is at most [`REPLAY_WINDOW`] behind (far more than an outbox holds) and the newest
//!   arrived less than [`STALE_AFTER_MS`] ago: its events are kept, its state is not.
//! - Any other older status means the node's numbering started again (a lost database, or the
//!   kept status was bogus): it is kept and the numbering goes on from it. This is the way
//!   back: a status that got through with a number the agent will not reach for years holds
//!   the node's real statuses back not at all (they are far behind it) or for at most
//!   [`STALE_AFTER_MS`]. A replay taken this way (the node was silent that long) is followed
//!   by the rest of the replay, up to the newest, in order.
//! - Anything else (as new as the newest kept, or newer) is kept.

use std::fmt;

/// The furthest a status's sequence may jump past the newest kept.
pub const MAX_JUMP: u64 = 1 << 32;

/// The furthest behind the newest kept that a status can be a replay of the agent's outbox
/// (at most `outbox_max_rows`, 1000 by default, statuses wait there).
pub const REPLAY_WINDOW: u64 = 100_000;

/// After this long without a status kept from a node, an older status is taken as the start
/// of a new numbering: twice the agents' default heartbeat.
pub const STALE_AFTER_MS: u64 = 120_000;

/// The newest status kept of a node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    pub sequence: u64,
    /// Hub clock, ms since the Unix epoch.
    pub received_at_ms: u64,
}

/// What a status claims, and what the hub knows about the node.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub sequence: u64,
    pub observed_generation: u64,
    /// The newest desired-state generation the hub published for the node (0 before any).
    pub published_generation: u64,
}

/// What to do with a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// The node's newest status: kept, with its events.
    Newest,
    /// The node's numbering started again: kept, with its events, as the newest.
    Restarted { previous: u64 },
    /// Older than the newest kept: its events are kept, its state is not.
    Older,
    /// Nothing of it is kept.
    Refused(Refusal),
}

/// Why a status was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    SequenceJump { sequence: u64, newest: u64 },
    GenerationAhead { observed: u64, published: u64 },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::SequenceJump { sequence, newest } => write!(
                f,
                "refused a status numbered {sequence}, more than {MAX_JUMP} past the newest kept ({newest}), which no agent reaches: find out what else sends with this node's credentials, or remove the node and enroll it again"
            ),
            Refusal::GenerationAhead {
                observed,
                published,
            } => write!(
                f,
                "refused a status claiming desired-state generation {observed}, but the hub published only up to {published} for this node: if the hub's database was restored from a backup, enroll the node again (`shoal node add`, then `shoal-agent enroll` on the device)"
            ),
        }
    }
}

/// Whether the hub keeps a status claiming `claim`, given the newest status kept of the node
/// (`None` before its first) and the hub's clock. Pure.
pub fn admit(kept: Option<Kept>, claim: Claim, now_ms: u64) -> Admission {
    if claim.observed_generation > claim.published_generation {
        return Admission::Refused(Refusal::GenerationAhead {
            observed: claim.observed_generation,
            published: claim.published_generation,
        });
    }
    let newest = kept.map_or(0, |k| k.sequence);
    if claim.sequence.saturating_sub(newest) > MAX_JUMP {
        return Admission::Refused(Refusal::SequenceJump {
            sequence: claim.sequence,
            newest,
        });
    }
    let Some(kept) = kept else {
        return Admission::Newest;
    };
    if claim.sequence >= kept.sequence {
        return Admission::Newest;
    }
    let far_behind = kept.sequence - claim.sequence > REPLAY_WINDOW;
    let silent = now_ms.saturating_sub(kept.received_at_ms) >= STALE_AFTER_MS;
    if far_behind || silent {
        Admission::Restarted {
            previous: kept.sequence,
        }
    } else {
        Admission::Older
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000;

    struct Case {
        name: &'static str,
        kept: Option<(u64, u64)>,
        sequence: u64,
        observed: u64,
        published: u64,
        expected: Admission,
    }

    fn check(case: Case) {
        let kept = case.kept.map(|(sequence, ago_ms)| Kept {
            sequence,
            received_at_ms: NOW - ago_ms,
        });
        let claim = Claim {
            sequence: case.sequence,
            observed_generation: case.observed,
            published_generation: case.published,
        };
        assert_eq!(admit(kept, claim, NOW), case.expected, "{}", case.name);
        // Kept statuses move the numbering to themselves: the same status again is no
        // restart and no refusal.
        if matches!(
            case.expected,
            Admission::Newest | Admission::Restarted { .. }
        ) {
            let now_kept = Some(Kept {
                sequence: case.sequence,
                received_at_ms: NOW,
            });
            assert_eq!(
                admit(now_kept, claim, NOW),
                Admission::Newest,
                "{}: again",
                case.name
            );
        }
    }

    fn case(name: &'static str, kept: Option<(u64, u64)>, sequence: u64) -> Case {
        Case {
            name,
            kept,
            sequence,
            observed: 3,
            published: 3,
            expected: Admission::Newest,
        }
    }

    #[test]
    fn statuses_are_kept_refused_or_taken_as_a_restart_by_their_numbers() {
        let refused_jump =
            |sequence, newest| Admission::Refused(Refusal::SequenceJump { sequence, newest });
        for c in [
            case("a node's first status", None, 1),
            case("the next status", Some((41, 1_000)), 42),
            case("a redelivery of the newest", Some((42, 1_000)), 42),
            case(
                "a long offline period's outbox",
                Some((42, 30 * 86_400_000)),
                42 + 10_000_000,
            ),
            case("a first status as far as possible", None, MAX_JUMP),
            case("the furthest jump", Some((42, 1_000)), 42 + MAX_JUMP),
            Case {
                expected: refused_jump(MAX_JUMP + 1, 0),
                ..case("a first status too far", None, MAX_JUMP + 1)
            },
            Case {
                expected: refused_jump(u64::MAX, 42),
                ..case("an absurd sequence", Some((42, 1_000)), u64::MAX)
            },
            Case {
                expected: refused_jump(43 + MAX_JUMP, 42),
                ..case(
                    "one past the furthest jump",
                    Some((42, 1_000)),
                    43 + MAX_JUMP,
                )
            },
            Case {
                expected: Admission::Older,
                ..case("a replay from the outbox", Some((5_000, 1_000)), 4_001)
            },
            Case {
                expected: Admission::Older,
                ..case(
                    "the oldest replay there can be",
                    Some((REPLAY_WINDOW + 10, 0)),
                    10,
                )
            },
            Case {
                expected: Admission::Restarted {
                    previous: 1_000_000_000,
                },
                ..case(
                    "real statuses after a far-off one got through",
                    Some((1_000_000_000, 0)),
                    43,
                )
            },
            Case {
                expected: Admission::Restarted { previous: 500 },
                ..case(
                    "an agent that lost its database, once the hub waited",
                    Some((500, STALE_AFTER_MS)),
                    1,
                )
            },
            Case {
                expected: Admission::Older,
                ..case(
                    "an agent that lost its database, too soon to tell",
                    Some((500, STALE_AFTER_MS - 1)),
                    1,
                )
            },
        ] {
            check(c);
        }
    }

    #[test]
    fn a_status_claiming_a_generation_the_hub_never_published_is_refused() {
        for c in [
            Case {
                observed: 7,
                published: 7,
                ..case("the published generation", Some((1, 0)), 2)
            },
            Case {
                observed: 6,
                published: 7,
                ..case("not applied yet", Some((1, 0)), 2)
            },
            Case {
                observed: 0,
                published: 0,
                ..case("nothing published yet", None, 1)
            },
            Case {
                observed: 8,
                published: 7,
                expected: Admission::Refused(Refusal::GenerationAhead {
                    observed: 8,
                    published: 7,
                }),
                ..case("one ahead", Some((1, 0)), 2)
            },
            Case {
                observed: u64::MAX,
                published: 0,
                expected: Admission::Refused(Refusal::GenerationAhead {
                    observed: u64::MAX,
                    published: 0,
                }),
                ..case("absurd, even as a first status", None, 1)
            },
        ] {
            check(c);
        }
    }

    #[test]
    fn refusals_say_what_to_do() {
        let jump = Refusal::SequenceJump {
            sequence: u64::MAX,
            newest: 42,
        }
        .to_string();
        assert!(
            jump.contains("18446744073709551615") && jump.contains("enroll it again"),
            "{jump}"
        );
        let ahead = Refusal::GenerationAhead {
            observed: 9,
            published: 7,
        }
        .to_string();
        assert!(
            ahead.contains("generation 9") && ahead.contains("shoal-agent enroll"),
            "{ahead}"
        );
    }
}
