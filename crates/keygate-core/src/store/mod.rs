//! The storage boundary: [`KeyStore`], and its in-memory implementation.

mod filter;
mod key_store;
mod memory;

use std::{fmt, future::Future, pin::Pin, str::FromStr};

use time::OffsetDateTime;

pub use self::{
    filter::{DEFAULT_EXPIRY_WARNING, InvalidStatusFilter, KeyFilter, StatusFilter},
    key_store::{DynKeyStore, KeyStore},
    memory::MemoryStore,
};
use crate::{KeyDigest, KeyId, KeyRecord};

/// A boxed, `Send` future, as used by [`DynKeyStore`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where in a newest-first listing to continue: the last record of the
/// previous page. Its text form (`{unix-nanos}.{id}`) is what HTTP and CLI
/// listings hand out as an opaque cursor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// `created_at` of the last record seen.
    pub created_at: OffsetDateTime,
    /// `id` of the last record seen (breaks ties between equal timestamps).
    pub id: KeyId,
}

impl Cursor {
    /// The cursor that continues after `record`.
    pub fn after(record: &KeyRecord) -> Self {
        Self {
            created_at: record.created_at,
            id: record.id,
        }
    }

    /// Whether `record` comes after this cursor in newest-first order.
    pub fn precedes(&self, record: &KeyRecord) -> bool {
        (record.created_at, record.id) < (self.created_at, self.id)
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.created_at.unix_timestamp_nanos(), self.id)
    }
}

impl FromStr for Cursor {
    type Err = InvalidCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (nanos, id) = s.split_once('.').ok_or(InvalidCursor(()))?;
        let nanos: i128 = nanos.parse().map_err(|_| InvalidCursor(()))?;
        // Only times a record can have: a cursor is handed back to stores.
        let created_at = OffsetDateTime::from_unix_timestamp_nanos(nanos)
            .ok()
            .filter(|t| crate::checked_utc(*t).is_ok())
            .ok_or(InvalidCursor(()))?;
        Ok(Self {
            created_at,
            id: id.parse().map_err(|_| InvalidCursor(()))?,
        })
    }
}

/// The error returned for a cursor that was not produced by [`Cursor`]'s `Display`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid page cursor")]
pub struct InvalidCursor(());

/// One page of a listing: at most `limit` records, newest first, after
/// `cursor` if given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Page {
    /// Most records to return.
    pub limit: usize,
    /// Continue after this record.
    pub cursor: Option<Cursor>,
}

impl Page {
    /// The first `limit` records.
    pub fn first(limit: usize) -> Self {
        Self {
            limit,
            cursor: None,
        }
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::first(100)
    }
}

/// The new key of a [`KeyStore::rotate`]: what is new about it. Everything
/// else (owner, name, scopes, environment, quotas, allowlist, metadata,
/// expiry, family) is copied from the old key as the store holds it at the
/// time of the write.
#[derive(Clone, Debug, PartialEq)]
pub struct Replacement {
    /// The new key's id.
    pub id: KeyId,
    /// The new key's digest.
    pub digest: KeyDigest,
    /// Now: the new key's creation time; the old key must not be expired
    /// at this instant.
    pub at: OffsetDateTime,
    /// The end of the old key's grace period: its expiry becomes the
    /// earlier of its own and this.
    pub grace_end: OffsetDateTime,
    /// The new key's expiry if the old key has none (a default lifetime
    /// from [`at`](Self::at)); `None` leaves it without one.
    pub default_expiry: Option<OffsetDateTime>,
    /// The latest expiry the new key may have (a maximum lifetime from
    /// [`at`](Self::at)): a later expiry, or none, becomes this.
    pub max_expiry: Option<OffsetDateTime>,
}

impl Replacement {
    /// The rule every store applies: `Some((old, new))` with the old record
    /// as rotation leaves it and the new record, or `None` if `old` is
    /// revoked, expired at [`at`](Self::at) or already rotated. The new key
    /// keeps the old key's expiry (as it is at the write), or gets
    /// [`default_expiry`](Self::default_expiry) if it has none, and never
    /// expires later than [`max_expiry`](Self::max_expiry).
    pub fn apply(&self, old: &KeyRecord) -> Option<(KeyRecord, KeyRecord)> {
        if old.revoked_at.is_some() || old.superseded_by.is_some() || old.is_expired_at(self.at) {
            return None;
        }
        let inherited = old.expires_at.or(self.default_expiry);
        let expires_at = match (inherited, self.max_expiry) {
            (Some(at), Some(max)) => Some(at.min(max)),
            (at, max) => at.or(max),
        };
        let new = KeyRecord {
            id: self.id,
            digest: self.digest,
            created_at: self.at,
            expires_at,
            last_used_at: None,
            superseded_by: None,
            revoked_at: None,
            ..old.clone()
        };
        let mut old = old.clone();
        old.superseded_by = Some(self.id);
        old.expires_at = Some(
            old.expires_at
                .map_or(self.grace_end, |at| at.min(self.grace_end)),
        );
        Some((old, new))
    }
}

/// What [`KeyStore::rotate`] did.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
// Returned once per rotation and matched at once, never stored: boxing the
// records would only add allocations.
#[allow(clippy::large_enum_variant)]
pub enum Rotation {
    /// The new key is stored and the old one superseded, as they are now.
    Rotated {
        /// The old key, superseded, with its grace expiry.
        old: KeyRecord,
        /// The new key.
        new: KeyRecord,
    },
    /// Nothing was written: the key, as it is now, is revoked, expired or
    /// already rotated.
    NotRotatable(KeyRecord),
}
