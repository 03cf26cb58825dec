//! `shoal backup` and `shoal restore`: what a hub cannot lose, in one file. Losing the CA or
//! the store means enrolling every device again; with a backup, a new machine (or a new disk)
//! serves the same fleet and the enrolled agents reconnect with the credentials they have.
//!
//! The archive is a gzip'd tar whose first entry, `shoal-backup.json`, says what it is
//! ([`Manifest`]: format `shoal-backup`, version 1, and each file's size and SHA-256), followed
//! by exactly those files in that order:
//! - `hub.db`: the store (nodes and their password hashes, workloads, claim tokens, signing and
//!   release keys), a consistent copy taken with SQLite's online backup API, so the hub may keep
//!   running;
//! - `api-token`, `mqtt-password`: the CLI's token and the hub's own broker password;
//! - `tls/ca.crt`, `tls/ca.key`: the CA that agents pin. The server certificate is not kept:
//!   the hub issues it from the CA at every start.
//!
//! The embedded broker's session files (`broker/`) are not kept either: agents reconnect and
//! subscribe again, and the hub republishes desired states from the store.
//!
//! Restoring checks everything (format, version, the list of files, sizes, digests, and the
//! database's own integrity check) in a temporary dir beside the target before it renames it
//! into place: a damaged or foreign file leaves nothing behind.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What the manifest's `format` says.
pub const FORMAT: &str = "shoal-backup";
/// The archive's version this hub writes and reads.
pub const VERSION: u32 = 1;
/// The archive's first entry.
pub const MANIFEST: &str = "shoal-backup.json";
/// The data dir's files a backup holds, in archive order.
pub const FILES: [&str; 5] = [
    "hub.db",
    "api-token",
    "mqtt-password",
    "tls/ca.crt",
    "tls/ca.key",
];
/// A manifest larger than this is not one.
const MAX_MANIFEST: u64 = 64 * 1024;

/// The archive's table of contents.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    /// When the backup was taken (ms since the epoch).
    pub created_ms: u64,
    /// The `shoal` that took it.
    pub shoal_version: String,
    pub files: Vec<Entry>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    pub path: String,
    pub size: u64,
    /// Lower-case hex.
    pub sha256: String,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{} is not a hub's data dir: it has no {missing} (give the --data-dir `shoal serve` uses)", dir.display())]
    NotADataDir { dir: PathBuf, missing: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot copy the store {}: {source}", path.display())]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("{} is not a shoal backup ({reason}): give a file that `shoal backup` wrote; nothing was restored", file.display())]
    Foreign { file: PathBuf, reason: String },
    #[error("{} is a shoal backup of version {found}, and this shoal reads version {VERSION}: restore it with the shoal that wrote it ({by}); nothing was restored", file.display())]
    Version {
        file: PathBuf,
        found: u32,
        by: String,
    },
    #[error("{} is damaged ({reason}): nothing was restored; use another copy of the backup", file.display())]
    Damaged { file: PathBuf, reason: String },
    #[error("{} is not empty: restore into a new or empty data dir (stop the hub and move the old one away first); nothing was restored", dir.display())]
    NotEmpty { dir: PathBuf },
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks a manifest's text: the format, the version, and exactly [`FILES`] in order with
/// digests that are SHA-256 hex. `Err` is the reason, for [`BackupError::Foreign`] or
/// [`BackupError::Damaged`]; a foreign format is told apart from a damaged manifest.
pub fn check_manifest(text: &[u8]) -> Result<Manifest, ManifestProblem> {
    // The format first, from a loose read, so that a newer version with other fields is
    // refused for its version.
    #[derive(Deserialize)]
    struct Probe {
        format: Option<String>,
        version: Option<u32>,
        shoal_version: Option<String>,
    }
    let probe: Probe = serde_json::from_slice(text)
        .map_err(|e| ManifestProblem::Foreign(format!("its manifest is not JSON: {e}")))?;
    if probe.format.as_deref() != Some(FORMAT) {
        return Err(ManifestProblem::Foreign(format!(
            "its manifest's format is {:?}, not {FORMAT:?}",
            probe.format.unwrap_or_default()
        )));
    }
    match probe.version {
        Some(VERSION) => {}
        Some(found) => {
            return Err(ManifestProblem::Version {
                found,
                by: probe.shoal_version.unwrap_or_else(|| "unknown".into()),
            })
        }
        None => {
            return Err(ManifestProblem::Damaged(
                "its manifest has no version".into(),
            ))
        }
    }
    let manifest: Manifest = serde_json::from_slice(text)
        .map_err(|e| ManifestProblem::Damaged(format!("its manifest: {e}")))?;
    let paths: Vec<&str> = manifest.files.iter().map(|f| f.path.as_str()).collect();
    if paths != FILES {
        return Err(ManifestProblem::Damaged(format!(
            "its manifest lists {paths:?}, not {FILES:?}"
        )));
    }
    for file in &manifest.files {
        let valid = file.sha256.len() == 64
            && shoal_model::hex::decode(&file.sha256).is_some()
            && file.sha256 == file.sha256.to_ascii_lowercase();
        if !valid {
            return Err(ManifestProblem::Damaged(format!(
                "its manifest's digest of {} is not SHA-256 hex",
                file.path
            )));
        }
    }
    Ok(manifest)
}

/// Why a manifest is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ManifestProblem {
    Foreign(String),
    Version { found: u32, by: String },
    Damaged(String),
}

