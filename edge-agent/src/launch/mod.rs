//! `shoal-agent launch`: the start wrapper that makes an agent update safe to try.
//!
//! Why a wrapper: the revert of a bad agent binary cannot rely on that binary's own code. A
//! build that crashes at start, hangs, or runs but never becomes ready must still be replaced
//! by the one before. So the systemd unit starts the *installed* binary (the package's, never
//! replaced over the air) as `shoal-agent launch`, and the launcher starts the agent that
//! `{data_dir}/bin/launch.json` names as its child (`run`), judging a new one on probation
//! (rules in `plan`):
//!
//! - `launch.json` names the `good` binary (absent: the launcher's own), and at most one
//!   `trial` with the starts it had. An agent that has verified a new binary writes it there
//!   as the trial and exits with [`plan::EXIT_SWITCH`]; the launcher then starts the trial.
//! - The trial must write `{data_dir}/bin/ready` with its pid within `--up-within` (its
//!   database open, its containers re-adopted, the hub reached or known unreachable), then
//!   stay up for `--stable-for`. Then it becomes the good binary (the one before is kept as
//!   `previous`). Otherwise it is killed if still running, `failed` is recorded in
//!   `launch.json` with the reason (for the good agent to report), and the good binary is
//!   started again.
//! - Every start of a trial is counted in `launch.json` before it happens, so a trial that
//!   takes the launcher or the device down with it fails after `plan::MAX_ATTEMPTS` starts.
//! - The child dies with the launcher (`PR_SET_PDEATHSIG`): a launcher killed with `kill -9`
//!   and restarted by systemd never finds a second agent running on the same data.
//!   Containers are not children of the agent's process tree in that sense (the flag is not
//!   inherited), so they keep running, and the next agent re-adopts them.
//! - SIGTERM or SIGINT to the launcher is passed to the agent, and the launcher exits once
//!   it has; a good agent's own exit (other than a switch) ends the launcher with its code,
//!   so the unit's `Restart=always` applies as before.
//!
//! Writes of `launch.json` are atomic (a temporary file, fsync, rename, fsync of the folder).

pub mod plan;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};

use crate::config;
use crate::runtime::sys;
use plan::{Bounds, Choice, Failure, Verdict};

/// The folder under the data dir with the agent binaries, `launch.json` and `ready`.
pub const BIN_DIR: &str = "bin";
const STATE_FILE: &str = "launch.json";
const READY_FILE: &str = "ready";
/// The launcher's pid, for `shoal-agent update` to signal (SIGHUP: a trial is staged).
const PID_FILE: &str = "launcher.pid";
/// The format of `launch.json`; a new layout gets a new number and a conversion.
const FORMAT: u32 = 1;
/// How often the launcher looks at its child while it runs.
const POLL: Duration = Duration::from_millis(200);
/// How long an agent asked to stop has before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(15);

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The agent's configuration file (TOML), passed on to `shoal-agent run`
    #[arg(long, value_name = "FILE", default_value = config::DEFAULT_CONFIG)]
    pub config: PathBuf,
    /// How long a new agent binary has to become ready, e.g. 120s
    #[arg(long, value_name = "DURATION", default_value = "120s", value_parser = duration)]
    pub up_within: Duration,
    /// How long it must then stay up before it replaces the one before, e.g. 60s
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration)]
    pub stable_for: Duration,
}

fn duration(text: &str) -> Result<Duration, String> {
    shoal_model::quantity::parse_duration(text).map_err(|e| e.to_string())
}

/// `launch.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchState {
    pub format: u32,
    /// The binary that runs when no trial is on; absent: the launcher's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub good: Option<PathBuf>,
    /// The good binary before the last proven trial, kept to go back to by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trial: Option<Trial>,
    /// The last trial that failed, for the agent to report.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<Failed>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Trial {
    pub binary: PathBuf,
    pub version: String,
    /// Starts so far (counted before each).
    pub attempts: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Failed {
    pub version: String,
    pub reason: String,
    /// Whether an agent has recorded it as an event (once).
    #[serde(default)]
    pub reported: bool,
}

/// `{data_dir}/bin`.
pub fn bin_dir(data_dir: &Path) -> PathBuf {
    data_dir.join(BIN_DIR)
}

