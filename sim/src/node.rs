//! One simulated node: its MQTT session to the hub's broker, the desired states it takes (by
//! the agent's own rule, `wire::desired_verdict::judge`) and the statuses it sends. The only
//! IO is the MQTT connection; what to report is `behaviour`'s.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rumqttc::tokio_rustls::rustls::ClientConfig;
use rumqttc::{
    AsyncClient, Event as MqttEvent, EventLoop, LastWill, MqttOptions, Packet, QoS,
    TlsConfiguration, Transport,
};
use shoal_model::api::EnrollResponse;
use shoal_model::backoff;
use shoal_model::clock::wall_ms;
use shoal_model::node::{Capacity, NodeFacts};
use shoal_model::topic::{NodeId, Topics};
use shoal_model::wire::desired_verdict::{judge, Verdict};
use shoal_model::wire::signing::PublicKey;
use shoal_model::wire::{
    self, DesiredState, DesiredWorkload, Limits, NodeStatus, NodeUsage, Presence,
};
use tokio::sync::{mpsc, watch};

use crate::behaviour::{self, Behaviour, Timing};

/// How often a node looks at the time (slow starts ending, crash restarts, its link).
const TICK: Duration = Duration::from_secs(1);
/// A status at least this often while nothing changes, as the agent's heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(60);

/// What is the same for every node of a run.
#[derive(Clone, Debug)]
pub struct Common {
    pub timing: Timing,
    pub run: Duration,
    pub keep_alive: Duration,
    pub tls: Option<Arc<ClientConfig>>,
    pub started: Instant,
    pub progress: Arc<Progress>,
}

/// What every node adds to while the run goes on, for the progress lines.
#[derive(Debug, Default)]
pub struct Progress {
    /// Nodes whose connection is acknowledged now.
    pub connected: AtomicU64,
    pub connects: AtomicU64,
    pub errors: AtomicU64,
    pub accepted: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl Progress {
    /// `connected N, connects N, errors N, desired taken N[, last error: E]`.
    pub fn line(&self) -> String {
        let last = self
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        format!(
            "connected {}, connects {}, errors {}, desired taken {}{}",
            self.connected.load(Ordering::Relaxed),
            self.connects.load(Ordering::Relaxed),
            self.errors.load(Ordering::Relaxed),
            self.accepted.load(Ordering::Relaxed),
            last.map(|e| format!(", last error: {e}"))
                .unwrap_or_default()
        )
    }
}

/// What one node did, for the run's report.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Record {
    pub name: String,
    pub behaviour: String,
    /// Wall-clock ms of each connection acknowledged by the broker.
    pub connects: Vec<u64>,
    /// Each desired generation taken, with the wall-clock ms it was taken at.
    pub accepted: Vec<(u64, u64)>,
    /// Desired states refused (bad signature, wrong node, replayed), with why.
    pub refused: Vec<String>,
    /// Per `workload@revision`: the wall-clock ms of the first status that reported all its
    /// containers running.
    pub running: BTreeMap<String, u64>,
    pub statuses: u64,
    pub desired_received: u64,
    /// Connection errors, and the last one.
    pub errors: u64,
    pub last_error: Option<String>,
}

