//! `shoal agent-release add|list|rm`: agent binaries the fleet can update itself to.
//!
//! The hub refuses a file that is not a static agent for x86_64, aarch64 or armv7 (the
//! architecture is read from the ELF header), signs what it is (version, architecture,
//! SHA-256, size) with its release key, a key of its own beside the desired-state keys, and
//! keeps the binary in its database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use shoal_model::api::{AgentReleaseAdded, AgentReleaseInfo, Done};

use super::client::{segment, Client, HubArgs};
use super::output::{self, Format};

/// Agent releases: the static agent binaries nodes can update to
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Add a static agent binary as a release (its architecture is read from the file)
    Add {
        /// The static `shoal-agent` binary (`cross/build TARGET` builds one)
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The version it is, as MAJOR.MINOR.PATCH (what `shoal-agent --version` prints)
        #[arg(long, value_name = "VERSION")]
        version: String,
        /// The lowest version a node that has proven this release may ever be asked to run
        /// again, signed with the release (at most VERSION); a node refuses any lower target
        #[arg(long, value_name = "VERSION")]
        minimum: Option<String>,
    },
    /// List the releases: version, architecture, digest, size, minimum, signing key
    List {
        /// Output format (default: a table)
        #[arg(short = 'o', long, value_enum, value_name = "FORMAT")]
        output: Option<Format>,
    },
    /// Remove a release (every architecture of the version, or one)
    Rm {
        #[arg(value_name = "VERSION")]
        version: String,
        /// Only this architecture's binary: x86_64, aarch64 or armv7
        #[arg(long, value_name = "ARCH")]
        arch: Option<String>,
    },
}

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    match &args.command {
        Command::Add {
            file,
            version,
            minimum,
        } => {
            let bytes = read_bounded(file)?;
            let mut query = vec![("version", version.as_str())];
            if let Some(minimum) = minimum {
                query.push(("minimum", minimum.as_str()));
            }
            let added: AgentReleaseAdded =
                client.post_bytes("/v1/agent-releases", &query, &bytes)?;
            let r = &added.release;
            if added.new {
                let floor = r
                    .minimum
                    .as_ref()
                    .map(|m| format!(", minimum {m}"))
                    .unwrap_or_default();
                println!(
                    "agent {} for {} added: sha256 {}, {} bytes{floor}, signed by release key {}",
                    r.version, r.arch, r.sha256, r.size, r.key
                );
            } else {
                println!(
                    "agent {} for {} is already released with these bytes (sha256 {}): nothing changed",
                    r.version, r.arch, r.sha256
                );
            }
        }
        Command::List { output } => {
            let releases: Vec<AgentReleaseInfo> = client.get("/v1/agent-releases", &[])?;
            match output {
                None | Some(Format::Wide) => {
                    print!("{}", table(&releases, shoal_model::clock::wall_ms()))
                }
                Some(Format::Yaml) => print!("{}", output::yaml(&serde_json::to_value(&releases)?)),
                Some(_) => print!("{}", output::json(&serde_json::to_value(&releases)?)),
            }
        }
        Command::Rm { version, arch } => {
            let path = format!("/v1/agent-releases/{}", segment(version));
            let path = match arch {
                Some(arch) => format!("{path}?arch={}", segment(arch)),
                None => path,
            };
            let done: Done = client.delete(&path)?;
            println!("{}", done.message);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The file, refused before it is sent when larger than any agent may be.
fn read_bounded(file: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    if size > shoal_model::release::MAX_AGENT_BYTES {
        anyhow::bail!(
            "{} is {size} bytes; an agent binary may be at most {} bytes",
            file.display(),
            shoal_model::release::MAX_AGENT_BYTES
        );
    }
    std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))
}

/// One line per release, newest version first.
pub fn table(releases: &[AgentReleaseInfo], now_ms: u64) -> String {
    let rows: Vec<Vec<String>> = releases
        .iter()
        .map(|r| {
            vec![
                r.version.clone(),
                r.arch.clone(),
                r.sha256.chars().take(12).collect(),
                format!("{:.1}Mi", r.size as f64 / f64::from(1u32 << 20)),
                r.minimum.clone().unwrap_or_else(|| "-".into()),
                r.key.clone(),
                output::age(r.created_ms, now_ms),
            ]
        })
        .collect();
    shoal_model::table::render(
        &["VERSION", "ARCH", "SHA256", "SIZE", "MINIMUM", "KEY", "AGE"],
        &rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_shows_version_arch_a_short_digest_and_the_size() {
        let release = AgentReleaseInfo {
            version: "0.2.0".into(),
            arch: "aarch64".into(),
            sha256: "ab".repeat(32),
            size: 7 << 20,
            key: "0123456789abcdef".into(),
            created_ms: 0,
            minimum: Some("0.1.5".into()),
        };
        let text = table(&[release], 120_000);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{text}");
        for want in [
            "0.2.0",
            "aarch64",
            "abababababab",
            "7.0Mi",
            "0.1.5",
            "0123456789abcdef",
            "2m",
        ] {
            assert!(lines[1].contains(want), "{want} in {text}");
        }
    }
}
