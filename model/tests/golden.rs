//! Golden bytes: the exact encoding of every wire message kind, every stored row kind of the
//! hub's and the agent's databases, and the canonical bytes behind both hashes (container
//! identity and the hub's desired-state digest), for fully populated values.
//!
//! Release 0.1.0 writes wire version 2 and stored format 2; every deployed node and every
//! database holds these bytes. The expected hex below was generated once, from release 0.1.0's
//! encoding, and must never be edited: a mismatch means the encoding changed, which breaks
//! deployed nodes (wire), upgraded databases (stored rows) or restarts every container and
//! republishes every desired state (hashes). Put the new shape in a new wire version instead
//! (see `model/src/wire/mod.rs`) and keep version 2 exactly as it is.

mod samples;

use std::fmt::Debug;

use samples::*;
use shoal_model::node::NodeFacts;
use shoal_model::wire::stored;
use shoal_model::wire::{self, identity, Limits, Message, Presence};

const KEEP_V2: &str = "Do not edit this golden value: put the new shape in a new wire version \
                       (see model/src/wire/mod.rs) and keep v2 and v3 as they are";

const DEPLOYED: &str = "every deployed node";
const HUB_DB: &str = "every hub database";
const AGENT_DB: &str = "every agent database";

fn hex(bytes: &[u8]) -> String {
    shoal_model::hex::encode(bytes)
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("golden values are hex"))
        .collect()
}

/// Fails with what breaks and what to do when `bytes` differ from the golden `expected` hex.
fn check(what: &str, breaks: &str, bytes: &[u8], expected: &str) {
    let actual = hex(bytes);
    assert!(
        actual == expected,
        "the frozen encoding of {what} changed: this breaks {breaks}. {KEEP_V2}.\n\
         expected: {expected}\n  actual: {actual}"
    );
}

/// Fails when golden bytes no longer read back as the value they were made from.
fn check_read<T: PartialEq + Debug, E: std::fmt::Display>(
    what: &str,
    breaks: &str,
    read: Result<T, E>,
    expected: &T,
) {
    match read {
        Ok(value) => assert!(
            value == *expected,
            "the frozen bytes of {what} read back as another value: this breaks {breaks}. \
             Keep the conversion from v2 as it was (see model/src/wire/v2).\n\
             read: {value:?}\nwritten: {expected:?}"
        ),
        Err(e) => panic!(
            "the frozen bytes of {what} no longer decode ({e}): this breaks {breaks}. \
             Keep reading version 2 (see model/src/wire/mod.rs)"
        ),
    }
}

/// A message in wire version 2, as release 0.1.0 sent it and this release still sends it to
/// peers that read nothing newer.
fn wire_bytes<M: Message>(message: &M) -> Vec<u8> {
    wire::encode_in(2, NODE, message, &Limits::default()).expect("a sample message encodes")
}

/// A message kind: its encoding is the golden value, and the golden value decodes to it.
fn check_message<M: Message + PartialEq + Debug>(what: &str, message: &M, expected: &str) {
    check(what, DEPLOYED, &wire_bytes(message), expected);
    let read = wire::decode::<M>(&unhex(expected), &Limits::default()).map(|(_, m)| m);
    check_read(what, DEPLOYED, read, message);
}

// ---- wire messages ----------------------------------------------------------------------

#[test]
fn the_v2_encoding_of_a_signed_desired_state_is_frozen() {
    check(
        "DesiredState",
        DEPLOYED,
        &signed_desired_bytes(),
        GOLDEN_DESIRED,
    );
    let read = wire::decode::<wire::DesiredState>(&unhex(GOLDEN_DESIRED), &Limits::default());
    let (envelope, state) = read.expect("the golden desired state decodes");
    assert_eq!(state, desired());
    assert_eq!(envelope.version, 2);
    assert_eq!(envelope.signature.map(|s| s.len()), Some(72));
}

#[test]
fn the_v2_bytes_a_desired_state_signature_covers_are_frozen() {
    let (envelope, _) =
        wire::decode::<wire::DesiredState>(&unhex(GOLDEN_DESIRED), &Limits::default())
            .expect("decodes");
    check(
        "the signed bytes of a desired state",
        "the signature of every desired state already published",
        &envelope.signed_bytes(),
        GOLDEN_DESIRED_SIGNED_BYTES,
    );
}

#[test]
fn the_v2_encoding_of_a_status_is_frozen() {
    check_message("NodeStatus", &status(), GOLDEN_STATUS);
}

#[test]
fn the_v2_encoding_of_presence_is_frozen() {
    check_message("Presence", &presence(), GOLDEN_PRESENCE);
}

#[test]
fn the_v2_encoding_of_every_rpc_request_is_frozen() {
    let requests = rpc_requests();
    assert_eq!(requests.len(), GOLDEN_RPC_REQUESTS.len());
    for (request, expected) in requests.iter().zip(GOLDEN_RPC_REQUESTS) {
        let what: String = format!("RpcRequest {:?}", request.body)
            .chars()
            .take(60)
            .collect();
        check_message(&what, request, expected);
    }
}

#[test]
fn the_v2_encoding_of_every_rpc_response_is_frozen() {
    let responses = rpc_responses();
    assert_eq!(responses.len(), GOLDEN_RPC_RESPONSES.len());
    for (response, expected) in responses.iter().zip(GOLDEN_RPC_RESPONSES) {
        let what: String = format!("RpcResponse {:?}", response.body)
            .chars()
            .take(60)
            .collect();
        check_message(&what, response, expected);
    }
}

// ---- stored rows ------------------------------------------------------------------------

#[test]
fn the_hub_workload_row_format_2_is_frozen() {
    // This release writes workloads in format 3 (below); format 2 is what 0.1.0 wrote and
    // what every version-2 desired state carries, so it must still read, and still be the
    // version-2 shape inside the version-2 desired state (`the_v2_encoding_of_a_signed_...`).
    let what = "a hub workloads/workload_revisions spec row";
    let workload = sensor_workload();
    let read = stored::read_workload(2, &unhex(GOLDEN_HUB_WORKLOAD));
    check_read(what, HUB_DB, read, &workload);
}

#[test]
fn the_hub_node_facts_row_format_2_is_frozen() {
    // This release writes node facts in format 3 (see below); format 2 is what 0.1.0 wrote
    // and what the version-2 presence carries, so it must still read, and still be the
    // version-2 shape inside presence (`the_v2_encoding_of_presence_is_frozen`).
    let what = "a hub nodes.facts row";
    let read = stored::read_facts(2, &unhex(GOLDEN_HUB_FACTS));
    check_read(what, HUB_DB, read, &facts());
}

#[test]
fn the_hub_event_row_format_2_is_frozen() {
    // Written in format 3 by this release (below); format 2 is what 0.1.0 wrote.
    let what = "a hub events row";
    let event = status().events.swap_remove(3);
    let read = stored::read_event(2, &unhex(GOLDEN_HUB_EVENT));
    check_read(what, HUB_DB, read, &event);
}

#[test]
fn the_hub_refusal_event_row_format_2_is_frozen() {
    // The hub's own `status-refused` event: appended to v2 after 0.1.0 (see
    // model/src/wire/v2/mod.rs), held only by the hub's database.
    let what = "a hub events row of the hub's own";
    let event = wire::Event {
        sequence: 0,
        at_ms: 1_700_000_003_000,
        severity: wire::Severity::Warning,
        workload: None,
        container: None,
        reason: wire::EventReason::StatusRefused,
        message: "status 18446744073709551615 of gw-7 refused".into(),
    };
    let read = stored::read_event(2, &unhex(GOLDEN_HUB_REFUSAL_EVENT));
    check_read(what, HUB_DB, read, &event);
}

