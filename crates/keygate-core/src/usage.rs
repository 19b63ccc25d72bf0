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
    /// Refusals to add to that bucket, by reason.
    pub refused: Refusals,
    /// The latest use seen; stores ignore it when `requests` is 0 (a key
    /// that was only refused was not used).
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
    /// Requests admitted in it.
    pub requests: u64,
    /// Requests of the key refused in it, by reason.
    pub refused: Refusals,
}

/// Why a request presenting a key's real secret was refused, as usage
/// counts it. Only refusals of the key's holder count (the digest matched):
/// a forger cannot add to another key's history.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RefusalKind {
    /// The key was revoked (401 `revoked_key`).
    Revoked,
    /// The key had expired (401 `expired_key`).
    Expired,
    /// The key lacked a scope, or was used from an address outside its
    /// allowlist (403).
    Forbidden,
    /// The key's rate limit refused it (429 `rate_limited`).
    RateLimited,
    /// The key's credits could not pay (429 `usage_exceeded`).
    UsageExceeded,
}

impl RefusalKind {
    /// Every kind, in [`Refusals`]' order.
    pub const ALL: [Self; 5] = [
        Self::Revoked,
        Self::Expired,
        Self::Forbidden,
        Self::RateLimited,
        Self::UsageExceeded,
    ];

    /// `revoked`, `expired`, `forbidden`, `rate_limited`, `usage_exceeded`:
    /// the field of [`Refusals`], and the column `refused_{kind}`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Revoked => "revoked",
            Self::Expired => "expired",
            Self::Forbidden => "forbidden",
            Self::RateLimited => "rate_limited",
            Self::UsageExceeded => "usage_exceeded",
        }
    }

    pub(crate) const fn index(self) -> usize {
        self as usize
    }
}

/// Refused requests of a key family, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Refusals {
    /// See [`RefusalKind::Revoked`].
    pub revoked: u64,
    /// See [`RefusalKind::Expired`].
    pub expired: u64,
    /// See [`RefusalKind::Forbidden`].
    pub forbidden: u64,
    /// See [`RefusalKind::RateLimited`].
    pub rate_limited: u64,
    /// See [`RefusalKind::UsageExceeded`].
    pub usage_exceeded: u64,
}

impl Refusals {
    /// The count of `kind`.
    pub fn get(&self, kind: RefusalKind) -> u64 {
        match kind {
            RefusalKind::Revoked => self.revoked,
            RefusalKind::Expired => self.expired,
            RefusalKind::Forbidden => self.forbidden,
            RefusalKind::RateLimited => self.rate_limited,
            RefusalKind::UsageExceeded => self.usage_exceeded,
        }
    }

    /// The count of `kind`, to change.
    pub fn get_mut(&mut self, kind: RefusalKind) -> &mut u64 {
        match kind {
            RefusalKind::Revoked => &mut self.revoked,
            RefusalKind::Expired => &mut self.expired,
            RefusalKind::Forbidden => &mut self.forbidden,
            RefusalKind::RateLimited => &mut self.rate_limited,
            RefusalKind::UsageExceeded => &mut self.usage_exceeded,
        }
    }

    /// Adds `other`'s counts (saturating).
    pub fn add(&mut self, other: &Refusals) {
        for kind in RefusalKind::ALL {
            let n = self.get_mut(kind);
            *n = n.saturating_add(other.get(kind));
        }
    }

    /// All refusals.
    pub fn total(&self) -> u64 {
        RefusalKind::ALL
            .iter()
            .fold(0u64, |sum, &k| sum.saturating_add(self.get(k)))
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
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
