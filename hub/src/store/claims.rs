//! Claim tokens: one token, up to `uses` devices, each enrolled as its own node.
//!
//! Enrolling with a claim is one `IMMEDIATE` transaction on the store's one connection:
//! the claim is checked (secret, revocation, expiry, uses left), the node's name is made
//! unique against every node the hub knows, the node is created with its own password hash
//! and the claim's labels, and the use is counted. Two devices racing for the last use
//! cannot both win, and a refusal leaves the store as it was.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{labels_of, labels_text, query, to_i64, to_u64, Store, StoreError};
use crate::broker::password::constant_time_eq;
use crate::claim;

/// A claim token as stored (without its secret hash).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredClaim {
    pub id: String,
    pub labels: BTreeMap<String, String>,
    pub name_template: String,
    pub uses: u32,
    pub used: u32,
    pub created_ms: u64,
    pub expires_ms: u64,
    pub revoked_ms: Option<u64>,
    /// The nodes it enrolled, oldest first.
    pub nodes: Vec<String>,
}

impl StoredClaim {
    /// `active`, `used-up`, `expired` or `revoked` at `now_ms` (revoked wins).
    pub fn state(&self, now_ms: u64) -> &'static str {
        if self.revoked_ms.is_some() {
            "revoked"
        } else if self.used >= self.uses {
            "used-up"
        } else if now_ms > self.expires_ms {
            "expired"
        } else {
            "active"
        }
    }
}