#[test]
fn the_hub_status_row_format_2_is_frozen() {
    let what = "a hub node_status row";
    let mut snapshot = status();
    snapshot.events.clear();
    let read = stored::read_status(2, &unhex(GOLDEN_HUB_STATUS));
    check_read(what, HUB_DB, read, &snapshot);
}

#[test]
fn the_hub_desired_row_is_the_published_wire_message() {
    // `node_desired.payload` holds the envelope as published, version byte first.
    check(
        "a hub node_desired row",
        HUB_DB,
        &signed_desired_bytes(),
        GOLDEN_DESIRED,
    );
}

#[test]
fn the_agent_desired_state_row_format_2_is_frozen() {
    // Written in format 3 by this release (below); format 2 is what 0.1.0 wrote.
    let what = "an agent desired_state row";
    let workloads = desired().workloads;
    let read = stored::read_desired(2, &unhex(GOLDEN_AGENT_DESIRED));
    check_read(what, AGENT_DB, read, &workloads);
}

#[test]
fn the_agent_outbox_row_is_the_wire_message() {
    // `outbox.payload` holds the status as it will be published, version byte first.
    check(
        "an agent outbox row",
        AGENT_DB,
        &wire_bytes(&status()),
        GOLDEN_STATUS,
    );
}

// ---- version 3 --------------------------------------------------------------------------
//
// Version 3 changed these shapes: node facts carry the agent's wire versions; workloads have
// two more rollout settings and a canary that may be a percentage; statuses say which
// workloads a node rolled back by itself, and events have the `rolled-back` reason. Version 3
// stays open until the first release that writes it is in RELEASES.toml; from then on the
// golden values below are never edited either.

/// The sample facts and presence, as an agent of this release announces them.
fn announcing(versions: &[u8]) -> (NodeFacts, Presence) {
    let facts = NodeFacts {
        wire_versions: versions.to_vec(),
        ..facts()
    };
    let presence = Presence {
        facts: facts.clone(),
        ..presence()
    };
    (facts, presence)
}

#[test]
fn the_v3_encoding_of_presence_is_frozen() {
    let (_, presence) = announcing(&[2, 3]);
    let bytes = wire::encode_in(3, NODE, &presence, &Limits::default()).expect("encodes");
    check(
        "Presence in version 3",
        DEPLOYED,
        &bytes,
        GOLDEN_V3_PRESENCE,
    );
    let read = wire::decode::<Presence>(&unhex(GOLDEN_V3_PRESENCE), &Limits::default());
    check_read(
        "Presence in version 3",
        DEPLOYED,
        read.map(|(_, p)| p),
        &presence,
    );
}

#[test]
fn a_v2_presence_announces_the_wire_versions_in_a_label_a_0_1_0_hub_reads() {
    let (_, presence) = announcing(&[2, 3]);
    let what = "Presence in version 2, announcing versions 2 and 3";
    check_message(what, &presence, GOLDEN_V2_PRESENCE_ANNOUNCING);
}

#[test]
fn the_hub_node_facts_row_format_3_is_frozen() {
    let what = "a hub nodes.facts row in format 3";
    let (facts, _) = announcing(&[2, 3]);
    let row = stored::write_facts(&facts).expect("a sample row encodes");
    assert_eq!(row.format, 3, "node facts are written in format 3");
    check(what, HUB_DB, &row.bytes, GOLDEN_HUB_FACTS_V3);
    let read = stored::read_facts(3, &unhex(GOLDEN_HUB_FACTS_V3));
    check_read(what, HUB_DB, read, &facts);
}

/// The sample status with what only version 3 says: a workload the node rolled back, and
/// the `rolled-back` event; an agent update that failed, and its event.
fn status_v3() -> wire::NodeStatus {
    let mut status = status();
    status.agent_update = Some(wire::AgentUpdate {
        version: "0.2.0".into(),
        state: wire::AgentUpdateState::Failed {
            reason: "it did not say it was ready within 2m".into(),
        },
    });
    status.events.push(wire::Event {
        sequence: 1_999,
        at_ms: 1_700_000_003_000,
        severity: wire::Severity::Warning,
        workload: None,
        container: None,
        reason: wire::EventReason::AgentUpdateFailed,
        message: "the update to agent 0.2.0 failed".into(),
    });
    status.workloads[0].rolled_back = Some(wire::RolledBack {
        revision: 130,
        failure: shoal_model::rollout::Failure::Restarting,
    });
    status.events.push(wire::Event {
        sequence: 2_000,
        at_ms: 1_700_000_004_000,
        severity: wire::Severity::Warning,
        workload: Some("sensor-reader".into()),
        container: None,
        reason: wire::EventReason::RolledBack,
        message: "rolled back from revision 130 to 129".into(),
    });
    status
}

#[test]
fn the_v3_encoding_of_a_status_is_frozen() {
    let limits = Limits::default();
    let what = "NodeStatus in version 3";
    let bytes = wire::encode_in(3, NODE, &status_v3(), &limits).expect("encodes");
    check(what, DEPLOYED, &bytes, GOLDEN_V3_STATUS);
    let read = wire::decode::<wire::NodeStatus>(&unhex(GOLDEN_V3_STATUS), &limits);
    check_read(what, DEPLOYED, read.map(|(_, s)| s), &status_v3());
    // In version 2 a rollback and the agent update are left out, and their events read as a
    // refusal and an agent start.
    let v2 = wire::encode_in(2, NODE, &status_v3(), &limits).expect("encodes");
    let (_, read) = wire::decode::<wire::NodeStatus>(&v2, &limits).expect("reads");
    assert_eq!(read.workloads, status().workloads);
    assert_eq!(read.agent_update, None);
    let reasons: Vec<wire::EventReason> =
        read.events.iter().rev().take(2).map(|e| e.reason).collect();
    assert_eq!(
        reasons,
        [
            wire::EventReason::DesiredStateRejected,
            wire::EventReason::AgentStarted
        ]
    );
}

#[test]
fn the_hub_status_and_event_rows_format_3_are_frozen() {
    let mut snapshot = status_v3();
    let event = snapshot.events.pop().expect("the rolled-back event");
    snapshot.events.clear();
    let what = "a hub node_status row in format 3";
    let row = stored::write_status(&snapshot).expect("a sample row encodes");
    assert_eq!(row.format, 3, "statuses are written in format 3");
    check(what, HUB_DB, &row.bytes, GOLDEN_HUB_STATUS_V3);
    let read = stored::read_status(3, &unhex(GOLDEN_HUB_STATUS_V3));
    check_read(what, HUB_DB, read, &snapshot);
    let what = "a hub events row in format 3";
    let row = stored::write_event(&event).expect("a sample row encodes");
    assert_eq!(row.format, 3, "events are written in format 3");
    check(what, HUB_DB, &row.bytes, GOLDEN_HUB_EVENT_V3);
    let read = stored::read_event(3, &unhex(GOLDEN_HUB_EVENT_V3));
    check_read(what, HUB_DB, read, &event);
}

#[test]
fn rpc_messages_are_in_version_3_their_version_2_bytes() {
    let limits = Limits::default();
    let same = |what: &str, v2: Vec<u8>, v3: Vec<u8>| {
        assert_eq!((v2[0], v3[0]), (2, 3), "{what}: the version bytes");
        assert!(
            v2[1..] == v3[1..],
            "{what} changed shape in version 3, which did not change rpc messages. {KEEP_V2}"
        );
    };
    let both = |message: &dyn Fn(u8) -> Vec<u8>| (message(2), message(3));
    for request in rpc_requests() {
        let (v2, v3) = both(&|v| wire::encode_in(v, NODE, &request, &limits).expect("encodes"));
        same("RpcRequest", v2, v3);
    }
    for response in rpc_responses() {
        let (v2, v3) = both(&|v| wire::encode_in(v, NODE, &response, &limits).expect("encodes"));
        same("RpcResponse", v2, v3);
    }
}

