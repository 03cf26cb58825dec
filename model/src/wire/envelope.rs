//! The versioned, signable envelope around every message, and the typed `encode`/`decode`.
//!
//! The version byte picks the module that reads the rest (`v2` today): see the rule in
//! `wire/mod.rs`. Adding a version is a new module, a new arm in each `match version` below
//! and in [`Message`]'s payload methods.

use std::fmt;

use super::{check_name, Limits, Part, WireError, WIRE_VERSION};
use super::{v2, v3};

/// The longest signature an envelope may carry (an ed25519 signature is 64 bytes).
pub const MAX_SIGNATURE_BYTES: usize = 256;

/// What an envelope carries. One kind per topic channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MessageKind {
    Desired,
    Status,
    Presence,
    RpcRequest,
    RpcResponse,
}

impl MessageKind {
    pub const ALL: [MessageKind; 5] = [
        MessageKind::Desired,
        MessageKind::Status,
        MessageKind::Presence,
        MessageKind::RpcRequest,
        MessageKind::RpcResponse,
    ];

    /// The byte that stands for this kind in [`Envelope::signed_bytes`].
    fn code(self) -> u8 {
        match self {
            MessageKind::Desired => 1,
            MessageKind::Status => 2,
            MessageKind::Presence => 3,
            MessageKind::RpcRequest => 4,
            MessageKind::RpcResponse => 5,
        }
    }

    /// The domain-separation tag that starts [`Envelope::signed_bytes`]. Each ends with NUL,
    /// so none is a prefix of another.
    fn domain_tag(self) -> &'static [u8] {
        match self {
            MessageKind::Desired => b"shoal/v1 desired\0",
            MessageKind::Status => b"shoal/v1 status\0",
            MessageKind::Presence => b"shoal/v1 presence\0",
            MessageKind::RpcRequest => b"shoal/v1 rpc-request\0",
            MessageKind::RpcResponse => b"shoal/v1 rpc-response\0",
        }
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageKind::Desired => "desired state",
            MessageKind::Status => "status",
            MessageKind::Presence => "presence",
            MessageKind::RpcRequest => "rpc request",
            MessageKind::RpcResponse => "rpc response",
        })
    }
}

pub(crate) mod sealed {
    use super::super::v2;

    /// Ties each message to its frozen shape in every wire version this build speaks.
    pub trait Sealed: Sized {
        /// The message in wire version 2.
        type V2: serde::Serialize + serde::de::DeserializeOwned;
        /// The message in wire version 3 (version 2's shape, but for presence).
        type V3: serde::Serialize + serde::de::DeserializeOwned;

        fn to_v2(&self) -> Self::V2;

        fn from_v2(frozen: Self::V2) -> Result<Self, v2::Invalid>;

        fn to_v3(&self) -> Self::V3;

        fn from_v3(frozen: Self::V3) -> Result<Self, v2::Invalid>;
    }
}

/// A message that travels in an [`Envelope`]. Implemented by the five message types of this
/// module only.
pub trait Message: sealed::Sealed {
    /// The kind every envelope of this message carries.
    const KIND: MessageKind;

    /// The node id inside the message, for kinds that carry one; it must equal the envelope's.
    fn node_id(&self) -> Option<&str>;

    /// The number the envelope carries beside the payload: the generation of a desired state,
    /// the sequence of a status, 0 otherwise.
    fn generation(&self) -> u64 {
        0
    }

    /// Checks what decoding alone does not: names that the receiver uses as path components,
    /// duplicates, empty commands.
    fn check(&self) -> Result<(), WireError>;

    /// The payload bytes of this message in wire `version`, unchecked.
    fn to_payload(&self, version: u8) -> Result<Vec<u8>, WireError> {
        let encode = |source| WireError::Encode {
            kind: Self::KIND,
            source,
        };
        match version {
            v2::VERSION => v2::to_bytes(&self.to_v2()).map_err(encode),
            v3::VERSION => v3::to_bytes(&self.to_v3()).map_err(encode),
            seen => Err(WireError::unsupported(seen)),
        }
    }

