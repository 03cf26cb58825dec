//! The session task: what the agent does with the hub link. It never touches the network
//! itself; it hands publishes and subscriptions to rumqttc and reacts to the events the
//! connection task forwards.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, Event as MqttEvent, Outgoing, Packet, QoS, SubscribeFilter, SubscribeReasonCode,
};
use shoal_model::topic::{Channel, NodeId, Topics};
use shoal_model::wire::{
    self, DesiredState, EventReason, Limits, RpcRequest, RpcRequestBody, RpcResponseBody,
};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use super::flight::{Flight, Tag};
use super::rpc;
use crate::api::Incoming;
use crate::state::Store;
use crate::supervisor::Event;

/// QoS 1 publishes of ours that may wait for their PUBACK at once. Below rumqttc's
/// `inflight`, so packet ids are never reused while in flight and nothing collides.
pub const WINDOW: usize = 16;
/// Answers and presence updates kept while the link is down or the window is full; past it,
/// the running requests wait (a followed log pauses).
const QUEUE_MAX: usize = 64;
/// How soon to try again when rumqttc was not ready to take a request.
const RETRY: Duration = Duration::from_millis(20);

/// What the connection task forwards.
#[derive(Debug)]
pub enum LinkEvent {
    Mqtt(MqttEvent),
    /// The connection failed or an attempt to connect did.
    Lost,
}

/// An answer from the supervisor to a request of the hub, or the end of its answers.
#[derive(Debug)]
pub enum Reply {
    Body(u64, RpcResponseBody),
    Done(u64),
}

/// Something to hand to rumqttc.
#[derive(Debug)]
enum Request {
    Subscribe,
    Publish {
        topic: String,
        payload: Vec<u8>,
        retain: bool,
        tag: Tag,
    },
}

#[derive(Debug)]
pub struct Session {
    pub client: AsyncClient,
    pub node: NodeId,
    pub topics: Topics,
    pub limits: Limits,
    /// `Presence { online: true, .. }`, encoded.
    pub online: Vec<u8>,
    /// The agent's database, for the outbox (its own connection).
    pub outbox: Store,
    pub supervisor: mpsc::Sender<Event>,
    pub replies: mpsc::Sender<Reply>,
    flight: Flight,
    connected: bool,
    /// The broker confirmed our subscriptions (a SUBACK) in this process.
    subscribed: bool,
    /// The id of the newest outbox row handed to rumqttc.
    last_row: u64,
    queue: VecDeque<Request>,
    /// Requests of the hub whose answers are still coming, by id; aborting the task closes
    /// the reply channel, which ends a followed log.
    running: HashMap<u64, tokio::task::AbortHandle>,
    /// The wire version answers are written in: the one the hub's newest request or desired
    /// state came in (a hub writes only versions it reads), the oldest this build speaks
    /// before any did.
    hub_wire: u8,
}

