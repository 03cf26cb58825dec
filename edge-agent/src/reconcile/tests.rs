use std::path::Path;

use shoal_model::manifest::parse_manifest;

use super::*;

const IMAGE: &str = "localhost/busybox:test";

/// A workload from YAML, so the tests read like manifests.
fn workload(name: &str, extra_spec: &str) -> DesiredWorkload {
    let text = format!(
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n{extra_spec}  containers:\n    - {{ name: main, image: {IMAGE} }}\n    - {{ name: side, image: {IMAGE} }}\n"
    );
    let (mut workloads, diagnostics) = parse_manifest(Path::new("test.yaml"), &text);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    DesiredWorkload {
        workload: workloads.remove(0).workload,
        revision: 1,
    }
}

fn container(d: &DesiredWorkload, name: &str, run: Run) -> ObservedContainer {
    let spec = d
        .workload
        .spec
        .containers
        .iter()
        .find(|c| c.name == name)
        .expect("container in workload");
    ObservedContainer {
        workload: d.workload.name.clone(),
        name: name.into(),
        spec_hash: spec_hash(&d.workload, spec),
        run,
        restarts: 0,
        crash_streak: 0,
        health: Health::Healthy,
        busy: false,
        retry_at_ms: None,
        stop_grace: Duration::from_secs(10),
    }
}

fn observed(d: &DesiredWorkload, containers: Vec<ObservedContainer>) -> Observed {
    Observed {
        containers,
        pods: [(d.workload.name.clone(), pod_hash(&d.workload))].into(),
        images: [(IMAGE.to_string(), ImageState::Present)].into(),
    }
}

fn start(w: &str, c: &str) -> Action {
    Action::Start {
        workload: w.into(),
        container: c.into(),
    }
}

fn remove(w: &str, c: &str) -> Action {
    Action::Remove {
        workload: w.into(),
        container: c.into(),
    }
}

fn stop(w: &str, c: &str, reason: StopReason) -> Action {
    Action::Stop {
        workload: w.into(),
        container: c.into(),
        grace: Duration::from_secs(10),
        reason,
    }
}

const RUNNING: Run = Run::Running { since_ms: 0 };

fn exited(exit: Exit, at: u64) -> Run {
    Run::Exited {
        started_ms: at.saturating_sub(100),
        exited_ms: at,
        exit,
    }
}

#[test]
fn a_new_workload_pulls_its_image_first() {
    let d = workload("app", "");
    let plan = plan(&[d], &Observed::default(), 0);
    assert_eq!(
        plan.actions,
        vec![Action::PullImage {
            image: IMAGE.into()
        }],
        "one pull for two containers"
    );
}

#[test]
fn with_the_image_present_the_pod_is_set_up_then_every_container_started() {
    let d = workload("app", "");
    let seen = Observed {
        images: [(IMAGE.to_string(), ImageState::Present)].into(),
        ..Observed::default()
    };
    let plan = plan(&[d], &seen, 0);
    assert_eq!(
        plan.actions,
        vec![
            Action::EnsurePod {
                workload: "app".into()
            },
            start("app", "main"),
            start("app", "side")
        ]
    );
}

#[test]
fn a_converged_node_plans_nothing() {
    let d = workload("app", "");
    let seen = observed(
        &d,
        vec![
            container(&d, "main", RUNNING),
            container(&d, "side", RUNNING),
        ],
    );
    assert_eq!(plan(&[d], &seen, 5_000), Plan::default());
}

#[test]
fn restart_policies_decide_what_happens_after_an_exit() {
    // (policy, exit, restarted)
    let cases = [
        ("always", Exit::Code(0), true),
        ("always", Exit::Code(1), true),
        ("on-failure", Exit::Code(0), false),
        ("on-failure", Exit::Code(2), true),
        ("on-failure", Exit::Signal(9), true),
        ("on-failure", Exit::OomKilled, true),
        ("never", Exit::Code(1), false),
        ("never", Exit::OomKilled, false),
    ];
    for (policy, exit, restarted) in cases {
        let d = workload("app", &format!("  restartPolicy: {policy}\n"));
        let mut main = container(&d, "main", exited(exit, 1_000));
        main.crash_streak = 1;
        let seen = observed(&d, vec![main, container(&d, "side", RUNNING)]);
        let plan = plan(&[d], &seen, 10_000);
        let expected = if restarted {
            vec![remove("app", "main"), start("app", "main")]
        } else {
            vec![]
        };
        assert_eq!(plan.actions, expected, "{policy} after {exit:?}");
    }
}

