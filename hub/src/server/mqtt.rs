//! The hub's own MQTT client: the only code of the hub that talks to the broker, embedded or
//! external alike. It subscribes to every node's presence, status, RPC responses and (to learn
//! what the broker still retains) desired topics, and records what arrives in the store.
//!
//! Every payload is hostile until decoded: a message that does not decode, or whose envelope
//! names another node than its topic, is logged and dropped; nothing stored changes.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, Transport};
use shoal_model::clock::wall_ms;
use shoal_model::endpoint::BrokerUrl;
use shoal_model::topic::{Channel, NodeId, Topics};
use shoal_model::wire::{self, NodeStatus, Presence, RpcResponse};

use super::controller::Publish;
use crate::admission::Admission;
use crate::broker::HUB_USERNAME;
use crate::context::Hub;

/// Room above the largest message for the MQTT header and topic.
const PACKET_HEADROOM: usize = 4096;

/// Connection settings of the hub's client.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    pub broker: BrokerUrl,
    pub password: String,
    /// PEM CA certificate for `mqtts://` brokers with a private CA.
    pub ca: Option<Vec<u8>>,
    pub keep_alive: Duration,
}

/// Builds the client and its event loop; nothing is sent until the loop is polled.
pub fn client(options: &ClientOptions, limits: &wire::Limits) -> (AsyncClient, EventLoop) {
    let mut mqtt = MqttOptions::new(
        HUB_USERNAME,
        options.broker.host().to_string(),
        options.broker.port(),
    );
    mqtt.set_credentials(HUB_USERNAME, options.password.clone());
    mqtt.set_keep_alive(options.keep_alive);
    // A persistent session: statuses queued while the hub was away are delivered on return.
    mqtt.set_clean_session(false);
    let largest = [
        limits.desired,
        limits.status,
        limits.presence,
        limits.rpc_request,
        limits.rpc_response,
    ]
    .into_iter()
    .max()
    .unwrap_or(0)
        + PACKET_HEADROOM;
    mqtt.set_max_packet_size(largest, largest);
    mqtt.set_inflight(100);
    if options.broker.is_tls() {
        let transport = match &options.ca {
            Some(ca) => Transport::tls_with_config(rumqttc::TlsConfiguration::Simple {
                ca: ca.clone(),
                alpn: None,
                client_auth: None,
            }),
            None => Transport::tls_with_default_config(),
        };
        mqtt.set_transport(transport);
    }
    AsyncClient::new(mqtt, 1024)
}

/// Publishes desired states, retained, through the hub's client.
#[derive(Clone, Debug)]
pub struct Publisher {
    client: AsyncClient,
    topics: Topics,
}

impl Publisher {
    pub fn new(client: AsyncClient, topics: Topics) -> Publisher {
        Publisher { client, topics }
    }
}

impl Publish for Publisher {
    fn desired(
        &self,
        node: &NodeId,
        payload: Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        let topic = self.topics.desired(node);
        async move {
            self.client
                .publish(topic, QoS::AtLeastOnce, true, payload)
                .await?;
            Ok(())
        }
    }
}

