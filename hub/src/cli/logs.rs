//! `shoal logs WORKLOAD [--node N] [-c CONTAINER] [--tail N] [-f]`: a container's log,
//! fetched by the hub from the node, copied to stdout as it arrives.

use std::io::{ErrorKind, Read, Write};
use std::process::ExitCode;

use super::client::{Client, HubArgs, Stream};

/// Print a container's log, fetched from its node
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The workload
    pub workload: String,
    /// The node to read from (needed when the workload runs on several)
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    /// The container (needed when the workload has several)
    #[arg(short = 'c', long, value_name = "CONTAINER")]
    pub container: Option<String>,
    /// Only the last LINES lines
    #[arg(long, value_name = "LINES")]
    pub tail: Option<u32>,
    /// Keep printing new lines until Ctrl-C
    #[arg(short = 'f', long)]
    pub follow: bool,
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    let query = query(args);
    let pairs: Vec<(&str, &str)> = query.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let stream = if args.follow {
        Stream::Follow
    } else {
        Stream::Bounded
    };
    let mut body = client.get_stream("/v1/logs", &pairs, stream)?;
    let mut stdout = std::io::stdout().lock();
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = match body.read(&mut buffer) {
            Ok(0) => return Ok(ExitCode::SUCCESS),
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(client.stream_error(e).into()),
        };
        match stdout.write_all(&buffer[..n]).and_then(|()| stdout.flush()) {
            Ok(()) => {}
            // The reader went away (`shoal logs ... | head`): that is the end, not an error.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The query of `GET /v1/logs`: the workload, then only what was given.
pub fn query(args: &Args) -> Vec<(&'static str, String)> {
    let mut query = vec![("workload", args.workload.clone())];
    if let Some(node) = &args.node {
        query.push(("node", node.clone()));
    }
    if let Some(container) = &args.container {
        query.push(("container", container.clone()));
    }
    if let Some(tail) = args.tail {
        query.push(("tail", tail.to_string()));
    }
    if args.follow {
        query.push(("follow", "true".to_string()));
    }
    query
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn parse(line: &[&str]) -> Args {
        Cli::try_parse_from(std::iter::once("logs").chain(line.iter().copied()))
            .expect("valid arguments")
            .args
    }

    #[test]
    fn the_query_names_the_workload_and_only_the_options_given() {
        type Case<'a> = (&'a str, &'a [&'a str], &'a [(&'a str, &'a str)]);
        let cases: [Case; 3] = [
            ("workload_only", &["web"], &[("workload", "web")]),
            (
                "everything",
                &[
                    "web", "--node", "gw-1", "-c", "server", "--tail", "20", "-f",
                ],
                &[
                    ("workload", "web"),
                    ("node", "gw-1"),
                    ("container", "server"),
                    ("tail", "20"),
                    ("follow", "true"),
                ],
            ),
            (
                "tail_zero_is_sent",
                &["web", "--tail", "0"],
                &[("workload", "web"), ("tail", "0")],
            ),
        ];
        for (name, line, expected) in cases {
            let got = query(&parse(line));
            let got: Vec<(&str, &str)> = got.iter().map(|(k, v)| (*k, v.as_str())).collect();
            assert_eq!(got, expected, "{name}");
        }
    }
}
