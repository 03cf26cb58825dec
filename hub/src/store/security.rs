//! Enrollment tokens, node credentials and the hub's signing keys.
//!
//! - A node is registered with an empty password hash and one enrollment token (only its
//!   SHA-256 is stored). Enrolling checks the token, takes it (one use), sets the node's
//!   password hash and forgets what the node reported before, all in one transaction.
//! - Signing keys: exactly one `active` key once the hub has started, at most one `next`.

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};
use shoal_model::wire::signing::{PublicKey, SigningKey};

use super::{labels_text, query, to_i64, to_u64, Store, StoreError};
use crate::broker::password::constant_time_eq;

/// Where a signing key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// Signs every desired state.
    Active,
    /// Announced beside the active key; signs once every node has it.
    Next,
    /// Signed once; its private half is erased.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Active => "active",
            KeyState::Next => "next",
            KeyState::Retired => "retired",
        }
    }
}

/// One of the hub's signing keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub id: String,
    pub public: PublicKey,
    /// The private key (PKCS#8); `None` once retired.
    pub pkcs8: Option<Vec<u8>>,
    pub state: KeyState,
    pub created_ms: u64,
    pub changed_ms: u64,
}

/// Why an enrollment was refused. Every case leaves the store as it was.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("no token is outstanding for node `{0}`: a token works once, and `shoal node add {0}` issues a new one")]
    NoToken(String),
    #[error("the token for node `{0}` is wrong, or was already used: tokens work once; `shoal node add {0}` issues a new one")]
    WrongToken(String),
    #[error("the token for node `{node}` expired {ago_s} s ago: `shoal node add {node}` issues a new one")]
    Expired { node: String, ago_s: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    // ---- enrollment ----

    /// Registers `node` if it is new (labels are set only then) and gives it a fresh token,
    /// replacing any outstanding one. An enrolled node keeps working until the token is used.
    pub fn issue_token(
        &self,
        node: &str,
        labels: &std::collections::BTreeMap<String, String>,
        secret_hash: &str,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let labels = labels_text(labels)?;
        let mut conn = self.conn();
        let failed = query("issuing an enrollment token");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute(
            "INSERT INTO nodes (name, password_hash, labels, created_at) VALUES (?1, '', ?2, ?3) \
             ON CONFLICT (name) DO NOTHING",
            params![node, labels, to_i64(now_ms)],
        )
        .map_err(failed)?;
        tx.execute(
            "INSERT OR REPLACE INTO enrollment_tokens (node, secret_hash, expires_at, created_at) \
             VALUES (?1, ?2, ?3, ?4)",
            params![node, secret_hash, to_i64(expires_ms), to_i64(now_ms)],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)
    }

    /// Takes `node`'s token if `secret_hash` matches it and it has not expired, and gives the
    /// node `password_hash`. The node's old status and events go: a re-enrolled device
    /// (wiped, or replaced) counts its status and events from 1 again.
    pub fn enroll(
        &self,
        node: &str,
        secret_hash: &str,
        password_hash: &str,
        now_ms: u64,
    ) -> Result<(), EnrollError> {
        let mut conn = self.conn();
        let failed = query("enrolling a node");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let row: Option<(String, i64)> = tx
            .query_row(
                "SELECT secret_hash, expires_at FROM enrollment_tokens WHERE node = ?1",
                [node],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
            .map_err(failed)?;
        let Some((stored, expires)) = row else {
            return Err(EnrollError::NoToken(node.to_string()));
        };
        if !constant_time_eq(stored.as_bytes(), secret_hash.as_bytes()) {
            return Err(EnrollError::WrongToken(node.to_string()));
        }
        let expires = to_u64(expires);
        if now_ms > expires {
            return Err(EnrollError::Expired {
                node: node.to_string(),
                ago_s: (now_ms - expires) / 1000,
            });
        }
        tx.execute("DELETE FROM enrollment_tokens WHERE node = ?1", [node])
            .map_err(failed)?;
        let updated = tx
            .execute(
                "UPDATE nodes SET password_hash = ?2 WHERE name = ?1",
                params![node, password_hash],
            )
            .map_err(failed)?;
        if updated == 0 {
            return Err(EnrollError::NoToken(node.to_string()));
        }
        tx.execute("DELETE FROM node_status WHERE node = ?1", [node])
            .map_err(failed)?;
        tx.execute("DELETE FROM events WHERE node = ?1", [node])
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(())
    }

    /// Forgets `node`: its credentials, token, labels, placement, desired state, status and
    /// events. Returns whether it existed.
    pub fn remove_node(&self, node: &str) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let failed = query("removing a node");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let removed = tx
            .execute("DELETE FROM nodes WHERE name = ?1", [node])
            .map_err(failed)?;
        for table in [
            "DELETE FROM enrollment_tokens WHERE node = ?1",
            "DELETE FROM placement WHERE node = ?1",
            "DELETE FROM node_desired WHERE node = ?1",
            "DELETE FROM node_status WHERE node = ?1",
            "DELETE FROM events WHERE node = ?1",
        ] {
            tx.execute(table, [node]).map_err(failed)?;
        }
        tx.commit().map_err(failed)?;
        Ok(removed > 0)
    }

    /// When `node`'s outstanding token expires, if it has one.
    pub fn token_expiry(&self, node: &str) -> Result<Option<u64>, StoreError> {
        self.conn()
            .query_row(
                "SELECT expires_at FROM enrollment_tokens WHERE node = ?1",
                [node],
                |row| row.get::<_, i64>(0),
            )
            .optional()
            .map(|found| found.map(to_u64))
            .map_err(query("reading an enrollment token"))
    }

    // ---- signing keys ----

    /// Every signing key, newest first.
    pub fn signing_keys(&self) -> Result<Vec<StoredKey>, StoreError> {
        Self::read_signing_keys(&self.conn())
    }

    pub(super) fn read_signing_keys(conn: &Connection) -> Result<Vec<StoredKey>, StoreError> {
        read_keys(conn, KeyTable::State)
    }

    /// Stores a new key as `active` when there is none (first start) or as `next`.
    /// Fails if a rotation is already under way.
    pub fn add_signing_key(
        &self,
        public: PublicKey,
        pkcs8: &[u8],
        state: KeyState,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        add_key(&self.conn(), KeyTable::State, public, pkcs8, state, now_ms)
    }

    /// Ends a rotation: the `next` key becomes `active`, the active one `retired` with its
    /// private half erased. Returns whether there was a next key.
    pub fn promote_next_key(&self, now_ms: u64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let failed = query("promoting the next signing key");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let next: Option<String> = tx
            .query_row(
                "SELECT id FROM signing_keys WHERE state = 'next'",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed)?;
        let Some(next) = next else {
            return Ok(false);
        };
        promote(&tx, &next, now_ms)?;
        tx.commit().map_err(failed)?;
        Ok(true)
    }
}

