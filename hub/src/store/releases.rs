//! Agent releases (`shoal agent-release`) and the keys that sign them (migration 0006).
//!
//! - A release is one row per version and architecture with what the release key signed;
//!   its binary is stored once per digest, in the same transaction, so there is never a
//!   release without its bytes nor bytes without a release (removing the last release of a
//!   digest removes the bytes).
//! - Adding the same binary under the same version again changes nothing; another binary
//!   under a version and architecture that already exist is refused: a version names one
//!   set of bytes for ever, or agents could not tell which they run.
//! - Release keys: one `active` key once the hub has started, like the state keys.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior, MAIN_DB};
use shoal_model::elf::Arch;
use shoal_model::hex;
use shoal_model::release::{self, AgentRelease};
use shoal_model::wire::signing::{PublicKey, SigningKey};

use super::security::{add_key, read_keys, signing_key, KeyTable};
use super::{query, to_i64, to_u64, KeyState, Store, StoreError, StoredKey};
pub use crate::control::agent::ReleaseTrust;

/// A release as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredRelease {
    pub release: AgentRelease,
    /// The release key's signature over `release.signed_bytes()`.
    pub signature: Vec<u8>,
    pub created_ms: u64,
}

/// What [`Store::rotate_release_key`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReleaseRotation {
    /// The key that was active, now retired.
    pub retired: String,
    /// The new active key.
    pub active: String,
    /// How many stored releases were signed again with it.
    pub signed_again: usize,
}

/// What adding a release did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReleaseAdded {
    New,
    /// The same bytes were already released under this version.
    AlreadyThere,
}