/// Reads `launch.json` (absent: the default state).
pub fn read_state(data_dir: &Path) -> anyhow::Result<LaunchState> {
    let path = bin_dir(data_dir).join(STATE_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Ok(LaunchState {
                format: FORMAT,
                ..LaunchState::default()
            })
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let state: LaunchState = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a launch state", path.display()))?;
    if state.format != FORMAT {
        anyhow::bail!(
            "{} has format {}, this agent reads {FORMAT}: run a newer shoal-agent",
            path.display(),
            state.format
        );
    }
    Ok(state)
}

/// Writes `launch.json` atomically and durably.
pub fn write_state(data_dir: &Path, state: &LaunchState) -> anyhow::Result<()> {
    let dir = bin_dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_string_pretty(state).context("cannot encode the launch state")?;
    write_atomic(&dir, STATE_FILE, text.as_bytes())
}

/// Writes `dir/name` through a temporary file, fsync, rename and fsync of `dir`.
pub(crate) fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let path = dir.join(name);
    let temporary = dir.join(format!(".{name}.new"));
    let mut file = std::fs::File::create(&temporary)
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", temporary.display()))?;
    std::fs::rename(&temporary, &path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(())
}

/// Says this agent process is ready (see the module doc); called once by `run`.
fn write_ready(data_dir: &Path) -> anyhow::Result<()> {
    let dir = bin_dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text = format!(
        "pid={}\nversion={}\n",
        std::process::id(),
        crate::version::version()
    );
    write_atomic(&dir, READY_FILE, text.as_bytes())
}

/// When the running agent is ready, in the launcher's sense: its containers re-adopted
/// (the supervisor's first pass done, which is after the database opened) and, with a hub,
/// the link's state known (connected, or a connection attempt failed: offline is not a
/// failure). Then `ready` is written, once.
#[derive(Debug)]
pub struct Ready {
    data_dir: PathBuf,
    adopted: AtomicBool,
    link_known: AtomicBool,
    written: Once,
}

impl Ready {
    pub fn new(data_dir: &Path, hub: bool) -> Arc<Ready> {
        Arc::new(Ready {
            data_dir: data_dir.to_path_buf(),
            adopted: AtomicBool::new(false),
            link_known: AtomicBool::new(!hub),
            written: Once::new(),
        })
    }

    pub fn adopted(&self) {
        self.adopted.store(true, Ordering::SeqCst);
        self.check();
    }

    pub fn link_known(&self) {
        self.link_known.store(true, Ordering::SeqCst);
        self.check();
    }

    fn check(&self) {
        if self.adopted.load(Ordering::SeqCst) && self.link_known.load(Ordering::SeqCst) {
            self.written
                .call_once(|| match write_ready(&self.data_dir) {
                    Ok(()) => tracing::debug!("ready"),
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot say the agent is ready")
                    }
                });
        }
    }
}

/// The last failed update not yet reported, marked reported: what the agent that starts
/// after a revert says in its first event. `None` when there is nothing new (or no state).
pub fn take_unreported_failure(data_dir: &Path) -> Option<Failed> {
    let mut state = read_state(data_dir).ok()?;
    let failed = state.failed.as_mut().filter(|f| !f.reported)?;
    failed.reported = true;
    let taken = failed.clone();
    match write_state(data_dir, &state) {
        Ok(()) => Some(taken),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "cannot mark the failed update as reported");
            Some(taken)
        }
    }
}

/// The pid in `ready`, if there is one.
fn ready_pid(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(bin_dir(data_dir).join(READY_FILE)).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("pid="))
        .and_then(|p| p.trim().parse().ok())
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt as _;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("code {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        _ => "unknown status".to_string(),
    }
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let config = config::load(&args.config, hostname.trim())?;
    let own = std::env::current_exe().context("cannot find the launcher's own binary")?;
    let bounds = Bounds {
        up_within: args.up_within,
        stable_for: args.stable_for,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the launcher's event loop")?;
    runtime.block_on(
        Launcher {
            data_dir: config.data_dir.clone(),
            config: args.config.clone(),
            own,
            bounds,
            epoch: Instant::now(),
        }
        .run(),
    )
}

struct Launcher {
    data_dir: PathBuf,
    config: PathBuf,
    own: PathBuf,
    bounds: Bounds,
    epoch: Instant,
}

