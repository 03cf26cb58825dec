//! The supervisor's hub mode: when statuses are due and what they carry (pure, table tests),
//! which desired states are taken (pure), and the supervisor itself over a real SQLite file
//! with a fake runtime: desired states stored before anything runs, local changes refused,
//! statuses in the outbox with every event.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_model::manifest::parse_manifest;
use shoal_model::wire::{
    self, ContainerState, ContainerStatus, DesiredState, Event as WireEvent, Health, Limits,
    NodeStatus, NodeUsage, RpcRequest, RpcRequestBody, RpcResponseBody, WorkloadStatus,
};

use super::desired::{changes, judge, Verdict};
use super::report::{next_report, pack, same_report, window, Reported, COALESCE};
use super::*;
use crate::api::Incoming;
use shoal_model::wire::signing::SigningKey;

// ---------------------------------------------------------------------------------------
// When a status is due

fn container(state: ContainerState, restarts: u32, memory: Option<u64>) -> ContainerStatus {
    ContainerStatus {
        name: "main".into(),
        state,
        health: Health::Unknown,
        restarts,
        last_exit: None,
        oom_kills: 0,
        started_at_ms: Some(1_000),
        pid: Some(42),
        memory_bytes: memory,
        cpu_usage_ns: memory.map(|m| m * 3),
        message: None,
    }
}

fn node_status(containers: Vec<ContainerStatus>) -> NodeStatus {
    NodeStatus {
        node_id: "gw-1".into(),
        observed_generation: 3,
        sequence: 0,
        sent_at_ms: 0,
        workloads: vec![WorkloadStatus {
            name: "web".into(),
            revision: 1,
            containers,
            rolled_back: None,
        }],
        usage: NodeUsage::default(),
        events: Vec::new(),
        dropped_events: 0,
        agent_update: None,
    }
}

fn running() -> NodeStatus {
    node_status(vec![container(ContainerState::Running, 0, None)])
}

const HEARTBEAT: Duration = Duration::from_secs(60);

struct Due {
    last: Option<Reported>,
    current: NodeStatus,
    events_waiting: bool,
    now_ms: u64,
    expected_ms: u64,
}

fn check(name: &str, case: Due) {
    let due = next_report(
        case.last.as_ref(),
        &case.current,
        case.events_waiting,
        case.now_ms,
        HEARTBEAT,
    );
    assert_eq!(due, case.expected_ms, "{name}");
}

fn sent(status: NodeStatus, at_ms: u64) -> Option<Reported> {
    Some(Reported {
        status: Some(status),
        at_ms,
        early: false,
    })
}

/// A status sent early, within the window of the one before, because a container became ready.
fn sent_early(status: NodeStatus, at_ms: u64) -> Option<Reported> {
    Some(Reported {
        status: Some(status),
        at_ms,
        early: true,
    })
}

fn with_health(health: Health) -> NodeStatus {
    let mut status = running();
    status.workloads[0].containers[0].health = health;
    status
}

#[test]
fn statuses_are_due_on_change_at_most_once_a_coalescing_window_and_else_every_heartbeat() {
    let restarted = node_status(vec![container(ContainerState::Running, 1, None)]);
    let rows = [
        (
            "the first status is due at once",
            Due {
                last: None,
                current: running(),
                events_waiting: false,
                now_ms: 500,
                expected_ms: 500,
            },
        ),
        (
            "an unchanged state waits for the heartbeat",
            Due {
                last: sent(running(), 10_000),
                current: running(),
                events_waiting: false,
                now_ms: 20_000,
                expected_ms: 70_000,
            },
        ),
        (
            "a change is due at once when the last status is older than the window",
            Due {
                last: sent(running(), 10_000),
                current: restarted.clone(),
                events_waiting: false,
                now_ms: 20_000,
                expected_ms: 20_000,
            },
        ),
        (
            "changes within the window of a status are coalesced into one at its end",
            Due {
                last: sent(running(), 10_000),
                current: restarted,
                events_waiting: false,
                now_ms: 10_100,
                expected_ms: 10_250,
            },
        ),
        (
            "new events are a change",
            Due {
                last: sent(running(), 10_000),
                current: running(),
                events_waiting: true,
                now_ms: 10_200,
                expected_ms: 10_250,
            },
        ),
        (
            "a failed emission is retried a window later",
            Due {
                last: Some(Reported {
                    status: None,
                    at_ms: 10_000,
                    early: false,
                }),
                current: running(),
                events_waiting: false,
                now_ms: 10_100,
                expected_ms: 10_250,
            },
        ),
    ];
    for (name, case) in rows {
        check(name, case);
    }
}

