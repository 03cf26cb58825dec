//! What each node should run, from the placement: pure, so the controller only decides what
//! to publish and the rules can be tested without a broker.
//!
//! Every registered node gets a desired state, an empty one included, so a node that lost its
//! last workload learns it. A node's generation grows only when what it should run changes;
//! the same placement and specs give the same digest, so a hub restart publishes nothing new.

use std::collections::BTreeMap;

use shoal_model::release::AgentTarget;
use shoal_model::wire::identity;
use shoal_model::wire::signing::PublicKey;
use shoal_model::wire::{DesiredState, DesiredWorkload};

use crate::scheduler::Placement;
use crate::store::{Assignments, Published, Revisions, StoredWorkload};

/// The workloads each node should run, in name order; every node in `nodes` has an entry.
/// Each at its current revision (see [`per_node_given`] for rollouts).
pub fn per_node(
    workloads: &[StoredWorkload],
    placement: &Placement,
    nodes: &[String],
) -> BTreeMap<String, Vec<DesiredWorkload>> {
    per_node_given(
        workloads,
        placement,
        nodes,
        &Assignments::new(),
        &Revisions::new(),
    )
}

/// As [`per_node`], each workload at the revision the node was given (`assigned`, whose
/// older specs are in `revisions`), or at its current one when it was given none.
pub fn per_node_given(
    workloads: &[StoredWorkload],
    placement: &Placement,
    nodes: &[String],
    assigned: &Assignments,
    revisions: &Revisions,
) -> BTreeMap<String, Vec<DesiredWorkload>> {
    let mut out: BTreeMap<String, Vec<DesiredWorkload>> =
        nodes.iter().map(|n| (n.clone(), Vec::new())).collect();
    let mut ordered: Vec<&StoredWorkload> = workloads.iter().collect();
    ordered.sort_by(|a, b| a.workload.name.cmp(&b.workload.name));
    for stored in ordered {
        let Some(placed) = placement.get(&stored.workload.name) else {
            continue;
        };
        for node in placed {
            let Some(list) = out.get_mut(node) else {
                continue;
            };
            let name = &stored.workload.name;
            let given = assigned
                .get(name)
                .and_then(|nodes| nodes.get(node))
                .map(|a| a.revision)
                .filter(|r| *r != stored.revision)
                .and_then(|r| Some((r, revisions.get(&(name.clone(), r))?)));
            list.push(match given {
                Some((revision, workload)) => DesiredWorkload {
                    workload: workload.clone(),
                    revision,
                },
                None => DesiredWorkload {
                    workload: stored.workload.clone(),
                    revision: stored.revision,
                },
            });
        }
    }
    out
}

/// A stable hash of a node's workload list and the signing keys announced with it: SHA-256
/// (lower-case hex) of their canonical identity, `shoal_model::wire::identity::desired`.
///
/// Digest v1, frozen: it is what release 0.1.0 stored in `node_desired.digest`, so an
/// upgraded hub finds every node's digest unchanged and publishes nothing new. A field added
/// to a workload later takes part only when it is not at its default (the rule in
/// `identity`), so adding an optional field gives no node a new generation; setting it
/// gives a new generation to exactly the nodes that run that workload.
pub fn digest(
    workloads: &[DesiredWorkload],
    signing_keys: &[PublicKey],
    agent: Option<&AgentTarget>,
) -> String {
    shoal_model::hex::sha256_hex(&identity::desired(workloads, signing_keys, agent))
}

/// The next desired state for `node`, or `None` when neither what it should run nor the keys
/// it should trust have changed since `previous` was published.
pub fn next(
    node: &str,
    workloads: Vec<DesiredWorkload>,
    signing_keys: &[PublicKey],
    agent: Option<AgentTarget>,
    previous: Option<&Published>,
) -> Option<(DesiredState, String)> {
    let digest = digest(&workloads, signing_keys, agent.as_ref());
    if previous.is_some_and(|p| p.digest == digest) {
        return None;
    }
    Some(after(
        node,
        workloads,
        signing_keys,
        agent,
        previous,
        digest,
    ))
}

