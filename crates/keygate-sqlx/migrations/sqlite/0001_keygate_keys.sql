-- keygate: API keys and their hourly usage.
--
-- Only digests are stored, never keys. Times are Unix microseconds (UTC) so
-- they sort as numbers and round-trip exactly.

CREATE TABLE keygate_keys (
    id            TEXT    NOT NULL PRIMARY KEY,
    family        TEXT    NOT NULL,
    owner         TEXT    NOT NULL,                          -- "user:42", "service:billing"
    name          TEXT    NOT NULL,
    scopes        TEXT    NOT NULL DEFAULT '[]'
                  CHECK (json_valid(scopes) AND json_type(scopes) = 'array'),
    environment   TEXT    NOT NULL CHECK (environment IN ('live', 'test')),
    digest        BLOB    NOT NULL CHECK (length(digest) = 32),  -- SHA-256 / HMAC-SHA-256
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER,
    revoked_at    INTEGER,
    rate_limit    TEXT,                                      -- "100/s", "600/min", ...
    allowed_ips   TEXT    NOT NULL DEFAULT '[]'
                  CHECK (json_valid(allowed_ips) AND json_type(allowed_ips) = 'array'),
    metadata      TEXT    NOT NULL DEFAULT '{}'
                  CHECK (json_valid(metadata) AND json_type(metadata) = 'object'),
    last_used_at  INTEGER,
    superseded_by TEXT
) STRICT, WITHOUT ROWID;

-- list_by_owner: newest first, ties broken by id.
CREATE INDEX keygate_keys_by_owner ON keygate_keys (owner, created_at DESC, id DESC);

-- list_expiring: live keys with an expiry, soonest first.
CREATE INDEX keygate_keys_expiring ON keygate_keys (expires_at, id)
    WHERE revoked_at IS NULL AND expires_at IS NOT NULL;

CREATE TABLE keygate_usage (
    family   TEXT    NOT NULL,
    bucket   INTEGER NOT NULL,                               -- start of the hour
    requests INTEGER NOT NULL DEFAULT 0 CHECK (requests >= 0),
    PRIMARY KEY (family, bucket)
) STRICT, WITHOUT ROWID;