#[test]
fn a_crash_loop_backs_off_exponentially_up_to_the_cap() {
    // (crash streak, ms since exit, restarted now, wake at)
    let cases = [
        (1, 999, false, Some(1_000)),
        (1, 1_000, true, None),
        (2, 1_500, false, Some(2_000)),
        (4, 7_999, false, Some(8_000)),
        (4, 8_000, true, None),
        (30, 299_999, false, Some(300_000)),
        (30, 300_000, true, None),
    ];
    for (streak, since_exit, restarted, wake) in cases {
        let d = workload("app", "");
        let mut main = container(&d, "main", exited(Exit::Code(1), 0));
        main.crash_streak = streak;
        let seen = observed(&d, vec![main, container(&d, "side", RUNNING)]);
        let plan = plan(&[d], &seen, since_exit);
        assert_eq!(
            !plan.actions.is_empty(),
            restarted,
            "streak {streak} at {since_exit}"
        );
        assert_eq!(plan.wake_at_ms, wake, "streak {streak} at {since_exit}");
    }
}

#[test]
fn a_long_run_resets_the_crash_streak() {
    assert_eq!(next_crash_streak(5, 0, 1_000), 6);
    assert_eq!(next_crash_streak(5, 0, 600_000), 1);
    assert_eq!(next_crash_streak(u32::MAX, 0, 1), u32::MAX);
    assert_eq!(backoff(BACKOFF_BASE, 0), Duration::from_secs(1));
    assert_eq!(backoff(BACKOFF_BASE, 3), Duration::from_secs(8));
    assert_eq!(backoff(BACKOFF_BASE, 40), BACKOFF_CAP);
}

#[test]
fn an_unhealthy_container_is_stopped_and_then_restarted_by_its_policy() {
    let d = workload("app", "");
    let mut main = container(&d, "main", RUNNING);
    main.health = Health::Unhealthy;
    let seen = observed(&d, vec![main, container(&d, "side", RUNNING)]);
    assert_eq!(
        plan(&[d], &seen, 0).actions,
        vec![stop("app", "main", StopReason::Unhealthy)]
    );
}

#[test]
fn a_changed_spec_replaces_only_the_changed_container_without_backoff() {
    let old = workload("app", "");
    let mut new = old.clone();
    new.workload.spec.containers[0]
        .env
        .insert("LEVEL".into(), "debug".into());
    let seen = observed(
        &old,
        vec![
            container(&old, "main", RUNNING),
            container(&old, "side", RUNNING),
        ],
    );
    assert_eq!(
        plan(std::slice::from_ref(&new), &seen, 0).actions,
        vec![stop("app", "main", StopReason::Outdated)]
    );

    let mut stopped = container(&old, "main", exited(Exit::Signal(15), 1_000));
    stopped.crash_streak = 9;
    let seen = observed(&old, vec![stopped, container(&old, "side", RUNNING)]);
    assert_eq!(
        plan(&[new], &seen, 1_001).actions,
        vec![remove("app", "main"), start("app", "main")]
    );
}

#[test]
fn a_removed_workload_is_stopped_then_removed_then_its_pod_deleted() {
    let d = workload("gone", "");
    let running = observed(
        &d,
        vec![
            container(&d, "main", RUNNING),
            container(&d, "side", exited(Exit::Code(0), 5)),
        ],
    );
    assert_eq!(
        plan(&[], &running, 10).actions,
        vec![
            stop("gone", "main", StopReason::Unwanted),
            remove("gone", "side")
        ]
    );
    let stopping = observed(
        &d,
        vec![container(&d, "main", Run::Stopping { since_ms: 10 })],
    );
    assert_eq!(
        plan(&[], &stopping, 20).actions,
        vec![],
        "nothing while it stops"
    );
    let empty = observed(&d, vec![]);
    assert_eq!(
        plan(&[], &empty, 30).actions,
        vec![Action::RemovePod {
            workload: "gone".into()
        }]
    );
}

