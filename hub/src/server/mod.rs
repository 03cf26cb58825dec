//! `shoal serve`: wires the store, the broker (embedded, or an external one), the hub's MQTT
//! client, the placement controller and the HTTP API together.
//!
//! Data directory: `hub.db` (SQLite, with the signing keys), `api-token` (the CLI's bearer
//! token, 0600), `mqtt-password` (the hub's own broker password, 0600) and `tls/` (the hub's
//! CA, `ca.crt` and `ca.key` (0600), and the server certificate issued from it at every
//! start), all created at first start.
//!
//! Secure by default: the embedded broker speaks MQTT over TLS only, and the API speaks HTTPS
//! whenever it listens beyond loopback; `--insecure` turns both to plain text.

pub mod controller;
pub mod mqtt;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use shoal_model::clock::wall_ms;
use shoal_model::endpoint::{ApiUrl, BrokerUrl, Host};
use shoal_model::topic::Topics;
use shoal_model::wire::signing::SigningKey;
use shoal_model::wire::Limits;
use tokio::sync::watch;

use crate::broker::{self, Authenticator, EmbeddedBroker, EmbeddedConfig, Identity, TlsFiles};
use crate::context::{Hub, Wake};
use crate::pki::Ca;
use crate::rpc::Rpc;
use crate::store::{self, KeyState, Store};

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
    pub advertise: Option<BrokerUrl>,
    /// The API URL devices enroll at; by default the API's listen address (or the advertised
    /// broker's host when the API listens on every address).
    pub advertise_api: Option<ApiUrl>,
    /// More names (DNS or IP) for the server certificate, beside the listen and advertised
    /// addresses, loopback and the host name.
    pub tls_names: Vec<String>,
    /// Plain MQTT and HTTP everywhere.
    pub insecure: bool,
    pub prefix: String,
    /// A `/metrics` series per container (see `Hub::container_metrics`).
    pub container_metrics: bool,
}

/// Where a started hub listens, and its token.
#[derive(Clone, Debug)]
pub struct Ready {
    pub api: SocketAddr,
    /// The API's URL from this machine: loopback when it listens on every address, `https`
    /// when it serves TLS.
    pub local_api: ApiUrl,
    /// The broker URL agents use.
    pub broker: BrokerUrl,
    pub token: String,
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
    // Made now rather than at the first release, so enrollment can hand devices its public
    // half from the start.
    let release_key = store.release_key(wall_ms())?;
    tracing::debug!(key = %release_key.public().id(), "the hub's release key");
    let token = secret(&options.data_dir.join("api-token"))?;
    let hub_password = secret(&options.data_dir.join("mqtt-password"))?;
    let topics = Topics::new(&options.prefix)?;
    let limits = Limits::default();
    let tls_dir = options.data_dir.join("tls");
    let ca = Ca::load_or_create(&tls_dir)?;
    let names = certificate_names(&options);
    let server_cert = ca.issue_server(&names)?;
    let tls_files = TlsFiles {
        cert_chain: tls_dir.join("server.crt"),
        key: tls_dir.join("server.key"),
    };
    server_cert.write(&tls_files.cert_chain, &tls_files.key)?;
    tracing::info!(names = ?names, ca = ca.fingerprint(), "server certificate issued");

