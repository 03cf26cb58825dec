//! The broker layer against real brokers: the embedded rmqtt on loopback and a real Mosquitto
//! started with the files `mosquitto_files` writes, driven by real rumqttc clients.
//!
//! These tests are the guard that an rmqtt upgrade cannot silently reopen the six holes listed
//! in `hub/src/broker/embedded.rs`; the test for each says which fix it guards. Every wait is
//! bounded by [`WAIT`].

use std::collections::{HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnAck, ConnectReturnCode, ConnectionError, Event, LastWill, MqttOptions,
    Outgoing, Packet, Publish, QoS, SubscribeReasonCode, Transport,
};
use shoal_hub::broker::{
    embedded, mosquitto_files, password, Authenticator, EmbeddedBroker, EmbeddedConfig, Identity,
    MosquittoFiles, HUB_USERNAME,
};
use shoal_model::topic::{NodeId, Topics};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// The longest any single event may take to arrive.
const WAIT: Duration = Duration::from_secs(10);
const A: &str = "node-a";
const B: &str = "node-b";

// ---------------------------------------------------------------------------------------------
// Fixture: credentials, brokers, clients

/// Credentials of one test fleet: the hub and nodes `node-a` and `node-b`, each with a
/// generated password stored only as its hash, as the hub's store keeps them.
#[derive(Clone)]
struct Fleet {
    hub_password: String,
    passwords: HashMap<String, String>,
    hashes: HashMap<String, String>,
}

impl Fleet {
    fn new() -> Fleet {
        let passwords: HashMap<String, String> = [A, B]
            .into_iter()
            .map(|node| (node.to_string(), password::generate()))
            .collect();
        let hashes = passwords
            .iter()
            .map(|(node, secret)| (node.clone(), password::hash(secret)))
            .collect();
        Fleet {
            hub_password: password::generate(),
            passwords,
            hashes,
        }
    }

    fn password(&self, username: &str) -> String {
        if username == HUB_USERNAME {
            self.hub_password.clone()
        } else {
            self.passwords[username].clone()
        }
    }
}

impl Authenticator for Fleet {
    fn authenticate(&self, username: &str, password: &str) -> Option<Identity> {
        if username == HUB_USERNAME {
            return password::constant_time_eq(password.as_bytes(), self.hub_password.as_bytes())
                .then_some(Identity::Hub);
        }
        let hash = self.hashes.get(username)?;
        let node = NodeId::new(username).ok()?;
        password::verify(password, hash).then_some(Identity::Node(node))
    }
}

struct TestBroker {
    broker: EmbeddedBroker,
    fleet: Fleet,
    _data: tempfile::TempDir,
}

impl TestBroker {
    async fn start() -> TestBroker {
        TestBroker::start_with(loopback(0), EmbeddedConfig::DEFAULT_MAX_PACKET_BYTES).await
    }

    async fn start_with(listen: SocketAddr, max_packet_bytes: usize) -> TestBroker {
        let data = tempfile::tempdir().expect("temporary data dir");
        let fleet = Fleet::new();
        let config = EmbeddedConfig {
            listen,
            prefix: Topics::DEFAULT_PREFIX.to_string(),
            max_packet_bytes,
            data_dir: data.path().to_path_buf(),
            tls: None,
        };
        let broker = EmbeddedBroker::start(config, Arc::new(fleet.clone()))
            .await
            .expect("the embedded broker starts");
        TestBroker {
            broker,
            fleet,
            _data: data,
        }
    }

    fn addr(&self) -> SocketAddr {
        self.broker.local_addr()
    }

    /// Options for `username` connecting with its own password and client id.
    fn options(&self, username: &str) -> MqttOptions {
        options(
            self.addr(),
            username,
            username,
            &self.fleet.password(username),
        )
    }

    async fn connect(&self, username: &str) -> Client {
        Client::connect(self.options(username))
            .await
            .unwrap_or_else(|error| panic!("{username} connects: {error}"))
            .0
    }

