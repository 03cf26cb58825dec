//! Properties of the wire protocol: every message survives the round trip, and no input,
//! random or a damaged valid message, makes decoding panic.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use proptest::sample::Index;

use shoal_model::manifest::image::ImageRef;
use shoal_model::manifest::{
    Capabilities, Container, HealthCheck, NetworkMode, Placement, PlacementMode, Probe,
    RescheduleAfter, Resources, RestartPolicy, Rollout, Volume, VolumeSource, Workload,
    WorkloadSpec,
};
use shoal_model::node::{Capacity, NodeFacts};
use shoal_model::wire::{
    decode, encode, encode_in, ContainerState, ContainerStatus, DesiredState, DesiredWorkload,
    Envelope, Event, EventReason, ExitInfo, Health, ImageSummary, Limits, Message, MessageKind,
    NodeStatus, NodeUsage, Presence, RolledBack, RpcRequest, RpcRequestBody, RpcResponse,
    RpcResponseBody, Severity, WireError, WorkloadStatus, SUPPORTED_WIRE_VERSIONS, WIRE_VERSION,
};

// ---- strategies -------------------------------------------------------------------------

/// A DNS label, short enough to keep cases small.
fn name() -> impl Strategy<Value = String> {
    "[a-z]([a-z0-9-]{0,10}[a-z0-9])?"
}

fn names(max: usize) -> impl Strategy<Value = Vec<String>> {
    prop::collection::btree_set(name(), 0..=max).prop_map(|set| set.into_iter().collect())
}

