//! The agent's configuration file (`/etc/shoal/agent.toml`). Every field has a default, so an
//! empty file (or none, with `run --config` omitted) gives a working standalone agent.
//!
//! ```toml
//! node_name = "gw-17"                    # default: the host name
//! data_dir = "/var/lib/shoal"            # SQLite, images, volumes, logs
//! run_dir = "/run/shoal"                 # tmpfs: shim state, the local API socket
//! labels = { role = "gateway", site = "plant-1" }
//! allowed_host_paths = ["/srv/shared"]   # hostPath volumes must live under one of these
//! insecure_registries = ["127.0.0.1:5000"]
//! pull_policy = "if-not-present"        # or "always", or "never" (air-gapped: import only)
//! [[registries]]                         # credentials, for basic or token authentication
//! host = "registry.example:5000"
//! username = "fleet"
//! password = "..."
//! disk_budget = "2Gi"                    # images are pruned to stay under it
//! [logs]
//! max_bytes = "1Mi"                      # per container log file
//! files = 2                              # current + rotated
//! [hub]                                  # omit to run standalone (`shoal-agent apply`)
//! broker = "mqtts://hub.example:8883"    # mqtt:// (port 1883) or mqtts:// (port 8883)
//! password_file = "/etc/shoal/hub-password"  # or password = "..."; the user is node_name
//! ca_file = "/etc/shoal/hub-ca.pem"      # mqtts only; default: the system's CA bundle
//! prefix = "shoal/v1"                    # topic root shared with the hub
//! keep_alive = "30s"                     # a dead link is noticed after about twice this
//! heartbeat = "60s"                      # a status at least this often, changed or not
//! signing_keys = ["ed25519:…"]           # the hub keys to trust at first start
//! ```
//!
//! `shoal-agent enroll` writes `{data_dir}/enrollment.toml` (0600): the node's name and a
//! `[hub]` table (broker, password, CA file, prefix, signing keys). When it exists it is read
//! after this file; keys set in this file's `[hub]` win, and a `node_name` here must match.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::time::Duration;

use serde::Deserialize;
use shoal_model::endpoint::BrokerUrl;
use shoal_model::manifest::names::{check_dns_label, check_label_key, check_label_value};
use shoal_model::quantity::{parse_bytes, parse_duration};
use shoal_model::topic::Topics;
use shoal_model::wire::{self, signing::PublicKey};

pub use crate::image::PullPolicy;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot read hub.password_file {path}: {source}; create it with the node's password from enrollment")]
    Password {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The file as written; turned into [`AgentConfig`] by [`load`].
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    node_name: Option<String>,
    data_dir: Option<PathBuf>,
    run_dir: Option<PathBuf>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    allowed_host_paths: Vec<PathBuf>,
    insecure_registries: Option<Vec<String>>,
    disk_budget: Option<String>,
    pull_policy: Option<String>,
    #[serde(default)]
    registries: Vec<Registry>,
    #[serde(default)]
    logs: Logs,
    hub: Option<HubFile>,
}

/// The `[hub]` table as written.
#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HubFile {
    broker: Option<String>,
    password: Option<String>,
    password_file: Option<PathBuf>,
    ca_file: Option<PathBuf>,
    prefix: Option<String>,
    keep_alive: Option<String>,
    heartbeat: Option<String>,
    signing_keys: Option<Vec<String>>,
}

/// `enrollment.toml` as `shoal-agent enroll` writes it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnrollmentFile {
    node_name: String,
    hub: HubFile,
}

/// The file `shoal-agent enroll` writes in the data dir.
pub const ENROLLMENT_FILE: &str = "enrollment.toml";

impl std::fmt::Debug for HubFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubFile")
            .field("broker", &self.broker)
            .finish_non_exhaustive()
    }
}

/// Credentials for one registry.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    pub host: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("host", &self.host)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Logs {
    max_bytes: Option<String>,
    files: Option<u32>,
}

/// The validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentConfig {
    pub node_name: String,
    pub data_dir: PathBuf,
    pub run_dir: PathBuf,
    pub labels: BTreeMap<String, String>,
    pub allowed_host_paths: Vec<PathBuf>,
    pub insecure_registries: Vec<String>,
    pub disk_budget_bytes: u64,
    pub pull_policy: PullPolicy,
    pub registries: Vec<Registry>,
    pub log_max_bytes: u64,
    pub log_files: u32,
    /// The hub link; `None` runs the agent standalone.
    pub hub: Option<HubConfig>,
}