/// The two kinds of hub keys, each in a table of the same shape: desired-state signing keys
/// and agent-release keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum KeyTable {
    State,
    Release,
}

impl KeyTable {
    fn name(self) -> &'static str {
        match self {
            KeyTable::State => "signing_keys",
            KeyTable::Release => "release_keys",
        }
    }
}

/// Every key of `table`, newest first.
pub(super) fn read_keys(conn: &Connection, table: KeyTable) -> Result<Vec<StoredKey>, StoreError> {
    let failed = query("reading signing keys");
    let mut statement = conn
        .prepare(&format!(
            "SELECT id, public, pkcs8, state, created_at, changed_at FROM {} \
             ORDER BY created_at DESC, id",
            table.name()
        ))
        .map_err(failed)?;
    let rows = statement
        .query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<Vec<u8>>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, i64>(5)?,
            ))
        })
        .map_err(failed)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, public, pkcs8, state, created, changed) = row.map_err(failed)?;
        out.push(StoredKey {
            id,
            public: public
                .parse()
                .map_err(
                    |e: shoal_model::wire::signing::SignatureError| StoreError::Decode {
                        what: "signing key",
                        reason: e.to_string(),
                    },
                )?,
            pkcs8,
            state: match state.as_str() {
                "active" => KeyState::Active,
                "next" => KeyState::Next,
                _ => KeyState::Retired,
            },
            created_ms: to_u64(created),
            changed_ms: to_u64(changed),
        });
    }
    Ok(out)
}

pub(super) fn add_key(
    conn: &Connection,
    table: KeyTable,
    public: PublicKey,
    pkcs8: &[u8],
    state: KeyState,
    now_ms: u64,
) -> Result<(), StoreError> {
    conn.execute(
        &format!(
            "INSERT INTO {} (id, public, pkcs8, state, created_at, changed_at) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
            table.name()
        ),
        params![
            public.id().to_string(),
            public.to_string(),
            pkcs8,
            state.as_str(),
            to_i64(now_ms)
        ],
    )
    .map_err(query("storing a signing key"))?;
    Ok(())
}

/// Makes key `next` active and retires the active one (its private half erased), if `next` is
/// still the next key; says whether it was.
pub(super) fn promote(conn: &Connection, next: &str, now_ms: u64) -> Result<bool, StoreError> {
    let failed = query("promoting the next signing key");
    let state: Option<String> = conn
        .query_row(
            "SELECT state FROM signing_keys WHERE id = ?1",
            [next],
            |row| row.get(0),
        )
        .optional()
        .map_err(failed)?;
    if state.as_deref() != Some(KeyState::Next.as_str()) {
        return Ok(false);
    }
    conn.execute(
        "UPDATE signing_keys SET state = 'retired', pkcs8 = NULL, changed_at = ?1 \
         WHERE state = 'active'",
        [to_i64(now_ms)],
    )
    .map_err(failed)?;
    conn.execute(
        "UPDATE signing_keys SET state = 'active', changed_at = ?2 WHERE id = ?1",
        params![next, to_i64(now_ms)],
    )
    .map_err(failed)?;
    Ok(true)
}

/// The private half of `key`, to sign with.
pub fn signing_key(key: &StoredKey) -> Result<SigningKey, StoreError> {
    let pkcs8 = key.pkcs8.as_deref().ok_or(StoreError::Decode {
        what: "signing key",
        reason: format!("the private half of key {} is missing", key.id),
    })?;
    SigningKey::from_pkcs8(pkcs8).map_err(|e| StoreError::Decode {
        what: "signing key",
        reason: e.to_string(),
    })
}

/// The active key's private half, and the public keys to announce (active first, then next).
pub fn key_ring(keys: &[StoredKey]) -> Result<Option<(SigningKey, Vec<PublicKey>)>, StoreError> {
    let Some(active) = keys.iter().find(|k| k.state == KeyState::Active) else {
        return Ok(None);
    };
    let signing = signing_key(active)?;
    let mut announced = vec![active.public];
    announced.extend(
        keys.iter()
            .filter(|k| k.state == KeyState::Next)
            .map(|k| k.public),
    );
    Ok(Some((signing, announced)))
}