    let (embedded, broker_url, advertised) = match &options.broker {
        Some(url) => (
            None,
            url.clone(),
            options.advertise.clone().unwrap_or_else(|| url.clone()),
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
                    tls: (!options.insecure).then(|| tls_files.clone()),
                },
                auth,
            )
            .await
            .context("cannot start the embedded MQTT broker")?;
            let addr = embedded.local_addr();
            // The hub's own client dials the address the broker listens on (loopback when it
            // listens on every address).
            let own = match addr.ip() {
                ip if ip.is_unspecified() && ip.is_ipv6() => Host::from(Ipv6Addr::LOCALHOST),
                ip if ip.is_unspecified() => Host::from(Ipv4Addr::LOCALHOST),
                ip => Host::from(ip),
            };
            let tls = !options.insecure;
            let local = BrokerUrl::new(tls, own, addr.port());
            let advertised = options.advertise.clone().unwrap_or_else(|| {
                let host = match addr.ip() {
                    ip if ip.is_unspecified() => Host::from(Ipv4Addr::LOCALHOST),
                    ip => Host::from(ip),
                };
                BrokerUrl::new(tls, host, addr.port())
            });
            (Some(embedded), local, advertised)
        }
    };
    let broker_ca = match &options.broker_ca {
        Some(path) => {
            Some(std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?)
        }
        // The embedded broker's certificate, and an external one's from `shoal broker-config`,
        // come from the hub's own CA.
        None if broker_url.is_tls() => Some(ca.cert_pem().as_bytes().to_vec()),
        None => None,
    };
    let (client, events) = mqtt::client(
        &mqtt::ClientOptions {
            broker: broker_url.clone(),
            password: hub_password.clone(),
            ca: broker_ca,
            keep_alive: Duration::from_secs(30),
        },
        &limits,
    );
    let listener = tokio::net::TcpListener::bind(options.listen_api)
        .await
        .with_context(|| format!("cannot listen for the API on {}", options.listen_api))?;
    let api = listener.local_addr()?;
    let api_tls = !options.insecure && !api.ip().is_loopback();
    let advertised_api = options.advertise_api.clone().unwrap_or_else(|| {
        let host = match api.ip() {
            ip if ip.is_unspecified() => advertised.host().clone(),
            ip => Host::from(ip),
        };
        ApiUrl::new(api_tls, host, Some(api.port()))
    });
    let rpc = Arc::new(Rpc::new(client.clone(), topics.clone(), limits));
    let hub = Arc::new(Hub {
        store,
        topics,
        limits,
        client,
        broker: broker_url.clone(),
        advertised: advertised.clone(),
        wake: Wake::default(),
        subscribed: watch::channel(false).0,
        retained: Mutex::new(BTreeMap::new()),
        decision: Mutex::new(None),
        rpc,
        token: token.clone(),
        hub_password,
        embedded,
        ca,
        advertised_api: advertised_api.clone(),
        counters: Default::default(),
        container_metrics: options.container_metrics,
    });
    tokio::spawn(mqtt::run(Arc::clone(&hub), events));
    let publisher = mqtt::Publisher::new(hub.client.clone(), hub.topics.clone());
    tokio::spawn(controller::run(Arc::clone(&hub), publisher));
    tracing::info!(%api, api_url = %advertised_api, broker = %advertised, data_dir = %options.data_dir.display(), "hub serving");
    if let Some(ready) = ready {
        let local = match api.ip() {
            ip if ip.is_unspecified() && ip.is_ipv6() => Host::from(Ipv6Addr::LOCALHOST),
            ip if ip.is_unspecified() => Host::from(Ipv4Addr::LOCALHOST),
            ip => Host::from(ip),
        };
        let _ = ready.send(Ready {
            api,
            local_api: ApiUrl::new(api_tls, local, Some(api.port())),
            broker: advertised,
            token,
        });
    }
    if api_tls {
        let listener = crate::api::tls::TlsListener::new(
            listener,
            server_cert.cert_chain_der(),
            server_cert.key_der(),
        )?;
        crate::api::serve_tls(listener, hub).await
    } else {
        crate::api::serve(listener, hub).await
    }
}

/// The names the server certificate is valid for: loopback, the host name, the addresses the
/// hub listens on (when specific), the hosts of the advertised URLs, and `--tls-name`.
fn certificate_names(options: &ServeOptions) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        let host = host.trim();
        if rustls::pki_types::ServerName::try_from(host.to_string()).is_ok() && !host.is_empty() {
            names.push(host.to_string());
        }
    }
    for addr in [options.listen_mqtt, options.listen_api] {
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
    }
    let advertised = [
        options.advertise.as_ref().map(BrokerUrl::host),
        options.advertise_api.as_ref().map(ApiUrl::host),
    ];
    names.extend(advertised.into_iter().flatten().map(Host::to_string));
    names.extend(options.tls_names.iter().cloned());
    let mut seen = std::collections::BTreeSet::new();
    names.retain(|name| seen.insert(name.clone()));
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(mqtt: &str, api: &str, advertise: Option<&str>, names: &[&str]) -> ServeOptions {
        ServeOptions {
            data_dir: PathBuf::from("/nonexistent"),
            listen_mqtt: mqtt.parse().expect("mqtt address"),
            listen_api: api.parse().expect("api address"),
            broker: None,
            broker_ca: None,
            advertise: advertise.map(|url| url.parse().expect("a broker url")),
            advertise_api: None,
            tls_names: names.iter().map(|n| n.to_string()).collect(),
            insecure: false,
            prefix: "shoal/v1".into(),
            container_metrics: true,
        }
    }

    #[test]
    fn the_certificate_covers_loopback_specific_listen_addresses_advertised_hosts_and_extra_names()
    {
        let names = certificate_names(&options(
            "10.0.0.1:8883",
            "0.0.0.0:7440",
            Some("mqtts://hub.example:8883"),
            &["192.168.1.5", "10.0.0.1"],
        ));
        for expected in [
            "localhost",
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "hub.example",
            "192.168.1.5",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} in {names:?}"
            );
        }
        assert!(!names.iter().any(|n| n == "0.0.0.0"), "{names:?}");
        let unique: std::collections::BTreeSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "no name twice: {names:?}");
        let v6 = certificate_names(&options(
            "[fd00::1]:8883",
            "127.0.0.1:7440",
            Some("mqtts://[fd00::2]:8883"),
            &[],
        ));
        assert!(
            v6.iter().any(|n| n == "fd00::1") && v6.iter().any(|n| n == "fd00::2"),
            "{v6:?}"
        );
    }
}