    async fn connect_hub(&self) -> Client {
        self.connect(HUB_USERNAME).await
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

fn options(addr: SocketAddr, client_id: &str, username: &str, password: &str) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options.set_credentials(username, password);
    options.set_keep_alive(Duration::from_secs(30));
    options
}

fn topics() -> Topics {
    Topics::default()
}

fn node(id: &str) -> NodeId {
    NodeId::new(id).expect("valid node id")
}

/// A connected rumqttc client whose event loop runs in its own task; its events arrive here.
struct Client {
    client: AsyncClient,
    events: mpsc::UnboundedReceiver<Result<Event, String>>,
    /// Publishes that arrived while a test waited for something else.
    publishes: VecDeque<Publish>,
    task: JoinHandle<()>,
}

impl Client {
    /// Connects and waits for the CONNACK: the broker's refusal is the error.
    async fn connect(options: MqttOptions) -> Result<(Client, ConnAck), ConnectionError> {
        let (client, mut event_loop) = AsyncClient::new(options, 64);
        let ack = timeout(WAIT, async {
            loop {
                match event_loop.poll().await? {
                    Event::Incoming(Packet::ConnAck(ack)) => return Ok::<_, ConnectionError>(ack),
                    _ => continue,
                }
            }
        })
        .await
        .expect("the broker answers CONNECT in time")?;
        let (sender, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            loop {
                let event = event_loop.poll().await.map_err(|error| error.to_string());
                let lost = event.is_err();
                // Stop at the first error: rumqttc would reconnect, the tests want to see it.
                if sender.send(event).is_err() || lost {
                    break;
                }
            }
        });
        let client = Client {
            client,
            events,
            publishes: VecDeque::new(),
            task,
        };
        Ok((client, ack))
    }

    /// The next incoming packet `pick` selects; publishes passed over are kept for later.
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&Packet) -> Option<T>) -> T {
        let waited = timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(Ok(Event::Incoming(packet))) => {
                        if let Some(found) = pick(&packet) {
                            return found;
                        }
                        if let Packet::Publish(publish) = packet {
                            self.publishes.push_back(publish);
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => panic!("connection lost while waiting for {what}: {error}"),
                    None => panic!("event loop ended while waiting for {what}"),
                }
            }
        })
        .await;
        waited.unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
    }

    async fn subscribe(&mut self, filter: &str) -> SubscribeReasonCode {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("queue SUBSCRIBE");
        self.wait_for("SUBACK", |packet| match packet {
            Packet::SubAck(ack) => ack.return_codes.first().copied(),
            _ => None,
        })
        .await
    }

    /// Publishes at QoS 1 and waits for the broker's PUBACK, so the broker has handled it.
    async fn publish(&mut self, topic: &str, retain: bool, payload: &[u8]) {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .await
            .expect("queue PUBLISH");
        self.wait_for("PUBACK", |packet| {
            matches!(packet, Packet::PubAck(_)).then_some(())
        })
        .await;
    }

    async fn next_publish(&mut self) -> Publish {
        if let Some(publish) = self.publishes.pop_front() {
            return publish;
        }
        self.wait_for("PUBLISH", |packet| match packet {
            Packet::Publish(publish) => Some(publish.clone()),
            _ => None,
        })
        .await
    }

    /// Waits until the broker closes the connection; returns the error rumqttc saw.
    async fn connection_lost(&mut self) -> String {
        let lost = timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(Ok(Event::Incoming(Packet::Publish(publish)))) => {
                        self.publishes.push_back(publish)
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return error,
                    None => return "event loop ended".to_string(),
                }
            }
        })
        .await;
        lost.unwrap_or_else(|_| panic!("the connection stayed up for {WAIT:?}"))
    }

    /// Sends DISCONNECT, then closes the connection: a clean goodbye, no will. (rmqtt leaves
    /// closing to the client, as MQTT 3.1.1 asks of it, and rumqttc does not close by itself.)
    async fn disconnect(mut self) {
        self.client.disconnect().await.expect("queue DISCONNECT");
        let sent = timeout(WAIT, async {
            loop {
                match self.events.recv().await {
                    Some(Ok(Event::Outgoing(Outgoing::Disconnect))) => return,
                    Some(Ok(_)) => {}
                    Some(Err(error)) => panic!("connection lost before DISCONNECT: {error}"),
                    None => panic!("event loop ended before DISCONNECT"),
                }
            }
        })
        .await;
        sent.unwrap_or_else(|_| panic!("DISCONNECT not sent within {WAIT:?}"));
        self.cut().await;
    }

    /// Drops the TCP connection without DISCONNECT, as a power cut would.
    async fn cut(self) {
        self.task.abort();
        // The socket closes when the aborted task's event loop is dropped.
        let _ = self.task.await;
    }
}

