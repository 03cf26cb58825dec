//! Over-the-air agent updates: the hub's desired state names an agent target
//! (`shoal_model::release::AgentTarget`); this module fetches it and hands it to the launcher
//! (`crate::launch`), which tries it on probation and goes back when it does not prove itself.
//!
//! 1. **Trust.** The target's release keys are taken when an endorsement verifies with a
//!    release key this node trusts (`{data_dir}/release-keys`, written at enrollment), or on
//!    first use by a node enrolled before its hub had one (the state they came in verified
//!    with the hub's state key). Then the release's signature must verify with them. Checked
//!    before anything is downloaded, and again on the bytes.
//! 2. **Room and launcher.** The binary is not fetched when no `shoal-agent launch` runs this
//!    agent (nothing could switch to it safely) or when the data dir's file system has less
//!    free space than the binary plus [`RESERVE`].
//! 3. **Download** from `{source}/v1/agent-binaries/{sha256}` over HTTPS verified with the
//!    hub's CA (`hub.ca_file`), authenticated as the node (its MQTT name and password), into
//!    `{data_dir}/bin/shoal-agent-VERSION.unverified`. A cut link resumes where it stopped
//!    (an HTTP range), after a capped backoff; a read that stalls for 30 s is a cut link too;
//!    at most the release's size is ever written.
//! 4. **Verify** size, sha256 and architecture of the bytes, then rename the file into place
//!    and stage it as the launcher's trial (`launch::install`), which SIGHUPs the launcher.
//!
//! A target below the node's floor ([`floor`]: the signed minimum of a release it has
//! proven) is refused before anything is fetched, whoever asks for it.
//!
//! A failure that trying again cannot fix (a digest, a signature, the architecture, no
//! launcher, a version below the floor) is recorded in `launch.json` as the launcher records a failed trial, so the
//! version is not tried again until the hub names another one ([`plan`]); the node reports it
//! in its status and as an `agent-update-failed` event. Progress reaches the hub in
//! `NodeStatus::agent_update`.

pub mod floor;
pub mod plan;

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use shoal_model::endpoint::ApiUrl;
use shoal_model::release::{AgentTarget, Version};
use shoal_model::wire::signing::PublicKey;
use shoal_model::wire::{AgentUpdate, AgentUpdateState};

use crate::launch;

/// The release keys this node trusts, one `ed25519:…` per line.
pub const RELEASE_KEYS_FILE: &str = "release-keys";
/// Free space kept beyond the binary itself.
pub const RESERVE: u64 = 16 << 20;
/// The longest wait between download attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// A download that reads nothing for this long is on a dead link (as long as the default MQTT
/// keep-alive): it is dropped and resumed by a range on a new connection once the link is
/// back, rather than waiting for TCP to give up.
const STALLED: Duration = Duration::from_secs(30);

/// How the node reaches its hub's API: its MQTT name and password, and the hub's CA.
#[derive(Clone)]
pub struct Access {
    pub node: String,
    pub password: String,
    pub ca_file: Option<PathBuf>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("node", &self.node)
            .field("ca_file", &self.ca_file)
            .finish_non_exhaustive()
    }
}

/// What the worker shares with the supervisor.
#[derive(Debug, Default)]
struct Shared {
    update: Option<AgentUpdate>,
    /// Failures not yet recorded as events.
    unreported: Vec<String>,
}

/// The updater: one download at a time, in a thread of its own.
#[derive(Debug)]
pub struct Updater {
    data_dir: PathBuf,
    own: Version,
    access: Access,
    shared: Arc<Mutex<Shared>>,
    /// The version being fetched, and the flag that stops its worker.
    worker: Option<(Version, Arc<AtomicBool>)>,
    /// The target of the newest desired state that verified.
    target: Option<AgentTarget>,
    /// When to look at `launch.json` again (a trial being judged, this agent's probation).
    recheck: Option<std::time::Instant>,
}

/// How often a waiting updater looks at `launch.json` again.
const RECHECK: Duration = Duration::from_secs(2);

