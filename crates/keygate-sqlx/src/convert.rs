//! What both backends share: error mapping, time precision, column parsing,
//! and folding a usage batch.

use std::{collections::BTreeMap, fmt, str::FromStr};

use keygate_core::{KeyDigest, KeyId, StoreError, UsageDelta, to_micros};
use time::OffsetDateTime;

/// Maps a driver error to the store boundary's error.
///
/// Unreadable data is [`StoreError::Corrupt`]; everything else (connection,
/// pool, timeout, and statements the database refused) is
/// [`StoreError::Unavailable`], so a request whose key is not cached gets a
/// 503 and never a 401.
pub(crate) fn store_error(err: sqlx::Error) -> StoreError {
    match err {
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::TypeNotFound { .. } => StoreError::Corrupt(err.to_string()),
        sqlx::Error::Database(db) if refused_value(db.as_ref()) => {
            StoreError::Rejected(db.message().to_owned())
        }
        err => StoreError::unavailable(err),
    }
}

/// Whether the database refused a value (so the same write always fails),
/// rather than failed to run it: a CHECK or NOT NULL constraint, or one of
/// PostgreSQL's data exceptions (SQLSTATE class 22, such as `\u0000` in
/// `jsonb`).
fn refused_value(db: &dyn sqlx::error::DatabaseError) -> bool {
    use sqlx::error::ErrorKind;
    matches!(
        db.kind(),
        ErrorKind::CheckViolation | ErrorKind::NotNullViolation
    ) || (db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .is_some()
        && db.code().is_some_and(|code| code.starts_with("22")))
}

/// Like [`store_error`], but a unique violation is [`StoreError::Duplicate`].
pub(crate) fn insert_error(err: sqlx::Error, id: KeyId) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Duplicate(id),
        _ => store_error(err),
    }
}

/// `t` in UTC to the microsecond, if its UTC form is in years 0 to 9999
/// (what RFC 3339 can show). Every time a store binds goes through this, so
/// no row holds a time that cannot be read back or shown, and sqlx's
/// PostgreSQL encoder (which panics converting a time whose UTC form is out
/// of `time`'s range, such as `9999-12-31T23:59:59-23:59`) only ever sees
/// UTC. Inputs are held to narrower bounds before they get here
/// ([`keygate_core::checked_utc`]); this is the store's own guard.
pub(crate) fn in_range(t: OffsetDateTime) -> Result<OffsetDateTime, StoreError> {
    t.checked_to_offset(time::UtcOffset::UTC)
        .filter(|utc| (0..=9999).contains(&utc.year()))
        .map(to_micros)
        .ok_or_else(|| {
            StoreError::Rejected(
                "a time whose UTC form is outside years 0 to 9999 cannot be stored".to_owned(),
            )
        })
}

pub(crate) fn corrupt(key: &str, column: &str, err: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("key {key:?}, column {column}: {err}"))
}

/// Like [`corrupt`], for a row of `keygate_audit`.
pub(crate) fn audit_corrupt(row: i64, column: &str, err: impl fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("audit event {row}, column {column}: {err}"))
}

/// Parses a text column, reporting failure as [`StoreError::Corrupt`].
pub(crate) fn parse<T>(s: &str, key: &str, column: &str) -> Result<T, StoreError>
where
    T: FromStr,
    T::Err: fmt::Display,
{
    s.parse().map_err(|e| corrupt(key, column, e))
}

pub(crate) fn digest(bytes: &[u8], key: &str) -> Result<KeyDigest, StoreError> {
    <[u8; 32]>::try_from(bytes)
        .map(KeyDigest::from_bytes)
        .map_err(|_| corrupt(key, "digest", format!("{} bytes, not 32", bytes.len())))
}

pub(crate) fn requests(n: i64, family: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(family, "requests", format!("negative count {n}")))
}

/// A usage batch folded for writing: one row per (family, bucket) and per
/// key, in a fixed order, so concurrent flushes from several nodes take row
/// locks in the same order and cannot deadlock.
#[derive(Debug, Default)]
pub(crate) struct FoldedUsage {
    /// Requests, then refusals by [`RefusalKind::ALL`](keygate_core::RefusalKind::ALL),
    /// to add, per (family, hour).
    pub(crate) counts: BTreeMap<(KeyId, OffsetDateTime), UsageCounts>,
    /// The latest use, per key.
    pub(crate) last_used: BTreeMap<KeyId, OffsetDateTime>,
}

impl FoldedUsage {
    pub(crate) fn new(batch: &[UsageDelta]) -> Self {
        let mut folded = Self::default();
        let int = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        for d in batch {
            let counts = folded
                .counts
                .entry((d.family, to_micros(d.bucket)))
                .or_default();
            counts.requests = counts.requests.saturating_add(int(d.requests));
            for (kind, n) in keygate_core::RefusalKind::ALL
                .iter()
                .zip(&mut counts.refused)
            {
                *n = n.saturating_add(int(d.refused.get(*kind)));
            }
            // Refusals alone are not a use of the key.
            if d.requests == 0 {
                continue;
            }
            let at = to_micros(d.last_used_at);
            folded
                .last_used
                .entry(d.key_id)
                .and_modify(|t| *t = (*t).max(at))
                .or_insert(at);
        }
        folded
    }
}

/// What one (family, hour) row of `keygate_usage` gets added.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct UsageCounts {
    pub(crate) requests: i64,
    /// By [`RefusalKind::ALL`](keygate_core::RefusalKind::ALL).
    pub(crate) refused: [i64; 5],
}

/// Key ids read back from an `id` column.
pub(crate) fn key_ids(rows: Vec<(String,)>) -> Result<Vec<KeyId>, StoreError> {
    rows.into_iter()
        .map(|(id,)| {
            id.parse()
                .map_err(|_| StoreError::Corrupt(format!("invalid key id in the store: {id:?}")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn times_out_of_range_are_refused_not_panicked_on() {
        for bad in [
            datetime!(9999-12-31 23:59:59 -23:59),
            datetime!(0000-01-01 0:00 +23:59),
            datetime!(-0001-12-31 0:00 UTC),
            datetime!(-9999-01-01 0:00 UTC),
        ] {
            assert!(
                matches!(in_range(bad), Err(StoreError::Rejected(_))),
                "{bad}"
            );
        }
        assert_eq!(
            in_range(datetime!(2030-01-01 02:00:00.0000019 +02:00)).unwrap(),
            datetime!(2030-01-01 0:00:00.000001 UTC)
        );
        assert_eq!(
            in_range(datetime!(1969-07-20 20:17:40 UTC)).unwrap(),
            datetime!(1969-07-20 20:17:40 UTC)
        );
    }

    #[test]
    fn usage_is_folded_per_bucket_and_key() {
        let (k1, k2): (KeyId, KeyId) =
            ("AAAAAAAAA1".parse().unwrap(), "AAAAAAAAA2".parse().unwrap());
        let h = datetime!(2030-01-01 10:00 UTC);
        let delta = |key_id, requests, minute| UsageDelta {
            refused: Default::default(),
            key_id,
            family: k1,
            bucket: h,
            requests,
            last_used_at: h + time::Duration::minutes(minute),
        };
        let folded = FoldedUsage::new(&[delta(k1, 2, 5), delta(k2, 3, 1), delta(k1, u64::MAX, 2)]);
        assert_eq!(folded.counts.len(), 1);
        assert_eq!(folded.counts[&(k1, h)].requests, i64::MAX);
        assert_eq!(folded.last_used[&k1], h + time::Duration::minutes(5));
        assert_eq!(folded.last_used[&k2], h + time::Duration::minutes(1));
    }
}
