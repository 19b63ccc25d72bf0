-- keygate: the persisted audit trail (authentication outcomes and management
-- actions), written in batches by keygate_core::AuditLog.
--
-- Never a key or a digest: only the key's public id. Names are unqualified:
-- PostgresStore::migrate runs this with search_path set to the store's
-- schema when it has one.

CREATE TABLE keygate_audit (
    id      BIGSERIAL PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    action  TEXT NOT NULL,
    outcome TEXT NOT NULL,
    detail  TEXT,
    key_id  TEXT COLLATE "C",
    actor   TEXT,
    method  TEXT,
    path    TEXT,
    peer    INET
);

COMMENT ON TABLE keygate_audit IS 'keygate audit trail: key ids only, never keys';
COMMENT ON COLUMN keygate_audit.action IS 'authenticate, create, update, revoke or rotate';
COMMENT ON COLUMN keygate_audit.outcome IS '"ok" or the rejection code';
COMMENT ON COLUMN keygate_audit.actor IS 'who made a management change: "cli", "user:<id>", "key:<id>"';

-- One key's history, newest first.
CREATE INDEX keygate_audit_by_key ON keygate_audit (key_id, at);

-- Everything since a time, newest first; also for pruning old events.
CREATE INDEX keygate_audit_by_time ON keygate_audit (at);
