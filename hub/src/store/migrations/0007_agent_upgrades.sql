-- 0007: agent upgrades (`shoal agent upgrade --to V [-l SELECTOR]`): which agent version the
-- nodes a label selector picks should run, and how it is rolled out over them
-- (`control::agent`). The newest upgrade whose selector a node matches decides for it; the
-- version a node was given (`agent_nodes`) is the release its desired state names.
CREATE TABLE agent_upgrades (
    selector          TEXT PRIMARY KEY NOT NULL, -- the labels a node must have, a JSON object ('{}': every node)
    version           TEXT NOT NULL,             -- semver, a released version
    created_at        INTEGER NOT NULL,
    canary            TEXT NOT NULL DEFAULT '1', -- a count (`2`) or a percentage (`10%`)
    max_unavailable   TEXT NOT NULL DEFAULT '25%',
    failure_threshold TEXT NOT NULL DEFAULT '1',
    progress_deadline_ms INTEGER NOT NULL DEFAULT 600000 CHECK (progress_deadline_ms > 0),
    previous          TEXT,                      -- the version `undo` goes back to
    state             TEXT NOT NULL DEFAULT 'progressing' CHECK (state IN ('progressing', 'complete', 'halted')),
    failed            INTEGER NOT NULL DEFAULT 0,
    changed_ms        INTEGER NOT NULL DEFAULT 0,
    paused            INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    immediate         INTEGER NOT NULL DEFAULT 0 CHECK (immediate IN (0, 1))
) STRICT;

-- The agent version each node was given, and how it went there.
CREATE TABLE agent_nodes (
    node       TEXT PRIMARY KEY NOT NULL,
    version    TEXT NOT NULL,
    since_ms   INTEGER NOT NULL,
    outcome    TEXT NOT NULL CHECK (outcome IN ('updating', 'done', 'failed')),
    reason     TEXT,                               -- why it failed
    outcome_ms INTEGER NOT NULL
) STRICT;
