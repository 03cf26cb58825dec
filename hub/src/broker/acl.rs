//! The topic ACL, as one pure function every broker Shoal runs or configures must enforce.
//!
//! | who | subscribe | publish |
//! |---|---|---|
//! | node `n` | exactly `{prefix}/node/n/desired`, `{prefix}/node/n/rpc/req` | exactly `{prefix}/node/n/status`, `.../presence`, `.../rpc/resp` |
//! | hub | any filter under `{prefix}/` (wildcards allowed, also as `$share/{group}/...`) | any topic under `{prefix}/` |
//!
//! A node gets exact topics and nothing else: no wildcard, no shared subscription, no other
//! node, no other prefix, so a stolen node credential exposes that one node. The hub is confined
//! to its prefix, so several fleets can share a broker and `$SYS` stays out of reach (a prefix
//! never starts with `$`).

use shoal_model::topic::{Channel, Topics};

use super::Identity;

/// What a client wants to do with a topic.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    /// Publish to a topic name (also the will topic given at connect).
    Publish,
    /// Subscribe to a topic filter.
    Subscribe,
}

/// Whether `who` may `action` on `topic_or_filter` in the fleet under `topics`' prefix.
pub fn allowed(topics: &Topics, who: &Identity, action: Action, topic_or_filter: &str) -> bool {
    match who {
        Identity::Node(own) => {
            // `parse` only accepts exact topics built by `Topics` for a valid node id: no
            // wildcards, no `$share/`, no empty or extra levels.
            let Some((node, channel)) = topics.parse(topic_or_filter) else {
                return false;
            };
            node == *own
                && match action {
                    Action::Subscribe => {
                        matches!(channel, Channel::Desired | Channel::RpcRequest)
                    }
                    Action::Publish => matches!(
                        channel,
                        Channel::Status | Channel::Presence | Channel::RpcResponse
                    ),
                }
        }
        Identity::Hub => match action {
            Action::Publish => under_prefix(topics, topic_or_filter).is_some_and(is_topic_name),
            Action::Subscribe => {
                let filter = match topic_or_filter.strip_prefix("$share/") {
                    Some(shared) => match shared.split_once('/') {
                        Some((group, filter)) if is_share_group(group) => filter,
                        _ => return false,
                    },
                    None => topic_or_filter,
                };
                under_prefix(topics, filter).is_some_and(is_topic_filter)
            }
        },
    }
}

/// The levels after `{prefix}/`, if `topic` has the prefix's levels literally and more after.
fn under_prefix<'t>(topics: &Topics, topic: &'t str) -> Option<&'t str> {
    topic
        .strip_prefix(topics.prefix())?
        .strip_prefix('/')
        .filter(|rest| !rest.is_empty())
}

/// A topic name: no wildcards and no NUL.
fn is_topic_name(levels: &str) -> bool {
    !levels.contains(['+', '#', '\0'])
}

/// A topic filter: `+` only as a whole level, `#` only as the whole last level, no NUL.
fn is_topic_filter(levels: &str) -> bool {
    if levels.contains('\0') {
        return false;
    }
    let mut rest = levels.split('/').peekable();
    while let Some(level) = rest.next() {
        let last = rest.peek().is_none();
        let ok = match level {
            "+" => true,
            "#" => last,
            _ => !level.contains(['+', '#']),
        };
        if !ok {
            return false;
        }
    }
    true
}

