//! Commands that talk to the running agent over its local socket: `apply`, `ps`, `logs`,
//! `delete`, `images`. They print what a person needs and exit 1 when the agent said no.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use shoal_model::manifest;
use shoal_model::quantity::{format_bytes, format_duration};
use shoal_model::table;
use shoal_model::wire::{
    ContainerState, ContainerStatus, DesiredWorkload, Health, NodeStatus, RpcRequestBody,
    RpcResponseBody,
};

use crate::api::Client;
use crate::config::DEFAULT_RUN_DIR;

/// Where the agent listens; every local command takes it.
#[derive(Debug, clap::Args)]
pub struct Socket {
    /// The agent's local API socket
    #[arg(long, global = true, value_name = "PATH", default_value_t = format!("{DEFAULT_RUN_DIR}/agent.sock"))]
    pub socket: String,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// A manifest file, or a folder of them; workloads whose placement excludes this node are skipped
    #[arg(short = 'f', long = "filename", value_name = "FILE|DIR")]
    pub path: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// WORKLOAD or WORKLOAD/CONTAINER (the first container when omitted)
    pub target: String,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<u32>,
    /// Keep printing new lines until interrupted
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum ImagesCommand {
    /// List the images in the local store
    Ls,
    /// Import an OCI image layout tarball or a `docker save` tarball
    Import { file: PathBuf },
    /// Remove an image no workload uses
    Rm { reference: String },
    /// Remove every image no workload uses
    Prune,
}

pub fn apply(socket: &Socket, args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let loaded = manifest::load(&args.path);
    if !loaded.is_ok() {
        eprint!("{}", loaded.report());
        eprintln!("nothing was applied");
        return Ok(ExitCode::FAILURE);
    }
    let warnings = loaded.warning_report();
    let workloads = loaded
        .workloads
        .into_iter()
        .map(|w| DesiredWorkload {
            workload: w.workload,
            revision: 0,
        })
        .collect();
    match call(socket, RpcRequestBody::Apply { workloads })? {
        RpcResponseBody::Applied {
            generation,
            changes,
        } => {
            for change in &changes {
                println!("{change}");
            }
            println!("desired generation {generation}");
            eprint!("{warnings}");
            Ok(ExitCode::SUCCESS)
        }
        other => refused(other),
    }
}

pub fn delete(socket: &Socket, workload: &str) -> anyhow::Result<ExitCode> {
    manifest::names::check_dns_label(workload).map_err(anyhow::Error::msg)?;
    done(call(
        socket,
        RpcRequestBody::DeleteWorkload {
            workload: workload.into(),
        },
    )?)
}

pub fn ps(socket: &Socket) -> anyhow::Result<ExitCode> {
    match call(socket, RpcRequestBody::Status)? {
        RpcResponseBody::Status(status) => {
            print!("{}", ps_table(&status, shoal_model::clock::wall_ms()));
            Ok(ExitCode::SUCCESS)
        }
        other => refused(other),
    }
}

pub fn logs(socket: &Socket, args: &LogsArgs) -> anyhow::Result<ExitCode> {
    let (workload, container) = match args.target.split_once('/') {
        Some((w, c)) => (w.to_string(), Some(c.to_string())),
        None => (args.target.clone(), None),
    };
    let request = RpcRequestBody::Logs {
        workload,
        container,
        tail: args.tail,
        follow: args.follow,
    };
    let mut client = Client::request(std::path::Path::new(&socket.socket), request)?;
    let mut out = std::io::stdout().lock();
    while let Some(response) = client.next()? {
        match response {
            RpcResponseBody::LogChunk { data, eof } => {
                out.write_all(&data)?;
                out.flush()?;
                if eof {
                    break;
                }
            }
            other => return refused(other),
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub fn images(socket: &Socket, command: &ImagesCommand) -> anyhow::Result<ExitCode> {
    let request = match command {
        ImagesCommand::Ls => RpcRequestBody::ListImages,
        ImagesCommand::Import { file } => {
            let path = std::fs::canonicalize(file)
                .with_context(|| format!("cannot find {}", file.display()))?;
            RpcRequestBody::ImportImage {
                path: path.display().to_string(),
            }
        }
        ImagesCommand::Rm { reference } => RpcRequestBody::RemoveImage {
            reference: reference.clone(),
        },
        ImagesCommand::Prune => RpcRequestBody::PruneImages,
    };
    match call(socket, request)? {
        RpcResponseBody::Images(images) => {
            let rows: Vec<Vec<String>> = images
                .iter()
                .map(|i| {
                    let digest = i.digest.strip_prefix("sha256:").unwrap_or(&i.digest);
                    vec![
                        i.reference.clone(),
                        digest.chars().take(12).collect(),
                        format_bytes(i.size_bytes),
                        i.in_use.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table::render(&["REFERENCE", "DIGEST", "SIZE", "IN USE"], &rows)
            );
            Ok(ExitCode::SUCCESS)
        }
        other => done(other),
    }
}

fn call(socket: &Socket, body: RpcRequestBody) -> anyhow::Result<RpcResponseBody> {
    Ok(Client::call(std::path::Path::new(&socket.socket), body)?)
}

fn done(response: RpcResponseBody) -> anyhow::Result<ExitCode> {
    match response {
        RpcResponseBody::Done { message } => {
            println!("{message}");
            Ok(ExitCode::SUCCESS)
        }
        other => refused(other),
    }
}

fn refused(response: RpcResponseBody) -> anyhow::Result<ExitCode> {
    match response {
        RpcResponseBody::Error { message } => {
            eprintln!("error: {message}");
            Ok(ExitCode::FAILURE)
        }
        other => bail!("the agent answered something unexpected: {other:?}"),
    }
}

const PS_HEADERS: [&str; 10] = [
    "WORKLOAD",
    "CONTAINER",
    "STATE",
    "HEALTH",
    "RESTARTS",
    "LAST EXIT",
    "PID",
    "UPTIME",
    "MEMORY",
    "CPU",
];

/// The `ps` table, plus one line per container with something to explain.
pub fn ps_table(status: &NodeStatus, now_ms: u64) -> String {
    let mut rows = Vec::new();
    let mut notes = Vec::new();
    for w in &status.workloads {
        for c in &w.containers {
            rows.push(ps_row(&w.name, c, now_ms));
            if let Some(message) = &c.message {
                if c.state != ContainerState::Running {
                    notes.push(format!("{}/{}: {message}", w.name, c.name));
                }
            }
        }
    }
    if let Some(full) = crate::state::disk::condition(&status.events) {
        notes.push(full.message.clone());
    }
    let mut out = table::render(&PS_HEADERS, &rows);
    for note in notes {
        out.push_str(&note);
        out.push('\n');
    }
    out
}

fn ps_row(workload: &str, c: &ContainerStatus, now_ms: u64) -> Vec<String> {
    let dash = || "-".to_string();
    let last_exit = c.last_exit.as_ref().map_or_else(dash, ToString::to_string);
    let restarts = if c.oom_kills > 0 {
        format!("{} ({} OOM)", c.restarts, c.oom_kills)
    } else {
        c.restarts.to_string()
    };
    vec![
        workload.to_string(),
        c.name.clone(),
        format!("{:?}", c.state),
        match c.health {
            Health::Unknown => dash(),
            other => format!("{other:?}"),
        },
        restarts,
        last_exit,
        c.pid.map_or_else(dash, |p| p.to_string()),
        c.started_at_ms.map_or_else(dash, |at| {
            let up = std::time::Duration::from_secs(now_ms.saturating_sub(at) / 1000);
            format_duration(up)
        }),
        c.memory_bytes.map_or_else(dash, format_bytes),
        c.cpu_usage_ns
            .map_or_else(dash, |ns| format!("{:.2}s", ns as f64 / 1e9)),
    ]
}

#[cfg(test)]
mod tests {
    use shoal_model::wire::{ExitInfo, NodeUsage, WorkloadStatus};

    use super::*;

    #[test]
    fn ps_shows_state_restarts_oom_uptime_memory_and_explains_problems() {
        let running = ContainerStatus {
            name: "main".into(),
            state: ContainerState::Running,
            health: Health::Healthy,
            restarts: 2,
            last_exit: Some(ExitInfo {
                code: None,
                signal: Some(9),
                oom_killed: true,
                at_ms: 0,
            }),
            oom_kills: 1,
            started_at_ms: Some(1_000),
            pid: Some(42),
            memory_bytes: Some(3 << 20),
            cpu_usage_ns: Some(1_500_000_000),
            message: None,
        };
        let failed = ContainerStatus {
            name: "side".into(),
            state: ContainerState::BackOff,
            health: Health::Unknown,
            restarts: 0,
            last_exit: Some(ExitInfo {
                code: Some(3),
                signal: None,
                oom_killed: false,
                at_ms: 0,
            }),
            oom_kills: 0,
            started_at_ms: None,
            pid: None,
            memory_bytes: None,
            cpu_usage_ns: None,
            message: Some("exited (code 3)".into()),
        };
        let status = NodeStatus {
            node_id: "n".into(),
            observed_generation: 1,
            sequence: 0,
            sent_at_ms: 0,
            workloads: vec![WorkloadStatus {
                name: "app".into(),
                revision: 1,
                containers: vec![running, failed],
                rolled_back: None,
            }],
            usage: NodeUsage::default(),
            events: vec![],
            dropped_events: 0,
            agent_update: None,
        };
        let out = ps_table(&status, 91_000);
        let expected = "\
WORKLOAD   CONTAINER   STATE     HEALTH    RESTARTS    LAST EXIT   PID   UPTIME   MEMORY   CPU
app        main        Running   Healthy   2 (1 OOM)   OOMKilled   42    1m30s    3Mi      1.50s
app        side        BackOff   -         0           code 3      -     -        -        -
app/side: exited (code 3)
";
        assert_eq!(out, expected);
    }

    #[test]
    fn ps_says_the_data_disk_is_full_until_it_has_space_again() {
        use crate::state::disk::{event, Change};
        let dir = std::path::Path::new("/var/lib/shoal");
        let mut status = NodeStatus {
            node_id: "n".into(),
            observed_generation: 1,
            sequence: 0,
            sent_at_ms: 0,
            workloads: vec![],
            usage: NodeUsage::default(),
            events: vec![event(Change::Full, 0, dir, 1)],
            dropped_events: 0,
            agent_update: None,
        };
        let out = ps_table(&status, 2);
        assert_eq!(
            out.lines().collect::<Vec<_>>(),
            [
                "WORKLOAD   CONTAINER   STATE   HEALTH   RESTARTS   LAST EXIT   PID   UPTIME   MEMORY   CPU",
                "the data disk is full (0 free on /var/lib/shoal): running workloads keep running, \
                 but new images, desired states, records and logs may not be stored; free space, \
                 e.g. `shoal-agent images prune`",
            ]
        );
        status
            .events
            .push(event(Change::SpaceAgain, 64 << 20, dir, 3));
        assert_eq!(ps_table(&status, 4).lines().count(), 1, "only the header");
    }
}
