//! Where the hub is: a broker url (`mqtt://HOST[:PORT]`, `mqtts://HOST[:PORT]`) and a hub API
//! url (`https://HOST[:PORT]`, `http://HOST[:PORT]`), each parsed once, here, for the hub
//! (`--broker`, `--advertise`, `--advertise-api`), the agent (`hub.broker` in agent.toml,
//! `enroll --hub`), the CLI (`--hub`, `SHOAL_HUB`) and the enrollment answer.
//!
//! Only a scheme, a host and a port: credentials come from enrollment or `--token`, never
//! from the url, and a path, query or fragment would mean nothing to a broker or to the API
//! root, so they are refused rather than ignored (a single trailing `/`, as people paste, is
//! dropped). The scheme is case-insensitive; the host is a DNS name, an IPv4 address or an
//! IPv6 address in brackets; the port is 1-65535 in decimal digits (no sign). Anything else
//! is an [`UrlError`] that quotes the text and says what it expected; parsing never panics.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The longest url read; longer text is refused before it is looked at.
pub const MAX_URL_LEN: usize = 512;
/// How much of a refused url its error quotes.
const QUOTED_CHARS: usize = 100;

/// A host as urls name it: a DNS name, an IPv4 or an IPv6 address.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    Name(String),
    Ip(IpAddr),
}

impl Host {
    /// A host name or an IP address, IPv6 without brackets (as a certificate names it).
    pub fn parse(text: &str) -> Result<Host, Reason> {
        if text.is_empty() {
            return Err(Reason::NoHost);
        }
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(Host::Ip(ip));
        }
        check_host_name(text)?;
        Ok(Host::Name(text.to_string()))
    }

    /// Only this machine reaches it: `localhost` or a loopback address.
    pub fn is_loopback(&self) -> bool {
        match self {
            Host::Name(name) => name.eq_ignore_ascii_case("localhost"),
            Host::Ip(ip) => ip.is_loopback(),
        }
    }

    /// `0.0.0.0` or `::`: a listen address, which no client can dial elsewhere.
    pub fn is_unspecified(&self) -> bool {
        matches!(self, Host::Ip(ip) if ip.is_unspecified())
    }

    /// The host as it stands in a url: IPv6 in brackets.
    pub fn in_url(&self) -> InUrl<'_> {
        InUrl(self)
    }
}

impl From<IpAddr> for Host {
    fn from(ip: IpAddr) -> Host {
        Host::Ip(ip)
    }
}

impl From<Ipv4Addr> for Host {
    fn from(ip: Ipv4Addr) -> Host {
        Host::Ip(IpAddr::V4(ip))
    }
}

impl From<Ipv6Addr> for Host {
    fn from(ip: Ipv6Addr) -> Host {
        Host::Ip(IpAddr::V6(ip))
    }
}

/// The name or address, IPv6 without brackets: what a TLS server name or a certificate holds.
impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Name(name) => f.write_str(name),
            Host::Ip(ip) => ip.fmt(f),
        }
    }
}

/// [`Host::in_url`].
#[derive(Clone, Copy, Debug)]
pub struct InUrl<'a>(&'a Host);

impl fmt::Display for InUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            host => host.fmt(f),
        }
    }
}

/// A broker address: `mqtt://` (plain, port 1883 by default) or `mqtts://` (TLS, 8883).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct BrokerUrl {
    tls: bool,
    host: Host,
    port: u16,
}

impl BrokerUrl {
    pub const MQTT_PORT: u16 = 1883;
    pub const MQTTS_PORT: u16 = 8883;

    pub fn new(tls: bool, host: Host, port: u16) -> BrokerUrl {
        BrokerUrl { tls, host, port }
    }

    /// `mqtts://`: the connection must use TLS.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port given, or the scheme's.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// `mqtt://HOST:PORT` or `mqtts://HOST:PORT`, the port always written.
impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host.in_url(), self.port)
    }
}

impl FromStr for BrokerUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<BrokerUrl, UrlError> {
        let parts = parse(text, Kind::Broker)?;
        let tls = parts.scheme == "mqtts";
        let default = if tls {
            BrokerUrl::MQTTS_PORT
        } else {
            BrokerUrl::MQTT_PORT
        };
        Ok(BrokerUrl {
            tls,
            host: parts.host,
            port: parts.port.unwrap_or(default),
        })
    }
}

/// The hub's HTTP API: `https://` (port 443 by default) or `http://` (80).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ApiUrl {
    tls: bool,
    host: Host,
    /// As given: the url is written back the way it was.
    port: Option<u16>,
}

impl ApiUrl {
    pub fn new(tls: bool, host: Host, port: Option<u16>) -> ApiUrl {
        ApiUrl { tls, host, port }
    }

    /// `https://`.
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    pub fn host(&self) -> &Host {
        &self.host
    }

    /// The port given, or the scheme's.
    pub fn port(&self) -> u16 {
        self.port.unwrap_or(if self.tls { 443 } else { 80 })
    }
}

/// `https://HOST[:PORT]`, without a trailing `/`: request paths are appended to it.
impl fmt::Display for ApiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        write!(f, "{scheme}://{}", self.host.in_url())?;
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

impl FromStr for ApiUrl {
    type Err = UrlError;

    fn from_str(text: &str) -> Result<ApiUrl, UrlError> {
        let parts = parse(text, Kind::Api)?;
        Ok(ApiUrl {
            tls: parts.scheme == "https",
            host: parts.host,
            port: parts.port,
        })
    }
}

