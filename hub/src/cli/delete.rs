//! `shoal delete workload NAME`: the hub removes the workload from every node's desired
//! state.

use std::process::ExitCode;

use shoal_model::api::Done;

use super::client::{segment, Client, HubArgs};

/// Delete a workload: every node stops and removes it
#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to delete
    #[arg(value_enum)]
    pub kind: Kind,
    /// Its name
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    #[value(alias = "workloads", alias = "wl")]
    Workload,
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    let done: Done = match args.kind {
        Kind::Workload => client.delete(&path(&args.name))?,
    };
    println!("{}", done.message);
    Ok(ExitCode::SUCCESS)
}

fn path(name: &str) -> String {
    format!("/v1/workloads/{}", segment(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workload_name_cannot_reach_another_route() {
        assert_eq!(path("web"), "/v1/workloads/web");
        assert_eq!(path("../nodes/gw-1"), "/v1/workloads/..%2Fnodes%2Fgw-1");
    }
}