#[test]
fn a_container_that_became_ready_is_reported_at_once_but_only_once_per_window() {
    let creating = node_status(vec![container(ContainerState::Creating, 0, None)]);
    let mut restarted_later = running();
    restarted_later.workloads[0].containers[0].started_at_ms = Some(2_000);
    let mut next_revision = running();
    next_revision.workloads[0].revision = 2;
    let rows = [
        (
            "creating → running within the window is due at once",
            Due {
                last: sent(creating.clone(), 10_000),
                current: running(),
                events_waiting: false,
                now_ms: 10_010,
                expected_ms: 10_010,
            },
        ),
        (
            "a container of a workload not in the last status that runs is due at once",
            Due {
                last: sent(node_status(Vec::new()), 10_000),
                current: running(),
                events_waiting: false,
                now_ms: 10_010,
                expected_ms: 10_010,
            },
        ),
        (
            "a new revision running is due at once",
            Due {
                last: sent(running(), 10_000),
                current: next_revision,
                events_waiting: false,
                now_ms: 10_010,
                expected_ms: 10_010,
            },
        ),
        (
            "a container started again is due at once",
            Due {
                last: sent(creating.clone(), 10_000),
                current: restarted_later,
                events_waiting: false,
                now_ms: 10_010,
                expected_ms: 10_010,
            },
        ),
        (
            "after a status sent early the next waits for the window's end",
            Due {
                last: sent_early(creating.clone(), 10_000),
                current: running(),
                events_waiting: false,
                now_ms: 10_010,
                expected_ms: 10_250,
            },
        ),
        (
            "starting → healthy is due at once",
            Due {
                last: sent(with_health(Health::Starting), 10_000),
                current: with_health(Health::Healthy),
                events_waiting: false,
                now_ms: 10_010,
                expected_ms: 10_010,
            },
        ),
        (
            "running but its health check not passed yet waits for the window's end",
            Due {
                last: sent(creating.clone(), 10_000),
                current: with_health(Health::Starting),
                events_waiting: false,
                now_ms: 10_010,
                expected_ms: 10_250,
            },
        ),
        (
            "running → unhealthy waits for the window's end",
            Due {
                last: sent(running(), 10_000),
                current: with_health(Health::Unhealthy),
                events_waiting: false,
                now_ms: 10_010,
                expected_ms: 10_250,
            },
        ),
        (
            "a container that stopped waits for the window's end",
            Due {
                last: sent(running(), 10_000),
                current: node_status(vec![container(ContainerState::Exited, 0, None)]),
                events_waiting: false,
                now_ms: 10_010,
                expected_ms: 10_250,
            },
        ),
    ];
    for (name, case) in rows {
        check(name, case);
    }
}

#[test]
fn usage_figures_and_times_alone_are_not_a_change() {
    let mut busier = node_status(vec![container(ContainerState::Running, 0, Some(9 << 20))]);
    busier.sent_at_ms = 123;
    busier.sequence = 9;
    busier.usage.memory_used_bytes = 5;
    busier.dropped_events = 2;
    assert!(same_report(&running(), &busier));
    check(
        "only usage changed",
        Due {
            last: sent(running(), 0),
            current: busier,
            events_waiting: false,
            now_ms: 5_000,
            expected_ms: 60_000,
        },
    );
}

#[test]
fn state_restarts_generation_and_messages_are_changes() {
    type Edit = fn(&mut NodeStatus);
    let edits: [(&str, Edit); 5] = [
        ("state", |s| {
            s.workloads[0].containers[0].state = ContainerState::BackOff
        }),
        ("restarts", |s| s.workloads[0].containers[0].restarts = 1),
        ("generation", |s| s.observed_generation = 4),
        ("message", |s| {
            s.workloads[0].containers[0].message = Some("pulling".into())
        }),
        ("a workload more", |s| {
            let mut w = s.workloads[0].clone();
            w.name = "db".into();
            s.workloads.push(w);
        }),
    ];
    for (what, edit) in edits {
        let mut changed = running();
        edit(&mut changed);
        assert!(!same_report(&running(), &changed), "{what}");
    }
}

// ---------------------------------------------------------------------------------------
// What a status carries

fn event(sequence: u64, message: &str) -> WireEvent {
    WireEvent {
        sequence,
        at_ms: 1_700_000_000_000 + sequence,
        severity: Severity::Info,
        workload: Some("web".into()),
        container: Some("main".into()),
        reason: EventReason::Started,
        message: message.into(),
    }
}

#[test]
fn the_event_window_counts_events_trimmed_from_the_log_before_they_were_sent() {
    let events = [event(8, "a"), event(9, "b")];
    type Row<'a> = (&'a str, u64, &'a [WireEvent], u64, (u64, u64));
    let rows: [Row; 5] = [
        ("contiguous", 7, &events, 9, (0, 9)),
        ("events 6 and 7 were trimmed", 5, &events, 9, (2, 9)),
        ("nothing new", 9, &[], 9, (0, 9)),
        ("everything new was trimmed", 5, &[], 12, (7, 12)),
        ("a fresh database", 0, &[], 0, (0, 0)),
    ];
    for (name, after, events, newest, expected) in rows {
        assert_eq!(window(after, events, newest), expected, "{name}");
    }
}

fn decoded(packed: &[super::report::Packed]) -> Vec<NodeStatus> {
    packed
        .iter()
        .map(|p| {
            wire::decode::<NodeStatus>(&p.bytes, &Limits::default())
                .expect("every packed status decodes")
                .1
        })
        .collect()
}

#[test]
fn events_that_fit_travel_in_one_status_with_the_dropped_count() {
    let events: Vec<WireEvent> = (1..=3).map(|i| event(i, "started")).collect();
    let (packed, unsent) = pack(
        (shoal_model::wire::WIRE_VERSION, "gw-1"),
        &running(),
        events.clone(),
        4,
        10,
        &Limits::default(),
    );
    assert_eq!(unsent, 0);
    let statuses = decoded(&packed);
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0].sequence, 10);
    assert_eq!(statuses[0].events, events);
    assert_eq!(statuses[0].dropped_events, 4);
    assert_eq!(statuses[0].workloads, running().workloads);
}