/// Why a release was not stored. Every case leaves the store as it was.
#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error(
        "agent {version} for {arch} is already released with other bytes (sha256 {existing}): \
         a version names one binary; release this one under a new version, or \
         `shoal agent-release rm {version} --arch {arch}` first"
    )]
    Conflict {
        version: String,
        arch: &'static str,
        existing: String,
    },
    #[error(
        "agent {version} for {arch} is already released with {existing}: a release's minimum \
         is signed with it; `shoal agent-release rm {version} --arch {arch}` first to sign it \
         again with another"
    )]
    MinimumConflict {
        version: String,
        arch: &'static str,
        existing: String,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// The active release key, made on the first call (the hub's first start after
    /// migration 0006).
    pub fn release_key(&self, now_ms: u64) -> Result<SigningKey, StoreError> {
        let mut conn = self.conn();
        let failed = query("reading the release key");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let key = active_release_key(&tx, now_ms)?;
        tx.commit().map_err(failed)?;
        Ok(key)
    }

    /// Rotates the release key in one transaction: a new key becomes active; the active one
    /// signs the new key set ([`release::keys_statement`]), keeps only that signature (its
    /// bridge) and is retired with its private half erased; every stored release is signed
    /// again with the new key (its statement unchanged). A node that trusts only the old key
    /// takes the new one through the bridge the next time it gets a target, so nothing waits
    /// for the fleet. Returns the old and new keys' ids and how many releases were signed
    /// again.
    pub fn rotate_release_key(&self, now_ms: u64) -> Result<ReleaseRotation, StoreError> {
        let (new, pkcs8) = SigningKey::generate().map_err(|e| StoreError::Decode {
            what: "release key",
            reason: e.to_string(),
        })?;
        let mut conn = self.conn();
        let failed = query("rotating the release key");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let old = active_release_key(&tx, now_ms)?;
        let bridge = old.sign_bytes(&release::keys_statement(&[new.public()]));
        tx.execute(
            "UPDATE release_keys SET state = 'retired', pkcs8 = NULL, endorsement = ?2, \
             changed_at = ?3 WHERE id = ?1",
            params![old.public().id().to_string(), bridge, to_i64(now_ms)],
        )
        .map_err(failed)?;
        add_key(
            &tx,
            KeyTable::Release,
            new.public(),
            &pkcs8,
            KeyState::Active,
            now_ms,
        )?;
        let releases = read_releases(&tx)?;
        for stored in &releases {
            tx.execute(
                "UPDATE agent_releases SET signature = ?3 WHERE version = ?1 AND arch = ?2",
                params![
                    stored.release.version.to_string(),
                    stored.release.arch.as_str(),
                    stored.release.sign(&new)
                ],
            )
            .map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        Ok(ReleaseRotation {
            retired: old.public().id().to_string(),
            active: new.public().id().to_string(),
            signed_again: releases.len(),
        })
    }

    /// Stores `release`, signed by the active release key in the same transaction (so a
    /// rotation cannot slip between the signature and the row), with its binary `bytes`
    /// (which the caller checked against it).
    pub fn add_agent_release(
        &self,
        release: &AgentRelease,
        bytes: &[u8],
        now_ms: u64,
    ) -> Result<ReleaseAdded, ReleaseError> {
        let mut conn = self.conn();
        let failed = query("storing an agent release");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let version = release.version.to_string();
        let arch = release.arch.as_str();
        let digest = hex::encode(&release.sha256);
        let minimum = release.minimum.as_ref().map(ToString::to_string);
        let existing: Option<(String, Option<String>)> = tx
            .query_row(
                "SELECT sha256, minimum FROM agent_releases WHERE version = ?1 AND arch = ?2",
                params![version, arch],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(failed)?;
        match existing {
            Some((existing, before)) if existing == digest && before == minimum => {
                return Ok(ReleaseAdded::AlreadyThere)
            }
            Some((existing, before)) if existing == digest => {
                return Err(ReleaseError::MinimumConflict {
                    version,
                    arch,
                    existing: before
                        .map_or_else(|| "no minimum".to_string(), |m| format!("minimum {m}")),
                })
            }
            Some((existing, _)) => {
                return Err(ReleaseError::Conflict {
                    version,
                    arch,
                    existing,
                })
            }
            None => {}
        }
        let signature = release.sign(&active_release_key(&tx, now_ms)?);
        tx.execute(
            "INSERT OR IGNORE INTO agent_binaries (sha256, bytes) VALUES (?1, ?2)",
            params![digest, bytes],
        )
        .map_err(failed)?;
        tx.execute(
            "INSERT INTO agent_releases \
             (version, arch, sha256, size, signature, created_at, minimum) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                version,
                arch,
                digest,
                to_i64(release.size),
                signature,
                to_i64(now_ms),
                minimum
            ],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(ReleaseAdded::New)
    }

    /// Every release, newest version first, then by architecture.
    pub fn agent_releases(&self) -> Result<Vec<StoredRelease>, StoreError> {
        read_releases(&self.conn())
    }

    /// Every release key, newest first (`shoal key list`).
    pub fn release_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        read_keys(&self.conn(), KeyTable::Release)
    }

    /// The release keys nodes are to trust (what enrollment hands out).
    pub fn release_public_keys(&self) -> Result<Vec<PublicKey>, StoreError> {
        Ok(announced_release_keys(&self.conn())?
            .iter()
            .map(|k| k.public)
            .collect())
    }
}

/// The release keys nodes are to trust (every key not retired, newest first) and, by each
/// key with its private half, its signature over that set
/// ([`shoal_model::release::keys_statement`]).
pub(super) fn read_trust(conn: &Connection) -> Result<Option<ReleaseTrust>, StoreError> {
    let keys = announced_release_keys(conn)?;
    if keys.is_empty() {
        return Ok(None);
    }
    let public: Vec<PublicKey> = keys.iter().map(|k| k.public).collect();
    let statement = release::keys_statement(&public);
    let mut endorsements = Vec::new();
    for key in keys.iter().filter(|k| k.pkcs8.is_some()) {
        endorsements.push(signing_key(key)?.sign_bytes(&statement));
    }
    // The bridges of retired keys that endorse exactly this set: the last rotation's, until
    // the next one (older bridges name another set and verify no more).
    for (key, bridge) in bridges(conn)? {
        if endorsements.len() >= release::MAX_RELEASE_KEYS {
            break;
        }
        if shoal_model::wire::signing::verify_bytes(&statement, &bridge, &[key]).is_ok() {
            endorsements.push(bridge);
        }
    }
    Ok(Some(ReleaseTrust {
        keys: public,
        endorsements,
    }))
}

/// The active release key's private half, made when there is none (the hub's first start
/// after migration 0006).
fn active_release_key(conn: &Connection, now_ms: u64) -> Result<SigningKey, StoreError> {
    let keys = read_keys(conn, KeyTable::Release)?;
    if let Some(active) = keys.iter().find(|k| k.state == KeyState::Active) {
        return signing_key(active);
    }
    let (key, pkcs8) = SigningKey::generate().map_err(|e| StoreError::Decode {
        what: "release key",
        reason: e.to_string(),
    })?;
    add_key(
        conn,
        KeyTable::Release,
        key.public(),
        &pkcs8,
        KeyState::Active,
        now_ms,
    )?;
    Ok(key)
}

/// Each retired release key with the signature it left over the set that replaced it,
/// newest first.
fn bridges(conn: &Connection) -> Result<Vec<(PublicKey, Vec<u8>)>, StoreError> {
    let failed = query("reading release-key bridges");
    let mut statement = conn
        .prepare(
            "SELECT public, endorsement FROM release_keys \
             WHERE state = 'retired' AND endorsement IS NOT NULL \
             ORDER BY changed_at DESC, id",
        )
        .map_err(failed)?;
    let rows = statement
        .query_map([], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .map_err(failed)?;
    let mut out = Vec::new();
    for row in rows {
        let (public, bridge) = row.map_err(failed)?;
        let public = public
            .parse()
            .map_err(
                |e: shoal_model::wire::signing::SignatureError| StoreError::Decode {
                    what: "release key",
                    reason: e.to_string(),
                },
            )?;
        out.push((public, bridge));
    }
    Ok(out)
}

/// The release keys that are not retired, newest first, at most as many as a target carries.
fn announced_release_keys(conn: &Connection) -> Result<Vec<StoredKey>, StoreError> {
    Ok(read_keys(conn, KeyTable::Release)?
        .into_iter()
        .filter(|k| k.state != KeyState::Retired)
        .take(release::MAX_RELEASE_KEYS)
        .collect())
}

/// Every release, newest version first, then by architecture.
pub(super) fn read_releases(conn: &Connection) -> Result<Vec<StoredRelease>, StoreError> {
    let failed = query("reading agent releases");
    let mut statement = conn
        .prepare(
            "SELECT version, arch, sha256, size, signature, created_at, minimum \
             FROM agent_releases",
        )
        .map_err(failed)?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, i64>(3)?,
                row.get::<_, Vec<u8>>(4)?,
                row.get::<_, i64>(5)?,
                row.get::<_, Option<String>>(6)?,
            ))
        })
        .map_err(failed)?;
    let mut out = Vec::new();
    for row in rows {
        let (version, arch, digest, size, signature, created, minimum) = row.map_err(failed)?;
        let bad = |reason: String| StoreError::Decode {
            what: "agent release",
            reason: format!("{version} for {arch}: {reason}"),
        };
        let sha256: [u8; 32] = hex::decode(&digest)
            .and_then(|bytes| bytes.try_into().ok())
            .ok_or_else(|| bad(format!("sha256 `{digest}`")))?;
        let minimum = minimum
            .as_deref()
            .map(release::parse_version)
            .transpose()
            .map_err(|e| bad(format!("minimum: {e}")))?;
        let release = AgentRelease {
            version: release::parse_version(&version).map_err(|e| bad(e.to_string()))?,
            arch: Arch::parse(&arch).map_err(&bad)?,
            sha256,
            size: to_u64(size),
            minimum: None,
        }
        .with_minimum(minimum)
        .map_err(|e| bad(e.to_string()))?;
        out.push(StoredRelease {
            release,
            signature,
            created_ms: to_u64(created),
        });
    }
    out.sort_by(|a, b| {
        b.release
            .version
            .cmp(&a.release.version)
            .then(a.release.arch.as_str().cmp(b.release.arch.as_str()))
    });
    Ok(out)
}

