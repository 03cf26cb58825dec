-- 0004: rollouts. Which revision of each workload each node was given, and how it is going
-- there (`control::rollout`); and each workload's rollout. A workload applied before this
-- migration has no rows: the first pass gives every node the revision it already runs.
CREATE TABLE workload_nodes (
    workload       TEXT NOT NULL,
    node           TEXT NOT NULL,
    revision       INTEGER NOT NULL CHECK (revision >= 1),
    since_ms       INTEGER NOT NULL,
    ready_since_ms INTEGER,
    outcome        TEXT NOT NULL CHECK (outcome IN ('updating', 'done', 'failed-crashed',
                       'failed-restarting', 'failed-unhealthy', 'failed-deadline')),
    outcome_ms     INTEGER NOT NULL,
    PRIMARY KEY (workload, node)
) STRICT;

CREATE TABLE rollouts (
    workload       TEXT PRIMARY KEY NOT NULL,
    revision       INTEGER NOT NULL CHECK (revision >= 1),
    stable         INTEGER,
    state          TEXT NOT NULL CHECK (state IN ('progressing', 'complete', 'halted', 'rolled-back')),
    failed         INTEGER NOT NULL DEFAULT 0,
    rolled_back_to INTEGER,
    started_ms     INTEGER NOT NULL,
    changed_ms     INTEGER NOT NULL,
    paused         INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),
    immediate      INTEGER NOT NULL DEFAULT 0 CHECK (immediate IN (0, 1))
) STRICT;

-- How each rollout went, kept after the next one starts (`shoal rollout history`).
CREATE TABLE rollout_history (
    workload   TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    state      TEXT NOT NULL,
    failed     INTEGER NOT NULL DEFAULT 0,
    started_ms INTEGER NOT NULL,
    changed_ms INTEGER NOT NULL,
    immediate  INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (workload, revision)
) STRICT;
