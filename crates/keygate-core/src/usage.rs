//! Usage accounting and cross-process cache invalidation: the data that
//! crosses the store boundary.

use time::{OffsetDateTime, Time};

use crate::KeyId;

/// Requests counted for one key in one hourly bucket, as flushed to a store.
///
/// Usage is kept per key *family* (see
/// [`KeyRecord::family`](crate::KeyRecord::family)), so a rotated key's
/// history continues; `key_id` says which member was used, for
/// `last_used_at`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UsageDelta {
    /// The key that was used.
    pub key_id: KeyId,
    /// Its rotation family.
    pub family: KeyId,
    /// The start of the hour the requests fall in.
    pub bucket: OffsetDateTime,
    /// Requests to add to that bucket.
    pub requests: u64,
    /// The latest use seen.
    pub last_used_at: OffsetDateTime,
}

/// The start of the hour `t` falls in: usage buckets are hourly.
pub fn usage_bucket(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_time(Time::from_hms(t.hour(), 0, 0).unwrap_or(Time::MIDNIGHT))
}

/// Requests of a key family in one hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct UsageBucket {
    /// The start of the hour.
    #[serde(with = "time::serde::rfc3339")]
    pub bucket: OffsetDateTime,
    /// Requests counted in it.
    pub requests: u64,
}

/// A message from another process that cached entries are out of date.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// This key changed (revoked, updated, rotated, created).
    Key(KeyId),
    /// Anything may have changed: the feed lost messages (e.g. it
    /// reconnected), so every cached entry must be re-read from the store
    /// before it is served again (see
    /// [`Verifier::invalidate_all`](crate::Verifier::invalidate_all)).
    All,
}

/// Invalidations published by other processes sharing a store; see
/// [`KeyStore::subscribe`](crate::KeyStore::subscribe).
pub type InvalidationFeed = tokio::sync::mpsc::Receiver<Invalidation>;

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn buckets_are_hours() {
        assert_eq!(
            usage_bucket(datetime!(2030-05-06 13:59:59.9 UTC)),
            datetime!(2030-05-06 13:00 UTC)
        );
    }
}
