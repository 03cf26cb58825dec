//! The launcher's decisions (pure: no IO, no clock; times are milliseconds of a monotonic
//! clock the shell reads).
//!
//! - **Which binary to start** ([`choose`]): the trial binary while it has attempts left,
//!   else the good one. An attempt is counted (and stored) *before* the binary starts, so an
//!   attempt that takes the launcher or the whole device down with it still counts: after
//!   [`MAX_ATTEMPTS`] starts that never concluded, the trial has failed.
//! - **How a trial is judged** ([`judge`]): it must report ready (its database open, every
//!   container re-adopted, the hub reached or known to be unreachable) within `up_within`,
//!   then stay up for `stable_for`. Being offline is not a failure: the agent reports ready
//!   once it *knows* the link is down. Exiting at any time before that, or not being ready in
//!   time, fails it. A binary that exits asking for a switch ([`EXIT_SWITCH`]) is not judged:
//!   it is the good binary handing over to a trial.

use std::time::Duration;

/// The exit code with which an agent asks its launcher to start the binary the launch state
/// now names (it wrote a trial there): EX_TEMPFAIL, no error.
pub const EXIT_SWITCH: i32 = 75;
/// Starts of one trial binary that may end without a verdict (launcher or device killed).
pub const MAX_ATTEMPTS: u32 = 3;

/// How long a trial has to become ready, then to stay up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bounds {
    pub up_within: Duration,
    pub stable_for: Duration,
}

impl Default for Bounds {
    fn default() -> Bounds {
        Bounds {
            up_within: Duration::from_secs(120),
            stable_for: Duration::from_secs(60),
        }
    }
}

/// What to start next.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Choice {
    /// The good binary.
    Good,
    /// The trial binary, for this attempt (1-based).
    Trial { attempt: u32 },
    /// The trial used up its attempts without a verdict: it failed; start the good one.
    Exhausted { attempts: u32 },
}

/// Which binary to start, given the trial (if any) and how many attempts it already had.
pub fn choose(trial_attempts: Option<u32>) -> Choice {
    match trial_attempts {
        None => Choice::Good,
        Some(done) if done >= MAX_ATTEMPTS => Choice::Exhausted { attempts: done },
        Some(done) => Choice::Trial { attempt: done + 1 },
    }
}

/// How a running (or ended) trial stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not decided: look again at this time at the latest.
    Wait {
        until_ms: u64,
    },
    /// Ready in time and up for `stable_for` since: it becomes the good binary.
    Proven,
    Failed(Failure),
}

/// Why a trial failed, worded by its `Display`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// It exited (with this description of how) before it was proven.
    Exited { how: String, ready: bool },
    /// Not ready within the bound.
    NotReady { within: Duration },
    /// Started this many times without a verdict.
    Interrupted { attempts: u32 },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Exited { how, ready: false } => {
                write!(f, "it exited ({how}) before it became ready")
            }
            Failure::Exited { how, ready: true } => {
                write!(
                    f,
                    "it exited ({how}) after it became ready, before it was proven stable"
                )
            }
            Failure::NotReady { within } => write!(
                f,
                "it did not become ready (database open, containers re-adopted, hub reached \
                 or known offline) within {} s",
                within.as_secs()
            ),
            Failure::Interrupted { attempts } => write!(
                f,
                "it was started {attempts} times and each start ended without a verdict \
                 (the launcher or the device went down)"
            ),
        }
    }
}

/// Judges a trial started at `started_ms`, ready since `ready_ms` (if it said so), and
/// exited as `exited` (if it did), at `now_ms`.
pub fn judge(
    bounds: Bounds,
    started_ms: u64,
    ready_ms: Option<u64>,
    exited: Option<String>,
    now_ms: u64,
) -> Verdict {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    match (ready_ms, exited) {
        (ready, Some(how)) => {
            // Proven before it exited? Then the exit is the good binary's own business.
            if let Some(ready) = ready {
                if now_ms >= ready.saturating_add(millis(bounds.stable_for)) {
                    return Verdict::Proven;
                }
            }
            Verdict::Failed(Failure::Exited {
                how,
                ready: ready.is_some(),
            })
        }
        (None, None) => {
            let deadline = started_ms.saturating_add(millis(bounds.up_within));
            if now_ms >= deadline {
                Verdict::Failed(Failure::NotReady {
                    within: bounds.up_within,
                })
            } else {
                Verdict::Wait { until_ms: deadline }
            }
        }
        (Some(ready), None) => {
            let proven = ready.saturating_add(millis(bounds.stable_for));
            if now_ms >= proven {
                Verdict::Proven
            } else {
                Verdict::Wait { until_ms: proven }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUNDS: Bounds = Bounds {
        up_within: Duration::from_secs(120),
        stable_for: Duration::from_secs(60),
    };

    #[test]
    fn a_trial_gets_three_starts_then_the_good_binary_comes_back() {
        assert_eq!(choose(None), Choice::Good);
        assert_eq!(choose(Some(0)), Choice::Trial { attempt: 1 });
        assert_eq!(choose(Some(2)), Choice::Trial { attempt: 3 });
        assert_eq!(choose(Some(3)), Choice::Exhausted { attempts: 3 });
        assert!(Failure::Interrupted { attempts: 3 }
            .to_string()
            .contains("started 3 times"));
    }

    #[test]
    fn a_trial_is_judged_by_readiness_in_time_and_stability_after() {
        struct Row {
            name: &'static str,
            ready: Option<u64>,
            exited: Option<&'static str>,
            now: u64,
            expected: Verdict,
        }
        let started = 1_000;
        let rows = [
            Row {
                name: "just started: wait until the readiness deadline",
                ready: None,
                exited: None,
                now: 2_000,
                expected: Verdict::Wait { until_ms: 121_000 },
            },
            Row {
                name: "a hang: never ready",
                ready: None,
                exited: None,
                now: 121_000,
                expected: Verdict::Failed(Failure::NotReady {
                    within: Duration::from_secs(120),
                }),
            },
            Row {
                name: "ready: wait until stable",
                ready: Some(5_000),
                exited: None,
                now: 6_000,
                expected: Verdict::Wait { until_ms: 65_000 },
            },
            Row {
                name: "ready late in the window still counts; stable after",
                ready: Some(120_000),
                exited: None,
                now: 180_000,
                expected: Verdict::Proven,
            },
            Row {
                name: "a crash at start",
                ready: None,
                exited: Some("code 1"),
                now: 1_100,
                expected: Verdict::Failed(Failure::Exited {
                    how: "code 1".into(),
                    ready: false,
                }),
            },
            Row {
                name: "a crash after ready, before stable",
                ready: Some(5_000),
                exited: Some("SIGSEGV"),
                now: 30_000,
                expected: Verdict::Failed(Failure::Exited {
                    how: "SIGSEGV".into(),
                    ready: true,
                }),
            },
            Row {
                name: "an exit once proven is not the trial's failure",
                ready: Some(5_000),
                exited: Some("code 0"),
                now: 70_000,
                expected: Verdict::Proven,
            },
        ];
        for row in rows {
            let got = judge(
                BOUNDS,
                started,
                row.ready,
                row.exited.map(String::from),
                row.now,
            );
            assert_eq!(got, row.expected, "{}", row.name);
            // Judging again at the same time decides the same.
            let again = judge(
                BOUNDS,
                started,
                row.ready,
                row.exited.map(String::from),
                row.now,
            );
            assert_eq!(again, got, "{} (again)", row.name);
        }
    }
}
