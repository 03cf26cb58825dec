//! MQTT topic names: `{prefix}/node/{id}/{channel}`, with `shoal/v1` as the default prefix so
//! several fleets can share one broker under different prefixes.
//!
//! | channel | topic | direction |
//! |---|---|---|
//! | [`Channel::Desired`] | `{prefix}/node/{id}/desired` | hub → node, retained |
//! | [`Channel::Status`] | `{prefix}/node/{id}/status` | node → hub |
//! | [`Channel::Presence`] | `{prefix}/node/{id}/presence` | node → hub, retained, last will |
//! | [`Channel::RpcRequest`] | `{prefix}/node/{id}/rpc/req` | hub → node |
//! | [`Channel::RpcResponse`] | `{prefix}/node/{id}/rpc/resp` | node → hub |

use std::fmt;

use crate::manifest::names::check_dns_label;
use crate::wire::MessageKind;

/// Why a prefix or node id cannot be used in a topic.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("`{prefix}` is not a topic prefix: {reason}")]
    InvalidPrefix {
        prefix: String,
        reason: &'static str,
    },
    #[error("invalid node id: {reason}")]
    InvalidNodeId { reason: String },
}

/// A node's id: a DNS label, so it is one topic level and never a wildcard.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(id: impl Into<String>) -> Result<NodeId, TopicError> {
        let id = id.into();
        check_dns_label(&id).map_err(|reason| TopicError::InvalidNodeId { reason })?;
        Ok(NodeId(id))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NodeId {
    type Error = TopicError;

    fn try_from(id: String) -> Result<NodeId, TopicError> {
        NodeId::new(id)
    }
}

impl TryFrom<&str> for NodeId {
    type Error = TopicError;

    fn try_from(id: &str) -> Result<NodeId, TopicError> {
        NodeId::new(id)
    }
}

/// The per-node topics; each carries exactly one [`MessageKind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Channel {
    Desired,
    Status,
    Presence,
    RpcRequest,
    RpcResponse,
}

impl Channel {
    pub const ALL: [Channel; 5] = [
        Channel::Desired,
        Channel::Status,
        Channel::Presence,
        Channel::RpcRequest,
        Channel::RpcResponse,
    ];

    /// The topic levels after `{prefix}/node/{id}/`.
    pub fn suffix(self) -> &'static str {
        match self {
            Channel::Desired => "desired",
            Channel::Status => "status",
            Channel::Presence => "presence",
            Channel::RpcRequest => "rpc/req",
            Channel::RpcResponse => "rpc/resp",
        }
    }

    /// The kind of message this channel carries.
    pub fn kind(self) -> MessageKind {
        match self {
            Channel::Desired => MessageKind::Desired,
            Channel::Status => MessageKind::Status,
            Channel::Presence => MessageKind::Presence,
            Channel::RpcRequest => MessageKind::RpcRequest,
            Channel::RpcResponse => MessageKind::RpcResponse,
        }
    }

    fn from_suffix(suffix: &str) -> Option<Channel> {
        Channel::ALL.into_iter().find(|c| c.suffix() == suffix)
    }
}

impl From<MessageKind> for Channel {
    fn from(kind: MessageKind) -> Channel {
        match kind {
            MessageKind::Desired => Channel::Desired,
            MessageKind::Status => Channel::Status,
            MessageKind::Presence => Channel::Presence,
            MessageKind::RpcRequest => Channel::RpcRequest,
            MessageKind::RpcResponse => Channel::RpcResponse,
        }
    }
}

/// Topic names and filters under one prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    prefix: String,
}

impl Default for Topics {
    fn default() -> Self {
        Topics {
            prefix: Topics::DEFAULT_PREFIX.to_string(),
        }
    }
}

impl Topics {
    pub const DEFAULT_PREFIX: &'static str = "shoal/v1";

