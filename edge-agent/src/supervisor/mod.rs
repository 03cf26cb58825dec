//! The agent's event loop: one task over a closed enum of [`Event`]s. On every event it
//! refreshes what it observes, asks [`crate::reconcile::plan`] what to do, and hands each
//! action to a blocking worker whose outcome comes back as another event. Level-triggered:
//! a lost action is planned again on the next tick.
//!
//! Effects sit behind two narrow traits, [`Containers`] and [`Images`]; `cli::run` wires the
//! real ones (libcontainer shims and the image store).
//!
//! What survives what:
//! - the agent stopping or being killed: containers keep running (their shims are their
//!   parents); the next agent re-adopts them from [`Containers::list`] without restarting;
//! - a reboot: the run dir is empty, the desired state in SQLite is not, and every workload
//!   is started again from local images with no network.
//!
//! Standalone (no `[hub]`), the desired state is the one `shoal-agent apply` stored. With a hub
//! ([`HubMode`]) it is the hub's newest accepted generation ([`Event::Desired`]), local
//! `apply`/`delete` are refused, and the loop puts a status into the outbox on change and
//! every heartbeat (`report.rs`).
//!
//! Exits are noticed at once: each running container's exit fd (a pidfd of its shim, readable
//! once the exit is recorded) is awaited by a small task that sends [`Event::Exited`], so an
//! exit wakes the loop instead of waiting for the next [`TICK`]'s look.

mod desired;
mod disk;
mod health;
mod report;
mod requests;
mod status;
mod trial;

#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_model::clock::wall_ms;
use shoal_model::manifest::image::ImageRef;
use shoal_model::manifest::{Container, Workload, DEFAULT_STOP_GRACE_PERIOD};
use shoal_model::node::NodeFacts;
use shoal_model::wire::signing::PublicKey;
use shoal_model::wire::{
    DesiredState, DesiredWorkload, Envelope, Event as WireEvent, EventReason, ExitInfo, Health,
    ImageSummary, Severity,
};
use tokio::sync::mpsc;

pub use report::HubMode;

use crate::api::Incoming;
use crate::reconcile::{self, Action, Exit, ImageState, ObservedContainer, Run, StopReason};
use crate::state::disk::DataDisk;
use crate::state::{ContainerRecord, Source, Store};

/// How often the loop looks at its containers when nothing else happens.
pub const TICK: Duration = Duration::from_secs(1);

/// The longest pull failure reason kept for `ps`, the hub and events: registry answers are
/// outside input, and the reason is repeated in every waiting container's status.
const MAX_PULL_REASON: usize = 512;

/// A container as the runtime sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveContainer {
    pub workload: String,
    pub name: String,
    pub pid: Option<u32>,
    /// Wall clock, ms since the Unix epoch.
    pub started_ms: u64,
    /// `None` while it runs.
    pub exit: Option<ExitInfo>,
}

/// Resource use of one container, from its cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ContainerStats {
    pub memory_bytes: u64,
    pub cpu_usage_ns: u64,
}

/// What a command run inside a container returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub exit_code: i32,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

/// The container runtime, as the supervisor needs it. Every method blocks; the supervisor
/// calls them from worker threads.
pub trait Containers: Send + Sync + 'static {
    /// Creates the workload's shared namespaces and volumes; `hash` tells later agents what
    /// they were made for.
    fn ensure_pod(&self, workload: &Workload, hash: &str) -> anyhow::Result<()>;
    fn remove_pod(&self, workload: &str) -> anyhow::Result<()>;
    /// Pods that exist, with the hash given when they were made.
    fn pods(&self) -> anyhow::Result<Vec<(String, String)>>;
    /// Creates and starts one container; returns once it runs.
    fn start(&self, workload: &Workload, container: &Container) -> anyhow::Result<LiveContainer>;
    /// SIGTERM, then SIGKILL after `grace`; returns once it exited.
    fn stop(&self, workload: &str, container: &str, grace: Duration) -> anyhow::Result<()>;
    /// Deletes an exited container's runtime state (its logs stay).
    fn remove(&self, workload: &str, container: &str) -> anyhow::Result<()>;
    fn list(&self) -> anyhow::Result<Vec<LiveContainer>>;
    fn stats(&self, workload: &str, container: &str) -> Option<ContainerStats>;
    fn exec(
        &self,
        workload: &str,
        container: &str,
        command: &[String],
        timeout: Duration,
    ) -> anyhow::Result<ExecOutput>;
    /// The container's current log file (the rotated one is `runtime::logs::rotated` of it).
    fn log_path(&self, workload: &str, container: &str) -> Option<PathBuf>;
    /// The workload's network namespace file when it has its own (`network: isolated`).
    fn netns(&self, workload: &str) -> Option<PathBuf>;
    /// A file descriptor that becomes readable once the container has exited and its exit is
    /// what [`Containers::list`] shows (a pidfd of its shim); `None` when there is none (the
    /// shim is already gone), and the next look notices the exit.
    fn exit_fd(&self, workload: &str, container: &str) -> Option<OwnedFd>;
}

