//! The broker's topic ACL, `shoal_hub::broker::acl::allowed`, on arbitrary topics and filters.
//!
//! Input, one field per line: the MQTT username (`_shoal-hub` is the hub, a DNS label a node,
//! anything else nobody), the action (`pub…` publishes, anything else subscribes), the topic
//! prefix (empty for `shoal/v1`), then the topic or filter (the rest, newlines included).
//!
//! Never panics, and:
//! - a node is allowed nothing but its own five topics, each in its own direction only
//!   (subscribe `desired`, `rpc/req`; publish `status`, `presence`, `rpc/resp`), and is
//!   allowed each of those;
//! - the hub is allowed nothing outside `{prefix}/`, no wildcard in a topic name, and no NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shoal_hub::broker::{allowed, Action, Identity};
use shoal_model::topic::{Channel, Topics};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut fields = text.splitn(4, '\n');
    let (Some(username), Some(action), Some(prefix), Some(topic)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return;
    };
    let Some(who) = Identity::from_username(username) else {
        return;
    };
    let action = if action.starts_with("pub") {
        Action::Publish
    } else {
        Action::Subscribe
    };
    let topics = if prefix.is_empty() {
        Topics::default()
    } else {
        match Topics::new(prefix) {
            Ok(topics) => topics,
            Err(_) => return,
        }
    };

    let verdict = allowed(&topics, &who, action, topic);
    match &who {
        Identity::Node(own) => {
            let channels: &[Channel] = match action {
                Action::Subscribe => &[Channel::Desired, Channel::RpcRequest],
                Action::Publish => &[Channel::Status, Channel::Presence, Channel::RpcResponse],
            };
            let own_topics: Vec<String> = channels.iter().map(|&c| topics.topic(own, c)).collect();
            assert_eq!(
                verdict,
                own_topics.iter().any(|t| t == topic),
                "node {own} {action:?} {topic:?} under {:?}",
                topics.prefix()
            );
            for own_topic in &own_topics {
                assert!(allowed(&topics, &who, action, own_topic), "{own_topic}");
            }
        }
        Identity::Hub => {
            if verdict {
                let filter = match topic.strip_prefix("$share/") {
                    Some(shared) if action == Action::Subscribe => {
                        let (group, filter) = shared
                            .split_once('/')
                            .expect("an allowed shared subscription has a group");
                        assert!(
                            !group.is_empty() && !group.contains(['+', '#']),
                            "{topic:?}"
                        );
                        filter
                    }
                    _ => topic,
                };
                let under = filter
                    .strip_prefix(topics.prefix())
                    .and_then(|rest| rest.strip_prefix('/'));
                assert!(
                    under.is_some_and(|rest| !rest.is_empty()),
                    "the hub may {action:?} {topic:?} outside {:?}",
                    topics.prefix()
                );
                assert!(!topic.contains('\0'), "{topic:?}");
                if action == Action::Publish {
                    assert!(
                        !topic.contains(['+', '#']),
                        "a wildcard topic name {topic:?}"
                    );
                }
            }
        }
    }
});
