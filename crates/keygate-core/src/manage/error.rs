//! What can go wrong managing keys.

use crate::{Cap, GrantViolation, KeyId, RandomnessError, StoreError};

/// What can go wrong managing keys.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManageError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The OS could not provide randomness for a new key.
    #[error(transparent)]
    Randomness(#[from] RandomnessError),
    /// The expiry (or the end of a grace period, or of an `expiring`
    /// window) is out of range: before 1970 or after 9999 in UTC (see
    /// [`checked_utc`](crate::checked_utc)).
    #[error("the expiry is out of range")]
    ExpiryOutOfRange,
    /// A time argument (named) is out of range: before 1970 or after 9999
    /// in UTC (see [`checked_utc`](crate::checked_utc)).
    #[error("`{0}` is out of range: a time must be from 1970 to 9999 (UTC)")]
    TimeOutOfRange(&'static str),
    /// The name is empty or longer than 200 characters.
    #[error("a key name is 1 to 200 characters")]
    InvalidName,
    /// The key is revoked, expired or already rotated.
    #[error("key {0} cannot be rotated: it is revoked, expired or already rotated")]
    NotRotatable(KeyId),
    /// The request goes over one of the manager's [`Limits`](crate::Limits).
    #[error("at most {max} {cap}")]
    OverCap {
        /// Which cap.
        cap: Cap,
        /// Its value.
        max: u64,
    },
    /// A delegating key asked for a key more powerful than itself; every
    /// way it would be is listed (see [`may_grant`](crate::may_grant)).
    #[error("the key would be more powerful than the key granting it")]
    NotGrantable(Vec<GrantViolation>),
    /// The key that created this one (or its rotation successor) was
    /// revoked while the change was being made, so the new key was revoked
    /// too: children do not outlive their creator.
    #[error("the creating key was revoked meanwhile; the new key was revoked with it")]
    CreatorRevoked,
    /// A credit balance above [`MAX_CREDITS`](crate::MAX_CREDITS), or a
    /// refill out of range (an amount of 0 or above it, a period that is
    /// not 1 s to 366 days in whole seconds).
    #[error(
        "a credit balance is 0 to {max} credits, and a refill 1 to {max} credits every 1 s to 366 days",
        max = crate::MAX_CREDITS
    )]
    CreditsOutOfRange,
}
