-- keygate: usage credits, and refusals in the hourly usage.
--
-- A metered key names the account it spends (its own family's, or the
-- account of the metered key that made it). An account's balance refills
-- lazily: to refill_amount at the start of each period after refilled_at.
-- refill_seconds is the period, 0 for calendar months (UTC). Times are Unix
-- microseconds, as elsewhere.

ALTER TABLE keygate_keys ADD COLUMN credit_account TEXT;

-- The change feed's trigger lists every column but last_used_at.
DROP TRIGGER keygate_keys_updated;

CREATE TRIGGER keygate_keys_updated
-- Every column but last_used_at; a migration that adds a column to
-- keygate_keys must recreate this trigger (a test compares the two).
AFTER UPDATE OF id, family, owner, name, scopes, environment, digest, created_at, expires_at,
    revoked_at, rate_limit, allowed_ips, metadata, superseded_by, created_by, credit_account
    ON keygate_keys
BEGIN
    INSERT INTO keygate_key_changes (key_id, changed_at)
    VALUES (OLD.id, CAST(strftime('%s', 'now') AS INTEGER));
    INSERT INTO keygate_key_changes (key_id, changed_at)
    SELECT NEW.id, CAST(strftime('%s', 'now') AS INTEGER) WHERE NEW.id IS NOT OLD.id;
END;

CREATE TABLE keygate_credits (
    account        TEXT    NOT NULL PRIMARY KEY,
    remaining      INTEGER NOT NULL CHECK (remaining BETWEEN 0 AND 1000000000000000),
    refill_amount  INTEGER CHECK (refill_amount BETWEEN 1 AND 1000000000000000),
    refill_seconds INTEGER CHECK (refill_seconds BETWEEN 0 AND 31622400),
    refilled_at    INTEGER,
    CHECK ((refill_amount IS NULL) = (refill_seconds IS NULL))
) STRICT, WITHOUT ROWID;

-- Requests of a key refused after its digest matched (so only its holder
-- can add to them), by reason.
ALTER TABLE keygate_usage ADD COLUMN refused_revoked        INTEGER NOT NULL DEFAULT 0 CHECK (refused_revoked >= 0);
ALTER TABLE keygate_usage ADD COLUMN refused_expired        INTEGER NOT NULL DEFAULT 0 CHECK (refused_expired >= 0);
ALTER TABLE keygate_usage ADD COLUMN refused_forbidden      INTEGER NOT NULL DEFAULT 0 CHECK (refused_forbidden >= 0);
ALTER TABLE keygate_usage ADD COLUMN refused_rate_limited   INTEGER NOT NULL DEFAULT 0 CHECK (refused_rate_limited >= 0);
ALTER TABLE keygate_usage ADD COLUMN refused_usage_exceeded INTEGER NOT NULL DEFAULT 0 CHECK (refused_usage_exceeded >= 0);
