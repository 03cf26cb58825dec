//! Hostile input against the model's decoders, as tables over every message kind and every
//! refusal the model promises: a message one byte over its kind's default limit, every
//! truncation of an envelope and of a payload, every other version byte, every pair of
//! mismatched kinds, YAML built to exhaust the parser, and names and paths that climb out of
//! where the agent puts them. Each refusal must say what was wrong.
//!
//! Random inputs and round trips are in `wire_props.rs` and `manifest_props.rs`; the fuzz
//! targets in `fuzz/` run the same decoders for longer.

use std::collections::BTreeMap;
use std::path::Path;

use shoal_model::manifest::{self, parse_manifest, Diagnostic, MAX_FILE_BYTES};
use shoal_model::node::NodeFacts;
use shoal_model::wire::{
    decode, DesiredState, DesiredWorkload, Envelope, Event, EventReason, Limits, MessageKind,
    NodeStatus, NodeUsage, Part, Presence, RpcRequest, RpcRequestBody, RpcResponse,
    RpcResponseBody, Severity, WireError, SUPPORTED_WIRE_VERSIONS, WIRE_VERSION,
};

const NODE: &str = "node-1";

// ---- wire helpers -------------------------------------------------------------------------

/// Limits that refuse nothing, to build what a well-behaved encoder never would.
fn unlimited() -> Limits {
    Limits {
        desired: usize::MAX,
        status: usize::MAX,
        presence: usize::MAX,
        rpc_request: usize::MAX,
        rpc_response: usize::MAX,
    }
}

fn hello_workload() -> shoal_model::manifest::Workload {
    let (mut workloads, diagnostics) = parse_manifest(
        Path::new("hello.yaml"),
        include_str!("../../manifests/hello.yaml"),
    );
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    workloads.remove(0).workload
}

/// A valid message of `kind` for [`NODE`] with `pad` bytes in one of its free-form fields,
/// sealed in an unsigned envelope.
fn padded(kind: MessageKind, pad: usize) -> Envelope {
    let text = "x".repeat(pad);
    let sealed = match kind {
        MessageKind::Desired => {
            let mut workload = hello_workload();
            workload.spec.containers[0].env.insert("PAD".into(), text);
            Envelope::seal(
                NODE,
                &DesiredState {
                    node_id: NODE.into(),
                    generation: 3,
                    workloads: vec![DesiredWorkload {
                        workload,
                        revision: 1,
                    }],
                    signing_keys: Vec::new(),
                    agent: None,
                },
            )
        }
        MessageKind::Status => Envelope::seal(
            NODE,
            &NodeStatus {
                node_id: NODE.into(),
                observed_generation: 3,
                sequence: 9,
                sent_at_ms: 1_700_000_000_000,
                workloads: Vec::new(),
                usage: NodeUsage::default(),
                events: vec![Event {
                    sequence: 1,
                    at_ms: 1_700_000_000_000,
                    severity: Severity::Warning,
                    workload: Some("hello".into()),
                    container: None,
                    reason: EventReason::BackOff,
                    message: text,
                }],
                dropped_events: 0,
                agent_update: None,
            },
        ),
        MessageKind::Presence => Envelope::seal(
            NODE,
            &Presence {
                node_id: NODE.into(),
                online: true,
                facts: NodeFacts {
                    kernel: text,
                    labels: BTreeMap::from([("role".into(), "gateway".into())]),
                    ..NodeFacts::default()
                },
            },
        ),
        MessageKind::RpcRequest => Envelope::seal(
            NODE,
            &RpcRequest {
                id: 7,
                body: RpcRequestBody::Exec {
                    workload: "hello".into(),
                    container: None,
                    command: vec![text],
                },
            },
        ),
        MessageKind::RpcResponse => Envelope::seal(
            NODE,
            &RpcResponse {
                id: 7,
                body: RpcResponseBody::LogChunk {
                    data: text.into_bytes(),
                    eof: true,
                },
            },
        ),
    };
    sealed.expect("the padded message is valid")
}

fn wire_bytes(envelope: &Envelope) -> Vec<u8> {
    envelope
        .encode(&unlimited())
        .expect("a sealed envelope encodes without limits")
}

