//! `shoal-sim`: a fleet of simulated agents in one process, each speaking Shoal's real
//! protocol to a real hub (issue 16). Every node enrolls through the hub's API with a claim
//! token (`shoal token create --uses N`), gets its own MQTT credentials, connects to the
//! hub's broker over TLS with a persistent session and a last will, takes signed desired
//! states by the agent's own rule (`shoal_model::wire::desired_verdict`), and reports
//! statuses in the wire version the hub writes to it, as its behaviour says (healthy, slow to
//! start, crash-looping, failing health checks, flapping link, offline for a while).
//!
//! Bounded: at most [`MAX_NODES`] nodes, at most [`MAX_RUN`]; it stops by itself after
//! `--for`, or sooner when it reads a line `stop` on stdin, and then writes its report.

mod behaviour;
mod node;

use std::io::BufRead as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use rumqttc::tokio_rustls::rustls::pki_types::pem::PemObject;
use rumqttc::tokio_rustls::rustls::pki_types::CertificateDer;
use rumqttc::tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use shoal_model::api::{DeviceIdentity, EnrollRequest, EnrollResponse};
use shoal_model::quantity::parse_duration;

use behaviour::{Mix, Timing};

/// The most nodes one run simulates (20,000 connections from one loopback address stay within
/// its ephemeral ports).
const MAX_NODES: usize = 20_000;
/// The longest run.
const MAX_RUN: Duration = Duration::from_secs(3600);
/// How often a line of progress goes to stderr.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

/// Simulate a fleet of agents against a real hub
#[derive(Debug, Parser)]
#[command(name = "shoal-sim", version)]
struct Args {
    /// The hub's API (`shoal serve --listen-api`), where nodes enroll
    #[arg(long)]
    api: String,
    /// The hub's CA certificate (PEM), for an `https://` API
    #[arg(long)]
    ca: Option<PathBuf>,
    /// A claim token (`shoal token create --uses N`) every node enrolls with
    #[arg(long)]
    claim: String,
    /// How many nodes
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Node names: PREFIX-00001, ...
    #[arg(long, default_value = "sim")]
    name_prefix: String,
    /// How long the run lasts (for example 90s, 10m)
    #[arg(long = "for", default_value = "60s", value_parser = duration)]
    run: Duration,
    /// Shares of behaviours in percent, together 100: healthy, slow, crash, unhealthy, flap,
    /// offline
    #[arg(long, default_value = "healthy=100", value_parser = Mix::parse)]
    mix: Mix,
    /// How long a slow node's containers take to start
    #[arg(long, default_value = "5s", value_parser = duration)]
    slow_start: Duration,
    /// How often a flapping node's link drops
    #[arg(long, default_value = "20s", value_parser = duration)]
    flap_every: Duration,
    /// How long a flapping node's link stays down
    #[arg(long, default_value = "3s", value_parser = duration)]
    flap_down: Duration,
    /// How long an offline node stays offline (once, a third of the way into the run)
    #[arg(long, default_value = "20s", value_parser = duration)]
    offline_for: Duration,
    /// MQTT keep-alive
    #[arg(long, default_value = "30s", value_parser = duration)]
    keep_alive: Duration,
    /// Enrollments in flight at once
    #[arg(long, default_value_t = 8)]
    enroll_parallel: usize,
    /// Where to write the report (JSON): what every node did
    #[arg(long)]
    report: Option<PathBuf>,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_duration(text)
}

