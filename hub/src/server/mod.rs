//! `shoal serve`: wires the store, the broker (embedded, or an external one), the hub's MQTT
//! client, the placement controller and the HTTP API together.
//!
//! Data directory: `hub.db` (SQLite), `api-token` (the CLI's bearer token, 0600) and
//! `mqtt-password` (the hub's own broker password, 0600), all created at first start.

pub mod controller;
pub mod mqtt;
pub mod rpc;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use shoal_model::topic::Topics;
use shoal_model::wire::signing::SigningKey;
use shoal_model::wire::Limits;
use tokio::sync::{watch, Notify};

use crate::broker::{self, Authenticator, BrokerUrl, EmbeddedBroker, EmbeddedConfig, Identity};
use crate::scheduler::Decision;
use crate::store::{self, KeyState, Store};

/// Wall-clock ms since the Unix epoch.
pub fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// What `shoal serve` is told.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub data_dir: PathBuf,
    /// Where the embedded broker listens; unused with `broker`.
    pub listen_mqtt: SocketAddr,
    pub listen_api: SocketAddr,
    /// An external broker instead of the embedded one.
    pub broker: Option<BrokerUrl>,
    /// PEM CA certificate of an external `mqtts://` broker.
    pub broker_ca: Option<PathBuf>,
    /// The broker URL agents are told to use (`shoal node add`); by default the listen address,
    /// with loopback for an unspecified host.
    pub advertise: Option<String>,
    pub prefix: String,
}

/// Where a started hub listens, and its token.
#[derive(Clone, Debug)]
pub struct Ready {
    pub api: SocketAddr,
    /// The broker URL agents use.
    pub broker: String,
    pub token: String,
}

/// Everything the hub's tasks share.
#[derive(Debug)]
pub struct Hub {
    /// Shared with the embedded broker's authentication.
    pub store: Arc<Store>,
    pub topics: Topics,
    pub limits: Limits,
    pub client: rumqttc::AsyncClient,
    /// The broker as the hub connects to it.
    pub broker: String,
    /// The broker URL given to agents.
    pub advertised: String,
    /// Wakes the controller.
    pub changed: Notify,
    /// Whether the hub's client is connected and subscribed.
    pub subscribed: watch::Sender<bool>,
    /// Generation of the desired state the broker retains, per node.
    pub retained: Mutex<BTreeMap<String, u64>>,
    /// The scheduler's last decision, with its reasons.
    pub decision: Mutex<Option<Decision>>,
    pub rpc: rpc::Pending,
    pub token: String,
    pub hub_password: String,
    pub embedded: Option<EmbeddedBroker>,
}

/// The broker asks the store who is connecting.
#[derive(Debug)]
struct StoreAuthenticator {
    store: Arc<Store>,
    hub_password: String,
}

impl Authenticator for StoreAuthenticator {
    fn authenticate(&self, username: &str, password: &str) -> Option<Identity> {
        if username == broker::HUB_USERNAME {
            return broker::password::constant_time_eq(
                password.as_bytes(),
                self.hub_password.as_bytes(),
            )
            .then_some(Identity::Hub);
        }
        let node = shoal_model::topic::NodeId::new(username).ok()?;
        let hash = self.store.password_hash(username).ok()??;
        broker::password::verify(password, &hash).then_some(Identity::Node(node))
    }
}

/// Reads a secret file, or creates it with a fresh random value (0600).
pub fn secret(path: &Path) -> anyhow::Result<String> {
    if let Ok(existing) = std::fs::read_to_string(path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(existing);
        }
    }
    let value = broker::password::generate();
    write_private(path, value.as_bytes())?;
    Ok(value)
}

pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Starts every part of the hub and runs until the process stops. `ready` receives where it
/// listens once the API accepts requests.
pub async fn serve(
    options: ServeOptions,
    ready: Option<tokio::sync::oneshot::Sender<Ready>>,
) -> anyhow::Result<()> {
    // rmqtt links aws-lc-rs and rumqttc ring: choose one before any TLS client or server starts.
    broker::install_default_crypto_provider();
    std::fs::create_dir_all(&options.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            options.data_dir.display()
        )
    })?;
    // It holds the node password hashes, the API token and the hub's broker password.
    std::fs::set_permissions(
        &options.data_dir,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .with_context(|| {
        format!(
            "cannot restrict {} to its owner",
            options.data_dir.display()
        )
    })?;
    let store = Arc::new(Store::open(&options.data_dir)?);
    // Presence is known again only from the broker: its retained messages (an external broker)
    // or the agents' reconnections (the embedded one). Until then no node counts as online, so
    // a node that does not come back after a hub restart is shown offline and can be rescheduled.
    store.mark_all_offline(wall_ms())?;
    if store::key_ring(&store.signing_keys()?)?.is_none() {
        let (key, pkcs8) = SigningKey::generate()?;
        store.add_signing_key(key.public(), &pkcs8, KeyState::Active, wall_ms())?;
        tracing::info!(key = %key.public().id(), "created the hub's signing key");
    }
    let token = secret(&options.data_dir.join("api-token"))?;
    let hub_password = secret(&options.data_dir.join("mqtt-password"))?;
    let topics = Topics::new(&options.prefix)?;
    let limits = Limits::default();

    let (embedded, broker_url, advertised) = match &options.broker {
        Some(url) => (
            None,
            url.clone(),
            options.advertise.clone().unwrap_or_else(|| url.to_string()),
        ),
        None => {
            let auth = Arc::new(StoreAuthenticator {
                store: Arc::clone(&store),
                hub_password: hub_password.clone(),
            });
            let embedded = EmbeddedBroker::start(
                EmbeddedConfig {
                    listen: options.listen_mqtt,
                    prefix: options.prefix.clone(),
                    max_packet_bytes: limits.desired + 64 * 1024,
                    data_dir: options.data_dir.join("broker"),
                },
                auth,
            )
            .await
            .context("cannot start the embedded MQTT broker")?;
            let addr = embedded.local_addr();
            // The hub's own client dials the address the broker listens on (loopback when it
            // listens on every address).
            let own = match addr.ip() {
                ip if ip.is_unspecified() && ip.is_ipv6() => "[::1]".to_string(),
                ip if ip.is_unspecified() => "127.0.0.1".to_string(),
                std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                std::net::IpAddr::V4(ip) => ip.to_string(),
            };
            let local: BrokerUrl = format!("mqtt://{own}:{}", addr.port()).parse()?;
            let advertised = options.advertise.clone().unwrap_or_else(|| {
                let host = if addr.ip().is_unspecified() {
                    "127.0.0.1".to_string()
                } else {
                    addr.ip().to_string()
                };
                format!("mqtt://{host}:{}", addr.port())
            });
            (Some(embedded), local, advertised)
        }
    };
    let ca = match &options.broker_ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        None => None,
    };
    let (client, events) = mqtt::client(
        &mqtt::ClientOptions {
            broker: broker_url.clone(),
            password: hub_password.clone(),
            ca,
            keep_alive: Duration::from_secs(30),
        },
        &limits,
    );
    let hub = Arc::new(Hub {
        store,
        topics,
        limits,
        client,
        broker: broker_url.to_string(),
        advertised: advertised.clone(),
        changed: Notify::new(),
        subscribed: watch::channel(false).0,
        retained: Mutex::new(BTreeMap::new()),
        decision: Mutex::new(None),
        rpc: rpc::Pending::default(),
        token: token.clone(),
        hub_password,
        embedded,
    });
    tokio::spawn(mqtt::run(Arc::clone(&hub), events));
    tokio::spawn(controller::run(Arc::clone(&hub)));
    let listener = tokio::net::TcpListener::bind(options.listen_api)
        .await
        .with_context(|| format!("cannot listen for the API on {}", options.listen_api))?;
    let api = listener.local_addr()?;
    tracing::info!(%api, broker = %advertised, data_dir = %options.data_dir.display(), "hub serving");
    if let Some(ready) = ready {
        let _ = ready.send(Ready {
            api,
            broker: advertised,
            token,
        });
    }
    crate::api::serve(listener, hub).await
}
