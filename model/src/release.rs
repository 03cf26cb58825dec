//! Agent releases: the statement the hub signs about an agent binary (`shoal agent-release
//! add`), and the checks both sides make of the binary itself. The hub signs with a release
//! key of its own, not with the key that signs desired states: a stolen state key may move
//! workloads but cannot make a fleet run another program.
//!
//! The signed statement is text, one `key=value` line each after a first line naming its
//! format, so a signature can be checked by eye and by a later release of Shoal alike:
//!
//! ```text
//! shoal-agent-release/1
//! version=0.2.0
//! arch=aarch64
//! sha256=<64 hex digits>
//! size=7612416
//! ```
//!
//! A release may carry a **minimum**: the lowest version an agent that has proven this
//! release may ever be asked to run again (`shoal agent-release add --minimum M`). Only such
//! a release is signed in format 2, with one more line; a release without one keeps
//! format 1, so every statement signed before minimums existed still verifies:
//!
//! ```text
//! shoal-agent-release/2
//! version=0.4.0
//! arch=aarch64
//! sha256=<64 hex digits>
//! size=7612416
//! minimum=0.3.0
//! ```
//!
//! Pure: no IO, no clock.

use std::fmt;

pub use semver::Version;

use crate::elf::{self, Arch};
use crate::endpoint::ApiUrl;
use crate::hex::{self, Hex};
use crate::wire::signing::{self, KeyId, PublicKey, SignatureError, SigningKey};

/// The largest agent binary the hub stores and an agent downloads (today's is 8 MiB).
pub const MAX_AGENT_BYTES: u64 = 64 << 20;
/// The longest version text accepted.
const MAX_VERSION_CHARS: usize = 64;
/// The first line of the signed statement; a new layout gets a new number.
const FORMAT: &str = "shoal-agent-release/1";
/// The first line of the statement of a release with a minimum (one more line, `minimum=`).
const FORMAT_MINIMUM: &str = "shoal-agent-release/2";

/// An agent release as the hub signs it: which version, for which architecture, and the
/// exact bytes (by digest and size).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRelease {
    pub version: semver::Version,
    pub arch: Arch,
    pub sha256: [u8; 32],
    pub size: u64,
    /// The lowest version an agent that has proven this release may be asked to run (its
    /// floor); at most `version`.
    pub minimum: Option<semver::Version>,
}

/// What precedes the version in the mark every agent binary carries
/// (`\0shoal-agent-version=0.2.0\0`): the version the binary reports itself as, so a
/// release's version can be checked against its bytes.
pub const VERSION_MARK: &[u8] = b"\0shoal-agent-version=";

/// The version an agent binary's mark says (see [`VERSION_MARK`]). Only a mark followed by a
/// version and a NUL counts (the prefix alone also appears where code names it); every mark
/// must say the same version.
pub fn marked_version(bytes: &[u8]) -> Result<semver::Version, ReleaseError> {
    let mut found: Vec<semver::Version> = Vec::new();
    let mut rest = bytes;
    while let Some(at) = find(rest, VERSION_MARK) {
        let after = &rest[at + VERSION_MARK.len()..];
        let end = after
            .iter()
            .take(MAX_VERSION_CHARS + 1)
            .position(|b| *b == 0);
        let version = end
            .and_then(|end| std::str::from_utf8(&after[..end]).ok())
            .and_then(|text| semver::Version::parse(text).ok());
        if let Some(version) = version {
            if !found.contains(&version) {
                found.push(version);
            }
        }
        rest = after;
    }
    match found.as_slice() {
        [] => Err(ReleaseError::NoMark),
        [one] => Ok(one.clone()),
        _ => Err(ReleaseError::NotElf {
            reason: "it carries several different version marks".into(),
        }),
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Checks that `bytes` say they are agent `version`.
pub fn check_marked(bytes: &[u8], version: &semver::Version) -> Result<(), ReleaseError> {
    let marked = marked_version(bytes)?;
    if &marked != version {
        return Err(ReleaseError::VersionMismatch {
            given: version.to_string(),
            marked: marked.to_string(),
        });
    }
    Ok(())
}

/// Why a release, its version or its binary was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReleaseError {
    #[error("`{text}` is not a version: {reason} (write it as MAJOR.MINOR.PATCH, e.g. 0.2.0)")]
    BadVersion { text: String, reason: String },
    #[error("the file is empty")]
    Empty,
    #[error("the file is {size} bytes; an agent binary may be at most {MAX_AGENT_BYTES} bytes")]
    TooLarge { size: u64 },
    #[error("it is not an agent binary: {reason}")]
    NotElf { reason: String },
    #[error(
        "it is a dynamically linked {} executable; devices need the static agent \
         (`cross/build {}`)",
        arch.as_str(),
        arch.triple()
    )]
    Dynamic { arch: Arch },
    #[error("its sha256 is {actual}, the release says {expected}")]
    DigestMismatch { expected: String, actual: String },
    #[error("its size is {actual} bytes, the release says {expected}")]
    SizeMismatch { expected: u64, actual: u64 },
    #[error("release signature: {0}")]
    Signature(#[from] SignatureError),
    #[error("release keys: {0}")]
    Keys(String),
    #[error(
        "it has no agent version mark: it is not a shoal-agent binary, or one from before \
         agents could update themselves"
    )]
    NoMark,
    #[error("the binary says it is agent {marked}, not {given}: release it as {marked}")]
    VersionMismatch { given: String, marked: String },
    #[error(
        "the minimum {minimum} is above the release's own version {version}: a release's \
         minimum is at most its version"
    )]
    MinimumAbove { minimum: String, version: String },
}