#[test]
fn events_too_many_for_one_status_are_spread_over_consecutive_ones_in_order() {
    let limits = Limits {
        status: 4 * 1024,
        ..Limits::default()
    };
    let events: Vec<WireEvent> = (1..=100).map(|i| event(i, &"x".repeat(200))).collect();
    let (packed, unsent) = pack(
        (shoal_model::wire::WIRE_VERSION, "gw-1"),
        &running(),
        events.clone(),
        3,
        50,
        &limits,
    );
    assert_eq!(unsent, 0);
    assert!(packed.len() > 4, "{} statuses", packed.len());
    let statuses: Vec<NodeStatus> = packed
        .iter()
        .map(|p| {
            assert!(p.bytes.len() <= limits.status, "{} bytes", p.bytes.len());
            wire::decode::<NodeStatus>(&p.bytes, &limits)
                .expect("decodes")
                .1
        })
        .collect();
    let sequences: Vec<u64> = statuses.iter().map(|s| s.sequence).collect();
    let expected: Vec<u64> = (50..50 + statuses.len() as u64).collect();
    assert_eq!(sequences, expected);
    let carried: Vec<WireEvent> = statuses.iter().flat_map(|s| s.events.clone()).collect();
    assert_eq!(carried, events, "every event once, in order");
    assert_eq!(statuses[0].dropped_events, 3);
    assert!(statuses[1..].iter().all(|s| s.dropped_events == 0));
    assert!(statuses.iter().all(|s| s.workloads == running().workloads));
}

#[test]
fn an_event_too_big_for_any_status_is_shortened_not_lost() {
    let limits = Limits {
        status: 2 * 1024,
        ..Limits::default()
    };
    let events = vec![
        event(1, "small"),
        event(2, &"é".repeat(3000)),
        event(3, "after"),
    ];
    let (packed, unsent) = pack(
        (shoal_model::wire::WIRE_VERSION, "gw-1"),
        &running(),
        events,
        0,
        1,
        &limits,
    );
    assert_eq!(unsent, 0);
    let statuses: Vec<NodeStatus> = packed
        .iter()
        .map(|p| {
            wire::decode::<NodeStatus>(&p.bytes, &limits)
                .expect("decodes")
                .1
        })
        .collect();
    let carried: Vec<WireEvent> = statuses.iter().flat_map(|s| s.events.clone()).collect();
    assert_eq!(
        carried.iter().map(|e| e.sequence).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert!(carried[1]
        .message
        .ends_with("[shortened to fit the status size limit]"));
    assert!(carried[1].message.starts_with("éé"));
}

// ---------------------------------------------------------------------------------------
// Which desired states are taken

fn workloads(names: &[(&str, &str)]) -> Vec<DesiredWorkload> {
    names
        .iter()
        .map(|(name, command)| {
            let text = format!(
                "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  containers: [{{ name: main, image: localhost/busybox:test, command: [\"{command}\"] }}]\n"
            );
            let (mut w, diagnostics) = parse_manifest(Path::new("t.yaml"), &text);
            assert!(diagnostics.is_empty(), "{diagnostics:?}");
            DesiredWorkload {
                workload: w.remove(0).workload,
                revision: 1,
            }
        })
        .collect()
}

/// The hub key the rig's supervisor trusts.
fn hub_key() -> &'static SigningKey {
    static KEY: std::sync::OnceLock<SigningKey> = std::sync::OnceLock::new();
    KEY.get_or_init(|| SigningKey::generate().expect("key").0)
}

/// `state` as it arrives from the hub: signed with [`hub_key`].
fn signed(state: DesiredState) -> Event {
    signed_by(hub_key(), state)
}

fn signed_by(key: &SigningKey, state: DesiredState) -> Event {
    let (envelope, state) = envelope_of(key, state);
    Event::Desired(Box::new(envelope), state)
}

fn envelope_of(key: &SigningKey, state: DesiredState) -> (Envelope, DesiredState) {
    let mut envelope = Envelope::seal(&state.node_id, &state).expect("seal");
    key.sign(&mut envelope);
    (envelope, state)
}

fn desired(node: &str, generation: u64, names: &[(&str, &str)]) -> DesiredState {
    DesiredState {
        node_id: node.into(),
        generation,
        workloads: workloads(names),
        signing_keys: Vec::new(),
        agent: None,
    }
}

#[test]
fn only_a_signed_newer_generation_for_this_node_is_accepted() {
    let (other, _) = SigningKey::generate().expect("key");
    let trusted = [hub_key().public()];
    let rows: [(&str, &SigningKey, &str, u64, u64, &str); 9] = [
        ("newer", hub_key(), "gw-1", 5, 4, "accept"),
        ("first ever", hub_key(), "gw-1", 1, 0, "accept"),
        ("equal: a redelivery", hub_key(), "gw-1", 4, 4, "ignore"),
        ("lower: a replay", hub_key(), "gw-1", 3, 4, "reject"),
        ("zero before anything", hub_key(), "gw-1", 0, 0, "ignore"),
        ("another node's", hub_key(), "gw-2", 9, 4, "reject"),
        ("another node's, older", hub_key(), "gw-2", 1, 4, "reject"),
        (
            "signed by a key not trusted",
            &other,
            "gw-1",
            9,
            4,
            "reject",
        ),
        (
            "untrusted key, equal generation",
            &other,
            "gw-1",
            4,
            4,
            "reject",
        ),
    ];
    for (name, key, node, generation, accepted, expected) in rows {
        let (envelope, state) = envelope_of(key, desired(node, generation, &[]));
        let verdict = judge("gw-1", accepted, &trusted, &envelope, &state);
        let got = match verdict {
            Verdict::Accept => "accept",
            Verdict::Ignore(_) => "ignore",
            Verdict::Reject(_) => "reject",
        };
        assert_eq!(got, expected, "{name}: {verdict:?}");
    }
    let (envelope, state) = envelope_of(hub_key(), desired("gw-2", 1, &[]));
    let Verdict::Reject(why) = judge("gw-1", 0, &trusted, &envelope, &state) else {
        panic!("rejected");
    };
    assert!(why.contains("`gw-2`") && why.contains("`gw-1`"), "{why}");
    let (mut unsigned, state) = envelope_of(hub_key(), desired("gw-1", 5, &[]));
    unsigned.signature = None;
    let Verdict::Reject(why) = judge("gw-1", 4, &trusted, &unsigned, &state) else {
        panic!("rejected");
    };
    assert!(why.contains("not signed"), "{why}");
}

