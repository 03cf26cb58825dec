//! `shoal-agent run`: the agent daemon. Loads the config, opens the database, re-adopts the
//! containers that kept running, serves the local API, connects to the hub when agent.toml
//! has a `[hub]`, and supervises until stopped.
//! Stopping the agent (SIGTERM, SIGINT) leaves every container running: the next agent takes
//! them over.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use shoal_model::topic::NodeId;
use tokio::sync::{mpsc, Notify};

use crate::config::{self, DEFAULT_CONFIG};
use crate::supervisor::{Event, HubMode, Supervisor};
use crate::{api, host, mqtt, runtime, state, wiring};

/// Blocking workers (stops, starts, pulls) that may run at once.
const MAX_WORKERS: usize = 64;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's configuration file (TOML); defaults apply when it is absent
    #[arg(long, value_name = "FILE", default_value = DEFAULT_CONFIG)]
    pub config: PathBuf,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let config = config::load(&args.config, hostname.trim())?;
    let cgroups = runtime::cgroup::detect().context("cannot inspect the cgroups of this device")?;
    if let Some(problem) = runtime::cgroup::missing_essentials(&cgroups) {
        anyhow::bail!("{problem}");
    }
    let node = host::facts(config.labels.clone(), cgroups.hierarchy.version());
    let store = state::Store::open(&config.data_dir)?;
    let hub = match &config.hub {
        Some(hub) => Some(mqtt::Link {
            node_name: config.node_name.clone(),
            hub: hub.clone(),
            password: hub.password()?,
            facts: node.clone(),
        }),
        None => None,
    };
    let (containers, images) = wiring::real(&config, &node)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        // One worker per container at most (the supervisor's rule), and no more than this
        // many at once on a small device: a delete of more stubborn containers than this
        // takes one more grace period instead of one more thread each.
        .max_blocking_threads(MAX_WORKERS)
        .build()
        .context("cannot start the event loop")?;
    let result = runtime.block_on(async move {
        let listener = api::bind(&config.socket())?;
        let (events, receiver) = mpsc::channel(256);
        let outbox_ready = Arc::new(Notify::new());
        let mode = match &hub {
            Some(link) => Some(hub_mode(link, &config.data_dir, Arc::clone(&outbox_ready))?),
            None => None,
        };
        let supervisor = Supervisor::new(
            config.node_name.clone(),
            node,
            store,
            containers,
            images,
            events.clone(),
            mode,
        )?;
        let ready = crate::launch::Ready::new(&config.data_dir, hub.is_some());
        if let Some(link) = hub {
            let broker = link.hub.broker.to_string();
            // The transport reads and trims the outbox through a connection of its own.
            let outbox = state::Store::open(&config.data_dir)?;
            mqtt::start(link, outbox, outbox_ready, events.clone(), Arc::clone(&ready))
                .context("cannot set up the link to the hub")?;
            tracing::info!(broker, "connecting to the hub; meanwhile the node runs what the hub last sent");
        }
        let (requests, mut incoming) = mpsc::channel(64);
        tokio::spawn(api::serve(listener, requests));
        tokio::spawn(async move {
            while let Some(request) = incoming.recv().await {
                if events.send(Event::Api(request)).await.is_err() {
                    return;
                }
            }
        });
        tracing::info!(node = config.node_name, socket = %config.socket().display(), "agent running");
        tokio::select! {
            () = supervisor.run(receiver, ready) => {}
            signal = stop_signal() => {
                signal?;
                tracing::info!("stopping; containers keep running and the next agent re-adopts them");
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
    });
    // Workers still blocked in a stop (a grace period can be long) are not waited for: the
    // containers outlive the agent anyway, and the next agent plans the stop again.
    runtime.shutdown_background();
    result
}

/// What the supervisor needs to report to the hub of `link`.
fn hub_mode(
    link: &mqtt::Link,
    data_dir: &std::path::Path,
    outbox_ready: Arc<Notify>,
) -> anyhow::Result<HubMode> {
    let node = NodeId::new(link.node_name.clone())?;
    Ok(HubMode {
        broker: link.hub.broker.to_string(),
        status_topic: link.topics()?.status(&node),
        heartbeat: link.hub.heartbeat,
        outbox_ready,
        signing_keys: link.hub.signing_keys.clone(),
        update: link.hub.password()?.map(|password| crate::update::Access {
            node: link.node_name.clone(),
            password,
            ca_file: link.hub.ca_file.clone(),
        }),
        data_dir: Some(data_dir.to_path_buf()),
    })
}

async fn stop_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