impl Session {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: AsyncClient,
        node: NodeId,
        topics: Topics,
        limits: Limits,
        online: Vec<u8>,
        outbox: Store,
        supervisor: mpsc::Sender<Event>,
        replies: mpsc::Sender<Reply>,
    ) -> Session {
        Session {
            client,
            node,
            topics,
            limits,
            online,
            outbox,
            supervisor,
            replies,
            flight: Flight::default(),
            connected: false,
            subscribed: false,
            last_row: 0,
            queue: VecDeque::new(),
            running: HashMap::new(),
            hub_wire: wire::OLDEST_WIRE_VERSION,
        }
    }

    /// Runs until the connection task ends.
    pub async fn run(
        mut self,
        mut link: mpsc::Receiver<LinkEvent>,
        outbox_ready: Arc<Notify>,
        mut replies: mpsc::Receiver<Reply>,
    ) {
        let mut retry_at: Option<Instant> = None;
        loop {
            let retry = async {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = link.recv() => match event {
                    Some(event) => self.on_link(event).await,
                    None => return,
                },
                () = outbox_ready.notified() => {}
                reply = replies.recv(), if self.queue.len() < QUEUE_MAX => {
                    if let Some(reply) = reply {
                        self.on_reply(reply);
                    }
                }
                () = retry => {}
            }
            retry_at = self.pump().then(|| Instant::now() + RETRY);
        }
    }

    async fn on_link(&mut self, event: LinkEvent) {
        let event = match event {
            LinkEvent::Lost => {
                self.connected = false;
                return;
            }
            LinkEvent::Mqtt(event) => event,
        };
        match event {
            MqttEvent::Incoming(Packet::ConnAck(ack)) => {
                self.connected = true;
                // Presence first, so the hub sees the node online before its statuses.
                self.queue.retain(|r| {
                    !matches!(
                        r,
                        Request::Subscribe
                            | Request::Publish {
                                tag: Tag::Presence,
                                ..
                            }
                    )
                });
                self.queue.push_front(Request::Publish {
                    topic: self.topics.presence(&self.node),
                    payload: self.online.clone(),
                    retain: true,
                    tag: Tag::Presence,
                });
                if !ack.session_present {
                    // rumqttc dropped what was unacknowledged; the outbox still has it.
                    self.flight.reset();
                    self.last_row = 0;
                    self.subscribed = false;
                }
                // A resumed session keeps its subscriptions, unless the first SUBSCRIBE was
                // lost with the link before its SUBACK (rumqttc does not resend those).
                if !self.subscribed {
                    self.queue.push_front(Request::Subscribe);
                }
            }
            MqttEvent::Incoming(Packet::PubAck(ack)) => {
                if let Some(Tag::Status(row)) = self.flight.acked(ack.pkid) {
                    if let Err(e) = self.outbox.remove_outbox(row) {
                        tracing::warn!(error = %e, row, "cannot remove a delivered status from the outbox; it will be sent again");
                    }
                }
            }
            MqttEvent::Incoming(Packet::SubAck(ack)) => {
                if ack.return_codes.contains(&SubscribeReasonCode::Failure) {
                    tracing::error!(
                        filter = self.topics.node_filter(&self.node),
                        "the broker refused to subscribe this node to its desired state and requests: its ACL must let `{}` subscribe to its own topics",
                        self.node
                    );
                } else {
                    self.subscribed = true;
                }
            }
            MqttEvent::Incoming(Packet::Publish(publish)) => {
                self.on_publish(&publish.topic, &publish.payload).await;
            }
            MqttEvent::Outgoing(Outgoing::Publish(pkid)) => self.flight.sent(pkid),
            MqttEvent::Outgoing(Outgoing::AwaitAck(pkid)) => self.flight.collided(pkid),
            _ => {}
        }
    }

    async fn on_publish(&mut self, topic: &str, payload: &[u8]) {
        match self.topics.parse(topic) {
            Some((node, Channel::Desired)) if node == self.node => self.on_desired(payload).await,
            Some((node, Channel::RpcRequest)) if node == self.node => {
                self.on_request(payload).await
            }
            _ => tracing::debug!(topic, "ignored a message on a topic that is not ours"),
        }
    }

    async fn on_desired(&mut self, payload: &[u8]) {
        if payload.is_empty() {
            // How MQTT clears a retained message: nothing to apply.
            tracing::debug!("the retained desired state was cleared");
            return;
        }
        let event = match wire::decode::<DesiredState>(payload, &self.limits) {
            Ok((envelope, state)) => {
                tracing::debug!(generation = state.generation, "desired state received");
                self.hub_wire = envelope.version;
                Event::Desired(Box::new(envelope), state)
            }
            Err(e) => Event::Refused {
                reason: EventReason::DesiredStateRejected,
                message: format!(
                    "cannot read the desired state the hub sent ({} bytes): {e}",
                    payload.len()
                ),
            },
        };
        let _ = self.supervisor.send(event).await;
    }

    async fn on_request(&mut self, payload: &[u8]) {
        let request = match wire::decode::<RpcRequest>(payload, &self.limits) {
            Ok((envelope, request)) => {
                self.hub_wire = envelope.version;
                request
            }
            Err(e) => {
                tracing::warn!(error = %e, bytes = payload.len(), "cannot read an rpc request from the hub: dropped");
                return;
            }
        };
        let id = request.id;
        tracing::debug!(id, request = ?request_name(&request.body), "rpc request from the hub");
        if let Some(message) = rpc::refusal(&request.body) {
            self.respond(id, RpcResponseBody::Error { message });
            return;
        }
        if let RpcRequestBody::Cancel { id: target } = request.body {
            let body = match self.running.remove(&target) {
                Some(task) => {
                    task.abort();
                    RpcResponseBody::Done {
                        message: format!("cancelled request {target}"),
                    }
                }
                None => RpcResponseBody::Error {
                    message: format!(
                        "request {target} is not running: it has ended, or never arrived"
                    ),
                },
            };
            self.respond(id, body);
            return;
        }
        let (reply, mut answers) = mpsc::channel(16);
        if self
            .supervisor
            .send(Event::Api(Incoming { request, reply }))
            .await
            .is_err()
        {
            return;
        }
        let replies = self.replies.clone();
        let task = tokio::spawn(async move {
            while let Some(body) = answers.recv().await {
                if replies.send(Reply::Body(id, body)).await.is_err() {
                    return;
                }
            }
            let _ = replies.send(Reply::Done(id)).await;
        });
        if let Some(earlier) = self.running.insert(id, task.abort_handle()) {
            earlier.abort();
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        match reply {
            Reply::Body(id, body) => self.respond(id, body),
            Reply::Done(id) => {
                self.running.remove(&id);
            }
        }
    }

    /// Queues the answer to request `id`, cut to the size limit.
    fn respond(&mut self, id: u64, body: RpcResponseBody) {
        let topic = self.topics.rpc_resp(&self.node);
        let to = (self.hub_wire, self.node.as_str());
        for payload in rpc::encode(to, id, body, &self.limits) {
            self.queue.push_back(Request::Publish {
                topic: topic.clone(),
                payload,
                retain: false,
                tag: Tag::Response,
            });
        }
    }

    /// Hands queued requests, then outbox rows oldest first, to rumqttc while the window has
    /// room. True when rumqttc was not ready for one (try again shortly).
    fn pump(&mut self) -> bool {
        if !self.connected {
            return false;
        }
        while self.flight.outstanding() < WINDOW {
            let Some(request) = self.queue.pop_front() else {
                break;
            };
            if let Err(request) = self.hand(request) {
                self.queue.push_front(request);
                return true;
            }
        }
        while self.flight.outstanding() < WINDOW {
            let room = u32::try_from(WINDOW - self.flight.outstanding()).unwrap_or(1);
            let rows = match self.outbox.outbox_after(self.last_row, room) {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the outbox");
                    return false;
                }
            };
            if rows.is_empty() {
                break;
            }
            let topic = self.topics.status(&self.node);
            for row in rows {
                let request = Request::Publish {
                    topic: topic.clone(),
                    payload: row.payload,
                    retain: false,
                    tag: Tag::Status(row.id),
                };
                if self.hand(request).is_err() {
                    return true;
                }
                self.last_row = row.id;
            }
        }
        false
    }

    /// Gives one request to rumqttc; gives it back when rumqttc cannot take it now.
    fn hand(&mut self, request: Request) -> Result<(), Request> {
        match request {
            Request::Subscribe => {
                let filters = self
                    .topics
                    .agent_filters(&self.node)
                    .into_iter()
                    .map(|filter| SubscribeFilter::new(filter, QoS::AtLeastOnce));
                match self.client.try_subscribe_many(filters) {
                    Ok(()) => {
                        tracing::debug!(node = %self.node, "subscribing to desired state and rpc requests");
                        Ok(())
                    }
                    Err(_) => Err(Request::Subscribe),
                }
            }
            Request::Publish {
                topic,
                payload,
                retain,
                tag,
            } => {
                let size = payload.len();
                // rumqttc takes ownership; a copy stays here in case it cannot take it now.
                match self.client.try_publish(
                    topic.as_str(),
                    QoS::AtLeastOnce,
                    retain,
                    payload.clone(),
                ) {
                    Ok(()) => {
                        tracing::debug!(topic, bytes = size, ?tag, "publish");
                        self.flight.handed(tag);
                        Ok(())
                    }
                    Err(_) => Err(Request::Publish {
                        topic,
                        payload,
                        retain,
                        tag,
                    }),
                }
            }
        }
    }
}

/// A request's kind, for logs.
fn request_name(body: &RpcRequestBody) -> &'static str {
    match body {
        RpcRequestBody::Logs { .. } => "logs",
        RpcRequestBody::Exec { .. } => "exec",
        RpcRequestBody::Diagnostics => "diagnostics",
        RpcRequestBody::Ping => "ping",
        RpcRequestBody::Status => "status",
        RpcRequestBody::Apply { .. } => "apply",
        RpcRequestBody::DeleteWorkload { .. } => "delete",
        RpcRequestBody::ListImages => "images ls",
        RpcRequestBody::ImportImage { .. } => "images import",
        RpcRequestBody::RemoveImage { .. } => "images rm",
        RpcRequestBody::PruneImages => "images prune",
        RpcRequestBody::Cancel { .. } => "cancel",
    }
}