#[test]
fn the_changes_of_a_new_generation_are_listed_by_workload() {
    let before = workloads(&[("web", "a"), ("db", "a"), ("old", "a")]);
    let after = workloads(&[("web", "a"), ("db", "b"), ("new", "a")]);
    assert_eq!(
        changes(&before, &after),
        [
            "db: configured (revision 1)",
            "new: created (revision 1)",
            "old: deleted"
        ]
    );
}

// ---------------------------------------------------------------------------------------
// The supervisor, on a real database with a fake runtime

/// A runtime that runs nothing, remembers what it was asked, and records which hub
/// generation the database held when the first effect (making a pod) happened.
struct FakeContainers {
    data_dir: PathBuf,
    live: Mutex<Vec<LiveContainer>>,
    stored_when_first_pod_made: Mutex<Vec<Option<u64>>>,
    /// The write ends of the pipes handed out as exit fds, by workload and container: closing
    /// one makes its read end readable, as a shim's pidfd is once it exits.
    exit_pipes: Mutex<BTreeMap<(String, String), std::io::PipeWriter>>,
}

impl FakeContainers {
    /// The container exits with `code` on its own, as its shim would record it.
    fn exit_on_its_own(&self, workload: &str, container: &str, code: i32) {
        for live in self.live.lock().expect("lock").iter_mut() {
            if live.workload == workload && live.name == container && live.exit.is_none() {
                live.exit = Some(ExitInfo {
                    code: Some(code),
                    signal: None,
                    oom_killed: false,
                    at_ms: wall_ms(),
                });
            }
        }
        self.exit_pipes
            .lock()
            .expect("lock")
            .remove(&(workload.to_owned(), container.to_owned()));
    }
}

impl Containers for FakeContainers {
    fn ensure_pod(&self, _: &Workload, _: &str) -> anyhow::Result<()> {
        let store = Store::open(&self.data_dir)?;
        let stored = store.latest_desired(Source::Hub)?.map(|(g, _)| g);
        self.stored_when_first_pod_made
            .lock()
            .expect("lock")
            .push(stored);
        Ok(())
    }
    fn remove_pod(&self, _: &str) -> anyhow::Result<()> {
        Ok(())
    }
    fn pods(&self) -> anyhow::Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }
    fn start(&self, workload: &Workload, container: &Container) -> anyhow::Result<LiveContainer> {
        if container.command.first().is_some_and(|c| c == "crash") {
            anyhow::bail!("the fake cannot start `crash`");
        }
        let live = LiveContainer {
            workload: workload.name.clone(),
            name: container.name.clone(),
            pid: Some(4242),
            started_ms: wall_ms(),
            exit: None,
        };
        self.live.lock().expect("lock").push(live.clone());
        Ok(live)
    }
    fn stop(&self, workload: &str, container: &str, _: Duration) -> anyhow::Result<()> {
        for live in self.live.lock().expect("lock").iter_mut() {
            if live.workload == workload && live.name == container && live.exit.is_none() {
                live.exit = Some(ExitInfo {
                    code: None,
                    signal: Some(15),
                    oom_killed: false,
                    at_ms: wall_ms(),
                });
            }
        }
        Ok(())
    }
    fn remove(&self, workload: &str, container: &str) -> anyhow::Result<()> {
        self.live
            .lock()
            .expect("lock")
            .retain(|l| !(l.workload == workload && l.name == container));
        Ok(())
    }
    fn list(&self) -> anyhow::Result<Vec<LiveContainer>> {
        Ok(self.live.lock().expect("lock").clone())
    }
    fn stats(&self, _: &str, _: &str) -> Option<ContainerStats> {
        None
    }
    fn exec(&self, _: &str, _: &str, _: &[String], _: Duration) -> anyhow::Result<ExecOutput> {
        anyhow::bail!("no exec in the fake")
    }
    fn log_path(&self, _: &str, _: &str) -> Option<PathBuf> {
        None
    }
    fn netns(&self, _: &str) -> Option<PathBuf> {
        None
    }
    fn exit_fd(&self, workload: &str, container: &str) -> Option<OwnedFd> {
        let (reader, writer) = std::io::pipe().expect("pipe");
        self.exit_pipes
            .lock()
            .expect("lock")
            .insert((workload.to_owned(), container.to_owned()), writer);
        Some(reader.into())
    }
}

struct FakeImages;

impl Images for FakeImages {
    fn present(&self, _: &ImageRef) -> bool {
        true
    }
    fn pull(&self, _: &ImageRef) -> anyhow::Result<()> {
        Ok(())
    }
    fn list(&self, _: &[ImageRef]) -> anyhow::Result<Vec<ImageSummary>> {
        Ok(Vec::new())
    }
    fn import(&self, _: &Path) -> anyhow::Result<Vec<ImageSummary>> {
        anyhow::bail!("no import in the fake")
    }
    fn remove(&self, _: &str, _: &[ImageRef]) -> anyhow::Result<String> {
        Ok(String::new())
    }
    fn prune(&self, _: &[ImageRef]) -> anyhow::Result<String> {
        Ok(String::new())
    }
    fn prune_unused(&self, _: &[ImageRef]) -> anyhow::Result<String> {
        Ok(String::new())
    }
}