fn text() -> impl Strategy<Value = String> {
    ".{0,24}"
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

fn probe() -> impl Strategy<Value = Option<HealthCheck>> {
    let probe = prop_oneof![
        prop::collection::vec(text(), 1..3).prop_map(Probe::Exec),
        (any::<u16>(), "/[a-z]{0,8}").prop_map(|(port, path)| Probe::Http { port, path }),
        any::<u16>().prop_map(|port| Probe::Tcp { port }),
    ];
    prop::option::of(
        (probe, 1..60u64, any::<u32>()).prop_map(|(probe, secs, retries)| HealthCheck {
            probe,
            interval: Duration::from_secs(secs),
            timeout: Duration::from_millis(secs * 100),
            retries,
            start_period: Duration::ZERO,
        }),
    )
}

fn container(name: String) -> impl Strategy<Value = Container> {
    (
        "[a-z]{1,8}(/[a-z]{1,8})?",
        prop::option::of("[a-z0-9.]{1,8}"),
        prop::collection::vec(text(), 0..3),
        prop::collection::btree_map("[A-Z_]{1,8}", text(), 0..3),
        prop::option::of(any::<u64>()),
        prop::option::of(any::<u32>()),
        probe(),
        any::<bool>(),
    )
        .prop_map(
            move |(repository, tag, command, env, memory, cpu_millis, health, privileged)| {
                Container {
                    name: name.clone(),
                    image: ImageRef {
                        registry: None,
                        repository,
                        tag,
                        digest: None,
                    },
                    command,
                    args: Vec::new(),
                    env,
                    working_dir: None,
                    user: None,
                    resources: Resources {
                        memory,
                        cpu_millis,
                        pids: None,
                    },
                    devices: Vec::new(),
                    mounts: Vec::new(),
                    health,
                    read_only_rootfs: !privileged,
                    capabilities: Capabilities::default(),
                    privileged,
                }
            },
        )
}

fn workload(name: String) -> impl Strategy<Value = Workload> {
    let containers = prop::collection::btree_set(self::name(), 1..3)
        .prop_flat_map(|names| names.into_iter().map(container).collect::<Vec<_>>());
    (
        containers,
        names(2),
        prop::option::of(1..10u32),
        prop_oneof![
            Just(RestartPolicy::Always),
            Just(RestartPolicy::OnFailure),
            Just(RestartPolicy::Never)
        ],
        any::<bool>(),
    )
        .prop_map(
            move |(containers, volumes, replicas, restart_policy, host)| Workload {
                name: name.clone(),
                labels: BTreeMap::from([("app".to_string(), name.clone())]),
                spec: WorkloadSpec {
                    placement: Placement {
                        mode: replicas.map_or(PlacementMode::Every, PlacementMode::Replicas),
                        node_selector: BTreeMap::new(),
                        constraints: Vec::new(),
                        spread: None,
                        with: Vec::new(),
                        not_with: Vec::new(),
                        reschedule_after: RescheduleAfter::After(Duration::from_secs(600)),
                    },
                    rollout: Rollout::default(),
                    restart_policy,
                    network: if host {
                        NetworkMode::Host
                    } else {
                        NetworkMode::Isolated
                    },
                    stop_grace_period: Duration::from_secs(10),
                    volumes: volumes
                        .into_iter()
                        .map(|name| Volume {
                            name,
                            source: VolumeSource::Named,
                        })
                        .collect(),
                    containers,
                },
            },
        )
}

fn desired_state() -> impl Strategy<Value = DesiredState> {
    let workloads = names(3).prop_flat_map(|names| {
        names
            .into_iter()
            .map(|name| {
                (workload(name), any::<u64>())
                    .prop_map(|(workload, revision)| DesiredWorkload { workload, revision })
            })
            .collect::<Vec<_>>()
    });
    (name(), any::<u64>(), workloads).prop_map(|(node_id, generation, workloads)| DesiredState {
        node_id,
        generation,
        workloads,
        signing_keys: Vec::new(),
        agent: None,
    })
}

fn container_state() -> impl Strategy<Value = ContainerState> {
    prop::sample::select(vec![
        ContainerState::Pending,
        ContainerState::Pulling,
        ContainerState::Creating,
        ContainerState::Running,
        ContainerState::Exited,
        ContainerState::Failed,
        ContainerState::BackOff,
        ContainerState::Stopped,
    ])
}

fn health() -> impl Strategy<Value = Health> {
    prop::sample::select(vec![
        Health::Unknown,
        Health::Starting,
        Health::Healthy,
        Health::Unhealthy,
    ])
}

fn exit_info() -> impl Strategy<Value = ExitInfo> {
    (
        prop::option::of(any::<i32>()),
        prop::option::of(any::<i32>()),
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(code, signal, oom_killed, at_ms)| ExitInfo {
            code,
            signal,
            oom_killed,
            at_ms,
        })
}

fn container_status() -> impl Strategy<Value = ContainerStatus> {
    (
        (
            name(),
            container_state(),
            health(),
            any::<u32>(),
            prop::option::of(exit_info()),
            any::<u32>(),
        ),
        (
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u32>()),
            prop::option::of(any::<u64>()),
            prop::option::of(any::<u64>()),
            prop::option::of(text()),
        ),
    )
        .prop_map(
            |(
                (name, state, health, restarts, last_exit, oom_kills),
                (started_at_ms, pid, memory_bytes, cpu_usage_ns, message),
            )| {
                ContainerStatus {
                    name,
                    state,
                    health,
                    restarts,
                    last_exit,
                    oom_kills,
                    started_at_ms,
                    pid,
                    memory_bytes,
                    cpu_usage_ns,
                    message,
                }
            },
        )
}

/// A reason an agent reports (not one only the hub records), that version 2 can say too
/// (`with_v3`: or only version 3).
fn event_reason(with_v3: bool) -> impl Strategy<Value = EventReason> {
    let reported: Vec<EventReason> = EventReason::ALL
        .into_iter()
        .filter(|r| !r.is_recorded_by_hub())
        .filter(|r| {
            with_v3 || !matches!(r, EventReason::RolledBack | EventReason::AgentUpdateFailed)
        })
        .collect();
    prop::sample::select(reported)
}

fn event_in(with_v3: bool) -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        any::<u64>(),
        prop::sample::select(vec![Severity::Info, Severity::Warning, Severity::Error]),
        prop::option::of(name()),
        prop::option::of(name()),
        event_reason(with_v3),
        text(),
    )
        .prop_map(
            |(sequence, at_ms, severity, workload, container, reason, message)| Event {
                sequence,
                at_ms,
                severity,
                workload,
                container,
                reason,
                message,
            },
        )
}

/// A status version 2 can carry whole.
fn node_status() -> impl Strategy<Value = NodeStatus> {
    node_status_in(false)
}

