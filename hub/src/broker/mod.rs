//! The hub's MQTT broker layer: who may connect, what each client may touch, and the broker
//! itself.
//!
//! - [`password`]: per-client credentials, stored in Mosquitto 2.0's password-file format so the
//!   same hashes work for the embedded broker and for an external Mosquitto.
//! - [`acl`]: the topic ACL as one pure function: a node sees only its own topics, the hub only
//!   the fleet's prefix.
//! - [`embedded`]: the default broker, rmqtt running on the hub's tokio runtime, with the hub's
//!   authentication and ACL hooked in.
//! - [`mosquitto`]: the configuration that makes an external Mosquitto enforce the same rules.
//!
//! A broker's address is a [`shoal_model::endpoint::BrokerUrl`], parsed as the agent parses it.
//!
//! Invariant: every broker Shoal runs or configures enforces [`acl::allowed`]; the tests in
//! `hub/tests/broker.rs` check it against the real brokers.

pub mod acl;
pub mod embedded;
pub mod mosquitto;
pub mod password;

use std::fmt;

use shoal_model::topic::{NodeId, TopicError};

pub use acl::{allowed, Action};
pub use embedded::{
    install_default_crypto_provider, Authenticator, EffectiveSettings, EmbeddedBroker,
    EmbeddedConfig, TlsFiles,
};
pub use mosquitto::{mosquitto_files, MosquittoFiles};

/// The MQTT username (and client id) of the hub's own client.
///
/// The leading underscore keeps it out of the node-id space: node ids are DNS labels, which
/// cannot contain `_`, so no node can ever be enrolled under this name.
pub const HUB_USERNAME: &str = "_shoal-hub";

/// Who an authenticated MQTT client is; decides what [`acl::allowed`] lets it do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The hub: anything under the fleet's topic prefix.
    Hub,
    /// An enrolled node: its own topics only.
    Node(NodeId),
}

impl Identity {
    /// The username (and client id) this identity connects with.
    pub fn username(&self) -> &str {
        match self {
            Identity::Hub => HUB_USERNAME,
            Identity::Node(node) => node.as_str(),
        }
    }

    /// The identity a username stands for: [`HUB_USERNAME`] is the hub, a DNS label is a node,
    /// anything else is nobody.
    pub fn from_username(username: &str) -> Option<Identity> {
        if username == HUB_USERNAME {
            Some(Identity::Hub)
        } else {
            NodeId::new(username).ok().map(Identity::Node)
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Hub => f.write_str("the hub"),
            Identity::Node(node) => write!(f, "node {node}"),
        }
    }
}

/// Why the broker layer could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid topic prefix for the broker: {0}")]
    Prefix(#[from] TopicError),
    #[error("max packet size {bytes} bytes is out of range: use 1 KiB to 256 MiB")]
    MaxPacketSize { bytes: usize },
    #[error(
        "cannot listen for MQTT on {addr}: {source}; is another broker or hub using that port?"
    )]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot start the broker's {plugin} plugin: {source}")]
    Plugin {
        plugin: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot read the broker's {what} setting back: {reason}")]
    Settings { what: &'static str, reason: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_map_to_usernames_and_back() {
        let node = Identity::Node(NodeId::new("gw-7").expect("valid node id"));
        assert_eq!(node.username(), "gw-7");
        assert_eq!(Identity::from_username("gw-7"), Some(node));
        assert_eq!(Identity::Hub.username(), HUB_USERNAME);
        assert_eq!(Identity::from_username(HUB_USERNAME), Some(Identity::Hub));
        for nobody in ["", "_shoal", "Gw-7", "a/b", "+", "#", "$SYS"] {
            assert_eq!(Identity::from_username(nobody), None, "{nobody:?}");
        }
    }
}