    /// The message in exactly `bytes`, a payload in wire `version`, converted but not
    /// checked (see [`Envelope::open`]).
    fn from_payload(version: u8, bytes: &[u8]) -> Result<Self, WireError> {
        let part = Part::Payload(Self::KIND);
        let invalid = |v2::Invalid(reason)| WireError::Invalid {
            kind: Self::KIND,
            reason,
        };
        match version {
            v2::VERSION => {
                let frozen = v2::from_bytes(bytes).map_err(|e| WireError::from_v2(part, e))?;
                Self::from_v2(frozen).map_err(invalid)
            }
            v3::VERSION => {
                let frozen = v3::from_bytes(bytes).map_err(|e| WireError::from_v2(part, e))?;
                Self::from_v3(frozen).map_err(invalid)
            }
            seen => Err(WireError::unsupported(seen)),
        }
    }
}

/// The signable wrapper around one message. On the wire: its version byte, then the envelope
/// in that version (`v2::Envelope`, in versions 2 and 3: postcard of these fields but
/// `version`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// The wire version the envelope and its payload are written in: [`WIRE_VERSION`] for
    /// what this build seals, the version byte for what it decoded.
    pub version: u8,
    pub kind: MessageKind,
    /// The node the message is for (desired, rpc requests) or from (status, presence, rpc
    /// responses). Always a DNS label.
    pub node_id: String,
    /// The desired state's generation, the status's sequence, 0 for other kinds.
    pub generation: u64,
    /// The message, in the envelope's version.
    pub payload: Vec<u8>,
    /// A signature over exactly [`Envelope::signed_bytes`], at most [`MAX_SIGNATURE_BYTES`].
    pub signature: Option<Vec<u8>>,
}

impl Envelope {
    /// Wraps `message`, to or from `node_id`, in an unsigned envelope of [`WIRE_VERSION`],
    /// after checking the message as the receiver will.
    pub fn seal<M: Message>(node_id: &str, message: &M) -> Result<Envelope, WireError> {
        Envelope::seal_in(WIRE_VERSION, node_id, message)
    }

    /// As [`Envelope::seal`], in wire `version` (one of `SUPPORTED_WIRE_VERSIONS`): what a
    /// peer reads, as `wire::version_for` picks it.
    pub fn seal_in<M: Message>(
        version: u8,
        node_id: &str,
        message: &M,
    ) -> Result<Envelope, WireError> {
        check_name(M::KIND, "node id", node_id)?;
        message.check()?;
        if let Some(inner) = message.node_id() {
            if inner != node_id {
                return Err(WireError::NodeMismatch {
                    kind: M::KIND,
                    envelope: node_id.to_string(),
                    message: inner.to_string(),
                });
            }
        }
        let payload = message.to_payload(version)?;
        Ok(Envelope {
            version,
            kind: M::KIND,
            node_id: node_id.to_string(),
            generation: message.generation(),
            payload,
            signature: None,
        })
    }

    /// The message inside, checked: right kind, complete payload with nothing after it, same
    /// node id and generation as the envelope, sane names.
    pub fn open<M: Message>(&self) -> Result<M, WireError> {
        if self.kind != M::KIND {
            return Err(WireError::WrongKind {
                expected: M::KIND,
                found: self.kind,
            });
        }
        let message = M::from_payload(self.version, &self.payload)?;
        if let Some(inner) = message.node_id() {
            if inner != self.node_id {
                return Err(WireError::NodeMismatch {
                    kind: M::KIND,
                    envelope: self.node_id.clone(),
                    message: inner.to_string(),
                });
            }
        }
        if message.generation() != self.generation {
            return Err(WireError::GenerationMismatch {
                kind: M::KIND,
                envelope: self.generation,
                message: message.generation(),
            });
        }
        message.check()?;
        Ok(message)
    }

