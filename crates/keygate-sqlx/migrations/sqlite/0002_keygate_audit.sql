-- keygate: the persisted audit trail (authentication outcomes and management
-- actions), written in batches by keygate_core::AuditLog.
--
-- Never a key or a digest: only the key's public id. Times are Unix
-- microseconds (UTC), like keygate_keys. The id (the rowid) is larger than
-- every id in the table at insert time, so it orders events written at the
-- same microsecond; AUTOINCREMENT (and its sqlite_sequence table) would add
-- nothing to that.

CREATE TABLE keygate_audit (
    id      INTEGER PRIMARY KEY,
    at      INTEGER NOT NULL,
    action  TEXT    NOT NULL,                                -- "create", "revoke", ...
    outcome TEXT    NOT NULL,                                -- "ok" or a rejection code
    detail  TEXT,
    key_id  TEXT,
    actor   TEXT,                                            -- "cli", "user:42", ...
    method  TEXT,
    path    TEXT,
    peer    TEXT                                             -- "203.0.113.7", "2001:db8::1"
) STRICT;

-- One key's history, newest first (the rowid, i.e. id, ends every index).
CREATE INDEX keygate_audit_by_key ON keygate_audit (key_id, at);

-- Everything since a time, newest first; also for pruning old events.
CREATE INDEX keygate_audit_by_time ON keygate_audit (at);