/// Parses an agent version (semantic versioning, as Cargo writes it).
pub fn parse_version(text: &str) -> Result<semver::Version, ReleaseError> {
    let bad = |reason: String| ReleaseError::BadVersion {
        text: text.chars().take(MAX_VERSION_CHARS).collect(),
        reason,
    };
    if text.len() > MAX_VERSION_CHARS {
        return Err(bad(format!("longer than {MAX_VERSION_CHARS} characters")));
    }
    semver::Version::parse(text.trim()).map_err(|e| bad(e.to_string()))
}

/// What a binary offered as an agent is built for: a static ELF executable of an
/// architecture Shoal builds agents for, within [`MAX_AGENT_BYTES`].
pub fn inspect(bytes: &[u8]) -> Result<Arch, ReleaseError> {
    if bytes.is_empty() {
        return Err(ReleaseError::Empty);
    }
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if size > MAX_AGENT_BYTES {
        return Err(ReleaseError::TooLarge { size });
    }
    let found = elf::read(bytes).map_err(|reason| ReleaseError::NotElf { reason })?;
    if found.dynamic {
        return Err(ReleaseError::Dynamic { arch: found.arch });
    }
    Ok(found.arch)
}

impl AgentRelease {
    /// The release of `bytes` as `version`, after [`inspect`].
    pub fn of(version: semver::Version, bytes: &[u8]) -> Result<AgentRelease, ReleaseError> {
        let arch = inspect(bytes)?;
        Ok(AgentRelease {
            version,
            arch,
            sha256: hex::sha256(bytes),
            size: u64::try_from(bytes.len()).unwrap_or(u64::MAX),
            minimum: None,
        })
    }

    /// The same release with `minimum` as its floor, refused above its own version.
    pub fn with_minimum(
        mut self,
        minimum: Option<semver::Version>,
    ) -> Result<AgentRelease, ReleaseError> {
        if let Some(m) = minimum.as_ref().filter(|m| **m > self.version) {
            return Err(ReleaseError::MinimumAbove {
                minimum: m.to_string(),
                version: self.version.to_string(),
            });
        }
        self.minimum = minimum;
        Ok(self)
    }

    /// The statement a release key signs (the module doc shows it): format 1 without a
    /// minimum, format 2 with one.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let format = if self.minimum.is_some() {
            FORMAT_MINIMUM
        } else {
            FORMAT
        };
        let mut text = format!(
            "{format}\nversion={}\narch={}\nsha256={}\nsize={}\n",
            self.version,
            self.arch.as_str(),
            Hex(&self.sha256),
            self.size
        );
        if let Some(minimum) = &self.minimum {
            text.push_str(&format!("minimum={minimum}\n"));
        }
        text.into_bytes()
    }

    /// The release key's signature (key id and ed25519 signature) over the statement.
    pub fn sign(&self, key: &SigningKey) -> Vec<u8> {
        key.sign_bytes(&self.signed_bytes())
    }

    /// Checks `signature` against the release keys a node trusts.
    pub fn verify(&self, signature: &[u8], trusted: &[PublicKey]) -> Result<KeyId, ReleaseError> {
        Ok(signing::verify_bytes(
            &self.signed_bytes(),
            signature,
            trusted,
        )?)
    }

    /// Checks that `bytes` are this release's binary: size and digest.
    pub fn matches(&self, bytes: &[u8]) -> Result<(), ReleaseError> {
        let actual = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
        if actual != self.size {
            return Err(ReleaseError::SizeMismatch {
                expected: self.size,
                actual,
            });
        }
        let digest = hex::sha256(bytes);
        if digest != self.sha256 {
            return Err(ReleaseError::DigestMismatch {
                expected: hex::encode(&self.sha256),
                actual: hex::encode(&digest),
            });
        }
        Ok(())
    }
}