/// The bytes of a valid message of `kind` that is exactly `size` bytes on the wire.
fn message_of_size(kind: MessageKind, size: usize) -> Vec<u8> {
    let len = |pad| wire_bytes(&padded(kind, pad)).len();
    let mut pad = size.saturating_sub(len(0));
    while pad > 0 && len(pad) > size {
        pad -= 1;
    }
    while len(pad) < size {
        pad += 1;
    }
    let bytes = wire_bytes(&padded(kind, pad));
    assert_eq!(
        bytes.len(),
        size,
        "no {kind} message is exactly {size} bytes"
    );
    bytes
}

/// Decodes `bytes` as the message type of `kind`, keeping only the error.
fn decode_as(kind: MessageKind, bytes: &[u8], limits: &Limits) -> Result<(), WireError> {
    match kind {
        MessageKind::Desired => decode::<DesiredState>(bytes, limits).map(drop),
        MessageKind::Status => decode::<NodeStatus>(bytes, limits).map(drop),
        MessageKind::Presence => decode::<Presence>(bytes, limits).map(drop),
        MessageKind::RpcRequest => decode::<RpcRequest>(bytes, limits).map(drop),
        MessageKind::RpcResponse => decode::<RpcResponse>(bytes, limits).map(drop),
    }
}

fn assert_mentions(error: &WireError, fragments: &[&str]) {
    let text = error.to_string();
    for fragment in fragments {
        assert!(
            text.contains(fragment),
            "`{text}` does not mention `{fragment}`"
        );
    }
}

// ---- wire: size limits --------------------------------------------------------------------

#[test]
fn a_message_one_byte_over_its_kinds_default_limit_is_refused_naming_the_kind_and_limit() {
    let limits = Limits::default();
    for kind in MessageKind::ALL {
        let limit = limits.for_kind(kind);

        let at_limit = message_of_size(kind, limit);
        decode_as(kind, &at_limit, &limits)
            .unwrap_or_else(|e| panic!("a {kind} message of exactly {limit} bytes: {e}"));
        let envelope = Envelope::decode(&at_limit, kind, &limits).expect("decodes");
        assert_eq!(envelope.encode(&limits).map(|b| b.len()), Ok(limit));

        let over = message_of_size(kind, limit + 1);
        let expected = WireError::TooLarge {
            kind,
            size: limit + 1,
            limit,
        };
        let refused = decode_as(kind, &over, &limits);
        assert_eq!(refused, Err(expected.clone()), "decoding a {kind} message");
        let envelope = Envelope::decode(&over, kind, &unlimited()).expect("decodes unlimited");
        assert_eq!(
            envelope.encode(&limits),
            Err(expected.clone()),
            "encoding a {kind} message"
        );
        assert_mentions(
            &expected,
            &[
                &kind.to_string(),
                &(limit + 1).to_string(),
                &limit.to_string(),
            ],
        );
    }
}

#[test]
fn an_oversized_message_is_refused_before_any_of_it_is_parsed() {
    let limits = Limits::default();
    for kind in MessageKind::ALL {
        let limit = limits.for_kind(kind);
        // Not even an envelope: parsing it would fail, so only the size check can say this.
        let mut garbage = vec![0xff; limit + 1];
        garbage[0] = WIRE_VERSION;
        assert_eq!(
            decode_as(kind, &garbage, &limits),
            Err(WireError::TooLarge {
                kind,
                size: limit + 1,
                limit
            })
        );
    }
}

// ---- wire: truncation ---------------------------------------------------------------------

#[test]
fn every_truncation_of_an_envelope_is_refused_naming_the_envelope() {
    let limits = Limits::default();
    for kind in MessageKind::ALL {
        let unsigned = padded(kind, 5);
        let signed = Envelope {
            signature: Some(vec![0xa5; 64]),
            ..unsigned.clone()
        };
        for envelope in [unsigned, signed] {
            let bytes = wire_bytes(&envelope);
            assert_eq!(decode_as(kind, &[], &limits), Err(WireError::Empty));
            for cut in 1..bytes.len() {
                let error = decode_as(kind, &bytes[..cut], &limits)
                    .expect_err("a truncated envelope decoded");
                assert!(
                    matches!(
                        error,
                        WireError::Malformed {
                            part: Part::Envelope,
                            ..
                        }
                    ),
                    "{kind} cut at {cut} of {}: {error:?}",
                    bytes.len()
                );
                assert!(
                    error
                        .to_string()
                        .starts_with("cannot decode the envelope: "),
                    "{error}"
                );
            }
        }
    }
}

