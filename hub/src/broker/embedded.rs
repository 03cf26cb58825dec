//! The embedded MQTT broker: rmqtt 0.24 on the caller's tokio runtime, with the hub's
//! authentication and topic ACL as rmqtt hooks.
//!
//! What a client gets:
//! - CONNECT is accepted only when the username equals the client id, the [`Authenticator`]
//!   vouches for username and password, and the will topic (if any) is one the client may
//!   publish to;
//! - every SUBSCRIBE and PUBLISH is checked with [`acl::allowed`]; nobody is a superuser, not
//!   even the hub, so the hub too stays under its prefix;
//! - QoS up to 1, retained messages (in RAM), persistent sessions and last wills.
//!
//! rmqtt's defaults are wrong for a fleet in six ways, each observed with rmqtt 0.24 and each
//! guarded by a test in `hub/tests/broker.rs`:
//! 1. the publish ACL is not applied to will messages, so the will topic is checked at connect;
//! 2. retained messages expire after 5 minutes: the retainer runs with
//!    `retained_message_ttl = "0s"` (never);
//! 3. persistent sessions expire after 2 hours: they last [`SESSION_EXPIRY`];
//! 4. connections are refused while host CPU is above 90 %: the busy check is off;
//! 5. the listener does not set `SO_REUSEADDR`, so a restarted hub could not rebind for a
//!    minute: it does now;
//! 6. rmqtt forces rustls' aws-lc-rs provider while rumqttc enables ring, and with two providers
//!    linked rustls cannot pick one, so the hub's TLS client would panic:
//!    [`install_default_crypto_provider`] picks aws-lc-rs once per process.
//!
//! And a seventh found while reading rmqtt: messages queued for an offline persistent session
//! expire after 5 minutes (`message_expiry_interval`); here they are kept for as long as the
//! session, bounded by rmqtt's per-client queue of 1000 messages. And an eighth found with
//! `shoal-sim`: the listen backlog is 512, so when thousands of nodes connect at once (a hub
//! restart) the kernel drops their SYNs and they retry 1, 3 and 7 s later; it is [`BACKLOG`].

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use rmqtt::codec::types::QoS;
use rmqtt::codec::v5::SubscribeAckReason;
use rmqtt::context::{ServerContext, ServerContextBuilder};
use rmqtt::hook::{Handler, HookResult, Parameter, ReturnType, Type};
use rmqtt::net::Builder;
use rmqtt::server::MqttServer;
use rmqtt::session::Session;
use rmqtt::types::{
    AuthResult, ConnectInfo, Id, LastWill, PublishAclResult, Subscribe, SubscribeAclResult,
};
use shoal_model::topic::Topics;

use super::acl::{self, Action};
use super::{BrokerError, Identity};

/// How long the broker keeps the session of a disconnected client: its subscriptions and the
/// QoS 1 messages queued for it.
///
/// Seven days outlasts a long weekend or a week-long site outage, and a hub that is down for a
/// while, without losing a message; past that a client is more likely decommissioned than
/// coming back, and its queue would only hold memory. Nothing is lost when it does expire:
/// agents subscribe again at every connect and desired state is retained.
pub const SESSION_EXPIRY: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// Messages the broker queues per session while the client has not taken them. The hub's own
/// session takes every node's presence and statuses: after a hub restart, or when a fleet
/// comes online at once, that is a few messages per node in one burst, which rmqtt's default
/// (1,000) drops beyond, after it acknowledged them to the nodes (found with `shoal-sim`: 500
/// nodes starting together lost a quarter of their presences). Nodes' sessions only ever hold
/// their desired state and RPC requests, so the bound is for the hub's: room for a burst of
/// [`QUEUED_PER_NODE`] messages from 20,000 nodes.
pub const MAX_QUEUED: usize = 20_000 * QUEUED_PER_NODE;
/// A presence, a status and its successor per node.
const QUEUED_PER_NODE: usize = 4;
/// Messages the broker has in flight to one client before it waits for acknowledgements
/// (rmqtt's default is 16): the hub's client acknowledges up to 100 (`server::mqtt`).
const MAX_INFLIGHT: u16 = 100;

