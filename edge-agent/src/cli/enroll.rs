//! `shoal-agent enroll --hub URL --token TOKEN`: joins this device to a hub.
//!
//! 1. The token (`shoal1.NODE.SECRET.CA`, from `shoal node add`) names the node and pins the
//!    SHA-256 of the hub's CA certificate.
//! 2. The CA is fetched from `URL/v1/ca` (public; over HTTPS without verification, since the
//!    pin is the check) and compared with the pin. A mismatch stops here: nothing was sent.
//! 3. The token goes to `URL/v1/enroll` over HTTPS verified with that CA alone. Plain HTTP is
//!    accepted only for a loopback hub or with `--insecure`.
//! 4. The answer is kept in the data dir: `enrollment.toml` (node name, broker, password, CA
//!    path, prefix, signing keys; 0600), `hub-ca.pem`, and the signing keys in SQLite.
//!
//! A claim token (`shoalc1.ID.SECRET.CA`, from `shoal token create`) works the same way for a
//! batch of devices: the device also sends what it knows about itself (`DeviceIdentity`:
//! the name it proposes, machine id, serial, MAC), and the hub answers with the node name
//! the token's template gave it. agent.toml must then not set `node_name`.
//!
//! Enrolling again (a new token) replaces all of it. The node keeps running what it runs, and
//! accepts the hub's next desired state whatever its generation, since the hub may have
//! forgotten this node in between.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use shoal_model::api::{ca_fingerprint, DeviceIdentity, EnrollRequest, EnrollResponse, Token};
use shoal_model::bootstrap::Bootstrap;
use shoal_model::clock::wall_ms;
use shoal_model::endpoint::ApiUrl;
use shoal_model::wire::signing::PublicKey;
use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::config::{self, ENROLLMENT_FILE};
use crate::state::Store;

/// The CA file written beside the enrollment file.
pub const CA_FILE: &str = "hub-ca.pem";
/// The most the hub's answers may hold.
const MAX_ANSWER_BYTES: u64 = 256 * 1024;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The hub's API, as `shoal node add` printed it (https://HOST:PORT)
    #[arg(
        long,
        value_name = "URL",
        required_unless_present = "bootstrap",
        conflicts_with = "bootstrap"
    )]
    pub hub: Option<String>,
    /// The one-time token from `shoal node add`, or a claim token from `shoal token create`
    #[arg(
        long,
        value_name = "TOKEN",
        required_unless_present = "bootstrap",
        conflicts_with = "bootstrap"
    )]
    pub token: Option<String>,
    /// First boot: enroll with the bootstrap file `shoal flash` wrote (hub, claim token),
    /// waiting for the network, then remove the token from it; does nothing once enrolled
    #[arg(long, value_name = "PATH")]
    pub bootstrap: Option<PathBuf>,
    /// With --bootstrap: how long to keep trying while the hub cannot be reached
    #[arg(long, value_name = "DURATION", default_value = "24h")]
    pub give_up_after: String,
    /// With a claim token: the name this device proposes (its host name unless given); the
    /// token's name template decides, and the hub keeps names unique
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The agent's config file (for data_dir and node_name)
    #[arg(long, value_name = "FILE", default_value = config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// Allow plain http:// to a hub that is not on loopback (the token then crosses the
    /// network unencrypted)
    #[arg(long)]
    pub insecure: bool,
}

/// The hub's API url; plain `http://` only to loopback or with `--insecure`.
fn check_hub_url(text: &str, insecure: bool) -> anyhow::Result<ApiUrl> {
    let url: ApiUrl = text.parse().context("--hub")?;
    if !url.is_tls() && !url.host().is_loopback() && !insecure {
        bail!("--hub `{url}` is plain http to another machine: the token would cross the network unencrypted; use the https:// URL `shoal node add` printed, or --insecure");
    }
    Ok(url)
}

/// The fingerprint tokens pin ([`ca_fingerprint`]) of the first certificate in `pem`.
fn fingerprint(pem: &[u8]) -> anyhow::Result<String> {
    let cert = Certificate::from_pem(pem).context("the hub's CA is not a PEM certificate")?;
    Ok(ca_fingerprint(cert.der()))
}

