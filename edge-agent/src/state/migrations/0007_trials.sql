-- 0007: revisions on trial (reconcile::trial). For each workload of the hub's desired state
-- whose newer revision has not proved itself on this node yet: that revision, the desired
-- workload it replaced (where a rollback goes, in the stored format of desired_state), and,
-- once it failed here and the node went back, why and when. Replaced together with the desired
-- state it belongs to; a row ends when its revision proves itself or another replaces it.
CREATE TABLE trials (
    workload        TEXT PRIMARY KEY NOT NULL,
    revision        INTEGER NOT NULL,
    previous_format INTEGER NOT NULL,
    previous        BLOB NOT NULL,
    failure         TEXT CHECK (failure IN ('crashed', 'restarting', 'unhealthy', 'deadline')),
    failed_at       INTEGER
) STRICT;