/// The listen backlog: connections the kernel accepts before the broker takes them, so a
/// fleet reconnecting at once waits in the queue instead of retrying its SYNs a second or more
/// later (the kernel caps it at `net.core.somaxconn`, 4096 on Debian 12).
pub const BACKLOG: i32 = 4096;

/// The rmqtt plugin that keeps retained messages.
const RETAINER: &str = "rmqtt-retainer";

/// Retainer settings: in RAM (the hub republishes desired state after a restart) and never
/// expiring (fix 2). Parsed by rmqtt's plugin config loader.
const RETAINER_CONFIG: &str = r#"
retained_message_ttl = "0s"

[storage]
type = "ram"
"#;

/// Priority of our hooks: above any other handler, and they stop the chain, so nothing
/// registered later can overrule an ACL decision.
const GATE_PRIORITY: u32 = u32::MAX;

/// Checks a client's credentials: the hub's store answers it.
///
/// Called once per CONNECT on a blocking thread, so it may read SQLite and hash.
pub trait Authenticator: Send + Sync + 'static {
    /// Who `username` is if `password` is theirs; `None` refuses the connection.
    fn authenticate(&self, username: &str, password: &str) -> Option<Identity>;
}

/// Where and how the embedded broker listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EmbeddedConfig {
    /// Address to listen on; port 0 picks a free port (see [`EmbeddedBroker::local_addr`]).
    pub listen: SocketAddr,
    /// The fleet's topic prefix, e.g. `shoal/v1`.
    pub prefix: String,
    /// Largest MQTT packet accepted; a client sending a bigger one is disconnected.
    pub max_packet_bytes: usize,
    /// Where the broker may keep state. Today retained messages and sessions live in RAM, so
    /// nothing is written here; a persistent retainer would put its files here.
    pub data_dir: PathBuf,
    /// MQTT over TLS with this certificate chain and key (PEM files); plain MQTT when `None`.
    pub tls: Option<TlsFiles>,
}

/// The PEM files of a TLS listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate, then its CA.
    pub cert_chain: PathBuf,
    pub key: PathBuf,
}

impl EmbeddedConfig {
    /// rmqtt's and Mosquitto's usual limit: room for a large desired state, small enough that a
    /// misbehaving client cannot make the hub buffer much.
    pub const DEFAULT_MAX_PACKET_BYTES: usize = 1024 * 1024;

    /// The configuration for `listen` with the default prefix and packet limit.
    pub fn new(listen: SocketAddr, data_dir: PathBuf) -> EmbeddedConfig {
        EmbeddedConfig {
            listen,
            prefix: Topics::DEFAULT_PREFIX.to_string(),
            max_packet_bytes: EmbeddedConfig::DEFAULT_MAX_PACKET_BYTES,
            data_dir,
            tls: None,
        }
    }
}

/// The settings rmqtt is actually running with, read back from rmqtt's own state rather than
/// from what we asked for: a later rmqtt that renames or ignores a setting shows up here.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EffectiveSettings {
    /// The retainer's `retained_message_ttl`; `Some(ZERO)` means retained messages never
    /// expire, `None` means they expire with the message expiry (fix 2).
    pub retained_message_ttl: Option<Duration>,
    /// Session expiry for clients that do not ask for one (MQTT 3.1.1) (fix 3).
    pub session_expiry: Duration,
    /// The most an MQTT 5 client may ask for; zero would mean unlimited.
    pub max_session_expiry: Duration,
    /// Expiry of queued messages without their own; zero means never.
    pub message_expiry: Duration,
    /// Whether rmqtt refuses connections when the host looks busy (fix 4).
    pub busy_check: bool,
    /// `SO_REUSEADDR` on the listening socket (fix 5).
    pub reuseaddr: Option<bool>,
    /// Whether clients without a username get in.
    pub allow_anonymous: bool,
    /// Largest packet accepted.
    pub max_packet_bytes: u32,
    /// Highest QoS granted.
    pub max_qos: u8,
}

