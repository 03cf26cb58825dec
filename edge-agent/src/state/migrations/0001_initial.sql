-- 0001: the agent's first schema. Times are unix milliseconds (UTC).

-- Small settings and facts about this database, including the bounds of `events` and `outbox`.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

INSERT INTO meta (key, value) VALUES
    ('events_max_rows', '10000'),
    ('outbox_max_rows', '1000');

-- Desired states as received (from the hub, or from `shoal-agent apply -f` on an air-gapped
-- box), verified before they are stored. The newest generation of a source is what the agent
-- converges to, also with no link to the hub.
CREATE TABLE desired_state (
    id          INTEGER PRIMARY KEY,
    generation  INTEGER NOT NULL CHECK (generation >= 0),
    source      TEXT NOT NULL CHECK (source IN ('hub', 'local')),
    payload     BLOB NOT NULL,
    received_at INTEGER NOT NULL,
    UNIQUE (source, generation)
) STRICT;

-- The containers the agent created through libcontainer, so that it can re-adopt them after
-- a restart instead of recreating them.
CREATE TABLE containers (
    id             TEXT PRIMARY KEY NOT NULL,  -- libcontainer container id
    workload       TEXT NOT NULL,
    name           TEXT NOT NULL,              -- the container's name within its workload
    generation     INTEGER NOT NULL,           -- desired-state generation it was created for
    image          TEXT NOT NULL,              -- resolved image reference, by digest
    spec_hash      TEXT NOT NULL,              -- hash of what was asked, to detect drift
    state          TEXT NOT NULL CHECK (state IN ('created', 'running', 'stopped', 'failed')),
    pid            INTEGER,
    restarts       INTEGER NOT NULL DEFAULT 0,
    last_exit_code INTEGER,
    oom_killed     INTEGER NOT NULL DEFAULT 0 CHECK (oom_killed IN (0, 1)),
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
) STRICT;

CREATE INDEX containers_by_workload ON containers (workload, name);

-- What happened on this node, newest last; bounded by meta.events_max_rows.
CREATE TABLE events (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at        INTEGER NOT NULL,
    severity  TEXT NOT NULL CHECK (severity IN ('info', 'warning', 'error')),
    workload  TEXT,
    container TEXT,
    reason    TEXT NOT NULL,
    message   TEXT NOT NULL
) STRICT;

-- Messages for the hub not yet acknowledged by the broker, oldest first; bounded by
-- meta.outbox_max_rows so that a long time offline cannot fill the flash.
CREATE TABLE outbox (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    topic      TEXT NOT NULL,
    payload    BLOB NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

-- The bounds: ids only grow (AUTOINCREMENT), so after inserting row N every row at or below
-- N - max is older than the newest max rows. A missing bound in meta means no bound.
CREATE TRIGGER events_bounded AFTER INSERT ON events
BEGIN
    DELETE FROM events
    WHERE id <= NEW.id - (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'events_max_rows');
END;

CREATE TRIGGER outbox_bounded AFTER INSERT ON outbox
BEGIN
    DELETE FROM outbox
    WHERE id <= NEW.id - (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'outbox_max_rows');
END;
