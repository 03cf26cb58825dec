-- 0003: the hub link. Each outbox row says how many events the hub would miss if it were
-- dropped (the events it carries plus the losses it reports); the bound still drops the oldest
-- rows first, but now adds what they carried to meta.outbox_dropped_events, which the next
-- status reports and resets. The status reporter's position lives in meta too, written in the
-- same transaction as the rows it produces, so a restart neither repeats nor skips an event.
ALTER TABLE outbox ADD COLUMN events INTEGER NOT NULL DEFAULT 0;

INSERT INTO meta (key, value) VALUES
    ('status_sequence', '0'),        -- the sequence of the newest status put in the outbox
    ('status_last_event', '0'),      -- the newest event sequence put in a status
    ('outbox_dropped_events', '0');  -- events lost at the bound, not yet reported

DROP TRIGGER outbox_bounded;

-- Drops the oldest rows beyond meta.outbox_max_rows (none when the bound is missing), counting
-- the events they carried first.
CREATE TRIGGER outbox_bounded AFTER INSERT ON outbox
WHEN (SELECT count(*) FROM outbox) >
     (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'outbox_max_rows')
BEGIN
    UPDATE meta
    SET value = CAST(CAST(value AS INTEGER) + (
            SELECT coalesce(sum(events), 0) FROM (
                SELECT events FROM outbox ORDER BY id LIMIT (SELECT count(*) FROM outbox) -
                    (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'outbox_max_rows')
            )
        ) AS TEXT)
    WHERE key = 'outbox_dropped_events';
    DELETE FROM outbox WHERE id IN (
        SELECT id FROM outbox ORDER BY id LIMIT (SELECT count(*) FROM outbox) -
            (SELECT CAST(value AS INTEGER) FROM meta WHERE key = 'outbox_max_rows')
    );
END;
