//! `shoal-agent run`: the agent daemon. Loads the config, opens the database, re-adopts the
//! containers that kept running, serves the local API, and supervises until stopped.
//! Stopping the agent (SIGTERM, SIGINT) leaves every container running: the next agent takes
//! them over.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use tokio::sync::mpsc;

use crate::config::{self, DEFAULT_CONFIG};
use crate::supervisor::{Event, Supervisor};
use crate::{api, host, runtime, state, wiring};

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
    let (containers, images) = wiring::real(&config, &node)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the event loop")?;
    runtime.block_on(async move {
        let listener = api::bind(&config.socket())?;
        let (events, receiver) = mpsc::channel(256);
        let supervisor = Supervisor::new(config.node_name.clone(), node, store, containers, images, events.clone())?;
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
            () = supervisor.run(receiver) => {}
            signal = stop_signal() => {
                signal?;
                tracing::info!("stopping; containers keep running and the next agent re-adopts them");
            }
        }
        anyhow::Ok(ExitCode::SUCCESS)
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