/// The sample desired state with version 3's rollout settings set on its first workload.
fn desired_v3() -> wire::DesiredState {
    let mut state = desired();
    let rollout = &mut state.workloads[0].workload.spec.rollout;
    rollout.progress_deadline = std::time::Duration::from_secs(90);
    rollout.failure_threshold = shoal_model::quantity::Amount::Percent(20);
    rollout.canary = shoal_model::quantity::Amount::Percent(25);
    state.agent = Some(agent_target());
    state
}

/// An agent target with fixed keys and signatures (what they are does not matter to the
/// encoding).
fn agent_target() -> shoal_model::release::AgentTarget {
    use shoal_model::wire::signing::PublicKey;
    shoal_model::release::AgentTarget {
        release: shoal_model::release::AgentRelease {
            version: shoal_model::release::Version::new(0, 2, 0),
            arch: shoal_model::elf::Arch::Aarch64,
            sha256: [0xab; 32],
            size: 7_612_416,
            minimum: Some(shoal_model::release::Version::new(0, 1, 0)),
        },
        signature: vec![0x51; 72],
        source: "https://hub.example:7440".parse().expect("url"),
        release_keys: vec![PublicKey([0x0e; 32])],
        endorsements: vec![vec![0x52; 72]],
    }
}

#[test]
fn the_v3_encoding_of_a_desired_state_is_frozen() {
    let bytes = wire::encode_in(3, NODE, &desired_v3(), &Limits::default()).expect("encodes");
    check(
        "DesiredState in version 3",
        DEPLOYED,
        &bytes,
        GOLDEN_V3_DESIRED,
    );
    let read = wire::decode::<wire::DesiredState>(&unhex(GOLDEN_V3_DESIRED), &Limits::default());
    check_read(
        "DesiredState in version 3",
        DEPLOYED,
        read.map(|(_, d)| d),
        &desired_v3(),
    );
    // In version 2 the two settings are left out (an agent acts on no rollout setting), and
    // so is the agent target (an agent that reads only version 2 cannot update itself).
    let v2 = wire::encode_in(2, NODE, &desired_v3(), &Limits::default()).expect("encodes");
    let (_, read) = wire::decode::<wire::DesiredState>(&v2, &Limits::default()).expect("reads");
    assert_eq!(read, desired(), "version 2 reads the defaults");
}

#[test]
fn the_hub_workload_row_format_3_is_frozen() {
    let what = "a hub workloads/workload_revisions spec row in format 3";
    let workload = desired_v3().workloads.remove(0).workload;
    let row = stored::write_workload(&workload).expect("a sample row encodes");
    assert_eq!(row.format, 3, "workloads are written in format 3");
    check(what, HUB_DB, &row.bytes, GOLDEN_HUB_WORKLOAD_V3);
    let read = stored::read_workload(3, &unhex(GOLDEN_HUB_WORKLOAD_V3));
    check_read(what, HUB_DB, read, &workload);
}

#[test]
fn the_agent_desired_state_row_format_3_is_frozen() {
    let what = "an agent desired_state row in format 3";
    let workloads = desired_v3().workloads;
    let row = stored::write_desired(&workloads).expect("a sample row encodes");
    assert_eq!(row.format, 3, "desired workloads are written in format 3");
    check(what, AGENT_DB, &row.bytes, GOLDEN_AGENT_DESIRED_V3);
    let read = stored::read_desired(3, &unhex(GOLDEN_AGENT_DESIRED_V3));
    check_read(what, AGENT_DB, read, &workloads);
}

#[test]
fn the_v3_rollout_settings_count_in_the_digest_only_when_set() {
    let keys = desired().signing_keys;
    let plain = identity::desired(&desired().workloads, &keys, None);
    assert_eq!(
        hex(&plain),
        GOLDEN_DIGEST_INPUT,
        "at their defaults: the v1 bytes"
    );
    let set = identity::desired(&desired_v3().workloads, &keys, None);
    assert!(set.starts_with(&plain), "the v1 bytes, then the set fields");
    assert_eq!(hex(&set[plain.len()..]), GOLDEN_V3_DIGEST_FIELDS);
}

// ---- hashes -----------------------------------------------------------------------------

#[test]
fn container_identity_v1_bytes_are_frozen() {
    let workload = sensor_workload();
    let expected = [
        GOLDEN_IDENTITY_READER,
        GOLDEN_IDENTITY_WEB,
        GOLDEN_IDENTITY_PROBE,
    ];
    assert_eq!(workload.spec.containers.len(), expected.len());
    for (container, expected) in workload.spec.containers.iter().zip(expected) {
        check(
            &format!("the identity of container `{}`", container.name),
            "container identity: every container on every node would restart",
            &identity::container(&workload, container),
            expected,
        );
    }
}

#[test]
fn pod_identity_v1_bytes_are_frozen() {
    check(
        "the identity of a pod",
        "pod identity: every isolated workload's namespaces would be rebuilt",
        &identity::pod(&sensor_workload()),
        GOLDEN_IDENTITY_POD,
    );
}

#[test]
fn desired_digest_v1_bytes_are_frozen() {
    let state = desired();
    check(
        "the desired-state digest input",
        "the hub's digest: every node would get a new generation after an upgrade",
        &identity::desired(&state.workloads, &state.signing_keys, state.agent.as_ref()),
        GOLDEN_DIGEST_INPUT,
    );
}

// ---- the golden values (generated once from release 0.1.0's encoding; never edit) -------

const GOLDEN_DESIRED: &str = "\
    02000467772d37ac02d10b0467772d37ac02030968656172746265617400000000000000010119001e000100000a\
    000001066c6f67676572000f6c6962726172792f62757379626f780001477368613235363a306630663066306630\
    66306630663066306630663066306630663066306630663066306630663066306630663066306630663066306630\
    66306630663066306602072f62696e2f7368022d6301156e63202d6c6b202d702037303030202d65206361740105\
    454d50545900000000000000000000000000010b6c6f672d7368697070657200000000000000010119001e000102\
    000a000001066c6f67676572000f6c6962726172792f62757379626f780001477368613235363a30663066306630\
    66306630663066306630663066306630663066306630663066306630663066306630663066306630663066306630\
    663066306630663066306602072f62696e2f7368022d6301156e63202d6c6b202d702037303030202d6520636174\
    0105454d50545900000000000000000000000000070d73656e736f722d72656164657202036170700673656e736f\
    720e73686f616c2e6465762f74696572046564676501030204726f6c650767617465776179047369746507706c61\
    6e742d310a166172636820696e202861726d36342c2061726d76372900000002000561726d3634000561726d7637\
    126f73206e6f74696e202877696e646f77732900010101000777696e646f77730e6b65726e656c203e3d20352e31\
    30000202020102050a0b6367726f7570203d3d20320003020002020e6d656d6f7279203e203235364d6900040204\
    02808080800108637075203c3d20340005020302a01f0d70696473203c203130303030300006020502a08d061561\
    67656e7456657273696f6e20213d20302e302e39000702010103000009106c6162656c2e67707520657869737473\
    0103677075031b6c6162656c2e73686f616c2e6465762f6c6162206d697373696e67010d73686f616c2e6465762f\
    6c61620401047261636b010662726f6b657202056e6f697379056261746368005a000002012d000001010280cab5\
    ee010204646174610006636f6e66696701112f6574632f706c616e742f7265616465720306726561646572011372\
    656769737472792e6c6f63616c3a3530303013706c616e742f73656e736f722d7265616465720105312e342e3201\
    477368613235363a6162616261626162616261626162616261626162616261626162616261626162616261626162\
    6162616261626162616261626162616261626162616261626162010b2f62696e2f72656164657203062d2d706f72\
    740c2f6465762f74747955534230092d2d726174653d313002094c4f475f4c4556454c0564656275670453495445\
    07706c616e742d31010f2f7661722f6c69622f72656164657201e8070114018080802001fa010140010c2f646576\
    2f74747955534230020464617461052f646174610006636f6e6669670b2f6574632f726561646572010100020b2f\
    62696e2f726561646572072d2d636865636b0f000180cab5ee01031480e59a7701020d4341505f4e45545f41444d\
    494e0c4341505f5359535f54494d4501094341505f4d4b4e4f440003776562000d6c6962726172792f6e67696e78\
    0104312e323700000000000165000180808010000000010464617461152f7573722f73686172652f6e67696e782f\
    68746d6c010101903f082f6865616c74687a0a000200050000000000000570726f6265000f6c6962726172792f62\
    757379626f780001477368613235363a306630663066306630663066306630663066306630663066306630663066\
    3066306630663066306630663066306630663066306630663066306630663066306602072f62696e2f7368022d63\
    01156e63202d6c6b202d702037303030202d65206361740105454d50545900000000000000000102d8361e000500\
    013c0000000001810102a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a500010203\
    0405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f014811111111111111115a5a5a5a5a5a5a5a\
    5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a\
    5a5a5a5a5a5a5a5a5a5a";
