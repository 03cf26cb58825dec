//! Desired state: what the hub wants one node to run. Always complete, never a delta.

use std::collections::BTreeSet;

use super::envelope::sealed::Sealed;
use super::signing::PublicKey;
use super::{check_name, v2, v3, Message, MessageKind, WireError};
use crate::manifest::Workload;
use crate::release::{AgentTarget, MAX_RELEASE_KEYS};

/// Everything one node should run. Level-triggered: the newest generation wins and a lower or
/// equal generation is ignored by the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredState {
    pub node_id: String,
    /// Increases with every change the hub makes to this node's desired state.
    pub generation: u64,
    /// At most one entry per workload name.
    pub workloads: Vec<DesiredWorkload>,
    /// The hub keys the node trusts from this state on (at most [`MAX_SIGNING_KEYS`]): the key
    /// that signs, and during a rotation the next one. Taken only from a state that verified
    /// with a key the node already trusts; see `docs/security.md`.
    pub signing_keys: Vec<PublicKey>,
    /// The agent this node should run, when the hub has an upgrade for it (`shoal agent
    /// upgrade`). Added in wire version 3; version 2 has no field for it, so an agent that
    /// reads only version 2 never gets one (it cannot update itself anyway).
    pub agent: Option<AgentTarget>,
}

/// The most hub keys a desired state may announce.
pub const MAX_SIGNING_KEYS: usize = 4;

/// One workload as the hub wants it on the node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DesiredWorkload {
    pub workload: Workload,
    /// The hub's revision of this workload; agents report it back so rollouts can tell which
    /// revision a node runs.
    pub revision: u64,
}

impl Sealed for DesiredState {
    type V2 = v2::DesiredState;
    /// Version 3's workloads carry two more rollout settings.
    type V3 = v3::DesiredState;

    fn to_v3(&self) -> v3::DesiredState {
        self.into()
    }

    fn from_v3(frozen: v3::DesiredState) -> Result<Self, v2::Invalid> {
        frozen.try_into()
    }

    fn to_v2(&self) -> v2::DesiredState {
        self.into()
    }

    fn from_v2(frozen: v2::DesiredState) -> Result<Self, v2::Invalid> {
        frozen.try_into()
    }
}

impl Message for DesiredState {
    const KIND: MessageKind = MessageKind::Desired;

    fn node_id(&self) -> Option<&str> {
        Some(&self.node_id)
    }

    fn generation(&self) -> u64 {
        self.generation
    }

    /// Workload, container and volume names become directories, cgroups and container ids on
    /// the agent: they must be DNS labels and unique where they share a namespace. The rest of
    /// a workload was validated when it was applied.
    fn check(&self) -> Result<(), WireError> {
        const KIND: MessageKind = MessageKind::Desired;
        check_name(KIND, "node id", &self.node_id)?;
        if self.signing_keys.len() > MAX_SIGNING_KEYS {
            return Err(duplicate(format!(
                "it announces {} signing keys, more than the {MAX_SIGNING_KEYS} allowed",
                self.signing_keys.len()
            )));
        }
        let keys: BTreeSet<&PublicKey> = self.signing_keys.iter().collect();
        if keys.len() != self.signing_keys.len() {
            return Err(duplicate("a signing key is announced twice".to_string()));
        }
        if let Some(agent) = &self.agent {
            let keys = &agent.release_keys;
            let distinct: BTreeSet<&PublicKey> = keys.iter().collect();
            if keys.is_empty() || keys.len() > MAX_RELEASE_KEYS || distinct.len() != keys.len() {
                return Err(duplicate(format!(
                    "its agent target announces {} release keys (or one twice); 1 to \
                     {MAX_RELEASE_KEYS} distinct keys are allowed",
                    keys.len()
                )));
            }
            if agent.endorsements.len() > MAX_RELEASE_KEYS {
                return Err(duplicate(format!(
                    "its agent target carries {} endorsements, more than the \
                     {MAX_RELEASE_KEYS} allowed",
                    agent.endorsements.len()
                )));
            }
        }
        let mut workloads = BTreeSet::new();
        for desired in &self.workloads {
            let workload = &desired.workload;
            check_name(KIND, "workload name", &workload.name)?;
            if !workloads.insert(workload.name.as_str()) {
                return Err(duplicate(format!(
                    "workload `{}` is listed twice",
                    workload.name
                )));
            }
            let mut containers = BTreeSet::new();
            for container in &workload.spec.containers {
                check_name(KIND, "container name", &container.name)?;
                if !containers.insert(container.name.as_str()) {
                    return Err(duplicate(format!(
                        "workload `{}` has two containers named `{}`",
                        workload.name, container.name
                    )));
                }
            }
            let mut volumes = BTreeSet::new();
            for volume in &workload.spec.volumes {
                check_name(KIND, "volume name", &volume.name)?;
                if !volumes.insert(volume.name.as_str()) {
                    return Err(duplicate(format!(
                        "workload `{}` has two volumes named `{}`",
                        workload.name, volume.name
                    )));
                }
            }
        }
        Ok(())
    }
}