/// How to reach the hub's MQTT broker (`[hub]`). The MQTT client id and user name are the
/// node name.
#[derive(Clone, PartialEq, Eq)]
pub struct HubConfig {
    pub broker: BrokerUrl,
    pub password: Option<Password>,
    /// PEM CA certificates that sign the broker's certificate (mqtts only); the system's
    /// bundle when `None`.
    pub ca_file: Option<PathBuf>,
    pub prefix: String,
    pub keep_alive: Duration,
    pub heartbeat: Duration,
    /// The hub keys to trust when the database has none yet.
    pub signing_keys: Vec<PublicKey>,
}

impl std::fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubConfig")
            .field("broker", &self.broker)
            .field("ca_file", &self.ca_file)
            .field("prefix", &self.prefix)
            .field("keep_alive", &self.keep_alive)
            .field("heartbeat", &self.heartbeat)
            .finish_non_exhaustive()
    }
}

/// Where the MQTT password comes from.
#[derive(Clone, PartialEq, Eq)]
pub enum Password {
    Inline(String),
    /// Read when the agent starts; surrounding whitespace and the final newline are ignored.
    File(PathBuf),
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Password::Inline(_) => f.write_str("Inline(..)"),
            Password::File(path) => f.debug_tuple("File").field(path).finish(),
        }
    }
}

impl HubConfig {
    /// The password, read from `password_file` when it comes from a file.
    pub fn password(&self) -> Result<Option<String>, ConfigError> {
        match &self.password {
            None => Ok(None),
            Some(Password::Inline(password)) => Ok(Some(password.clone())),
            Some(Password::File(path)) => std::fs::read_to_string(path)
                .map(|text| Some(text.trim().to_string()))
                .map_err(|source| ConfigError::Password {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

impl AgentConfig {
    /// The local API socket: root-only, in the run dir.
    pub fn socket(&self) -> PathBuf {
        self.run_dir.join("agent.sock")
    }
}

pub const DEFAULT_CONFIG: &str = "/etc/shoal/agent.toml";
pub const DEFAULT_DATA_DIR: &str = "/var/lib/shoal";
pub const DEFAULT_RUN_DIR: &str = "/run/shoal";

/// Reads and validates the config file; a missing file at the default path means defaults.
pub fn load(path: &Path, hostname: &str) -> Result<AgentConfig, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == Path::new(DEFAULT_CONFIG) => {
            String::new()
        }
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.to_owned(),
                source,
            })
        }
    };
    let invalid = |message| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    };
    let data_dir = toml::from_str::<File>(&text)
        .map_err(|e| invalid(e.to_string().trim_end().to_string()))?
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let enrollment_path = data_dir.join(ENROLLMENT_FILE);
    let enrollment = match std::fs::read_to_string(&enrollment_path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(source) => {
            return Err(ConfigError::Read {
                path: enrollment_path,
                source,
            })
        }
    };
    parse_with(&text, enrollment.as_deref(), hostname).map_err(invalid)
}

/// The node name (if the file sets one) and the data dir of config text, without validating
/// the rest: what `enroll` needs before the enrollment fills in `[hub]`. Pure.
pub fn node_and_data_dir(text: &str) -> Result<(Option<String>, PathBuf), String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    if let Some(name) = &file.node_name {
        check_dns_label(name).map_err(|e| format!("node_name: {e}"))?;
    }
    let data_dir = file
        .data_dir
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if !data_dir.is_absolute() {
        return Err(format!(
            "data_dir: `{}` must be an absolute path",
            data_dir.display()
        ));
    }
    Ok((file.node_name, data_dir))
}

/// Parses and validates config text (pure).
#[cfg(test)]
pub fn parse(text: &str, hostname: &str) -> Result<AgentConfig, String> {
    parse_with(text, None, hostname)
}