const GOLDEN_DESIRED_SIGNED_BYTES: &str = "\
    73686f616c2f763120646573697265640002010000000467772d37000000000000012c00000000000005d1046777\
    2d37ac02030968656172746265617400000000000000010119001e000100000a000001066c6f67676572000f6c69\
    62726172792f62757379626f780001477368613235363a3066306630663066306630663066306630663066306630\
    663066306630663066306630663066306630663066306630663066306630663066306630663066306602072f6269\
    6e2f7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d505459000000000000000000\
    00000000010b6c6f672d7368697070657200000000000000010119001e000102000a000001066c6f67676572000f\
    6c6962726172792f62757379626f780001477368613235363a306630663066306630663066306630663066306630\
    6630663066306630663066306630663066306630663066306630663066306630663066306630663066306602072f\
    62696e2f7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d50545900000000000000\
    000000000000070d73656e736f722d72656164657202036170700673656e736f720e73686f616c2e6465762f7469\
    6572046564676501030204726f6c650767617465776179047369746507706c616e742d310a166172636820696e20\
    2861726d36342c2061726d76372900000002000561726d3634000561726d7637126f73206e6f74696e202877696e\
    646f77732900010101000777696e646f77730e6b65726e656c203e3d20352e3130000202020102050a0b6367726f\
    7570203d3d20320003020002020e6d656d6f7279203e203235364d690004020402808080800108637075203c3d20\
    340005020302a01f0d70696473203c203130303030300006020502a08d06156167656e7456657273696f6e20213d\
    20302e302e39000702010103000009106c6162656c2e677075206578697374730103677075031b6c6162656c2e73\
    686f616c2e6465762f6c6162206d697373696e67010d73686f616c2e6465762f6c61620401047261636b01066272\
    6f6b657202056e6f697379056261746368005a000002012d000001010280cab5ee010204646174610006636f6e66\
    696701112f6574632f706c616e742f7265616465720306726561646572011372656769737472792e6c6f63616c3a\
    3530303013706c616e742f73656e736f722d7265616465720105312e342e3201477368613235363a616261626162\
    61626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162\
    616261626162616261626162010b2f62696e2f72656164657203062d2d706f72740c2f6465762f74747955534230\
    092d2d726174653d313002094c4f475f4c4556454c056465627567045349544507706c616e742d31010f2f766172\
    2f6c69622f72656164657201e8070114018080802001fa010140010c2f6465762f74747955534230020464617461\
    052f646174610006636f6e6669670b2f6574632f726561646572010100020b2f62696e2f726561646572072d2d63\
    6865636b0f000180cab5ee01031480e59a7701020d4341505f4e45545f41444d494e0c4341505f5359535f54494d\
    4501094341505f4d4b4e4f440003776562000d6c6962726172792f6e67696e780104312e32370000000000016500\
    0180808010000000010464617461152f7573722f73686172652f6e67696e782f68746d6c010101903f082f686561\
    6c74687a0a000200050000000000000570726f6265000f6c6962726172792f62757379626f780001477368613235\
    363a3066306630663066306630663066306630663066306630663066306630663066306630663066306630663066\
    306630663066306630663066306630663066306602072f62696e2f7368022d6301156e63202d6c6b202d70203730\
    3030202d65206361740105454d50545900000000000000000102d8361e000500013c0000000001810102a5a5a5a5\
    a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5000102030405060708090a0b0c0d0e0f1011\
    12131415161718191a1b1c1d1e1f";
const GOLDEN_STATUS: &str = "\
    02010467772d37f0a204860a0467772d37ac02f0a204d0df95ffbc31020d73656e736f722d726561646572810108\
    0263300000000000000000000002633101010301019202000081d095ffbc310001f5d395ffbc3101a11f01808080\
    0101aab4de7501096d657373616765203102633202020600000000000000026333030309010001120183d095ffbc\
    310101f7d395ffbc3101a31f018080800201d4e8bceb0101096d657373616765203302633404000c000000000000\
    0002633505010f01019202000085d095ffbc310001f9d395ffbc3101a51f018080800301fe9c9be10201096d6573\
    73616765203502633606021200000000000000026337070315010001120087d095ffbc310001fbd395ffbc3101a7\
    1f018080800401a8d1f9d60301096d65737361676520370b6c6f672d736869707065720700808080800480808080\
    10e2098080808014808080804015e807e8d795ffbc3100010d73656e736f722d7265616465720106726561646572\
    00166167656e742d737461727465642068617070656e6564e907efd795ffbc3101010d73656e736f722d72656164\
    657200011f646573697265642d73746174652d61636365707465642068617070656e6564ea07f6d795ffbc310200\
    00021f646573697265642d73746174652d72656a65637465642068617070656e6564eb07fdd795ffbc3100010d73\
    656e736f722d7265616465720106726561646572031a63617061636974792d65786365656465642068617070656e\
    6564ec0784d895ffbc3101010d73656e736f722d726561646572000419776f726b6c6f61642d7265667573656420\
    68617070656e6564ed078bd895ffbc310200000516696d6167652d70756c6c696e672068617070656e6564ee0792\
    d895ffbc3100010d73656e736f722d72656164657201067265616465720615696d6167652d70756c6c6564206861\
    7070656e6564ef0799d895ffbc3101010d73656e736f722d72656164657200071a696d6167652d70756c6c2d6661\
    696c65642068617070656e6564f007a0d895ffbc310200000817696d6167652d72656a6563746564206861707065\
    6e6564f107a7d895ffbc3100010d73656e736f722d7265616465720106726561646572091d6469736b2d62756467\
    65742d65786365656465642068617070656e6564f207aed895ffbc3101010d73656e736f722d726561646572000a\
    10637265617465642068617070656e6564f307b5d895ffbc310200000b166372656174652d6661696c6564206861\
    7070656e6564f407bcd895ffbc3100010d73656e736f722d72656164657201067265616465720c10737461727465\
    642068617070656e6564f507c3d895ffbc3101010d73656e736f722d726561646572000d1061646f707465642068\
    617070656e6564f607cad895ffbc310200000e0f6578697465642068617070656e6564f707d1d895ffbc3100010d\
    73656e736f722d72656164657201067265616465720f136f6f6d2d6b696c6c65642068617070656e6564f807d8d8\
    95ffbc3101010d73656e736f722d7265616465720010116261636b2d6f66662068617070656e6564f907dfd895ff\
    bc3102000011106865616c7468792068617070656e6564fa07e6d895ffbc3100010d73656e736f722d7265616465\
    7201067265616465721212756e6865616c7468792068617070656e6564fb07edd895ffbc3101010d73656e736f72\
    2d72656164657200131073746f707065642068617070656e6564fc07f4d895ffbc31020000141072656d6f766564\
    2068617070656e65640c00";
