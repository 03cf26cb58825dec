//! The link to the hub over MQTT (`[hub]` in agent.toml): the only code that talks to the
//! hub's broker.
//!
//! Two tasks on the agent's single-threaded runtime:
//! - the connection task ([`drive`]) polls rumqttc's `EventLoop`, the only network IO, and
//!   forwards every event. rumqttc reconnects at once after an error; this task waits a capped,
//!   jittered backoff ([`backoff`]) between attempts, reset by a successful CONNACK. A dead link
//!   is noticed when a PINGREQ goes unanswered: after about twice the keep-alive.
//! - the session task ([`session`]) decides: after every CONNACK it publishes the node's
//!   presence (retained, `online: true`) and, when the broker kept no session, subscribes to the
//!   node's `desired` and `rpc/req` topics; desired states go to the supervisor as
//!   [`Event::Desired`]; RPC requests go through the same path as the local API
//!   ([`Event::Api`]) and their answers come back on `rpc/resp`; statuses leave the SQLite
//!   outbox oldest first at QoS 1, and a row is deleted only after its PUBACK.
//!
//! The session is persistent (`clean_session = false`, client id = user name = node name) and
//! the broker publishes the last will, a retained `Presence { online: false }`, when the link
//! dies.
//!
//! rumqttc's request channel has no capacity: it takes a request only while connected and
//! waiting for work, so nothing piles up inside rumqttc while the link is down, and after a
//! lost session nothing stale goes out ahead of the outbox's oldest rows (the hub drops a status
//! older than the newest it has seen, so order matters). Every payload is built with
//! `wire::encode` under [`Limits`], and the packet limits are set from them, so nothing is ever
//! handed to rumqttc that it would refuse to send (which would fail its event loop and, with a
//! persistent session, be resent forever).

pub(crate) mod backoff;
mod flight;
mod rpc;
mod session;
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttc::{
    AsyncClient, ConnectionError, Event as MqttEvent, EventLoop, LastWill, MqttOptions, Packet,
    QoS, TlsConfiguration, Transport,
};
use shoal_model::node::NodeFacts;
use shoal_model::topic::{NodeId, Topics};
use shoal_model::wire::{self, Limits, Presence, WireError};
use tokio::sync::{mpsc, Notify};

use crate::config::HubConfig;
use crate::state::Store;
use crate::supervisor::Event;
use session::{LinkEvent, Session};

pub use tls::TlsError;