impl Updater {
    pub fn new(data_dir: &Path, access: Access) -> Updater {
        let mut updater = Updater {
            data_dir: data_dir.to_path_buf(),
            own: Version::parse(crate::version::version()).unwrap_or(Version::new(0, 0, 0)),
            access,
            shared: Arc::default(),
            worker: None,
            target: None,
            recheck: None,
        };
        // A trial on probation says so from its first status on, before the hub's state
        // (and its target) arrives again.
        if plan::probation(&updater.own, &launch_view(data_dir)) {
            updater.offer(None);
        }
        updater
    }

    /// Looks at `launch.json` again when a trial was being judged (the supervisor's tick).
    pub fn tick(&mut self) {
        if self
            .recheck
            .is_some_and(|at| std::time::Instant::now() >= at)
        {
            let target = self.target.clone();
            self.offer(target.as_ref());
        }
    }

    /// What the node reports about the upgrade.
    pub fn status(&self) -> Option<AgentUpdate> {
        self.lock().update.clone()
    }

    /// Failures to record as events, once each.
    pub fn take_failures(&self) -> Vec<String> {
        std::mem::take(&mut self.lock().unreported)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The target of a desired state that verified (a new one, or the one already taken,
    /// redelivered at reconnect).
    pub fn offer(&mut self, target: Option<&AgentTarget>) {
        self.target = target.cloned();
        self.recheck = None;
        let launch = launch_view(&self.data_dir);
        let version = target.map(|t| &t.release.version);
        let floor = floor::read(&self.data_dir).map_err(|e| format!("{e:#}"));
        let floor_view = match &floor {
            Ok(None) => plan::Floor::None,
            Ok(Some(f)) => plan::Floor::At(f),
            Err(why) => plan::Floor::Unreadable(why),
        };
        let action = plan::decide(version, &self.own, &launch, floor_view);
        if plan::probation(&self.own, &launch) {
            // This agent is the trial: it says so until the launcher has judged it.
            self.recheck = Some(std::time::Instant::now() + RECHECK);
            self.lock().update = Some(AgentUpdate {
                version: self.own.to_string(),
                state: AgentUpdateState::Switching,
            });
            return;
        }
        if let Some((fetching, stop)) = &self.worker {
            if Some(fetching) == version && action == plan::Action::Fetch {
                return;
            }
            stop.store(true, Ordering::SeqCst);
            self.worker = None;
        }
        let (Some(target), Some(version)) = (target, version) else {
            self.lock().update = None;
            return;
        };
        let text = version.to_string();
        match action {
            plan::Action::Idle => {
                self.lock().update = None;
                if *version == self.own {
                    self.take_own(target, floor.ok().flatten().as_ref());
                }
            }
            plan::Action::Refuse(reason) => {
                tracing::warn!(version = text, reason, "agent target refused");
                if let Err(e) = record_failure(&self.data_dir, &text, &reason) {
                    tracing::warn!(error = %format!("{e:#}"), "cannot record the refused update");
                }
                let mut shared = self.lock();
                shared.unreported.push(format!(
                    "the update to agent {text} was refused: {reason}; it is not tried again until the hub names another version"
                ));
                shared.update = Some(AgentUpdate {
                    version: text,
                    state: AgentUpdateState::Failed { reason },
                });
            }
            plan::Action::Wait => {
                self.recheck = Some(std::time::Instant::now() + RECHECK);
                self.lock().update = None;
            }
            plan::Action::Failed(reason) => {
                self.lock().update = Some(AgentUpdate {
                    version: text,
                    state: AgentUpdateState::Failed { reason },
                });
            }
            plan::Action::Switching => {
                self.lock().update = Some(AgentUpdate {
                    version: text,
                    state: AgentUpdateState::Switching,
                });
            }
            plan::Action::Fetch => self.fetch(target.clone()),
        }
    }

    /// Takes what a target naming the release this agent runs and has proven (not on
    /// probation: `offer` returned before) carries, once it verifies: the release keys it
    /// announces (a release-key rotation reaches nodes that have nothing to download this
    /// way) and its signed minimum, as the floor.
    fn take_own(&self, target: &AgentTarget, current: Option<&floor::Floor>) {
        let release = &target.release;
        let verified = trusted_release_keys(&self.data_dir).and_then(|trusted| {
            let keys = target.accept(&trusted).map_err(anyhow::Error::from)?;
            if keys != trusted {
                keep_release_keys(&self.data_dir, &keys)?;
                tracing::info!(keys = keys.len(), "the hub's release keys changed: taken");
            }
            Ok(())
        });
        if let Err(e) = verified {
            tracing::warn!(error = %format!("{e:#}"), version = %release.version, "the hub's target for this agent's own version does not verify: its keys and minimum are not taken");
            return;
        }
        let Some(minimum) = &release.minimum else {
            return;
        };
        let Some(raised) = floor::Floor::raised(current, &release.version, minimum) else {
            return;
        };
        let own_arch = shoal_model::elf::Arch::parse(std::env::consts::ARCH).ok();
        if own_arch != Some(release.arch) {
            return;
        }
        match floor::keep(&self.data_dir, &raised) {
            Ok(()) => tracing::info!(
                minimum = %raised.minimum,
                release = %raised.release,
                "this node's minimum agent version is raised: it refuses any lower target from now on"
            ),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot keep the node's minimum agent version");
            }
        }
    }

    fn fetch(&mut self, target: AgentTarget) {
        let stop = Arc::new(AtomicBool::new(false));
        self.worker = Some((target.release.version.clone(), Arc::clone(&stop)));
        self.lock().update = Some(AgentUpdate {
            version: target.release.version.to_string(),
            state: AgentUpdateState::Downloading {
                received: 0,
                size: target.release.size,
            },
        });
        let job = Job {
            data_dir: self.data_dir.clone(),
            access: self.access.clone(),
            target,
            shared: Arc::clone(&self.shared),
            stop,
        };
        let spawned = std::thread::Builder::new()
            .name("agent-update".into())
            .spawn(move || job.run());
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start the agent update");
            self.worker = None;
        }
    }
}