#[test]
fn changing_the_network_rebuilds_the_pod_after_its_containers_stop() {
    let old = workload("app", "");
    let new = workload("app", "  network: isolated\n");
    let seen = observed(
        &old,
        vec![
            container(&old, "main", RUNNING),
            container(&old, "side", RUNNING),
        ],
    );
    assert_eq!(
        plan(std::slice::from_ref(&new), &seen, 0).actions,
        vec![
            stop("app", "main", StopReason::Outdated),
            stop("app", "side", StopReason::Outdated)
        ]
    );
    let gone = observed(&old, vec![]);
    assert_eq!(
        plan(std::slice::from_ref(&new), &gone, 1).actions,
        vec![Action::RemovePod {
            workload: "app".into()
        }]
    );
    let rebuilt = Observed {
        pods: BTreeMap::new(),
        ..gone
    };
    assert_eq!(
        plan(&[new], &rebuilt, 2).actions,
        vec![
            Action::EnsurePod {
                workload: "app".into()
            },
            start("app", "main"),
            start("app", "side")
        ]
    );
}

#[test]
fn a_failed_pull_is_retried_with_backoff() {
    let d = workload("app", "");
    let failed = |attempts| Observed {
        images: [(
            IMAGE.to_string(),
            ImageState::Failed {
                at_ms: 1_000,
                attempts,
                reason: "no image for linux/amd64".into(),
            },
        )]
        .into(),
        ..Observed::default()
    };
    let early = plan(std::slice::from_ref(&d), &failed(1), 5_999);
    assert_eq!((early.actions, early.wake_at_ms), (vec![], Some(6_000)));
    let due = plan(std::slice::from_ref(&d), &failed(1), 6_000);
    assert_eq!(
        due.actions,
        vec![Action::PullImage {
            image: IMAGE.into()
        }]
    );
    let third = plan(std::slice::from_ref(&d), &failed(3), 20_999);
    assert_eq!(third.wake_at_ms, Some(21_000));
    let pulling = Observed {
        images: [(IMAGE.to_string(), ImageState::Pulling)].into(),
        ..Observed::default()
    };
    assert_eq!(plan(&[d], &pulling, 0), Plan::default());
}

#[test]
fn containers_being_started_or_stopped_are_left_alone() {
    let d = workload("app", "");
    let seen = observed(
        &d,
        vec![
            container(&d, "main", Run::Starting { since_ms: 0 }),
            container(&d, "side", Run::Stopping { since_ms: 0 }),
        ],
    );
    assert_eq!(plan(&[d], &seen, 1).actions, vec![]);
}

#[test]
fn hashes_are_stable_and_sensitive_to_what_matters() {
    let a = workload("app", "");
    let b = workload("app", "");
    let c0 = &a.workload.spec.containers[0];
    assert_eq!(
        spec_hash(&a.workload, c0),
        spec_hash(&b.workload, &b.workload.spec.containers[0])
    );
    assert_ne!(
        spec_hash(&a.workload, c0),
        spec_hash(&a.workload, &a.workload.spec.containers[1])
    );
    let isolated = workload("app", "  network: isolated\n");
    assert_ne!(pod_hash(&a.workload), pod_hash(&isolated.workload));
    let rolled = workload("app", "  rollout: { canary: 2 }\n");
    assert_eq!(
        spec_hash(&a.workload, c0),
        spec_hash(&rolled.workload, &rolled.workload.spec.containers[0]),
        "rollout settings do not restart containers"
    );
}

#[test]
fn a_container_a_worker_is_on_gets_no_second_action_whatever_its_state() {
    // The delete loop: a busy container of a deleted workload used to look "starting" and
    // got one more stop on every event, each on a worker of its own.
    let d = workload("gone", "");
    for run in [
        RUNNING,
        Run::Starting { since_ms: 0 },
        Run::Stopping { since_ms: 0 },
        exited(Exit::Code(0), 5),
    ] {
        let mut main = container(&d, "main", run);
        main.busy = true;
        let seen = observed(&d, vec![main.clone()]);
        assert_eq!(plan(&[], &seen, 10), Plan::default(), "deleted, {run:?}");
        let seen = observed(&d, vec![main, container(&d, "side", RUNNING)]);
        assert_eq!(
            plan(std::slice::from_ref(&d), &seen, 10),
            Plan::default(),
            "desired, {run:?}"
        );
    }
}

