//! The wire protocol between hub and agents: the messages that travel over MQTT, and the
//! versioned, signable [`Envelope`] around each of them.
//!
//! # On the wire
//!
//! Every MQTT payload is one byte, its wire version (one of [`SUPPORTED_WIRE_VERSIONS`]: see
//! *Mixed versions* below), followed by the postcard encoding of that version's [`Envelope`]. The envelope
//! names the [`MessageKind`], the node the message is for or from, a generation number, the
//! message itself in the same version, and an optional signature over
//! [`Envelope::signed_bytes`].
//!
//! ```text
//! hub   --[DesiredState]-->  {prefix}/node/{id}/desired   (retained, signed)
//! agent --[NodeStatus]---->  {prefix}/node/{id}/status
//! agent --[Presence]------>  {prefix}/node/{id}/presence  (retained, also the last will)
//! hub   --[RpcRequest]---->  {prefix}/node/{id}/rpc/req
//! agent --[RpcResponse]--->  {prefix}/node/{id}/rpc/resp
//! ```
//!
//! # Mixed versions
//!
//! A fleet runs several releases at once, for weeks. Each build reads and writes two wire
//! versions, [`WIRE_VERSION`] and the one before, so the hub and the agents can be upgraded in
//! any order, one at a time. Who writes which:
//!
//! - **The agent announces** the versions it reads in its presence (`NodeFacts::wire_versions`),
//!   and writes presence (and its last will) in [`OLDEST_WIRE_VERSION`], since it cannot know
//!   yet what the hub reads. Version 2 has no field for the list, so there it travels as the
//!   label [`WIRE_VERSIONS_LABEL`] (`2.3`), which a hub of release 0.1.0 keeps as a label and
//!   a newer hub takes out of the labels.
//! - **The hub writes each node** desired states and rpc requests in [`version_for`] what the
//!   node announced: the newest both read. An agent that announced nothing is of release
//!   0.1.0 and reads version 2. A node that reads none of the hub's versions gets nothing, and
//!   the hub says which to upgrade. A node that starts reading a newer version keeps its
//!   published state until something changes (nothing is republished for an upgrade); one
//!   that no longer reads the version its state is in gets it again in one it reads.
//! - **The agent answers in the hub's version**: statuses and rpc responses follow the version
//!   of the hub's newest verified desired state or request (a hub writes only what it reads),
//!   and [`OLDEST_WIRE_VERSION`] until one arrives.
//!
//! # Invariants
//!
//! - Decoding never panics, whatever the bytes, and never reads more than [`Limits`] allows.
//! - A message that [`encode`] accepts, [`decode`] accepts under the same [`Limits`]: a
//!   publisher never sends what its receiver would drop.
//! - [`decode`] does not verify signatures. Whoever acts on desired state checks
//!   [`Envelope::signature`] against [`Envelope::signed_bytes`] first.
//! - Nothing outside the frozen `vN` modules calls postcard: the domain types here and in
//!   `manifest` and `node` are never encoded directly (`model/tests/encodings.rs` fails if
//!   anything in the hub, the agent or the model does).
//!
//! # Compatibility: the rule
//!
//! postcard is not self-describing: a field is known by its position, a variant by its index.
//! So every shape that leaves a process has a version, and each version's shapes are frozen
//! copies of the domain types in a module of their own, `vN/`, with explicit conversions both
//! ways. [`encode`] and [`decode`] take and return the domain types; the version byte picks
//! the module in between.
//!
//! **What may change without a new version.** Nothing in a frozen `vN/` module, ever: not a
//! field, its type, its place, a variant's place, a serde attribute. The domain types
//! (`Workload`, `NodeStatus`, ...) change freely, provided the conversions still produce the
//! same `vN` bytes from them and still read every `vN` value: `model/tests/golden.rs` holds
//! those bytes for every message kind, every stored row kind and both identity hashes, and
//! must never be edited.
//!
//! **What needs a new version.** Any change of shape: a new field, a new variant, a removed
//! or retyped one. It is a new module `vN+1/` with its types and conversions, a new arm in
//! every `match version` (envelope, payload, stored rows), [`WIRE_VERSION`] set to `N+1`,
//! and [`SUPPORTED_WIRE_VERSIONS`] listing `N` and `N+1`: hub and agent both read the
//! version they write and the one before, so either side can be upgraded first. `vN` stays
//! exactly as it is; stored rows keep the format number they were written with (see
//! [`stored`]), and a store reads every format it may still hold.
//!
//! **How to add an optional field** (a new `Container` setting, say): add it to the domain
//! type with a default that means "as before"; copy the `vN` types into `vN+1` with the
//! field; convert domain to `vN+1` as is, and domain to `vN` by dropping the field **only
//! when it holds its default**. When it does not, the conversion to `vN` refuses with an
//! error that names the field, and whoever would send it (the hub placing a workload on a
//! node that only speaks `vN`) turns that into a placement reason instead of sending a
//! workload the node would run wrongly. Reading `vN` gives the field its default. The
//! container and desired-state identities take the field only when it is not the default
//! (see [`identity`]), so adding it restarts nothing and republishes nothing.
//!
//! Enum variants here are append-only in the domain as well: a new variant is a new shape,
//! hence a new version whose conversion to the older one refuses the variant. (`v2` records
//! the one exception made before this rule, `EventReason::StatusRefused`, which never
//! crosses the wire; see `v2/mod.rs`.)
//!
//! For the same reason no frozen type may use `skip_serializing_if`, `flatten`, or untagged
//! or internally tagged enums: their bytes would depend on the values.