/// Writes a backup of the hub data dir `data_dir` to `out` (replaced atomically: a temporary
/// file beside it, renamed once complete). Safe while the hub runs.
pub fn create(data_dir: &Path, out: &Path, now_ms: u64) -> Result<Manifest, BackupError> {
    for name in FILES {
        if !data_dir.join(name).is_file() {
            return Err(BackupError::NotADataDir {
                dir: data_dir.to_path_buf(),
                missing: name.to_string(),
            });
        }
    }
    let dir = out
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let stem = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "backup".into());
    let db_copy = dir.join(format!(".{stem}.{}.db", std::process::id()));
    let temp = dir.join(format!(".{stem}.{}.tmp", std::process::id()));
    let result = (|| {
        copy_store(&data_dir.join("hub.db"), &db_copy)?;
        let sources: Vec<PathBuf> = FILES
            .iter()
            .map(|name| match *name {
                "hub.db" => db_copy.clone(),
                name => data_dir.join(name),
            })
            .collect();
        let mut files = Vec::new();
        for (name, source) in FILES.iter().zip(&sources) {
            let (size, sha256) = digest_file(source)?;
            files.push(Entry {
                path: name.to_string(),
                size,
                sha256,
            });
        }
        let manifest = Manifest {
            format: FORMAT.into(),
            version: VERSION,
            created_ms: now_ms,
            shoal_version: env!("CARGO_PKG_VERSION").into(),
            files,
        };
        write_archive(&temp, &manifest, &sources, now_ms)?;
        std::fs::rename(&temp, out).map_err(io(out))?;
        Ok(manifest)
    })();
    let _ = std::fs::remove_file(&db_copy);
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// A consistent copy of the database at `db` into a new file `copy` (0600), through SQLite's
/// online backup API in one step: the copy is the database as of one moment, whatever the hub
/// writes meanwhile.
fn copy_store(db: &Path, copy: &Path) -> Result<(), BackupError> {
    use rusqlite::{Connection, OpenFlags};
    let sqlite = |path: &Path| {
        let path = path.to_path_buf();
        move |source| BackupError::Sqlite { path, source }
    };
    let _ = std::fs::remove_file(copy);
    create_private(copy)?;
    let source = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(sqlite(db))?;
    source
        .busy_timeout(std::time::Duration::from_secs(10))
        .map_err(sqlite(db))?;
    let mut target = Connection::open(copy).map_err(sqlite(copy))?;
    let backup = rusqlite::backup::Backup::new(&source, &mut target).map_err(sqlite(db))?;
    // Every page in one step (-1), so the copy is of one moment; a writer holding the lock
    // is waited for, up to 10 s.
    let mut waits = 0;
    loop {
        match backup.step(-1).map_err(sqlite(db))? {
            rusqlite::backup::StepResult::Done => break,
            rusqlite::backup::StepResult::More => {}
            _ if waits < 200 => {
                waits += 1;
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            _ => {
                return Err(BackupError::Sqlite {
                    path: db.to_path_buf(),
                    source: rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some("the store stayed locked for 10 s: try again".into()),
                    ),
                })
            }
        }
    }
    drop(backup);
    // One file, no journal beside it.
    target
        .pragma_update(None, "journal_mode", "DELETE")
        .map_err(sqlite(copy))?;
    Ok(())
}

