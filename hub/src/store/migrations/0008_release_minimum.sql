-- 0008: a release's signed minimum (`shoal agent-release add FILE --version V --minimum M`):
-- the lowest version a node that has proven this release may be asked to run again. NULL:
-- none, and the release's statement is format 1 (`shoal-agent-release/1`), as every release
-- stored before this migration; with one it is format 2 (shoal_model::release).
ALTER TABLE agent_releases ADD COLUMN minimum TEXT;
