-- 0004: the hub's public signing keys this node trusts. Seeded by enrollment; replaced only
-- together with a desired state that verified with a key already trusted here.
CREATE TABLE hub_keys (
    public     TEXT PRIMARY KEY NOT NULL,   -- ed25519:<hex>
    trusted_at INTEGER NOT NULL
) STRICT;