/// `with_v3`: with what only version 3 says too (workloads rolled back on the node, the
/// `rolled-back` event).
fn node_status_in(with_v3: bool) -> impl Strategy<Value = NodeStatus> {
    let failure = prop::sample::select(shoal_model::rollout::Failure::ALL.to_vec());
    let rolled_back = if with_v3 {
        prop::option::of((any::<u64>(), failure))
            .prop_map(|r| r.map(|(revision, failure)| RolledBack { revision, failure }))
            .boxed()
    } else {
        Just(None).boxed()
    };
    let workload = (
        name(),
        any::<u64>(),
        prop::collection::vec(container_status(), 0..3),
        rolled_back,
    )
        .prop_map(|(name, revision, containers, rolled_back)| WorkloadStatus {
            name,
            revision,
            containers,
            rolled_back,
        });
    let usage = (
        any::<u64>(),
        any::<u64>(),
        any::<u32>(),
        any::<u64>(),
        any::<u64>(),
    )
        .prop_map(|u| NodeUsage {
            memory_used_bytes: u.0,
            memory_total_bytes: u.1,
            cpu_millis_used: u.2,
            disk_used_bytes: u.3,
            disk_budget_bytes: u.4,
        });
    (
        (name(), any::<u64>(), any::<u64>(), any::<u64>()),
        prop::collection::vec(workload, 0..3),
        usage,
        prop::collection::vec(event_in(with_v3), 0..4),
        any::<u64>(),
        agent_update(with_v3),
    )
        .prop_map(
            |(
                (node_id, observed_generation, sequence, sent_at_ms),
                workloads,
                usage,
                events,
                dropped_events,
                agent_update,
            )| NodeStatus {
                node_id,
                observed_generation,
                sequence,
                sent_at_ms,
                workloads,
                usage,
                events,
                dropped_events,
                agent_update,
            },
        )
}

/// Where an agent update is (`with_v3`; version 2 has none).
fn agent_update(with_v3: bool) -> impl Strategy<Value = Option<shoal_model::wire::AgentUpdate>> {
    use shoal_model::wire::{AgentUpdate, AgentUpdateState};
    let state = prop_oneof![
        (0u64..1000, 1000u64..2000)
            .prop_map(|(received, size)| AgentUpdateState::Downloading { received, size }),
        Just(AgentUpdateState::Switching),
        "[ -~]{0,40}".prop_map(|reason| AgentUpdateState::Failed { reason }),
    ];
    let some = ((0u64..5, 0u64..5, 0u64..5), state).prop_map(|((a, b, c), state)| {
        Some(AgentUpdate {
            version: format!("{a}.{b}.{c}"),
            state,
        })
    });
    if with_v3 {
        prop_oneof![Just(None), some].boxed()
    } else {
        Just(None).boxed()
    }
}

fn presence() -> impl Strategy<Value = Presence> {
    let capacity =
        (any::<u64>(), any::<u32>(), any::<u32>()).prop_map(|(memory_bytes, cpu_millis, pids)| {
            Capacity {
                memory_bytes,
                cpu_millis,
                pids,
            }
        });
    let facts = (
        (text(), text(), text(), any::<u8>()),
        capacity,
        text(),
        prop::collection::btree_map(
            "([a-z]{1,6}\\.)?[a-z]{1,6}/[a-zA-Z0-9]{1,8}|[a-z]{1,8}",
            "[a-zA-Z0-9]{0,8}",
            0..4,
        ),
        prop::collection::btree_set(2u8..12, 0..4),
    )
        .prop_map(
            |((arch, os, kernel, cgroup_version), capacity, agent_version, labels, versions)| {
                NodeFacts {
                    arch,
                    os,
                    kernel,
                    cgroup_version,
                    capacity,
                    agent_version,
                    labels,
                    wire_versions: versions.into_iter().collect(),
                }
            },
        );
    (name(), any::<bool>(), facts).prop_map(|(node_id, online, facts)| Presence {
        node_id,
        online,
        facts,
    })
}

