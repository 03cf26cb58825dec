//! Canonical identity bytes: what the agent hashes into a container's `spec_hash` and a pod's
//! tag, and the hub into a node's desired-state digest. The hashes themselves stay beside
//! their users (`reconcile::spec_hash`, `reconcile::pod_hash`, `desired::digest`); this module
//! says which bytes they hash, so that the bytes are canonical and versioned.
//!
//! # Identity v1
//!
//! Exactly the bytes release 0.1.0 hashed, frozen: the postcard encoding of wire version 2's
//! frozen shapes of
//!
//! - a container: `(Container, NetworkMode, [Volume], RestartPolicy)` — the container and the
//!   workload fields it depends on;
//! - a pod: `(NetworkMode, [Volume])`;
//! - a node's desired state: `([DesiredWorkload], [PublicKey])` — its workloads (with their
//!   revisions) and the signing keys it announces.
//!
//! Every container 0.1.0 started keeps its `spec_hash` (so an upgraded agent restarts
//! nothing) and every node its digest (so an upgraded hub republishes nothing). These bytes
//! are v1 forever, whatever later wire versions look like: they are built from the v2 shapes.
//!
//! # Fields added later
//!
//! A field added to the domain after v1 (in a later wire version) takes part in an identity
//! **only when it does not hold its default**: after the v1 bytes come, in ascending
//! [`FieldId`] order, one entry per such field, `id` (u16 big-endian), `length` (u32
//! big-endian) and the field's bytes in the newest wire version's encoding. A field at its
//! default adds nothing, so adding an optional field changes no hash and restarts nothing;
//! setting it changes the hash of exactly what uses it. Each field gets its id once, in the
//! list below [`FieldId`], and an id is never reused. v1 bytes are a complete postcard value,
//! so no entry can be confused with them.
//!
//! A change that cannot follow this rule (a v1 field whose meaning changes) restarts every
//! container it touches: it needs an `identity v2`, with hashes that say so, and a very good
//! reason.

use std::collections::BTreeMap;

use super::signing::PublicKey;
use super::v2;
use super::{v3, DesiredWorkload};
use crate::manifest::{Container, Workload};
use crate::release::AgentTarget;

/// Names a field added after identity v1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldId(pub u16);

// The ids of fields added after identity v1, each assigned once here and never reused, as
// `pub const NAME: FieldId = FieldId(n);` with the type and field it names.

/// In a desired state: `spec.rollout.progressDeadline` of each workload that does not hold
/// the default, as `[(index in the list, v2 Duration)]` (wire version 3).
pub const PROGRESS_DEADLINE: FieldId = FieldId(1);
/// In a desired state: `spec.rollout.failureThreshold` of each workload that does not hold
/// the default, as `[(index in the list, v2 Amount)]` (wire version 3).
pub const FAILURE_THRESHOLD: FieldId = FieldId(2);
/// In a desired state: `spec.rollout.canary` of each workload where it is a percentage (its
/// v1 bytes hold a canary of 0 then), as `[(index in the list, percent)]` (wire version 3).
pub const CANARY_PERCENT: FieldId = FieldId(3);
/// In a desired state: the agent target, when there is one, as wire version 3's
/// `AgentTarget` (wire version 3).
pub const AGENT_TARGET: FieldId = FieldId(4);

/// The identity bytes of one thing: its v1 bytes, then the later fields that are not at
/// their default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    v1: Vec<u8>,
    later: BTreeMap<FieldId, Vec<u8>>,
}

impl Identity {
    fn v1<T: serde::Serialize>(frozen: &T) -> Identity {
        Identity {
            // postcard into memory fails only for sequences of unknown length, which these
            // shapes do not have; release 0.1.0 hashed the empty string in that case too.
            v1: v2::to_bytes(frozen).unwrap_or_default(),
            later: BTreeMap::new(),
        }
    }

    /// Adds a field that came after v1: it takes part only when `value` is not its default,
    /// as `encode(value)`.
    pub fn field<T: PartialEq + Default>(
        mut self,
        id: FieldId,
        value: &T,
        encode: impl FnOnce(&T) -> Vec<u8>,
    ) -> Identity {
        if *value != T::default() {
            self.later.insert(id, encode(value));
        }
        self
    }

    /// The bytes to hash.
    pub fn into_bytes(self) -> Vec<u8> {
        let mut out = self.v1;
        for (FieldId(id), bytes) in self.later {
            out.extend_from_slice(&id.to_be_bytes());
            // A field's bytes are far below 4 GiB (messages are at most a few MiB).
            let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&bytes);
        }
        out
    }
}

