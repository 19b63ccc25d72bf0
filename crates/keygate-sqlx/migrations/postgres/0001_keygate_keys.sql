-- keygate: API keys and their hourly usage.
--
-- Only digests are stored, never keys. Ids sort bytewise (COLLATE "C"), as
-- keygate orders them. Names are unqualified: PostgresStore::migrate runs
-- this with search_path set to the store's schema when it has one.

CREATE TABLE keygate_keys (
    id            TEXT COLLATE "C" PRIMARY KEY,
    family        TEXT COLLATE "C" NOT NULL,
    owner         TEXT COLLATE "C" NOT NULL,
    name          TEXT NOT NULL,
    scopes        TEXT[] NOT NULL DEFAULT '{}',
    environment   TEXT NOT NULL CHECK (environment IN ('live', 'test')),
    digest        BYTEA NOT NULL CHECK (octet_length(digest) = 32),
    created_at    TIMESTAMPTZ NOT NULL,
    expires_at    TIMESTAMPTZ,
    revoked_at    TIMESTAMPTZ,
    rate_limit    TEXT,
    allowed_ips   INET[] NOT NULL DEFAULT '{}',
    metadata      JSONB NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    last_used_at  TIMESTAMPTZ,
    superseded_by TEXT COLLATE "C"
);

COMMENT ON TABLE keygate_keys IS 'keygate API keys: digests only, never keys';
COMMENT ON COLUMN keygate_keys.owner IS '"user:<id>" or "service:<name>"';
COMMENT ON COLUMN keygate_keys.digest IS 'SHA-256 or HMAC-SHA-256 of the key';
COMMENT ON COLUMN keygate_keys.rate_limit IS 'the key''s own quota, e.g. "100/s"; NULL for the default';

-- list_by_owner: newest first, ties broken by id.
CREATE INDEX keygate_keys_by_owner ON keygate_keys (owner, created_at DESC, id DESC);

-- list_expiring: live keys with an expiry, soonest first.
CREATE INDEX keygate_keys_expiring ON keygate_keys (expires_at, id)
    WHERE revoked_at IS NULL AND expires_at IS NOT NULL;

CREATE TABLE keygate_usage (
    family   TEXT COLLATE "C" NOT NULL,
    bucket   TIMESTAMPTZ NOT NULL,
    requests BIGINT NOT NULL DEFAULT 0 CHECK (requests >= 0),
    PRIMARY KEY (family, bucket)
);

COMMENT ON TABLE keygate_usage IS 'keygate: requests per key family and hour';