    /// The bytes on the wire, refusing what the receiver would refuse: an envelope over the
    /// limit for its kind, an invalid node id, an oversized signature.
    pub fn encode(&self, limits: &Limits) -> Result<Vec<u8>, WireError> {
        self.check()?;
        let failed = |source| WireError::Encode {
            kind: self.kind,
            source,
        };
        let bytes = match self.version {
            v2::VERSION | v3::VERSION => {
                v2::to_bytes_after(vec![self.version], &v2::Envelope::from(self)).map_err(failed)?
            }
            seen => return Err(WireError::unsupported(seen)),
        };
        let limit = limits.for_kind(self.kind);
        if bytes.len() > limit {
            return Err(WireError::TooLarge {
                kind: self.kind,
                size: bytes.len(),
                limit,
            });
        }
        Ok(bytes)
    }

    /// Reads an envelope of the `expected` kind from untrusted bytes. Checks the version byte
    /// first, then the size, before parsing anything. Does not verify the signature and does
    /// not look inside the payload: see [`Envelope::open`].
    pub fn decode(
        bytes: &[u8],
        expected: MessageKind,
        limits: &Limits,
    ) -> Result<Envelope, WireError> {
        let (&version, rest) = bytes.split_first().ok_or(WireError::Empty)?;
        if !super::SUPPORTED_WIRE_VERSIONS.contains(&version) {
            return Err(WireError::unsupported(version));
        }
        let limit = limits.for_kind(expected);
        if bytes.len() > limit {
            return Err(WireError::TooLarge {
                kind: expected,
                size: bytes.len(),
                limit,
            });
        }
        let part = Part::Envelope;
        let envelope = match version {
            v2::VERSION | v3::VERSION => Envelope {
                version,
                ..v2::from_bytes::<v2::Envelope>(rest)
                    .map_err(|e| WireError::from_v2(part, e))?
                    .into_domain()
            },
            seen => return Err(WireError::unsupported(seen)),
        };
        if envelope.kind != expected {
            return Err(WireError::WrongKind {
                expected,
                found: envelope.kind,
            });
        }
        envelope.check()?;
        Ok(envelope)
    }

    /// The canonical byte string a signature covers, and exactly that:
    ///
    /// ```text
    /// domain tag    b"shoal/v1 desired\0" (or status, presence, rpc-request, rpc-response)
    /// version       1 byte, the envelope's wire version
    /// kind          1 byte: desired 1, status 2, presence 3, rpc-request 4, rpc-response 5
    /// node id       u32 big-endian length, then the UTF-8 bytes
    /// generation    u64 big-endian
    /// payload       u64 big-endian length, then the bytes
    /// ```
    ///
    /// Every field has a fixed size or a length prefix, so two different envelopes never
    /// produce the same string, and a signature for one kind never verifies as another.
    /// The signature itself is not covered.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let tag = self.kind.domain_tag();
        let mut out =
            Vec::with_capacity(tag.len() + 2 + 4 + self.node_id.len() + 8 + 8 + self.payload.len());
        out.extend_from_slice(tag);
        out.push(self.version);
        out.push(self.kind.code());
        // A node id is at most 63 bytes and a payload at most a few MiB: the casts cannot
        // truncate anything that `check` accepts, and saturate otherwise.
        let node_len = u32::try_from(self.node_id.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&node_len.to_be_bytes());
        out.extend_from_slice(self.node_id.as_bytes());
        out.extend_from_slice(&self.generation.to_be_bytes());
        let payload_len = u64::try_from(self.payload.len()).unwrap_or(u64::MAX);
        out.extend_from_slice(&payload_len.to_be_bytes());
        out.extend_from_slice(&self.payload);
        out
    }

    /// The checks on the envelope itself that both `encode` and `decode` apply.
    fn check(&self) -> Result<(), WireError> {
        check_name(self.kind, "node id", &self.node_id)?;
        if let Some(signature) = &self.signature {
            if signature.len() > MAX_SIGNATURE_BYTES {
                return Err(WireError::SignatureTooLong {
                    len: signature.len(),
                    max: MAX_SIGNATURE_BYTES,
                });
            }
        }
        Ok(())
    }
}

/// Encodes `message`, to or from `node_id`, as an unsigned envelope: the bytes to publish.
pub fn encode<M: Message>(
    node_id: &str,
    message: &M,
    limits: &Limits,
) -> Result<Vec<u8>, WireError> {
    Envelope::seal(node_id, message)?.encode(limits)
}