const GOLDEN_PRESENCE: &str = "\
    02020467772d37005a0467772d37010561726d3634056c696e757811362e312e302d727069372d7270692d763802\
    8080808010a01f80800205302e312e300204726f6c6507676174657761790e73686f616c2e6465762f7369746507\
    706c616e742d3100";
const GOLDEN_HUB_WORKLOAD: &str = "\
    0d73656e736f722d72656164657202036170700673656e736f720e73686f616c2e6465762f746965720465646765\
    01030204726f6c650767617465776179047369746507706c616e742d310a166172636820696e202861726d36342c\
    2061726d76372900000002000561726d3634000561726d7637126f73206e6f74696e202877696e646f7773290001\
    0101000777696e646f77730e6b65726e656c203e3d20352e3130000202020102050a0b6367726f7570203d3d2032\
    0003020002020e6d656d6f7279203e203235364d690004020402808080800108637075203c3d20340005020302a0\
    1f0d70696473203c203130303030300006020502a08d06156167656e7456657273696f6e20213d20302e302e3900\
    0702010103000009106c6162656c2e677075206578697374730103677075031b6c6162656c2e73686f616c2e6465\
    762f6c6162206d697373696e67010d73686f616c2e6465762f6c61620401047261636b010662726f6b657202056e\
    6f697379056261746368005a000002012d000001010280cab5ee010204646174610006636f6e66696701112f6574\
    632f706c616e742f7265616465720306726561646572011372656769737472792e6c6f63616c3a3530303013706c\
    616e742f73656e736f722d7265616465720105312e342e3201477368613235363a61626162616261626162616261\
    62616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261\
    6261626162010b2f62696e2f72656164657203062d2d706f72740c2f6465762f74747955534230092d2d72617465\
    3d313002094c4f475f4c4556454c056465627567045349544507706c616e742d31010f2f7661722f6c69622f7265\
    6164657201e8070114018080802001fa010140010c2f6465762f74747955534230020464617461052f6461746100\
    06636f6e6669670b2f6574632f726561646572010100020b2f62696e2f726561646572072d2d636865636b0f0001\
    80cab5ee01031480e59a7701020d4341505f4e45545f41444d494e0c4341505f5359535f54494d4501094341505f\
    4d4b4e4f440003776562000d6c6962726172792f6e67696e780104312e3237000000000001650001808080100000\
    00010464617461152f7573722f73686172652f6e67696e782f68746d6c010101903f082f6865616c74687a0a0002\
    00050000000000000570726f6265000f6c6962726172792f62757379626f780001477368613235363a3066306630\
    66306630663066306630663066306630663066306630663066306630663066306630663066306630663066306630\
    6630663066306630663066306602072f62696e2f7368022d6301156e63202d6c6b202d702037303030202d652063\
    61740105454d50545900000000000000000102d8361e000500013c0000000001";
const GOLDEN_HUB_FACTS: &str = "\
    0561726d3634056c696e757811362e312e302d727069372d7270692d7638028080808010a01f80800205302e312e\
    300204726f6c6507676174657761790e73686f616c2e6465762f7369746507706c616e742d31";
const GOLDEN_HUB_EVENT: &str = "\
    eb07fdd795ffbc3100010d73656e736f722d7265616465720106726561646572031a63617061636974792d657863\
    65656465642068617070656e6564";
const GOLDEN_HUB_REFUSAL_EVENT: &str = "\
    00b8e795ffbc31010000152b737461747573203138343436373434303733373039353531363135206f662067772d\
    372072656675736564";
const GOLDEN_HUB_STATUS: &str = "\
    0467772d37ac02f0a204d0df95ffbc31020d73656e736f722d726561646572810108026330000000000000000000\
    0002633101010301019202000081d095ffbc310001f5d395ffbc3101a11f018080800101aab4de7501096d657373\
    616765203102633202020600000000000000026333030309010001120183d095ffbc310101f7d395ffbc3101a31f\
    018080800201d4e8bceb0101096d657373616765203302633404000c0000000000000002633505010f0101920200\
    0085d095ffbc310001f9d395ffbc3101a51f018080800301fe9c9be10201096d6573736167652035026336060212\
    00000000000000026337070315010001120087d095ffbc310001fbd395ffbc3101a71f018080800401a8d1f9d603\
    01096d65737361676520370b6c6f672d73686970706572070080808080048080808010e209808080801480808080\
    40000c";
const GOLDEN_AGENT_DESIRED: &str = "\
    030968656172746265617400000000000000010119001e000100000a000001066c6f67676572000f6c6962726172\
    792f62757379626f780001477368613235363a306630663066306630663066306630663066306630663066306630\
    6630663066306630663066306630663066306630663066306630663066306630663066306602072f62696e2f7368\
    022d6301156e63202d6c6b202d702037303030202d65206361740105454d50545900000000000000000000000000\
    010b6c6f672d7368697070657200000000000000010119001e000102000a000001066c6f67676572000f6c696272\
    6172792f62757379626f780001477368613235363a30663066306630663066306630663066306630663066306630\
    66306630663066306630663066306630663066306630663066306630663066306630663066306602072f62696e2f\
    7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d5054590000000000000000000000\
    0000070d73656e736f722d72656164657202036170700673656e736f720e73686f616c2e6465762f746965720465\
    64676501030204726f6c650767617465776179047369746507706c616e742d310a166172636820696e202861726d\
    36342c2061726d76372900000002000561726d3634000561726d7637126f73206e6f74696e202877696e646f7773\
    2900010101000777696e646f77730e6b65726e656c203e3d20352e3130000202020102050a0b6367726f7570203d\
    3d20320003020002020e6d656d6f7279203e203235364d690004020402808080800108637075203c3d2034000502\
    0302a01f0d70696473203c203130303030300006020502a08d06156167656e7456657273696f6e20213d20302e30\
    2e39000702010103000009106c6162656c2e677075206578697374730103677075031b6c6162656c2e73686f616c\
    2e6465762f6c6162206d697373696e67010d73686f616c2e6465762f6c61620401047261636b010662726f6b6572\
    02056e6f697379056261746368005a000002012d000001010280cab5ee010204646174610006636f6e6669670111\
    2f6574632f706c616e742f7265616465720306726561646572011372656769737472792e6c6f63616c3a35303030\
    13706c616e742f73656e736f722d7265616465720105312e342e3201477368613235363a61626162616261626162\
    61626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162\
    6162616261626162010b2f62696e2f72656164657203062d2d706f72740c2f6465762f74747955534230092d2d72\
    6174653d313002094c4f475f4c4556454c056465627567045349544507706c616e742d31010f2f7661722f6c6962\
    2f72656164657201e8070114018080802001fa010140010c2f6465762f74747955534230020464617461052f6461\
    74610006636f6e6669670b2f6574632f726561646572010100020b2f62696e2f726561646572072d2d636865636b\
    0f000180cab5ee01031480e59a7701020d4341505f4e45545f41444d494e0c4341505f5359535f54494d45010943\
    41505f4d4b4e4f440003776562000d6c6962726172792f6e67696e780104312e3237000000000001650001808080\
    10000000010464617461152f7573722f73686172652f6e67696e782f68746d6c010101903f082f6865616c74687a\
    0a000200050000000000000570726f6265000f6c6962726172792f62757379626f780001477368613235363a3066\
    30663066306630663066306630663066306630663066306630663066306630663066306630663066306630663066\
    3066306630663066306630663066306602072f62696e2f7368022d6301156e63202d6c6b202d702037303030202d\
    65206361740105454d50545900000000000000000102d8361e000500013c00000000018101";