#[test]
fn every_truncation_of_a_payload_is_refused_naming_the_payload_kind() {
    let limits = Limits::default();
    for kind in MessageKind::ALL {
        let whole = padded(kind, 5);
        for cut in 0..whole.payload.len() {
            let truncated = Envelope {
                payload: whole.payload[..cut].to_vec(),
                ..whole.clone()
            };
            let error = decode_as(kind, &wire_bytes(&truncated), &limits)
                .expect_err("a truncated payload decoded");
            assert!(
                matches!(error, WireError::Malformed { part: Part::Payload(k), .. } if k == kind),
                "{kind} payload cut at {cut} of {}: {error:?}",
                whole.payload.len()
            );
            assert!(
                error
                    .to_string()
                    .starts_with(&format!("cannot decode the {kind} payload: ")),
                "{error}"
            );
        }
    }
}

// ---- wire: version and kind ---------------------------------------------------------------

#[test]
fn every_version_byte_not_supported_is_refused_naming_it_and_those_supported() {
    let limits = Limits::default();
    for kind in MessageKind::ALL {
        let bytes = wire_bytes(&padded(kind, 5));
        for version in (0..=u8::MAX).filter(|v| !SUPPORTED_WIRE_VERSIONS.contains(v)) {
            let mut forged = bytes.clone();
            forged[0] = version;
            let expected = WireError::UnsupportedVersion {
                seen: version,
                supported: SUPPORTED_WIRE_VERSIONS,
            };
            assert_eq!(decode_as(kind, &forged, &limits), Err(expected.clone()));
            assert_mentions(
                &expected,
                &[
                    &format!("version {version} "),
                    &format!("speaks versions 2 and {WIRE_VERSION};"),
                ],
            );
        }
    }
}

#[test]
fn the_version_byte_is_checked_before_the_size() {
    let limits = Limits::default();
    for kind in MessageKind::ALL {
        let over = vec![WIRE_VERSION + 1; limits.for_kind(kind) + 1];
        assert_eq!(
            decode_as(kind, &over, &limits),
            Err(WireError::UnsupportedVersion {
                seen: WIRE_VERSION + 1,
                supported: SUPPORTED_WIRE_VERSIONS
            }),
            "{kind}"
        );
    }
}

#[test]
fn a_message_of_any_other_kind_is_refused_naming_both_kinds() {
    let limits = Limits::default();
    for found in MessageKind::ALL {
        let bytes = wire_bytes(&padded(found, 5));
        for expected in MessageKind::ALL.into_iter().filter(|&k| k != found) {
            let error = WireError::WrongKind { expected, found };
            assert_eq!(
                decode_as(expected, &bytes, &limits),
                Err(error.clone()),
                "a {found} message read as {expected}"
            );
            assert_eq!(
                Envelope::decode(&bytes, expected, &limits),
                Err(error.clone())
            );
            assert_mentions(
                &error,
                &[
                    &format!("expected a {expected} message"),
                    &format!("got a {found} message"),
                ],
            );
        }
    }
}

#[test]
fn a_payload_of_another_kind_under_a_forged_envelope_kind_is_refused() {
    let limits = Limits::default();
    for payload_kind in MessageKind::ALL {
        let inner = padded(payload_kind, 5);
        for kind in MessageKind::ALL.into_iter().filter(|&k| k != payload_kind) {
            let forged = Envelope {
                kind,
                ..inner.clone()
            };
            let result = decode_as(kind, &wire_bytes(&forged), &limits);
            assert!(
                result.is_err(),
                "a {payload_kind} payload was accepted as a {kind}"
            );
        }
    }
}

// ---- manifests: hostile YAML --------------------------------------------------------------

/// Parses `text` as one manifest file and returns its only diagnostic, checking that nothing
/// was decoded.
fn only_problem(text: &str) -> Diagnostic {
    let (workloads, diagnostics) = parse_manifest(Path::new("hostile.yaml"), text);
    assert!(workloads.is_empty(), "a hostile manifest decoded");
    assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
    diagnostics.into_iter().next().expect("one diagnostic")
}

/// Block mappings nested `levels` deep; level `n` starts on line `n`.
fn block_nesting(levels: usize) -> String {
    (0..levels - 1)
        .map(|i| format!("{}k{i}:\n", "  ".repeat(i)))
        .chain(std::iter::once(format!(
            "{}leaf: 1\n",
            "  ".repeat(levels - 1)
        )))
        .collect()
}

