-- keygate: which key family created a key, so that revoking a delegating
-- key revokes the keys it created (KeyRecord::created_by). NULL for keys
-- made by admin keys, the CLI or the library directly.

ALTER TABLE keygate_keys ADD COLUMN created_by TEXT;

-- list_created_by: a revocation's children.
CREATE INDEX keygate_keys_by_creator ON keygate_keys (created_by)
    WHERE created_by IS NOT NULL;

-- The change feed's trigger lists every column but last_used_at.
DROP TRIGGER keygate_keys_updated;

CREATE TRIGGER keygate_keys_updated
-- Every column but last_used_at; a migration that adds a column to
-- keygate_keys must recreate this trigger (a test compares the two).
AFTER UPDATE OF id, family, owner, name, scopes, environment, digest, created_at, expires_at,
    revoked_at, rate_limit, allowed_ips, metadata, superseded_by, created_by ON keygate_keys
BEGIN
    INSERT INTO keygate_key_changes (key_id, changed_at)
    VALUES (OLD.id, CAST(strftime('%s', 'now') AS INTEGER));
    INSERT INTO keygate_key_changes (key_id, changed_at)
    SELECT NEW.id, CAST(strftime('%s', 'now') AS INTEGER) WHERE NEW.id IS NOT OLD.id;
END;