const GOLDEN_IDENTITY_READER: &str = "\
    06726561646572011372656769737472792e6c6f63616c3a3530303013706c616e742f73656e736f722d72656164\
    65720105312e342e3201477368613235363a61626162616261626162616261626162616261626162616261626162\
    616261626162616261626162616261626162616261626162616261626162616261626162010b2f62696e2f726561\
    64657203062d2d706f72740c2f6465762f74747955534230092d2d726174653d313002094c4f475f4c4556454c05\
    6465627567045349544507706c616e742d31010f2f7661722f6c69622f72656164657201e8070114018080802001\
    fa010140010c2f6465762f74747955534230020464617461052f646174610006636f6e6669670b2f6574632f7265\
    61646572010100020b2f62696e2f726561646572072d2d636865636b0f000180cab5ee01031480e59a7701020d43\
    41505f4e45545f41444d494e0c4341505f5359535f54494d4501094341505f4d4b4e4f4400010204646174610006\
    636f6e66696701112f6574632f706c616e742f72656164657201";
const GOLDEN_IDENTITY_WEB: &str = "\
    03776562000d6c6962726172792f6e67696e780104312e3237000000000001650001808080100000000104646174\
    61152f7573722f73686172652f6e67696e782f68746d6c010101903f082f6865616c74687a0a0002000500000000\
    0000010204646174610006636f6e66696701112f6574632f706c616e742f72656164657201";
const GOLDEN_IDENTITY_PROBE: &str = "\
    0570726f6265000f6c6962726172792f62757379626f780001477368613235363a30663066306630663066306630\
    66306630663066306630663066306630663066306630663066306630663066306630663066306630663066306630\
    663066306602072f62696e2f7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d5054\
    5900000000000000000102d8361e000500013c0000000001010204646174610006636f6e66696701112f6574632f\
    706c616e742f72656164657201";
const GOLDEN_IDENTITY_POD: &str = "\
    010204646174610006636f6e66696701112f6574632f706c616e742f726561646572";
const GOLDEN_DIGEST_INPUT: &str = "\
    030968656172746265617400000000000000010119001e000100000a000001066c6f67676572000f6c6962726172\
    792f62757379626f780001477368613235363a306630663066306630663066306630663066306630663066306630\
    6630663066306630663066306630663066306630663066306630663066306630663066306602072f62696e2f7368\
    022d6301156e63202d6c6b202d702037303030202d65206361740105454d50545900000000000000000000000000\
    010b6c6f672d7368697070657200000000000000010119001e000102000a000001066c6f67676572000f6c696272\
    6172792f62757379626f780001477368613235363a30663066306630663066306630663066306630663066306630\
    66306630663066306630663066306630663066306630663066306630663066306630663066306602072f62696e2f\
    7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d5054590000000000000000000000\
    0000070d73656e736f722d72656164657202036170700673656e736f720e73686f616c2e6465762f746965720465\
    64676501030204726f6c650767617465776179047369746507706c616e742d310a166172636820696e202861726d\
    36342c2061726d76372900000002000561726d3634000561726d7637126f73206e6f74696e202877696e646f7773\
    2900010101000777696e646f77730e6b65726e656c203e3d20352e3130000202020102050a0b6367726f7570203d\
    3d20320003020002020e6d656d6f7279203e203235364d690004020402808080800108637075203c3d2034000502\
    0302a01f0d70696473203c203130303030300006020502a08d06156167656e7456657273696f6e20213d20302e30\
    2e39000702010103000009106c6162656c2e677075206578697374730103677075031b6c6162656c2e73686f616c\
    2e6465762f6c6162206d697373696e67010d73686f616c2e6465762f6c61620401047261636b010662726f6b6572\
    02056e6f697379056261746368005a000002012d000001010280cab5ee010204646174610006636f6e6669670111\
    2f6574632f706c616e742f7265616465720306726561646572011372656769737472792e6c6f63616c3a35303030\
    13706c616e742f73656e736f722d7265616465720105312e342e3201477368613235363a61626162616261626162\
    61626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162\
    6162616261626162010b2f62696e2f72656164657203062d2d706f72740c2f6465762f74747955534230092d2d72\
    6174653d313002094c4f475f4c4556454c056465627567045349544507706c616e742d31010f2f7661722f6c6962\
    2f72656164657201e8070114018080802001fa010140010c2f6465762f74747955534230020464617461052f6461\
    74610006636f6e6669670b2f6574632f726561646572010100020b2f62696e2f726561646572072d2d636865636b\
    0f000180cab5ee01031480e59a7701020d4341505f4e45545f41444d494e0c4341505f5359535f54494d45010943\
    41505f4d4b4e4f440003776562000d6c6962726172792f6e67696e780104312e3237000000000001650001808080\
    10000000010464617461152f7573722f73686172652f6e67696e782f68746d6c010101903f082f6865616c74687a\
    0a000200050000000000000570726f6265000f6c6962726172792f62757379626f780001477368613235363a3066\
    30663066306630663066306630663066306630663066306630663066306630663066306630663066306630663066\
    3066306630663066306630663066306602072f62696e2f7368022d6301156e63202d6c6b202d702037303030202d\
    65206361740105454d50545900000000000000000102d8361e000500013c0000000001810102a5a5a5a5a5a5a5a5\
    a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5000102030405060708090a0b0c0d0e0f101112131415\
    161718191a1b1c1d1e1f";
