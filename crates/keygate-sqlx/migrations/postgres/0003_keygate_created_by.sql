-- keygate: which key family created a key, so that revoking a delegating
-- key revokes the keys it created (KeyRecord::created_by). NULL for keys
-- made by admin keys, the CLI or the library directly.

ALTER TABLE keygate_keys ADD COLUMN created_by TEXT COLLATE "C";

COMMENT ON COLUMN keygate_keys.created_by IS 'family of the delegating key that created this one';

-- list_created_by: a revocation's children.
CREATE INDEX keygate_keys_by_creator ON keygate_keys (created_by)
    WHERE created_by IS NOT NULL;
