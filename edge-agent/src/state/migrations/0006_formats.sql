-- 0006: the format of each stored desired state's payload (shoal_model::wire::stored). Rows
-- written before were written by release 0.1.0 (or a build of this schema before 0006) in
-- format 2, which is what the default gives them; new rows always name their format. Outbox
-- rows need no column: each is a wire message, whose first byte is its wire version.
ALTER TABLE desired_state ADD COLUMN payload_format INTEGER NOT NULL DEFAULT 2;