#[test]
fn yaml_built_to_exhaust_the_parser_is_refused_with_a_position_and_a_reason() {
    let laughs = {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..10 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("a{i}: &a{i} [{refs}]\n"));
        }
        text
    };
    let many_small_aliases = format!("a: &a [x, y]\nb: [{}]\n", vec!["*a"; 40_000].join(", "));
    let cases: Vec<(&str, String, &str)> = vec![
        ("billion laughs", laughs, "more than 100000 values"),
        (
            "many small aliases",
            many_small_aliases,
            "more than 100000 values",
        ),
        (
            "65 block levels",
            block_nesting(65),
            "nesting is deeper than 64 levels",
        ),
        (
            "100k open flow sequences",
            "[".repeat(100_000),
            "recursion limit exceeded",
        ),
        (
            "100k open flow mappings",
            "{a: ".repeat(100_000),
            "recursion limit exceeded",
        ),
        (
            "an alias before its anchor",
            "a: *x\nb: &x 1\n".into(),
            "anchor",
        ),
        (
            "an alias inside its own anchor",
            "a: &x [1, *x]\n".into(),
            "anchor",
        ),
        (
            "an alias to an anchor of an earlier document",
            "a: &x 1\n---\nb: *x\n".into(),
            "anchor",
        ),
    ];
    for (name, text, reason) in cases {
        let d = only_problem(&text);
        assert!(
            d.message.starts_with("invalid YAML: ") && d.message.contains(reason),
            "{name}: {d}"
        );
        assert!(d.pos.is_some(), "{name}: no position in {d}");
    }
}

#[test]
fn nesting_up_to_the_limit_is_parsed_and_one_level_more_is_refused_where_it_starts() {
    let (_, diagnostics) = parse_manifest(Path::new("deep.yaml"), &block_nesting(64));
    assert!(
        diagnostics
            .iter()
            .all(|d| !d.message.contains("invalid YAML")),
        "{diagnostics:#?}"
    );
    let d = only_problem(&block_nesting(65));
    assert_eq!(d.pos.map(|p| p.line), Some(65), "{d}");
}