    /// Topics under `prefix`: one or more non-empty levels, without wildcards or NUL, not
    /// starting with `$`.
    pub fn new(prefix: &str) -> Result<Topics, TopicError> {
        let reason = if prefix.is_empty() {
            Some("it is empty")
        } else if prefix.contains(['+', '#']) {
            Some("it contains a wildcard (`+` or `#`)")
        } else if prefix.starts_with('$') {
            Some("topics starting with `$` are reserved for the broker")
        } else if prefix.contains('\0') {
            Some("it contains a NUL character")
        } else if prefix.starts_with('/') || prefix.ends_with('/') {
            Some("it starts or ends with `/`")
        } else if prefix.split('/').any(str::is_empty) {
            Some("it has an empty level (`//`)")
        } else {
            None
        };
        match reason {
            Some(reason) => Err(TopicError::InvalidPrefix {
                prefix: prefix.to_string(),
                reason,
            }),
            None => Ok(Topics {
                prefix: prefix.to_string(),
            }),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The topic of `channel` for `node`.
    pub fn topic(&self, node: &NodeId, channel: Channel) -> String {
        format!("{}/node/{}/{}", self.prefix, node, channel.suffix())
    }

    pub fn desired(&self, node: &NodeId) -> String {
        self.topic(node, Channel::Desired)
    }

    pub fn status(&self, node: &NodeId) -> String {
        self.topic(node, Channel::Status)
    }

    pub fn presence(&self, node: &NodeId) -> String {
        self.topic(node, Channel::Presence)
    }

    pub fn rpc_req(&self, node: &NodeId) -> String {
        self.topic(node, Channel::RpcRequest)
    }

    pub fn rpc_resp(&self, node: &NodeId) -> String {
        self.topic(node, Channel::RpcResponse)
    }

    /// The filter matching `channel` for every node: `{prefix}/node/+/{suffix}`.
    pub fn all_nodes(&self, channel: Channel) -> String {
        format!("{}/node/+/{}", self.prefix, channel.suffix())
    }

    /// What the hub subscribes to: status, presence and rpc responses of every node.
    pub fn hub_filters(&self) -> [String; 3] {
        [
            self.all_nodes(Channel::Status),
            self.all_nodes(Channel::Presence),
            self.all_nodes(Channel::RpcResponse),
        ]
    }

    /// What an agent subscribes to: its own desired state and rpc requests.
    pub fn agent_filters(&self, node: &NodeId) -> [String; 2] {
        [self.desired(node), self.rpc_req(node)]
    }

    /// Every topic of one node, `{prefix}/node/{id}/#`: the scope of that node's broker ACL.
    pub fn node_filter(&self, node: &NodeId) -> String {
        format!("{}/node/{}/#", self.prefix, node)
    }

    /// The node and channel of a topic under this prefix; `None` for any other topic,
    /// including filters with wildcards and node ids that are not DNS labels.
    pub fn parse(&self, topic: &str) -> Option<(NodeId, Channel)> {
        let rest = topic
            .strip_prefix(self.prefix.as_str())?
            .strip_prefix("/node/")?;
        let (node, suffix) = rest.split_once('/')?;
        let channel = Channel::from_suffix(suffix)?;
        let node = NodeId::new(node).ok()?;
        Some((node, channel))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str) -> NodeId {
        NodeId::new(id).expect("a valid node id")
    }

    #[test]
    fn default_topics_follow_the_design() {
        let topics = Topics::default();
        let n = node("gw-7");
        assert_eq!(topics.desired(&n), "shoal/v1/node/gw-7/desired");
        assert_eq!(topics.status(&n), "shoal/v1/node/gw-7/status");
        assert_eq!(topics.presence(&n), "shoal/v1/node/gw-7/presence");
        assert_eq!(topics.rpc_req(&n), "shoal/v1/node/gw-7/rpc/req");
        assert_eq!(topics.rpc_resp(&n), "shoal/v1/node/gw-7/rpc/resp");
        assert_eq!(topics.node_filter(&n), "shoal/v1/node/gw-7/#");
        assert_eq!(
            topics.hub_filters(),
            [
                "shoal/v1/node/+/status",
                "shoal/v1/node/+/presence",
                "shoal/v1/node/+/rpc/resp"
            ]
        );
        assert_eq!(
            topics.agent_filters(&n),
            ["shoal/v1/node/gw-7/desired", "shoal/v1/node/gw-7/rpc/req"]
        );
    }

    #[test]
    fn a_custom_prefix_keeps_fleets_apart() {
        let plant = Topics::new("acme/plant-1").expect("a valid prefix");
        let topic = plant.status(&node("n1"));
        assert_eq!(topic, "acme/plant-1/node/n1/status");
        assert_eq!(plant.parse(&topic), Some((node("n1"), Channel::Status)));
        assert_eq!(Topics::default().parse(&topic), None);
    }

    #[test]
    fn every_built_topic_parses_back_to_its_node_and_channel() {
        for prefix in ["shoal/v1", "x", "a/b/c"] {
            let topics = Topics::new(prefix).expect("a valid prefix");
            for channel in Channel::ALL {
                let topic = topics.topic(&node("n-1"), channel);
                assert_eq!(
                    topics.parse(&topic),
                    Some((node("n-1"), channel)),
                    "{topic}"
                );
                assert_eq!(Channel::from(channel.kind()), channel);
            }
        }
    }

    #[test]
    fn parsing_ignores_topics_that_are_not_ours() {
        let topics = Topics::default();
        for topic in [
            "",
            "shoal/v1",
            "shoal/v1/node",
            "shoal/v1/node/",
            "shoal/v1/node/n1",
            "shoal/v1/node/n1/",
            "shoal/v1/node//status",
            "shoal/v1/node/+/status",
            "shoal/v1/node/#",
            "shoal/v1/node/N1/status",
            "shoal/v1/node/n1/statuses",
            "shoal/v1/node/n1/status/x",
            "shoal/v1/node/n1/rpc",
            "shoal/v1/node/n1/rpc/request",
            "shoal/v10/node/n1/status",
            "shoal/v1/nodes/n1/status",
            "/shoal/v1/node/n1/status",
            "other/node/n1/status",
        ] {
            assert_eq!(topics.parse(topic), None, "{topic:?}");
        }
    }

    #[test]
    fn prefixes_with_wildcards_empty_levels_or_nul_are_refused() {
        for bad in [
            "",
            "/",
            "/shoal",
            "shoal/",
            "shoal//v1",
            "shoal/+",
            "shoal/#",
            "a\0b",
            "$SYS",
        ] {
            let error = Topics::new(bad).expect_err(bad).to_string();
            assert!(error.starts_with('`'), "{error}");
        }
        assert_eq!(Topics::new(Topics::DEFAULT_PREFIX), Ok(Topics::default()));
    }

    #[test]
    fn node_ids_are_dns_labels() {
        for good in ["a", "gw-7", "node-01"] {
            assert_eq!(node(good).as_str(), good);
        }
        for bad in ["", "+", "#", "a/b", "Node", "a.b", "-a", &"a".repeat(64)] {
            let error = NodeId::new(bad).expect_err(bad).to_string();
            assert!(error.starts_with("invalid node id: "), "{error}");
        }
    }
}
