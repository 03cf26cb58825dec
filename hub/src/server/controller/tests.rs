//! The shell against a real store: what a pass stores and publishes, through a recording
//! publisher; and how wake-ups pace passes, on tokio's paused clock.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use shoal_model::manifest::parse_manifest;
use shoal_model::wire::signing::{verify, PublicKey, SigningKey};
use shoal_model::wire::{DesiredState, NodeStatus, NodeUsage};

use super::*;
use crate::control::Rotation;
use crate::store::KeyState;

/// Records what a pass publishes.
#[derive(Debug, Default)]
struct Recorder {
    sent: Mutex<Vec<(String, Vec<u8>)>>,
}

impl Recorder {
    /// Everything published since the last call.
    fn take(&self) -> Vec<(String, Vec<u8>)> {
        std::mem::take(&mut *self.sent.lock().expect("lock"))
    }
}

impl Publish for Recorder {
    fn desired(
        &self,
        node: &NodeId,
        payload: Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.sent
            .lock()
            .expect("lock")
            .push((node.as_str().to_string(), payload));
        std::future::ready(Ok(()))
    }
}

struct Bench {
    _dir: tempfile::TempDir,
    store: Arc<Store>,
    limits: Limits,
    recorder: Recorder,
    key: PublicKey,
}

/// A store with nodes `a` and `b`, an `every` workload and an active key.
fn bench() -> Bench {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path()).expect("open"));
    for node in ["a", "b"] {
        store
            .add_node(node, "hash", &BTreeMap::new(), 1)
            .expect("add node");
    }
    let (mut loaded, _) = parse_manifest(
        Path::new("t.yaml"),
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: { name: reader }\nspec:\n  placement: { mode: every }\n  containers: [{ name: c, image: busybox }]\n",
    );
    store
        .apply(&[loaded.remove(0).workload], 1, false)
        .expect("apply");
    let (key, pkcs8) = SigningKey::generate().expect("key");
    store
        .add_signing_key(key.public(), &pkcs8, KeyState::Active, 1)
        .expect("store key");
    Bench {
        _dir: dir,
        store,
        limits: Limits::default(),
        recorder: Recorder::default(),
        key: key.public(),
    }
}

impl Bench {
    async fn pass(&self, retained: Option<BTreeMap<String, u64>>) -> Plan {
        pass(&self.store, &self.limits, None, &self.recorder, retained)
            .await
            .expect("pass")
    }

    /// Every node reports the newest generation published to it.
    fn report(&self) {
        for (node, desired) in self.store.node_desired().expect("desired") {
            let status = NodeStatus {
                node_id: node.clone(),
                observed_generation: desired.generation,
                sequence: desired.generation,
                sent_at_ms: 0,
                workloads: Vec::new(),
                usage: NodeUsage::default(),
                events: Vec::new(),
                dropped_events: 0,
                agent_update: None,
            };
            self.store.record_status(&node, &status, 2).expect("status");
        }
    }
}

/// Opens a published payload: its state and the key that signed it, of `trusted`.
fn open(payload: &[u8], trusted: &[PublicKey]) -> (DesiredState, String) {
    let (envelope, state) =
        shoal_model::wire::decode::<DesiredState>(payload, &Limits::default()).expect("decode");
    let signer = verify(&envelope, trusted).expect("signed by a trusted key");
    (state, signer.to_string())
}

#[tokio::test]
async fn a_pass_stores_then_publishes_one_signed_state_per_node_and_the_next_pass_nothing() {
    let bench = bench();
    let plan = bench.pass(None).await;
    assert_eq!(plan.desired.len(), 2);
    let sent = bench.recorder.take();
    let stored = bench.store.node_desired().expect("desired");
    assert_eq!(
        sent.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["a", "b"]
    );
    for (node, payload) in &sent {
        assert_eq!(&stored[node].payload, payload, "what {node} got is stored");
        let (state, signer) = open(payload, &[bench.key]);
        assert_eq!(
            (state.node_id.as_str(), state.generation),
            (node.as_str(), 1)
        );
        assert_eq!(signer, bench.key.id().to_string());
        assert_eq!(state.workloads.len(), 1);
    }
    assert_eq!(bench.store.placement().expect("placement").len(), 1);

    let plan = bench.pass(None).await;
    assert!(plan.is_settled(), "{plan:#?}");
    assert!(
        bench.recorder.take().is_empty(),
        "a settled fleet sends nothing"
    );
}

#[tokio::test]
async fn after_a_restart_only_what_the_broker_lost_is_published_again_byte_for_byte() {
    let bench = bench();
    bench.pass(None).await;
    let first = bench.recorder.take();
    let plan = bench
        .pass(Some(BTreeMap::from([("a".to_string(), 1)])))
        .await;
    assert_eq!(plan.republish.len(), 1);
    let again = bench.recorder.take();
    assert_eq!(again.len(), 1);
    assert_eq!(
        again[0], first[1],
        "b's stored state, same generation and bytes"
    );
    assert_eq!(
        bench.store.node_desired().expect("desired")["b"].generation,
        1
    );
}