/// The embedded broker, listening from [`EmbeddedBroker::start`] until dropped (or
/// [`EmbeddedBroker::shutdown`]), when it stops listening and disconnects every client.
#[derive(Debug)]
pub struct EmbeddedBroker {
    scx: ServerContext,
    local_addr: SocketAddr,
    topics: Topics,
    server: tokio::task::JoinHandle<()>,
    shut_down: bool,
}

impl EmbeddedBroker {
    /// Starts the broker on the current tokio runtime; returns once it is listening.
    pub async fn start(
        config: EmbeddedConfig,
        auth: Arc<dyn Authenticator>,
    ) -> Result<EmbeddedBroker, BrokerError> {
        install_default_crypto_provider();
        let topics = Topics::new(&config.prefix)?;
        let max_packet_bytes = u32::try_from(config.max_packet_bytes)
            .ok()
            .filter(|bytes| (1024..=256 * 1024 * 1024).contains(bytes))
            .ok_or(BrokerError::MaxPacketSize {
                bytes: config.max_packet_bytes,
            })?;

        let scx = server_context().build().await;

        let gate = scx.extends.hook_mgr().register();
        for hook in [
            Type::ClientAuthenticate,
            Type::ClientSubscribeCheckAcl,
            Type::MessagePublishCheckAcl,
        ] {
            let handler = Gate {
                topics: topics.clone(),
                auth: auth.clone(),
            };
            gate.add_priority(hook, GATE_PRIORITY, Box::new(handler))
                .await;
        }
        gate.start().await;

        rmqtt_retainer::register(&scx, true, true)
            .await
            .map_err(|source| BrokerError::Plugin {
                plugin: RETAINER,
                source: source.into(),
            })?;

        let listen_error = |source: rmqtt::Error| BrokerError::Listen {
            addr: config.listen,
            source: source.into(),
        };
        let (cert, key) = match &config.tls {
            Some(tls) => (
                Some(tls.cert_chain.display().to_string()),
                Some(tls.key.display().to_string()),
            ),
            None => (None, None),
        };
        let listener = Builder::new()
            .name("shoal")
            .tls_cert(cert)
            .tls_key(key)
            .laddr(config.listen)
            .reuseaddr(Some(true))
            .backlog(BACKLOG)
            .allow_anonymous(false)
            .max_packet_size(max_packet_bytes)
            .max_qos_allowed(QoS::AtLeastOnce)
            .max_mqueue_len(MAX_QUEUED)
            .max_inflight(
                std::num::NonZeroU16::new(MAX_INFLIGHT).unwrap_or(std::num::NonZeroU16::MIN),
            )
            .session_expiry_interval(SESSION_EXPIRY)
            .max_session_expiry_interval(SESSION_EXPIRY)
            .message_expiry_interval(Duration::ZERO)
            .bind()
            .and_then(|listener| {
                if config.tls.is_some() {
                    listener.tls()
                } else {
                    listener.tcp()
                }
            })
            .map_err(listen_error)?;
        let local_addr = listener.local_addr().map_err(listen_error)?;

        // rmqtt keys listeners by port; with port 0 that is the port the OS picked.
        let server = MqttServer::new(scx.clone())
            .listener_by_id(listener, local_addr.port())
            .build();
        let server = tokio::spawn(async move {
            if let Err(error) = server.run().await {
                tracing::error!(%error, "the embedded MQTT broker stopped");
            }
        });
        tracing::info!(%local_addr, prefix = topics.prefix(), "embedded MQTT broker listening");
        Ok(EmbeddedBroker {
            scx,
            local_addr,
            topics,
            server,
            shut_down: false,
        })
    }

    /// The address the broker listens on, with the real port when it was started on port 0.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The topics of the fleet this broker serves.
    pub fn topics(&self) -> &Topics {
        &self.topics
    }