/// `launch.json` as the plan reads it (unreadable: nothing known).
fn launch_view(data_dir: &Path) -> plan::Launch {
    let state = launch::read_state(data_dir).unwrap_or_default();
    plan::Launch {
        trial: state.trial.map(|t| t.version),
        failed: state.failed.map(|f| (f.version, f.reason)),
    }
}

/// The release keys this node trusts (none when the file is absent).
pub fn trusted_release_keys(data_dir: &Path) -> anyhow::Result<Vec<PublicKey>> {
    let path = data_dir.join(RELEASE_KEYS_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            l.parse::<PublicKey>()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
        })
        .collect()
}

/// Keeps `keys` as the release keys this node trusts.
pub fn keep_release_keys(data_dir: &Path, keys: &[PublicKey]) -> anyhow::Result<()> {
    let mut text =
        String::from("# The hub keys agent releases must be signed with (shoal-agent).\n");
    for key in keys {
        text.push_str(&key.to_string());
        text.push('\n');
    }
    launch::write_atomic(data_dir, RELEASE_KEYS_FILE, text.as_bytes())
}

/// Why a download attempt failed.
#[derive(Debug)]
enum Failure {
    /// Worth trying again later: the link, the hub.
    Again(anyhow::Error),
    /// Trying again cannot help.
    ForGood(anyhow::Error),
}

struct Job {
    data_dir: PathBuf,
    access: Access,
    target: AgentTarget,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
}