fn rpc_request() -> impl Strategy<Value = RpcRequest> {
    let body = prop_oneof![
        (
            name(),
            prop::option::of(name()),
            prop::option::of(any::<u32>()),
            any::<bool>()
        )
            .prop_map(|(workload, container, tail, follow)| RpcRequestBody::Logs {
                workload,
                container,
                tail,
                follow
            }),
        (
            name(),
            prop::option::of(name()),
            prop::collection::vec(text(), 1..4)
        )
            .prop_map(|(workload, container, command)| RpcRequestBody::Exec {
                workload,
                container,
                command
            }),
        Just(RpcRequestBody::Diagnostics),
        Just(RpcRequestBody::Ping),
        Just(RpcRequestBody::Status),
        desired_state().prop_map(|d| RpcRequestBody::Apply {
            workloads: d.workloads
        }),
        name().prop_map(|workload| RpcRequestBody::DeleteWorkload { workload }),
        Just(RpcRequestBody::ListImages),
        "/[a-z/]{1,30}".prop_map(|path| RpcRequestBody::ImportImage { path }),
        "[a-z]{1,10}:[a-z0-9]{1,5}".prop_map(|reference| RpcRequestBody::RemoveImage { reference }),
        Just(RpcRequestBody::PruneImages),
        any::<u64>().prop_map(|id| RpcRequestBody::Cancel { id }),
    ];
    (any::<u64>(), body).prop_map(|(id, body)| RpcRequest { id, body })
}

fn rpc_response() -> impl Strategy<Value = RpcResponse> {
    let body = prop_oneof![
        (bytes(256), any::<bool>()).prop_map(|(data, eof)| RpcResponseBody::LogChunk { data, eof }),
        (any::<i32>(), bytes(64), bytes(64)).prop_map(|(exit_code, stdout, stderr)| {
            RpcResponseBody::ExecResult {
                exit_code,
                stdout,
                stderr,
            }
        }),
        text().prop_map(|text| RpcResponseBody::Diagnostics { text }),
        Just(RpcResponseBody::Pong),
        text().prop_map(|message| RpcResponseBody::Error { message }),
        node_status().prop_map(RpcResponseBody::Status),
        (any::<u64>(), prop::collection::vec(text(), 0..4)).prop_map(|(generation, changes)| {
            RpcResponseBody::Applied {
                generation,
                changes,
            }
        }),
        prop::collection::vec(
            (text(), text(), any::<u64>(), any::<u32>()).prop_map(
                |(reference, digest, size_bytes, in_use)| {
                    ImageSummary {
                        reference,
                        digest,
                        size_bytes,
                        in_use,
                    }
                }
            ),
            0..4
        )
        .prop_map(RpcResponseBody::Images),
        text().prop_map(|message| RpcResponseBody::Done { message }),
    ];
    (any::<u64>(), body).prop_map(|(id, body)| RpcResponse { id, body })
}

/// One valid encoded message of any kind, with the kind it was encoded as.
fn any_encoded() -> impl Strategy<Value = (MessageKind, Vec<u8>)> {
    let limits = Limits::default();
    prop_oneof![
        desired_state()
            .prop_map(move |m| (MessageKind::Desired, enc(&m.node_id.clone(), &m, &limits))),
        node_status()
            .prop_map(move |m| (MessageKind::Status, enc(&m.node_id.clone(), &m, &limits))),
        presence().prop_map(move |m| (MessageKind::Presence, enc(&m.node_id.clone(), &m, &limits))),
        (name(), rpc_request())
            .prop_map(move |(n, m)| (MessageKind::RpcRequest, enc(&n, &m, &limits))),
        (name(), rpc_response())
            .prop_map(move |(n, m)| (MessageKind::RpcResponse, enc(&n, &m, &limits))),
    ]
}

fn kind() -> impl Strategy<Value = MessageKind> {
    prop::sample::select(MessageKind::ALL.to_vec())
}

// ---- helpers ----------------------------------------------------------------------------

fn enc<M: Message>(node: &str, message: &M, limits: &Limits) -> Vec<u8> {
    encode(node, message, limits)
        .expect("a generated message is valid and within the default limits")
}

