//! `shoal flash IMAGE --token T`: writes the static agent, a bootstrap and a first-boot hook
//! into a disk image's boot partition (`crate::flash`), without mounting it and without
//! root for an image file.
//!
//! The token must be one of this hub's claim tokens (`shoal token create`), still active:
//! the hub is asked for it, so a token of another hub, a revoked, expired or used-up one is
//! refused before the image is touched. The bootstrap carries the URL devices enroll at
//! (the hub's `--advertise-api`, or `--hub-url`), the token and its labels.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use shoal_model::api::{ClaimInfo, Token};
use shoal_model::bootstrap::Bootstrap;
use shoal_model::endpoint::ApiUrl;

use super::client::{Client, HubArgs};
use crate::flash::{self, AgentSource, Arch, Request, Target};

/// Where `cross/build` leaves the static agents unless CARGO_TARGET_DIR says otherwise.
pub const DEFAULT_AGENT_DIR: &str = "/var/cache/shoal/cross-target/dist";

/// Write the agent, a bootstrap and a first-boot hook into a disk image (no mount, no root)
///
/// `--token` is the claim token to write (from `shoal token create`); the API token then
/// comes from SHOAL_TOKEN or the hub's api-token file.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The disk image (.img, MBR or GPT, with a FAT boot partition), changed in place
    /// unless --out or --device
    pub image: PathBuf,
    /// Write the result to a new image file instead
    #[arg(long, value_name = "OUT.img", conflicts_with = "device")]
    pub out: Option<PathBuf>,
    /// Write the result onto a block device (an SD card; not mounted), then read it back
    #[arg(long, value_name = "/dev/sdX")]
    pub device: Option<PathBuf>,
    /// The image's architecture, when it cannot be read from the image
    #[arg(long, value_name = "x86_64|aarch64|armv7", value_parser = Arch::parse)]
    pub arch: Option<Arch>,
    /// The static agent binary to write (default: the one `cross/build` made for the arch)
    #[arg(long, value_name = "PATH", conflicts_with = "agent_dir")]
    pub agent: Option<PathBuf>,
    /// A folder of static agents as `cross/build` writes them (TRIPLE/shoal-agent)
    /// [default: $CARGO_TARGET_DIR/dist, as for cross/build, else
    /// /var/cache/shoal/cross-target/dist]
    #[arg(long, value_name = "DIR")]
    pub agent_dir: Option<PathBuf>,
    /// The URL devices enroll at, instead of the one the hub advertises
    #[arg(long, value_name = "URL")]
    pub hub_url: Option<ApiUrl>,
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    // Here `--token` is the claim token (`shoal flash IMAGE --token T`); the API token comes
    // from SHOAL_TOKEN or the api-token file.
    let Some(claim_text) = hub.token.clone() else {
        bail!("--token: give the claim token to write (`shoal token create --uses N` issues one)");
    };
    let hub = &HubArgs {
        token: None,
        ..hub.clone()
    };
    let token = match Token::parse(&claim_text).map_err(|e| anyhow::anyhow!("--token: {e}"))? {
        Token::Claim(claim) => claim,
        Token::Node(_) => bail!(
            "--token: that is a per-node token from `shoal node add`; flash takes a claim token from `shoal token create --uses N`"
        ),
    };
    let client = Client::new(hub)?;
    let claims: Vec<ClaimInfo> = client.get("/v1/tokens", &[])?;
    let claim = check_claim(&claims, token.id, token.ca_fingerprint).map_err(anyhow::Error::msg)?;
    let url = match &args.hub_url {
        Some(url) => url.clone(),
        None if claim.hub.host().is_loopback() || claim.hub.host().is_unspecified() => bail!(
            "the hub advertises its API as {}, which a device cannot reach: start it with --advertise-api (or --listen-api on a reachable address), or pass --hub-url",
            claim.hub
        ),
        None => claim.hub.clone(),
    };
    let bootstrap = Bootstrap {
        hub: url,
        token: Some(claim_text.trim().to_string()),
        labels: claim.labels.clone(),
    };
    let target = match (&args.out, &args.device) {
        (Some(out), _) => Target::Out(out.clone()),
        (None, Some(device)) => Target::Device(device.clone()),
        (None, None) => Target::InPlace,
    };
    let agent = match &args.agent {
        Some(path) => AgentSource::File(path.clone()),
        None => AgentSource::Dir(args.agent_dir.clone().unwrap_or_else(default_agent_dir)),
    };
    let report = flash::flash(&Request {
        image: &args.image,
        target,
        agent,
        arch: args.arch,
        bootstrap: &bootstrap,
    })
    .context("shoal flash")?;
    let arch = match &report.detected {
        Some(probe) => format!("{} (from {probe})", report.arch.as_str()),
        None => format!("{} (--arch)", report.arch.as_str()),
    };
    println!(
        "flashed {}: {arch}, boot partition {} ({} MiB)\n  agent {}\n  wrote {}\n  first boot through {}; {} KiB changed\n  claim token {} ({} of {} uses left), hub {}",
        report.written_to.display(),
        report.boot.number,
        report.boot.len >> 20,
        report.agent.display(),
        report.files.join(", "),
        report.hook,
        report.changed_bytes / 1024,
        claim.id,
        claim.uses.saturating_sub(claim.used),
        claim.uses,
        bootstrap.hub,
    );
    Ok(ExitCode::SUCCESS)
}

/// Where `cross/build` writes the agents: under CARGO_TARGET_DIR when set, as it does.
fn default_agent_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir).join("dist"),
        None => PathBuf::from(DEFAULT_AGENT_DIR),
    }
}

/// The hub's claim `id`, if it is one of this hub's (by the pin) and still enrolls devices.
fn check_claim<'a>(claims: &'a [ClaimInfo], id: &str, pin: &str) -> Result<&'a ClaimInfo, String> {
    let Some(claim) = claims.iter().find(|c| c.id == id) else {
        return Err(format!(
            "--token: claim token `{id}` is not one of this hub's (`shoal token list` shows them): a token of another hub?"
        ));
    };
    if !claim.ca_fingerprint.eq_ignore_ascii_case(pin) {
        return Err(format!(
            "--token: the token pins the CA {pin}, but this hub's is {}: it is a token of another hub",
            claim.ca_fingerprint
        ));
    }
    if claim.state != "active" {
        return Err(format!(
            "--token: claim token `{id}` is {}: `shoal token create` issues a new one",
            claim.state
        ));
    }
    Ok(claim)
}