impl Job {
    fn run(self) {
        let version = self.target.release.version.to_string();
        let mut backoff = FIRST_BACKOFF;
        loop {
            if self.stop.load(Ordering::SeqCst) {
                return;
            }
            match self.attempt() {
                Ok(message) => {
                    tracing::info!("{message}");
                    self.set(AgentUpdateState::Switching);
                    return;
                }
                Err(Failure::Again(e)) => {
                    tracing::info!(version, error = %format!("{e:#}"), retry_in = ?backoff, "agent download interrupted; it resumes");
                    let until = std::time::Instant::now() + backoff;
                    while std::time::Instant::now() < until {
                        if self.stop.load(Ordering::SeqCst) {
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(200));
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(Failure::ForGood(e)) => {
                    let reason = format!("{e:#}");
                    tracing::warn!(version, reason, "agent update failed");
                    if let Err(e) = record_failure(&self.data_dir, &version, &reason) {
                        tracing::warn!(error = %format!("{e:#}"), "cannot record the failed update");
                    }
                    let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
                    if self.stop.load(Ordering::SeqCst) {
                        // The hub named another version meanwhile: this one is not reported.
                        return;
                    }
                    shared.unreported.push(format!(
                        "the update to agent {version} failed: {reason}; it is not tried again until the hub names another version"
                    ));
                    shared.update = Some(AgentUpdate {
                        version,
                        state: AgentUpdateState::Failed { reason },
                    });
                    return;
                }
            }
        }
    }

    fn set(&self, state: AgentUpdateState) {
        let mut shared = self.shared.lock().unwrap_or_else(|p| p.into_inner());
        if !self.stop.load(Ordering::SeqCst) {
            shared.update = Some(AgentUpdate {
                version: self.target.release.version.to_string(),
                state,
            });
        }
    }

    fn attempt(&self) -> Result<String, Failure> {
        let release = &self.target.release;
        let trusted = trusted_release_keys(&self.data_dir).map_err(Failure::ForGood)?;
        let keys = self
            .target
            .accept(&trusted)
            .map_err(|e| Failure::ForGood(anyhow::anyhow!("{e}")))?;
        let own = shoal_model::elf::Arch::parse(std::env::consts::ARCH)
            .map_err(|e| Failure::ForGood(anyhow::anyhow!(e)))?;
        if release.arch != own {
            return Err(Failure::ForGood(anyhow::anyhow!(
                "the hub named agent {} for {}, but this device is {}",
                release.version,
                release.arch.as_str(),
                own.as_str()
            )));
        }
        if !launch::launcher_runs(&self.data_dir) {
            return Err(Failure::ForGood(anyhow::anyhow!(
                "this agent was not started by `shoal-agent launch` (the unit's ExecStart since \
                 0.2), so nothing could switch to a new agent safely or go back from it"
            )));
        }
        let dir = launch::bin_dir(&self.data_dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))
            .map_err(Failure::Again)?;
        let part = dir.join(format!("shoal-agent-{}.unverified", release.version));
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let free = crate::state::disk::free_bytes(&dir)
            .with_context(|| format!("cannot tell the free space of {}", dir.display()))
            .map_err(Failure::Again)?;
        let need = release.size.saturating_sub(have).saturating_add(RESERVE);
        if free < need {
            return Err(Failure::Again(anyhow::anyhow!(
                "{} has {free} bytes free; the agent needs {need} (its size and a reserve)",
                dir.display()
            )));
        }
        let path = format!(
            "/v1/agent-binaries/{}",
            shoal_model::hex::encode(&release.sha256)
        );
        download(
            &client(&self.access).map_err(Failure::ForGood)?,
            (&self.target.source, &path),
            &self.access,
            &part,
            release.size,
            &|received| {
                self.set(AgentUpdateState::Downloading {
                    received,
                    size: release.size,
                })
            },
            &self.stop,
        )?;
        let bytes = std::fs::read(&part)
            .with_context(|| format!("cannot read {}", part.display()))
            .map_err(Failure::Again)?;
        if let Err(e) = release
            .matches(&bytes)
            .and_then(|()| shoal_model::release::check_marked(&bytes, &release.version))
            .and_then(|()| {
                shoal_model::release::inspect(&bytes).and_then(|arch| {
                    if arch == release.arch {
                        Ok(())
                    } else {
                        Err(shoal_model::release::ReleaseError::NotElf {
                            reason: format!("it is built for {}", arch.as_str()),
                        })
                    }
                })
            })
        {
            let _ = std::fs::remove_file(&part);
            return Err(Failure::ForGood(anyhow::anyhow!(
                "the downloaded binary is not the release: {e}"
            )));
        }
        if keys != trusted {
            keep_release_keys(&self.data_dir, &keys).map_err(Failure::Again)?;
        }
        if self.stop.load(Ordering::SeqCst) {
            return Err(Failure::Again(anyhow::anyhow!(
                "the hub named another version"
            )));
        }
        launch::install(&self.data_dir, &part, &release.version.to_string()).map_err(Failure::Again)
    }
}

/// The HTTPS client: the hub's CA alone when the node has it.
fn client(access: &Access) -> anyhow::Result<ureq::Agent> {
    use ureq::tls::{RootCerts, TlsConfig};
    let mut tls = TlsConfig::builder();
    if let Some(path) = &access.ca_file {
        let pem = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let certs: Vec<_> = ureq::tls::parse_pem(&pem)
            .filter_map(|item| match item {
                Ok(ureq::tls::PemItem::Certificate(cert)) => Some(cert),
                _ => None,
            })
            .collect();
        anyhow::ensure!(!certs.is_empty(), "{} holds no certificate", path.display());
        tls = tls.root_certs(RootCerts::Specific(Arc::new(certs)));
    }
    Ok(ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_per_read(Some(STALLED))
        .tls_config(tls.build())
        .user_agent(concat!("shoal-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .into())
}

/// Appends the rest of the body of `path` on the hub's API `source` to `part` (from its
/// length on, by an HTTP range), never beyond `size` bytes in all.
fn download(
    client: &ureq::Agent,
    (source, path): (&ApiUrl, &str),
    access: &Access,
    part: &Path,
    size: u64,
    progress: &dyn Fn(u64),
    stop: &AtomicBool,
) -> Result<(), Failure> {
    use base64::Engine as _;
    let again = Failure::Again;
    let mut have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if have > size {
        std::fs::remove_file(part)
            .with_context(|| format!("cannot remove {}", part.display()))
            .map_err(again)?;
        have = 0;
    }
    if have == size {
        return Ok(());
    }
    if !source.is_tls() && !source.host().is_loopback() {
        return Err(Failure::ForGood(anyhow::anyhow!(
            "the hub's API is {source}, plain http to another machine: the node's password would cross the network unencrypted"
        )));
    }
    let url = format!("{source}{path}");
    let credentials = base64::engine::general_purpose::STANDARD
        .encode(format!("{}:{}", access.node, access.password));
    let mut request = client
        .get(&url)
        .header("authorization", format!("Basic {credentials}"));
    if have > 0 {
        request = request.header("range", format!("bytes={have}-"));
    }
    let mut response = request
        .call()
        .with_context(|| format!("cannot reach {url}"))
        .map_err(again)?;
    let status = response.status().as_u16();
    match status {
        206 if have > 0 => {}
        200 => have = 0,
        401 | 403 | 404 => {
            return Err(Failure::ForGood(anyhow::anyhow!(
                "the hub answered {status} for {url}"
            )))
        }
        _ => {
            return Err(again(anyhow::anyhow!(
                "the hub answered {status} for {url}"
            )))
        }
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(have == 0)
        .append(have > 0)
        .open(part)
        .with_context(|| format!("cannot write {}", part.display()))
        .map_err(again)?;
    let mut body = response
        .body_mut()
        .with_config()
        .limit(size - have + 1)
        .reader();
    let mut buffer = vec![0; 64 * 1024];
    let mut last_report = have;
    loop {
        if stop.load(Ordering::SeqCst) {
            return Err(again(anyhow::anyhow!("stopped")));
        }
        let n = body
            .read(&mut buffer)
            .with_context(|| format!("the download of {url} broke off at {have} bytes"))
            .map_err(again)?;
        if n == 0 {
            break;
        }
        let n64 = u64::try_from(n).unwrap_or(u64::MAX);
        if have + n64 > size {
            drop(file);
            let _ = std::fs::remove_file(part);
            return Err(Failure::ForGood(anyhow::anyhow!(
                "the hub sent more than the release's {size} bytes"
            )));
        }
        file.write_all(&buffer[..n])
            .with_context(|| format!("cannot write {}", part.display()))
            .map_err(again)?;
        have += n64;
        if have - last_report >= 1 << 20 {
            progress(have);
            last_report = have;
        }
    }
    file.sync_all()
        .with_context(|| format!("cannot write {}", part.display()))
        .map_err(again)?;
    progress(have);
    if have < size {
        return Err(again(anyhow::anyhow!(
            "the download of {url} ended at {have} of {size} bytes"
        )));
    }
    Ok(())
}

/// Records a failure that trying again cannot fix, as the launcher records a failed trial.
fn record_failure(data_dir: &Path, version: &str, reason: &str) -> anyhow::Result<()> {
    let mut state = launch::read_state(data_dir)?;
    state.failed = Some(launch::Failed {
        version: version.to_string(),
        reason: reason.to_string(),
        reported: true,
    });
    launch::write_state(data_dir, &state)
}

#[cfg(test)]
mod tests;