/// The image store, as the supervisor needs it. Every method blocks.
pub trait Images: Send + Sync + 'static {
    fn present(&self, image: &ImageRef) -> bool;
    fn pull(&self, image: &ImageRef) -> anyhow::Result<()>;
    /// Every image, with how many desired containers use it.
    fn list(&self, in_use: &[ImageRef]) -> anyhow::Result<Vec<ImageSummary>>;
    fn import(&self, archive: &std::path::Path) -> anyhow::Result<Vec<ImageSummary>>;
    /// Removes a reference, and the image's data when nothing else needs it (not named
    /// otherwise, not used by `in_use`); says what it freed.
    fn remove(&self, reference: &str, in_use: &[ImageRef]) -> anyhow::Result<String>;
    /// Removes unnamed images no desired container uses, then unused ones while the store is
    /// over its disk budget; says what it freed.
    fn prune(&self, in_use: &[ImageRef]) -> anyhow::Result<String>;
    /// Removes every image no container in `in_use` uses (`shoal-agent images prune`).
    fn prune_unused(&self, in_use: &[ImageRef]) -> anyhow::Result<String>;
}

/// Everything that can happen to the supervisor.
#[derive(Debug)]
pub enum Event {
    Tick,
    Api(Incoming),
    Done(Outcome),
    Health {
        workload: String,
        container: String,
        health: Health,
        message: String,
    },
    /// A desired state from the hub, decoded and checked by the transport, with the envelope
    /// it came in; the supervisor judges it (signed by a trusted key? this node? newer?),
    /// stores it, then converges to it.
    Desired(Box<Envelope>, DesiredState),
    /// A container's exit fd became readable: it exited, and the next look sees how.
    Exited {
        workload: String,
        container: String,
    },
    /// Something from the hub that could not be used (a payload that does not decode):
    /// recorded as a warning event for the hub to see.
    Refused {
        reason: EventReason,
        message: String,
    },
}

/// What a worker reports back.
#[derive(Debug)]
pub enum Outcome {
    Pulled {
        image: String,
        result: Result<(), String>,
    },
    /// The actions for one container ran; `started` is set when one of them was a start.
    Container {
        workload: String,
        container: String,
        started: Option<Result<LiveContainer, String>>,
        error: Option<String>,
    },
    Pod {
        workload: String,
        result: Result<(), String>,
    },
    PodRemoved {
        workload: String,
        result: Result<(), String>,
    },
    /// Image garbage collection ran; the text says what it freed.
    Collected { result: Result<String, String> },
}

/// The supervisor's view of one container.
#[derive(Debug)]
struct Tracked {
    record: ContainerRecord,
    run: Run,
    pid: Option<u32>,
    started_wall_ms: Option<u64>,
    health: Health,
    /// Why it is in its state, when there is something to say.
    message: Option<String>,
    /// Its last start failed (it never ran), as opposed to a run that ended.
    start_failed: bool,
    health_task: Option<tokio::task::JoinHandle<()>>,
    /// Awaits the container's exit fd ([`Event::Exited`]).
    exit_task: Option<tokio::task::JoinHandle<()>>,
    /// Stops or removals in a row that failed; the next is tried at `retry_at_ms`.
    failures: u32,
    retry_at_ms: Option<u64>,
}

type Key = (String, String);

pub struct Supervisor {
    node_name: String,
    node: NodeFacts,
    store: Store,
    containers: Arc<dyn Containers>,
    images: Arc<dyn Images>,
    /// The workloads this node runs: the newest desired state's, with each hub revision that
    /// failed its trial here at the revision the node went back to (`reconcile::trial`).
    desired: Vec<DesiredWorkload>,
    /// The newest desired state's workloads, as accepted and stored.
    accepted: Vec<DesiredWorkload>,
    /// The hub's revisions on trial on this node, by workload.
    trials: BTreeMap<String, reconcile::trial::Trial>,
    generation: u64,
    tracked: BTreeMap<Key, Tracked>,
    /// Records of containers not running now (after a reboot), kept for their counters.
    records: BTreeMap<Key, ContainerRecord>,
    pods: BTreeMap<String, String>,
    images_state: BTreeMap<String, ImageState>,
    /// Pods and containers with a worker busy on them: not planned for until it reports.
    busy: std::collections::BTreeSet<String>,
    epoch: Instant,
    events: mpsc::Sender<Event>,
    /// Set when the hub drives this node: what and where to report.
    hub: Option<report::Reporter>,
    /// The sequence of the newest event recorded.
    last_event: Cell<u64>,
    /// The hub keys a desired state must be signed with.
    trusted: Vec<PublicKey>,
    /// Whether the data disk is full, and the reserve that lets the agent say so.
    disk: DataDisk,
    /// The hub's desired state that could not be stored for lack of space: taken again once
    /// the disk has space.
    waiting_for_space: Option<(Box<Envelope>, DesiredState)>,
    /// Fetches and stages the agent the hub names (hub mode with credentials only).
    updater: Option<crate::update::Updater>,
}

