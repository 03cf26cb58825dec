//! Presence: whether an agent is connected, and the facts placement needs about its node.

use super::envelope::sealed::Sealed;
use super::{check_name, v2, v3, Message, MessageKind, WireError, WIRE_VERSIONS_LABEL};
use crate::manifest::names::{check_label_key, check_label_value};
use crate::node::NodeFacts;

/// Sent retained when an agent connects (`online: true`) and registered as its MQTT last will
/// (`online: false`), so the broker announces a lost link. The agent version, architecture,
/// kernel, cgroup version, capacity and labels are in `facts`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Presence {
    pub node_id: String,
    pub online: bool,
    pub facts: NodeFacts,
}

impl Sealed for Presence {
    type V2 = v2::Presence;
    /// Version 3 gives the agent's wire versions a field of their own.
    type V3 = v3::Presence;

    fn to_v3(&self) -> v3::Presence {
        self.into()
    }

    fn from_v3(frozen: v3::Presence) -> Result<Self, v2::Invalid> {
        frozen.try_into()
    }

    fn to_v2(&self) -> v2::Presence {
        self.into()
    }

    fn from_v2(frozen: v2::Presence) -> Result<Self, v2::Invalid> {
        frozen.try_into()
    }
}

impl Message for Presence {
    const KIND: MessageKind = MessageKind::Presence;

    fn node_id(&self) -> Option<&str> {
        Some(&self.node_id)
    }

    /// Labels are matched by node selectors and constraints, so they follow the manifest's
    /// label rules; [`WIRE_VERSIONS_LABEL`] is reserved (version 2 carries the wire versions
    /// in it).
    fn check(&self) -> Result<(), WireError> {
        const KIND: MessageKind = MessageKind::Presence;
        check_name(KIND, "node id", &self.node_id)?;
        let invalid = |reason| WireError::Invalid { kind: KIND, reason };
        super::check_wire_versions(&self.facts.wire_versions).map_err(invalid)?;
        if self.facts.labels.contains_key(WIRE_VERSIONS_LABEL) {
            return Err(invalid(format!(
                "the label `{WIRE_VERSIONS_LABEL}` is reserved: the agent announces its wire \
                 versions itself"
            )));
        }
        for (key, value) in &self.facts.labels {
            check_label_key(key)
                .and_then(|()| check_label_value(value))
                .map_err(|reason| WireError::Invalid { kind: KIND, reason })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn presence(labels: &[(&str, &str)]) -> Presence {
        let mut facts = NodeFacts {
            arch: "arm64".into(),
            os: "linux".into(),
            kernel: "6.1.0-rpi7".into(),
            cgroup_version: 2,
            agent_version: "0.1.0".into(),
            ..NodeFacts::default()
        };
        facts.labels = labels
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        Presence {
            node_id: "node-1".into(),
            online: true,
            facts,
        }
    }

    #[test]
    fn presence_checks_accept_manifest_style_labels() {
        let result = presence(&[
            ("role", "gateway"),
            ("shoal.dev/site", "plant-1"),
            ("empty", ""),
        ])
        .check();
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn presence_checks_reject_labels_a_manifest_could_not_select() {
        for (key, value) in [("a b", "x"), ("/site", "x"), ("role", "-gateway")] {
            let error = presence(&[(key, value)])
                .check()
                .expect_err(key)
                .to_string();
            assert!(error.starts_with("invalid presence: "), "{error}");
        }
    }
}
