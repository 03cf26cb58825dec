//! How long one controller pass takes on a large fleet: 1,000 nodes (a third of them
//! gateways, ten sites), 100 workloads (10 `every` on the gateways, 90 with 5 replicas spread
//! over sites), every node online and reporting a status. A real store in a temporary
//! directory; desired states go to a publisher that only counts them. Run it through
//! `bench/control`, which builds it in release mode.
//!
//! Prints the first pass (every node gets generation 1), a settled pass (nothing changed:
//! what every status and tick costs), and a pass after one `every` workload got a new
//! revision, each the median of several; and, for a settled pass, its parts: the snapshot
//! (one read transaction) and the decision (pure).

use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_hub::control::{self, Fleet};
use shoal_hub::server::controller::{self, Publish};
use shoal_hub::store::{KeyState, Store};
use shoal_model::clock::wall_ms;
use shoal_model::manifest::{parse_manifest, Workload};
use shoal_model::node::{Capacity, NodeFacts};
use shoal_model::topic::NodeId;
use shoal_model::wire::signing::SigningKey;
use shoal_model::wire::{
    ContainerState, ContainerStatus, Health, Limits, NodeStatus, NodeUsage, WorkloadStatus,
};

const NODES: usize = 1000;
const WORKLOADS: usize = 100;
const RUNS: usize = 20;

#[derive(Default)]
struct Counter(AtomicUsize);

impl Publish for Counter {
    fn desired(
        &self,
        _node: &NodeId,
        _payload: Vec<u8>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send {
        self.0.fetch_add(1, Ordering::Relaxed);
        std::future::ready(Ok(()))
    }
}

/// The fleet's workloads; `revision` changes the first (an `every` workload).
fn manifests(revision: u32) -> anyhow::Result<Vec<Workload>> {
    let mut text = String::new();
    for i in 0..WORKLOADS {
        let placement = if i < 10 {
            "{ mode: every, nodeSelector: { role: gateway } }"
        } else {
            "{ replicas: 5, spread: site }"
        };
        let env = if i == 0 { revision } else { 1 };
        text.push_str(&format!(
            "---\napiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: w{i:03} }}\nspec:\n  placement: {placement}\n  containers:\n    - name: main\n      image: registry.example/app{i}:1.0\n      env: {{ REV: \"{env}\" }}\n      resources: {{ memory: 16Mi, cpu: 10m }}\n"
        ));
    }
    let (loaded, diagnostics) = parse_manifest(Path::new("bench.yaml"), &text);
    anyhow::ensure!(diagnostics.is_empty(), "{diagnostics:?}");
    Ok(loaded.into_iter().map(|l| l.workload).collect())
}

fn facts(i: usize) -> NodeFacts {
    let role = if i.is_multiple_of(3) {
        "gateway"
    } else {
        "sensor"
    };
    NodeFacts {
        arch: "arm64".into(),
        os: "linux".into(),
        kernel: "6.1.0".into(),
        cgroup_version: 2,
        capacity: Capacity {
            memory_bytes: 2 << 30,
            cpu_millis: 4000,
            pids: 4096,
        },
        agent_version: "0.1.0".into(),
        labels: BTreeMap::from([
            ("role".to_string(), role.to_string()),
            ("site".to_string(), format!("s{}", i % 10)),
        ]),
        wire_versions: Vec::new(),
    }
}

/// Every node reports what is placed on it, running.
fn report(store: &Store, sequence: u64) -> anyhow::Result<()> {
    let placement = store.placement()?;
    let now = wall_ms();
    for node in store.nodes()? {
        let workloads = placement
            .iter()
            .filter(|(_, nodes)| nodes.contains(&node.name))
            .map(|(w, _)| WorkloadStatus {
                name: w.clone(),
                revision: 1,
                containers: vec![ContainerStatus {
                    name: "main".into(),
                    state: ContainerState::Running,
                    health: Health::Healthy,
                    restarts: 0,
                    last_exit: None,
                    oom_kills: 0,
                    started_at_ms: Some(now),
                    pid: Some(1000),
                    memory_bytes: Some(10 << 20),
                    cpu_usage_ns: Some(1_000_000),
                    message: None,
                }],
                rolled_back: None,
            })
            .collect();
        let generation = store
            .node_desired()?
            .get(&node.name)
            .map_or(0, |d| d.generation);
        let status = NodeStatus {
            node_id: node.name.clone(),
            observed_generation: generation,
            sequence,
            sent_at_ms: now,
            workloads,
            usage: NodeUsage::default(),
            events: Vec::new(),
            dropped_events: 0,
            agent_update: None,
        };
        store.record_status(&node.name, &status, now)?;
    }
    Ok(())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn median(mut runs: Vec<Duration>) -> Duration {
    runs.sort();
    runs[runs.len() / 2]
}

/// Times `f` `RUNS` times, after `setup` each time.
fn time<T>(mut setup: impl FnMut(), mut f: impl FnMut() -> T) -> Duration {
    let mut runs = Vec::new();
    for _ in 0..RUNS {
        setup();
        let started = Instant::now();
        std::hint::black_box(f());
        runs.push(started.elapsed());
    }
    median(runs)
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let limits = Limits::default();
    let counter = Counter::default();
    let pass = |store: &Arc<Store>| {
        runtime
            .block_on(controller::pass(store, &limits, None, &counter, None))
            .expect("a pass")
    };
    // A fresh fleet with no desired state yet, for each first pass.
    let fresh = || -> anyhow::Result<(tempfile::TempDir, Arc<Store>)> {
        let dir = tempfile::tempdir()?;
        let store = Arc::new(Store::open(dir.path())?);
        let now = wall_ms();
        for i in 0..NODES {
            let name = format!("n{i:04}");
            store.add_node(&name, "x", &BTreeMap::new(), now)?;
            store.record_presence(&name, true, &facts(i), now)?;
        }
        store.apply(&manifests(1)?, now, false)?;
        let (key, pkcs8) = SigningKey::generate()?;
        store.add_signing_key(key.public(), &pkcs8, KeyState::Active, now)?;
        Ok((dir, store))
    };

    let mut firsts = Vec::new();
    for _ in 0..5 {
        let (_dir, store) = fresh()?;
        let started = Instant::now();
        pass(&store);
        firsts.push(started.elapsed());
    }
    let (_dir, store) = fresh()?;
    pass(&store);
    report(&store, 1)?;
    let placements: usize = store.placement()?.values().map(|n| n.len()).sum();
    let before = counter.0.load(Ordering::Relaxed);
    let settled = time(|| {}, || pass(&store));
    assert_eq!(
        counter.0.load(Ordering::Relaxed),
        before,
        "a settled pass sends nothing"
    );
    let snapshot = time(|| {}, || store.snapshot().expect("snapshot"));
    let fleet = Fleet::new(store.snapshot()?, None);
    let decide = time(|| {}, || control::decide(&fleet, wall_ms()));
    let mut revision = 1;
    let update = time(
        || {
            revision += 1;
            store
                .apply(&manifests(revision).expect("manifests"), wall_ms(), false)
                .expect("apply");
        },
        || pass(&store),
    );
    println!("{NODES} nodes, {WORKLOADS} workloads, {placements} placements; median of {RUNS} runs (first pass: of 5)");
    println!(
        "first pass (every node gets generation 1): {}",
        ms(median(firsts))
    );
    println!("settled pass (nothing changed):            {}", ms(settled));
    println!(
        "  of which the snapshot (one transaction): {}",
        ms(snapshot)
    );
    println!("  of which decide (pure):                  {}", ms(decide));
    println!("pass after one every-workload update:      {}", ms(update));
    Ok(())
}