fn duplicate(reason: String) -> WireError {
    WireError::Invalid {
        kind: MessageKind::Desired,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use super::*;
    use crate::manifest::image::ImageRef;
    use crate::manifest::{
        Capabilities, Container, NetworkMode, Placement, PlacementMode, RescheduleAfter, Resources,
        RestartPolicy, Rollout, Volume, VolumeSource, WorkloadSpec,
    };

    fn container(name: &str) -> Container {
        Container {
            name: name.into(),
            image: ImageRef {
                registry: None,
                repository: "library/busybox".into(),
                tag: Some("1.36".into()),
                digest: None,
            },
            command: vec!["/bin/sh".into()],
            args: Vec::new(),
            env: BTreeMap::new(),
            working_dir: None,
            user: None,
            resources: Resources::default(),
            devices: Vec::new(),
            mounts: Vec::new(),
            health: None,
            read_only_rootfs: false,
            capabilities: Capabilities::default(),
            privileged: false,
        }
    }

    fn workload(name: &str, containers: &[&str], volumes: &[&str]) -> Workload {
        Workload {
            name: name.into(),
            labels: BTreeMap::new(),
            spec: WorkloadSpec {
                placement: Placement {
                    mode: PlacementMode::Every,
                    node_selector: BTreeMap::new(),
                    constraints: Vec::new(),
                    spread: None,
                    with: Vec::new(),
                    not_with: Vec::new(),
                    reschedule_after: RescheduleAfter::Never,
                },
                rollout: Rollout::default(),
                restart_policy: RestartPolicy::Always,
                network: NetworkMode::Host,
                stop_grace_period: Duration::from_secs(10),
                volumes: volumes
                    .iter()
                    .map(|v| Volume {
                        name: (*v).into(),
                        source: VolumeSource::Named,
                    })
                    .collect(),
                containers: containers.iter().map(|c| container(c)).collect(),
            },
        }
    }

    fn state(workloads: Vec<Workload>) -> DesiredState {
        DesiredState {
            node_id: "node-1".into(),
            generation: 1,
            workloads: workloads
                .into_iter()
                .map(|workload| DesiredWorkload {
                    workload,
                    revision: 1,
                })
                .collect(),
            signing_keys: Vec::new(),
            agent: None,
        }
    }

    fn check(workloads: Vec<Workload>) -> Result<(), String> {
        state(workloads).check().map_err(|e| e.to_string())
    }

    #[test]
    fn a_desired_state_with_distinct_valid_names_passes() {
        let result = check(vec![
            workload("sensor-reader", &["reader", "shipper"], &["data"]),
            workload("db", &["db"], &["data"]),
        ]);
        assert_eq!(result, Ok(()));
    }

    #[test]
    fn an_empty_desired_state_passes() {
        assert_eq!(check(Vec::new()), Ok(()));
    }

    #[test]
    fn desired_state_checks_reject_unsafe_or_duplicate_names() {
        let cases = [
            (
                vec![workload("../etc", &["a"], &[])],
                "workload name `../etc`",
            ),
            (vec![workload("ok", &["A"], &[])], "container name `A`"),
            (vec![workload("ok", &["a"], &["x/y"])], "volume name `x/y`"),
            (
                vec![workload("w", &["a"], &[]), workload("w", &["b"], &[])],
                "workload `w` is listed twice",
            ),
            (
                vec![workload("w", &["a", "a"], &[])],
                "two containers named `a`",
            ),
            (
                vec![workload("w", &["a"], &["d", "d"])],
                "two volumes named `d`",
            ),
        ];
        for (workloads, expected) in cases {
            let error = check(workloads).expect_err(expected);
            assert!(error.starts_with("invalid desired state: "), "{error}");
            assert!(
                error.contains(expected),
                "{error} should mention {expected}"
            );
        }
    }

    #[test]
    fn desired_state_checks_reject_an_invalid_node_id() {
        let mut state = state(Vec::new());
        state.node_id = "node+1".into();
        let error = state
            .check()
            .expect_err("`node+1` is not a DNS label")
            .to_string();
        assert!(error.contains("node id `node+1`"), "{error}");
    }

    #[test]
    fn an_agent_target_with_too_many_or_repeated_release_keys_is_refused() {
        use crate::release::{AgentRelease, AgentTarget};
        let target = |keys: Vec<PublicKey>, endorsements: usize| AgentTarget {
            release: AgentRelease {
                version: crate::release::Version::new(0, 2, 0),
                arch: crate::elf::Arch::X86_64,
                sha256: [0; 32],
                size: 1,
                minimum: None,
            },
            signature: vec![0; 72],
            source: "https://hub.example:7440".parse().expect("url"),
            release_keys: keys,
            endorsements: vec![vec![0; 72]; endorsements],
        };
        let key = |b: u8| PublicKey([b; 32]);
        let mut ok = state(Vec::new());
        ok.agent = Some(target(vec![key(1), key(2)], 2));
        assert_eq!(ok.check().map_err(|e| e.to_string()), Ok(()));
        for (keys, endorsements, expected) in [
            (vec![], 0, "0 release keys"),
            ((1..=5).map(key).collect(), 1, "5 release keys"),
            (vec![key(1), key(1)], 1, "(or one twice)"),
            (vec![key(1)], 5, "5 endorsements"),
        ] {
            let mut bad = state(Vec::new());
            bad.agent = Some(target(keys, endorsements));
            let error = bad.check().expect_err(expected).to_string();
            assert!(error.contains(expected), "{error}");
        }
    }
}