/// How one child ended.
enum Ended {
    /// It exited by itself.
    Exited(ExitStatus),
    /// The launcher was asked to stop; the child was stopped too.
    Stopped,
    /// A trial was staged while the good agent ran (SIGHUP); the good agent was stopped.
    Switch,
    /// A trial was judged.
    Judged(Verdict),
}

impl Launcher {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn run(self) -> anyhow::Result<ExitCode> {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
        let mut hup = signal(SignalKind::hangup()).context("cannot watch SIGHUP")?;
        let dir = bin_dir(&self.data_dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        if let Err(e) = write_atomic(&dir, PID_FILE, std::process::id().to_string().as_bytes()) {
            // Only `shoal-agent update`'s signal needs it; the agent must run regardless.
            tracing::warn!(error = %format!("{e:#}"), "cannot record the launcher's pid");
        }
        let mut signals = Signals {
            term: &mut term,
            int: &mut int,
            hup: &mut hup,
        };
        loop {
            // A launch state that cannot be read (or an attempt that cannot be counted, on a
            // full disk) must not keep the device's workloads from being supervised: the
            // launcher then runs its own binary, the one the package installed.
            let mut state = match read_state(&self.data_dir) {
                Ok(state) => state,
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), own = %self.own.display(), "cannot read the launch state; running the installed agent");
                    LaunchState {
                        format: FORMAT,
                        ..LaunchState::default()
                    }
                }
            };
            let choice = plan::choose(state.trial.as_ref().map(|t| t.attempts));
            let trial = match (&choice, state.trial.clone()) {
                (Choice::Trial { attempt }, Some(mut trial)) => {
                    trial.attempts = *attempt;
                    let mut counted = state.clone();
                    counted.trial = Some(trial.clone());
                    match write_state(&self.data_dir, &counted) {
                        Ok(()) => {
                            state = counted;
                            Some(trial)
                        }
                        Err(e) => {
                            tracing::warn!(error = %format!("{e:#}"), version = trial.version, "cannot count a start of the new agent; running the good one until it can");
                            None
                        }
                    }
                }
                (Choice::Exhausted { attempts }, Some(trial)) => {
                    self.fail(
                        &mut state,
                        &trial,
                        &Failure::Interrupted {
                            attempts: *attempts,
                        },
                    )?;
                    None
                }
                _ => None,
            };
            let binary = match &trial {
                Some(trial) => trial.binary.clone(),
                None => self.good(&state),
            };
            let _ = std::fs::remove_file(bin_dir(&self.data_dir).join(READY_FILE));
            let mut child = self.spawn(&binary)?;
            let started = self.now_ms();
            tracing::info!(binary = %binary.display(), pid = child.id(), trial = trial.is_some(), "agent started");
            let ended = self
                .watch(&mut child, trial.is_some(), started, &mut signals)
                .await?;
            match (ended, trial) {
                (Ended::Stopped, _) => return Ok(ExitCode::SUCCESS),
                (Ended::Switch, _) => {}
                (Ended::Judged(Verdict::Proven), Some(trial)) => {
                    self.promote(&mut state, &trial)?;
                    // It runs on as the good agent.
                    match self.watch(&mut child, false, started, &mut signals).await? {
                        Ended::Exited(status) => {
                            if let Some(code) = self.after_good_exit(status) {
                                return Ok(code);
                            }
                        }
                        Ended::Switch | Ended::Judged(_) => {}
                        Ended::Stopped => return Ok(ExitCode::SUCCESS),
                    }
                }
                (Ended::Judged(Verdict::Failed(failure)), Some(trial)) => {
                    self.fail(&mut state, &trial, &failure)?;
                }
                (Ended::Exited(status), _) => {
                    if let Some(code) = self.after_good_exit(status) {
                        return Ok(code);
                    }
                }
                (Ended::Judged(_), _) => {}
            }
        }
    }

    /// The good binary: the one `launch.json` names if it is there, else the launcher's own.
    fn good(&self, state: &LaunchState) -> PathBuf {
        match &state.good {
            Some(good) if good.is_file() => good.clone(),
            Some(good) => {
                tracing::warn!(missing = %good.display(), own = %self.own.display(), "the good agent binary is missing; starting the launcher's own");
                self.own.clone()
            }
            None => self.own.clone(),
        }
    }

    fn spawn(&self, binary: &Path) -> anyhow::Result<Child> {
        let mut command = Command::new(binary);
        command.arg("run").arg("--config").arg(&self.config);
        sys::die_with_parent(&mut command);
        command
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))
    }

    /// `None` to start again (a switch), or the launcher's own exit code.
    fn after_good_exit(&self, status: ExitStatus) -> Option<ExitCode> {
        if status.code() == Some(plan::EXIT_SWITCH) {
            tracing::info!("the agent asked to switch binaries");
            return None;
        }
        tracing::warn!(status = %describe(status), "the agent exited");
        Some(ExitCode::from(
            status
                .code()
                .and_then(|c| u8::try_from(c).ok())
                .unwrap_or(1),
        ))
    }

    /// Waits for the child to exit, for a stop signal, or (for a trial) for a verdict.
    async fn watch(
        &self,
        child: &mut Child,
        trial: bool,
        started: u64,
        signals: &mut Signals<'_>,
    ) -> anyhow::Result<Ended> {
        let mut ready_at = None;
        loop {
            let exited = child.try_wait().context("cannot wait for the agent")?;
            if trial {
                if ready_at.is_none() && ready_pid(&self.data_dir) == Some(child.id()) {
                    ready_at = Some(self.now_ms());
                    tracing::info!(pid = child.id(), "the new agent is ready; on probation");
                }
                let verdict = plan::judge(
                    self.bounds,
                    started,
                    ready_at,
                    exited.map(describe),
                    self.now_ms(),
                );
                match (verdict, exited) {
                    (Verdict::Wait { .. }, None) => {}
                    (Verdict::Proven, None) => return Ok(Ended::Judged(Verdict::Proven)),
                    (Verdict::Proven, Some(status)) => return Ok(Ended::Exited(status)),
                    (other, exited) => {
                        if exited.is_none() {
                            stop(child, STOP_GRACE).await;
                        }
                        return Ok(Ended::Judged(other));
                    }
                }
            } else if let Some(status) = exited {
                return Ok(Ended::Exited(status));
            }
            tokio::select! {
                () = tokio::time::sleep(POLL) => {}
                _ = signals.term.recv() => { stop(child, STOP_GRACE).await; return Ok(Ended::Stopped); }
                _ = signals.int.recv() => { stop(child, STOP_GRACE).await; return Ok(Ended::Stopped); }
                _ = signals.hup.recv() => {
                    let staged = read_state(&self.data_dir).map(|s| s.trial.is_some()).unwrap_or(false);
                    if !trial && staged {
                        tracing::info!("a new agent binary is staged; stopping this one (its containers keep running)");
                        stop(child, STOP_GRACE).await;
                        return Ok(Ended::Switch);
                    }
                }
            }
        }
    }

    /// The state as stored now, for a change after a trial: a trial staged meanwhile (by
    /// `shoal-agent update`) is kept, not overwritten with what the launcher read before.
    fn fresh(&self, state: &LaunchState) -> LaunchState {
        read_state(&self.data_dir).unwrap_or_else(|_| state.clone())
    }

    fn promote(&self, state: &mut LaunchState, trial: &Trial) -> anyhow::Result<()> {
        *state = self.fresh(state);
        let old = state.good.replace(trial.binary.clone());
        let superseded = std::mem::replace(&mut state.previous, old);
        if state
            .trial
            .as_ref()
            .is_none_or(|t| t.binary == trial.binary)
        {
            state.trial = None;
        }
        write_state(&self.data_dir, state)?;
        tracing::info!(version = trial.version, binary = %trial.binary.display(), "the new agent is proven; it is now the good one");
        if let Some(superseded) = superseded {
            self.remove_own_binary(&superseded, state);
        }
        Ok(())
    }

    fn fail(
        &self,
        state: &mut LaunchState,
        trial: &Trial,
        failure: &Failure,
    ) -> anyhow::Result<()> {
        tracing::error!(version = trial.version, reason = %failure, "the new agent failed its probation; going back to the previous one");
        *state = self.fresh(state);
        if state
            .trial
            .as_ref()
            .is_none_or(|t| t.binary == trial.binary)
        {
            state.trial = None;
        }
        state.failed = Some(Failed {
            version: trial.version.clone(),
            reason: failure.to_string(),
            reported: false,
        });
        write_state(&self.data_dir, state)?;
        self.remove_own_binary(&trial.binary, state);
        Ok(())
    }

    /// Removes a binary the launcher no longer needs, if it is one of the data dir's (never
    /// the installed one) and not named by the state.
    fn remove_own_binary(&self, binary: &Path, state: &LaunchState) {
        let named = [&state.good, &state.previous]
            .into_iter()
            .flatten()
            .any(|p| p == binary)
            || state.trial.as_ref().is_some_and(|t| t.binary == binary);
        if !named && binary.starts_with(bin_dir(&self.data_dir)) && binary != self.own {
            let _ = std::fs::remove_file(binary);
        }
    }
}