/// Why a claim enrollment was refused. Every case leaves the store as it was.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("no claim token `{0}` on this hub: `shoal token list` shows them, `shoal token create` issues one")]
    NoClaim(String),
    #[error("the secret of claim token `{0}` is wrong: copy the whole token `shoal token create` printed")]
    WrongSecret(String),
    #[error("claim token `{0}` was revoked: `shoal token create` issues a new one")]
    Revoked(String),
    #[error("claim token `{id}` expired {ago_s} s ago: `shoal token create` issues a new one")]
    Expired { id: String, ago_s: u64 },
    #[error("claim token `{id}` has enrolled all {uses} devices it allows: `shoal token create --uses N` issues a new one")]
    UsedUp { id: String, uses: u32 },
    #[error("claim token `{id}`: {reason}")]
    Naming { id: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What enrolling reads of a claim, as stored.
struct ClaimRow {
    secret_hash: String,
    labels: String,
    template: String,
    uses: i64,
    used: i64,
    expires: i64,
    revoked: Option<i64>,
}

impl Store {
    /// Stores a new claim token.
    #[allow(clippy::too_many_arguments)]
    pub fn create_claim(
        &self,
        id: &str,
        secret_hash: &str,
        labels: &BTreeMap<String, String>,
        name_template: &str,
        uses: u32,
        expires_ms: u64,
        now_ms: u64,
    ) -> Result<(), StoreError> {
        let labels = labels_text(labels)?;
        self.conn()
            .execute(
                "INSERT INTO claim_tokens (id, secret_hash, labels, name_template, uses, \
                 created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    id,
                    secret_hash,
                    labels,
                    name_template,
                    i64::from(uses),
                    to_i64(now_ms),
                    to_i64(expires_ms)
                ],
            )
            .map_err(query("storing a claim token"))?;
        Ok(())
    }

    /// Every claim token, newest first, with the nodes each enrolled.
    pub fn claims(&self) -> Result<Vec<StoredClaim>, StoreError> {
        let conn = self.conn();
        let failed = query("reading claim tokens");
        let mut statement = conn
            .prepare(
                "SELECT id, labels, name_template, uses, used, created_at, expires_at, revoked_at \
                 FROM claim_tokens ORDER BY created_at DESC, id",
            )
            .map_err(failed)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, i64>(3)?,
                    row.get::<_, i64>(4)?,
                    row.get::<_, i64>(5)?,
                    row.get::<_, i64>(6)?,
                    row.get::<_, Option<i64>>(7)?,
                ))
            })
            .map_err(failed)?;
        let mut claims = Vec::new();
        for row in rows {
            let (id, labels, name_template, uses, used, created, expires, revoked) =
                row.map_err(failed)?;
            claims.push(StoredClaim {
                id,
                labels: labels_of(&labels, "claim token's label set")?,
                name_template,
                uses: u32::try_from(uses).unwrap_or(0),
                used: u32::try_from(used).unwrap_or(0),
                created_ms: to_u64(created),
                expires_ms: to_u64(expires),
                revoked_ms: revoked.map(to_u64),
                nodes: Vec::new(),
            });
        }
        let mut statement = conn
            .prepare("SELECT claim, node FROM claim_nodes ORDER BY enrolled_at, node")
            .map_err(failed)?;
        let rows = statement
            .query_map([], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })
            .map_err(failed)?;
        for row in rows {
            let (claim, node) = row.map_err(failed)?;
            if let Some(found) = claims.iter_mut().find(|c| c.id == claim) {
                found.nodes.push(node);
            }
        }
        Ok(claims)
    }

    /// Revokes claim token `id`: it enrolls nobody more; the nodes it enrolled stay. Returns
    /// `Ok(false)` when it was revoked already, [`StoreError::Decode`]-free `None` when there
    /// is no such token.
    pub fn revoke_claim(&self, id: &str, now_ms: u64) -> Result<Option<bool>, StoreError> {
        let conn = self.conn();
        let failed = query("revoking a claim token");
        let revoked: Option<Option<i64>> = conn
            .query_row(
                "SELECT revoked_at FROM claim_tokens WHERE id = ?1",
                [id],
                |row| row.get(0),
            )
            .optional()
            .map_err(failed)?;
        match revoked {
            None => Ok(None),
            Some(Some(_)) => Ok(Some(false)),
            Some(None) => {
                conn.execute(
                    "UPDATE claim_tokens SET revoked_at = ?2 WHERE id = ?1",
                    params![id, to_i64(now_ms)],
                )
                .map_err(failed)?;
                Ok(Some(true))
            }
        }
    }

    /// Enrolls one device with claim `id`: checks the claim, names the node (`name` is the
    /// name its template gave this device, made unique here), creates it with
    /// `password_hash` and the claim's labels, and counts the use. Returns the node's name.
    pub fn enroll_claim(
        &self,
        id: &str,
        secret_hash: &str,
        name: impl FnOnce(&str) -> Result<String, String>,
        password_hash: &str,
        now_ms: u64,
    ) -> Result<String, ClaimError> {
        let mut conn = self.conn();
        let failed = query("enrolling a device with a claim token");
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        let row: Option<ClaimRow> = tx
            .query_row(
                "SELECT secret_hash, labels, name_template, uses, used, expires_at, revoked_at \
                 FROM claim_tokens WHERE id = ?1",
                [id],
                |row| {
                    Ok(ClaimRow {
                        secret_hash: row.get(0)?,
                        labels: row.get(1)?,
                        template: row.get(2)?,
                        uses: row.get(3)?,
                        used: row.get(4)?,
                        expires: row.get(5)?,
                        revoked: row.get(6)?,
                    })
                },
            )
            .optional()
            .map_err(failed)?;
        let Some(ClaimRow {
            secret_hash: stored,
            labels,
            template,
            uses,
            used,
            expires,
            revoked,
        }) = row
        else {
            return Err(ClaimError::NoClaim(id.to_string()));
        };
        if !constant_time_eq(stored.as_bytes(), secret_hash.as_bytes()) {
            return Err(ClaimError::WrongSecret(id.to_string()));
        }
        if revoked.is_some() {
            return Err(ClaimError::Revoked(id.to_string()));
        }
        let expires = to_u64(expires);
        if now_ms > expires {
            return Err(ClaimError::Expired {
                id: id.to_string(),
                ago_s: (now_ms - expires) / 1000,
            });
        }
        if used >= uses {
            return Err(ClaimError::UsedUp {
                id: id.to_string(),
                uses: u32::try_from(uses).unwrap_or(u32::MAX),
            });
        }
        let naming = |reason: String| ClaimError::Naming {
            id: id.to_string(),
            reason,
        };
        let base = name(&template).map_err(naming)?;
        let mut lookup_failed = None;
        let node = claim::unique(&base, |candidate| {
            match tx
                .query_row("SELECT 1 FROM nodes WHERE name = ?1", [candidate], |_| {
                    Ok(())
                })
                .optional()
            {
                Ok(found) => found.is_some(),
                Err(error) => {
                    lookup_failed.get_or_insert(error);
                    true
                }
            }
        });
        if let Some(error) = lookup_failed {
            return Err(failed(error).into());
        }
        let node = node.ok_or_else(|| {
            naming(format!(
                "every name from `{base}` to `{base}-{}` is taken",
                claim::MAX_SUFFIX
            ))
        })?;
        tx.execute(
            "INSERT INTO nodes (name, password_hash, labels, created_at) VALUES (?1, ?2, ?3, ?4)",
            params![node, password_hash, labels, to_i64(now_ms)],
        )
        .map_err(failed)?;
        tx.execute(
            "UPDATE claim_tokens SET used = used + 1 WHERE id = ?1",
            [id],
        )
        .map_err(failed)?;
        tx.execute(
            "INSERT INTO claim_nodes (claim, node, enrolled_at) VALUES (?1, ?2, ?3)",
            params![id, node, to_i64(now_ms)],
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        Ok(node)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn store() -> (tempfile::TempDir, Arc<Store>) {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("open");
        (dir, Arc::new(store))
    }

    fn labels() -> BTreeMap<String, String> {
        BTreeMap::from([("site".to_string(), "plant-1".to_string())])
    }

    #[test]
    fn racing_devices_never_take_more_uses_than_the_claim_has() {
        let (_dir, store) = store();
        store
            .create_claim("abcd1234", "hash", &labels(), "{name}", 3, 10_000, 1)
            .expect("create");
        let threads: Vec<_> = (0..8)
            .map(|i| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    store.enroll_claim(
                        "abcd1234",
                        "hash",
                        |_| Ok("pi".to_string()),
                        &format!("pw{i}"),
                        2,
                    )
                })
            })
            .collect();
        let outcomes: Vec<_> = threads
            .into_iter()
            .map(|t| t.join().expect("thread"))
            .collect();
        let mut names: Vec<String> = outcomes
            .iter()
            .filter_map(|o| o.as_ref().ok())
            .cloned()
            .collect();
        names.sort();
        assert_eq!(names, ["pi", "pi-2", "pi-3"]);
        for refused in outcomes.iter().filter_map(|o| o.as_ref().err()) {
            assert!(
                matches!(refused, ClaimError::UsedUp { uses: 3, .. }),
                "{refused}"
            );
        }
        let claim = &store.claims().expect("claims")[0];
        assert_eq!((claim.used, claim.state(2)), (3, "used-up"));
        let mut enrolled = claim.nodes.clone();
        enrolled.sort();
        assert_eq!(enrolled, names);
        for name in &names {
            let node = store.node(name).expect("node");
            assert_eq!(node.labels, labels());
            assert!(node.enrolled, "{name} has credentials");
        }
    }

    #[test]
    fn wrong_revoked_and_expired_claims_are_refused_and_change_nothing() {
        let (_dir, store) = store();
        store
            .create_claim("abcd1234", "hash", &labels(), "{name}", 5, 10_000, 1)
            .expect("create");
        let enroll = |secret: &str, now: u64| {
            store.enroll_claim("abcd1234", secret, |_| Ok("pi".into()), "pw", now)
        };
        assert!(matches!(enroll("nope", 2), Err(ClaimError::WrongSecret(_))));
        assert!(matches!(
            store.enroll_claim("zzzz9999", "hash", |_| Ok("pi".into()), "pw", 2),
            Err(ClaimError::NoClaim(_))
        ));
        let expired = enroll("hash", 13_500).expect_err("expired");
        assert_eq!(
            expired.to_string(),
            "claim token `abcd1234` expired 3 s ago: `shoal token create` issues a new one"
        );
        assert_eq!(
            store.revoke_claim("abcd1234", 3).expect("revoke"),
            Some(true)
        );
        assert_eq!(
            store.revoke_claim("abcd1234", 4).expect("revoke"),
            Some(false)
        );
        assert_eq!(store.revoke_claim("nothere1", 4).expect("revoke"), None);
        assert!(matches!(enroll("hash", 5), Err(ClaimError::Revoked(_))));
        let claim = &store.claims().expect("claims")[0];
        assert_eq!((claim.used, claim.state(5)), (0, "revoked"));
        assert!(store.nodes().expect("nodes").is_empty());
    }
}