/// Parses and validates config text with the enrollment file's text, if any (pure).
pub fn parse_with(
    text: &str,
    enrollment: Option<&str>,
    hostname: &str,
) -> Result<AgentConfig, String> {
    let mut file: File = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    if let Some(enrollment) = enrollment {
        let enrolled: EnrollmentFile = toml::from_str(enrollment)
            .map_err(|e| format!("{ENROLLMENT_FILE}: {}", e.to_string().trim_end()))?;
        merge_enrollment(&mut file, enrolled)?;
    }
    let node_name = file
        .node_name
        .unwrap_or_else(|| default_node_name(hostname));
    check_dns_label(&node_name).map_err(|e| format!("node_name: {e}"))?;
    for (key, value) in &file.labels {
        check_label_key(key).map_err(|e| format!("labels: {e}"))?;
        if key == wire::WIRE_VERSIONS_LABEL {
            return Err(format!(
                "labels: `{key}` is reserved: the agent announces the wire versions it reads itself"
            ));
        }
        check_label_value(value).map_err(|e| format!("labels.{key}: {e}"))?;
    }
    for path in &file.allowed_host_paths {
        if !path.is_absolute()
            || path
                .components()
                .any(|c| c == std::path::Component::ParentDir)
        {
            return Err(format!(
                "allowed_host_paths: `{}` must be an absolute path without `..`",
                path.display()
            ));
        }
    }
    let size = |field: &str, value: Option<String>, default: u64| -> Result<u64, String> {
        value.map_or(Ok(default), |v| {
            parse_bytes(&v).map_err(|e| format!("{field}: {e}"))
        })
    };
    let log_max_bytes = size("logs.max_bytes", file.logs.max_bytes, 1 << 20)?;
    if log_max_bytes < 4096 {
        return Err("logs.max_bytes: use at least 4Ki".into());
    }
    let pull_policy = match file.pull_policy.as_deref() {
        None | Some("if-not-present") => PullPolicy::IfNotPresent,
        Some("always") => PullPolicy::Always,
        Some("never") => PullPolicy::Never,
        Some(other) => {
            return Err(format!(
                "pull_policy: `{other}` is not valid: use `if-not-present`, `always` or `never`"
            ))
        }
    };
    for registry in &file.registries {
        if registry.host.is_empty() || registry.host.contains('/') {
            return Err(format!(
                "registries: `{}` is not a registry host: write it as `host` or `host:port`",
                registry.host
            ));
        }
    }
    let hub = file.hub.map(parse_hub).transpose()?;
    let log_files = file.logs.files.unwrap_or(2);
    if !(1..=10).contains(&log_files) {
        return Err("logs.files: use 1 to 10".into());
    }
    let absolute =
        |field: &str, value: Option<PathBuf>, default: &str| -> Result<PathBuf, String> {
            let path = value.unwrap_or_else(|| PathBuf::from(default));
            if path.is_absolute() {
                Ok(path)
            } else {
                Err(format!(
                    "{field}: `{}` must be an absolute path",
                    path.display()
                ))
            }
        };
    Ok(AgentConfig {
        node_name,
        data_dir: absolute("data_dir", file.data_dir, DEFAULT_DATA_DIR)?,
        run_dir: absolute("run_dir", file.run_dir, DEFAULT_RUN_DIR)?,
        labels: file.labels,
        allowed_host_paths: file.allowed_host_paths,
        insecure_registries: file
            .insecure_registries
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into()]),
        disk_budget_bytes: size("disk_budget", file.disk_budget, 2 << 30)?,
        pull_policy,
        registries: file.registries,
        log_max_bytes,
        log_files,
        hub,
    })
}

/// Lays `enrolled` under `file`: the node name must agree, and `[hub]` keys set in agent.toml
/// win (the password as a whole: `password` or `password_file`).
fn merge_enrollment(file: &mut File, enrolled: EnrollmentFile) -> Result<(), String> {
    if let Some(name) = &file.node_name {
        if *name != enrolled.node_name {
            return Err(format!(
                "node_name: this file names the node `{name}` but it is enrolled as `{}` ({ENROLLMENT_FILE} in the data dir): remove node_name, or enroll again with a token for `{name}`",
                enrolled.node_name
            ));
        }
    }
    file.node_name = Some(enrolled.node_name);
    let mine = file.hub.take().unwrap_or_default();
    let theirs = enrolled.hub;
    let own_password = mine.password.is_some() || mine.password_file.is_some();
    file.hub = Some(HubFile {
        broker: mine.broker.or(theirs.broker),
        password: if own_password {
            mine.password
        } else {
            theirs.password
        },
        password_file: if own_password {
            mine.password_file
        } else {
            theirs.password_file
        },
        ca_file: mine.ca_file.or(theirs.ca_file),
        prefix: mine.prefix.or(theirs.prefix),
        keep_alive: mine.keep_alive.or(theirs.keep_alive),
        heartbeat: mine.heartbeat.or(theirs.heartbeat),
        signing_keys: mine.signing_keys.or(theirs.signing_keys),
    });
    Ok(())
}