/// The signals the launcher watches.
struct Signals<'a> {
    term: &'a mut tokio::signal::unix::Signal,
    int: &'a mut tokio::signal::unix::Signal,
    hup: &'a mut tokio::signal::unix::Signal,
}

/// `shoal-agent update`: stages `file` as the trial of `version` for the launcher, and tells
/// a running launcher. The file must be an executable for this device's architecture; it is
/// copied to `{bin}/shoal-agent-VERSION.unverified`, synced, and only then renamed into
/// place, so a cut leaves no half binary under the name the state gives.
pub fn stage(data_dir: &Path, file: &Path, version: &str) -> anyhow::Result<String> {
    let version = shoal_model::release::parse_version(version)?;
    let bytes = std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
    let found = shoal_model::elf::read(&bytes)
        .map_err(|reason| anyhow::anyhow!("{} is not an agent binary: {reason}", file.display()))?;
    let own = shoal_model::elf::Arch::parse(std::env::consts::ARCH).map_err(anyhow::Error::msg)?;
    if found.arch != own {
        anyhow::bail!(
            "{} is built for {}, this device is {}: use the agent built for {}",
            file.display(),
            found.arch.as_str(),
            own.as_str(),
            own.triple()
        );
    }
    let dir = bin_dir(data_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let unverified = dir.join(format!("shoal-agent-{version}.unverified"));
    write_atomic(&dir, &format!("shoal-agent-{version}.unverified"), &bytes)?;
    install(data_dir, &unverified, &version.to_string())
}

/// Stages `unverified` (a checked binary of `version` in `{data_dir}/bin`) as the
/// launcher's trial: renamed to `shoal-agent-VERSION`, made executable, written into
/// `launch.json`, and the running launcher told (SIGHUP).
pub fn install(data_dir: &Path, unverified: &Path, version: &str) -> anyhow::Result<String> {
    let dir = bin_dir(data_dir);
    let staged = dir.join(format!("shoal-agent-{version}"));
    std::fs::rename(unverified, &staged)
        .with_context(|| format!("cannot move the new agent to {}", staged.display()))?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("cannot make {} executable", staged.display()))?;
    }
    let mut state = read_state(data_dir)?;
    state.trial = Some(Trial {
        binary: staged.clone(),
        version: version.to_string(),
        attempts: 0,
    });
    state.failed = None;
    write_state(data_dir, &state)?;
    let signalled = launcher_pid(data_dir).is_some_and(|pid| {
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).is_ok()
    });
    Ok(if signalled {
        format!("agent {version} staged at {}; the launcher switches to it now and keeps it if it proves itself", staged.display())
    } else {
        format!("agent {version} staged at {}; no `shoal-agent launch` runs, so it is tried at the next launch", staged.display())
    })
}

/// The pid of the `shoal-agent launch` that runs the agent of `data_dir`, if one runs.
fn launcher_pid(data_dir: &Path) -> Option<rustix::process::Pid> {
    std::fs::read_to_string(bin_dir(data_dir).join(PID_FILE))
        .ok()
        .and_then(|pid| pid.trim().parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|arg| arg == b"launch"))
                .unwrap_or(false)
        })
        .and_then(rustix::process::Pid::from_raw)
}

/// Whether a `shoal-agent launch` runs the agent of `data_dir` (so a staged trial is tried
/// now, and gone back from if it fails).
pub fn launcher_runs(data_dir: &Path) -> bool {
    launcher_pid(data_dir).is_some()
}

/// SIGTERM, then SIGKILL after `grace`; waits for the exit.
async fn stop(child: &mut Child, grace: Duration) {
    if let Ok(pid) = i32::try_from(child.id()) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
    let _ = child.kill();
    let _ = child.wait();
}