mod desired;
pub mod desired_verdict;
mod envelope;
pub mod identity;
mod presence;
mod rpc;
pub mod signing;
mod status;
pub mod stored;
mod v2;
mod v3;

pub use desired::{DesiredState, DesiredWorkload, MAX_SIGNING_KEYS};
pub use envelope::{
    decode, encode, encode_in, Envelope, Message, MessageKind, MAX_SIGNATURE_BYTES,
};
pub use presence::Presence;
pub use rpc::{ImageSummary, RpcRequest, RpcRequestBody, RpcResponse, RpcResponseBody};
pub use status::{
    AgentUpdate, AgentUpdateState, ContainerState, ContainerStatus, Event, EventReason, ExitInfo,
    Health, NodeStatus, NodeUsage, RolledBack, Severity, WorkloadStatus, MAX_UPDATE_REASON_CHARS,
};

use std::collections::BTreeMap;
use std::fmt;

use crate::manifest::names::check_dns_label;

/// The newest wire version this build writes, to peers that read it (see [`version_for`]).
/// Release 0.1.0 wrote version 2; version 3 adds the agent's wire versions to node facts and
/// two rollout settings to workloads (see `v3/mod.rs`).
pub const WIRE_VERSION: u8 = 3;

/// The wire versions this build reads and writes, oldest first: [`WIRE_VERSION`] and the
/// version before it, so that either side of a link can be upgraded first.
pub const SUPPORTED_WIRE_VERSIONS: &[u8] = &[2, 3];

/// The oldest wire version this build writes: what it sends before it knows what its peer
/// reads (the agent's presence, its first statuses).
pub const OLDEST_WIRE_VERSION: u8 = SUPPORTED_WIRE_VERSIONS[0];

/// The wire versions a peer that announced none reads: release 0.1.0 read version 2 only.
pub const UNANNOUNCED_WIRE_VERSIONS: &[u8] = &[2];

/// The label that carries an agent's wire versions in version 2, which has no field for them
/// (version 3 has: `NodeFacts::wire_versions`). Its value is the versions joined by dots, oldest
/// first (`2.3`). A hub of release 0.1.0 shows it as one more label; a newer one takes it out
/// of the labels when it reads the facts, so selectors never see it.
pub const WIRE_VERSIONS_LABEL: &str = "shoal.dev/wire-versions";

/// The wire version to write to a peer that reads `theirs` (an agent's announced
/// `NodeFacts::wire_versions`, empty for release 0.1.0): the newest version both sides speak.
/// `None` when they share none; the caller says which side to upgrade.
pub fn version_for(theirs: &[u8]) -> Option<u8> {
    let theirs = read_by(theirs);
    SUPPORTED_WIRE_VERSIONS
        .iter()
        .rev()
        .find(|v| theirs.contains(v))
        .copied()
}