/// Runs node `credentials` until `stop` turns true; returns what it did.
pub async fn run(
    credentials: EnrollResponse,
    behaviour: Behaviour,
    common: Common,
    mut stop: watch::Receiver<bool>,
) -> Record {
    let mut node = match Node::new(&credentials, behaviour, &common) {
        Ok(node) => node,
        Err(e) => {
            return Record {
                name: credentials.node_name,
                behaviour: behaviour.to_string(),
                refused: vec![format!("cannot start: {e}")],
                ..Record::default()
            }
        }
    };
    let mut ticker = tokio::time::interval(TICK);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // `None` while the link is deliberately down (flapping, offline).
    let mut link: Option<Link> = Some(node.connect());
    loop {
        let up = behaviour::link_up(
            behaviour,
            &common.timing,
            common.started.elapsed(),
            common.run,
        );
        match (&link, up) {
            (Some(_), false) => {
                // Dropped without DISCONNECT: the broker publishes the last will.
                link = None;
                node.set_connected(false, &common.progress);
            }
            (None, true) => link = Some(node.connect()),
            _ => {}
        }
        let Some(Link { client, events, .. }) = link.as_mut() else {
            tokio::select! {
                _ = ticker.tick() => continue,
                _ = stop.changed() => break,
            }
        };
        tokio::select! {
            event = events.recv() => match event {
                Some(Ok(event)) => node.on_event(client, event, &common.progress),
                Some(Err(e)) => {
                    node.set_connected(false, &common.progress);
                    node.record.errors += 1;
                    common.progress.errors.fetch_add(1, Ordering::Relaxed);
                    *common
                        .progress
                        .last_error
                        .lock()
                        .unwrap_or_else(|p| p.into_inner()) = Some(e.clone());
                    node.record.last_error = Some(e);
                }
                // The poller ends only when the link is dropped.
                None => link = None,
            },
            _ = ticker.tick() => node.on_tick(client),
            _ = stop.changed() => break,
        }
    }
    node.set_connected(false, &common.progress);
    node.record
}

