//! `shoal serve`: the hub daemon.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use shoal_model::api::{DEFAULT_API_ADDR, DEFAULT_INSECURE_MQTT_ADDR, DEFAULT_MQTT_ADDR};
use shoal_model::endpoint::{ApiUrl, BrokerUrl};

use super::config;
use crate::server::{self, ServeOptions};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the hub keeps its database, API token and broker password
    #[arg(long, value_name = "DIR", default_value = "/var/lib/shoal")]
    pub data_dir: PathBuf,
    /// Where the embedded MQTT broker listens for agents [default: 0.0.0.0:8883, MQTT over TLS;
    /// 0.0.0.0:1883 with --insecure]
    #[arg(long, value_name = "ADDR")]
    pub listen_mqtt: Option<SocketAddr>,
    /// Where the HTTP API listens for the CLI, and for devices that enroll (HTTPS beyond
    /// loopback)
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_API_ADDR)]
    pub listen_api: SocketAddr,
    /// Use this external broker (mqtt://HOST:PORT or mqtts://HOST:PORT) instead of the embedded
    /// one; `shoal broker-config mosquitto` prints a configuration for it
    #[arg(long, value_name = "URL")]
    pub broker: Option<BrokerUrl>,
    /// PEM CA certificate of an external mqtts:// broker
    #[arg(long, value_name = "FILE", requires = "broker")]
    pub broker_ca: Option<PathBuf>,
    /// The broker URL agents are told to use (default: the listen address)
    #[arg(long, value_name = "URL")]
    pub advertise: Option<BrokerUrl>,
    /// The API URL devices enroll at (default: the API's listen address)
    #[arg(long, value_name = "URL")]
    pub advertise_api: Option<ApiUrl>,
    /// Another name (DNS name or IP address) devices reach the hub by, for its TLS
    /// certificate; repeatable. The listen and advertised addresses, loopback and the host
    /// name are always included
    #[arg(long = "tls-name", value_name = "NAME")]
    pub tls_names: Vec<String>,
    /// Plain MQTT and plain HTTP, without TLS (tests on one machine, or a network you trust)
    #[arg(long)]
    pub insecure: bool,
    /// Topic prefix, so several fleets can share a broker
    #[arg(long, value_name = "PREFIX", default_value = "shoal/v1")]
    pub prefix: String,
    /// Leave out /metrics' series per container (memory, CPU, restarts, OOM kills), keeping
    /// those per node and workload: for fleets whose containers would be too many series
    #[arg(long)]
    pub no_container_metrics: bool,
}

impl Args {
    pub fn options(&self) -> ServeOptions {
        ServeOptions {
            data_dir: self.data_dir.clone(),
            listen_mqtt: self.listen_mqtt.unwrap_or_else(|| {
                let default = if self.insecure {
                    DEFAULT_INSECURE_MQTT_ADDR
                } else {
                    DEFAULT_MQTT_ADDR
                };
                default
                    .parse()
                    .unwrap_or(SocketAddr::from(([0, 0, 0, 0], 8883)))
            }),
            listen_api: self.listen_api,
            broker: self.broker.clone(),
            broker_ca: self.broker_ca.clone(),
            advertise: self.advertise.clone(),
            advertise_api: self.advertise_api.clone(),
            tls_names: self.tls_names.clone(),
            insecure: self.insecure,
            prefix: self.prefix.clone(),
            container_metrics: !self.no_container_metrics,
        }
    }
}

/// The context `shoal serve` writes for the local admin unless `--context` names another.
pub const CONTEXT: &str = "local";

pub fn run(args: &Args, context: Option<&str>) -> anyhow::Result<ExitCode> {
    crate::telemetry::init("info");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the hub's runtime")?;
    let name = context.unwrap_or(CONTEXT).to_string();
    let data_dir = args.data_dir.clone();
    runtime.block_on(async {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<server::Ready>();
        tokio::spawn(async move {
            if let Ok(ready) = ready_rx.await {
                match write_context(&name, &ready.local_api, &data_dir) {
                    Ok(path) => tracing::info!(
                        context = %name,
                        hub = %ready.local_api,
                        config = %path.display(),
                        "wrote the CLI context for this hub: `shoal get nodes` uses it"
                    ),
                    Err(error) if is_no_path(&error) => tracing::info!(
                        context = %name,
                        "no CLI context written: this user has no home dir (set SHOAL_CONFIG to write one)"
                    ),
                    Err(error) => tracing::warn!(
                        context = %name,
                        "did not write the CLI context for this hub: {error:#}"
                    ),
                }
            }
        });
        tokio::select! {
            result = server::serve(args.options(), Some(ready_tx)) => result?,
            signal = stop_signal() => {
                signal?;
                tracing::info!("hub stopping");
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    })
}

/// Adds (or replaces) the context `name` in the CLI config, pointing at a hub reached at `url`
/// with its data in `data_dir`, and makes it current; returns the config file's path. Other
/// contexts are kept.
pub fn write_context(name: &str, url: &ApiUrl, data_dir: &Path) -> anyhow::Result<PathBuf> {
    let data_dir = std::fs::canonicalize(data_dir)
        .with_context(|| format!("cannot resolve {}", data_dir.display()))?;
    let path = config::record(
        name,
        config::Context {
            hub: url.clone(),
            ca: Some(data_dir.join("tls/ca.crt")),
            token_file: Some(data_dir.join("api-token")),
        },
    )?;
    Ok(path)
}

fn is_no_path(error: &anyhow::Error) -> bool {
    matches!(
        error.downcast_ref::<config::ConfigError>(),
        Some(config::ConfigError::NoPath)
    )
}

/// Resolves on SIGTERM or SIGINT.
pub async fn stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