/// More packet ids than the session ever has in flight ([`session::WINDOW`]).
const INFLIGHT: u16 = 100;
/// Room for an MQTT packet's own header and its topic around a payload at the wire limit.
const PACKET_OVERHEAD: usize = 16;
/// How often the retry warning repeats while the broker stays unreachable.
const WARN_EVERY: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("invalid hub settings: {0}")]
    Topic(#[from] shoal_model::topic::TopicError),
    #[error("cannot encode the node's presence: {0}")]
    Presence(#[source] WireError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Everything the hub link needs.
pub struct Link {
    pub node_name: String,
    pub hub: HubConfig,
    /// From `hub.password_file` or `hub.password`.
    pub password: Option<String>,
    /// Sent in the presence messages.
    pub facts: NodeFacts,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("node_name", &self.node_name)
            .field("hub", &self.hub)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// The topics under `hub.prefix`.
    pub fn topics(&self) -> Result<Topics, MqttError> {
        Ok(Topics::new(&self.hub.prefix)?)
    }
}

/// Starts the connection and session tasks on the current runtime. `outbox` is a connection
/// of its own to the agent's database; `outbox_ready` is notified by the supervisor when it
/// adds statuses; `supervisor` receives desired states and requests.
pub fn start(
    link: Link,
    outbox: Store,
    outbox_ready: Arc<Notify>,
    supervisor: mpsc::Sender<Event>,
    ready: Arc<crate::launch::Ready>,
) -> Result<(), MqttError> {
    let node = NodeId::new(link.node_name.clone())?;
    let topics = link.topics()?;
    let limits = Limits::default();
    let presence = |online| {
        let presence = Presence {
            node_id: node.to_string(),
            online,
            facts: link.facts.clone(),
        };
        // In the oldest version this build speaks: presence (and its last will, registered
        // before anything of the hub is known) must be read by whatever hub is there. Version
        // 2 carries the wire versions this agent reads in a label, which is how a newer hub
        // learns that it may write version 3 to this node.
        wire::encode_in(wire::OLDEST_WIRE_VERSION, node.as_str(), &presence, &limits)
            .map_err(MqttError::Presence)
    };
    let will = presence(false)?;
    let online = presence(true)?;
    let options = options(&link, &node, &topics, &limits, will)?;
    let (client, eventloop) = AsyncClient::new(options, 0);
    let (link_tx, link_rx) = mpsc::channel(64);
    let (replies_tx, replies_rx) = mpsc::channel(16);
    tokio::spawn(drive(
        eventloop,
        link_tx,
        link.hub.broker.to_string(),
        ready,
    ));
    let session = Session::new(
        client, node, topics, limits, online, outbox, supervisor, replies_tx,
    );
    tokio::spawn(session.run(link_rx, outbox_ready, replies_rx));
    Ok(())
}

/// The rumqttc options: persistent session, node name as client id and user, the last will,
/// and packet limits that match the wire limits.
fn options(
    link: &Link,
    node: &NodeId,
    topics: &Topics,
    limits: &Limits,
    will: Vec<u8>,
) -> Result<MqttOptions, MqttError> {
    let hub = &link.hub;
    let mut options = MqttOptions::new(
        node.as_str(),
        hub.broker.host().to_string(),
        hub.broker.port(),
    );
    // The node name is never empty, and config keeps the keep-alive in whole seconds from 1.
    options
        .set_clean_session(false)
        .set_keep_alive(hub.keep_alive)
        .set_inflight(INFLIGHT)
        .set_credentials(node.as_str(), link.password.clone().unwrap_or_default())
        .set_last_will(LastWill::new(
            topics.presence(node),
            will,
            QoS::AtLeastOnce,
            true,
        ));
    let topic_room = topics.rpc_resp(node).len() + PACKET_OVERHEAD;
    // Incoming: room for a message somewhat over the limit, so that one is read and refused
    // by the wire decoder (a warning event) rather than failing the connection, which would
    // then fail again on the retained message after every reconnect.
    let incoming = limits.desired.max(limits.rpc_request) * 2 + topic_room;
    let outgoing = limits.status.max(limits.rpc_response).max(limits.presence) + topic_room;
    options.set_max_packet_size(incoming, outgoing);
    if hub.broker.is_tls() {
        let config = tls::client_config(hub.ca_file.as_deref())?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    }
    Ok(options)
}

/// The connection task: polls the event loop forever, forwarding its events, and waits a
/// backoff after every error (rumqttc itself would reconnect at once).
async fn drive(
    mut eventloop: EventLoop,
    link: mpsc::Sender<LinkEvent>,
    broker: String,
    ready: Arc<crate::launch::Ready>,
) {
    let mut failures: u32 = 0;
    let mut connected = false;
    let mut warned: Option<Instant> = None;
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                if let MqttEvent::Incoming(Packet::ConnAck(ack)) = &event {
                    tracing::info!(
                        broker,
                        session_present = ack.session_present,
                        "connected to the hub's broker"
                    );
                    failures = 0;
                    connected = true;
                    warned = None;
                    ready.link_known();
                }
                tracing::debug!(event = %describe(&event), "mqtt");
                if link.send(LinkEvent::Mqtt(event)).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                // Offline, and knowing it, is ready enough: a device whose link is down
                // must not roll its agent back.
                ready.link_known();
                if link.send(LinkEvent::Lost).await.is_err() {
                    return;
                }
                let delay = backoff::delay(failures, backoff::random());
                failures = failures.saturating_add(1);
                let why = explain(&error);
                if connected {
                    connected = false;
                    tracing::info!(broker, error = %why, "lost the link to the hub's broker; reconnecting");
                } else if warned.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
                    tracing::warn!(
                        broker,
                        error = %why,
                        attempts = failures,
                        retry_in_ms = delay.as_millis() as u64,
                        "cannot reach the hub's broker; retrying with backoff (workloads keep running, statuses wait in the outbox)"
                    );
                    warned = Some(Instant::now());
                } else {
                    tracing::debug!(broker, error = %why, attempts = failures, "reconnect failed");
                }
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A connection error in words, with what to do where there is something to do.
fn explain(error: &ConnectionError) -> String {
    match error {
        ConnectionError::ConnectionRefused(code) => format!(
            "the broker refused the connection ({code:?}): check node_name and hub.password_file against the node's enrollment"
        ),
        ConnectionError::Tls(e) => format!(
            "TLS failed ({e}): check hub.ca_file and that hub.broker names the host in the broker's certificate"
        ),
        ConnectionError::MqttState(rumqttc::StateError::AwaitPingResp) => {
            "the broker stopped answering (no ping response within the keep-alive)".into()
        }
        other => other.to_string(),
    }
}

/// An MQTT event in a few words, for debug logs (payloads left out).
fn describe(event: &MqttEvent) -> String {
    match event {
        MqttEvent::Incoming(Packet::Publish(p)) => {
            format!("incoming publish {} ({} bytes)", p.topic, p.payload.len())
        }
        MqttEvent::Incoming(packet) => format!("incoming {packet:?}"),
        MqttEvent::Outgoing(outgoing) => format!("outgoing {outgoing:?}"),
    }
}