fn payload(publish: &Publish) -> &[u8] {
    &publish.payload
}

fn refused_with(result: Result<(Client, ConnAck), ConnectionError>) -> ConnectReturnCode {
    match result {
        Err(ConnectionError::ConnectionRefused(code)) => code,
        Err(other) => panic!("expected a refused CONNACK, got {other}"),
        Ok(_) => panic!("expected the connection to be refused, it was accepted"),
    }
}

// ---------------------------------------------------------------------------------------------
// Authentication

#[tokio::test(flavor = "multi_thread")]
async fn a_node_with_its_password_connects_and_a_wrong_password_is_refused() {
    let broker = TestBroker::start().await;
    let (_a, ack) = Client::connect(broker.options(A))
        .await
        .expect("node-a connects with its password");
    assert_eq!(ack.code, ConnectReturnCode::Success);

    let wrong = options(broker.addr(), A, A, &broker.fleet.password(B));
    assert_eq!(
        refused_with(Client::connect(wrong).await),
        ConnectReturnCode::BadUserNamePassword
    );
    let unknown = options(broker.addr(), "node-z", "node-z", "whatever");
    assert_eq!(
        refused_with(Client::connect(unknown).await),
        ConnectReturnCode::BadUserNamePassword
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_username_that_differs_from_the_client_id_is_refused() {
    let broker = TestBroker::start().await;
    // node-a's valid credentials, but posing as node-b's session.
    let posing = options(broker.addr(), B, A, &broker.fleet.password(A));
    assert_eq!(
        refused_with(Client::connect(posing).await),
        ConnectReturnCode::NotAuthorized
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_credentials_is_refused() {
    let broker = TestBroker::start().await;
    let mut anonymous = MqttOptions::new(A, "127.0.0.1", broker.addr().port());
    anonymous.set_keep_alive(Duration::from_secs(30));
    let code = refused_with(Client::connect(anonymous).await);
    assert!(
        matches!(
            code,
            ConnectReturnCode::NotAuthorized | ConnectReturnCode::BadUserNamePassword
        ),
        "{code:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// ACL

#[tokio::test(flavor = "multi_thread")]
async fn a_node_cannot_subscribe_to_another_nodes_topics_wildcards_or_shared_subscriptions() {
    let broker = TestBroker::start().await;
    let t = topics();
    let mut hub = broker.connect_hub().await;
    hub.publish(&t.desired(&node(B)), true, b"b's secret").await;
    hub.publish(&t.desired(&node(A)), true, b"a's own").await;

    let mut a = broker.connect(A).await;
    for filter in [
        t.desired(&node(B)),
        t.rpc_req(&node(B)),
        t.all_nodes(shoal_model::topic::Channel::Desired),
        t.node_filter(&node(A)),
        "#".to_string(),
        "shoal/v1/#".to_string(),
        format!("$share/g/{}", t.desired(&node(B))),
        format!("$share/g/{}", t.desired(&node(A))),
        "$SYS/#".to_string(),
    ] {
        assert_eq!(
            a.subscribe(&filter).await,
            SubscribeReasonCode::Failure,
            "node-a subscribed to {filter}"
        );
    }
    // Its own desired state works, and the first message it sees is its own: nothing leaked
    // from the refused subscriptions before it.
    assert_eq!(
        a.subscribe(&t.desired(&node(A))).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let first = a.next_publish().await;
    assert_eq!(
        (first.topic.as_str(), payload(&first)),
        (t.desired(&node(A)).as_str(), &b"a's own"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_nodes_publish_to_another_nodes_status_is_not_delivered_to_the_hub() {
    let broker = TestBroker::start().await;
    let t = topics();
    let mut hub = broker.connect_hub().await;
    assert_eq!(
        hub.subscribe(&t.all_nodes(shoal_model::topic::Channel::Status))
            .await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    assert_eq!(
        hub.subscribe(&t.all_nodes(shoal_model::topic::Channel::Desired))
            .await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    let mut a = broker.connect(A).await;
    a.publish(&t.status(&node(B)), false, b"forged b status")
        .await;
    a.publish(&t.desired(&node(B)), true, b"forged b desired")
        .await;
    a.publish(&t.desired(&node(A)), true, b"self-assigned work")
        .await;
    a.publish(&t.status(&node(A)), false, b"a status").await;

    // Messages from one publisher arrive in order: had anything forged got through, it
    // would come before node-a's own status.
    let first = hub.next_publish().await;
    assert_eq!(
        (first.topic.as_str(), payload(&first)),
        (t.status(&node(A)).as_str(), &b"a status"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_hub_may_use_only_topics_under_its_prefix() {
    let broker = TestBroker::start().await;
    let mut hub = broker.connect_hub().await;
    for filter in [
        "#",
        "$SYS/#",
        "other/v1/node/+/status",
        "+/v1/node/+/status",
    ] {
        assert_eq!(
            hub.subscribe(filter).await,
            SubscribeReasonCode::Failure,
            "the hub subscribed to {filter}"
        );
    }
    assert_eq!(
        hub.subscribe("shoal/v1/#").await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
}

// ---------------------------------------------------------------------------------------------
// The six fixes for rmqtt's defaults

#[tokio::test(flavor = "multi_thread")]
async fn fix1_a_will_aimed_at_another_nodes_desired_state_refuses_the_connection() {
    let broker = TestBroker::start().await;
    let t = topics();
    let mut b = broker.connect(B).await;
    assert_eq!(
        b.subscribe(&t.desired(&node(B))).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    for (will_topic, retain) in [
        (t.desired(&node(B)), true),
        (t.desired(&node(B)), false),
        (t.desired(&node(A)), true),
        (t.presence(&node(B)), true),
    ] {
        let mut options = broker.options(A);
        options.set_last_will(LastWill::new(
            will_topic.clone(),
            b"hijacked".to_vec(),
            QoS::AtLeastOnce,
            retain,
        ));
        assert_eq!(
            refused_with(Client::connect(options).await),
            ConnectReturnCode::NotAuthorized,
            "a will on {will_topic}"
        );
    }

    // node-b's first desired state is the hub's, not a will planted by node-a.
    let mut hub = broker.connect_hub().await;
    hub.publish(&t.desired(&node(B)), true, b"from the hub")
        .await;
    let first = b.next_publish().await;
    assert_eq!(payload(&first), b"from the hub");
}

#[tokio::test(flavor = "multi_thread")]
async fn fix2_retained_desired_state_reaches_a_late_subscriber_and_never_expires() {
    let broker = TestBroker::start().await;
    let t = topics();
    let settings = broker.broker.effective_settings().await.expect("settings");
    assert_eq!(settings.retained_message_ttl, Some(Duration::ZERO));

    let mut hub = broker.connect_hub().await;
    hub.publish(&t.desired(&node(A)), true, b"generation 1")
        .await;
    hub.disconnect().await;

    let mut a = broker.connect(A).await;
    assert_eq!(
        a.subscribe(&t.desired(&node(A))).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let retained = a.next_publish().await;
    assert!(retained.retain);
    assert_eq!(payload(&retained), b"generation 1");

    // The honest check without waiting 5 minutes: a retained message that carries its own
    // 1 s expiry. rmqtt stores a retained message with its expiry unless the retainer's TTL
    // overrides it, so this one is only still there after 2 s if the TTL is "never".
    let mut v5 = rumqttc::v5::MqttOptions::new(HUB_USERNAME, "127.0.0.1", broker.addr().port());
    v5.set_credentials(HUB_USERNAME, broker.fleet.password(HUB_USERNAME));
    let (v5_hub, mut v5_events) = rumqttc::v5::AsyncClient::new(v5, 16);
    let expiring = rumqttc::v5::mqttbytes::v5::PublishProperties {
        message_expiry_interval: Some(1),
        ..Default::default()
    };
    v5_hub
        .publish_with_properties(
            t.desired(&node(B)),
            rumqttc::v5::mqttbytes::QoS::AtLeastOnce,
            true,
            b"expires in 1 s".to_vec(),
            expiring,
        )
        .await
        .expect("queue v5 PUBLISH");
    timeout(WAIT, async {
        loop {
            match v5_events.poll().await {
                Ok(rumqttc::v5::Event::Incoming(rumqttc::v5::mqttbytes::v5::Packet::PubAck(_))) => {
                    break
                }
                Ok(_) => {}
                Err(error) => panic!("v5 hub connection failed: {error}"),
            }
        }
    })
    .await
    .expect("PUBACK for the v5 publish");
    // Time passing is the point here, not an event to wait for.
    tokio::time::sleep(Duration::from_millis(2_000)).await;

    let mut b = broker.connect(B).await;
    assert_eq!(
        b.subscribe(&t.desired(&node(B))).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let kept = b.next_publish().await;
    assert_eq!(payload(&kept), b"expires in 1 s");
}

#[tokio::test(flavor = "multi_thread")]
async fn fix3_queued_qos1_messages_reach_a_persistent_session_client_when_it_returns() {
    let broker = TestBroker::start().await;
    let t = topics();
    let settings = broker.broker.effective_settings().await.expect("settings");
    assert_eq!(settings.session_expiry, Duration::from_secs(7 * 24 * 3600));
    assert_eq!(settings.max_session_expiry, settings.session_expiry);
    assert_eq!(
        settings.message_expiry,
        Duration::ZERO,
        "queued messages never expire"
    );

    let mut hub = broker.connect_hub().await;
    assert_eq!(
        hub.subscribe(&t.presence(&node(A))).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    let persistent = || {
        let mut options = broker.options(A);
        options.set_clean_session(false);
        options.set_last_will(LastWill::new(
            t.presence(&node(A)),
            b"offline".to_vec(),
            QoS::AtLeastOnce,
            true,
        ));
        options
    };
    let (mut a, _) = Client::connect(persistent())
        .await
        .expect("node-a connects");
    assert_eq!(
        a.subscribe(&t.rpc_req(&node(A))).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    a.cut().await;
    // The will tells us the broker has taken node-a's session offline.
    assert_eq!(payload(&hub.next_publish().await), b"offline");

    hub.publish(&t.rpc_req(&node(A)), false, b"logs please")
        .await;

    let (mut a, ack) = Client::connect(persistent())
        .await
        .expect("node-a reconnects");
    assert!(ack.session_present, "the session survived");
    let queued = a.next_publish().await;
    assert_eq!(
        (queued.topic.as_str(), payload(&queued)),
        (t.rpc_req(&node(A)).as_str(), &b"logs please"[..])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn fix4_the_broker_does_not_refuse_clients_when_the_host_looks_busy() {
    // rmqtt's own is_busy() under an always-overloaded node is covered by the unit test
    // `rmqtt_does_not_report_busy_even_on_a_host_it_considers_overloaded`; here the running
    // broker must have the check off.
    let broker = TestBroker::start().await;
    let settings = broker.broker.effective_settings().await.expect("settings");
    assert!(!settings.busy_check);
}

#[tokio::test(flavor = "multi_thread")]
async fn fix5_a_second_broker_binds_the_same_port_right_after_the_first_shuts_down() {
    let first = TestBroker::start().await;
    let addr = first.addr();
    assert_eq!(
        first
            .broker
            .effective_settings()
            .await
            .expect("settings")
            .reuseaddr,
        Some(true)
    );
    // A live connection: when the broker closes it first, the port is left in TIME_WAIT.
    let mut a = first.connect(A).await;
    let TestBroker { broker, .. } = first;
    broker.shutdown().await;
    a.connection_lost().await;

    let second = TestBroker::start_with(addr, EmbeddedConfig::DEFAULT_MAX_PACKET_BYTES).await;
    assert_eq!(second.addr(), addr);
    second.connect(A).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn fix8_the_listen_backlog_holds_a_fleet_connecting_at_once() {
    let broker = TestBroker::start().await;
    let somaxconn: i32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .expect("somaxconn")
        .trim()
        .parse()
        .expect("a number");
    // For a listening socket, ss shows the backlog in the Send-Q column.
    let port = broker.addr().port();
    let out = std::process::Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .expect("ss (iproute2)");
    let text = String::from_utf8_lossy(&out.stdout);
    let backlog: i32 = text
        .split_whitespace()
        .nth(2)
        .and_then(|q| q.parse().ok())
        .unwrap_or_else(|| panic!("no listening socket on {port}: {text:?}"));
    assert_eq!(backlog, embedded::BACKLOG.min(somaxconn), "{text}");
    assert!(backlog > 512, "rmqtt's default backlog: {text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fix6_a_tls_client_fails_cleanly_instead_of_panicking_over_two_crypto_providers() {
    let broker = TestBroker::start().await;
    assert!(
        rumqttc::tokio_rustls::rustls::crypto::CryptoProvider::get_default().is_some(),
        "starting the broker installs a default crypto provider"
    );
    // rumqttc builds its rustls config here; without a default provider it panics. The broker
    // does not speak TLS, so the handshake fails, as an error.
    let mut tls = broker.options(A);
    tls.set_transport(Transport::tls_with_default_config());
    match Client::connect(tls).await {
        Err(ConnectionError::Tls(_) | ConnectionError::Io(_)) => {}
        Err(other) => panic!("expected a TLS or IO error, got {other}"),
        Ok(_) => panic!("a TLS client cannot connect to a plain MQTT listener"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_running_broker_grants_qos_1_to_authenticated_clients_only() {
    let broker = TestBroker::start().await;
    let settings = broker.broker.effective_settings().await.expect("settings");
    assert!(!settings.allow_anonymous);
    assert_eq!(settings.max_qos, 1);
    assert_eq!(
        settings.max_packet_bytes as usize,
        EmbeddedConfig::DEFAULT_MAX_PACKET_BYTES
    );
}

// ---------------------------------------------------------------------------------------------
// Presence, limits, removal

#[tokio::test(flavor = "multi_thread")]
async fn the_last_will_is_published_when_a_node_drops_off_abruptly() {
    let broker = TestBroker::start().await;
    let t = topics();
    let mut hub = broker.connect_hub().await;
    assert_eq!(
        hub.subscribe(&t.all_nodes(shoal_model::topic::Channel::Presence))
            .await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    let mut options = broker.options(A);
    options.set_last_will(LastWill::new(
        t.presence(&node(A)),
        b"offline".to_vec(),
        QoS::AtLeastOnce,
        true,
    ));
    let (mut a, _) = Client::connect(options).await.expect("node-a connects");
    a.publish(&t.presence(&node(A)), true, b"online").await;
    assert_eq!(payload(&hub.next_publish().await), b"online");

    a.cut().await;
    let will = hub.next_publish().await;
    assert_eq!(
        (will.topic.as_str(), payload(&will)),
        (t.presence(&node(A)).as_str(), &b"offline"[..])
    );
    // And it is retained for whoever looks later.
    assert_eq!(
        hub.subscribe(&t.presence(&node(A))).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );
    let retained = hub.next_publish().await;
    assert!(retained.retain);
    assert_eq!(payload(&retained), b"offline");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_oversized_publish_is_refused_and_the_broker_keeps_serving_everyone_else() {
    let limit = 4 * 1024;
    let broker = TestBroker::start_with(loopback(0), limit).await;
    let t = topics();
    let mut hub = broker.connect_hub().await;
    assert_eq!(
        hub.subscribe(&t.all_nodes(shoal_model::topic::Channel::Status))
            .await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    let mut big = broker.options(A);
    big.set_max_packet_size(64 * 1024, 64 * 1024);
    let (mut a, _) = Client::connect(big).await.expect("node-a connects");
    a.client
        .publish(
            t.status(&node(A)),
            QoS::AtLeastOnce,
            false,
            vec![b'x'; 2 * limit],
        )
        .await
        .expect("queue the oversized PUBLISH");
    a.connection_lost().await;

    let mut b = broker.connect(B).await;
    b.publish(&t.status(&node(B)), false, b"b still heard")
        .await;
    let first = hub.next_publish().await;
    assert_eq!(
        (first.topic.as_str(), payload(&first)),
        (t.status(&node(B)).as_str(), &b"b still heard"[..]),
        "the oversized status must not arrive, the next one must"
    );

    let mut a = broker.connect(A).await;
    a.publish(&t.status(&node(A)), false, b"a is back").await;
    assert_eq!(payload(&hub.next_publish().await), b"a is back");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_node_is_disconnected_and_its_session_discarded() {
    let broker = TestBroker::start().await;
    let t = topics();
    let persistent = || {
        let mut options = broker.options(A);
        options.set_clean_session(false);
        options
    };
    let (mut a, _) = Client::connect(persistent())
        .await
        .expect("node-a connects");
    assert_eq!(
        a.subscribe(&t.rpc_req(&node(A))).await,
        SubscribeReasonCode::Success(QoS::AtLeastOnce)
    );

    assert!(broker.broker.disconnect(A).await);
    a.connection_lost().await;
    assert!(!broker.broker.disconnect("node-z").await);

    let (_a, ack) = Client::connect(persistent())
        .await
        .expect("node-a may reconnect while its credentials exist");
    assert!(!ack.session_present, "the old session was discarded");
}

// ---------------------------------------------------------------------------------------------
// External Mosquitto with the generated files

/// A Mosquitto process, killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Mosquitto {
    async fn start(fleet: &Fleet) -> Mosquitto {
        let dir = tempfile::tempdir().expect("temporary dir");
        let port = free_port();
        let nodes: Vec<(NodeId, String)> = fleet
            .hashes
            .iter()
            .map(|(id, hash)| (node(id), hash.clone()))
            .collect();
        let files = mosquitto_files(
            port,
            Topics::DEFAULT_PREFIX,
            &password::hash(&fleet.hub_password),
            &nodes,
            dir.path(),
        );
        assert!(files.skipped.is_empty());
        files.write(dir.path()).expect("write the mosquitto files");
        readable_by_mosquitto(dir.path());

        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(dir.path().join(MosquittoFiles::CONF))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run `mosquitto` (apt-get install mosquitto)");
        let mut mosquitto = Mosquitto {
            child,
            port,
            _dir: dir,
        };
        mosquitto.wait_until_listening(fleet).await;
        mosquitto
    }

    /// Waits until the hub's credentials get a CONNACK, or fails with Mosquitto's stderr.
    async fn wait_until_listening(&mut self, fleet: &Fleet) {
        let hub = options(
            loopback(self.port),
            HUB_USERNAME,
            HUB_USERNAME,
            &fleet.hub_password,
        );
        let ready = timeout(WAIT, async {
            loop {
                if let Some(status) = self.child.try_wait().expect("poll mosquitto") {
                    return Err(format!("mosquitto exited with {status}"));
                }
                match Client::connect(hub.clone()).await {
                    Ok((client, _)) => {
                        client.disconnect().await;
                        return Ok(());
                    }
                    Err(ConnectionError::Io(_)) => {
                        // Not listening yet: the process is starting up.
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    Err(other) => return Err(format!("mosquitto refused the hub: {other}")),
                }
            }
        })
        .await;
        match ready {
            Ok(Ok(())) => {}
            Ok(Err(reason)) => panic!("{reason}: {}", self.stderr()),
            Err(_) => panic!(
                "mosquitto did not listen within {WAIT:?}: {}",
                self.stderr()
            ),
        }
    }

    fn stderr(&mut self) -> String {
        use std::io::Read;
        let _ = self.child.kill();
        let mut text = String::new();
        if let Some(stderr) = self.child.stderr.as_mut() {
            let _ = stderr.read_to_string(&mut text);
        }
        text
    }

    fn options(&self, fleet: &Fleet, username: &str) -> MqttOptions {
        options(
            loopback(self.port),
            username,
            username,
            &fleet.password(username),
        )
    }
}

fn free_port() -> u16 {
    TcpListener::bind(loopback(0))
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

/// Started as root, Mosquitto drops to the `mosquitto` user before reading the password and
/// ACL files; hand it the directory as an operator would.
fn readable_by_mosquitto(dir: &Path) {
    let running_as_root = std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0);
    if !running_as_root {
        return;
    }
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    let Some((uid, gid)) = passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.first() == Some(&"mosquitto")).then(|| {
            (
                fields[2].parse::<u32>().expect("uid"),
                fields[3].parse::<u32>().expect("gid"),
            )
        })
    }) else {
        return;
    };
    std::os::unix::fs::chown(dir, Some(uid), Some(gid)).expect("chown the mosquitto dir");
    for entry in std::fs::read_dir(dir).expect("list the mosquitto dir") {
        let path = entry.expect("dir entry").path();
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).expect("chown a mosquitto file");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mosquitto_with_the_generated_files_enforces_the_same_acl() {
    let fleet = Fleet::new();
    let mosquitto = Mosquitto::start(&fleet).await;
    let t = topics();

    // Credentials: right password in, wrong one out.
    let wrong = options(loopback(mosquitto.port), A, A, &fleet.password(B));
    assert_eq!(
        refused_with(Client::connect(wrong).await),
        ConnectReturnCode::NotAuthorized,
        "Mosquitto answers a wrong password with 5 (not authorized)"
    );

    let (mut hub, _) = Client::connect(mosquitto.options(&fleet, HUB_USERNAME))
        .await
        .expect("the hub connects to mosquitto");
    hub.publish(&t.desired(&node(B)), true, b"b's secret").await;
    hub.publish(&t.desired(&node(A)), true, b"a's own").await;
    hub.subscribe(&t.all_nodes(shoal_model::topic::Channel::Status))
        .await;

    // node-a cannot read node-b's desired state: whatever SUBACK Mosquitto gives, nothing is
    // delivered before node-a's own retained desired state.
    let (mut a, _) = Client::connect(mosquitto.options(&fleet, A))
        .await
        .expect("node-a connects to mosquitto");
    a.subscribe(&t.desired(&node(B))).await;
    a.subscribe(&t.all_nodes(shoal_model::topic::Channel::Desired))
        .await;
    a.subscribe(&t.desired(&node(A))).await;
    let first = a.next_publish().await;
    assert_eq!(
        (first.topic.as_str(), payload(&first)),
        (t.desired(&node(A)).as_str(), &b"a's own"[..])
    );

    // The hub reads every node's status; a status forged by node-a for node-b never arrives.
    let (mut b, _) = Client::connect(mosquitto.options(&fleet, B))
        .await
        .expect("node-b connects to mosquitto");
    a.publish(&t.status(&node(B)), false, b"forged").await;
    a.publish(&t.status(&node(A)), false, b"a status").await;
    let first = hub.next_publish().await;
    assert_eq!(
        (first.topic.as_str(), payload(&first)),
        (t.status(&node(A)).as_str(), &b"a status"[..])
    );
    b.publish(&t.status(&node(B)), false, b"b status").await;
    let second = hub.next_publish().await;
    assert_eq!(
        (second.topic.as_str(), payload(&second)),
        (t.status(&node(B)).as_str(), &b"b status"[..])
    );
}
