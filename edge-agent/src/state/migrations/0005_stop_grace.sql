-- 0005: the stop grace period of the spec each container was started from, so that a
-- container whose workload was deleted (its spec gone) still gets the period it asked for.
-- NULL for rows written before: the default period applies to them.
ALTER TABLE containers ADD COLUMN stop_grace_ms INTEGER CHECK (stop_grace_ms >= 0);