/// The identity of container `c` of workload `w`: when it changes, the container is
/// replaced.
pub fn container(w: &Workload, c: &Container) -> Vec<u8> {
    let volumes: Vec<v2::Volume> = w.spec.volumes.iter().map(Into::into).collect();
    let v1 = (
        v2::Container::from(c),
        v2::NetworkMode::from(&w.spec.network),
        volumes,
        v2::RestartPolicy::from(&w.spec.restart_policy),
    );
    Identity::v1(&v1).into_bytes()
}

/// The identity of workload `w`'s pod (its shared namespaces and volumes): when it changes,
/// the pod is rebuilt.
pub fn pod(w: &Workload) -> Vec<u8> {
    let volumes: Vec<v2::Volume> = w.spec.volumes.iter().map(Into::into).collect();
    Identity::v1(&(v2::NetworkMode::from(&w.spec.network), volumes)).into_bytes()
}

/// The identity of a node's desired state: its workloads in order and the keys it
/// announces. When it changes, the node gets a new generation.
pub fn desired(
    workloads: &[DesiredWorkload],
    signing_keys: &[PublicKey],
    agent: Option<&AgentTarget>,
) -> Vec<u8> {
    let defaults = crate::manifest::Rollout::default();
    let mut deadlines: Vec<(u32, v2::Duration)> = Vec::new();
    let mut thresholds: Vec<(u32, v2::Amount)> = Vec::new();
    let mut canaries: Vec<(u32, u8)> = Vec::new();
    for (i, d) in (0u32..).zip(workloads) {
        let rollout = &d.workload.spec.rollout;
        if rollout.progress_deadline != defaults.progress_deadline {
            deadlines.push((i, (&rollout.progress_deadline).into()));
        }
        if rollout.failure_threshold != defaults.failure_threshold {
            thresholds.push((i, rollout.failure_threshold.into()));
        }
        // `0%` is a canary of none, as `0` is: the same digest.
        if let crate::quantity::Amount::Percent(p @ 1..) = rollout.canary {
            canaries.push((i, p));
        }
    }
    let frozen: Vec<v2::DesiredWorkload> = workloads.iter().map(Into::into).collect();
    let keys: Vec<v2::PublicKey> = signing_keys.iter().map(Into::into).collect();
    Identity::v1(&(frozen, keys))
        .field(PROGRESS_DEADLINE, &deadlines, |d| {
            v2::to_bytes(d).unwrap_or_default()
        })
        .field(FAILURE_THRESHOLD, &thresholds, |t| {
            v2::to_bytes(t).unwrap_or_default()
        })
        .field(CANARY_PERCENT, &canaries, |c| {
            v2::to_bytes(c).unwrap_or_default()
        })
        .field(AGENT_TARGET, &agent.map(v3::AgentTarget::from), |t| {
            v2::to_bytes(t).unwrap_or_default()
        })
        .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Identity {
        Identity::v1(&(7u8, "x"))
    }

    #[test]
    fn a_later_field_at_its_default_changes_no_identity() {
        let plain = base().into_bytes();
        let with_default = base()
            .field(FieldId(1), &Option::<u32>::None, |_| vec![9])
            .field(FieldId(2), &Vec::<String>::new(), |_| vec![9])
            .into_bytes();
        assert_eq!(plain, with_default);
    }

    #[test]
    fn a_later_field_set_is_appended_after_the_v1_bytes_with_its_id_and_length() {
        let plain = base().into_bytes();
        let set = base()
            .field(FieldId(0x0102), &Some(5u32), |_| vec![0xaa, 0xbb])
            .into_bytes();
        let mut expected = plain.clone();
        expected.extend_from_slice(&[0x01, 0x02, 0, 0, 0, 2, 0xaa, 0xbb]);
        assert_eq!(set, expected);
    }

    #[test]
    fn later_fields_take_part_in_id_order_whatever_order_they_are_added_in() {
        let one = base()
            .field(FieldId(2), &true, |_| vec![2])
            .field(FieldId(1), &true, |_| vec![1])
            .into_bytes();
        let other = base()
            .field(FieldId(1), &true, |_| vec![1])
            .field(FieldId(2), &true, |_| vec![2])
            .into_bytes();
        assert_eq!(one, other);
        let swapped = base()
            .field(FieldId(1), &true, |_| vec![2])
            .field(FieldId(2), &true, |_| vec![1])
            .into_bytes();
        assert_ne!(one, swapped, "a value belongs to its id");
    }
}