/// Polls the event loop forever: reconnects with a capped backoff (rumqttc retries at once
/// otherwise), subscribes after every connection, and hands incoming messages to the store.
pub async fn run(hub: Arc<Hub>, mut events: EventLoop) {
    let mut failures: u32 = 0;
    loop {
        match events.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                failures = 0;
                tracing::info!(broker = %hub.broker, session_present = ack.session_present, "hub connected to the broker");
                subscribe(&hub).await;
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                hub.subscribed.send_replace(true);
            }
            Ok(Event::Incoming(Packet::Publish(publish))) => {
                incoming(&hub, &publish.topic, &publish.payload);
            }
            Ok(_) => {}
            Err(error) => {
                hub.subscribed.send_replace(false);
                failures = failures.saturating_add(1);
                let wait = retry_delay(failures);
                if failures == 1 || failures.is_power_of_two() {
                    tracing::warn!(broker = %hub.broker, %error, attempt = failures, "hub lost the broker; retrying in {wait:?}");
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// 200 ms doubling to 5 s: the hub is one client (usually on loopback), so no jitter is needed
/// to spread a herd, only a cap on how fast it hammers a broker that is down.
pub fn retry_delay(failures: u32) -> Duration {
    let exponent = failures.saturating_sub(1).min(5);
    Duration::from_millis(200u64 << exponent).min(Duration::from_secs(5))
}

async fn subscribe(hub: &Hub) {
    for channel in [
        Channel::Presence,
        Channel::Status,
        Channel::RpcResponse,
        Channel::Desired,
    ] {
        let filter = hub.topics.all_nodes(channel);
        if let Err(error) = hub.client.subscribe(&filter, QoS::AtLeastOnce).await {
            tracing::warn!(%filter, %error, "cannot subscribe");
        }
    }
}

/// Decodes and records one incoming message.
fn incoming(hub: &Hub, topic: &str, payload: &[u8]) {
    let Some((node, channel)) = hub.topics.parse(topic) else {
        tracing::debug!(topic, "message on a topic the hub does not use");
        return;
    };
    let result = match channel {
        Channel::Presence => presence(hub, &node, payload),
        Channel::Status => status(hub, &node, payload),
        Channel::RpcResponse => rpc_response(hub, &node, payload),
        Channel::Desired => retained_desired(hub, &node, payload),
        Channel::RpcRequest => Ok(()),
    };
    hub.counters.message(channel, payload.len(), result.is_ok());
    if let Err(problem) = result {
        tracing::warn!(node = %node, topic, "dropped a message: {problem}");
    }
}

fn check_node(topic_node: &NodeId, claimed: &str) -> Result<(), String> {
    if topic_node.as_str() != claimed {
        return Err(format!(
            "it claims to be from node `{claimed}` but came on node `{topic_node}`'s topic"
        ));
    }
    Ok(())
}

fn presence(hub: &Hub, node: &NodeId, payload: &[u8]) -> Result<(), String> {
    if payload.is_empty() {
        // A cleared retained message.
        return Ok(());
    }
    let (envelope, presence) =
        wire::decode::<Presence>(payload, &hub.limits).map_err(|e| e.to_string())?;
    check_node(node, &envelope.node_id)?;
    check_node(node, &presence.node_id)?;
    let changed = hub
        .store
        .record_presence(node.as_str(), presence.online, &presence.facts, wall_ms())
        .map_err(|e| e.to_string())?;
    if changed {
        tracing::info!(node = %node, online = presence.online, "presence");
    }
    // Paced even when it changed: a fleet coming online at once is thousands of changes.
    hub.wake.reported();
    Ok(())
}

fn status(hub: &Hub, node: &NodeId, payload: &[u8]) -> Result<(), String> {
    let (envelope, status) =
        wire::decode::<NodeStatus>(payload, &hub.limits).map_err(|e| e.to_string())?;
    check_node(node, &envelope.node_id)?;
    check_node(node, &status.node_id)?;
    if hub.store.node(node.as_str()).is_err() {
        return Err("no such node is registered".into());
    }
    tracing::debug!(node = %node, sequence = status.sequence, events = status.events.len(), "status");
    let admission = hub
        .store
        .record_status(node.as_str(), &status, wall_ms())
        .map_err(|e| e.to_string())?;
    match admission {
        Admission::Refused(refusal) => tracing::warn!(node = %node, "{refusal}"),
        Admission::Restarted { previous } => tracing::info!(
            node = %node,
            sequence = status.sequence,
            previous,
            "the node's statuses are numbered afresh: taken as its newest"
        ),
        Admission::Newest | Admission::Older => {}
    }
    // A status kept as the node's newest may change a decision (key rotation, health).
    if matches!(admission, Admission::Newest | Admission::Restarted { .. }) {
        hub.wake.reported();
    }
    Ok(())
}

fn rpc_response(hub: &Hub, node: &NodeId, payload: &[u8]) -> Result<(), String> {
    let (envelope, response) =
        wire::decode::<RpcResponse>(payload, &hub.limits).map_err(|e| e.to_string())?;
    check_node(node, &envelope.node_id)?;
    hub.rpc.pending.deliver(node.as_str(), response);
    Ok(())
}

/// The desired states the broker retains: after a restart the hub republishes only what the
/// broker lost or holds an older generation of.
fn retained_desired(hub: &Hub, node: &NodeId, payload: &[u8]) -> Result<(), String> {
    let generation = if payload.is_empty() {
        0
    } else {
        let envelope = wire::Envelope::decode(payload, wire::MessageKind::Desired, &hub.limits)
            .map_err(|e| e.to_string())?;
        check_node(node, &envelope.node_id)?;
        envelope.generation
    };
    hub.retained
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(node.as_str().to_string(), generation);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_a_cap() {
        let delays: Vec<u64> = (1..=8).map(|n| retry_delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
    }
}