/// As [`encode`], in wire `version`: to a peer that reads it (see `wire::version_for`).
pub fn encode_in<M: Message>(
    version: u8,
    node_id: &str,
    message: &M,
    limits: &Limits,
) -> Result<Vec<u8>, WireError> {
    Envelope::seal_in(version, node_id, message)?.encode(limits)
}

/// Decodes untrusted bytes into a checked message of type `M` and the envelope it came in
/// (whose `node_id` the caller compares with the topic's, and whose `signature` the caller
/// verifies where it matters).
pub fn decode<M: Message>(bytes: &[u8], limits: &Limits) -> Result<(Envelope, M), WireError> {
    let envelope = Envelope::decode(bytes, M::KIND, limits)?;
    let message = envelope.open::<M>()?;
    Ok((envelope, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{
        DesiredState, NodeStatus, NodeUsage, Presence, RpcRequest, RpcRequestBody,
        SUPPORTED_WIRE_VERSIONS,
    };

    fn desired(node: &str, generation: u64) -> DesiredState {
        DesiredState {
            node_id: node.into(),
            generation,
            workloads: Vec::new(),
            signing_keys: Vec::new(),
            agent: None,
        }
    }

    fn status(node: &str, sequence: u64) -> NodeStatus {
        NodeStatus {
            node_id: node.into(),
            observed_generation: 3,
            sequence,
            sent_at_ms: 1_700_000_000_000,
            workloads: Vec::new(),
            usage: NodeUsage::default(),
            events: Vec::new(),
            dropped_events: 0,
            agent_update: None,
        }
    }

    fn ping(id: u64) -> RpcRequest {
        RpcRequest {
            id,
            body: RpcRequestBody::Ping,
        }
    }

    /// Re-encodes an envelope without any of `Envelope::encode`'s checks, as an attacker would.
    fn raw(envelope: &Envelope) -> Vec<u8> {
        v2::to_bytes_after(vec![envelope.version], &v2::Envelope::from(envelope))
            .expect("an envelope always serializes")
    }

    fn sealed_desired(node: &str, generation: u64) -> Envelope {
        Envelope::seal(node, &desired(node, generation)).expect("a valid desired state seals")
    }

    #[test]
    fn a_desired_state_survives_the_round_trip() {
        let limits = Limits::default();
        let bytes = encode("node-1", &desired("node-1", 42), &limits).expect("encodes");
        assert_eq!(bytes[0], WIRE_VERSION);
        let (envelope, state) = decode::<DesiredState>(&bytes, &limits).expect("decodes");
        assert_eq!(state, desired("node-1", 42));
        assert_eq!(envelope.kind, MessageKind::Desired);
        assert_eq!(envelope.node_id, "node-1");
        assert_eq!(envelope.generation, 42);
        assert_eq!(envelope.signature, None);
    }

    #[test]
    fn the_envelope_carries_the_status_sequence_as_its_generation() {
        let envelope = Envelope::seal("node-1", &status("node-1", 9)).expect("seals");
        assert_eq!(envelope.generation, 9);
        let envelope = Envelope::seal("node-1", &ping(77)).expect("seals");
        assert_eq!(envelope.generation, 0);
    }

    #[test]
    fn a_signature_travels_with_the_envelope() {
        let limits = Limits::default();
        let mut envelope = sealed_desired("node-1", 1);
        envelope.signature = Some(vec![7; 64]);
        let bytes = envelope.encode(&limits).expect("encodes");
        let (decoded, _) = decode::<DesiredState>(&bytes, &limits).expect("decodes");
        assert_eq!(decoded, envelope);
    }

    #[test]
    fn decoding_refuses_empty_input() {
        let error = Envelope::decode(&[], MessageKind::Desired, &Limits::default());
        assert_eq!(error, Err(WireError::Empty));
    }

    #[test]
    fn decoding_rejects_another_wire_version() {
        let mut bytes =
            encode("node-1", &desired("node-1", 1), &Limits::default()).expect("encodes");
        // Version 1 had no signing keys in the desired state.
        bytes[0] = 1;
        let error = decode::<DesiredState>(&bytes, &Limits::default());
        assert_eq!(
            error,
            Err(WireError::UnsupportedVersion {
                seen: 1,
                supported: SUPPORTED_WIRE_VERSIONS
            })
        );
    }

    #[test]
    fn decoding_rejects_input_over_the_limit_before_parsing_it() {
        let limits = Limits {
            status: 32,
            ..Limits::default()
        };
        let mut bytes = vec![0xff; 33];
        bytes[0] = WIRE_VERSION;
        let error = Envelope::decode(&bytes, MessageKind::Status, &limits);
        assert_eq!(
            error,
            Err(WireError::TooLarge {
                kind: MessageKind::Status,
                size: 33,
                limit: 32
            })
        );
    }

    #[test]
    fn encoding_refuses_a_message_the_receiver_would_drop_for_its_size() {
        let limits = Limits {
            desired: 16,
            ..Limits::default()
        };
        let error = encode("node-1", &desired("node-1", 1), &limits);
        assert!(
            matches!(error, Err(WireError::TooLarge { limit: 16, .. })),
            "{error:?}"
        );
    }

    #[test]
    fn decoding_rejects_a_message_of_another_kind() {
        let bytes = encode("node-1", &status("node-1", 1), &Limits::default()).expect("encodes");
        let error = decode::<DesiredState>(&bytes, &Limits::default());
        assert_eq!(
            error,
            Err(WireError::WrongKind {
                expected: MessageKind::Desired,
                found: MessageKind::Status
            })
        );
    }

    #[test]
    fn opening_rejects_a_payload_of_another_kind_behind_a_forged_kind() {
        let mut envelope = Envelope::seal("node-1", &status("node-1", 1)).expect("seals");
        envelope.kind = MessageKind::Presence;
        assert!(matches!(
            envelope.open::<Presence>(),
            Err(WireError::Malformed { .. }
                | WireError::TrailingBytes { .. }
                | WireError::Invalid { .. })
        ));
    }

    #[test]
    fn decoding_rejects_a_payload_for_another_node() {
        let mut envelope = sealed_desired("node-1", 1);
        envelope.node_id = "node-2".into();
        let error = decode::<DesiredState>(&raw(&envelope), &Limits::default());
        assert_eq!(
            error,
            Err(WireError::NodeMismatch {
                kind: MessageKind::Desired,
                envelope: "node-2".into(),
                message: "node-1".into()
            })
        );
    }

    #[test]
    fn sealing_refuses_a_message_for_another_node() {
        let error = Envelope::seal("node-2", &desired("node-1", 1));
        assert!(
            matches!(error, Err(WireError::NodeMismatch { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn decoding_rejects_an_envelope_generation_that_disagrees_with_the_payload() {
        let mut envelope = sealed_desired("node-1", 5);
        envelope.generation = 6;
        let error = decode::<DesiredState>(&raw(&envelope), &Limits::default());
        assert_eq!(
            error,
            Err(WireError::GenerationMismatch {
                kind: MessageKind::Desired,
                envelope: 6,
                message: 5
            })
        );
    }

    #[test]
    fn decoding_rejects_bytes_after_the_envelope() {
        let mut bytes = encode("node-1", &ping(1), &Limits::default()).expect("encodes");
        bytes.push(0);
        let error = decode::<RpcRequest>(&bytes, &Limits::default());
        assert_eq!(
            error,
            Err(WireError::TrailingBytes {
                part: Part::Envelope,
                count: 1
            })
        );
    }

    #[test]
    fn decoding_rejects_bytes_after_the_payload() {
        let mut envelope = Envelope::seal("node-1", &ping(1)).expect("seals");
        envelope.payload.extend_from_slice(&[1, 2]);
        let error = decode::<RpcRequest>(&raw(&envelope), &Limits::default());
        assert_eq!(
            error,
            Err(WireError::TrailingBytes {
                part: Part::Payload(MessageKind::RpcRequest),
                count: 2
            })
        );
    }

    #[test]
    fn decoding_rejects_a_truncated_payload() {
        let mut envelope = sealed_desired("node-1", 1);
        envelope.payload.pop();
        let error = decode::<DesiredState>(&raw(&envelope), &Limits::default());
        assert!(
            matches!(error, Err(WireError::Malformed { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn node_ids_must_be_dns_labels_on_both_sides() {
        for bad in ["", "Node-1", "node/1", "+", "#", "a.b", "-x"] {
            let mut envelope = Envelope::seal("node-1", &ping(1)).expect("seals");
            envelope.node_id = bad.into();
            assert!(
                matches!(
                    envelope.encode(&Limits::default()),
                    Err(WireError::Invalid { .. })
                ),
                "encoding accepted {bad:?}"
            );
            let error =
                Envelope::decode(&raw(&envelope), MessageKind::RpcRequest, &Limits::default());
            assert!(
                matches!(error, Err(WireError::Invalid { .. })),
                "decoding accepted {bad:?}"
            );
            assert!(
                matches!(
                    Envelope::seal(bad, &ping(1)),
                    Err(WireError::Invalid { .. })
                ),
                "sealing accepted {bad:?}"
            );
        }
    }

    #[test]
    fn signatures_longer_than_the_maximum_are_refused_on_both_sides() {
        let mut envelope = sealed_desired("node-1", 1);
        envelope.signature = Some(vec![0; MAX_SIGNATURE_BYTES + 1]);
        assert!(matches!(
            envelope.encode(&Limits::default()),
            Err(WireError::SignatureTooLong { .. })
        ));
        let error = Envelope::decode(&raw(&envelope), MessageKind::Desired, &Limits::default());
        assert!(
            matches!(error, Err(WireError::SignatureTooLong { .. })),
            "{error:?}"
        );
    }

    #[test]
    fn signed_bytes_follow_the_documented_layout() {
        let envelope = Envelope {
            version: WIRE_VERSION,
            kind: MessageKind::Desired,
            node_id: "n1".into(),
            generation: 0x0102,
            payload: vec![0xaa, 0xbb],
            signature: Some(vec![1, 2, 3]),
        };
        let mut expected = b"shoal/v1 desired\0".to_vec();
        expected.extend_from_slice(&[WIRE_VERSION, 1]);
        expected.extend_from_slice(&[0, 0, 0, 2, b'n', b'1']);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x01, 0x02]);
        expected.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 2, 0xaa, 0xbb]);
        assert_eq!(envelope.signed_bytes(), expected);
    }

    #[test]
    fn signed_bytes_differ_whenever_a_covered_field_differs() {
        let base = Envelope {
            version: WIRE_VERSION,
            kind: MessageKind::Desired,
            node_id: "node-1".into(),
            generation: 1,
            payload: vec![1, 2, 3],
            signature: None,
        };
        let variants = [
            Envelope {
                version: WIRE_VERSION + 1,
                ..base.clone()
            },
            Envelope {
                kind: MessageKind::Status,
                ..base.clone()
            },
            Envelope {
                node_id: "node-12".into(),
                ..base.clone()
            },
            Envelope {
                generation: 2,
                ..base.clone()
            },
            Envelope {
                payload: vec![1, 2],
                ..base.clone()
            },
            Envelope {
                payload: vec![1, 2, 3, 0],
                ..base.clone()
            },
        ];
        for variant in variants {
            assert_ne!(variant.signed_bytes(), base.signed_bytes(), "{variant:?}");
        }
        let signed = Envelope {
            signature: Some(vec![9; 64]),
            ..base.clone()
        };
        assert_eq!(
            signed.signed_bytes(),
            base.signed_bytes(),
            "the signature is not covered"
        );
    }

    #[test]
    fn domain_tags_are_distinct_and_none_is_a_prefix_of_another() {
        for a in MessageKind::ALL {
            for b in MessageKind::ALL {
                if a != b {
                    assert!(!b.domain_tag().starts_with(a.domain_tag()), "{a} {b}");
                    assert_ne!(a.code(), b.code());
                }
            }
        }
    }
}