/// Decodes `bytes` as the message type of `kind`, keeping only whether it worked.
fn decode_as(kind: MessageKind, bytes: &[u8], limits: &Limits) -> Result<(), WireError> {
    match kind {
        MessageKind::Desired => decode::<DesiredState>(bytes, limits).map(drop),
        MessageKind::Status => decode::<NodeStatus>(bytes, limits).map(drop),
        MessageKind::Presence => decode::<Presence>(bytes, limits).map(drop),
        MessageKind::RpcRequest => decode::<RpcRequest>(bytes, limits).map(drop),
        MessageKind::RpcResponse => decode::<RpcResponse>(bytes, limits).map(drop),
    }
}

/// Opens `envelope` as every message type, to reach every payload decoder.
fn open_as_every_type(envelope: &Envelope) {
    let _ = envelope.open::<DesiredState>();
    let _ = envelope.open::<NodeStatus>();
    let _ = envelope.open::<Presence>();
    let _ = envelope.open::<RpcRequest>();
    let _ = envelope.open::<RpcResponse>();
}

fn round_trip<M: Message + PartialEq + std::fmt::Debug>(
    node: &str,
    message: &M,
) -> Result<(), TestCaseError> {
    let limits = Limits::default();
    let bytes = encode(node, message, &limits).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(bytes[0], WIRE_VERSION);
    // In every version this build writes, the message reads back as itself.
    for &version in SUPPORTED_WIRE_VERSIONS {
        let bytes = encode_in(version, node, message, &limits)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(bytes[0], version);
        let (envelope, decoded) =
            decode::<M>(&bytes, &limits).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&decoded, message);
        prop_assert_eq!(envelope.version, version);
        prop_assert_eq!(envelope.kind, M::KIND);
        prop_assert_eq!(envelope.node_id.as_str(), node);
        prop_assert_eq!(envelope.generation, message.generation());
        prop_assert_eq!(envelope.signature, None);
    }
    Ok(())
}

// ---- properties -------------------------------------------------------------------------

