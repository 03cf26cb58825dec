//! `shoal backup FILE` and `shoal restore FILE --data-dir DIR` ([`crate::backup`]).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;

use super::output;
use crate::backup;

#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// The backup file to write (replaced if it exists)
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The hub's data dir (the hub may keep running)
    #[arg(long, value_name = "DIR", default_value = "/var/lib/shoal")]
    pub data_dir: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct RestoreArgs {
    /// A file `shoal backup` wrote
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The data dir to restore into: new or empty
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

pub fn run_backup(args: &BackupArgs) -> anyhow::Result<ExitCode> {
    let manifest = backup::create(&args.data_dir, &args.file, shoal_model::clock::wall_ms())
        .context("no backup written")?;
    let files: Vec<String> = manifest
        .files
        .iter()
        .map(|f| format!("{} ({} bytes)", f.path, f.size))
        .collect();
    println!(
        "wrote {} from {}: {}\nrestore it with `shoal restore {} --data-dir DIR`",
        args.file.display(),
        args.data_dir.display(),
        files.join(", "),
        args.file.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_restore(args: &RestoreArgs) -> anyhow::Result<ExitCode> {
    let manifest = backup::restore(&args.file, &args.data_dir)?;
    println!(
        "restored {} (taken {} by shoal {}) into {}: start the hub with `shoal serve --data-dir {}`; enrolled agents reconnect with the credentials they have",
        args.file.display(),
        output::utc(manifest.created_ms),
        manifest.shoal_version,
        args.data_dir.display(),
        args.data_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
