-- keygate: reminders claimed for keys nearing expiry, one row per key and
-- threshold (seconds before expiry), so that no key's owner is reminded
-- twice for one threshold, whichever process sends it and however often it
-- restarts. A failed delivery deletes its row, so a later run tries again.

CREATE TABLE keygate_reminders (
    key_id     TEXT    NOT NULL,
    threshold  INTEGER NOT NULL CHECK (threshold >= 0),
    claimed_at INTEGER NOT NULL,                             -- Unix microseconds
    PRIMARY KEY (key_id, threshold)
) STRICT;
