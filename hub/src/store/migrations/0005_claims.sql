-- 0005: claim tokens (`shoal token create`): one token enrolls up to `uses` devices, each
-- as its own node with its own credentials. Only the secret's SHA-256 is kept.
CREATE TABLE claim_tokens (
    id            TEXT PRIMARY KEY NOT NULL,   -- the token's second part
    secret_hash   TEXT NOT NULL,
    labels        TEXT NOT NULL DEFAULT '{}',  -- JSON: hub-side labels of every node it enrolls
    name_template TEXT NOT NULL,
    uses          INTEGER NOT NULL CHECK (uses >= 1),
    used          INTEGER NOT NULL DEFAULT 0 CHECK (used >= 0 AND used <= uses),
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL,
    revoked_at    INTEGER
) STRICT;

-- The nodes each claim token enrolled, in order. A node removed later keeps its row here:
-- the use it took stays taken.
CREATE TABLE claim_nodes (
    claim       TEXT NOT NULL,
    node        TEXT NOT NULL,
    enrolled_at INTEGER NOT NULL,
    PRIMARY KEY (claim, node)
) STRICT;
