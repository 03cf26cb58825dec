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
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use shoal_model::manifest::names::{check_dns_label, check_label_key, check_label_value};
use shoal_model::quantity::parse_bytes;

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
    parse(&text, hostname).map_err(|message| ConfigError::Invalid {
        path: path.to_owned(),
        message,
    })
}

/// Parses and validates config text (pure).
pub fn parse(text: &str, hostname: &str) -> Result<AgentConfig, String> {
    let file: File = toml::from_str(text).map_err(|e| e.to_string().trim_end().to_string())?;
    let node_name = file
        .node_name
        .unwrap_or_else(|| default_node_name(hostname));
    check_dns_label(&node_name).map_err(|e| format!("node_name: {e}"))?;
    for (key, value) in &file.labels {
        check_label_key(key).map_err(|e| format!("labels: {e}"))?;
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
        ];
        for (text, expected) in cases {
            let err = parse(text, "host").expect_err(text);
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
