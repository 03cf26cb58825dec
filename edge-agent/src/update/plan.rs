//! What to do about the agent target the hub's desired state names. Pure.
//!
//! # Rules
//!
//! - No target, or the version this agent is: nothing (a partial download is dropped).
//! - The version that already failed here (the launcher recorded it in `launch.json`, or a
//!   download or a check failed for good): it is not tried again, and the node reports the
//!   failure until the hub names another version. A downgrade is an upgrade like any other:
//!   the hub's `agent upgrade --to` an older version is how an operator goes back.
//! - A version below the node's floor (the signed minimum of a release it has proven, see
//!   `super::floor`), or any version while the floor cannot be read: refused before anything
//!   is downloaded, whoever asks; the updater records it as a failure, so it is reported
//!   once and not looked at again until the hub names another version.
//! - The version staged as the launcher's trial: it is switching.
//! - Another trial is on (this agent itself, on probation, or one staged by hand): wait until
//!   the launcher has judged it; a second trial must not replace one being judged.
//! - Otherwise: fetch it (download, verify, stage).
//!
//! And what the node says about itself while it is the trial: on probation ([`probation`]).

use shoal_model::release::Version;

/// What the updater does about a target.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    Idle,
    /// Another trial is being judged.
    Wait,
    /// It failed here before, for this reason.
    Failed(String),
    /// Refused now, for this reason (to record, report once, and never fetch).
    Refuse(String),
    Switching,
    Fetch,
}

/// Where the launcher is, from `launch.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Launch {
    /// The version of the staged trial.
    pub trial: Option<String>,
    /// The version that failed last, and why.
    pub failed: Option<(String, String)>,
}

/// The node's floor as the plan reads it (`super::floor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Floor<'a> {
    None,
    At(&'a super::floor::Floor),
    /// The file is there but cannot be read: why.
    Unreadable(&'a str),
}

pub fn decide(
    target: Option<&Version>,
    own: &Version,
    launch: &Launch,
    floor: Floor<'_>,
) -> Action {
    let Some(target) = target else {
        return Action::Idle;
    };
    if target == own {
        return Action::Idle;
    }
    let text = target.to_string();
    if let Some((_, reason)) = launch.failed.as_ref().filter(|(v, _)| *v == text) {
        return Action::Failed(reason.clone());
    }
    match floor {
        Floor::At(f) if *target < f.minimum => {
            return Action::Refuse(format!(
                "agent {target} is below this node's minimum agent version {}, signed with \
                 agent {} which this node has proven: it is never downgraded below that",
                f.minimum, f.release
            ))
        }
        Floor::Unreadable(why) => {
            return Action::Refuse(format!(
                "this node cannot tell its minimum agent version ({why}): fix or remove the file \
                 to let it update"
            ))
        }
        Floor::At(_) | Floor::None => {}
    }
    match launch.trial.as_deref() {
        Some(trial) if trial == text => Action::Switching,
        Some(_) => Action::Wait,
        None => Action::Fetch,
    }
}

/// Whether this agent (version `own`) is the trial the launcher is judging.
pub fn probation(own: &Version, launch: &Launch) -> bool {
    launch.trial.as_deref() == Some(own.to_string().as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> Version {
        Version::parse(text).expect("version")
    }

    #[test]
    fn each_target_gets_its_action() {
        let own = v("0.2.0");
        let none = Launch::default();
        let failed = Launch {
            trial: None,
            failed: Some(("0.3.0".into(), "it crashed".into())),
        };
        let staged = Launch {
            trial: Some("0.3.0".into()),
            failed: None,
        };
        let cases = [
            (None, &none, Action::Idle),
            (Some(v("0.2.0")), &none, Action::Idle),
            (Some(v("0.3.0")), &none, Action::Fetch),
            (Some(v("0.1.0")), &none, Action::Fetch),
            (
                Some(v("0.3.0")),
                &failed,
                Action::Failed("it crashed".into()),
            ),
            (Some(v("0.3.1")), &failed, Action::Fetch),
            (Some(v("0.3.0")), &staged, Action::Switching),
            (Some(v("0.4.0")), &staged, Action::Wait),
        ];
        for (target, launch, expected) in cases {
            assert_eq!(
                decide(target.as_ref(), &own, launch, Floor::None),
                expected,
                "{target:?}"
            );
        }
        let on_trial = Launch {
            trial: Some("0.2.0".into()),
            failed: None,
        };
        assert!(probation(&own, &on_trial));
        assert!(!probation(&own, &staged));
        assert!(!probation(&own, &none));
    }

    #[test]
    fn a_target_below_the_floor_is_refused_before_anything_else_but_a_recorded_failure() {
        let own = v("0.4.0");
        let none = Launch::default();
        let floor = super::super::floor::Floor {
            minimum: v("0.3.0"),
            release: v("0.4.0"),
        };
        let at = Floor::At(&floor);
        let refused = |a: Action| matches!(a, Action::Refuse(r) if r.contains("below this node's minimum agent version 0.3.0") && r.contains("agent 0.4.0"));
        // Below: refused, even while another trial is staged.
        assert!(refused(decide(Some(&v("0.2.9")), &own, &none, at)));
        assert!(refused(decide(Some(&v("0.3.0-rc.1")), &own, &none, at)));
        let staged = Launch {
            trial: Some("0.5.0".into()),
            failed: None,
        };
        assert!(refused(decide(Some(&v("0.1.0")), &own, &staged, at)));
        // At or above the floor: as without one (a downgrade to the minimum itself is fine).
        assert_eq!(decide(Some(&v("0.3.0")), &own, &none, at), Action::Fetch);
        assert_eq!(decide(Some(&v("0.5.0")), &own, &none, at), Action::Fetch);
        assert_eq!(decide(Some(&v("0.4.0")), &own, &none, at), Action::Idle);
        assert_eq!(decide(None, &own, &none, at), Action::Idle);
        // Once recorded, the refusal is a failure reported before: not refused (reported) again.
        let recorded = Launch {
            trial: None,
            failed: Some(("0.2.9".into(), "below".into())),
        };
        assert_eq!(
            decide(Some(&v("0.2.9")), &own, &recorded, at),
            Action::Failed("below".into())
        );
        // A floor that cannot be read lets nothing through, and says what to do.
        let unreadable = Floor::Unreadable("agent-floor: it is empty");
        assert!(matches!(
            decide(Some(&v("0.5.0")), &own, &none, unreadable),
            Action::Refuse(r) if r.contains("agent-floor: it is empty") && r.contains("fix or remove")
        ));
        assert_eq!(
            decide(Some(&v("0.4.0")), &own, &none, unreadable),
            Action::Idle
        );
    }
}