const GOLDEN_RPC_REQUESTS: [&str; 12] = [
    "\
    02030467772d37001c01000d73656e736f722d726561646572010672656164657201c8010100",
    "\
    02030467772d37001e20010d73656e736f722d7265616465720003026c73022d6c052f6461746100",
    "02030467772d37000380080200",
    "02030467772d3700048080020300",
    "02030467772d3700048080400400",
    "\
    02030467772d3700c0018080801005010b6c6f672d7368697070657200000000000000010119001e000102000a00\
    0001066c6f67676572000f6c6962726172792f62757379626f780001477368613235363a30663066306630663066\
    30663066306630663066306630663066306630663066306630663066306630663066306630663066306630663066\
    306630663066306602072f62696e2f7368022d6301156e63202d6c6b202d702037303030202d6520636174010545\
    4d505459000000000000000000000000000200",
    "02030467772d3700128080808004060b6c6f672d7368697070657200",
    "02030467772d3700078080808080010700",
    "\
    02030467772d37001880808080802008102f746d702f62757379626f782e74617200",
    "\
    02030467772d37001d8080808080800809146c6962726172792f62757379626f783a312e333600",
    "02030467772d37000980808080808080020a00",
    "02030467772d37000a80808080808080400b2900",
];
const GOLDEN_RPC_RESPONSES: [&str; 9] = [
    "\
    02040467772d37001fffffffffffffffffff0100126c696e65206f6e650a6c696e652074776f0a0100",
    "\
    02040467772d37002efeffffffffffffffff01010108746f74616c20300a186c733a202f6e6f70653a204e6f2073\
    7563682066696c650a00",
    "\
    02040467772d37002dfdffffffffffffffff0102216e6f64652067772d370a646573697265642067656e65726174\
    696f6e203330300a00",
    "02040467772d37000bfcffffffffffffffff010300",
    "\
    02040467772d370038fbffffffffffffffff01042c6e6f20776f726b6c6f6164206078603a206073686f616c2d61\
    67656e7420707360206c69737473207468656d00",
    "\
    02040467772d3700f601faffffffffffffffff01050467772d37ac02f0a204d0df95ffbc31010d73656e736f722d\
    7265616465728101020263300000000000000000000002633101010301019202000081d095ffbc310001f5d395ff\
    bc3101a11f018080800101aab4de7501096d657373616765203180808080048080808010e2098080808014808080\
    804002e807e8d795ffbc3100010d73656e736f722d726561646572010672656164657200166167656e742d737461\
    727465642068617070656e6564e907efd795ffbc3101010d73656e736f722d72656164657200011f646573697265\
    642d73746174652d61636365707465642068617070656e65640c00",
    "\
    02040467772d370027f9ffffffffffffffff010609020d2b206c6f672d736869707065720b7e2068656172746265\
    617400",
    "\
    02040467772d3700d101f8ffffffffffffffff010702146c6962726172792f62757379626f783a312e3336477368\
    613235363a6364636463646364636463646364636463646364636463646364636463646364636463646364636463\
    646364636463646364636463646364636463646364636487ad4b0219706c616e742f73656e736f722d7265616465\
    723a312e342e32477368613235363a65666566656665666566656665666566656665666566656665666566656665\
    666566656665666566656665666566656665666566656665666566656665666566000000",
    "\
    02040467772d37001cf7ffffffffffffffff01081072656d6f766564203220696d6167657300",
];

const GOLDEN_V3_PRESENCE: &str = "\
    03020467772d37005d0467772d37010561726d3634056c696e757811362e312e302d727069372d7270692d7638028080\
    808010a01f80800205302e312e300204726f6c6507676174657761790e73686f616c2e6465762f7369746507706c616e\
    742d3102020300";

const GOLDEN_V2_PRESENCE_ANNOUNCING: &str = "\
    02020467772d3700760467772d37010561726d3634056c696e757811362e312e302d727069372d7270692d7638028080\
    808010a01f80800205302e312e300304726f6c6507676174657761790e73686f616c2e6465762f7369746507706c616e\
    742d311773686f616c2e6465762f776972652d76657273696f6e7303322e3300";

const GOLDEN_HUB_FACTS_V3: &str = "\
    0561726d3634056c696e757811362e312e302d727069372d7270692d7638028080808010a01f80800205302e312e3002\
    04726f6c6507676174657761790e73686f616c2e6465762f7369746507706c616e742d31020203";

const GOLDEN_V3_DESIRED: &str = "\
    03000467772d37ac02e90d0467772d37ac0203096865617274626561740000000000000001011901191e00015a000114\
    00000a000001066c6f67676572000f6c6962726172792f62757379626f780001477368613235363a3066306630663066\
    306630663066306630663066306630663066306630663066306630663066306630663066306630663066306630663066\
    306630663066306602072f62696e2f7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d50\
    545900000000000000000000000000010b6c6f672d736869707065720000000000000001011900001e0001d804000001\
    02000a000001066c6f67676572000f6c6962726172792f62757379626f780001477368613235363a3066306630663066\
    306630663066306630663066306630663066306630663066306630663066306630663066306630663066306630663066\
    306630663066306602072f62696e2f7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d50\
    545900000000000000000000000000070d73656e736f722d72656164657202036170700673656e736f720e73686f616c\
    2e6465762f74696572046564676501030204726f6c650767617465776179047369746507706c616e742d310a16617263\
    6820696e202861726d36342c2061726d76372900000002000561726d3634000561726d7637126f73206e6f74696e2028\
    77696e646f77732900010101000777696e646f77730e6b65726e656c203e3d20352e3130000202020102050a0b636772\
    6f7570203d3d20320003020002020e6d656d6f7279203e203235364d690004020402808080800108637075203c3d2034\
    0005020302a01f0d70696473203c203130303030300006020502a08d06156167656e7456657273696f6e20213d20302e\
    302e39000702010103000009106c6162656c2e677075206578697374730103677075031b6c6162656c2e73686f616c2e\
    6465762f6c6162206d697373696e67010d73686f616c2e6465762f6c61620401047261636b010662726f6b657202056e\
    6f697379056261746368005a00000200012d0000d80400000101010280cab5ee010204646174610006636f6e66696701\
    112f6574632f706c616e742f7265616465720306726561646572011372656769737472792e6c6f63616c3a3530303013\
    706c616e742f73656e736f722d7265616465720105312e342e3201477368613235363a61626162616261626162616261\
    626162616261626162616261626162616261626162616261626162616261626162616261626162616261626162616261\
    626162010b2f62696e2f72656164657203062d2d706f72740c2f6465762f74747955534230092d2d726174653d313002\
    094c4f475f4c4556454c056465627567045349544507706c616e742d31010f2f7661722f6c69622f72656164657201e8\
    070114018080802001fa010140010c2f6465762f74747955534230020464617461052f646174610006636f6e6669670b\
    2f6574632f726561646572010100020b2f62696e2f726561646572072d2d636865636b0f000180cab5ee01031480e59a\
    7701020d4341505f4e45545f41444d494e0c4341505f5359535f54494d4501094341505f4d4b4e4f440003776562000d\
    6c6962726172792f6e67696e780104312e323700000000000165000180808010000000010464617461152f7573722f73\
    686172652f6e67696e782f68746d6c010101903f082f6865616c74687a0a000200050000000000000570726f6265000f\
    6c6962726172792f62757379626f780001477368613235363a3066306630663066306630663066306630663066306630\
    663066306630663066306630663066306630663066306630663066306630663066306630663066306602072f62696e2f\
    7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d50545900000000000000000102d8361e\
    000500013c0000000001810102a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5a5000102\
    030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f0105302e322e300761617263683634abababab\
    abababababababababababababababababababababababababababab80d0d00348515151515151515151515151515151\
    515151515151515151515151515151515151515151515151515151515151515151515151515151515151515151515151\
    5151515151515151511868747470733a2f2f6875622e6578616d706c653a37343430010e0e0e0e0e0e0e0e0e0e0e0e0e\
    0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0e0148525252525252525252525252525252525252525252525252525252\
    525252525252525252525252525252525252525252525252525252525252525252525252525252525252525252010530\
    2e312e3000";

const GOLDEN_HUB_WORKLOAD_V3: &str = "\
    096865617274626561740000000000000001011901191e00015a00011400000a000001066c6f67676572000f6c69\
    62726172792f62757379626f780001477368613235363a3066306630663066306630663066306630663066306630\
    663066306630663066306630663066306630663066306630663066306630663066306630663066306602072f6269\
    6e2f7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d505459000000000000000000\
    00000000";