fn create_private(path: &Path) -> Result<File, BackupError> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))
}

fn digest_file(path: &Path) -> Result<(u64, String), BackupError> {
    let mut file = File::open(path).map_err(io(path))?;
    let mut hasher = Sha256::new();
    let size = std::io::copy(&mut file, &mut hasher).map_err(io(path))?;
    Ok((size, shoal_model::hex::encode(&hasher.finalize())))
}

fn write_archive(
    temp: &Path,
    manifest: &Manifest,
    sources: &[PathBuf],
    now_ms: u64,
) -> Result<(), BackupError> {
    let file = create_private(temp)?;
    let gzip = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gzip);
    let header = |size: u64| {
        let mut header = tar::Header::new_gnu();
        header.set_size(size);
        header.set_mode(0o600);
        header.set_mtime(now_ms / 1000);
        header.set_entry_type(tar::EntryType::Regular);
        header
    };
    let text = serde_json::to_vec_pretty(manifest).map_err(|e| BackupError::Io {
        path: temp.to_path_buf(),
        source: std::io::Error::other(e),
    })?;
    tar.append_data(&mut header(text.len() as u64), MANIFEST, &text[..])
        .map_err(io(temp))?;
    for (entry, source) in manifest.files.iter().zip(sources) {
        let file = File::open(source).map_err(io(source))?;
        tar.append_data(&mut header(entry.size), &entry.path, file.take(entry.size))
            .map_err(io(temp))?;
    }
    let gzip = tar.into_inner().map_err(io(temp))?;
    let file = gzip.finish().map_err(io(temp))?;
    file.sync_all().map_err(io(temp))
}

/// Restores the backup `archive` into `data_dir`, which must not exist or be empty. Nothing
/// is left in or beside `data_dir` unless the whole backup checks out.
pub fn restore(archive: &Path, data_dir: &Path) -> Result<Manifest, BackupError> {
    match std::fs::read_dir(data_dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty {
                    dir: data_dir.to_path_buf(),
                });
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(BackupError::Io {
                path: data_dir.to_path_buf(),
                source,
            })
        }
    }
    let name = data_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "data".into());
    let parent = data_dir
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    let temp = parent.join(format!(".{name}.restore-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&temp);
    let result = (|| {
        private_dir(&temp)?;
        let manifest = unpack(archive, &temp)?;
        check_store(archive, &temp.join("hub.db"))?;
        // Replaces an empty dir, or makes a new one, in one step.
        std::fs::rename(&temp, data_dir).map_err(io(data_dir))?;
        Ok(manifest)
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&temp);
    }
    result
}

fn private_dir(path: &Path) -> Result<(), BackupError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(path)
        .map_err(io(path))
}