fn main() -> std::process::ExitCode {
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal-sim: {e:#}");
            std::process::ExitCode::from(1)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    if args.nodes == 0 || args.nodes > MAX_NODES {
        anyhow::bail!("--nodes {}: 1 to {MAX_NODES}", args.nodes);
    }
    if args.run.is_zero() || args.run > MAX_RUN {
        anyhow::bail!("--for: more than 0 s and at most {} s", MAX_RUN.as_secs());
    }
    if args.keep_alive < Duration::from_secs(5) {
        anyhow::bail!("--keep-alive: at least 5s");
    }
    if args.flap_down >= args.flap_every {
        anyhow::bail!("--flap-down must be shorter than --flap-every");
    }
    let plan: Vec<String> = behaviour::Behaviour::ALL
        .iter()
        .map(|b| (b, args.mix.count(*b, args.nodes)))
        .filter(|(_, n)| *n > 0)
        .map(|(b, n)| format!("{b} {n}"))
        .collect();
    eprintln!("[{} nodes: {}]", args.nodes, plan.join(", "));
    let started = Instant::now();
    let credentials = enroll_all(&args)?;
    let enrolled_s = started.elapsed().as_secs_f64();
    eprintln!(
        "[{} nodes enrolled in {enrolled_s:.1} s]",
        credentials.len()
    );
    let tls = match credentials.first() {
        Some(first) if first.broker.is_tls() => Some(tls_config(&first.ca_pem)?),
        _ => None,
    };
    let common = node::Common {
        timing: Timing {
            slow_start: args.slow_start,
            flap_every: args.flap_every,
            flap_down: args.flap_down,
            offline_for: args.offline_for,
        },
        run: args.run,
        keep_alive: args.keep_alive,
        tls,
        started: Instant::now(),
        progress: Arc::new(node::Progress::default()),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let nodes = args.nodes;
    let records = runtime.block_on(async {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = Vec::with_capacity(nodes);
        for (index, creds) in credentials.into_iter().enumerate() {
            let behaviour = args.mix.of(index, nodes);
            tasks.push(tokio::spawn(node::run(
                creds,
                behaviour,
                common.clone(),
                stop_rx.clone(),
            )));
        }
        eprintln!(
            "[{nodes} nodes started; running for {} s]",
            args.run.as_secs()
        );
        let progress = common.progress.clone();
        let since = common.started;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(PROGRESS_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                eprintln!("[{:>4} s: {}]", since.elapsed().as_secs(), progress.line());
            }
        });
        let (line_tx, mut line_rx) = tokio::sync::mpsc::channel::<()>(1);
        std::thread::spawn(move || {
            // Only a `stop` line stops the run; an empty or closed stdin leaves it to `--for`.
            for line in std::io::stdin().lock().lines() {
                match line {
                    Ok(l) if l.trim() == "stop" => {
                        let _ = line_tx.blocking_send(());
                        return;
                    }
                    Ok(_) => continue,
                    Err(_) => return,
                }
            }
        });
        tokio::select! {
            _ = tokio::time::sleep(args.run) => {}
            Some(()) = line_rx.recv() => eprintln!("[stop asked on stdin]"),
        }
        let _ = stop_tx.send(true);
        let mut records = Vec::with_capacity(nodes);
        for task in tasks {
            if let Ok(record) = task.await {
                records.push(record);
            }
        }
        records
    });
    summarise(&records);
    if let Some(path) = &args.report {
        let report = serde_json::json!({
            "nodes": nodes,
            "enrolled_s": enrolled_s,
            "records": records,
        });
        std::fs::write(path, serde_json::to_vec(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Enrolls `args.nodes` nodes through the API, `args.enroll_parallel` at a time.
fn enroll_all(args: &Args) -> anyhow::Result<Vec<EnrollResponse>> {
    let ca = match &args.ca {
        Some(path) => {
            let pem =
                std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
            Some(
                ureq::tls::Certificate::from_pem(&pem)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
                    .to_owned(),
            )
        }
        None => None,
    };
    let mut tls = ureq::tls::TlsConfig::builder();
    if let Some(ca) = ca {
        tls = tls.root_certs(ureq::tls::RootCerts::Specific(Arc::new(vec![ca])));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .tls_config(tls.build())
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    let url = format!("{}/v1/enroll", args.api.trim_end_matches('/'));
    let next = Mutex::new(0usize);
    let results: Mutex<Vec<Option<EnrollResponse>>> = Mutex::new(vec![None; args.nodes]);
    let failure: Mutex<Option<anyhow::Error>> = Mutex::new(None);
    std::thread::scope(|scope| {
        for _ in 0..args.enroll_parallel.clamp(1, 64) {
            scope.spawn(|| loop {
                let index = {
                    let mut next = next.lock().unwrap_or_else(|p| p.into_inner());
                    let failed = failure.lock().unwrap_or_else(|p| p.into_inner()).is_some();
                    if *next >= args.nodes || failed {
                        return;
                    }
                    *next += 1;
                    *next - 1
                };
                let name = format!("{}-{:05}", args.name_prefix, index + 1);
                match enroll(&agent, &url, &args.claim, &name) {
                    Ok(creds) => {
                        results.lock().unwrap_or_else(|p| p.into_inner())[index] = Some(creds)
                    }
                    Err(e) => {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) =
                            Some(e.context(format!("enrolling {name}")));
                        return;
                    }
                }
            });
        }
    });
    if let Some(e) = failure.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(results
        .into_inner()
        .unwrap_or_else(|p| p.into_inner())
        .into_iter()
        .flatten()
        .collect())
}

fn enroll(
    agent: &ureq::Agent,
    url: &str,
    claim: &str,
    name: &str,
) -> anyhow::Result<EnrollResponse> {
    let request = EnrollRequest {
        token: claim.to_string(),
        device: Some(DeviceIdentity {
            name: Some(name.to_string()),
            ..DeviceIdentity::default()
        }),
    };
    let mut answer = agent
        .post(url)
        .header("Content-Type", "application/json")
        .send(serde_json::to_vec(&request)?)
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = answer.status().as_u16();
    let body = answer
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    if status != 200 {
        anyhow::bail!("{url} answered {status}: {}", body.trim());
    }
    serde_json::from_str(&body)
        .map_err(|e| anyhow::anyhow!("{url} answered what is no enrollment: {e}"))
}

fn tls_config(ca_pem: &str) -> anyhow::Result<Arc<ClientConfig>> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| anyhow::anyhow!("the hub's CA: {e}"))?)
            .map_err(|e| anyhow::anyhow!("the hub's CA: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// One line per figure on stderr.
fn summarise(records: &[node::Record]) {
    let mut by: std::collections::BTreeMap<&str, usize> = Default::default();
    for r in records {
        *by.entry(r.behaviour.as_str()).or_default() += 1;
    }
    let connected = records.iter().filter(|r| !r.connects.is_empty()).count();
    let refused: usize = records.iter().map(|r| r.refused.len()).sum();
    let statuses: u64 = records.iter().map(|r| r.statuses).sum();
    let accepted: usize = records.iter().map(|r| r.accepted.len()).sum();
    let reconnects: usize = records
        .iter()
        .map(|r| r.connects.len().saturating_sub(1))
        .sum();
    let mix: Vec<String> = by.iter().map(|(b, n)| format!("{b} {n}")).collect();
    eprintln!(
        "[{} nodes ({}): {connected} connected, {reconnects} reconnects, {accepted} desired states taken, {refused} refused, {statuses} statuses sent]",
        records.len(),
        mix.join(", ")
    );
    for r in records.iter().filter(|r| !r.refused.is_empty()).take(5) {
        eprintln!("[{}: refused {}]", r.name, r.refused.join("; "));
    }
}