/// The desired state after `previous` (generation 1 without one), with its `digest`.
pub fn after(
    node: &str,
    workloads: Vec<DesiredWorkload>,
    signing_keys: &[PublicKey],
    agent: Option<AgentTarget>,
    previous: Option<&Published>,
    digest: String,
) -> (DesiredState, String) {
    let generation = previous.map_or(1, |p| p.generation.saturating_add(1));
    (
        DesiredState {
            node_id: node.to_string(),
            generation,
            workloads,
            signing_keys: signing_keys.to_vec(),
            agent,
        },
        digest,
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use shoal_model::manifest::parse_manifest;

    use super::*;

    fn stored(name: &str, revision: u64) -> StoredWorkload {
        let yaml = format!(
            "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  containers:\n    - {{ name: main, image: busybox }}\n"
        );
        let (mut loaded, _) = parse_manifest(Path::new("t.yaml"), &yaml);
        StoredWorkload {
            workload: loaded.remove(0).workload,
            revision,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    fn placement(rows: &[(&str, &[&str])]) -> Placement {
        rows.iter()
            .map(|(w, nodes)| {
                (
                    w.to_string(),
                    nodes.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>(),
                )
            })
            .collect()
    }

    fn published(generation: u64, workloads: &[DesiredWorkload]) -> Published {
        Published {
            generation,
            digest: digest(workloads, &[], None),
            signing_keys: Vec::new(),
            wire_version: shoal_model::wire::WIRE_VERSION,
        }
    }

    #[test]
    fn every_node_gets_a_list_even_an_empty_one() {
        let lists = per_node(
            &[stored("web", 1), stored("db", 2)],
            &placement(&[("web", &["a", "b"]), ("db", &["b"])]),
            &["a".into(), "b".into(), "c".into()],
        );
        let names =
            |n: &str| -> Vec<String> { lists[n].iter().map(|d| d.workload.name.clone()).collect() };
        assert_eq!(names("a"), ["web"]);
        assert_eq!(names("b"), ["db", "web"]);
        assert!(names("c").is_empty());
    }

    #[test]
    fn placement_on_an_unknown_node_is_ignored() {
        let lists = per_node(
            &[stored("web", 1)],
            &placement(&[("web", &["gone"])]),
            &["a".into()],
        );
        assert_eq!(lists.len(), 1);
        assert!(lists["a"].is_empty());
    }

    #[test]
    fn the_first_desired_state_has_generation_one() {
        let (state, _) = next("a", Vec::new(), &[], None, None).expect("first");
        assert_eq!(state.generation, 1);
    }

    #[test]
    fn an_unchanged_list_publishes_nothing() {
        let lists = per_node(
            &[stored("web", 1)],
            &placement(&[("web", &["a"])]),
            &["a".into()],
        );
        let previous = published(4, &lists["a"]);
        assert_eq!(
            next("a", lists["a"].clone(), &[], None, Some(&previous)),
            None
        );
    }

    #[test]
    fn a_new_revision_raises_the_generation() {
        let before = per_node(
            &[stored("web", 1)],
            &placement(&[("web", &["a"])]),
            &["a".into()],
        );
        let previous = published(4, &before["a"]);
        let after = per_node(
            &[stored("web", 2)],
            &placement(&[("web", &["a"])]),
            &["a".into()],
        );
        let (state, _) =
            next("a", after["a"].clone(), &[], None, Some(&previous)).expect("changed");
        assert_eq!((state.generation, state.workloads[0].revision), (5, 2));
    }

    #[test]
    fn announcing_another_key_raises_the_generation_and_lists_the_keys() {
        let lists = per_node(
            &[stored("web", 1)],
            &placement(&[("web", &["a"])]),
            &["a".into()],
        );
        let previous = published(4, &lists["a"]);
        let key = PublicKey([7; 32]);
        let (state, _) =
            next("a", lists["a"].clone(), &[key], None, Some(&previous)).expect("changed");
        assert_eq!((state.generation, state.signing_keys), (5, vec![key]));
    }

    /// A manifest that sets nearly every field a desired state carries.
    const DIGEST_MANIFEST: &str = r#"
apiVersion: shoal/v1
kind: Workload
metadata:
  name: camera
  labels: { app: camera, tier: edge }
spec:
  placement:
    mode: replicas
    replicas: 2
    nodeSelector: { role: camera }
    constraints: ["arch in (arm64, armv7)", "memory >= 256Mi", "label.serial exists"]
    spread: site
    notWith: [batch]
    rescheduleAfter: 90s
  rollout: { maxUnavailable: 1, canary: 1, healthyFor: 45s, autoRollback: false }
  restartPolicy: on-failure
  network: isolated
  stopGracePeriod: 20s
  volumes:
    - name: frames
    - name: config
      hostPath: /etc/camera
  containers:
    - name: server
      image: registry.example:5000/camera/server:2.1
      command: ["/bin/server"]
      args: ["--listen", ":8080"]
      env: { LOG_LEVEL: info }
      workingDir: /srv
      user: "1000:1000"
      resources: { memory: 96Mi, cpu: 500m, pids: 64 }
      devices: ["/dev/video0"]
      mounts: [{ volume: frames, path: /frames }, { volume: config, path: /etc/server, readOnly: true }]
      readOnlyRootfs: true
      capabilities: { add: [NET_ADMIN], drop: [MKNOD] }
      health:
        http: { port: 8080, path: /healthz }
        startPeriod: 15s
    - name: debug
      image: busybox@sha256:abababababababababababababababababababababababababababababababab
      privileged: true
      health:
        tcp: { port: 7000 }
"#;

    /// The digest release 0.1.0 stored for a node: a change here gives every node a new
    /// generation after the hub upgrades, so this value never changes (see the digest rule
    /// beside `digest`).
    #[test]
    fn the_digest_is_the_one_release_0_1_0_computed() {
        let (mut loaded, diagnostics) = parse_manifest(Path::new("camera.yaml"), DIGEST_MANIFEST);
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let workloads = vec![
            DesiredWorkload {
                workload: stored("web", 3).workload,
                revision: 3,
            },
            DesiredWorkload {
                workload: loaded.remove(0).workload,
                revision: 12,
            },
        ];
        let keys = [PublicKey([0xa5; 32]), PublicKey([0x5a; 32])];
        assert_eq!(
            (digest(&workloads, &keys, None), digest(&[], &[], None)),
            (
                "e0cd6d9240cf31d2bd69ca59c6ba994db878752fb8bedd890e1bef8eb43d0356".to_string(),
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7".to_string()
            ),
            "the desired-state digest changed: every node would get a new generation after \
             the hub upgrades. Do not edit these values: keep digest v1 as it is and add new \
             fields as the rule beside desired::digest says"
        );
    }
}