/// Reads `archive` into `dir`, checking it entry by entry.
fn unpack(archive: &Path, dir: &Path) -> Result<Manifest, BackupError> {
    let foreign = |reason: String| BackupError::Foreign {
        file: archive.to_path_buf(),
        reason,
    };
    let damaged = |reason: String| BackupError::Damaged {
        file: archive.to_path_buf(),
        reason,
    };
    let mut file = File::open(archive).map_err(io(archive))?;
    let mut magic = [0u8; 2];
    let read = file.read(&mut magic).map_err(io(archive))?;
    if read < 2 || magic != [0x1f, 0x8b] {
        return Err(foreign("it is not gzip'd".into()));
    }
    let file = File::open(archive).map_err(io(archive))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut entries = tar
        .entries()
        .map_err(|e| foreign(format!("it is not a tar archive: {e}")))?;
    let mut next = |what: &str| match entries.next() {
        Some(Ok(entry)) => Ok(entry),
        Some(Err(e)) => Err(e.to_string()),
        None => Err(format!("it ends before {what}")),
    };
    let manifest = {
        let mut entry = next(MANIFEST).map_err(|e| foreign(format!("no manifest: {e}")))?;
        let path = entry.path().map_err(|e| foreign(e.to_string()))?;
        if path != Path::new(MANIFEST) {
            return Err(foreign(format!(
                "its first entry is {}, not {MANIFEST}",
                path.display()
            )));
        }
        if entry.size() > MAX_MANIFEST {
            return Err(foreign(format!(
                "its manifest is over {MAX_MANIFEST} bytes"
            )));
        }
        let mut text = Vec::new();
        entry
            .read_to_end(&mut text)
            .map_err(|e| damaged(e.to_string()))?;
        check_manifest(&text).map_err(|problem| match problem {
            ManifestProblem::Foreign(reason) => foreign(reason),
            ManifestProblem::Damaged(reason) => damaged(reason),
            ManifestProblem::Version { found, by } => BackupError::Version {
                file: archive.to_path_buf(),
                found,
                by,
            },
        })?
    };
    for expected in &manifest.files {
        let mut entry = next(&expected.path).map_err(damaged)?;
        let path = entry.path().map_err(|e| damaged(e.to_string()))?;
        if path != Path::new(&expected.path)
            || entry.header().entry_type() != tar::EntryType::Regular
        {
            return Err(damaged(format!(
                "found {} where {} belongs",
                path.display(),
                expected.path
            )));
        }
        if entry.size() != expected.size {
            return Err(damaged(format!(
                "{} is {} bytes, not {}",
                expected.path,
                entry.size(),
                expected.size
            )));
        }
        // The paths are the fixed ones of FILES (the manifest is checked), never the archive's.
        let target = dir.join(&expected.path);
        if let Some(parent) = target.parent().filter(|p| *p != dir) {
            if !parent.exists() {
                private_dir(parent)?;
            }
        }
        let mut out = create_private(&target)?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        loop {
            let n = entry
                .read(&mut buffer)
                .map_err(|e| damaged(format!("{}: {e}", expected.path)))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).map_err(io(&target))?;
            total += n as u64;
        }
        let digest = shoal_model::hex::encode(&hasher.finalize());
        if total != expected.size || digest != expected.sha256 {
            return Err(damaged(format!(
                "{} does not match its digest in the manifest",
                expected.path
            )));
        }
        out.sync_all().map_err(io(&target))?;
    }
    match next("") {
        Err(_) => Ok(manifest),
        Ok(entry) => Err(damaged(format!(
            "an entry the manifest does not list: {}",
            entry
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        ))),
    }
}

/// SQLite's own check of the restored database.
fn check_store(archive: &Path, db: &Path) -> Result<(), BackupError> {
    let damaged = |reason: String| BackupError::Damaged {
        file: archive.to_path_buf(),
        reason,
    };
    let conn =
        rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| damaged(format!("hub.db: {e}")))?;
    let verdict: String = conn
        .query_row("PRAGMA integrity_check", [], |row| row.get(0))
        .map_err(|e| damaged(format!("hub.db: {e}")))?;
    if verdict == "ok" {
        Ok(())
    } else {
        Err(damaged(format!(
            "hub.db fails SQLite's integrity check: {verdict}"
        )))
    }
}

#[cfg(test)]
mod tests;