fn agent(tls: TlsConfig) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .tls_config(tls)
        .user_agent(concat!("shoal-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

fn read_body(
    response: &mut ureq::http::Response<ureq::Body>,
    what: &str,
) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .reader()
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the hub's {what}"))?;
    Ok(bytes)
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    if let Some(path) = &args.bootstrap {
        return first_boot(args, path);
    }
    let (Some(hub), Some(token_text)) = (&args.hub, &args.token) else {
        bail!("give --hub and --token, or --bootstrap");
    };
    let token = Token::parse(token_text).map_err(anyhow::Error::msg)?;
    let pinned = token.ca_fingerprint().to_ascii_lowercase();
    let base = check_hub_url(hub, args.insecure)?;
    if !base.is_tls() {
        eprintln!("warning: enrolling over plain http: the token is sent unencrypted");
    }
    // agent.toml alone: an earlier enrollment must not stand in the way of this one.
    let text = match std::fs::read_to_string(&args.config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", args.config.display())),
    };
    let (node_name, data_dir) = config::node_and_data_dir(&text)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let device = match &token {
        Token::Node(token) => {
            if let Some(name) = node_name.filter(|name| *name != token.node) {
                bail!(
                    "{} names this node `{name}` but the token is for `{}`: remove node_name there, or ask for a token for `{name}`",
                    args.config.display(),
                    token.node,
                );
            }
            if args.name.is_some() {
                bail!(
                    "--name goes with a claim token; this per-node token is for `{}`",
                    token.node
                );
            }
            None
        }
        Token::Claim(_) => {
            if let Some(name) = node_name {
                bail!(
                    "{} names this node `{name}`, but with a claim token the hub names it (from the token's name template): remove node_name there and pass `--name {name}` to propose it",
                    args.config.display()
                );
            }
            Some(crate::host::device_identity(args.name.as_deref()))
        }
    };
    let expected = match &token {
        Token::Node(token) => Some(token.node),
        Token::Claim(_) => None,
    };
    let enrolled = enroll(&base, &pinned, token_text.trim(), device)?;
    if let Some(expected) = expected.filter(|e| *e != enrolled.node_name) {
        bail!(
            "the hub enrolled `{}` but the token is for `{expected}`",
            enrolled.node_name
        );
    }
    keep(&enrolled, &data_dir)?;
    println!(
        "enrolled as `{}` with the hub at {base}; broker {}\nidentity kept in {} (0600); start the agent with `shoal-agent run`",
        enrolled.node_name,
        enrolled.broker,
        data_dir.join(ENROLLMENT_FILE).display()
    );
    Ok(ExitCode::SUCCESS)
}

/// `enroll --bootstrap`: the device's first boot (and every boot after: it is the agent
/// unit's `ExecStartPre`). Enrolled already: the token is removed from the bootstrap if it
/// is still there, and nothing else happens. Otherwise it enrolls with the bootstrap's hub
/// and token, trying again with capped, jittered backoff while the hub cannot be reached
/// (devices boot before their link is up), keeps the identity, then removes the token.
fn first_boot(args: &Args, path: &Path) -> anyhow::Result<ExitCode> {
    let text = read_bootstrap(path)?;
    let bootstrap =
        Bootstrap::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    let config = match std::fs::read_to_string(&args.config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", args.config.display())),
    };
    let (node_name, data_dir) = config::node_and_data_dir(&config)
        .map_err(|e| anyhow::anyhow!("{}: {e}", args.config.display()))?;
    let identity = data_dir.join(ENROLLMENT_FILE);
    if identity.exists() {
        if bootstrap.token.is_some() {
            forget_token(path, &bootstrap)?;
            println!(
                "already enrolled ({}); removed the used token from {}",
                identity.display(),
                path.display()
            );
        } else {
            println!("already enrolled ({}); nothing to do", identity.display());
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(token_text) = bootstrap.token.clone() else {
        bail!(
            "{}: its token was used already, but this device holds no enrollment in {}: enroll it by hand with `shoal-agent enroll --hub URL --token TOKEN`",
            path.display(),
            data_dir.display()
        );
    };
    let token = Token::parse(&token_text).map_err(anyhow::Error::msg)?;
    let device = match &token {
        Token::Node(token) => {
            if let Some(name) = node_name.filter(|name| *name != token.node) {
                bail!(
                    "{} names this node `{name}` but the bootstrap's token is for `{}`",
                    args.config.display(),
                    token.node
                );
            }
            None
        }
        Token::Claim(_) => {
            if let Some(name) = node_name {
                bail!("{} names this node `{name}`, but with a claim token the hub names it: remove node_name there", args.config.display());
            }
            Some(crate::host::device_identity(args.name.as_deref()))
        }
    };
    let base = check_hub_url(&bootstrap.hub.to_string(), args.insecure)?;
    let pinned = token.ca_fingerprint().to_ascii_lowercase();
    let give_up = shoal_model::quantity::parse_duration(&args.give_up_after)
        .map_err(|e| anyhow::anyhow!("--give-up-after: {e}"))?;
    let started = std::time::Instant::now();
    let mut failures = 0u32;
    let enrolled = loop {
        match attempt(&base, &pinned, &token_text, device.clone()) {
            Ok(enrolled) => break enrolled,
            Err(Failed::Refused(error)) => return Err(error),
            Err(Failed::Unreachable(error)) => {
                let wait = crate::mqtt::backoff::delay(failures, crate::mqtt::backoff::random());
                if started.elapsed() + wait > give_up {
                    return Err(error.context(format!("gave up after {:?}", started.elapsed())));
                }
                eprintln!(
                    "warning: {error:#}; trying again in {} ms",
                    wait.as_millis()
                );
                std::thread::sleep(wait);
                failures = failures.saturating_add(1);
            }
        }
    };
    keep(&enrolled, &data_dir)?;
    forget_token(path, &bootstrap)?;
    println!(
        "enrolled as `{}` with the hub at {base} after {} attempt(s); removed the token from {}",
        enrolled.node_name,
        failures + 1,
        path.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn read_bootstrap(path: &Path) -> anyhow::Result<String> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut text = String::new();
    file.take(shoal_model::bootstrap::MAX_BOOTSTRAP_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text)
}

/// Rewrites the bootstrap without its token (through a temporary file and a rename).
fn forget_token(path: &Path, bootstrap: &Bootstrap) -> anyhow::Result<()> {
    let used = Bootstrap {
        token: None,
        ..bootstrap.clone()
    };
    write_atomic(path, used.render().as_bytes(), 0o600)
}

/// Why an enrollment attempt failed: worth trying again later (the network or the hub is
/// not there yet), or not (the hub refused, or is not the one the token pins).
#[derive(Debug)]
pub enum Failed {
    Unreachable(anyhow::Error),
    Refused(anyhow::Error),
}

/// Checks the hub's CA against `pinned`, then sends `token` over TLS verified with it.
pub fn enroll(
    base: &ApiUrl,
    pinned: &str,
    token: &str,
    device: Option<DeviceIdentity>,
) -> anyhow::Result<EnrollResponse> {
    attempt(base, pinned, token, device).map_err(|failed| match failed {
        Failed::Unreachable(e) | Failed::Refused(e) => e,
    })
}

/// One enrollment attempt, its failure sorted into [`Failed`].
pub fn attempt(
    base: &ApiUrl,
    pinned: &str,
    token: &str,
    device: Option<DeviceIdentity>,
) -> Result<EnrollResponse, Failed> {
    let refused = |e: anyhow::Error| Failed::Refused(e);
    // 1. The CA, checked against the pin before anything secret is sent.
    let unverified = agent(TlsConfig::builder().disable_verification(true).build());
    let mut response = unverified
        .get(format!("{base}/v1/ca"))
        .call()
        .with_context(|| format!("cannot reach the hub at {base}"))
        .map_err(Failed::Unreachable)?;
    if response.status().is_server_error() {
        return Err(Failed::Unreachable(anyhow::anyhow!(
            "the hub at {base} answered {} for its CA certificate",
            response.status()
        )));
    }
    if !response.status().is_success() {
        return Err(refused(anyhow::anyhow!(
            "the hub at {base} answered {} for its CA certificate: is this a Shoal hub's API?",
            response.status()
        )));
    }
    let ca_pem = read_body(&mut response, "CA certificate").map_err(Failed::Unreachable)?;
    let presented = fingerprint(&ca_pem).map_err(refused)?;
    if presented != pinned {
        return Err(refused(anyhow::anyhow!(
            "the hub at {base} presented a CA with fingerprint {presented}, but the token expects {pinned}: this is not the hub that issued the token, or something in between impersonates it; nothing was sent"
        )));
    }

    // 2. The token, over TLS verified with that CA alone.
    let ca = Certificate::from_pem(&ca_pem)
        .map_err(|e| refused(anyhow::anyhow!("the hub's CA: {e}")))?;
    let verified = agent(
        TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(vec![ca])))
            .build(),
    );
    let body = serde_json::to_vec(&EnrollRequest {
        token: token.to_string(),
        device,
    })
    .map_err(|e| refused(e.into()))?;
    let mut response = verified
        .post(format!("{base}/v1/enroll"))
        .header("content-type", "application/json")
        .send(&body[..])
        .with_context(|| format!("cannot enroll with the hub at {base}"))
        .map_err(Failed::Unreachable)?;
    let status = response.status();
    let answer = read_body(&mut response, "answer").map_err(Failed::Unreachable)?;
    if !status.is_success() {
        let reason = serde_json::from_slice::<shoal_model::api::ApiError>(&answer)
            .map(|e| e.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&answer).into_owned());
        let error = anyhow::anyhow!("the hub refused the enrollment ({status}): {reason}");
        return Err(if status.is_server_error() {
            Failed::Unreachable(error)
        } else {
            Failed::Refused(error)
        });
    }
    let enrolled: EnrollResponse = serde_json::from_slice(&answer)
        .context("the hub's enrollment answer is not valid")
        .map_err(refused)?;
    shoal_model::manifest::names::check_dns_label(&enrolled.node_name)
        .map_err(|e| refused(anyhow::anyhow!("the hub named this node badly: {e}")))?;
    if fingerprint(enrolled.ca_pem.as_bytes()).map_err(refused)? != pinned {
        return Err(refused(anyhow::anyhow!(
            "the hub's answer carries another CA than the one the token pins"
        )));
    }
    Ok(enrolled)
}

/// Keeps an enrollment in `data_dir`: the CA, the signing keys and `enrollment.toml`.
pub fn keep(enrolled: &EnrollResponse, data_dir: &Path) -> anyhow::Result<()> {
    let keys = enrolled
        .signing_keys
        .iter()
        .map(|k| k.parse::<PublicKey>())
        .collect::<Result<Vec<_>, _>>()
        .context("the hub's signing keys are not valid")?;
    if keys.is_empty() {
        bail!("the hub sent no signing key");
    }
    let release_keys = enrolled
        .release_keys
        .iter()
        .map(|k| k.parse::<PublicKey>())
        .collect::<Result<Vec<_>, _>>()
        .context("the hub's release keys are not valid")?;

    // 3. Kept in the data dir; the file goes last, so a half-done enrollment is not one.
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let ca_path = data_dir.join(CA_FILE);
    write_atomic(&ca_path, enrolled.ca_pem.as_bytes(), 0o644)?;
    let store = Store::open(data_dir)?;
    store.set_trusted_keys(&keys, wall_ms())?;
    store.forget_hub_generation()?;
    // The release keys the agent's own updates must be signed with (a hub of release 0.1.0
    // has none: the first target then brings them, see `update`).
    if !release_keys.is_empty() {
        crate::update::keep_release_keys(data_dir, &release_keys)?;
    }
    let file = enrollment_file(enrolled, &ca_path, &keys)?;
    write_atomic(&data_dir.join(ENROLLMENT_FILE), file.as_bytes(), 0o600)?;
    Ok(())
}

/// The text of `enrollment.toml` (a subset of agent.toml's keys).
fn enrollment_file(
    enrolled: &EnrollResponse,
    ca_path: &Path,
    keys: &[PublicKey],
) -> anyhow::Result<String> {
    // A JSON string is a valid TOML basic string (the same quotes and escapes), and the
    // answer is checked but still the hub's text.
    let quote = |text: &str| serde_json::to_string(text).unwrap_or_else(|_| "\"\"".into());
    let mut out = String::from(
        "# Written by `shoal-agent enroll`: this node's identity on its hub. Keep it private.\n",
    );
    out.push_str(&format!(
        "node_name = {}\n\n[hub]\n",
        quote(&enrolled.node_name)
    ));
    out.push_str(&format!(
        "broker = {}\n",
        quote(&enrolled.broker.to_string())
    ));
    out.push_str(&format!("password = {}\n", quote(&enrolled.password)));
    if enrolled.broker.is_tls() {
        let path = ca_path
            .to_str()
            .context("the data dir's path is not UTF-8")?;
        out.push_str(&format!("ca_file = {}\n", quote(path)));
    }
    out.push_str(&format!("prefix = {}\n", quote(&enrolled.prefix)));
    let keys: Vec<String> = keys.iter().map(|k| quote(&k.to_string())).collect();
    out.push_str(&format!("signing_keys = [{}]\n", keys.join(", ")));
    Ok(out)
}

/// Writes `path` through a temporary file, fsync, a rename, fsync of the renamed file and of
/// its folder, with `mode`: only then is the rename itself durable. On vfat (the bootstrap is
/// on the card's FAT boot partition) the folder entry `path` now names is written with the
/// renamed file's inode, so the folder's fsync alone does not keep it; without both a power
/// cut soon after brought the old file back, the used claim token with it
/// (tests/tests/vm_first_boot.rs).
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let temp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&temp)
        .with_context(|| format!("cannot write {}", temp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temp.display()))?;
    std::fs::rename(&temp, path).with_context(|| format!("cannot write {}", path.display()))?;
    file.sync_all()
        .with_context(|| format!("cannot sync {}", path.display()))?;
    let folder = match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => folder,
        _ => Path::new("."),
    };
    std::fs::File::open(folder)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", folder.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_hub_urls_are_checked_before_anything_is_sent() {
        let ca = "AB".repeat(32);
        let secret = "s".repeat(43);
        let text = format!("shoal1.gw-1.{secret}.{ca}");
        let token = shoal_model::api::EnrollToken::parse(&text).expect("token");
        assert_eq!(
            (token.node, token.ca_fingerprint.to_ascii_lowercase()),
            ("gw-1", ca.to_ascii_lowercase())
        );
        for bad in [
            "",
            "shoal1.gw-1.s",
            "x.gw-1.s.aa",
            &format!("shoal1.GW.{secret}.{ca}"),
            &format!("shoal1.gw-1.{secret}.abc"),
        ] {
            assert!(shoal_model::api::EnrollToken::parse(bad).is_err(), "{bad}");
        }
        // (given, --insecure, Some(tls) when accepted)
        let cases = [
            ("https://hub.example:7440", false, Some(true)),
            ("HTTPS://hub.example:7440/", false, Some(true)),
            ("http://127.0.0.1:7440", false, Some(false)),
            ("http://[::1]:7440", false, Some(false)),
            ("http://localhost:7440", false, Some(false)),
            ("http://10.0.0.1:7440", false, None),
            ("http://10.0.0.1:7440", true, Some(false)),
            ("ftp://hub", false, None),
            ("https://", false, None),
            ("https://hub:+7440", false, None),
        ];
        for (given, insecure, tls) in cases {
            let checked = check_hub_url(given, insecure);
            assert_eq!(checked.as_ref().ok().map(ApiUrl::is_tls), tls, "{given}");
        }
        let plain =
            check_hub_url("http://10.0.0.1:7440", false).expect_err("plain to another machine");
        assert!(plain.to_string().contains("unencrypted"), "{plain}");
        let bad = check_hub_url("ftp://hub", false).expect_err("not http");
        assert_eq!(
            format!("{bad:#}"),
            "--hub: `ftp://hub` is not a hub API url: unsupported scheme `ftp` (write it as https://HOST[:PORT] or http://HOST[:PORT])"
        );
    }

    #[test]
    fn the_enrollment_file_reads_back_as_the_agents_hub_config() {
        let enrolled = EnrollResponse {
            node_name: "gw-1".into(),
            password: "p4ss".into(),
            broker: "mqtts://10.0.0.1:8883".parse().expect("a broker url"),
            prefix: "shoal/v1".into(),
            ca_pem: String::new(),
            signing_keys: Vec::new(),
            release_keys: Vec::new(),
        };
        let key = PublicKey([9; 32]);
        let text = enrollment_file(&enrolled, Path::new("/var/lib/shoal/hub-ca.pem"), &[key])
            .expect("file");
        let config = config::parse_with("", Some(&text), "host").expect("config");
        assert_eq!(config.node_name, "gw-1");
        let hub = config.hub.expect("hub");
        assert_eq!(hub.broker.to_string(), "mqtts://10.0.0.1:8883");
        assert_eq!(hub.password().expect("password").as_deref(), Some("p4ss"));
        assert_eq!(
            hub.ca_file.as_deref(),
            Some(Path::new("/var/lib/shoal/hub-ca.pem"))
        );
        assert_eq!(hub.signing_keys, vec![key]);
        // agent.toml's own [hub] keys win; a different node_name is refused.
        let config = config::parse_with("[hub]\nkeep_alive = \"5s\"\n", Some(&text), "host")
            .expect("config");
        assert_eq!(config.hub.expect("hub").keep_alive, Duration::from_secs(5));
        let error = config::parse_with("node_name = \"gw-2\"\n", Some(&text), "host")
            .expect_err("another name");
        assert!(error.contains("enrolled as `gw-1`"), "{error}");
    }
}
