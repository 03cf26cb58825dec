-- 0001: the hub's first schema. Times are unix milliseconds (UTC). Workload specs, node facts
-- and statuses are postcard blobs of the model crate's types.

CREATE TABLE meta (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) STRICT;

INSERT INTO meta (key, value) VALUES ('events_max_rows', '100000');

-- The current revision of every applied workload.
CREATE TABLE workloads (
    name       TEXT PRIMARY KEY NOT NULL,
    revision   INTEGER NOT NULL CHECK (revision >= 1),
    spec       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- Every revision ever applied, to roll back to and to show history.
CREATE TABLE workload_revisions (
    name       TEXT NOT NULL,
    revision   INTEGER NOT NULL,
    spec       BLOB NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (name, revision)
) STRICT;

-- Registered nodes. `labels` are the hub's (JSON object), laid over the agent's own labels.
CREATE TABLE nodes (
    name          TEXT PRIMARY KEY NOT NULL,
    password_hash TEXT NOT NULL,
    labels        TEXT NOT NULL DEFAULT '{}',
    schedulable   TEXT NOT NULL DEFAULT 'yes' CHECK (schedulable IN ('yes', 'cordoned', 'drained')),
    created_at    INTEGER NOT NULL,
    facts         BLOB,
    online        INTEGER NOT NULL DEFAULT 0 CHECK (online IN (0, 1)),
    last_seen     INTEGER,
    offline_since INTEGER
) STRICT;

-- Which node runs which workload: the scheduler's last decision.
CREATE TABLE placement (
    workload TEXT NOT NULL,
    node     TEXT NOT NULL,
    PRIMARY KEY (workload, node)
) STRICT;

-- The desired state last published for each node; its generation only grows.
CREATE TABLE node_desired (
    node       TEXT PRIMARY KEY NOT NULL,
    generation INTEGER NOT NULL CHECK (generation >= 1),
    digest     TEXT NOT NULL,
    payload    BLOB NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

-- The newest status each node reported (without its events, which go to `events`).
CREATE TABLE node_status (
    node        TEXT PRIMARY KEY NOT NULL,
    sequence    INTEGER NOT NULL,
    payload     BLOB NOT NULL,
    received_at INTEGER NOT NULL
) STRICT;

-- Events from nodes, each once (a status resent after a lost ack repeats them).
CREATE TABLE events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    node     TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    workload TEXT,
    at       INTEGER NOT NULL,
    payload  BLOB NOT NULL,
    UNIQUE (node, sequence)
) STRICT;

CREATE INDEX events_by_workload ON events (workload);

CREATE TRIGGER events_bounded AFTER INSERT ON events
BEGIN
    DELETE FROM events
    WHERE id <= NEW.id - (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'events_max_rows');
END;
