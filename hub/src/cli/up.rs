//! `shoal up`: a hub with its embedded broker and a local agent in one command, for
//! single-box gateways and the quickstart. Data lives in `./.shoal` unless told otherwise:
//! `hub/` (the hub's data dir), `agent/` (the agent's config, data and socket), `agent.log`.
//!
//! `--demo` also builds the demo image from busybox-static, imports it into the local agent,
//! applies `manifests/hello.yaml` and waits until it runs.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use shoal_model::api::{
    ApplyRequest, ApplyResponse, ManifestFile, NodeAddRequest, NodeEnrollment, WorkloadInfo,
};

use super::client::{Client, HubArgs};
use crate::demo;
use crate::server::{self, ServeOptions};

/// How long `--demo` waits for the hello workload to run.
const DEMO_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where the hub and the local agent keep their data
    #[arg(long, value_name = "DIR", default_value = ".shoal")]
    pub data_dir: PathBuf,
    /// Where the HTTP API listens for the CLI
    #[arg(long, value_name = "ADDR", default_value = shoal_model::api::DEFAULT_API_ADDR)]
    pub listen_api: SocketAddr,
    /// Where the embedded broker listens (default: a free loopback port, so that a broker
    /// already on 1883 is no obstacle; give an address to let other agents connect)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen_mqtt: SocketAddr,
    /// The local node's name (default: this machine's host name)
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The agent binary (default: `shoal-agent` beside `shoal`, then on PATH)
    #[arg(long, value_name = "FILE")]
    pub agent: Option<PathBuf>,
    /// Also run the demo: build its image from busybox-static, apply manifests/hello.yaml and
    /// wait until it runs
    #[arg(long)]
    pub demo: bool,
    /// The static busybox the demo image is built from
    #[arg(long, value_name = "FILE", default_value = "/bin/busybox")]
    pub busybox: PathBuf,
}

/// The context `shoal up` writes unless `--context` names another.
pub const CONTEXT: &str = "up";

pub fn run(args: &Args, context: Option<&str>) -> anyhow::Result<ExitCode> {
    crate::telemetry::init("warn");
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let root = std::fs::canonicalize(&args.data_dir)
        .with_context(|| format!("cannot resolve {}", args.data_dir.display()))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the hub's runtime")?;
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let options = ServeOptions {
        data_dir: root.join("hub"),
        listen_mqtt: args.listen_mqtt,
        listen_api: args.listen_api,
        broker: None,
        broker_ca: None,
        advertise: None,
        advertise_api: None,
        tls_names: Vec::new(),
        insecure: false,
        prefix: "shoal/v1".into(),
        container_metrics: true,
    };
    let hub = runtime.spawn(server::serve(options, Some(ready_tx)));
    let ready = match runtime.block_on(ready_rx) {
        Ok(ready) => ready,
        Err(_) => {
            // serve() ended before it was ready: its error says why.
            runtime.block_on(hub).context("the hub stopped")??;
            anyhow::bail!("the hub stopped before it was ready");
        }
    };
    println!(
        "hub: API on {} (token in {}), broker {}",
        ready.local_api,
        root.join("hub/api-token").display(),
        ready.broker
    );
    let name = context.unwrap_or(CONTEXT);
    match super::serve::write_context(name, &ready.local_api, &root.join("hub")) {
        Ok(path) => println!(
            "cli: context `{name}` written to {}: `shoal get nodes` uses it",
            path.display()
        ),
        Err(error) => eprintln!("warning: did not write the CLI context `{name}`: {error:#}"),
    }
    let client = Client::new(&HubArgs {
        hub: Some(ready.local_api.to_string()),
        token: Some(ready.token.clone()),
        ca: Some(root.join("hub/tls/ca.crt")),
        context: None,
    })?;
    let node = match &args.node {
        Some(node) => node.clone(),
        None => local_node_name(),
    };
    let agent_dir = root.join("agent");
    let agent_binary = match &args.agent {
        Some(path) => path.clone(),
        None => find_agent()?,
    };
    let config = agent_config(
        &client,
        &agent_binary,
        &ready.local_api.to_string(),
        &agent_dir,
        &node,
        &ready.broker.to_string(),
    )?;
    let log = root.join("agent.log");
    let mut agent = start_agent(&agent_binary, &config, &log)?;
    println!(
        "agent: node `{node}`, config {}, log {}",
        config.display(),
        log.display()
    );
    let outcome = (|| -> anyhow::Result<()> {
        if args.demo {
            run_demo(
                &client,
                &agent_binary,
                &agent_dir,
                &root,
                &args.busybox,
                &mut agent,
            )?;
        }
        println!("running; stop with Ctrl-C (containers keep running, as they do without a hub)");
        runtime.block_on(async {
            tokio::select! {
                signal = super::serve::stop_signal() => signal,
                () = wait_child(&mut agent) => anyhow::bail!("the agent stopped; see {}", log.display()),
            }
        })
    })();
    stop_agent(&mut agent);
    runtime.shutdown_timeout(Duration::from_secs(2));
    outcome.map(|()| ExitCode::SUCCESS)
}

fn local_node_name() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = hostname.trim().to_ascii_lowercase();
    if shoal_model::manifest::names::check_dns_label(&name).is_ok() {
        name
    } else {
        "local".into()
    }
}

