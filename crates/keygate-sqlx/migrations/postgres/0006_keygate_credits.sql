-- keygate: usage credits, and refusals in the hourly usage.
--
-- A metered key names the account it spends (its own family's, or the
-- account of the metered key that made it). An account's balance refills
-- lazily: to refill_amount at the start of each period after refilled_at.
-- refill_seconds is the period, 0 for calendar months (UTC).

ALTER TABLE keygate_keys ADD COLUMN credit_account TEXT COLLATE "C";

CREATE TABLE keygate_credits (
    account        TEXT COLLATE "C" PRIMARY KEY,
    remaining      BIGINT NOT NULL CHECK (remaining BETWEEN 0 AND 1000000000000000),
    refill_amount  BIGINT CHECK (refill_amount BETWEEN 1 AND 1000000000000000),
    refill_seconds BIGINT CHECK (refill_seconds BETWEEN 0 AND 31622400),
    refilled_at    TIMESTAMPTZ,
    CHECK ((refill_amount IS NULL) = (refill_seconds IS NULL))
);

COMMENT ON TABLE keygate_credits IS 'keygate usage credits, one balance per account';

-- Requests of a key refused after its digest matched (so only its holder
-- can add to them), by reason.
ALTER TABLE keygate_usage
    ADD COLUMN refused_revoked        BIGINT NOT NULL DEFAULT 0 CHECK (refused_revoked >= 0),
    ADD COLUMN refused_expired        BIGINT NOT NULL DEFAULT 0 CHECK (refused_expired >= 0),
    ADD COLUMN refused_forbidden      BIGINT NOT NULL DEFAULT 0 CHECK (refused_forbidden >= 0),
    ADD COLUMN refused_rate_limited   BIGINT NOT NULL DEFAULT 0 CHECK (refused_rate_limited >= 0),
    ADD COLUMN refused_usage_exceeded BIGINT NOT NULL DEFAULT 0 CHECK (refused_usage_exceeded >= 0);