    /// Disconnects `client_id` and discards its session (subscriptions and queued messages), as
    /// when a node is removed. Its last will is published, as for any unexpected disconnect.
    /// Returns whether there was a session. The client may reconnect at once if the
    /// [`Authenticator`] still accepts it, so remove its credentials first.
    pub async fn disconnect(&self, client_id: &str) -> bool {
        let id = {
            let shared = self.scx.extends.shared().await;
            let found = shared
                .iter()
                .map(|entry| entry.id())
                .find(|id| &*id.client_id == client_id);
            found
        };
        match id {
            Some(id) => {
                kick(&self.scx, id).await;
                tracing::info!(
                    client_id,
                    "disconnected MQTT client and discarded its session"
                );
                true
            }
            None => false,
        }
    }

    /// The settings rmqtt is running with; see [`EffectiveSettings`].
    pub async fn effective_settings(&self) -> Result<EffectiveSettings, BrokerError> {
        let retainer = self
            .scx
            .plugins
            .get_config(RETAINER)
            .await
            .map_err(|error| BrokerError::Settings {
                what: "retainer",
                reason: error.to_string(),
            })?;
        let retained_message_ttl = serde_json::from_value::<Option<Duration>>(
            retainer
                .get("retained_message_ttl")
                .cloned()
                .unwrap_or_default(),
        )
        .map_err(|error| BrokerError::Settings {
            what: "retained_message_ttl",
            reason: error.to_string(),
        })?;
        let listener = self
            .scx
            .listen_cfgs
            .get(&self.local_addr.port())
            .map(|entry| entry.value().clone())
            .ok_or_else(|| BrokerError::Settings {
                what: "listener",
                reason: format!("no listener registered for port {}", self.local_addr.port()),
            })?;
        Ok(EffectiveSettings {
            retained_message_ttl,
            session_expiry: listener.session_expiry_interval,
            max_session_expiry: listener.max_session_expiry_interval,
            message_expiry: listener.message_expiry_interval,
            busy_check: self.scx.busy_check_enable,
            reuseaddr: listener.reuseaddr,
            allow_anonymous: listener.allow_anonymous,
            max_packet_bytes: listener.max_packet_size,
            max_qos: listener.max_qos_allowed.value(),
        })
    }

    /// Stops listening, then disconnects every client and discards the sessions.
    pub async fn shutdown(mut self) {
        self.server.abort();
        kick_all(self.scx.clone()).await;
        self.shut_down = true;
        tracing::info!(local_addr = %self.local_addr, "embedded MQTT broker stopped");
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        if self.shut_down {
            return;
        }
        self.server.abort();
        // Connections run in their own tasks; without a kick they would outlive the broker.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(kick_all(self.scx.clone()));
        }
    }
}

/// Makes aws-lc-rs the process's rustls crypto provider, once; later calls do nothing.
///
/// rmqtt links rustls with aws-lc-rs and rumqttc links it with ring; with two providers and no
/// default, rustls panics when the hub's MQTT client builds a TLS config. Call this before any
/// TLS client starts, also when the hub uses an external broker: the providers are linked into
/// the `shoal` binary either way. aws-lc-rs is the one rmqtt already uses for the server side.
pub fn install_default_crypto_provider() {
    // Err means a provider is already installed, which is all we need.
    let _ = rmqtt::net::tls_provider::default_provider().install_default();
}

/// rmqtt's server context with our fixes for busy check and retainer.
fn server_context() -> ServerContextBuilder {
    ServerContext::new()
        .busy_check_enable(false)
        .plugins_config_map_add(RETAINER, RETAINER_CONFIG)
}

/// Disconnects one session and discards it, without waiting for the client to come back.
async fn kick(scx: &ServerContext, id: Id) {
    let entry = scx.extends.shared().await.entry(id.clone());
    match entry.try_lock().await {
        Ok(mut entry) => {
            if let Err(error) = entry.kick(true, true, true).await {
                tracing::warn!(client_id = %id.client_id, %error, "could not disconnect MQTT client");
            }
        }
        Err(error) => {
            tracing::warn!(client_id = %id.client_id, %error, "could not disconnect MQTT client, it is busy connecting");
        }
    }
}

async fn kick_all(scx: ServerContext) {
    let ids: Vec<Id> = {
        let shared = scx.extends.shared().await;
        shared.iter().map(|entry| entry.id()).collect()
    };
    for id in ids {
        kick(&scx, id).await;
    }
}