/// The wire versions a peer that announced `theirs` reads: those, or
/// [`UNANNOUNCED_WIRE_VERSIONS`] when it announced none.
pub fn read_by(theirs: &[u8]) -> &[u8] {
    if theirs.is_empty() {
        UNANNOUNCED_WIRE_VERSIONS
    } else {
        theirs
    }
}

/// Announced wire versions must be ascending, without duplicates, none 0 or 1 (there were
/// never such versions on the wire), and few.
pub(crate) fn check_wire_versions(versions: &[u8]) -> Result<(), String> {
    const MAX_ANNOUNCED: usize = 16;
    if versions.len() > MAX_ANNOUNCED {
        return Err(format!(
            "{} wire versions are announced, more than the {MAX_ANNOUNCED} allowed",
            versions.len()
        ));
    }
    if let Some(v) = versions.iter().find(|v| **v < 2) {
        return Err(format!("wire version {v} never existed"));
    }
    if !versions.windows(2).all(|w| w[0] < w[1]) {
        return Err(format!(
            "the wire versions {} are not ascending and distinct",
            list_versions(versions)
        ));
    }
    Ok(())
}

/// `labels` with the wire versions as [`WIRE_VERSIONS_LABEL`] (version 2's node facts).
pub(crate) fn wire_versions_into_labels(
    labels: &BTreeMap<String, String>,
    versions: &[u8],
) -> BTreeMap<String, String> {
    let mut labels = labels.clone();
    labels.remove(WIRE_VERSIONS_LABEL);
    if !versions.is_empty() {
        let text: Vec<String> = versions.iter().map(u8::to_string).collect();
        labels.insert(WIRE_VERSIONS_LABEL.to_string(), text.join("."));
    }
    labels
}

/// Takes [`WIRE_VERSIONS_LABEL`] out of version 2's labels: the labels left, and the versions
/// (empty when the label is absent, as from release 0.1.0).
pub(crate) fn wire_versions_from_labels(
    mut labels: BTreeMap<String, String>,
) -> Result<(BTreeMap<String, String>, Vec<u8>), String> {
    let Some(text) = labels.remove(WIRE_VERSIONS_LABEL) else {
        return Ok((labels, Vec::new()));
    };
    let bad = || {
        format!(
            "the label `{WIRE_VERSIONS_LABEL}` must list wire versions joined by dots (like \
             `2.3`), not `{text}`"
        )
    };
    let versions = text
        .split('.')
        .map(|part| part.parse::<u8>().map_err(|_| bad()))
        .collect::<Result<Vec<u8>, String>>()?;
    check_wire_versions(&versions).map_err(|e| format!("{}: {e}", bad()))?;
    Ok((labels, versions))
}

/// The bytes one event adds to a status in [`WIRE_VERSION`] (the agent packs statuses under
/// their size limit by it).
pub fn status_event_len(event: &Event) -> usize {
    v2::encoded_len(&v2::Event::from(event))
}

/// `version 2`, `versions 2 and 3`.
pub(crate) fn versions_phrase(versions: &[u8]) -> String {
    match versions {
        [one] => format!("version {one}"),
        _ => format!("versions {}", list_versions(versions)),
    }
}

/// `2`, `2 and 3`, `1, 2 and 3`.
pub(crate) fn list_versions(versions: &[u8]) -> String {
    let text: Vec<String> = versions.iter().map(u8::to_string).collect();
    match text.split_last() {
        None => "none".into(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    }
}

/// The largest message, in bytes on the wire (version byte included), that is sent or accepted,
/// per kind. Both sides of a link must use the same limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub desired: usize,
    pub status: usize,
    pub presence: usize,
    pub rpc_request: usize,
    pub rpc_response: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            desired: 1024 * 1024,
            status: 256 * 1024,
            presence: 16 * 1024,
            rpc_request: 1024 * 1024,
            rpc_response: 1024 * 1024,
        }
    }
}