#[tokio::test]
async fn a_rotation_ends_in_the_first_pass_after_every_node_reported_the_next_key() {
    let bench = bench();
    bench.pass(None).await;
    bench.recorder.take();
    bench.report();
    let (next, pkcs8) = SigningKey::generate().expect("key");
    bench
        .store
        .add_signing_key(next.public(), &pkcs8, KeyState::Next, 3)
        .expect("next key");
    let plan = bench.pass(None).await;
    assert!(matches!(plan.keys.rotation, Rotation::Waiting { .. }));
    for (_, payload) in bench.recorder.take() {
        let (state, signer) = open(&payload, &[bench.key]);
        assert_eq!(state.signing_keys, [bench.key, next.public()]);
        assert_eq!(signer, bench.key.id().to_string(), "the active key signs");
    }
    bench.report();
    let plan = bench.pass(None).await;
    assert!(plan.promote().is_some(), "{:?}", plan.keys.rotation);
    let keys = bench.store.signing_keys().expect("keys");
    let state_of = |public: PublicKey| keys.iter().find(|k| k.public == public).map(|k| k.state);
    assert_eq!(state_of(next.public()), Some(KeyState::Active));
    assert_eq!(state_of(bench.key), Some(KeyState::Retired));
    let sent = bench.recorder.take();
    assert_eq!(sent.len(), 2);
    for (_, payload) in sent {
        let (state, signer) = open(&payload, &[next.public()]);
        assert_eq!(state.signing_keys, [next.public()]);
        assert_eq!(signer, next.public().id().to_string(), "the new key signs");
    }
    assert!(bench.pass(None).await.is_settled());
}

// ---- pacing ----

/// Runs passes of `pass_ms` each for `for_ms` of paused time while `wake` is driven by
/// `drive`; returns the times (ms from the start) at which passes started.
async fn passes<F>(pass_ms: u64, for_ms: u64, drive: F) -> Vec<u64>
where
    F: FnOnce(Arc<Wake>) -> tokio::task::JoinHandle<()>,
{
    let wake = Arc::new(Wake::default());
    let start = Instant::now();
    let driver = drive(Arc::clone(&wake));
    let mut started_at = Vec::new();
    loop {
        let started = Instant::now();
        let at = u64::try_from((started - start).as_millis()).expect("ms");
        if at > for_ms {
            break;
        }
        started_at.push(at);
        tokio::time::sleep(Duration::from_millis(pass_ms)).await;
        pace(&wake, started, None).await;
    }
    driver.abort();
    started_at
}

#[tokio::test(start_paused = true)]
async fn a_herd_of_a_thousand_statuses_costs_a_few_passes() {
    let started = passes(20, 1_500, |wake| {
        tokio::spawn(async move {
            for _ in 0..1_000 {
                wake.reported();
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    })
    .await;
    // One pass at the start, then one per spacing while statuses arrive (about 1 s), and one
    // after the last.
    assert!(
        (4..=7).contains(&started.len()),
        "passes started at {started:?} ms"
    );
    for pair in started.windows(2) {
        assert!(pair[1] - pair[0] >= 250, "passes started at {started:?} ms");
    }
}

#[tokio::test(start_paused = true)]
async fn a_steady_stream_of_reports_takes_at_most_a_tenth_of_the_time_with_slow_passes() {
    let started = passes(100, 3_500, |wake| {
        tokio::spawn(async move {
            loop {
                wake.reported();
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        })
    })
    .await;
    assert_eq!(
        started,
        [0, 1_000, 2_000, 3_000],
        "passes started at {started:?} ms"
    );
}

#[tokio::test(start_paused = true)]
async fn a_report_runs_a_pass_within_the_spacing_not_the_period() {
    let started = passes(20, 400, |wake| {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            wake.reported();
        })
    })
    .await;
    assert_eq!(started, [0, 250], "passes started at {started:?} ms");
}

#[tokio::test(start_paused = true)]
async fn a_change_runs_a_pass_at_once_even_while_reports_wait() {
    let started = passes(20, 400, |wake| {
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(30)).await;
            wake.reported();
            tokio::time::sleep(Duration::from_millis(20)).await;
            wake.changed();
        })
    })
    .await;
    assert_eq!(started, [0, 50], "passes started at {started:?} ms");
}

#[tokio::test(start_paused = true)]
async fn with_no_wake_up_a_pass_runs_every_period() {
    let started = passes(20, 11_000, |_| tokio::spawn(async {})).await;
    assert_eq!(
        started,
        [0, 5_020, 10_040],
        "passes started at {started:?} ms"
    );
}