/// Why a CONNECT is refused; logged, and mapped to the CONNACK code the client sees.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Refusal {
    NoUsername,
    UsernameIsNotClientId,
    NoPassword,
    BadCredentials,
    IdentityMismatch(Identity),
    WillNotAllowed(String),
}

impl Refusal {
    fn auth_result(&self) -> AuthResult {
        match self {
            Refusal::NoUsername | Refusal::NoPassword | Refusal::BadCredentials => {
                AuthResult::BadUsernameOrPassword
            }
            Refusal::UsernameIsNotClientId
            | Refusal::IdentityMismatch(_)
            | Refusal::WillNotAllowed(_) => AuthResult::NotAuthorized,
        }
    }
}

/// What the gate needs from a CONNECT, owned so it can cross to a blocking thread.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ConnectRequest {
    client_id: String,
    username: Option<String>,
    /// `None` when absent or not UTF-8 (our passwords are base64 text).
    password: Option<String>,
    will_topic: Option<String>,
    remote_addr: Option<SocketAddr>,
}

impl ConnectRequest {
    fn from_connect(info: &ConnectInfo) -> ConnectRequest {
        ConnectRequest {
            client_id: info.client_id().to_string(),
            username: info.username().map(|name| name.to_string()),
            password: info
                .password()
                .and_then(|password| std::str::from_utf8(password).ok())
                .map(str::to_string),
            will_topic: info.last_will().map(|will| match will {
                LastWill::V3(will) => will.topic.to_string(),
                LastWill::V5(will) => will.topic.to_string(),
            }),
            remote_addr: info.id().remote_addr,
        }
    }
}

/// The checks before asking the [`Authenticator`]: the credentials to ask about.
fn credentials(request: &ConnectRequest) -> Result<(&str, &str), Refusal> {
    let username = request.username.as_deref().ok_or(Refusal::NoUsername)?;
    if username != request.client_id {
        return Err(Refusal::UsernameIsNotClientId);
    }
    let password = request.password.as_deref().ok_or(Refusal::NoPassword)?;
    Ok((username, password))
}

/// The checks after the [`Authenticator`] answered.
fn admit(
    topics: &Topics,
    request: &ConnectRequest,
    authenticated: Option<Identity>,
) -> Result<Identity, Refusal> {
    let identity = authenticated.ok_or(Refusal::BadCredentials)?;
    // The ACL hooks know a session only by its username, so it must name this identity.
    if Some(identity.username()) != request.username.as_deref() {
        return Err(Refusal::IdentityMismatch(identity));
    }
    // Fix 1: rmqtt publishes wills without the publish ACL, so check the will topic here.
    if let Some(topic) = &request.will_topic {
        if !acl::allowed(topics, &identity, Action::Publish, topic) {
            return Err(Refusal::WillNotAllowed(topic.clone()));
        }
    }
    Ok(identity)
}

async fn authenticate(
    topics: Topics,
    auth: Arc<dyn Authenticator>,
    request: ConnectRequest,
) -> AuthResult {
    let decision = match credentials(&request) {
        Err(refusal) => Err(refusal),
        Ok((username, password)) => {
            let (username, password) = (username.to_string(), password.to_string());
            let answer =
                tokio::task::spawn_blocking(move || auth.authenticate(&username, &password)).await;
            match answer {
                Ok(authenticated) => admit(&topics, &request, authenticated),
                Err(error) => {
                    tracing::error!(client_id = %request.client_id, %error, "the authenticator failed; refusing the client");
                    Err(Refusal::BadCredentials)
                }
            }
        }
    };
    match decision {
        Ok(identity) => {
            tracing::debug!(client_id = %request.client_id, %identity, "MQTT client authenticated");
            AuthResult::Allow(false, None)
        }
        Err(refusal) => {
            let client_id = &request.client_id;
            let remote = request
                .remote_addr
                .map(|addr| addr.to_string())
                .unwrap_or_default();
            match &refusal {
                Refusal::BadCredentials | Refusal::NoPassword | Refusal::NoUsername => {
                    tracing::info!(
                        client_id,
                        remote,
                        "MQTT connection refused: bad username or password"
                    )
                }
                Refusal::UsernameIsNotClientId => tracing::warn!(
                    client_id,
                    remote,
                    "MQTT connection refused: the username must equal the client id"
                ),
                Refusal::IdentityMismatch(identity) => tracing::error!(
                    client_id,
                    remote,
                    %identity,
                    "MQTT connection refused: the authenticator vouched for a different identity"
                ),
                Refusal::WillNotAllowed(topic) => tracing::warn!(
                    client_id,
                    remote,
                    topic,
                    "MQTT connection refused: the client may not publish its will topic"
                ),
            }
            refusal.auth_result()
        }
    }
}

