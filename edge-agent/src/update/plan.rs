//! What to do about the agent target the hub's desired state names. Pure.
//!
//! # Rules
//!
//! - No target, or the version this agent is: nothing (a partial download is dropped).
//! - The version that already failed here (the launcher recorded it in `launch.json`, or a
//!   download or a check failed for good): it is not tried again, and the node reports the
//!   failure until the hub names another version. A downgrade is an upgrade like any other:
//!   the hub's `agent upgrade --to` an older version is how an operator goes back.
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

pub fn decide(target: Option<&Version>, own: &Version, launch: &Launch) -> Action {
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
                decide(target.as_ref(), &own, launch),
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
}
