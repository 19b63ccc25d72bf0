//! [`PostgresStore`](super::PostgresStore)'s statements, written once per
//! store with its schema's table names.

use std::sync::Arc;

/// The statements, with the table names of this store's schema.
pub(super) struct Sql {
    /// `keygate_keys`, qualified with the schema if there is one.
    pub(super) keys: String,
    pub(super) find: Arc<str>,
    pub(super) count_active: Arc<str>,
    pub(super) created_by: Arc<str>,
    pub(super) live_ids: Arc<str>,
    /// `find` that also locks the row until the transaction ends.
    pub(super) find_for_update: Arc<str>,
    pub(super) insert: Arc<str>,
    pub(super) supersede: Arc<str>,
    pub(super) revoke: Arc<str>,
    pub(super) list_first: Arc<str>,
    pub(super) list_after: Arc<str>,
    /// `SELECT … FROM keygate_keys`, to which
    /// [`list_filter`](crate::query::list_filter) is appended.
    pub(super) list: String,
    pub(super) expiring: Arc<str>,
    pub(super) add_usage: Arc<str>,
    pub(super) last_used: Arc<str>,
    pub(super) usage: Arc<str>,
    pub(super) add_audit: Arc<str>,
    /// `SELECT … FROM keygate_audit`, to which
    /// [`audit_filter`](crate::query::audit_filter) is appended.
    pub(super) audit: String,
    pub(super) prune_audit: Arc<str>,
    pub(super) claim_reminder: Arc<str>,
    pub(super) release_reminder: Arc<str>,
    /// Creates an empty credit account if there is none, so that the lock
    /// that follows always has a row to hold.
    pub(super) open_credits: Arc<str>,
    /// Reads a credit account and locks its row until the transaction ends.
    pub(super) lock_credits: Arc<str>,
    pub(super) write_credits: Arc<str>,
}

impl Sql {
    pub(super) fn new(schema: Option<&str>) -> Self {
        let prefix = schema.map_or_else(String::new, |s| format!("\"{s}\"."));
        let keys = format!("{prefix}keygate_keys");
        let usage = format!("{prefix}keygate_usage");
        let audit = format!("{prefix}keygate_audit");
        let reminders = format!("{prefix}keygate_reminders");
        let credits = format!("{prefix}keygate_credits");
        let audit_cols = audit_columns!();
        let cols = key_columns!();
        let usage_cols = usage_columns!();
        let s = |sql: String| Arc::<str>::from(sql);
        Self {
            find: s(format!("SELECT {cols} FROM {keys} WHERE id = $1")),
            count_active: s(format!(
                "SELECT count(*) FROM {keys} WHERE owner = $1 AND revoked_at IS NULL \
                 AND (expires_at IS NULL OR expires_at > $2)"
            )),
            created_by: s(format!("SELECT {cols} FROM {keys} WHERE created_by = $1")),
            live_ids: s(format!(
                "SELECT id FROM {keys} WHERE revoked_at IS NULL LIMIT $1"
            )),
            find_for_update: s(format!(
                "SELECT {cols} FROM {keys} WHERE id = $1 FOR UPDATE"
            )),
            insert: s(format!(
                "WITH k AS (INSERT INTO {keys} ({cols}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $17, $18) RETURNING id) \
                 SELECT pg_notify($16, k.id) FROM k"
            )),
            supersede: s(format!(
                "WITH k AS (UPDATE {keys} SET superseded_by = $2, expires_at = $3 \
                 WHERE id = $1 AND revoked_at IS NULL AND superseded_by IS NULL RETURNING id) \
                 SELECT pg_notify($4, k.id) FROM k"
            )),
            revoke: s(format!(
                "WITH k AS (UPDATE {keys} SET revoked_at = COALESCE(revoked_at, $2) \
                 WHERE id = $1 RETURNING {cols}) \
                 SELECT k.*, pg_notify($3, k.id)::text AS notified FROM k"
            )),
            list_first: s(format!(
                "SELECT {cols} FROM {keys} WHERE owner = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            )),
            list_after: s(format!(
                "SELECT {cols} FROM {keys} WHERE owner = $1 AND (created_at, id) < ($3, $4) \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            )),
            list: format!("SELECT {cols} FROM {keys}"),
            expiring: s(format!(
                "SELECT {cols} FROM {keys} WHERE revoked_at IS NULL AND expires_at IS NOT NULL \
                 AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2"
            )),
            add_usage: s(format!(
                "INSERT INTO {usage} AS u (family, {usage_cols}) \
                 SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::int8[], $4::int8[], \
                 $5::int8[], $6::int8[], $7::int8[], $8::int8[]) \
                 ON CONFLICT (family, bucket) DO UPDATE SET \
                 requests = u.requests + EXCLUDED.requests, \
                 refused_revoked = u.refused_revoked + EXCLUDED.refused_revoked, \
                 refused_expired = u.refused_expired + EXCLUDED.refused_expired, \
                 refused_forbidden = u.refused_forbidden + EXCLUDED.refused_forbidden, \
                 refused_rate_limited = u.refused_rate_limited + EXCLUDED.refused_rate_limited, \
                 refused_usage_exceeded = \
                 u.refused_usage_exceeded + EXCLUDED.refused_usage_exceeded"
            )),
            last_used: s(format!(
                "UPDATE {keys} AS k SET last_used_at = u.at \
                 FROM UNNEST($1::text[], $2::timestamptz[]) AS u(id, at) \
                 WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)"
            )),
            usage: s(format!(
                "SELECT {usage_cols} FROM {usage} WHERE family = $1 AND bucket >= $2 \
                 ORDER BY bucket"
            )),
            // One statement for the whole batch; ORDER BY the position in
            // the batch so ids grow in the order the events were written.
            add_audit: s(format!(
                "INSERT INTO {audit} ({audit_cols}) \
                 SELECT {audit_cols} FROM UNNEST($1::timestamptz[], $2::text[], $3::text[], \
                 $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::inet[]) \
                 WITH ORDINALITY AS e({audit_cols}, n) ORDER BY n"
            )),
            audit: format!("SELECT id, {audit_cols} FROM {audit}"),
            prune_audit: s(format!("DELETE FROM {audit} WHERE at < $1")),
            keys,
            claim_reminder: s(format!(
                "INSERT INTO {reminders} (key_id, threshold, claimed_at) VALUES ($1, $2, $3) \
                 ON CONFLICT DO NOTHING"
            )),
            release_reminder: s(format!(
                "DELETE FROM {reminders} WHERE key_id = $1 AND threshold = $2"
            )),
            open_credits: s(format!(
                "INSERT INTO {credits} (account, remaining) VALUES ($1, 0) ON CONFLICT DO NOTHING"
            )),
            lock_credits: s(format!(
                "SELECT remaining, refill_amount, refill_seconds, refilled_at \
                 FROM {credits} WHERE account = $1 FOR UPDATE"
            )),
            write_credits: s(format!(
                "UPDATE {credits} SET remaining = $2, refill_amount = $3, refill_seconds = $4, \
                 refilled_at = $5 WHERE account = $1"
            )),
        }
    }
}
