//! Signatures on envelopes: the hub signs every desired state with an ed25519 key, and agents
//! verify it against the keys they trust before they store or run anything.
//!
//! An envelope's `signature` is [`KeyId`] (8 bytes) followed by the 64-byte ed25519 signature
//! over [`Envelope::signed_bytes`]. The key id tells the verifier which of its trusted keys to
//! use, so a key rotation can announce the next key while the current one still signs.
//!
//! Validity rests on signatures and generations only, never on time: a device whose clock
//! says 1970 verifies exactly as one whose clock is right.

use std::fmt;

use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _, UnparsedPublicKey, ED25519};

use super::Envelope;
use crate::hex::{self, Hex};

/// Bytes of a [`KeyId`] at the start of a signature.
pub const KEY_ID_BYTES: usize = 8;
/// Bytes of an ed25519 signature.
pub const ED25519_SIGNATURE_BYTES: usize = 64;
/// Bytes of an ed25519 public key.
pub const PUBLIC_KEY_BYTES: usize = 32;

/// An ed25519 public key of the hub. Written as `ed25519:` and 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey(pub [u8; PUBLIC_KEY_BYTES]);

/// The first 8 bytes of the SHA-256 of a public key: names the key in signatures and in
/// `shoal key list`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyId(pub [u8; KEY_ID_BYTES]);

impl PublicKey {
    /// The key's id.
    pub fn id(&self) -> KeyId {
        let digest = ring::digest::digest(&ring::digest::SHA256, &self.0);
        let mut id = [0; KEY_ID_BYTES];
        id.copy_from_slice(&digest.as_ref()[..KEY_ID_BYTES]);
        KeyId(id)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ed25519:")?;
        write!(f, "{}", Hex(&self.0))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl std::str::FromStr for PublicKey {
    type Err = SignatureError;

    fn from_str(text: &str) -> Result<PublicKey, SignatureError> {
        let bad = || SignatureError::BadPublicKey {
            text: text.chars().take(80).collect(),
        };
        let digits = text.trim().strip_prefix("ed25519:").ok_or_else(bad)?;
        let bytes = hex::decode(digits).ok_or_else(bad)?;
        let key: [u8; PUBLIC_KEY_BYTES] = bytes.try_into().map_err(|_| bad())?;
        Ok(PublicKey(key))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", Hex(&self.0))
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({self})")
    }
}

/// Why a signature, or a key, was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("it is not signed; the hub signs every desired state")]
    Unsigned,
    #[error(
        "its signature is {len} bytes; a hub signature is {} bytes (key id and ed25519 signature)",
        KEY_ID_BYTES + ED25519_SIGNATURE_BYTES
    )]
    Malformed { len: usize },
    #[error(
        "it is signed with key {key}, which this node does not trust (it trusts {trusted}); \
         a key the hub never announced to this node, or not the hub at all"
    )]
    UnknownKey { key: KeyId, trusted: String },
    #[error("its signature does not verify with the hub's key {key}: forged or corrupted")]
    Invalid { key: KeyId },
    #[error("`{text}` is not a hub public key: expected ed25519: and 64 hex digits")]
    BadPublicKey { text: String },
    #[error("the hub's signing key cannot be read: {reason}")]
    BadSigningKey { reason: String },
    #[error("no randomness for a new signing key")]
    Random,
}

/// The hub's private signing key.
pub struct SigningKey {
    pair: Ed25519KeyPair,
    public: PublicKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A fresh key, with its PKCS#8 document: what the hub stores.
    pub fn generate() -> Result<(SigningKey, Vec<u8>), SignatureError> {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
            .map_err(|_| SignatureError::Random)?;
        let key = SigningKey::from_pkcs8(pkcs8.as_ref())?;
        Ok((key, pkcs8.as_ref().to_vec()))
    }

    /// The key stored as PKCS#8 by [`SigningKey::generate`].
    pub fn from_pkcs8(pkcs8: &[u8]) -> Result<SigningKey, SignatureError> {
        let pair =
            Ed25519KeyPair::from_pkcs8(pkcs8).map_err(|e| SignatureError::BadSigningKey {
                reason: e.to_string(),
            })?;
        let mut public = [0; PUBLIC_KEY_BYTES];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(SigningKey {
            pair,
            public: PublicKey(public),
        })
    }

    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// Signs `envelope` in place: its signature becomes this key's id and the signature over
    /// [`Envelope::signed_bytes`].
    pub fn sign(&self, envelope: &mut Envelope) {
        envelope.signature = Some(self.sign_bytes(&envelope.signed_bytes()));
    }

    /// This key's id followed by its signature over `message`: the form every signature
    /// Shoal makes takes (envelopes, agent releases).
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        let signature = self.pair.sign(message);
        let mut bytes = Vec::with_capacity(KEY_ID_BYTES + ED25519_SIGNATURE_BYTES);
        bytes.extend_from_slice(&self.public.id().0);
        bytes.extend_from_slice(signature.as_ref());
        bytes
    }
}

