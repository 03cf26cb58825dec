-- 0006: agent releases (`shoal agent-release`), for agents to update themselves.

-- The keys agent releases are signed with: of their own, not the desired-state keys, so a
-- stolen state key cannot make devices run another program. Same life as signing_keys.
CREATE TABLE release_keys (
    id         TEXT PRIMARY KEY NOT NULL,   -- 16 hex digits, the key id in signatures
    public     TEXT NOT NULL,               -- ed25519:<hex>
    pkcs8      BLOB,                        -- NULL once retired
    state      TEXT NOT NULL CHECK (state IN ('active', 'next', 'retired')),
    created_at INTEGER NOT NULL,
    changed_at INTEGER NOT NULL
) STRICT;

CREATE UNIQUE INDEX release_keys_one_active ON release_keys (state) WHERE state = 'active';
CREATE UNIQUE INDEX release_keys_one_next ON release_keys (state) WHERE state = 'next';

-- One row per version and architecture: what the release key signed
-- (shoal_model::release::AgentRelease::signed_bytes) and the signature.
CREATE TABLE agent_releases (
    version    TEXT NOT NULL,
    arch       TEXT NOT NULL CHECK (arch IN ('x86_64', 'aarch64', 'armv7')),
    sha256     TEXT NOT NULL,               -- 64 hex digits, the binary's (agent_binaries)
    size       INTEGER NOT NULL CHECK (size > 0),
    signature  BLOB NOT NULL,               -- key id (8 bytes) + ed25519 signature
    created_at INTEGER NOT NULL,
    PRIMARY KEY (version, arch)
) STRICT;

-- The binaries, by digest: kept in the database, so a backup of it holds them, a release and
-- its bytes are stored in one transaction, and agents download ranges of them.
CREATE TABLE agent_binaries (
    sha256 TEXT PRIMARY KEY NOT NULL,
    bytes  BLOB NOT NULL
) STRICT;