impl Store {
    /// Removes the releases of `version` (of one architecture, or all), and the binaries no
    /// release names any more. Returns how many releases it removed.
    pub fn remove_agent_release(
        &self,
        version: &release::Version,
        arch: Option<Arch>,
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let failed = query("removing an agent release");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let version = version.to_string();
        let removed = match arch {
            Some(arch) => tx.execute(
                "DELETE FROM agent_releases WHERE version = ?1 AND arch = ?2",
                params![version, arch.as_str()],
            ),
            None => tx.execute(
                "DELETE FROM agent_releases WHERE version = ?1",
                params![version],
            ),
        }
        .map_err(failed)?;
        tx.execute(
            "DELETE FROM agent_binaries WHERE sha256 NOT IN (SELECT sha256 FROM agent_releases)",
            [],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(removed)
    }

    /// Up to `len` bytes of the binary with digest `sha256` from `offset`, and its whole
    /// size; `None` when no release has that digest. Reads only the pages asked for.
    pub fn agent_binary_range(
        &self,
        sha256: &[u8; 32],
        offset: u64,
        len: usize,
    ) -> Result<Option<(u64, Vec<u8>)>, StoreError> {
        let conn = self.conn();
        let failed = query("reading an agent binary");
        let rowid: Option<i64> = conn
            .query_row(
                "SELECT rowid FROM agent_binaries WHERE sha256 = ?1",
                [hex::encode(sha256)],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed)?;
        let Some(rowid) = rowid else {
            return Ok(None);
        };
        let blob = conn
            .blob_open(MAIN_DB, c"agent_binaries", c"bytes", rowid, true)
            .map_err(failed)?;
        let total = u64::try_from(blob.len()).unwrap_or(0);
        let start = offset.min(total);
        let want = usize::try_from(total - start)
            .unwrap_or(usize::MAX)
            .min(len);
        let mut out = vec![0; want];
        let at = usize::try_from(start).unwrap_or(usize::MAX);
        blob.read_at_exact(&mut out, at).map_err(failed)?;
        Ok(Some((total, out)))
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    pub(in crate::store) fn elf(machine: u16, filler: u8) -> Vec<u8> {
        // A static ELF64 header with no program headers, then `filler` bytes.
        let mut bytes = vec![filler; 200_000];
        bytes[..64].fill(0);
        bytes[..4].copy_from_slice(b"\x7fELF");
        bytes[4] = 2;
        bytes[5] = 1;
        bytes[18..20].copy_from_slice(&machine.to_le_bytes());
        bytes
    }

    pub(in crate::store) fn stored(
        store: &Store,
        version: &str,
        bytes: &[u8],
    ) -> Result<ReleaseAdded, ReleaseError> {
        let release =
            AgentRelease::of(release::parse_version(version).expect("v"), bytes).expect("release");
        store.add_agent_release(&release, bytes, 5)
    }

    #[test]
    fn a_release_is_stored_with_its_bytes_signed_by_a_key_that_survives_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let key = store.release_key(1).expect("key");
        assert_eq!(store.release_key(2).expect("again").public(), key.public());
        let state_keys = store.signing_keys().expect("state keys");
        assert!(state_keys.iter().all(|k| k.public != key.public()));

        let bytes = elf(183, 7);
        assert_eq!(
            stored(&store, "0.2.0", &bytes).expect("add"),
            ReleaseAdded::New
        );
        assert_eq!(
            stored(&store, "0.2.0", &bytes).expect("again"),
            ReleaseAdded::AlreadyThere
        );
        let refused = stored(&store, "0.2.0", &elf(183, 8)).expect_err("other bytes");
        assert!(
            matches!(refused, ReleaseError::Conflict { .. }),
            "{refused}"
        );
        assert!(
            refused.to_string().contains("agent-release rm 0.2.0"),
            "{refused}"
        );
        drop(store);

        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.release_key(3).expect("key").public(), key.public());
        let releases = store.agent_releases().expect("list");
        assert_eq!(releases.len(), 1);
        let release = &releases[0];
        assert_eq!(release.release.arch, Arch::Aarch64);
        release
            .release
            .verify(&release.signature, &[key.public()])
            .expect("the stored signature verifies");
        let (total, head) = store
            .agent_binary_range(&release.release.sha256, 0, 64)
            .expect("read")
            .expect("present");
        assert_eq!((total, head.as_slice()), (200_000, &bytes[..64]));
        let (_, tail) = store
            .agent_binary_range(&release.release.sha256, 199_990, 1000)
            .expect("read")
            .expect("present");
        assert_eq!(tail, &bytes[199_990..]);
        let (_, past) = store
            .agent_binary_range(&release.release.sha256, 300_000, 10)
            .expect("read")
            .expect("present");
        assert!(past.is_empty());
    }