/// The first line of the statement that endorses a set of release keys.
const KEYS_FORMAT: &str = "shoal-release-keys/1";
/// The most release keys a target may announce, and endorsements it may carry.
pub const MAX_RELEASE_KEYS: usize = 4;

/// The statement each release key signs to endorse the set of release keys a node is to
/// trust (the hub's release keys that are not retired, in the order given):
///
/// ```text
/// shoal-release-keys/1
/// ed25519:<base64>
/// ```
pub fn keys_statement(keys: &[PublicKey]) -> Vec<u8> {
    let mut out = format!("{KEYS_FORMAT}\n");
    for key in keys {
        out.push_str(&key.to_string());
        out.push('\n');
    }
    out.into_bytes()
}

/// What the hub wants a node's agent to be: a release for the node's architecture, signed by
/// a release key, where to download it, and the release keys to check it with. Travels in
/// the signed desired state (wire version 3).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentTarget {
    pub release: AgentRelease,
    /// A release key's signature over [`AgentRelease::signed_bytes`].
    pub signature: Vec<u8>,
    /// The hub's API: the binary is `{source}/v1/agent-binaries/{sha256}`, fetched with the
    /// node's credentials. Not signed by a release key (the digest is): a wrong source can
    /// only fail the download.
    pub source: ApiUrl,
    /// The hub's release keys (at most [`MAX_RELEASE_KEYS`]).
    pub release_keys: Vec<PublicKey>,
    /// Signatures over [`keys_statement`] of `release_keys`, one per key that signs it.
    pub endorsements: Vec<Vec<u8>>,
}

impl AgentTarget {
    /// Checks the target against the release keys the node trusts, and returns the release
    /// keys to trust from now on.
    ///
    /// `release_keys` are taken when an endorsement verifies with a key the node trusts; a node
    /// that trusts no release key yet (enrolled before its hub had one) takes them on first
    /// use, since the desired state they came in verified with the hub's state key. Then the
    /// release's signature must verify with the keys taken.
    pub fn accept(&self, trusted: &[PublicKey]) -> Result<Vec<PublicKey>, ReleaseError> {
        if self.release_keys.is_empty() || self.release_keys.len() > MAX_RELEASE_KEYS {
            return Err(ReleaseError::Keys(format!(
                "the target announces {} release keys; 1 to {MAX_RELEASE_KEYS} are allowed",
                self.release_keys.len()
            )));
        }
        if !trusted.is_empty() {
            let statement = keys_statement(&self.release_keys);
            let endorsed = self
                .endorsements
                .iter()
                .take(MAX_RELEASE_KEYS)
                .map(|e| signing::verify_bytes(&statement, e, trusted))
                .collect::<Vec<_>>();
            if !endorsed.iter().any(Result::is_ok) {
                let why = endorsed.into_iter().find_map(Result::err).map_or_else(
                    || "it carries no endorsement".to_string(),
                    |e| e.to_string(),
                );
                return Err(ReleaseError::Keys(format!(
                    "the announced release keys are not endorsed by a release key this node trusts: {why}"
                )));
            }
        }
        self.release.verify(&self.signature, &self.release_keys)?;
        Ok(self.release_keys.clone())
    }
}