proptest! {
    #[test]
    fn every_desired_state_survives_the_round_trip(m in desired_state()) {
        round_trip(&m.node_id.clone(), &m)?;
    }

    #[test]
    fn every_node_status_survives_the_round_trip(m in node_status()) {
        round_trip(&m.node_id.clone(), &m)?;
    }

    #[test]
    fn a_status_with_a_rollback_reads_whole_in_version_3_and_without_it_in_version_2(
        m in node_status_in(true)
    ) {
        let limits = Limits::default();
        let v3 = encode_in(3, &m.node_id, &m, &limits).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (_, read) = decode::<NodeStatus>(&v3, &limits).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(&read, &m);
        let v2 = encode_in(2, &m.node_id, &m, &limits).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let (_, read) = decode::<NodeStatus>(&v2, &limits).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut older = m.clone();
        for w in &mut older.workloads {
            w.rolled_back = None;
        }
        older.agent_update = None;
        for e in &mut older.events {
            if e.reason == EventReason::RolledBack {
                e.reason = EventReason::DesiredStateRejected;
            }
            if e.reason == EventReason::AgentUpdateFailed {
                e.reason = EventReason::AgentStarted;
            }
        }
        prop_assert_eq!(read, older);
    }

    #[test]
    fn every_presence_survives_the_round_trip(m in presence()) {
        round_trip(&m.node_id.clone(), &m)?;
    }

    #[test]
    fn every_rpc_request_survives_the_round_trip(node in name(), m in rpc_request()) {
        round_trip(&node, &m)?;
    }

    #[test]
    fn every_rpc_response_survives_the_round_trip(node in name(), m in rpc_response()) {
        round_trip(&node, &m)?;
    }

    #[test]
    fn a_signed_envelope_survives_the_round_trip(m in desired_state(), signature in bytes(64)) {
        let limits = Limits::default();
        let mut envelope = Envelope::seal(&m.node_id, &m).map_err(|e| TestCaseError::fail(e.to_string()))?;
        envelope.signature = Some(signature);
        let bytes = envelope.encode(&limits).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let decoded = Envelope::decode(&bytes, MessageKind::Desired, &limits)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(decoded.signed_bytes(), envelope.signed_bytes());
        prop_assert_eq!(decoded, envelope);
    }

    #[test]
    fn decoding_random_bytes_never_panics(kind in kind(), mut input in bytes(512), versioned in any::<bool>()) {
        if versioned && !input.is_empty() {
            input[0] = WIRE_VERSION;
        }
        let _ = decode_as(kind, &input, &Limits::default());
    }

    #[test]
    fn opening_a_random_payload_never_panics(kind in kind(), node in name(), generation in any::<u64>(), payload in bytes(512)) {
        let envelope = Envelope { version: WIRE_VERSION, kind, node_id: node, generation, payload, signature: None };
        open_as_every_type(&envelope);
    }

    #[test]
    fn decoding_a_valid_message_with_flipped_bits_never_panics(
        (kind, mut bytes) in any_encoded(),
        flips in prop::collection::vec((any::<Index>(), 0..8u8), 1..4),
    ) {
        for (index, bit) in flips {
            let i = index.index(bytes.len());
            bytes[i] ^= 1 << bit;
        }
        for expected in MessageKind::ALL {
            let _ = decode_as(expected, &bytes, &Limits::default());
        }
        if let Ok(envelope) = Envelope::decode(&bytes, kind, &Limits::default()) {
            open_as_every_type(&envelope);
        }
    }

    #[test]
    fn decoding_a_truncated_message_fails_cleanly((kind, bytes) in any_encoded(), cut in any::<Index>()) {
        let truncated = &bytes[..cut.index(bytes.len())];
        prop_assert!(decode_as(kind, truncated, &Limits::default()).is_err());
    }

    #[test]
    fn decoding_a_message_with_bytes_appended_fails_cleanly((kind, mut bytes) in any_encoded(), extra in prop::collection::vec(any::<u8>(), 1..16)) {
        bytes.extend_from_slice(&extra);
        let result = decode_as(kind, &bytes, &Limits::default());
        prop_assert!(
            matches!(result, Err(WireError::TrailingBytes { .. } | WireError::TooLarge { .. })),
            "{:?}", result
        );
    }

    #[test]
    fn a_message_over_the_limit_is_refused_on_both_sides((kind, bytes) in any_encoded()) {
        let limit = bytes.len() - 1;
        let tight = Limits { desired: limit, status: limit, presence: limit, rpc_request: limit, rpc_response: limit };
        let result = decode_as(kind, &bytes, &tight);
        prop_assert_eq!(result, Err(WireError::TooLarge { kind, size: bytes.len(), limit }));
        let envelope = Envelope::decode(&bytes, kind, &Limits::default())
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        let refused = envelope.encode(&tight);
        prop_assert_eq!(refused, Err(WireError::TooLarge { kind, size: bytes.len(), limit }));
        prop_assert_eq!(envelope.encode(&Limits::default()), Ok(bytes));
    }
}

#[test]
fn a_large_log_chunk_is_refused_by_the_encoder_not_the_broker() {
    let limits = Limits::default();
    let chunk = RpcResponse {
        id: 1,
        body: RpcResponseBody::LogChunk {
            data: vec![b'x'; limits.rpc_response],
            eof: false,
        },
    };
    let result = encode("node-1", &chunk, &limits);
    assert!(
        matches!(
            result,
            Err(WireError::TooLarge {
                kind: MessageKind::RpcResponse,
                ..
            })
        ),
        "{result:?}"
    );
}

#[test]
fn an_envelope_of_the_maximum_size_is_accepted() {
    let limits = Limits::default();
    let overhead = encode(
        "node-1",
        &RpcResponse {
            id: 1,
            body: RpcResponseBody::LogChunk {
                data: Vec::new(),
                eof: true,
            },
        },
        &limits,
    )
    .expect("an empty chunk encodes")
    .len();
    // The payload and its data both carry a varint length that grows with the data; search
    // down from the limit for the largest chunk that fits.
    let fits = (0..16)
        .map(|slack| limits.rpc_response - overhead - slack)
        .find_map(|len| {
            let chunk = RpcResponse {
                id: 1,
                body: RpcResponseBody::LogChunk {
                    data: vec![0; len],
                    eof: true,
                },
            };
            encode("node-1", &chunk, &limits).ok()
        })
        .expect("a chunk just under the limit encodes");
    assert!(fits.len() <= limits.rpc_response && fits.len() + 16 > limits.rpc_response);
    decode::<RpcResponse>(&fits, &limits).expect("what the encoder accepts, the decoder accepts");
}
