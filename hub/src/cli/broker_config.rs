//! `shoal broker-config mosquitto [--port 1883] [--out DIR]`: the configuration of an
//! external Mosquitto broker for the enrolled nodes (users, passwords, per-node topic ACLs).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use shoal_model::api::MosquittoConfig;

use super::client::{Client, HubArgs};
use crate::broker::mosquitto::{TLS_CERT, TLS_KEY};

/// Print or write the configuration of an external MQTT broker for the enrolled nodes
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The broker to configure
    #[arg(value_enum)]
    pub broker: Broker,
    /// The port the broker listens on [default: 8883, or 1883 with --insecure]
    #[arg(long)]
    pub port: Option<u16>,
    /// Plain MQTT, without the TLS certificate from the hub's CA
    #[arg(long)]
    pub insecure: bool,
    /// Write mosquitto.conf, passwd (mode 0600) and acl into this folder instead of printing
    /// them
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Broker {
    Mosquitto,
}

/// The files, their names, and their modes.
const FILES: [(&str, u32); 3] = [("mosquitto.conf", 0o644), ("passwd", 0o600), ("acl", 0o644)];

pub fn run(args: &Args, hub: &HubArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(hub)?;
    let port = args
        .port
        .unwrap_or(if args.insecure { 1883 } else { 8883 })
        .to_string();
    let insecure = args.insecure.to_string();
    let Some(out) = &args.out else {
        let config: MosquittoConfig = client.get(
            "/v1/broker-config/mosquitto",
            &[("port", &port), ("insecure", &insecure)],
        )?;
        print!("{}", printed(&config));
        return Ok(ExitCode::SUCCESS);
    };
    fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let dir = out
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", out.display()))?;
    let dir_text = dir
        .to_str()
        .with_context(|| format!("{} is not UTF-8: choose another folder", dir.display()))?;
    let config: MosquittoConfig = client.get(
        "/v1/broker-config/mosquitto",
        &[("port", &port), ("dir", dir_text), ("insecure", &insecure)],
    )?;
    for ((name, mode), text) in FILES.iter().zip(contents(&config)) {
        write_file(&dir.join(name), text, *mode)?;
    }
    if !config.cert_pem.is_empty() {
        write_file(&dir.join(TLS_CERT), &config.cert_pem, 0o644)?;
        write_file(&dir.join(TLS_KEY), &config.key_pem, 0o600)?;
    }
    print!("{}", written_report(&dir));
    Ok(ExitCode::SUCCESS)
}

fn contents(config: &MosquittoConfig) -> [&str; 3] {
    [&config.conf, &config.passwd, &config.acl]
}

/// The three files, each under a `# ---- NAME ----` line.
pub fn printed(config: &MosquittoConfig) -> String {
    let mut out = String::new();
    for ((name, _), text) in FILES.iter().zip(contents(config)) {
        out.push_str(&format!("# ---- {name} ----\n{text}"));
        if !text.is_empty() && !text.ends_with('\n') {
            out.push('\n');
        }
    }
    out
}

/// What `--out` prints once the files are written.
pub fn written_report(dir: &Path) -> String {
    let conf = dir.join("mosquitto.conf");
    format!(
        "wrote {}, {} (mode 0600) and {}\n\
         hint: start the broker with `mosquitto -c {}`; run this command again after each `shoal node add` and after devices enroll with a claim token (`shoal token list` names them)\n",
        conf.display(),
        dir.join("passwd").display(),
        dir.join("acl").display(),
        conf.display()
    )
}

/// Writes a file with exactly `mode`, also when it existed with another mode: the mode is
/// set before any content is written.
fn write_file(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    let context = || format!("cannot write {}", path.display());
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(context)?;
    file.set_permissions(fs::Permissions::from_mode(mode))
        .with_context(context)?;
    file.write_all(text.as_bytes()).with_context(context)?;
    file.sync_all().with_context(context)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MosquittoConfig {
        MosquittoConfig {
            conf: "listener 1883\npassword_file /etc/m/passwd\n".into(),
            passwd: "gw-1:$7$hash".into(),
            acl: String::new(),
            cert_pem: String::new(),
            key_pem: String::new(),
        }
    }

    #[test]
    fn printed_files_are_separated_and_end_with_a_newline() {
        assert_eq!(
            printed(&config()),
            "# ---- mosquitto.conf ----\nlistener 1883\npassword_file /etc/m/passwd\n\
             # ---- passwd ----\ngw-1:$7$hash\n\
             # ---- acl ----\n"
        );
    }

    #[test]
    fn the_password_file_is_private_even_when_it_existed_readable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("passwd");
        fs::write(&path, "old content that is longer").expect("write");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");
        write_file(&path, "gw-1:hash\n", 0o600).expect("write_file");
        let meta = fs::metadata(&path).expect("metadata");
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(fs::read_to_string(&path).expect("read"), "gw-1:hash\n");
    }

    #[test]
    fn the_report_names_the_files_and_how_to_start_the_broker() {
        assert_eq!(
            written_report(Path::new("/etc/mosquitto/shoal")),
            "wrote /etc/mosquitto/shoal/mosquitto.conf, /etc/mosquitto/shoal/passwd (mode 0600) and /etc/mosquitto/shoal/acl\n\
             hint: start the broker with `mosquitto -c /etc/mosquitto/shoal/mosquitto.conf`; run this command again after each `shoal node add` and after devices enroll with a claim token (`shoal token list` names them)\n"
        );
    }
}