struct Rig {
    dir: tempfile::TempDir,
    containers: Arc<FakeContainers>,
    events: mpsc::Receiver<Event>,
    supervisor: Supervisor,
    outbox_ready: Arc<tokio::sync::Notify>,
}

/// A hub-mode supervisor on a fresh data dir (or `dir`'s, for a restart).
fn rig(dir: Option<tempfile::TempDir>) -> Rig {
    let dir = dir.unwrap_or_else(|| tempfile::tempdir().expect("tempdir"));
    let containers = Arc::new(FakeContainers {
        data_dir: dir.path().to_path_buf(),
        live: Mutex::new(Vec::new()),
        stored_when_first_pod_made: Mutex::new(Vec::new()),
        exit_pipes: Mutex::new(BTreeMap::new()),
    });
    let (tx, events) = mpsc::channel(64);
    let outbox_ready = Arc::new(tokio::sync::Notify::new());
    let mode = HubMode {
        broker: "mqtt://hub.test:1883".into(),
        status_topic: "shoal/v1/node/gw-1/status".into(),
        heartbeat: Duration::from_secs(60),
        outbox_ready: Arc::clone(&outbox_ready),
        signing_keys: vec![hub_key().public()],
        update: None,
        data_dir: Some(dir.path().to_path_buf()),
    };
    let supervisor = Supervisor::new(
        "gw-1".into(),
        NodeFacts::default(),
        Store::open(dir.path()).expect("open"),
        Arc::clone(&containers) as Arc<dyn Containers>,
        Arc::new(FakeImages),
        tx,
        Some(mode),
    )
    .expect("supervisor");
    Rig {
        dir,
        containers,
        events,
        supervisor,
        outbox_ready,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn recorded(supervisor: &Supervisor, reason: EventReason) -> Vec<WireEvent> {
    supervisor
        .store
        .recent_events(100)
        .expect("events")
        .into_iter()
        .filter(|e| e.reason == reason)
        .collect()
}

#[test]
fn a_desired_state_from_the_hub_is_stored_before_the_node_converges_to_it() {
    runtime().block_on(async {
        let mut rig = rig(None);
        rig.supervisor
            .handle(signed(desired("gw-1", 7, &[("web", "sleep")])));
        // Stored as soon as it is accepted, before any step has run.
        let stored = rig
            .supervisor
            .store
            .latest_desired(Source::Hub)
            .expect("read");
        assert_eq!(stored.map(|(g, _)| g), Some(7));
        assert_eq!(rig.supervisor.generation, 7);
        let accepted = recorded(&rig.supervisor, EventReason::DesiredStateAccepted);
        assert!(
            accepted[0]
                .message
                .contains("generation 7 from the hub: web: created"),
            "{accepted:?}"
        );
        // Converging: the pod is made by a worker, which finds generation 7 in the database.
        rig.supervisor.step();
        let outcome = tokio::time::timeout(Duration::from_secs(5), rig.events.recv())
            .await
            .expect("a worker reports")
            .expect("an event");
        assert!(
            matches!(outcome, Event::Done(Outcome::Pod { .. })),
            "{outcome:?}"
        );
        assert_eq!(
            *rig.containers
                .stored_when_first_pod_made
                .lock()
                .expect("lock"),
            [Some(7)]
        );
    });
}

#[test]
fn replays_forgeries_and_other_nodes_states_are_rejected_as_events_and_change_nothing() {
    runtime().block_on(async {
        let mut rig = rig(None);
        let current = desired("gw-1", 4, &[("web", "a")]);
        rig.supervisor.handle(signed(current.clone()));
        let events_before = rig.supervisor.store.recent_events(100).expect("events");
        // The broker redelivers the retained state at every reconnect: silently ignored.
        rig.supervisor
            .handle(signed(desired("gw-1", 4, &[("web", "b")])));
        assert_eq!(
            rig.supervisor.store.recent_events(100).expect("events"),
            events_before,
            "a redelivery is ignored without an event"
        );
        let (forger, _) = SigningKey::generate().expect("key");
        let mut tampered = {
            let Event::Desired(envelope, _) = signed(desired("gw-1", 6, &[("web", "a")])) else {
                unreachable!()
            };
            *envelope
        };
        let evil = desired("gw-1", 6, &[("evil", "a")]);
        tampered.payload = Envelope::seal("gw-1", &evil).expect("seal").payload;
        let attacks: Vec<(&str, Event, &str)> = vec![
            (
                "replay of an older generation",
                signed(desired("gw-1", 2, &[("other", "b")])),
                "old state replayed",
            ),
            (
                "another node's state",
                signed(desired("gw-2", 9, &[("x", "a")])),
                "this is `gw-1`",
            ),
            (
                "signed by a stranger",
                signed_by(&forger, desired("gw-1", 7, &[("evil", "a")])),
                "does not trust",
            ),
            (
                "payload swapped under a valid signature",
                Event::Desired(Box::new(tampered), evil),
                "does not verify",
            ),
        ];
        for (what, attack, expected) in attacks {
            rig.supervisor.handle(attack);
            assert_eq!(rig.supervisor.generation, 4, "{what}");
            assert_eq!(rig.supervisor.desired, current.workloads, "{what}");
            let rejected = recorded(&rig.supervisor, EventReason::DesiredStateRejected);
            let last = rejected.last().expect("an event");
            assert!(last.message.contains(expected), "{what}: {last:?}");
            assert_eq!(last.severity, Severity::Warning, "{what}");
            assert_eq!(
                rig.supervisor
                    .store
                    .latest_desired(Source::Hub)
                    .expect("read"),
                Some((4, current.workloads.clone())),
                "{what}: nothing stored changed"
            );
        }
        assert_eq!(
            recorded(&rig.supervisor, EventReason::DesiredStateRejected).len(),
            4
        );
    });
}

#[test]
fn a_key_rotation_is_taken_with_the_state_that_announces_it_and_survives_a_restart() {
    let (next, _) = SigningKey::generate().expect("key");
    let dir = runtime().block_on(async {
        let mut rig = rig(None);
        // The next key signs nothing yet.
        rig.supervisor
            .handle(signed_by(&next, desired("gw-1", 1, &[("web", "a")])));
        assert_eq!(rig.supervisor.generation, 0);
        // Announced under the current key...
        let mut announce = desired("gw-1", 2, &[("web", "a")]);
        announce.signing_keys = vec![hub_key().public(), next.public()];
        rig.supervisor.handle(signed(announce));
        assert_eq!(rig.supervisor.generation, 2);
        // ...then it signs; the state that retires the old key lists only the new one.
        let mut switch = desired("gw-1", 3, &[("web", "b")]);
        switch.signing_keys = vec![next.public()];
        rig.supervisor.handle(signed_by(&next, switch));
        assert_eq!(rig.supervisor.generation, 3);
        assert_eq!(
            rig.supervisor.store.trusted_keys().expect("keys"),
            vec![next.public()]
        );
        rig.dir
    });
    runtime().block_on(async {
        let mut rig = rig(Some(dir));
        // The old key is no longer trusted, after a restart too.
        rig.supervisor
            .handle(signed(desired("gw-1", 9, &[("evil", "a")])));
        assert_eq!(rig.supervisor.generation, 3);
        rig.supervisor
            .handle(signed_by(&next, desired("gw-1", 4, &[("web", "c")])));
        assert_eq!(rig.supervisor.generation, 4);
    });
}

#[test]
fn a_desired_state_that_cannot_be_stored_is_not_run() {
    runtime().block_on(async {
        let mut rig = rig(None);
        let raw = rusqlite::Connection::open(rig.supervisor.store.path()).expect("open raw");
        raw.execute_batch("DROP TABLE desired_state")
            .expect("break the table");
        rig.supervisor
            .handle(signed(desired("gw-1", 3, &[("web", "a")])));
        assert_eq!(rig.supervisor.generation, 0);
        assert!(rig.supervisor.desired.is_empty());
        let rejected = recorded(&rig.supervisor, EventReason::DesiredStateRejected);
        assert!(
            rejected[0]
                .message
                .contains("cannot store desired generation 3"),
            "{rejected:?}"
        );
    });
}

#[test]
fn after_a_restart_the_hubs_desired_state_comes_from_the_database() {
    let dir = runtime().block_on(async {
        let mut rig = rig(None);
        rig.supervisor
            .handle(signed(desired("gw-1", 5, &[("web", "a")])));
        rig.dir
    });
    runtime().block_on(async {
        let rig = rig(Some(dir));
        assert_eq!(rig.supervisor.generation, 5);
        assert_eq!(rig.supervisor.desired, workloads(&[("web", "a")]));
    });
}

#[test]
fn the_wire_version_the_hub_writes_is_remembered_so_a_restart_reports_in_it_at_once() {
    let hub_wire = |rig: &Rig| rig.supervisor.hub.as_ref().map(|h| h.hub_wire);
    let dir = runtime().block_on(async {
        let mut rig = rig(None);
        assert_eq!(hub_wire(&rig), Some(shoal_model::wire::OLDEST_WIRE_VERSION));
        rig.supervisor
            .handle(signed(desired("gw-1", 5, &[("web", "a")])));
        assert_eq!(hub_wire(&rig), Some(shoal_model::wire::WIRE_VERSION));
        rig.dir
    });
    let file = dir.path().join(super::report::HUB_WIRE_FILE);
    assert_eq!(
        std::fs::read_to_string(&file).expect("hub-wire"),
        format!("{}\n", shoal_model::wire::WIRE_VERSION)
    );
    let dir = runtime().block_on(async {
        let rig = rig(Some(dir));
        assert_eq!(hub_wire(&rig), Some(shoal_model::wire::WIRE_VERSION));
        rig.dir
    });
    // A file this build cannot use is a missing one: the oldest version, as before.
    std::fs::write(&file, "99\n").expect("write");
    runtime().block_on(async {
        let rig = rig(Some(dir));
        assert_eq!(hub_wire(&rig), Some(shoal_model::wire::OLDEST_WIRE_VERSION));
    });
    use super::report::remembered_wire;
    assert_eq!(remembered_wire("2\n"), Some(2));
    assert_eq!(remembered_wire(" 3 "), Some(3));
    for bad in ["", "x", "1", "4", "300", "-3"] {
        assert_eq!(remembered_wire(bad), None, "{bad:?}");
    }
}

#[test]
fn in_hub_mode_local_apply_and_delete_are_refused() {
    runtime().block_on(async {
        let mut rig = rig(None);
        for body in [
            RpcRequestBody::Apply {
                workloads: workloads(&[("web", "a")]),
            },
            RpcRequestBody::DeleteWorkload {
                workload: "web".into(),
            },
        ] {
            let (reply, mut answers) = mpsc::channel(4);
            rig.supervisor.handle(Event::Api(Incoming {
                request: RpcRequest { id: 1, body },
                reply,
            }));
            let Some(RpcResponseBody::Error { message }) = answers.recv().await else {
                panic!("refused with an error");
            };
            assert!(
                message.contains("managed by the hub at mqtt://hub.test:1883")
                    && message.contains("`shoal apply` on the hub"),
                "{message}"
            );
        }
        assert!(rig.supervisor.desired.is_empty());
    });
}

fn outbox_statuses(store: &Store) -> Vec<NodeStatus> {
    store
        .outbox_after(0, 1000)
        .expect("outbox")
        .iter()
        .map(|row| {
            wire::decode::<NodeStatus>(&row.payload, &Limits::default())
                .expect("decodes")
                .1
        })
        .collect()
}

#[test]
fn statuses_carry_every_event_once_in_order_and_their_sequence_survives_a_restart() {
    let dir = runtime().block_on(async {
        let mut rig = rig(None);
        rig.supervisor.report();
        assert!(
            tokio::time::timeout(Duration::from_secs(1), rig.outbox_ready.notified())
                .await
                .is_ok(),
            "the transport is told"
        );
        let first = outbox_statuses(&rig.supervisor.store);
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].sequence, 1);
        assert_eq!(first[0].events[0].reason, EventReason::AgentStarted);

        // Nothing changed: calling again writes nothing (no write per tick).
        for _ in 0..5 {
            rig.supervisor.report();
        }
        assert_eq!(rig.supervisor.store.outbox_len().expect("len"), 1);

        for i in 0..3 {
            rig.supervisor.note(
                Severity::Info,
                Some("web"),
                Some("main"),
                EventReason::Started,
                format!("event {i}"),
            );
        }
        let wait = rig.supervisor.report();
        assert!(wait <= Duration::from_secs(1), "coalesced: {wait:?}");
        assert_eq!(
            rig.supervisor.store.outbox_len().expect("len"),
            1,
            "not yet"
        );
        tokio::time::sleep(wait + Duration::from_millis(20)).await;
        rig.supervisor.report();
        let statuses = outbox_statuses(&rig.supervisor.store);
        assert_eq!(statuses.len(), 2);
        assert_eq!(statuses[1].sequence, 2);
        let messages: Vec<&str> = statuses[1]
            .events
            .iter()
            .map(|e| e.message.as_str())
            .collect();
        assert_eq!(messages, ["event 0", "event 1", "event 2"]);
        assert_eq!(
            statuses[1].events[0].sequence,
            statuses[0].events.last().expect("one").sequence + 1
        );
        rig.dir
    });
    runtime().block_on(async {
        let mut rig = rig(Some(dir));
        rig.supervisor.report();
        let statuses = outbox_statuses(&rig.supervisor.store);
        assert_eq!(statuses.len(), 3);
        assert_eq!(statuses[2].sequence, 3, "the sequence continues");
        let all: Vec<u64> = statuses
            .iter()
            .flat_map(|s| s.events.iter().map(|e| e.sequence))
            .collect();
        let expected: Vec<u64> = (all[0]..all[0] + all.len() as u64).collect();
        assert_eq!(
            all, expected,
            "no event repeated or skipped across the restart"
        );
        assert_eq!(
            statuses[2].events.last().map(|e| e.reason),
            Some(EventReason::AgentStarted)
        );
    });
}

