//! The wire protocol between hub and agents: the messages that travel over MQTT, and the
//! versioned, signable [`Envelope`] around each of them.
//!
//! # On the wire
//!
//! Every MQTT payload is one byte, [`WIRE_VERSION`], followed by the postcard encoding of an
//! [`Envelope`]. The envelope names the [`MessageKind`], the node the message is for or from,
//! a generation number, the postcard encoding of the message itself, and an optional signature
//! over [`Envelope::signed_bytes`].
//!
//! ```text
//! hub   --[DesiredState]-->  {prefix}/node/{id}/desired   (retained, signed)
//! agent --[NodeStatus]---->  {prefix}/node/{id}/status
//! agent --[Presence]------>  {prefix}/node/{id}/presence  (retained, also the last will)
//! hub   --[RpcRequest]---->  {prefix}/node/{id}/rpc/req
//! agent --[RpcResponse]--->  {prefix}/node/{id}/rpc/resp
//! ```
//!
//! # Invariants
//!
//! - Decoding never panics, whatever the bytes, and never reads more than [`Limits`] allows.
//! - A message that [`encode`] accepts, [`decode`] accepts under the same [`Limits`]: a
//!   publisher never sends what its receiver would drop.
//! - [`decode`] does not verify signatures. Whoever acts on desired state checks
//!   [`Envelope::signature`] against [`Envelope::signed_bytes`] first.
//!
//! # Compatibility
//!
//! postcard is not self-describing: fields are identified by their position and enum variants
//! by their index. Appending an enum variant keeps new decoders reading old messages; any other
//! change to a type in this module (adding, removing or reordering a field or variant) changes
//! the format and must bump [`WIRE_VERSION`]. For the same reason no type here may use
//! `skip_serializing_if`, `flatten`, or untagged or internally tagged enums.

mod desired;
mod envelope;
mod presence;
mod rpc;
pub mod signing;
mod status;

pub use desired::{DesiredState, DesiredWorkload, MAX_SIGNING_KEYS};
pub use envelope::{decode, encode, Envelope, Message, MessageKind, MAX_SIGNATURE_BYTES};
pub use presence::Presence;
pub use rpc::{ImageSummary, RpcRequest, RpcRequestBody, RpcResponse, RpcResponseBody};
pub use status::{
    ContainerState, ContainerStatus, Event, EventReason, ExitInfo, Health, NodeStatus, NodeUsage,
    Severity, WorkloadStatus,
};

use std::fmt;

use crate::manifest::names::check_dns_label;

/// The format version this build writes and the only one it reads: the first byte of every
/// message.
pub const WIRE_VERSION: u8 = 2;

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
        "wire version {seen} is not supported: this build speaks version {supported}; \
         run the same Shoal release on the hub and its agents"
    )]
    UnsupportedVersion { seen: u8, supported: u8 },
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
                supported: 1,
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
    fn unsupported_version_names_both_versions() {
        let text = WireError::UnsupportedVersion {
            seen: 7,
            supported: WIRE_VERSION,
        }
        .to_string();
        assert!(text.contains("version 7"), "{text}");
        assert!(text.contains(&format!("version {WIRE_VERSION}")), "{text}");
    }
}
