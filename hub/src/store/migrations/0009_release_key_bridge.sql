-- 0009: release-key rotation (`shoal key rotate --release`). When a release key is retired,
-- its private half is erased, but first it signs the statement of the key set that replaces
-- it (shoal_model::release::keys_statement); that signature is kept here, so a node that
-- trusts only the retired key (offline during the rotation, or with no agent target then)
-- still takes the new set when it next gets a target. NULL: none (active keys, and keys
-- retired before this migration).
ALTER TABLE release_keys ADD COLUMN endorsement BLOB;