/// Validates the `[hub]` table; every message names the key at fault.
fn parse_hub(hub: HubFile) -> Result<HubConfig, String> {
    let broker = hub.broker.ok_or(
        "hub.broker: missing: write the hub's broker as `broker = \"mqtts://HOST:8883\"` (or remove [hub] to run standalone)",
    )?;
    let broker: BrokerUrl = broker.parse().map_err(|e| format!("hub.broker: {e}"))?;
    let absolute = |key: &str, path: PathBuf| -> Result<PathBuf, String> {
        if path.is_absolute() {
            Ok(path)
        } else {
            Err(format!(
                "hub.{key}: `{}` must be an absolute path",
                path.display()
            ))
        }
    };
    let password = match (hub.password, hub.password_file) {
        (Some(_), Some(_)) => {
            return Err("hub.password: set either `password` or `password_file`, not both".into())
        }
        (Some(password), None) => Some(Password::Inline(password)),
        (None, Some(path)) => Some(Password::File(absolute("password_file", path)?)),
        (None, None) => None,
    };
    let ca_file = match hub.ca_file {
        Some(_) if !broker.is_tls() => {
            return Err(
                "hub.ca_file: only used with an `mqtts://` broker: change hub.broker to mqtts:// or remove ca_file"
                    .into(),
            )
        }
        Some(path) => Some(absolute("ca_file", path)?),
        None => None,
    };
    let prefix = hub
        .prefix
        .unwrap_or_else(|| Topics::DEFAULT_PREFIX.to_string());
    Topics::new(&prefix).map_err(|e| format!("hub.prefix: {e}"))?;
    let duration = |key: &str, value: Option<String>, default: u64, range: (u64, u64)| {
        let Some(text) = value else {
            return Ok(Duration::from_secs(default));
        };
        let duration = parse_duration(&text).map_err(|e| format!("hub.{key}: {e}"))?;
        let (min, max) = range;
        if duration.subsec_millis() != 0
            || duration < Duration::from_secs(min)
            || duration > Duration::from_secs(max)
        {
            return Err(format!(
                "hub.{key}: `{text}` is out of range: use whole seconds from {min}s to {max}s"
            ));
        }
        Ok(duration)
    };
    let mut signing_keys = Vec::new();
    for text in hub.signing_keys.unwrap_or_default() {
        signing_keys.push(
            text.parse::<PublicKey>()
                .map_err(|e| format!("hub.signing_keys: {e}"))?,
        );
    }
    Ok(HubConfig {
        broker,
        password,
        ca_file,
        prefix,
        signing_keys,
        // MQTT carries the keep-alive as a 16-bit number of seconds.
        keep_alive: duration("keep_alive", hub.keep_alive, 30, (1, 65_535))?,
        heartbeat: duration("heartbeat", hub.heartbeat, 60, (1, 86_400))?,
    })
}