    #[test]
    fn a_minimum_is_stored_with_its_release_and_verifies_after_a_restart_and_cannot_change() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let key = store.release_key(1).expect("key");
        let bytes = elf(62, 3);
        let floored = AgentRelease::of(release::parse_version("0.4.0").expect("v"), &bytes)
            .and_then(|r| r.with_minimum(Some(release::parse_version("0.3.0").expect("v"))))
            .expect("release");
        assert_eq!(
            store.add_agent_release(&floored, &bytes, 5).expect("add"),
            ReleaseAdded::New
        );
        // The same bytes under another minimum (or none) would be another statement.
        let plain = AgentRelease {
            minimum: None,
            ..floored.clone()
        };
        let refused = store
            .add_agent_release(&plain, &bytes, 6)
            .expect_err("another minimum");
        assert!(
            refused
                .to_string()
                .contains("already released with minimum 0.3.0"),
            "{refused}"
        );
        // A release without one beside it keeps format 1.
        assert_eq!(
            stored(&store, "0.2.0", &elf(62, 4)).expect("add"),
            ReleaseAdded::New
        );
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let releases = store.agent_releases().expect("list");
        assert_eq!(releases.len(), 2);
        assert_eq!(releases[0].release, floored);
        assert_eq!(releases[1].release.minimum, None);
        for r in &releases {
            r.release
                .verify(&r.signature, &[key.public()])
                .expect("each verifies as stored");
        }
        // A minimum changed in the database no longer verifies, and garbage is refused.
        let conn = Connection::open(dir.path().join("hub.db")).expect("db");
        conn.execute(
            "UPDATE agent_releases SET minimum = '0.1.0' WHERE version = '0.4.0'",
            [],
        )
        .expect("lower it");
        let lowered = store.agent_releases().expect("list");
        assert!(lowered[0]
            .release
            .verify(&lowered[0].signature, &[key.public()])
            .is_err());
        conn.execute(
            "UPDATE agent_releases SET minimum = 'soon' WHERE version = '0.4.0'",
            [],
        )
        .expect("spoil it");
        let error = store.agent_releases().expect_err("unreadable").to_string();
        assert!(error.contains("0.4.0 for x86_64: minimum"), "{error}");
    }

    #[test]
    fn rotating_the_release_key_signs_every_release_again_and_bridges_the_old_key() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let old = store.release_key(1).expect("key").public();
        stored(&store, "0.2.0", &elf(183, 1)).expect("add");
        stored(&store, "0.3.0", &elf(62, 2)).expect("add");
        let before = read_trust(&store.conn()).expect("trust").expect("some");
        assert_eq!(before.keys, vec![old]);

        let rotated = store.rotate_release_key(10).expect("rotate");
        assert_eq!(rotated.retired, old.id().to_string());
        assert_eq!(rotated.signed_again, 2);
        drop(store);
        let store = Store::open(dir.path()).expect("reopen");
        let new = store.release_key(11).expect("key").public();
        assert_ne!(new, old);
        assert_eq!(rotated.active, new.id().to_string());
        let keys = read_keys(&store.conn(), KeyTable::Release).expect("keys");
        let retired = keys.iter().find(|k| k.public == old).expect("old kept");
        assert_eq!(
            (retired.state, retired.pkcs8.is_none()),
            (KeyState::Retired, true)
        );
        // Every release verifies with the new key alone, no more with the old one.
        let releases = store.agent_releases().expect("list");
        assert_eq!(releases.len(), 2);
        for r in &releases {
            r.release.verify(&r.signature, &[new]).expect("new key");
            assert!(r.release.verify(&r.signature, &[old]).is_err());
        }
        // Nodes are told the new key alone, endorsed by it and by the old key's bridge: a
        // node that trusts only the old key takes it, one that trusts neither does not.
        let trust = read_trust(&store.conn()).expect("trust").expect("some");
        assert_eq!(trust.keys, vec![new]);
        assert_eq!(trust.endorsements.len(), 2);
        let statement = release::keys_statement(&trust.keys);
        let by = |key: PublicKey| {
            trust
                .endorsements
                .iter()
                .any(|e| shoal_model::wire::signing::verify_bytes(&statement, e, &[key]).is_ok())
        };
        assert!(by(new) && by(old));
        let (stranger, _) = SigningKey::generate().expect("key");
        assert!(!by(stranger.public()));
        // A release added afterwards is signed by the new key.
        stored(&store, "0.4.0", &elf(62, 3)).expect("add");
        let added = store.agent_releases().expect("list");
        added[0]
            .release
            .verify(&added[0].signature, &[new])
            .expect("new key");

        // A second rotation: the first bridge names a set no longer announced, so only the
        // second one goes out (a node two rotations behind must enroll again).
        let second = store.rotate_release_key(20).expect("rotate again");
        assert_eq!(second.signed_again, 3);
        let trust = read_trust(&store.conn()).expect("trust").expect("some");
        assert_eq!(
            trust.endorsements.len(),
            2,
            "the newest key's and one bridge"
        );
        let statement = release::keys_statement(&trust.keys);
        assert!(trust
            .endorsements
            .iter()
            .all(|e| { shoal_model::wire::signing::verify_bytes(&statement, e, &[old]).is_err() }));
        assert!(trust
            .endorsements
            .iter()
            .any(|e| { shoal_model::wire::signing::verify_bytes(&statement, e, &[new]).is_ok() }));
    }

    #[test]
    fn removing_the_last_release_of_a_binary_removes_the_binary_and_versions_sort_newest_first() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path()).expect("store");
        let arm = elf(183, 1);
        let x86 = elf(62, 1);
        for (version, bytes) in [("0.2.0", &arm), ("0.10.0", &arm), ("0.10.0", &x86)] {
            stored(&store, version, bytes).expect("add");
        }
        let listed: Vec<String> = store
            .agent_releases()
            .expect("list")
            .iter()
            .map(|r| r.release.to_string())
            .collect();
        assert_eq!(
            listed,
            [
                "agent 0.10.0 for aarch64",
                "agent 0.10.0 for x86_64",
                "agent 0.2.0 for aarch64"
            ]
        );
        let arm_digest = hex::sha256(&arm);
        let v = |text| release::parse_version(text).expect("v");
        assert_eq!(
            store.remove_agent_release(&v("0.10.0"), None).expect("rm"),
            2
        );
        assert!(store
            .agent_binary_range(&arm_digest, 0, 1)
            .expect("read")
            .is_some());
        assert!(store
            .agent_binary_range(&hex::sha256(&x86), 0, 1)
            .expect("read")
            .is_none());
        assert_eq!(
            store
                .remove_agent_release(&v("0.2.0"), Some(Arch::X86_64))
                .expect("rm"),
            0
        );
        assert_eq!(
            store
                .remove_agent_release(&v("0.2.0"), Some(Arch::Aarch64))
                .expect("rm"),
            1
        );
        assert!(store
            .agent_binary_range(&arm_digest, 0, 1)
            .expect("read")
            .is_none());
    }
}