impl Limits {
    /// The limit for messages of `kind`.
    pub fn for_kind(&self, kind: MessageKind) -> usize {
        match kind {
            MessageKind::Desired => self.desired,
            MessageKind::Status => self.status,
            MessageKind::Presence => self.presence,
            MessageKind::RpcRequest => self.rpc_request,
            MessageKind::RpcResponse => self.rpc_response,
        }
    }
}

/// Which part of a message failed to decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Envelope,
    Payload(MessageKind),
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Envelope => f.write_str("envelope"),
            Part::Payload(kind) => write!(f, "{kind} payload"),
        }
    }
}

/// Why a message could not be encoded or decoded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("the message is empty")]
    Empty,
    #[error(
        "wire version {seen} is not supported: this build speaks {}; \
         upgrade whichever of the hub and the agent is older",
        versions_phrase(supported)
    )]
    UnsupportedVersion { seen: u8, supported: &'static [u8] },
    #[error("the {kind} message is {size} bytes, over the limit of {limit} bytes")]
    TooLarge {
        kind: MessageKind,
        size: usize,
        limit: usize,
    },
    #[error("expected a {expected} message but got a {found} message")]
    WrongKind {
        expected: MessageKind,
        found: MessageKind,
    },
    #[error("cannot decode the {part}: {source}")]
    Malformed {
        part: Part,
        #[source]
        source: postcard::Error,
    },
    #[error("the {part} is followed by {count} unexpected bytes")]
    TrailingBytes { part: Part, count: usize },
    #[error("cannot encode the {kind} message: {source}")]
    Encode {
        kind: MessageKind,
        #[source]
        source: postcard::Error,
    },
    #[error("the envelope is for node `{envelope}` but the {kind} inside is for node `{message}`")]
    NodeMismatch {
        kind: MessageKind,
        envelope: String,
        message: String,
    },
    #[error("the envelope carries generation {envelope} but the {kind} inside carries {message}")]
    GenerationMismatch {
        kind: MessageKind,
        envelope: u64,
        message: u64,
    },
    #[error("the signature is {len} bytes long, more than the {max} bytes allowed")]
    SignatureTooLong { len: usize, max: usize },
    #[error("invalid {kind}: {reason}")]
    Invalid { kind: MessageKind, reason: String },
}

impl WireError {
    /// A message in a version this build does not read.
    pub(crate) fn unsupported(seen: u8) -> WireError {
        WireError::UnsupportedVersion {
            seen,
            supported: SUPPORTED_WIRE_VERSIONS,
        }
    }

    /// Version-2 bytes of `part` that did not decode.
    fn from_v2(part: Part, error: v2::DecodeError) -> WireError {
        match error {
            v2::DecodeError::Malformed(source) => WireError::Malformed { part, source },
            v2::DecodeError::Trailing(count) => WireError::TrailingBytes { part, count },
        }
    }
}

/// Checks a name that the receiver will use as a path component, cgroup or topic level.
fn check_name(kind: MessageKind, what: &str, name: &str) -> Result<(), WireError> {
    check_dns_label(name).map_err(|reason| WireError::Invalid {
        kind,
        reason: format!("{what} {reason}"),
    })
}