impl std::fmt::Debug for Supervisor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisor")
            .field("node", &self.node.labels)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl Supervisor {
    /// Loads the desired state (the hub's with `hub`, the local one without) and container
    /// records, and re-adopts running containers.
    pub fn new(
        node_name: String,
        node: NodeFacts,
        store: Store,
        containers: Arc<dyn Containers>,
        images: Arc<dyn Images>,
        events: mpsc::Sender<Event>,
        hub: Option<HubMode>,
    ) -> anyhow::Result<Supervisor> {
        let source = if hub.is_some() {
            Source::Hub
        } else {
            Source::Local
        };
        let (generation, accepted) = store.latest_desired(source)?.unwrap_or((0, Vec::new()));
        let trials = match source {
            Source::Hub => trial::load(&store, &accepted)?,
            Source::Local => BTreeMap::new(),
        };
        let desired = reconcile::trial::running(&accepted, &trials);
        let mut trusted = store.trusted_keys()?;
        if let Some(mode) = hub.as_ref().filter(|_| trusted.is_empty()) {
            anyhow::ensure!(
                !mode.signing_keys.is_empty(),
                "this node trusts no hub signing key, so it would refuse every desired state: \
                 enroll it (`shoal-agent enroll --hub URL --token TOKEN`) or set hub.signing_keys"
            );
            store.set_trusted_keys(&mode.signing_keys, wall_ms())?;
            trusted = mode.signing_keys.clone();
        }
        let updater = hub
            .as_ref()
            .and_then(|mode| mode.update.clone())
            .map(|access| crate::update::Updater::new(store.data_dir(), access));
        let hub = match hub {
            Some(mode) => Some(report::Reporter::new(mode, store.report_cursor()?)),
            None => None,
        };
        let last_event = Cell::new(store.last_event_sequence()?);
        let records = store
            .containers()?
            .into_iter()
            .map(|r| ((r.workload.clone(), r.name.clone()), r))
            .collect();
        let pods = containers.pods()?.into_iter().collect();
        let disk = DataDisk::new(store.data_dir());
        let mut supervisor = Supervisor {
            node_name,
            node,
            store,
            containers,
            images,
            desired,
            accepted,
            trials,
            generation,
            tracked: BTreeMap::new(),
            records,
            pods,
            images_state: BTreeMap::new(),
            busy: Default::default(),
            epoch: Instant::now(),
            events,
            hub,
            last_event,
            trusted,
            disk,
            waiting_for_space: None,
            updater,
        };
        // First, so that on a full disk the reserve is given up before anything is recorded.
        supervisor.watch_disk();
        supervisor.adopt()?;
        let from = if supervisor.hub.is_some() {
            "the hub's"
        } else {
            "local"
        };
        supervisor.note(
            Severity::Info,
            None,
            None,
            EventReason::AgentStarted,
            format!("agent started with {from} desired generation {generation}"),
        );
        if let Some(failed) = crate::launch::take_unreported_failure(supervisor.store.data_dir()) {
            supervisor.note(
                Severity::Warning,
                None,
                None,
                EventReason::AgentUpdateFailed,
                format!(
                    "agent {} started again after the update to agent {} was reverted: {}",
                    crate::version::version(),
                    failed.version,
                    failed.reason
                ),
            );
        }
        Ok(supervisor)
    }

    /// Monotonic ms since the agent started: what backoffs are measured in.
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Takes over the containers that kept running while the agent was away.
    fn adopt(&mut self) -> anyhow::Result<()> {
        for live in self.containers.list()? {
            let key = (live.workload.clone(), live.name.clone());
            let record = self
                .records
                .remove(&key)
                .unwrap_or_else(|| ContainerRecord {
                    id: format!("{}.{}", live.workload, live.name),
                    workload: live.workload.clone(),
                    name: live.name.clone(),
                    image: String::new(),
                    spec_hash: String::new(),
                    restarts: 0,
                    crash_streak: 0,
                    oom_kills: 0,
                    last_exit: None,
                    stop_grace: None,
                });
            let now = self.now();
            let message = format!(
                "re-adopted (pid {})",
                live.pid.map_or("?".into(), |p| p.to_string())
            );
            let tracked = Tracked {
                record,
                run: Run::Running { since_ms: now },
                pid: live.pid,
                started_wall_ms: Some(live.started_ms),
                health: Health::Unknown,
                message: None,
                start_failed: false,
                health_task: None,
                exit_task: None,
                failures: 0,
                retry_at_ms: None,
            };
            self.tracked.insert(key.clone(), tracked);
            self.note(
                Severity::Info,
                Some(&key.0),
                Some(&key.1),
                EventReason::Adopted,
                message,
            );
            if let Some(exit) = live.exit {
                self.exited(&key, exit);
            } else {
                self.start_health(&key);
                self.watch_exit(&key);
            }
        }
        Ok(())
    }

    /// Runs the loop until the process is stopped. Containers are left running on exit.
    /// Runs until `events` closes; says `ready` once the first pass re-adopted what runs.
    pub async fn run(
        mut self,
        mut events: mpsc::Receiver<Event>,
        ready: std::sync::Arc<crate::launch::Ready>,
    ) {
        let mut wake = self.step();
        ready.adopted();
        loop {
            wake = wake.min(self.report());
            let event = tokio::select! {
                event = events.recv() => match event {
                    Some(event) => event,
                    None => return,
                },
                () = tokio::time::sleep(wake) => Event::Tick,
            };
            self.handle(event);
            wake = self.step();
        }
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Tick => {}
            Event::Exited {
                workload,
                container,
            } => tracing::debug!(workload, container, "exit fd readable"),
            Event::Api(incoming) => self.request(incoming),
            Event::Done(outcome) => self.done(outcome),
            Event::Health {
                workload,
                container,
                health,
                message,
            } => {
                let key = (workload, container);
                let Some(t) = self.tracked.get_mut(&key) else {
                    return;
                };
                if t.health == health {
                    return;
                }
                t.health = health;
                let (severity, reason) = match health {
                    Health::Unhealthy => (Severity::Warning, EventReason::Unhealthy),
                    _ => (Severity::Info, EventReason::Healthy),
                };
                self.note(severity, Some(&key.0), Some(&key.1), reason, message);
            }
            Event::Desired(envelope, state) => self.desired_from_hub(&envelope, state),
            Event::Refused { reason, message } => {
                self.note(Severity::Warning, None, None, reason, message)
            }
        }
    }

    /// Observes, plans and dispatches; returns how long to sleep at most.
    fn step(&mut self) -> Duration {
        self.watch_disk();
        self.note_update_failures();
        self.observe();
        let trial_wake = self.judge_trials();
        let plan = reconcile::plan(&self.desired, &self.observed(), self.now());
        self.dispatch(plan.actions);
        let wake = match (plan.wake_at_ms, trial_wake) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let until_wake = wake.map_or(TICK, |at| {
            Duration::from_millis(at.saturating_sub(self.now()))
        });
        until_wake.clamp(Duration::from_millis(10), TICK)
    }

    /// Records the agent update's failures as events, once each.
    fn note_update_failures(&mut self) {
        if let Some(updater) = self.updater.as_mut() {
            updater.tick();
        }
        let failures = self
            .updater
            .as_ref()
            .map(crate::update::Updater::take_failures)
            .unwrap_or_default();
        for message in failures {
            self.note(
                Severity::Warning,
                None,
                None,
                EventReason::AgentUpdateFailed,
                message,
            );
        }
    }

    /// Notices containers that exited since the last look.
    fn observe(&mut self) {
        let live = match self.containers.list() {
            Ok(live) => live,
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot list containers");
                return;
            }
        };
        let exits: Vec<(Key, ExitInfo)> = self
            .tracked
            .iter()
            .filter(|(key, t)| {
                matches!(t.run, Run::Running { .. } | Run::Stopping { .. })
                    && !self.busy.contains(&busy_key(key))
            })
            .filter_map(|(key, _)| {
                let found = live.iter().find(|l| l.workload == key.0 && l.name == key.1);
                match found {
                    Some(l) => l.exit.map(|exit| (key.clone(), exit)),
                    // Gone without a trace (its shim was killed): count it as killed.
                    None => Some((
                        key.clone(),
                        ExitInfo {
                            code: None,
                            signal: Some(9),
                            oom_killed: false,
                            at_ms: wall_ms(),
                        },
                    )),
                }
            })
            .collect();
        for (key, exit) in exits {
            self.exited(&key, exit);
        }
    }

    /// Records an exit: counters, events, and the run state the planner sees.
    fn exited(&mut self, key: &Key, exit: ExitInfo) {
        let now = self.now();
        let Some(t) = self.tracked.get_mut(key) else {
            return;
        };
        let started = match t.run {
            Run::Running { since_ms } | Run::Starting { since_ms } | Run::Stopping { since_ms } => {
                since_ms
            }
            Run::Exited { .. } => return,
        };
        if let Some(task) = t.health_task.take() {
            task.abort();
        }
        if let Some(task) = t.exit_task.take() {
            task.abort();
        }
        t.record.crash_streak = reconcile::next_crash_streak(t.record.crash_streak, started, now);
        if exit.oom_killed {
            t.record.oom_kills = t.record.oom_kills.saturating_add(1);
        }
        t.record.last_exit = Some(exit);
        t.run = Run::Exited {
            started_ms: started,
            exited_ms: now,
            exit: to_exit(&exit),
        };
        t.pid = None;
        t.health = Health::Unknown;
        let record = t.record.clone();
        if let Err(e) = self.store.save_container(&record, wall_ms()) {
            tracing::error!(error = %e, "cannot save a container record");
        }
        let (severity, reason, what) = if exit.oom_killed {
            (
                Severity::Warning,
                EventReason::OomKilled,
                "killed by the kernel for running out of memory (OOM)".to_string(),
            )
        } else {
            (Severity::Info, EventReason::Exited, describe_exit(&exit))
        };
        self.note(severity, Some(&key.0), Some(&key.1), reason, what);
    }

    /// The planner's input, from the supervisor's state.
    fn observed(&self) -> reconcile::Observed {
        let containers = self
            .tracked
            .iter()
            .map(|((workload, name), t)| ObservedContainer {
                workload: workload.clone(),
                name: name.clone(),
                spec_hash: t.record.spec_hash.clone(),
                run: t.run,
                restarts: t.record.restarts,
                crash_streak: t.record.crash_streak,
                health: t.health,
                busy: self
                    .busy
                    .contains(&busy_key(&(workload.clone(), name.clone()))),
                retry_at_ms: t.retry_at_ms,
                stop_grace: t.record.stop_grace.unwrap_or(DEFAULT_STOP_GRACE_PERIOD),
            })
            .collect();
        let mut images = self.images_state.clone();
        for d in &self.desired {
            for c in &d.workload.spec.containers {
                let name = c.image.to_string();
                if self.busy.contains(&pull_key(&name)) {
                    // A worker is pulling it, whatever the last attempt said.
                    images.insert(name, ImageState::Pulling);
                } else if images.get(&name) != Some(&ImageState::Present)
                    && self.images.present(&c.image)
                {
                    // Also after failed pulls, once the image was imported.
                    images.insert(name, ImageState::Present);
                }
            }
        }
        reconcile::Observed {
            containers,
            pods: self.pods.clone(),
            images,
        }
    }

    fn dispatch(&mut self, actions: Vec<Action>) {
        // Actions for one container (remove, then start) run in order on one worker; pods
        // come first, on their own workers; pulls run alone.
        let mut per_container: BTreeMap<Key, Vec<Action>> = BTreeMap::new();
        let mut pods_to_make: Vec<String> = Vec::new();
        for action in actions {
            match action {
                Action::PullImage { image } => self.pull(image),
                Action::EnsurePod { workload } => pods_to_make.push(workload),
                Action::RemovePod { workload } => self.remove_pod(workload),
                Action::Start {
                    ref workload,
                    ref container,
                }
                | Action::Stop {
                    ref workload,
                    ref container,
                    ..
                }
                | Action::Remove {
                    ref workload,
                    ref container,
                } => per_container
                    .entry((workload.clone(), container.clone()))
                    .or_default()
                    .push(action),
            }
        }
        for (key, actions) in per_container {
            if pods_to_make.contains(&key.0)
                && actions.iter().any(|a| matches!(a, Action::Start { .. }))
            {
                // Started once the pod is ready (the next plan after the pod reports).
                continue;
            }
            self.container_work(key, actions);
        }
        for workload in pods_to_make {
            self.ensure_pod(workload);
        }
    }

    fn spawn(&mut self, busy: String, work: impl FnOnce() -> Outcome + Send + 'static) {
        self.busy.insert(busy);
        let events = self.events.clone();
        tokio::task::spawn_blocking(move || {
            let outcome = work();
            let _ = events.blocking_send(Event::Done(outcome));
        });
    }

    /// Pulls `image` on a worker. The state of the last attempt stays while it runs (the
    /// planner sees the image as pulling), so failures count up and back off.
    fn pull(&mut self, image: String) {
        let busy = pull_key(&image);
        if self.busy.contains(&busy) {
            return;
        }
        let Ok(reference) = ImageRef::parse(&image) else {
            return;
        };
        match self.images_state.get(&image) {
            // A retry is no news: the failure was an event, the next outcome will be one
            // if it differs.
            Some(ImageState::Failed { attempts, .. }) => {
                tracing::info!(image = %image, attempt = attempts.saturating_add(1), "pulling the image again");
            }
            _ => self.note(
                Severity::Info,
                None,
                None,
                EventReason::ImagePulling,
                format!("pulling {image}"),
            ),
        }
        let images = Arc::clone(&self.images);
        self.spawn(busy, move || {
            let result = images.pull(&reference).map_err(|e| format!("{e:#}"));
            Outcome::Pulled { image, result }
        });
    }

    /// Keeps the image store under the disk budget after it grew: images no desired workload
    /// uses go first, least recently used first; images in use are never removed.
    fn collect_garbage(&mut self) {
        let busy = "image gc".to_string();
        if self.busy.contains(&busy) {
            return;
        }
        let in_use = self.images_in_use();
        let images = Arc::clone(&self.images);
        self.spawn(busy, move || Outcome::Collected {
            result: images.prune(&in_use).map_err(|e| format!("{e:#}")),
        });
    }

    fn ensure_pod(&mut self, workload: String) {
        let Some(w) = self.workload(&workload).cloned() else {
            return;
        };
        if self.busy.contains(&format!("pod {workload}")) {
            return;
        }
        let containers = Arc::clone(&self.containers);
        self.spawn(format!("pod {workload}"), move || {
            let hash = reconcile::pod_hash(&w);
            let result = containers
                .ensure_pod(&w, &hash)
                .map_err(|e| format!("{e:#}"));
            Outcome::Pod {
                workload: w.name.clone(),
                result,
            }
        });
    }

    fn remove_pod(&mut self, workload: String) {
        if self.busy.contains(&format!("pod {workload}")) {
            return;
        }
        let containers = Arc::clone(&self.containers);
        self.spawn(format!("pod {workload}"), move || {
            let result = containers
                .remove_pod(&workload)
                .map_err(|e| format!("{e:#}"));
            Outcome::PodRemoved { workload, result }
        });
    }

    fn container_work(&mut self, key: Key, actions: Vec<Action>) {
        let busy = busy_key(&key);
        if self.busy.contains(&busy) {
            // The planner leaves busy containers alone; this guards the one-worker-per-
            // container rule should it ever not.
            tracing::debug!(busy, ?actions, "a worker is already on this container");
            return;
        }
        let workload = self.workload(&key.0).cloned();
        let now = self.now();
        if let Some(t) = self.tracked.get_mut(&key) {
            for action in &actions {
                if let Action::Stop { reason, .. } = action {
                    // The run keeps its start, so its length (and crash streak) stays true.
                    let since_ms = match t.run {
                        Run::Running { since_ms }
                        | Run::Starting { since_ms }
                        | Run::Stopping { since_ms } => since_ms,
                        Run::Exited { .. } => now,
                    };
                    t.run = Run::Stopping { since_ms };
                    t.message = Some(match reason {
                        StopReason::Unhealthy => "stopped: its health check failed".into(),
                        StopReason::Outdated => "stopped: being replaced by a new spec".into(),
                        StopReason::Unwanted => "stopped: no longer desired here".into(),
                    });
                }
            }
        }
        if actions.iter().any(|a| matches!(a, Action::Start { .. })) {
            self.prepare_start(&key);
        }
        let containers = Arc::clone(&self.containers);
        self.spawn(busy, move || {
            let mut started = None;
            let mut error = None;
            for action in actions {
                let result = match &action {
                    Action::Stop { grace, .. } => containers.stop(&key.0, &key.1, *grace),
                    Action::Remove { .. } => containers.remove(&key.0, &key.1),
                    Action::Start { .. } => {
                        let Some(w) = &workload else { break };
                        let Some(c) = w.spec.containers.iter().find(|c| c.name == key.1) else {
                            break;
                        };
                        started = Some(containers.start(w, c).map_err(|e| format!("{e:#}")));
                        continue;
                    }
                    _ => Ok(()),
                };
                if let Err(e) = result {
                    error = Some(format!("{e:#}"));
                    break;
                }
            }
            Outcome::Container {
                workload: key.0,
                container: key.1,
                started,
                error,
            }
        });
    }

    /// Updates the record of a container about to be (re)started.
    fn prepare_start(&mut self, key: &Key) {
        let Some(w) = self.workload(&key.0) else {
            return;
        };
        let Some(c) = w.spec.containers.iter().find(|c| c.name == key.1) else {
            return;
        };
        let hash = reconcile::spec_hash(w, c);
        let image = c.image.to_string();
        let stop_grace = w.spec.stop_grace_period;
        let now = self.now();
        let previous = self
            .tracked
            .remove(key)
            .map(|t| t.record)
            .or_else(|| self.records.remove(key));
        let record = match previous {
            // Same spec, started again: a restart.
            Some(mut r) if r.spec_hash == hash => {
                if r.last_exit.is_some() {
                    r.restarts = r.restarts.saturating_add(1);
                }
                r
            }
            // New or changed spec: counters start over.
            _ => ContainerRecord {
                id: format!("{}.{}", key.0, key.1),
                workload: key.0.clone(),
                name: key.1.clone(),
                image,
                spec_hash: hash.clone(),
                restarts: 0,
                crash_streak: 0,
                oom_kills: 0,
                last_exit: None,
                stop_grace: None,
            },
        };
        let record = ContainerRecord {
            spec_hash: hash,
            stop_grace: Some(stop_grace),
            ..record
        };
        self.tracked.insert(
            key.clone(),
            Tracked {
                record,
                run: Run::Starting { since_ms: now },
                pid: None,
                started_wall_ms: None,
                health: Health::Unknown,
                message: None,
                start_failed: false,
                health_task: None,
                exit_task: None,
                failures: 0,
                retry_at_ms: None,
            },
        );
    }

    fn done(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Pulled { image, result } => {
                self.busy.remove(&pull_key(&image));
                match result {
                    Ok(()) => {
                        self.images_state.insert(image.clone(), ImageState::Present);
                        self.note(
                            Severity::Info,
                            None,
                            None,
                            EventReason::ImagePulled,
                            format!("pulled {image}"),
                        );
                        self.collect_garbage();
                    }
                    Err(e) => {
                        let reason = shorten(&e, MAX_PULL_REASON);
                        let (attempts, repeated) = match self.images_state.get(&image) {
                            Some(ImageState::Failed {
                                attempts,
                                reason: last,
                                ..
                            }) => (attempts.saturating_add(1), *last == reason),
                            _ => (1, false),
                        };
                        self.images_state.insert(
                            image.clone(),
                            ImageState::Failed {
                                at_ms: self.now(),
                                attempts,
                                reason: reason.clone(),
                            },
                        );
                        if repeated {
                            tracing::warn!(image = %image, attempts, reason = %reason, "the image still cannot be pulled");
                        } else {
                            self.note_pull_failed(&image, attempts, &reason);
                        }
                    }
                }
            }
            Outcome::Collected { result } => {
                self.busy.remove("image gc");
                match result {
                    Ok(report) => tracing::info!(report, "image garbage collection"),
                    Err(e) => self.note(
                        Severity::Warning,
                        None,
                        None,
                        EventReason::DiskBudgetExceeded,
                        format!("image garbage collection failed: {e}"),
                    ),
                }
            }
            Outcome::PodRemoved { workload, result } => {
                self.busy.remove(&format!("pod {workload}"));
                match result {
                    Ok(()) => {
                        self.pods.remove(&workload);
                    }
                    Err(e) => tracing::warn!(workload, error = %e, "cannot remove a pod"),
                }
            }
            Outcome::Pod { workload, result } => {
                self.busy.remove(&format!("pod {workload}"));
                match result {
                    Ok(()) => {
                        if let Some(w) = self.workload(&workload) {
                            let hash = reconcile::pod_hash(w);
                            self.pods.insert(workload, hash);
                        }
                    }
                    Err(e) => self.note(
                        Severity::Error,
                        Some(&workload),
                        None,
                        EventReason::WorkloadRefused,
                        format!("cannot set up the workload: {e}"),
                    ),
                }
            }
            Outcome::Container {
                workload,
                container,
                started,
                error,
            } => {
                let key = (workload, container);
                self.busy.remove(&busy_key(&key));
                let now = self.now();
                if let Some(t) = self.tracked.get_mut(&key) {
                    if error.is_some() {
                        // Tried again after a backoff, not on the next event: a stop or
                        // removal that keeps failing costs one event per retry, no more.
                        t.failures = t.failures.saturating_add(1);
                        let delay = reconcile::backoff(
                            reconcile::ACTION_RETRY_BASE,
                            t.failures.saturating_sub(1),
                        );
                        t.retry_at_ms = Some(now.saturating_add(delay.as_millis() as u64));
                    } else {
                        t.failures = 0;
                        t.retry_at_ms = None;
                    }
                }
                if let Some(e) = error {
                    self.note(
                        Severity::Warning,
                        Some(&key.0),
                        Some(&key.1),
                        EventReason::Stopped,
                        format!("stop or remove failed: {e}"),
                    );
                }
                match started {
                    None => self.after_stop_or_remove(&key),
                    Some(Ok(live)) => self.started(&key, live),
                    Some(Err(e)) => self.start_failed(&key, e),
                }
            }
        }
    }

    fn after_stop_or_remove(&mut self, key: &Key) {
        let live = self.containers.list().unwrap_or_default();
        let found = live
            .into_iter()
            .find(|l| l.workload == key.0 && l.name == key.1);
        match found {
            Some(LiveContainer {
                exit: Some(exit), ..
            }) => self.exited(key, exit),
            Some(_) => {
                // Still running: the stop failed. It runs on until the retry stops it.
                if let Some(t) = self.tracked.get_mut(key) {
                    if let Run::Stopping { since_ms } = t.run {
                        t.run = Run::Running { since_ms };
                    }
                }
            }
            None => {
                // Removed: forget it, and its record if it is no longer desired.
                let desired = self
                    .workload(&key.0)
                    .is_some_and(|w| w.spec.containers.iter().any(|c| c.name == key.1));
                if let Some(t) = self.tracked.remove(key) {
                    if desired {
                        self.records.insert(key.clone(), t.record);
                    } else {
                        if let Err(e) = self.store.delete_container(&t.record.id) {
                            tracing::warn!(error = %e, "cannot delete a container record");
                        }
                        self.note(
                            Severity::Info,
                            Some(&key.0),
                            Some(&key.1),
                            EventReason::Removed,
                            "removed".into(),
                        );
                    }
                }
            }
        }
    }

    fn started(&mut self, key: &Key, live: LiveContainer) {
        let now = self.now();
        let Some(t) = self.tracked.get_mut(key) else {
            return;
        };
        t.run = Run::Running { since_ms: now };
        t.pid = live.pid;
        t.started_wall_ms = Some(live.started_ms);
        t.message = None;
        t.start_failed = false;
        let record = t.record.clone();
        let restarts = record.restarts;
        if let Err(e) = self.store.save_container(&record, wall_ms()) {
            tracing::error!(error = %e, "cannot save a container record");
        }
        let pid = live.pid.map_or("?".into(), |p| p.to_string());
        self.note(
            Severity::Info,
            Some(&key.0),
            Some(&key.1),
            EventReason::Started,
            format!("started (pid {pid}, restarts {restarts})"),
        );
        self.start_health(key);
        self.watch_exit(key);
        if let Some(exit) = live.exit {
            self.exited(key, exit);
        }
    }

    /// A start that failed counts as a run that ended at once, so restarts back off and the
    /// restart policy applies (`never` leaves it failed).
    fn start_failed(&mut self, key: &Key, error: String) {
        let message = format!("cannot start: {error}");
        self.note(
            Severity::Error,
            Some(&key.0),
            Some(&key.1),
            EventReason::CreateFailed,
            message.clone(),
        );
        let now = self.now();
        if let Some(t) = self.tracked.get_mut(key) {
            t.run = Run::Running { since_ms: now };
        }
        self.exited(
            key,
            ExitInfo {
                code: Some(128),
                signal: None,
                oom_killed: false,
                at_ms: wall_ms(),
            },
        );
        if let Some(t) = self.tracked.get_mut(key) {
            t.message = Some(message);
            t.start_failed = true;
        }
    }

    fn start_health(&mut self, key: &Key) {
        let Some(w) = self.workload(&key.0) else {
            return;
        };
        let Some(c) = w.spec.containers.iter().find(|c| c.name == key.1) else {
            return;
        };
        let Some(check) = c.health.clone() else {
            return;
        };
        let netns = self.containers.netns(&key.0);
        let task = health::spawn(
            key.clone(),
            check,
            netns,
            Arc::clone(&self.containers),
            self.events.clone(),
        );
        if let Some(t) = self.tracked.get_mut(key) {
            t.health = Health::Starting;
            if let Some(old) = t.health_task.replace(task) {
                old.abort();
            }
        }
    }

    /// Awaits the container's exit fd in a task of its own, which sends [`Event::Exited`].
    fn watch_exit(&mut self, key: &Key) {
        let Some(fd) = self.containers.exit_fd(&key.0, &key.1) else {
            return;
        };
        let events = self.events.clone();
        let (workload, container) = key.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = crate::runtime::sys::readable(fd).await {
                // The look each tick still notices the exit.
                tracing::warn!(workload, container, error = %e, "cannot await the exit fd");
                return;
            }
            let _ = events
                .send(Event::Exited {
                    workload,
                    container,
                })
                .await;
        });
        if let Some(t) = self.tracked.get_mut(key) {
            if let Some(old) = t.exit_task.replace(task) {
                old.abort();
            }
        } else {
            task.abort();
        }
    }

    fn workload(&self, name: &str) -> Option<&Workload> {
        self.desired
            .iter()
            .map(|d| &d.workload)
            .find(|w| w.name == name)
    }

    /// A failed pull, as one event for every desired container that uses the image (so
    /// `shoal describe workload` shows it too), or for the node when none does.
    fn note_pull_failed(&self, image: &str, attempts: u32, reason: &str) {
        let message = if attempts == 1 {
            format!("cannot pull {image}: {reason}")
        } else {
            format!("cannot pull {image} (attempt {attempts}): {reason}")
        };
        let waiting: Vec<(&str, &str)> = self
            .desired
            .iter()
            .flat_map(|d| {
                d.workload
                    .spec
                    .containers
                    .iter()
                    .filter(|c| c.image.to_string() == image)
                    .map(|c| (d.workload.name.as_str(), c.name.as_str()))
            })
            .collect();
        if waiting.is_empty() {
            self.note(
                Severity::Warning,
                None,
                None,
                EventReason::ImagePullFailed,
                message.clone(),
            );
        }
        for (workload, container) in waiting {
            self.note(
                Severity::Warning,
                Some(workload),
                Some(container),
                EventReason::ImagePullFailed,
                message.clone(),
            );
        }
    }

    /// Records an event in the bounded log and the agent's log.
    fn note(
        &self,
        severity: Severity,
        workload: Option<&str>,
        container: Option<&str>,
        reason: EventReason,
        message: String,
    ) {
        let at = match (workload, container) {
            (Some(w), Some(c)) => format!("{w}/{c}"),
            (Some(w), None) => w.to_string(),
            _ => String::new(),
        };
        match severity {
            Severity::Error => {
                tracing::error!(target: "shoal::event", reason = reason.as_str(), "{at} {message}")
            }
            Severity::Warning => {
                tracing::warn!(target: "shoal::event", reason = reason.as_str(), "{at} {message}")
            }
            Severity::Info => {
                tracing::info!(target: "shoal::event", reason = reason.as_str(), "{at} {message}")
            }
        }
        let event = WireEvent {
            sequence: 0,
            at_ms: wall_ms(),
            severity,
            workload: workload.map(Into::into),
            container: container.map(Into::into),
            reason,
            message,
        };
        match self.store.record_event(&event) {
            Ok(sequence) => self.last_event.set(sequence),
            Err(e) => tracing::error!(error = %e, "cannot record an event"),
        }
    }
}

/// The busy mark of a pull of `image`.
fn pull_key(image: &str) -> String {
    format!("image {image}")
}

/// `text`, cut to at most `max` bytes (on a character boundary) with `…` when it was longer.
fn shorten(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

fn busy_key(key: &Key) -> String {
    format!("container {}/{}", key.0, key.1)
}

fn to_exit(exit: &ExitInfo) -> Exit {
    if exit.oom_killed {
        Exit::OomKilled
    } else if let Some(signal) = exit.signal {
        Exit::Signal(signal)
    } else {
        Exit::Code(exit.code.unwrap_or(-1))
    }
}

/// `exited (code 3)`, `exited (SIGKILL)`: what a container's status and `exited` event say.
pub fn describe_exit(exit: &ExitInfo) -> String {
    format!("exited ({exit})")
}
