//! `shoal token create|list|revoke`: claim tokens, each of which enrolls a batch of devices.
//!
//! A claim token (`shoalc1.ID.SECRET.CA`) works for up to `--uses` devices until it expires
//! or is revoked; every device it enrolls becomes its own node, with its own credentials,
//! the token's labels and a name from `--name-template`. Like a per-node token it pins the
//! hub's CA. `shoal flash IMAGE --token T` writes it into a disk image; `shoal-agent enroll
//! --hub URL --token T` uses it on a running device.

use std::process::ExitCode;

use serde_json::Value;
use shoal_model::api::{ClaimCreateRequest, ClaimCreated, ClaimInfo, Done, Token};
use shoal_model::quantity::parse_duration;

use super::client::{segment, Client, HubArgs};
use super::node::{local_address_warning, parse_label_set};
use super::output::{self, Format};

/// Claim tokens: one token enrolls a batch of devices, each as its own node
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Issue a claim token and print it (shown only now)
    Create {
        /// How many devices it may enroll
        #[arg(long, value_name = "N")]
        uses: u32,
        /// How long it works, e.g. 30m, 24h, 7d (at most 30d)
        #[arg(long, value_name = "DURATION", default_value = "24h")]
        ttl: String,
        /// Hub-side labels of every node it enrolls, as k=v,k2=v2
        #[arg(long, value_name = "K=V,...")]
        labels: Option<String>,
        /// How nodes are named: text with {name} (the name the device proposes, its host
        /// name unless `shoal-agent enroll --name`), {machine-id}, {serial}, {mac}; {VAR:N}
        /// keeps the last N characters. Taken names get -2, -3, ...
        #[arg(long, value_name = "TEMPLATE", default_value = shoal_model::api::DEFAULT_NAME_TEMPLATE)]
        name_template: String,
        /// Print only the token, for a shell variable: `token=$(shoal token create ... -q)`
        #[arg(short, long, conflicts_with = "output")]
        quiet: bool,
        /// Output format: json or yaml (the token and its claim, as the hub answers)
        #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
        output: Option<Format>,
    },
    /// List claim tokens: uses, expiry, state and the nodes each enrolled
    List {
        /// Output format (default: a table)
        #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
        output: Option<Format>,
    },
    /// Revoke a claim token (its id, or the whole token): it enrolls no more devices
    Revoke {
        /// The claim token's id (`shoal token list`), or the whole token
        #[arg(value_name = "ID|TOKEN")]
        claim: String,
    },
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    match &args.command {
        Command::Create {
            uses,
            ttl,
            labels,
            name_template,
            quiet,
            output,
        } => {
            let labels = match labels {
                Some(text) => parse_label_set(text).map_err(anyhow::Error::msg)?,
                None => Default::default(),
            };
            let ttl = parse_duration(ttl).map_err(|e| anyhow::anyhow!("--ttl: {e}"))?;
            let request = ClaimCreateRequest {
                uses: *uses,
                ttl_s: Some(ttl.as_secs().max(1)),
                labels,
                name_template: Some(name_template.clone()),
            };
            let created: ClaimCreated = client.post("/v1/tokens", &request)?;
            match output {
                _ if *quiet => println!("{}", created.token),
                None | Some(Format::Wide) => {
                    print!("{}", created_text(&created, shoal_model::clock::wall_ms()))
                }
                Some(format) => print!("{}", render(&serde_json::to_value(&created)?, *format)),
            }
            if let Some(warning) = local_address_warning(&created.claim.hub) {
                eprintln!("{warning}");
            }
        }
        Command::List { output } => {
            let claims: Vec<ClaimInfo> = client.get("/v1/tokens", &[])?;
            match output {
                None | Some(Format::Wide) => {
                    print!("{}", table(&claims, shoal_model::clock::wall_ms()))
                }
                Some(format) => {
                    let value = serde_json::to_value(&claims)?;
                    print!("{}", render(&value, *format));
                }
            }
        }
        Command::Revoke { claim } => {
            let id = match Token::parse(claim) {
                Ok(Token::Claim(claim)) => claim.id.to_string(),
                Ok(Token::Node(_)) => anyhow::bail!(
                    "that is a per-node token from `shoal node add`: it works once and expires by itself; `shoal node remove NODE` removes an enrolled node"
                ),
                Err(_) => claim.trim().to_string(),
            };
            let done: Done = client.delete(&format!("/v1/tokens/{}", segment(&id)))?;
            println!("{}", done.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn render(value: &Value, format: Format) -> String {
    match format {
        Format::Yaml => output::yaml(value),
        _ => output::json(value),
    }
}

/// What `token create` prints: the token, what it does, and how devices use it.
pub fn created_text(created: &ClaimCreated, now_ms: u64) -> String {
    let claim = &created.claim;
    let hours = claim.expires_ms.saturating_sub(now_ms).div_ceil(3_600_000);
    let expires = if hours >= 48 {
        format!("{} days", hours.div_ceil(24))
    } else {
        format!("{hours} h")
    };
    let labels = if claim.labels.is_empty() {
        "no labels".to_string()
    } else {
        format!("labels {}", output::labels(&claim.labels))
    };
    format!(
        "claim token {id} enrolls up to {uses} device(s) within {expires}, each as its own node named {template}, with {labels} (shown only now):\n\
         \x20 {token}\n\
         \n\
         write it into a disk image:\n\
         \x20 shoal flash IMAGE --token {token}\n\
         or, on a running device, as root:\n\
         \x20 shoal-agent enroll --hub {hub} --token {token}\n",
        id = claim.id,
        uses = claim.uses,
        template = claim.name_template,
        token = created.token,
        hub = claim.hub,
    )
}

/// One line per claim token, newest first.
pub fn table(claims: &[ClaimInfo], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = claims
        .iter()
        .map(|c| {
            let expires = if now_ms > c.expires_ms {
                format!("{} ago", output::age(c.expires_ms, now_ms))
            } else {
                format!("in {}", output::age(now_ms, c.expires_ms))
            };
            vec![
                c.id.clone(),
                c.state.clone(),
                format!("{}/{}", c.used, c.uses),
                expires,
                output::labels(&c.labels),
                c.name_template.clone(),
                if c.nodes.is_empty() {
                    "-".into()
                } else {
                    c.nodes.join(",")
                },
            ]
        })
        .collect();
    shoal_model::table::render(
        &["ID", "STATE", "USED", "EXPIRES", "LABELS", "NAMES", "NODES"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_uses_expiry_and_the_nodes_enrolled() {
        let claim = ClaimInfo {
            id: "k3x9q2abcd".into(),
            uses: 3,
            used: 2,
            labels: [("site".to_string(), "plant-1".to_string())].into(),
            name_template: "pi-{serial:6}".into(),
            created_ms: 0,
            expires_ms: 7_200_000,
            revoked_ms: None,
            state: "active".into(),
            nodes: vec!["pi-a1b2c3".into(), "pi-d4e5f6".into()],
            hub: "https://hub.example:7440".parse().expect("url"),
            ca_fingerprint: "ab".repeat(32),
        };
        let text = table(&[claim], 0);
        assert!(
            text.starts_with("ID           STATE    USED   EXPIRES"),
            "{text}"
        );
        assert!(
            text.contains("k3x9q2abcd   active   2/3    in 120m"),
            "{text}"
        );
        assert!(text.contains("pi-a1b2c3,pi-d4e5f6"), "{text}");
    }
}