/// Checks an optional name, as [`check_name`].
fn check_optional_name(kind: MessageKind, what: &str, name: Option<&str>) -> Result<(), WireError> {
    name.map_or(Ok(()), |name| check_name(kind, what, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_follow_the_design() {
        let limits = Limits::default();
        let cases = [
            (MessageKind::Desired, 1 << 20),
            (MessageKind::Status, 256 << 10),
            (MessageKind::Presence, 16 << 10),
            (MessageKind::RpcRequest, 1 << 20),
            (MessageKind::RpcResponse, 1 << 20),
        ];
        for (kind, limit) in cases {
            assert_eq!(limits.for_kind(kind), limit, "{kind}");
        }
    }

    #[test]
    fn error_messages_are_lower_case_without_a_trailing_period() {
        let errors = [
            WireError::Empty,
            WireError::UnsupportedVersion {
                seen: 2,
                supported: &[1],
            },
            WireError::TooLarge {
                kind: MessageKind::Status,
                size: 10,
                limit: 5,
            },
            WireError::WrongKind {
                expected: MessageKind::Desired,
                found: MessageKind::Status,
            },
            WireError::Malformed {
                part: Part::Payload(MessageKind::Presence),
                source: postcard::Error::DeserializeUnexpectedEnd,
            },
            WireError::TrailingBytes {
                part: Part::Envelope,
                count: 3,
            },
            WireError::NodeMismatch {
                kind: MessageKind::Desired,
                envelope: "a".into(),
                message: "b".into(),
            },
            WireError::GenerationMismatch {
                kind: MessageKind::Desired,
                envelope: 1,
                message: 2,
            },
            WireError::SignatureTooLong { len: 300, max: 256 },
            WireError::Invalid {
                kind: MessageKind::RpcRequest,
                reason: "exec needs a command".into(),
            },
        ];
        for error in errors {
            let text = error.to_string();
            assert!(text.starts_with(|c: char| c.is_lowercase()), "{text}");
            assert!(!text.ends_with('.'), "{text}");
        }
    }

    #[test]
    fn unsupported_version_names_the_version_seen_and_those_supported() {
        let text = WireError::unsupported(7).to_string();
        assert!(text.contains("version 7"), "{text}");
        let phrase = versions_phrase(SUPPORTED_WIRE_VERSIONS);
        assert!(text.contains(&format!("speaks {phrase};")), "{text}");
        let text = WireError::UnsupportedVersion {
            seen: 4,
            supported: &[2, 3],
        }
        .to_string();
        assert!(text.contains("speaks versions 2 and 3;"), "{text}");
        let text = WireError::UnsupportedVersion {
            seen: 4,
            supported: &[2],
        }
        .to_string();
        assert!(text.contains("speaks version 2;"), "{text}");
    }

    #[test]
    fn each_peer_gets_the_newest_version_both_sides_read() {
        let cases: [(&[u8], Option<u8>); 6] = [
            (&[], Some(2)),
            (&[2], Some(2)),
            (&[2, 3], Some(3)),
            (&[3, 4], Some(3)),
            (&[4, 5], None),
            (&[1], None),
        ];
        for (theirs, expected) in cases {
            assert_eq!(version_for(theirs), expected, "{theirs:?}");
        }
        assert_eq!(version_for(SUPPORTED_WIRE_VERSIONS), Some(WIRE_VERSION));
    }

    #[test]
    fn wire_versions_travel_in_a_version_2_label_and_come_out_of_the_labels() {
        let labels: BTreeMap<String, String> = [("site".to_string(), "plant-1".to_string())].into();
        let with = wire_versions_into_labels(&labels, &[2, 3]);
        assert_eq!(
            with.get(WIRE_VERSIONS_LABEL).map(String::as_str),
            Some("2.3")
        );
        assert_eq!(
            wire_versions_from_labels(with),
            Ok((labels.clone(), vec![2, 3]))
        );
        assert_eq!(wire_versions_into_labels(&labels, &[]), labels);
        assert_eq!(
            wire_versions_from_labels(labels.clone()),
            Ok((labels, Vec::new()))
        );
    }

    #[test]
    fn a_wire_versions_label_that_is_not_a_list_of_versions_is_refused_with_its_value() {
        for text in ["", "2.", "x", "3.2", "2.2", "1.2", "2.300", "2-3"] {
            let labels: BTreeMap<String, String> =
                [(WIRE_VERSIONS_LABEL.to_string(), text.to_string())].into();
            let error = wire_versions_from_labels(labels).expect_err(text);
            assert!(error.contains(&format!("not `{text}`")), "{error}");
        }
    }

    #[test]
    fn this_build_reads_the_version_it_writes() {
        assert!(SUPPORTED_WIRE_VERSIONS.contains(&WIRE_VERSION));
        assert!(SUPPORTED_WIRE_VERSIONS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(list_versions(&[1, 2, 3]), "1, 2 and 3");
    }
}
