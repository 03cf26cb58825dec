//! Whether a node takes a desired state from the hub: the one rule the agent and the fleet
//! simulator (`shoal-sim`) apply. Pure: no clock is involved; signatures and generations
//! decide.

use super::signing::{self, PublicKey};
use super::{DesiredState, Envelope};

/// What to do with a desired state from the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Accept,
    /// The generation this node already runs: the broker's redelivery of its retained state
    /// at every reconnect. Logged at debug only.
    Ignore(String),
    /// Unsigned, forged, for another node, or older than what the node runs (a replay):
    /// recorded as a warning event.
    Reject(String),
}

/// Judges `state`, which came in `envelope`, against the hub keys this node trusts, its name
/// and the generation it accepted last. Pure.
pub fn judge(
    node: &str,
    accepted: u64,
    trusted: &[PublicKey],
    envelope: &Envelope,
    state: &DesiredState,
) -> Verdict {
    if let Err(e) = signing::verify(envelope, trusted) {
        return Verdict::Reject(format!(
            "refused desired generation {} for node `{}`: {e}",
            state.generation, state.node_id
        ));
    }
    if state.node_id != node {
        return Verdict::Reject(format!(
            "refused a desired state for node `{}` (this is `{node}`): the hub published it on the wrong topic",
            state.node_id
        ));
    }
    if state.generation < accepted {
        return Verdict::Reject(format!(
            "refused desired generation {}: generation {accepted} is already accepted, so this is an old state replayed",
            state.generation
        ));
    }
    if state.generation == accepted {
        return Verdict::Ignore(format!(
            "ignored desired generation {}: it is the one already accepted",
            state.generation
        ));
    }
    Verdict::Accept
}