/// Checks `envelope`'s signature against the keys the verifier trusts; returns the key that
/// signed it. Never looks at a clock.
pub fn verify(envelope: &Envelope, trusted: &[PublicKey]) -> Result<KeyId, SignatureError> {
    let signature = envelope
        .signature
        .as_deref()
        .ok_or(SignatureError::Unsigned)?;
    verify_bytes(&envelope.signed_bytes(), signature, trusted)
}

/// Checks `signature` (a key id and an ed25519 signature, as [`SigningKey::sign_bytes`]
/// makes) over `message` against the keys the verifier trusts; returns the key that signed.
pub fn verify_bytes(
    message: &[u8],
    signature: &[u8],
    trusted: &[PublicKey],
) -> Result<KeyId, SignatureError> {
    if signature.len() != KEY_ID_BYTES + ED25519_SIGNATURE_BYTES {
        return Err(SignatureError::Malformed {
            len: signature.len(),
        });
    }
    let (id, signature) = signature.split_at(KEY_ID_BYTES);
    let mut key_id = [0; KEY_ID_BYTES];
    key_id.copy_from_slice(id);
    let key_id = KeyId(key_id);
    let key = trusted
        .iter()
        .find(|key| key.id() == key_id)
        .ok_or_else(|| SignatureError::UnknownKey {
            key: key_id,
            trusted: if trusted.is_empty() {
                "no key".to_string()
            } else {
                trusted
                    .iter()
                    .map(|key| key.id().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })?;
    UnparsedPublicKey::new(&ED25519, &key.0)
        .verify(message, signature)
        .map_err(|_| SignatureError::Invalid { key: key_id })?;
    Ok(key_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{MessageKind, WIRE_VERSION};

    fn envelope() -> Envelope {
        Envelope {
            version: WIRE_VERSION,
            kind: MessageKind::Desired,
            node_id: "gw-1".into(),
            generation: 7,
            payload: vec![1, 2, 3],
            signature: None,
        }
    }

    #[test]
    fn a_signed_envelope_verifies_with_the_key_that_signed_it() {
        let (key, _) = SigningKey::generate().expect("key");
        let mut envelope = envelope();
        key.sign(&mut envelope);
        assert_eq!(verify(&envelope, &[key.public()]), Ok(key.public().id()));
    }

    #[test]
    fn every_covered_field_and_the_signature_itself_are_protected() {
        let (key, _) = SigningKey::generate().expect("key");
        let trusted = [key.public()];
        let mut signed = envelope();
        key.sign(&mut signed);
        type Tamper = fn(&mut Envelope);
        let tamper: [(&str, Tamper); 5] = [
            ("node id", |e| e.node_id = "gw-2".into()),
            ("generation", |e| e.generation += 1),
            ("payload", |e| e.payload[0] ^= 1),
            ("kind", |e| e.kind = MessageKind::RpcRequest),
            ("signature", |e| {
                if let Some(s) = e.signature.as_mut() {
                    s[KEY_ID_BYTES + 3] ^= 1;
                }
            }),
        ];
        for (what, change) in tamper {
            let mut forged = signed.clone();
            change(&mut forged);
            assert_eq!(
                verify(&forged, &trusted),
                Err(SignatureError::Invalid {
                    key: key.public().id()
                }),
                "{what}"
            );
        }
    }

    #[test]
    fn unsigned_malformed_and_unknown_key_signatures_are_refused() {
        let (key, _) = SigningKey::generate().expect("key");
        let (other, _) = SigningKey::generate().expect("key");
        let mut e = envelope();
        assert_eq!(verify(&e, &[key.public()]), Err(SignatureError::Unsigned));
        e.signature = Some(vec![0; 10]);
        assert_eq!(
            verify(&e, &[key.public()]),
            Err(SignatureError::Malformed { len: 10 })
        );
        other.sign(&mut e);
        let error = verify(&e, &[key.public()]).expect_err("unknown key");
        assert!(
            matches!(error, SignatureError::UnknownKey { key, .. } if key == other.public().id())
        );
        assert!(error.to_string().contains(&key.public().id().to_string()));
        // A forger who copies the trusted key's id in front of its own signature.
        let mut spoofed = envelope();
        other.sign(&mut spoofed);
        if let Some(s) = spoofed.signature.as_mut() {
            s[..KEY_ID_BYTES].copy_from_slice(&key.public().id().0);
        }
        assert_eq!(
            verify(&spoofed, &[key.public(), other.public()][..1]),
            Err(SignatureError::Invalid {
                key: key.public().id()
            })
        );
    }

    #[test]
    fn a_stored_key_signs_as_before_and_public_keys_round_trip_as_text() {
        let (key, pkcs8) = SigningKey::generate().expect("key");
        let again = SigningKey::from_pkcs8(&pkcs8).expect("reload");
        assert_eq!(again.public(), key.public());
        let text = key.public().to_string();
        assert!(
            text.starts_with("ed25519:") && text.len() == 8 + 64,
            "{text}"
        );
        assert_eq!(text.parse::<PublicKey>(), Ok(key.public()));
        for bad in [
            "",
            "ed25519:",
            "ed25519:zz",
            "rsa:00",
            &text[..70],
            &format!("{text}00"),
        ] {
            assert!(bad.parse::<PublicKey>().is_err(), "{bad}");
        }
        assert!(SigningKey::from_pkcs8(b"not a key").is_err());
    }
}
