-- 0002: enrollment and signing. A node's password_hash is '' until it enrolls.

-- The hub's ed25519 keys. One `active` key signs every desired state; during a rotation a
-- `next` key is announced beside it until every node has taken it, then becomes `active`
-- and the old one `retired` (its private half erased).
CREATE TABLE signing_keys (
    id         TEXT PRIMARY KEY NOT NULL,   -- 16 hex digits, the key id in signatures
    public     TEXT NOT NULL,               -- ed25519:<hex>
    pkcs8      BLOB,                        -- NULL once retired
    state      TEXT NOT NULL CHECK (state IN ('active', 'next', 'retired')),
    created_at INTEGER NOT NULL,
    changed_at INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX signing_keys_one_active ON signing_keys (state) WHERE state = 'active';
CREATE UNIQUE INDEX signing_keys_one_next ON signing_keys (state) WHERE state = 'next';

-- The key ids (comma separated) a node's published desired state announces.
ALTER TABLE node_desired ADD COLUMN signing_keys TEXT NOT NULL DEFAULT '';

-- One outstanding enrollment token per node: only its SHA-256 is kept.
CREATE TABLE enrollment_tokens (
    node        TEXT PRIMARY KEY NOT NULL,
    secret_hash TEXT NOT NULL,
    expires_at  INTEGER NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;