macro_rules! as_string {
    ($type:ty) => {
        /// Crosses JSON and TOML as its text, the string it was before it had a type.
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<$type, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

as_string!(BrokerUrl);
as_string!(ApiUrl);

/// Which url was expected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Broker,
    Api,
}

impl Kind {
    fn schemes(self) -> [&'static str; 2] {
        match self {
            Kind::Broker => ["mqtt", "mqtts"],
            Kind::Api => ["https", "http"],
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Broker => "broker",
            Kind::Api => "hub API",
        }
    }
}

/// A url that is not one: the text (its first 100 characters), what was expected and why not.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a {} url: {reason} (write it as {}://HOST[:PORT] or {}://HOST[:PORT])", kind.noun(), kind.schemes()[0], kind.schemes()[1])]
pub struct UrlError {
    pub text: String,
    pub kind: Kind,
    pub reason: Reason,
}

/// Why a url was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reason {
    #[error("it is longer than {MAX_URL_LEN} characters")]
    TooLong,
    #[error("it has no scheme")]
    NoScheme,
    #[error("unsupported scheme `{0}`")]
    Scheme(String),
    #[error("write `{instead}://` instead of `{given}://`")]
    SchemeAlias {
        given: String,
        instead: &'static str,
    },
    #[error("credentials do not belong in the url: devices get theirs from enrollment, the CLI its token from --token")]
    Credentials,
    #[error("it must not have a path, query or fragment")]
    Path,
    #[error("an IPv6 address must be in brackets: `[::1]:PORT`")]
    Ipv6Brackets,
    #[error("the host is missing")]
    NoHost,
    #[error("an IPv6 address needs a closing `]`")]
    UnclosedBracket,
    #[error("`{0}` is not an IPv6 address")]
    NotIpv6(String),
    #[error("unexpected `{0}` after the IPv6 address: expected `:PORT`")]
    AfterIpv6(String),
    #[error("`{0}` is not a host name or IP address")]
    HostName(String),
    #[error("`{0}` is not a port number (1-65535)")]
    Port(String),
}

/// A url taken apart: the scheme in lower case, the host, the port if one was written.
struct Parts {
    scheme: &'static str,
    host: Host,
    port: Option<u16>,
}

fn parse(text: &str, kind: Kind) -> Result<Parts, UrlError> {
    parts(text.trim(), kind).map_err(|reason| UrlError {
        text: text.chars().take(QUOTED_CHARS).collect(),
        kind,
        reason,
    })
}

fn parts(text: &str, kind: Kind) -> Result<Parts, Reason> {
    if text.len() > MAX_URL_LEN {
        return Err(Reason::TooLong);
    }
    let (scheme, rest) = text.split_once("://").ok_or(Reason::NoScheme)?;
    let scheme = match kind
        .schemes()
        .into_iter()
        .find(|known| scheme.eq_ignore_ascii_case(known))
    {
        Some(known) => known,
        None => {
            let lower = scheme.to_ascii_lowercase();
            let instead = match (kind, lower.as_str()) {
                (Kind::Broker, "tcp") => "mqtt",
                (Kind::Broker, "ssl" | "tls") => "mqtts",
                _ => return Err(Reason::Scheme(scheme.chars().take(QUOTED_CHARS).collect())),
            };
            return Err(Reason::SchemeAlias {
                given: lower,
                instead,
            });
        }
    };
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains('@') {
        return Err(Reason::Credentials);
    }
    if authority.contains(['/', '?', '#']) {
        return Err(Reason::Path);
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (inside, after) = bracketed.split_once(']').ok_or(Reason::UnclosedBracket)?;
        let ip = inside
            .parse::<Ipv6Addr>()
            .map_err(|_| Reason::NotIpv6(inside.to_string()))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or_else(|| Reason::AfterIpv6(after.to_string()))?,
            ),
        };
        (Host::from(ip), port)
    } else {
        if authority.matches(':').count() > 1 {
            return Err(Reason::Ipv6Brackets);
        }
        let (host, port) = match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(Reason::NoHost);
        }
        // An IPv6 address belongs in brackets, where its colons cannot be taken for a port.
        let host = match host.parse::<Ipv4Addr>() {
            Ok(ip) => Host::from(ip),
            Err(_) => {
                check_host_name(host)?;
                Host::Name(host.to_string())
            }
        };
        (host, port)
    };
    let port = port.map(parse_port).transpose()?;
    Ok(Parts { scheme, host, port })
}

/// 1-65535 in decimal digits: no sign, no spaces (`u16::from_str` takes a leading `+`).
fn parse_port(text: &str) -> Result<u16, Reason> {
    let bad = || Reason::Port(text.chars().take(QUOTED_CHARS).collect());
    if text.is_empty() || text.len() > 5 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match text.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad()),
        Ok(port) => Ok(port),
    }
}

/// A DNS name: dot-separated labels of ASCII letters, digits, `-` and `_` (not at either end
/// of a label), 63 characters a label, 253 in all, and a final `.` allowed (an absolute name).
fn check_host_name(host: &str) -> Result<(), Reason> {
    let bad = || Reason::HostName(host.chars().take(QUOTED_CHARS).collect());
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.len() > 253 {
        return Err(bad());
    }
    for label in name.split('.') {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(bad());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
