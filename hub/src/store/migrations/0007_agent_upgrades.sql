-- 0007: agent upgrades (`shoal agent upgrade --to V [-l SELECTOR]`): which agent version the
-- nodes a label selector picks should run. The newest upgrade whose selector a node matches
-- decides its version; a node's desired state then names that release for its architecture.
CREATE TABLE agent_upgrades (
    selector   TEXT PRIMARY KEY NOT NULL,   -- the labels a node must have, a JSON object ('{}': every node)
    version    TEXT NOT NULL,               -- semver, a released version
    created_at INTEGER NOT NULL
) STRICT;