#[test]
fn a_manifest_file_over_the_size_limit_is_refused_unread_and_one_at_the_limit_is_read() {
    let dir = std::env::temp_dir().join(format!("shoal-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let limit = usize::try_from(MAX_FILE_BYTES).expect("1 MiB fits a usize");
    let file = dir.join("big.yaml");
    let comment = |len: usize| format!("#{}\n", "x".repeat(len - 2));

    std::fs::write(&file, comment(limit + 1)).expect("write");
    let loaded = manifest::load(&file);
    let messages: Vec<&str> = loaded
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(
        messages,
        [format!(
            "the file is {} bytes; manifests are limited to {limit} bytes: split it",
            limit + 1
        )]
    );

    std::fs::write(&file, comment(limit)).expect("write");
    let loaded = manifest::load(&file);
    let messages: Vec<&str> = loaded
        .diagnostics
        .iter()
        .map(|d| d.message.as_str())
        .collect();
    assert_eq!(messages, ["the file holds no workload"]);
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

// ---- manifests: names and paths that climb out --------------------------------------------

/// A workload with one named volume `data` and one container, with `volumes` and `container`
/// replacing those parts when given.
fn workload(name: &str, volumes: &str, container: &str) -> String {
    format!(
        "apiVersion: shoal/v1\nkind: Workload\nmetadata: {{ name: {name} }}\nspec:\n  volumes: {volumes}\n  containers:\n    - name: app\n      image: busybox\n{container}"
    )
}

#[test]
fn the_path_traversal_template_is_valid_without_the_hostile_part() {
    let text = workload(
        "web",
        "[{ name: data }, { name: logs, hostPath: /var/log/web }]",
        "      devices: [/dev/ttyUSB0]\n      workingDir: /srv\n      mounts: [{ volume: data, path: /data }]\n",
    );
    let (workloads, diagnostics) = parse_manifest(Path::new("ok.yaml"), &text);
    assert!(diagnostics.is_empty(), "{diagnostics:#?}");
    assert_eq!(workloads.len(), 1);
}

#[test]
fn names_and_paths_that_climb_out_are_refused_at_their_field() {
    let data = "[{ name: data }]";
    let in_container = |line: &str| workload("web", data, &format!("      {line}\n"));
    let with_volume = |volume: &str| workload("web", &format!("[{volume}]"), "");
    let cases: Vec<(String, &str, &str)> = vec![
        // names that become directories, cgroups and container ids
        (
            workload("../etc", data, ""),
            "metadata.name",
            "is not a valid name",
        ),
        (
            workload("'..'", data, ""),
            "metadata.name",
            "is not a valid name",
        ),
        (
            with_volume("{ name: ../../etc }"),
            "spec.volumes[0].name",
            "is not a valid name",
        ),
        (
            with_volume("{ name: '..' }"),
            "spec.volumes[0].name",
            "is not a valid name",
        ),
        (
            with_volume("{ name: '.' }"),
            "spec.volumes[0].name",
            "is not a valid name",
        ),
        (
            with_volume("{ name: a/b }"),
            "spec.volumes[0].name",
            "is not a valid name",
        ),
        (
            with_volume("{ name: '%2e%2e' }"),
            "spec.volumes[0].name",
            "is not a valid name",
        ),
        (
            with_volume("{ name: \"da\\0ta\" }"),
            "spec.volumes[0].name",
            "is not a valid name",
        ),
        (
            workload("web", data, "    - name: ../app\n      image: busybox\n"),
            "spec.containers[1].name",
            "is not a valid name",
        ),
        // host paths
        (
            with_volume("{ name: etc, hostPath: /var/../etc }"),
            "spec.volumes[0].hostPath",
            "contains `..`",
        ),
        (
            with_volume("{ name: etc, hostPath: /srv/data/.. }"),
            "spec.volumes[0].hostPath",
            "contains `..`",
        ),
        (
            with_volume("{ name: up, hostPath: /.. }"),
            "spec.volumes[0].hostPath",
            "contains `..`",
        ),
        (
            with_volume("{ name: up, hostPath: ../etc }"),
            "spec.volumes[0].hostPath",
            "is not an absolute path",
        ),
        (
            with_volume("{ name: up, hostPath: '' }"),
            "spec.volumes[0].hostPath",
            "is not an absolute path",
        ),
        (
            with_volume("{ name: nul, hostPath: \"/etc\\0/x\" }"),
            "spec.volumes[0].hostPath",
            "NUL",
        ),
        // paths inside the container
        (
            in_container("mounts: [{ volume: data, path: /data/../../etc }]"),
            "spec.containers[0].mounts[0].path",
            "contains `..`",
        ),
        (
            in_container("mounts: [{ volume: data, path: ../data }]"),
            "spec.containers[0].mounts[0].path",
            "is not an absolute path",
        ),
        (
            in_container("mounts: [{ volume: ../data, path: /data }]"),
            "spec.containers[0].mounts[0].volume",
            "is not declared",
        ),
        (
            in_container("devices: [/dev/../etc/shadow]"),
            "spec.containers[0].devices[0]",
            "contains `..`",
        ),
        (
            in_container("devices: [/dev/]"),
            "spec.containers[0].devices[0]",
            "is not a device",
        ),
        (
            in_container("workingDir: /../.."),
            "spec.containers[0].workingDir",
            "contains `..`",
        ),
    ];
    for (text, path, fragment) in cases {
        let (workloads, diagnostics) = parse_manifest(Path::new("hostile.yaml"), &text);
        assert!(workloads.is_empty(), "decoded:\n{text}");
        assert!(
            diagnostics
                .iter()
                .any(|d| d.path == path && d.message.contains(fragment) && d.pos.is_some()),
            "expected `{fragment}` at {path} for:\n{text}\ngot: {diagnostics:#?}"
        );
    }
}

/// Found by the `manifest` fuzz target: a few levels of aliases of one large scalar asked for
/// gigabytes of copies while staying under the node limit.
#[test]
fn aliases_of_a_large_value_are_refused_before_they_are_copied() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions/manifest/oom-aliases-of-a-large-scalar.yaml");
    let text = std::fs::read_to_string(&path).expect("the regression input");
    let (workloads, diagnostics) = parse_manifest(std::path::Path::new("bomb.yaml"), &text);
    assert!(workloads.is_empty());
    assert_eq!(diagnostics.len(), 1, "{diagnostics:?}");
    assert!(
        diagnostics[0].message.contains("aliases expanded"),
        "{}",
        diagnostics[0]
    );
}

#[test]
fn text_over_the_file_limit_is_refused_whole_when_added_as_text() {
    let mut loaded = shoal_model::manifest::Loaded::default();
    let text = "#".repeat(shoal_model::manifest::MAX_FILE_BYTES as usize + 1);
    loaded.add_text(std::path::Path::new("big.yaml"), &text);
    assert_eq!(loaded.diagnostics.len(), 1);
    assert!(
        loaded.diagnostics[0].message.contains("split it"),
        "{:?}",
        loaded.diagnostics
    );
}
