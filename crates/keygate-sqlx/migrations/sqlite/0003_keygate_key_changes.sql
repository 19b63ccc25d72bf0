-- keygate: a log of key changes, for SQLite's change feed.
--
-- SQLite has no LISTEN/NOTIFY, so servers sharing this file learn that a
-- key changed (revoked, updated, created, deleted) by polling this table
-- (`SqliteStore::subscribe`). Triggers fill it, so every writer is covered:
-- the server itself, the `keygate` CLI, a script. Usage updates, which only
-- touch `last_used_at`, are not logged. Processes that poll the log prune
-- it to the last hour.

CREATE TABLE keygate_key_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    key_id     TEXT    NOT NULL,
    changed_at INTEGER NOT NULL                              -- Unix seconds
) STRICT;

CREATE INDEX keygate_key_changes_by_time ON keygate_key_changes (changed_at);

CREATE TRIGGER keygate_keys_inserted AFTER INSERT ON keygate_keys
BEGIN
    INSERT INTO keygate_key_changes (key_id, changed_at)
    VALUES (NEW.id, CAST(strftime('%s', 'now') AS INTEGER));
END;

CREATE TRIGGER keygate_keys_updated
-- Every column but last_used_at; a migration that adds a column to
-- keygate_keys must recreate this trigger (a test compares the two).
AFTER UPDATE OF id, family, owner, name, scopes, environment, digest, created_at, expires_at,
    revoked_at, rate_limit, allowed_ips, metadata, superseded_by ON keygate_keys
BEGIN
    INSERT INTO keygate_key_changes (key_id, changed_at)
    VALUES (OLD.id, CAST(strftime('%s', 'now') AS INTEGER));
    INSERT INTO keygate_key_changes (key_id, changed_at)
    SELECT NEW.id, CAST(strftime('%s', 'now') AS INTEGER) WHERE NEW.id IS NOT OLD.id;
END;

CREATE TRIGGER keygate_keys_deleted AFTER DELETE ON keygate_keys
BEGIN
    INSERT INTO keygate_key_changes (key_id, changed_at)
    VALUES (OLD.id, CAST(strftime('%s', 'now') AS INTEGER));
END;
