//! The cached entry: what the verifier keeps per key, and the checks a
//! presented key must pass against it.

use std::{
    fmt,
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64},
    },
};

use ipnet::IpNet;
use time::OffsetDateTime;

use super::ledger::UsageCounter;
use crate::{CreditHints, KeyDigest, KeyId, KeyInfo, KeyRecord, Quotas, record::ip_allowed};

/// What the verifier keeps per key: everything the request path checks, and
/// the shared [`KeyInfo`] handed to handlers. Never the key.
pub struct CachedKey {
    pub(super) info: Arc<KeyInfo>,
    digest: KeyDigest,
    revoked_at: Option<OffsetDateTime>,
    expires_at: Option<OffsetDateTime>,
    allowed_ips: Box<[IpNet]>,
    rate_limit: Option<Quotas>,
    superseded: bool,
    // Boxed: most keys are not metered, and every cached key pays for the
    // field.
    metering: Option<Box<Metering>>,
    pub(super) loaded_at: OffsetDateTime,
    // `loaded_at` in nanoseconds since the Unix epoch: the cache ages
    // entries on every request, and integer arithmetic is far cheaper than
    // subtracting two `OffsetDateTime`s (a calendar computation).
    pub(super) loaded_nanos: i128,
    // The verifier's epoch when this entry was read; an older epoch means
    // an invalidation feed lost messages since, so the entry is suspect.
    pub(super) epoch: u64,
    pub(super) refreshing: AtomicBool,
    // Counted here, on the entry the request already holds, so accounting
    // costs one atomic add and no lookup.
    pub(super) usage: UsageCounter,
    // When moka was last told about a read of this entry (unix seconds).
    pub(super) touched: AtomicI64,
}

impl CachedKey {
    /// Builds the cache entry for a record read at `loaded_at`.
    pub fn new(record: &KeyRecord, loaded_at: OffsetDateTime) -> Self {
        Self::read_in_epoch(record, loaded_at, 0)
    }

    /// The entry for a record the verifier read at `loaded_at`, in its
    /// `epoch`.
    pub(super) fn read_in_epoch(record: &KeyRecord, loaded_at: OffsetDateTime, epoch: u64) -> Self {
        Self {
            info: Arc::new(KeyInfo::from(record)),
            digest: record.digest,
            revoked_at: record.revoked_at,
            expires_at: record.expires_at,
            allowed_ips: record.allowed_ips.clone().into_boxed_slice(),
            rate_limit: record.rate_limit.clone(),
            superseded: record.superseded_by.is_some(),
            metering: record.credit_account.map(|account| {
                Box::new(Metering {
                    account,
                    hints: Arc::default(),
                })
            }),
            loaded_at,
            loaded_nanos: loaded_at.unix_timestamp_nanos(),
            epoch,
            refreshing: AtomicBool::new(false),
            usage: UsageCounter::default(),
            touched: AtomicI64::new(i64::MIN),
        }
    }

    /// Whether the key was replaced in a rotation and is in its grace period.
    pub fn is_superseded(&self) -> bool {
        self.superseded
    }

    /// Counts one admitted request at `now` towards the key's usage.
    #[inline]
    pub fn record_use(&self, now: OffsetDateTime) {
        self.usage.record(now);
    }

    /// Counts one refused request of the key's holder at `now`, by reason
    /// (see [`RefusalKind`](crate::RefusalKind)), towards the key's usage
    /// history. Call it only once the presented secret matched.
    pub fn record_refusal(&self, kind: crate::RefusalKind, now: OffsetDateTime) {
        self.usage.refuse(kind, now);
    }

    /// The key's public information.
    pub fn info(&self) -> &Arc<KeyInfo> {
        &self.info
    }

    /// The key's own quotas, if it has any (otherwise the layer's default
    /// applies).
    pub fn rate_limit(&self) -> Option<&Quotas> {
        self.rate_limit.as_ref()
    }

    /// When the key expires, if ever.
    pub fn expires_at(&self) -> Option<OffsetDateTime> {
        self.expires_at
    }

    /// The credit account the key spends, if it is metered
    /// ([`KeyRecord::credit_account`]).
    #[inline]
    pub fn credit_account(&self) -> Option<KeyId> {
        self.metering.as_ref().map(|m| m.account)
    }

    /// What the layer remembers of this metered key's recent refusals;
    /// `None` for a key that is not metered. A changed key is a new entry,
    /// so a top-up clears them on every node its invalidation reaches.
    /// Shared, so a request can carry them to layers further in without
    /// holding the entry.
    #[inline]
    pub fn credit_hints(&self) -> Option<&Arc<CreditHints>> {
        self.metering.as_ref().map(|m| &m.hints)
    }

