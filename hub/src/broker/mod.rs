//! The hub's MQTT broker layer: who may connect, what each client may touch, and the broker
//! itself.
//!
//! - [`password`]: per-client credentials, stored in Mosquitto 2.0's password-file format so the
//!   same hashes work for the embedded broker and for an external Mosquitto.
//! - [`acl`]: the topic ACL as one pure function: a node sees only its own topics, the hub only
//!   the fleet's prefix.
//! - [`embedded`]: the default broker, rmqtt running on the hub's tokio runtime, with the hub's
//!   authentication and ACL hooked in.
//! - [`mosquitto`]: the configuration that makes an external Mosquitto enforce the same rules.
//!
//! Invariant: every broker Shoal runs or configures enforces [`acl::allowed`]; the tests in
//! `hub/tests/broker.rs` check it against the real brokers.

pub mod acl;
pub mod embedded;
pub mod mosquitto;
pub mod password;

use std::fmt;
use std::str::FromStr;

use shoal_model::topic::{NodeId, TopicError};

pub use acl::{allowed, Action};
pub use embedded::{
    install_default_crypto_provider, Authenticator, EffectiveSettings, EmbeddedBroker,
    EmbeddedConfig, TlsFiles,
};
pub use mosquitto::{mosquitto_files, MosquittoFiles};

/// The MQTT username (and client id) of the hub's own client.
///
/// The leading underscore keeps it out of the node-id space: node ids are DNS labels, which
/// cannot contain `_`, so no node can ever be enrolled under this name.
pub const HUB_USERNAME: &str = "_shoal-hub";

/// Who an authenticated MQTT client is; decides what [`acl::allowed`] lets it do.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// The hub: anything under the fleet's topic prefix.
    Hub,
    /// An enrolled node: its own topics only.
    Node(NodeId),
}

impl Identity {
    /// The username (and client id) this identity connects with.
    pub fn username(&self) -> &str {
        match self {
            Identity::Hub => HUB_USERNAME,
            Identity::Node(node) => node.as_str(),
        }
    }

    /// The identity a username stands for: [`HUB_USERNAME`] is the hub, a DNS label is a node,
    /// anything else is nobody.
    pub fn from_username(username: &str) -> Option<Identity> {
        if username == HUB_USERNAME {
            Some(Identity::Hub)
        } else {
            NodeId::new(username).ok().map(Identity::Node)
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Hub => f.write_str("the hub"),
            Identity::Node(node) => write!(f, "node {node}"),
        }
    }
}

/// Why the broker layer could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid topic prefix for the broker: {0}")]
    Prefix(#[from] TopicError),
    #[error("max packet size {bytes} bytes is out of range: use 1 KiB to 256 MiB")]
    MaxPacketSize { bytes: usize },
    #[error(
        "cannot listen for MQTT on {addr}: {source}; is another broker or hub using that port?"
    )]
    Listen {
        addr: std::net::SocketAddr,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot start the broker's {plugin} plugin: {source}")]
    Plugin {
        plugin: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot read the broker's {what} setting back: {reason}")]
    Settings { what: &'static str, reason: String },
    #[error(
        "`{url}` is not a broker url: {reason} (expected mqtt://HOST:PORT or mqtts://HOST:PORT)"
    )]
    Url { url: String, reason: String },
}

/// How to reach a broker: plain MQTT or MQTT over TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BrokerScheme {
    /// `mqtt://`, plain TCP, default port 1883.
    Mqtt,
    /// `mqtts://`, TLS, default port 8883.
    Mqtts,
}

impl BrokerScheme {
    /// The IANA port of the scheme.
    pub fn default_port(self) -> u16 {
        match self {
            BrokerScheme::Mqtt => 1883,
            BrokerScheme::Mqtts => 8883,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            BrokerScheme::Mqtt => "mqtt",
            BrokerScheme::Mqtts => "mqtts",
        }
    }
}

/// A broker address as given to `shoal serve --broker` and in the agent config:
/// `mqtt://host[:port]` or `mqtts://host[:port]`.
///
/// Only scheme, host and port: credentials come from enrollment, never from the url, and a
/// path, query or fragment would mean nothing to an MQTT broker, so they are refused rather than
/// ignored.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BrokerUrl {
    scheme: BrokerScheme,
    host: String,
    port: u16,
}

impl BrokerUrl {
    pub fn scheme(&self) -> BrokerScheme {
        self.scheme
    }

    /// The host name or IP address, without brackets for IPv6.
    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the connection must use TLS.
    pub fn is_tls(&self) -> bool {
        self.scheme == BrokerScheme::Mqtts
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(
                f,
                "{}://[{}]:{}",
                self.scheme.as_str(),
                self.host,
                self.port
            )
        } else {
            write!(f, "{}://{}:{}", self.scheme.as_str(), self.host, self.port)
        }
    }
}

impl FromStr for BrokerUrl {
    type Err = BrokerError;

    fn from_str(url: &str) -> Result<BrokerUrl, BrokerError> {
        parse_broker_url(url).map_err(|reason| BrokerError::Url {
            url: url.to_string(),
            reason,
        })
    }
}

impl TryFrom<&str> for BrokerUrl {
    type Error = BrokerError;

    fn try_from(url: &str) -> Result<BrokerUrl, BrokerError> {
        url.parse()
    }
}

