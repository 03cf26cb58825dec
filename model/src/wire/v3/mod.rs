//! Wire version 3, frozen: what this release sends to peers that read it, and the format of
//! the hub's `nodes.facts` rows.
//!
//! **What changed from version 2, and only that:** node facts (in presence, and in the hub's
//! `nodes.facts`) carry the wire versions the agent reads as a field of their own,
//! [`NodeFacts::wire_versions`], after every version-2 field. Version 2 had no such field, so
//! there the versions travel as the label `shoal.dev/wire-versions` (see
//! `crate::wire::WIRE_VERSIONS_LABEL`): that is how an agent announces version 3 to a hub it
//! does not know yet, whose release may read version 2 only.
//!
//! Every other shape of version 3 *is* version 2's, re-exported from `v2`: version 2 is frozen,
//! so these are frozen too, and their version-3 bytes are their version-2 bytes. The envelope
//! is version 2's as well; only its version byte differs (3).
//!
//! Frozen like `v2`: nothing here may ever change (see the rule in `wire/mod.rs`);
//! `model/tests/golden.rs` holds its bytes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::node as dn;
use crate::wire as dw;

// The other shapes (`v2::Envelope`, `v2::DesiredState`, `v2::NodeStatus`, `v2::RpcRequest`,
// `v2::RpcResponse`, `v2::Workload`, `v2::Event`, ...) are used from `v2` directly, each
// `Sealed` impl and stored row saying so.
pub use super::v2::{from_bytes, to_bytes, Capacity, Invalid};

/// The first byte of every version-3 message; also the format number of version-3 rows.
pub const VERSION: u8 = 3;

/// Version 2's node facts, and the wire versions the agent reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeFacts {
    pub arch: String,
    pub os: String,
    pub kernel: String,
    pub cgroup_version: u8,
    pub capacity: Capacity,
    pub agent_version: String,
    pub labels: BTreeMap<String, String>,
    pub wire_versions: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Presence {
    pub node_id: String,
    pub online: bool,
    pub facts: NodeFacts,
}

impl From<&dn::NodeFacts> for NodeFacts {
    fn from(f: &dn::NodeFacts) -> Self {
        NodeFacts {
            arch: f.arch.clone(),
            os: f.os.clone(),
            kernel: f.kernel.clone(),
            cgroup_version: f.cgroup_version,
            capacity: Capacity {
                memory_bytes: f.capacity.memory_bytes,
                cpu_millis: f.capacity.cpu_millis,
                pids: f.capacity.pids,
            },
            agent_version: f.agent_version.clone(),
            labels: f.labels.clone(),
            wire_versions: f.wire_versions.clone(),
        }
    }
}

impl TryFrom<NodeFacts> for dn::NodeFacts {
    type Error = Invalid;

    fn try_from(f: NodeFacts) -> Result<Self, Invalid> {
        dw::check_wire_versions(&f.wire_versions).map_err(Invalid)?;
        if f.labels.contains_key(dw::WIRE_VERSIONS_LABEL) {
            return Err(Invalid(format!(
                "the label `{}` is reserved for version 2, which has no field for the wire \
                 versions",
                dw::WIRE_VERSIONS_LABEL
            )));
        }
        Ok(dn::NodeFacts {
            arch: f.arch,
            os: f.os,
            kernel: f.kernel,
            cgroup_version: f.cgroup_version,
            capacity: dn::Capacity {
                memory_bytes: f.capacity.memory_bytes,
                cpu_millis: f.capacity.cpu_millis,
                pids: f.capacity.pids,
            },
            agent_version: f.agent_version,
            labels: f.labels,
            wire_versions: f.wire_versions,
        })
    }
}

impl From<&dw::Presence> for Presence {
    fn from(p: &dw::Presence) -> Self {
        Presence {
            node_id: p.node_id.clone(),
            online: p.online,
            facts: (&p.facts).into(),
        }
    }
}

impl TryFrom<Presence> for dw::Presence {
    type Error = Invalid;

    fn try_from(p: Presence) -> Result<Self, Invalid> {
        Ok(dw::Presence {
            node_id: p.node_id,
            online: p.online,
            facts: p.facts.try_into()?,
        })
    }
}