#[test]
fn a_container_that_became_ready_is_in_the_outbox_at_once_and_a_burst_after_it_costs_one_write() {
    runtime().block_on(async {
        let mut rig = rig(None);
        rig.supervisor.report();
        rig.supervisor.handle(signed(web_at(1, 1, "sleep")));
        settle(&mut rig).await;
        assert_eq!(rig.supervisor.store.outbox_len().expect("len"), 1);
        // As if the status before had just been sent (settling took longer than a window):
        // the one that says `web` runs is not held back for the window.
        let now = rig.supervisor.now();
        if let Some(last) = rig.supervisor.hub.as_mut().and_then(|h| h.last.as_mut()) {
            last.at_ms = now;
        }
        let wait = rig.supervisor.report();
        let statuses = outbox_statuses(&rig.supervisor.store);
        assert_eq!(statuses.len(), 2, "written at once, not after {wait:?}");
        let web = &statuses[1].workloads[0];
        assert_eq!(
            (web.name.as_str(), web.containers[0].state),
            ("web", ContainerState::Running)
        );

        // A burst of changes right after it is held for the window, then written once.
        for i in 0..5 {
            rig.supervisor.note(
                Severity::Warning,
                Some("web"),
                Some("main"),
                EventReason::Unhealthy,
                format!("burst {i}"),
            );
            let wait = rig.supervisor.report();
            assert!(wait > Duration::ZERO && wait <= COALESCE, "held: {wait:?}");
        }
        assert_eq!(rig.supervisor.store.outbox_len().expect("len"), 2);
        tokio::time::sleep(COALESCE + Duration::from_millis(20)).await;
        rig.supervisor.report();
        let statuses = outbox_statuses(&rig.supervisor.store);
        assert_eq!(statuses.len(), 3, "the burst cost one write");
        let burst = statuses[2]
            .events
            .iter()
            .filter(|e| e.message.starts_with("burst"))
            .count();
        assert_eq!(burst, 5);
    });
}