fn parse_broker_url(url: &str) -> Result<BrokerUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "it has no scheme".to_string())?;
    let scheme = match scheme.to_ascii_lowercase().as_str() {
        "mqtt" => BrokerScheme::Mqtt,
        "mqtts" => BrokerScheme::Mqtts,
        "tcp" => return Err("write `mqtt://` instead of `tcp://`".into()),
        "ssl" | "tls" => return Err(format!("write `mqtts://` instead of `{scheme}://`")),
        other => return Err(format!("unsupported scheme `{other}`")),
    };
    if rest.contains('@') {
        return Err(
            "credentials do not belong in the url; nodes and the hub get theirs from enrollment"
                .into(),
        );
    }
    // A single trailing `/` is what people paste; anything after it is a path we cannot honour.
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#']) {
        return Err("a broker url has no path, query or fragment".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| "an IPv6 address needs a closing `]`".to_string())?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("`{host}` is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| format!("unexpected `{after}` after the IPv6 address"))?,
            ),
        };
        (host, port)
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the host is empty".into());
    }
    if !authority.starts_with('[') {
        check_host_name(host)?;
    }
    let port = match port {
        None => scheme.default_port(),
        Some(port) => match port.parse::<u16>() {
            Ok(0) => return Err("port 0 cannot be connected to".into()),
            Ok(port) => port,
            Err(_) => return Err(format!("`{port}` is not a port number (1-65535)")),
        },
    };
    Ok(BrokerUrl {
        scheme,
        host: host.to_string(),
        port,
    })
}

/// A DNS name or IPv4 address: dot-separated labels of ASCII letters, digits and `-`.
fn check_host_name(host: &str) -> Result<(), String> {
    if host.len() > 253 {
        return Err("the host name is longer than 253 characters".into());
    }
    for label in host.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!("`{host}` is not a host name or IP address"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> BrokerUrl {
        text.parse().expect(text)
    }

    #[test]
    fn broker_urls_take_the_default_port_of_their_scheme() {
        let cases = [
            (
                "mqtt://hub.example",
                BrokerScheme::Mqtt,
                "hub.example",
                1883,
            ),
            (
                "mqtts://hub.example",
                BrokerScheme::Mqtts,
                "hub.example",
                8883,
            ),
            (
                "mqtt://10.0.0.5:11883",
                BrokerScheme::Mqtt,
                "10.0.0.5",
                11883,
            ),
            ("mqtts://broker:443/", BrokerScheme::Mqtts, "broker", 443),
            (
                "MQTTS://Hub.Example:8884",
                BrokerScheme::Mqtts,
                "Hub.Example",
                8884,
            ),
            ("mqtt://[::1]:1884", BrokerScheme::Mqtt, "::1", 1884),
            ("mqtts://[fd00::7]", BrokerScheme::Mqtts, "fd00::7", 8883),
        ];
        for (text, scheme, host, port) in cases {
            let parsed = url(text);
            assert_eq!(
                (parsed.scheme(), parsed.host(), parsed.port()),
                (scheme, host, port),
                "{text}"
            );
            assert_eq!(parsed.is_tls(), scheme == BrokerScheme::Mqtts);
            assert_eq!(url(&parsed.to_string()), parsed, "{text} round-trips");
        }
    }

    #[test]
    fn broker_urls_that_cannot_be_honoured_are_refused_with_the_reason() {
        let cases = [
            ("hub.example:1883", "no scheme"),
            ("http://hub.example", "unsupported scheme `http`"),
            ("tcp://hub.example", "write `mqtt://` instead of `tcp://`"),
            ("ssl://hub.example", "write `mqtts://` instead of `ssl://`"),
            ("mqtt://", "host is empty"),
            ("mqtt://:1883", "host is empty"),
            ("mqtt://hub:0", "port 0"),
            ("mqtt://hub:70000", "not a port number"),
            ("mqtt://hub:x", "not a port number"),
            ("mqtt://hub:", "not a port number"),
            ("mqtt://user:pw@hub", "credentials"),
            ("mqtt://hub/shoal", "no path"),
            ("mqtt://hub?x=1", "no path"),
            ("mqtt://[::1", "closing `]`"),
            ("mqtt://[nope]:1883", "not an IPv6 address"),
            ("mqtt://[::1]x", "unexpected"),
            ("mqtt://hub..example", "not a host name"),
            ("mqtt://-hub", "not a host name"),
            ("mqtt://hub name", "not a host name"),
        ];
        for (text, expected) in cases {
            let error = text.parse::<BrokerUrl>().expect_err(text).to_string();
            assert!(error.contains(expected), "{text}: {error}");
            assert!(error.contains("expected mqtt://HOST:PORT"), "{error}");
        }
    }

    #[test]
    fn identities_map_to_usernames_and_back() {
        let node = Identity::Node(NodeId::new("gw-7").expect("valid node id"));
        assert_eq!(node.username(), "gw-7");
        assert_eq!(Identity::from_username("gw-7"), Some(node));
        assert_eq!(Identity::Hub.username(), HUB_USERNAME);
        assert_eq!(Identity::from_username(HUB_USERNAME), Some(Identity::Hub));
        for nobody in ["", "_shoal", "Gw-7", "a/b", "+", "#", "$SYS"] {
            assert_eq!(Identity::from_username(nobody), None, "{nobody:?}");
        }
    }
}