#[test]
fn a_failed_stop_or_removal_is_retried_when_its_backoff_is_due_not_before() {
    let d = workload("gone", "");
    let mut main = container(&d, "main", exited(Exit::Code(0), 5));
    main.retry_at_ms = Some(2_000);
    let seen = observed(&d, vec![main]);
    let early = plan(&[], &seen, 1_999);
    assert_eq!((early.actions, early.wake_at_ms), (vec![], Some(2_000)));
    assert_eq!(
        plan(&[], &seen, 2_000).actions,
        vec![remove("gone", "main")]
    );

    let mut running = container(&d, "main", RUNNING);
    running.retry_at_ms = Some(2_000);
    let seen = observed(&d, vec![running]);
    assert_eq!(plan(&[], &seen, 1_000).actions, vec![], "not yet");
    assert_eq!(
        plan(&[], &seen, 2_500).actions,
        vec![stop("gone", "main", StopReason::Unwanted)]
    );
}

#[test]
fn a_deleted_workloads_containers_stop_with_the_grace_period_they_were_started_with() {
    let d = workload("gone", "  stopGracePeriod: 3s\n");
    let mut main = container(&d, "main", RUNNING);
    main.stop_grace = Duration::from_secs(3);
    let seen = observed(&d, vec![main.clone()]);
    assert_eq!(
        plan(&[], &seen, 0).actions,
        vec![Action::Stop {
            workload: "gone".into(),
            container: "main".into(),
            grace: Duration::from_secs(3),
            reason: StopReason::Unwanted,
        }]
    );
    // Still desired, the workload's newest spec says how long.
    let mut longer = d.clone();
    longer.workload.spec.stop_grace_period = Duration::from_secs(20);
    longer.workload.spec.containers.retain(|c| c.name == "side");
    let seen = observed(&d, vec![main, container(&d, "side", RUNNING)]);
    assert_eq!(
        plan(&[longer], &seen, 0).actions,
        vec![Action::Stop {
            workload: "gone".into(),
            container: "main".into(),
            grace: Duration::from_secs(20),
            reason: StopReason::Unwanted,
        }]
    );
}

/// A manifest that sets nearly every field that shapes a container or a pod.
const IDENTITY_MANIFEST: &str = r#"
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
      args: ["--listen", ":8080", "--frames", "/frames"]
      env: { LOG_LEVEL: info, SAMPLE_HZ: 10 }
      workingDir: /srv
      user: "1000:1000"
      resources: { memory: 96Mi, cpu: 500m, pids: 64 }
      devices: ["/dev/video0"]
      mounts: [{ volume: frames, path: /frames }, { volume: config, path: /etc/server, readOnly: true }]
      readOnlyRootfs: true
      capabilities: { add: [NET_ADMIN], drop: [MKNOD] }
      health:
        http: { port: 8080, path: /healthz }
        interval: 10s
        timeout: 2s
        retries: 3
        startPeriod: 15s
    - name: uploader
      image: registry.example:5000/camera/uploader@sha256:abababababababababababababababababababababababababababababababab
      env: { UPLOAD_URL: "https://ingest.example/frames" }
      mounts: [{ volume: frames, path: /frames, readOnly: true }]
      health:
        exec: ["/bin/uploader", "--check"]
    - name: debug
      image: busybox
      user: "0"
      privileged: true
      health:
        tcp: { port: 7000 }
"#;

/// The identity of every container that release 0.1.0 started: a change here restarts every
/// container on every node that upgrades, so these values never change (see the identity rule
/// beside `spec_hash`).
#[test]
fn container_and_pod_identities_are_the_ones_release_0_1_0_computed() {
    let (mut loaded, diagnostics) = parse_manifest(Path::new("camera.yaml"), IDENTITY_MANIFEST);
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    let w = loaded.remove(0).workload;
    let hashes: Vec<(String, String)> = w
        .spec
        .containers
        .iter()
        .map(|c| (c.name.clone(), spec_hash(&w, c)))
        .collect();
    let expected: Vec<(String, String)> = [
        ("server", "3c67306f760c4280"),
        ("uploader", "2d31e55dbe0e4d8c"),
        ("debug", "78a27662a3d29463"),
    ]
    .iter()
    .map(|(n, h)| (n.to_string(), h.to_string()))
    .collect();
    assert_eq!(
        hashes, expected,
        "container identity changed: every container on every upgraded node would restart. \
         Do not edit these values: keep identity v1 as it is and add new fields as the rule \
         beside reconcile::spec_hash says"
    );
    assert_eq!(
        pod_hash(&w),
        "9802d06b3d426603",
        "pod identity changed: every isolated workload's namespaces would be rebuilt. \
         Do not edit this value: keep identity v1 as it is and add new fields as the rule \
         beside reconcile::pod_hash says"
    );
}