    /// Checks a presented key's digest, then revocation, expiry at `now` and
    /// the IP allowlist.
    ///
    /// The digest is checked first, in constant time, so that only a holder
    /// of the real key learns that it is revoked or expired.
    ///
    /// # Errors
    ///
    /// The first [`Denied`] reason.
    #[inline]
    pub fn check(
        &self,
        presented: &KeyDigest,
        now: OffsetDateTime,
        peer: Option<IpAddr>,
    ) -> Result<(), Denied> {
        if !self.digest.ct_eq(presented) {
            return Err(Denied::DigestMismatch);
        }
        if self.revoked_at.is_some() {
            return Err(Denied::Revoked);
        }
        if self.expires_at.is_some_and(|at| now >= at) {
            return Err(Denied::Expired);
        }
        self.check_peer(peer)
    }

    /// The last of [`check`](Self::check)'s checks alone: the IP allowlist.
    ///
    /// For a caller that learns the client's address only when a key needs
    /// it: after [`Denied::PeerUnknown`], which [`check`](Self::check) returns
    /// only once every other check has passed.
    ///
    /// # Errors
    ///
    /// [`Denied::IpNotAllowed`] for an address outside the allowlist,
    /// [`Denied::PeerUnknown`] for no address when there is an allowlist.
    #[inline]
    pub fn check_peer(&self, peer: Option<IpAddr>) -> Result<(), Denied> {
        if self.allowed_ips.is_empty() {
            return Ok(());
        }
        match peer {
            Some(ip) if ip_allowed(&self.allowed_ips, ip) => Ok(()),
            Some(_) => Err(Denied::IpNotAllowed),
            None => Err(Denied::PeerUnknown),
        }
    }
}

impl fmt::Debug for CachedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedKey")
            .field("id", &self.info.id)
            .field("revoked", &self.revoked_at.is_some())
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// A metered key's account and refusal hints.
#[derive(Debug)]
struct Metering {
    account: KeyId,
    hints: Arc<CreditHints>,
}

/// Why a well-formed key with a known id was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Denied {
    /// The id exists but the rest of the key does not match: a forgery or a
    /// corrupted copy. Reported to clients exactly like an unknown key.
    #[error("the key does not match")]
    DigestMismatch,
    /// The key was revoked.
    #[error("the key has been revoked")]
    Revoked,
    /// The key is past its expiry.
    #[error("the key has expired")]
    Expired,
    /// The key may not be used from the client's address.
    #[error("the key may not be used from this address")]
    IpNotAllowed,
    /// The key has an IP allowlist but the client's address is unknown
    /// (no `ConnectInfo`, no trusted forwarding header).
    #[error("the key has an IP allowlist but the client address is unknown")]
    PeerUnknown,
}

/// A cached key and what its checks concluded for a presented key, without
/// the client's address (see [`Verifier::verify`](super::Verifier::verify)).
#[derive(Debug)]
pub struct Checked {
    entry: Arc<CachedKey>,
    outcome: Result<(), Denied>,
    at: OffsetDateTime,
}

impl Checked {
    /// Runs `entry`'s checks for `presented` at `now`, with no peer address.
    #[inline]
    pub(super) fn new(entry: Arc<CachedKey>, presented: &KeyDigest, now: OffsetDateTime) -> Self {
        let outcome = entry.check(presented, now, None);
        Self {
            entry,
            outcome,
            at: now,
        }
    }

    /// The key's entry, whether or not it passed.
    pub fn entry(&self) -> &Arc<CachedKey> {
        &self.entry
    }

    /// The entry, for a caller that keeps it past the checks.
    pub fn into_entry(self) -> Arc<CachedKey> {
        self.entry
    }

    /// What [`CachedKey::check`] returned with no peer address:
    /// [`Denied::PeerUnknown`] means every check passed but the key has an
    /// IP allowlist, so the caller must find the client's address and ask
    /// [`CachedKey::check_peer`].
    ///
    /// # Errors
    ///
    /// The first [`Denied`] reason.
    pub fn outcome(&self) -> Result<(), Denied> {
        self.outcome
    }

    /// The time the checks were made at: the `now` given to
    /// [`Verifier::verify`](super::Verifier::verify) for a cached key, the
    /// verifier's clock when the store answered for one it had to load.
    /// What follows from the checks (usage, expiry reminders) should tell
    /// the same time.
    pub fn checked_at(&self) -> OffsetDateTime {
        self.at
    }
}