/// The identity of an authenticated session, from its username: [`admit`] made sure the
/// username names the identity the [`Authenticator`] vouched for.
fn session_identity(session: &Session) -> Option<Identity> {
    session
        .id
        .username
        .as_deref()
        .and_then(Identity::from_username)
}

/// The filter as the client wrote it, with `$share/{group}/` if rmqtt parsed that off.
fn written_filter(subscribe: &Subscribe) -> String {
    match subscribe.opts.shared_group() {
        Some(group) => format!("$share/{group}/{}", subscribe.topic_filter),
        None => subscribe.topic_filter.to_string(),
    }
}

fn subscribe_decision(topics: &Topics, session: &Session, subscribe: &Subscribe) -> HookResult {
    let filter = written_filter(subscribe);
    let who = session_identity(session);
    let result = if who
        .as_ref()
        .is_some_and(|who| acl::allowed(topics, who, Action::Subscribe, &filter))
    {
        SubscribeAclResult::new_success(subscribe.opts.qos(), None)
    } else {
        tracing::warn!(client_id = %session.id.client_id, filter, "MQTT subscribe refused by the ACL");
        SubscribeAclResult::new_failure(SubscribeAckReason::NotAuthorized)
    };
    HookResult::SubscribeAclResult(result)
}

fn publish_decision(topics: &Topics, session: &Session, topic: &str) -> HookResult {
    let who = session_identity(session);
    let result = if who
        .as_ref()
        .is_some_and(|who| acl::allowed(topics, who, Action::Publish, topic))
    {
        PublishAclResult::allow()
    } else {
        // Dropped like Mosquitto does, without disconnecting: a node stuck in a reconnect loop
        // would be worse than a node whose stray messages go nowhere.
        tracing::warn!(client_id = %session.id.client_id, topic, "MQTT publish refused by the ACL");
        PublishAclResult::rejected(false, None)
    };
    HookResult::PublishAclResult(result)
}

/// Our rmqtt hook: authentication and both ACL checks. It always ends the chain with a
/// decision, so no default (allow) or other plugin can slip in after it.
struct Gate {
    topics: Topics,
    auth: Arc<dyn Authenticator>,
}

type HookFuture<'a> = Pin<Box<dyn Future<Output = ReturnType> + Send + 'a>>;

