-- 0002: what the supervisor needs to keep across restarts for each container: the crash
-- streak that drives restart backoff, OOM kills, and how and when it last exited.
ALTER TABLE containers ADD COLUMN crash_streak INTEGER NOT NULL DEFAULT 0;
ALTER TABLE containers ADD COLUMN oom_kills INTEGER NOT NULL DEFAULT 0;
ALTER TABLE containers ADD COLUMN last_exit_signal INTEGER;
ALTER TABLE containers ADD COLUMN last_exit_at INTEGER;