/// The local agent's config, written once and enrolled with a fresh token, reused afterwards
/// with the broker's address of this run.
fn agent_config(
    client: &Client,
    agent_binary: &Path,
    api: &str,
    agent_dir: &Path,
    node: &str,
    broker: &str,
) -> anyhow::Result<PathBuf> {
    let path = agent_dir.join("agent.toml");
    if let Ok(text) = std::fs::read_to_string(&path) {
        if agent_dir.join("data/enrollment.toml").is_file() {
            server::write_private(&path, with_broker(&text, broker).as_bytes())?;
            return Ok(path);
        }
    }
    std::fs::create_dir_all(agent_dir)
        .with_context(|| format!("cannot create {}", agent_dir.display()))?;
    let enrollment: NodeEnrollment = client
        .post(
            "/v1/nodes",
            &NodeAddRequest {
                name: node.to_string(),
                labels: [("shoal.dev/up".to_string(), "true".to_string())].into(),
                ttl_s: Some(600),
            },
        )
        .with_context(|| format!("cannot register the local node `{node}`"))?;
    // The broker's port changes from run to run, so agent.toml names it (over the enrolled
    // one); everything else comes from the enrollment.
    let text = format!(
        "# Written by `shoal up` for the local agent.\nnode_name = \"{node}\"\ndata_dir = \"{data}\"\nrun_dir = \"{run}\"\n\n[hub]\nbroker = \"{broker}\"\nkeep_alive = \"10s\"\n",
        data = agent_dir.join("data").display(),
        run = agent_dir.join("run").display(),
    );
    server::write_private(&path, text.as_bytes())?;
    let output = Command::new(agent_binary)
        .arg("enroll")
        .arg("--hub")
        .arg(api)
        .arg("--token")
        .arg(&enrollment.token)
        .arg("--config")
        .arg(&path)
        .output()
        .with_context(|| format!("cannot run {}", agent_binary.display()))?;
    if !output.status.success() {
        anyhow::bail!(
            "the local agent could not enroll: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(path)
}

/// `text` with its `broker = "..."` line set to `broker`.
fn with_broker(text: &str, broker: &str) -> String {
    text.lines()
        .map(|line| {
            if line.trim_start().starts_with("broker =") {
                format!("broker = \"{broker}\"")
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

fn find_agent() -> anyhow::Result<PathBuf> {
    if let Some(beside) = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("shoal-agent")))
        .filter(|path| path.is_file())
    {
        return Ok(beside);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("shoal-agent"))
        .find(|candidate| candidate.is_file())
        .context("cannot find `shoal-agent` beside `shoal` or on PATH: build it (`cargo build --release`) or pass --agent")
}

fn start_agent(binary: &Path, config: &Path, log: &Path) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let stderr = log_file.try_clone()?;
    Command::new(binary)
        .arg("run")
        .arg("--config")
        .arg(config)
        .env(
            "SHOAL_LOG",
            std::env::var("SHOAL_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("cannot start {}", binary.display()))
}

async fn wait_child(child: &mut Child) {
    loop {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// SIGTERM, then SIGKILL after 5 s. Containers keep running either way.
fn stop_agent(child: &mut Child) {
    if let Ok(pid) = i32::try_from(child.id()) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

fn run_demo(
    client: &Client,
    agent_binary: &Path,
    agent_dir: &Path,
    root: &Path,
    busybox: &Path,
    agent: &mut Child,
) -> anyhow::Result<()> {
    let archive = root.join("shoal-demo.oci.tar");
    demo::write_image(busybox, &archive)?;
    let socket = agent_dir.join("run").join("agent.sock");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        if Instant::now() > deadline || !matches!(agent.try_wait(), Ok(None)) {
            anyhow::bail!(
                "the agent did not start; see {}",
                root.join("agent.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let import = Command::new(agent_binary)
        .args(["images", "import"])
        .arg(&archive)
        .arg("--socket")
        .arg(&socket)
        .output()
        .with_context(|| format!("cannot run {}", agent_binary.display()))?;
    if !import.status.success() {
        anyhow::bail!(
            "importing the demo image into the agent failed: {}",
            String::from_utf8_lossy(&import.stderr).trim()
        );
    }
    println!(
        "demo: image {} built from {} and imported",
        demo::IMAGE,
        busybox.display()
    );
    let applied: ApplyResponse = client.post(
        "/v1/apply",
        &ApplyRequest {
            files: vec![ManifestFile {
                name: demo::MANIFEST_NAME.into(),
                text: demo::MANIFEST.into(),
            }],
            dry_run: false,
        },
    )?;
    for change in &applied.changes {
        println!("workload/{} {}", change.workload, change.action.as_str());
    }
    let started = Instant::now();
    loop {
        let workloads: Vec<WorkloadInfo> = client.get("/v1/workloads", &[])?;
        if let Some(hello) = workloads.iter().find(|w| w.name == "hello") {
            if hello.wanted > 0 && hello.ready == hello.wanted {
                println!(
                    "demo: workload/hello is running on {} ({:.1} s); try `shoal get workloads`, `shoal logs hello -f`",
                    hello.nodes.join(", "),
                    started.elapsed().as_secs_f64()
                );
                return Ok(());
            }
        }
        if started.elapsed() > DEMO_TIMEOUT {
            anyhow::bail!(
                "workload/hello did not run within {DEMO_TIMEOUT:?}: see `shoal describe workload hello` and {}",
                root.join("agent.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reused_agent_config_gets_this_runs_broker() {
        let text =
            "node_name = \"gw\"\n\n[hub]\nbroker = \"mqtt://127.0.0.1:4000\"\npassword = \"p\"\n";
        assert_eq!(
            with_broker(text, "mqtt://127.0.0.1:5000"),
            "node_name = \"gw\"\n\n[hub]\nbroker = \"mqtt://127.0.0.1:5000\"\npassword = \"p\"\n"
        );
    }
}