/// A connection being kept up: the client to publish with, and what its event loop saw.
struct Link {
    client: AsyncClient,
    events: mpsc::Receiver<Result<MqttEvent, String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Link {
    /// Drops the connection without DISCONNECT, as a device losing its link.
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Drives one event loop in a task of its own: `EventLoop::poll` must not be cancelled, or a
/// connection whose TLS handshake takes longer than the node's tick (a loaded hub) never
/// completes. Reconnects after an error as the agent does ([`backoff::delay`]: capped
/// exponential backoff with full jitter), drawing from the node's own generator seeded with
/// `seed`, so a fleet that lost its hub does not come back in one burst.
async fn poll(
    mut eventloop: EventLoop,
    events: mpsc::Sender<Result<MqttEvent, String>>,
    mut seed: u64,
) {
    let mut failures: u32 = 0;
    loop {
        match eventloop.poll().await {
            Ok(event) => {
                failures = 0;
                if events.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                if events.send(Err(e.to_string())).await.is_err() {
                    return;
                }
                tokio::time::sleep(backoff::delay(failures, splitmix(&mut seed))).await;
                failures = failures.saturating_add(1);
            }
        }
    }
}

/// The next number of a SplitMix64 sequence whose state is `state`.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

struct Node {
    id: NodeId,
    topics: Topics,
    limits: Limits,
    behaviour: Behaviour,
    timing: Timing,
    options: MqttOptions,
    online: Vec<u8>,
    trusted: Vec<PublicKey>,
    accepted: u64,
    desired: Vec<DesiredWorkload>,
    /// When each workload's current revision was first seen.
    seen: BTreeMap<String, (u64, Instant)>,
    /// The wire version the hub writes to this node; statuses answer in it.
    hub_version: u8,
    sequence: u64,
    connected: bool,
    /// Whether the broker acknowledged the subscription (as the agent: only a SUBACK counts).
    subscribed: bool,
    /// A SUBSCRIBE went out on this connection and its SUBACK has not come yet.
    subscribing: bool,
    presence_due: bool,
    last_report: Option<(Vec<wire::WorkloadStatus>, Instant)>,
    started_at_ms: u64,
    /// From the node's name: seeds its reconnect backoff's draws.
    seed: u64,
    record: Record,
}

impl Node {
    fn new(
        credentials: &EnrollResponse,
        behaviour: Behaviour,
        common: &Common,
    ) -> anyhow::Result<Node> {
        let id = NodeId::new(credentials.node_name.clone())?;
        let topics = Topics::new(&credentials.prefix)?;
        let limits = Limits::default();
        let trusted = credentials
            .signing_keys
            .iter()
            .map(|k| k.parse::<PublicKey>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| anyhow::anyhow!("the hub's signing keys: {e}"))?;
        let facts = NodeFacts {
            arch: "amd64".to_string(),
            os: "linux".to_string(),
            kernel: "shoal-sim".to_string(),
            cgroup_version: 2,
            capacity: Capacity {
                memory_bytes: 1 << 30,
                cpu_millis: 4000,
                pids: 4096,
            },
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            labels: BTreeMap::from([
                ("sim".to_string(), "true".to_string()),
                ("behaviour".to_string(), behaviour.to_string()),
            ]),
            wire_versions: wire::SUPPORTED_WIRE_VERSIONS.to_vec(),
        };
        let presence = |online| {
            let presence = Presence {
                node_id: id.to_string(),
                online,
                facts: facts.clone(),
            };
            // As the agent: in the oldest version, which every hub reads.
            wire::encode_in(wire::OLDEST_WIRE_VERSION, id.as_str(), &presence, &limits)
        };
        let will = presence(false)?;
        let online = presence(true)?;
        let broker = &credentials.broker;
        let mut options = MqttOptions::new(id.as_str(), broker.host().to_string(), broker.port());
        options
            .set_clean_session(false)
            .set_keep_alive(common.keep_alive)
            .set_credentials(id.as_str(), credentials.password.clone())
            .set_last_will(LastWill::new(
                topics.presence(&id),
                will,
                QoS::AtLeastOnce,
                true,
            ))
            .set_max_packet_size(limits.desired * 2 + 256, limits.status + 256);
        if broker.is_tls() {
            let config = common
                .tls
                .clone()
                .ok_or_else(|| anyhow::anyhow!("the broker is {broker}, and no CA was read"))?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
        }
        Ok(Node {
            id,
            topics,
            limits,
            behaviour,
            timing: common.timing,
            options,
            online,
            trusted,
            accepted: 0,
            desired: Vec::new(),
            seen: BTreeMap::new(),
            hub_version: wire::OLDEST_WIRE_VERSION,
            sequence: 0,
            connected: false,
            subscribed: false,
            subscribing: false,
            presence_due: true,
            last_report: None,
            started_at_ms: wall_ms(),
            seed: seed_of(&credentials.node_name),
            record: Record {
                name: credentials.node_name.clone(),
                behaviour: behaviour.to_string(),
                ..Record::default()
            },
        })
    }

    fn connect(&mut self) -> Link {
        // Room for the few requests one event can queue (presence, subscribe, a status).
        let (client, eventloop) = AsyncClient::new(self.options.clone(), 8);
        let (sender, events) = mpsc::channel(16);
        let task = tokio::spawn(poll(eventloop, sender, self.seed));
        Link {
            client,
            events,
            task,
        }
    }

    fn set_connected(&mut self, connected: bool, progress: &Progress) {
        if self.connected != connected {
            if connected {
                progress.connected.fetch_add(1, Ordering::Relaxed);
            } else {
                progress.connected.fetch_sub(1, Ordering::Relaxed);
            }
        }
        self.connected = connected;
    }

    fn on_event(&mut self, client: &AsyncClient, event: MqttEvent, progress: &Progress) {
        match event {
            MqttEvent::Incoming(Packet::ConnAck(ack)) => {
                self.set_connected(true, progress);
                progress.connects.fetch_add(1, Ordering::Relaxed);
                self.record.connects.push(wall_ms());
                self.presence_due = true;
                // A SUBSCRIBE lost with the link before its SUBACK is not resent by rumqttc.
                self.subscribing = false;
                if !ack.session_present {
                    self.subscribed = false;
                }
                self.flush(client);
            }
            MqttEvent::Incoming(Packet::SubAck(_)) => {
                self.subscribing = false;
                self.subscribed = true;
            }
            MqttEvent::Incoming(Packet::Publish(publish))
                if publish.topic == self.topics.desired(&self.id) =>
            {
                self.record.desired_received += 1;
                if self.on_desired(&publish.payload) {
                    progress.accepted.fetch_add(1, Ordering::Relaxed);
                }
                self.flush(client);
            }
            _ => {}
        }
    }

    /// Whether the node took it.
    fn on_desired(&mut self, payload: &[u8]) -> bool {
        if payload.is_empty() {
            // The hub cleared its retained state: the node was removed.
            return false;
        }
        let (envelope, state) = match wire::decode::<DesiredState>(payload, &self.limits) {
            Ok(decoded) => decoded,
            Err(e) => {
                self.record.refused.push(format!("undecodable: {e}"));
                return false;
            }
        };
        match judge(
            self.id.as_str(),
            self.accepted,
            &self.trusted,
            &envelope,
            &state,
        ) {
            Verdict::Accept => {}
            Verdict::Ignore(_) => return false,
            Verdict::Reject(why) => {
                self.record.refused.push(why);
                return false;
            }
        }
        self.hub_version = envelope.version;
        self.accepted = state.generation;
        self.record.accepted.push((state.generation, wall_ms()));
        if !state.signing_keys.is_empty() {
            self.trusted = state.signing_keys.clone();
        }
        let now = Instant::now();
        self.seen.retain(|name, (revision, _)| {
            state
                .workloads
                .iter()
                .any(|d| &d.workload.name == name && d.revision == *revision)
        });
        for d in &state.workloads {
            self.seen
                .entry(d.workload.name.clone())
                .or_insert((d.revision, now));
        }
        self.desired = state.workloads;
        // Reported at once: a new generation is a change.
        self.last_report = None;
        true
    }

    fn on_tick(&mut self, client: &AsyncClient) {
        self.flush(client);
    }

    /// Sends what is due: presence after a connect, the subscription, a status when what the
    /// node reports changed or the heartbeat is due.
    fn flush(&mut self, client: &AsyncClient) {
        if !self.connected {
            return;
        }
        if self.presence_due {
            if client
                .try_publish(
                    self.topics.presence(&self.id),
                    QoS::AtLeastOnce,
                    true,
                    self.online.clone(),
                )
                .is_err()
            {
                return;
            }
            self.presence_due = false;
        }
        if !self.subscribed && !self.subscribing {
            if client
                .try_subscribe(self.topics.desired(&self.id), QoS::AtLeastOnce)
                .is_err()
            {
                return;
            }
            self.subscribing = true;
        }
        let now = Instant::now();
        let since: BTreeMap<String, Duration> = self
            .seen
            .iter()
            .map(|(name, (_, at))| (name.clone(), now.duration_since(*at)))
            .collect();
        let workloads = behaviour::statuses(
            self.behaviour,
            &self.timing,
            &self.desired,
            &since,
            self.started_at_ms,
        );
        let due = match &self.last_report {
            None => true,
            Some((sent, at)) => !same(sent, &workloads) || now.duration_since(*at) >= HEARTBEAT,
        };
        if !due {
            return;
        }
        self.sequence += 1;
        let status = NodeStatus {
            node_id: self.id.to_string(),
            observed_generation: self.accepted,
            sequence: self.sequence,
            sent_at_ms: wall_ms(),
            workloads: workloads.clone(),
            usage: NodeUsage {
                memory_used_bytes: 64 << 20,
                memory_total_bytes: 1 << 30,
                cpu_millis_used: 20,
                disk_used_bytes: 32 << 20,
                disk_budget_bytes: 1 << 30,
            },
            events: Vec::new(),
            dropped_events: 0,
            agent_update: None,
        };
        let Ok(bytes) = wire::encode_in(self.hub_version, self.id.as_str(), &status, &self.limits)
        else {
            self.sequence -= 1;
            return;
        };
        if client
            .try_publish(self.topics.status(&self.id), QoS::AtLeastOnce, false, bytes)
            .is_err()
        {
            self.sequence -= 1;
            return;
        }
        self.record.statuses += 1;
        let at = wall_ms();
        for w in &workloads {
            let running = !w.containers.is_empty()
                && w.containers
                    .iter()
                    .all(|c| c.state == wire::ContainerState::Running);
            if running {
                self.record
                    .running
                    .entry(format!("{}@{}", w.name, w.revision))
                    .or_insert(at);
            }
        }
        self.last_report = Some((workloads, now));
    }
}

/// A number that is the same for a name in every run (FNV-1a of it).
fn seed_of(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Whether two reports say the same, leaving out what changes on its own (CPU time).
fn same(a: &[wire::WorkloadStatus], b: &[wire::WorkloadStatus]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.name == y.name
                && x.revision == y.revision
                && x.containers.len() == y.containers.len()
                && x.containers.iter().zip(&y.containers).all(|(c, d)| {
                    c.state == d.state && c.health == d.health && c.restarts == d.restarts
                })
        })
}