// ---------------------------------------------------------------------------------------
// A revision on trial

/// Generation `generation` for gw-1 with one workload `web` at `revision`, running `command`.
fn web_at(generation: u64, revision: u64, command: &str) -> DesiredState {
    let mut state = desired("gw-1", generation, &[("web", command)]);
    state.workloads[0].revision = revision;
    state
}

/// Steps the supervisor and hands it what its workers report, until they are quiet.
async fn settle(rig: &mut Rig) {
    for _ in 0..50 {
        rig.supervisor.step();
        match tokio::time::timeout(Duration::from_millis(300), rig.events.recv()).await {
            Ok(Some(event)) => rig.supervisor.handle(event),
            _ => return,
        }
    }
}

#[test]
fn an_exit_wakes_the_loop_through_its_exit_fd_not_at_the_next_look() {
    runtime().block_on(async {
        let mut rig = rig(None);
        rig.supervisor.handle(signed(web_at(1, 1, "sleep")));
        settle(&mut rig).await;
        let key = ("web".to_owned(), "main".to_owned());
        assert!(
            rig.containers
                .exit_pipes
                .lock()
                .expect("lock")
                .contains_key(&key),
            "the running container's exit fd is watched"
        );
        assert!(matches!(
            rig.supervisor.tracked[&key].run,
            Run::Running { .. }
        ));

        rig.containers.exit_on_its_own("web", "main", 3);
        // The loop is woken by the watcher, not by a tick: no step runs until the event comes.
        let event = tokio::time::timeout(Duration::from_secs(5), rig.events.recv())
            .await
            .expect("an event when the exit fd becomes readable")
            .expect("the channel is open");
        let Event::Exited {
            workload,
            container,
        } = &event
        else {
            panic!("not an exit: {event:?}");
        };
        assert_eq!((workload.as_str(), container.as_str()), ("web", "main"));
        rig.supervisor.handle(event);
        rig.supervisor.step();
        let t = &rig.supervisor.tracked[&key];
        assert_eq!(
            t.record.last_exit.map(|e| e.code),
            Some(Some(3)),
            "the exit is recorded with its code"
        );
    });
}