/// The host name made into a DNS label (`GW_17.local` -> `gw-17`).
fn default_node_name(hostname: &str) -> String {
    let first = hostname.split('.').next().unwrap_or_default();
    let name: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(63)
        .collect();
    let name = name.trim_matches('-').to_string();
    if name.is_empty() {
        "node".into()
    } else {
        name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(table: &str) -> Result<HubConfig, String> {
        let config = parse(&format!("node_name = \"gw-1\"\n[hub]\n{table}"), "x")?;
        Ok(config.hub.expect("a [hub] table"))
    }

    #[test]
    fn the_wire_versions_label_is_reserved_for_the_agent_itself() {
        let error =
            parse("labels = { \"shoal.dev/wire-versions\" = \"9\" }", "x").expect_err("reserved");
        assert!(
            error.contains("`shoal.dev/wire-versions` is reserved"),
            "{error}"
        );
    }

    #[test]
    fn without_a_hub_table_the_agent_is_standalone() {
        assert_eq!(parse("", "x").expect("valid").hub, None);
    }

    #[test]
    fn a_hub_table_with_only_a_broker_gets_the_defaults() {
        let config = hub("broker = \"mqtt://127.0.0.1\"").expect("valid");
        assert_eq!(config.broker.to_string(), "mqtt://127.0.0.1:1883");
        assert_eq!(config.prefix, "shoal/v1");
        assert_eq!(config.keep_alive, Duration::from_secs(30));
        assert_eq!(config.heartbeat, Duration::from_secs(60));
        assert_eq!(config.password, None);
    }

    #[test]
    fn every_hub_key_is_read() {
        let config = hub(concat!(
            "broker = \"mqtts://hub.example\"\n",
            "password_file = \"/etc/shoal/hub-password\"\n",
            "ca_file = \"/etc/shoal/ca.pem\"\n",
            "prefix = \"acme/plant-1\"\n",
            "keep_alive = \"10s\"\n",
            "heartbeat = \"2m\"\n",
        ))
        .expect("valid");
        assert_eq!(config.broker.to_string(), "mqtts://hub.example:8883");
        assert_eq!(
            config.password,
            Some(Password::File("/etc/shoal/hub-password".into()))
        );
        assert_eq!(config.ca_file, Some(PathBuf::from("/etc/shoal/ca.pem")));
        assert_eq!(config.prefix, "acme/plant-1");
        assert_eq!(config.keep_alive, Duration::from_secs(10));
        assert_eq!(config.heartbeat, Duration::from_secs(120));
    }

    #[test]
    fn broker_addresses_take_a_port_and_ipv6_in_brackets() {
        let cases = [
            ("mqtt://h:1884", "mqtt://h:1884"),
            ("mqtt://h/", "mqtt://h:1883"),
            ("MQTTS://[::1]:8884", "mqtts://[::1]:8884"),
            ("mqtts://[fe80::1]", "mqtts://[fe80::1]:8883"),
        ];
        for (given, read) in cases {
            let config = hub(&format!("broker = \"{given}\"")).expect(given);
            assert_eq!(config.broker.to_string(), read);
        }
    }

    #[test]
    fn hub_mistakes_are_named_by_their_key() {
        let cases = [
            ("broker = \"http://h\"", "hub.broker: `http://h` is not a broker url: unsupported scheme `http` (write it as mqtt://HOST[:PORT] or mqtts://HOST[:PORT])"),
            ("broker = \"mqtt://h:0\"", "`0` is not a port number (1-65535)"),
            ("broker = \"mqtt://h:x\"", "`x` is not a port number (1-65535)"),
            ("broker = \"mqtt://h:+1\"", "`+1` is not a port number (1-65535)"),
            ("broker = \"mqtt://\"", "the host is missing"),
            ("broker = \"mqtt://u@h\"", "credentials do not belong in the url"),
            ("broker = \"mqtt://h/x\"", "must not have a path"),
            ("broker = \"mqtt://[h]\"", "not an IPv6 address"),
            ("broker = \"mqtt://h\"\npassword = \"a\"\npassword_file = \"/p\"", "hub.password: set either"),
            ("broker = \"mqtt://h\"\npassword_file = \"p\"", "hub.password_file: `p` must be an absolute path"),
            ("broker = \"mqtt://h\"\nca_file = \"/ca.pem\"", "hub.ca_file: only used with an `mqtts://` broker"),
            ("broker = \"mqtts://h\"\nca_file = \"ca.pem\"", "hub.ca_file: `ca.pem` must be an absolute path"),
            ("broker = \"mqtt://h\"\nprefix = \"a/+\"", "hub.prefix: `a/+` is not a topic prefix"),
            ("broker = \"mqtt://h\"\nkeep_alive = \"500ms\"", "hub.keep_alive: `500ms` is out of range"),
            ("broker = \"mqtt://h\"\nkeep_alive = \"1.5s\"", "hub.keep_alive: `1.5s` is not a duration"),
            ("broker = \"mqtt://h\"\nheartbeat = \"30\"", "hub.heartbeat: `30` has no unit"),
            ("broker = \"mqtt://h\"\nheartbeat = \"2d\"", "hub.heartbeat: `2d` is out of range"),
        ];
        for (table, expected) in cases {
            let err = hub(table).expect_err(table);
            assert!(err.contains(expected), "{table}: {err}");
        }
    }

    #[test]
    fn the_hub_password_is_read_from_its_file_and_kept_out_of_logs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("hub-password");
        std::fs::write(&file, "s3cret\n").expect("write");
        let config = hub(&format!(
            "broker = \"mqtt://h\"\npassword_file = \"{}\"",
            file.display()
        ))
        .expect("valid");
        assert_eq!(config.password().expect("read"), Some("s3cret".into()));
        assert!(!format!("{config:?}").contains("s3cret"));
        let inline = hub("broker = \"mqtt://h\"\npassword = \"inline\"").expect("valid");
        assert_eq!(inline.password().expect("inline"), Some("inline".into()));
        assert!(!format!("{inline:?}").contains("inline\""));

        std::fs::remove_file(&file).expect("remove");
        let err = config.password().expect_err("missing file").to_string();
        assert!(err.contains("hub.password_file"), "{err}");
    }

    #[test]
    fn an_empty_file_gives_working_defaults() {
        let config = parse("", "GW_17.plant.local").expect("valid");
        assert_eq!(config.node_name, "gw-17");
        assert_eq!(config.data_dir, Path::new("/var/lib/shoal"));
        assert_eq!(config.socket(), Path::new("/run/shoal/agent.sock"));
        assert_eq!((config.log_max_bytes, config.log_files), (1 << 20, 2));
    }

    #[test]
    fn every_field_is_read() {
        let text = r#"
node_name = "cam-3"
data_dir = "/data/shoal"
run_dir = "/tmp/run"
labels = { role = "camera", site = "plant-1" }
allowed_host_paths = ["/srv/shared"]
insecure_registries = ["10.0.0.5:5000"]
disk_budget = "512Mi"
pull_policy = "never"
[[registries]]
host = "registry.example:5000"
username = "fleet"
password = "secret"
[logs]
max_bytes = "256Ki"
files = 3
"#;
        let config = parse(text, "x").expect("valid");
        assert_eq!(config.node_name, "cam-3");
        assert_eq!(
            config.labels.get("site").map(String::as_str),
            Some("plant-1")
        );
        assert_eq!(config.disk_budget_bytes, 512 << 20);
        assert_eq!((config.log_max_bytes, config.log_files), (256 << 10, 3));
        assert_eq!(config.insecure_registries, ["10.0.0.5:5000"]);
        assert_eq!(config.pull_policy, PullPolicy::Never);
        assert_eq!(config.registries[0].host, "registry.example:5000");
        assert!(
            !format!("{:?}", config.registries).contains("secret"),
            "passwords stay out of logs"
        );
    }

    #[test]
    fn mistakes_are_named_with_what_would_be_valid() {
        let cases = [
            ("node_nmae = \"x\"", "unknown field `node_nmae`"),
            (
                "node_name = \"Bad_Name\"",
                "node_name: `Bad_Name` is not a valid name",
            ),
            (
                "labels = { \"a b\" = \"x\" }",
                "labels: `a b` is not a valid label key",
            ),
            ("allowed_host_paths = [\"srv\"]", "must be an absolute path"),
            (
                "disk_budget = \"lots\"",
                "disk_budget: `lots` is not a memory size",
            ),
            ("[logs]\nfiles = 0", "logs.files: use 1 to 10"),
            (
                "pull_policy = \"sometimes\"",
                "pull_policy: `sometimes` is not valid",
            ),
            (
                "[[registries]]\nhost = \"a/b\"\nusername = \"u\"\npassword = \"p\"",
                "is not a registry host",
            ),
            (
                "data_dir = \"relative\"",
                "data_dir: `relative` must be an absolute path",
            ),
            ("node_name = ", "line 1, column 13"),
            ("[hub]\nprefix = \"x\"", "hub.broker: missing"),
            (
                "[hub]\nbroker = \"tcp://h\"",
                "hub.broker: `tcp://h` is not a broker url: write `mqtt://` instead of `tcp://`",
            ),
            ("[hub]\nbrokr = \"mqtt://h\"", "unknown field `brokr`"),
        ];
        for (text, expected) in cases {
            let err = parse(text, "host").expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