impl Handler for Gate {
    // The signature `#[async_trait]` gives `async fn hook(&self, param: &Parameter, acc:
    // Option<HookResult>) -> ReturnType`, written out because async-trait is not our dependency.
    fn hook<'life0, 'life1, 'async_trait>(
        &'life0 self,
        param: &'life1 Parameter<'_>,
        acc: Option<HookResult>,
    ) -> HookFuture<'async_trait>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        match param {
            Parameter::ClientAuthenticate(info) => {
                let request = ConnectRequest::from_connect(info);
                let (topics, auth) = (self.topics.clone(), self.auth.clone());
                Box::pin(async move {
                    let result = authenticate(topics, auth, request).await;
                    (false, Some(HookResult::AuthResult(result)))
                })
            }
            Parameter::ClientSubscribeCheckAcl(session, subscribe) => {
                let decision = subscribe_decision(&self.topics, session, subscribe);
                Box::pin(std::future::ready((false, Some(decision))))
            }
            Parameter::MessagePublishCheckAcl(session, publish) => {
                let decision = publish_decision(&self.topics, session, &publish.topic);
                Box::pin(std::future::ready((false, Some(decision))))
            }
            _ => Box::pin(std::future::ready((true, acc))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_model::topic::NodeId;

    fn node(id: &str) -> Identity {
        Identity::Node(NodeId::new(id).expect("valid node id"))
    }

    fn request(client_id: &str, username: Option<&str>, will: Option<&str>) -> ConnectRequest {
        ConnectRequest {
            client_id: client_id.into(),
            username: username.map(Into::into),
            password: Some("pw".into()),
            will_topic: will.map(Into::into),
            remote_addr: None,
        }
    }

    #[test]
    fn connects_need_a_username_equal_to_the_client_id_and_a_password() {
        assert_eq!(credentials(&request("a", Some("a"), None)), Ok(("a", "pw")));
        assert_eq!(
            credentials(&request("a", None, None)),
            Err(Refusal::NoUsername)
        );
        assert_eq!(
            credentials(&request("a", Some("b"), None)),
            Err(Refusal::UsernameIsNotClientId)
        );
        let mut no_password = request("a", Some("a"), None);
        no_password.password = None;
        assert_eq!(credentials(&no_password), Err(Refusal::NoPassword));
    }

    #[test]
    fn a_will_outside_the_clients_own_publish_topics_refuses_the_connect() {
        let topics = Topics::default();
        let cases = [
            (None, Ok(node("node-a"))),
            (Some("shoal/v1/node/node-a/presence"), Ok(node("node-a"))),
            (
                Some("shoal/v1/node/node-b/desired"),
                Err(Refusal::WillNotAllowed(
                    "shoal/v1/node/node-b/desired".into(),
                )),
            ),
            (
                Some("shoal/v1/node/node-a/desired"),
                Err(Refusal::WillNotAllowed(
                    "shoal/v1/node/node-a/desired".into(),
                )),
            ),
            (
                Some("elsewhere"),
                Err(Refusal::WillNotAllowed("elsewhere".into())),
            ),
        ];
        for (will, expected) in cases {
            let request = request("node-a", Some("node-a"), will);
            assert_eq!(
                admit(&topics, &request, Some(node("node-a"))),
                expected,
                "{will:?}"
            );
        }
    }

    #[test]
    fn the_authenticator_must_vouch_for_the_identity_the_username_names() {
        let topics = Topics::default();
        let request = request("node-a", Some("node-a"), None);
        assert_eq!(admit(&topics, &request, None), Err(Refusal::BadCredentials));
        assert_eq!(
            admit(&topics, &request, Some(node("node-b"))),
            Err(Refusal::IdentityMismatch(node("node-b")))
        );
        assert_eq!(
            admit(&topics, &request, Some(Identity::Hub)),
            Err(Refusal::IdentityMismatch(Identity::Hub))
        );
    }

    #[test]
    fn refusals_map_to_the_connack_codes_clients_understand() {
        assert!(matches!(
            Refusal::BadCredentials.auth_result(),
            AuthResult::BadUsernameOrPassword
        ));
        assert!(matches!(
            Refusal::WillNotAllowed("x".into()).auth_result(),
            AuthResult::NotAuthorized
        ));
        assert!(matches!(
            Refusal::UsernameIsNotClientId.auth_result(),
            AuthResult::NotAuthorized
        ));
    }

    #[tokio::test]
    async fn rmqtt_does_not_report_busy_even_on_a_host_it_considers_overloaded() {
        // A node whose load thresholds are below zero is always "overloaded" to rmqtt; with
        // our context it must still not refuse connections (fix 4).
        let overloaded = rmqtt::node::Node::new(0, -1.0, -1.0, Duration::from_millis(1));
        let scx = server_context().node(overloaded).build().await;
        assert!(!scx.busy_check_enable);
        assert!(!scx.is_busy().await);
    }

    #[test]
    fn installing_the_crypto_provider_twice_is_harmless() {
        install_default_crypto_provider();
        install_default_crypto_provider();
        assert!(rmqtt::net::rustls::crypto::CryptoProvider::get_default().is_some());
    }
}