#[test]
fn a_revision_that_fails_on_the_node_is_rolled_back_with_no_hub_and_not_tried_again() {
    let dir = runtime().block_on(async {
        let mut rig = rig(None);
        rig.supervisor.handle(signed(web_at(1, 1, "sleep")));
        settle(&mut rig).await;
        assert!(rig.supervisor.trials.is_empty(), "a new workload is not tried");
        // Revision 2 cannot start: the node goes back to revision 1 by itself.
        rig.supervisor.handle(signed(web_at(2, 2, "crash")));
        assert_eq!(rig.supervisor.trials["web"].revision, 2);
        settle(&mut rig).await;
        assert_eq!(rig.supervisor.desired, web_at(1, 1, "sleep").workloads);
        let status = rig.supervisor.node_status(false);
        assert_eq!(status.workloads[0].revision, 1);
        assert_eq!(
            status.workloads[0].rolled_back,
            Some(wire::RolledBack {
                revision: 2,
                failure: shoal_model::rollout::Failure::Crashed
            })
        );
        let events = recorded(&rig.supervisor, EventReason::RolledBack);
        assert_eq!(events.len(), 1, "{events:?}");
        assert!(
            events[0].message.starts_with("rolled back from revision 2 to 1: revision 2 failed here (a container failed to start"),
            "{}",
            events[0].message
        );
        // The hub's next generation still names revision 2 (another change): not tried again.
        let mut more = web_at(3, 2, "crash");
        more.workloads.extend(workloads(&[("db", "sleep")]));
        rig.supervisor.handle(signed(more));
        settle(&mut rig).await;
        assert_eq!(rig.supervisor.desired[0], web_at(1, 1, "sleep").workloads[0]);
        assert_eq!(recorded(&rig.supervisor, EventReason::RolledBack).len(), 1);
        rig.dir
    });
    // After a restart (a power cut), still on revision 1, from the database alone.
    let dir = runtime().block_on(async {
        let mut rig = rig(Some(dir));
        assert_eq!(
            rig.supervisor.desired[0],
            web_at(1, 1, "sleep").workloads[0]
        );
        settle(&mut rig).await;
        assert_eq!(
            rig.supervisor.node_status(false).workloads[0]
                .rolled_back
                .map(|r| r.revision),
            Some(2)
        );
        // The hub's rollback (revision 4, revision 1's spec) ends the trial: nothing to do.
        rig.supervisor.handle(signed(web_at(4, 4, "sleep")));
        assert!(rig.supervisor.trials.is_empty());
        assert_eq!(rig.supervisor.desired, web_at(4, 4, "sleep").workloads);
        assert_eq!(
            rig.supervisor.node_status(false).workloads[0].rolled_back,
            None
        );
        rig.dir
    });
    let store = Store::open(dir.path()).expect("open");
    assert!(store.trials().expect("read").is_empty());
}

#[test]
fn a_revision_that_runs_proves_itself_and_its_trial_ends() {
    runtime().block_on(async {
        let mut rig = rig(None);
        rig.supervisor.handle(signed(web_at(1, 1, "sleep")));
        settle(&mut rig).await;
        // healthyFor 0s: proven as soon as it runs.
        let mut next = web_at(2, 2, "sleep 2");
        next.workloads[0].workload.spec.rollout.healthy_for = Duration::ZERO;
        let newer = ImageRef::parse("localhost/busybox:next").expect("a reference");
        next.workloads[0].workload.spec.containers[0].image = newer.clone();
        rig.supervisor.handle(signed(next.clone()));
        assert_eq!(rig.supervisor.store.trials().expect("read").len(), 1);
        // While on trial, the image a rollback would go back to is in use: never pruned.
        let in_use = rig.supervisor.images_in_use();
        let previous = ImageRef::parse("localhost/busybox:test").expect("a reference");
        assert!(
            in_use.contains(&newer) && in_use.contains(&previous),
            "{in_use:?}"
        );
        settle(&mut rig).await;
        assert!(
            rig.supervisor.trials.is_empty(),
            "{:?}",
            rig.supervisor.trials
        );
        assert!(rig.supervisor.store.trials().expect("read").is_empty());
        assert_eq!(rig.supervisor.desired, next.workloads);
        assert!(recorded(&rig.supervisor, EventReason::RolledBack).is_empty());
    });
}