const GOLDEN_AGENT_DESIRED_V3: &str = "\
    03096865617274626561740000000000000001011901191e00015a00011400000a000001066c6f67676572000f6c\
    6962726172792f62757379626f780001477368613235363a30663066306630663066306630663066306630663066\
    30663066306630663066306630663066306630663066306630663066306630663066306630663066306602072f62\
    696e2f7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d5054590000000000000000\
    0000000000010b6c6f672d736869707065720000000000000001011900001e0001d80400000102000a000001066c\
    6f67676572000f6c6962726172792f62757379626f780001477368613235363a3066306630663066306630663066\
    30663066306630663066306630663066306630663066306630663066306630663066306630663066306630663066\
    3066306602072f62696e2f7368022d6301156e63202d6c6b202d702037303030202d65206361740105454d505459\
    00000000000000000000000000070d73656e736f722d72656164657202036170700673656e736f720e73686f616c\
    2e6465762f74696572046564676501030204726f6c650767617465776179047369746507706c616e742d310a1661\
    72636820696e202861726d36342c2061726d76372900000002000561726d3634000561726d7637126f73206e6f74\
    696e202877696e646f77732900010101000777696e646f77730e6b65726e656c203e3d20352e3130000202020102\
    050a0b6367726f7570203d3d20320003020002020e6d656d6f7279203e203235364d690004020402808080800108\
    637075203c3d20340005020302a01f0d70696473203c203130303030300006020502a08d06156167656e74566572\
    73696f6e20213d20302e302e39000702010103000009106c6162656c2e677075206578697374730103677075031b\
    6c6162656c2e73686f616c2e6465762f6c6162206d697373696e67010d73686f616c2e6465762f6c616204010472\
    61636b010662726f6b657202056e6f697379056261746368005a00000200012d0000d80400000101010280cab5ee\
    010204646174610006636f6e66696701112f6574632f706c616e742f726561646572030672656164657201137265\
    6769737472792e6c6f63616c3a3530303013706c616e742f73656e736f722d7265616465720105312e342e320147\
    7368613235363a616261626162616261626162616261626162616261626162616261626162616261626162616261\
    62616261626162616261626162616261626162616261626162010b2f62696e2f72656164657203062d2d706f7274\
    0c2f6465762f74747955534230092d2d726174653d313002094c4f475f4c4556454c056465627567045349544507\
    706c616e742d31010f2f7661722f6c69622f72656164657201e8070114018080802001fa010140010c2f6465762f\
    74747955534230020464617461052f646174610006636f6e6669670b2f6574632f726561646572010100020b2f62\
    696e2f726561646572072d2d636865636b0f000180cab5ee01031480e59a7701020d4341505f4e45545f41444d49\
    4e0c4341505f5359535f54494d4501094341505f4d4b4e4f440003776562000d6c6962726172792f6e67696e7801\
    04312e323700000000000165000180808010000000010464617461152f7573722f73686172652f6e67696e782f68\
    746d6c010101903f082f6865616c74687a0a000200050000000000000570726f6265000f6c6962726172792f6275\
    7379626f780001477368613235363a30663066306630663066306630663066306630663066306630663066306630\
    66306630663066306630663066306630663066306630663066306630663066306602072f62696e2f7368022d6301\
    156e63202d6c6b202d702037303030202d65206361740105454d50545900000000000000000102d8361e00050001\
    3c00000000018101";

const GOLDEN_V3_DIGEST_FIELDS: &str = "\
    00010000000401005a0000020000000401000114000300000003010019";

const GOLDEN_V3_STATUS: &str = "\
    03010467772d37f0a204a50b0467772d37ac02f0a204d0df95ffbc31020d73656e736f722d7265616465728101080263\
    300000000000000000000002633101010301019202000081d095ffbc310001f5d395ffbc3101a11f018080800101aab4\
    de7501096d657373616765203102633202020600000000000000026333030309010001120183d095ffbc310101f7d395\
    ffbc3101a31f018080800201d4e8bceb0101096d657373616765203302633404000c0000000000000002633505010f01\
    019202000085d095ffbc310001f9d395ffbc3101a51f018080800301fe9c9be10201096d657373616765203502633606\
    021200000000000000026337070315010001120087d095ffbc310001fbd395ffbc3101a71f018080800401a8d1f9d603\
    01096d6573736167652037018201010b6c6f672d7368697070657207000080808080048080808010e209808080801480\
    8080804017e807e8d795ffbc3100010d73656e736f722d726561646572010672656164657200166167656e742d737461\
    727465642068617070656e6564e907efd795ffbc3101010d73656e736f722d72656164657200011f646573697265642d\
    73746174652d61636365707465642068617070656e6564ea07f6d795ffbc31020000021f646573697265642d73746174\
    652d72656a65637465642068617070656e6564eb07fdd795ffbc3100010d73656e736f722d7265616465720106726561\
    646572031a63617061636974792d65786365656465642068617070656e6564ec0784d895ffbc3101010d73656e736f72\
    2d726561646572000419776f726b6c6f61642d726566757365642068617070656e6564ed078bd895ffbc310200000516\
    696d6167652d70756c6c696e672068617070656e6564ee0792d895ffbc3100010d73656e736f722d7265616465720106\
    7265616465720615696d6167652d70756c6c65642068617070656e6564ef0799d895ffbc3101010d73656e736f722d72\
    656164657200071a696d6167652d70756c6c2d6661696c65642068617070656e6564f007a0d895ffbc31020000081769\
    6d6167652d72656a65637465642068617070656e6564f107a7d895ffbc3100010d73656e736f722d7265616465720106\
    726561646572091d6469736b2d6275646765742d65786365656465642068617070656e6564f207aed895ffbc3101010d\
    73656e736f722d726561646572000a10637265617465642068617070656e6564f307b5d895ffbc310200000b16637265\
    6174652d6661696c65642068617070656e6564f407bcd895ffbc3100010d73656e736f722d7265616465720106726561\
    6465720c10737461727465642068617070656e6564f507c3d895ffbc3101010d73656e736f722d726561646572000d10\
    61646f707465642068617070656e6564f607cad895ffbc310200000e0f6578697465642068617070656e6564f707d1d8\
    95ffbc3100010d73656e736f722d72656164657201067265616465720f136f6f6d2d6b696c6c65642068617070656e65\
    64f807d8d895ffbc3101010d73656e736f722d7265616465720010116261636b2d6f66662068617070656e6564f907df\
    d895ffbc3102000011106865616c7468792068617070656e6564fa07e6d895ffbc3100010d73656e736f722d72656164\
    657201067265616465721212756e6865616c7468792068617070656e6564fb07edd895ffbc3101010d73656e736f722d\
    72656164657200131073746f707065642068617070656e6564fc07f4d895ffbc31020000141072656d6f766564206861\
    7070656e6564cf0fb8e795ffbc3101000017207468652075706461746520746f206167656e7420302e322e3020666169\
    6c6564d00fa0ef95ffbc3101010d73656e736f722d726561646572001624726f6c6c6564206261636b2066726f6d2072\
    65766973696f6e2031333020746f203132390c0105302e322e300225697420646964206e6f7420736179206974207761\
    732072656164792077697468696e20326d00";
const GOLDEN_HUB_STATUS_V3: &str = "\
    0467772d37ac02f0a204d0df95ffbc31020d73656e736f722d7265616465728101080263300000000000000000000002\
    633101010301019202000081d095ffbc310001f5d395ffbc3101a11f018080800101aab4de7501096d65737361676520\
    3102633202020600000000000000026333030309010001120183d095ffbc310101f7d395ffbc3101a31f018080800201\
    d4e8bceb0101096d657373616765203302633404000c0000000000000002633505010f01019202000085d095ffbc3100\
    01f9d395ffbc3101a51f018080800301fe9c9be10201096d657373616765203502633606021200000000000000026337\
    070315010001120087d095ffbc310001fbd395ffbc3101a71f018080800401a8d1f9d60301096d657373616765203701\
    8201010b6c6f672d7368697070657207000080808080048080808010e20980808080148080808040000c0105302e322e\
    300225697420646964206e6f7420736179206974207761732072656164792077697468696e20326d";
const GOLDEN_HUB_EVENT_V3: &str = "\
    d00fa0ef95ffbc3101010d73656e736f722d726561646572001624726f6c6c6564206261636b2066726f6d207265\
    766973696f6e2031333020746f20313239";