impl fmt::Display for AgentRelease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "agent {} for {}", self.version, self.arch.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busybox_like(arch_machine: u16) -> Vec<u8> {
        // A minimal static ELF64 header: class 2, little-endian, e_machine, no program
        // headers (so no PT_INTERP).
        let mut bytes = vec![0u8; 64];
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[18..20].copy_from_slice(&arch_machine.to_le_bytes());
        bytes
    }

    #[test]
    fn a_static_binary_becomes_a_release_whose_signature_covers_every_field() {
        let bytes = busybox_like(183);
        let release =
            AgentRelease::of(parse_version("0.2.0").expect("version"), &bytes).expect("release");
        assert_eq!(release.arch, Arch::Aarch64);
        assert_eq!(release.size, 64);
        assert_eq!(release.to_string(), "agent 0.2.0 for aarch64");
        let (key, _) = SigningKey::generate().expect("key");
        let signature = release.sign(&key);
        assert_eq!(
            release.verify(&signature, &[key.public()]),
            Ok(key.public().id())
        );
        release.matches(&bytes).expect("its own bytes");
        let text = String::from_utf8(release.signed_bytes()).expect("text");
        assert!(
            text.starts_with("shoal-agent-release/1\nversion=0.2.0\narch=aarch64\nsha256="),
            "{text}"
        );

        type Tamper = fn(&mut AgentRelease);
        let tamper: [(&str, Tamper); 4] = [
            ("version", |r| r.version = semver::Version::new(0, 2, 1)),
            ("arch", |r| r.arch = Arch::X86_64),
            ("digest", |r| r.sha256[0] ^= 1),
            ("size", |r| r.size += 1),
        ];
        for (what, change) in tamper {
            let mut forged = release.clone();
            change(&mut forged);
            assert!(
                matches!(
                    forged.verify(&signature, &[key.public()]),
                    Err(ReleaseError::Signature(SignatureError::Invalid { .. }))
                ),
                "{what}"
            );
        }
        let (other, _) = SigningKey::generate().expect("key");
        assert!(matches!(
            release.verify(&release.sign(&other), &[key.public()]),
            Err(ReleaseError::Signature(SignatureError::UnknownKey { .. }))
        ));
    }

    fn target(keys: &[&SigningKey], signer: &SigningKey, endorsers: &[&SigningKey]) -> AgentTarget {
        let release =
            AgentRelease::of(semver::Version::new(0, 2, 0), &busybox_like(62)).expect("release");
        let release_keys: Vec<PublicKey> = keys.iter().map(|k| k.public()).collect();
        let statement = keys_statement(&release_keys);
        AgentTarget {
            signature: release.sign(signer),
            release,
            source: "https://hub.example:7440".parse().expect("url"),
            endorsements: endorsers.iter().map(|k| k.sign_bytes(&statement)).collect(),
            release_keys,
        }
    }

    #[test]
    fn a_target_is_taken_with_keys_the_node_trusts_and_refused_with_others() {
        let (old, _) = SigningKey::generate().expect("key");
        let (new, _) = SigningKey::generate().expect("key");
        let (thief, _) = SigningKey::generate().expect("key");
        // First use: a node that trusts no release key takes the announced ones.
        let first = target(&[&old], &old, &[&old]);
        assert_eq!(first.accept(&[]), Ok(vec![old.public()]));
        // Rotation: the set {old, new}, endorsed by old, signed by new.
        let rotated = target(&[&old, &new], &new, &[&old, &new]);
        assert_eq!(
            rotated.accept(&[old.public()]),
            Ok(vec![old.public(), new.public()])
        );
        // A stolen state key can announce keys, but cannot endorse them.
        let forged = target(&[&thief], &thief, &[&thief]);
        let refused = forged.accept(&[old.public()]).expect_err("not endorsed");
        assert!(refused.to_string().contains("not endorsed"), "{refused}");
        let bare = target(&[&thief], &thief, &[]);
        assert!(bare
            .accept(&[old.public()])
            .expect_err("no endorsement")
            .to_string()
            .contains("no endorsement"));
        // Endorsed keys, but the release signed by a key outside them.
        let outside = target(&[&old], &thief, &[&old]);
        assert!(matches!(
            outside.accept(&[old.public()]),
            Err(ReleaseError::Signature(SignatureError::UnknownKey { .. }))
        ));
        // A changed release under a good signature.
        let mut changed = target(&[&old], &old, &[&old]);
        changed.release.size += 1;
        assert!(matches!(
            changed.accept(&[old.public()]),
            Err(ReleaseError::Signature(SignatureError::Invalid { .. }))
        ));
        let none = target(&[], &old, &[]);
        assert!(matches!(none.accept(&[]), Err(ReleaseError::Keys(_))));
    }

    #[test]
    fn a_minimum_is_signed_in_format_2_and_a_release_without_one_keeps_format_1() {
        let bytes = busybox_like(62);
        let plain = AgentRelease::of(parse_version("0.4.0").expect("v"), &bytes).expect("release");
        let digest = hex::encode(&plain.sha256);
        // Format 1, byte for byte as releases were signed before minimums existed.
        assert_eq!(
            String::from_utf8(plain.signed_bytes()).expect("text"),
            format!(
                "shoal-agent-release/1\nversion=0.4.0\narch=x86_64\nsha256={digest}\nsize=64\n"
            )
        );
        let floored = plain
            .clone()
            .with_minimum(Some(parse_version("0.3.0").expect("v")))
            .expect("a minimum below the version");
        assert_eq!(
            String::from_utf8(floored.signed_bytes()).expect("text"),
            format!(
                "shoal-agent-release/2\nversion=0.4.0\narch=x86_64\nsha256={digest}\nsize=64\nminimum=0.3.0\n"
            )
        );
        let (key, _) = SigningKey::generate().expect("key");
        let old = plain.sign(&key);
        plain
            .verify(&old, &[key.public()])
            .expect("format 1 verifies");
        // A minimum added, removed or changed under a signature is a forgery.
        assert!(floored.verify(&old, &[key.public()]).is_err());
        let signed = floored.sign(&key);
        floored
            .verify(&signed, &[key.public()])
            .expect("format 2 verifies");
        assert!(plain.verify(&signed, &[key.public()]).is_err());
        let mut lowered = floored.clone();
        lowered.minimum = Some(parse_version("0.1.0").expect("v"));
        assert!(lowered.verify(&signed, &[key.public()]).is_err());
        // The version itself is a valid minimum; one above it is not.
        assert!(plain
            .clone()
            .with_minimum(Some(parse_version("0.4.0").expect("v")))
            .is_ok());
        let above = plain
            .with_minimum(Some(parse_version("0.5.0").expect("v")))
            .expect_err("above its version");
        assert!(above.to_string().contains("at most its version"), "{above}");
    }

    #[test]
    fn the_version_mark_in_a_binary_is_read_and_checked() {
        let mut bytes = busybox_like(62);
        assert_eq!(marked_version(&bytes), Err(ReleaseError::NoMark));
        bytes.extend_from_slice(VERSION_MARK);
        bytes.extend_from_slice(b"0.2.0\0tail");
        assert_eq!(marked_version(&bytes), Ok(semver::Version::new(0, 2, 0)));
        check_marked(&bytes, &semver::Version::new(0, 2, 0)).expect("the same");
        let error = check_marked(&bytes, &semver::Version::new(0, 3, 0)).expect_err("another");
        assert!(
            error
                .to_string()
                .contains("says it is agent 0.2.0, not 0.3.0"),
            "{error}"
        );
        // The same mark twice is one; two versions are refused; an unended mark is none.
        let mut twice = bytes.clone();
        twice.extend_from_slice(VERSION_MARK);
        twice.extend_from_slice(b"0.2.0\0");
        assert_eq!(marked_version(&twice), Ok(semver::Version::new(0, 2, 0)));
        let mut two = bytes.clone();
        two.extend_from_slice(VERSION_MARK);
        two.extend_from_slice(b"0.2.1\0");
        assert!(marked_version(&two).is_err());
        let mut open = busybox_like(62);
        open.extend_from_slice(VERSION_MARK);
        open.extend_from_slice(&[b'9'; 80]);
        assert_eq!(marked_version(&open), Err(ReleaseError::NoMark));
    }

    #[test]
    fn other_bytes_than_the_release_names_are_refused() {
        let bytes = busybox_like(62);
        let release = AgentRelease::of(semver::Version::new(1, 0, 0), &bytes).expect("release");
        let mut changed = bytes.clone();
        changed[63] = 1;
        assert!(matches!(
            release.matches(&changed),
            Err(ReleaseError::DigestMismatch { .. })
        ));
        assert_eq!(
            release.matches(&bytes[..10]),
            Err(ReleaseError::SizeMismatch {
                expected: 64,
                actual: 10
            })
        );
    }

    #[test]
    fn files_that_are_not_a_static_agent_and_bad_versions_are_refused_with_reasons() {
        assert_eq!(inspect(b""), Err(ReleaseError::Empty));
        assert!(matches!(
            inspect(b"#!/bin/sh\necho hi\n"),
            Err(ReleaseError::NotElf { .. })
        ));
        assert!(matches!(
            inspect(&busybox_like(8)),
            Err(ReleaseError::NotElf { reason }) if reason.contains("machine 8")
        ));
        if let Ok(me) = std::env::current_exe().and_then(std::fs::read) {
            // Test binaries link the C library dynamically.
            let refused = inspect(&me).expect_err("a dynamic executable");
            assert!(refused.to_string().contains("cross/build"), "{refused}");
        }
        for bad in ["", "1", "1.2", "v1.2.3", "1.2.3.4", &"9".repeat(70)] {
            let error = parse_version(bad).expect_err(bad);
            assert!(error.to_string().contains("MAJOR.MINOR.PATCH"), "{error}");
        }
        assert!(
            parse_version("0.2.0-rc.1").expect("pre-release")
                < parse_version("0.2.0").expect("release")
        );
    }
}
