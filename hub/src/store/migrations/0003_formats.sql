-- 0003: every postcard blob says which format it is in (shoal_model::wire::stored). Rows
-- written before this migration were written by release 0.1.0 in format 2, which is what the
-- default gives them; new rows always name their format. node_desired.payload needs no
-- column: it is a published wire message, whose first byte is its wire version.
ALTER TABLE workloads ADD COLUMN spec_format INTEGER NOT NULL DEFAULT 2;
ALTER TABLE workload_revisions ADD COLUMN spec_format INTEGER NOT NULL DEFAULT 2;
ALTER TABLE nodes ADD COLUMN facts_format INTEGER NOT NULL DEFAULT 2;
ALTER TABLE node_status ADD COLUMN payload_format INTEGER NOT NULL DEFAULT 2;
ALTER TABLE events ADD COLUMN payload_format INTEGER NOT NULL DEFAULT 2;