/// A shared-subscription group name: one non-empty level without wildcards.
fn is_share_group(group: &str) -> bool {
    !group.is_empty() && !group.contains(['+', '#', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::topic::NodeId;
    use Action::{Publish, Subscribe};

    fn node(id: &str) -> Identity {
        Identity::Node(NodeId::new(id).expect("valid node id"))
    }

    /// One row: `who` doing `action` on `topic` under prefix `shoal/v1` is `expected`.
    fn check(who: &Identity, action: Action, topic: &str, expected: bool) {
        assert_eq!(
            allowed(&Topics::default(), who, action, topic),
            expected,
            "{who} {action:?} {topic:?}"
        );
    }

    #[test]
    fn a_node_subscribes_only_to_its_own_desired_state_and_rpc_requests() {
        let a = node("node-a");
        for (filter, expected) in [
            ("shoal/v1/node/node-a/desired", true),
            ("shoal/v1/node/node-a/rpc/req", true),
            // its own topics in the other direction
            ("shoal/v1/node/node-a/status", false),
            ("shoal/v1/node/node-a/presence", false),
            ("shoal/v1/node/node-a/rpc/resp", false),
            // another node
            ("shoal/v1/node/node-b/desired", false),
            ("shoal/v1/node/node-b/rpc/req", false),
            // wildcards, even ones that would only match its own topics
            ("shoal/v1/node/+/desired", false),
            ("shoal/v1/node/node-a/+", false),
            ("shoal/v1/node/node-a/#", false),
            ("shoal/v1/node/node-a/rpc/+", false),
            ("shoal/v1/#", false),
            ("#", false),
            ("+/v1/node/node-a/desired", false),
            // shared subscriptions
            ("$share/g/shoal/v1/node/node-a/desired", false),
            ("$share/g/shoal/v1/node/node-b/desired", false),
            ("$share/g/#", false),
            ("$SYS/#", false),
            // other prefixes and malformed variants
            ("other/v1/node/node-a/desired", false),
            ("shoal/v2/node/node-a/desired", false),
            ("shoal/v1/node/node-a/desired/", false),
            ("shoal/v1/node/node-a//desired", false),
            ("shoal/v1//node/node-a/desired", false),
            ("/shoal/v1/node/node-a/desired", false),
            ("shoal/v1/node/node-a/desired/x", false),
            ("shoal/v1/node/Node-A/desired", false),
            ("shoal/v1/node/node-a/desired\0", false),
            ("", false),
        ] {
            check(&a, Subscribe, filter, expected);
        }
    }

    #[test]
    fn a_node_publishes_only_its_own_status_presence_and_rpc_responses() {
        let a = node("node-a");
        for (topic, expected) in [
            ("shoal/v1/node/node-a/status", true),
            ("shoal/v1/node/node-a/presence", true),
            ("shoal/v1/node/node-a/rpc/resp", true),
            // the hub's direction
            ("shoal/v1/node/node-a/desired", false),
            ("shoal/v1/node/node-a/rpc/req", false),
            // another node
            ("shoal/v1/node/node-b/status", false),
            ("shoal/v1/node/node-b/presence", false),
            ("shoal/v1/node/node-b/desired", false),
            // wildcards are never topic names
            ("shoal/v1/node/+/status", false),
            ("shoal/v1/node/node-a/#", false),
            // other prefixes, other trees, malformed variants
            ("other/node/node-a/status", false),
            ("shoal/v1/node/node-a/status/", false),
            ("shoal/v1/node/node-a//status", false),
            ("shoal/v1/node/node-a/statusx", false),
            ("shoal/v1/hub/announce", false),
            ("$SYS/broker/uptime", false),
            ("$share/g/shoal/v1/node/node-a/status", false),
            ("", false),
        ] {
            check(&a, Publish, topic, expected);
        }
    }

    #[test]
    fn the_hub_may_do_anything_under_the_prefix_and_nothing_outside_it() {
        let hub = Identity::Hub;
        for (action, topic, expected) in [
            (Subscribe, "shoal/v1/node/+/status", true),
            (Subscribe, "shoal/v1/node/+/presence", true),
            (Subscribe, "shoal/v1/node/+/rpc/resp", true),
            (Subscribe, "shoal/v1/node/node-a/status", true),
            (Subscribe, "shoal/v1/#", true),
            (Subscribe, "$share/hubs/shoal/v1/node/+/status", true),
            (Publish, "shoal/v1/node/node-a/desired", true),
            (Publish, "shoal/v1/node/node-b/rpc/req", true),
            (Publish, "shoal/v1/anything/else", true),
            // outside the prefix
            (Subscribe, "#", false),
            (Subscribe, "+/v1/node/+/status", false),
            (Subscribe, "shoal/+/node/+/status", false),
            (Subscribe, "shoal/v10/#", false),
            (Subscribe, "shoal/v1", false),
            (Subscribe, "shoal/v1/", false),
            (Subscribe, "$SYS/#", false),
            (Subscribe, "$share/hubs/#", false),
            (Subscribe, "$share//shoal/v1/#", false),
            (Subscribe, "$share/+/shoal/v1/#", false),
            (Subscribe, "$share/hubs", false),
            (Publish, "other/node/node-a/desired", false),
            (Publish, "shoal/v1", false),
            (Publish, "$SYS/broker", false),
            // malformed filters and topic names
            (Subscribe, "shoal/v1/#/status", false),
            (Subscribe, "shoal/v1/node/a+/status", false),
            (Subscribe, "shoal/v1/node/#x", false),
            (Subscribe, "shoal/v1/node\0/#", false),
            (Publish, "shoal/v1/node/+/desired", false),
            (Publish, "shoal/v1/#", false),
        ] {
            check(&hub, action, topic, expected);
        }
    }

    #[test]
    fn a_custom_prefix_moves_every_rule_with_it() {
        let topics = Topics::new("acme/plant-1").expect("valid prefix");
        let a = node("node-a");
        assert!(allowed(
            &topics,
            &a,
            Subscribe,
            "acme/plant-1/node/node-a/desired"
        ));
        assert!(!allowed(
            &topics,
            &a,
            Subscribe,
            "shoal/v1/node/node-a/desired"
        ));
        assert!(allowed(
            &topics,
            &a,
            Publish,
            "acme/plant-1/node/node-a/status"
        ));
        assert!(allowed(
            &topics,
            &Identity::Hub,
            Subscribe,
            "acme/plant-1/#"
        ));
        assert!(!allowed(&topics, &Identity::Hub, Subscribe, "acme/#"));
        assert!(!allowed(
            &topics,
            &Identity::Hub,
            Publish,
            "shoal/v1/node/node-a/desired"
        ));
    }
}
